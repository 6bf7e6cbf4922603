//! RewardBench (`rewardbench`): JSONL or a JSON list of
//! `{"prompt", "chosen", "rejected", "subset", "id", …}`.
//!
//! **`chosen` is stored as response 0** (preference `first`) in every row. Shown in storage
//! order that would leak the label through position; the two-order expansion
//! ([`crate::PromptBuilder::pairwise`]) shows each pair both ways, which removes the leak. For
//! single-order evaluation, pick the order per pair at random (see `crate::split`). Ids are
//! `rewardbench:<id>` (`rewardbench:<line or element>` without `id`).

use std::path::Path;

use super::fields::{
    convert_records, opt_id, opt_str, record_number, two_responses, user_prompt, RawRecord,
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
        |o, loc| {
            let id = match (opt_id(o, "id")?, loc) {
                (Some(id), _) => id,
                (None, _) => record_number(loc).to_string(),
            };
            Ok(PairwiseItem {
                id: format!("rewardbench:{id}"),
                prompt: user_prompt(o, "prompt")?,
                responses: two_responses(o, "chosen", "rejected")?,
                preference: Preference::First,
                source: Some("rewardbench".into()),
                subset: opt_str(o, "subset")?,
                reference: None,
            })
        },
    )
}
