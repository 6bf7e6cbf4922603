//! [`Engine`]: G samples per prompt, all prompts decoded as one batch, with one prefill per
//! prompt (nanochat's `Engine.generate`, batched over prompts).
//!
//! 1. The prompts of a chunk run once, left-padded, in `Mode::Infer` (or `Mode::Reference`)
//!    into a KV cache reserved for `max_new_tokens` more slots; the last position's logits
//!    give every sample's first token.
//! 2. The cache is forked into G rows per prompt (`KvCache::fork`).
//! 3. Each step picks one token per unfinished row and runs the (rows, 1) batch. On the CPU
//!    the logits are copied once and each row gets one fused pass (scale, max, exp, sum,
//!    draw) on threads; on a GPU the work stays on the device and O(√V) numbers per row come
//!    back (a two-level inverse-CDF draw). Finished rows are fed a pad and dropped from the
//!    batch with `KvCache::retain` once they are `retain_fraction` of it.
//!
//! The model code is the trainer's (`Llama::forward`), so there is no weight sync and no
//! sampler/trainer mismatch beyond floating-point op order.

use std::ops::Range;
use std::time::Instant;

use candle_core::Tensor;
use thinkjudge_model::{JudgeTokenizer, KvCache, Llama, Mode};

use crate::config::SamplingConfig;
use crate::error::{Result, RolloutError};
use crate::memory;
use crate::padding::{check_ids, owners, pad_rows, Side};
use crate::row::Row;
use crate::rules::Rules;
use crate::sampler::{Chooser, Pick};
use crate::types::{Progress, RolloutBatch, RolloutStats};

/// A rollout request: prompts, group size and the random-stream key of each prompt.
#[derive(Debug, Clone, Copy)]
pub struct RolloutRequest<'a> {
    /// Tokenized prompts (chat-formatted, ending where the completion starts); non-empty.
    pub prompts: &'a [Vec<u32>],
    /// Samples per prompt (G >= 1).
    pub group_size: usize,
    /// Per prompt, the key of its samples' random streams (see [`crate::rng`]); `None` uses
    /// the prompt's index. Stable keys (e.g. a dataset item id) make a prompt's samples
    /// independent of the batch it lands in.
    pub prompt_keys: Option<&'a [u64]>,
}

impl<'a> RolloutRequest<'a> {
    /// `group_size` samples of each prompt, streams keyed by prompt index.
    pub fn new(prompts: &'a [Vec<u32>], group_size: usize) -> Self {
        Self {
            prompts,
            group_size,
            prompt_keys: None,
        }
    }
}

/// Samples thoughts and verdicts from a [`Llama`] (see the module docs).
pub struct Engine<'m> {
    model: &'m Llama,
    tokenizer: &'m JudgeTokenizer,
    config: SamplingConfig,
    mode: Mode,
    rules: Rules,
    chooser: Chooser,
}

impl std::fmt::Debug for Engine<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("mode", &self.mode)
            .field("config", &self.config)
            .field("tokenizer", &self.tokenizer.origin())
            .finish_non_exhaustive()
    }
}

/// Running totals over the chunks of one request, for the progress hook.
struct Tally {
    rows_total: usize,
    finished: usize,
    tokens: usize,
    chunks: usize,
}

impl<'m> Engine<'m> {
    /// Validates `config` and compiles it against the tokenizer. Samples the current policy
    /// (`Mode::Infer`); see [`Engine::with_mode`].
    pub fn new(
        model: &'m Llama,
        tokenizer: &'m JudgeTokenizer,
        config: SamplingConfig,
    ) -> Result<Self> {
        config.validate()?;
        let vocab = model.config().vocab_size;
        Ok(Self {
            rules: Rules::new(&config, tokenizer, vocab)?,
            chooser: Chooser::new(&config, vocab),
            model,
            tokenizer,
            config,
            mode: Mode::Infer,
        })
    }

    /// Samples in `mode`: `Mode::Infer` (the policy, adapters on) or `Mode::Reference` (the
    /// base model). `Mode::Train` is refused: sampling needs no graph.
    pub fn with_mode(mut self, mode: Mode) -> Result<Self> {
        if mode == Mode::Train {
            return Err(RolloutError::InvalidInput(
                "sampling runs in Mode::Infer or Mode::Reference, not Mode::Train".into(),
            ));
        }
        self.mode = mode;
        Ok(self)
    }

    /// The validated config.
    pub fn config(&self) -> &SamplingConfig {
        &self.config
    }

    /// The mode forwards run in.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// `group_size` samples of each prompt, without a progress hook.
    pub fn generate(&self, prompts: &[Vec<u32>], group_size: usize) -> Result<RolloutBatch> {
        self.generate_with(&RolloutRequest::new(prompts, group_size), &mut |_| {})
    }

    /// Runs `request`, calling `progress` after every decode step (e.g. to drive an
    /// `indicatif` bar from `tokens_generated` or `rows_finished`).
    pub fn generate_with(
        &self,
        request: &RolloutRequest,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<RolloutBatch> {
        self.check(request)?;
        let (n, g) = (request.prompts.len(), request.group_size);
        let mut batch = RolloutBatch {
            rollouts: Vec::with_capacity(n * g),
            group_size: g,
            stats: RolloutStats {
                prompts: n,
                rollouts: n * g,
                ..RolloutStats::default()
            },
        };
        if n == 0 {
            return Ok(batch);
        }
        let lens: Vec<usize> = request.prompts.iter().map(Vec::len).collect();
        let chunks = memory::plan_chunks(
            self.model.config(),
            self.model.options(),
            &self.config,
            &lens,
            g,
        )?;
        let mut tally = Tally {
            rows_total: n * g,
            finished: 0,
            tokens: 0,
            chunks: chunks.len(),
        };
        for (c, range) in chunks.into_iter().enumerate() {
            let stats = self.run_chunk(request, range, c, &mut tally, progress, &mut batch)?;
            batch.stats.add(&stats);
        }
        Ok(batch)
    }

    fn check(&self, req: &RolloutRequest) -> Result<()> {
        if req.group_size == 0 {
            return Err(RolloutError::InvalidInput("group_size must be >= 1".into()));
        }
        if let Some(i) = req.prompts.iter().position(Vec::is_empty) {
            return Err(RolloutError::InvalidInput(format!(
                "prompt {i} is empty (a completion needs at least one prompt token)"
            )));
        }
        if let Some(keys) = req.prompt_keys {
            if keys.len() != req.prompts.len() {
                return Err(RolloutError::InvalidInput(format!(
                    "{} prompt_keys for {} prompts",
                    keys.len(),
                    req.prompts.len()
                )));
            }
        }
        check_ids("prompt", req.prompts, self.model.config().vocab_size)
    }

    /// Prefill, fork and decode the prompts of `range`; appends their rollouts to `batch`.
    fn run_chunk(
        &self,
        req: &RolloutRequest,
        range: Range<usize>,
        chunk: usize,
        tally: &mut Tally,
        progress: &mut dyn FnMut(&Progress),
        batch: &mut RolloutBatch,
    ) -> Result<RolloutStats> {
        let g = req.group_size;
        let prompts = &req.prompts[range.clone()];
        let t0 = Instant::now();
        let (mut cache, mut logits) = self.prefill(prompts, g)?;
        let mut stats = RolloutStats {
            chunks: 1,
            prefill_tokens: prompts.iter().map(Vec::len).sum(),
            prefill_seconds: t0.elapsed().as_secs_f64(),
            ..RolloutStats::default()
        };
        let t1 = Instant::now();
        let mut rows: Vec<Row> = (0..prompts.len() * g)
            .map(|i| {
                let p = range.start + i / g;
                let key = req.prompt_keys.map_or(p as u64, |k| k[p]);
                Row::new(self.tokenizer, self.config.seed, key, p, i % g)
            })
            .collect();
        // slots[k]: the row in position k of the decode batch.
        let mut slots: Vec<usize> = (0..rows.len()).collect();
        for step in 0.. {
            self.advance(&logits, &mut rows, &slots, step, tally)?;
            let alive: Vec<u32> = (0..slots.len() as u32)
                .filter(|&k| rows[slots[k as usize]].finish.is_none())
                .collect();
            progress(&Progress {
                step,
                rows_alive: alive.len(),
                rows_finished: tally.finished,
                rows_total: tally.rows_total,
                tokens_generated: tally.tokens,
                chunk,
                chunks: tally.chunks,
            });
            if alive.is_empty() {
                break;
            }
            let dead = slots.len() - alive.len();
            if dead > 0 && dead as f64 >= self.config.retain_fraction * slots.len() as f64 {
                cache.retain(&alive)?;
                slots = alive.iter().map(|&k| slots[k as usize]).collect();
            }
            logits = self.decode_step(&rows, &slots, &mut cache)?;
            stats.decode_steps += 1;
        }
        stats.decode_seconds = t1.elapsed().as_secs_f64();
        for row in rows {
            let r = row.into_rollout()?;
            stats.decode_tokens += r.completion_ids.len();
            stats.forced_tokens += r.forced.iter().filter(|f| **f).count();
            batch.rollouts.push(r);
        }
        Ok(stats)
    }

    /// Picks, chooses and appends one token for every unfinished row of the decode batch.
    ///
    /// # Shapes
    /// `logits` (slots, V).
    fn advance(
        &self,
        logits: &Tensor,
        rows: &mut [Row],
        slots: &[usize],
        step: usize,
        tally: &mut Tally,
    ) -> Result<()> {
        let picks: Vec<Pick> = slots.iter().map(|&r| rows[r].pick(&self.rules)).collect();
        let chosen = self.chooser.choose(logits, &picks)?;
        for ((&r, pick), c) in slots.iter().zip(&picks).zip(chosen) {
            let Some(c) = c else { continue };
            let row = &mut rows[r];
            if !c.logprob.is_finite() {
                return Err(RolloutError::NonFinite {
                    step,
                    prompt_index: row.prompt_index,
                });
            }
            row.push(
                c.token,
                c.logprob,
                matches!(pick, Pick::Forced(_)),
                &self.rules,
            )?;
            tally.tokens += 1;
            tally.finished += usize::from(row.finish.is_some());
        }
        Ok(())
    }

    /// Runs the prompts once and forks the cache into G rows per prompt.
    ///
    /// # Shapes
    /// → the forked cache (P·G rows) and the first-token logits (P·G, V).
    fn prefill(&self, prompts: &[Vec<u32>], g: usize) -> Result<(KvCache, Tensor)> {
        let dev = self.model.device();
        let refs: Vec<&[u32]> = prompts.iter().map(Vec::as_slice).collect();
        let (ids, mask) = pad_rows(&refs, Side::Left, dev)?;
        let lp = ids.dim(1)?;
        let mut cache = self.model.new_cache();
        cache.reserve(self.config.max_new_tokens)?;
        let h = self.model.forward(&ids, &mask, &mut cache, self.mode)?; // (P, Lp, H)
        let last = h.narrow(1, lp - 1, 1)?; // (P, 1, H): left padding puts every row's last token here
        let logits = self.model.logits_mode(&last, self.mode)?.squeeze(1)?; // (P, V)
        if g == 1 {
            return Ok((cache, logits));
        }
        let owners = owners(prompts.len(), g);
        let index = Tensor::new(owners.as_slice(), dev)?;
        Ok((cache.fork(&owners)?, logits.index_select(&index, 0)?))
    }

    /// One (rows, 1) forward: each unfinished row's last token, a masked pad for finished
    /// rows still in the batch.
    ///
    /// # Shapes
    /// → logits (rows, V).
    fn decode_step(&self, rows: &[Row], slots: &[usize], cache: &mut KvCache) -> Result<Tensor> {
        let (ids, mask): (Vec<u32>, Vec<u32>) = slots
            .iter()
            .map(|&r| match (rows[r].finish, rows[r].last_token()) {
                (None, Some(t)) => (t, 1),
                _ => (0, 0),
            })
            .unzip();
        let dev = self.model.device();
        let n = slots.len();
        let ids = Tensor::from_vec(ids, (n, 1), dev)?;
        let mask = Tensor::from_vec(mask, (n, 1), dev)?;
        let h = self.model.forward(&ids, &mask, cache, self.mode)?; // (n, 1, H)
        Ok(self.model.logits_mode(&h, self.mode)?.squeeze(1)?)
    }
}
