//! Fuzz tests of the model crate's readers: GGUF files, safetensors files and shard indexes,
//! HF `config.json` (alone and inside whole model directories, with their tokenizer files),
//! `ModelSource` text, and the crate's TOML sections (`LoraConfig`, `ModelSource`).
//!
//! Inputs are valid files, written by writers here that can lie (so a mutation can target a
//! length, count, offset, type tag, dimension or dtype precisely), then mutated: header
//! fields set to 0, 2^32, 2^60 or `u64::MAX`, metadata retyped, tensors renamed, dropped or
//! re-shaped, files truncated at random points or salted with random bytes; plus plain
//! random bytes. Every reader is called through its public entry point on a file in a
//! temporary directory. Properties:
//!
//! - no panic, no hang, and no absurd allocation: the harness refuses any single allocation
//!   above 512 MiB, so a lying length that is believed aborts the test with the case named;
//! - every error names the file (or, for a model directory, a file in it);
//! - an unmutated file loads, and loads the values written.
//!
//! CI runs a quick subset; the long run (≥ 100k inputs per target):
//!
//! ```sh
//! FUZZ_CASES=100000 cargo test --release -p thinkjudge-model --test fuzz_headers -- --nocapture
//! ```
//!
//! The harness is shared with the data crate (`crates/data/tests/fuzz_support/mod.rs`),
//! which documents its knobs (`FUZZ_SEED`, `FUZZ_ONLY`, `FUZZ_HANG_SECS`, …).

#[path = "../../data/tests/fuzz_support/mod.rs"]
mod fuzz_support;
mod io_fixtures;

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use fuzz_support::toml_fuzz::{self, Spec};
use fuzz_support::{preview, run, show, Rng};
use io_fixtures::{gguf_name, llama_cpp_permute, tiny_config, tiny_tensors, tiny_tokens, MERGES};
use serde_json::{json, Value};
use thinkjudge_model::config::LlamaConfig;
use thinkjudge_model::loading::safetensors::read_file;
use thinkjudge_model::{
    load, save_hf_model, LoraConfig, LoraTarget, ModelConfig, ModelSource, SaveDtype, WeightMap,
};

/// One layer, hidden 16, GQA (2 heads, 1 kv head), the 264-token fixture vocabulary, tied.
fn small_config() -> ModelConfig {
    ModelConfig {
        hidden_size: 16,
        intermediate_size: 32,
        num_layers: 1,
        num_heads: 2,
        num_kv_heads: 1,
        head_dim: 8,
        ..tiny_config(true)
    }
}

fn small_tensors() -> Vec<(String, Tensor)> {
    tiny_tensors(&small_config()).expect("fixture tensors")
}

fn err_names(e: &thinkjudge_model::ModelError, paths: &[&Path]) -> Result<(), String> {
    let msg = e.to_string();
    if paths.iter().any(|p| msg.contains(&p.display().to_string())) {
        Ok(())
    } else {
        Err(format!("error names none of {paths:?}: {msg}"))
    }
}

fn u64_interesting(rng: &mut Rng, current: u64) -> u64 {
    match rng.below(12) {
        0 => 0,
        1 => 1,
        2 => current.wrapping_sub(1),
        3 => current.wrapping_add(1),
        4 => 1 << 32,
        5 => (1 << 32) - 1,
        6 => 1 << 60,
        7 => 1 << 63,
        8 => u64::MAX,
        9 => current.wrapping_mul(2),
        10 => rng.below(64) as u64,
        _ => rng.next_u64(),
    }
}

// ---------------------------------------------------------------------------------------
// A GGUF writer that can lie

/// A metadata value as written: any type tag with any payload.
#[derive(Debug, Clone)]
enum G {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    /// Written as one byte: anything but 0 and 1 is invalid.
    Bool(u8),
    Str(Vec<u8>),
    /// Declared element type, then elements written with their own encodings.
    Arr(u32, Vec<G>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl G {
    fn type_id(&self) -> u32 {
        match self {
            G::U8(_) => 0,
            G::I8(_) => 1,
            G::U16(_) => 2,
            G::I16(_) => 3,
            G::U32(_) => 4,
            G::I32(_) => 5,
            G::F32(_) => 6,
            G::Bool(_) => 7,
            G::Str(_) => 8,
            G::Arr(..) => 9,
            G::U64(_) => 10,
            G::I64(_) => 11,
            G::F64(_) => 12,
        }
    }

    fn str(s: &str) -> G {
        G::Str(s.as_bytes().to_vec())
    }
}

/// Kinds of header fields a byte-level mutation can target.
#[derive(Debug, Clone, Copy, PartialEq)]
enum FieldKind {
    Version,
    Count,
    Len,
    TypeTag,
    NDims,
    Dim,
    DType,
    Offset,
}

#[derive(Debug, Clone, Copy)]
struct Field {
    pos: usize,
    size: usize,
    kind: FieldKind,
}

#[derive(Debug, Clone)]
struct GTensor {
    name: String,
    /// GGUF order (innermost first).
    dims: Vec<u64>,
    dtype: u32,
    data: Vec<u8>,
    /// Written instead of the computed offset.
    offset: Option<u64>,
}

#[derive(Debug, Clone)]
struct Gguf {
    meta: Vec<(Vec<u8>, G)>,
    tensors: Vec<GTensor>,
}

struct Out {
    bytes: Vec<u8>,
    fields: Vec<Field>,
}

impl Out {
    fn put(&mut self, v: &[u8], kind: Option<FieldKind>) {
        if let Some(kind) = kind {
            self.fields.push(Field {
                pos: self.bytes.len(),
                size: v.len(),
                kind,
            });
        }
        self.bytes.extend_from_slice(v);
    }

    fn string(&mut self, s: &[u8]) {
        self.put(&(s.len() as u64).to_le_bytes(), Some(FieldKind::Len));
        self.put(s, None);
    }

    fn value(&mut self, v: &G) {
        match v {
            G::U8(x) => self.put(&[*x], None),
            G::I8(x) => self.put(&x.to_le_bytes(), None),
            G::U16(x) => self.put(&x.to_le_bytes(), None),
            G::I16(x) => self.put(&x.to_le_bytes(), None),
            G::U32(x) => self.put(&x.to_le_bytes(), None),
            G::I32(x) => self.put(&x.to_le_bytes(), None),
            G::F32(x) => self.put(&x.to_le_bytes(), None),
            G::Bool(x) => self.put(&[*x], None),
            G::Str(s) => self.string(s),
            G::Arr(t, items) => {
                self.put(&t.to_le_bytes(), Some(FieldKind::TypeTag));
                self.put(&(items.len() as u64).to_le_bytes(), Some(FieldKind::Len));
                for it in items {
                    self.value(it);
                }
            }
            G::U64(x) => self.put(&x.to_le_bytes(), None),
            G::I64(x) => self.put(&x.to_le_bytes(), None),
            G::F64(x) => self.put(&x.to_le_bytes(), None),
        }
    }
}

impl Gguf {
    /// The alignment candle will use: `general.alignment` when it is a non-negative small
    /// integer (0 included, which is the reader's problem), else 32.
    fn alignment(&self) -> u64 {
        let a = self
            .meta
            .iter()
            .rev()
            .find(|(k, _)| k == b"general.alignment");
        match a.map(|(_, v)| v) {
            Some(G::U8(v)) => *v as u64,
            Some(G::U16(v)) => *v as u64,
            Some(G::U32(v)) => *v as u64,
            Some(G::I8(v)) if *v >= 0 => *v as u64,
            Some(G::I16(v)) if *v >= 0 => *v as u64,
            Some(G::I32(v)) if *v >= 0 => *v as u64,
            _ => 32,
        }
    }

    fn write(&self) -> Out {
        let mut o = Out {
            bytes: Vec::new(),
            fields: Vec::new(),
        };
        o.put(b"GGUF", None);
        o.put(&3u32.to_le_bytes(), Some(FieldKind::Version));
        o.put(
            &(self.tensors.len() as u64).to_le_bytes(),
            Some(FieldKind::Count),
        );
        o.put(
            &(self.meta.len() as u64).to_le_bytes(),
            Some(FieldKind::Count),
        );
        for (k, v) in &self.meta {
            o.string(k);
            o.put(&v.type_id().to_le_bytes(), Some(FieldKind::TypeTag));
            o.value(v);
        }
        // Lay out with the declared alignment when it is sane; a lying one is the reader's
        // problem, not a reason to write gigabytes of padding.
        let align = match self.alignment() {
            a @ 1..=4096 => a,
            _ => 32,
        };
        let mut offsets = Vec::new();
        let mut next = 0u64;
        for t in &self.tensors {
            offsets.push(next);
            next = (next + t.data.len() as u64).div_ceil(align) * align;
        }
        for (t, off) in self.tensors.iter().zip(&offsets) {
            o.string(t.name.as_bytes());
            o.put(&(t.dims.len() as u32).to_le_bytes(), Some(FieldKind::NDims));
            for d in &t.dims {
                o.put(&d.to_le_bytes(), Some(FieldKind::Dim));
            }
            o.put(&t.dtype.to_le_bytes(), Some(FieldKind::DType));
            o.put(
                &t.offset.unwrap_or(*off).to_le_bytes(),
                Some(FieldKind::Offset),
            );
        }
        let start = (o.bytes.len() as u64).div_ceil(align) * align;
        o.bytes.resize(start as usize, 0);
        for (t, off) in self.tensors.iter().zip(&offsets) {
            o.bytes.resize((start + off) as usize, 0);
            o.bytes.extend_from_slice(&t.data);
        }
        o
    }
}

/// The small model as a llama.cpp-style GGUF (F32, permuted q/k, the fixture tokenizer).
fn base_gguf() -> Gguf {
    let config = small_config();
    let (tokens, types) = tiny_tokens();
    let u32v = |v: usize| G::U32(v as u32);
    let meta: Vec<(&str, G)> = vec![
        ("general.architecture", G::str("llama")),
        ("llama.block_count", u32v(config.num_layers)),
        ("llama.embedding_length", u32v(config.hidden_size)),
        ("llama.feed_forward_length", u32v(config.intermediate_size)),
        ("llama.attention.head_count", u32v(config.num_heads)),
        ("llama.attention.head_count_kv", u32v(config.num_kv_heads)),
        ("llama.rope.dimension_count", u32v(config.head_dim)),
        ("llama.attention.layer_norm_rms_epsilon", G::F32(1e-5)),
        ("llama.rope.freq_base", G::F32(10_000.0)),
        ("llama.context_length", u32v(512)),
        ("tokenizer.ggml.model", G::str("gpt2")),
        ("tokenizer.ggml.pre", G::str("smollm")),
        (
            "tokenizer.ggml.tokens",
            G::Arr(8, tokens.iter().map(|t| G::str(t)).collect()),
        ),
        (
            "tokenizer.ggml.token_type",
            G::Arr(5, types.iter().map(|t| G::I32(*t)).collect()),
        ),
        (
            "tokenizer.ggml.merges",
            G::Arr(
                8,
                MERGES
                    .iter()
                    .map(|(a, b)| G::str(&format!("{a} {b}")))
                    .collect(),
            ),
        ),
        ("tokenizer.ggml.bos_token_id", G::U32(1)),
        ("tokenizer.ggml.eos_token_id", G::U32(2)),
        ("tokenizer.ggml.padding_token_id", G::U32(2)),
        ("tokenizer.ggml.add_bos_token", G::Bool(0)),
        (
            "tokenizer.chat_template",
            G::str(io_fixtures::CHAT_TEMPLATE),
        ),
    ];
    let tensors = small_tensors()
        .into_iter()
        .map(|(name, t)| {
            let t = if name.ends_with("q_proj.weight") {
                llama_cpp_permute(&t, config.num_heads).expect("permute")
            } else if name.ends_with("k_proj.weight") {
                llama_cpp_permute(&t, config.num_kv_heads).expect("permute")
            } else {
                t
            };
            let data: Vec<u8> = t
                .flatten_all()
                .and_then(|t| t.to_vec1::<f32>())
                .expect("f32 data")
                .iter()
                .flat_map(|x| x.to_le_bytes())
                .collect();
            GTensor {
                name: gguf_name(&name),
                dims: t.dims().iter().rev().map(|&d| d as u64).collect(),
                dtype: 0,
                data,
                offset: None,
            }
        })
        .collect();
    Gguf {
        meta: meta
            .into_iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v))
            .collect(),
        tensors,
    }
}

fn odd_g(rng: &mut Rng) -> G {
    match rng.below(16) {
        0 => G::U32(0),
        1 => G::U32(u32::MAX),
        2 => G::U64(1 << 40),
        3 => G::U64(u64::MAX),
        4 => G::I32(-1),
        5 => G::I64(i64::MIN),
        6 => G::F32(f32::NAN),
        7 => G::F64(f64::INFINITY),
        8 => G::str("two"),
        9 => G::Bool(rng.below(4) as u8),
        10 => G::Arr(4, vec![]),
        11 => G::Arr(8, vec![G::U32(7), G::U32(9)]),
        12 => G::Arr(9, vec![G::Arr(8, vec![G::str("x")])]),
        13 => G::U8(rng.below(256) as u8),
        14 => G::Str(rng.bytes(rng.clone().len(64))),
        _ => G::I16(-7),
    }
}

/// 1–3 semantic mutations (before writing). Returns a short description.
fn mutate_gguf(rng: &mut Rng, g: &mut Gguf) -> String {
    let mut what = Vec::new();
    for _ in 0..rng.range(1, 3) {
        let m = rng.below(12);
        what.push(m.to_string());
        match m {
            0 if !g.meta.is_empty() => {
                let i = rng.below(g.meta.len());
                g.meta[i].1 = odd_g(rng);
            }
            1 => {
                // An array element retyped, or the array cut or emptied.
                let arrays: Vec<usize> = (0..g.meta.len())
                    .filter(|&i| matches!(g.meta[i].1, G::Arr(..)))
                    .collect();
                if let Some(&i) = arrays.get(rng.below(arrays.len().max(1))) {
                    if let G::Arr(_, items) = &mut g.meta[i].1 {
                        match rng.below(3) {
                            0 if !items.is_empty() => {
                                let j = rng.below(items.len());
                                items[j] = odd_g(rng);
                            }
                            1 => {
                                let n = rng.below(items.len() + 1);
                                items.truncate(n);
                            }
                            _ => items.clear(),
                        }
                    }
                }
            }
            2 if !g.meta.is_empty() => {
                let i = rng.below(g.meta.len());
                g.meta.remove(i);
            }
            3 if !g.meta.is_empty() => {
                let i = rng.below(g.meta.len());
                let k = g.meta[i].0.clone();
                g.meta.push((k, odd_g(rng)));
            }
            4 => {
                let v = match rng.below(8) {
                    0 => G::U32(0),
                    1 => G::U32(1),
                    2 => G::U32(3),
                    3 => G::U32(u32::MAX),
                    4 => G::I8(-1),
                    5 => G::U64(64),
                    6 => G::U16(7),
                    _ => G::U32(64),
                };
                g.meta.push((b"general.alignment".to_vec(), v));
            }
            5 if !g.tensors.is_empty() => {
                let i = rng.below(g.tensors.len());
                let t = &mut g.tensors[i];
                match rng.below(3) {
                    0 if !t.dims.is_empty() => {
                        let d = rng.below(t.dims.len());
                        t.dims[d] = u64_interesting(rng, t.dims[d]);
                    }
                    1 => t.dims.push(u64_interesting(rng, 1)),
                    _ => {
                        t.dims.pop();
                    }
                }
            }
            6 if !g.tensors.is_empty() => {
                let i = rng.below(g.tensors.len());
                g.tensors[i].dtype = if rng.one_in(8) {
                    u32::MAX
                } else {
                    rng.below(41) as u32
                };
            }
            7 if !g.tensors.is_empty() => {
                let i = rng.below(g.tensors.len());
                g.tensors[i].offset = Some(u64_interesting(rng, 64));
            }
            8 if !g.tensors.is_empty() => {
                let i = rng.below(g.tensors.len());
                match rng.below(4) {
                    0 => {
                        g.tensors.remove(i);
                    }
                    1 => {
                        let t = g.tensors[i].clone();
                        g.tensors.push(t);
                    }
                    _ => {
                        let names = [
                            "rope_freqs.weight",
                            "blk.99.attn_q.weight",
                            "output.weight",
                            "blk.0.attn_q.bias",
                            "token_embd.weight",
                            "",
                        ];
                        g.tensors[i].name = rng.pick(&names).to_string();
                    }
                }
            }
            9 if !g.meta.is_empty() => {
                let i = rng.below(g.meta.len());
                let n = rng.len(100_000);
                let mut s = rng.bytes(n);
                if rng.one_in(2) {
                    s.extend_from_slice(b"\0\0");
                }
                g.meta[i].1 = G::Str(s);
            }
            10 => {
                // The lying layout: a config with far more layers (or width) than tensors.
                let key: &[u8] = match rng.below(4) {
                    0 => b"llama.embedding_length",
                    1 => b"llama.attention.head_count",
                    _ => b"llama.block_count",
                };
                let v = if rng.one_in(2) {
                    G::U32(u32::MAX)
                } else {
                    G::U64(1 << (20 + rng.below(40)))
                };
                g.meta.push((key.to_vec(), v));
            }
            _ => {
                let keys: &[&[u8]] = &[
                    b"tokenizer.ggml.bos_token_id",
                    b"tokenizer.ggml.eos_token_id",
                    b"tokenizer.ggml.pre",
                    b"tokenizer.ggml.model",
                    b"llama.rope.scaling.type",
                    b"llama.rope.dimension_count",
                    b"llama.attention.key_length",
                    b"tokenizer.ggml.add_bos_token",
                ];
                let k = rng.pick(keys).to_vec();
                g.meta.push((k, odd_g(rng)));
            }
        }
    }
    what.join(",")
}

/// Byte-level mutations of a written file: a header field set to an interesting value, a
/// truncation, flipped bytes, or another version.
fn mutate_bytes(rng: &mut Rng, out: &mut Out) {
    match rng.below(5) {
        0 | 1 if !out.fields.is_empty() => {
            let f = *rng.pick(&out.fields);
            let cur = match f.size {
                4 => u32::from_le_bytes(out.bytes[f.pos..f.pos + 4].try_into().unwrap_or([0; 4]))
                    as u64,
                _ => u64::from_le_bytes(out.bytes[f.pos..f.pos + 8].try_into().unwrap_or([0; 8])),
            };
            let v = match f.kind {
                FieldKind::Version => rng.range(0, 5) as u64,
                FieldKind::TypeTag | FieldKind::DType => {
                    if rng.one_in(4) {
                        u64::from(u32::MAX)
                    } else {
                        rng.below(41) as u64
                    }
                }
                FieldKind::NDims => rng.range(0, 8) as u64,
                _ => u64_interesting(rng, cur),
            };
            let b = v.to_le_bytes();
            out.bytes[f.pos..f.pos + f.size].copy_from_slice(&b[..f.size]);
        }
        2 => {
            // Truncation, biased towards the header.
            let at = if rng.one_in(2) {
                rng.len(out.bytes.len())
            } else {
                rng.below(out.bytes.len())
            };
            out.bytes.truncate(at);
        }
        3 => {
            for _ in 0..rng.range(1, 8) {
                let at = rng.below(out.bytes.len());
                out.bytes[at] = rng.next_u64() as u8;
            }
        }
        _ => {
            let v = *rng.pick(&[1u32, 2, 4, 0]);
            out.bytes[4..8].copy_from_slice(&v.to_le_bytes());
        }
    }
}

/// Mutated GGUF files through `load` (header, metadata, config, tokenizer, tensors).
#[test]
fn fuzz_gguf() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("model.gguf");
    let base = base_gguf();
    run("gguf", 500, move |rng| {
        let _keep = &dir;
        let out = if rng.one_in(30) {
            let n = rng.len(4096);
            let mut b = rng.bytes(n);
            if rng.one_in(2) && b.len() >= 4 {
                b[..4].copy_from_slice(b"GGUF");
            }
            Out {
                bytes: b,
                fields: Vec::new(),
            }
        } else {
            let mut g = base.clone();
            let clean = rng.one_in(10);
            let what = if clean {
                String::new()
            } else {
                mutate_gguf(rng, &mut g)
            };
            show("mutations", &what);
            let mut out = g.write();
            if !clean && rng.one_in(3) {
                mutate_bytes(rng, &mut out);
            }
            if clean {
                return check_clean_gguf(&path, &out.bytes);
            }
            out
        };
        std::fs::write(&path, &out.bytes).map_err(|e| e.to_string())?;
        match load(&ModelSource::Gguf(path.clone()), &Device::Cpu) {
            Ok(m) => {
                if m.tokenizer.vocab_size() > m.config.vocab_size {
                    return Err("loaded a tokenizer larger than the model's vocab".into());
                }
                Ok(())
            }
            Err(e) => err_names(&e, &[&path]),
        }
        .map_err(|e| format!("{e}\n  file: {}", preview(&out.bytes)))
    });
}

fn check_clean_gguf(path: &Path, bytes: &[u8]) -> Result<(), String> {
    std::fs::write(path, bytes).map_err(|e| e.to_string())?;
    let m = load(&ModelSource::Gguf(path.to_path_buf()), &Device::Cpu)
        .map_err(|e| format!("the unmutated GGUF does not load: {e}"))?;
    same_weights(&m.weights, &small_tensors())
}

fn same_weights(got: &WeightMap, want: &[(String, Tensor)]) -> Result<(), String> {
    for (name, t) in want {
        let g = got.get(name).map_err(|e| e.to_string())?;
        let a: Vec<f32> = g
            .flatten_all()
            .and_then(|t| t.to_vec1())
            .map_err(|e| e.to_string())?;
        let b: Vec<f32> = t
            .flatten_all()
            .and_then(|t| t.to_vec1())
            .map_err(|e| e.to_string())?;
        if a != b {
            return Err(format!("{name}: values differ after loading"));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Safetensors

/// A valid safetensors file of random small tensors (supported dtypes, zero-sized and
/// scalar shapes included), with the header as JSON for mutation.
struct St {
    header: serde_json::Map<String, Value>,
    data: Vec<u8>,
}

const DTYPES: [(&str, DType, usize); 4] = [
    ("F32", DType::F32, 4),
    ("F16", DType::F16, 2),
    ("BF16", DType::BF16, 2),
    ("F64", DType::F64, 8),
];

fn random_st(rng: &mut Rng) -> St {
    let mut header = serde_json::Map::new();
    let mut data = Vec::new();
    for i in 0..rng.range(1, 5) {
        let (name, _, size) = *rng.pick(&DTYPES);
        let shape: Vec<usize> = (0..rng.below(4)).map(|_| rng.below(5)).collect();
        let n: usize = shape.iter().product::<usize>() * size;
        let start = data.len();
        // Finite values only, so a comparison of values is meaningful.
        for _ in 0..n / size {
            let bytes: Vec<u8> = match name {
                "F32" => ((rng.below(2000) as f32 - 1000.0) / 8.0)
                    .to_le_bytes()
                    .to_vec(),
                "F64" => ((rng.below(2000) as f64 - 1000.0) / 8.0)
                    .to_le_bytes()
                    .to_vec(),
                // 0x3c00 = 1.0 in f16, 0x3f80 = 1.0 in bf16: small exact values.
                "F16" => (0x3c00u16 + rng.below(64) as u16).to_le_bytes().to_vec(),
                _ => (0x3f80u16 + rng.below(64) as u16).to_le_bytes().to_vec(),
            };
            data.extend(bytes);
        }
        let tname = if rng.one_in(5) {
            format!("t{i}.\u{e9}\u{4e2d}")
        } else {
            format!("model.layers.{i}.weight")
        };
        header.insert(
            tname,
            json!({"dtype": name, "shape": shape, "data_offsets": [start, data.len()]}),
        );
    }
    if rng.one_in(2) {
        header.insert("__metadata__".into(), json!({"format": "pt"}));
    }
    St { header, data }
}

fn st_bytes(header: &[u8], data: &[u8], declared_len: Option<u64>) -> Vec<u8> {
    let mut out = declared_len
        .unwrap_or(header.len() as u64)
        .to_le_bytes()
        .to_vec();
    out.extend_from_slice(header);
    out.extend_from_slice(data);
    out
}

fn odd_json(rng: &mut Rng) -> Value {
    match rng.below(16) {
        0 => Value::Null,
        1 => json!(-1),
        2 => json!(0),
        3 => json!(1u64 << 60),
        4 => json!(u64::MAX),
        5 => json!(1.5),
        6 => json!(1e300),
        7 => json!("F32"),
        8 => json!(""),
        9 => json!([]),
        10 => json!({}),
        11 => json!([1u64 << 32, 1u64 << 32]),
        12 => json!([1, 2, 3]),
        13 => json!(true),
        14 => json!(rng.text(6)),
        _ => json!([[[[[[1]]]]]]),
    }
}

/// Mutates a safetensors header structurally.
fn mutate_st_header(rng: &mut Rng, h: &mut serde_json::Map<String, Value>) {
    let names: Vec<String> = h.keys().cloned().collect();
    if names.is_empty() {
        h.insert("t".into(), odd_json(rng));
        return;
    }
    let name = rng.pick(&names).clone();
    let is_object = h[&name].is_object();
    match rng.below(8) {
        0..=3 | 6 if !is_object => {
            h.insert(name, odd_json(rng));
        }
        0 => {
            let dt = *rng.pick(&["I64", "U8", "BOOL", "F8_E4M3", "I32", "f32", "", "F32 "]);
            h[&name]["dtype"] = json!(dt);
        }
        1 => {
            let shape = match rng.below(5) {
                0 => json!([1u64 << 60]),
                1 => json!([1u64 << 32, 1u64 << 32, 16]),
                2 => json!([u64::MAX, 2]),
                3 => json!([0]),
                _ => odd_json(rng),
            };
            h[&name]["shape"] = shape;
        }
        2 => {
            let offsets = match rng.below(5) {
                0 => json!([0, 1u64 << 63]),
                1 => json!([u64::MAX, 0]),
                2 => json!([4, 4]),
                3 => json!([0, 4, 8]),
                _ => odd_json(rng),
            };
            h[&name]["data_offsets"] = offsets;
        }
        3 => {
            if let Some(o) = h[&name].as_object_mut() {
                let k = rng.pick(&["dtype", "shape", "data_offsets"]).to_string();
                o.remove(&k);
            }
        }
        4 => {
            h.insert(name, odd_json(rng));
        }
        5 => {
            h.insert("__metadata__".into(), odd_json(rng));
        }
        6 => {
            // Two tensors over the same bytes.
            let other = rng.pick(&names).clone();
            let offs = h[&other]
                .get("data_offsets")
                .cloned()
                .unwrap_or(Value::Null);
            h[&name]["data_offsets"] = offs;
        }
        _ => {
            h.remove(&name);
        }
    }
}

fn check_st_values(weights: &WeightMap, st: &St) -> Result<(), String> {
    for (name, e) in &st.header {
        if name == "__metadata__" {
            continue;
        }
        let dt = e["dtype"].as_str().unwrap_or_default();
        let (_, dtype, _) = DTYPES.iter().find(|d| d.0 == dt).ok_or("dtype")?;
        let shape: Vec<usize> =
            serde_json::from_value(e["shape"].clone()).map_err(|e| e.to_string())?;
        let [a, b]: [usize; 2] =
            serde_json::from_value(e["data_offsets"].clone()).map_err(|e| e.to_string())?;
        let want = Tensor::from_raw_buffer(&st.data[a..b], *dtype, &shape, &Device::Cpu)
            .and_then(|t| t.to_dtype(DType::F32))
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(|e| e.to_string())?;
        let got = weights.get(name).map_err(|e| e.to_string())?;
        if got.dtype() != DType::F32 || got.dims() != shape.as_slice() {
            return Err(format!("{name}: {:?} {:?} loaded", got.dtype(), got.dims()));
        }
        let got: Vec<f32> = got
            .flatten_all()
            .and_then(|t| t.to_vec1())
            .map_err(|e| e.to_string())?;
        if got != want {
            return Err(format!("{name}: values differ"));
        }
    }
    Ok(())
}

/// Random valid safetensors files (must load, with their values) and mutated ones (header
/// JSON, declared header length, data) through `read_file`.
#[test]
fn fuzz_safetensors() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("model.safetensors");
    run("safetensors", 1_000, move |rng| {
        let _keep = &dir;
        let mut st = random_st(rng);
        let random = rng.one_in(30);
        let clean = !random && rng.one_in(5);
        let bytes = if random {
            let n = rng.len(2048);
            rng.bytes(n)
        } else if clean {
            let header = serde_json::to_vec(&Value::Object(st.header.clone())).unwrap_or_default();
            st_bytes(&header, &st.data, None)
        } else {
            for _ in 0..rng.range(0, 2) {
                mutate_st_header(rng, &mut st.header);
            }
            let mut header =
                serde_json::to_vec(&Value::Object(st.header.clone())).unwrap_or_default();
            let mut data = st.data.clone();
            let mut declared = None;
            match rng.below(6) {
                0 => declared = Some(u64_interesting(rng, header.len() as u64)),
                1 => {
                    let at = rng.below(header.len() + 1);
                    header.truncate(at);
                }
                2 => header.extend_from_slice(b"    "),
                3 => {
                    let at = rng.below(data.len() + 1);
                    data.truncate(at);
                }
                4 => data.extend(rng.bytes(3)),
                _ => {}
            }
            let mut b = st_bytes(&header, &data, declared);
            if rng.one_in(4) {
                let at = rng.below(b.len());
                b.truncate(at);
            }
            b
        };
        show("file", &String::from_utf8_lossy(&bytes));
        std::fs::write(&path, &bytes).map_err(|e| e.to_string())?;
        let mut weights = WeightMap::new(&path);
        let r = read_file(&path, &Device::Cpu, &mut weights);
        match r {
            Ok(()) if clean => check_st_values(&weights, &st),
            Ok(()) => {
                if weights.iter().any(|(_, t)| t.dtype() != DType::F32) {
                    return Err("a tensor was not converted to f32".into());
                }
                Ok(())
            }
            Err(e) if clean => Err(format!("a valid file failed: {e}")),
            Err(e) => err_names(&e, &[&path]),
        }
        .map_err(|e| format!("{e}\n  file: {}", preview(&bytes)))
    });
}

// ---------------------------------------------------------------------------------------
// HF model directories

/// The files of a valid saved small model: (name, bytes).
fn base_hf_files() -> Vec<(String, Vec<u8>)> {
    let tmp = tempfile::tempdir().expect("temp dir");
    let tok = io_fixtures::tiny_tokenizer(tmp.path(), Some("smollm")).expect("tokenizer");
    let dir = tmp.path().join("model");
    save_hf_model(
        &dir,
        &small_config(),
        &small_tensors(),
        SaveDtype::F32,
        Some(&tok),
    )
    .expect("save");
    let gen = json!({"bos_token_id": 1, "eos_token_id": [2, 0]});
    std::fs::write(dir.join("generation_config.json"), gen.to_string()).expect("write");
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .expect("read dir")
        .map(|e| {
            let e = e.expect("entry");
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).expect("read"),
            )
        })
        .collect();
    files.sort();
    files
}

const CONFIG_KEYS: &[&str] = &[
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "vocab_size",
    "rms_norm_eps",
    "rope_theta",
    "rope_scaling",
    "max_position_embeddings",
    "tie_word_embeddings",
    "bos_token_id",
    "eos_token_id",
    "pad_token_id",
    "hidden_act",
    "model_type",
    "attention_bias",
    "mlp_bias",
];

fn config_value(rng: &mut Rng) -> Value {
    match rng.below(14) {
        0 => json!({"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                    "high_freq_factor": 4.0, "original_max_position_embeddings": 64}),
        1 => json!({"type": "linear", "factor": 2.0}),
        2 => json!({"rope_type": "llama3", "factor": -1}),
        3 => json!(1u64 << 40),
        4 => json!(1u64 << 32),
        5 => json!(u64::MAX),
        6 => json!(1e30),
        7 => json!(-1e-30),
        8 => json!([2, 0, 1u64 << 33]),
        9 => json!("silu"),
        _ => odd_json(rng),
    }
}

/// A random node of a JSON document replaced, removed or duplicated.
fn mutate_json(rng: &mut Rng, v: &mut Value, depth: usize) {
    let descend = depth < 12 && rng.chance(0.7);
    match v {
        Value::Object(o) if !o.is_empty() => {
            let keys: Vec<String> = o.keys().cloned().collect();
            let k = rng.pick(&keys).clone();
            if descend {
                if let Some(child) = o.get_mut(&k) {
                    mutate_json(rng, child, depth + 1);
                }
                return;
            }
            match rng.below(3) {
                0 => {
                    o.remove(&k);
                }
                1 => {
                    let n = rng.len(20);
                    o.insert(rng.text(n), odd_json(rng));
                }
                _ => {
                    o.insert(k, odd_json(rng));
                }
            }
        }
        Value::Array(a) if !a.is_empty() => {
            let i = rng.below(a.len());
            if descend {
                mutate_json(rng, &mut a[i], depth + 1);
                return;
            }
            match rng.below(3) {
                0 => {
                    a.remove(i);
                }
                1 => {
                    let dup = a[i].clone();
                    a.push(dup);
                }
                _ => a[i] = odd_json(rng),
            }
        }
        _ => *v = odd_json(rng),
    }
}

fn mutate_text(rng: &mut Rng, b: &mut Vec<u8>) {
    match rng.below(3) {
        0 => {
            let at = rng.below(b.len() + 1);
            b.truncate(at);
        }
        1 if !b.is_empty() => {
            let at = rng.below(b.len());
            b[at] = rng.next_u64() as u8;
        }
        _ => {
            let at = rng.below(b.len() + 1);
            let junk = rng.bytes(rng.clone().len(8));
            b.splice(at..at, junk);
        }
    }
}

/// Mutates one file of a model directory (or adds a shard index, or removes a file).
fn mutate_hf_dir(rng: &mut Rng, files: &mut Vec<(String, Vec<u8>)>, elsewhere: &Path) -> String {
    let pick = |files: &[(String, Vec<u8>)], name: &str| files.iter().position(|(n, _)| n == name);
    match rng.below(10) {
        0..=2 => {
            let Some(i) = pick(files, "config.json") else {
                return "no config".into();
            };
            let mut v: Value = serde_json::from_slice(&files[i].1).unwrap_or(Value::Null);
            if rng.one_in(5) {
                mutate_json(rng, &mut v, 0);
            } else if let Some(o) = v.as_object_mut() {
                for _ in 0..rng.range(1, 2) {
                    let k = rng.pick(CONFIG_KEYS).to_string();
                    if rng.one_in(6) {
                        o.remove(&k);
                    } else {
                        o.insert(k, config_value(rng));
                    }
                }
            }
            files[i].1 = serde_json::to_vec(&v).unwrap_or_default();
            if rng.one_in(8) {
                mutate_text(rng, &mut files[i].1);
            }
            "config.json".into()
        }
        3 => {
            let Some(i) = pick(files, "model.safetensors") else {
                return "no weights".into();
            };
            let b = &files[i].1;
            let n = b
                .get(..8)
                .and_then(|p| p.try_into().ok())
                .map_or(0, u64::from_le_bytes) as usize;
            // An earlier mutation may have cut the file: then the header reads as empty.
            let header_bytes = b.get(8..8usize.saturating_add(n)).unwrap_or_default();
            let mut header: serde_json::Map<String, Value> =
                serde_json::from_slice(header_bytes).unwrap_or_default();
            let data = b.get(8 + header_bytes.len()..).unwrap_or_default().to_vec();
            if header.is_empty() || rng.one_in(3) {
                mutate_text(rng, &mut files[i].1);
            } else {
                mutate_st_header(rng, &mut header);
                let h = serde_json::to_vec(&Value::Object(header)).unwrap_or_default();
                files[i].1 = st_bytes(&h, &data, None);
            }
            "model.safetensors".into()
        }
        4 | 5 => {
            let name = *rng.pick(&[
                "tokenizer.json",
                "tokenizer_config.json",
                "generation_config.json",
            ]);
            let Some(i) = pick(files, name) else {
                return format!("no {name}");
            };
            let mut v: Value = serde_json::from_slice(&files[i].1).unwrap_or(Value::Null);
            if name != "tokenizer.json" && rng.one_in(2) {
                let keys = [
                    "bos_token",
                    "eos_token",
                    "pad_token",
                    "chat_template",
                    "eos_token_id",
                    "bos_token_id",
                    "pad_token_id",
                ];
                if let Some(o) = v.as_object_mut() {
                    let k = rng.pick(&keys).to_string();
                    let val = match rng.below(4) {
                        0 => json!("<|not_a_token|>"),
                        1 => json!({"content": "<|im_end|>", "lstrip": false}),
                        2 => json!([{"name": "default", "template": "{{ x"}]),
                        _ => odd_json(rng),
                    };
                    o.insert(k, val);
                }
            } else {
                mutate_json(rng, &mut v, 0);
            }
            files[i].1 = serde_json::to_vec(&v).unwrap_or_default();
            if rng.one_in(8) {
                mutate_text(rng, &mut files[i].1);
            }
            name.into()
        }
        6 => {
            // A shard index whose shards are odd paths.
            let shard = match rng.below(8) {
                0 => "model.safetensors".to_string(),
                1 => "../x.safetensors".into(),
                2 => elsewhere.display().to_string(),
                3 => String::new(),
                4 => "/".into(),
                5 => "s".repeat(300),
                6 => "a\u{0}b".into(),
                _ => ".".into(),
            };
            let tensor = if rng.one_in(2) {
                "model.norm.weight"
            } else {
                "not.a.tensor"
            };
            let index = if rng.one_in(5) {
                odd_json(rng)
            } else {
                json!({"metadata": {}, "weight_map": {tensor: shard}})
            };
            files.push((
                "model.safetensors.index.json".into(),
                serde_json::to_vec(&index).unwrap_or_default(),
            ));
            "index".into()
        }
        7 => {
            let i = rng.below(files.len());
            let (name, _) = files.remove(i);
            format!("removed {name}")
        }
        _ => {
            // The lying layout through config.json.
            let Some(i) = pick(files, "config.json") else {
                return "no config".into();
            };
            let mut v: Value = serde_json::from_slice(&files[i].1).unwrap_or(Value::Null);
            let k = *rng.pick(&[
                "num_hidden_layers",
                "hidden_size",
                "intermediate_size",
                "vocab_size",
                "num_attention_heads",
            ]);
            v[k] = json!(1u64 << (20 + rng.below(44)));
            files[i].1 = serde_json::to_vec(&v).unwrap_or_default();
            format!("huge {k}")
        }
    }
}

/// Mutated HF model directories (config, weights, tokenizer files, shard index) through
/// `load`.
#[test]
fn fuzz_hf_model_dirs() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let root = tmp.path().to_path_buf();
    let elsewhere = root.join("elsewhere.safetensors");
    std::fs::write(&elsewhere, b"\x10\0\0\0\0\0\0\0{\"a\":1}         ").expect("write");
    let base = base_hf_files();
    run("hf_model_dirs", 300, move |rng| {
        let _keep = &tmp;
        let dir: PathBuf = root.join("model");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let mut files = base.clone();
        let clean = rng.one_in(10);
        let what = if clean {
            "clean".to_string()
        } else {
            (0..rng.range(1, 2))
                .map(|_| mutate_hf_dir(rng, &mut files, &elsewhere))
                .collect::<Vec<_>>()
                .join(", ")
        };
        show("mutations", &what);
        for (name, bytes) in &files {
            std::fs::write(dir.join(name), bytes).map_err(|e| e.to_string())?;
        }
        match load(&ModelSource::Dir(dir.clone()), &Device::Cpu) {
            Ok(m) if clean => same_weights(&m.weights, &small_tensors()),
            Ok(_) => Ok(()),
            Err(e) if clean => Err(format!("the unmutated directory does not load: {e}")),
            Err(e) => err_names(&e, &[&dir, &elsewhere]),
        }
        .map_err(|e| format!("{what}: {e}"))
    });
}

/// `config.json` alone: mutated documents through `LlamaConfig::from_file`; a resolved
/// config keeps `resolve`'s guarantees.
#[test]
fn fuzz_config_json() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("config.json");
    let base = small_config().to_hf_json();
    run("config_json", 1_000, move |rng| {
        let _keep = &dir;
        let mut v = base.clone();
        for _ in 0..rng.range(1, 3) {
            if rng.one_in(4) {
                mutate_json(rng, &mut v, 0);
            } else if let Some(o) = v.as_object_mut() {
                o.insert(rng.pick(CONFIG_KEYS).to_string(), config_value(rng));
            }
        }
        let mut bytes = serde_json::to_vec(&v).unwrap_or_default();
        if rng.one_in(10) {
            mutate_text(rng, &mut bytes);
        }
        show("config", &String::from_utf8_lossy(&bytes));
        std::fs::write(&path, &bytes).map_err(|e| e.to_string())?;
        match LlamaConfig::from_file(&path) {
            Err(e) => err_names(&e, &[&path]),
            Ok(c) => {
                let ok = c.hidden_size > 0
                    && c.intermediate_size > 0
                    && c.num_layers > 0
                    && c.vocab_size > 0
                    && c.head_dim > 0
                    && c.head_dim % 2 == 0
                    && c.num_kv_heads > 0
                    && c.num_heads % c.num_kv_heads == 0
                    && c.rms_norm_eps > 0.0
                    && c.rms_norm_eps.is_finite()
                    && c.rope_theta > 0.0
                    && c.rope_theta.is_finite()
                    && c.rope_scaling.is_none_or(|s| s.factor > 0.0);
                if ok {
                    Ok(())
                } else {
                    Err(format!("resolved an invalid config: {c:?}"))
                }
            }
        }
    });
}

// ---------------------------------------------------------------------------------------
// Lying lengths, one at a time (each must fail fast, without a large allocation)

fn gguf_with(edit: impl FnOnce(&mut Gguf)) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("lying.gguf");
    let mut g = base_gguf();
    edit(&mut g);
    std::fs::write(&path, g.write().bytes).expect("write");
    (dir, path)
}

fn assert_load_error(source: ModelSource, path: &Path, what: &str) {
    let e = fuzz_support::guarded("lying header", move || {
        load(&source, &Device::Cpu).err().map(|e| e.to_string())
    });
    let e = e.unwrap_or_else(|| panic!("{what}: loaded"));
    assert!(e.contains(&path.display().to_string()), "{what}: {e}");
}

/// A valid GGUF loads (the writer above is right, so the fuzz cases start from valid files).
#[test]
fn the_gguf_writer_writes_loadable_files() {
    let (_dir, path) = gguf_with(|_| {});
    let m = load(&ModelSource::Gguf(path), &Device::Cpu).expect("load");
    same_weights(&m.weights, &small_tensors()).expect("values");
}

#[test]
fn lying_gguf_counts_and_lengths_fail_fast() {
    let (_d, path) = gguf_with(|_| {});
    let good = std::fs::read(&path).expect("read");
    // tensor_count, metadata_kv_count, the first key's length, the token array's length.
    let tokens_len_at = good
        .windows(b"tokenizer.ggml.tokens".len())
        .position(|w| w == b"tokenizer.ggml.tokens")
        .expect("tokens key")
        + b"tokenizer.ggml.tokens".len()
        + 4;
    for (what, at) in [
        ("tensor count", 8),
        ("kv count", 16),
        ("key length", 24),
        ("array length", tokens_len_at),
    ] {
        for v in [1u64 << 60, u64::MAX, 1 << 32] {
            let mut b = good.clone();
            b[at..at + 8].copy_from_slice(&v.to_le_bytes());
            std::fs::write(&path, &b).expect("write");
            assert_load_error(ModelSource::Gguf(path.clone()), &path, what);
        }
    }
}

/// A GGUF whose metadata claims 2^40 layers (or a 2^40-wide model) over a one-layer file,
/// loaded and converted to an HF directory.
#[test]
fn lying_gguf_config_fails_fast() {
    for key in [
        "llama.block_count",
        "llama.embedding_length",
        "llama.feed_forward_length",
    ] {
        let (dir, path) = gguf_with(|g| g.meta.push((key.as_bytes().to_vec(), G::U64(1 << 40))));
        assert_load_error(ModelSource::Gguf(path.clone()), &path, key);
        let out = dir.path().join("converted");
        let gguf = path.clone();
        let e = fuzz_support::guarded("lying header conversion", move || {
            thinkjudge_model::convert_gguf_to_hf(&gguf, &out, SaveDtype::F32)
                .err()
                .map(|e| e.to_string())
        });
        let e = e.unwrap_or_else(|| panic!("{key}: converted"));
        assert!(e.contains(&path.display().to_string()), "{key}: {e}");
    }
}

/// `general.alignment = 0` (a division by zero in the reader).
#[test]
fn gguf_alignment_zero_is_an_error() {
    let (_d, path) = gguf_with(|g| g.meta.push((b"general.alignment".to_vec(), G::U32(0))));
    assert_load_error(ModelSource::Gguf(path.clone()), &path, "alignment 0");
}

/// An HF directory whose config.json claims 2^40 layers over one layer of weights.
#[test]
fn lying_config_json_fails_fast() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("model");
    std::fs::create_dir_all(&dir).expect("mkdir");
    for (name, bytes) in base_hf_files() {
        std::fs::write(dir.join(name), bytes).expect("write");
    }
    let mut cfg: Value =
        serde_json::from_slice(&std::fs::read(dir.join("config.json")).expect("read"))
            .expect("json");
    cfg["num_hidden_layers"] = json!(1u64 << 40);
    std::fs::write(dir.join("config.json"), cfg.to_string()).expect("write");
    assert_load_error(
        ModelSource::Dir(dir.clone()),
        &dir,
        "num_hidden_layers 2^40",
    );
}

// ---------------------------------------------------------------------------------------
// ModelSource text and TOML sections

/// Arbitrary text as a model source: no panic, and a parsed source prints back to itself.
#[test]
fn fuzz_model_source_text() {
    const PIECES: [&str; 16] = [
        "hf:", "default", "/", "@", ".gguf", ".GGUF", "./", " ", "org", "name", "\u{0}", "..", "é",
        "-", "_", ".",
    ];
    run("model_source_text", 5_000, |rng| {
        let mut s = String::new();
        for _ in 0..rng.len(12) {
            if rng.one_in(4) {
                let n = rng.len(6);
                s.push_str(&rng.text(n));
            } else {
                let p = *rng.pick(&PIECES);
                s.push_str(p);
            }
        }
        if let Ok(src) = ModelSource::parse(&s) {
            let back = ModelSource::parse(&src.to_string())
                .map_err(|e| format!("{s:?} → {src} does not parse back: {e}"))?;
            if back != src {
                return Err(format!("{s:?} → {src:?} → {back:?}"));
            }
        }
        Ok(())
    });
}

/// The model crate's TOML sections, as they sit in a training config.
#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelSection {
    model: ModelSource,
    #[serde(default)]
    lora: Option<LoraConfig>,
}

fn model_spec() -> Spec<ModelSection> {
    let sections = [
        ModelSection {
            model: ModelSource::Default,
            lora: Some(LoraConfig::default()),
        },
        ModelSection {
            model: ModelSource::Gguf("models/x.gguf".into()),
            lora: Some(LoraConfig {
                rank: 4,
                alpha: 8.0,
                dropout: 0.1,
                targets: vec![LoraTarget::ALL[0]],
                layers: Some(vec![0, 3]),
            }),
        },
        ModelSection {
            model: ModelSource::Dir("ckpt/step-10".into()),
            lora: None,
        },
    ];
    let mut seeds: Vec<String> = sections
        .iter()
        .map(|s| toml::to_string(s).expect("serialize"))
        .collect();
    seeds.extend([
        "model = { hub = { id = \"org/name\", revision = \"main\" } }\n".to_string(),
        "model = { dir = \"some/dir\" }\n[lora]\nrank = 8\n".to_string(),
        "model = { gguf = \"a.gguf\" }\n".to_string(),
    ]);
    Spec {
        seeds,
        validate: |s| match &s.lora {
            Some(l) => l.validate().map_err(|e| e.to_string()),
            None => Ok(()),
        },
        // A directory named `default` is written `./default`: the same directory.
        same: |a, b| {
            let plain = |s: &ModelSource| match s {
                ModelSource::Dir(p) => ModelSource::Dir(p.strip_prefix(".").unwrap_or(p).into()),
                other => other.clone(),
            };
            a.lora == b.lora && plain(&a.model) == plain(&b.model)
        },
    }
}

/// Mutated `model` / `lora` TOML: parse and validate never panic; valid ones round-trip.
#[test]
fn fuzz_toml_model_sections() {
    let spec = model_spec();
    run("toml_model_sections", 3_000, move |rng| {
        toml_fuzz::check(rng, &spec)
    });
}

/// An unknown key in `lora`, `model = { … }` or `model.hub` is rejected, naming the key.
#[test]
fn fuzz_toml_model_unknown_keys_are_named() {
    let spec = model_spec();
    run("toml_model_unknown_keys", 1_000, move |rng| {
        toml_fuzz::check_unknown_key(rng, &spec)
    });
}

/// Regression (found by `fuzz_hf_model_dirs`): `tokenizers` panics ("Helper") on a
/// `tokenizer.json` whose decoder does not parse, e.g. a file cut short.
#[test]
fn malformed_tokenizer_json_is_an_error() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("model");
    std::fs::create_dir_all(&dir).expect("mkdir");
    for (name, bytes) in base_hf_files() {
        std::fs::write(dir.join(name), bytes).expect("write");
    }
    let tok = dir.join("tokenizer.json");
    std::fs::write(
        &tok,
        br#"{"version": "1.0", "decoder": {"type": "ByteLevel", "#,
    )
    .expect("write");
    let e = load(&ModelSource::Dir(dir), &Device::Cpu).expect_err("loaded");
    assert!(e.to_string().contains(&tok.display().to_string()), "{e}");
}

/// Regression (found by `fuzz_toml_model_sections`): a source written as a table because its
/// text form would read back as another kind (`{ gguf = "model.bin" }` → `"model.bin"`, a
/// directory) now stays a table; and (found by `fuzz_toml_model_unknown_keys_are_named`)
/// unknown keys in a source table are named.
#[test]
fn model_sources_serialize_to_what_they_are() {
    for src in [
        ModelSource::Gguf("model.bin".into()),
        ModelSource::Dir("weights.gguf".into()),
        ModelSource::Dir(" spaced ".into()),
        ModelSource::Gguf("x.gguf".into()),
        ModelSource::Dir("ckpt".into()),
        ModelSource::Default,
    ] {
        let section = ModelSection {
            model: src.clone(),
            lora: None,
        };
        let text = toml::to_string(&section).expect("serialize");
        let back: ModelSection = toml::from_str(&text).expect("parse back");
        assert_eq!(back.model, src, "{text}");
    }
    for (doc, key) in [
        ("model = { gguf = \"a.gguf\", revison = \"x\" }", "revison"),
        ("model = { hub = { id = \"a/b\", rev = \"x\" } }", "rev"),
        ("model = { file = \"x\" }", "file"),
    ] {
        let e = toml::from_str::<ModelSection>(doc).expect_err(doc);
        assert!(e.to_string().contains(key), "{doc}: {e}");
    }
}
