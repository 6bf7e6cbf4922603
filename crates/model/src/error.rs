//! The model crate's error type. Every variant names what was being read (file, tensor).

use std::path::Path;

/// Errors from loading, converting, running and saving models.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: invalid model config: {msg}")]
    Config { path: String, msg: String },
    #[error("{path}: tensor {tensor:?}: {msg}")]
    Tensor {
        path: String,
        tensor: String,
        msg: String,
    },
    #[error("{path}: {msg}")]
    Format { path: String, msg: String },
    #[error("tokenizer {path}: {msg}")]
    Tokenizer { path: String, msg: String },
    #[error("model {id:?} not found in the Hugging Face cache {cache} (offline): {msg}")]
    HubMissing {
        id: String,
        cache: String,
        msg: String,
    },
    #[error("fetching the default model: {0}")]
    Fetch(String),
    /// The tokenizer can produce ids the model has no embedding for.
    #[error(
        "tokenizer {tokenizer} has {tokenizer_vocab} tokens (highest id {max_id}) but the model \
         {model} has vocab_size {model_vocab}"
    )]
    VocabMismatch {
        tokenizer: String,
        tokenizer_vocab: usize,
        max_id: u32,
        model: String,
        model_vocab: usize,
    },
    /// The Hugging Face Hub API failed (only tried when downloads are allowed).
    #[error("model {id:?}: downloading from the Hugging Face Hub failed: {msg}")]
    HubApi { id: String, msg: String },
    #[error("shape error: {0}")]
    Shape(String),
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A typed configuration section (e.g. `LoraConfig`) failed `validate()`.
    #[error("invalid {section} config: {msg}")]
    InvalidConfig { section: &'static str, msg: String },
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

pub type Result<T, E = ModelError> = std::result::Result<T, E>;

impl ModelError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        ModelError::Io {
            path: path.display().to_string(),
            source,
        }
    }
    pub fn tensor(path: impl AsRef<Path>, tensor: &str, msg: impl Into<String>) -> Self {
        ModelError::Tensor {
            path: path.as_ref().display().to_string(),
            tensor: tensor.to_string(),
            msg: msg.into(),
        }
    }
    pub fn format(path: impl AsRef<Path>, msg: impl Into<String>) -> Self {
        ModelError::Format {
            path: path.as_ref().display().to_string(),
            msg: msg.into(),
        }
    }
}
