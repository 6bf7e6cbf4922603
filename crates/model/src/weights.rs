//! [`WeightMap`]: a model's tensors by HF name, remembering where they came from so that a
//! missing or mis-shaped tensor is reported with its file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::Tensor;

use crate::error::{ModelError, Result};

/// Tensors keyed by HF name (`model.layers.0.self_attn.q_proj.weight`, …).
#[derive(Debug, Clone)]
pub struct WeightMap {
    tensors: BTreeMap<String, Tensor>,
    origin: PathBuf,
}

impl WeightMap {
    /// An empty map whose errors will name `origin` (a file or directory).
    pub fn new(origin: impl Into<PathBuf>) -> Self {
        Self {
            tensors: BTreeMap::new(),
            origin: origin.into(),
        }
    }

    pub fn origin(&self) -> &Path {
        &self.origin
    }

    pub fn insert(&mut self, name: impl Into<String>, tensor: Tensor) {
        self.tensors.insert(name.into(), tensor);
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// The tensor, or an error naming the file and the missing tensor.
    pub fn get(&self, name: &str) -> Result<&Tensor> {
        self.tensors
            .get(name)
            .ok_or_else(|| ModelError::tensor(&self.origin, name, "missing"))
    }

    /// The tensor, checked against the expected shape.
    pub fn get_shaped(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let t = self.get(name)?;
        if t.dims() != shape {
            return Err(ModelError::tensor(
                &self.origin,
                name,
                format!("expected shape {shape:?}, found {:?}", t.dims()),
            ));
        }
        Ok(t.clone())
    }

    pub fn remove(&mut self, name: &str) -> Option<Tensor> {
        self.tensors.remove(name)
    }

    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Tensor)> {
        self.tensors.iter().map(|(k, v)| (k.as_str(), v))
    }

    pub fn into_inner(self) -> BTreeMap<String, Tensor> {
        self.tensors
    }
}
