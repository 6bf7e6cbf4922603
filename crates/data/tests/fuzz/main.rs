//! Fuzz tests of the judgment parsers, chat and judge templates, and the crate's TOML configs:
//! no input panics, hangs or allocates absurd memory, and each target checks properties
//! that can fail (listed per target). The dataset loaders are in `fuzz_loaders/`.
//!
//! The harness is `../fuzz_support/mod.rs` (seeded generators, a per-case hang guard, an
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

#[path = "../fuzz_support/mod.rs"]
mod fuzz_support;

mod parsers;
mod template_gen;
mod templates;
mod toml_configs;

use thinkjudge_data::{ParseOptions, TemplateKind};

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
