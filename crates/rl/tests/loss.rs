//! Policy loss values and gradients against hand-computed expectations (f64, so the
//! comparisons can be tight), plus input validation and micro-batch accumulation.

use candle_core::{DType, Device, Tensor, Var};
use thinkjudge_rl::{
    policy_loss, BatchTotals, LossAggregation, LossInputs, LossStats, PolicyLossConfig, RatioLevel,
    RlError,
};

const DEV: Device = Device::Cpu;
/// f64 arithmetic on a handful of terms: a few ulps.
const TOL: f64 = 1e-12;

fn t2(v: &[&[f64]]) -> Tensor {
    let rows: Vec<Tensor> = v.iter().map(|r| Tensor::new(*r, &DEV).unwrap()).collect();
    Tensor::stack(&rows, 0).unwrap()
}

fn vec2(t: &Tensor) -> Vec<Vec<f64>> {
    t.to_dtype(DType::F64).unwrap().to_vec2().unwrap()
}

fn assert_rows(got: &[Vec<f64>], want: &[&[f64]]) {
    for (g, w) in got.iter().zip(want) {
        for (a, b) in g.iter().zip(w.iter()) {
            assert!((a - b).abs() < TOL, "{got:?} vs {want:?}");
        }
    }
}

/// No KL: the surrogate alone.
fn pg_only() -> PolicyLossConfig {
    PolicyLossConfig {
        kl_coef: 0.0,
        ..PolicyLossConfig::default()
    }
}

struct Case {
    logp: Var,
    old: Tensor,
    adv: Tensor,
    mask: Tensor,
}

/// Ratios row 0: [1.1, 1.5, 0.5] with Â = 1; row 1: [0.7, 1.3, pad] with Â = −1.
/// The padding holds −∞ / NaN to check that masked positions cannot poison anything.
fn case() -> Case {
    let ln = f64::ln;
    Case {
        logp: Var::from_tensor(&t2(&[
            &[ln(1.1), ln(1.5), ln(0.5)],
            &[ln(0.7), ln(1.3), f64::NEG_INFINITY],
        ]))
        .unwrap(),
        old: t2(&[&[0.0, 0.0, 0.0], &[0.0, 0.0, f64::NAN]]),
        adv: Tensor::new(&[1.0f64, -1.0], &DEV).unwrap(),
        mask: Tensor::new(&[[1u8, 1, 1], [1, 1, 0]], &DEV).unwrap(),
    }
}

fn run(c: &Case, cfg: &PolicyLossConfig) -> (f64, Vec<Vec<f64>>, LossStats) {
    let out = policy_loss(
        &LossInputs {
            logprobs: c.logp.as_tensor(),
            old_logprobs: &c.old,
            ref_logprobs: None,
            advantages: &c.adv,
            response_mask: &c.mask,
            entropy: None,
        },
        cfg,
        None,
    )
    .unwrap();
    let grads = out.loss.backward().unwrap();
    let g = vec2(grads.get(c.logp.as_tensor()).unwrap());
    (out.loss.to_scalar::<f64>().unwrap(), g, out.stats)
}

#[test]
fn clipped_surrogate_token_mean_values_and_gradients() {
    // Per token L = max(−Â ρ, −Â clip(ρ, 0.8, 1.2)); ∂L/∂log π = −Â ρ when unclipped, else 0.
    // Row 0 (Â = 1):  ρ 1.1 → −1.1 (grad −1.1); ρ 1.5 → max(−1.5, −1.2) = −1.2 (clipped high);
    //                 ρ 0.5 → max(−0.5, −0.8) = −0.5 (grad −0.5: no clip below for Â > 0).
    // Row 1 (Â = −1): ρ 0.7 → max(0.7, 0.8) = 0.8 (clipped low); ρ 1.3 → max(1.3, 1.2) = 1.3
    //                 (grad 1.3: no clip above for Â < 0).
    // token-mean over 5 tokens: (−1.1 − 1.2 − 0.5 + 0.8 + 1.3) / 5 = −0.14.
    let (loss, g, s) = run(&case(), &pg_only());
    assert!((loss + 0.14).abs() < TOL, "{loss}");
    assert_rows(
        &g,
        &[&[-1.1 / 5.0, 0.0, -0.5 / 5.0], &[0.0, 1.3 / 5.0, 0.0]],
    );
    assert_eq!(s.tokens, 5.0);
    assert!((s.clip_frac_low - 0.2).abs() < 1e-7);
    assert!((s.clip_frac_high - 0.2).abs() < 1e-7);
    assert_eq!(s.dual_clip_frac, 0.0);
    // ratios: mean 5.1 / 5, max 1.5, min 0.5; approx_kl_old = −mean log ρ.
    assert!((s.ratio_mean - 1.02).abs() < 1e-6);
    assert!((s.ratio_max - 1.5).abs() < 1e-6 && (s.ratio_min - 0.5).abs() < 1e-6);
    let mean_log = [1.1f64, 1.5, 0.5, 0.7, 1.3]
        .iter()
        .map(|x| x.ln())
        .sum::<f64>()
        / 5.0;
    assert!((s.approx_kl_old as f64 + mean_log).abs() < 1e-6);
    assert!((s.policy_loss as f64 + 0.14).abs() < 1e-6 && s.kl.is_none());
}

#[test]
fn clip_higher_and_aggregation_modes() {
    // ε_high = 0.6: ρ 1.5 (Â = 1) is no longer clipped → −1.5 with grad −1.5.
    let cfg = PolicyLossConfig {
        clip_eps_high: 0.6,
        ..pg_only()
    };
    let (loss, g, s) = run(&case(), &cfg);
    assert!((loss - (-1.1 - 1.5 - 0.5 + 0.8 + 1.3) / 5.0).abs() < TOL);
    assert!((g[0][1] + 1.5 / 5.0).abs() < TOL);
    assert_eq!(s.clip_frac_high, 0.0);

    // seq-mean-token-mean: row sums −2.8 (3 tokens) and 2.1 (2 tokens):
    // (−2.8/3 + 2.1/2) / 2; token t of row i gets its gradient / (2 |o_i|).
    let cfg = PolicyLossConfig {
        aggregation: LossAggregation::SeqMeanTokenMean,
        ..pg_only()
    };
    let (loss, g, _) = run(&case(), &cfg);
    assert!((loss - (-2.8 / 3.0 + 2.1 / 2.0) / 2.0).abs() < TOL);
    assert_rows(
        &g,
        &[&[-1.1 / 6.0, 0.0, -0.5 / 6.0], &[0.0, 1.3 / 4.0, 0.0]],
    );

    // seq-mean-token-sum: −0.7 / 2; seq-mean-token-sum-norm with C = 10: −0.7 / 10.
    let cfg = PolicyLossConfig {
        aggregation: LossAggregation::SeqMeanTokenSum,
        ..pg_only()
    };
    assert!((run(&case(), &cfg).0 + 0.35).abs() < TOL);
    let cfg = PolicyLossConfig {
        aggregation: LossAggregation::SeqMeanTokenSumNorm,
        norm_constant: 10.0,
        ..pg_only()
    };
    let (loss, g, _) = run(&case(), &cfg);
    assert!((loss + 0.07).abs() < TOL);
    assert!((g[1][1] - 0.13).abs() < TOL);
}

#[test]
fn dual_clip_caps_negative_advantage_losses() {
    // Â = −1, ρ = [4, 2], c = 3: max(ρ, clip(ρ)) = [4, 2]; the first exceeds −c Â = 3 and is
    // capped at 3 with zero gradient; the second keeps ρ = 2 and gradient 2.
    // Row 1 (Â = +1, ρ = 4): clipped high at −1.2; the dual clip never applies for Â > 0.
    let c = Case {
        logp: Var::from_tensor(&t2(&[&[4f64.ln(), 2f64.ln()], &[4f64.ln(), 0.0]])).unwrap(),
        old: t2(&[&[0.0, 0.0], &[0.0, 0.0]]),
        adv: Tensor::new(&[-1.0f64, 1.0], &DEV).unwrap(),
        mask: t2(&[&[1.0, 1.0], &[1.0, 0.0]]),
    };
    let cfg = PolicyLossConfig {
        dual_clip: Some(3.0),
        ..pg_only()
    };
    let (loss, g, s) = run(&c, &cfg);
    assert!((loss - (3.0 + 2.0 - 1.2) / 3.0).abs() < TOL, "{loss}");
    assert_rows(&g, &[&[0.0, 2.0 / 3.0], &[0.0, 0.0]]);
    assert!((s.dual_clip_frac - 1.0 / 3.0).abs() < 1e-7);
    // The capped token's clipped branch (ρ = 4 > 1.2 with Â < 0) is not the pessimistic one,
    // so it counts as dual-clipped only; row 1's token counts as clipped high.
    assert!((s.clip_frac_high - 1.0 / 3.0).abs() < 1e-7);
}

#[test]
fn gspo_clips_the_sequence_ratio() {
    // Row 0: token ratios [1.5, 0.5] are both outside [0.8, 1.2], but the sequence ratio
    // s = √(1.5 · 0.5) = √0.75 ≈ 0.866 is inside: Â = −1 → per-token loss s, and
    // ∂/∂log π_t of (1/N)(1/|o|) Σ_t s = s / (N |o|) = s / 4 for both tokens.
    // Row 1: s = √(2 · 2) = 2 > 1.2 with Â = 1 → clipped: loss −1.2, zero gradient.
    let c = Case {
        logp: Var::from_tensor(&t2(&[&[1.5f64.ln(), 0.5f64.ln()], &[2f64.ln(), 2f64.ln()]]))
            .unwrap(),
        old: t2(&[&[0.0, 0.0], &[0.0, 0.0]]),
        adv: Tensor::new(&[-1.0f64, 1.0], &DEV).unwrap(),
        mask: t2(&[&[1.0, 1.0], &[1.0, 1.0]]),
    };
    let cfg = PolicyLossConfig {
        ratio_level: RatioLevel::Sequence,
        aggregation: LossAggregation::SeqMeanTokenMean,
        ..pg_only()
    };
    let (loss, g, s) = run(&c, &cfg);
    let sr = 0.75f64.sqrt();
    assert!((loss - (sr - 1.2) / 2.0).abs() < TOL, "{loss}");
    assert_rows(&g, &[&[sr / 4.0, sr / 4.0], &[0.0, 0.0]]);
    assert!((s.clip_frac_high - 0.5).abs() < 1e-7 && s.clip_frac_low == 0.0);
}

#[test]
fn kl_and_entropy_terms_add_with_their_coefficients() {
    // Â = 0: the surrogate is 0 with zero gradient. ref = log π + 0.5 → Δ = 0.5,
    // k3 = e^0.5 − 1.5, ∂k3/∂log π = 1 − e^0.5. Entropy H = [2, 4], coefficient 0.1:
    // loss = β k3 − 0.1 · mean(H) = 0.05 (e^0.5 − 1.5) − 0.3; ∂/∂H_t = −0.1 / 2.
    let logp = Var::from_tensor(&t2(&[&[-1.0, -2.0]])).unwrap();
    let reference = t2(&[&[-0.5, -1.5]]);
    let entropy = Var::from_tensor(&t2(&[&[2.0, 4.0]])).unwrap();
    let old = t2(&[&[-1.0, -2.0]]);
    let adv = Tensor::new(&[0.0f64], &DEV).unwrap();
    let mask = t2(&[&[1.0, 1.0]]);
    let cfg = PolicyLossConfig {
        kl_coef: 0.05,
        entropy_coef: 0.1,
        ..PolicyLossConfig::default()
    };
    let out = policy_loss(
        &LossInputs {
            logprobs: logp.as_tensor(),
            old_logprobs: &old,
            ref_logprobs: Some(&reference),
            advantages: &adv,
            response_mask: &mask,
            entropy: Some(entropy.as_tensor()),
        },
        &cfg,
        None,
    )
    .unwrap();
    let e = 0.5f64.exp();
    let loss = out.loss.to_scalar::<f64>().unwrap();
    assert!((loss - (0.05 * (e - 1.5) - 0.3)).abs() < TOL, "{loss}");
    let grads = out.loss.backward().unwrap();
    let g = vec2(grads.get(logp.as_tensor()).unwrap());
    let gk = 0.05 * (1.0 - e) / 2.0;
    assert_rows(&g, &[&[gk, gk]]);
    assert_rows(
        &vec2(grads.get(entropy.as_tensor()).unwrap()),
        &[&[-0.05, -0.05]],
    );
    assert!((out.stats.kl.unwrap() as f64 - (e - 1.5)).abs() < 1e-6);
    assert!((out.stats.entropy.unwrap() - 3.0).abs() < 1e-6);
}

#[test]
fn missing_inputs_and_bad_shapes_are_errors() {
    let c = case();
    let base = LossInputs {
        logprobs: c.logp.as_tensor(),
        old_logprobs: &c.old,
        ref_logprobs: None,
        advantages: &c.adv,
        response_mask: &c.mask,
        entropy: None,
    };
    let needs_ref = PolicyLossConfig::default();
    assert!(matches!(
        policy_loss(&base, &needs_ref, None),
        Err(RlError::MissingInput(_))
    ));
    let short = Tensor::new(&[1.0f64], &DEV).unwrap();
    let e = policy_loss(
        &LossInputs {
            advantages: &short,
            ..base
        },
        &pg_only(),
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("advantages must be (2,)") && e.contains("[1]"),
        "{e}"
    );
    let wide = Tensor::zeros((2, 4), DType::F64, &DEV).unwrap();
    let e = policy_loss(
        &LossInputs {
            old_logprobs: &wide,
            ..base
        },
        &pg_only(),
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("old_logprobs is [2, 4]"), "{e}");
}

#[test]
fn micro_batches_with_global_totals_match_the_full_batch() {
    // Four rows of different lengths; rows 0–1 and 2–3 as two micro-batches.
    let logp = Var::from_tensor(&t2(&[
        &[-0.1, -0.9, -0.3, -1.2],
        &[-0.4, -0.2, -2.0, -0.6],
        &[-0.8, -0.5, -0.7, -0.3],
        &[-1.1, -0.05, -0.9, -0.4],
    ]))
    .unwrap();
    let old = t2(&[
        &[-0.3, -0.8, -0.2, -1.0],
        &[-0.2, -0.5, -1.5, -0.6],
        &[-0.9, -0.6, -0.4, -0.1],
        &[-0.7, -0.3, -1.0, -0.5],
    ]);
    let reference = old.affine(1.0, -0.1).unwrap();
    let adv = Tensor::new(&[1.2f64, -0.4, 0.7, -1.5], &DEV).unwrap();
    let mask = t2(&[
        &[1.0, 1.0, 1.0, 0.0],
        &[1.0, 1.0, 1.0, 1.0],
        &[1.0, 0.0, 0.0, 0.0],
        &[1.0, 1.0, 0.0, 0.0],
    ]);
    let inputs = |r: std::ops::Range<usize>, lp: &Tensor| {
        let n = |t: &Tensor| t.narrow(0, r.start, r.len()).unwrap();
        (n(lp), n(&old), n(&reference), n(&adv), n(&mask))
    };
    for aggregation in [
        LossAggregation::TokenMean,
        LossAggregation::SeqMeanTokenMean,
        LossAggregation::SeqMeanTokenSum,
        LossAggregation::SeqMeanTokenSumNorm,
    ] {
        let cfg = PolicyLossConfig {
            aggregation,
            dual_clip: Some(3.0),
            ..PolicyLossConfig::default()
        };
        let totals = BatchTotals::of_mask(&mask).unwrap();
        let run = |r: std::ops::Range<usize>, tot: Option<BatchTotals>| {
            let (lp, o, rf, a, m) = inputs(r, logp.as_tensor());
            let li = LossInputs {
                logprobs: &lp,
                old_logprobs: &o,
                ref_logprobs: Some(&rf),
                advantages: &a,
                response_mask: &m,
                entropy: None,
            };
            policy_loss(&li, &cfg, tot).unwrap()
        };
        let full = run(0..4, None);
        let parts = [run(0..2, Some(totals)), run(2..4, Some(totals))];
        let g_full = vec2(full.loss.backward().unwrap().get(logp.as_tensor()).unwrap());
        let mut g_sum = vec![vec![0.0; 4]; 4];
        for p in &parts {
            let g = vec2(p.loss.backward().unwrap().get(logp.as_tensor()).unwrap());
            for (acc, row) in g_sum.iter_mut().zip(g) {
                acc.iter_mut().zip(row).for_each(|(a, x)| *a += x);
            }
        }
        let want: Vec<&[f64]> = g_full.iter().map(|r| r.as_slice()).collect();
        assert_rows(&g_sum, &want);
        let combined = LossStats::combine(&[parts[0].stats, parts[1].stats]);
        assert!(
            (combined.loss - full.stats.loss).abs() < 1e-6,
            "{aggregation:?}"
        );
        assert!((combined.kl.unwrap() - full.stats.kl.unwrap()).abs() < 1e-6);
        assert!((combined.ratio_mean - full.stats.ratio_mean).abs() < 1e-6);
        assert_eq!(combined.ratio_max, full.stats.ratio_max);
        assert_eq!(combined.tokens, full.stats.tokens);
    }
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn clip_fractions_are_fractions(
            log_ratio in prop::collection::vec(-3.0f64..3.0, 12),
            adv in prop::collection::vec(-2.0f64..2.0, 3),
            mask in prop::collection::vec(any::<bool>(), 12),
            eps_low in 0.01f64..0.9,
            eps_high in 0.01f64..2.0,
            dual in prop::option::of(1.01f64..5.0),
        ) {
            let logp = Tensor::from_slice(&log_ratio, (3, 4), &DEV).unwrap();
            let old = logp.zeros_like().unwrap();
            let adv = Tensor::new(adv.as_slice(), &DEV).unwrap();
            let m: Vec<u8> = mask.iter().map(|&b| b as u8).collect();
            let mask = Tensor::from_vec(m, (3, 4), &DEV).unwrap();
            let cfg = PolicyLossConfig {
                clip_eps_low: eps_low,
                clip_eps_high: eps_high,
                dual_clip: dual,
                aggregation: LossAggregation::SeqMeanTokenSum,
                ..pg_only()
            };
            let s = policy_loss(
                &LossInputs {
                    logprobs: &logp,
                    old_logprobs: &old,
                    ref_logprobs: None,
                    advantages: &adv,
                    response_mask: &mask,
                    entropy: None,
                },
                &cfg,
                None,
            )
            .unwrap()
            .stats;
            let fracs = [s.clip_frac_low, s.clip_frac_high, s.dual_clip_frac];
            prop_assert!(fracs.iter().all(|f| (0.0..=1.0).contains(f)), "{s:?}");
            // A token is held by at most one bound (the dual clip only caps unclipped tokens).
            prop_assert!(fracs.iter().sum::<f32>() <= 1.0 + 1e-6, "{s:?}");
            prop_assert!(s.loss.is_finite());
        }
    }
}
