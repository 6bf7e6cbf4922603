//! The policy loss's autograd gradient with respect to the new log-probs against central
//! finite differences in f64, for every aggregation × KL estimator × ratio level, with clip
//! ranges and dual clip active on some tokens.

use candle_core::{DType, Device, Tensor, Var};
use thinkjudge_rl::{
    policy_loss, KlEstimator, LossAggregation, LossInputs, PolicyLossConfig, RatioLevel,
};

const DEV: Device = Device::Cpu;
const B: usize = 3;
const T: usize = 5;
/// Central-difference step: truncation error ~h² · |f'''| ≈ 1e-12, rounding ~1e-16 / h.
const H: f64 = 1e-6;
/// Allowed |autograd − finite difference|, relative to max(1, |grad|).
const TOL: f64 = 1e-7;

/// Deterministic inputs without an RNG. Token ratios ρ = exp(logp − old) spread over
/// ≈ [0.55, 1.8], so some tokens are clipped (ε = 0.2), and with Â < 0 some exceed the dual
/// clip c = 1.5.
fn inputs() -> (Vec<f64>, Tensor, Tensor, Tensor, Tensor) {
    let logp: Vec<f64> = (0..B * T)
        .map(|i| -0.5 - 0.4 * (i as f64 * 1.7).sin())
        .collect();
    let old: Vec<f64> = (0..B * T)
        .map(|i| logp[i] - 0.6 * (i as f64 * 2.3 + 0.4).cos())
        .collect();
    let reference: Vec<f64> = (0..B * T)
        .map(|i| logp[i] + 0.3 * (i as f64).cos())
        .collect();
    let t = |v: &[f64]| Tensor::from_slice(v, (B, T), &DEV).unwrap();
    let adv = Tensor::new(&[0.9f64, -1.3, 0.4], &DEV).unwrap();
    let mask = Tensor::new(&[[1u8, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 1, 1, 0]], &DEV).unwrap();
    (logp, t(&old), t(&reference), adv, mask)
}

fn loss_value(cfg: &PolicyLossConfig, logp: &Tensor) -> (Tensor, f64) {
    let (_, old, reference, adv, mask) = inputs();
    let out = policy_loss(
        &LossInputs {
            logprobs: logp,
            old_logprobs: &old,
            ref_logprobs: Some(&reference),
            advantages: &adv,
            response_mask: &mask,
            entropy: None,
        },
        cfg,
        None,
    )
    .unwrap();
    let v = out.loss.to_scalar::<f64>().unwrap();
    (out.loss, v)
}

/// Distance of each token's ratio from the nearest kink of the clipped objective.
fn min_kink_distance(cfg: &PolicyLossConfig) -> f64 {
    let (logp, old, ..) = inputs();
    let old: Vec<f64> = old.flatten_all().unwrap().to_vec1().unwrap();
    let mut kinks = vec![1.0 - cfg.clip_eps_low, 1.0 + cfg.clip_eps_high];
    kinks.extend(cfg.dual_clip);
    logp.iter()
        .zip(&old)
        .flat_map(|(l, o)| {
            let r = (l - o).exp();
            kinks.iter().map(move |k| (r - k).abs()).collect::<Vec<_>>()
        })
        .fold(f64::INFINITY, f64::min)
}

fn check(cfg: &PolicyLossConfig) {
    let (logp, ..) = inputs();
    let var = Var::from_slice(&logp, (B, T), &DEV).unwrap();
    let (loss, _) = loss_value(cfg, var.as_tensor());
    let grads = loss.backward().unwrap();
    let g: Vec<f64> = grads
        .get(var.as_tensor())
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let mut nonzero = 0;
    for i in 0..B * T {
        let at = |d: f64| {
            let mut v = logp.clone();
            v[i] += d;
            loss_value(cfg, &Tensor::from_slice(&v, (B, T), &DEV).unwrap()).1
        };
        let fd = (at(H) - at(-H)) / (2.0 * H);
        assert!(
            (g[i] - fd).abs() <= TOL * g[i].abs().max(1.0),
            "{cfg:?}: token {i}: autograd {} vs finite difference {fd}",
            g[i]
        );
        nonzero += (g[i] != 0.0) as usize;
    }
    assert!(nonzero > 0, "{cfg:?}: all gradients are zero");
}

#[test]
fn gradients_match_finite_differences_for_every_variant() {
    for aggregation in [
        LossAggregation::TokenMean,
        LossAggregation::SeqMeanTokenMean,
        LossAggregation::SeqMeanTokenSum,
        LossAggregation::SeqMeanTokenSumNorm,
    ] {
        for kl_estimator in [KlEstimator::K1, KlEstimator::K2, KlEstimator::K3] {
            let cfg = PolicyLossConfig {
                aggregation,
                kl_estimator,
                kl_coef: 0.1,
                dual_clip: Some(1.5),
                norm_constant: 7.0,
                ..PolicyLossConfig::default()
            };
            // A kink within H of a ratio would make the finite difference meaningless.
            assert!(min_kink_distance(&cfg) > 1e-3);
            check(&cfg);
        }
    }
    let gspo = PolicyLossConfig {
        ratio_level: RatioLevel::Sequence,
        aggregation: LossAggregation::SeqMeanTokenMean,
        clip_eps_low: 0.05,
        clip_eps_high: 0.05,
        ..PolicyLossConfig::default()
    };
    check(&gspo);
}

#[test]
fn some_tokens_are_clipped_and_some_dual_clipped() {
    // Guards the finite-difference test above against inputs that never reach a clip branch.
    let (logp, old, reference, adv, mask) = inputs();
    let logp = Tensor::from_slice(&logp, (B, T), &DEV).unwrap();
    let cfg = PolicyLossConfig {
        dual_clip: Some(1.5),
        ..PolicyLossConfig::default()
    };
    let s = policy_loss(
        &LossInputs {
            logprobs: &logp,
            old_logprobs: &old,
            ref_logprobs: Some(&reference),
            advantages: &adv,
            response_mask: &mask,
            entropy: None,
        },
        &cfg,
        None,
    )
    .unwrap()
    .stats;
    assert!(s.clip_frac_low + s.clip_frac_high > 0.0, "{s:?}");
    assert!(s.dual_clip_frac > 0.0, "{s:?}");
    assert!(
        s.clip_frac_low + s.clip_frac_high + s.dual_clip_frac < 1.0,
        "{s:?}"
    );
    assert_eq!(logp.dtype(), DType::F64);
}
