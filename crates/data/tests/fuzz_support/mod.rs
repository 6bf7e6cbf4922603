//! The fuzz harness shared by the workspace's fuzz tests (`crates/data/tests/fuzz/`,
//! `crates/data/tests/fuzz_loaders/`, `crates/model/tests/fuzz_headers/`,
//! `crates/rl/tests/fuzz_config.rs`; each includes this file with `#[path]`).
//!
//! Each target is a function of a seeded [`Rng`] that builds one input, runs the code under
//! test on it and checks its properties, returning `Err(why)` when one fails. [`run`] calls it
//! `FUZZ_CASES` times (default: the target's CI count) and guards every case:
//!
//! - **panics** are caught and reported with the case number;
//! - **hangs**: the cases run on a worker thread watched by the test thread; a single case
//!   still running after `FUZZ_HANG_SECS` (default 120 s, thousands of times what any case
//!   needs) fails the test. A hang cannot pass, and a slow machine cannot fail it;
//! - **absurd allocations**: the test binary's global allocator refuses any single
//!   allocation above `FUZZ_MAX_ALLOC_MB` (default 512 MiB; every legitimate input here is
//!   at most a few MiB) and names the target and case on stderr before the process aborts.
//!   A header that claims 2^60 elements and is believed shows up here, even where the
//!   operating system would have overcommitted the memory.
//!
//! Every case draws from its own generator, seeded by `FUZZ_SEED` (default fixed), the
//! target and the case number, so a failure report (`FUZZ_SEED=… FUZZ_ONLY=<case>`) reruns
//! exactly that input; with `FUZZ_ONLY` set, targets print the input they built.
//!
//! Why not `cargo fuzz`: it needs a nightly toolchain (sanitizer coverage), which this
//! workspace does not use, and its corpus-driven runs do not fit a stable CI gate. Seeded
//! structure-aware generators run on stable, in CI, and reproduce from a seed.
#![allow(dead_code)]

mod alloc_guard;
mod rng;
pub mod toml_fuzz;

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use alloc_guard::{CURRENT, LARGEST, MAX_ALLOC};
pub use rng::Rng;

// ---------------------------------------------------------------------------------------
// Running a target

static SEED: AtomicU64 = AtomicU64::new(DEFAULT_SEED);
static VERBOSE: AtomicBool = AtomicBool::new(false);

/// The seed used when `FUZZ_SEED` is not set.
pub const DEFAULT_SEED: u64 = 0x7468_696e_6b6a_7564;

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    let v = v.trim();
    let parsed = match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => v.parse(),
    };
    Some(parsed.unwrap_or_else(|_| panic!("{name}={v:?} is not a number")))
}

/// Whether the current run reproduces one case (`FUZZ_ONLY`): targets then print inputs.
pub fn verbose() -> bool {
    VERBOSE.load(Ordering::Relaxed)
}

/// Prints `what` when reproducing one case.
pub fn show(label: &str, what: &dyn std::fmt::Debug) {
    if verbose() {
        eprintln!("--- {label}:\n{what:#?}");
    }
}

/// A short, printable preview of bytes for failure messages.
pub fn preview(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(&bytes[..bytes.len().min(160)]);
    let more = if bytes.len() > 160 {
        format!("… ({} bytes)", bytes.len())
    } else {
        String::new()
    };
    format!("{s:?}{more}")
}

/// What a finished target reports.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    /// Cases run.
    pub cases: u64,
    /// Wall time.
    pub elapsed: Duration,
    /// The largest single allocation any case made on the worker thread.
    pub largest_alloc: usize,
}

/// Runs `case_fn` on `FUZZ_CASES` (default `ci_cases`) generated inputs with the guards of the
/// module docs, failing the test on the first few failures with a way to reproduce each.
pub fn run<F>(target: &'static str, ci_cases: u64, case_fn: F) -> Summary
where
    F: FnMut(&mut Rng) -> Result<(), String> + Send + 'static,
{
    if let Some(mb) = env_u64("FUZZ_MAX_ALLOC_MB") {
        MAX_ALLOC.store((mb as usize) << 20, Ordering::Relaxed);
    }
    let seed = env_u64("FUZZ_SEED").unwrap_or(DEFAULT_SEED);
    SEED.store(seed, Ordering::Relaxed);
    let cases = env_u64("FUZZ_CASES").unwrap_or(ci_cases);
    let only = env_u64("FUZZ_ONLY");
    VERBOSE.store(only.is_some(), Ordering::Relaxed);
    let hang = Duration::from_secs(env_u64("FUZZ_HANG_SECS").unwrap_or(120));
    let range = match only {
        Some(c) => c..c + 1,
        None => 0..cases,
    };

    // The worker publishes the running case and when it started (ms since `t0`).
    let t0 = Instant::now();
    let running = Arc::new((AtomicU64::new(u64::MAX), AtomicU64::new(0)));
    let progress = Arc::clone(&running);
    let (tx, rx) = mpsc::channel();
    let mut case_fn = case_fn;
    let worker = std::thread::Builder::new()
        .name(format!("fuzz-{target}"))
        .spawn(move || {
            let mut failures: Vec<(u64, String)> = Vec::new();
            let mut done = 0;
            LARGEST.with(|l| l.set(0));
            for case in range {
                progress
                    .1
                    .store(t0.elapsed().as_millis() as u64, Ordering::SeqCst);
                progress.0.store(case, Ordering::SeqCst);
                CURRENT.with(|c| c.set(Some((target, case))));
                let mut rng = Rng::for_case(seed, target, case);
                let outcome = catch_unwind(AssertUnwindSafe(|| case_fn(&mut rng)));
                CURRENT.with(|c| c.set(None));
                done += 1;
                let failure = match outcome {
                    Ok(Ok(())) => continue,
                    Ok(Err(why)) => why,
                    Err(payload) => {
                        let msg = payload
                            .downcast_ref::<String>()
                            .cloned()
                            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                            .unwrap_or_else(|| "(non-string panic payload)".into());
                        format!("PANIC: {msg}")
                    }
                };
                failures.push((case, failure));
                if failures.len() >= 5 {
                    break;
                }
            }
            let largest = LARGEST.with(Cell::get);
            let _ = tx.send((done, failures, largest));
        })
        .expect("spawn fuzz worker");

    let (done, failures, largest) = loop {
        match rx.recv_timeout(Duration::from_millis(500)) {
            Ok(result) => break result,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let case = running.0.load(Ordering::SeqCst);
                let since = Duration::from_millis(running.1.load(Ordering::SeqCst));
                if case != u64::MAX && t0.elapsed().saturating_sub(since) > hang {
                    panic!(
                        "fuzz `{target}`: case {case} has run for more than {hang:?}: a hang. \
                         Reproduce with FUZZ_SEED={seed:#x} FUZZ_ONLY={case}"
                    );
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let _ = worker.join();
                panic!("fuzz `{target}`: the worker thread died");
            }
        }
    };
    let _ = worker.join();
    let summary = Summary {
        cases: done,
        elapsed: t0.elapsed(),
        largest_alloc: largest,
    };
    eprintln!(
        "fuzz `{target}`: {} cases in {:.2?} (seed {seed:#x}), largest allocation {:.1} KiB, \
         {} failures",
        summary.cases,
        summary.elapsed,
        largest as f64 / 1024.0,
        failures.len()
    );
    if !failures.is_empty() {
        let list: Vec<String> = failures
            .iter()
            .map(|(case, why)| {
                format!("  case {case} (FUZZ_SEED={seed:#x} FUZZ_ONLY={case}): {why}")
            })
            .collect();
        panic!(
            "fuzz `{target}`: {} failing case(s):\n{}",
            failures.len(),
            list.join("\n")
        );
    }
    summary
}

/// Runs `f` on the current thread under the same hang guard as [`run`] (for single
/// adversarial inputs too large to generate per case).
pub fn guarded<T: Send + 'static>(what: &'static str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let hang = Duration::from_secs(env_u64("FUZZ_HANG_SECS").unwrap_or(120));
    let (tx, rx) = mpsc::channel();
    let worker = std::thread::Builder::new()
        .name(format!("guarded-{what}"))
        .spawn(move || {
            CURRENT.with(|c| c.set(Some((what, 0))));
            let _ = tx.send(f());
        })
        .expect("spawn guarded worker");
    match rx.recv_timeout(hang) {
        Ok(v) => {
            let _ = worker.join();
            v
        }
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("`{what}` has run for more than {hang:?}: a hang")
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => match worker.join() {
            Err(p) => std::panic::resume_unwind(p),
            Ok(()) => panic!("`{what}`: worker ended without a result"),
        },
    }
}
