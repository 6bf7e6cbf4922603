//! Length control by token count, with a report of everything removed or shortened.
//!
//! The caller supplies the counter (the model's tokenizer in the trainer; any
//! `Fn(&str) -> usize` works). A pair is measured by the longest of its prompts and kept or
//! dropped whole, so siblings never part. With [`Overflow::TrimHistory`], multi-turn prompts
//! first lose their oldest turns (the last user turn always stays) before being dropped;
//! responses are never cut, as a truncated response would change what is being judged.

use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};
use crate::prompts::{JudgePrompt, PromptBuilder};
use crate::records::{Message, PairwiseItem, PointwiseItem};

/// Counts tokens in a text.
pub trait TokenCounter {
    /// The number of tokens `text` encodes to.
    fn count(&self, text: &str) -> usize;
}

impl<F: Fn(&str) -> usize> TokenCounter for F {
    fn count(&self, text: &str) -> usize {
        self(text)
    }
}

/// What to do with an item whose prompt is too long.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Overflow {
    /// Drop it. Default.
    #[default]
    Drop,
    /// Remove its oldest conversation turns until it fits; drop it if it still does not.
    TrimHistory,
}

/// A prompt length limit.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LengthLimit {
    /// Most tokens a prompt may have (chat formatting included). Must be > 0.
    pub max_prompt_tokens: usize,
    /// What to do with longer ones. Default `drop`.
    #[serde(default)]
    pub overflow: Overflow,
}

impl LengthLimit {
    /// Checks the range.
    ///
    /// # Errors
    /// [`DataError::Config`] when `max_prompt_tokens` is 0.
    pub fn validate(&self) -> Result<()> {
        if self.max_prompt_tokens == 0 {
            return Err(DataError::config("max_prompt_tokens", "must be > 0"));
        }
        Ok(())
    }
}

/// An item left out for length.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DroppedForLength {
    /// The item's id.
    pub id: String,
    /// Its longest prompt's token count (after any trimming).
    pub tokens: usize,
}

/// What length control did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LengthReport {
    /// Items examined.
    pub items_in: usize,
    /// Items kept.
    pub kept: usize,
    /// Kept items whose history was trimmed.
    pub trimmed: usize,
    /// Conversation turns removed in total.
    pub turns_removed: usize,
    /// Items dropped, with their token counts.
    pub dropped: Vec<DroppedForLength>,
    /// Longest kept prompt, in tokens.
    pub max_tokens: usize,
    /// Mean kept prompt length, in tokens (0 when none kept).
    pub mean_tokens: f64,
}

/// Expands pairs like [`PromptBuilder::expand_pairwise`], enforcing `limit`.
///
/// # Errors
/// [`DataError::Config`] for an invalid limit; template errors from the builder.
pub fn expand_pairwise_within(
    builder: &PromptBuilder,
    items: &[PairwiseItem],
    counter: &dyn TokenCounter,
    limit: &LengthLimit,
) -> Result<(Vec<JudgePrompt>, LengthReport)> {
    fit(
        items,
        limit,
        counter,
        |item: &PairwiseItem, turns| Ok(builder.pairwise_with(item, turns)?.to_vec()),
        |item| (&item.id, &item.prompt),
    )
}

/// Expands pointwise items like [`PromptBuilder::expand_pointwise`], enforcing `limit`.
///
/// # Errors
/// As [`expand_pairwise_within`].
pub fn expand_pointwise_within(
    builder: &PromptBuilder,
    items: &[PointwiseItem],
    counter: &dyn TokenCounter,
    limit: &LengthLimit,
) -> Result<(Vec<JudgePrompt>, LengthReport)> {
    fit(
        items,
        limit,
        counter,
        |item: &PointwiseItem, turns| Ok(vec![builder.pointwise_with(item, turns)?]),
        |item| (&item.id, &item.question),
    )
}

fn fit<T>(
    items: &[T],
    limit: &LengthLimit,
    counter: &dyn TokenCounter,
    render: impl Fn(&T, &[Message]) -> Result<Vec<JudgePrompt>>,
    parts: impl Fn(&T) -> (&String, &Vec<Message>),
) -> Result<(Vec<JudgePrompt>, LengthReport)> {
    limit.validate()?;
    let mut report = LengthReport {
        items_in: items.len(),
        ..LengthReport::default()
    };
    let mut out = Vec::new();
    let mut total_tokens = 0usize;
    for item in items {
        let (id, conversation) = parts(item);
        let mut skip = 0;
        loop {
            let turns = &conversation[skip..];
            let prompts = render(item, turns)?;
            let counts: Vec<usize> = prompts.iter().map(|p| counter.count(&p.text)).collect();
            let longest = counts.iter().copied().max().unwrap_or(0);
            if longest <= limit.max_prompt_tokens {
                report.kept += 1;
                report.trimmed += usize::from(skip > 0);
                report.turns_removed += skip;
                report.max_tokens = report.max_tokens.max(longest);
                total_tokens += counts.iter().sum::<usize>();
                out.extend(prompts);
                break;
            }
            let can_trim = limit.overflow == Overflow::TrimHistory && turns.len() > 1;
            if !can_trim {
                report.dropped.push(DroppedForLength {
                    id: id.clone(),
                    tokens: longest,
                });
                break;
            }
            // Drop the oldest turn; an assistant turn left at the front goes with it.
            skip += 1;
            if conversation.len() - skip > 1 && conversation[skip].role != crate::Role::User {
                skip += 1;
            }
        }
    }
    if !out.is_empty() {
        report.mean_tokens = total_tokens as f64 / out.len() as f64;
    }
    Ok((out, report))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::ChatTemplate;
    use crate::judgment::Preference;
    use crate::templates::{Delimiters, JudgeTemplate, TemplateKind};

    type R = std::result::Result<(), Box<dyn std::error::Error>>;

    fn builder() -> std::result::Result<PromptBuilder, DataError> {
        let t = JudgeTemplate::builtin(TemplateKind::PairwiseVerdict, Delimiters::Tags)?;
        Ok(PromptBuilder::new(t, ChatTemplate::chatml()))
    }

    fn pair(id: &str, prompt: Vec<Message>, response_len: usize) -> PairwiseItem {
        PairwiseItem {
            id: id.into(),
            prompt,
            responses: ["x".repeat(response_len), "y".repeat(response_len)],
            preference: Preference::First,
            source: None,
            subset: None,
            reference: None,
        }
    }

    fn chars(s: &str) -> usize {
        s.chars().count()
    }

    #[test]
    fn long_pairs_are_dropped_whole_and_reported() -> R {
        let b = builder()?;
        let short = pair("short", vec![Message::user("q")], 10);
        let long = pair("long", vec![Message::user("q")], 2000);
        let base = chars(&b.pairwise(&short)?[0].text);
        let limit = LengthLimit {
            max_prompt_tokens: base + 100,
            overflow: Overflow::Drop,
        };
        let (prompts, report) = expand_pairwise_within(&b, &[short, long], &chars, &limit)?;
        assert_eq!(prompts.len(), 2);
        assert!(prompts.iter().all(|p| p.pair_id == "short"));
        assert_eq!((report.items_in, report.kept), (2, 1));
        assert_eq!(report.dropped.len(), 1);
        assert_eq!(report.dropped[0].id, "long");
        assert!(report.dropped[0].tokens > base + 2000);
        assert_eq!(report.max_tokens, base);
        Ok(())
    }

    #[test]
    fn history_is_trimmed_oldest_first() -> R {
        let b = builder()?;
        let old = "old ".repeat(200);
        let conversation = vec![
            Message::user(old.clone()),
            Message::assistant(old),
            Message::user("latest question"),
        ];
        let item = pair("c", conversation, 5);
        let last_only = pair("c", vec![Message::user("latest question")], 5);
        let fits = chars(&b.pairwise(&last_only)?[0].text);
        let limit = LengthLimit {
            max_prompt_tokens: fits,
            overflow: Overflow::TrimHistory,
        };
        let (prompts, report) =
            expand_pairwise_within(&b, std::slice::from_ref(&item), &chars, &limit)?;
        assert_eq!(
            (report.kept, report.trimmed, report.turns_removed),
            (1, 1, 2)
        );
        assert!(!prompts[0].text.contains("old"));
        let drop = LengthLimit {
            overflow: Overflow::Drop,
            ..limit
        };
        let (_, report) = expand_pairwise_within(&b, &[item], &chars, &drop)?;
        assert_eq!(report.kept, 0);
        Ok(())
    }

    #[test]
    fn zero_limit_is_invalid() {
        let l = LengthLimit {
            max_prompt_tokens: 0,
            overflow: Overflow::Drop,
        };
        assert!(l.validate().is_err());
    }
}
