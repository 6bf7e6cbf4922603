//! [`Rules`]: a [`SamplingConfig`] compiled against a tokenizer: eos ids, stop strings, the
//! forced-close token ids and the minimum-thought mask.
//!
//! # The minimum-thought mask
//! While a thought is shorter than `min_thought_tokens`, the tokens that would *complete* the
//! closing tag get probability 0, and so do the eos ids. Which tokens complete the tag depends
//! on how much of it the text already ends with: for every proper prefix `close_tag[..k]` the
//! table holds the ids whose text `t` (each id decoded alone) makes `close_tag[..k] ‖ t`
//! contain the tag. The row looks up the longest `k` its text ends with; shorter matches are
//! covered because they are suffixes of the longest one. This masks only the closing, not the
//! writing of `<` or `</` in general. (The s1 alternative, replacing an early close with
//! "Wait", would need to take back the closing tokens already in the KV cache.)

use thinkjudge_model::JudgeTokenizer;

use crate::config::{Decoding, SamplingConfig};
use crate::error::{Result, RolloutError};

/// Per-request constants every row consults.
#[derive(Debug, Clone)]
pub(crate) struct Rules {
    /// Ids that end a sample (sorted); empty with `ignore_eos`.
    pub eos: Vec<u32>,
    pub stop_strings: Vec<String>,
    pub open_tag: String,
    pub close_tag: String,
    pub prompt_opens_thought: bool,
    pub max_thought_tokens: Option<usize>,
    pub min_thought_tokens: usize,
    /// `encode(forced_close)`.
    pub forced_close: Vec<u32>,
    /// `encode(open_tag ‖ forced_close)`, for thoughts that never opened.
    pub forced_open_close: Vec<u32>,
    /// `mask[k]`: sorted ids masked when the text ends with `close_tag[..k]`; empty unless
    /// `min_thought_tokens > 0`.
    mask: Vec<Vec<u32>>,
    pub greedy: bool,
    pub max_new_tokens: usize,
}

impl Rules {
    /// Compiles `cfg` (assumed valid) for `tokenizer` and a model with `vocab` ids.
    pub fn new(cfg: &SamplingConfig, tokenizer: &JudgeTokenizer, vocab: usize) -> Result<Self> {
        let mut eos: Vec<u32> = if cfg.ignore_eos {
            Vec::new()
        } else {
            tokenizer
                .eos_ids()
                .iter()
                .chain(&cfg.extra_eos_ids)
                .copied()
                .collect()
        };
        eos.sort_unstable();
        eos.dedup();
        if let Some(&bad) = eos.iter().find(|&&id| id as usize >= vocab) {
            return Err(RolloutError::InvalidConfig(format!(
                "eos id {bad} is outside the model's vocab ({vocab})"
            )));
        }
        let th = &cfg.thinking;
        let encode = |text: &str| -> Result<Vec<u32>> {
            let ids = tokenizer.encode(text)?;
            if ids.is_empty() {
                return Err(RolloutError::InvalidConfig(format!(
                    "thinking.forced_close: {text:?} encodes to no tokens"
                )));
            }
            if let Some(&bad) = ids.iter().find(|&&id| id as usize >= vocab) {
                return Err(RolloutError::InvalidConfig(format!(
                    "thinking.forced_close: {text:?} encodes to id {bad}, outside the model's \
                     vocab ({vocab})"
                )));
            }
            Ok(ids)
        };
        let mut rules = Self {
            eos,
            stop_strings: cfg.stop_strings.clone(),
            open_tag: th.open_tag.clone(),
            close_tag: th.close_tag.clone(),
            prompt_opens_thought: th.prompt_opens_thought,
            max_thought_tokens: th.max_thought_tokens,
            min_thought_tokens: th.min_thought_tokens,
            forced_close: encode(&th.forced_close)?,
            forced_open_close: encode(&format!("{}{}", th.open_tag, th.forced_close))?,
            mask: Vec::new(),
            greedy: cfg.decoding == Decoding::Greedy,
            max_new_tokens: cfg.max_new_tokens,
        };
        if th.min_thought_tokens > 0 {
            rules.mask = close_mask(tokenizer, vocab, &th.close_tag, &rules.eos);
        }
        Ok(rules)
    }

    /// The ids masked in the minimum-thought phase for a thought whose text so far is `text`.
    pub fn min_thought_mask(&self, text: &str) -> &[u32] {
        let k = partial_match(text, &self.close_tag);
        self.mask.get(k).map_or(&[], Vec::as_slice)
    }
}

/// The mask table of the module docs, with `eos` in every entry.
fn close_mask(tokenizer: &JudgeTokenizer, vocab: usize, close: &str, eos: &[u32]) -> Vec<Vec<u32>> {
    let prefixes: Vec<usize> = (0..close.len())
        .filter(|&k| close.is_char_boundary(k))
        .collect();
    let mut mask = vec![eos.to_vec(); close.len()];
    for id in 0..vocab as u32 {
        // Ids the tokenizer can't decode (or special ones, decoded to "") can't close.
        let Ok(text) = tokenizer.decode(&[id], true) else {
            continue;
        };
        if text.is_empty() {
            continue;
        }
        for &k in &prefixes {
            if format!("{}{text}", &close[..k]).contains(close) {
                mask[k].push(id);
            }
        }
    }
    for m in &mut mask {
        m.sort_unstable();
        m.dedup();
    }
    mask
}

/// The longest proper prefix of `tag` that `text` ends with, in bytes.
pub(crate) fn partial_match(text: &str, tag: &str) -> usize {
    (1..tag.len())
        .rev()
        .filter(|&k| tag.is_char_boundary(k))
        .find(|&k| text.ends_with(&tag[..k]))
        .unwrap_or(0)
}

/// Whether `text[from..]`, widened back by `needle.len() − 1` bytes so a match straddling
/// `from` counts, contains `needle`.
pub(crate) fn contains_since(text: &str, from: usize, needle: &str) -> bool {
    let mut start = from.saturating_sub(needle.len().saturating_sub(1));
    while !text.is_char_boundary(start) {
        start -= 1;
    }
    text[start..].contains(needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_match_finds_the_longest_prefix() {
        assert_eq!(partial_match("abc </th", "</think>"), 4);
        assert_eq!(partial_match("abc <", "</think>"), 1);
        assert_eq!(partial_match("abc", "</think>"), 0);
        // A complete tag is not a proper prefix.
        assert_eq!(partial_match("x</think>", "</think>"), 0);
        assert_eq!(partial_match("é<", "<é>"), 1);
    }

    #[test]
    fn contains_since_sees_straddling_matches_only_once_new() {
        let t = "ab</ans";
        assert!(!contains_since(t, 0, "</answer>"));
        let t = "ab</answer>";
        assert!(contains_since(t, 7, "</answer>"));
        assert!(contains_since(t, 10, "</answer>"));
        // Text before the window is not searched again.
        assert!(!contains_since("</answer> and more", 18, "</answer>"));
        // Multi-byte characters at the window edge.
        assert!(contains_since("ééé!", 5, "é!"));
    }
}
