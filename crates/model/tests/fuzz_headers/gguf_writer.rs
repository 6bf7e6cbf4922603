//! A GGUF writer that can lie: any type tag, count, length, dimension, dtype or offset, with
//! the position of every header field recorded for byte-level mutation.

use crate::io_fixtures::{self, gguf_name, llama_cpp_permute, tiny_tokens, MERGES};
use crate::{small_config, small_tensors};

/// A metadata value as written: any type tag with any payload.
#[derive(Debug, Clone)]
pub(crate) enum G {
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

    pub(crate) fn str(s: &str) -> G {
        G::Str(s.as_bytes().to_vec())
    }
}

/// Kinds of header fields a byte-level mutation can target.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum FieldKind {
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
pub(crate) struct Field {
    pub(crate) pos: usize,
    pub(crate) size: usize,
    pub(crate) kind: FieldKind,
}

#[derive(Debug, Clone)]
pub(crate) struct GTensor {
    pub(crate) name: String,
    /// GGUF order (innermost first).
    pub(crate) dims: Vec<u64>,
    pub(crate) dtype: u32,
    pub(crate) data: Vec<u8>,
    /// Written instead of the computed offset.
    pub(crate) offset: Option<u64>,
}

#[derive(Debug, Clone)]
pub(crate) struct Gguf {
    pub(crate) meta: Vec<(Vec<u8>, G)>,
    pub(crate) tensors: Vec<GTensor>,
}

pub(crate) struct Out {
    pub(crate) bytes: Vec<u8>,
    pub(crate) fields: Vec<Field>,
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

    pub(crate) fn write(&self) -> Out {
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
pub(crate) fn base_gguf() -> Gguf {
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
