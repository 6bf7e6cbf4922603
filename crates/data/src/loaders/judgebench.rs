//! JudgeBench (`judgebench`): JSONL rows `{"pair_id", "question", "response_A", "response_B",
//! "label", "source"?, …}` with `label` = `"A>B"`, `"B>A"` or `"A=B"`.
//!
//! Response A is response 0. `source` (the benchmark the question comes from) becomes the
//! item's subset; the item's source is `"judgebench"`. Ids are the `pair_id`s.

use std::path::Path;

use serde_json::Value;

use super::fields::{
    convert_records, opt_id, opt_str, short, two_responses, user_prompt, FieldError, RawRecord,
};
use super::{LoadOptions, Skipped};
use crate::error::Result;
use crate::judgment::Preference;
use crate::records::PairwiseItem;

pub(super) fn load(
    path: &Path,
    raw: Vec<RawRecord>,
    opts: &LoadOptions,
) -> Result<(Vec<PairwiseItem>, Vec<Skipped>)> {
    convert_records(
        path,
        raw,
        opts,
        |i: &PairwiseItem| &i.id,
        |o, _| {
            let preference = match o.get("label") {
                Some(Value::String(s)) if s.trim() == "A>B" => Preference::First,
                Some(Value::String(s)) if s.trim() == "B>A" => Preference::Second,
                Some(Value::String(s)) if s.trim() == "A=B" => Preference::Tie,
                None => return Err(FieldError::new("label", "missing")),
                Some(v) => {
                    return Err(FieldError::new(
                        "label",
                        format!("expected \"A>B\", \"B>A\" or \"A=B\", found {}", short(v)),
                    ))
                }
            };
            Ok(PairwiseItem {
                id: opt_id(o, "pair_id")?.ok_or_else(|| FieldError::new("pair_id", "missing"))?,
                prompt: user_prompt(o, "question")?,
                responses: two_responses(o, "response_A", "response_B")?,
                preference,
                source: Some("judgebench".into()),
                subset: opt_str(o, "source")?,
                reference: None,
            })
        },
    )
}
