//! thinkjudge-data: preference data → judgment prompts, and judge text → verdicts.

pub mod judgment;

pub use judgment::{Judgment, Order, Preference, Side};
