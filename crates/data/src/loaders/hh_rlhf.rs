//! Anthropic hh-rlhf (`hh-rlhf`): JSONL (usually `.jsonl.gz`) rows
//! `{"chosen": transcript, "rejected": transcript}`, where a transcript is
//! `"\n\nHuman: …\n\nAssistant: …\n\nHuman: …\n\nAssistant: …"`.
//!
//! Both transcripts are split into turns at the `\n\nHuman:` / `\n\nAssistant:` markers (turn
//! text trimmed). The turns they share form the prompt; what follows must be exactly one
//! assistant turn in each: the chosen one is response 0 (preference `first`). Rows whose
//! transcripts diverge earlier (a few in the public files, where a turn lacks its blank-line
//! marker), or whose final turn is empty, are errors (or skips). Ids are `hh-rlhf:<line>`.

use std::path::Path;
use std::sync::LazyLock;

use regex::Regex;

use super::fields::{convert_records, record_number, req_str, FieldError, RawRecord};
use super::{LoadOptions, Skipped};
use crate::error::Result;
use crate::judgment::Preference;
use crate::records::{check_prompt, Message, PairwiseItem};

static MARKER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\n\n(Human|Assistant):").expect("literal regex"));

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
            let chosen = req_str(o, "chosen")?;
            let rejected = req_str(o, "rejected")?;
            let (prompt, responses) =
                split_transcript(chosen, rejected).map_err(|p| FieldError::new("chosen", p))?;
            Ok(PairwiseItem {
                id: format!("hh-rlhf:{}", record_number(loc)),
                prompt,
                responses,
                preference: Preference::First,
                source: Some("hh-rlhf".into()),
                subset: None,
                reference: None,
            })
        },
    )
}

/// Splits an hh-rlhf `chosen`/`rejected` transcript pair into the shared conversation and the
/// two final assistant turns `[chosen, rejected]`. The error says why the pair does not split.
///
/// ```
/// use thinkjudge_data::split_transcript;
/// let (prompt, [c, r]) = split_transcript(
///     "\n\nHuman: Hi\n\nAssistant: Hello!",
///     "\n\nHuman: Hi\n\nAssistant: Go away.",
/// ).unwrap();
/// assert_eq!(prompt.len(), 1);
/// assert_eq!((c.as_str(), r.as_str()), ("Hello!", "Go away."));
/// ```
pub fn split_transcript(
    chosen: &str,
    rejected: &str,
) -> std::result::Result<(Vec<Message>, [String; 2]), String> {
    let c = parse_transcript(chosen).map_err(|p| format!("`chosen`: {p}"))?;
    let r = parse_transcript(rejected).map_err(|p| format!("`rejected`: {p}"))?;
    let shared = c.iter().zip(&r).take_while(|(x, y)| x == y).count();
    let (c_rest, r_rest) = (&c[shared..], &r[shared..]);
    if c_rest.is_empty() && r_rest.is_empty() {
        return Err("`chosen` and `rejected` are identical".into());
    }
    let last = |rest: &[Message], name: &str| match rest {
        [m] if m.role == crate::Role::Assistant => {
            if m.content.is_empty() {
                Err(format!("the final assistant turn of `{name}` is empty"))
            } else {
                Ok(m.content.clone())
            }
        }
        _ => Err(format!(
            "the transcripts differ before the final assistant turn ({} turns left in `{name}`)",
            rest.len()
        )),
    };
    let responses = [last(c_rest, "chosen")?, last(r_rest, "rejected")?];
    let prompt = c[..shared].to_vec();
    check_prompt(&prompt)?;
    Ok((prompt, responses))
}

fn parse_transcript(text: &str) -> std::result::Result<Vec<Message>, String> {
    let mut turns = Vec::new();
    let mut pending: Option<(bool, usize)> = None; // (is_human, content start)
    for m in MARKER.captures_iter(text) {
        let (Some(whole), Some(who)) = (m.get(0), m.get(1)) else {
            continue;
        };
        match pending {
            Some((human, start)) => turns.push(turn(human, &text[start..whole.start()])),
            None if !text[..whole.start()].trim().is_empty() => {
                return Err("text before the first `Human:` turn".into())
            }
            None => {}
        }
        pending = Some((who.as_str() == "Human", whole.end()));
    }
    match pending {
        Some((human, start)) => turns.push(turn(human, &text[start..])),
        None => return Err("no `\\n\\nHuman:` / `\\n\\nAssistant:` turns".into()),
    }
    Ok(turns)
}

fn turn(human: bool, text: &str) -> Message {
    let content = text.trim().to_string();
    if human {
        Message::user(content)
    } else {
        Message::assistant(content)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_turn_prefix_is_shared() {
        let c = "\n\nHuman: a\n\nAssistant: b\n\nHuman: c\n\nAssistant: good";
        let r = "\n\nHuman: a\n\nAssistant: b\n\nHuman: c\n\nAssistant: bad";
        let (p, resp) = split_transcript(c, r).unwrap_or_default();
        assert_eq!(p.len(), 3);
        assert_eq!(p[1], Message::assistant("b"));
        assert_eq!(resp, ["good".to_string(), "bad".to_string()]);
    }

    #[test]
    fn divergent_history_and_empty_turns_are_errors() {
        let c = "\n\nHuman: a\n\nAssistant: x  Human: c\n\nAssistant: good";
        let r = "\n\nHuman: a\n\nAssistant: bad";
        let e = split_transcript(c, r).err().unwrap_or_default();
        assert!(e.contains("differ before the final assistant turn"), "{e}");
        let e = split_transcript("\n\nHuman: a\n\nAssistant:", "\n\nHuman: a\n\nAssistant: b");
        assert!(e.err().unwrap_or_default().contains("`chosen` is empty"));
        let e = split_transcript("Hi", "Hi").err().unwrap_or_default();
        assert!(e.contains("no `"), "{e}");
        let same = "\n\nHuman: a\n\nAssistant: b";
        assert!(split_transcript(same, same)
            .err()
            .unwrap_or_default()
            .contains("identical"));
    }
}
