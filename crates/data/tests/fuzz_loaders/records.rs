//! Records of every format: valid ones (with optional ids and extra columns), and record-
//! and line-level mutations.

use serde_json::{json, Value};
use thinkjudge_data::*;

use crate::fuzz_support::Rng;
use crate::Reader;

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
pub(crate) fn valid_record(rng: &mut Rng, reader: Reader, i: usize, pointwise: bool) -> Value {
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
pub(crate) fn mutate_record(rng: &mut Rng, r: &mut Value, first: &Value) {
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
pub(crate) fn mutate_line(rng: &mut Rng, line: &mut Vec<u8>) {
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
