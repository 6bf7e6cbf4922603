//! [`JudgeTokenizer`]: a `tokenizers::Tokenizer` plus what a judge needs around it — the
//! special ids (bos, eos list, pad), the chat template, and a check against the model's vocab.
//!
//! Behaviour:
//! - [`JudgeTokenizer::encode`] never adds special tokens (no bos), but special tokens written
//!   in the text (`<|im_start|>`) always become their ids: chat templates render them as text.
//! - eos ids are the union of `config.json`, `generation_config.json` and
//!   `tokenizer_config.json`'s `eos_token` (instruct models often list the end-of-turn token
//!   in only one of them), or the GGUF's eos/eot/eom ids.
//! - The chat template comes from `tokenizer_config.json` (`chat_template`, a string or the
//!   `default` entry of a list), `chat_template.jinja`, or the GGUF's `tokenizer.chat_template`.

use std::path::{Path, PathBuf};

use serde_json::Value;
use tokenizers::{
    DecodeStream, DecoderWrapper, ModelWrapper, NormalizerWrapper, PostProcessorWrapper,
    PreTokenizerWrapper, Tokenizer,
};

use crate::config::ModelConfig;
use crate::error::{ModelError, Result};

/// The ids a judge needs besides the vocabulary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpecialIds {
    /// Beginning of sequence (not added by [`JudgeTokenizer::encode`]).
    pub bos: Option<u32>,
    /// Every id that ends a generation (deduplicated, in order of discovery).
    pub eos: Vec<u32>,
    /// The padding id the checkpoint names, if any (see [`JudgeTokenizer::pad_id`]).
    pub pad: Option<u32>,
}

/// A tokenizer with its special ids and chat template.
#[derive(Clone)]
pub struct JudgeTokenizer {
    inner: Tokenizer,
    special: SpecialIds,
    chat_template: Option<String>,
    origin: PathBuf,
    /// Highest id (vocab and added tokens); cached because the vocab map is rebuilt per call.
    max_id: Option<u32>,
}

impl std::fmt::Debug for JudgeTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JudgeTokenizer")
            .field("origin", &self.origin)
            .field("vocab_size", &self.vocab_size())
            .field("special", &self.special)
            .field(
                "chat_template",
                &self.chat_template.as_ref().map(|t| t.len()),
            )
            .finish()
    }
}

impl JudgeTokenizer {
    /// Wraps an already built tokenizer. `origin` is the file (or GGUF) errors will name.
    pub fn from_parts(
        inner: Tokenizer,
        special: SpecialIds,
        chat_template: Option<String>,
        origin: impl Into<PathBuf>,
    ) -> Self {
        let max_id = inner.get_vocab(true).into_values().max();
        Self {
            inner,
            special,
            chat_template,
            origin: origin.into(),
            max_id,
        }
    }

    /// Reads `tokenizer.json` and, when present, `tokenizer_config.json`,
    /// `generation_config.json` and `chat_template.jinja` from an HF model directory. The
    /// special ids of `config` (from `config.json`) come first.
    pub fn from_hf_dir(dir: &Path, config: &ModelConfig) -> Result<Self> {
        let tok_path = dir.join("tokenizer.json");
        if !tok_path.is_file() {
            return Err(ModelError::Tokenizer {
                path: tok_path.display().to_string(),
                msg: "not found (only fast tokenizers in tokenizer.json are supported; \
                      tokenizer.model / vocab.json are not)"
                    .into(),
            });
        }
        // `tokenizers` panics (unwraps) on some malformed files instead of erroring.
        let inner = crate::loading::catch_parser_panic(|| Tokenizer::from_file(&tok_path))
            .map_err(|p| format!("malformed (the tokenizers crate panicked: {p})"))
            .and_then(|r| r.map_err(|e| e.to_string()))
            .map_err(|msg| ModelError::Tokenizer {
                path: tok_path.display().to_string(),
                msg,
            })?;

        let tc_path = dir.join("tokenizer_config.json");
        let tc = read_json_opt(&tc_path)?;
        let gen_path = dir.join("generation_config.json");
        let gen = read_json_opt(&gen_path)?;

        // A token named in tokenizer_config.json that the tokenizer doesn't know is a broken
        // checkpoint: say so rather than silently dropping an eos id.
        let named_id = |field: &str| -> Result<Option<u32>> {
            let Some(content) = tc.as_ref().and_then(|v| token_content(v.get(field)?)) else {
                return Ok(None);
            };
            inner
                .token_to_id(&content)
                .map(Some)
                .ok_or_else(|| ModelError::Tokenizer {
                    path: tc_path.display().to_string(),
                    msg: format!("{field} {content:?} is not in {}", tok_path.display()),
                })
        };
        let gen_ids = |field: &str| -> Vec<u32> {
            gen.as_ref()
                .and_then(|g| g.get(field))
                .map(json_ids)
                .unwrap_or_default()
        };

        let mut eos = config.eos_token_ids.clone();
        eos.extend(gen_ids("eos_token_id"));
        eos.extend(named_id("eos_token")?);
        let special = SpecialIds {
            bos: config
                .bos_token_id
                .or(gen_ids("bos_token_id").first().copied())
                .or(named_id("bos_token")?),
            eos: dedup(eos),
            pad: config
                .pad_token_id
                .or(gen_ids("pad_token_id").first().copied())
                .or(named_id("pad_token")?),
        };

        let jinja_path = dir.join("chat_template.jinja");
        let chat_template = match tc.as_ref().and_then(|v| v.get("chat_template")) {
            Some(t) => template_from_json(t),
            None if jinja_path.is_file() => Some(
                std::fs::read_to_string(&jinja_path).map_err(|e| ModelError::io(&jinja_path, e))?,
            ),
            None => None,
        };
        Ok(Self::from_parts(inner, special, chat_template, tok_path))
    }

    /// The wrapped `tokenizers` tokenizer.
    pub fn inner(&self) -> &Tokenizer {
        &self.inner
    }

    /// The file this tokenizer was read from (a `tokenizer.json` or a `.gguf`).
    pub fn origin(&self) -> &Path {
        &self.origin
    }

    /// Token ids of `text`, adding no special tokens; special tokens spelled out in the text
    /// (`<|im_start|>`) become their ids.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        self.encode_with(text, false)
    }

    /// Like [`encode`](Self::encode), but `add_special_tokens` runs the post-processor (which
    /// adds bos for tokenizers that want it).
    pub fn encode_with(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        self.inner
            .encode_fast(text, add_special_tokens)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| self.err(format!("encoding {} bytes: {e}", text.len())))
    }

    /// [`encode`](Self::encode) for many texts (in parallel inside `tokenizers`).
    pub fn encode_batch(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>> {
        let encs = self
            .inner
            .encode_batch_fast(texts.to_vec(), false)
            .map_err(|e| self.err(format!("encoding a batch of {}: {e}", texts.len())))?;
        Ok(encs.into_iter().map(|e| e.get_ids().to_vec()).collect())
    }

    /// Text of `ids`; `skip_special` drops special tokens (eos, `<|im_end|>`, …).
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        self.inner
            .decode(ids, skip_special)
            .map_err(|e| self.err(format!("decoding {} ids: {e}", ids.len())))
    }

    /// An incremental decoder: feed ids one at a time, read the text so far. Cheaper than
    /// decoding a growing id list (each step decodes only a short window).
    pub fn stream(&self, skip_special: bool) -> TextStream<'_> {
        TextStream {
            inner: self.inner.decode_stream(skip_special),
            text: String::new(),
            origin: &self.origin,
        }
    }

    /// The id of a token string (`"<|im_end|>"`, `"Ġthe"`).
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The token string of an id.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// Number of ids the tokenizer can produce: highest id + 1, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.max_id.map_or(0, |m| m as usize + 1)
    }

    /// bos, eos and pad ids together.
    pub fn special_ids(&self) -> &SpecialIds {
        &self.special
    }

    /// The beginning-of-sequence id, if any.
    pub fn bos_id(&self) -> Option<u32> {
        self.special.bos
    }

    /// Every id that ends a generation.
    pub fn eos_ids(&self) -> &[u32] {
        &self.special.eos
    }

    /// The padding id: `pad` when set, else the first eos id.
    pub fn pad_id(&self) -> Option<u32> {
        self.special.pad.or(self.special.eos.first().copied())
    }

    /// The Jinja chat template, if the model ships one.
    pub fn chat_template(&self) -> Option<&str> {
        self.chat_template.as_deref()
    }

    /// Errors when the tokenizer can produce an id the model has no row for, or a special id
    /// is out of range. `model_origin` is the model file or directory (for the message).
    pub fn check_matches(&self, config: &ModelConfig, model_origin: &Path) -> Result<()> {
        let vocab = self.vocab_size();
        if vocab > config.vocab_size {
            return Err(ModelError::VocabMismatch {
                tokenizer: self.origin.display().to_string(),
                tokenizer_vocab: self.inner.get_vocab(true).len(),
                max_id: self.max_id.unwrap_or(0),
                model: model_origin.display().to_string(),
                model_vocab: config.vocab_size,
            });
        }
        let named = [("bos", self.special.bos), ("pad", self.special.pad)];
        let eos = self.special.eos.iter().map(|&id| ("eos", Some(id)));
        for (what, id) in named.into_iter().chain(eos) {
            if let Some(id) = id.filter(|&id| id as usize >= config.vocab_size) {
                return Err(self.err(format!(
                    "{what} id {id} is outside the model's vocab_size {} ({})",
                    config.vocab_size,
                    model_origin.display()
                )));
            }
        }
        Ok(())
    }

    /// Writes `tokenizer.json` and a `tokenizer_config.json` (special tokens, chat template)
    /// that transformers and [`from_hf_dir`](Self::from_hf_dir) read back.
    pub fn save_to_dir(&self, dir: &Path) -> Result<()> {
        let tok_path = dir.join("tokenizer.json");
        let json = self
            .inner
            .to_string(false)
            .map_err(|e| self.err(format!("serializing: {e}")))?;
        std::fs::write(&tok_path, json).map_err(|e| ModelError::io(&tok_path, e))?;

        let name = |id: Option<u32>| id.and_then(|id| self.id_to_token(id));
        let mut tc = serde_json::json!({
            "tokenizer_class": "PreTrainedTokenizerFast",
            "clean_up_tokenization_spaces": false,
            "add_bos_token": false,
        });
        let m = tc
            .as_object_mut()
            .ok_or_else(|| self.err("internal: json"))?;
        let fields = [
            ("bos_token", name(self.special.bos)),
            ("eos_token", name(self.special.eos.first().copied())),
            ("pad_token", name(self.special.pad)),
            ("chat_template", self.chat_template.clone()),
        ];
        for (key, value) in fields {
            if let Some(v) = value {
                m.insert(key.into(), v.into());
            }
        }
        let tc_path = dir.join("tokenizer_config.json");
        let text = serde_json::to_string_pretty(&tc).map_err(|e| self.err(e.to_string()))?;
        std::fs::write(&tc_path, text).map_err(|e| ModelError::io(&tc_path, e))
    }

    fn err(&self, msg: impl Into<String>) -> ModelError {
        ModelError::Tokenizer {
            path: self.origin.display().to_string(),
            msg: msg.into(),
        }
    }
}

type InnerStream<'a> = DecodeStream<
    'a,
    ModelWrapper,
    NormalizerWrapper,
    PreTokenizerWrapper,
    PostProcessorWrapper,
    DecoderWrapper,
>;

/// Incremental decoding of one sequence (see [`JudgeTokenizer::stream`]).
pub struct TextStream<'a> {
    inner: InnerStream<'a>,
    text: String,
    origin: &'a Path,
}

impl TextStream<'_> {
    /// Adds one id; returns the new text it completed (empty while a multi-byte character is
    /// still incomplete).
    pub fn push(&mut self, id: u32) -> Result<&str> {
        let start = self.text.len();
        let chunk = self.inner.step(id).map_err(|e| ModelError::Tokenizer {
            path: self.origin.display().to_string(),
            msg: format!("decoding id {id}: {e}"),
        })?;
        if let Some(chunk) = chunk {
            self.text.push_str(&chunk);
        }
        Ok(&self.text[start..])
    }

    /// All text decoded so far.
    pub fn text(&self) -> &str {
        &self.text
    }
}

fn read_json_opt(path: &Path) -> Result<Option<Value>> {
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| ModelError::format(path, format!("invalid JSON: {e}")))
}

/// `"<|im_end|>"` or `{"content": "<|im_end|>", …}` (an AddedToken).
fn token_content(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content")?.as_str().map(str::to_string),
        _ => None,
    }
}

/// `2` or `[2, 7]`.
fn json_ids(v: &Value) -> Vec<u32> {
    let one = |v: &Value| v.as_u64().and_then(|x| u32::try_from(x).ok());
    match v {
        Value::Array(a) => a.iter().filter_map(one).collect(),
        v => one(v).into_iter().collect(),
    }
}

/// A template string, or the `default` entry of `[{"name": …, "template": …}]`.
fn template_from_json(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Array(list) => list
            .iter()
            .find(|e| e.get("name").and_then(Value::as_str) == Some("default"))
            .and_then(|e| e.get("template")?.as_str().map(str::to_string)),
        _ => None,
    }
}

pub(crate) fn dedup(ids: Vec<u32>) -> Vec<u32> {
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        if !out.contains(&id) {
            out.push(id);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_helpers() {
        assert_eq!(json_ids(&serde_json::json!(2)), vec![2]);
        assert_eq!(json_ids(&serde_json::json!([2, 7])), vec![2, 7]);
        assert_eq!(
            token_content(&serde_json::json!({"content": "<e>", "lstrip": false})),
            Some("<e>".into())
        );
        let list = serde_json::json!([
            {"name": "tool_use", "template": "T"},
            {"name": "default", "template": "D"}
        ]);
        assert_eq!(template_from_json(&list), Some("D".into()));
        assert_eq!(dedup(vec![2, 1, 2, 3, 1]), vec![2, 1, 3]);
    }
}
