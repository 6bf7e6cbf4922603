//! The exact message of each malformed input a user hands the trainer, as `thinkjudge train`
//! prints it: it names the file, the line, field, key or tensor, and the problem. Each test
//! goes through the public entry points (`TrainConfig::from_file`, `Trainer::open`) with one
//! thing broken; the temporary directory is written `<tmp>` in the expected messages.
//! docs/reliability.md lists these next to the crates' own tests of the same inputs.

mod common;

use std::path::Path;

use anyhow::Result;
use candle_core::{DType, Device};
use thinkjudge::config::{DataSource, EvalData};
use thinkjudge::{StartOptions, TrainConfig, Trainer};
use thinkjudge_data::DataFormat;
use thinkjudge_model::{save_hf_model, ModelConfig, ModelSource, SaveDtype};

/// The message of `Trainer::open(cfg)`'s error, with `tmp` written `<tmp>`.
fn open_error(cfg: TrainConfig, tmp: &Path) -> String {
    let options = StartOptions {
        quiet: true,
        ..StartOptions::default()
    };
    match Trainer::open(cfg, options) {
        Ok(_) => "no error".into(),
        Err(e) => relative(&e.to_string(), tmp),
    }
}

fn relative(msg: &str, tmp: &Path) -> String {
    msg.replace(&tmp.display().to_string(), "<tmp>")
}

/// The task config with its training data replaced by `lines` (generic JSONL).
fn with_data(tmp: &Path, lines: &[&str]) -> Result<TrainConfig> {
    let mut cfg = common::task_config(tmp, 1)?;
    let path = tmp.join("pairs.jsonl");
    std::fs::write(&path, lines.join("\n"))?;
    cfg.data.train = vec![DataSource::File {
        path,
        format: DataFormat::Jsonl,
        load: Default::default(),
    }];
    cfg.data.eval = EvalData::None {};
    Ok(cfg)
}

const GOOD: &str =
    r#"{"id": "1", "prompt": "even", "responses": ["2", "3"], "preference": "first"}"#;
const GOOD2: &str =
    r#"{"id": "2", "prompt": "even", "responses": ["5", "4"], "preference": "second"}"#;

#[test]
fn a_bad_jsonl_line_names_the_file_and_line() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let cfg = with_data(tmp.path(), &[GOOD, r#"{"id": "2", "prompt": "even""#])?;
    assert_eq!(
        open_error(cfg, tmp.path()),
        "<tmp>/pairs.jsonl: line 2: invalid JSON: EOF while parsing an object at line 1 column 28"
    );
    Ok(())
}

#[test]
fn a_missing_field_names_the_file_line_and_field() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let cfg = with_data(
        tmp.path(),
        &[
            GOOD,
            GOOD2,
            r#"{"id": "3", "prompt": "even", "preference": "first"}"#,
        ],
    )?;
    assert_eq!(
        open_error(cfg, tmp.path()),
        "<tmp>/pairs.jsonl: line 3: field `responses`: missing (a pairwise record has \
         `responses` and `preference`, or `chosen` and `rejected`)"
    );
    Ok(())
}

#[test]
fn an_unknown_config_key_names_the_file_line_and_key() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let path = tmp.path().join("train.toml");
    std::fs::write(
        &path,
        "[trainer]\nsteps = 10\n\n[optim]\nlearning_rate = 1e-6\n",
    )?;
    let e = TrainConfig::from_file(&path).unwrap_err().to_string();
    assert_eq!(
        relative(&e, tmp.path()),
        "<tmp>/train.toml: TOML parse error at line 5, column 1\n  |\n5 | learning_rate = 1e-6\n  \
         | ^^^^^^^^^^^^^\nunknown field `learning_rate`, expected one of `schedule`, `beta1`, \
         `beta2`, `eps`, `weight_decay`, `no_decay`, `max_grad_norm`"
    );
    Ok(())
}

#[test]
fn an_out_of_range_hyperparameter_names_the_file_key_and_range() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let path = tmp.path().join("train.toml");
    for (text, want) in [
        (
            "[optim]\nweight_decay = -1.0\n",
            "<tmp>/train.toml: invalid config: optim.weight_decay: -1 must be finite and ≥ 0",
        ),
        (
            "[rollout]\ngroup_size = 1\n",
            "<tmp>/train.toml: config `rollout.group_size`: must be >= 2 (group-relative \
             advantages of a single sample are 0; only loss.verdict_gradient = \"expected\" \
             trains with 1), got 1",
        ),
        (
            "[rollout.sampling]\ntemperature = -0.5\n",
            "<tmp>/train.toml: config `rollout.sampling`: invalid sampling config: temperature = \
             -0.5 must be finite and > 0 (use decoding = \"greedy\" for argmax)",
        ),
    ] {
        std::fs::write(&path, text)?;
        let e = TrainConfig::from_file(&path).unwrap_err().to_string();
        assert_eq!(relative(&e, tmp.path()), want, "{text}");
    }
    Ok(())
}

#[test]
fn truncated_weights_name_the_file_and_tensor() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let cfg = common::task_config(tmp.path(), 1)?;
    let weights = tmp.path().join("tiny-model/model.safetensors");
    let len = std::fs::metadata(&weights)?.len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&weights)?
        .set_len(len - 100)?;
    assert_eq!(
        open_error(cfg, tmp.path()),
        "<tmp>/tiny-model/model.safetensors: tensor \"model.norm.weight\": file is truncated: \
         the tensor's data ends at byte 88752 but the file has only 88652 bytes"
    );
    Ok(())
}

#[test]
fn a_tokenizer_larger_than_the_models_vocab_names_both() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let mut cfg = common::task_config(tmp.path(), 1)?;
    let tok = common::tokenizer()?;
    let mut model_cfg = ModelConfig::tiny(tok.vocab_size() - 8);
    model_cfg.eos_token_ids = vec![1];
    let weights = thinkjudge_model::init::random_weights(&model_cfg, 1, DType::F32, &Device::Cpu)?;
    let tensors: Vec<_> = weights
        .iter()
        .map(|(n, t)| (n.to_string(), t.clone()))
        .collect();
    let dir = tmp.path().join("small-vocab");
    save_hf_model(&dir, &model_cfg, &tensors, SaveDtype::F32, None)?;
    tok.save_to_dir(&dir)?;
    cfg.model.source = ModelSource::Dir(dir);
    assert_eq!(
        open_error(cfg, tmp.path()),
        "tokenizer <tmp>/small-vocab/tokenizer.json has 48 tokens (highest id 47) but the model \
         <tmp>/small-vocab has vocab_size 40"
    );
    Ok(())
}

#[test]
fn a_forced_close_that_does_not_end_before_the_verdict_is_refused() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let mut cfg = common::task_config(tmp.path(), 1)?;
    cfg.loss.verdict_gradient = thinkjudge_rl::VerdictGradient::Expected;
    cfg.rollout.group_size = 1;
    let thinking = &mut cfg.rollout.sampling.thinking;
    thinking.max_thought_tokens = Some(0);
    thinking.min_thought_tokens = 0;
    thinking.forced_close = "\n</think>\n".into(); // no `<answer>`: the letter cannot follow
    assert_eq!(
        open_error(cfg, tmp.path()),
        "config `rollout.sampling.thinking.forced_close`: with a thought budget of 0 and \
         loss.verdict_gradient = \"expected\" the forced close must end right before the \
         verdict letter (e.g. \"\\n</think>\\n<answer>[[\"); \"\\n</think>\\n\" followed by \
         the letter reads \"</think> [[A]]</answer>\""
    );
    Ok(())
}
