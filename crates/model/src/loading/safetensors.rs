//! HF safetensors weights: one `model.safetensors` or a `model.safetensors.index.json` with its
//! shards, read as f32 tensors.
//!
//! The header is checked before anything is handed to the `safetensors` crate, so a truncated
//! file or a bad entry is reported with the file, the tensor and the numbers involved rather
//! than the crate's generic "file not fully covered".

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use candle_core::safetensors::Load;
use candle_core::{DType, Device};
use serde::Deserialize;

use crate::error::{ModelError, Result};
use crate::weights::WeightMap;

/// File name of a single-file checkpoint.
pub const SINGLE_FILE: &str = "model.safetensors";
/// File name of a sharded checkpoint's index.
pub const INDEX_FILE: &str = "model.safetensors.index.json";

/// Headers larger than this are corrupt (the crate's own limit is 100 MB).
const MAX_HEADER: u64 = 100_000_000;

/// Reads the weights of an HF model directory (single file or sharded) as f32 on `device`.
pub fn read_dir_weights(dir: &Path, device: &Device) -> Result<WeightMap> {
    let index = dir.join(INDEX_FILE);
    let single = dir.join(SINGLE_FILE);
    let mut weights = WeightMap::new(dir);
    if index.is_file() {
        read_sharded(&index, device, &mut weights)?;
    } else if single.is_file() {
        read_file(&single, device, &mut weights)?;
    } else {
        let hint = if dir.join("pytorch_model.bin").exists() {
            " (pytorch_model.bin is not supported: convert it to safetensors)"
        } else {
            ""
        };
        return Err(ModelError::format(
            dir,
            format!("no {SINGLE_FILE} or {INDEX_FILE} in this directory{hint}"),
        ));
    }
    Ok(weights)
}

#[derive(Deserialize)]
struct Index {
    weight_map: BTreeMap<String, String>,
}

fn read_sharded(index_path: &Path, device: &Device, out: &mut WeightMap) -> Result<()> {
    let text = std::fs::read_to_string(index_path).map_err(|e| ModelError::io(index_path, e))?;
    let index: Index = serde_json::from_str(&text)
        .map_err(|e| ModelError::format(index_path, format!("invalid index: {e}")))?;
    let dir = index_path.parent().unwrap_or(Path::new("."));
    let shards: BTreeSet<&str> = index.weight_map.values().map(String::as_str).collect();
    for shard in shards {
        let path = dir.join(shard);
        if !path.is_file() {
            let held: Vec<&str> = index
                .weight_map
                .iter()
                .filter(|(_, s)| *s == shard)
                .map(|(n, _)| n.as_str())
                .collect();
            return Err(ModelError::format(
                index_path,
                format!(
                    "shard {shard:?} is missing ({} not found); it holds {} tensors, e.g. {:?}",
                    path.display(),
                    held.len(),
                    held.first().copied().unwrap_or_default()
                ),
            ));
        }
        read_file(&path, device, out)?;
    }
    for (name, shard) in &index.weight_map {
        if !out.contains(name) {
            return Err(ModelError::tensor(
                dir.join(shard),
                name,
                format!("listed in {INDEX_FILE} but not present in the shard"),
            ));
        }
    }
    Ok(())
}

#[derive(Deserialize)]
struct HeaderEntry {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: (usize, usize),
}

/// Reads every tensor of one safetensors file into `out` as f32 on `device`.
pub fn read_file(path: &Path, device: &Device, out: &mut WeightMap) -> Result<()> {
    let file = std::fs::File::open(path).map_err(|e| ModelError::io(path, e))?;
    // SAFETY: the map is read-only and dropped before returning. Another process truncating
    // the file while we read it is the one hazard, shared with candle and `safetensors`.
    let mmap = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| ModelError::io(path, e))?;
    let bytes: &[u8] = &mmap;
    check_header(path, bytes)?;
    let st = safetensors::SafeTensors::deserialize(bytes)
        .map_err(|e| ModelError::format(path, format!("invalid safetensors file: {e}")))?;
    for (name, view) in st.iter() {
        let t = view
            .load(device)
            .and_then(|t| t.to_dtype(DType::F32))
            .map_err(|e| ModelError::tensor(path, name, e.to_string()))?;
        out.insert(name, t);
    }
    Ok(())
}

/// Validates the length prefix, the JSON header and every tensor's dtype, size and offsets.
fn check_header(path: &Path, bytes: &[u8]) -> Result<()> {
    let file_len = bytes.len() as u64;
    let Some(prefix) = bytes.get(..8) else {
        return Err(ModelError::format(
            path,
            format!("file is {file_len} bytes, too short for a safetensors header"),
        ));
    };
    let mut len8 = [0u8; 8];
    len8.copy_from_slice(prefix);
    let n = u64::from_le_bytes(len8);
    if n > MAX_HEADER || 8 + n > file_len {
        return Err(ModelError::format(
            path,
            format!(
                "corrupt header: declared header length {n} does not fit in the {file_len}-byte \
                 file (truncated, or not a safetensors file)"
            ),
        ));
    }
    let header = &bytes[8..8 + n as usize];
    let entries: BTreeMap<String, serde_json::Value> = serde_json::from_slice(header)
        .map_err(|e| ModelError::format(path, format!("corrupt header JSON: {e}")))?;
    let data_len = file_len - 8 - n;
    for (name, value) in entries {
        if name == "__metadata__" {
            continue;
        }
        let e: HeaderEntry = serde_json::from_value(value).map_err(|err| {
            ModelError::tensor(path, &name, format!("corrupt header entry: {err}"))
        })?;
        let Some(size) = dtype_size(&e.dtype) else {
            return Err(ModelError::tensor(
                path,
                &name,
                format!(
                    "dtype {} is not supported (F32, BF16, F16 and F64 are)",
                    e.dtype
                ),
            ));
        };
        let need = e
            .shape
            .iter()
            .try_fold(size as u64, |acc, &d| acc.checked_mul(d as u64));
        let (start, end) = (e.data_offsets.0 as u64, e.data_offsets.1 as u64);
        if end < start || need != Some(end - start) {
            return Err(ModelError::tensor(
                path,
                &name,
                format!(
                    "data_offsets [{start}, {end}] do not match shape {:?} of {}",
                    e.shape, e.dtype
                ),
            ));
        }
        if end > data_len {
            return Err(ModelError::tensor(
                path,
                &name,
                format!(
                    "file is truncated: the tensor's data ends at byte {} but the file has only \
                     {file_len} bytes",
                    8 + n + end
                ),
            ));
        }
    }
    Ok(())
}

fn dtype_size(dtype: &str) -> Option<usize> {
    match dtype {
        "F32" => Some(4),
        "BF16" | "F16" => Some(2),
        "F64" => Some(8),
        _ => None,
    }
}
