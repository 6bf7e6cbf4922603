//! Writing a report: `report.json`, `report.md`, CSV tables, `samples.jsonl` and PNG charts.
//!
//! | file | what |
//! |---|---|
//! | `report.json` | the [`LengthBenchReport`] (without the samples) |
//! | `report.md` | Markdown tables of everything below |
//! | `budgets.csv` | one row per budget |
//! | `scaling.csv` | one row per method and N (when SC@N ran) |
//! | `buckets.csv` | one row per natural-length bucket and source |
//! | `training.csv` | one row per training step / evaluation (with `--metrics`) |
//! | `samples.jsonl` | every judged completion ([`SampleRecord`](super::SampleRecord)) |
//! | `accuracy_vs_budget.png`, `accuracy_vs_n.png`, `accuracy_vs_length.png`, `training.png` | charts |

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::charts;
use super::report::LengthBenchReport;
use crate::error::{Result, TrainError};

/// Writes every output of `report` into `dir` (created if needed); returns the files written.
///
/// # Errors
/// [`TrainError::Io`] / [`TrainError::Plot`].
pub fn write_outputs(report: &LengthBenchReport, dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
    let mut written = Vec::new();
    let mut put = |name: &str, text: String| -> Result<()> {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| TrainError::io(&path, e))?;
        written.push(path);
        Ok(())
    };
    let json = serde_json::to_string_pretty(report)
        .map_err(|e| TrainError::json(&dir.join("report.json"), &e))?;
    put("report.json", json)?;
    put("report.md", markdown(report))?;
    put("budgets.csv", budgets_csv(report))?;
    if report.scaling.is_some() {
        put("scaling.csv", scaling_csv(report))?;
    }
    if !report.natural_length.is_empty() {
        put("buckets.csv", buckets_csv(report))?;
    }
    if report.training.is_some() {
        put("training.csv", training_csv(report))?;
    }
    let mut lines = String::new();
    for s in &report.samples {
        let line = serde_json::to_string(s)
            .map_err(|e| TrainError::json(&dir.join("samples.jsonl"), &e))?;
        lines.push_str(&line);
        lines.push('\n');
    }
    put("samples.jsonl", lines)?;
    written.extend(charts::draw_all(report, dir)?);
    Ok(written)
}

fn pct(x: f64) -> String {
    format!("{:.1}%", 100.0 * x)
}

fn opt_pct(x: Option<f64>) -> String {
    x.map_or("-".into(), pct)
}

fn num(x: Option<f64>) -> String {
    x.map_or(String::new(), |v| format!("{v}"))
}

/// A CSV field: quoted when it holds a comma, quote or newline.
fn field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// `budgets.csv`.
pub fn budgets_csv(r: &LengthBenchReport) -> String {
    let mut out = String::from(
        "label,budget,prompts,accuracy,accuracy_ab,accuracy_ba,consistent_accuracy,flip_rate,\
         tie_rate,unparseable_rate,thought_tokens_mean,thought_tokens_median,\
         completion_tokens_mean,forced_rate,truncated_rate,decoded_prompts,reused_prompts,\
         decode_tokens,seconds,tokens_per_s\n",
    );
    for b in &r.budgets {
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{:.3},{:.2}",
            field(&r.label),
            b.budget,
            b.prompts,
            b.accuracy,
            num(b.accuracy_ab),
            num(b.accuracy_ba),
            num(b.consistent_accuracy),
            num(b.flip_rate),
            b.tie_rate,
            b.unparseable_rate,
            b.thought_tokens_mean,
            b.thought_tokens_median,
            b.completion_tokens_mean,
            b.forced_rate,
            b.truncated_rate,
            b.decoded_prompts,
            b.reused_prompts,
            b.decode_tokens,
            b.timing.seconds,
            b.timing.tokens_per_s
        );
    }
    out
}

/// `scaling.csv`.
pub fn scaling_csv(r: &LengthBenchReport) -> String {
    let mut out = String::from(
        "label,method,n,budget,accuracy,accuracy_ab,accuracy_ba,consistent_accuracy,flip_rate,\
         tie_rate,unparseable_rate\n",
    );
    if let Some(s) = &r.scaling {
        for row in &s.rows {
            let _ = writeln!(
                out,
                "{},{},{},{},{},{},{},{},{},{},{}",
                field(&r.label),
                row.method.name(),
                row.n,
                s.budget,
                row.accuracy,
                num(row.accuracy_ab),
                num(row.accuracy_ba),
                num(row.consistent_accuracy),
                num(row.flip_rate),
                row.tie_rate,
                row.unparseable_rate
            );
        }
    }
    out
}

/// `buckets.csv`.
pub fn buckets_csv(r: &LengthBenchReport) -> String {
    let mut out = String::from(
        "label,source,lo,hi,samples,correct,accuracy,unparseable_rate,mean_thought_tokens,small\n",
    );
    for t in &r.natural_length {
        for b in &t.buckets {
            let _ = writeln!(
                out,
                "{},{},{},{},{},{},{},{},{},{}",
                field(&r.label),
                t.source,
                b.lo,
                b.hi,
                b.samples,
                b.correct,
                b.accuracy,
                b.unparseable_rate,
                b.mean_thought_tokens,
                b.small
            );
        }
    }
    out
}

/// `training.csv`: train rows (`kind = train`) then evaluations (`kind = eval`).
pub fn training_csv(r: &LengthBenchReport) -> String {
    let mut out = String::from(
        "kind,step,accuracy,consistent_accuracy,thought_tokens_mean,completion_tokens_mean,\
         reward_mean,budget_forced_rate,unparseable_rate\n",
    );
    if let Some(t) = &r.training {
        for p in &t.train {
            let _ = writeln!(
                out,
                "train,{},{},,{},{},{},{},",
                p.step,
                p.accuracy,
                p.thought_tokens_mean,
                p.completion_tokens_mean,
                p.reward_mean,
                p.budget_forced_rate
            );
        }
        for e in &t.eval {
            let _ = writeln!(
                out,
                "eval,{},{},{},{},,,,{}",
                e.step,
                e.accuracy,
                num(e.consistent_accuracy),
                e.mean_thought_tokens,
                e.unparseable_rate
            );
        }
    }
    out
}

/// `report.md`: the setup, then one table per measurement.
pub fn markdown(r: &LengthBenchReport) -> String {
    let mut out = format!("# Thought length vs accuracy: {}\n\n", r.label);
    let _ = writeln!(out, "- model: {}", r.model);
    if let Some(a) = &r.adapter {
        let _ = writeln!(out, "- adapter: {}", a.display());
    }
    let _ = writeln!(
        out,
        "- data: {} pairs x 2 orders = {} prompts; {}",
        r.pairs, r.prompts, r.data
    );
    let _ = writeln!(
        out,
        "- template `{}`, think prefilled: {}, forced close {:?}, max {} new tokens, seed {}\n",
        r.template.name(),
        r.think_prefilled,
        r.forced_close,
        r.max_new_tokens,
        r.seed
    );
    if !r.budgets.is_empty() {
        out.push_str(&budget_table(r));
    }
    if let Some(s) = &r.scaling {
        let _ = writeln!(
            out,
            "\n## Test-time scaling (budget {}, T = {}, top-p = {}, {} samples per prompt)\n",
            s.budget, s.temperature, s.top_p, s.samples_per_prompt
        );
        let _ = writeln!(
            out,
            "Single samples: accuracy {}, unparseable {}, thought tokens mean {:.1} / median {:.1}.\n",
            pct(s.sample_accuracy),
            pct(s.sample_unparseable_rate),
            s.thought_tokens_mean,
            s.thought_tokens_median
        );
        out.push_str("| method | N | accuracy | consistent | flip | tie | unparseable |\n");
        out.push_str("|---|---:|---:|---:|---:|---:|---:|\n");
        for row in &s.rows {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} |",
                row.method.name(),
                row.n,
                pct(row.accuracy),
                opt_pct(row.consistent_accuracy),
                opt_pct(row.flip_rate),
                pct(row.tie_rate),
                pct(row.unparseable_rate)
            );
        }
    }
    for t in &r.natural_length {
        let _ = writeln!(
            out,
            "\n## Accuracy by natural thought length ({}: {}, {} samples)\n",
            t.source, t.decoding, t.samples
        );
        out.push_str("| thought tokens | samples | accuracy | unparseable | |\n");
        out.push_str("|---|---:|---:|---:|---|\n");
        for b in &t.buckets {
            let _ = writeln!(
                out,
                "| {}-{} | {} | {} | {} | {} |",
                b.lo,
                b.hi,
                b.samples,
                pct(b.accuracy),
                pct(b.unparseable_rate),
                if b.small { "small" } else { "" }
            );
        }
    }
    if let Some(t) = &r.training {
        out.push_str(&training_table(t));
    }
    out
}

/// The sweep as a Markdown table.
pub fn budget_table(r: &LengthBenchReport) -> String {
    let mut out = String::from(
        "| budget | accuracy | consistent | AB | BA | flip | unparseable | thought mean | \
         thought median | forced | decoded | tok/s |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for b in &r.budgets {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {:.1} | {:.1} | {} | {} | {:.1} |",
            b.budget,
            pct(b.accuracy),
            opt_pct(b.consistent_accuracy),
            opt_pct(b.accuracy_ab),
            opt_pct(b.accuracy_ba),
            opt_pct(b.flip_rate),
            pct(b.unparseable_rate),
            b.thought_tokens_mean,
            b.thought_tokens_median,
            pct(b.forced_rate),
            b.decoded_prompts,
            b.timing.tokens_per_s
        );
    }
    out
}

fn training_table(t: &super::report::TrainingView) -> String {
    let mut out = format!(
        "\n## Training view ({}: {} steps, {} evaluations)\n\n",
        t.source.display(),
        t.train.len(),
        t.eval.len()
    );
    out.push_str("| step | held-out accuracy | consistent | thought tokens (eval) | thought tokens (train, mean of steps since the last eval) |\n");
    out.push_str("|---:|---:|---:|---:|---:|\n");
    let mut last = 0;
    for e in &t.eval {
        let window: Vec<f64> = t
            .train
            .iter()
            .filter(|p| p.step > last && p.step <= e.step)
            .map(|p| p.thought_tokens_mean)
            .collect();
        let train = match window.len() {
            0 => "-".to_string(),
            n => format!("{:.1}", window.iter().sum::<f64>() / n as f64),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.1} | {} |",
            e.step,
            pct(e.accuracy),
            opt_pct(e.consistent_accuracy),
            e.mean_thought_tokens,
            train
        );
        last = e.step;
    }
    out
}

/// Several reports side by side (e.g. base vs trained): one Markdown table with a column
/// group per report (accuracy, consistent accuracy, mean thought tokens) per budget.
pub fn comparison_markdown(reports: &[LengthBenchReport]) -> String {
    let budgets = charts::union_budgets(reports);
    let mut out = String::from("| budget |");
    let mut rule = String::from("|---|");
    for r in reports {
        let _ = write!(
            out,
            " {0} accuracy | {0} consistent | {0} thought |",
            r.label
        );
        rule.push_str("---:|---:|---:|");
    }
    out.push('\n');
    out.push_str(&rule);
    out.push('\n');
    for b in budgets {
        let _ = write!(out, "| {b} |");
        for r in reports {
            match r.budgets.iter().find(|x| x.budget == b) {
                Some(x) => {
                    let _ = write!(
                        out,
                        " {} | {} | {:.1} |",
                        pct(x.accuracy),
                        opt_pct(x.consistent_accuracy),
                        x.thought_tokens_mean
                    );
                }
                None => out.push_str(" - | - | - |"),
            }
        }
        out.push('\n');
    }
    out
}
