//! The `thinkjudge` binary end to end, offline, on tiny random-weight models: `train` from a
//! TOML config, `eval` (greedy and SC@N) and `judge` (stdin) of the checkpoint it wrote,
//! `convert` of a GGUF file, `--help` of every command, and clear errors on bad input.

mod common;
#[path = "../crates/model/tests/io_fixtures/mod.rs"]
mod io_fixtures;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use anyhow::{Context, Result};
use thinkjudge_model::{load, ModelSource};

/// Runs the binary with `args` (and `stdin` piped in, when given).
fn thinkjudge(args: &[&str], stdin: Option<&str>) -> Result<Output> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_thinkjudge"));
    cmd.args(args)
        .env("RUST_LOG", "warn")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().context("starting thinkjudge")?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())?;
    }
    Ok(child.wait_with_output()?)
}

/// Runs the binary and requires success; returns stdout.
fn ok(args: &[&str], stdin: Option<&str>) -> Result<String> {
    let out = thinkjudge(args, stdin)?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    anyhow::ensure!(
        out.status.success(),
        "thinkjudge {args:?} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(stdout)
}

/// Runs the binary and requires exit code 1 with `error: ` on stderr; returns stderr.
fn fails(args: &[&str], stdin: Option<&str>) -> Result<String> {
    let out = thinkjudge(args, stdin)?;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "thinkjudge {args:?}: {stderr}");
    assert!(stderr.contains("error: "), "thinkjudge {args:?}: {stderr}");
    Ok(stderr)
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

#[test]
fn every_command_has_help() -> Result<()> {
    let top = ok(&["--help"], None)?;
    for command in ["train", "eval", "judge", "convert", "fetch-default"] {
        assert!(
            top.contains(command),
            "--help does not list {command}:\n{top}"
        );
        let help = ok(&[command, "--help"], None)?;
        assert!(
            help.contains(&format!("Usage: thinkjudge {command}")),
            "{command} --help:\n{help}"
        );
    }
    Ok(())
}

#[test]
fn train_then_eval_and_judge_the_checkpoint() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut cfg = common::task_config(dir.path(), 3)?;
    cfg.trainer.eval_pairs = Some(4);
    let config = dir.path().join("run.toml");
    std::fs::write(&config, cfg.to_toml_string()?)?;
    let run_dir = dir.path().join("run");

    // train: two steps, overriding the config's 150.
    let out = ok(
        &["train", "--config", path(&config), "--max-steps", "2"],
        None,
    )?;
    assert!(out.contains("2 steps in"), "{out}");
    assert!(out.contains("accuracy"), "no before/after table:\n{out}");
    for file in ["config.toml", "metrics.jsonl", "summary.json", "curves.png"] {
        assert!(run_dir.join(file).is_file(), "the run wrote no {file}");
    }
    assert!(run_dir.join("checkpoints/step-000002").is_dir());
    // Without --resume a second run into the same directory is refused.
    let e = fails(
        &["train", "--config", path(&config), "--max-steps", "2"],
        None,
    )?;
    assert!(e.contains("checkpoint"), "{e}");

    // eval of the run directory (its newest checkpoint, its prompts), greedy.
    let data = dir.path().join("even.jsonl");
    let json = dir.path().join("metrics.json");
    let out = ok(
        &[
            "eval",
            "--checkpoint",
            path(&run_dir),
            "--data",
            path(&data),
            "--format",
            "jsonl",
            "--pairs",
            "6",
            "--json",
            path(&json),
        ],
        None,
    )?;
    assert!(out.contains("consistent accuracy"), "{out}");
    let m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json)?)?;
    let all = &m["all"];
    assert_eq!(all["pairs"], 6, "{m}");
    assert_eq!(all["prompts"], 12, "{m}");
    assert_eq!(all["samples_per_prompt"], 1, "{m}");
    let accuracy = all["accuracy"].as_f64().unwrap_or(-1.0);
    assert!((0.0..=1.0).contains(&accuracy), "{m}");

    // SC@3 on the same pairs.
    ok(
        &[
            "eval",
            "--checkpoint",
            path(&run_dir),
            "--data",
            path(&data),
            "--format",
            "jsonl",
            "--pairs",
            "2",
            "--samples",
            "3",
            "--json",
            path(&json),
        ],
        None,
    )?;
    let m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json)?)?;
    assert_eq!(m["all"]["samples_per_prompt"], 3, "{m}");
    assert_eq!(m["all"]["pairs"], 2, "{m}");

    // judge one pair from stdin, in both orders.
    let out = ok(
        &["judge", "--checkpoint", path(&run_dir), "--both-orders"],
        Some(r#"{"prompt": "even", "a": "12", "b": "7"}"#),
    )?;
    assert!(out.contains("== order AB"), "{out}");
    assert!(out.contains("== order BA"), "{out}");
    assert_eq!(out.matches("verdict: ").count(), 2, "{out}");
    Ok(())
}

#[test]
fn convert_writes_an_hf_directory_that_loads_back() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let config = io_fixtures::tiny_config(false);
    let tensors = io_fixtures::tiny_tensors(&config)?;
    let gguf = dir.path().join("tiny.gguf");
    io_fixtures::write_tiny_gguf(&gguf, &config, &tensors, &Default::default())?;
    let out_dir = dir.path().join("hf");

    let out = ok(&["convert", path(&gguf), path(&out_dir)], None)?;
    assert!(out.contains("2 layers, hidden 32"), "{out}");
    let loaded = load(
        &ModelSource::Dir(out_dir.clone()),
        &candle_core::Device::Cpu,
    )?;
    assert_eq!(loaded.config.num_layers, config.num_layers);
    assert_eq!(loaded.config.vocab_size, config.vocab_size);
    for (name, t) in &tensors {
        io_fixtures::assert_same(name, loaded.weights.get(name)?, t)?;
    }

    // Not a GGUF file: a clear error, exit code 1.
    let e = fails(
        &[
            "convert",
            path(&dir.path().join("missing.gguf")),
            path(&out_dir),
        ],
        None,
    )?;
    assert!(e.contains("missing.gguf"), "{e}");
    Ok(())
}

#[test]
fn bad_input_is_refused_with_a_message() -> Result<()> {
    let dir = tempfile::tempdir()?;
    // judge: stdin that is not the documented JSON object.
    let e = fails(&["judge"], Some("not json"))?;
    assert!(e.contains("stdin is not a JSON object"), "{e}");
    let e = fails(&["judge", "--prompt", "2+2?"], None)?;
    assert!(e.contains("--a"), "{e}");
    // eval: an unknown format names the known ones.
    let e = fails(&["eval", "--data", "x.jsonl", "--format", "csv"], None)?;
    assert!(e.contains("rewardbench"), "{e}");
    // train: a missing file, and a config with a misspelt key.
    let missing = dir.path().join("nope.toml");
    let e = fails(&["train", "--config", path(&missing)], None)?;
    assert!(e.contains("nope.toml"), "{e}");
    let typo = dir.path().join("typo.toml");
    std::fs::write(&typo, "[trainer]\nstepz = 3\n")?;
    let e = fails(&["train", "--config", path(&typo)], None)?;
    assert!(e.contains("stepz"), "{e}");
    Ok(())
}
