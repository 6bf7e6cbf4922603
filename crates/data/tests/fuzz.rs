//! Fuzz tests of the judgment parsers, chat and judge templates, and the crate's TOML configs:
//! no input panics, hangs or allocates absurd memory, and each target checks properties
//! that can fail (listed per target). The dataset loaders are in `fuzz_loaders.rs`.
//!
//! The harness is `fuzz_support/mod.rs` (seeded generators, a per-case hang guard, an
//! allocation cap). CI runs a quick subset (a few thousand cases per target, a few seconds
//! in all). The long run, ≥ 100k inputs per target:
//!
//! ```sh
//! FUZZ_CASES=100000 cargo test --release -p thinkjudge-data --test fuzz -- --nocapture
//! ```
//!
//! Each target prints its case count, time and largest allocation. A failure names its case;
//! `FUZZ_SEED=<seed> FUZZ_ONLY=<case>` reruns that one input and prints it. Other knobs:
//! `FUZZ_SEED` (a new seed explores new inputs), `FUZZ_HANG_SECS`, `FUZZ_MAX_ALLOC_MB`.
//! `cargo fuzz` is not used: it needs a nightly toolchain, which this workspace does not use.

mod fuzz_support;

use fuzz_support::toml_fuzz::{self, Spec};
use fuzz_support::{guarded, run, show, Rng};
use thinkjudge_data::*;

const KINDS: [TemplateKind; 4] = [
    TemplateKind::PairwiseVerdict,
    TemplateKind::PairwiseScores,
    TemplateKind::PairwiseVerdictScores,
    TemplateKind::PointwiseScore,
];

const OPTS: [ParseOptions; 2] = [
    ParseOptions {
        think_prefilled: false,
    },
    ParseOptions {
        think_prefilled: true,
    },
];

// ---------------------------------------------------------------------------------------
// Parsers

/// Tags, near-miss tags, verdicts and numbers the parsers look for, and their lookalikes.
const PIECES: &[&str] = &[
    // the real tags
    "<think>",
    "</think>",
    "<answer>",
    "</answer>",
    "<score>",
    "</score>",
    "<score_A>",
    "</score_A>",
    "<score_B>",
    "</score_B>",
    // near misses
    "<answer >",
    "< answer>",
    "</ answer>",
    "<answer",
    "answer>",
    "<<answer>>",
    "</answer",
    "<think/>",
    "<thinking>",
    "</thinking>",
    "<score_a >",
    "<score-A>",
    "<scoreA>",
    "<score_C>",
    "<\u{17f}core>",
    "</thin\u{212a}>",
    "<ANSWER\u{0}>",
    "\u{ff1c}answer\u{ff1e}",
    "<answer><answer>",
    "</answer></answer>",
    "<",
    ">",
    "/",
    // verdicts
    "[[A]]",
    "[[B]]",
    "[[ a ]]",
    "[[\nb\n]]",
    "[[A]",
    "[A]]",
    "[[AB]]",
    "[[C]]",
    "[[\u{ff21}]]",
    "[[A]] or [[B]]",
    "[[[A]]]",
    "[[\u{a0}A\u{3000}]]",
    "[[",
    "]]",
    // numbers
    "7",
    "7.5",
    "10",
    "0",
    "10.0",
    "10.5",
    "-1",
    "-0",
    "7.25",
    "07",
    "007.5",
    ".5",
    "5.",
    "1e1",
    "NaN",
    "inf",
    "8/10",
    "8 / 10",
    "8/100",
    "8/10/10",
    "\u{667}",
    "\u{ff17}",
    "9.9",
    "0.0",
    "99",
    "100",
    "4294967296",
    "18446744073709551616",
    // whitespace
    " ",
    "\n",
    "\t",
    "\r\n",
    "\u{a0}",
    "\u{2028}",
    "\u{3000}",
    "\u{85}",
    "\u{feff}",
];

fn flip_case(rng: &mut Rng, s: &str) -> String {
    s.chars()
        .map(|c| {
            if rng.one_in(3) {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect()
}

/// A judge completion assembled from [`PIECES`], random text and long repeats (up to a few
/// hundred KiB, for super-linear matching).
fn judge_text(rng: &mut Rng) -> String {
    let mut out = String::new();
    for _ in 0..rng.len(40) {
        let piece = match rng.below(10) {
            0..=5 => rng.pick(PIECES).to_string(),
            6 => {
                let p = *rng.pick(PIECES);
                flip_case(rng, p)
            }
            7 => {
                let n = rng.len(30);
                rng.text(n)
            }
            8 => "9".repeat(rng.len(2000)),
            _ => {
                let p = rng.pick(PIECES).to_string();
                let max = if rng.one_in(20) { 20_000 } else { 50 };
                p.repeat(rng.len(max))
            }
        };
        out.push_str(&piece);
    }
    out
}

fn within(outer: &str, inner: &str) -> bool {
    let (o, i) = (outer.as_ptr() as usize, inner.as_ptr() as usize);
    i >= o && i + inner.len() <= o + outer.len() && outer.is_char_boundary(i - o)
}

fn on_grid(x: f64) -> bool {
    x.is_finite()
        && (SCORE_MIN..=SCORE_MAX).contains(&x)
        && ((x * 10.0).round() - x * 10.0).abs() < 1e-9
}

/// Every property of one text under one set of options.
fn check_text(text: &str, opts: ParseOptions) -> Result<(), String> {
    let region = answer_region(text, opts);
    if let Some(r) = region {
        if !within(text, r) {
            return Err("the answer region is not a slice of the text".into());
        }
        let lower = r.to_ascii_lowercase();
        if lower.contains("<think>") || lower.contains("</think>") {
            return Err(format!("the answer region {r:?} holds a think tag"));
        }
    }
    let upper = text.to_ascii_uppercase();
    let lower = text.to_ascii_lowercase();
    for kind in KINDS {
        let j = parse_judgment(text, kind, opts);
        if parse_completion(text, kind, opts).judgment != j {
            return Err(format!(
                "{kind:?}: parse_completion disagrees with parse_judgment"
            ));
        }
        // The single-purpose parsers agree with parse_judgment.
        let single = match kind {
            TemplateKind::PairwiseVerdict => parse_verdict(text, opts).map(Judgment::Verdict),
            TemplateKind::PairwiseScores => {
                parse_scores(text, opts).map(|(a, b)| Judgment::Scores { a, b })
            }
            TemplateKind::PairwiseVerdictScores => parse_scores(text, opts).and_then(|(a, b)| {
                let verdict = parse_verdict(text, opts)?;
                Some(Judgment::VerdictWithScores { verdict, a, b })
            }),
            TemplateKind::PointwiseScore => parse_score(text, opts).map(Judgment::Score),
        };
        if single != j {
            return Err(format!(
                "{kind:?}: {j:?} but the single parsers say {single:?}"
            ));
        }
        // Scores are in range, on the one-decimal grid.
        let scores_ok = match j {
            Some(Judgment::Score(x)) => on_grid(x),
            Some(Judgment::Scores { a, b } | Judgment::VerdictWithScores { a, b, .. }) => {
                on_grid(a) && on_grid(b)
            }
            _ => true,
        };
        if !scores_ok {
            return Err(format!(
                "{kind:?}: score out of range or off the grid: {j:?}"
            ));
        }
        // Rule 1: only the answer region matters.
        match region {
            None if j.is_some() => return Err(format!("{kind:?}: {j:?} without an answer region")),
            Some(r) => {
                let alone = parse_judgment(&format!("</think>{r}"), kind, opts);
                if alone != j {
                    return Err(format!(
                        "{kind:?}: {j:?}, but the answer region alone gives {alone:?}"
                    ));
                }
            }
            None => {}
        }
        // Rule 4: ASCII case never matters (tags, verdict letters; numbers have no case).
        for (name, variant) in [("upper", &upper), ("lower", &lower)] {
            let v = parse_judgment(variant, kind, opts);
            if v != j {
                return Err(format!("{kind:?}: {j:?}, but {v:?} in {name} case"));
            }
        }
    }
    // Rule 8: the thought is a slice of the text, closed iff there is a `</think>`.
    if let Some(span) = extract_think(text, opts) {
        if !within(text, span.text) {
            return Err("the thought is not a slice of the text".into());
        }
        if span.closed != lower.contains("</think>") {
            return Err(format!("closed = {} is wrong", span.closed));
        }
    }
    Ok(())
}

/// Random judge completions: no panic or hang, and the rules of `parse`'s module docs hold.
#[test]
fn fuzz_judgment_parsers() {
    run("judgment_parsers", 3_000, |rng| {
        let text = judge_text(rng);
        show("text", &text);
        for opts in OPTS {
            check_text(&text, opts).map_err(|e| format!("{e}\n  text: {:?}", preview(&text)))?;
        }
        Ok(())
    });
}

fn preview(s: &str) -> String {
    fuzz_support::preview(s.as_bytes())
}

fn judgment(rng: &mut Rng) -> Judgment {
    let side = if rng.one_in(2) { Side::A } else { Side::B };
    let which = rng.below(4);
    let mut score = || rng.range(0, 100) as f64 / 10.0;
    match which {
        0 => Judgment::Verdict(side),
        1 => Judgment::Scores {
            a: score(),
            b: score(),
        },
        2 => Judgment::VerdictWithScores {
            verdict: side,
            a: score(),
            b: score(),
        },
        _ => Judgment::Score(score()),
    }
}

fn kind_of(j: &Judgment) -> TemplateKind {
    match j {
        Judgment::Verdict(_) => TemplateKind::PairwiseVerdict,
        Judgment::Scores { .. } => TemplateKind::PairwiseScores,
        Judgment::VerdictWithScores { .. } => TemplateKind::PairwiseVerdictScores,
        Judgment::Score(_) => TemplateKind::PointwiseScore,
    }
}

/// Rendered completions parse back whatever the thought holds (verdicts, scores, tags, odd
/// Unicode), as long as it does not open or close a thought itself.
#[test]
fn fuzz_rendered_completions_round_trip() {
    run("rendered_completions", 3_000, |rng| {
        let thought = judge_text(rng);
        let lower = thought.to_ascii_lowercase();
        if lower.contains("<think>") || lower.contains("</think>") {
            return Ok(());
        }
        let j = judgment(rng);
        let prefilled = rng.one_in(2);
        let text = render_completion(&thought, &j, prefilled);
        show("text", &text);
        let opts = ParseOptions {
            think_prefilled: prefilled,
        };
        let parsed = parse_completion(&text, kind_of(&j), opts);
        if parsed.judgment != Some(j) {
            return Err(format!(
                "{j:?} rendered, {:?} parsed back from {}",
                parsed.judgment,
                preview(&text)
            ));
        }
        let span = parsed.think.map(|t| (t.text.trim(), t.closed));
        if span != Some((thought.trim(), true)) {
            return Err(format!(
                "thought {span:?} parsed back from {}",
                preview(&text)
            ));
        }
        Ok(())
    });
}

/// Multi-MiB adversarial completions (every parser, both options) finish: the regexes are
/// linear-time, and match iteration must not turn quadratic. The hang guard fails the test
/// if one does not finish; nothing is timed.
#[test]
fn parsers_finish_on_huge_adversarial_inputs() {
    let n = 100_000;
    let inputs: Vec<(&str, String)> = vec![
        ("open answers", "<answer>".repeat(n)),
        ("open answers with verdicts", "<answer>[[A]]".repeat(n)),
        ("close answers", "</answer>".repeat(n)),
        ("open thoughts", "<think>".repeat(n)),
        ("close thoughts", "</think>".repeat(n)),
        ("thought pairs", "<think></think>".repeat(n)),
        (
            "unclosed score_A",
            format!("{}</score_A>", "<score_A>".repeat(n)),
        ),
        ("brackets", format!("<answer>{}</answer>", "[[".repeat(n))),
        (
            "whitespace verdict",
            format!(
                "<answer>[[{}A{}]]</answer>",
                " ".repeat(4 * n),
                "\u{a0}".repeat(n)
            ),
        ),
        ("digits", format!("<score>{}</score>", "1".repeat(4 * n))),
        (
            "spaced fraction",
            format!(
                "<score>9{}/{}10</score>",
                " ".repeat(2 * n),
                " ".repeat(2 * n)
            ),
        ),
        ("tag prefixes", "<answe<score_<thin".repeat(n / 2)),
        (
            "every tag",
            "<think></think><answer>[[A]]</answer><score>1</score>".repeat(n / 8),
        ),
    ];
    for (what, text) in inputs {
        let t = std::time::Instant::now();
        guarded("huge parser input", move || {
            for opts in OPTS {
                for kind in KINDS {
                    let _ = parse_completion(&text, kind, opts);
                }
            }
        });
        eprintln!("{what}: {:.2?}", t.elapsed());
    }
}

// ---------------------------------------------------------------------------------------
// Templates

const SECRET: &str = "THINKJUDGE-FUZZ-SECRET-7f3a";

/// A file a template must never be able to read.
fn secret_file() -> std::path::PathBuf {
    let path =
        std::env::temp_dir().join(format!("thinkjudge-fuzz-secret-{}.txt", std::process::id()));
    std::fs::write(&path, SECRET).expect("write the secret file");
    path
}

/// Jinja fragments, hostile ones included (file access, recursion, big ranges). Fragments
/// that make minijinja allocate without bound (`batch`/`slice`/`indent` widths, padded
/// `format`, string doubling) are left out: see `known_bug_templates_can_exhaust_memory`.
fn template_fragments(secret: &str) -> Vec<String> {
    let mut f: Vec<String> = [
        "{{ messages[0]['content'] }}",
        "{% for m in messages %}",
        "{% for m in messages recursive %}",
        "{{ loop(messages) }}",
        "{% endfor %}",
        "{% if add_generation_prompt %}",
        "{% if m.role == 'user' %}",
        "{% else %}",
        "{% endif %}",
        "{{ bos_token }}{{ eos_token }}",
        "{{ raise_exception('refused') }}",
        "{% macro f(n) %}",
        "{% endmacro %}",
        "{{ f(1) }}{{ f(2) }}",
        "{% for i in range(100000) %}",
        "{% for j in range(100000) %}{{ j }}",
        "{% set x = range(100000) %}",
        "{{ x|length }}",
        "{{ m.content.strip().upper() }}",
        "{{ m.content.split(' ') }}",
        "{{ 'a' ~ 'b' }}",
        "{% raw %}",
        "{% endraw %}",
        "{# comment",
        "#}",
        "{{",
        "}}",
        "{%",
        "%}",
        "{% break %}",
        "{% continue %}",
        "{{ messages|tojson }}",
        "{% filter upper %}",
        "{% endfilter %}",
        "{{ self }}",
        "{% set ns = namespace(x=0) %}{% set ns.x = ns.x + 1 %}",
        "{{ 10 ** 10 }}",
        "{{ 2 ** 1000 }}",
        "{{ 1 / 0 }}",
        "{{ 1 // 0 }}",
        "{{ -9223372036854775808 // -1 }}",
        "{{ 'x' * 1000 }}",
        "{{ '%s-%d'|format('a', 3) }}",
        "{{ messages[99999999999] }}",
        "{{ undefined_name.attr }}",
        "{{ question }}{{ response_a }}{{ response }}",
        "{% include 'chat_template' %}",
        "{% include 'judge' %}",
        "{% extends 'chat_template' %}",
        "{% import 'chat_template' as t %}",
        "{% from 'judge' import x %}",
        "{% include '/etc/passwd' %}",
        "{% include '../Cargo.toml' %}",
        "{% include 'file:///etc/passwd' %}",
        "{% include ['missing', 'chat_template'] %}",
        "{% include 'missing' ignore missing %}",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for tag in ["include", "import", "extends"] {
        let alias = if tag == "import" { " as s" } else { "" };
        f.push(format!("{{% {tag} {secret:?}{alias} %}}"));
    }
    f.push(format!("{{{{ {secret:?} }}}}"));
    f
}

/// A template: mostly well-formed (balanced blocks from a small grammar, so rendering is
/// reached), sometimes a soup of [`template_fragments`].
fn random_template(rng: &mut Rng, fragments: &[String], secret: &str) -> String {
    if rng.one_in(4) {
        let mut s = String::new();
        for _ in 0..rng.range(1, 12) {
            if rng.one_in(6) {
                let n = rng.len(12);
                s.push_str(&rng.text(n));
            } else {
                s.push_str(rng.pick(fragments).as_str());
            }
        }
        return s;
    }
    let mut s = String::new();
    if rng.one_in(3) {
        s.push_str("{% macro f(n) %}{% if n > 0 %}{{ f(n - 1) }}");
        if rng.one_in(2) {
            s.push_str("{{ f(n - 1) }}");
        }
        s.push_str("{% endif %}x{% endmacro %}");
    }
    if rng.one_in(4) {
        s.push_str("{% set ns = namespace(x=0) %}");
    }
    for _ in 0..rng.range(1, 4) {
        s.push_str(&block(rng, 0, secret));
    }
    s
}

/// A range bound: mostly small, rarely big enough to need the fuel limit (a render that
/// runs out of fuel takes ~0.1 s, so they are kept to about one case in a hundred).
fn bound(rng: &mut Rng, depth: usize) -> usize {
    if rng.one_in(300) {
        100_000
    } else if depth == 0 {
        rng.len(100)
    } else {
        rng.len(6)
    }
}

fn expr(rng: &mut Rng, secret: &str) -> String {
    match rng.below(22) {
        0 => "messages[0]['content']".into(),
        1 => format!("messages[{}].content", rng.range(0, 9)),
        2 => "m.content.strip().upper()".into(),
        3 => "m['role'] ~ ': ' ~ m['content']".into(),
        4 => format!("range({})|length", bound(rng, 0)),
        5 => "bos_token ~ eos_token".into(),
        6 => format!("f({})", if rng.one_in(100) { 40 } else { rng.len(10) }),
        7 => "loop.index0".into(),
        8 => "ns.x".into(),
        9 => "raise_exception('refused')".into(),
        10 => "undefined_name".into(),
        11 => "question ~ response_a ~ response_b".into(),
        12 => "response ~ start ~ end".into(),
        13 => format!("{secret:?}"),
        14 => format!("{} * {}", rng.range(0, 1_000_000), rng.range(0, 1_000_000)),
        15 => format!("{} ** {}", rng.range(0, 100), rng.range(0, 100)),
        16 => format!("{} // {}", rng.range(0, 10), rng.range(0, 3)),
        17 => "messages|tojson".into(),
        18 => format!("'x' * {}", rng.len(1000)),
        19 => "m.content.split(' ')|join(',')".into(),
        20 => "messages|map(attribute='role')|list".into(),
        _ => format!("{:?}", rng.text(4)),
    }
}

fn block(rng: &mut Rng, depth: usize, secret: &str) -> String {
    let body = |rng: &mut Rng| -> String {
        if depth >= 4 {
            return format!("{{{{ {} }}}}", expr(rng, secret));
        }
        (0..rng.range(1, 3))
            .map(|_| block(rng, depth + 1, secret))
            .collect()
    };
    match rng.below(12) {
        0..=2 => format!("{{{{ {} }}}}", expr(rng, secret)),
        3 => {
            let n = rng.len(10);
            rng.text(n).replace(['{', '}', '%', '#'], "")
        }
        4 => format!("{{% for m in messages %}}{}{{% endfor %}}", body(rng)),
        5 => format!(
            "{{% for i in range({}) %}}{}{{% if i > {} %}}{{% break %}}{{% endif %}}{{% endfor %}}",
            bound(rng, depth),
            body(rng),
            bound(rng, depth)
        ),
        6 => format!(
            "{{% for m in messages recursive %}}{}{{% if loop.depth < {} %}}{{{{ loop(messages) }}}}{{% endif %}}{{% endfor %}}",
            body(rng),
            if rng.one_in(100) { 600 } else { rng.len(3) }
        ),
        7 => format!(
            "{{% if {} %}}{}{{% else %}}{}{{% endif %}}",
            expr(rng, secret),
            body(rng),
            body(rng)
        ),
        8 => format!("{{% set ns.x = ns.x + 1 %}}{{% set y = {} %}}{{{{ y }}}}", expr(rng, secret)),
        9 => {
            let name = match rng.below(5) {
                0 => format!("{secret:?}"),
                1 => "'chat_template'".into(),
                2 => "'judge'".into(),
                3 => "'/etc/passwd'".into(),
                _ => "['missing', 'chat_template']".into(),
            };
            match rng.below(4) {
                0 => format!("{{% include {name} %}}"),
                1 => format!("{{% include {name} ignore missing %}}"),
                2 => format!("{{% import {name} as t %}}{{{{ t }}}}"),
                _ => format!("{{% extends {name} %}}"),
            }
        }
        10 => format!("{{% filter upper %}}{}{{% endfilter %}}", body(rng)),
        _ => format!("{{% raw %}}{}{{% endraw %}}", expr(rng, secret)),
    }
}

fn no_secret(what: &str, text: &str) -> Result<(), String> {
    if text.contains(SECRET) {
        return Err(format!("{what} holds the secret file's content: {text:?}"));
    }
    Ok(())
}

fn sample_messages(rng: &mut Rng) -> Vec<Message> {
    let mut m = Vec::new();
    if rng.one_in(3) {
        m.push(Message::system("Be brief."));
    }
    for i in 0..rng.range(0, 4) {
        m.push(Message::user(format!("question {i}")));
        m.push(Message::assistant(format!("answer {i}")));
    }
    m.push(Message::user(rng.text(8)));
    m
}

/// Random (mostly broken, some hostile) templates as chat templates, as judge templates and
/// inside `tokenizer_config.json`: never a panic or a hang (fuel), never the content of a
/// file outside the template (there is no loader).
#[test]
fn fuzz_templates() {
    let secret = secret_file().display().to_string();
    let fragments = template_fragments(&secret);
    let summary = run("templates", 2_000, move |rng| {
        let source = random_template(rng, &fragments, &secret);
        show("template", &source);
        let messages = sample_messages(rng);
        match rng.below(3) {
            0 => {
                if let Ok(t) = ChatTemplate::new(&source, SpecialTokens::default()) {
                    match t.render(&messages, rng.one_in(2)) {
                        Ok(out) => no_secret("the output", &out)?,
                        Err(e) => no_secret("the error", &e.to_string())?,
                    }
                }
            }
            1 => {
                let kind = *rng.pick(&KINDS);
                let t = JudgeTemplate::custom(kind, Delimiters::Tags, source, "fuzz.j2");
                match t {
                    Ok(t) => {
                        let out = if kind.is_pairwise() {
                            t.render_pair(&messages, "a", "b", Some("r"))
                        } else {
                            t.render_single(&messages, "a", None)
                        };
                        match out {
                            Ok(out) => no_secret("the output", &out)?,
                            Err(e) => no_secret("the error", &e.to_string())?,
                        }
                    }
                    Err(e) => no_secret("the error", &e.to_string())?,
                }
            }
            _ => {
                let template = match rng.below(4) {
                    0 => serde_json::json!(source),
                    1 => serde_json::json!([{"name": "default", "template": source}]),
                    2 => serde_json::json!([{"name": "tool_use"}, {"template": 3}]),
                    _ => serde_json::json!({"template": source}),
                };
                let bos = if rng.one_in(2) {
                    serde_json::json!({"content": rng.text(3)})
                } else {
                    serde_json::json!(rng.below(5))
                };
                let cfg = serde_json::json!({"chat_template": template, "bos_token": bos});
                let mut json = cfg.to_string();
                if rng.one_in(5) {
                    let mut cut = rng.below(json.len() + 1);
                    while !json.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    json.truncate(cut);
                }
                if let Ok(t) = ChatTemplate::from_tokenizer_config(&json) {
                    if let Ok(out) = t.render(&messages, true) {
                        no_secret("the output", &out)?;
                    }
                }
            }
        }
        Ok(())
    });
    assert!(summary.cases > 0);
}

/// Hostile templates fail quickly with an error, as chat templates and as judge templates:
/// unbounded loops and exponential recursion run out of fuel, file access finds nothing.
#[test]
fn hostile_templates_fail_without_hanging_or_reading_files() {
    let secret = secret_file().display().to_string();
    let hostile: Vec<(&str, String)> = vec![
        (
            "nested ranges",
            "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
                .into(),
        ),
        (
            "exponential macro recursion",
            "{% macro f(n) %}{% if n > 0 %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(60) }}".into(),
        ),
        (
            "infinite macro recursion",
            "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}".into(),
        ),
        (
            "recursive loop",
            "{% for m in messages recursive %}{{ loop(messages) }}{% endfor %}".into(),
        ),
        ("self include", "{% include 'chat_template' %}{% include 'judge' %}".into()),
        ("self extends", "{% extends 'chat_template' %}{% extends 'judge' %}".into()),
        ("include by path", format!("{{% include {secret:?} %}}")),
        ("import by path", format!("{{% import {secret:?} as s %}}{{{{ s }}}}")),
        ("extends by path", format!("{{% extends {secret:?} %}}")),
        ("deep nesting", "{% if true %}".repeat(5_000)),
        ("deep parentheses", format!("{{{{ {}1{} }}}}", "(".repeat(50_000), ")".repeat(50_000))),
        ("huge range", "{{ range(10000000000) }}".into()),
    ];
    for (what, source) in hostile {
        let t = std::time::Instant::now();
        let (chat, judge) = guarded("hostile template", move || {
            let chat = ChatTemplate::new(&source, SpecialTokens::default())
                .and_then(|t| t.render(&[Message::user("hi")], true));
            let judge = JudgeTemplate::custom(
                TemplateKind::PairwiseVerdict,
                Delimiters::Brackets,
                source,
                "hostile.j2",
            )
            .map(|_| ());
            (chat, judge)
        });
        eprintln!("{what}: {:.2?}", t.elapsed());
        let chat = chat.err().map(|e| e.to_string());
        let judge = judge.err().map(|e| e.to_string());
        for (which, err) in [("chat", chat), ("judge", judge)] {
            let err = err.unwrap_or_else(|| panic!("{what}: the {which} template rendered"));
            assert!(!err.contains(SECRET), "{what}: {err}");
            assert!(err.starts_with("template `"), "{what}: {err}");
        }
    }
}

/// The fuel limit leaves room for real use: a long conversation through real templates.
#[test]
fn fuel_leaves_room_for_long_conversations() -> Result<()> {
    const SMOLLM2: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";
    let mut chat = Vec::new();
    for i in 0..2_000 {
        chat.push(Message::user(format!("q{i}")));
        chat.push(Message::assistant(format!("a{i}")));
    }
    chat.push(Message::user("last"));
    for src in [SMOLLM2, CHATML_TEMPLATE] {
        let out = ChatTemplate::new(src, SpecialTokens::default())?.render(&chat, true)?;
        assert!(out.contains("q1999") && out.ends_with("<|im_start|>assistant\n"));
    }
    let judge = JudgeTemplate::custom(
        TemplateKind::PairwiseVerdict,
        Delimiters::Brackets,
        "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}{{ response_a }}{{ response_b }}".into(),
        "long.j2",
    )?;
    let out = judge.render_pair(&chat, "A", "B", None)?;
    assert!(out.contains("q1999"));
    Ok(())
}

/// Known bug (see the fuzz report): minijinja's `batch`, `slice`, `indent` and `tojson`
/// filters, pycompat's padded `format`, and string doubling allocate whatever size a
/// template asks for, so a hostile `chat_template` in a downloaded model aborts the process
/// ("memory allocation of … bytes failed"). Fuel does not help: each is one instruction.
/// Each template runs in a child process (this test binary, re-executed); the test passes
/// when every child gets an error instead of aborting.
#[test]
#[ignore = "known bug: hostile chat templates can abort the process by allocating (see the fuzz report)"]
fn known_bug_templates_can_exhaust_memory() {
    let hostile = [
        "{{ [1, 2]|batch(1000000000000) }}",
        "{{ [1, 2, 3]|slice(1000000000000) }}",
        "{{ 'a'|indent(100000000000) }}",
        "{{ [1]|tojson(indent=100000000000) }}",
        "{{ '{:>99999999999}'.format(1) }}",
        "{% set s = 'x' * 100000000 %}{% for i in range(6) %}{% set s = s ~ s %}{% endfor %}{{ s|length }}",
    ];
    if let Ok(i) = std::env::var("FUZZ_CHILD_TEMPLATE") {
        let src = hostile[i.parse::<usize>().expect("index")];
        let r = ChatTemplate::new(src, SpecialTokens::default())
            .and_then(|t| t.render(&[Message::user("hi")], true));
        assert!(r.is_err(), "{src} rendered");
        return;
    }
    let exe = std::env::current_exe().expect("test binary");
    let mut aborted = Vec::new();
    for (i, src) in hostile.iter().enumerate() {
        let status = std::process::Command::new(&exe)
            .args([
                "known_bug_templates_can_exhaust_memory",
                "--exact",
                "--ignored",
            ])
            .env("FUZZ_CHILD_TEMPLATE", i.to_string())
            .env("RUST_BACKTRACE", "0")
            .stdout(std::process::Stdio::null())
            .status()
            .expect("run child");
        if !status.success() {
            aborted.push(*src);
        }
    }
    assert!(
        aborted.is_empty(),
        "these templates abort the process: {aborted:#?}"
    );
}

// ---------------------------------------------------------------------------------------
// TOML configs

fn spec<T: serde::Serialize + PartialEq>(
    seeds: Vec<T>,
    extra: &[&str],
    validate: fn(&T) -> std::result::Result<(), String>,
) -> Spec<T> {
    let mut docs: Vec<String> = seeds
        .iter()
        .map(|s| toml::to_string(s).expect("seed serializes"))
        .collect();
    docs.extend(extra.iter().map(|s| s.to_string()));
    Spec {
        seeds: docs,
        validate,
        same: |a, b| a == b,
    }
}

fn ok<T>(_: &T) -> std::result::Result<(), String> {
    Ok(())
}

fn msg(r: Result<()>) -> std::result::Result<(), String> {
    r.map_err(|e| e.to_string())
}

/// The data crate's config sections, each with a validation that may run after parsing.
fn config_targets(rng: &mut Rng, unknown_key: bool) -> std::result::Result<(), String> {
    macro_rules! target {
        ($spec:expr) => {{
            let s = $spec;
            if unknown_key {
                toml_fuzz::check_unknown_key(rng, &s)
            } else {
                toml_fuzz::check(rng, &s)
            }
        }};
    }
    match rng.below(8) {
        0 => target!(spec(
            vec![
                PromptConfig::default(),
                PromptConfig {
                    template: TemplateConfig {
                        kind: TemplateKind::PointwiseScore,
                        delimiters: Delimiters::Tags,
                        show_reference: true,
                        custom_template: Some("judge.j2".into()),
                    },
                    prefill_think: true,
                    system_prompt: Some("Be fair.".into()),
                },
            ],
            &["[template]\nkind = \"pavs\"\n", "prefill_think = true\n"],
            |c: &PromptConfig| {
                if c.template.custom_template.is_some() {
                    return Ok(()); // reading a configured file is not under test here
                }
                PromptBuilder::from_config(c, ChatTemplate::chatml())
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            },
        )),
        1 => target!(spec(
            vec![ProceduralConfig::default()],
            &["min_steps = 1\nmax_steps = 8\nfamilies = [\"travel\"]\n"],
            |c: &ProceduralConfig| {
                msg(c.validate())?;
                // A valid config generates (or reports unworkable settings) without hanging.
                ProceduralGenerator::new(c.clone())
                    .and_then(|mut g| g.generate(2))
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            },
        )),
        2 => target!(spec(
            vec![SplitConfig::default()],
            &[],
            |c: &SplitConfig| msg(c.validate())
        )),
        3 => target!(spec(
            vec![LengthLimit {
                max_prompt_tokens: 512,
                overflow: Overflow::TrimHistory,
            }],
            &["max_prompt_tokens = 1\n"],
            |c: &LengthLimit| msg(c.validate()),
        )),
        4 => target!(spec(
            vec![Gsm8kConfig::default()],
            &["kinds = [\"slip\"]\nper_item = \"each_kind\"\n"],
            |c: &Gsm8kConfig| msg(c.validate()),
        )),
        5 => target!(spec(
            vec![MathConfig::default()],
            &["seed = 3\nlimit = 10\n"],
            ok
        )),
        6 => target!(spec(
            vec![
                LoadOptions::default(),
                LoadOptions {
                    skip_invalid: true,
                    limit: Some(5),
                },
            ],
            &[],
            ok,
        )),
        _ => target!(spec(
            vec![ParseOptions::default()],
            &["think_prefilled = true\n"],
            ok
        )),
    }
}

/// Mutated TOML for every config section of the data crate: parse, validate (and for the
/// procedural generator, generate) never panic or hang; valid configs round-trip.
#[test]
fn fuzz_toml_configs() {
    run("toml_configs", 3_000, |rng| config_targets(rng, false));
}

/// An unknown key anywhere in a data config section is rejected, and the error names it.
#[test]
fn fuzz_toml_unknown_keys_are_named() {
    run("toml_unknown_keys", 1_000, |rng| config_targets(rng, true));
}
