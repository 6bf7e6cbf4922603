//! The PandaLM human-annotated test set (`pandalm`): a JSON list of
//! `{"idx", "instruction", "input", "response1", "response2", "annotator1", "annotator2",
//! "annotator3", …}`.
//!
//! The prompt is `instruction`, then a blank line and `input` when `input` is not blank (one
//! of them may be blank, not both).
//! Each annotator votes `1` (response1 better), `2` (response2 better) or `0` (tie), as a
//! number in some rows and a numeric string in others. The label is the majority vote
//! ([`majority_vote`]). Ids are `pandalm:<idx>` (`pandalm:<element>` without `idx`). The public
//! file has a few rows whose response is the boolean `true`; those are errors (or skips).

use std::path::Path;

use super::fields::{
    convert_records, int_like, opt_id, record_number, req_str, two_responses, FieldError, RawRecord,
};
use super::{LoadOptions, Skipped};
use crate::error::Result;
use crate::judgment::Preference;
use crate::records::{Message, PairwiseItem};

const ANNOTATORS: [&str; 3] = ["annotator1", "annotator2", "annotator3"];

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
            // One row of the public file has a blank instruction and its task in `input`.
            let instruction = req_str(o, "instruction")?.trim();
            let input = req_str(o, "input")?.trim();
            let prompt = match (instruction.is_empty(), input.is_empty()) {
                (true, true) => {
                    return Err(FieldError::new("instruction", "empty, and so is `input`"))
                }
                (false, true) => instruction.to_string(),
                (true, false) => input.to_string(),
                (false, false) => format!("{instruction}\n\n{input}"),
            };
            let mut votes = [Preference::Tie; 3];
            for (vote, field) in votes.iter_mut().zip(ANNOTATORS) {
                *vote = match int_like(o, field) {
                    Ok(0) => Preference::Tie,
                    Ok(1) => Preference::First,
                    Ok(2) => Preference::Second,
                    _ => {
                        return Err(FieldError::new(
                            field,
                            "expected a vote 0 (tie), 1 or 2, as a number or numeric string",
                        ))
                    }
                };
            }
            let id = match (opt_id(o, "idx")?, loc) {
                (Some(idx), _) => format!("pandalm:{idx}"),
                (None, _) => format!("pandalm:{}", record_number(loc)),
            };
            Ok(PairwiseItem {
                id,
                prompt: vec![Message::user(prompt)],
                responses: two_responses(o, "response1", "response2")?,
                preference: majority_vote(&votes),
                source: Some("pandalm".into()),
                subset: None,
                reference: None,
            })
        },
    )
}

/// The label most votes agree on; `Tie` when no label has a strict majority.
///
/// ```
/// use thinkjudge_data::{majority_vote, Preference::*};
/// assert_eq!(majority_vote(&[First, First, Second]), First);
/// assert_eq!(majority_vote(&[First, Second, Tie]), Tie);
/// assert_eq!(majority_vote(&[Tie, Tie, Second]), Tie);
/// ```
pub fn majority_vote(votes: &[Preference]) -> Preference {
    [Preference::First, Preference::Second, Preference::Tie]
        .into_iter()
        .find(|p| 2 * votes.iter().filter(|v| *v == p).count() > votes.len())
        .unwrap_or(Preference::Tie)
}
