//! thinkjudge-data: preference data → thinking-judge prompts, and judge text → judgments.
//!
//! No candle dependency; usable by any trainer. The pieces, in pipeline order:
//!
//! | step | items |
//! |---|---|
//! | records | [`PairwiseItem`], [`PointwiseItem`], [`Message`] |
//! | load a dataset | [`load`] / [`load_pairwise`] with a [`DataFormat`] (`jsonl`, `hh-rlhf`, `pandalm`, `judgebench`, `llmbar`, `rewardbench`, `libra`) → [`Dataset`] + [`LoadReport`] |
//! | synthesize verifiable pairs | [`synth::gsm8k`], [`synth::math`], [`ProceduralGenerator`] → pairs + [`SynthesisReport`] |
//! | judgment text | [`JudgeTemplate`] of a [`TemplateKind`] (PaV, PaS, PaVS, PoS) |
//! | chat formatting | [`ChatTemplate`] (the model's HF template, or ChatML) |
//! | prompts, both orders adjacent | [`PromptBuilder`] → [`JudgePrompt`] |
//! | length control | [`expand_pairwise_within`] with a [`TokenCounter`] → [`LengthReport`] |
//! | shuffle / split by pair | [`shuffle_pairs`], [`split_pairs`], [`pick_one_order`] |
//! | parse completions | [`parse_judgment`], [`parse_completion`] (rules in [`parse`]) |
//!
//! ```
//! use thinkjudge_data::*;
//!
//! # fn main() -> Result<()> {
//! let item = PairwiseItem {
//!     id: "q1".into(),
//!     prompt: vec![Message::user("What is 17 + 25?")],
//!     responses: ["17 + 25 = 42.".into(), "17 + 25 = 32.".into()],
//!     preference: Preference::First,
//!     source: None,
//!     subset: None,
//!     reference: None,
//! };
//! let builder = PromptBuilder::from_config(&PromptConfig::default(), ChatTemplate::chatml())?;
//! let [ab, ba] = builder.pairwise(&item)?;
//! assert_eq!((ab.gold_side, ba.gold_side), (Some(Side::A), Some(Side::B)));
//!
//! let completion = "<think>25 + 17 is 42, so B is wrong.</think> <answer>[[A]]</answer>";
//! let judgment = parse_judgment(completion, ab.kind, ab.parse_options());
//! assert_eq!(judgment.and_then(|j| j.preferred_side()), ab.gold_side);
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod chat;
pub mod error;
pub mod judgment;
pub mod length;
pub mod loaders;
pub mod parse;
pub mod prompts;
pub mod records;
pub mod split;
pub mod synth;
pub mod templates;

pub use chat::{ChatTemplate, SpecialTokens, CHATML_TEMPLATE};
pub use error::{DataError, Location, Result};
pub use judgment::{Judgment, Order, Preference, Side};
pub use length::{
    expand_pairwise_within, expand_pointwise_within, DroppedForLength, LengthLimit, LengthReport,
    Overflow, TokenCounter,
};
pub use loaders::{
    load, load_pairwise, majority_vote, split_transcript, DataFormat, Dataset, LoadOptions,
    LoadReport, Skipped,
};
pub use parse::{
    answer_region, extract_think, format_score, parse_completion, parse_judgment, parse_score,
    parse_scores, parse_verdict, render_completion, ParseOptions, ParsedCompletion, ThinkSpan,
};
pub use prompts::{JudgePrompt, PointTarget, PromptBuilder, PromptConfig, THINK_PREFILL};
pub use records::{render_conversation, Message, PairwiseItem, PointLabel, PointwiseItem, Role};
pub use split::{
    group_pairs, pick_one_order, shuffle_pairs, split_pairs, PairKeyed, Split, SplitConfig,
};
pub use synth::gsm8k::{Gsm8kConfig, Gsm8kProblem};
pub use synth::math::{MathConfig, MathProblem};
pub use synth::procedural::{Family, ProceduralConfig, ProceduralGenerator};
pub use synth::{ErrorKind, PairsPerItem, SkipReason, SynthesisReport};
pub use templates::{
    Delimiters, JudgeTemplate, TemplateConfig, TemplateKind, SCORE_MAX, SCORE_MIN,
};
