//! Shared reading machinery: files (optionally gzipped), JSONL vs JSON-list containers, typed
//! field access with messages that name the field, and the skip-or-fail record loop.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use serde_json::{Map, Value};

use super::{LoadOptions, Skipped};
use crate::error::{DataError, Location, Result};
use crate::judgment::Preference;
use crate::records::{check_prompt, Message, Role};

/// A JSON object (one record).
pub(crate) type Obj = Map<String, Value>;

/// What is wrong with one field of one record; the loop adds the file and location.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FieldError {
    pub field: String,
    pub problem: String,
}

impl FieldError {
    pub fn new(field: &str, problem: impl Into<String>) -> Self {
        FieldError {
            field: field.to_string(),
            problem: problem.into(),
        }
    }
}

pub(crate) type FieldResult<T> = std::result::Result<T, FieldError>;

/// Reads a whole file, gunzipping when the name ends in `.gz` (every gzip member: files
/// made by `cat a.gz b.gz`, pigz or bgzip hold several).
pub(crate) fn read_bytes(path: &Path) -> Result<Vec<u8>> {
    let io = |source| DataError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut bytes = Vec::new();
    if path.extension().is_some_and(|e| e == "gz") {
        flate2::read::MultiGzDecoder::new(file)
            .read_to_end(&mut bytes)
            .map_err(io)?;
    } else {
        std::io::BufReader::new(file)
            .read_to_end(&mut bytes)
            .map_err(io)?;
    }
    Ok(bytes)
}

/// One raw record: its location and its parsed JSON (or the parse error).
pub(crate) type RawRecord = (Location, std::result::Result<Value, serde_json::Error>);

/// Splits a file into records. A file whose first non-blank character is `[` is a JSON list
/// (one record per element); anything else is JSONL, where blank lines are not records.
/// Invalid UTF-8 is an error of the line it is on (a JSON error naming the line), not of
/// the whole file, so `skip_invalid` can skip it.
pub(crate) fn read_records(path: &Path) -> Result<Vec<RawRecord>> {
    let bytes = read_bytes(path)?;
    if String::from_utf8_lossy(&bytes)
        .trim_start()
        .starts_with('[')
    {
        let value: Value = serde_json::from_slice(&bytes).map_err(|source| DataError::Json {
            path: path.to_path_buf(),
            location: Location::File,
            source,
        })?;
        // Text starting with `[` that parses is always a list; an error all the same, no panic.
        let Value::Array(items) = value else {
            return Err(DataError::Record {
                path: path.to_path_buf(),
                location: Location::File,
                field: "-".into(),
                problem: "expected a JSON list".into(),
            });
        };
        return Ok(items
            .into_iter()
            .enumerate()
            .map(|(i, v)| (Location::Element(i), Ok(v)))
            .collect());
    }
    // Split like `str::lines` (a `\r` before the `\n` is JSON whitespace).
    Ok(bytes
        .split(|&b| b == b'\n')
        .enumerate()
        .filter(|(_, line)| !String::from_utf8_lossy(line).trim().is_empty())
        .map(|(i, line)| (Location::Line(i + 1), serde_json::from_slice(line)))
        .collect())
}

/// Converts every record with `convert`, failing on the first bad one or, with
/// `skip_invalid`, recording it in `skipped`. Ids must be unique within the file.
pub(crate) fn convert_records<T>(
    path: &Path,
    raw: Vec<RawRecord>,
    opts: &LoadOptions,
    id_of: impl Fn(&T) -> &str,
    mut convert: impl FnMut(&Obj, Location) -> FieldResult<T>,
) -> Result<(Vec<T>, Vec<Skipped>)> {
    let mut items = Vec::new();
    let mut skipped = Vec::new();
    let mut seen: HashMap<String, Location> = HashMap::new();
    for (location, parsed) in raw {
        if opts.limit.is_some_and(|n| items.len() >= n) {
            break;
        }
        let outcome = match parsed {
            Err(source) => Err(DataError::Json {
                path: path.to_path_buf(),
                location,
                source,
            }),
            Ok(value) => as_object(&value)
                .and_then(|obj| convert(obj, location))
                .and_then(|item| match seen.get(id_of(&item)) {
                    Some(first) => Err(FieldError::new(
                        "id",
                        format!("duplicate id `{}` (first at {first})", id_of(&item)),
                    )),
                    None => Ok(item),
                })
                .map_err(|e| DataError::Record {
                    path: path.to_path_buf(),
                    location,
                    field: e.field,
                    problem: e.problem,
                }),
        };
        match outcome {
            Ok(item) => {
                seen.insert(id_of(&item).to_string(), location);
                items.push(item);
            }
            Err(e) if opts.skip_invalid => skipped.push(Skipped {
                location,
                reason: skip_reason(&e),
            }),
            Err(e) => return Err(e),
        }
    }
    Ok((items, skipped))
}

// The error message without the file prefix (the report already names the file).
fn skip_reason(e: &DataError) -> String {
    match e {
        DataError::Record { field, problem, .. } => format!("field `{field}`: {problem}"),
        DataError::Json { source, .. } => format!("invalid JSON: {source}"),
        other => other.to_string(),
    }
}

fn as_object(v: &Value) -> FieldResult<&Obj> {
    v.as_object().ok_or_else(|| {
        FieldError::new(
            "-",
            format!("expected a JSON object, found {}", type_name(v)),
        )
    })
}

/// JSON's name for a value's type, for messages.
pub(crate) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "object",
    }
}

/// A value for an error message, cut to 40 characters.
pub(crate) fn short(v: &Value) -> String {
    let s = v.to_string();
    match s.char_indices().nth(40) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s,
    }
}

/// A required string field (may be blank).
pub(crate) fn req_str<'a>(o: &'a Obj, field: &str) -> FieldResult<&'a str> {
    match o.get(field) {
        None => Err(FieldError::new(field, "missing")),
        Some(Value::String(s)) => Ok(s),
        Some(v) => Err(FieldError::new(
            field,
            format!("expected a string, found {} {}", type_name(v), short(v)),
        )),
    }
}

/// A required string that is not blank (responses, questions).
pub(crate) fn req_text(o: &Obj, field: &str) -> FieldResult<String> {
    let s = req_str(o, field)?;
    if s.trim().is_empty() {
        return Err(FieldError::new(field, "empty"));
    }
    Ok(s.to_string())
}

/// An optional string: absent or `null` give `None`.
pub(crate) fn opt_str(o: &Obj, field: &str) -> FieldResult<Option<String>> {
    match o.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(_) => req_str(o, field).map(|s| Some(s.to_string())),
    }
}

/// An id that may be a string or an integer; absent or `null` give `None`.
pub(crate) fn opt_id(o: &Obj, field: &str) -> FieldResult<Option<String>> {
    match o.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.clone())),
        Some(Value::Number(n)) if n.is_u64() || n.is_i64() => Ok(Some(n.to_string())),
        Some(v) => Err(FieldError::new(
            field,
            format!(
                "expected a non-empty string or an integer, found {}",
                short(v)
            ),
        )),
    }
}

/// An optional string or number, as text (a reference answer may be either).
pub(crate) fn opt_str_or_number(o: &Obj, field: &str) -> FieldResult<Option<String>> {
    match o.get(field) {
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        _ => opt_str(o, field),
    }
}

/// The number part of a location, for ids built from it (`File` gives 0).
pub(crate) fn record_number(loc: Location) -> usize {
    match loc {
        Location::Line(n) | Location::Element(n) => n,
        Location::File => 0,
    }
}

/// An integer given as a JSON number or as a numeric string (`2`, `"2"`).
pub(crate) fn int_like(o: &Obj, field: &str) -> FieldResult<i64> {
    let v = o
        .get(field)
        .ok_or_else(|| FieldError::new(field, "missing"))?;
    let parsed = match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    };
    parsed.ok_or_else(|| {
        FieldError::new(
            field,
            format!("expected an integer or numeric string, found {}", short(v)),
        )
    })
}

/// Two responses that must both be non-blank and differ.
pub(crate) fn two_responses(o: &Obj, first: &str, second: &str) -> FieldResult<[String; 2]> {
    let a = req_text(o, first)?;
    let b = req_text(o, second)?;
    if a.trim() == b.trim() {
        return Err(FieldError::new(
            second,
            format!("identical to `{first}`: the pair carries no preference"),
        ));
    }
    Ok([a, b])
}

/// A prompt given as a string (one user turn) or as a list of `{role, content}` messages.
pub(crate) fn prompt_field(o: &Obj, field: &str) -> FieldResult<Vec<Message>> {
    let messages = match o.get(field) {
        None => return Err(FieldError::new(field, "missing")),
        Some(Value::String(s)) => vec![Message::user(s.clone())],
        Some(v @ Value::Array(_)) => serde_json::from_value::<Vec<Message>>(v.clone())
            .map_err(|e| FieldError::new(field, format!("bad message list: {e}")))?,
        Some(v) => {
            return Err(FieldError::new(
                field,
                format!(
                    "expected a string or a list of messages, found {}",
                    type_name(v)
                ),
            ))
        }
    };
    check_prompt(&messages).map_err(|p| FieldError::new(field, p))?;
    Ok(messages)
}

/// A one-turn user prompt from a non-blank string field.
pub(crate) fn user_prompt(o: &Obj, field: &str) -> FieldResult<Vec<Message>> {
    Ok(vec![Message {
        role: Role::User,
        content: req_text(o, field)?,
    }])
}

/// Maps a two-way label (`1`/`2` style) onto a preference, naming the accepted values on error.
pub(crate) fn one_or_two(o: &Obj, field: &str) -> FieldResult<Preference> {
    match int_like(o, field) {
        Ok(1) => Ok(Preference::First),
        Ok(2) => Ok(Preference::Second),
        _ => Err(FieldError::new(
            field,
            format!(
                "expected 1 or 2 (number or string), found {}",
                o.get(field).map_or("nothing".into(), short)
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Obj {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn field_helpers_name_the_problem() {
        let o = obj(json!({"a": "x", "n": "2", "b": true, "e": "  ", "m": 3}));
        assert_eq!(req_str(&o, "a"), Ok("x"));
        assert_eq!(
            req_str(&o, "zz").map_err(|e| e.problem),
            Err("missing".into())
        );
        let e = req_str(&o, "b").err().map(|e| e.problem);
        assert_eq!(e.as_deref(), Some("expected a string, found boolean true"));
        assert_eq!(
            req_text(&o, "e").map_err(|e| e.problem),
            Err("empty".into())
        );
        assert_eq!(int_like(&o, "n"), Ok(2));
        assert_eq!(int_like(&o, "m"), Ok(3));
        assert!(int_like(&o, "a").is_err());
        assert_eq!(opt_id(&o, "m"), Ok(Some("3".into())));
    }

    #[test]
    fn long_values_are_cut_in_messages() {
        let s = short(&Value::String("x".repeat(100)));
        assert_eq!(s.chars().count(), 41);
    }

    #[test]
    fn prompt_field_accepts_string_or_messages() {
        let o = obj(json!({
            "p": "hi",
            "q": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}],
            "r": [{"role": "robot", "content": "a"}],
        }));
        assert_eq!(prompt_field(&o, "p"), Ok(vec![Message::user("hi")]));
        let q = prompt_field(&o, "q").err().map(|e| e.problem);
        assert!(q.is_some_and(|p| p.contains("must end with a user turn")));
        let r = prompt_field(&o, "r").err().map(|e| e.problem);
        assert!(r.is_some_and(|p| p.contains("bad message list")));
    }
}
