//! Shared fixtures: a tiny BPE tokenizer whose merges make tags straddle tokens
//! (`</think>` = `</` `think` `>`, `</think>\n` = `</` `think` `>\n`), and a tiny random Llama
//! over exactly its vocabulary.
#![allow(dead_code)]

use anyhow::Result;
use candle_core::{Device, Tensor};
use serde_json::json;
use thinkjudge_model::{
    Finetune, JudgeTokenizer, Llama, LlamaOptions, Mode, ModelConfig, SpecialIds,
};

/// Multi-character tokens, in merge order.
const MERGES: [(&str, &str); 11] = [
    ("<", "/"),
    ("t", "h"),
    ("i", "n"),
    ("in", "k"),
    ("th", "ink"),
    ("a", "n"),
    ("s", "w"),
    ("e", "r"),
    ("an", "sw"),
    ("answ", "er"),
    (">", "\n"),
];

/// Printable ASCII and `\n` (ids 0..96), the merged tokens, then `<eos>`.
pub fn tokenizer() -> JudgeTokenizer {
    let mut vocab = serde_json::Map::new();
    let mut add = |t: String| {
        let id = vocab.len();
        vocab.insert(t, json!(id));
    };
    for c in (32u8..127).map(char::from).chain(['\n']) {
        add(c.to_string());
    }
    for (a, b) in MERGES {
        add(format!("{a}{b}"));
    }
    let eos = vocab.len();
    let spec = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [{"id": eos, "content": "<eos>", "single_word": false, "lstrip": false,
                          "rstrip": false, "normalized": false, "special": true}],
        "normalizer": null,
        "pre_tokenizer": null,
        "post_processor": null,
        "decoder": {"type": "Fuse"},
        "model": {"type": "BPE", "dropout": null, "unk_token": null,
                  "continuing_subword_prefix": null, "end_of_word_suffix": null,
                  "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                  "vocab": vocab, "merges": MERGES.iter().map(|(a, b)| json!([a, b])).collect::<Vec<_>>()}
    });
    let inner: tokenizers::Tokenizer = spec.to_string().parse().expect("test tokenizer json");
    let special = SpecialIds {
        bos: None,
        eos: vec![eos as u32],
        pad: None,
    };
    JudgeTokenizer::from_parts(inner, special, None, "<test tokenizer>")
}

pub fn eos_id() -> u32 {
    tokenizer().eos_ids()[0]
}

/// A tiny GQA Llama over the test vocabulary; trainable when `train`.
pub fn model(train: bool) -> Result<Llama> {
    let cfg = ModelConfig::tiny(tokenizer().vocab_size());
    let finetune = if train {
        Finetune::Full
    } else {
        Finetune::Frozen
    };
    Ok(Llama::random(
        &cfg,
        11,
        &Device::Cpu,
        LlamaOptions {
            finetune,
            ..LlamaOptions::default()
        },
    )?)
}

/// Three prompts of different lengths (left padding in the prefill).
pub fn prompts(tok: &JudgeTokenizer) -> Result<Vec<Vec<u32>>> {
    Ok(vec![
        tok.encode("Which answer is better? A: 4. B: 5.\n<think>")?,
        tok.encode("2+2?\n")?,
        tok.encode("Rate it: the answer is in the question.\n")?,
    ])
}

/// Logits of every position of one unpadded sequence, without a cache: (T, V).
pub fn full_logits(m: &Llama, ids: &[u32]) -> Result<Tensor> {
    let t = Tensor::new(ids, &Device::Cpu)?.unsqueeze(0)?;
    let mask = t.ones_like()?;
    let h = m.forward(&t, &mask, &mut m.new_cache(), Mode::Infer)?;
    Ok(m.logits(&h)?.squeeze(0)?)
}

/// Byte offsets where each token's text starts in the decoded completion (and its end).
pub fn token_offsets(tok: &JudgeTokenizer, ids: &[u32]) -> Result<Vec<usize>> {
    (0..=ids.len())
        .map(|j| Ok(tok.decode(&ids[..j], true)?.len()))
        .collect()
}
