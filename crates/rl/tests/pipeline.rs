//! One GRPO step end to end on a toy softmax policy: samples → reward → advantages → loss
//! per micro-batch → accumulated gradients → AdamW. Gradient accumulation over two
//! micro-batches must match one big batch.

use candle_core::{DType, Device, Tensor, Var, D};
use thinkjudge_rl::{
    compute_advantages, policy_loss, AdamW, AdvantageConfig, BatchTotals, Gold, Judgment,
    LossInputs, LrSchedule, OptimizerConfig, Order, PolicyLossConfig, Preference, RewardConfig,
    Sample, Side,
};

const DEV: Device = Device::Cpu;
const B: usize = 8;
const T: usize = 3;
const V: usize = 5;
const DIM: usize = 4;

/// Two pairs × two orders × G = 2. Gold is response 0 for both pairs.
fn samples() -> Vec<Sample> {
    let verdicts = [
        Some(Side::A), // pair 0 AB: correct
        Some(Side::B), // wrong
        Some(Side::B), // pair 0 BA: correct
        Some(Side::B), // correct (uniform group)
        Some(Side::A), // pair 1 AB: correct
        None,          // unparseable
        Some(Side::A), // pair 1 BA: wrong
        Some(Side::B), // correct
    ];
    verdicts
        .iter()
        .enumerate()
        .map(|(i, v)| Sample {
            pair_id: (i / 4) as u64,
            order: Some(if (i / 2) % 2 == 0 {
                Order::AB
            } else {
                Order::BA
            }),
            gold: Gold::Preference(Preference::First),
            judgment: v.map(Judgment::Verdict),
            sample_index: i % 2,
            completion_tokens: T,
            thought_tokens: T - 1,
            truncated: false,
        })
        .collect()
}

/// log π(token) for a linear softmax policy: features (B, T, DIM) · w (DIM, V).
fn logprobs(w: &Tensor, rows: std::ops::Range<usize>) -> Tensor {
    let feats = Tensor::arange(0u32, (B * T * DIM) as u32, &DEV)
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap()
        .affine(0.37, 0.0)
        .unwrap()
        .sin()
        .unwrap()
        .reshape((B, T, DIM))
        .unwrap()
        .narrow(0, rows.start, rows.len())
        .unwrap();
    let ids: Vec<u32> = (0..B * T).map(|i| (i * 3 % V) as u32).collect();
    let ids = Tensor::from_vec(ids, (B, T, 1), &DEV)
        .unwrap()
        .narrow(0, rows.start, rows.len())
        .unwrap();
    let logits = feats.broadcast_matmul(w).unwrap(); // (b, T, V)
    candle_nn::ops::log_softmax(&logits, D::Minus1)
        .unwrap()
        .gather(&ids, 2)
        .unwrap()
        .squeeze(2)
        .unwrap() // (b, T)
}

fn init_w() -> Var {
    let w = Tensor::arange(0u32, (DIM * V) as u32, &DEV)
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap()
        .affine(0.11, -1.0)
        .unwrap()
        .cos()
        .unwrap()
        .reshape((DIM, V))
        .unwrap();
    Var::from_tensor(&w).unwrap()
}

/// One optimizer step over micro-batches ending at rows `ends`; returns the updated weights
/// and the accumulated gradient.
fn train_step(ends: &[usize]) -> (Vec<f32>, Vec<f32>) {
    let samples = samples();
    let rewards = RewardConfig::default()
        .build()
        .unwrap()
        .score(&samples)
        .unwrap();
    assert_eq!(rewards, vec![1.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0, 1.0]);
    let adv = compute_advantages(&samples, &rewards, &AdvantageConfig::default()).unwrap();
    assert_eq!(adv.stats.uniform_groups, 1);

    let w = init_w();
    let params = vec![("policy.weight".to_string(), w.clone())];
    let cfg = OptimizerConfig {
        schedule: LrSchedule::Constant { lr: 1e-2 },
        ..OptimizerConfig::default()
    };
    let mut opt = AdamW::new(params, cfg).unwrap();
    let mut acc = opt.accumulator();
    let old_all = logprobs(&w.as_detached_tensor(), 0..B);
    let ref_all = old_all.affine(1.0, 0.05).unwrap();
    let adv_all = Tensor::new(adv.values.as_slice(), &DEV).unwrap();
    // Row 2's last token is padding.
    let mut mask = vec![1f32; B * T];
    mask[2 * T + 2] = 0.0;
    let mask_all = Tensor::from_vec(mask, (B, T), &DEV).unwrap();
    let totals = BatchTotals::of_mask(&mask_all).unwrap();
    let loss_cfg = PolicyLossConfig::default();
    let starts = std::iter::once(0).chain(ends.iter().copied());
    for r in starts.zip(ends).map(|(a, &b)| a..b) {
        let cut = |t: &Tensor| t.narrow(0, r.start, r.len()).unwrap();
        let logp = logprobs(w.as_tensor(), r.clone());
        let (old, reference, a, m) = (cut(&old_all), cut(&ref_all), cut(&adv_all), cut(&mask_all));
        let out = policy_loss(
            &LossInputs {
                logprobs: &logp,
                old_logprobs: &old,
                ref_logprobs: Some(&reference),
                advantages: &a,
                response_mask: &m,
                entropy: None,
            },
            &loss_cfg,
            Some(totals),
        )
        .unwrap();
        // On-policy: every ratio is 1, nothing is clipped.
        assert_eq!(out.stats.clip_frac_low + out.stats.clip_frac_high, 0.0);
        acc.add(&out.loss.backward().unwrap()).unwrap();
    }
    assert!(acc.missing().is_empty());
    let grad: Vec<f32> = acc.grads()[0]
        .as_ref()
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let report = opt.step(&acc).unwrap();
    assert!(report.applied && report.grad_norm > 0.0);
    (
        w.as_tensor().flatten_all().unwrap().to_vec1().unwrap(),
        grad,
    )
}

#[test]
fn accumulated_micro_batches_match_one_big_batch() {
    let (w_full, g_full) = train_step(&[B]);
    let (w_acc, g_acc) = train_step(&[3, B]);
    let before: Vec<f32> = init_w()
        .as_tensor()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    assert!(
        w_full.iter().zip(&before).all(|(a, b)| a != b),
        "every weight moves"
    );
    // Same sums in a different order: f32 rounding only, relative to the largest entry
    // (small entries are sums with cancellation).
    let scale = g_full.iter().fold(0f32, |m, x| m.max(x.abs()));
    for (a, b) in g_full.iter().zip(&g_acc) {
        assert!((a - b).abs() <= 1e-6 * scale, "{g_full:?} vs {g_acc:?}");
    }
    for (a, b) in w_full.iter().zip(&w_acc) {
        assert!((a - b).abs() <= 1e-5, "{w_full:?} vs {w_acc:?}");
    }
}
