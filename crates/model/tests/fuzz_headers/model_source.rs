//! `ModelSource` text and the crate's TOML sections (`model`, `lora`).
use thinkjudge_model::{LoraConfig, LoraTarget, ModelSource};

use crate::fuzz_support::run;
use crate::fuzz_support::toml_fuzz::{self, Spec};

/// Arbitrary text as a model source: no panic, and a parsed source prints back to itself.
#[test]
fn fuzz_model_source_text() {
    const PIECES: [&str; 16] = [
        "hf:", "default", "/", "@", ".gguf", ".GGUF", "./", " ", "org", "name", "\u{0}", "..", "é",
        "-", "_", ".",
    ];
    run("model_source_text", 5_000, |rng| {
        let mut s = String::new();
        for _ in 0..rng.len(12) {
            if rng.one_in(4) {
                let n = rng.len(6);
                s.push_str(&rng.text(n));
            } else {
                let p = *rng.pick(&PIECES);
                s.push_str(p);
            }
        }
        if let Ok(src) = ModelSource::parse(&s) {
            let back = ModelSource::parse(&src.to_string())
                .map_err(|e| format!("{s:?} → {src} does not parse back: {e}"))?;
            if back != src {
                return Err(format!("{s:?} → {src:?} → {back:?}"));
            }
        }
        Ok(())
    });
}

/// The model crate's TOML sections, as they sit in a training config.
#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelSection {
    model: ModelSource,
    #[serde(default)]
    lora: Option<LoraConfig>,
}

fn model_spec() -> Spec<ModelSection> {
    let sections = [
        ModelSection {
            model: ModelSource::Default,
            lora: Some(LoraConfig::default()),
        },
        ModelSection {
            model: ModelSource::Gguf("models/x.gguf".into()),
            lora: Some(LoraConfig {
                rank: 4,
                alpha: 8.0,
                dropout: 0.1,
                targets: vec![LoraTarget::ALL[0]],
                layers: Some(vec![0, 3]),
            }),
        },
        ModelSection {
            model: ModelSource::Dir("ckpt/step-10".into()),
            lora: None,
        },
    ];
    let mut seeds: Vec<String> = sections
        .iter()
        .map(|s| toml::to_string(s).expect("serialize"))
        .collect();
    seeds.extend([
        "model = { hub = { id = \"org/name\", revision = \"main\" } }\n".to_string(),
        "model = { dir = \"some/dir\" }\n[lora]\nrank = 8\n".to_string(),
        "model = { gguf = \"a.gguf\" }\n".to_string(),
    ]);
    Spec {
        seeds,
        validate: |s| match &s.lora {
            Some(l) => l.validate().map_err(|e| e.to_string()),
            None => Ok(()),
        },
        // A directory named `default` is written `./default`: the same directory.
        same: |a, b| {
            let plain = |s: &ModelSource| match s {
                ModelSource::Dir(p) => ModelSource::Dir(p.strip_prefix(".").unwrap_or(p).into()),
                other => other.clone(),
            };
            a.lora == b.lora && plain(&a.model) == plain(&b.model)
        },
    }
}

/// Mutated `model` / `lora` TOML: parse and validate never panic; valid ones round-trip.
#[test]
fn fuzz_toml_model_sections() {
    let spec = model_spec();
    run("toml_model_sections", 3_000, move |rng| {
        toml_fuzz::check(rng, &spec)
    });
}

/// An unknown key in `lora`, `model = { … }` or `model.hub` is rejected, naming the key.
#[test]
fn fuzz_toml_model_unknown_keys_are_named() {
    let spec = model_spec();
    run("toml_model_unknown_keys", 1_000, move |rng| {
        toml_fuzz::check_unknown_key(rng, &spec)
    });
}

/// Regression (found by `fuzz_toml_model_sections`): a source written as a table because its
/// text form would read back as another kind (`{ gguf = "model.bin" }` → `"model.bin"`, a
/// directory) now stays a table; and (found by `fuzz_toml_model_unknown_keys_are_named`)
/// unknown keys in a source table are named.
#[test]
fn model_sources_serialize_to_what_they_are() {
    for src in [
        ModelSource::Gguf("model.bin".into()),
        ModelSource::Dir("weights.gguf".into()),
        ModelSource::Dir(" spaced ".into()),
        ModelSource::Gguf("x.gguf".into()),
        ModelSource::Dir("ckpt".into()),
        ModelSource::Default,
    ] {
        let section = ModelSection {
            model: src.clone(),
            lora: None,
        };
        let text = toml::to_string(&section).expect("serialize");
        let back: ModelSection = toml::from_str(&text).expect("parse back");
        assert_eq!(back.model, src, "{text}");
    }
    for (doc, key) in [
        ("model = { gguf = \"a.gguf\", revison = \"x\" }", "revison"),
        ("model = { hub = { id = \"a/b\", rev = \"x\" } }", "rev"),
        ("model = { file = \"x\" }", "file"),
    ] {
        let e = toml::from_str::<ModelSection>(doc).expect_err(doc);
        assert!(e.to_string().contains(key), "{doc}: {e}");
    }
}
