//! Fixtures for the I/O tests (loading, bad input, tokenizer): a tiny Llama with
//! deterministic weights, a tiny byte-level BPE vocabulary, and a GGUF writer that lays them
//! out the way llama.cpp does.
#![allow(dead_code)]

use std::path::Path;

use anyhow::Result;
use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use thinkjudge_model::loading::gguf::read_gguf;
use thinkjudge_model::loading::layout::llama_tensor_shapes;
use thinkjudge_model::{JudgeTokenizer, ModelConfig};

/// Special tokens at ids 0..3, as in SmolLM2.
pub const SPECIALS: [&str; 3] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];
/// Merges after the 256 byte tokens; "12" lets the tests see whether digits are split.
pub const MERGES: [(&str, &str); 4] = [("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("1", "2")];
/// A user-defined (non-special) added token at the end of the vocab.
pub const USER_TOKEN: &str = "<think>";
/// 3 specials + 256 bytes + 4 merges + 1 user token.
pub const VOCAB: usize = 264;

pub const CHAT_TEMPLATE: &str =
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}";

/// The tiny config used throughout (GQA: 4 heads, 2 kv heads), with SmolLM2's special ids.
pub fn tiny_config(tied: bool) -> ModelConfig {
    ModelConfig {
        tie_word_embeddings: tied,
        bos_token_id: Some(1),
        eos_token_ids: vec![2],
        pad_token_id: Some(2),
        ..ModelConfig::tiny(VOCAB)
    }
}

/// Deterministic weights for `config` (no RNG): tensor k, element i is `0.1·sin(0.37·i + k)`;
/// norms are `1 + …` so they look like trained RMSNorm gains.
pub fn tiny_tensors(config: &ModelConfig) -> Result<Vec<(String, Tensor)>> {
    llama_tensor_shapes(config)
        .into_iter()
        .enumerate()
        .map(|(k, (name, shape))| {
            let n: usize = shape.iter().product();
            let mut t = (Tensor::arange(0u32, n as u32, &Device::Cpu)?
                .to_dtype(candle_core::DType::F32)?
                .affine(0.37, k as f64)?
                .sin()?
                * 0.1)?
                .reshape(shape.as_slice())?;
            if shape.len() == 1 {
                t = (t + 1.0)?;
            }
            Ok((name, t))
        })
        .collect()
}

/// The tiny tokenizer, obtained the way users get one: from a GGUF (written in `dir`).
pub fn tiny_tokenizer(dir: &Path, pre: Option<&str>) -> Result<JudgeTokenizer> {
    let config = tiny_config(true);
    let path = dir.join(format!("tok-{}.gguf", pre.unwrap_or("none")));
    let spec = GgufSpec {
        pre,
        ..GgufSpec::default()
    };
    write_tiny_gguf(&path, &config, &tiny_tensors(&config)?, &spec)?;
    Ok(read_gguf(&path, &Device::Cpu)?.tokenizer)
}

/// GPT-2's byte → printable-char table (`bytes_to_unicode`), ordered by byte value.
pub fn byte_chars() -> Vec<char> {
    let printable = |b: u32| {
        (b'!' as u32..=b'~' as u32).contains(&b)
            || (0xA1..=0xAC).contains(&b)
            || (0xAE..=0xFF).contains(&b)
    };
    let mut extra = 0;
    (0..256u32)
        .map(|b| {
            if printable(b) {
                char::from_u32(b).unwrap()
            } else {
                extra += 1;
                char::from_u32(255 + extra).unwrap()
            }
        })
        .collect()
}

/// The token list (and llama.cpp token types) of the tiny vocabulary.
pub fn tiny_tokens() -> (Vec<String>, Vec<i32>) {
    let mut tokens: Vec<String> = SPECIALS.iter().map(|s| s.to_string()).collect();
    let mut types = vec![3; SPECIALS.len()];
    for c in byte_chars() {
        tokens.push(c.to_string());
        types.push(1);
    }
    for (a, b) in MERGES {
        tokens.push(format!("{a}{b}"));
        types.push(1);
    }
    tokens.push(USER_TOKEN.to_string());
    types.push(4);
    assert_eq!(tokens.len(), VOCAB);
    (tokens, types)
}

/// llama.cpp's `LlamaModel.permute` (convert_hf_to_gguf.py): HF rows → GGUF rows.
pub fn llama_cpp_permute(w: &Tensor, n_head: usize) -> Result<Tensor> {
    let (out, inp) = w.dims2()?;
    Ok(w.reshape((n_head, 2, out / n_head / 2, inp))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((out, inp))?)
}

/// The llama.cpp name of an HF tensor name.
pub fn gguf_name(hf: &str) -> String {
    let fixed = [
        ("model.embed_tokens.weight", "token_embd.weight"),
        ("model.norm.weight", "output_norm.weight"),
        ("lm_head.weight", "output.weight"),
    ];
    if let Some((_, g)) = fixed.iter().find(|(h, _)| *h == hf) {
        return g.to_string();
    }
    let rest = hf.strip_prefix("model.layers.").unwrap();
    let (layer, part) = rest.split_once('.').unwrap();
    let part = match part {
        "input_layernorm.weight" => "attn_norm",
        "post_attention_layernorm.weight" => "ffn_norm",
        "self_attn.q_proj.weight" => "attn_q",
        "self_attn.k_proj.weight" => "attn_k",
        "self_attn.v_proj.weight" => "attn_v",
        "self_attn.o_proj.weight" => "attn_output",
        "mlp.gate_proj.weight" => "ffn_gate",
        "mlp.up_proj.weight" => "ffn_up",
        "mlp.down_proj.weight" => "ffn_down",
        other => panic!("unexpected {other}"),
    };
    format!("blk.{layer}.{part}.weight")
}

/// Options for [`write_tiny_gguf`].
pub struct GgufSpec<'a> {
    pub pre: Option<&'a str>,
    pub tokenizer_model: &'a str,
    /// Extra metadata entries (replacing entries with the same key).
    pub extra: Vec<(&'a str, Value)>,
}

impl Default for GgufSpec<'_> {
    fn default() -> Self {
        Self {
            pre: Some("smollm"),
            tokenizer_model: "gpt2",
            extra: vec![],
        }
    }
}

/// Writes `tensors` (HF layout) as a llama.cpp-style GGUF: llama.cpp names, permuted q/k
/// rows, F32 storage (lossless), llama.* metadata and the tiny tokenizer.
pub fn write_tiny_gguf(
    path: &Path,
    config: &ModelConfig,
    tensors: &[(String, Tensor)],
    spec: &GgufSpec<'_>,
) -> Result<()> {
    let (tokens, types) = tiny_tokens();
    let u32v = |v: usize| Value::U32(v as u32);
    let mut meta: Vec<(&str, Value)> = vec![
        ("general.architecture", Value::String("llama".into())),
        ("llama.block_count", u32v(config.num_layers)),
        ("llama.embedding_length", u32v(config.hidden_size)),
        ("llama.feed_forward_length", u32v(config.intermediate_size)),
        ("llama.attention.head_count", u32v(config.num_heads)),
        ("llama.attention.head_count_kv", u32v(config.num_kv_heads)),
        ("llama.rope.dimension_count", u32v(config.head_dim)),
        (
            "llama.attention.layer_norm_rms_epsilon",
            Value::F32(config.rms_norm_eps as f32),
        ),
        ("llama.rope.freq_base", Value::F32(config.rope_theta as f32)),
        ("llama.context_length", u32v(config.max_position_embeddings)),
        (
            "tokenizer.ggml.model",
            Value::String(spec.tokenizer_model.into()),
        ),
        (
            "tokenizer.ggml.tokens",
            Value::Array(tokens.into_iter().map(Value::String).collect()),
        ),
        (
            "tokenizer.ggml.token_type",
            Value::Array(types.into_iter().map(Value::I32).collect()),
        ),
        (
            "tokenizer.ggml.merges",
            Value::Array(
                MERGES
                    .iter()
                    .map(|(a, b)| Value::String(format!("{a} {b}")))
                    .collect(),
            ),
        ),
        ("tokenizer.ggml.bos_token_id", Value::U32(1)),
        ("tokenizer.ggml.eos_token_id", Value::U32(2)),
        ("tokenizer.ggml.padding_token_id", Value::U32(2)),
        ("tokenizer.ggml.add_bos_token", Value::Bool(false)),
        (
            "tokenizer.chat_template",
            Value::String(CHAT_TEMPLATE.into()),
        ),
    ];
    if let Some(pre) = spec.pre {
        meta.push(("tokenizer.ggml.pre", Value::String(pre.into())));
    }
    for (k, v) in &spec.extra {
        meta.retain(|(key, _)| key != k);
        meta.push((k, v.clone()));
    }

    let mut qtensors = Vec::new();
    for (name, t) in tensors {
        let t = if name.ends_with("q_proj.weight") {
            llama_cpp_permute(t, config.num_heads)?
        } else if name.ends_with("k_proj.weight") {
            llama_cpp_permute(t, config.num_kv_heads)?
        } else {
            t.clone()
        };
        qtensors.push((gguf_name(name), QTensor::quantize(&t, GgmlDType::F32)?));
    }
    let meta_refs: Vec<(&str, &Value)> = meta.iter().map(|(k, v)| (*k, v)).collect();
    let tensor_refs: Vec<(&str, &QTensor)> =
        qtensors.iter().map(|(n, q)| (n.as_str(), q)).collect();
    let mut file = std::fs::File::create(path)?;
    gguf_file::write(&mut file, &meta_refs, &tensor_refs)?;
    Ok(())
}

/// Asserts two tensors are bit-identical.
pub fn assert_same(name: &str, a: &Tensor, b: &Tensor) -> Result<()> {
    assert_eq!(a.dims(), b.dims(), "{name}: shapes differ");
    let a: Vec<f32> = a.flatten_all()?.to_vec1()?;
    let b: Vec<f32> = b.flatten_all()?.to_vec1()?;
    assert!(a == b, "{name}: values differ");
    Ok(())
}
