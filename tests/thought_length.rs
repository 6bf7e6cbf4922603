//! The thought-length benchmark end to end on a tiny random Llama (see `common`; no network):
//! budgets are respected, every output is written, two runs agree once wall-clock timing is
//! removed, SC@N equals a recount of the samples it combines, and reusing results across
//! budgets gives what decoding every budget gives.
//!
//! The random model rarely closes its thought on its own, so budget forcing decides most
//! thought lengths; with sampled decoding some completions end early (eos, `</think>`) and a
//! fair share of forced answers name `[[A]]` or `[[B]]`, enough for the checks to bite.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;
use serde_json::Value;
use thinkjudge::bench_length::{
    compare, read_report, run, Buckets, Budget, DataSpec, LengthBenchConfig, LengthBenchReport,
    Method, SampleRecord,
};
use thinkjudge::config::{ChatTemplateChoice, DataSource};
use thinkjudge_data::DataFormat;
use thinkjudge_rollout::{Decoding, ThoughtEnd};

/// Pairs judged (each in both orders).
const PAIRS: usize = 12;
/// SC@N samples per prompt (the largest N).
const SAMPLES: usize = 9;

/// The tiny judge on the even-number pairs, budgets 0, 2, 4 and none, SC@1/3/9 at budget 2.
fn config(dir: &Path, out: &str) -> Result<LengthBenchConfig> {
    let template = dir.join("judge.j2");
    std::fs::write(&template, common::JUDGE_TEMPLATE)?;
    let model = dir.join("tiny-model");
    if !model.is_dir() {
        common::model_dir(dir, 3)?;
    }
    let mut cfg = LengthBenchConfig {
        model: model.display().to_string(),
        data: DataSpec::Sources {
            sources: vec![DataSource::File {
                path: common::even_pairs_file(dir)?,
                format: DataFormat::Jsonl,
                load: Default::default(),
            }],
        },
        pairs: PAIRS,
        chat_template: ChatTemplateChoice::Model,
        max_prompt_tokens: 32,
        budgets: vec![
            Budget::Tokens(4),
            Budget::Tokens(0),
            Budget::Unlimited,
            Budget::Tokens(2),
        ],
        samples: vec![1, 3, SAMPLES],
        // Near-uniform sampling: a forced `<answer>` is followed by a verdict token about one
        // time in 24, and completions end early (eos, `</think>`) often enough to reuse.
        temperature: 20.0,
        samples_budget: Budget::Tokens(2),
        max_new_tokens: 10,
        buckets: Buckets::Width { width: 3 },
        out: Some(dir.join(out)),
        label: "tiny".into(),
        progress: false,
        ..LengthBenchConfig::default()
    };
    cfg.prompt.template.custom_template = Some(template);
    Ok(cfg)
}

fn records(report: &LengthBenchReport, run: &str) -> Vec<SampleRecord> {
    report
        .samples
        .iter()
        .filter(|r| r.run == run)
        .cloned()
        .collect()
}

#[test]
fn budgets_are_respected_and_every_output_is_written() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let cfg = config(dir.path(), "out")?;
    let report = run(&cfg)?;
    assert_eq!((report.pairs, report.prompts), (PAIRS, 2 * PAIRS));

    // The sweep comes back by increasing budget, `none` last.
    let budgets: Vec<Budget> = report.budgets.iter().map(|b| b.budget).collect();
    let want = [0, 2, 4].map(Budget::Tokens).into_iter();
    assert_eq!(budgets, want.chain([Budget::Unlimited]).collect::<Vec<_>>());
    let sweep = records(&report, "sweep");
    assert_eq!(sweep.len(), 4 * 2 * PAIRS);
    for b in &report.budgets {
        let mine: Vec<&SampleRecord> = sweep.iter().filter(|r| r.budget == b.budget).collect();
        assert_eq!(mine.len(), 2 * PAIRS);
        match b.budget {
            Budget::Tokens(n) => {
                for r in &mine {
                    assert!(r.thought_tokens <= n, "budget {n}: {r:?}");
                    // Forced thoughts are exactly the budget long.
                    if r.thought == ThoughtEnd::Forced {
                        assert_eq!(r.thought_tokens, n, "{r:?}");
                    }
                }
                assert!(b.thought_tokens_mean <= n as f64);
            }
            Budget::Unlimited => {
                assert!(mine.iter().all(|r| r.thought != ThoughtEnd::Forced));
                assert_eq!(b.forced_rate, 0.0);
            }
        }
        assert!((0.0..=1.0).contains(&b.accuracy) && (0.0..=1.0).contains(&b.unparseable_rate));
    }
    // Budget 0 closes every thought before its first token.
    let zero = &report.budgets[0];
    assert_eq!((zero.forced_rate, zero.thought_tokens_mean), (1.0, 0.0));
    // Without a budget the thoughts of the random model run longer than 4 tokens.
    assert!(report.budgets[3].thought_tokens_mean > 4.0);

    let out = dir.path().join("out");
    for name in [
        "report.json",
        "report.md",
        "budgets.csv",
        "scaling.csv",
        "buckets.csv",
        "samples.jsonl",
    ] {
        let text = std::fs::read_to_string(out.join(name))?;
        assert!(!text.trim().is_empty(), "{name} is empty");
    }
    for name in [
        "accuracy_vs_budget.png",
        "accuracy_vs_n.png",
        "accuracy_vs_length.png",
    ] {
        let bytes = std::fs::read(out.join(name))?;
        assert!(bytes.starts_with(b"\x89PNG"), "{name} is not a PNG");
    }
    let csv = std::fs::read_to_string(out.join("budgets.csv"))?;
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(rows.len(), 1 + 4, "{csv}");
    assert!(rows[1].starts_with("tiny,0,24,"), "{csv}");
    assert!(rows[4].starts_with("tiny,none,24,"), "{csv}");
    let md = std::fs::read_to_string(out.join("report.md"))?;
    assert!(
        md.contains("| none |") && md.contains("| SC@N | 9 |"),
        "{md}"
    );
    let lines = std::fs::read_to_string(out.join("samples.jsonl"))?;
    assert_eq!(lines.lines().count(), (4 + SAMPLES) * 2 * PAIRS);

    // report.json reads back to the report (less the samples, which live in samples.jsonl).
    let back = read_report(&out.join("report.json"))?;
    assert_eq!(
        back,
        LengthBenchReport {
            samples: Vec::new(),
            ..report.clone()
        }
    );
    // Comparing two reports writes a table and a chart.
    let cmp = dir.path().join("cmp");
    let other = LengthBenchReport {
        label: "other".into(),
        ..back
    };
    compare(&[report, other], &cmp)?;
    let table = std::fs::read_to_string(cmp.join("comparison.md"))?;
    assert!(
        table.contains("tiny accuracy") && table.contains("other accuracy"),
        "{table}"
    );
    assert!(std::fs::read(cmp.join("comparison.png"))?.starts_with(b"\x89PNG"));
    Ok(())
}

/// `report.json` with every `timing` object removed.
fn without_timing(path: &Path) -> Result<Value> {
    fn strip(v: &mut Value) {
        match v {
            Value::Object(o) => {
                o.remove("timing");
                o.values_mut().for_each(strip);
            }
            Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(path)?)?;
    strip(&mut v);
    Ok(v)
}

#[test]
fn two_runs_agree_except_for_timing_and_the_seed_matters() -> Result<()> {
    let dir = tempfile::tempdir()?;
    run(&config(dir.path(), "a")?)?;
    run(&config(dir.path(), "b")?)?;
    let a = without_timing(&dir.path().join("a/report.json"))?;
    let b = without_timing(&dir.path().join("b/report.json"))?;
    assert!(a.get("budgets").is_some() && a.to_string().contains("\"rows\""));
    assert!(!a.to_string().contains("tokens_per_s"), "timing left in");
    assert_eq!(a, b);
    let samples = |d: &str| std::fs::read_to_string(dir.path().join(d).join("samples.jsonl"));
    assert_eq!(samples("a")?, samples("b")?);

    // Another seed draws other SC@N samples (the greedy sweep stays the same).
    let other = LengthBenchConfig {
        seed: 1,
        ..config(dir.path(), "c")?
    };
    run(&other)?;
    let c = without_timing(&dir.path().join("c/report.json"))?;
    assert_eq!(a["budgets"], c["budgets"]);
    assert_ne!(samples("a")?, samples("c")?);
    Ok(())
}

#[test]
fn sc_at_n_is_a_majority_recount_of_the_first_n_samples() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let report = run(&LengthBenchConfig {
        out: None,
        ..config(dir.path(), "out")?
    })?;
    let scaling = report.scaling.as_ref().expect("SC@N ran");
    assert_eq!(scaling.samples_per_prompt, SAMPLES);
    let parsed = report
        .samples
        .iter()
        .filter(|r| r.run == "samples" && r.judgment.is_some())
        .count();
    assert!(
        parsed >= 5,
        "{parsed} parsed samples: too few for the check to mean anything"
    );
    // Each prompt's samples, by sample index.
    let mut by_prompt: BTreeMap<(String, String), Vec<SampleRecord>> = BTreeMap::new();
    for r in records(&report, "samples") {
        assert_eq!(r.budget, Budget::Tokens(2));
        assert!(r.thought_tokens <= 2);
        let key = (r.pair_id.clone(), format!("{:?}", r.order));
        by_prompt.entry(key).or_default().push(r);
    }
    assert_eq!(by_prompt.len(), 2 * PAIRS);
    let prompts = by_prompt.len() as f64;
    let mut previous_unparseable = 1.0;
    let mut gains = 0;
    for row in &scaling.rows {
        assert_eq!(row.method, Method::Sc);
        // Majority over the first n: correct when right votes outnumber wrong ones (PaV
        // verdicts always prefer a side; unparseable samples abstain, ties are wrong).
        let (mut correct, mut unparseable) = (0.0, 0.0);
        for samples in by_prompt.values() {
            let mut first: Vec<&SampleRecord> = samples.iter().collect();
            first.sort_by_key(|r| r.sample_index);
            first.truncate(row.n);
            let right = first.iter().filter(|r| r.correct == Some(true)).count();
            let wrong = first.iter().filter(|r| r.correct == Some(false)).count();
            correct += f64::from(u8::from(right > wrong));
            unparseable += f64::from(u8::from(right + wrong == 0));
        }
        assert!(
            (row.accuracy - correct / prompts).abs() < 1e-12,
            "SC@{}: reported {}, recount {}",
            row.n,
            row.accuracy,
            correct / prompts
        );
        assert!((row.unparseable_rate - unparseable / prompts).abs() < 1e-12);
        // More samples can only make "all unparseable" rarer.
        assert!(row.unparseable_rate <= previous_unparseable);
        if row.unparseable_rate < previous_unparseable {
            gains += 1;
        }
        previous_unparseable = row.unparseable_rate;
    }
    assert!(gains > 0, "SC@N never recovered an unparseable prompt");
    // SC@1 is the first sample's accuracy; the mean over all samples is reported too.
    let all = records(&report, "samples");
    let right = all.iter().filter(|r| r.correct == Some(true)).count() as f64;
    assert!((scaling.sample_accuracy - right / all.len() as f64).abs() < 1e-12);
    Ok(())
}

#[test]
fn reusing_results_across_budgets_equals_decoding_every_budget() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let sampled = |reuse| -> Result<LengthBenchReport> {
        Ok(run(&LengthBenchConfig {
            decoding: Decoding::Sample,
            samples: Vec::new(),
            reuse,
            out: None,
            ..config(dir.path(), "out")?
        })?)
    };
    let reused = sampled(true)?;
    let fresh = sampled(false)?;
    let reuses: usize = reused.budgets.iter().map(|b| b.reused_prompts).sum();
    assert!(reuses > 0, "no result was reused: the check is empty");
    assert!(fresh.budgets.iter().all(|b| b.reused_prompts == 0));
    let key = |r: &SampleRecord| {
        (
            r.budget,
            r.pair_id.clone(),
            r.thought_tokens,
            r.judgment,
            r.completion.clone(),
        )
    };
    let a: Vec<_> = records(&reused, "sweep").iter().map(key).collect();
    let b: Vec<_> = records(&fresh, "sweep").iter().map(key).collect();
    assert_eq!(a, b);
    Ok(())
}

#[test]
fn bad_data_is_an_error_naming_the_file_and_line() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut cfg = config(dir.path(), "out")?;
    let missing = dir.path().join("missing.jsonl");
    cfg.data = DataSpec::Sources {
        sources: vec![DataSource::File {
            path: missing,
            format: DataFormat::Jsonl,
            load: Default::default(),
        }],
    };
    let e = format!("{:#}", run(&cfg).unwrap_err());
    assert!(e.contains("missing.jsonl"), "{e}");
    let broken = dir.path().join("broken.jsonl");
    std::fs::write(&broken, "{\"id\": 1,\n")?;
    cfg.data = DataSpec::Sources {
        sources: vec![DataSource::File {
            path: broken,
            format: DataFormat::Jsonl,
            load: Default::default(),
        }],
    };
    let e = format!("{:#}", run(&cfg).unwrap_err());
    assert!(e.contains("broken.jsonl") && e.contains("line 1"), "{e}");
    Ok(())
}
