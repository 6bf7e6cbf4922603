//! The expected-verdict gradient: the verdict token's expectation taken exactly.
//!
//! A pairwise verdict is one token chosen among the option letters, and a verifiable reward
//! scores every option, not only the one sampled. The policy gradient of that token then
//! needs no sampling: with π_k = π_θ(option k | the completion before the verdict),
//!
//! ```text
//! E_k[r] = Σ_k π_k R_k + (1 − Σ_k π_k) R_∅
//! ∇ E_k[r] = Σ_k (R_k − R_∅) ∇π_k
//! ```
//!
//! where R_∅ is the reward of an unparseable judgment (what any other token leads to). This
//! is the all-action ("mean actor-critic", Allen et al. 2017) estimator of the objective GRPO
//! samples: unbiased and noise-free for the verdict token. Sampled GRPO moves the verdict by
//! random-walk steps whose expected size is p(1 − p); on a judge that starts near 50/50
//! between the letters, they drift the position preference into saturation, where the
//! gradient vanishes, before the content signal appears (README, "The expected-verdict
//! gradient"). Thought tokens before the verdict keep the sampled estimator.
//!
//! [`expected_verdict_loss`] takes one sample's verdict at a time (siblings as sampled);
//! [`expected_joint_reward_loss`] takes the joint outcomes of sibling prompts exactly, for
//! rewards that compare them.

use super::BatchTotals;
use crate::error::{Result, RlError};
use candle_core::{DType, Tensor};
use serde::{Deserialize, Serialize};

/// How the verdict token's gradient is estimated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VerdictGradient {
    /// Through the sampled token, with the sample's advantage, like every other token (J1).
    /// Default.
    #[default]
    Sampled,
    /// The exact expectation over the option letters ([`expected_verdict_loss`]); the sampled
    /// verdict token leaves the clipped surrogate. Completions whose verdict is not one
    /// option token keep the sampled estimator.
    Expected,
}

/// `−(1/N_seq) Σ_i Σ_k exp(option_logprobs[i,k]) · gains[i,k]`: minus the expected verdict
/// reward over the batch's sequences, above the unparseable reward
/// (`gains[i,k] = R_k − R_∅`). Rows without a verdict token have zero gains and contribute 0;
/// `totals.sequences` counts all rows of the mini-batch, like the sequence-level
/// aggregations, so micro-batch losses add up.
///
/// # Shapes
/// - `option_logprobs`: (B, K) log π_θ of each option at the verdict position,
///   differentiable.
/// - `gains`: (B, K), detached here.
///
/// Returns a scalar in f32 (f64 for f64 log-probs).
pub fn expected_verdict_loss(
    option_logprobs: &Tensor,
    gains: &Tensor,
    totals: BatchTotals,
) -> Result<Tensor> {
    let dims = option_logprobs.dims();
    if dims.len() != 2 || gains.dims() != dims {
        return Err(RlError::Shape(format!(
            "option_logprobs must be (B, K) and gains the same shape, got {dims:?} and {:?}",
            gains.dims()
        )));
    }
    if totals.sequences <= 0.0 {
        return Err(RlError::Shape("the batch has no sequences".into()));
    }
    let dt = match option_logprobs.dtype() {
        DType::F64 => DType::F64,
        _ => DType::F32,
    };
    let probs = option_logprobs.to_dtype(dt)?.exp()?;
    let gains = gains.to_dtype(dt)?.detach();
    Ok(probs
        .mul(&gains)?
        .sum_all()?
        .affine(-1.0 / totals.sequences, 0.0)?)
}

/// `−(1/N_seq) Σ_u Σ_o P_u(o) · R_u(o)`: minus the exact expected reward of units of sibling
/// prompts (a pair's two answer orders) whose outcomes are drawn independently, for rewards
/// that compare siblings (J1's position consistency: right in both orders). For a unit of n
/// rows, o runs over the Kⁿ joint outcomes, P_u(o) = Π_j `outcome_probs[row_j, o_j]` and
/// `tables[u][o]` is the unit's total reward (summed over its rows) under o, row-major: the
/// unit's first row varies slowest. For rewards of one sample alone this is
/// [`expected_verdict_loss`] with the unparseable outcome included.
///
/// Why exact over the pair: under the consistency reward a judge that always names the same
/// position earns 0, not 0.5, and the gradient of π_gold(AB) · π_gold(BA) pulls a position
/// preference back towards balance, where the per-sample verdict reward leaves it to drift.
///
/// # Shapes
/// - `outcome_probs`: (B, K) each row's outcome probabilities (summing to 1), differentiable.
/// - `units`: row ranges covering some rows of `outcome_probs`; `tables[u]` has K^len(u)
///   entries.
pub fn expected_joint_reward_loss(
    outcome_probs: &Tensor,
    units: &[std::ops::Range<usize>],
    tables: &[Vec<f32>],
    totals: BatchTotals,
) -> Result<Tensor> {
    let (b, k) = outcome_probs.dims2().map_err(|_| {
        RlError::Shape(format!(
            "outcome_probs must be (B, K), got {:?}",
            outcome_probs.dims()
        ))
    })?;
    if units.len() != tables.len() {
        return Err(RlError::Shape(format!(
            "{} units but {} reward tables",
            units.len(),
            tables.len()
        )));
    }
    if totals.sequences <= 0.0 {
        return Err(RlError::Shape("the batch has no sequences".into()));
    }
    let dev = outcome_probs.device();
    let mut total = Tensor::zeros((), outcome_probs.dtype(), dev)?;
    for (unit, table) in units.iter().zip(tables) {
        let n = unit.len();
        if n == 0 || unit.end > b || table.len() != k.pow(n as u32) {
            return Err(RlError::Shape(format!(
                "unit {unit:?} of {b} rows needs a table of {k}^{n} rewards, got {}",
                table.len()
            )));
        }
        let mut joint = outcome_probs.get(unit.start)?; // (K)
        for row in unit.start + 1..unit.end {
            let p = outcome_probs.get(row)?;
            joint = joint
                .unsqueeze(1)?
                .broadcast_mul(&p.unsqueeze(0)?)?
                .flatten_all()?; // (K^j)
        }
        let table = Tensor::new(table.as_slice(), dev)?.to_dtype(joint.dtype())?;
        total = total.add(&joint.mul(&table)?.sum_all()?)?;
    }
    Ok(total.affine(-1.0 / totals.sequences, 0.0)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn totals(sequences: f64) -> BatchTotals {
        BatchTotals {
            tokens: 0.0,
            sequences,
        }
    }

    #[test]
    fn value_and_gradient_are_the_expected_reward_and_its_derivative() {
        // Row 0: π = [0.6, 0.3] (0.1 elsewhere), gains [1, 0]; row 1: no verdict token.
        let lp = Var::from_vec(
            vec![0.6f64.ln(), 0.3f64.ln(), 0.5f64.ln(), 0.5f64.ln()],
            (2, 2),
            &Device::Cpu,
        )
        .unwrap();
        let gains = Tensor::new(&[[1.0f64, 0.0], [0.0, 0.0]], &Device::Cpu).unwrap();
        let loss = expected_verdict_loss(lp.as_tensor(), &gains, totals(4.0)).unwrap();
        assert!((loss.to_scalar::<f64>().unwrap() + 0.6 / 4.0).abs() < 1e-12);
        // d/d log π_k of −π_k g_k / N = −π_k g_k / N.
        let g = loss.backward().unwrap();
        let g = g.get(&lp).unwrap().to_vec2::<f64>().unwrap();
        assert_eq!(g[1], vec![0.0, 0.0]);
        assert!((g[0][0] + 0.6 / 4.0).abs() < 1e-12 && g[0][1] == 0.0);
    }

    #[test]
    fn the_gradient_raises_the_better_option() {
        // Two letters from logits: the step along −∇ must raise the gold letter's share.
        let logits = Var::new(&[[0.3f32, -0.1, 0.0]], &Device::Cpu).unwrap();
        let lp = candle_nn::ops::log_softmax(logits.as_tensor(), 1)
            .unwrap()
            .narrow(1, 0, 2)
            .unwrap();
        let gains = Tensor::new(&[[0.0f32, 1.0]], &Device::Cpu).unwrap();
        let loss = expected_verdict_loss(&lp, &gains, totals(1.0)).unwrap();
        let g = loss.backward().unwrap();
        let g = g.get(&logits).unwrap().to_vec2::<f32>().unwrap();
        assert!(g[0][1] < 0.0 && g[0][0] > 0.0 && g[0][2] > 0.0, "{g:?}");
    }

    #[test]
    #[allow(clippy::single_range_in_vec_init)] // one unit of rows, not a range of values
    fn joint_expectation_of_a_pair_is_the_product_rule() {
        // Two rows (orders) with outcomes [right, wrong]; the consistency reward pays 1 to
        // each row only when both are right: E = 2 p q, ∂E/∂p = 2q.
        let (p, q) = (0.7f64, 0.4f64);
        let probs = Var::new(&[[p, 1.0 - p], [q, 1.0 - q]], &Device::Cpu).unwrap();
        let table = vec![vec![2.0f32, 0.0, 0.0, 0.0]];
        let loss =
            expected_joint_reward_loss(probs.as_tensor(), &[0..2], &table, totals(2.0)).unwrap();
        assert!((loss.to_scalar::<f64>().unwrap() + 2.0 * p * q / 2.0).abs() < 1e-12);
        let g = loss.backward().unwrap();
        let g = g.get(&probs).unwrap().to_vec2::<f64>().unwrap();
        assert!(
            (g[0][0] + q).abs() < 1e-12 && (g[1][0] + p).abs() < 1e-12,
            "{g:?}"
        );
        // A lone row with per-row rewards is the per-sample expectation.
        let lone =
            expected_joint_reward_loss(probs.as_tensor(), &[1..2], &[vec![1.0, 0.0]], totals(1.0))
                .unwrap();
        assert!((lone.to_scalar::<f64>().unwrap() + q).abs() < 1e-12);
        assert!(
            expected_joint_reward_loss(probs.as_tensor(), &[0..2], &[vec![1.0]], totals(1.0))
                .is_err()
        );
    }

    #[test]
    fn shapes_and_empty_batches_are_errors() {
        let a = Tensor::zeros((2, 2), DType::F32, &Device::Cpu).unwrap();
        let b = Tensor::zeros((2, 3), DType::F32, &Device::Cpu).unwrap();
        assert!(expected_verdict_loss(&a, &b, totals(2.0)).is_err());
        assert!(expected_verdict_loss(&a, &a, totals(0.0)).is_err());
    }
}
