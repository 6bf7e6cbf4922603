//! Gradient accumulation over micro-batches.
//!
//! Each micro-batch's `GradStore` is added into per-parameter f32 buffers. Gradients are
//! detached first: candle returns leaf gradients that still reference the forward graph
//! (candle.md §1), and keeping them would keep every micro-batch's activations alive.
//!
//! The buffers hold the plain sum. Make the sum the mini-batch gradient by normalising each
//! micro-batch's loss by the whole mini-batch ([`BatchTotals`](crate::BatchTotals)), or call
//! [`GradAccumulator::scale`].

use crate::error::{Result, RlError};
use candle_core::{backprop::GradStore, DType, Tensor, TensorId, Var};

/// Per-parameter gradient sums, aligned with a list of named parameters.
#[derive(Debug, Clone)]
pub struct GradAccumulator {
    names: Vec<String>,
    vars: Vec<Tensor>,
    grads: Vec<Option<Tensor>>,
    micro_batches: usize,
}

impl GradAccumulator {
    /// An empty accumulator for `params` (the same list, in the same order, as the optimizer's).
    pub fn new(params: &[(String, Var)]) -> Self {
        GradAccumulator {
            names: params.iter().map(|(n, _)| n.clone()).collect(),
            vars: params.iter().map(|(_, v)| v.as_tensor().clone()).collect(),
            grads: vec![None; params.len()],
            micro_batches: 0,
        }
    }

    /// Adds one micro-batch's gradients (detached, as f32). Parameters absent from `grads`
    /// are left as they are.
    pub fn add(&mut self, grads: &GradStore) -> Result<()> {
        for (var, acc) in self.vars.iter().zip(&mut self.grads) {
            let Some(g) = grads.get(var) else { continue };
            let g = g.detach().to_dtype(DType::F32)?;
            *acc = Some(match acc.take() {
                Some(prev) => prev.add(&g)?,
                None => g,
            });
        }
        self.micro_batches += 1;
        Ok(())
    }

    /// Multiplies every accumulated gradient by `factor` (e.g. 1 / micro-batches when the
    /// losses were normalised per micro-batch).
    pub fn scale(&mut self, factor: f64) -> Result<()> {
        for g in self.grads.iter_mut().flatten() {
            *g = g.affine(factor, 0.0)?;
        }
        Ok(())
    }

    /// How many micro-batches were added since the last [`clear`](Self::clear).
    pub fn micro_batches(&self) -> usize {
        self.micro_batches
    }

    /// The accumulated gradient of each parameter (f32), `None` if it never received one.
    pub fn grads(&self) -> &[Option<Tensor>] {
        &self.grads
    }

    /// Names of the parameters that received no gradient: a detached graph (candle's fused
    /// kernels have no backward) or a parameter that is not used.
    pub fn missing(&self) -> Vec<&str> {
        self.names
            .iter()
            .zip(&self.grads)
            .filter(|(_, g)| g.is_none())
            .map(|(n, _)| n.as_str())
            .collect()
    }

    /// Drops all gradients, keeping the parameter list.
    pub fn clear(&mut self) {
        self.grads.iter_mut().for_each(|g| *g = None);
        self.micro_batches = 0;
    }

    /// Checks that this accumulator was made for exactly these parameter tensors.
    pub(crate) fn check_params(&self, ids: &[TensorId]) -> Result<()> {
        let mine: Vec<TensorId> = self.vars.iter().map(Tensor::id).collect();
        if mine != ids {
            return Err(RlError::Shape(format!(
                "gradient accumulator has {} parameters that are not the optimizer's {}; build it with AdamW::accumulator",
                mine.len(),
                ids.len()
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn sums_detached_grads_and_reports_missing() {
        let w = Var::new(&[1.0f32, 2.0], &Device::Cpu).unwrap();
        let unused = Var::new(&[0.0f32], &Device::Cpu).unwrap();
        let params = vec![("w".to_string(), w.clone()), ("u".to_string(), unused)];
        let mut acc = GradAccumulator::new(&params);
        for k in [1.0, 3.0] {
            // d/dw Σ k·w² = 2k·w
            let loss = w
                .as_tensor()
                .sqr()
                .unwrap()
                .affine(k, 0.0)
                .unwrap()
                .sum_all()
                .unwrap();
            acc.add(&loss.backward().unwrap()).unwrap();
        }
        let g = acc.grads()[0].as_ref().unwrap();
        assert!(!g.track_op(), "accumulated grads must be detached");
        // (2·1 + 2·3) · [1, 2] = [8, 16]
        assert_eq!(g.to_vec1::<f32>().unwrap(), vec![8.0, 16.0]);
        assert_eq!(acc.missing(), vec!["u"]);
        assert_eq!(acc.micro_batches(), 2);
        acc.scale(0.5).unwrap();
        assert_eq!(
            acc.grads()[0].as_ref().unwrap().to_vec1::<f32>().unwrap(),
            vec![4.0, 8.0]
        );
        acc.clear();
        assert_eq!(acc.missing(), vec!["w", "u"]);
    }
}
