//! Libra Bench (`libra`): JSONL rows `{"index", "question", "response", "label", "reference",
//! "subset", "model"?, "response_with_cot"?}`: one reasoning model's final response to a math
//! problem, labelled correct (`1`) or incorrect (`0`).
//!
//! `label` may be a number, a numeric string or a boolean; 1/true → [`PointLabel::Good`],
//! 0/false → [`PointLabel::Bad`]. The judge reads `response` (the final answer without the
//! chain of thought); `reference` (the gold answer) is kept on the item but templates show it
//! only when asked to. Ids are `libra:<index>`.

use std::path::Path;

use serde_json::Value;

use super::fields::{
    convert_records, int_like, opt_id, opt_str, opt_str_or_number, record_number, req_text, short,
    user_prompt, FieldError, RawRecord,
};
use super::{LoadOptions, Skipped};
use crate::error::Result;
use crate::records::{PointLabel, PointwiseItem};

pub(super) fn load(
    path: &Path,
    raw: Vec<RawRecord>,
    opts: &LoadOptions,
) -> Result<(Vec<PointwiseItem>, Vec<Skipped>)> {
    convert_records(
        path,
        raw,
        opts,
        |i: &PointwiseItem| &i.id,
        |o, loc| {
            let label = match (o.get("label"), int_like(o, "label")) {
                (Some(Value::Bool(true)), _) | (_, Ok(1)) => PointLabel::Good,
                (Some(Value::Bool(false)), _) | (_, Ok(0)) => PointLabel::Bad,
                (None, _) => return Err(FieldError::new("label", "missing")),
                (Some(v), _) => {
                    return Err(FieldError::new(
                        "label",
                        format!(
                            "expected 0 or 1 (number, string or boolean), found {}",
                            short(v)
                        ),
                    ))
                }
            };
            let id = match (opt_id(o, "index")?, loc) {
                (Some(i), _) => i,
                (None, _) => record_number(loc).to_string(),
            };
            Ok(PointwiseItem {
                id: format!("libra:{id}"),
                question: user_prompt(o, "question")?,
                response: req_text(o, "response")?,
                label,
                reference: opt_str_or_number(o, "reference")?,
                subset: opt_str(o, "subset")?,
                source: Some("libra".into()),
            })
        },
    )
}
