//! [`KvCache`]: per-row keys and values of every layer, forkable across rows.
//!
//! Besides K/V the cache keeps, per row, which key slots hold real tokens (padding is never
//! attended to) and the position the row's next real token gets. Chunks and decode steps
//! appended later therefore stay correct with left- or right-padded rows of different lengths.
//!
//! Two storage kinds, chosen by the [`Mode`] of the first forward:
//! * **inference** ([`Mode::Infer`], [`Mode::Reference`]): per layer preallocated buffers
//!   written in place with `slice_set`, so a decode step copies only its own keys (capacity
//!   doubles when exceeded; [`KvCache::reserve`] avoids that). Keys are stored transposed,
//!   `(B, n_kv, D, capacity)`: the decode-time `q·kᵀ` (a few query rows against many keys) is
//!   about 4× faster on the CPU with a row-major right-hand side;
//! * **training** ([`Mode::Train`]): K/V are ordinary graph tensors grown with `cat`, so
//!   gradients flow from later chunks back into the forward that produced the cached keys.
//!
//! A cache remembers its mode; continuing it in another mode is an error (the policy's keys
//! are not the reference policy's keys).
//!
//! # Sampling: prefill once, fork G
//! Prefill `P` prompts into one cache, then [`KvCache::fork`] with rows
//! `[0, 0, 0, 0, 1, 1, 1, 1]` gives `G = 4` rows per prompt sharing its keys; decode on the
//! fork, and [`KvCache::retain`] the unfinished rows to drop finished ones from the compute.
//!
//! # The shared-prefix training forward
//! The GRPO loss needs the log-probs of `G` completions of each prompt. Instead of running
//! `prompt ‖ completion` `G` times:
//! 1. run the prompts **minus their last token** once, in [`Mode::Train`], left-padded
//!    (`(P, Lp − 1)`, a fresh cache);
//! 2. `fork` the cache with each prompt's row repeated `G` times (an `index_select`: the
//!    fork's keys are differentiable functions of the prompt forward);
//! 3. run `[last prompt token ‖ completion]`, right-padded (`(P·G, 1 + Lc)`), on the fork;
//! 4. `token_logprobs(hidden, targets)` where `targets[:, t]` is the next input token: the
//!    hidden state at the last prompt token predicts the first completion token, and so on.
//!
//! The prompt's activations then receive the summed gradient of its `G` completions: the
//! log-probs and gradients equal those of `G` separate full-sequence forwards (tested in
//! `tests/kv_cache.rs`), at a fraction of the cost for long judge prompts.

mod rows;

use candle_core::{Device, Tensor};

use crate::error::{ModelError, Result};
use crate::llama::Mode;

/// Additive attention bias for a masked key: large and finite, so a row whose keys are all
/// masked (a pad query in a left-padded row) gets a uniform softmax instead of NaN.
pub(crate) const MASKED: f32 = -1e9;

#[derive(Debug)]
struct LayerKv {
    /// Inference: kᵀ, a (B, n_kv, D, capacity) buffer. Training: k, (B, n_kv, len, D).
    k: Tensor,
    /// Inference: (B, n_kv, capacity, D) buffer. Training: (B, n_kv, len, D).
    v: Tensor,
}

/// Keys and values of every layer for a batch of rows, with per-row padding and positions.
#[derive(Debug)]
pub struct KvCache {
    layers: Vec<Option<LayerKv>>,
    mode: Option<Mode>,
    rows: usize,
    /// Key slots filled (the same for every row; padding fills the gaps).
    len: usize,
    /// Buffer slots allocated (inference caches only).
    capacity: usize,
    /// Extra slots to allocate at the first write (set by `reserve` on an empty cache).
    reserve_hint: usize,
    /// `valid[row][slot]`: whether the key in that slot is a real token.
    valid: Vec<Vec<bool>>,
    /// The position the next real token of each row gets.
    next_pos: Vec<u32>,
}

/// What one forward step appends, computed before any layer runs.
pub(crate) struct StepPlan {
    /// Rotary position of every new token, (B·T) row-major.
    pub positions: Vec<u32>,
    /// 0 or [`MASKED`] per (row, key slot) over all `seq_len` slots, (B·S) row-major.
    pub key_bias: Vec<f32>,
    /// 0 or [`MASKED`] per (new token, key slot): causality, (T·S); `None` when T = 1.
    pub causal_bias: Option<Vec<f32>>,
    /// Key slots after this step (S).
    pub seq_len: usize,
    new_valid: Vec<Vec<bool>>,
    new_next_pos: Vec<u32>,
    mode: Mode,
}

impl KvCache {
    /// An empty cache for a model with `num_layers` layers (see also `Llama::new_cache`).
    pub fn new(num_layers: usize) -> Self {
        Self {
            layers: (0..num_layers).map(|_| None).collect(),
            mode: None,
            rows: 0,
            len: 0,
            capacity: 0,
            reserve_hint: 0,
            valid: Vec::new(),
            next_pos: Vec::new(),
        }
    }

    /// Number of rows (0 while empty).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Key slots filled per row, padding included.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing has been cached yet.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// The mode the cache was filled in (`None` while empty).
    pub fn mode(&self) -> Option<Mode> {
        self.mode
    }

    /// The position each row's next real token will get (= its number of real tokens).
    pub fn next_positions(&self) -> &[u32] {
        &self.next_pos
    }

    /// Which key slots of `row` hold real tokens.
    pub fn key_mask(&self, row: usize) -> Option<&[bool]> {
        self.valid.get(row).map(Vec::as_slice)
    }

    /// Drops everything (keeps the number of layers).
    pub fn clear(&mut self) {
        *self = Self::new(self.layers.len());
    }

    /// Makes room for `additional` more slots per row without reallocating during decode.
    /// On an empty cache the room is added when the first forward allocates. Training caches
    /// grow by concatenation and ignore this.
    pub fn reserve(&mut self, additional: usize) -> Result<()> {
        if self.is_empty() {
            self.reserve_hint = additional;
            return Ok(());
        }
        if self.mode == Some(Mode::Train) || self.len + additional <= self.capacity {
            return Ok(());
        }
        self.grow_to(self.len + additional)
    }

    /// A new cache whose row `i` is row `rows[i]` of this one (rows may repeat: `[0, 0, 1, 1]`
    /// shares each of two prompts into two rows). In training mode this is a differentiable
    /// `index_select`; inference buffers keep their capacity, and on the CPU only their filled
    /// slots are copied.
    pub fn fork(&self, rows: &[u32]) -> Result<KvCache> {
        self.check_rows("fork", rows)?;
        if rows.is_empty() {
            let mut empty = Self::new(self.layers.len());
            empty.mode = self.mode;
            return Ok(empty);
        }
        let device = self.device()?;
        let index = Tensor::new(rows, &device)?;
        let inference = self.mode != Some(Mode::Train);
        let layers = self
            .layers
            .iter()
            .map(|l| {
                l.as_ref()
                    .map(|l| -> Result<LayerKv> {
                        if inference && rows::applies(&l.k) && rows::applies(&l.v) {
                            let [k, v] = self.live_lines(l)?;
                            return Ok(LayerKv {
                                k: rows::gather(&l.k, rows, k)?,
                                v: rows::gather(&l.v, rows, v)?,
                            });
                        }
                        Ok(LayerKv {
                            k: l.k.index_select(&index, 0)?,
                            v: l.v.index_select(&index, 0)?,
                        })
                    })
                    .transpose()
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(self.with_rows(layers, rows))
    }

    /// Keeps only `rows` (in that order), e.g. the unfinished sequences of a decode batch.
    ///
    /// Cheap enough to call every decode step: for an inference cache on the CPU with `rows`
    /// strictly increasing (dropping rows, keeping the order), the kept rows' filled slots are
    /// moved down in place, with no allocation (the buffers keep their size until they next
    /// grow). Otherwise it is a [`KvCache::fork`].
    pub fn retain(&mut self, rows: &[u32]) -> Result<()> {
        self.check_rows("retain", rows)?;
        let increasing = rows.windows(2).all(|w| w[0] < w[1]);
        let in_place = !rows.is_empty()
            && increasing
            && self.mode != Some(Mode::Train)
            && self
                .layers
                .iter()
                .flatten()
                .all(|l| rows::applies(&l.k) && rows::applies(&l.v));
        if !in_place {
            *self = self.fork(rows)?;
            return Ok(());
        }
        if rows.len() == self.rows {
            return Ok(()); // strictly increasing and as many as there are: every row, in order
        }
        let mut layers = Vec::with_capacity(self.layers.len());
        for l in &self.layers {
            layers.push(match l {
                None => None,
                Some(l) => {
                    let [k, v] = self.live_lines(l)?;
                    Some(LayerKv {
                        k: rows::compact_in_place(&l.k, rows, k)?,
                        v: rows::compact_in_place(&l.v, rows, v)?,
                    })
                }
            });
        }
        *self = self.with_rows(layers, rows);
        Ok(())
    }

    /// Where the filled slots of an inference layer's kᵀ and v buffers are (see `rows.rs`):
    /// kᵀ `(B, n_kv, D, cap)` has `n_kv·D` lines of `cap` with `len` filled; v
    /// `(B, n_kv, cap, D)` has `n_kv` lines of `cap·D` with `len·D` filled.
    fn live_lines(&self, l: &LayerKv) -> Result<[rows::Lines; 2]> {
        let (_, h, d, cap) = l.k.dims4()?;
        let (_, _, vcap, vd) = l.v.dims4()?;
        Ok([
            rows::Lines {
                lines: h * d,
                line_len: cap,
                live: self.len,
            },
            rows::Lines {
                lines: h,
                line_len: vcap * vd,
                live: self.len * vd,
            },
        ])
    }

    fn check_rows(&self, what: &str, rows: &[u32]) -> Result<()> {
        if self.is_empty() {
            return Err(ModelError::InvalidArgument(format!(
                "KvCache::{what} on an empty cache (run a forward first)"
            )));
        }
        if let Some(&bad) = rows.iter().find(|&&r| r as usize >= self.rows) {
            return Err(ModelError::InvalidArgument(format!(
                "KvCache::{what}: row {bad} out of range (the cache has {} rows)",
                self.rows
            )));
        }
        Ok(())
    }

    /// This cache's bookkeeping for `rows`, over the given layer tensors.
    fn with_rows(&self, layers: Vec<Option<LayerKv>>, rows: &[u32]) -> KvCache {
        KvCache {
            layers,
            mode: self.mode,
            rows: rows.len(),
            len: self.len,
            capacity: self.capacity,
            reserve_hint: 0,
            valid: rows
                .iter()
                .map(|&r| self.valid[r as usize].clone())
                .collect(),
            next_pos: rows.iter().map(|&r| self.next_pos[r as usize]).collect(),
        }
    }

    fn device(&self) -> Result<Device> {
        self.layers
            .iter()
            .flatten()
            .next()
            .map(|l| l.k.device().clone())
            .ok_or_else(|| ModelError::InvalidArgument("KvCache holds no tensors yet".into()))
    }

    /// Reallocates every inference buffer to `new_cap` slots, keeping the filled ones.
    fn grow_to(&mut self, new_cap: usize) -> Result<()> {
        for l in self.layers.iter_mut().flatten() {
            // The slot axis is 3 for the transposed keys, 2 for the values.
            for (t, axis) in [(&mut l.k, 3), (&mut l.v, 2)] {
                let mut dims = t.dims().to_vec();
                dims[axis] = new_cap - self.len;
                let pad = Tensor::zeros(dims, t.dtype(), t.device())?;
                *t = Tensor::cat(&[&t.narrow(axis, 0, self.len)?, &pad], axis)?;
            }
        }
        self.capacity = new_cap;
        Ok(())
    }

    /// Checks a new step against the cache and computes its positions and attention biases.
    ///
    /// # Shapes
    /// `mask` is the (B·T) row-major attention mask of the new tokens (true = real token).
    pub(crate) fn plan(&self, mask: &[bool], b: usize, t: usize, mode: Mode) -> Result<StepPlan> {
        if let Some(m) = self.mode {
            if m != mode && !self.is_empty() {
                return Err(ModelError::InvalidArgument(format!(
                    "this KvCache was filled in {m:?} mode and cannot continue in {mode:?} mode \
                     (use a fresh cache)"
                )));
            }
        }
        if !self.is_empty() && self.rows != b {
            return Err(ModelError::Shape(format!(
                "input has {b} rows but the KvCache has {} (fork or retain it first)",
                self.rows
            )));
        }
        let s = self.len + t;
        let mut positions = Vec::with_capacity(b * t);
        let mut key_bias = Vec::with_capacity(b * s);
        let mut new_valid = Vec::with_capacity(b);
        let mut new_next_pos = Vec::with_capacity(b);
        for row in 0..b {
            let mut next = self.next_pos.get(row).copied().unwrap_or(0);
            let mut valid = self.valid.get(row).cloned().unwrap_or_default();
            for &real in &mask[row * t..(row + 1) * t] {
                // Pad tokens get the position of the next real token: harmless, never attended.
                positions.push(next);
                next += u32::from(real);
                valid.push(real);
            }
            key_bias.extend(valid.iter().map(|&ok| if ok { 0.0 } else { MASKED }));
            new_valid.push(valid);
            new_next_pos.push(next);
        }
        let causal_bias = (t > 1).then(|| {
            (0..t)
                .flat_map(|i| (0..s).map(move |j| if j <= self.len + i { 0.0 } else { MASKED }))
                .collect()
        });
        Ok(StepPlan {
            positions,
            key_bias,
            causal_bias,
            seq_len: s,
            new_valid,
            new_next_pos,
            mode,
        })
    }

    /// Appends one layer's new keys and values and returns all of that layer's keys
    /// (transposed) and values. Call for every layer between [`KvCache::plan`] and
    /// [`KvCache::commit`].
    ///
    /// # Shapes
    /// `k`, `v` (B, n_kv, T, D) → kᵀ (B, n_kv, D, S), v (B, n_kv, S, D).
    pub(crate) fn append(
        &mut self,
        layer: usize,
        k: &Tensor,
        v: &Tensor,
        plan: &StepPlan,
    ) -> Result<(Tensor, Tensor)> {
        let n_layers = self.layers.len();
        let slot = self.layers.get_mut(layer).ok_or_else(|| {
            ModelError::InvalidArgument(format!(
                "KvCache has {n_layers} layers, the model asked for layer {layer}"
            ))
        })?;
        let t = k.dim(2)?;
        if plan.mode == Mode::Train {
            let (k, v) = match slot.as_ref() {
                None => (k.clone(), v.clone()),
                Some(old) => (Tensor::cat(&[&old.k, k], 2)?, Tensor::cat(&[&old.v, v], 2)?),
            };
            *slot = Some(LayerKv {
                k: k.clone(),
                v: v.clone(),
            });
            return Ok((k.t()?, v));
        }
        if slot.is_none() {
            let (b, h, _, d) = k.dims4()?;
            let cap = self.capacity.max(self.len + t + self.reserve_hint);
            *slot = Some(LayerKv {
                k: Tensor::zeros((b, h, d, cap), k.dtype(), k.device())?,
                v: Tensor::zeros((b, h, cap, d), v.dtype(), v.device())?,
            });
        }
        let l = slot
            .as_ref()
            .ok_or_else(|| ModelError::InvalidArgument("KvCache: layer buffer missing".into()))?;
        l.k.slice_set(&k.t()?.contiguous()?, 3, self.len)?;
        l.v.slice_set(&v.contiguous()?, 2, self.len)?;
        Ok((
            l.k.narrow(3, 0, plan.seq_len)?,
            l.v.narrow(2, 0, plan.seq_len)?,
        ))
    }

    /// Makes sure every inference buffer has room for the step (call before `append`).
    pub(crate) fn prepare(&mut self, plan: &StepPlan) -> Result<()> {
        if plan.mode == Mode::Train || self.is_empty() {
            return Ok(());
        }
        if plan.seq_len > self.capacity {
            self.grow_to(plan.seq_len.max(2 * self.capacity))?;
        }
        Ok(())
    }

    /// Records the step: new slots, key validity and next positions.
    pub(crate) fn commit(&mut self, plan: StepPlan) {
        if self.is_empty() && plan.mode != Mode::Train {
            self.capacity = plan.seq_len + self.reserve_hint;
        }
        self.rows = plan.new_valid.len();
        self.len = plan.seq_len;
        self.valid = plan.new_valid;
        self.next_pos = plan.new_next_pos;
        self.mode = Some(plan.mode);
        self.reserve_hint = 0;
    }
}
