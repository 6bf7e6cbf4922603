//! LLMBar (`llmbar`): a JSON list (or JSONL) of `{"input", "output_1", "output_2", "label"}`
//! with `label` = 1 or 2 (number or string) naming the better output.
//!
//! `output_1` is response 0. Ids are `llmbar:<element>` (`llmbar:<line>` for JSONL), since
//! the files carry none.

use std::path::Path;

use super::fields::{
    convert_records, one_or_two, record_number, two_responses, user_prompt, RawRecord,
};
use super::{LoadOptions, Skipped};
use crate::error::Result;
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
        |o, loc| {
            Ok(PairwiseItem {
                id: format!("llmbar:{}", record_number(loc)),
                prompt: user_prompt(o, "input")?,
                responses: two_responses(o, "output_1", "output_2")?,
                preference: one_or_two(o, "label")?,
                source: Some("llmbar".into()),
                subset: None,
                reference: None,
            })
        },
    )
}
