//! GGUF (llama.cpp) Llama checkpoints: config from metadata, dequantized f32 weights under HF
//! names with llama.cpp's Q/K row permutation undone, and the embedded tokenizer.
//!
//! llama.cpp's converter reorders the rows of `q_proj`/`k_proj` so that its interleaved RoPE
//! sees the pairs HF's half-split RoPE uses; we apply the inverse (transformers'
//! `reverse_permute_weights`) so the weights work with the HF layout. Llama 3.1 RoPE scaling
//! (`rope_freqs`) and scaled RoPE types are rejected rather than silently ignored.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::{Device, Tensor};

use super::gguf_tokenizer::tokenizer_from_gguf;
use crate::config::{LlamaConfig, ModelConfig, TokenIds};
use crate::error::{ModelError, Result};
use crate::tokenizer::{JudgeTokenizer, SpecialIds};
use crate::weights::WeightMap;

/// Everything a GGUF file holds, converted.
#[derive(Debug)]
pub struct GgufModel {
    /// From the `llama.*` and `tokenizer.ggml.*` metadata.
    pub config: ModelConfig,
    /// f32, HF names, q/k rows in HF order.
    pub weights: WeightMap,
    /// Rebuilt from `tokenizer.ggml.*`.
    pub tokenizer: JudgeTokenizer,
}

/// Reads a llama GGUF: config, f32 weights on `device` (HF names, un-permuted) and tokenizer.
pub fn read_gguf(path: &Path, device: &Device) -> Result<GgufModel> {
    let file = File::open(path).map_err(|e| ModelError::io(path, e))?;
    let file_len = file.metadata().map_err(|e| ModelError::io(path, e))?.len();
    let mut reader = BufReader::new(file);
    let unreadable = |e: String| ModelError::format(path, format!("not a readable GGUF file: {e}"));
    let content = super::catch_parser_panic(|| Content::read(&mut reader))
        .map_err(|p| unreadable(format!("the reader panicked: {p}")))?
        .map_err(|e| unreadable(e.to_string()))?;
    let meta = Meta {
        path,
        content: &content,
    };
    let tokenizer = tokenizer_from_gguf(path, &content)?;
    let config = config_from_meta(&meta, tokenizer.special_ids())?;

    let mut weights = WeightMap::new(path);
    let mut names: Vec<&String> = content.tensor_infos.keys().collect();
    names.sort();
    for name in names {
        let hf = hf_name(name).ok_or_else(|| {
            let why = if name.starts_with("rope_freqs") {
                "Llama 3.1 RoPE frequency scaling is not supported from GGUF (load the HF \
                 directory instead)"
            } else {
                "not a Llama tensor we know how to map to an HF name"
            };
            ModelError::tensor(path, name, why)
        })?;
        let fail = |e: candle_core::Error| ModelError::tensor(path, name, e.to_string());
        // candle multiplies the dimensions without overflow checks, so a lying header could
        // make a tiny tensor claim 2^64 + 4 elements. No GGML type packs 8 elements in a byte.
        let dims = content
            .tensor_infos
            .get(name)
            .map_or(&[][..], |i| i.shape.dims());
        let elems = dims.iter().try_fold(1u64, |n, &d| n.checked_mul(d as u64));
        if elems.is_none_or(|n| n > file_len.saturating_mul(8)) {
            return Err(ModelError::tensor(
                path,
                name,
                format!("shape {dims:?} claims more elements than the {file_len}-byte file holds"),
            ));
        }
        let mut t = content
            .tensor(&mut reader, name, &Device::Cpu)
            .and_then(|q| q.dequantize(&Device::Cpu))
            .map_err(fail)?;
        if hf.ends_with("self_attn.q_proj.weight") {
            t = unpermute_qk(&t, config.num_heads).map_err(fail)?;
        } else if hf.ends_with("self_attn.k_proj.weight") {
            t = unpermute_qk(&t, config.num_kv_heads).map_err(fail)?;
        }
        weights.insert(hf, t.to_device(device).map_err(fail)?);
    }
    Ok(GgufModel {
        config,
        weights,
        tokenizer,
    })
}

/// The HF name of a llama.cpp tensor name (`blk.3.attn_q.weight` →
/// `model.layers.3.self_attn.q_proj.weight`).
pub fn hf_name(gguf: &str) -> Option<String> {
    let base = gguf.strip_suffix(".weight")?;
    let fixed = match base {
        "token_embd" => Some("model.embed_tokens"),
        "output_norm" => Some("model.norm"),
        "output" => Some("lm_head"),
        _ => None,
    };
    if let Some(f) = fixed {
        return Some(format!("{f}.weight"));
    }
    let rest = base.strip_prefix("blk.")?;
    let (layer, part) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let part = match part {
        "attn_norm" => "input_layernorm",
        "ffn_norm" => "post_attention_layernorm",
        "attn_q" => "self_attn.q_proj",
        "attn_k" => "self_attn.k_proj",
        "attn_v" => "self_attn.v_proj",
        "attn_output" => "self_attn.o_proj",
        "ffn_gate" => "mlp.gate_proj",
        "ffn_up" => "mlp.up_proj",
        "ffn_down" => "mlp.down_proj",
        _ => return None,
    };
    Some(format!("model.layers.{layer}.{part}.weight"))
}

/// Undoes llama.cpp's `permute` of q/k rows: `(n, out/n/2, 2, in) → swap(1, 2) → (out, in)`.
///
/// # Shapes
/// - `w`: `(out, in)` with `out` divisible by `2 * n_heads`; returns the same shape.
pub fn unpermute_qk(w: &Tensor, n_heads: usize) -> candle_core::Result<Tensor> {
    let (out, inp) = head_rows(w, n_heads)?;
    w.reshape((n_heads, out / n_heads / 2, 2, inp))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((out, inp))
}

/// llama.cpp's forward permutation (HF → GGUF layout), the inverse of [`unpermute_qk`].
///
/// # Shapes
/// - `w`: `(out, in)`; returns the same shape.
pub fn permute_qk(w: &Tensor, n_heads: usize) -> candle_core::Result<Tensor> {
    let (out, inp) = head_rows(w, n_heads)?;
    w.reshape((n_heads, 2, out / n_heads / 2, inp))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((out, inp))
}

/// `(out, in)` of a q/k matrix whose rows split into `n_heads` heads of rotary pairs.
fn head_rows(w: &Tensor, n_heads: usize) -> candle_core::Result<(usize, usize)> {
    let (out, inp) = w.dims2()?;
    if n_heads == 0 || !out.is_multiple_of(2 * n_heads) {
        candle_core::bail!("{out} rows cannot be split into {n_heads} heads of rotary pairs")
    }
    Ok((out, inp))
}

/// Typed access to GGUF metadata; errors name the file and the key.
pub(crate) struct Meta<'a> {
    pub path: &'a Path,
    pub content: &'a Content,
}

impl<'a> Meta<'a> {
    pub fn get(&self, key: &str) -> Option<&'a Value> {
        self.content.metadata.get(key)
    }

    fn err(&self, key: &str, msg: impl std::fmt::Display) -> ModelError {
        ModelError::format(self.path, format!("metadata {key}: {msg}"))
    }

    pub fn opt_str(&self, key: &str) -> Result<Option<&'a str>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(self.err(
                key,
                format!("expected a string, found {:?}", v.value_type()),
            )),
        }
    }

    pub fn str(&self, key: &str) -> Result<&'a str> {
        self.opt_str(key)?.ok_or_else(|| self.err(key, "missing"))
    }

    pub fn opt_int(&self, key: &str) -> Result<Option<i64>> {
        self.get(key)
            .map(|v| {
                int_value(v)
                    .ok_or_else(|| self.err(key, format!("expected an integer, found {v:?}")))
            })
            .transpose()
    }

    fn opt_usize(&self, key: &str) -> Result<Option<usize>> {
        match self.opt_int(key)? {
            Some(v) if v >= 0 => Ok(Some(v as usize)),
            Some(v) => Err(self.err(key, format!("{v} is negative"))),
            None => Ok(None),
        }
    }

    fn usize(&self, key: &str) -> Result<usize> {
        self.opt_usize(key)?.ok_or_else(|| self.err(key, "missing"))
    }

    fn opt_f64(&self, key: &str) -> Result<Option<f64>> {
        match self.get(key) {
            None => Ok(None),
            // Via the shortest decimal form: GGUF's f32 1e-5 should become 1e-5, not
            // 9.99999974e-6, so a converted config.json says what the original did.
            Some(Value::F32(v)) => Ok(Some(v.to_string().parse().unwrap_or(*v as f64))),
            Some(Value::F64(v)) => Ok(Some(*v)),
            Some(v) => Err(self.err(key, format!("expected a float, found {v:?}"))),
        }
    }

    fn array(&self, key: &str) -> Result<&'a [Value]> {
        match self.get(key) {
            Some(Value::Array(a)) => Ok(a),
            Some(v) => Err(self.err(
                key,
                format!("expected an array, found {:?}", v.value_type()),
            )),
            None => Err(self.err(key, "missing")),
        }
    }

    pub fn str_array(&self, key: &str) -> Result<Vec<&'a str>> {
        self.array(key)?
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::String(s) => Ok(s.as_str()),
                v => Err(self.err(key, format!("entry {i} is not a string: {v:?}"))),
            })
            .collect()
    }

    pub fn int_array(&self, key: &str) -> Result<Vec<i64>> {
        self.array(key)?
            .iter()
            .enumerate()
            .map(|(i, v)| {
                int_value(v)
                    .ok_or_else(|| self.err(key, format!("entry {i} is not an integer: {v:?}")))
            })
            .collect()
    }
}

fn int_value(v: &Value) -> Option<i64> {
    Some(match v {
        Value::U8(x) => *x as i64,
        Value::I8(x) => *x as i64,
        Value::U16(x) => *x as i64,
        Value::I16(x) => *x as i64,
        Value::U32(x) => *x as i64,
        Value::I32(x) => *x as i64,
        Value::U64(x) => i64::try_from(*x).ok()?,
        Value::I64(x) => *x,
        _ => return None,
    })
}

/// The model config from `llama.*` metadata; the vocab size is the token list's length and
/// the head is tied when there is no `output.weight`; special ids come from the tokenizer
/// (which checked them).
fn config_from_meta(meta: &Meta<'_>, special: &SpecialIds) -> Result<ModelConfig> {
    let path = meta.path;
    let arch = meta.str("general.architecture")?;
    if arch != "llama" {
        return Err(meta.err(
            "general.architecture",
            format!("{arch:?} is not supported (only \"llama\")"),
        ));
    }
    if let Some(kind) = meta.opt_str("llama.rope.scaling.type")? {
        if kind != "none" {
            return Err(meta.err(
                "llama.rope.scaling.type",
                format!("{kind:?} RoPE scaling is not supported"),
            ));
        }
    }
    let infos = &meta.content.tensor_infos;
    let embd_rows = infos
        .get("token_embd.weight")
        .map(|i| i.shape.dims().first().copied().unwrap_or(0))
        .ok_or_else(|| ModelError::tensor(path, "token_embd.weight", "missing"))?;
    let vocab_size = match meta.get("tokenizer.ggml.tokens") {
        Some(Value::Array(tokens)) => tokens.len(),
        _ => meta.opt_usize("llama.vocab_size")?.unwrap_or(embd_rows),
    };
    if vocab_size != embd_rows {
        return Err(ModelError::tensor(
            path,
            "token_embd.weight",
            format!("has {embd_rows} rows but the tokenizer has {vocab_size} tokens"),
        ));
    }
    let hidden = meta.usize("llama.embedding_length")?;
    let heads = meta.usize("llama.attention.head_count")?;
    let head_dim = meta.opt_usize("llama.attention.key_length")?;
    if let (Some(rot), Some(hd)) = (
        meta.opt_usize("llama.rope.dimension_count")?,
        head_dim.or((heads > 0).then(|| hidden / heads)),
    ) {
        if rot != hd {
            return Err(meta.err(
                "llama.rope.dimension_count",
                format!("{rot} != head dim {hd} (partial rotary embeddings are not supported)"),
            ));
        }
    }
    let raw = LlamaConfig {
        model_type: Some("llama".into()),
        hidden_size: hidden,
        intermediate_size: meta.usize("llama.feed_forward_length")?,
        num_hidden_layers: meta.usize("llama.block_count")?,
        num_attention_heads: heads,
        num_key_value_heads: meta.opt_usize("llama.attention.head_count_kv")?,
        head_dim,
        vocab_size,
        rms_norm_eps: meta
            .opt_f64("llama.attention.layer_norm_rms_epsilon")?
            .unwrap_or(1e-5),
        rope_theta: meta.opt_f64("llama.rope.freq_base")?.unwrap_or(10_000.0),
        rope_scaling: None,
        max_position_embeddings: meta.opt_usize("llama.context_length")?.unwrap_or(2048),
        tie_word_embeddings: !infos.contains_key("output.weight"),
        bos_token_id: special.bos,
        eos_token_id: Some(TokenIds::Many(special.eos.clone())),
        pad_token_id: special.pad,
        hidden_act: Some("silu".into()),
        attention_bias: None,
        mlp_bias: None,
        extra: Default::default(),
    };
    raw.resolve().map_err(|e| match e {
        ModelError::Config { msg, .. } => ModelError::Config {
            path: path.display().to_string(),
            msg,
        },
        other => other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_hf() {
        assert_eq!(
            hf_name("token_embd.weight").as_deref(),
            Some("model.embed_tokens.weight")
        );
        assert_eq!(hf_name("output.weight").as_deref(), Some("lm_head.weight"));
        assert_eq!(
            hf_name("blk.12.attn_output.weight").as_deref(),
            Some("model.layers.12.self_attn.o_proj.weight")
        );
        assert_eq!(
            hf_name("blk.0.ffn_norm.weight").as_deref(),
            Some("model.layers.0.post_attention_layernorm.weight")
        );
        assert_eq!(hf_name("rope_freqs.weight"), None);
        assert_eq!(hf_name("blk.x.attn_q.weight"), None);
    }

    #[test]
    fn unpermute_inverts_permute() -> candle_core::Result<()> {
        // 2 heads of head_dim 4 over 3 inputs: rows are distinguishable by value.
        let w = Tensor::arange(0f32, 24., &Device::Cpu)?.reshape((8, 3))?;
        let p = permute_qk(&w, 2)?;
        assert_ne!(p.to_vec2::<f32>()?, w.to_vec2::<f32>()?);
        // llama.cpp interleaves each head's halves: HF rows [0,1,2,3] → [0,2,1,3].
        let rows: Vec<f32> = p.narrow(1, 0, 1)?.flatten_all()?.to_vec1()?;
        assert_eq!(rows, vec![0., 6., 3., 9., 12., 18., 15., 21.]);
        assert_eq!(unpermute_qk(&p, 2)?.to_vec2::<f32>()?, w.to_vec2::<f32>()?);
        assert!(unpermute_qk(&w, 3).is_err());
        Ok(())
    }
}
