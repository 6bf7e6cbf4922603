//! Loss aggregation over tokens and sequences (verl `agg_loss`, recipe.md §9.4), with an
//! explicit batch normaliser so that gradient accumulation over micro-batches reproduces the
//! full mini-batch loss exactly.

use crate::error::{Result, RlError};
use candle_core::{DType, Tensor, D};
use serde::{Deserialize, Serialize};
use std::ops::Add;

/// How per-token losses L_{i,t} (masked by M) become one scalar. N_tok and N_seq are the
/// token and sequence counts of the whole mini-batch ([`BatchTotals`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LossAggregation {
    /// Σ_i Σ_t L_{i,t} / N_tok. DAPO; verl default; J1 (inferred). Default.
    #[default]
    TokenMean,
    /// (1/N_seq) Σ_i (1/|o_i|) Σ_t L_{i,t}. Original GRPO (DeepSeekMath eq. 3); GSPO.
    /// Favours short wrong answers and long right ones (Dr. GRPO's length bias).
    SeqMeanTokenMean,
    /// (1/N_seq) Σ_i Σ_t L_{i,t}.
    SeqMeanTokenSum,
    /// Σ_i Σ_t L_{i,t} / C with a constant C (Dr. GRPO; verl divides by the padded
    /// response length). C is [`PolicyLossConfig::norm_constant`](super::PolicyLossConfig).
    SeqMeanTokenSumNorm,
}

/// The size of the whole (mini-)batch that one optimizer step averages over.
///
/// When a mini-batch is split into micro-batches for gradient accumulation, pass the totals of
/// the whole mini-batch to every micro-batch's loss: the micro-batch losses (and gradients)
/// then sum to the full mini-batch's. Totals add with `+`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchTotals {
    /// Completion tokens (Σ of the mask).
    pub tokens: f64,
    /// Sequences (rows), including rows whose mask is empty.
    pub sequences: f64,
}

impl BatchTotals {
    /// The totals of one response mask.
    ///
    /// # Shapes
    /// - `response_mask`: (B, T), 1 = a trained completion token.
    pub fn of_mask(response_mask: &Tensor) -> Result<Self> {
        let (b, _t) = response_mask.dims2().map_err(|_| {
            RlError::Shape(format!(
                "response_mask must be (B, T), got {:?}",
                response_mask.dims()
            ))
        })?;
        let tokens = response_mask
            .to_dtype(DType::F64)?
            .sum_all()?
            .to_scalar::<f64>()?;
        Ok(BatchTotals {
            tokens,
            sequences: b as f64,
        })
    }
}

impl Add for BatchTotals {
    type Output = BatchTotals;
    fn add(self, o: BatchTotals) -> BatchTotals {
        BatchTotals {
            tokens: self.tokens + o.tokens,
            sequences: self.sequences + o.sequences,
        }
    }
}

/// Aggregates masked per-token values into a scalar.
///
/// # Shapes
/// - `per_token`: (B, T), already zero at masked positions.
/// - `mask`: (B, T), same float dtype, 1/0.
/// - returns: a scalar tensor.
pub(crate) fn aggregate(
    per_token: &Tensor,
    mask: &Tensor,
    mode: LossAggregation,
    totals: BatchTotals,
    norm_constant: f64,
) -> Result<Tensor> {
    let per_seq = || -> Result<f64> {
        if totals.sequences > 0.0 {
            Ok(1.0 / totals.sequences)
        } else {
            Err(RlError::Shape("the batch has no sequences".into()))
        }
    };
    Ok(match mode {
        LossAggregation::TokenMean => {
            if totals.tokens <= 0.0 {
                return Err(RlError::Shape(
                    "the batch has no completion tokens (token-mean divides by 0)".into(),
                ));
            }
            per_token.sum_all()?.affine(1.0 / totals.tokens, 0.0)?
        }
        LossAggregation::SeqMeanTokenMean => {
            // Empty rows contribute 0 rather than 0/0.
            let lens = mask.sum(D::Minus1)?.maximum(1.0)?; // (B,)
            per_token
                .sum(D::Minus1)? // (B,)
                .div(&lens)?
                .sum_all()?
                .affine(per_seq()?, 0.0)?
        }
        LossAggregation::SeqMeanTokenSum => per_token.sum_all()?.affine(per_seq()?, 0.0)?,
        LossAggregation::SeqMeanTokenSumNorm => {
            per_token.sum_all()?.affine(1.0 / norm_constant, 0.0)?
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn t<const B: usize>(v: &[[f32; 3]; B]) -> Tensor {
        Tensor::new(v, &Device::Cpu).unwrap()
    }

    #[test]
    fn modes_match_hand_computed_values() {
        // row 0: [1, 2, _] (2 tokens), row 1: [3, 4, 5] (3 tokens); masked entries are 0.
        let l = t(&[[1.0, 2.0, 0.0], [3.0, 4.0, 5.0]]);
        let m = t(&[[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]]);
        let tot = BatchTotals::of_mask(&m).unwrap();
        assert_eq!(
            tot,
            BatchTotals {
                tokens: 5.0,
                sequences: 2.0
            }
        );
        let agg = |mode| {
            aggregate(&l, &m, mode, tot, 4.0)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
        };
        // 15 / 5
        assert_eq!(agg(LossAggregation::TokenMean), 3.0);
        // (3/2 + 12/3) / 2 = 2.75
        assert_eq!(agg(LossAggregation::SeqMeanTokenMean), 2.75);
        // 15 / 2
        assert_eq!(agg(LossAggregation::SeqMeanTokenSum), 7.5);
        // 15 / 4
        assert_eq!(agg(LossAggregation::SeqMeanTokenSumNorm), 3.75);
    }

    #[test]
    fn global_totals_make_micro_batches_sum_to_the_batch() {
        let l = t(&[[1.0, 2.0, 0.0], [3.0, 4.0, 5.0]]);
        let m = t(&[[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]]);
        let tot = BatchTotals::of_mask(&m).unwrap();
        for mode in [
            LossAggregation::TokenMean,
            LossAggregation::SeqMeanTokenMean,
            LossAggregation::SeqMeanTokenSum,
            LossAggregation::SeqMeanTokenSumNorm,
        ] {
            let full = aggregate(&l, &m, mode, tot, 4.0).unwrap();
            let parts: f32 = (0..2)
                .map(|i| {
                    let (li, mi) = (l.narrow(0, i, 1).unwrap(), m.narrow(0, i, 1).unwrap());
                    let s = aggregate(&li, &mi, mode, tot, 4.0).unwrap();
                    s.to_scalar::<f32>().unwrap()
                })
                .sum();
            let full = full.to_scalar::<f32>().unwrap();
            assert!((full - parts).abs() < 1e-6, "{mode:?}: {full} vs {parts}");
        }
    }

    #[test]
    fn empty_batches_are_errors() {
        let z = t(&[[0.0, 0.0, 0.0]]);
        let tot = BatchTotals::of_mask(&z).unwrap();
        assert!(aggregate(&z, &z, LossAggregation::TokenMean, tot, 1.0).is_err());
        let none = BatchTotals {
            tokens: 0.0,
            sequences: 0.0,
        };
        assert!(aggregate(&z, &z, LossAggregation::SeqMeanTokenSum, none, 1.0).is_err());
    }
}
