//! Model configuration: the HF `config.json` of a Llama-family model, validated and resolved.
//!
//! [`LlamaConfig`] mirrors the JSON file (so any HF Llama `config.json` deserializes; keys we
//! don't use, like `architectures` or `torch_dtype`, are accepted and ignored). Values we cannot
//! honour — another `model_type`, an activation other than SiLU, a rope type other than the
//! default or `llama3`, attention biases — are rejected by [`LlamaConfig::resolve`] with a
//! message naming the field. [`ModelConfig`] is the resolved form every other module uses.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};

/// One id or a list of ids (HF allows both for `eos_token_id`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TokenIds {
    One(u32),
    Many(Vec<u32>),
}

impl TokenIds {
    pub fn to_vec(&self) -> Vec<u32> {
        match self {
            TokenIds::One(id) => vec![*id],
            TokenIds::Many(ids) => ids.clone(),
        }
    }
}

/// `rope_scaling` as written by HF (Llama 3.1+ uses `rope_type: "llama3"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RopeScalingJson {
    #[serde(alias = "type")]
    pub rope_type: String,
    #[serde(default)]
    pub factor: Option<f64>,
    #[serde(default)]
    pub low_freq_factor: Option<f64>,
    #[serde(default)]
    pub high_freq_factor: Option<f64>,
    #[serde(default)]
    pub original_max_position_embeddings: Option<usize>,
}

/// HF `config.json` of a `LlamaForCausalLM`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlamaConfig {
    #[serde(default)]
    pub model_type: Option<String>,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    #[serde(default)]
    pub head_dim: Option<usize>,
    pub vocab_size: usize,
    #[serde(default = "default_rms_eps")]
    pub rms_norm_eps: f64,
    #[serde(default = "default_rope_theta")]
    pub rope_theta: f64,
    #[serde(default)]
    pub rope_scaling: Option<RopeScalingJson>,
    #[serde(default = "default_max_pos")]
    pub max_position_embeddings: usize,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    #[serde(default)]
    pub bos_token_id: Option<u32>,
    #[serde(default)]
    pub eos_token_id: Option<TokenIds>,
    #[serde(default)]
    pub pad_token_id: Option<u32>,
    #[serde(default)]
    pub hidden_act: Option<String>,
    #[serde(default)]
    pub attention_bias: Option<bool>,
    #[serde(default)]
    pub mlp_bias: Option<bool>,
    /// Everything else in the file (architectures, torch_dtype, …): kept, never interpreted.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

fn default_rms_eps() -> f64 {
    1e-6
}
fn default_rope_theta() -> f64 {
    10_000.0
}
fn default_max_pos() -> usize {
    4096
}

/// Llama 3 frequency-dependent RoPE scaling.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Llama3RopeScaling {
    pub factor: f64,
    pub low_freq_factor: f64,
    pub high_freq_factor: f64,
    pub original_max_position_embeddings: usize,
}

/// The resolved configuration: no options left, every value checked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub vocab_size: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub rope_scaling: Option<Llama3RopeScaling>,
    pub max_position_embeddings: usize,
    pub tie_word_embeddings: bool,
    pub bos_token_id: Option<u32>,
    pub eos_token_ids: Vec<u32>,
    pub pad_token_id: Option<u32>,
}

impl LlamaConfig {
    /// Reads and resolves a `config.json`; errors name the file.
    pub fn from_file(path: &Path) -> Result<ModelConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
        let raw: LlamaConfig = serde_json::from_str(&text).map_err(|e| ModelError::Config {
            path: path.display().to_string(),
            msg: e.to_string(),
        })?;
        raw.resolve().map_err(|e| match e {
            ModelError::Config { msg, .. } => ModelError::Config {
                path: path.display().to_string(),
                msg,
            },
            other => other,
        })
    }

    /// Checks every value we depend on and fills the defaults HF would fill.
    pub fn resolve(&self) -> Result<ModelConfig> {
        let bad = |msg: String| ModelError::Config {
            path: "<config>".into(),
            msg,
        };
        if let Some(mt) = &self.model_type {
            if mt != "llama" {
                return Err(bad(format!(
                    "model_type {mt:?} is not supported (only \"llama\")"
                )));
            }
        }
        if let Some(act) = &self.hidden_act {
            if act != "silu" {
                return Err(bad(format!(
                    "hidden_act {act:?} is not supported (only \"silu\")"
                )));
            }
        }
        if self.attention_bias == Some(true) || self.mlp_bias == Some(true) {
            return Err(bad(
                "attention_bias / mlp_bias = true is not supported (Llama has no biases)".into(),
            ));
        }
        for (name, v) in [
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("vocab_size", self.vocab_size),
            ("max_position_embeddings", self.max_position_embeddings),
        ] {
            if v == 0 {
                return Err(bad(format!("{name} must be > 0")));
            }
        }
        let num_kv_heads = self.num_key_value_heads.unwrap_or(self.num_attention_heads);
        if num_kv_heads == 0 || !self.num_attention_heads.is_multiple_of(num_kv_heads) {
            return Err(bad(format!(
                "num_attention_heads ({}) must be a multiple of num_key_value_heads ({num_kv_heads})",
                self.num_attention_heads
            )));
        }
        let head_dim = match self.head_dim {
            Some(d) => d,
            None => {
                if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
                    return Err(bad(format!(
                        "hidden_size ({}) is not divisible by num_attention_heads ({})",
                        self.hidden_size, self.num_attention_heads
                    )));
                }
                self.hidden_size / self.num_attention_heads
            }
        };
        if head_dim == 0 || !head_dim.is_multiple_of(2) {
            return Err(bad(format!("head_dim ({head_dim}) must be even and > 0")));
        }
        if !(self.rms_norm_eps > 0.0 && self.rms_norm_eps.is_finite()) {
            return Err(bad(format!(
                "rms_norm_eps ({}) must be > 0",
                self.rms_norm_eps
            )));
        }
        if !(self.rope_theta > 0.0 && self.rope_theta.is_finite()) {
            return Err(bad(format!("rope_theta ({}) must be > 0", self.rope_theta)));
        }
        let rope_scaling = match &self.rope_scaling {
            None => None,
            Some(rs) if rs.rope_type == "default" => None,
            Some(rs) if rs.rope_type == "llama3" => {
                let need = |v: Option<f64>, f: &str| {
                    v.ok_or_else(|| bad(format!("rope_scaling (llama3) is missing {f}")))
                };
                let s = Llama3RopeScaling {
                    factor: need(rs.factor, "factor")?,
                    low_freq_factor: need(rs.low_freq_factor, "low_freq_factor")?,
                    high_freq_factor: need(rs.high_freq_factor, "high_freq_factor")?,
                    original_max_position_embeddings: rs
                        .original_max_position_embeddings
                        .ok_or_else(|| {
                            bad(
                                "rope_scaling (llama3) is missing original_max_position_embeddings"
                                    .into(),
                            )
                        })?,
                };
                if !(s.factor > 0.0 && s.high_freq_factor > s.low_freq_factor) {
                    return Err(bad(
                        "rope_scaling (llama3) needs factor > 0 and high_freq_factor > low_freq_factor"
                            .into(),
                    ));
                }
                Some(s)
            }
            Some(rs) => {
                return Err(bad(format!(
                "rope_scaling.rope_type {:?} is not supported (only \"default\" and \"llama3\")",
                rs.rope_type
            )))
            }
        };
        Ok(ModelConfig {
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            num_layers: self.num_hidden_layers,
            num_heads: self.num_attention_heads,
            num_kv_heads,
            head_dim,
            vocab_size: self.vocab_size,
            rms_norm_eps: self.rms_norm_eps,
            rope_theta: self.rope_theta,
            rope_scaling,
            max_position_embeddings: self.max_position_embeddings,
            tie_word_embeddings: self.tie_word_embeddings,
            bos_token_id: self.bos_token_id,
            eos_token_ids: self
                .eos_token_id
                .as_ref()
                .map(TokenIds::to_vec)
                .unwrap_or_default(),
            pad_token_id: self.pad_token_id,
        })
    }
}

impl ModelConfig {
    /// The HF `config.json` for this model (what `save` writes; candle-transformers' Llama
    /// and `transformers` both read it).
    pub fn to_hf_json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "hidden_act": "silu",
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_heads,
            "num_key_value_heads": self.num_kv_heads,
            "head_dim": self.head_dim,
            "vocab_size": self.vocab_size,
            "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta,
            "max_position_embeddings": self.max_position_embeddings,
            "tie_word_embeddings": self.tie_word_embeddings,
            "attention_bias": false,
            "mlp_bias": false,
            "torch_dtype": "float32",
        });
        let m = v.as_object_mut().expect("object literal");
        if let Some(b) = self.bos_token_id {
            m.insert("bos_token_id".into(), b.into());
        }
        match self.eos_token_ids.as_slice() {
            [] => {}
            [one] => {
                m.insert("eos_token_id".into(), (*one).into());
            }
            many => {
                m.insert("eos_token_id".into(), many.to_vec().into());
            }
        }
        if let Some(p) = self.pad_token_id {
            m.insert("pad_token_id".into(), p.into());
        }
        if let Some(s) = &self.rope_scaling {
            m.insert(
                "rope_scaling".into(),
                serde_json::json!({
                    "rope_type": "llama3",
                    "factor": s.factor,
                    "low_freq_factor": s.low_freq_factor,
                    "high_freq_factor": s.high_freq_factor,
                    "original_max_position_embeddings": s.original_max_position_embeddings,
                }),
            );
        }
        v
    }

    /// A tiny GQA config for tests (2 layers, 4 heads, 2 kv heads).
    pub fn tiny(vocab_size: usize) -> Self {
        Self {
            hidden_size: 32,
            intermediate_size: 64,
            num_layers: 2,
            num_heads: 4,
            num_kv_heads: 2,
            head_dim: 8,
            vocab_size,
            rms_norm_eps: 1e-5,
            rope_theta: 10_000.0,
            rope_scaling: None,
            max_position_embeddings: 512,
            tie_word_embeddings: false,
            bos_token_id: None,
            eos_token_ids: vec![],
            pad_token_id: None,
        }
    }

    /// Number of parameters of the full model.
    pub fn num_params(&self) -> usize {
        let h = self.hidden_size;
        let kv = self.num_kv_heads * self.head_dim;
        let q = self.num_heads * self.head_dim;
        let per_layer = h * q + 2 * h * kv + q * h + 3 * h * self.intermediate_size + 2 * h;
        let head = if self.tie_word_embeddings {
            0
        } else {
            self.vocab_size * h
        };
        self.vocab_size * h + self.num_layers * per_layer + h + head
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn smollm_json() -> &'static str {
        r#"{"architectures":["LlamaForCausalLM"],"model_type":"llama","hidden_size":576,
        "intermediate_size":1536,"num_hidden_layers":30,"num_attention_heads":9,
        "num_key_value_heads":3,"rms_norm_eps":1e-5,"rope_theta":100000,
        "max_position_embeddings":8192,"vocab_size":49152,"tie_word_embeddings":true,
        "bos_token_id":1,"eos_token_id":2,"torch_dtype":"bfloat16","hidden_act":"silu"}"#
    }

    #[test]
    fn resolves_smollm2() {
        let c: LlamaConfig = serde_json::from_str(smollm_json()).unwrap();
        let m = c.resolve().unwrap();
        assert_eq!(m.head_dim, 64);
        assert_eq!(m.num_kv_heads, 3);
        assert_eq!(m.eos_token_ids, vec![2]);
        assert_eq!(m.num_params(), 134_515_008);
        // round trip through the HF json we write
        let back: LlamaConfig = serde_json::from_value(m.to_hf_json()).unwrap();
        assert_eq!(back.resolve().unwrap(), m);
    }

    #[test]
    fn rejects_unsupported_rope_type() {
        let mut c: LlamaConfig = serde_json::from_str(smollm_json()).unwrap();
        c.rope_scaling = Some(RopeScalingJson {
            rope_type: "yarn".into(),
            factor: Some(4.0),
            low_freq_factor: None,
            high_freq_factor: None,
            original_max_position_embeddings: None,
        });
        let e = c.resolve().unwrap_err().to_string();
        assert!(e.contains("rope_type \"yarn\" is not supported"), "{e}");
    }

    #[test]
    fn rejects_bad_gqa() {
        let mut c: LlamaConfig = serde_json::from_str(smollm_json()).unwrap();
        c.num_key_value_heads = Some(4);
        let e = c.resolve().unwrap_err().to_string();
        assert!(e.contains("multiple of num_key_value_heads"), "{e}");
    }
}
