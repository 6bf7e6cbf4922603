//! Global gradient-norm clipping, as `torch.nn.utils.clip_grad_norm_`.

use crate::error::Result;
use candle_core::{DType, Tensor};

/// The global L2 norm sqrt(Σ_p Σ g²) over all gradients. Per-tensor sums of squares are
/// taken in f32 on the device and added in f64 on the host after one transfer. NaN or ∞ in
/// any gradient gives a non-finite norm.
pub fn global_grad_norm(grads: &[&Tensor]) -> Result<f64> {
    if grads.is_empty() {
        return Ok(0.0);
    }
    let sums = grads
        .iter()
        .map(|g| g.to_dtype(DType::F32)?.sqr()?.sum_all())
        .collect::<candle_core::Result<Vec<_>>>()?;
    let sums = Tensor::stack(&sums, 0)?
        .to_dtype(DType::F64)?
        .to_vec1::<f64>()?;
    Ok(sums.iter().sum::<f64>().sqrt())
}

/// The factor gradients are multiplied by: min(1, max_norm / (norm + 1e-6)) (torch).
pub fn clip_scale(norm: f64, max_norm: f64) -> f64 {
    (max_norm / (norm + 1e-6)).min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn norm_and_scale_match_hand_values() {
        let a = Tensor::new(&[3.0f32, 0.0], &Device::Cpu).unwrap();
        let b = Tensor::new(&[[4.0f32]], &Device::Cpu).unwrap();
        let n = global_grad_norm(&[&a, &b]).unwrap();
        assert_eq!(n, 5.0); // sqrt(9 + 16)
        assert_eq!(clip_scale(n, 10.0), 1.0);
        assert_eq!(clip_scale(n, 1.0), 1.0 / (5.0 + 1e-6));
        let bad = Tensor::new(&[f32::NAN], &Device::Cpu).unwrap();
        assert!(!global_grad_norm(&[&a, &bad]).unwrap().is_finite());
        assert_eq!(global_grad_norm(&[]).unwrap(), 0.0);
    }
}
