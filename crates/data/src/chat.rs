//! Chat formatting through the model's own chat template.
//!
//! The template string comes from `tokenizer_config.json` (`chat_template`) or GGUF metadata
//! (`tokenizer.chat_template`) and is rendered with minijinja configured like Hugging Face's
//! sandboxed Jinja environment: `trim_blocks` and `lstrip_blocks` on, Python string methods
//! (`.strip()`, `.startswith()`, …) through `minijinja-contrib`'s pycompat, and a
//! `raise_exception(msg)` function that fails the render with `msg`. Variables: `messages`
//! (`{role, content}` list), `add_generation_prompt`, `bos_token`, `eos_token`.
//!
//! The environment is sandboxed: it has no loader, so `{% include %}`, `{% import %}` and
//! `{% extends %}` cannot reach the filesystem (they fail to find any template but the chat
//! template itself). A render may run at most [`TEMPLATE_FUEL`] instructions, so loops over
//! huge ranges and exponential recursion fail ("engine ran out of fuel") instead of hanging.
//! Not provided: `strftime_now` and `tools`/`documents` (templates that
//! test for them take their fallback branch), so renders stay deterministic.
//!
//! With no template, [`ChatTemplate::chatml`] is the fallback: plain ChatML with no default
//! system prompt.

use std::path::Path;

use minijinja::{context, Environment, Error, ErrorKind};
use serde_json::Value;

use crate::error::{DataError, Result};
use crate::records::Message;

/// The ChatML template used when a model ships none.
pub const CHATML_TEMPLATE: &str = "{% for message in messages %}{{ '<|im_start|>' + \
message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}{% endfor %}\
{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

const NAME: &str = "chat_template";

/// The most template instructions one render may run (minijinja's fuel). Real chat
/// templates use a few dozen per message, so this allows conversations of tens of
/// thousands of turns, and stops a hostile template well within a second.
pub const TEMPLATE_FUEL: u64 = 1_000_000;

/// The special tokens a chat template may print.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpecialTokens {
    /// Beginning of sequence (`<|begin_of_text|>` for Llama 3; empty when none).
    pub bos_token: String,
    /// End of sequence.
    pub eos_token: String,
}

/// A compiled chat template.
#[derive(Debug, Clone)]
pub struct ChatTemplate {
    env: Environment<'static>,
    tokens: SpecialTokens,
    fallback: bool,
}

impl ChatTemplate {
    /// Compiles a Hugging Face chat template.
    ///
    /// # Errors
    /// [`DataError::Template`] when the template does not compile.
    pub fn new(source: &str, tokens: SpecialTokens) -> Result<Self> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_fuel(Some(TEMPLATE_FUEL));
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |msg: String| -> std::result::Result<(), Error> {
                Err(Error::new(ErrorKind::InvalidOperation, msg))
            },
        );
        env.add_template_owned(NAME, source.to_string())
            .map_err(|e| DataError::template(NAME, &e, Some(source)))?;
        Ok(ChatTemplate {
            env,
            tokens,
            fallback: false,
        })
    }

    /// Plain ChatML, the fallback for models without a template.
    pub fn chatml() -> Self {
        match Self::new(CHATML_TEMPLATE, SpecialTokens::default()) {
            Ok(t) => ChatTemplate {
                fallback: true,
                ..t
            },
            // The constant compiles (tested); an empty environment keeps this infallible.
            Err(_) => ChatTemplate {
                env: Environment::new(),
                tokens: SpecialTokens::default(),
                fallback: true,
            },
        }
    }

    /// Reads `chat_template`, `bos_token` and `eos_token` from the text of a
    /// `tokenizer_config.json`. A missing or `null` template gives [`ChatTemplate::chatml`]; a
    /// list of named templates uses the one named `default` (else the first). Special tokens
    /// may be strings or `{"content": …}` objects.
    ///
    /// # Errors
    /// [`DataError::Template`] when the JSON or the template is invalid.
    pub fn from_tokenizer_config(json: &str) -> Result<Self> {
        let bad = |message: String| DataError::Template {
            name: "tokenizer_config.json".into(),
            message,
        };
        let cfg: Value = serde_json::from_str(json).map_err(|e| bad(e.to_string()))?;
        let token = |key: &str| match cfg.get(key) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Object(o)) => o
                .get("content")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            _ => String::new(),
        };
        let tokens = SpecialTokens {
            bos_token: token("bos_token"),
            eos_token: token("eos_token"),
        };
        let source = match cfg.get("chat_template") {
            None | Some(Value::Null) => return Ok(Self::chatml()),
            Some(Value::String(s)) => s.clone(),
            Some(Value::Array(named)) => named
                .iter()
                .find(|n| n.get("name").and_then(Value::as_str) == Some("default"))
                .or_else(|| named.first())
                .and_then(|n| n.get("template"))
                .and_then(Value::as_str)
                .ok_or_else(|| bad("`chat_template` list has no template".into()))?
                .to_string(),
            Some(_) => return Err(bad("`chat_template` is neither a string nor a list".into())),
        };
        Self::new(&source, tokens)
    }

    /// [`ChatTemplate::from_tokenizer_config`] on a file.
    ///
    /// # Errors
    /// [`DataError::Io`] when the file cannot be read, else as `from_tokenizer_config`.
    pub fn from_tokenizer_config_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| DataError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_tokenizer_config(&text)
    }

    /// Whether this is the ChatML fallback rather than a model's own template.
    pub fn is_fallback(&self) -> bool {
        self.fallback
    }

    /// Formats `messages`; with `add_generation_prompt` the text ends where the assistant's
    /// reply begins.
    ///
    /// # Errors
    /// [`DataError::Template`] when the template fails (including `raise_exception`).
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        let t = self
            .env
            .get_template(NAME)
            .map_err(|e| DataError::template(NAME, &e, None))?;
        let ctx = context! {
            messages,
            add_generation_prompt,
            bos_token => &self.tokens.bos_token,
            eos_token => &self.tokens.eos_token,
        };
        t.render(ctx)
            .map_err(|e| DataError::template(NAME, &e, Some(t.source())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type R = std::result::Result<(), Box<dyn std::error::Error>>;

    /// SmolLM2-135M-Instruct's `chat_template`, verbatim from its tokenizer_config.json.
    const SMOLLM2: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    /// Meta-Llama-3-8B-Instruct's `chat_template`.
    const LLAMA3: &str = "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";

    #[test]
    fn smollm2_template_adds_its_default_system_turn() -> R {
        let t = ChatTemplate::new(SMOLLM2, SpecialTokens::default())?;
        let s = t.render(&[Message::user("Hi")], true)?;
        // Golden written by hand from the template's definition.
        let golden = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n";
        assert_eq!(s, golden);
        let no_gen = t.render(&[Message::system("S"), Message::user("Hi")], false)?;
        assert_eq!(
            no_gen,
            "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        );
        Ok(())
    }

    #[test]
    fn llama3_template_uses_bos_and_trims() -> R {
        let tokens = SpecialTokens {
            bos_token: "<|begin_of_text|>".into(),
            eos_token: "<|eot_id|>".into(),
        };
        let t = ChatTemplate::new(LLAMA3, tokens)?;
        let s = t.render(&[Message::user("  Hi \n")], true)?;
        let golden = "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n";
        assert_eq!(s, golden);
        Ok(())
    }

    #[test]
    fn chatml_fallback_has_no_system_turn() -> R {
        let t = ChatTemplate::chatml();
        assert!(t.is_fallback());
        let s = t.render(&[Message::user("Hi")], true)?;
        assert_eq!(s, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
        Ok(())
    }

    #[test]
    fn python_methods_and_raise_exception_work() -> R {
        let src = "{% if messages[0]['role'] != 'user' %}{{ raise_exception('first turn must be user') }}{% endif %}\
                   {% for m in messages %}[{{ m['content'].strip().upper() }}]{% endfor %}";
        let t = ChatTemplate::new(src, SpecialTokens::default())?;
        assert_eq!(t.render(&[Message::user(" hi ")], false)?, "[HI]");
        let err = t.render(&[Message::assistant("x")], false).err();
        let msg = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains("first turn must be user"), "{msg}");
        Ok(())
    }

    #[test]
    fn includes_cannot_reach_the_filesystem() -> R {
        let t = ChatTemplate::new("{% include '/etc/passwd' %}", SpecialTokens::default())?;
        let msg = t
            .render(&[Message::user("x")], false)
            .err()
            .map(|e| e.to_string());
        assert!(msg.is_some_and(|m| m.contains("not found")));
        Ok(())
    }

    #[test]
    fn tokenizer_config_reads_template_and_added_tokens() -> R {
        let cfg = serde_json::json!({
            "bos_token": {"content": "<s>", "lstrip": false},
            "eos_token": "</s>",
            "chat_template": [{"name": "tool_use", "template": "T"},
                              {"name": "default", "template": "{{ bos_token }}{{ messages[0].content }}{{ eos_token }}"}],
        });
        let t = ChatTemplate::from_tokenizer_config(&cfg.to_string())?;
        assert_eq!(t.render(&[Message::user("x")], false)?, "<s>x</s>");
        let none = ChatTemplate::from_tokenizer_config("{}")?;
        assert!(none.is_fallback());
        assert!(ChatTemplate::from_tokenizer_config("{").is_err());
        Ok(())
    }
}
