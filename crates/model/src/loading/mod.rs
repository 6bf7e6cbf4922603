//! Loading a model from any [`ModelSource`] into a [`LoadedModel`]: resolved config, f32
//! weights under HF names (checked against the config), and the tokenizer (checked against
//! the vocab).
//!
//! ```no_run
//! # fn main() -> thinkjudge_model::Result<()> {
//! use thinkjudge_model::{load, ModelSource};
//! let m = load(&ModelSource::parse("default")?, &candle_core::Device::Cpu)?;
//! println!("{} layers from {}", m.config.num_layers, m.origin.path.display());
//! # Ok(()) }
//! ```

pub mod gguf;
mod gguf_tokenizer;
pub mod hub;
pub mod layout;
pub mod safetensors;

use std::path::{Path, PathBuf};

use candle_core::Device;

use crate::config::{LlamaConfig, ModelConfig};
use crate::default_model;
use crate::error::Result;
use crate::source::ModelSource;
use crate::tokenizer::JudgeTokenizer;
use crate::weights::WeightMap;

/// On-disk format a model was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelFormat {
    /// An HF directory with safetensors weights.
    HfSafetensors,
    /// A llama.cpp GGUF file (weights dequantized to f32).
    Gguf,
}

/// Where a loaded model came from (for logs and checkpoint metadata).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelOrigin {
    /// What was asked for.
    pub source: ModelSource,
    /// The directory or file actually read.
    pub path: PathBuf,
    /// The format of `path`.
    pub format: ModelFormat,
}

/// A model ready to build a `Llama` from.
#[derive(Debug)]
pub struct LoadedModel {
    /// The resolved config (`config.json` or GGUF metadata).
    pub config: ModelConfig,
    /// f32 tensors by HF name, exactly the tensors of
    /// [`llama_tensor_shapes`](layout::llama_tensor_shapes) (extras such as a tied
    /// `lm_head.weight` or `rotary_emb.inv_freq` are dropped).
    pub weights: WeightMap,
    /// The tokenizer, checked against `config.vocab_size`.
    pub tokenizer: JudgeTokenizer,
    /// Where it all came from.
    pub origin: ModelOrigin,
}

/// How sources that need a cache are resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadOptions {
    /// Download hub files missing from the HF cache. Default: on, unless `HF_HUB_OFFLINE`
    /// is set to `1`/`true`.
    pub allow_download: bool,
    /// HF hub cache directory; `None` means [`hub::default_hf_cache`].
    pub hf_cache: Option<PathBuf>,
    /// thinkjudge's cache root for the default model; `None` means
    /// [`default_model::cache_root`].
    pub cache_root: Option<PathBuf>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        let offline = std::env::var("HF_HUB_OFFLINE")
            .map(|v| matches!(v.trim(), "1" | "true" | "TRUE" | "True" | "yes"))
            .unwrap_or(false);
        Self {
            allow_download: !offline,
            hf_cache: None,
            cache_root: None,
        }
    }
}

/// Loads `source` with default [`LoadOptions`]; weights are f32 on `device`.
pub fn load(source: &ModelSource, device: &Device) -> Result<LoadedModel> {
    load_with(source, device, &LoadOptions::default())
}

/// Loads `source`; weights are f32 on `device`.
pub fn load_with(
    source: &ModelSource,
    device: &Device,
    options: &LoadOptions,
) -> Result<LoadedModel> {
    let (path, format) = match source {
        ModelSource::Default => {
            let m = default_model::ensure(options.cache_root.as_deref())?;
            (m.hf_dir, ModelFormat::HfSafetensors)
        }
        ModelSource::Dir(dir) => (dir.clone(), ModelFormat::HfSafetensors),
        ModelSource::Gguf(file) => (file.clone(), ModelFormat::Gguf),
        ModelSource::Hub { id, revision } => {
            let cache = match &options.hf_cache {
                Some(c) => c.clone(),
                None => hub::default_hf_cache()?,
            };
            let rev = revision.as_deref().unwrap_or("main");
            let dir = hub::resolve(id, rev, &cache, options.allow_download)?;
            (dir, ModelFormat::HfSafetensors)
        }
    };
    let (config, weights, tokenizer) = match format {
        ModelFormat::HfSafetensors => load_hf_dir(&path, device)?,
        ModelFormat::Gguf => {
            let m = gguf::read_gguf(&path, device)?;
            (m.config, m.weights, m.tokenizer)
        }
    };
    // Checked before the layout is listed: the config came from a file and may lie.
    layout::check_weights(&config, &weights)?;
    let weights = keep_layout(&config, weights);
    tokenizer.check_matches(&config, &path)?;
    tracing::info!(
        "loaded {} ({:?}, {} tensors, vocab {})",
        path.display(),
        format,
        weights.len(),
        config.vocab_size
    );
    Ok(LoadedModel {
        config,
        weights,
        tokenizer,
        origin: ModelOrigin {
            source: source.clone(),
            path,
            format,
        },
    })
}

/// Reads an HF model directory: `config.json`, safetensors weights (single or sharded) as
/// f32, and the tokenizer files. No cross-checks; [`load`] adds them.
pub fn load_hf_dir(
    dir: &Path,
    device: &Device,
) -> Result<(ModelConfig, WeightMap, JudgeTokenizer)> {
    if !dir.is_dir() {
        let why = if dir.exists() {
            "is not a directory (GGUF files need a .gguf extension)"
        } else {
            "does not exist"
        };
        return Err(crate::error::ModelError::format(dir, why));
    }
    let config = LlamaConfig::from_file(&dir.join("config.json"))?;
    let tokenizer = JudgeTokenizer::from_hf_dir(dir, &config)?;
    let weights = safetensors::read_dir_weights(dir, device)?;
    Ok((config, weights, tokenizer))
}

/// Runs a third-party parser that can panic on malformed input (candle's GGUF reader
/// divides by a zero `general.alignment`; `tokenizers` unwraps inside its deserializers),
/// turning the panic into an error message. Whatever the parser was reading is dropped with
/// it, so no state outlives the panic.
pub(crate) fn catch_parser_panic<T>(parse: impl FnOnce() -> T) -> std::result::Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(parse)).map_err(|payload| {
        payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "unknown panic".into())
    })
}

/// Drops tensors that are not part of the layout (HF ignores them too).
fn keep_layout(config: &ModelConfig, weights: WeightMap) -> WeightMap {
    let expected: std::collections::HashSet<String> = layout::llama_tensor_shapes(config)
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    let mut kept = WeightMap::new(weights.origin());
    for (name, t) in weights.into_inner() {
        if expected.contains(&name) {
            kept.insert(name, t);
        } else {
            tracing::debug!("ignoring tensor {name} (not used by the Llama layout)");
        }
    }
    kept
}
