//! Fixtures for end-to-end runs: a word-level tokenizer, a tiny random Llama saved as an HF
//! directory, and a learnable judge task.
//!
//! The task: the "question" is `even`, the two responses are numbers 0–19, and the better
//! one is the even number. The judge template writes each response glued to its position
//! (`A12 B7`) and the tokenizer splits on whitespace only, so each such word is one token:
//! the judge must learn one bit per token, in both answer orders. Completions are tiny: one
//! thought token (the budget then forces `</think> <answer>`), then one verdict token
//! `[[A]]</answer>` or `[[B]]</answer>`, which ends the sample. A random model picks a
//! verdict token about once in 25 draws, so it starts near 0 accuracy.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use anyhow::Result;
use candle_core::{DType, Device};
use serde_json::json;
use thinkjudge::config::{ChatTemplateChoice, DataSource, EvalData, FinetuneKind};
use thinkjudge::TrainConfig;
use thinkjudge_data::DataFormat;
use thinkjudge_model::{save_hf_model, JudgeTokenizer, ModelConfig, SaveDtype, SpecialIds};
use thinkjudge_rl::LrSchedule;

/// Numbers used as responses.
pub const NUMBERS: std::ops::Range<u32> = 0..20;

/// Words besides the responses, in id order after `[UNK]`.
const WORDS: [&str; 7] = [
    "<eos>",
    "<think>",
    "</think>",
    "<answer>",
    "[[A]]</answer>",
    "[[B]]</answer>",
    "even",
];

/// Renders the single user turn as is, then a newline (so the prefilled `<think>` is a word).
const CHAT_TEMPLATE: &str = "{% for m in messages %}{{ m['content'] }}\n{% endfor %}";

/// The judge template: the question, then each response glued to its letter.
pub const JUDGE_TEMPLATE: &str = "{{ question }} A{{ response_a }} B{{ response_b }}";

/// A word-level tokenizer (split on whitespace) over [`WORDS`] and `A0` … `B19`.
pub fn tokenizer() -> Result<JudgeTokenizer> {
    let mut vocab = serde_json::Map::new();
    vocab.insert("[UNK]".into(), json!(0));
    let shown = ["A", "B"]
        .into_iter()
        .flat_map(|l| NUMBERS.map(move |n| format!("{l}{n}")));
    for w in WORDS.iter().map(|w| w.to_string()).chain(shown) {
        let id = vocab.len();
        vocab.insert(w, json!(id));
    }
    let spec = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [{"id": 1, "content": "<eos>", "single_word": false, "lstrip": false,
                          "rstrip": false, "normalized": false, "special": true}],
        "normalizer": null,
        "pre_tokenizer": {"type": "WhitespaceSplit"},
        "post_processor": null,
        "decoder": null,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "[UNK]"}
    });
    let inner: tokenizers::Tokenizer = spec
        .to_string()
        .parse()
        .map_err(|e| anyhow::anyhow!("test tokenizer: {e}"))?;
    let special = SpecialIds {
        bos: None,
        eos: vec![1],
        pad: None,
    };
    Ok(JudgeTokenizer::from_parts(
        inner,
        special,
        Some(CHAT_TEMPLATE.into()),
        "<test tokenizer>",
    ))
}

/// Saves a tiny random Llama (2 layers, hidden 32, GQA) with the test tokenizer as an HF
/// directory under `dir` and returns its path.
pub fn model_dir(dir: &Path, seed: u64) -> Result<PathBuf> {
    let tok = tokenizer()?;
    let mut cfg = ModelConfig::tiny(tok.vocab_size());
    cfg.eos_token_ids = vec![1];
    let weights = thinkjudge_model::init::random_weights(&cfg, seed, DType::F32, &Device::Cpu)?;
    let tensors: Vec<_> = weights
        .iter()
        .map(|(n, t)| (n.to_string(), t.clone()))
        .collect();
    let path = dir.join("tiny-model");
    save_hf_model(&path, &cfg, &tensors, SaveDtype::F32, Some(&tok))?;
    Ok(path)
}

/// Writes every (even, odd) pair of [`NUMBERS`] as generic JSONL, storage order alternating,
/// and returns the file.
pub fn even_pairs_file(dir: &Path) -> Result<PathBuf> {
    let mut lines = Vec::new();
    for even in NUMBERS.filter(|n| n % 2 == 0) {
        for odd in NUMBERS.filter(|n| n % 2 == 1) {
            let (responses, preference) = if (even + odd) % 4 == 1 {
                ([even, odd], "first")
            } else {
                ([odd, even], "second")
            };
            lines.push(
                json!({
                    "id": format!("{even}-{odd}"),
                    "prompt": "even",
                    "responses": [responses[0].to_string(), responses[1].to_string()],
                    "preference": preference,
                })
                .to_string(),
            );
        }
    }
    let path = dir.join("even.jsonl");
    std::fs::write(&path, lines.join("\n"))?;
    Ok(path)
}

/// A config for the task: data and model under `dir`, run directory `dir/run`.
pub fn task_config(dir: &Path, model_seed: u64) -> Result<TrainConfig> {
    let template = dir.join("judge.j2");
    std::fs::write(&template, JUDGE_TEMPLATE)?;
    let mut cfg = TrainConfig::default();
    cfg.model.source = thinkjudge_model::ModelSource::Dir(model_dir(dir, model_seed)?);
    cfg.model.finetune = FinetuneKind::Full;
    cfg.data.train = vec![DataSource::File {
        path: even_pairs_file(dir)?,
        format: DataFormat::Jsonl,
        load: Default::default(),
    }];
    cfg.data.eval = EvalData::HeldOut {
        fraction: 0.2,
        seed: 1,
    };
    cfg.data.prompt.template.custom_template = Some(template);
    cfg.data.prompt.prefill_think = true;
    cfg.data.chat_template = ChatTemplateChoice::Model;
    cfg.data.max_prompt_tokens = 32;
    cfg.rollout.group_size = 8;
    let s = &mut cfg.rollout.sampling;
    s.max_new_tokens = 5;
    s.stop_strings = vec!["</answer>".into()];
    s.thinking.prompt_opens_thought = true;
    s.thinking.max_thought_tokens = Some(1);
    s.thinking.min_thought_tokens = 1;
    s.thinking.forced_close = "\n</think>\n<answer>".into();
    cfg.loss.kl_coef = 0.0;
    cfg.optim.schedule = LrSchedule::Constant { lr: 3e-3 };
    cfg.optim.weight_decay = 0.0;
    let t = &mut cfg.trainer;
    t.steps = 150;
    t.pairs_per_step = 16;
    t.micro_batch_prompts = 8;
    t.eval_every = 50;
    t.eval_pairs = None;
    t.checkpoint_every = 0;
    t.log_examples_every = 25;
    t.seed = 5;
    cfg.output.run_dir = dir.join("run");
    cfg.validate()?;
    Ok(cfg)
}

/// The lines of a `metrics.jsonl` as JSON values with the wall-clock `timing` removed.
pub fn deterministic_metrics(path: &Path) -> Result<Vec<serde_json::Value>> {
    let text = std::fs::read_to_string(path)?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l)?;
            if let Some(o) = v.as_object_mut() {
                o.remove("timing");
            }
            Ok(v)
        })
        .collect()
}
