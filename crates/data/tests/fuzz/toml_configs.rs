//! The data crate's TOML config sections: mutated documents parse, validate and round-trip;
//! unknown keys are rejected by name.

use crate::fuzz_support::toml_fuzz::{self, Spec};
use crate::fuzz_support::{run, Rng};
use thinkjudge_data::*;

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
