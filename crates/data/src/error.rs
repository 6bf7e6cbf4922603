//! The crate's error type. Every variant about a record names the file, the record's
//! [`Location`] (1-based line for JSONL, 0-based element index for JSON lists) and the field.

use std::fmt;
use std::path::PathBuf;

/// Where a record sits in its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Location {
    /// A JSONL line, 1-based (what editors show).
    Line(usize),
    /// An element of a top-level JSON list, 0-based (what `jq '.[i]'` takes).
    Element(usize),
    /// The file as a whole (for example a JSON list that does not parse).
    File,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Line(n) => write!(f, "line {n}"),
            Location::Element(i) => write!(f, "element {i}"),
            Location::File => write!(f, "whole file"),
        }
    }
}

/// Errors of thinkjudge-data.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// The file could not be opened or read (or a `.gz` file could not be decompressed).
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A line (JSONL) or the file (JSON list) is not valid JSON.
    #[error("{}: {location}: invalid JSON: {source}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// Where.
        location: Location,
        /// The parser's message (with its column).
        source: serde_json::Error,
    },
    /// A record is valid JSON but a field is missing, has the wrong type or a bad value.
    #[error("{}: {location}: field `{field}`: {problem}", path.display())]
    Record {
        /// The file.
        path: PathBuf,
        /// Where.
        location: Location,
        /// The field at fault (`-` when the record as a whole is).
        field: String,
        /// What is wrong, with the offending value where short.
        problem: String,
    },
    /// A template did not compile or render.
    #[error("template `{name}`: {message}")]
    Template {
        /// The template's name (built-in kind, file path or `chat_template`).
        name: String,
        /// minijinja's message, with line information when it has one.
        message: String,
    },
    /// A configuration value is out of range or inconsistent.
    #[error("config `{field}`: {problem}")]
    Config {
        /// The field, in the serde spelling.
        field: String,
        /// What is wrong and what is allowed.
        problem: String,
    },
}

impl DataError {
    /// Shorthand for [`DataError::Config`].
    pub fn config(field: &str, problem: impl Into<String>) -> Self {
        DataError::Config {
            field: field.to_string(),
            problem: problem.into(),
        }
    }

    /// A minijinja error, quoting the offending template text when `source` is known (a
    /// strict-mode "undefined value" does not name the variable otherwise).
    pub(crate) fn template(name: &str, err: &minijinja::Error, source: Option<&str>) -> Self {
        // minijinja's `Display` omits the source chain and line; `{:#}` includes both.
        let mut message = format!("{err:#}");
        if let Some(snippet) = err.range().and_then(|r| source?.get(r)) {
            message.push_str(&format!(" at `{snippet}`"));
        }
        DataError::Template {
            name: name.to_string(),
            message,
        }
    }
}

/// The crate's result alias.
pub type Result<T, E = DataError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_error_names_file_location_and_field() {
        let e = DataError::Record {
            path: PathBuf::from("data/x.jsonl"),
            location: Location::Line(7),
            field: "label".into(),
            problem: "expected \"A>B\", \"B>A\" or \"A=B\", found \"C\"".into(),
        };
        let s = e.to_string();
        assert!(
            s.starts_with("data/x.jsonl: line 7: field `label`: expected"),
            "{s}"
        );
        assert_eq!(Location::Element(3).to_string(), "element 3");
    }
}
