//! Building one case's file from records: JSONL or a JSON list, blank and CRLF lines, a BOM,
//! gzip (one or several members, sometimes broken), or plain random bytes.

use std::io::Write;

use serde_json::Value;

use crate::fuzz_support::Rng;
use crate::records::{mutate_line, mutate_record, valid_record};
use crate::Reader;

pub(crate) struct Built {
    pub(crate) bytes: Vec<u8>,
    pub(crate) gz: bool,
    /// No mutation that could make a record invalid (blank lines, CRLF and extra columns
    /// are not mutations).
    pub(crate) clean: bool,
    /// Records generated.
    pub(crate) count: usize,
}

pub(crate) fn gzip(members: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for m in members {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(m).expect("gzip to memory");
        out.extend(enc.finish().expect("gzip to memory"));
    }
    out
}

pub(crate) fn build(rng: &mut Rng, reader: Reader) -> Built {
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
