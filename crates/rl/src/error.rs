//! The rl crate's error type. Messages name the offending input (tensor and shape, config
//! field, pair id, file), so a failed step can be diagnosed from the log line alone.

use std::path::Path;

/// Errors from rewards, advantages, losses and the optimizer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RlError {
    /// Inputs whose shapes or lengths do not fit together.
    #[error("shape error: {0}")]
    Shape(String),
    /// A config value out of its valid range.
    #[error("invalid config: {field}: {msg}")]
    #[allow(missing_docs)]
    Config { field: &'static str, msg: String },
    /// A batch a reward cannot score: a missing counterpart, the wrong judgment kind, …
    #[error("reward {reward}: {msg}")]
    #[allow(missing_docs)]
    Reward { reward: String, msg: String },
    /// An input the config requires but the caller did not pass.
    #[error("missing input: {0}")]
    MissingInput(String),
    /// Optimizer state that does not match the optimizer's parameters.
    #[error("optimizer state {path}: {msg}")]
    #[allow(missing_docs)]
    State { path: String, msg: String },
    /// Reading or writing a file.
    #[error("{path}: {source}")]
    #[allow(missing_docs)]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A malformed JSON file.
    #[error("{path}: {source}")]
    #[allow(missing_docs)]
    Json {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// The crate's result type.
pub type Result<T, E = RlError> = std::result::Result<T, E>;

impl RlError {
    pub(crate) fn config(field: &'static str, msg: impl Into<String>) -> Self {
        RlError::Config {
            field,
            msg: msg.into(),
        }
    }

    /// A reward error; public so that custom [`crate::Reward`]s can report bad batches.
    pub fn reward(reward: impl Into<String>, msg: impl Into<String>) -> Self {
        RlError::Reward {
            reward: reward.into(),
            msg: msg.into(),
        }
    }

    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        RlError::Io {
            path: path.display().to_string(),
            source,
        }
    }

    pub(crate) fn state(path: &Path, msg: impl Into<String>) -> Self {
        RlError::State {
            path: path.display().to_string(),
            msg: msg.into(),
        }
    }
}

/// `Ok` when `ok`, else a config error naming `field`.
pub(crate) fn ensure(ok: bool, field: &'static str, msg: impl FnOnce() -> String) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(RlError::config(field, msg()))
    }
}

/// `Ok` when `x` is finite and > 0.
pub(crate) fn ensure_positive(field: &'static str, x: f64) -> Result<()> {
    ensure(x > 0.0 && x.is_finite(), field, || {
        format!("{x} must be finite and > 0")
    })
}

/// `Ok` when `x` is finite and ≥ 0.
pub(crate) fn ensure_non_negative(field: &'static str, x: f64) -> Result<()> {
    ensure(x >= 0.0 && x.is_finite(), field, || {
        format!("{x} must be finite and ≥ 0")
    })
}
