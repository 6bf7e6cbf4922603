//! Loaders on hand-written fixtures (one per format), on bad input, and on the real files in
//! the shared data folder.

mod common;

use common::{fixture, shared_data, temp_file};
use thinkjudge_data::*;

type R = std::result::Result<(), Box<dyn std::error::Error>>;

fn strict() -> LoadOptions {
    LoadOptions::default()
}

fn lenient() -> LoadOptions {
    LoadOptions {
        skip_invalid: true,
        ..LoadOptions::default()
    }
}

fn pairs(name: &str, format: DataFormat) -> std::result::Result<Vec<PairwiseItem>, DataError> {
    Ok(load_pairwise(&fixture(name), format, &strict())?.0)
}

#[test]
fn generic_pairwise_schema() -> R {
    let items = pairs("generic_pairwise.jsonl", DataFormat::Jsonl)?;
    assert_eq!(items.len(), 4, "the blank line is not a record");
    assert_eq!(items[0].id, "g1");
    assert_eq!(items[0].reference.as_deref(), Some("5"));
    assert_eq!(items[0].subset.as_deref(), Some("math"));
    assert_eq!(
        items[1].id, "generic_pairwise:3",
        "default id = file stem + line"
    );
    assert_eq!(items[1].prompt.len(), 4);
    assert_eq!(items[1].preference, Preference::Second);
    assert_eq!(items[2].id, "42");
    assert_eq!(
        items[2].responses,
        ["Hi!".to_string(), "Go away.".to_string()]
    );
    assert_eq!(items[2].preference, Preference::First);
    assert_eq!(items[2].source.as_deref(), Some("mine"));
    assert_eq!(items[3].preference, Preference::Tie);
    Ok(())
}

#[test]
fn generic_pointwise_schema() -> R {
    let (data, report) = load(
        &fixture("generic_pointwise.jsonl"),
        DataFormat::Jsonl,
        &strict(),
    )?;
    let items = data.into_pointwise().ok_or("expected pointwise")?;
    assert_eq!(report.loaded, 3);
    let labels: Vec<PointLabel> = items.iter().map(|i| i.label).collect();
    assert_eq!(
        labels,
        [PointLabel::Good, PointLabel::Bad, PointLabel::Score(7.5)]
    );
    assert_eq!(items[1].reference.as_deref(), Some("7"));
    Ok(())
}

#[test]
fn hh_rlhf_splits_shared_prefix() -> R {
    let (items, report) =
        load_pairwise(&fixture("hh_rlhf.jsonl.gz"), DataFormat::HhRlhf, &lenient())?;
    assert_eq!(items.len(), 2);
    assert_eq!(
        items[0].prompt,
        vec![Message::user("How do I boil an egg?")]
    );
    assert_eq!(
        items[0].responses[0],
        "Put it in boiling water for about nine minutes."
    );
    assert_eq!(items[1].prompt.len(), 3);
    assert_eq!(
        items[1].responses,
        ["Honey never spoils.".to_string(), "No.".to_string()]
    );
    assert_eq!(report.skipped.len(), 1);
    assert_eq!(report.skipped[0].location, Location::Line(3));
    assert!(report.skipped[0]
        .reason
        .contains("final assistant turn of `rejected` is empty"));
    let strict_err = load(&fixture("hh_rlhf.jsonl.gz"), DataFormat::HhRlhf, &strict());
    let msg = strict_err.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        msg.contains("hh_rlhf.jsonl.gz: line 3: field `chosen`"),
        "{msg}"
    );
    Ok(())
}

#[test]
fn pandalm_majority_and_mixed_vote_types() -> R {
    let (items, report) = load_pairwise(&fixture("pandalm.json"), DataFormat::Pandalm, &lenient())?;
    let prefs: Vec<Preference> = items.iter().map(|i| i.preference).collect();
    // Votes: (1,"1",2) → first; ("1",2,0) → no majority → tie; (2,2,2) → second.
    assert_eq!(
        prefs,
        [Preference::First, Preference::Tie, Preference::Second]
    );
    assert_eq!(
        items[0].prompt[0].content,
        "Rewrite more concisely.\n\nIn order to win, we must try."
    );
    assert_eq!(
        items[1].prompt[0].content, "Name a fruit.",
        "a blank input adds nothing"
    );
    assert_eq!(items[2].id, "pandalm:2");
    assert_eq!(report.skipped.len(), 1);
    assert_eq!(report.skipped[0].location, Location::Element(3));
    assert_eq!(
        report.skipped[0].reason,
        "field `response1`: expected a string, found boolean true"
    );
    Ok(())
}

#[test]
fn judgebench_labels_and_subsets() -> R {
    let items = pairs("judgebench.jsonl", DataFormat::Judgebench)?;
    let prefs: Vec<Preference> = items.iter().map(|i| i.preference).collect();
    assert_eq!(
        prefs,
        [Preference::First, Preference::Second, Preference::Tie]
    );
    assert_eq!(items[0].id, "jb-1");
    assert_eq!(items[0].subset.as_deref(), Some("mmlu-pro-math"));
    assert_eq!(items[2].subset, None);
    Ok(())
}

#[test]
fn llmbar_labels_as_number_or_string() -> R {
    let items = pairs("llmbar.json", DataFormat::Llmbar)?;
    assert_eq!(items[0].preference, Preference::First);
    assert_eq!(items[1].preference, Preference::Second);
    assert_eq!(items[1].id, "llmbar:1");
    Ok(())
}

#[test]
fn rewardbench_jsonl_and_json_agree() -> R {
    let a = pairs("rewardbench.jsonl", DataFormat::Rewardbench)?;
    let b = pairs("rewardbench.json", DataFormat::Rewardbench)?;
    assert_eq!(a, b);
    assert_eq!(a[0].id, "rewardbench:30");
    assert_eq!(a[0].responses[0], "Paris.", "chosen is response 0");
    assert!(a.iter().all(|i| i.preference == Preference::First));
    assert_eq!(a[1].subset.as_deref(), Some("refusals-dangerous"));
    Ok(())
}

#[test]
fn libra_is_pointwise_correctness() -> R {
    let (data, _) = load(&fixture("libra.jsonl"), DataFormat::Libra, &strict())?;
    let items = data.into_pointwise().ok_or("expected pointwise")?;
    let labels: Vec<PointLabel> = items.iter().map(|i| i.label).collect();
    assert_eq!(
        labels,
        [PointLabel::Good, PointLabel::Bad, PointLabel::Good]
    );
    assert_eq!(
        items[1].reference.as_deref(),
        Some("3"),
        "numeric references become text"
    );
    assert_eq!(items[2].subset.as_deref(), Some("AIME2024"));
    assert_eq!(items[0].id, "libra:0");
    Ok(())
}

/// Loads `content` as JSONL of `format` and returns the strict error message.
fn error_of(format: DataFormat, content: &str) -> String {
    let path = temp_file("jsonl", content);
    match load(&path, format, &strict()) {
        Ok(_) => "no error".into(),
        Err(e) => {
            let s = e.to_string();
            // Strip the temp path so the assertions read clearly.
            s.split_once(": ")
                .map_or(s.clone(), |(_, rest)| rest.to_string())
        }
    }
}

#[test]
fn bad_input_names_line_and_field() {
    let jb = DataFormat::Judgebench;
    let row = r#"{"pair_id": "a", "question": "q", "response_A": "x", "response_B": "y", "label": "A>B"}"#;
    let cases = [
        (format!("{row}\n{{not json"), "line 2: invalid JSON"),
        (r#"{"pair_id": "a", "question": "q", "response_B": "y", "label": "A>B"}"#.into(), "line 1: field `response_A`: missing"),
        (r#"{"pair_id": "a", "question": "q", "response_A": "", "response_B": "y", "label": "A>B"}"#.into(), "line 1: field `response_A`: empty"),
        (r#"{"pair_id": "a", "question": "q", "response_A": "x", "response_B": "y", "label": "A>>B"}"#.into(), "line 1: field `label`: expected \"A>B\", \"B>A\" or \"A=B\", found \"A>>B\""),
        (r#"{"pair_id": "a", "question": "q", "response_A": "x", "response_B": "x", "label": "A>B"}"#.into(), "line 1: field `response_B`: identical to `response_A`"),
        (format!("{row}\n{row}"), "line 2: field `id`: duplicate id `a` (first at line 1)"),
        ("[1, 2]".into(), "element 0: field `-`: expected a JSON object, found number"),
        ("[{\"a\": 1".into(), "whole file: invalid JSON"),
    ];
    for (content, want) in cases {
        let got = error_of(jb, &content);
        assert!(got.starts_with(want), "want {want:?}, got {got:?}");
    }
    let got = error_of(
        DataFormat::Llmbar,
        r#"{"input": "q", "output_1": "a", "output_2": "b", "label": 3}"#,
    );
    assert_eq!(
        got,
        "line 1: field `label`: expected 1 or 2 (number or string), found 3"
    );
    let got = error_of(
        DataFormat::Jsonl,
        r#"{"prompt": "q", "responses": ["a", "b"], "preference": "A"}"#,
    );
    assert!(
        got.contains("field `preference`: expected \"first\", \"second\" or \"tie\""),
        "{got}"
    );
    let got = error_of(
        DataFormat::Pandalm,
        r#"{"instruction": "i", "input": "", "response1": "a", "response2": "b", "annotator1": "x", "annotator2": 1, "annotator3": 1}"#,
    );
    assert!(
        got.starts_with("line 1: field `annotator1`: expected a vote 0 (tie), 1 or 2"),
        "{got}"
    );
}

#[test]
fn skip_invalid_counts_every_bad_record() -> R {
    let good = r#"{"input": "q", "output_1": "a", "output_2": "b", "label": 1}"#;
    let content = format!(
        "{good}\n{{bad\n{}\n\n{good}",
        r#"{"input": "q", "output_1": "a", "label": 1}"#
    );
    let path = temp_file("jsonl", &content);
    let (items, report) = load_pairwise(&path, DataFormat::Llmbar, &lenient())?;
    assert_eq!(items.len(), 2);
    assert_eq!(report.loaded, 2);
    let where_: Vec<Location> = report.skipped.iter().map(|s| s.location).collect();
    assert_eq!(where_, [Location::Line(2), Location::Line(3)]);
    assert!(report.skipped[1].reason.contains("`output_2`: missing"));
    assert!(report.to_string().contains("loaded 2, skipped 2"));
    Ok(())
}

#[test]
fn limit_stops_early_and_missing_files_are_io_errors() -> R {
    let opts = LoadOptions {
        limit: Some(1),
        ..LoadOptions::default()
    };
    let (items, _) = load_pairwise(&fixture("judgebench.jsonl"), DataFormat::Judgebench, &opts)?;
    assert_eq!(items.len(), 1);
    let err = load(&fixture("nope.jsonl"), DataFormat::Jsonl, &strict()).err();
    assert!(matches!(err, Some(DataError::Io { .. })));
    let pointwise = load_pairwise(&fixture("libra.jsonl"), DataFormat::Libra, &strict());
    assert!(pointwise.is_err());
    Ok(())
}

// Real files. Counts recorded from the copies in /work/shared/data (see each comment).

#[test]
fn real_hh_rlhf_harmless_test() -> R {
    let path = shared_data("hh-rlhf/harmless-base-test.jsonl.gz");
    let (items, report) = load_pairwise(&path, DataFormat::HhRlhf, &lenient())?;
    // 2,312 rows: 4 with an empty final assistant turn and 5 whose transcripts diverge before
    // the last turn (an inline "Human:" without its blank-line marker, or two assistant turns
    // in a row); the same rows a Python check of the two rules finds.
    assert_eq!(report.loaded + report.skipped.len(), 2312);
    assert_eq!(report.skipped.len(), 9, "{report}");
    assert_eq!(items.len(), 2303);
    assert!(items
        .iter()
        .all(|i| i.prompt.last().map(|m| m.role) == Some(Role::User)));
    assert!(
        items.iter().any(|i| i.prompt.len() > 1),
        "multi-turn history is kept"
    );
    Ok(())
}

#[test]
fn real_pandalm_test_set() -> R {
    let path = shared_data("pandalm/testset-v1.json");
    let (items, report) = load_pairwise(&path, DataFormat::Pandalm, &lenient())?;
    assert_eq!(report.loaded + report.skipped.len(), 999);
    let bools = report
        .skipped
        .iter()
        .filter(|s| s.reason.contains("found boolean"))
        .count();
    // 999 rows: 6 hold `true` instead of a response, 54 have a blank response. Majority
    // labels of the 939 kept, cross-checked with an independent Python count of the same
    // rules: 394 first, 442 second, 103 ties (no majority or a tie majority).
    assert_eq!(
        (report.loaded, report.skipped.len(), bools),
        (939, 60, 6),
        "{report}"
    );
    let count = |p: Preference| items.iter().filter(|i| i.preference == p).count();
    let counts = [Preference::First, Preference::Second, Preference::Tie].map(count);
    assert_eq!(counts, [394, 442, 103]);
    Ok(())
}
