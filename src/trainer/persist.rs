//! What a checkpoint holds, and putting it back.
//!
//! ```text
//! checkpoints/step-000040/
//!   adapter/            LoRA: adapter_model.safetensors + adapter_config.json (PEFT)
//!   model/              full fine-tuning: model.safetensors (f32) + config.json + tokenizer (HF)
//!   optimizer/          optimizer.safetensors + optimizer.json (rl crate)
//!   trainer_state.json  step, data cursor, counters, LoRA-dropout stream position
//!   config.toml         the resolved config
//!   manifest.json       written last: every file above with its sha256
//! ```
//!
//! Weights are saved in f32, exactly the master weights, and restored into the model's
//! existing `Var`s, so a resumed run continues bit for bit.

use std::path::Path;

use candle_core::{Device, Tensor};
use thinkjudge_model::lora::ADAPTER_WEIGHTS_FILE;
use thinkjudge_model::{save_hf_model, JudgeTokenizer, Llama, Mode, SaveDtype};
use thinkjudge_rl::AdamW;

use super::state::TrainerState;
use crate::checkpoint::write_synced;
use crate::config::TrainConfig;
use crate::error::{Result, TrainError};

/// The resolved config inside a checkpoint (and the run directory).
pub const CONFIG_FILE: &str = "config.toml";
/// LoRA adapters (PEFT layout).
pub const ADAPTER_DIR: &str = "adapter";
/// Full weights (HF layout).
pub const MODEL_DIR: &str = "model";
/// Optimizer state.
pub const OPTIMIZER_DIR: &str = "optimizer";
/// The HF weights file.
const MODEL_WEIGHTS_FILE: &str = "model.safetensors";

/// Writes the contents of a checkpoint into `dir` (the manifest is added by
/// [`crate::checkpoint::save`]).
///
/// # Errors
/// Model, optimizer and I/O errors.
pub fn write(
    dir: &Path,
    model: &Llama,
    tokenizer: &JudgeTokenizer,
    optimizer: &AdamW,
    state: &TrainerState,
    config: &TrainConfig,
) -> Result<()> {
    if model.lora_config().is_some() {
        model.save_adapters(&dir.join(ADAPTER_DIR))?;
    } else {
        let weights = model.named_weights()?;
        save_hf_model(
            &dir.join(MODEL_DIR),
            model.config(),
            &weights,
            SaveDtype::F32,
            Some(tokenizer),
        )?;
    }
    optimizer.save(&dir.join(OPTIMIZER_DIR))?;
    state.save(dir)?;
    write_synced(&dir.join(CONFIG_FILE), config.to_toml_string()?.as_bytes())
}

/// Restores the trainable weights of a checkpoint into `model` (its `Var`s keep their
/// identity) and returns the optimizer and trainer state.
///
/// # Errors
/// [`TrainError::Checkpoint`] when a tensor is missing or mis-shaped; read errors.
pub fn restore(dir: &Path, model: &Llama) -> Result<(AdamW, TrainerState)> {
    let file = match model.lora_config() {
        Some(_) => dir.join(ADAPTER_DIR).join(ADAPTER_WEIGHTS_FILE),
        None => dir.join(MODEL_DIR).join(MODEL_WEIGHTS_FILE),
    };
    let tensors = candle_core::safetensors::load(&file, model.device())
        .map_err(|e| TrainError::checkpoint(&file, e.to_string()))?;
    let vars = model.trainable_vars();
    for (name, var) in &vars {
        let t = tensors
            .get(name)
            .ok_or_else(|| TrainError::checkpoint(&file, format!("tensor {name} is missing")))?;
        if t.dims() != var.dims() {
            return Err(TrainError::checkpoint(
                &file,
                format!(
                    "tensor {name} is {:?}, the model's is {:?}",
                    t.dims(),
                    var.dims()
                ),
            ));
        }
        var.set(&t.to_dtype(var.dtype())?)?;
    }
    let optimizer = AdamW::load(vars, &dir.join(OPTIMIZER_DIR))?;
    Ok((optimizer, TrainerState::load(dir)?))
}

/// The config keys whose value differs between a checkpoint's config and `current`
/// (dotted paths), leaving out those that only steer the loop's cadence and outputs.
///
/// # Errors
/// Reading or parsing the checkpoint's config.
pub fn config_differences(dir: &Path, current: &TrainConfig) -> Result<Vec<String>> {
    let path = dir.join(CONFIG_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| TrainError::io(&path, e))?;
    let saved: toml::Value = toml::from_str(&text).map_err(|e| TrainError::ConfigParse {
        path: Some(path.clone()),
        message: e.to_string(),
    })?;
    let now: toml::Value =
        toml::from_str(&current.to_toml_string()?).map_err(|e| TrainError::ConfigParse {
            path: None,
            message: e.to_string(),
        })?;
    let mut out = Vec::new();
    diff("", &saved, &now, &mut out);
    const HARMLESS: [&str; 8] = [
        "trainer.steps",
        "trainer.eval_every",
        "trainer.eval_pairs",
        "trainer.checkpoint_every",
        "trainer.keep_last",
        "trainer.log_examples_every",
        "trainer.max_consecutive_nonfinite",
        "output.",
    ];
    out.retain(|k| !k.starts_with("eval.") && !HARMLESS.iter().any(|h| k.starts_with(h)));
    Ok(out)
}

fn diff(prefix: &str, a: &toml::Value, b: &toml::Value, out: &mut Vec<String>) {
    match (a, b) {
        (toml::Value::Table(x), toml::Value::Table(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                match (x.get(k), y.get(k)) {
                    (Some(va), Some(vb)) => diff(&path, va, vb, out),
                    _ => out.push(path),
                }
            }
        }
        _ if a != b => out.push(prefix.to_string()),
        _ => {}
    }
}

/// Advances the model's LoRA-dropout stream by `forwards` training forwards, so that a
/// resumed run draws the dropout masks of the uninterrupted one.
///
/// thinkjudge-model keeps the stream position private (a counter of `Mode::Train`
/// forwards); until it exposes a setter, one-token training forwards advance it.
///
/// # Errors
/// Forward errors.
pub fn advance_lora_dropout(model: &Llama, forwards: u64, device: &Device) -> Result<()> {
    let ids = Tensor::new(&[[0u32]], device)?;
    let mask = ids.ones_like()?;
    for _ in 0..forwards {
        model.forward(&ids, &mask, &mut model.new_cache(), Mode::Train)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_skip_cadence_and_name_the_rest() {
        let v = |s: &str| -> toml::Value { toml::from_str(s).unwrap_or(toml::Value::Integer(0)) };
        let mut out = Vec::new();
        diff(
            "",
            &v("[optim]\nlr = 1\n[trainer]\nsteps = 3"),
            &v("[optim]\nlr = 2\n[trainer]\nsteps = 5"),
            &mut out,
        );
        assert_eq!(out, vec!["optim.lr", "trainer.steps"]);
    }
}
