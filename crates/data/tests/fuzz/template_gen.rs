//! Generators of Jinja templates: fragments (hostile ones included) and well-formed random
//! templates from a small grammar.

use crate::fuzz_support::Rng;

/// Jinja fragments, hostile ones included (file access, recursion, big ranges). Fragments
/// that make minijinja allocate without bound (`batch`/`slice`/`indent` widths, padded
/// `format`, string doubling) are left out: see `known_bug_templates_can_exhaust_memory`.
pub(crate) fn template_fragments(secret: &str) -> Vec<String> {
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
pub(crate) fn random_template(rng: &mut Rng, fragments: &[String], secret: &str) -> String {
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
