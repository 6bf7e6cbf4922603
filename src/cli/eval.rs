//! `thinkjudge eval`: judge metrics of a model or checkpoint on a dataset file.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use thinkjudge::config::DataSource;
use thinkjudge::dataset::{build_units, JudgeUnit};
use thinkjudge::eval::evaluate;
use thinkjudge::judging::label_threshold;
use thinkjudge::metrics::{ratio, EvalTiming};
use thinkjudge::EvalMetrics;
use thinkjudge_data::{DataFormat, Gsm8kConfig, LoadOptions, MathConfig};
use thinkjudge_rollout::Decoding;

use super::setup::{open_judge, JudgeModelArgs};

#[derive(Debug, Args)]
pub struct EvalArgs {
    #[command(flatten)]
    judge: JudgeModelArgs,
    /// The dataset file.
    #[arg(long)]
    data: PathBuf,
    /// Its format: jsonl, hh-rlhf, pandalm, judgebench, llmbar, rewardbench, libra; or
    /// gsm8k / math to synthesize correct-vs-wrong pairs from GSM8K / MATH-500 JSONL.
    #[arg(long)]
    format: String,
    /// Evaluate at most this many pairs (or pointwise items), in file order.
    #[arg(long)]
    pairs: Option<usize>,
    /// Skip malformed records (counted in the log) instead of failing.
    #[arg(long)]
    skip_invalid: bool,
    /// SC@N: sample N judgments per prompt and majority-vote them (scores are averaged).
    /// N > 1 samples at --temperature / --top-p; N = 1 decodes greedily.
    #[arg(long, default_value_t = 1)]
    samples: usize,
    /// Sampling temperature for --samples > 1.
    #[arg(long, default_value_t = 1.0)]
    temperature: f64,
    /// Nucleus top-p for --samples > 1 (J1 v3 uses 0.95).
    #[arg(long, default_value_t = 0.95)]
    top_p: f64,
    /// Seed of the SC@N samples.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Also report each subset (e.g. RewardBench's) on its own.
    #[arg(long)]
    by_subset: bool,
    /// Write the metrics as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn source(args: &EvalArgs) -> Result<DataSource> {
    Ok(match args.format.as_str() {
        "gsm8k" => DataSource::Gsm8k {
            path: args.data.clone(),
            synth: Gsm8kConfig::default(),
        },
        "math" => DataSource::Math {
            path: args.data.clone(),
            synth: MathConfig::default(),
        },
        name => DataSource::File {
            path: args.data.clone(),
            format: name.parse::<DataFormat>()?,
            load: LoadOptions {
                skip_invalid: args.skip_invalid,
                limit: None,
            },
        },
    })
}

pub fn run(args: EvalArgs) -> Result<()> {
    let source = source(&args)?;
    let mut judge = open_judge(&args.judge)?;
    let cfg = &mut judge.config;
    if args.samples > 1 {
        cfg.eval.decoding = Decoding::Sample;
        cfg.eval.temperature = args.temperature;
        cfg.eval.top_p = args.top_p;
    }
    cfg.eval.samples_per_prompt = args.samples;
    cfg.validate()?;
    let cfg = &judge.config;
    eprintln!("judge: {}", judge.description);
    let units = build_units(cfg, &[source], args.pairs, &judge.tokenizer)
        .with_context(|| format!("reading {}", args.data.display()))?;
    anyhow::ensure!(!units.is_empty(), "no items to evaluate");
    let groups = if args.by_subset {
        group_by_subset(units)
    } else {
        BTreeMap::from([("all".to_string(), units)])
    };
    let sampling = cfg.eval.sampling(&cfg.rollout.sampling, args.seed);
    let threshold = label_threshold(&cfg.reward);
    let mut results: Vec<(String, EvalMetrics)> = Vec::new();
    for (name, units) in &groups {
        eprintln!("evaluating {name}: {} items", units.len());
        let m = evaluate(
            &judge.model,
            &judge.tokenizer,
            units,
            sampling.clone(),
            args.samples,
            threshold,
            0,
        )?;
        results.push((name.clone(), m));
    }
    if results.len() > 1 {
        let all: Vec<&EvalMetrics> = results.iter().map(|(_, m)| m).collect();
        let overall = combine(&all);
        results.push(("all".into(), overall));
    }
    print_results(&results);
    if let Some(path) = &args.json {
        let value: serde_json::Map<String, serde_json::Value> = results
            .iter()
            .map(|(name, m)| Ok((name.clone(), serde_json::to_value(m)?)))
            .collect::<Result<_>>()?;
        std::fs::write(path, serde_json::to_string_pretty(&value)?)
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

fn group_by_subset(units: Vec<JudgeUnit>) -> BTreeMap<String, Vec<JudgeUnit>> {
    let mut groups: BTreeMap<String, Vec<JudgeUnit>> = BTreeMap::new();
    for unit in units {
        let p = &unit.prompts[0].prompt;
        let name = p
            .subset
            .clone()
            .or_else(|| p.source.clone())
            .unwrap_or_else(|| "-".into());
        groups.entry(name).or_default().push(unit);
    }
    groups
}

fn print_results(results: &[(String, EvalMetrics)]) {
    if results.len() > 1 {
        for (name, m) in results {
            println!("{name}: {} items", m.pairs);
        }
        println!();
    }
    let columns: Vec<&EvalMetrics> = results.iter().map(|(_, m)| m).collect();
    let table = EvalMetrics::table(&columns);
    // The table's columns are headed by step; name them by subset instead.
    let mut lines = table.lines();
    if let Some(_header) = lines.next() {
        let mut header = format!("{:<22}", "metric");
        for (name, _) in results {
            let short: String = name.chars().take(13).collect();
            header.push_str(&format!("{short:>14}"));
        }
        println!("{header}");
    }
    for line in lines {
        println!("{line}");
    }
}

/// Pools per-subset metrics into overall ones, each rate weighted by what it counts.
fn combine(parts: &[&EvalMetrics]) -> EvalMetrics {
    let sum = |f: &dyn Fn(&EvalMetrics) -> f64| parts.iter().map(|m| f(m)).sum::<f64>();
    let pairs = parts.iter().map(|m| m.pairs).sum::<usize>();
    let prompts = parts.iter().map(|m| m.prompts).sum::<usize>();
    let n = parts.first().map_or(1, |m| m.samples_per_prompt);
    let per_prompt =
        |f: fn(&EvalMetrics) -> f64| ratio(sum(&|m| f(m) * m.prompts as f64), prompts as f64);
    let per_pair = |f: fn(&EvalMetrics) -> Option<f64>| -> Option<f64> {
        let all: Option<Vec<(f64, f64)>> = parts
            .iter()
            .map(|m| f(m).map(|x| (x * m.pairs as f64, m.pairs as f64)))
            .collect();
        all.map(|v| {
            let (num, den) = v.iter().fold((0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1));
            ratio(num, den)
        })
    };
    let seconds = sum(&|m| m.timing.seconds);
    let tokens = sum(&|m| m.timing.tokens_per_s * m.timing.seconds);
    EvalMetrics {
        step: 0,
        pairs,
        prompts,
        samples_per_prompt: n,
        accuracy: per_prompt(|m| m.accuracy),
        // Each pair contributes one prompt per order, so pair weights are order weights.
        accuracy_ab: per_pair(|m| m.accuracy_ab),
        accuracy_ba: per_pair(|m| m.accuracy_ba),
        consistent_accuracy: per_pair(|m| m.consistent_accuracy),
        flip_rate: per_pair(|m| m.flip_rate),
        tie_rate: per_prompt(|m| m.tie_rate),
        unparseable_rate: per_prompt(|m| m.unparseable_rate),
        mean_thought_tokens: per_prompt(|m| m.mean_thought_tokens),
        mean_completion_tokens: per_prompt(|m| m.mean_completion_tokens),
        timing: EvalTiming {
            seconds,
            tokens_per_s: ratio(tokens, seconds),
        },
    }
}
