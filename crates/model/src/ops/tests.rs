//! Each fused op against its composed version (values and gradients), plus finite
//! differences and the helpers.

use super::*;
use candle_core::{Device, Var};

const F32_TOL: f64 = 1e-5;

fn rand_var(shape: &[usize], seed: u64, dtype: DType) -> Var {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let n: usize = shape.iter().product();
    let v: Vec<f64> = (0..n).map(|_| rng.random_range(-2.0..2.0)).collect();
    let t = Tensor::from_vec(v, shape, &Device::Cpu)
        .and_then(|t| t.to_dtype(dtype))
        .unwrap();
    Var::from_tensor(&t).unwrap()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
}

/// Runs `f` with both kernels on the same inputs and compares outputs and the gradients of
/// a weighted sum (weights break symmetries a plain sum would hide).
fn check_kernels(vars: &[Var], f: impl Fn(&[Tensor], Kernels) -> Result<Tensor>) {
    let weights = |y: &Tensor| rand_var(y.dims(), 99, y.dtype()).as_tensor().detach();
    let ts: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let yc = f(&ts, Kernels::Composed).unwrap();
    let yf = f(&ts, Kernels::Fused).unwrap();
    assert!(yf.track_op(), "fused result must carry the graph");
    let d = max_abs_diff(&yc, &yf);
    assert!(d < F32_TOL, "forward differs by {d}");
    let w = weights(&yc);
    let gc = (&yc * &w).unwrap().sum_all().unwrap().backward().unwrap();
    let gf = (&yf * &w).unwrap().sum_all().unwrap().backward().unwrap();
    for (i, v) in vars.iter().enumerate() {
        let (a, b) = (gc.get(v).unwrap(), gf.get(v).unwrap());
        let d = max_abs_diff(a, b);
        assert!(d < F32_TOL, "grad of input {i} differs by {d}");
        let norm = max_abs_diff(a, &a.zeros_like().unwrap());
        assert!(norm > 1e-3, "grad of input {i} is ~0 ({norm})");
    }
}

#[test]
fn rms_norm_fused_matches_composed() {
    let x = rand_var(&[6, 16], 1, DType::F32);
    let w = rand_var(&[16], 2, DType::F32);
    check_kernels(&[x, w], |t, k| rms_norm(&t[0], &t[1], 1e-5, DType::F32, k));
}

#[test]
fn rope_fused_matches_composed() {
    let x = rand_var(&[2, 3, 5, 8], 3, DType::F32);
    let ang = rand_var(&[2, 5, 4], 4, DType::F32).as_tensor().detach();
    let (cos, sin) = (ang.cos().unwrap(), ang.sin().unwrap());
    check_kernels(&[x], |t, k| rope(&t[0], &cos, &sin, k));
}

#[test]
fn silu_mul_fused_matches_composed() {
    // Above the size where the kernels split work over threads.
    let g = rand_var(&[5, 8000], 10, DType::F32);
    let u = rand_var(&[5, 8000], 11, DType::F32);
    check_kernels(&[g, u], |t, k| silu_mul(&t[0], &t[1], k));
}

#[test]
fn masked_softmax_fused_matches_composed() {
    let x = rand_var(&[2, 3, 4, 6], 12, DType::F32);
    // A causal-style bias with fully masked rows, like left padding produces.
    let bias: Vec<f32> = (0..2 * 4 * 6)
        .map(|i| {
            if (i % 6) > (i / 6) % 4 + 1 || i < 6 {
                -1e9
            } else {
                0.0
            }
        })
        .collect();
    let bias = Tensor::from_vec(bias, (2, 4, 6), &Device::Cpu).unwrap();
    check_kernels(&[x], |t, k| masked_softmax(&t[0], &bias, k));
}

#[test]
fn lora_linear_matches_composed() {
    let x = rand_var(&[5, 8], 13, DType::F32);
    let w = rand_var(&[6, 8], 14, DType::F32).as_tensor().detach();
    let a = rand_var(&[2, 8], 15, DType::F32);
    let b = rand_var(&[6, 2], 16, DType::F32);
    check_kernels(&[x, a, b], |t, k| match k {
        Kernels::Fused => lora_linear(&t[0], &w, &t[1], &t[2], 0.5),
        Kernels::Composed => {
            let low = t[0].matmul(&t[1].t()?)?.affine(0.5, 0.0)?;
            t[0].matmul(&w.t()?)? + low.matmul(&t[2].t()?)?
        }
    });
}

#[test]
fn softmax_fused_matches_composed() {
    let x = rand_var(&[3, 4, 7], 5, DType::F32);
    check_kernels(&[x], |t, k| softmax_last_dim(&t[0], k));
}

#[test]
fn frozen_linear_gives_only_input_gradient() {
    let x = rand_var(&[5, 8], 6, DType::F32);
    let w = rand_var(&[4, 8], 7, DType::F32).as_tensor().detach();
    let y = frozen_linear(&x, &w).unwrap();
    let wt = w.t().unwrap();
    let y_ref = x.matmul(&wt).unwrap();
    assert!(max_abs_diff(&y, &y_ref) < F32_TOL);
    let g = y.sqr().unwrap().sum_all().unwrap().backward().unwrap();
    let g_ref = y_ref.sqr().unwrap().sum_all().unwrap().backward().unwrap();
    assert!(max_abs_diff(g.get(&x).unwrap(), g_ref.get(&x).unwrap()) < F32_TOL);
    // candle's own matmul backward also computes a gradient for the frozen weight.
    assert!(g_ref.get(&wt).is_some());
    assert!(g.get(&w).is_none() && g.get(&wt).is_none());
}

#[test]
fn fused_rms_norm_gradient_matches_finite_differences_f64() {
    let x = rand_var(&[3, 6], 8, DType::F64);
    let w = rand_var(&[6], 9, DType::F64);
    let loss = |x: &Tensor, w: &Tensor| -> f64 {
        let y = rms_norm(x, w, 1e-5, DType::F64, Kernels::Fused).unwrap();
        let c = Tensor::arange(0f64, 18.0, &Device::Cpu)
            .unwrap()
            .reshape((3, 6))
            .unwrap()
            .sin()
            .unwrap();
        (y * c)
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap()
    };
    let c = Tensor::arange(0f64, 18.0, &Device::Cpu)
        .unwrap()
        .reshape((3, 6))
        .unwrap()
        .sin()
        .unwrap();
    let y = rms_norm(&x, &w, 1e-5, DType::F64, Kernels::Fused).unwrap();
    let grads = (y * c).unwrap().sum_all().unwrap().backward().unwrap();
    let gx: Vec<f64> = grads
        .get(&x)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let x0: Vec<f64> = x.flatten_all().unwrap().to_vec1().unwrap();
    let eps = 1e-6;
    for i in [0usize, 7, 17] {
        let mut xp = x0.clone();
        xp[i] += eps;
        let mut xm = x0.clone();
        xm[i] -= eps;
        let tp = Tensor::from_vec(xp, (3, 6), &Device::Cpu).unwrap();
        let tm = Tensor::from_vec(xm, (3, 6), &Device::Cpu).unwrap();
        let fd = (loss(&tp, &w) - loss(&tm, &w)) / (2.0 * eps);
        assert!(
            (fd - gx[i]).abs() < 1e-6 * (1.0 + fd.abs()),
            "{fd} vs {}",
            gx[i]
        );
    }
}

#[test]
fn flushed_threads_compute_subnormals_as_zero() {
    flush_denormals();
    let tiny = Tensor::new(&[1e-30f32], &Device::Cpu).unwrap();
    // 1e-30 · 1e-10 = 1e-40 is subnormal in f32: flushed to exactly 0.
    let prod = (tiny * 1e-10).unwrap().to_vec1::<f32>().unwrap()[0];
    if cfg!(target_arch = "x86_64") {
        assert_eq!(prod, 0.0);
    }
}

#[test]
fn dropout_is_seeded_and_scaled() {
    let x = Tensor::ones((50, 40), DType::F32, &Device::Cpu).unwrap();
    let a = dropout(&x, 0.25, 7).unwrap();
    let b = dropout(&x, 0.25, 7).unwrap();
    let c = dropout(&x, 0.25, 8).unwrap();
    assert_eq!(max_abs_diff(&a, &b), 0.0);
    assert!(max_abs_diff(&a, &c) > 0.0);
    let v: Vec<f32> = a.flatten_all().unwrap().to_vec1().unwrap();
    let zeros = v.iter().filter(|&&e| e == 0.0).count() as f64 / v.len() as f64;
    assert!((zeros - 0.25).abs() < 0.05, "dropped fraction {zeros}");
    assert!(v.iter().all(|&e| e == 0.0 || (e - 4.0 / 3.0).abs() < 1e-6));
    assert!(dropout(&x, 1.0, 0).is_err());
}

#[test]
fn split_matmul_matches_matmul() {
    // Row and column products long enough to split (and one too short), lengths that do not
    // divide evenly among threads, and a row-major right-hand side like the cached `Wᵀ`.
    for (m, k, n) in [
        (1, 64, 5003),
        (4099, 64, 1),
        (1, 8, 7),
        (3, 16, 4097),
        (1, 576, 577),
    ] {
        let a = rand_var(&[m, k], 1, DType::F32).as_tensor().clone();
        let b = rand_var(&[k, n], 2, DType::F32).as_tensor().clone();
        let got = split_matmul(&a, &b).unwrap();
        assert_eq!(got.dims(), [m, n]);
        let want = a.matmul(&b).unwrap();
        assert!(
            max_abs_diff(&got, &want) <= F32_TOL * k as f64,
            "({m},{k},{n})"
        );
    }
}
