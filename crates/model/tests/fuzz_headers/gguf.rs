//! Mutated GGUF files (semantic mutations before writing, byte-level ones after) through
//! `load`.
use std::path::Path;

use candle_core::Device;
use thinkjudge_model::{load, ModelSource};

use crate::fuzz_support::{preview, run, show, Rng};
use crate::gguf_writer::{base_gguf, FieldKind, Gguf, Out, G};
use crate::{err_names, same_weights, small_tensors, u64_interesting};

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
