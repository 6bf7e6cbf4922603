//! Checks one TOML config type on a mutated document: parsing and `validate` never panic, a
//! valid config survives a serialize → parse round trip, and (separately) an unknown key
//! added anywhere is rejected by an error that names it.

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

impl<T: Serialize + PartialEq> Spec<T> {
    /// `seeds` serialized to TOML plus the hand-written documents `extra`; a round trip must
    /// give back an equal config.
    pub fn from_seeds(
        seeds: Vec<T>,
        extra: &[&str],
        validate: fn(&T) -> Result<(), String>,
    ) -> Self {
        let mut docs: Vec<String> = seeds
            .iter()
            .map(|s| toml::to_string(s).expect("seed serializes"))
            .collect();
        docs.extend(extra.iter().map(|s| s.to_string()));
        Spec {
            seeds: docs,
            validate,
            same: |a, b| a == b,
        }
    }
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

/// [`check_unknown_key`] when `unknown_key`, else [`check`].
pub fn check_case<T>(rng: &mut Rng, spec: &Spec<T>, unknown_key: bool) -> Result<(), String>
where
    T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug,
{
    if unknown_key {
        check_unknown_key(rng, spec)
    } else {
        check(rng, spec)
    }
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
