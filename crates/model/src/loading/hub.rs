//! Hugging Face Hub models, resolved through the local HF cache first.
//!
//! The cache layout is the one `huggingface_hub` and `hf-hub` share:
//! `<cache>/models--org--name/refs/<revision>` holds a commit hash and
//! `<cache>/models--org--name/snapshots/<commit>/` the files. A revision may also be a commit
//! hash directly. The cache is `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else
//! `~/.cache/huggingface/hub`. Files missing from the cache are downloaded only when the
//! caller allows it; otherwise the error names the model id and the cache directory.

use std::path::{Path, PathBuf};

use hf_hub::{Repo, RepoType};

use super::safetensors::{INDEX_FILE, SINGLE_FILE};
use crate::error::{ModelError, Result};

/// Files a model directory needs besides its weights.
const REQUIRED: [&str; 2] = ["config.json", "tokenizer.json"];
/// Fetched when they exist; their absence is not an error.
const OPTIONAL: [&str; 3] = [
    "tokenizer_config.json",
    "generation_config.json",
    "chat_template.jinja",
];

/// The HF hub cache directory (`$HF_HUB_CACHE`, `$HF_HOME/hub`, `~/.cache/huggingface/hub`).
pub fn default_hf_cache() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("HF_HUB_CACHE") {
        return Ok(PathBuf::from(p));
    }
    if let Some(home) = std::env::var_os("HF_HOME") {
        return Ok(PathBuf::from(home).join("hub"));
    }
    dirs::home_dir()
        .map(|h| h.join(".cache").join("huggingface").join("hub"))
        .ok_or_else(|| {
            ModelError::InvalidArgument(
                "no home directory for the Hugging Face cache; set HF_HOME or HF_HUB_CACHE".into(),
            )
        })
}

/// The snapshot directory holding `id` at `revision`, downloading missing files when
/// `allow_download` is set.
pub fn resolve(id: &str, revision: &str, cache: &Path, allow_download: bool) -> Result<PathBuf> {
    let missing = match find_snapshot(id, revision, cache) {
        Some(dir) => match missing_files(&dir) {
            m if m.is_empty() => return Ok(dir),
            m => m,
        },
        None => vec![format!("snapshot for revision {revision:?}")],
    };
    if !allow_download {
        return Err(ModelError::HubMissing {
            id: id.to_string(),
            cache: cache.display().to_string(),
            msg: format!(
                "missing {}; downloads are disabled (unset HF_HUB_OFFLINE or allow downloads, \
                 or fill the cache with `huggingface-cli download {id}`)",
                missing.join(", ")
            ),
        });
    }
    download(id, revision, cache)
}

fn repo_dir(id: &str, cache: &Path) -> PathBuf {
    cache.join(Repo::new(id.to_string(), RepoType::Model).folder_name())
}

fn find_snapshot(id: &str, revision: &str, cache: &Path) -> Option<PathBuf> {
    let repo = repo_dir(id, cache);
    let commit = std::fs::read_to_string(repo.join("refs").join(revision))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| revision.to_string());
    let dir = repo.join("snapshots").join(commit);
    dir.is_dir().then_some(dir)
}

/// What `dir` lacks to be a loadable model directory (empty when complete).
fn missing_files(dir: &Path) -> Vec<String> {
    let mut missing: Vec<String> = REQUIRED
        .iter()
        .filter(|f| !dir.join(f).is_file())
        .map(|f| f.to_string())
        .collect();
    let index = dir.join(INDEX_FILE);
    if index.is_file() {
        match shard_names(&index) {
            Ok(shards) => missing.extend(shards.into_iter().filter(|s| !dir.join(s).is_file())),
            Err(_) => missing.push(format!("a readable {INDEX_FILE}")),
        }
    } else if !dir.join(SINGLE_FILE).is_file() {
        missing.push(format!("{SINGLE_FILE} (or {INDEX_FILE})"));
    }
    missing
}

fn shard_names(index: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(index).map_err(|e| ModelError::io(index, e))?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| ModelError::format(index, format!("invalid index: {e}")))?;
    let map = v
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| ModelError::format(index, "no weight_map object"))?;
    let mut shards: Vec<String> = map
        .values()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect();
    shards.sort();
    shards.dedup();
    Ok(shards)
}

/// Downloads the model's files into the cache with `hf-hub` and returns the snapshot dir.
fn download(id: &str, revision: &str, cache: &Path) -> Result<PathBuf> {
    let api_err = |msg: String| ModelError::HubApi {
        id: id.to_string(),
        msg,
    };
    let api = hf_hub::api::sync::ApiBuilder::from_cache(hf_hub::Cache::new(cache.to_path_buf()))
        .with_progress(false)
        .build()
        .map_err(|e| api_err(e.to_string()))?;
    let repo = api.repo(Repo::with_revision(
        id.to_string(),
        RepoType::Model,
        revision.to_string(),
    ));
    let get = |file: &str| repo.get(file).map_err(|e| api_err(format!("{file}: {e}")));
    let config = get(REQUIRED[0])?;
    get(REQUIRED[1])?;
    for file in OPTIONAL {
        // A 404 for an optional file is normal; anything else will resurface below.
        let _ = repo.get(file);
    }
    match repo.get(INDEX_FILE) {
        Ok(index) => {
            for shard in shard_names(&index)? {
                get(&shard)?;
            }
        }
        Err(_) => {
            get(SINGLE_FILE)?;
        }
    }
    config
        .parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| api_err(format!("unexpected cache path {}", config.display())))
}
