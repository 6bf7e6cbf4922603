//! Crash safety with real processes: `thinkjudge train --resume` on the tiny test task is
//! SIGKILLed once deterministically in the middle of a checkpoint write (the checkpoint
//! module's test hook, `THINKJUDGE_TEST_PAUSE_BEFORE_MANIFEST`, pauses the save of step 4
//! after its files and before its manifest) and then at seeded random moments, and resumed
//! each time until it finishes.
//!
//! After every kill: each `step-*` directory verifies against its manifest (a half-written
//! checkpoint never carries a checkpoint's name), and the newest one never goes back (the
//! next session continues from the last complete checkpoint). At the end the final
//! checkpoint's weights, optimizer state and trainer state (less wall-clock totals) and the
//! metrics (less timings) are byte for byte those of an uninterrupted run.
//!
//! The random delays are seeded, but where a kill lands depends on the machine's speed; the
//! delays are drawn within the uninterrupted run's measured duration so that they spread
//! over the whole run (start-up, steps, evaluations, checkpoint writes and pruning).

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use thinkjudge::checkpoint::{self, PAUSE_BEFORE_MANIFEST_ENV, PAUSE_MARKER};
use thinkjudge::config::FinetuneKind;

const BIN: &str = env!("CARGO_BIN_EXE_thinkjudge");
const STEPS: u64 = 8;
/// The step whose checkpoint write is paused and killed.
const PAUSED_STEP: u64 = 4;
/// Random kills after the deterministic one.
const RANDOM_KILLS: usize = 6;
const SEED: u64 = 0x5EED_C4A5;
/// Longest a single child may run before the test gives up on it.
const CHILD_TIMEOUT: Duration = Duration::from_secs(60);

/// Writes the run config (8 steps of full fine-tuning with a KL reference, checkpoints every
/// 2 steps keeping 2, so pruning runs too) under `dir` and returns its path.
fn write_config(dir: &Path) -> Result<PathBuf> {
    let mut cfg = common::task_config(dir, 9)?;
    cfg.model.finetune = FinetuneKind::Full;
    cfg.loss.kl_coef = 0.05;
    let t = &mut cfg.trainer;
    t.steps = STEPS;
    t.pairs_per_step = 6;
    t.micro_batch_prompts = 5;
    t.mini_batches = 2;
    t.ppo_epochs = 2;
    t.checkpoint_every = 2;
    t.keep_last = 2;
    t.eval_every = 3;
    t.eval_pairs = Some(4);
    t.log_examples_every = 1;
    cfg.validate()?;
    let path = dir.join("train.toml");
    std::fs::write(&path, cfg.to_toml_string()?)?;
    Ok(path)
}

/// A `thinkjudge train --resume` child whose stderr is collected (and watched for the
/// hook's marker).
struct Run {
    child: Child,
    log: Arc<Mutex<String>>,
    paused: mpsc::Receiver<()>,
}

impl Run {
    fn start(config: &Path, pause_at: Option<u64>) -> Result<Self> {
        let mut cmd = Command::new(BIN);
        cmd.args(["train", "--resume", "--config"])
            .arg(config)
            .env("RUST_LOG", "info")
            .env_remove(PAUSE_BEFORE_MANIFEST_ENV)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(step) = pause_at {
            cmd.env(PAUSE_BEFORE_MANIFEST_ENV, step.to_string());
        }
        let mut child = cmd.spawn().context("starting thinkjudge")?;
        let stderr = child.stderr.take().context("no stderr pipe")?;
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, paused) = mpsc::channel();
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(|l| l.ok()) {
                if line.contains(PAUSE_MARKER) {
                    let _ = tx.send(());
                }
                if let Ok(mut s) = sink.lock() {
                    s.push_str(&line);
                    s.push('\n');
                }
            }
        });
        Ok(Run { child, log, paused })
    }

    fn log(&self) -> String {
        self.log.lock().map(|s| s.clone()).unwrap_or_default()
    }

    fn kill(mut self) -> Result<()> {
        self.child.kill()?; // SIGKILL on Unix
        self.child.wait()?;
        Ok(())
    }

    /// Waits up to `delay`: `true` when the run finished (successfully) by then, `false`
    /// when it was killed at `delay`.
    fn kill_after(mut self, delay: Duration) -> Result<bool> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                ensure!(
                    status.success(),
                    "thinkjudge failed ({status}):\n{}",
                    self.log()
                );
                return Ok(true);
            }
            if started.elapsed() >= delay {
                self.kill()?;
                return Ok(false);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn finish(self) -> Result<()> {
        ensure!(
            self.kill_after(CHILD_TIMEOUT)?,
            "thinkjudge did not finish within {CHILD_TIMEOUT:?}"
        );
        Ok(())
    }
}

/// Every `step-*` directory verifies (and is the step its name says); returns the newest.
fn check_checkpoints(checkpoints: &Path) -> Result<Option<u64>> {
    let mut newest = None;
    for (step, dir) in checkpoint::list(checkpoints)? {
        match checkpoint::verify(&dir) {
            Ok(m) if m.step == step => newest = newest.max(Some(step)),
            Ok(m) => bail!("{} holds step {}", dir.display(), m.step),
            Err(problem) => bail!("{} is half-written: {problem}", dir.display()),
        }
    }
    let (latest, refused) = checkpoint::latest_valid(checkpoints)?;
    ensure!(refused.is_empty(), "refused: {refused:?}");
    ensure!(latest.map(|l| l.0) == newest, "latest_valid disagrees");
    Ok(newest)
}

/// Temporary directories of interrupted saves of `step`.
fn partial_saves(checkpoints: &Path, step: u64) -> Result<Vec<PathBuf>> {
    let prefix = format!("{}.tmp-", checkpoint::dir_name(step));
    Ok(std::fs::read_dir(checkpoints)?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .collect())
}

/// What must be equal between two finished runs: the final checkpoint's files (trainer
/// state less wall-clock totals and evaluation timings; not the config, which names the run
/// directory) and the metrics (less timings).
fn outcome(run_dir: &Path) -> Result<Vec<(String, Vec<u8>)>> {
    let last = run_dir
        .join("checkpoints")
        .join(checkpoint::dir_name(STEPS));
    let manifest = checkpoint::verify(&last).map_err(anyhow::Error::msg)?;
    let mut out = Vec::new();
    for f in &manifest.files {
        let bytes = std::fs::read(last.join(&f.path))?;
        let bytes = match f.path.as_str() {
            "config.toml" => continue,
            "trainer_state.json" => {
                let mut v: serde_json::Value = serde_json::from_slice(&bytes)?;
                let o = v.as_object_mut().context("state is not an object")?;
                o.remove("totals").context("no totals")?;
                for eval in ["baseline_eval", "last_eval"] {
                    let m = o.get_mut(eval).and_then(|m| m.as_object_mut());
                    m.context("no evaluation")?.remove("timing");
                }
                serde_json::to_vec(&v)?
            }
            _ => bytes,
        };
        out.push((f.path.clone(), bytes));
    }
    let metrics = common::deterministic_metrics(&run_dir.join("metrics.jsonl"))?;
    out.push(("metrics.jsonl".into(), serde_json::to_vec(&metrics)?));
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run_dir.join("summary.json"))?)?;
    ensure!(summary["completed"] == true && summary["steps"] == STEPS);
    Ok(out)
}

#[test]
fn sigkill_at_random_points_then_resume_equals_an_uninterrupted_run() -> Result<()> {
    // Uninterrupted, timed.
    let a = tempfile::tempdir()?;
    let started = Instant::now();
    Run::start(&write_config(a.path())?, None)?.finish()?;
    let duration = started.elapsed();
    let want = outcome(&a.path().join("run"))?;

    let b = tempfile::tempdir()?;
    let config = write_config(b.path())?;
    let checkpoints = b.path().join("run/checkpoints");

    // 1. Killed while the checkpoint of step 4 is written, before its manifest.
    let run = Run::start(&config, Some(PAUSED_STEP))?;
    match run.paused.recv_timeout(CHILD_TIMEOUT) {
        Ok(()) => run.kill()?,
        Err(_) => bail!(
            "the save of step {PAUSED_STEP} never paused:\n{}",
            run.log()
        ),
    }
    let partial = partial_saves(&checkpoints, PAUSED_STEP)?;
    ensure!(partial.len() == 1, "one partial save: {partial:?}");
    ensure!(partial[0].join(thinkjudge::trainer::STATE_FILE).exists());
    ensure!(!partial[0].join(checkpoint::MANIFEST).exists());
    let mut newest = check_checkpoints(&checkpoints)?;
    ensure!(newest == Some(PAUSED_STEP - 2), "newest: {newest:?}");

    // 2. Killed at seeded random moments; each session resumes from the newest checkpoint.
    let mut rng = ChaCha8Rng::seed_from_u64(SEED);
    let (mut kills, mut finished) = (1, false);
    for _ in 0..RANDOM_KILLS {
        let delay = duration.mul_f64(rng.random_range(0.0..1.0));
        finished = Run::start(&config, None)?.kill_after(delay)?;
        let now = check_checkpoints(&checkpoints)?;
        ensure!(
            now >= newest,
            "checkpoints went back from {newest:?} to {now:?}"
        );
        newest = now;
        if finished {
            break;
        }
        kills += 1;
    }

    // 3. To the end; the finished run leaves no temporary directories behind.
    if !finished {
        Run::start(&config, None)?.finish()?;
    }
    let left: Vec<String> = std::fs::read_dir(&checkpoints)?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp-") || n.contains(".old-"))
        .collect();
    ensure!(left.is_empty(), "left behind: {left:?}");
    eprintln!("{kills} kills; uninterrupted run {duration:?}");
    let got = outcome(&b.path().join("run"))?;
    ensure!(
        got.len() == want.len(),
        "different files in the final checkpoint"
    );
    for ((name, x), (other, y)) in want.iter().zip(&got) {
        ensure!(name == other, "{name} vs {other}");
        ensure!(x == y, "{name} differs from the uninterrupted run's");
    }
    Ok(())
}
