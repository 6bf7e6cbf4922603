//! Fuzz tests of the dataset loaders: [`load`] for every [`DataFormat`], and the GSM8K and
//! MATH problem readers, on generated files. A case writes one file: valid records of the
//! format, some structurally mutated (fields dropped, renamed, retyped, emptied, duplicated;
//! records that are not objects; numbers out of range), lines truncated or salted with
//! invalid UTF-8, blank and CRLF lines, a BOM; as JSONL or a JSON list; sometimes gzipped
//! (and then sometimes truncated, corrupted, or split into several gzip members); sometimes
//! plain random bytes. Properties, with and without `skip_invalid`:
//!
//! - no panic, no hang, no absurd allocation (the harness);
//! - every error names the file, and a record error names a line (1-based, of a non-blank
//!   line) or element (0-based) that exists;
//! - with `skip_invalid`, `loaded + skipped == records` (non-blank lines, or list elements),
//!   skipped locations are increasing; only whole-file problems (unreadable, bad gzip, a
//!   JSON list that does not parse) are still errors, the same as without it;
//! - a strict load that fails at record L skips L first when lenient; a strict load that
//!   succeeds equals the lenient one;
//! - loaded items keep the loaders' promises (unique ids, non-blank distinct responses,
//!   prompts ending with a non-blank user turn, scores in 0–10);
//! - a file without mutations loads completely.
//!
//! CI runs a quick subset; the long run (≥ 100k files):
//!
//! ```sh
//! FUZZ_CASES=100000 cargo test --release -p thinkjudge-data --test fuzz_loaders -- --nocapture
//! ```
//!
//! See `../fuzz_support/mod.rs` for the harness and its knobs (`FUZZ_SEED`, `FUZZ_ONLY`, …).

#[path = "../fuzz_support/mod.rs"]
mod fuzz_support;

mod checks;
mod files;
mod records;

use std::path::PathBuf;

use checks::{check_load, check_problems, expected};
use files::{build, gzip, Built};
use fuzz_support::{preview, run, show};
use thinkjudge_data::synth::{gsm8k, math};
use thinkjudge_data::*;

/// What a file is read as.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Reader {
    Load(DataFormat),
    Gsm8k,
    Math,
}

const READERS: [Reader; 9] = [
    Reader::Load(DataFormat::Jsonl),
    Reader::Load(DataFormat::HhRlhf),
    Reader::Load(DataFormat::Pandalm),
    Reader::Load(DataFormat::Judgebench),
    Reader::Load(DataFormat::Llmbar),
    Reader::Load(DataFormat::Rewardbench),
    Reader::Load(DataFormat::Libra),
    Reader::Gsm8k,
    Reader::Math,
];

fn file_name(reader: Reader, built: &Built, exp_list: bool) -> String {
    let stem = match reader {
        Reader::Load(f) => f.name().to_string(),
        Reader::Gsm8k => "gsm8k".into(),
        Reader::Math => "math500".into(),
    };
    let ext = if exp_list { "json" } else { "jsonl" };
    let gz = if built.gz { ".gz" } else { "" };
    format!("{stem}.{ext}{gz}")
}

/// Generated files of every format, read with and without `skip_invalid` (properties in
/// the module docs).
#[test]
fn fuzz_loaders() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root: PathBuf = dir.path().to_path_buf();
    run("loaders", 2_000, move |rng| {
        let _keep = &dir;
        let reader = *rng.pick(&READERS);
        let built = build(rng, reader);
        let exp = expected(&built);
        let path = root.join(file_name(reader, &built, exp.list));
        std::fs::write(&path, &built.bytes).map_err(|e| format!("writing the case: {e}"))?;
        show("reader", &reader);
        show("file", &String::from_utf8_lossy(&built.bytes));
        let result = match reader {
            Reader::Load(format) => {
                let limit = rng.one_in(6).then(|| rng.below(5));
                check_load(&path, format, &built, &exp, limit)
            }
            Reader::Gsm8k => check_problems(&path, &built, &exp, gsm8k::read_problems),
            Reader::Math => check_problems(&path, &built, &exp, math::read_problems),
        };
        let _ = std::fs::remove_file(&path);
        result.map_err(|e| format!("{reader:?}: {e}\n  file: {}", preview(&built.bytes)))
    });
}

/// Regression (found by `fuzz_loaders`): a gzip file of several members (`cat a.gz b.gz`,
/// pigz, bgzip) loaded only its first member, silently.
#[test]
fn every_gzip_member_is_read() -> Result<()> {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("two_members.jsonl.gz");
    let a = b"{\"prompt\": \"q1\", \"chosen\": \"a\", \"rejected\": \"b\"}\n";
    let b = b"{\"prompt\": \"q2\", \"chosen\": \"c\", \"rejected\": \"d\"}\n";
    std::fs::write(&path, gzip(&[a, b])).expect("write");
    let (items, report) = load_pairwise(&path, DataFormat::Jsonl, &LoadOptions::default())?;
    assert_eq!(items.len(), 2, "{report}");
    Ok(())
}

/// Regression (found by `fuzz_loaders`): invalid UTF-8 on one line failed the whole file
/// with an I/O error naming no line, even with `skip_invalid`.
#[test]
fn invalid_utf8_is_an_error_of_its_line() -> Result<()> {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("bad_utf8.jsonl");
    let mut bytes = b"{\"prompt\": \"q1\", \"chosen\": \"a\", \"rejected\": \"b\"}\n".to_vec();
    bytes.extend_from_slice(b"{\"prompt\": \"q2\xff\", \"chosen\": \"c\", \"rejected\": \"d\"}\n");
    std::fs::write(&path, bytes).expect("write");
    let err = load(&path, DataFormat::Jsonl, &LoadOptions::default())
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("bad_utf8.jsonl: line 2: invalid JSON"),
        "{err}"
    );
    let lenient = LoadOptions {
        skip_invalid: true,
        ..LoadOptions::default()
    };
    let (items, report) = load_pairwise(&path, DataFormat::Jsonl, &lenient)?;
    assert_eq!((items.len(), report.skipped.len()), (1, 1));
    assert_eq!(report.skipped[0].location, Location::Line(2));
    Ok(())
}
