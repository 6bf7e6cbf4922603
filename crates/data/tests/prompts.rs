//! End to end: records → chat-formatted prompts in both orders → split by pair → completions
//! parsed back against the gold side; plus a checked-in golden prompt.

mod common;

use common::fixture;
use thinkjudge_data::*;

type R = std::result::Result<(), Box<dyn std::error::Error>>;

/// SmolLM2-135M-Instruct's chat template, verbatim.
const SMOLLM2: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

fn builder(
    kind: TemplateKind,
    prefill_think: bool,
) -> std::result::Result<PromptBuilder, DataError> {
    let cfg = PromptConfig {
        template: TemplateConfig {
            kind,
            ..TemplateConfig::default()
        },
        prefill_think,
        system_prompt: None,
    };
    PromptBuilder::from_config(&cfg, ChatTemplate::new(SMOLLM2, SpecialTokens::default())?)
}

#[test]
fn golden_pav_prompt_for_smollm2() -> R {
    // The golden file was rendered by this test once and read line by line before being
    // checked in; a template change must update it on purpose.
    let item = PairwiseItem {
        id: "golden".into(),
        prompt: vec![Message::user(
            "Tom has 3 bags of 4 apples. How many apples does he have?",
        )],
        responses: [
            "3 x 4 = 12.\nAnswer: 12".into(),
            "3 x 4 = 7.\nAnswer: 7".into(),
        ],
        preference: Preference::First,
        source: None,
        subset: None,
        reference: None,
    };
    let [ab, _] = builder(TemplateKind::PairwiseVerdict, true)?.pairwise(&item)?;
    let golden = std::fs::read_to_string(fixture("golden_pav_smollm2.txt"))?;
    assert_eq!(ab.text, golden);
    Ok(())
}

#[test]
fn pairs_expand_split_and_parse_back() -> R {
    let (items, _) = load_pairwise(
        &fixture("judgebench.jsonl"),
        DataFormat::Judgebench,
        &LoadOptions::default(),
    )?;
    let b = builder(TemplateKind::PairwiseVerdict, false)?;
    let prompts = b.expand_pairwise(&items)?;
    assert_eq!(prompts.len(), 2 * items.len());
    for pair in prompts.chunks(2) {
        assert_eq!(pair[0].pair_id, pair[1].pair_id);
        assert_eq!((pair[0].order, pair[1].order), (Order::AB, Order::BA));
        assert_eq!(pair[0].gold_side.map(Side::other), pair[1].gold_side);
    }
    let shuffled = shuffle_pairs(prompts.clone(), 11);
    let split = split_pairs(
        shuffled,
        &SplitConfig {
            eval_fraction: 0.34,
            seed: 5,
        },
    )?;
    assert_eq!((split.train.len(), split.eval.len()), (4, 2));
    for part in [&split.train, &split.eval] {
        assert!(part.chunks(2).all(|c| c[0].pair_id == c[1].pair_id));
    }
    // A judge that always names the gold side is parsed as correct on every prompt.
    for p in prompts.iter().filter(|p| p.gold_side.is_some()) {
        let side = p.gold_side.ok_or("gold")?;
        let completion = render_completion(
            "Checking both.",
            &Judgment::Verdict(side),
            p.think_prefilled,
        );
        let parsed = parse_judgment(&completion, p.kind, p.parse_options());
        assert_eq!(parsed.and_then(|j| j.preferred_side()), Some(side));
    }
    let single = pick_one_order(prompts, 3);
    assert_eq!(single.len(), items.len());
    Ok(())
}

#[test]
fn prefilled_prompts_parse_completions_without_the_opening_tag() -> R {
    let b = builder(TemplateKind::PairwiseScores, true)?;
    let (items, _) = load_pairwise(
        &fixture("llmbar.json"),
        DataFormat::Llmbar,
        &LoadOptions::default(),
    )?;
    let [ab, _] = b.pairwise(&items[0])?;
    assert!(ab.text.ends_with("<|im_start|>assistant\n<think>\n"));
    let completion = "A gives the antonym.\n</think>\n<score_A>9</score_A><score_B>4.5</score_B>";
    let parsed = parse_completion(completion, ab.kind, ab.parse_options());
    assert_eq!(parsed.judgment, Some(Judgment::Scores { a: 9.0, b: 4.5 }));
    assert_eq!(parsed.think.map(|t| t.closed), Some(true));
    // Never closing the prefilled thought leaves no answer.
    let open = parse_judgment(
        "<score_A>9</score_A><score_B>1</score_B>",
        ab.kind,
        ab.parse_options(),
    );
    assert_eq!(open, None);
    Ok(())
}

#[test]
fn pointwise_prompts_for_libra_items() -> R {
    let (data, _) = load(
        &fixture("libra.jsonl"),
        DataFormat::Libra,
        &LoadOptions::default(),
    )?;
    let items = data.into_pointwise().ok_or("pointwise")?;
    let prompts = builder(TemplateKind::PointwiseScore, false)?.expand_pointwise(&items)?;
    assert_eq!(prompts.len(), 3);
    assert_eq!(prompts[1].point, Some(PointTarget::Label(PointLabel::Bad)));
    assert!(
        !prompts[0].text.contains("Reference"),
        "references stay hidden by default"
    );
    Ok(())
}

#[test]
fn length_limit_uses_the_callers_counter() -> R {
    let b = builder(TemplateKind::PairwiseVerdict, false)?;
    let mut gen = ProceduralGenerator::new(ProceduralConfig::default())?;
    let items = gen.generate(50)?;
    let words = |s: &str| s.split_whitespace().count();
    let all = b.expand_pairwise(&items)?;
    let mut counts: Vec<usize> = all.iter().map(|p| words(&p.text)).collect();
    counts.sort_unstable();
    let median = counts[counts.len() / 2];
    let limit = LengthLimit {
        max_prompt_tokens: median,
        overflow: Overflow::Drop,
    };
    let (kept, report) = expand_pairwise_within(&b, &items, &words, &limit)?;
    assert_eq!(report.items_in, 50);
    assert_eq!(report.kept + report.dropped.len(), 50);
    assert_eq!(kept.len(), 2 * report.kept);
    assert!(kept.iter().all(|p| words(&p.text) <= median));
    assert!(report.dropped.iter().all(|d| d.tokens > median));
    assert!(report.kept > 0 && !report.dropped.is_empty());
    Ok(())
}

#[test]
fn custom_templates_load_from_a_file() -> R {
    let path = common::temp_file(
        "j2",
        "Q: {{ question }}\nA: {{ response_a }}\nB: {{ response_b }}\nVerdict as <answer>[[A]]</answer> or <answer>[[B]]</answer>.",
    );
    let cfg = PromptConfig {
        template: TemplateConfig {
            custom_template: Some(path.clone()),
            ..TemplateConfig::default()
        },
        ..PromptConfig::default()
    };
    let b = PromptBuilder::from_config(&cfg, ChatTemplate::chatml())?;
    let (items, _) = load_pairwise(
        &fixture("llmbar.json"),
        DataFormat::Llmbar,
        &LoadOptions::default(),
    )?;
    let [ab, _] = b.pairwise(&items[0])?;
    assert!(
        ab.text
            .contains("Q: Give an antonym of hot.\nA: cold\nB: warm\nVerdict"),
        "{}",
        ab.text
    );
    let broken = common::temp_file("j2", "{{ question }} {{ nope }}");
    let cfg = PromptConfig {
        template: TemplateConfig {
            custom_template: Some(broken.clone()),
            ..TemplateConfig::default()
        },
        ..PromptConfig::default()
    };
    let err = PromptBuilder::from_config(&cfg, ChatTemplate::chatml())
        .err()
        .map(|e| e.to_string());
    let msg = err.unwrap_or_default();
    assert!(
        msg.contains(&broken.display().to_string()) && msg.contains("nope"),
        "{msg}"
    );
    Ok(())
}
