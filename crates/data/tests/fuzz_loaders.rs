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
//! See `fuzz_support/mod.rs` for the harness and its knobs (`FUZZ_SEED`, `FUZZ_ONLY`, …).

mod fuzz_support;

use std::collections::HashSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use fuzz_support::{preview, run, show, Rng};
use serde_json::{json, Value};
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

// ---------------------------------------------------------------------------------------
// Valid records

/// Non-blank text, unique per `(i, tag)`, sometimes with odd Unicode or long.
fn text(rng: &mut Rng, i: usize, tag: &str) -> String {
    let body = match rng.below(6) {
        0 => {
            let n = rng.len(30);
            rng.text(n)
        }
        1 => "long ".repeat(rng.len(2000)),
        _ => [
            "What is 2+3?",
            "Hello!",
            "x = 3",
            "Ünïcødé 中文 😀",
            "a\nb\tc",
        ][rng.below(5)]
        .into(),
    };
    format!("{body} {tag}{i}")
}

fn messages(rng: &mut Rng, i: usize) -> Value {
    let mut m = Vec::new();
    if rng.one_in(3) {
        m.push(json!({"role": "system", "content": text(rng, i, "s")}));
    }
    for t in 0..rng.below(3) {
        m.push(json!({"role": "user", "content": text(rng, i, &format!("u{t}-"))}));
        m.push(json!({"role": "assistant", "content": text(rng, i, &format!("a{t}-"))}));
    }
    m.push(json!({"role": "user", "content": text(rng, i, "q")}));
    Value::Array(m)
}

fn prompt(rng: &mut Rng, i: usize) -> Value {
    if rng.one_in(2) {
        json!(text(rng, i, "q"))
    } else {
        messages(rng, i)
    }
}

fn one_of(rng: &mut Rng, values: &[Value]) -> Value {
    rng.pick(values).clone()
}

fn transcript(turns: &[(bool, String)]) -> String {
    turns
        .iter()
        .map(|(human, t)| format!("\n\n{}: {t}", if *human { "Human" } else { "Assistant" }))
        .collect()
}

/// Record `i` of a valid file of `reader` (`pointwise` picks the kind of a `jsonl` file).
fn valid_record(rng: &mut Rng, reader: Reader, i: usize, pointwise: bool) -> Value {
    let mut r = match reader {
        Reader::Load(DataFormat::Jsonl) if pointwise => {
            let label = one_of(
                rng,
                &[
                    json!("good"),
                    json!("bad"),
                    json!("Correct"),
                    json!("incorrect"),
                    json!(true),
                    json!(false),
                    json!(0),
                    json!(7.5),
                    json!(10),
                ],
            );
            json!({"question": prompt(rng, i), "response": text(rng, i, "r"), "label": label})
        }
        Reader::Load(DataFormat::Jsonl) => {
            let mut r = json!({"prompt": prompt(rng, i)});
            if rng.one_in(2) {
                r["responses"] = json!([text(rng, i, "a"), text(rng, i, "b")]);
                r["preference"] = one_of(rng, &[json!("first"), json!("second"), json!("tie")]);
            } else {
                r["chosen"] = json!(text(rng, i, "c"));
                r["rejected"] = json!(text(rng, i, "r"));
            }
            r
        }
        Reader::Load(DataFormat::HhRlhf) => {
            let mut shared = Vec::new();
            for t in 0..rng.below(3) {
                shared.push((true, text(rng, i, &format!("h{t}-"))));
                shared.push((false, text(rng, i, &format!("a{t}-"))));
            }
            shared.push((true, text(rng, i, "h")));
            let mut chosen = shared.clone();
            chosen.push((false, text(rng, i, "good")));
            let mut rejected = shared;
            rejected.push((false, text(rng, i, "bad")));
            json!({"chosen": transcript(&chosen), "rejected": transcript(&rejected)})
        }
        Reader::Load(DataFormat::Pandalm) => {
            let vote = |rng: &mut Rng| {
                let v = rng.below(3);
                if rng.one_in(2) {
                    json!(v)
                } else {
                    json!(v.to_string())
                }
            };
            let (instruction, input) = match rng.below(3) {
                0 => (text(rng, i, "ins"), String::new()),
                1 => (" ".into(), text(rng, i, "in")),
                _ => (text(rng, i, "ins"), text(rng, i, "in")),
            };
            json!({
                "idx": i, "instruction": instruction, "input": input,
                "response1": text(rng, i, "r1"), "response2": text(rng, i, "r2"),
                "annotator1": vote(rng), "annotator2": vote(rng), "annotator3": vote(rng),
            })
        }
        Reader::Load(DataFormat::Judgebench) => json!({
            "pair_id": format!("jb-{i}"), "question": text(rng, i, "q"),
            "response_A": text(rng, i, "a"), "response_B": text(rng, i, "b"),
            "label": one_of(rng, &[json!("A>B"), json!("B>A"), json!("A=B"), json!(" A>B ")]),
            "source": "mmlu-pro",
        }),
        Reader::Load(DataFormat::Llmbar) => json!({
            "input": text(rng, i, "q"), "output_1": text(rng, i, "o1"),
            "output_2": text(rng, i, "o2"),
            "label": one_of(rng, &[json!(1), json!(2), json!("1"), json!(" 2 ")]),
        }),
        Reader::Load(DataFormat::Rewardbench) => json!({
            "prompt": text(rng, i, "q"), "chosen": text(rng, i, "c"),
            "rejected": text(rng, i, "r"), "subset": "alpacaeval-easy", "id": 1000 + i,
        }),
        Reader::Load(DataFormat::Libra) => json!({
            "index": i, "question": text(rng, i, "q"), "response": text(rng, i, "r"),
            "label": one_of(rng, &[json!(0), json!(1), json!("0"), json!("1"), json!(true), json!(false)]),
            "reference": one_of(rng, &[json!("204"), json!(3), json!(null)]),
            "subset": "MATH500-L5",
        }),
        Reader::Gsm8k => json!({
            "question": text(rng, i, "q"),
            "answer": format!("2 + 3 = <<2+3=5>>5 {}\n#### 5", text(rng, i, "s")),
        }),
        Reader::Math => {
            let mut r = json!({"answer": text(rng, i, "ans")});
            let key = if rng.one_in(2) { "problem" } else { "prompt" };
            r[key] = json!(text(rng, i, "p"));
            if rng.one_in(2) {
                r["unique_id"] = json!(format!("test/{i}.json"));
            }
            r
        }
    };
    // Optional ids of the generic schema; extra fields are ignored by every format.
    if reader == Reader::Load(DataFormat::Jsonl) {
        match rng.below(3) {
            0 => r["id"] = json!(format!("id-{i}")),
            1 => r["id"] = json!(i),
            _ => {}
        }
    }
    if rng.one_in(4) {
        r["extra_column"] = json!({"nested": [1, 2, 3]});
    }
    r
}

// ---------------------------------------------------------------------------------------
// Mutations

fn odd_value(rng: &mut Rng) -> Value {
    match rng.below(13) {
        0 => Value::Null,
        1 => json!(true),
        2 => json!(0),
        3 => json!(-1),
        4 => json!(1.5),
        5 => json!(1e300),
        6 => json!(u64::MAX),
        7 => json!([]),
        8 => json!({}),
        9 => json!(""),
        10 => json!("  \n\t"),
        11 => json!(["a", "b", "c"]),
        _ => {
            let mut v = json!(1);
            for _ in 0..rng.range(1, 200) {
                v = json!([v]);
            }
            v
        }
    }
}

/// Mutates one record in place (or replaces it with a non-object).
fn mutate_record(rng: &mut Rng, r: &mut Value, first: &Value) {
    let keys: Vec<String> = r
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    let key = if keys.is_empty() {
        "x".to_string()
    } else {
        rng.pick(&keys).clone()
    };
    let Some(o) = r.as_object_mut() else {
        return;
    };
    match rng.below(9) {
        0 => {
            o.remove(&key);
        }
        1 => {
            if let Some(v) = o.remove(&key) {
                let typo = if rng.one_in(2) {
                    key.to_uppercase()
                } else {
                    format!("{key}_")
                };
                o.insert(typo, v);
            }
        }
        2 | 3 => {
            o.insert(key, odd_value(rng));
        }
        4 => {
            // Two fields made equal (identical responses, a repeated turn).
            let other = rng.pick(&keys).clone();
            if let Some(v) = o.get(&other).cloned() {
                o.insert(key, v);
            }
        }
        5 => {
            // The id (or any field) of the first record: duplicates.
            if let Some(v) = first.get(&key) {
                o.insert(key, v.clone());
            }
        }
        6 => {
            if let Some(Value::String(s)) = o.get_mut(&key) {
                let cut = rng.below(s.len() + 1);
                let mut cut = cut;
                while !s.is_char_boundary(cut) {
                    cut -= 1;
                }
                s.truncate(cut);
            }
        }
        7 => {
            *r = odd_value(rng);
        }
        _ => {
            o.insert(format!("unknown_{}", rng.below(5)), odd_value(rng));
        }
    }
}

/// Mutates the bytes of one line: a truncation, invalid UTF-8, an out-of-range number.
fn mutate_line(rng: &mut Rng, line: &mut Vec<u8>) {
    match rng.below(4) {
        0 => {
            let at = rng.below(line.len() + 1);
            line.truncate(at);
        }
        1 => {
            let junk: &[&[u8]] = &[
                b"\xff",
                b"\xc3",
                b"\xed\xa0\x80",
                b"\xf4\x90\x80\x80",
                b"\0",
                b"\xef\xbb\xbf",
            ];
            let at = rng.below(line.len() + 1);
            let j = rng.pick(junk).to_vec();
            line.splice(at..at, j);
        }
        2 => {
            // Valid syntax, but out of range for serde_json.
            if let Some(end) = line.iter().rposition(|&b| b == b'}') {
                let num = *rng.pick(&["1e999", "-1e999", "123456789012345678901234567890"]);
                let extra = format!(", \"huge\": {num}");
                line.splice(end..end, extra.bytes());
            }
        }
        _ => {
            let n = rng.len(16);
            let junk = rng.bytes(n);
            let at = rng.below(line.len() + 1);
            line.splice(at..at, junk);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Building a file

struct Built {
    bytes: Vec<u8>,
    gz: bool,
    /// No mutation that could make a record invalid (blank lines, CRLF and extra columns
    /// are not mutations).
    clean: bool,
    /// Records generated.
    count: usize,
}

fn gzip(members: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for m in members {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(m).expect("gzip to memory");
        out.extend(enc.finish().expect("gzip to memory"));
    }
    out
}

fn build(rng: &mut Rng, reader: Reader) -> Built {
    if rng.one_in(25) {
        let n = rng.len(4096);
        return Built {
            bytes: rng.bytes(n),
            gz: rng.one_in(3),
            clean: false,
            count: 0,
        };
    }
    let count = rng.len(12);
    let pointwise = rng.one_in(2);
    let mut records: Vec<Value> = (0..count)
        .map(|i| valid_record(rng, reader, i, pointwise))
        .collect();
    let mut clean = true;
    let first = records.first().cloned().unwrap_or(Value::Null);
    for r in records.iter_mut() {
        if rng.one_in(5) {
            mutate_record(rng, r, &first);
            clean = false;
        }
    }
    let as_list = rng.one_in(4);
    let mut lines: Vec<Vec<u8>> = records
        .iter()
        .map(|r| {
            let s = if as_list && rng.one_in(2) {
                serde_json::to_string_pretty(r)
            } else {
                serde_json::to_string(r)
            };
            s.expect("a Value serializes").into_bytes()
        })
        .collect();
    if !as_list {
        for line in lines.iter_mut() {
            if rng.one_in(12) {
                mutate_line(rng, line);
                clean = false;
            }
        }
        // Blank lines are not records.
        for _ in 0..rng.below(3) {
            let at = rng.below(lines.len() + 1);
            let blanks: [&[u8]; 5] = [b"", b"   ", b"\t", b"\r", "\u{a0}".as_bytes()];
            let blank = *rng.pick(&blanks);
            lines.insert(at, blank.to_vec());
        }
        if rng.one_in(10) && !lines.is_empty() {
            let at = rng.below(lines.len());
            let dup = lines[at].clone();
            lines.insert(at, dup);
            clean = false;
        }
    }
    let sep: &[u8] = match (as_list, rng.one_in(5)) {
        (true, _) => b",\n",
        (false, true) => b"\r\n",
        (false, false) => b"\n",
    };
    let mut bytes = Vec::new();
    if as_list {
        bytes.extend_from_slice(b"[\n");
    }
    bytes.extend(lines.join(sep));
    if as_list {
        bytes.extend_from_slice(b"\n]");
    }
    if rng.one_in(2) {
        bytes.extend_from_slice(b"\n");
    }
    if rng.one_in(30) {
        bytes.splice(0..0, "\u{feff}".bytes());
        clean = false;
    }
    if as_list && rng.one_in(8) {
        // A broken list: cut, or trailing garbage.
        if rng.one_in(2) {
            let at = rng.below(bytes.len() + 1);
            bytes.truncate(at);
        } else {
            bytes.extend_from_slice(b",]");
        }
        clean = false;
    }
    let gz = rng.one_in(5);
    if gz {
        bytes = if rng.one_in(4) && bytes.len() > 1 {
            // Several gzip members (`cat a.gz b.gz`, pigz, bgzip): one stream of text.
            let at = rng.range(1, bytes.len() - 1);
            gzip(&[&bytes[..at], &bytes[at..]])
        } else {
            gzip(&[&bytes])
        };
        match rng.below(8) {
            0 => {
                let at = rng.below(bytes.len());
                bytes.truncate(at);
                clean = false;
            }
            1 => {
                let at = rng.below(bytes.len());
                bytes[at] ^= 1 << rng.below(8);
                clean = false;
            }
            2 => {
                bytes.extend_from_slice(b"trailing garbage");
                clean = false;
            }
            _ => {}
        }
    }
    Built {
        bytes,
        gz,
        clean,
        count,
    }
}

// ---------------------------------------------------------------------------------------
// What the loaders must do

/// The records of a file as the loader docs define them, computed independently.
struct Expected {
    /// `None` when the gzip stream is broken (any outcome but a panic is allowed then).
    text: Option<Vec<u8>>,
    /// Whether the file is a JSON list.
    list: bool,
    /// Records: list elements (`None` when the list does not parse) or non-blank lines.
    records: Option<usize>,
    /// Line `n` (1-based) of a JSONL file is `lines[n - 1]`.
    lines: Vec<Vec<u8>>,
}

fn blank(line: &[u8]) -> bool {
    String::from_utf8_lossy(line).trim().is_empty()
}

fn expected(built: &Built) -> Expected {
    let text = if built.gz {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&built.bytes[..])
            .read_to_end(&mut out)
            .ok()
            .map(|_| out)
    } else {
        Some(built.bytes.clone())
    };
    let Some(bytes) = text else {
        return Expected {
            text: None,
            list: false,
            records: None,
            lines: Vec::new(),
        };
    };
    let list = String::from_utf8_lossy(&bytes)
        .trim_start()
        .starts_with('[');
    let lines: Vec<Vec<u8>> = bytes.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
    let records = if list {
        serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|v| v.as_array().map(Vec::len))
    } else {
        Some(lines.iter().filter(|l| !blank(l)).count())
    };
    Expected {
        text: Some(bytes),
        list,
        records,
        lines,
    }
}

fn location_of(e: &DataError) -> Option<Location> {
    match e {
        DataError::Json { location, .. } | DataError::Record { location, .. } => Some(*location),
        _ => None,
    }
}

/// An error names the file, and its location (if any) exists.
fn check_error(e: &DataError, path: &Path, exp: &Expected) -> Result<(), String> {
    let msg = e.to_string();
    if !msg.contains(&path.display().to_string()) {
        return Err(format!("error does not name the file: {msg}"));
    }
    let Some(loc) = location_of(e) else {
        return Ok(());
    };
    if !msg.contains(&loc.to_string()) {
        return Err(format!("error does not name its location {loc:?}: {msg}"));
    }
    let Some(_) = exp.text else {
        return Ok(());
    };
    let ok = match loc {
        Location::File => true,
        Location::Line(n) => {
            !exp.list && n >= 1 && n <= exp.lines.len() && !blank(&exp.lines[n - 1])
        }
        Location::Element(i) => exp.list && exp.records.is_some_and(|r| i < r),
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "error at {loc:?}, which is not a record of the file: {msg}"
        ))
    }
}

fn nonblank(s: &str) -> bool {
    !s.trim().is_empty()
}

fn good_prompt(m: &[Message]) -> bool {
    m.last()
        .is_some_and(|l| l.role == Role::User && nonblank(&l.content))
}

/// The promises every loaded item keeps.
fn check_items(ds: &Dataset) -> Result<(), String> {
    let mut ids = HashSet::new();
    let fail = |what: &str, id: &str| Err(format!("item {id:?}: {what}"));
    match ds {
        Dataset::Pairwise(items) => {
            for it in items {
                if !ids.insert(it.id.clone()) {
                    return fail("duplicate id", &it.id);
                }
                let [a, b] = &it.responses;
                if !nonblank(a) || !nonblank(b) || a.trim() == b.trim() {
                    return fail("blank or identical responses", &it.id);
                }
                if !good_prompt(&it.prompt) {
                    return fail("prompt does not end with a non-blank user turn", &it.id);
                }
            }
        }
        Dataset::Pointwise(items) => {
            for it in items {
                if !ids.insert(it.id.clone()) {
                    return fail("duplicate id", &it.id);
                }
                if !nonblank(&it.response) || !good_prompt(&it.question) {
                    return fail("blank response or question", &it.id);
                }
                if let PointLabel::Score(x) = it.label {
                    if !(0.0..=10.0).contains(&x) {
                        return fail("score out of 0–10", &it.id);
                    }
                }
            }
        }
    }
    Ok(())
}

fn check_load(
    path: &Path,
    format: DataFormat,
    built: &Built,
    exp: &Expected,
    limit: Option<usize>,
) -> Result<(), String> {
    let strict = load(
        path,
        format,
        &LoadOptions {
            skip_invalid: false,
            limit,
        },
    );
    let lenient = load(
        path,
        format,
        &LoadOptions {
            skip_invalid: true,
            limit,
        },
    );
    if let Err(e) = &strict {
        check_error(e, path, exp)?;
    }
    match &lenient {
        Err(e) => {
            check_error(e, path, exp)?;
            if exp.text.is_some() && exp.records.is_some() {
                return Err(format!("skip_invalid failed on a readable file: {e}"));
            }
            if !matches!(location_of(e), None | Some(Location::File)) {
                return Err(format!("skip_invalid still failed on one record: {e}"));
            }
            let same = strict.as_ref().err().map(ToString::to_string);
            if same.as_deref() != Some(e.to_string().as_str()) {
                return Err(format!(
                    "a whole-file error with skip_invalid ({e}) but not without: {same:?}"
                ));
            }
        }
        Ok((ds, report)) => {
            check_items(ds)?;
            if report.path != path || report.format != format || report.loaded != ds.len() {
                return Err(format!("report does not describe the load: {report:?}"));
            }
            let locs: Vec<Location> = report.skipped.iter().map(|s| s.location).collect();
            if locs.windows(2).any(|w| !less(w[0], w[1])) {
                return Err(format!("skipped locations are not increasing: {locs:?}"));
            }
            match (limit, exp.records) {
                (None, Some(records)) if report.loaded + locs.len() != records => {
                    return Err(format!(
                        "loaded {} + skipped {} != {records} records",
                        report.loaded,
                        locs.len()
                    ));
                }
                (Some(k), Some(records))
                    if report.loaded > k || report.loaded + locs.len() > records =>
                {
                    return Err(format!("limit {k}: loaded {}", report.loaded));
                }
                _ => {}
            }
            match &strict {
                Ok((sds, sreport)) => {
                    if sds != ds || !sreport.skipped.is_empty() || !locs.is_empty() {
                        return Err(
                            "a strict load that succeeds differs from the lenient one".into()
                        );
                    }
                }
                Err(e) => match (location_of(e), locs.first()) {
                    (Some(l @ (Location::Line(_) | Location::Element(_))), first)
                        if first != Some(&l) =>
                    {
                        return Err(format!(
                            "strict load fails at {l:?} but skip_invalid first skips {first:?}"
                        ));
                    }
                    (None | Some(Location::File), _) => {
                        return Err(format!("whole-file error only without skip_invalid: {e}"));
                    }
                    _ => {}
                },
            }
        }
    }
    if built.clean && exp.text.is_some() {
        match &strict {
            Ok((ds, _)) if ds.len() == limit.unwrap_or(usize::MAX).min(built.count) => {}
            Ok((ds, _)) => {
                return Err(format!(
                    "an unmutated file of {} records loaded {}",
                    built.count,
                    ds.len()
                ))
            }
            Err(e) => return Err(format!("an unmutated file failed to load: {e}")),
        }
    }
    if let Ok((Dataset::Pointwise(_), _)) = &strict {
        match load_pairwise(path, format, &LoadOptions::default()) {
            Err(e) if e.to_string().contains(&path.display().to_string()) => {}
            other => return Err(format!("load_pairwise of a pointwise file: {other:?}")),
        }
    }
    Ok(())
}

fn less(a: Location, b: Location) -> bool {
    match (a, b) {
        (Location::Line(x), Location::Line(y)) | (Location::Element(x), Location::Element(y)) => {
            x < y
        }
        _ => false,
    }
}

fn check_problems<T>(
    path: &Path,
    built: &Built,
    exp: &Expected,
    read: fn(&Path) -> Result<Vec<T>>,
) -> Result<(), String> {
    match read(path) {
        Ok(problems) => {
            if exp.records.is_some_and(|r| r != problems.len()) {
                return Err(format!(
                    "read {} problems of {:?} records",
                    problems.len(),
                    exp.records
                ));
            }
        }
        Err(e) => {
            check_error(&e, path, exp)?;
            if built.clean && exp.text.is_some() {
                return Err(format!("an unmutated file failed to load: {e}"));
            }
        }
    }
    Ok(())
}

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
