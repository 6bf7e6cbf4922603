//! The data crate's TOML config sections: mutated documents parse, validate and round-trip;
//! unknown keys are rejected by name.

use crate::fuzz_support::toml_fuzz::{self, Spec};
use crate::fuzz_support::{run, Rng};
use thinkjudge_data::*;

fn ok<T>(_: &T) -> std::result::Result<(), String> {
    Ok(())
}

fn msg(r: Result<()>) -> std::result::Result<(), String> {
    r.map_err(|e| e.to_string())
}

/// The data crate's config sections, each with a validation that may run after parsing.
fn config_targets(rng: &mut Rng, unknown_key: bool) -> std::result::Result<(), String> {
    match rng.below(8) {
        0 => toml_fuzz::check_case(
            rng,
            &Spec::from_seeds(
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
            ),
            unknown_key,
        ),
        1 => toml_fuzz::check_case(
            rng,
            &Spec::from_seeds(
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
            ),
            unknown_key,
        ),
        2 => toml_fuzz::check_case(
            rng,
            &Spec::from_seeds(vec![SplitConfig::default()], &[], |c: &SplitConfig| {
                msg(c.validate())
            }),
            unknown_key,
        ),
        3 => toml_fuzz::check_case(
            rng,
            &Spec::from_seeds(
                vec![LengthLimit {
                    max_prompt_tokens: 512,
                    overflow: Overflow::TrimHistory,
                }],
                &["max_prompt_tokens = 1\n"],
                |c: &LengthLimit| msg(c.validate()),
            ),
            unknown_key,
        ),
        4 => toml_fuzz::check_case(
            rng,
            &Spec::from_seeds(
                vec![Gsm8kConfig::default()],
                &["kinds = [\"slip\"]\nper_item = \"each_kind\"\n"],
                |c: &Gsm8kConfig| msg(c.validate()),
            ),
            unknown_key,
        ),
        5 => toml_fuzz::check_case(
            rng,
            &Spec::from_seeds(vec![MathConfig::default()], &["seed = 3\nlimit = 10\n"], ok),
            unknown_key,
        ),
        6 => toml_fuzz::check_case(
            rng,
            &Spec::from_seeds(
                vec![
                    LoadOptions::default(),
                    LoadOptions {
                        skip_invalid: true,
                        limit: Some(5),
                    },
                ],
                &[],
                ok,
            ),
            unknown_key,
        ),
        _ => toml_fuzz::check_case(
            rng,
            &Spec::from_seeds(
                vec![ParseOptions::default()],
                &["think_prefilled = true\n"],
                ok,
            ),
            unknown_key,
        ),
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
