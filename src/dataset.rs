//! Training and evaluation data: sources → pairs → tokenized prompts grouped in
//! [`JudgeUnit`]s (a pair's two prompts, or one pointwise item's), and the [`DataCursor`] that
//! walks the training units in a seeded order, epoch after epoch.
//!
//! A unit is the indivisible piece of a batch: both orders of a pair (or both members of a
//! pointwise-split pair) always land in the same step, which the consistency and distant-
//! supervision rewards need, and the held-out split is made by pair before expansion, so no
//! pair has one order in training and the other in evaluation.

use std::collections::HashSet;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use thinkjudge_data::synth::{gsm8k, math};
use thinkjudge_data::{
    expand_pairwise_within, expand_pointwise_within, group_pairs, load, split_pairs, ChatTemplate,
    Dataset, JudgePrompt, LengthLimit, PairwiseItem, PointLabel, PointTarget, PointwiseItem,
    Preference, ProceduralGenerator, PromptBuilder, SpecialTokens, SplitConfig,
};
use thinkjudge_model::JudgeTokenizer;
use thinkjudge_rl::{Gold, Member};

use crate::config::{ChatTemplateChoice, DataSource, EvalData, TrainConfig};
use crate::error::{Result, TrainError};
use crate::seeds;

/// One rendered and tokenized prompt.
#[derive(Debug, Clone)]
pub struct EncodedPrompt {
    /// The rendered prompt (text, order, kind, gold side).
    pub prompt: JudgePrompt,
    /// Its token ids, (P,).
    pub ids: Vec<u32>,
    /// Stable key of the prompt's random streams: the same prompt draws the same way
    /// whatever batch it lands in (for a given step seed).
    pub key: u64,
    /// What its judgments are checked against.
    pub gold: Gold,
}

/// The prompts of one pair (two, adjacent: `AB` then `BA`, or response 0 then 1 for a
/// pointwise template) or of one pointwise item (one).
#[derive(Debug, Clone)]
pub struct JudgeUnit {
    /// The pair's (or item's) id.
    pub id: String,
    /// Its prompts.
    pub prompts: Vec<EncodedPrompt>,
}

/// The data a run trains and evaluates on.
#[derive(Debug, Clone)]
pub struct Datasets {
    /// Training units, in source order (the cursor shuffles per epoch).
    pub train: Vec<JudgeUnit>,
    /// Evaluation units (capped at `trainer.eval_pairs`).
    pub eval: Vec<JudgeUnit>,
}

/// Loaded records before expansion.
#[derive(Debug, Default)]
struct Records {
    pairs: Vec<PairwiseItem>,
    points: Vec<PointwiseItem>,
}

impl Records {
    fn len(&self) -> usize {
        self.pairs.len() + self.points.len()
    }
}

/// The chat template `choice` names, for `tokenizer`'s model.
///
/// # Errors
/// [`TrainError::Data`] when the template does not compile.
pub fn chat_template(
    choice: &ChatTemplateChoice,
    tokenizer: &JudgeTokenizer,
) -> Result<ChatTemplate> {
    let tokens = || {
        let name = |id: Option<u32>| {
            id.and_then(|i| tokenizer.id_to_token(i))
                .unwrap_or_default()
        };
        SpecialTokens {
            bos_token: name(tokenizer.bos_id()),
            eos_token: name(tokenizer.eos_ids().first().copied()),
        }
    };
    Ok(match choice {
        ChatTemplateChoice::Model => match tokenizer.chat_template() {
            Some(source) => ChatTemplate::new(source, tokens())?,
            None => {
                tracing::info!("the tokenizer has no chat template; using ChatML");
                ChatTemplate::chatml()
            }
        },
        ChatTemplateChoice::Chatml => ChatTemplate::chatml(),
        ChatTemplateChoice::Inline(source) => ChatTemplate::new(source, tokens())?,
    })
}

/// Loads every source, holds out evaluation pairs, renders and tokenizes prompts.
///
/// # Errors
/// Loader and template errors; [`TrainError::DataSetup`] for duplicate ids, graded
/// pointwise labels, or items that do not fit the template.
pub fn build(cfg: &TrainConfig, tokenizer: &JudgeTokenizer) -> Result<Datasets> {
    let mut train = load_sources(&cfg.data.train)?;
    drop_ties(&mut train);
    let mut eval = match &cfg.data.eval {
        EvalData::HeldOut { fraction, seed } => {
            let split = SplitConfig {
                eval_fraction: *fraction,
                seed: *seed,
            };
            let pairs = split_pairs(std::mem::take(&mut train.pairs), &split)?;
            let points = split_pairs(std::mem::take(&mut train.points), &split)?;
            train = Records {
                pairs: pairs.train,
                points: points.train,
            };
            Records {
                pairs: pairs.eval,
                points: points.eval,
            }
        }
        EvalData::Sources { sources } => load_sources(sources)?,
        EvalData::None {} => Records::default(),
    };
    drop_ties(&mut eval);
    if let Some(cap) = cfg.trainer.eval_pairs {
        eval.pairs.truncate(cap);
        eval.points.truncate(cap.saturating_sub(eval.pairs.len()));
    }
    check_unique_ids(&train, &eval)?;

    let builder = PromptBuilder::from_config(
        &cfg.data.prompt,
        chat_template(&cfg.data.chat_template, tokenizer)?,
    )?;
    let limit = LengthLimit {
        max_prompt_tokens: cfg.data.max_prompt_tokens,
        overflow: cfg.data.overflow,
    };
    let datasets = Datasets {
        train: encode("train", &train, &builder, &limit, tokenizer)?,
        eval: encode("eval", &eval, &builder, &limit, tokenizer)?,
    };
    if datasets.train.len() < cfg.trainer.pairs_per_step {
        return Err(TrainError::DataSetup(format!(
            "{} training pairs, fewer than trainer.pairs_per_step = {}",
            datasets.train.len(),
            cfg.trainer.pairs_per_step
        )));
    }
    Ok(datasets)
}

/// Loads `sources` and renders them with `cfg`'s prompt, chat-template and length settings
/// as evaluation units, at most `max_pairs` of them (tied pairs left out): an extra
/// held-out set beside the run's own, e.g. another distribution than the training data, or
/// a benchmark file for `thinkjudge eval`.
///
/// # Errors
/// As [`build`].
pub fn build_units(
    cfg: &TrainConfig,
    sources: &[DataSource],
    max_pairs: Option<usize>,
    tokenizer: &JudgeTokenizer,
) -> Result<Vec<JudgeUnit>> {
    let mut records = load_sources(sources)?;
    drop_ties(&mut records);
    if let Some(cap) = max_pairs {
        records.pairs.truncate(cap);
        records
            .points
            .truncate(cap.saturating_sub(records.pairs.len()));
    }
    check_unique_ids(&records, &Records::default())?;
    let builder = PromptBuilder::from_config(
        &cfg.data.prompt,
        chat_template(&cfg.data.chat_template, tokenizer)?,
    )?;
    let limit = LengthLimit {
        max_prompt_tokens: cfg.data.max_prompt_tokens,
        overflow: cfg.data.overflow,
    };
    encode("eval", &records, &builder, &limit, tokenizer)
}

fn load_sources(sources: &[DataSource]) -> Result<Records> {
    let mut out = Records::default();
    for source in sources {
        match source {
            DataSource::Procedural { pairs, generator } => {
                let mut g = ProceduralGenerator::new(generator.clone())?;
                out.pairs.extend(g.generate(*pairs)?);
                tracing::info!("procedural: {}", g.report());
            }
            DataSource::Gsm8k { path, synth } => {
                let (pairs, report) = gsm8k::synthesize_file(path, synth)?;
                tracing::info!("gsm8k {}: {report}", path.display());
                out.pairs.extend(pairs);
            }
            DataSource::Math { path, synth } => {
                let (pairs, report) = math::synthesize_file(path, synth)?;
                tracing::info!("math {}: {report}", path.display());
                out.pairs.extend(pairs);
            }
            DataSource::File {
                path,
                format,
                load: opts,
            } => {
                let (dataset, report) = load(path, *format, opts)?;
                tracing::info!("{report}");
                match dataset {
                    Dataset::Pairwise(v) => out.pairs.extend(v),
                    Dataset::Pointwise(v) => out.points.extend(v),
                }
            }
        }
    }
    Ok(out)
}

/// Tied pairs have no correct verdict (the rewards refuse them): leave them out, counted.
fn drop_ties(records: &mut Records) {
    let before = records.pairs.len();
    records.pairs.retain(|p| p.preference != Preference::Tie);
    let dropped = before - records.pairs.len();
    if dropped > 0 {
        tracing::warn!("dropped {dropped} tied pairs (no verdict can be correct)");
    }
}

fn check_unique_ids(train: &Records, eval: &Records) -> Result<()> {
    let mut seen = HashSet::new();
    let ids = [train, eval].into_iter().flat_map(|r| {
        r.pairs
            .iter()
            .map(|p| p.id.as_str())
            .chain(r.points.iter().map(|p| p.id.as_str()))
    });
    for id in ids {
        if !seen.insert(id) {
            return Err(TrainError::DataSetup(format!(
                "item id `{id}` appears twice across the data sources; ids must be unique so \
                 that a pair's prompts stay together"
            )));
        }
    }
    Ok(())
}

fn encode(
    split: &str,
    records: &Records,
    builder: &PromptBuilder,
    limit: &LengthLimit,
    tokenizer: &JudgeTokenizer,
) -> Result<Vec<JudgeUnit>> {
    if records.len() == 0 {
        return Ok(Vec::new());
    }
    let count = |text: &str| tokenizer.encode(text).map_or(usize::MAX, |ids| ids.len());
    let (mut prompts, report) = expand_pairwise_within(builder, &records.pairs, &count, limit)?;
    let (points, report_points) = expand_pointwise_within(builder, &records.points, &count, limit)?;
    prompts.extend(points);
    for (what, r) in [("pairs", report), ("pointwise items", report_points)] {
        if r.items_in > 0 {
            tracing::info!(
                "{split} {what}: kept {} of {} (dropped {} over {} tokens, trimmed {}), longest prompt {} tokens, mean {:.0}",
                r.kept, r.items_in, r.dropped.len(), limit.max_prompt_tokens,
                r.trimmed, r.max_tokens, r.mean_tokens
            );
        }
    }
    group_pairs(prompts)
        .into_iter()
        .map(|group| {
            let id = group[0].pair_id.clone();
            let prompts = group
                .into_iter()
                .map(|p| encode_prompt(p, tokenizer))
                .collect::<Result<Vec<_>>>()?;
            Ok(JudgeUnit { id, prompts })
        })
        .collect()
}

fn encode_prompt(prompt: JudgePrompt, tokenizer: &JudgeTokenizer) -> Result<EncodedPrompt> {
    let gold = gold_of(&prompt)?;
    let ids = tokenizer.encode(&prompt.text)?;
    if ids.is_empty() {
        return Err(TrainError::DataSetup(format!(
            "item `{}`: the prompt encodes to no tokens",
            prompt.pair_id
        )));
    }
    let key = seeds::text_key(&format!("{}\u{1f}{:?}", prompt.pair_id, prompt.order));
    Ok(EncodedPrompt {
        prompt,
        ids,
        key,
        gold,
    })
}

/// The gold of a rendered prompt, in the rl crate's terms.
fn gold_of(p: &JudgePrompt) -> Result<Gold> {
    if let Some(side) = p.gold_side {
        let pref = match p.order.response_at(side) {
            0 => Preference::First,
            _ => Preference::Second,
        };
        return Ok(Gold::Preference(pref));
    }
    match p.point {
        Some(target @ PointTarget::PairMember { .. }) => match target.is_preferred() {
            Some(true) => Ok(Gold::Member(Member::Chosen)),
            Some(false) => Ok(Gold::Member(Member::Rejected)),
            None => Err(tie(p)),
        },
        Some(PointTarget::Label(PointLabel::Good)) => Ok(Gold::Label(true)),
        Some(PointTarget::Label(PointLabel::Bad)) => Ok(Gold::Label(false)),
        Some(PointTarget::Label(PointLabel::Score(x))) => Err(TrainError::DataSetup(format!(
            "item `{}`: graded label {x} is not supported for training; use good/bad labels",
            p.pair_id
        ))),
        None => Err(tie(p)),
    }
}

fn tie(p: &JudgePrompt) -> TrainError {
    TrainError::DataSetup(format!("item `{}`: a tie has no gold judgment", p.pair_id))
}

/// A sha256 (hex) over the units' ids and token ids: two runs see the same data in the
/// same order exactly when their fingerprints agree (checked when resuming).
pub fn fingerprint(units: &[JudgeUnit]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for unit in units {
        h.update(unit.id.as_bytes());
        h.update([0xff]);
        for p in &unit.prompts {
            h.update((p.ids.len() as u64).to_le_bytes());
            for id in &p.ids {
                h.update(id.to_le_bytes());
            }
        }
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Where the training data stands: the epoch and the position in its shuffled order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataCursor {
    /// Passes completed over the training units.
    pub epoch: u64,
    /// Units of this epoch's order already used.
    pub position: usize,
}

impl DataCursor {
    /// The indices of the next `take` units (≤ `units`) and the advanced cursor. The order of
    /// epoch `e` is a ChaCha8 shuffle seeded `derive(seed, DATA_ORDER, e)`; a batch that
    /// runs past the end continues with the next epoch's order.
    pub fn next(self, units: usize, take: usize, seed: u64) -> (Vec<usize>, DataCursor) {
        let mut cursor = self;
        let mut out = Vec::with_capacity(take);
        let mut order = epoch_order(units, seed, cursor.epoch);
        while out.len() < take && units > 0 {
            if cursor.position >= units {
                cursor = DataCursor {
                    epoch: cursor.epoch + 1,
                    position: 0,
                };
                order = epoch_order(units, seed, cursor.epoch);
            }
            out.push(order[cursor.position]);
            cursor.position += 1;
        }
        (out, cursor)
    }
}

fn epoch_order(units: usize, seed: u64, epoch: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..units).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seeds::derive(
        seed,
        seeds::DATA_ORDER,
        epoch,
    )));
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_walks_epochs_without_repeats_within_one() {
        let (a, c) = DataCursor::default().next(5, 3, 7);
        let (b, c2) = c.next(5, 3, 7);
        assert_eq!(
            c,
            DataCursor {
                epoch: 0,
                position: 3
            }
        );
        assert_eq!(
            c2,
            DataCursor {
                epoch: 1,
                position: 1
            }
        );
        let mut first_epoch: Vec<usize> = a.iter().chain(&b[..2]).copied().collect();
        first_epoch.sort_unstable();
        assert_eq!(first_epoch, vec![0, 1, 2, 3, 4]);
        // Pure function of (seed, cursor).
        assert_eq!(c.next(5, 3, 7), (b, c2));
        assert_ne!(epoch_order(50, 7, 0), epoch_order(50, 7, 1));
    }
}
