//! `thinkjudge train`: a run from a TOML config.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use thinkjudge::config::DeviceSpec;
use thinkjudge::{plot, EvalMetrics, Resume, StartOptions, TrainConfig, Trainer};

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// The run config (TOML; see examples/configs/).
    #[arg(long)]
    config: PathBuf,
    /// Run directory [default: the config's output.run_dir].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Seed [default: the config's trainer.seed].
    #[arg(long)]
    seed: Option<u64>,
    /// Training steps [default: the config's trainer.steps].
    #[arg(long)]
    max_steps: Option<u64>,
    /// Device: cpu or cuda:N [default: the config's model.device].
    #[arg(long)]
    device: Option<String>,
    /// Continue from the run directory's newest valid checkpoint (start fresh if it has none).
    #[arg(long)]
    resume: bool,
}

pub fn run(args: TrainArgs) -> Result<()> {
    let mut config = TrainConfig::from_file(&args.config)?;
    if let Some(out) = args.out {
        config.output.run_dir = out;
    }
    if let Some(seed) = args.seed {
        config.trainer.seed = seed;
    }
    if let Some(steps) = args.max_steps {
        config.trainer.steps = steps;
    }
    if let Some(device) = &args.device {
        config.model.device = device.parse::<DeviceSpec>()?;
    }
    let options = StartOptions {
        resume: if args.resume {
            Resume::IfPossible
        } else {
            Resume::Never
        },
        ..StartOptions::default()
    };
    let mut trainer = Trainer::open(config, options)?;
    let summary = trainer.run()?;
    let paths = trainer.paths();
    let png = paths.run_dir.join("curves.png");
    plot::plot_metrics(&paths.metrics, &png).context("plotting the training curves")?;
    if let (Some(before), Some(after)) = (&summary.before, &summary.after) {
        println!("{}", EvalMetrics::table(&[before, after]));
    }
    println!(
        "{} steps in {:.0} s ({:.0} rollout tokens/s, {:.0} train tokens/s)",
        summary.steps,
        summary.wall_seconds,
        summary.rollout_tokens_per_s,
        summary.train_tokens_per_s
    );
    println!(
        "run directory: {} (config.toml, metrics.jsonl, summary.json, curves.png)",
        paths.run_dir.display()
    );
    if let Some(c) = &summary.last_checkpoint {
        println!("checkpoint: {}", c.display());
    }
    Ok(())
}
