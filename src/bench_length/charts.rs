//! The benchmark's PNG charts, drawn with [`crate::plot::line_chart`].

use std::path::{Path, PathBuf};

use super::config::Budget;
use super::report::{LengthBenchReport, Method, TrainingView};
use crate::error::Result;
use crate::plot::{line_chart, Axis, LineChart, Series, PALETTE};

/// Draws every chart `report` has data for into `dir`; returns the files.
///
/// # Errors
/// [`crate::TrainError::Plot`].
pub fn draw_all(report: &LengthBenchReport, dir: &Path) -> Result<Vec<PathBuf>> {
    let mut charts = Vec::new();
    if !report.budgets.is_empty() {
        charts.push((
            "accuracy_vs_budget.png",
            budget_chart(std::slice::from_ref(report)),
        ));
    }
    if report.scaling.is_some() {
        charts.push(("accuracy_vs_n.png", scaling_chart(report)));
    }
    if !report.natural_length.is_empty() {
        charts.push(("accuracy_vs_length.png", length_chart(report)));
    }
    if let Some(t) = &report.training {
        charts.push(("training.png", training_chart(t, &report.label)));
    }
    charts
        .into_iter()
        .map(|(name, chart)| {
            let path = dir.join(name);
            line_chart(&chart, &path).map(|()| path)
        })
        .collect()
}

/// Every budget of `reports`, in increasing order (`none` last).
pub fn union_budgets(reports: &[LengthBenchReport]) -> Vec<Budget> {
    let mut all: Vec<Budget> = reports
        .iter()
        .flat_map(|r| r.budgets.iter().map(|b| b.budget))
        .collect();
    all.sort_unstable();
    all.dedup();
    all
}

/// Accuracy (left) and mean thought tokens (right) per budget, one colour per report;
/// budgets are evenly spaced categories.
pub fn budget_chart(reports: &[LengthBenchReport]) -> LineChart {
    let budgets = union_budgets(reports);
    let x = |b: Budget| budgets.iter().position(|&c| c == b).unwrap_or(0) as f64;
    let mut series = Vec::new();
    let single = reports.len() == 1;
    for (k, r) in reports.iter().enumerate() {
        let name = |what: &str| match single {
            true => what.to_string(),
            false => format!("{} {what}", r.label),
        };
        let color = PALETTE[(2 * k + 1) % PALETTE.len()];
        series.push(Series {
            label: name("accuracy"),
            points: r
                .budgets
                .iter()
                .map(|b| (x(b.budget), b.accuracy))
                .collect(),
            color,
            axis: Axis::Left,
            markers: true,
        });
        let consistent: Vec<(f64, f64)> = r
            .budgets
            .iter()
            .filter_map(|b| Some((x(b.budget), b.consistent_accuracy?)))
            .collect();
        if single && !consistent.is_empty() {
            series.push(Series {
                label: name("consistent accuracy"),
                points: consistent,
                color: PALETTE[3],
                axis: Axis::Left,
                markers: true,
            });
        }
        series.push(Series {
            label: name("mean thought tokens (right)"),
            points: r
                .budgets
                .iter()
                .map(|b| (x(b.budget), b.thought_tokens_mean))
                .collect(),
            color: if single {
                PALETTE[0]
            } else {
                PALETTE[(2 * k) % PALETTE.len()]
            },
            axis: Axis::Right,
            markers: false,
        });
    }
    let labels: Vec<&str> = reports.iter().map(|r| r.label.as_str()).collect();
    LineChart {
        title: format!("accuracy vs thought budget ({})", labels.join(" vs ")),
        x_desc: "thought budget (tokens; none = unconstrained)".into(),
        y_desc: "accuracy".into(),
        y2_desc: "mean thought tokens".into(),
        x_categories: budgets.iter().map(Budget::to_string).collect(),
        y_range: Some((0.0, 1.0)),
        y2_range: None,
        series,
    }
}

/// SC@N and Mean-Score@N accuracy (and consistent accuracy) over N; the Ns are evenly
/// spaced categories.
pub fn scaling_chart(report: &LengthBenchReport) -> LineChart {
    let mut series = Vec::new();
    let mut ns: Vec<usize> = Vec::new();
    if let Some(s) = &report.scaling {
        ns = s.rows.iter().map(|r| r.n).collect();
        ns.sort_unstable();
        ns.dedup();
        let x = |n: usize| ns.iter().position(|&m| m == n).unwrap_or(0) as f64;
        for (k, method) in [Method::Sc, Method::MeanScore].into_iter().enumerate() {
            let rows: Vec<_> = s.rows.iter().filter(|r| r.method == method).collect();
            if rows.is_empty() {
                continue;
            }
            series.push(Series {
                label: format!("{} accuracy", method.name()),
                points: rows.iter().map(|r| (x(r.n), r.accuracy)).collect(),
                color: PALETTE[1 + 2 * k],
                axis: Axis::Left,
                markers: true,
            });
            let consistent: Vec<(f64, f64)> = rows
                .iter()
                .filter_map(|r| Some((x(r.n), r.consistent_accuracy?)))
                .collect();
            if !consistent.is_empty() {
                series.push(Series {
                    label: format!("{} consistent accuracy", method.name()),
                    points: consistent,
                    color: PALETTE[2 + 2 * k],
                    axis: Axis::Left,
                    markers: true,
                });
            }
        }
    }
    let budget = report
        .scaling
        .as_ref()
        .map_or(Budget::Unlimited, |s| s.budget);
    LineChart {
        title: format!("test-time scaling ({}, budget {budget})", report.label),
        x_desc: "N (sampled judgments per prompt)".into(),
        y_desc: "accuracy".into(),
        y2_desc: String::new(),
        x_categories: ns.iter().map(usize::to_string).collect(),
        y_range: Some((0.0, 1.0)),
        y2_range: None,
        series,
    }
}

/// Accuracy per natural-length bucket (left, one line per source) and the samples per
/// bucket (right); buckets are placed at their mean thought length.
pub fn length_chart(report: &LengthBenchReport) -> LineChart {
    let mut series = Vec::new();
    for (k, t) in report.natural_length.iter().enumerate() {
        let at = |b: &super::stats::Bucket| b.mean_thought_tokens;
        series.push(Series {
            label: format!("accuracy ({})", t.source),
            points: t.buckets.iter().map(|b| (at(b), b.accuracy)).collect(),
            color: PALETTE[(1 + 2 * k) % PALETTE.len()],
            axis: Axis::Left,
            markers: true,
        });
        series.push(Series {
            label: format!("samples per bucket ({}, right)", t.source),
            points: t
                .buckets
                .iter()
                .map(|b| (at(b), b.samples as f64))
                .collect(),
            color: PALETTE[(2 * k) % PALETTE.len()],
            axis: Axis::Right,
            markers: false,
        });
    }
    LineChart {
        title: format!("accuracy by natural thought length ({})", report.label),
        x_desc: "mean thought tokens of the bucket".into(),
        y_desc: "accuracy".into(),
        y2_desc: "samples".into(),
        x_categories: Vec::new(),
        y_range: Some((0.0, 1.0)),
        y2_range: None,
        series,
    }
}

/// Held-out accuracy (left) and thought length (right) over training steps.
pub fn training_chart(t: &TrainingView, label: &str) -> LineChart {
    let series = vec![
        Series {
            label: "held-out accuracy".into(),
            points: t.eval.iter().map(|e| (e.step as f64, e.accuracy)).collect(),
            color: PALETTE[1],
            axis: Axis::Left,
            markers: true,
        },
        Series {
            label: "train accuracy".into(),
            points: t
                .train
                .iter()
                .map(|p| (p.step as f64, p.accuracy))
                .collect(),
            color: PALETTE[3],
            axis: Axis::Left,
            markers: false,
        },
        Series {
            label: "thought tokens, train (right)".into(),
            points: t
                .train
                .iter()
                .map(|p| (p.step as f64, p.thought_tokens_mean))
                .collect(),
            color: PALETTE[0],
            axis: Axis::Right,
            markers: false,
        },
        Series {
            label: "thought tokens, held-out (right)".into(),
            points: t
                .eval
                .iter()
                .map(|e| (e.step as f64, e.mean_thought_tokens))
                .collect(),
            color: PALETTE[4],
            axis: Axis::Right,
            markers: true,
        },
    ];
    LineChart {
        title: format!("thought length and accuracy over training ({label})"),
        x_desc: "step".into(),
        y_desc: "accuracy".into(),
        y2_desc: "mean thought tokens".into(),
        x_categories: Vec::new(),
        y_range: Some((0.0, 1.0)),
        y2_range: None,
        series,
    }
}
