//! [`Row`]: the state of one sample while it decodes — tokens, log-probs, the incremental
//! text, the thought (open, being force-closed, closed) and why it stopped.
//!
//! Per step the engine asks [`Row::pick`] what the row needs (a draw, a forced token, nothing)
//! and hands the chosen token back to [`Row::push`], which checks, in order: the closing tag
//! (thought closed), eos, stop strings, and `max_new_tokens`.

use std::collections::VecDeque;

use rand_chacha::ChaCha8Rng;
use thinkjudge_model::{JudgeTokenizer, TextStream};

use crate::error::Result;
use crate::rng::{sample_rng, uniform};
use crate::rules::{contains_since, Rules};
use crate::sampler::Pick;
use crate::types::{FinishReason, Rollout, ThoughtEnd};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Thought {
    Open,
    /// The budget is appending the forced close.
    Forcing,
    Closed,
    Forced,
}

/// The decoded text of a row: incremental, or full re-decodes if the stream ever errs (some
/// decoders are not prefix-stable).
enum RowText<'t> {
    Stream(TextStream<'t>),
    Full(&'t JudgeTokenizer, String),
}

impl RowText<'_> {
    fn text(&self) -> &str {
        match self {
            RowText::Stream(s) => s.text(),
            RowText::Full(_, t) => t,
        }
    }
}

/// One sample in flight.
pub(crate) struct Row<'t> {
    pub prompt_index: usize,
    pub sample_index: usize,
    rng: ChaCha8Rng,
    tokenizer: &'t JudgeTokenizer,
    ids: Vec<u32>,
    logprobs: Vec<f32>,
    forced: Vec<bool>,
    text: RowText<'t>,
    /// Bytes of `text` already searched for tags and stop strings.
    scanned: usize,
    pending: VecDeque<u32>,
    thought: Thought,
    thought_tokens: usize,
    pub finish: Option<FinishReason>,
}

impl<'t> Row<'t> {
    pub fn new(
        tokenizer: &'t JudgeTokenizer,
        seed: u64,
        prompt_key: u64,
        prompt_index: usize,
        sample_index: usize,
    ) -> Self {
        Self {
            prompt_index,
            sample_index,
            rng: sample_rng(seed, prompt_key, sample_index as u64),
            tokenizer,
            ids: Vec::new(),
            logprobs: Vec::new(),
            forced: Vec::new(),
            text: RowText::Stream(tokenizer.stream(true)),
            scanned: 0,
            pending: VecDeque::new(),
            thought: Thought::Open,
            thought_tokens: 0,
            finish: None,
        }
    }

    /// The token to feed next step (the last one produced).
    pub fn last_token(&self) -> Option<u32> {
        self.ids.last().copied()
    }

    /// What this row needs from the current logits; starts the forced close when the
    /// thought reaches its budget.
    pub fn pick<'r>(&mut self, rules: &'r Rules) -> Pick<'r> {
        if self.finish.is_some() {
            return Pick::Skip;
        }
        if self.thought == Thought::Open
            && rules
                .max_thought_tokens
                .is_some_and(|n| self.ids.len() >= n)
        {
            let opened =
                rules.prompt_opens_thought || self.text.text().contains(rules.open_tag.as_str());
            let forced = if opened {
                &rules.forced_close
            } else {
                &rules.forced_open_close
            };
            self.pending.extend(forced);
            self.thought = Thought::Forcing;
            self.thought_tokens = self.ids.len();
        }
        if let Some(&t) = self.pending.front() {
            return Pick::Forced(t);
        }
        let suppress = if self.thought == Thought::Open && self.ids.len() < rules.min_thought_tokens
        {
            rules.min_thought_mask(self.text.text())
        } else {
            &[]
        };
        if rules.greedy {
            Pick::Greedy { suppress }
        } else {
            Pick::Sample {
                u: uniform(&mut self.rng),
                suppress,
            }
        }
    }

    /// Appends the chosen token and updates the thought and finish state.
    pub fn push(&mut self, token: u32, logprob: f32, forced: bool, rules: &Rules) -> Result<()> {
        if forced {
            self.pending.pop_front();
        }
        self.ids.push(token);
        self.logprobs.push(logprob);
        self.forced.push(forced);
        self.push_text(token)?;
        let text = self.text.text();
        match self.thought {
            Thought::Open if contains_since(text, self.scanned, &rules.close_tag) => {
                self.thought = Thought::Closed;
                self.thought_tokens = self.ids.len();
            }
            Thought::Forcing if self.pending.is_empty() => self.thought = Thought::Forced,
            _ => {}
        }
        if rules.eos.binary_search(&token).is_ok() {
            self.finish = Some(FinishReason::Eos);
        } else if rules
            .stop_strings
            .iter()
            .any(|s| contains_since(text, self.scanned, s))
        {
            self.finish = Some(FinishReason::StopString);
        } else if self.ids.len() >= rules.max_new_tokens {
            self.finish = Some(FinishReason::Length);
        }
        self.scanned = text.len();
        Ok(())
    }

    fn push_text(&mut self, token: u32) -> Result<()> {
        if let RowText::Stream(s) = &mut self.text {
            if s.push(token).is_ok() {
                return Ok(());
            }
            self.text = RowText::Full(self.tokenizer, String::new());
        }
        if let RowText::Full(tok, text) = &mut self.text {
            *text = tok.decode(&self.ids, true)?;
        }
        Ok(())
    }

    /// The finished sample (`Length` if it never stopped).
    pub fn into_rollout(self) -> Result<Rollout> {
        let (thought, thought_tokens) = match self.thought {
            Thought::Open => (ThoughtEnd::Open, self.ids.len()),
            Thought::Closed => (ThoughtEnd::Closed, self.thought_tokens),
            Thought::Forcing | Thought::Forced => (ThoughtEnd::Forced, self.thought_tokens),
        };
        Ok(Rollout {
            prompt_index: self.prompt_index,
            sample_index: self.sample_index,
            text: self.tokenizer.decode(&self.ids, true)?,
            completion_ids: self.ids,
            logprobs: self.logprobs,
            forced: self.forced,
            finish: self.finish.unwrap_or(FinishReason::Length),
            thought,
            thought_tokens,
        })
    }
}
