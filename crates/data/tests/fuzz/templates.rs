//! Chat and judge templates: random and hostile templates never panic, hang or read files;
//! fuel leaves room for real use; the known memory-exhaustion bug (ignored).

use crate::fuzz_support::{guarded, run, show, Rng};
use crate::template_gen::{random_template, template_fragments};
use crate::KINDS;
use thinkjudge_data::*;

const SECRET: &str = "THINKJUDGE-FUZZ-SECRET-7f3a";

/// A file a template must never be able to read.
fn secret_file() -> std::path::PathBuf {
    let path =
        std::env::temp_dir().join(format!("thinkjudge-fuzz-secret-{}.txt", std::process::id()));
    std::fs::write(&path, SECRET).expect("write the secret file");
    path
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
                "templates::known_bug_templates_can_exhaust_memory",
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
