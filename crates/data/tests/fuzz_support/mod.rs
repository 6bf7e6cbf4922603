//! The fuzz harness shared by the workspace's fuzz tests (`crates/data/tests/fuzz.rs`,
//! `crates/model/tests/fuzz_headers.rs`, `crates/rl/tests/fuzz_config.rs`; the last two
//! include this file with `#[path]`).
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

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::fmt::Write as _;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------
// Allocation guard

/// The global allocator of every fuzz test binary: [`System`], refusing single allocations
/// above the cap.
pub struct CappedAlloc;

#[global_allocator]
static ALLOC: CappedAlloc = CappedAlloc;

const DEFAULT_MAX_ALLOC: usize = 512 << 20;
static MAX_ALLOC: AtomicUsize = AtomicUsize::new(DEFAULT_MAX_ALLOC);

thread_local! {
    /// The target and case running on this thread (for the refusal message).
    static CURRENT: Cell<Option<(&'static str, u64)>> = const { Cell::new(None) };
    /// The largest allocation made on this thread since the last reset.
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

/// A fixed buffer for a message formatted without allocating.
struct StackBuf {
    bytes: [u8; 512],
    len: usize,
}

impl std::fmt::Write for StackBuf {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let n = s.len().min(self.bytes.len() - self.len);
        self.bytes[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

fn allowed(size: usize) -> bool {
    LARGEST.with(|l| l.set(l.get().max(size)));
    if size <= MAX_ALLOC.load(Ordering::Relaxed) {
        return true;
    }
    let mut msg = StackBuf {
        bytes: [0; 512],
        len: 0,
    };
    let (target, case) = CURRENT.with(Cell::get).unwrap_or(("(outside a case)", 0));
    let _ = writeln!(
        msg,
        "\nfuzz: refused an allocation of {size} bytes (cap {} bytes) in target `{target}`, \
         case {case} (seed {:#x}); rerun with FUZZ_ONLY={case} to see the input",
        MAX_ALLOC.load(Ordering::Relaxed),
        SEED.load(Ordering::Relaxed),
    );
    // Straight to fd 2: the test harness's capture would allocate.
    let _ = std::io::Write::write_all(&mut std::io::stderr(), &msg.bytes[..msg.len]);
    false
}

// SAFETY: every call is forwarded to `System` unchanged, except that a refused size returns
// null, which `GlobalAlloc` allows ("the allocation failed").
unsafe impl GlobalAlloc for CappedAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if allowed(layout.size()) {
            // SAFETY: the caller's contract is passed on.
            unsafe { System.alloc(layout) }
        } else {
            std::ptr::null_mut()
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if allowed(layout.size()) {
            // SAFETY: as above.
            unsafe { System.alloc_zeroed(layout) }
        } else {
            std::ptr::null_mut()
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if allowed(new_size) {
            // SAFETY: as above.
            unsafe { System.realloc(ptr, layout, new_size) }
        } else {
            std::ptr::null_mut()
        }
    }
}

// ---------------------------------------------------------------------------------------
// Random generation

/// SplitMix64: tiny, fast, and stable across crate versions (a failure seed stays valid).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `case` of `target` under `seed`.
    pub fn for_case(seed: u64, target: &str, case: u64) -> Self {
        let mut h = seed ^ 0x9E37_79B9_7F4A_7C15;
        for b in target.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01B3);
        }
        let mut r = Rng(h ^ case.wrapping_mul(0xD1B5_4A32_D192_ED03));
        r.next_u64();
        r
    }

    /// 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `1 / n`.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }

    /// One element of a non-empty slice.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// A length up to `max`, log-uniform: mostly short, sometimes near `max`.
    pub fn len(&mut self, max: usize) -> usize {
        let bits = usize::BITS - max.leading_zeros();
        let b = self.below(bits as usize + 1);
        let cap = if b >= usize::BITS as usize {
            max
        } else {
            ((1usize << b) - 1).min(max)
        };
        self.range(0, cap)
    }

    /// `n` random bytes.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }

    /// A random string of `n` chars drawn from a mix of ASCII, whitespace, control
    /// characters, and multi-byte and confusable Unicode.
    pub fn text(&mut self, n: usize) -> String {
        const ODD: &[char] = &[
            '\u{0}',
            '\t',
            '\n',
            '\r',
            '\u{b}',
            '\u{c}',
            '\u{85}',
            '\u{a0}',
            '\u{2028}',
            '\u{2029}',
            '\u{3000}',
            '\u{feff}',
            '\u{200b}',
            '\u{212a}',
            '\u{17f}',
            '\u{130}',
            '\u{ff21}',
            '\u{ff3b}',
            '\u{ff1c}',
            'é',
            'ß',
            'Ω',
            '中',
            '😀',
            '\u{10ffff}',
            '\u{661}',
            '\u{967}',
            '\u{ff11}',
            '\u{fffd}',
            '\u{301}',
        ];
        (0..n)
            .map(|_| match self.below(4) {
                0 => *self.pick(ODD),
                1 => char::from_u32(self.below(0x11_0000) as u32).unwrap_or('?'),
                _ => (b' ' + self.below(95) as u8) as char,
            })
            .collect()
    }
}

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

// ---------------------------------------------------------------------------------------
// TOML configs

/// Checks one TOML config type on a mutated document: parsing and `validate` never panic, a
/// valid config survives a serialize → parse round trip, and (separately) an unknown key
/// added anywhere is rejected by an error that names it.
pub mod toml_fuzz {
    use super::Rng;
    use serde::de::DeserializeOwned;
    use serde::Serialize;
    use toml::{Table, Value};

    /// What [`check`] needs to know about a config type.
    pub struct Spec<T> {
        /// Valid documents covering the type's variants and optional sections.
        pub seeds: Vec<String>,
        /// The type's `validate`, as a message on error.
        pub validate: fn(&T) -> Result<(), String>,
        /// Whether a config read back after serializing is the same (`==` for most types).
        pub same: fn(&T, &T) -> bool,
    }

    const WORDS: &[&str] = &[
        "kind",
        "lr",
        "rank",
        "seed",
        "dir",
        "gguf",
        "hub",
        "id",
        "revision",
        "template",
        "task",
        "max_len",
        "factor",
        "min_steps",
        "families",
        "eval_fraction",
        "limit",
    ];

    fn interesting_value(rng: &mut Rng, depth: usize) -> Value {
        match rng.below(if depth > 2 { 13 } else { 16 }) {
            0 => Value::Integer(0),
            1 => Value::Integer(-1),
            2 => Value::Integer(i64::MAX),
            3 => Value::Integer(i64::MIN),
            4 => Value::Integer(rng.below(20) as i64),
            5 => Value::Float(f64::NAN),
            6 => Value::Float(f64::INFINITY),
            7 => Value::Float(-0.0),
            8 => Value::Float(1e308),
            9 => Value::Float((rng.below(2000) as f64 - 1000.0) / 100.0),
            10 => Value::Boolean(rng.one_in(2)),
            11 => Value::String(rng.pick(WORDS).to_string()),
            12 => {
                let n = rng.len(40);
                Value::String(rng.text(n))
            }
            13 => {
                let n = rng.below(4);
                Value::Array((0..n).map(|_| interesting_value(rng, depth + 1)).collect())
            }
            14 => {
                let mut t = Table::new();
                for _ in 0..rng.below(3) {
                    t.insert(
                        rng.pick(WORDS).to_string(),
                        interesting_value(rng, depth + 1),
                    );
                }
                Value::Table(t)
            }
            _ => Value::Datetime("1979-05-27T07:32:00Z".parse().expect("literal datetime")),
        }
    }

    /// A value of the same TOML type as `old`, often at an edge (0, negative, huge, NaN,
    /// an enum word of another field), so the document usually still parses.
    fn similar_value(rng: &mut Rng, old: &Value) -> Value {
        match old {
            Value::Integer(i) => Value::Integer(match rng.below(7) {
                0 => 0,
                1 => -1,
                2 => i64::MAX,
                3 => i.saturating_add(1),
                4 => i.saturating_sub(1),
                5 => i.saturating_mul(1000),
                _ => rng.below(10) as i64,
            }),
            Value::Float(x) => Value::Float(match rng.below(9) {
                0 => 0.0,
                1 => -x,
                2 => f64::NAN,
                3 => f64::INFINITY,
                4 => f64::NEG_INFINITY,
                5 => 1.0,
                6 => x * 1e10,
                7 => f64::MIN_POSITIVE,
                _ => (rng.below(400) as f64 - 100.0) / 100.0,
            }),
            Value::Boolean(b) => Value::Boolean(!b),
            Value::String(_) => Value::String(match rng.below(3) {
                0 => rng.pick(WORDS).to_string(),
                1 => String::new(),
                _ => {
                    let n = rng.len(20);
                    rng.text(n)
                }
            }),
            Value::Array(items) => {
                let mut items = items.clone();
                match rng.below(3) {
                    0 => items.clear(),
                    1 if !items.is_empty() => {
                        let i = rng.below(items.len());
                        let dup = items[i].clone();
                        items.push(dup);
                    }
                    _ if !items.is_empty() => {
                        let i = rng.below(items.len());
                        items[i] = similar_value(rng, &items[i].clone());
                    }
                    _ => items.push(interesting_value(rng, 1)),
                }
                Value::Array(items)
            }
            _ => interesting_value(rng, 0),
        }
    }

    /// Every `(table, key)` path of the document, tables inside arrays included.
    fn keys(t: &Table, path: Vec<String>, out: &mut Vec<Vec<String>>) {
        for (k, v) in t {
            let mut p = path.clone();
            p.push(k.clone());
            out.push(p.clone());
            if let Value::Table(inner) = v {
                keys(inner, p, out);
            }
        }
    }

    /// Every table of the document (the root is the empty path).
    fn tables(t: &Table, path: Vec<String>, out: &mut Vec<Vec<String>>) {
        out.push(path.clone());
        for (k, v) in t {
            if let Value::Table(inner) = v {
                let mut p = path.clone();
                p.push(k.clone());
                tables(inner, p, out);
            }
        }
    }

    fn table_at<'a>(t: &'a mut Table, path: &[String]) -> Option<&'a mut Table> {
        match path.split_first() {
            None => Some(t),
            Some((k, rest)) => match t.get_mut(k)? {
                Value::Table(inner) => table_at(inner, rest),
                _ => None,
            },
        }
    }

    fn mutate(rng: &mut Rng, doc: &mut Table) {
        let mut paths = Vec::new();
        keys(doc, Vec::new(), &mut paths);
        let mut tabs = Vec::new();
        tables(doc, Vec::new(), &mut tabs);
        match rng.below(7) {
            // Drop a key.
            0 if !paths.is_empty() => {
                let p = rng.pick(&paths).clone();
                if let Some(t) = table_at(doc, &p[..p.len() - 1]) {
                    t.remove(&p[p.len() - 1]);
                }
            }
            // Another value of the same type.
            1 | 2 if !paths.is_empty() => {
                let p = rng.pick(&paths).clone();
                if let Some(t) = table_at(doc, &p[..p.len() - 1]) {
                    let key = &p[p.len() - 1];
                    if let Some(old) = t.get(key).cloned() {
                        let v = similar_value(rng, &old);
                        t.insert(key.clone(), v);
                    }
                }
            }
            // Retype / replace a value.
            3 if !paths.is_empty() => {
                let p = rng.pick(&paths).clone();
                let v = interesting_value(rng, 0);
                if let Some(t) = table_at(doc, &p[..p.len() - 1]) {
                    t.insert(p[p.len() - 1].clone(), v);
                }
            }
            // Rename a key (typo, case, or another known word).
            4 if !paths.is_empty() => {
                let p = rng.pick(&paths).clone();
                let old = p[p.len() - 1].clone();
                let new = match rng.below(3) {
                    0 => old.to_uppercase(),
                    1 => format!("{old}_"),
                    _ => rng.pick(WORDS).to_string(),
                };
                if let Some(t) = table_at(doc, &p[..p.len() - 1]) {
                    if let Some(v) = t.remove(&old) {
                        t.insert(new, v);
                    }
                }
            }
            // Add a key that may or may not exist in the schema.
            _ => {
                let p = rng.pick(&tabs).clone();
                let k = rng.pick(WORDS).to_string();
                let v = interesting_value(rng, 0);
                if let Some(t) = table_at(doc, &p) {
                    t.insert(k, v);
                }
            }
        }
    }

    fn text_mutation(rng: &mut Rng, text: &str) -> String {
        let mut b = text.as_bytes().to_vec();
        for _ in 0..rng.range(1, 3) {
            match rng.below(4) {
                0 if !b.is_empty() => {
                    let at = rng.below(b.len());
                    b.truncate(at);
                }
                1 if !b.is_empty() => {
                    let at = rng.below(b.len());
                    b[at] = *rng.pick(b"=[]{}\"'.,#\n \\0x\xff");
                }
                2 => {
                    // Duplicate a line (a duplicate key, or a duplicate table header).
                    let lines: Vec<&[u8]> = b.split(|&c| c == b'\n').collect();
                    let line = rng.pick(&lines).to_vec();
                    b.extend_from_slice(b"\n");
                    b.extend_from_slice(&line);
                }
                _ => {
                    let at = rng.below(b.len() + 1);
                    let n = rng.len(8);
                    let junk = rng.text(n);
                    b.splice(at..at, junk.bytes());
                }
            }
        }
        String::from_utf8_lossy(&b).into_owned()
    }

    /// One case: a mutated seed document must parse or fail without panicking; a parsed
    /// config must validate or fail without panicking; a valid one must round-trip.
    pub fn check<T>(rng: &mut Rng, spec: &Spec<T>) -> Result<(), String>
    where
        T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug,
    {
        let seed = rng.pick(&spec.seeds).clone();
        let mut doc: Table = seed
            .parse()
            .map_err(|e| format!("seed document does not parse: {e}\n{seed}"))?;
        let mutations = if rng.one_in(3) { rng.range(2, 4) } else { 1 };
        for _ in 0..mutations {
            mutate(rng, &mut doc);
        }
        let mut text = toml::to_string(&doc).map_err(|e| format!("re-serializing: {e}"))?;
        if rng.one_in(8) {
            text = text_mutation(rng, &text);
        }
        super::show("document", &text);
        let Ok(cfg) = toml::from_str::<T>(&text) else {
            return Ok(());
        };
        if (spec.validate)(&cfg).is_err() {
            return Ok(());
        }
        let back =
            toml::to_string(&cfg).map_err(|e| format!("valid {cfg:?} does not serialize: {e}"))?;
        let again: T = toml::from_str(&back)
            .map_err(|e| format!("valid config does not parse back: {e}\n{back}"))?;
        if !(spec.same)(&again, &cfg) {
            return Err(format!("round trip changed {cfg:?} into {again:?}"));
        }
        Ok(())
    }

    /// One case: a seed document with one unknown key added to a random table must be
    /// rejected, and the error must name the key.
    pub fn check_unknown_key<T>(rng: &mut Rng, spec: &Spec<T>) -> Result<(), String>
    where
        T: DeserializeOwned + std::fmt::Debug,
    {
        let seed = rng.pick(&spec.seeds).clone();
        let mut doc: Table = seed
            .parse()
            .map_err(|e| format!("seed document does not parse: {e}"))?;
        let mut tabs = Vec::new();
        tables(&doc, Vec::new(), &mut tabs);
        let path = rng.pick(&tabs).clone();
        // Never a real field name: no schema here has a `zq` prefix.
        let key = format!(
            "zq{}",
            (0..rng.range(1, 6))
                .map(|_| (b'a' + rng.below(26) as u8) as char)
                .collect::<String>()
        );
        let value = interesting_value(rng, 0);
        if let Some(t) = table_at(&mut doc, &path) {
            t.insert(key.clone(), value);
        }
        let text = toml::to_string(&doc).map_err(|e| format!("re-serializing: {e}"))?;
        super::show("document", &text);
        match toml::from_str::<T>(&text) {
            Ok(cfg) => Err(format!(
                "unknown key `{key}` in table {path:?} was accepted: {cfg:?}\n{text}"
            )),
            Err(e) if e.to_string().contains(&key) => Ok(()),
            Err(e) => Err(format!(
                "unknown key `{key}` in table {path:?} was rejected without naming it: {e}"
            )),
        }
    }
}
