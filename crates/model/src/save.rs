//! Saving a model as an HF directory: `model.safetensors`, `config.json` and, with a
//! tokenizer, `tokenizer.json`, `tokenizer_config.json` and `generation_config.json`.
//!
//! Files are written into a temporary sibling directory that is then renamed into place, so
//! a reader never sees a half-written model. The output loads with [`crate::load`] and with
//! candle-transformers' `llama::Llama` (and with transformers' `LlamaForCausalLM`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::config::ModelConfig;
use crate::error::{ModelError, Result};
use crate::loading::layout::{check_no_extra, check_weights};
use crate::loading::safetensors::SINGLE_FILE;
use crate::tokenizer::JudgeTokenizer;
use crate::weights::WeightMap;

/// The dtype weights are written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SaveDtype {
    /// 4 bytes per weight, exact.
    #[default]
    F32,
    /// 2 bytes per weight; what HF checkpoints usually use.
    Bf16,
    /// 2 bytes per weight.
    F16,
}

impl SaveDtype {
    /// The candle dtype.
    pub fn dtype(self) -> DType {
        match self {
            Self::F32 => DType::F32,
            Self::Bf16 => DType::BF16,
            Self::F16 => DType::F16,
        }
    }

    /// The name `config.json`'s `torch_dtype` uses.
    pub fn torch_name(self) -> &'static str {
        match self {
            Self::F32 => "float32",
            Self::Bf16 => "bfloat16",
            Self::F16 => "float16",
        }
    }

    /// `f32`, `bf16` or `f16` (what [`FromStr`] and serde accept).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::Bf16 => "bf16",
            Self::F16 => "f16",
        }
    }
}

impl FromStr for SaveDtype {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "float32" => Ok(Self::F32),
            "bf16" | "bfloat16" => Ok(Self::Bf16),
            "f16" | "float16" => Ok(Self::F16),
            _ => Err(ModelError::InvalidArgument(format!(
                "dtype {s:?} is not one of f32, bf16, f16"
            ))),
        }
    }
}

/// Writes an HF model directory at `dir`, replacing what is there.
///
/// `tensors` must be exactly the Llama layout of `config` (HF names, see
/// [`llama_tensor_shapes`](crate::loading::layout::llama_tensor_shapes)); anything missing,
/// mis-shaped or extra is an error naming the tensor, and nothing is written.
pub fn save_hf_model(
    dir: &Path,
    config: &ModelConfig,
    tensors: &[(String, Tensor)],
    dtype: SaveDtype,
    tokenizer: Option<&JudgeTokenizer>,
) -> Result<()> {
    let staging = Staging::new(dir)?;
    write_hf_files(staging.path(), config, tensors, dtype, tokenizer)?;
    staging.publish(Publish::Replace)?;
    Ok(())
}

/// Writes the HF files into an existing (staging) directory.
pub(crate) fn write_hf_files(
    dir: &Path,
    config: &ModelConfig,
    tensors: &[(String, Tensor)],
    dtype: SaveDtype,
    tokenizer: Option<&JudgeTokenizer>,
) -> Result<()> {
    // Validate names and shapes before writing anything.
    let mut map = WeightMap::new(dir);
    for (name, t) in tensors {
        if map.contains(name) {
            return Err(ModelError::tensor(dir, name, "given twice"));
        }
        map.insert(name.clone(), t.clone());
    }
    check_no_extra(config, map.names(), dir)?;
    check_weights(config, &map)?;
    if let Some(tok) = tokenizer {
        tok.check_matches(config, dir)?;
    }

    let cast: Vec<(String, Tensor)> = tensors
        .iter()
        .map(|(name, t)| {
            t.to_dtype(dtype.dtype())
                .and_then(|t| t.to_device(&Device::Cpu))
                .and_then(|t| t.contiguous())
                .map(|t| (name.clone(), t))
                .map_err(|e| ModelError::tensor(dir, name, e.to_string()))
        })
        .collect::<Result<_>>()?;
    let mut hf = config.to_hf_json();
    if let Some(m) = hf.as_object_mut() {
        m.insert("torch_dtype".into(), dtype.torch_name().into());
    }
    let config_path = dir.join("config.json");
    write_json(&config_path, &hf)?;

    let weights_path = dir.join(SINGLE_FILE);
    // transformers refuses safetensors files without `format: pt` metadata.
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize_to_file(
        cast.iter().map(|(n, t)| (n.as_str(), t)),
        Some(metadata),
        &weights_path,
    )
    .map_err(|e| ModelError::format(&weights_path, format!("writing: {e}")))?;
    // `safetensors` writes through a private temp file (mode 0600); give the weights the
    // umask-derived mode config.json got, so shared checkpoints stay readable.
    let perms = std::fs::metadata(&config_path)
        .map_err(|e| ModelError::io(&config_path, e))?
        .permissions();
    std::fs::set_permissions(&weights_path, perms).map_err(|e| ModelError::io(&weights_path, e))?;

    if let Some(tok) = tokenizer {
        tok.save_to_dir(dir)?;
        // All eos ids, so a reload recovers the full set (tokenizer_config names only one).
        let gen = serde_json::json!({
            "bos_token_id": tok.bos_id(),
            "eos_token_id": tok.eos_ids(),
            "pad_token_id": tok.special_ids().pad,
        });
        write_json(&dir.join("generation_config.json"), &gen)?;
    }
    Ok(())
}

pub(crate) fn write_json(path: &Path, value: &serde_json::Value) -> Result<()> {
    let text =
        serde_json::to_string_pretty(value).map_err(|e| ModelError::format(path, e.to_string()))?;
    std::fs::write(path, text).map_err(|e| ModelError::io(path, e))
}

/// What to do when the destination already exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Publish {
    /// Swap the new directory in (the old one is removed).
    Replace,
    /// Keep the existing one (another process published first) and drop ours.
    KeepExisting,
}

/// A temporary directory next to its destination, removed unless published.
pub(crate) struct Staging {
    tmp: tempfile::TempDir,
    dest: PathBuf,
}

impl Staging {
    pub fn new(dest: &Path) -> Result<Self> {
        let parent = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&parent).map_err(|e| ModelError::io(&parent, e))?;
        let name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".into());
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{name}.tmp-"))
            .tempdir_in(&parent)
            .map_err(|e| ModelError::io(&parent, e))?;
        Ok(Self {
            tmp,
            dest: dest.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        self.tmp.path()
    }

    /// Renames the staging directory to the destination. Returns `false` when `KeepExisting`
    /// found the destination already there.
    pub fn publish(self, mode: Publish) -> Result<bool> {
        let dest = self.dest;
        let tmp = self.tmp.keep();
        let io = |e| ModelError::io(&dest, e);
        if !dest.exists() {
            match std::fs::rename(&tmp, &dest) {
                Ok(()) => return Ok(true),
                // Lost a race to another writer: fall through to the existing-dest handling.
                Err(_) if dest.exists() => {}
                Err(e) => {
                    let _ = std::fs::remove_dir_all(&tmp);
                    return Err(io(e));
                }
            }
        }
        if mode == Publish::KeepExisting {
            let _ = std::fs::remove_dir_all(&tmp);
            return Ok(false);
        }
        // rename(2) may replace an empty directory: move the old one onto a fresh empty
        // directory, move ours in, then delete the old one.
        let parent = dest.parent().unwrap_or(Path::new("."));
        let old = tempfile::Builder::new()
            .prefix(".old-")
            .tempdir_in(parent)
            .map_err(|e| ModelError::io(parent, e))?;
        if let Err(e) = std::fs::rename(&dest, old.path()) {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(io(e));
        }
        if let Err(e) = std::fs::rename(&tmp, &dest) {
            let _ = std::fs::rename(old.path(), &dest);
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(io(e));
        }
        drop(old);
        Ok(true)
    }
}
