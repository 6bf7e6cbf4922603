//! Loaders for preference and correctness datasets, each from its published format.
//!
//! One entry point, [`load`], takes a [`DataFormat`] (parsed from its name: `jsonl`,
//! `hh-rlhf`, `pandalm`, `judgebench`, `llmbar`, `rewardbench`, `libra`) and returns a
//! [`Dataset`] plus a [`LoadReport`]. Each format's module documents its schema and mapping.
//!
//! Rules shared by every loader:
//! - Files ending in `.gz` are gunzipped (all gzip members). A file starting with `[` is a
//!   JSON list (records are located by 0-based element index), anything else JSONL (1-based
//!   line numbers; blank lines are not records; invalid UTF-8 is an error of its line).
//! - Responses and questions must be non-blank; the two responses of a pair must differ; ids
//!   must be unique. Fields a format does not use are ignored.
//! - A bad record is a [`DataError`] naming the file, location and field,
//!   unless [`LoadOptions::skip_invalid`] is set: then it is counted in
//!   [`LoadReport::skipped`] with its reason. Nothing is dropped silently.

pub(crate) mod fields;
mod hh_rlhf;
mod jsonl;
mod judgebench;
mod libra;
mod llmbar;
mod pandalm;
mod rewardbench;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{DataError, Location, Result};
use crate::records::{PairwiseItem, PointwiseItem};

pub use hh_rlhf::split_transcript;
pub use pandalm::majority_vote;

/// A dataset format, selected by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DataFormat {
    /// Our generic schema, pairwise or pointwise (see the `jsonl` section of the crate docs).
    Jsonl,
    /// Anthropic hh-rlhf `chosen`/`rejected` transcripts.
    HhRlhf,
    /// The PandaLM human-annotated test set.
    Pandalm,
    /// JudgeBench pairs.
    Judgebench,
    /// LLMBar pairs.
    Llmbar,
    /// RewardBench rows.
    Rewardbench,
    /// Libra Bench pointwise correctness items.
    Libra,
}

impl DataFormat {
    /// Every format, in the order of the docs.
    pub const ALL: [DataFormat; 7] = [
        DataFormat::Jsonl,
        DataFormat::HhRlhf,
        DataFormat::Pandalm,
        DataFormat::Judgebench,
        DataFormat::Llmbar,
        DataFormat::Rewardbench,
        DataFormat::Libra,
    ];

    /// The name used in configs and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            DataFormat::Jsonl => "jsonl",
            DataFormat::HhRlhf => "hh-rlhf",
            DataFormat::Pandalm => "pandalm",
            DataFormat::Judgebench => "judgebench",
            DataFormat::Llmbar => "llmbar",
            DataFormat::Rewardbench => "rewardbench",
            DataFormat::Libra => "libra",
        }
    }
}

impl fmt::Display for DataFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DataFormat {
    type Err = DataError;

    fn from_str(s: &str) -> Result<Self> {
        DataFormat::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = DataFormat::ALL.iter().map(|f| f.name()).collect();
                DataError::config(
                    "format",
                    format!("unknown format `{s}`; expected one of {}", names.join(", ")),
                )
            })
    }
}

/// How to load. `Default`: fail on the first bad record, no limit.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoadOptions {
    /// Skip bad records (counted in [`LoadReport::skipped`]) instead of failing. Default false.
    pub skip_invalid: bool,
    /// Stop after this many records are loaded. Default `None` (all).
    pub limit: Option<usize>,
}

/// One record left out under [`LoadOptions::skip_invalid`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    /// Where it is.
    pub location: Location,
    /// Why (the field and the problem).
    pub reason: String,
}

/// What a load did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadReport {
    /// The file read.
    pub path: PathBuf,
    /// Its format.
    pub format: DataFormat,
    /// Records loaded.
    pub loaded: usize,
    /// Records left out, with reasons (only with `skip_invalid`).
    pub skipped: Vec<Skipped>,
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}): loaded {}, skipped {}",
            self.path.display(),
            self.format,
            self.loaded,
            self.skipped.len()
        )?;
        for s in self.skipped.iter().take(5) {
            write!(f, "\n  {}: {}", s.location, s.reason)?;
        }
        if self.skipped.len() > 5 {
            write!(f, "\n  … and {} more", self.skipped.len() - 5)?;
        }
        Ok(())
    }
}

/// Loaded records: pairs for preference formats, single responses for correctness formats.
#[derive(Debug, Clone, PartialEq)]
pub enum Dataset {
    /// Preference pairs.
    Pairwise(Vec<PairwiseItem>),
    /// Labelled single responses.
    Pointwise(Vec<PointwiseItem>),
}

impl Dataset {
    /// Number of records.
    pub fn len(&self) -> usize {
        match self {
            Dataset::Pairwise(v) => v.len(),
            Dataset::Pointwise(v) => v.len(),
        }
    }

    /// Whether there are no records.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The pairs, or `None` for a pointwise dataset.
    pub fn into_pairwise(self) -> Option<Vec<PairwiseItem>> {
        match self {
            Dataset::Pairwise(v) => Some(v),
            Dataset::Pointwise(_) => None,
        }
    }

    /// The single responses, or `None` for a pairwise dataset.
    pub fn into_pointwise(self) -> Option<Vec<PointwiseItem>> {
        match self {
            Dataset::Pointwise(v) => Some(v),
            Dataset::Pairwise(_) => None,
        }
    }
}

/// Loads `path` as `format`.
///
/// # Errors
/// [`DataError::Io`] when the file cannot be read, [`DataError::Json`] for malformed JSON and
/// [`DataError::Record`] for a bad record (the last two only without `skip_invalid`, except a
/// JSON list that does not parse at all, which is always an error).
pub fn load(path: &Path, format: DataFormat, opts: &LoadOptions) -> Result<(Dataset, LoadReport)> {
    let raw = fields::read_records(path)?;
    let (dataset, skipped) = match format {
        DataFormat::Jsonl => jsonl::load(path, raw, opts)?,
        DataFormat::HhRlhf => pairs(hh_rlhf::load(path, raw, opts)?),
        DataFormat::Pandalm => pairs(pandalm::load(path, raw, opts)?),
        DataFormat::Judgebench => pairs(judgebench::load(path, raw, opts)?),
        DataFormat::Llmbar => pairs(llmbar::load(path, raw, opts)?),
        DataFormat::Rewardbench => pairs(rewardbench::load(path, raw, opts)?),
        DataFormat::Libra => {
            let (items, skipped) = libra::load(path, raw, opts)?;
            (Dataset::Pointwise(items), skipped)
        }
    };
    let report = LoadReport {
        path: path.to_path_buf(),
        format,
        loaded: dataset.len(),
        skipped,
    };
    Ok((dataset, report))
}

/// [`load`] for a format that must yield pairs.
///
/// # Errors
/// As [`load`], plus [`DataError::Config`] when the file holds pointwise records.
pub fn load_pairwise(
    path: &Path,
    format: DataFormat,
    opts: &LoadOptions,
) -> Result<(Vec<PairwiseItem>, LoadReport)> {
    let (dataset, report) = load(path, format, opts)?;
    match dataset {
        Dataset::Pairwise(items) => Ok((items, report)),
        Dataset::Pointwise(_) => Err(DataError::config(
            "format",
            format!(
                "{} holds pointwise records, pairs were expected",
                path.display()
            ),
        )),
    }
}

type Loaded<T> = (Vec<T>, Vec<Skipped>);

fn pairs(loaded: Loaded<PairwiseItem>) -> (Dataset, Vec<Skipped>) {
    (Dataset::Pairwise(loaded.0), loaded.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse_by_name_and_round_trip() {
        for f in DataFormat::ALL {
            assert_eq!(f.name().parse::<DataFormat>().ok(), Some(f));
            let json = serde_json::to_string(&f).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", f.name()));
        }
        let err = "csv".parse::<DataFormat>().err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("unknown format `csv`")));
    }

    #[test]
    fn load_options_reject_unknown_keys() {
        let r: std::result::Result<LoadOptions, _> = serde_json::from_str(r#"{"skip": true}"#);
        assert!(r.is_err());
    }
}
