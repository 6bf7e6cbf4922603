//! The generic schema (`jsonl`): one JSON object per line (or a JSON list of them).
//!
//! **Pairwise records** (a file of pairs):
//! ```json
//! {"id": "q1", "prompt": "What is 2+3?", "responses": ["5", "6"], "preference": "first"}
//! {"prompt": [{"role": "user", "content": "Hi"}], "chosen": "Hello!", "rejected": "Go away."}
//! ```
//! - `prompt`: a string (one user turn) or a list of `{"role": "system"|"user"|"assistant",
//!   "content": …}` ending with a user turn.
//! - Either `responses` (two strings) with `preference` = `"first"`, `"second"` or `"tie"`,
//!   or `chosen` and `rejected` (stored as response 0 and 1, preference `first`; the two-order
//!   expansion removes that position leak).
//!
//! **Pointwise records** (a file of single responses):
//! ```json
//! {"id": "p1", "question": "What is 2+3?", "response": "5", "label": "good"}
//! {"question": "Name a prime.", "response": "9", "label": false}
//! {"question": "Write a haiku.", "response": "…", "label": 7.5}
//! ```
//! - `question`: like `prompt` above.
//! - `label`: `"good"`/`"bad"` (also `"correct"`/`"incorrect"`), `true`/`false`, or a number
//!   = a score on the 0–10 scale.
//!
//! **Both**: optional `id` (string or integer; default `<file stem>:<line or element>`),
//! `source` (default `"jsonl"`), `subset`, `reference` (strings or `null`).
//! The first record that has `response`, `responses` or `chosen` decides the file's kind;
//! a record of the other kind is then an error.

use std::path::Path;

use serde_json::Value;

use super::fields::{
    convert_records, opt_id, opt_str, prompt_field, record_number, req_text, short, two_responses,
    FieldError, FieldResult, Obj, RawRecord,
};
use super::{Dataset, LoadOptions, Skipped};
use crate::error::{Location, Result};
use crate::judgment::Preference;
use crate::records::{PairwiseItem, PointLabel, PointwiseItem};

pub(super) fn load(
    path: &Path,
    raw: Vec<RawRecord>,
    opts: &LoadOptions,
) -> Result<(Dataset, Vec<Skipped>)> {
    let stem = path
        .file_stem()
        .map_or("jsonl".into(), |s| s.to_string_lossy().into_owned());
    let pointwise = raw.iter().find_map(|(_, v)| {
        let o = v.as_ref().ok()?.as_object()?;
        if o.contains_key("response") {
            Some(true)
        } else if o.contains_key("responses") || o.contains_key("chosen") {
            Some(false)
        } else {
            None
        }
    });
    if pointwise == Some(true) {
        let (items, skipped) = convert_records(
            path,
            raw,
            opts,
            |i: &PointwiseItem| &i.id,
            |o, loc| pointwise_record(o, loc, &stem),
        )?;
        Ok((Dataset::Pointwise(items), skipped))
    } else {
        let (items, skipped) = convert_records(
            path,
            raw,
            opts,
            |i: &PairwiseItem| &i.id,
            |o, loc| pairwise_record(o, loc, &stem),
        )?;
        Ok((Dataset::Pairwise(items), skipped))
    }
}

fn default_id(o: &Obj, loc: Location, stem: &str) -> FieldResult<String> {
    Ok(opt_id(o, "id")?.unwrap_or_else(|| format!("{stem}:{}", record_number(loc))))
}

fn pairwise_record(o: &Obj, loc: Location, stem: &str) -> FieldResult<PairwiseItem> {
    if o.contains_key("response") {
        return Err(FieldError::new(
            "response",
            "a pointwise record in a file of pairwise records",
        ));
    }
    let prompt = prompt_field(o, "prompt")?;
    let (responses, preference) = if o.contains_key("responses") {
        (responses_list(o)?, preference(o)?)
    } else if o.contains_key("chosen") || o.contains_key("rejected") {
        (two_responses(o, "chosen", "rejected")?, Preference::First)
    } else {
        return Err(FieldError::new(
            "responses",
            "missing (a pairwise record has `responses` and `preference`, or `chosen` and \
             `rejected`)",
        ));
    };
    Ok(PairwiseItem {
        id: default_id(o, loc, stem)?,
        prompt,
        responses,
        preference,
        source: Some(opt_str(o, "source")?.unwrap_or_else(|| "jsonl".into())),
        subset: opt_str(o, "subset")?,
        reference: opt_str(o, "reference")?,
    })
}

fn responses_list(o: &Obj) -> FieldResult<[String; 2]> {
    let field = "responses";
    let list = match o.get(field) {
        Some(Value::Array(v)) if v.len() == 2 => v,
        Some(v) => {
            return Err(FieldError::new(
                field,
                format!("expected a list of two strings, found {}", short(v)),
            ))
        }
        None => return Err(FieldError::new(field, "missing")),
    };
    // Reuse the named-field checks by viewing the list as an object with fields 0 and 1.
    let view: Obj = [("responses[0]", &list[0]), ("responses[1]", &list[1])]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    two_responses(&view, "responses[0]", "responses[1]")
}

fn preference(o: &Obj) -> FieldResult<Preference> {
    let field = "preference";
    match o.get(field) {
        Some(Value::String(s)) if s == "first" => Ok(Preference::First),
        Some(Value::String(s)) if s == "second" => Ok(Preference::Second),
        Some(Value::String(s)) if s == "tie" => Ok(Preference::Tie),
        None => Err(FieldError::new(field, "missing")),
        Some(v) => Err(FieldError::new(
            field,
            format!(
                "expected \"first\", \"second\" or \"tie\", found {}",
                short(v)
            ),
        )),
    }
}

fn pointwise_record(o: &Obj, loc: Location, stem: &str) -> FieldResult<PointwiseItem> {
    if o.contains_key("responses") || o.contains_key("chosen") {
        return Err(FieldError::new(
            "response",
            "a pairwise record in a file of pointwise records",
        ));
    }
    Ok(PointwiseItem {
        id: default_id(o, loc, stem)?,
        question: prompt_field(o, "question")?,
        response: req_text(o, "response")?,
        label: point_label(o)?,
        reference: opt_str(o, "reference")?,
        subset: opt_str(o, "subset")?,
        source: Some(opt_str(o, "source")?.unwrap_or_else(|| "jsonl".into())),
    })
}

fn point_label(o: &Obj) -> FieldResult<PointLabel> {
    let field = "label";
    let v = o
        .get(field)
        .ok_or_else(|| FieldError::new(field, "missing"))?;
    let bad = || {
        FieldError::new(
            field,
            format!(
                "expected \"good\", \"bad\", true, false or a score in [0, 10], found {}",
                short(v)
            ),
        )
    };
    match v {
        Value::Bool(true) => Ok(PointLabel::Good),
        Value::Bool(false) => Ok(PointLabel::Bad),
        Value::String(s) => match s.to_ascii_lowercase().as_str() {
            "good" | "correct" => Ok(PointLabel::Good),
            "bad" | "incorrect" => Ok(PointLabel::Bad),
            _ => Err(bad()),
        },
        Value::Number(n) => match n.as_f64() {
            Some(x) if (0.0..=10.0).contains(&x) => Ok(PointLabel::Score(x)),
            _ => Err(bad()),
        },
        _ => Err(bad()),
    }
}
