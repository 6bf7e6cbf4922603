//! A `tokenizers::Tokenizer` rebuilt from a GGUF's `tokenizer.ggml.*` metadata.
//!
//! Supported: `tokenizer.ggml.model = gpt2` (byte-level BPE) with the llama.cpp pre-tokenizer
//! types below, reproducing what HF's `tokenizer.json` for those models contains:
//!
//! | `tokenizer.ggml.pre` | pre-tokenizer |
//! |---|---|
//! | `gpt2`, `default` or absent | ByteLevel with the GPT-2 regex |
//! | `smollm` | Digits (one token per digit), then ByteLevel |
//! | `llama-bpe` / `llama3` | Llama 3 Split regex, then ByteLevel without its regex |
//!
//! Tokens of type 3 (control) become special added tokens, type 4 (user-defined) plain added
//! tokens. SentencePiece (`llama`) and other tokenizer models are rejected with the name of
//! the field; they need a different conversion.

use std::path::Path;

use candle_core::quantized::gguf_file::{Content, Value};
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::processors::sequence::Sequence as PostSequence;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::Tokenizer;
use tokenizers::{AddedToken, PostProcessorWrapper, PreTokenizerWrapper, SplitDelimiterBehavior};

use super::gguf::Meta;
use crate::error::{ModelError, Result};
use crate::tokenizer::{dedup, JudgeTokenizer, SpecialIds};

/// llama.cpp's token types (`llama_token_type`).
const TOKEN_CONTROL: i64 = 3;
const TOKEN_USER_DEFINED: i64 = 4;

/// The Llama 3 pre-tokenizer regex, as in Meta's `tokenizer.json`.
const LLAMA3_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The pre-tokenizer families we can rebuild.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PreType {
    Gpt2,
    SmolLm,
    Llama3,
}

impl PreType {
    fn parse(name: Option<&str>) -> Option<Self> {
        match name {
            None | Some("gpt2") | Some("default") => Some(Self::Gpt2),
            Some("smollm") => Some(Self::SmolLm),
            Some("llama-bpe") | Some("llama3") => Some(Self::Llama3),
            Some(_) => None,
        }
    }
}

/// Builds the tokenizer, its special ids and chat template from GGUF metadata.
pub(crate) fn tokenizer_from_gguf(path: &Path, content: &Content) -> Result<JudgeTokenizer> {
    let meta = Meta { path, content };
    let bad = |msg: String| ModelError::Tokenizer {
        path: path.display().to_string(),
        msg,
    };

    let model = meta.str("tokenizer.ggml.model")?;
    if model != "gpt2" {
        return Err(bad(format!(
            "tokenizer.ggml.model = {model:?} is not supported (only \"gpt2\", byte-level BPE)"
        )));
    }
    let pre_name = meta.opt_str("tokenizer.ggml.pre")?;
    let pre = PreType::parse(pre_name).ok_or_else(|| {
        bad(format!(
            "tokenizer.ggml.pre = {:?} is not supported (supported: gpt2, default, smollm, \
             llama-bpe)",
            pre_name.unwrap_or_default()
        ))
    })?;
    if matches!(pre_name, None | Some("default")) {
        tracing::warn!(
            "{}: tokenizer.ggml.pre is {:?}; using the GPT-2 pre-tokenizer",
            path.display(),
            pre_name
        );
    }

    let tokens = meta.str_array("tokenizer.ggml.tokens")?;
    let merges = meta
        .str_array("tokenizer.ggml.merges")?
        .iter()
        .enumerate()
        .map(|(i, m)| {
            m.split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .ok_or_else(|| bad(format!("tokenizer.ggml.merges[{i}] = {m:?} has no space")))
        })
        .collect::<Result<Vec<_>>>()?;
    let types = match meta.get("tokenizer.ggml.token_type") {
        None => vec![1; tokens.len()],
        Some(_) => meta.int_array("tokenizer.ggml.token_type")?,
    };
    if types.len() != tokens.len() {
        return Err(bad(format!(
            "tokenizer.ggml.token_type has {} entries but tokenizer.ggml.tokens has {}",
            types.len(),
            tokens.len()
        )));
    }

    let vocab: Vocab = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.to_string(), i as u32))
        .collect();
    if vocab.len() != tokens.len() {
        tracing::warn!(
            "{}: tokenizer.ggml.tokens has {} duplicate entries; the last id of each wins",
            path.display(),
            tokens.len() - vocab.len()
        );
    }
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .ignore_merges(pre == PreType::Llama3)
        .build()
        .map_err(|e| bad(format!("building the BPE model: {e}")))?;
    let mut tok = Tokenizer::new(bpe);
    tok.with_pre_tokenizer(Some(pre_tokenizer(pre).map_err(&bad)?));
    tok.with_decoder(Some(ByteLevelDecoder::default()));

    let id_of = |key: &str| -> Result<Option<u32>> {
        match meta.opt_int(key)? {
            Some(id) if (0..tokens.len() as i64).contains(&id) => Ok(Some(id as u32)),
            Some(id) => Err(bad(format!(
                "{key} = {id} is outside the {} tokens",
                tokens.len()
            ))),
            None => Ok(None),
        }
    };
    let bos = id_of("tokenizer.ggml.bos_token_id")?;
    let add_bos = matches!(
        meta.get("tokenizer.ggml.add_bos_token"),
        Some(Value::Bool(true))
    );
    tok.with_post_processor(Some(post_processor(add_bos, bos, &tokens).map_err(&bad)?));

    let added = |kind: i64, special: bool| -> Vec<AddedToken> {
        tokens
            .iter()
            .zip(&types)
            .filter(|(_, &t)| t == kind)
            .map(|(s, _)| AddedToken::from(s.to_string(), special).normalized(false))
            .collect()
    };
    tok.add_special_tokens(added(TOKEN_CONTROL, true))
        .map_err(|e| bad(format!("adding control tokens: {e}")))?;
    tok.add_tokens(added(TOKEN_USER_DEFINED, false))
        .map_err(|e| bad(format!("adding user-defined tokens: {e}")))?;

    let mut eos = Vec::new();
    for key in [
        "tokenizer.ggml.eos_token_id",
        "tokenizer.ggml.eot_token_id",
        "tokenizer.ggml.eom_token_id",
    ] {
        eos.extend(id_of(key)?);
    }
    let special = SpecialIds {
        bos,
        eos: dedup(eos),
        pad: id_of("tokenizer.ggml.padding_token_id")?,
    };
    let chat_template = meta.opt_str("tokenizer.chat_template")?.map(str::to_string);
    Ok(JudgeTokenizer::from_parts(
        tok,
        special,
        chat_template,
        path,
    ))
}

fn pre_tokenizer(pre: PreType) -> std::result::Result<PreTokenizerWrapper, String> {
    Ok(match pre {
        PreType::Gpt2 => ByteLevel::new(false, true, true).into(),
        PreType::SmolLm => Sequence::new(vec![
            Digits::new(true).into(),
            ByteLevel::new(false, true, true).into(),
        ])
        .into(),
        PreType::Llama3 => {
            let split = Split::new(
                SplitPattern::Regex(LLAMA3_REGEX.into()),
                SplitDelimiterBehavior::Isolated,
                false,
            )
            .map_err(|e| format!("compiling the Llama 3 regex: {e}"))?;
            Sequence::new(vec![
                split.into(),
                ByteLevel::new(false, true, false).into(),
            ])
            .into()
        }
    })
}

/// ByteLevel (offsets only), plus a bos template when the GGUF asks for a bos token.
fn post_processor(
    add_bos: bool,
    bos: Option<u32>,
    tokens: &[&str],
) -> std::result::Result<PostProcessorWrapper, String> {
    let byte_level = ByteLevel::new(true, false, true);
    let Some(bos) = bos.filter(|_| add_bos) else {
        return Ok(byte_level.into());
    };
    let name = tokens[bos as usize];
    let template = TemplateProcessing::builder()
        .try_single(format!("{name} $A"))
        .and_then(|b| b.try_pair(format!("{name} $A {name} $B")))
        .map_err(|e| format!("bos template: {e}"))?
        .special_tokens(vec![(name.to_string(), bos)])
        .build()
        .map_err(|e| format!("bos template: {e}"))?;
    Ok(PostSequence::new(vec![byte_level.into(), template.into()]).into())
}
