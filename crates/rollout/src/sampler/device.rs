//! Token choice with tensor ops on the logits' device (CUDA, Metal): only O(√V) numbers per
//! row come back to the host.
//!
//! Log-probs use the very ops of `Llama::token_logprobs_with_temperature`
//! (`x = logits / T`, `shifted = x − max`, `shifted[y] − log Σ exp(shifted)`). Plain samples
//! are inverse-CDF draws in two levels: the exponentials are summed in blocks of B ≈ √V
//! tokens, the host picks a block from the block sums with the row's uniform, then a token
//! from that block's B values. Greedy rows copy one argmax; rows with truncation or a mask
//! copy their full row and use the host rules.

use candle_core::{DType, Tensor, D};

use super::{pick_by_mass, Chooser, Chosen, Pick};
use crate::error::Result;

impl Chooser {
    /// [`Chooser::choose`] with tensor ops on the logits' device.
    ///
    /// # Shapes
    /// `logits` (R, V); `picks` has R entries.
    pub(crate) fn choose_on_device(
        &self,
        logits: &Tensor,
        picks: &[Pick],
    ) -> Result<Vec<Option<Chosen>>> {
        let r = logits.dim(0)?;
        let x = if self.temperature == 1.0 {
            logits.clone()
        } else {
            logits.affine(1.0 / self.temperature, 0.0)?
        };
        let shifted = x.broadcast_sub(&x.max_keepdim(D::Minus1)?)?; // (R, V)
        let e = shifted.exp()?;
        let log_z = e.sum_keepdim(D::Minus1)?.log()?; // (R, 1)

        let mut tokens: Vec<Option<u32>> = vec![None; r];
        let (mut argmax_rows, mut block_rows, mut host_rows) = (Vec::new(), Vec::new(), Vec::new());
        for (i, pick) in picks.iter().enumerate() {
            match *pick {
                Pick::Skip => {}
                Pick::Forced(t) => tokens[i] = Some(t),
                Pick::Greedy { suppress: [] } => argmax_rows.push(i),
                Pick::Sample { u, suppress } if suppress.is_empty() && !self.truncates() => {
                    block_rows.push((i, u))
                }
                _ => host_rows.push(i),
            }
        }
        if !argmax_rows.is_empty() {
            let am = shifted.argmax(D::Minus1)?.to_vec1::<u32>()?;
            for i in argmax_rows {
                tokens[i] = Some(am[i]);
            }
        }
        if !block_rows.is_empty() {
            self.sample_in_blocks(&e, &block_rows, &mut tokens)?;
        }
        if !host_rows.is_empty() {
            let idx = Tensor::new(as_u32(&host_rows), x.device())?;
            let rows = shifted.index_select(&idx, 0)?.to_dtype(DType::F32)?;
            for (row, &i) in rows.to_vec2::<f32>()?.iter().zip(&host_rows) {
                tokens[i] = Some(self.choose_with_rules(row, &picks[i]));
            }
        }

        let ids: Vec<u32> = tokens.iter().map(|t| t.unwrap_or(0)).collect();
        let ids = Tensor::from_vec(ids, (r, 1), x.device())?;
        let logprobs = shifted
            .gather(&ids, D::Minus1)?
            .sub(&log_z)?
            .squeeze(1)?
            .to_dtype(DType::F32)?
            .to_vec1::<f32>()?;
        Ok(tokens
            .into_iter()
            .zip(logprobs)
            .map(|(t, logprob)| t.map(|token| Chosen { token, logprob }))
            .collect())
    }

    /// Two-level inverse-CDF draws for `rows` (row index, uniform).
    ///
    /// # Shapes
    /// `e` (R, V): `exp(x − max)` per row.
    fn sample_in_blocks(
        &self,
        e: &Tensor,
        rows: &[(usize, f64)],
        tokens: &mut [Option<u32>],
    ) -> Result<()> {
        let (r, v) = e.dims2()?;
        let (n, b) = (rows.len(), self.block);
        let e = if n == r {
            e.clone()
        } else {
            let idx: Vec<usize> = rows.iter().map(|&(i, _)| i).collect();
            e.index_select(&Tensor::new(as_u32(&idx), e.device())?, 0)?
        }; // (n, V)
        let sums = e
            .reshape((n, v / b, b))?
            .sum(D::Minus1)? // (n, V / B)
            .to_dtype(DType::F32)?
            .to_vec2::<f32>()?;
        let mut picks = Vec::with_capacity(n);
        let mut within = Vec::with_capacity(n * b);
        for (k, &(_, u)) in rows.iter().enumerate() {
            let total: f64 = sums[k].iter().map(|&s| f64::from(s)).sum();
            let (blk, rest) = pick_by_mass(&sums[k], u * total);
            picks.push((blk, rest));
            within.extend((0..b).map(|j| (blk * b + j) as u32));
        }
        let within = Tensor::from_vec(within, (n, b), e.device())?;
        let vals = e
            .gather(&within, D::Minus1)? // (n, B)
            .to_dtype(DType::F32)?
            .to_vec2::<f32>()?;
        for (k, &(i, _)) in rows.iter().enumerate() {
            let (blk, rest) = picks[k];
            let (j, _) = pick_by_mass(&vals[k], rest);
            tokens[i] = Some((blk * b + j) as u32);
        }
        Ok(())
    }
}

fn as_u32(rows: &[usize]) -> Vec<u32> {
    rows.iter().map(|&i| i as u32).collect()
}
