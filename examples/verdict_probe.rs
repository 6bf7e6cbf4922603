//! Can this model learn this task's verdict at all? A supervised probe to run before RL.
//!
//! ```bash
//! cargo run --release --example train_pairwise -- --print-config > run.toml   # edit it
//! cargo run --release --example verdict_probe -- --config run.toml --pairs 400
//! ```
//!
//! Builds the run's data like the trainer (same template, split and tokenization), then
//! fine-tunes the run's trainable weights (LoRA or full) with plain cross-entropy on the gold
//! verdict letter — no sampling, no thought: each prompt is followed by the config's
//! `forced_close`, which must end right before the letter (e.g. `"\n</think>\n<answer>[["`).
//! Every `--eval-every` updates it reports, over the held-out pairs in both orders: accuracy
//! and position-consistent accuracy of the letter with the larger probability, and the mean
//! margin `log p(gold letter) − log p(other letter)` (> 0 is right; it moves before the
//! accuracies do).
//!
//! Supervised labels are the strongest signal a task's data can give; GRPO on the same pairs
//! sees less (sampled verdicts, saturating log-prob gradients). If the margin does not move
//! here within a budget of pairs, RL on that budget will not teach the verdict either. Lines
//! go to stdout and `<out>/probe.jsonl`; the resolved config to `<out>/config.toml`.
//!
//! The README's probe table came from these runs (in the repository root; the no-reference
//! one took 806 s on 2 cores):
//! `--config docs/results/verdict_probe/reference/config.toml --pairs 480 --eval-pairs 32`,
//! and the same with `no_reference/`.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Tensor};
use clap::Parser;
use thinkjudge::dataset::EncodedPrompt;
use thinkjudge::{StartOptions, TrainConfig, Trainer};
use thinkjudge_data::Side;
use thinkjudge_model::{load, Llama, Mode};
use thinkjudge_rl::AdamW;
use thinkjudge_rollout::score_completions;

#[path = "common/run.rs"]
mod run;

#[derive(Debug, Parser)]
#[command(about = "Supervised verdict probe: can the model learn this task's verdict at all?")]
struct Args {
    /// Training pairs (each in both orders).
    #[arg(long, default_value_t = 400)]
    pairs: usize,
    /// Prompts per optimizer update (even keeps both orders of a pair together).
    #[arg(long, default_value_t = 16)]
    batch_prompts: usize,
    /// Updates between evaluations.
    #[arg(long, default_value_t = 10)]
    eval_every: usize,
    /// Held-out pairs evaluated (each in both orders).
    #[arg(long, default_value_t = 32)]
    eval_pairs: usize,
    /// Run directory.
    #[arg(long, default_value = "runs/verdict_probe")]
    out: PathBuf,
    #[command(flatten)]
    run: run::RunArgs,
}

/// The probe's view of the model: log-probs of a verdict letter after `prompt ‖ forced_close`.
struct Probe<'a> {
    model: &'a Llama,
    suffix: Vec<u32>,
    letters: [u32; 2],
}

impl Probe<'_> {
    /// `log p(letter)` for `letters.len() / B` letters per prompt (prompt-major), scored by the
    /// trainer's shared-prefix forward (`score_completions`, each prompt prefilled once) with
    /// the completions `forced_close ‖ letter`.
    ///
    /// # Shapes
    /// `prompts.len()` = B, `letters.len()` = B·G → (B·G,) in f32.
    fn letter_logprobs(
        &self,
        prompts: &[&EncodedPrompt],
        letters: &[u32],
        mode: Mode,
    ) -> Result<Tensor> {
        let ids: Vec<Vec<u32>> = prompts.iter().map(|p| p.ids.clone()).collect();
        let completions: Vec<Vec<u32>> = letters
            .iter()
            .map(|&l| [&self.suffix[..], &[l]].concat())
            .collect();
        let group = letters.len() / prompts.len().max(1);
        let scores = score_completions(self.model, &ids, &completions, group, 1.0, mode)?;
        let last = self.suffix.len();
        Ok(scores
            .logprobs
            .narrow(1, last, 1)?
            .to_dtype(DType::F32)?
            .flatten_all()?)
    }

    fn gold(&self, p: &EncodedPrompt) -> Result<(u32, u32)> {
        let [a, b] = self.letters;
        match p.prompt.gold_side {
            Some(Side::A) => Ok((a, b)),
            Some(Side::B) => Ok((b, a)),
            _ => bail!(
                "prompt of {} has no gold side (pairwise data only)",
                p.prompt.pair_id
            ),
        }
    }
}

#[derive(serde::Serialize)]
struct Line {
    update: usize,
    pairs_seen: usize,
    accuracy: f64,
    consistent_accuracy: f64,
    mean_margin: f64,
    seconds: f64,
}

fn evaluate(probe: &Probe, trainer: &Trainer) -> Result<(f64, f64, f64)> {
    let (mut right, mut consistent, mut margin, mut n) = (0usize, 0usize, 0f64, 0usize);
    let units = &trainer.data().eval;
    for unit in units {
        let prompts: Vec<&EncodedPrompt> = unit.prompts.iter().collect();
        let letters: Vec<u32> = prompts
            .iter()
            .map(|p| probe.gold(p).map(|(good, bad)| [good, bad]))
            .collect::<Result<Vec<_>>>()?
            .concat();
        let lp: Vec<f32> = probe
            .letter_logprobs(&prompts, &letters, Mode::Infer)?
            .to_vec1()?;
        let m: Vec<f32> = lp.chunks(2).map(|gb| gb[0] - gb[1]).collect();
        right += m.iter().filter(|&&x| x > 0.0).count();
        consistent += usize::from(m.iter().all(|&x| x > 0.0));
        margin += m.iter().map(|&x| f64::from(x)).sum::<f64>();
        n += m.len();
    }
    let n = n.max(1) as f64;
    Ok((
        right as f64 / n,
        consistent as f64 / units.len().max(1) as f64,
        margin / n,
    ))
}

fn main() -> Result<()> {
    thinkjudge::init_runtime();
    let args = Args::parse();
    let Some(cfg) = args
        .run
        .resolve(TrainConfig::cpu_default, &args.out, 1, args.eval_pairs)?
    else {
        return Ok(());
    };
    if args.batch_prompts == 0 || args.eval_every == 0 {
        bail!("--batch-prompts and --eval-every must be at least 1");
    }
    let forced = &cfg.rollout.sampling.thinking.forced_close;
    if !forced.ends_with("[[") {
        bail!(
            "rollout.sampling.thinking.forced_close = {forced:?} must end right before the \
             verdict letter, e.g. \"\\n</think>\\n<answer>[[\""
        );
    }
    let device = cfg.model.device.resolve()?;
    let loaded = load(&cfg.model.source, &device).context("loading the model")?;
    let trainer = Trainer::open(
        cfg.clone(),
        StartOptions {
            model: Some(loaded),
            ..StartOptions::default()
        },
    )?;
    let tokenizer = trainer.tokenizer();
    let letter = |s: &str| -> Result<u32> {
        match tokenizer.encode(s)?[..] {
            [id] => Ok(id),
            ref ids => bail!("the verdict letter {s:?} is {} tokens, not one", ids.len()),
        }
    };
    let probe = Probe {
        model: trainer.model(),
        suffix: tokenizer.encode(forced)?,
        letters: [letter("A")?, letter("B")?],
    };
    let mut optimizer = AdamW::new(probe.model.trainable_vars(), cfg.optim.clone())?;
    let prompts: Vec<&EncodedPrompt> = trainer
        .data()
        .train
        .iter()
        .take(args.pairs)
        .flat_map(|u| u.prompts.iter())
        .collect();
    let log_path = args.out.join("probe.jsonl");
    let mut log = std::fs::File::create(&log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    let started = Instant::now();
    let mut report = |update: usize, pairs_seen: usize| -> Result<()> {
        let (accuracy, consistent_accuracy, mean_margin) = evaluate(&probe, &trainer)?;
        let line = serde_json::to_string(&Line {
            update,
            pairs_seen,
            accuracy,
            consistent_accuracy,
            mean_margin,
            seconds: started.elapsed().as_secs_f64(),
        })?;
        println!("{line}");
        writeln!(log, "{line}")?;
        Ok(())
    };
    report(0, 0)?;
    let batches: Vec<_> = prompts.chunks(args.batch_prompts).collect();
    let mut seen = 0;
    for (i, batch) in batches.iter().enumerate() {
        let gold: Vec<u32> = batch
            .iter()
            .map(|p| probe.gold(p).map(|g| g.0))
            .collect::<Result<_>>()?;
        let loss = probe
            .letter_logprobs(batch, &gold, Mode::Train)?
            .mean_all()?
            .neg()?;
        let mut grads = optimizer.accumulator();
        grads.add(&loss.backward()?)?;
        if !optimizer.step(&grads)?.applied {
            bail!("update {}: non-finite gradient", i + 1);
        }
        seen += batch.len();
        if (i + 1) % args.eval_every == 0 || i + 1 == batches.len() {
            report(i + 1, seen / 2)?;
        }
    }
    Ok(())
}
