//! `JudgeTokenizer` behaviour on the tiny byte-level BPE built from GGUF metadata.

mod io_fixtures;

use std::path::Path;

use anyhow::Result;
use io_fixtures::*;
use thinkjudge_model::{JudgeTokenizer, ModelConfig};

#[test]
fn special_tokens_in_text_become_ids_and_round_trip() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let tok = tiny_tokenizer(tmp.path(), Some("smollm"))?;
    let text = "<|im_start|>user\nis the answer<|im_end|>\n<|im_start|>assistant\n";
    let ids = tok.encode(text)?;
    assert_eq!(ids[0], 1, "<|im_start|> is one id, and no bos is prepended");
    assert_eq!(ids.iter().filter(|&&i| i == 1).count(), 2);
    assert_eq!(ids.iter().filter(|&&i| i == 2).count(), 1);
    // " the" merges into one token (Ġt + he).
    assert!(ids.contains(&tok.token_to_id("Ġthe").unwrap()));
    assert_eq!(tok.decode(&ids, false)?, text);
    assert_eq!(tok.decode(&ids, true)?, "user\nis the answer\nassistant\n");
    // encode_with(.., true) runs the post-processor; this GGUF asks for no bos.
    assert_eq!(tok.encode_with(text, true)?, ids);
    assert_eq!(tok.encode_batch(&[text, "x"])?, vec![ids, tok.encode("x")?]);
    Ok(())
}

#[test]
fn user_defined_tokens_are_added_but_not_special() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let tok = tiny_tokenizer(tmp.path(), Some("smollm"))?;
    let think = tok.token_to_id(USER_TOKEN).unwrap();
    assert_eq!(think as usize, VOCAB - 1);
    let ids = tok.encode("<think>ok")?;
    assert_eq!(ids[0], think);
    assert_eq!(
        tok.decode(&ids, true)?,
        "<think>ok",
        "not skipped as special"
    );
    Ok(())
}

#[test]
fn smollm_splits_digits_gpt2_merges_them() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let smollm = tiny_tokenizer(tmp.path(), Some("smollm"))?;
    let gpt2 = tiny_tokenizer(tmp.path(), Some("gpt2"))?;
    let absent = tiny_tokenizer(tmp.path(), None)?;
    let merged = smollm.token_to_id("12").unwrap();
    let text = "$12.50";
    let s = smollm.encode(text)?;
    let g = gpt2.encode(text)?;
    assert!(!s.contains(&merged), "smollm: one token per digit: {s:?}");
    assert!(g.contains(&merged), "gpt2: digits may merge: {g:?}");
    assert_eq!(absent.encode(text)?, g, "no pre type means gpt2");
    assert_eq!(smollm.decode(&s, false)?, text);
    assert_eq!(gpt2.decode(&g, false)?, text);
    Ok(())
}

#[test]
fn stream_decoding_matches_full_decoding() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let tok = tiny_tokenizer(tmp.path(), Some("smollm"))?;
    // Multi-byte characters span several byte tokens.
    let text = "<|im_start|>héllo → 12 wörld ✓<|im_end|>";
    let ids = tok.encode(text)?;
    for skip in [false, true] {
        let mut stream = tok.stream(skip);
        let mut pieces = String::new();
        for &id in &ids {
            let new = stream.push(id)?.to_string();
            pieces.push_str(&new);
            assert!(tok.decode(&ids, skip)?.starts_with(stream.text()));
        }
        assert_eq!(pieces, tok.decode(&ids, skip)?);
        assert_eq!(stream.text(), tok.decode(&ids, skip)?);
    }
    // An incomplete character yields no text until its last byte arrives.
    let arrow = tok.encode("→")?;
    assert_eq!(arrow.len(), 3);
    let mut stream = tok.stream(false);
    assert_eq!(stream.push(arrow[0])?, "");
    assert_eq!(stream.push(arrow[1])?, "");
    assert_eq!(stream.push(arrow[2])?, "→");
    Ok(())
}

#[test]
fn check_matches_compares_vocab_and_special_ids() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let tok = tiny_tokenizer(tmp.path(), Some("smollm"))?;
    assert_eq!(tok.vocab_size(), VOCAB);
    let model = Path::new("some/model");
    // A model with spare rows (vocab padded to a multiple of 64) is fine.
    tok.check_matches(&ModelConfig::tiny(320), model)?;
    let e = tok
        .check_matches(&ModelConfig::tiny(VOCAB - 1), model)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("264 tokens") && e.contains("vocab_size 263"),
        "{e}"
    );
    assert!(
        e.contains("some/model") && e.contains("tok-smollm.gguf"),
        "{e}"
    );
    Ok(())
}

#[test]
fn hf_dir_special_ids_are_the_union_of_the_config_files() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let tok = tiny_tokenizer(tmp.path(), Some("smollm"))?;
    let dir = tmp.path().join("hf");
    std::fs::create_dir_all(&dir)?;
    tok.save_to_dir(&dir)?;
    // Instruct checkpoints often list the end-of-turn token in only one of the files.
    std::fs::write(
        dir.join("generation_config.json"),
        r#"{"eos_token_id": [0, 2], "bos_token_id": 1}"#,
    )?;
    let config = ModelConfig {
        eos_token_ids: vec![2],
        bos_token_id: None,
        pad_token_id: None,
        ..ModelConfig::tiny(VOCAB)
    };
    let loaded = JudgeTokenizer::from_hf_dir(&dir, &config)?;
    assert_eq!(loaded.eos_ids(), &[2, 0]);
    assert_eq!(loaded.bos_id(), Some(1));
    // pad_token "<|im_end|>" comes from tokenizer_config.json.
    assert_eq!(loaded.special_ids().pad, Some(2));
    assert_eq!(loaded.chat_template(), Some(CHAT_TEMPLATE));

    // Without a template in tokenizer_config.json, chat_template.jinja is used.
    let tc_path = dir.join("tokenizer_config.json");
    let mut tc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&tc_path)?)?;
    tc.as_object_mut().unwrap().remove("chat_template");
    std::fs::write(&tc_path, tc.to_string())?;
    assert_eq!(
        JudgeTokenizer::from_hf_dir(&dir, &config)?.chat_template(),
        None
    );
    std::fs::write(dir.join("chat_template.jinja"), "{{ x }}")?;
    assert_eq!(
        JudgeTokenizer::from_hf_dir(&dir, &config)?.chat_template(),
        Some("{{ x }}")
    );

    // A named token the tokenizer doesn't know is an error naming the file and field.
    tc["eos_token"] = "<|nope|>".into();
    std::fs::write(&tc_path, tc.to_string())?;
    let e = JudgeTokenizer::from_hf_dir(&dir, &config)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("tokenizer_config.json") && e.contains("eos_token \"<|nope|>\""),
        "{e}"
    );
    Ok(())
}
