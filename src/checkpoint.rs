//! Atomic, verifiable checkpoint directories.
//!
//! A checkpoint of step 40 is built as `checkpoints/step-000040.tmp-<pid>/`, closed by a
//! `manifest.json` written last (every other file with its size and sha256), and only then
//! renamed to `checkpoints/step-000040/`. A crash therefore leaves either a complete
//! checkpoint or a `*.tmp-*` directory, which is never taken for a checkpoint. On resume
//! each candidate, newest first, is verified against its manifest (missing manifest, missing
//! or extra file, size or hash mismatch); a refused one is reported and the next older one
//! tried. What the directory holds (weights, optimizer, trainer state, config) is the
//! caller's business: [`save`] takes a closure that writes it.
//!
//! Old checkpoints are pruned by renaming them to `*.old-<pid>` before deleting them, so a
//! crash during the deletion leaves no half-deleted `step-*` directory either. Pruning only
//! considers checkpoints up to the step just saved: a newer, refused (corrupt) one left by an
//! earlier session cannot push out the checkpoint that was just written.
//!
//! Test hook, inert unless set: with [`PAUSE_BEFORE_MANIFEST_ENV`]`=<step>` in the environment,
//! the save of that step stops after the checkpoint's files are written and before its
//! manifest, prints [`PAUSE_MARKER`] to stderr and sleeps, so that `tests/crash.rs` can kill the
//! process in the middle of a checkpoint write.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Result, TrainError};

/// Name of the manifest inside a checkpoint.
pub const MANIFEST: &str = "manifest.json";
const FORMAT: u32 = 1;
const PREFIX: &str = "step-";
/// The test hook's environment variable (see the module docs): the step whose save pauses.
pub const PAUSE_BEFORE_MANIFEST_ENV: &str = "THINKJUDGE_TEST_PAUSE_BEFORE_MANIFEST";
/// What the test hook prints to stderr when it pauses.
pub const PAUSE_MARKER: &str = "checkpoint write paused before its manifest";

/// One file of a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestEntry {
    /// Path relative to the checkpoint directory, `/`-separated.
    pub path: String,
    /// Size in bytes.
    pub bytes: u64,
    /// Lowercase hex sha256 of the contents.
    pub sha256: String,
}

/// The last file of a checkpoint: what the others must be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Manifest format version.
    pub format: u32,
    /// The step the checkpoint was taken after.
    pub step: u64,
    /// Every other file, sorted by path.
    pub files: Vec<ManifestEntry>,
}

/// The directory name of step `step`'s checkpoint (`step-000040`).
pub fn dir_name(step: u64) -> String {
    format!("{PREFIX}{step:06}")
}

/// The step of a checkpoint directory name; `None` for anything else (temporary
/// `step-000040.tmp-123` directories included).
pub fn parse_dir_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix(PREFIX)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Writes the checkpoint of `step` into `checkpoints` atomically: `write` fills a temporary
/// directory, the manifest is added, the directory is renamed into place (replacing an
/// older checkpoint of the same step), and all but the newest `keep_last` checkpoints are
/// deleted. Returns the checkpoint's path. On failure the temporary directory is removed
/// and existing checkpoints are untouched.
///
/// # Errors
/// [`TrainError::Io`] from the file system, or whatever `write` returns.
pub fn save(
    checkpoints: &Path,
    step: u64,
    keep_last: usize,
    write: impl FnOnce(&Path) -> Result<()>,
) -> Result<PathBuf> {
    std::fs::create_dir_all(checkpoints).map_err(|e| TrainError::io(checkpoints, e))?;
    let name = dir_name(step);
    let tmp = checkpoints.join(format!("{name}.tmp-{}", std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| TrainError::io(&tmp, e))?;
    }
    let built = (|| {
        std::fs::create_dir(&tmp).map_err(|e| TrainError::io(&tmp, e))?;
        write(&tmp)?;
        pause_before_manifest(step);
        let manifest = Manifest {
            format: FORMAT,
            step,
            files: hash_files(&tmp)?,
        };
        let path = tmp.join(MANIFEST);
        let text =
            serde_json::to_string_pretty(&manifest).map_err(|e| TrainError::json(&path, &e))?;
        write_synced(&path, text.as_bytes())
    })();
    if let Err(e) = built {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    let dest = checkpoints.join(&name);
    if dest.exists() {
        let old = checkpoints.join(format!("{name}.old-{}", std::process::id()));
        std::fs::rename(&dest, &old).map_err(|e| TrainError::io(&dest, e))?;
        std::fs::rename(&tmp, &dest).map_err(|e| TrainError::io(&dest, e))?;
        let _ = std::fs::remove_dir_all(&old);
    } else {
        std::fs::rename(&tmp, &dest).map_err(|e| TrainError::io(&dest, e))?;
    }
    // Make the rename durable before older checkpoints are deleted.
    if let Ok(d) = File::open(checkpoints) {
        let _ = d.sync_all();
    }
    prune(checkpoints, step, keep_last)?;
    Ok(dest)
}

/// The test hook of the module docs.
fn pause_before_manifest(step: u64) {
    let wanted = std::env::var(PAUSE_BEFORE_MANIFEST_ENV).ok();
    if wanted.and_then(|v| v.trim().parse::<u64>().ok()) == Some(step) {
        eprintln!("{PAUSE_BEFORE_MANIFEST_ENV}: {PAUSE_MARKER} (step {step})");
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// Deletes all but the newest `keep_last` checkpoints of steps up to `saved` (renamed out of
/// the `step-*` namespace first, so a crash never leaves a half-deleted one).
fn prune(checkpoints: &Path, saved: u64, keep_last: usize) -> Result<()> {
    let mut steps = list(checkpoints)?;
    steps.retain(|c| c.0 <= saved);
    steps.sort_unstable_by_key(|c| std::cmp::Reverse(c.0));
    for (step, path) in steps.into_iter().skip(keep_last) {
        let old = checkpoints.join(format!("{}.old-{}", dir_name(step), std::process::id()));
        std::fs::rename(&path, &old).map_err(|e| TrainError::io(&path, e))?;
        std::fs::remove_dir_all(&old).map_err(|e| TrainError::io(&old, e))?;
    }
    Ok(())
}

/// A checkpoint's step and directory.
pub type StepDir = (u64, PathBuf);

/// Checkpoint directories by name (unverified), in no particular order.
pub fn list(checkpoints: &Path) -> Result<Vec<StepDir>> {
    if !checkpoints.exists() {
        return Ok(Vec::new());
    }
    let entries = std::fs::read_dir(checkpoints).map_err(|e| TrainError::io(checkpoints, e))?;
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| TrainError::io(checkpoints, e))?;
        let step = entry.file_name().to_str().and_then(parse_dir_name);
        if let Some(step) = step.filter(|_| entry.path().is_dir()) {
            out.push((step, entry.path()));
        }
    }
    Ok(out)
}

/// Removes temporary directories left by interrupted saves (`*.tmp-*`, `*.old-*`), with a
/// warning each. Call only while no other process writes to `checkpoints`.
pub fn remove_stale_temporaries(checkpoints: &Path) -> Result<()> {
    if !checkpoints.exists() {
        return Ok(());
    }
    let entries = std::fs::read_dir(checkpoints).map_err(|e| TrainError::io(checkpoints, e))?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(PREFIX) && (name.contains(".tmp-") || name.contains(".old-")) {
            tracing::warn!("removing {name}: left by an interrupted checkpoint save");
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    Ok(())
}

/// Checks a checkpoint against its manifest; the error says what is wrong.
pub fn verify(dir: &Path) -> std::result::Result<Manifest, String> {
    let path = dir.join(MANIFEST);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("{MANIFEST} unreadable ({e}): the checkpoint is incomplete"))?;
    let manifest: Manifest =
        serde_json::from_str(&text).map_err(|e| format!("{MANIFEST} is corrupt: {e}"))?;
    if manifest.format != FORMAT {
        return Err(format!(
            "manifest format {} (this build reads {FORMAT})",
            manifest.format
        ));
    }
    let found = hash_files(dir).map_err(|e| e.to_string())?;
    for want in &manifest.files {
        let Some(got) = found.iter().find(|f| f.path == want.path) else {
            return Err(format!("{} is missing", want.path));
        };
        if got.bytes != want.bytes {
            return Err(format!(
                "{} has {} bytes, the manifest says {} (truncated or rewritten)",
                want.path, got.bytes, want.bytes
            ));
        }
        if got.sha256 != want.sha256 {
            return Err(format!("{} does not match its sha256 (altered)", want.path));
        }
    }
    if let Some(extra) = found
        .iter()
        .find(|f| !manifest.files.iter().any(|w| w.path == f.path))
    {
        return Err(format!("{} is not in the manifest", extra.path));
    }
    Ok(manifest)
}

/// The newest checkpoint that verifies, with a description of every newer one refused.
///
/// # Errors
/// [`TrainError::Io`] when the directory cannot be listed.
pub fn latest_valid(checkpoints: &Path) -> Result<(Option<StepDir>, Vec<String>)> {
    let mut candidates = list(checkpoints)?;
    candidates.sort_unstable_by_key(|c| std::cmp::Reverse(c.0));
    let mut refused = Vec::new();
    for (step, path) in candidates {
        match verify(&path) {
            Ok(m) if m.step == step => return Ok((Some((step, path)), refused)),
            Ok(m) => refused.push(format!(
                "{}: manifest is for step {}, the directory name says {step}",
                path.display(),
                m.step
            )),
            Err(problem) => refused.push(format!("{}: {problem}", path.display())),
        }
    }
    Ok((None, refused))
}

/// Every file under `dir` except the manifest, hashed, sorted by path.
fn hash_files(dir: &Path) -> Result<Vec<ManifestEntry>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).map_err(|e| TrainError::io(&d, e))? {
            let path = entry.map_err(|e| TrainError::io(&d, e))?.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let rel = path.strip_prefix(dir).unwrap_or(&path);
            let rel = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            if rel == MANIFEST {
                continue;
            }
            let (bytes, sha256) = hash_file(&path)?;
            out.push(ManifestEntry {
                path: rel,
                bytes,
                sha256,
            });
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

fn hash_file(path: &Path) -> Result<(u64, String)> {
    let mut f = File::open(path).map_err(|e| TrainError::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(|e| TrainError::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        bytes += n as u64;
    }
    let hex = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok((bytes, hex))
}

/// Writes `bytes` to `path` and flushes them to disk.
pub fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut f = File::create(path).map_err(|e| TrainError::io(path, e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| TrainError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn save_one(dir: &Path, step: u64, keep: usize, body: &str) -> Result<PathBuf> {
        save(dir, step, keep, |tmp| {
            std::fs::create_dir(tmp.join("sub")).map_err(|e| TrainError::io(tmp, e))?;
            write_synced(&tmp.join("sub/a.txt"), body.as_bytes())?;
            write_synced(&tmp.join("b.json"), b"{}")
        })
    }

    #[test]
    fn names_exclude_temporaries() {
        assert_eq!(dir_name(40), "step-000040");
        assert_eq!(parse_dir_name("step-000040"), Some(40));
        assert_eq!(parse_dir_name("step-000040.tmp-77"), None);
        assert_eq!(parse_dir_name("step-"), None);
        assert_eq!(parse_dir_name("other"), None);
    }

    #[test]
    fn saved_checkpoints_verify_and_are_pruned() -> Result<()> {
        let d = tempfile::tempdir().map_err(|e| TrainError::io(Path::new("tmp"), e))?;
        for step in [2, 4, 6] {
            save_one(d.path(), step, 2, "hello")?;
        }
        let mut steps: Vec<u64> = list(d.path())?.into_iter().map(|(s, _)| s).collect();
        steps.sort_unstable();
        assert_eq!(steps, vec![4, 6]);
        let m = verify(&d.path().join("step-000006"))
            .map_err(|p| TrainError::checkpoint(d.path(), p))?;
        assert_eq!(
            m.files.iter().map(|f| f.path.as_str()).collect::<Vec<_>>(),
            vec!["b.json", "sub/a.txt"]
        );
        Ok(())
    }

    #[test]
    fn corruption_is_detected_and_the_previous_one_used() -> Result<()> {
        let d = tempfile::tempdir().map_err(|e| TrainError::io(Path::new("tmp"), e))?;
        save_one(d.path(), 1, 5, "one")?;
        let newest = save_one(d.path(), 2, 5, "two")?;
        std::fs::write(newest.join("sub/a.txt"), "twO").map_err(|e| TrainError::io(d.path(), e))?;
        let (found, refused) = latest_valid(d.path())?;
        assert_eq!(found.map(|f| f.0), Some(1));
        assert_eq!(refused.len(), 1);
        assert!(
            refused[0].contains("sub/a.txt does not match its sha256"),
            "{refused:?}"
        );
        // A partial save (no manifest yet) is a temporary directory: never a candidate.
        std::fs::create_dir(d.path().join("step-000009.tmp-1"))
            .map_err(|e| TrainError::io(d.path(), e))?;
        assert_eq!(latest_valid(d.path())?.0.map(|f| f.0), Some(1));
        remove_stale_temporaries(d.path())?;
        assert!(!d.path().join("step-000009.tmp-1").exists());
        Ok(())
    }

    #[test]
    fn a_newer_refused_checkpoint_does_not_push_out_the_saved_one() -> Result<()> {
        let d = tempfile::tempdir().map_err(|e| TrainError::io(Path::new("tmp"), e))?;
        save_one(d.path(), 2, 1, "two")?;
        // A newer step directory without a manifest: refused on resume, so the run goes on
        // from step 2 and saves step 4 with keep_last = 1.
        std::fs::create_dir(d.path().join("step-000008"))
            .map_err(|e| TrainError::io(d.path(), e))?;
        assert_eq!(latest_valid(d.path())?.0.map(|f| f.0), Some(2));
        save_one(d.path(), 4, 1, "four")?;
        let mut steps: Vec<u64> = list(d.path())?.into_iter().map(|(s, _)| s).collect();
        steps.sort_unstable();
        assert_eq!(steps, vec![4, 8], "step 2 pruned, step 4 kept");
        assert_eq!(latest_valid(d.path())?.0.map(|f| f.0), Some(4));
        Ok(())
    }

    #[test]
    fn a_failed_save_leaves_nothing_behind() -> Result<()> {
        let d = tempfile::tempdir().map_err(|e| TrainError::io(Path::new("tmp"), e))?;
        save_one(d.path(), 1, 5, "one")?;
        let r = save(d.path(), 2, 5, |_| {
            Err(TrainError::DataSetup("boom".into()))
        });
        assert!(r.is_err());
        let names: Vec<String> = std::fs::read_dir(d.path())
            .map_err(|e| TrainError::io(d.path(), e))?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["step-000001"]);
        Ok(())
    }
}
