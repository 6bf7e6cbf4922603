//! Shared by `examples/cuda_parity.rs` and `examples/gpu_bench.rs` (included with `#[path]`):
//! a synthetic tokenizer for random models, the benchmark model configs, device memory probes,
//! and CLI device parsing. Nothing here needs real weights: the GPU machine has no network and
//! carries at most 64 MiB (docs/gpu.md).
#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result};
use candle_core::Device;
use serde_json::json;
use thinkjudge::config::DeviceSpec;
use thinkjudge_model::{JudgeTokenizer, ModelConfig, SpecialIds};

/// Opens `--device` (`cpu`, `cuda`, `cuda:N`) with [`DeviceSpec::resolve`]'s clear errors.
pub fn open_device(spec: &str) -> Result<Device> {
    let spec: DeviceSpec = spec.parse()?;
    Ok(spec.resolve()?)
}

/// A tokenizer over exactly `vocab` ids: printable ASCII and `\n` (ids 0..96, so any ASCII text,
/// the thinking tags included, encodes), fillers `<fN>` up to `vocab − 1`, and `<eos>` (special)
/// last. Enough for the sampler's rules on a random model.
pub fn tokenizer(vocab: usize) -> Result<JudgeTokenizer> {
    anyhow::ensure!(
        vocab > 100,
        "synthetic tokenizer needs vocab > 100, got {vocab}"
    );
    let mut map = serde_json::Map::new();
    for c in (32u8..127).map(char::from).chain(['\n']) {
        let id = map.len();
        map.insert(c.to_string(), json!(id));
    }
    while map.len() < vocab - 1 {
        let id = map.len();
        map.insert(format!("<f{id}>"), json!(id));
    }
    let eos = vocab - 1;
    let spec = json!({
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": [{"id": eos, "content": "<eos>", "single_word": false, "lstrip": false,
                          "rstrip": false, "normalized": false, "special": true}],
        "normalizer": null, "pre_tokenizer": null, "post_processor": null,
        "decoder": {"type": "Fuse"},
        "model": {"type": "BPE", "dropout": null, "unk_token": null,
                  "continuing_subword_prefix": null, "end_of_word_suffix": null,
                  "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                  "vocab": map, "merges": []}
    });
    let inner: tokenizers::Tokenizer = spec
        .to_string()
        .parse()
        .map_err(|e| anyhow::anyhow!("synthetic tokenizer: {e}"))?;
    let special = SpecialIds {
        bos: None,
        eos: vec![eos as u32],
        pad: None,
    };
    Ok(JudgeTokenizer::from_parts(
        inner,
        special,
        None,
        "<synthetic tokenizer>",
    ))
}

/// SmolLM2-135M-Instruct's architecture (the default model; 134.5M parameters, tied head).
pub fn smollm2_135m() -> ModelConfig {
    ModelConfig {
        hidden_size: 576,
        intermediate_size: 1536,
        num_layers: 30,
        num_heads: 9,
        num_kv_heads: 3,
        head_dim: 64,
        vocab_size: 49_152,
        rms_norm_eps: 1e-5,
        rope_theta: 100_000.0,
        max_position_embeddings: 8192,
        tie_word_embeddings: true,
        eos_token_ids: vec![49_151],
        ..ModelConfig::tiny(49_152)
    }
}

/// A synthetic ~1.2B Llama (Llama-3.2-1B's shape: 16 layers, hidden 2048, GQA 32/8, tied
/// 128k-vocabulary head).
pub fn synthetic_1b() -> ModelConfig {
    ModelConfig {
        hidden_size: 2048,
        intermediate_size: 8192,
        num_layers: 16,
        num_heads: 32,
        num_kv_heads: 8,
        head_dim: 64,
        vocab_size: 128_256,
        rms_norm_eps: 1e-5,
        rope_theta: 500_000.0,
        max_position_embeddings: 8192,
        tie_word_embeddings: true,
        eos_token_ids: vec![128_255],
        ..ModelConfig::tiny(128_256)
    }
}

/// Parameters that take part in matmuls: every projection plus the LM head (the embedding
/// lookup is a gather, not FLOPs; a tied head still multiplies once).
pub fn matmul_params(cfg: &ModelConfig) -> usize {
    let h = cfg.hidden_size;
    let q = cfg.num_heads * cfg.head_dim;
    let kv = cfg.num_kv_heads * cfg.head_dim;
    let per_layer = 2 * h * q + 2 * h * kv + 3 * h * cfg.intermediate_size;
    cfg.num_layers * per_layer + cfg.vocab_size * h
}

/// Model FLOPs of one token at context length `seq` (PaLM appendix B, without
/// recomputation): forward `2·N + 4·L·q·seq` (the projections, then QKᵀ and PV over the full
/// square that the attention computes), and training adds a backward of twice that when every
/// weight trains; with frozen weights (LoRA) the backward computes only input gradients, so
/// about one forward's worth.
pub fn flops_per_token(cfg: &ModelConfig, seq: usize, full_backward: bool) -> f64 {
    let q = (cfg.num_heads * cfg.head_dim) as f64;
    let fwd = 2.0 * matmul_params(cfg) as f64 + 4.0 * cfg.num_layers as f64 * q * seq as f64;
    if full_backward {
        3.0 * fwd
    } else {
        2.0 * fwd
    }
}

/// Bytes in use on the device (`total − free` from the driver), `None` off CUDA.
#[cfg(feature = "cuda")]
pub fn device_used_bytes(device: &Device) -> Option<u64> {
    let cuda = device.as_cuda_device().ok()?;
    let (free, total) = cuda.cuda_stream().context().mem_get_info().ok()?;
    Some((total - free) as u64)
}

/// Bytes in use on the device, `None` off CUDA.
#[cfg(not(feature = "cuda"))]
pub fn device_used_bytes(_device: &Device) -> Option<u64> {
    None
}

/// Samples [`device_used_bytes`] every 5 ms on a thread until dropped: the peak of a workload
/// (device-wide, so other processes on the GPU count too; the gpu-check script also samples
/// nvidia-smi).
pub struct PeakMemory {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl PeakMemory {
    pub fn start(device: &Device) -> Self {
        let peak = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = (!device.is_cpu()).then(|| {
            let (device, peak, stop) = (device.clone(), peak.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Some(b) = device_used_bytes(&device) {
                        peak.fetch_max(b, Ordering::Relaxed);
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
        });
        Self { peak, stop, thread }
    }

    /// The peak so far in MiB (`None` off CUDA).
    pub fn peak_mib(&self) -> Option<f64> {
        let b = self.peak.load(Ordering::Relaxed);
        (b > 0).then(|| b as f64 / (1u64 << 20) as f64)
    }
}

impl Drop for PeakMemory {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Waits for the device's queued work (CUDA kernels run asynchronously; timings need this).
pub fn sync(device: &Device) -> Result<()> {
    device.synchronize().context("device synchronize")
}
