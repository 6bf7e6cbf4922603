//! Property tests of the judgment parsers.
//!
//! Each property runs 10,000 cases by default (quick in release). For a longer run, set
//! `PROPTEST_CASES`, e.g. `PROPTEST_CASES=100000 cargo test --release -p thinkjudge-data
//! --test parse_props`.

use proptest::prelude::*;
use thinkjudge_data::*;

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

const KINDS: [TemplateKind; 4] = [
    TemplateKind::PairwiseVerdict,
    TemplateKind::PairwiseScores,
    TemplateKind::PairwiseVerdictScores,
    TemplateKind::PointwiseScore,
];

/// Text assembled from the tags and values the parsers look for, so random inputs hit the
/// interesting paths rather than only plain noise.
fn tagged_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("<think>".to_string()),
        Just("</think>".to_string()),
        Just("<THINK>".to_string()),
        Just("<answer>".to_string()),
        Just("</answer>".to_string()),
        Just("[[A]]".to_string()),
        Just("[[ b ]]".to_string()),
        Just("<score>".to_string()),
        Just("</score>".to_string()),
        Just("<score_A>".to_string()),
        Just("</score_A>".to_string()),
        Just("<score_B>".to_string()),
        Just("</score_B>".to_string()),
        Just("/10".to_string()),
        (0u32..120).prop_map(|n| format!("{}.{}", n / 10, n % 10)),
        (0u32..15).prop_map(|n| n.to_string()),
        "[ \n\t]{0,3}",
        "\\PC{0,6}",
    ];
    proptest::collection::vec(piece, 0..24).prop_map(|v| v.concat())
}

fn judgment() -> impl Strategy<Value = Judgment> {
    let side = prop_oneof![Just(Side::A), Just(Side::B)];
    // Scores on the judge's grid: 0.0, 0.1, …, 10.0.
    let score = (0u32..=100).prop_map(|k| f64::from(k) / 10.0);
    prop_oneof![
        side.clone().prop_map(Judgment::Verdict),
        (score.clone(), score.clone()).prop_map(|(a, b)| Judgment::Scores { a, b }),
        (side, score.clone(), score.clone())
            .prop_map(|(verdict, a, b)| Judgment::VerdictWithScores { verdict, a, b }),
        score.prop_map(Judgment::Score),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn no_panic_on_arbitrary_text(text in "\\PC*", prefilled in any::<bool>()) {
        let opts = ParseOptions { think_prefilled: prefilled };
        for kind in KINDS {
            let _ = parse_completion(&text, kind, opts);
        }
    }

    #[test]
    fn tagged_text_parses_within_the_rules(text in tagged_text(), prefilled in any::<bool>()) {
        let opts = ParseOptions { think_prefilled: prefilled };
        for kind in KINDS {
            match parse_judgment(&text, kind, opts) {
                Some(Judgment::Score(x)) => prop_assert!((SCORE_MIN..=SCORE_MAX).contains(&x)),
                Some(Judgment::Scores { a, b } | Judgment::VerdictWithScores { a, b, .. }) => {
                    prop_assert!((SCORE_MIN..=SCORE_MAX).contains(&a));
                    prop_assert!((SCORE_MIN..=SCORE_MAX).contains(&b));
                }
                _ => {}
            }
        }
        // Whatever is parsed comes from after the last `</think>`.
        if let Some(close) = text.to_ascii_lowercase().rfind("</think>") {
            let tail = &text[close..];
            let whole = parse_judgment(&text, TemplateKind::PairwiseVerdict, opts);
            let after = parse_judgment(tail, TemplateKind::PairwiseVerdict, opts);
            prop_assert_eq!(whole, after);
        }
    }

    #[test]
    fn rendered_judgments_round_trip(j in judgment(), thought in "[^<]{0,80}", prefilled in any::<bool>()) {
        let text = render_completion(&thought, &j, prefilled);
        let opts = ParseOptions { think_prefilled: prefilled };
        let parsed = parse_completion(&text, j.kind(), opts);
        prop_assert_eq!(parsed.judgment, Some(j));
        let span = parsed.think.map(|t| (t.text.trim(), t.closed));
        prop_assert_eq!(span, Some((thought.trim(), true)));
    }

    #[test]
    fn a_verdict_inside_the_thought_never_counts(inner in prop_oneof![Just("A"), Just("B")], outer in prop_oneof![Just(Side::A), Just(Side::B)]) {
        let thought = format!("maybe <answer>[[{inner}]]</answer>");
        let text = render_completion(&thought, &Judgment::Verdict(outer), false);
        prop_assert_eq!(parse_verdict(&text, ParseOptions::default()), Some(outer));
        let unfinished = format!("<think>{thought}");
        prop_assert_eq!(parse_verdict(&unfinished, ParseOptions::default()), None);
    }
}
