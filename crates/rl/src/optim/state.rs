//! Saving and restoring the optimizer state: the f32 moments in `optimizer.safetensors`
//! (`{name}.exp_avg`, `{name}.exp_avg_sq`), the step count, config and parameter names in
//! `optimizer.json`. Both are exact (safetensors stores raw bits; serde_json parses floats
//! with `float_roundtrip`), so a resumed run is bit-identical on CPU given the same weights.
//! The weights themselves are saved by the trainer.

use super::adamw::{AdamW, Param};
use super::OptimizerConfig;
use crate::error::{Result, RlError};
use candle_core::{DType, Device, Tensor, Var};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

/// File name of the moments inside a checkpoint directory.
pub const STATE_TENSORS: &str = "optimizer.safetensors";
/// File name of the step count, config and parameter names.
pub const STATE_JSON: &str = "optimizer.json";
const FORMAT: u32 = 1;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateMeta {
    format: u32,
    step: u64,
    config: OptimizerConfig,
    params: Vec<String>,
}

impl AdamW {
    /// Writes the state into `dir` (created if missing).
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| RlError::io(dir, e))?;
        let mut tensors = HashMap::new();
        for p in &self.params {
            if let Some((m, v)) = &p.moments {
                tensors.insert(format!("{}.exp_avg", p.name), m.clone());
                tensors.insert(format!("{}.exp_avg_sq", p.name), v.clone());
            }
        }
        candle_core::safetensors::save(&tensors, dir.join(STATE_TENSORS))?;
        let meta = StateMeta {
            format: FORMAT,
            step: self.step,
            config: self.cfg.clone(),
            params: self.params.iter().map(|p| p.name.clone()).collect(),
        };
        let path = dir.join(STATE_JSON);
        let json = serde_json::to_string_pretty(&meta).map_err(|source| RlError::Json {
            path: path.display().to_string(),
            source,
        })?;
        std::fs::write(&path, json).map_err(|e| RlError::io(&path, e))
    }

    /// Restores an optimizer saved by [`AdamW::save`] over `params`, which must have the
    /// saved names, in the saved order, with the saved shapes. The saved config is used.
    pub fn load(params: Vec<(String, Var)>, dir: &Path) -> Result<Self> {
        let path = dir.join(STATE_JSON);
        let text = std::fs::read_to_string(&path).map_err(|e| RlError::io(&path, e))?;
        let meta: StateMeta = serde_json::from_str(&text).map_err(|source| RlError::Json {
            path: path.display().to_string(),
            source,
        })?;
        if meta.format != FORMAT {
            return Err(RlError::state(
                &path,
                format!("format {} (this build reads {FORMAT})", meta.format),
            ));
        }
        let names: Vec<&str> = params.iter().map(|(n, _)| n.as_str()).collect();
        if names != meta.params {
            let first = names
                .iter()
                .zip(&meta.params)
                .position(|(a, b)| a != b)
                .unwrap_or(names.len().min(meta.params.len()));
            return Err(RlError::state(
                &path,
                format!(
                    "saved for {} parameters, given {}; they differ at index {first} ({:?} vs {:?})",
                    meta.params.len(),
                    names.len(),
                    meta.params.get(first),
                    names.get(first)
                ),
            ));
        }
        let tpath = dir.join(STATE_TENSORS);
        let mut tensors = candle_core::safetensors::load(&tpath, &Device::Cpu)?;
        let mut opt = AdamW::new(params, meta.config)?;
        opt.step = meta.step;
        for p in &mut opt.params {
            p.moments = take_moments(&mut tensors, p, &tpath)?;
        }
        if let Some(extra) = tensors.keys().next() {
            return Err(RlError::state(
                &tpath,
                format!("tensor {extra:?} belongs to no parameter"),
            ));
        }
        Ok(opt)
    }
}

fn take_moments(
    tensors: &mut HashMap<String, Tensor>,
    p: &Param,
    path: &Path,
) -> Result<Option<(Tensor, Tensor)>> {
    let m = tensors.remove(&format!("{}.exp_avg", p.name));
    let v = tensors.remove(&format!("{}.exp_avg_sq", p.name));
    let (m, v) = match (m, v) {
        (None, None) => return Ok(None),
        (Some(m), Some(v)) => (m, v),
        _ => {
            return Err(RlError::state(
                path,
                format!("{}: only one of the two moments is saved", p.name),
            ))
        }
    };
    for (kind, x) in [("exp_avg", &m), ("exp_avg_sq", &v)] {
        if x.dims() != p.var.dims() || x.dtype() != DType::F32 {
            return Err(RlError::state(
                path,
                format!(
                    "{}.{kind} is {:?} {:?}, the parameter is {:?} (moments are f32)",
                    p.name,
                    x.dtype(),
                    x.dims(),
                    p.var.dims()
                ),
            ));
        }
    }
    let dev = p.var.device();
    Ok(Some((m.to_device(dev)?, v.to_device(dev)?)))
}
