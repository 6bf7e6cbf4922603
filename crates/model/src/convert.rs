//! GGUF → HF directory conversion (the default model's setup step and the CLI `convert`).
//!
//! The output directory also holds [`SOURCE_MARKER`], recording the GGUF's sha256 and the
//! dtype, written before the directory is published: its presence means the conversion
//! completed, and its hash tells whether the directory matches a given GGUF.

use std::io::Read;
use std::path::Path;

use candle_core::Device;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::ModelConfig;
use crate::error::{ModelError, Result};
use crate::loading::gguf::read_gguf;
use crate::loading::layout::{check_weights, llama_tensor_shapes};
use crate::save::{write_hf_files, write_json, Publish, SaveDtype, Staging};

/// File in a converted directory describing its source.
pub const SOURCE_MARKER: &str = "thinkjudge-source.json";

/// Contents of [`SOURCE_MARKER`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConversionMarker {
    /// File name of the GGUF converted.
    pub source: String,
    /// Its sha256 (lowercase hex).
    pub sha256: String,
    /// The dtype the weights were written in.
    pub dtype: SaveDtype,
    /// `thinkjudge-model <version>`.
    pub converter: String,
}

impl ConversionMarker {
    /// The marker of a converted directory, `None` if absent or unreadable.
    pub fn read(dir: &Path) -> Option<Self> {
        let text = std::fs::read_to_string(dir.join(SOURCE_MARKER)).ok()?;
        serde_json::from_str(&text).ok()
    }
}

/// Converts a llama GGUF into an HF directory at `out_dir` (replacing it): f32-dequantized,
/// un-permuted weights cast to `dtype`, `config.json` and the tokenizer files.
pub fn convert_gguf_to_hf(gguf: &Path, out_dir: &Path, dtype: SaveDtype) -> Result<ModelConfig> {
    let sha = sha256_file(gguf)?;
    convert_with_sha(gguf, out_dir, dtype, sha, Publish::Replace)
}

pub(crate) fn convert_with_sha(
    gguf: &Path,
    out_dir: &Path,
    dtype: SaveDtype,
    sha256: String,
    mode: Publish,
) -> Result<ModelConfig> {
    let m = read_gguf(gguf, &Device::Cpu)?;
    // Before the layout is listed: the GGUF's metadata may claim more layers than it holds.
    check_weights(&m.config, &m.weights)?;
    // File order: the layout's, not the GGUF's alphabetical one.
    let tensors = llama_tensor_shapes(&m.config)
        .into_iter()
        .map(|(name, _)| m.weights.get(&name).map(|t| (name, t.clone())))
        .collect::<Result<Vec<_>>>()?;
    let staging = Staging::new(out_dir)?;
    write_hf_files(
        staging.path(),
        &m.config,
        &tensors,
        dtype,
        Some(&m.tokenizer),
    )?;
    let marker = ConversionMarker {
        source: gguf
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        sha256,
        dtype,
        converter: format!("thinkjudge-model {}", env!("CARGO_PKG_VERSION")),
    };
    let value =
        serde_json::to_value(&marker).map_err(|e| ModelError::format(out_dir, e.to_string()))?;
    write_json(&staging.path().join(SOURCE_MARKER), &value)?;
    staging.publish(mode)?;
    Ok(m.config)
}

/// Lowercase hex sha256 of a file, streamed.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).map_err(|e| ModelError::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(|e| ModelError::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
