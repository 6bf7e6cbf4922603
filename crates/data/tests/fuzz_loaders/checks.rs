//! What the loaders must do: the records a file holds, computed independently, and the
//! properties of a strict and a lenient load (errors, skipped records, loaded items).

use std::collections::HashSet;
use std::io::Read;
use std::path::Path;

use serde_json::Value;
use thinkjudge_data::*;

use crate::files::Built;

/// The records of a file as the loader docs define them, computed independently.
pub(crate) struct Expected {
    /// `None` when the gzip stream is broken (any outcome but a panic is allowed then).
    pub(crate) text: Option<Vec<u8>>,
    /// Whether the file is a JSON list.
    pub(crate) list: bool,
    /// Records: list elements (`None` when the list does not parse) or non-blank lines.
    pub(crate) records: Option<usize>,
    /// Line `n` (1-based) of a JSONL file is `lines[n - 1]`.
    pub(crate) lines: Vec<Vec<u8>>,
}

fn blank(line: &[u8]) -> bool {
    String::from_utf8_lossy(line).trim().is_empty()
}

pub(crate) fn expected(built: &Built) -> Expected {
    let text = if built.gz {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&built.bytes[..])
            .read_to_end(&mut out)
            .ok()
            .map(|_| out)
    } else {
        Some(built.bytes.clone())
    };
    let Some(bytes) = text else {
        return Expected {
            text: None,
            list: false,
            records: None,
            lines: Vec::new(),
        };
    };
    let list = String::from_utf8_lossy(&bytes)
        .trim_start()
        .starts_with('[');
    let lines: Vec<Vec<u8>> = bytes.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
    let records = if list {
        serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|v| v.as_array().map(Vec::len))
    } else {
        Some(lines.iter().filter(|l| !blank(l)).count())
    };
    Expected {
        text: Some(bytes),
        list,
        records,
        lines,
    }
}

fn location_of(e: &DataError) -> Option<Location> {
    match e {
        DataError::Json { location, .. } | DataError::Record { location, .. } => Some(*location),
        _ => None,
    }
}

/// An error names the file, and its location (if any) exists.
fn check_error(e: &DataError, path: &Path, exp: &Expected) -> Result<(), String> {
    let msg = e.to_string();
    if !msg.contains(&path.display().to_string()) {
        return Err(format!("error does not name the file: {msg}"));
    }
    let Some(loc) = location_of(e) else {
        return Ok(());
    };
    if !msg.contains(&loc.to_string()) {
        return Err(format!("error does not name its location {loc:?}: {msg}"));
    }
    let Some(_) = exp.text else {
        return Ok(());
    };
    let ok = match loc {
        Location::File => true,
        Location::Line(n) => {
            !exp.list && n >= 1 && n <= exp.lines.len() && !blank(&exp.lines[n - 1])
        }
        Location::Element(i) => exp.list && exp.records.is_some_and(|r| i < r),
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "error at {loc:?}, which is not a record of the file: {msg}"
        ))
    }
}

fn nonblank(s: &str) -> bool {
    !s.trim().is_empty()
}

fn good_prompt(m: &[Message]) -> bool {
    m.last()
        .is_some_and(|l| l.role == Role::User && nonblank(&l.content))
}

/// The promises every loaded item keeps.
fn check_items(ds: &Dataset) -> Result<(), String> {
    let mut ids = HashSet::new();
    let fail = |what: &str, id: &str| Err(format!("item {id:?}: {what}"));
    match ds {
        Dataset::Pairwise(items) => {
            for it in items {
                if !ids.insert(it.id.clone()) {
                    return fail("duplicate id", &it.id);
                }
                let [a, b] = &it.responses;
                if !nonblank(a) || !nonblank(b) || a.trim() == b.trim() {
                    return fail("blank or identical responses", &it.id);
                }
                if !good_prompt(&it.prompt) {
                    return fail("prompt does not end with a non-blank user turn", &it.id);
                }
            }
        }
        Dataset::Pointwise(items) => {
            for it in items {
                if !ids.insert(it.id.clone()) {
                    return fail("duplicate id", &it.id);
                }
                if !nonblank(&it.response) || !good_prompt(&it.question) {
                    return fail("blank response or question", &it.id);
                }
                if let PointLabel::Score(x) = it.label {
                    if !(0.0..=10.0).contains(&x) {
                        return fail("score out of 0–10", &it.id);
                    }
                }
            }
        }
    }
    Ok(())
}

pub(crate) fn check_load(
    path: &Path,
    format: DataFormat,
    built: &Built,
    exp: &Expected,
    limit: Option<usize>,
) -> Result<(), String> {
    let strict = load(
        path,
        format,
        &LoadOptions {
            skip_invalid: false,
            limit,
        },
    );
    let lenient = load(
        path,
        format,
        &LoadOptions {
            skip_invalid: true,
            limit,
        },
    );
    if let Err(e) = &strict {
        check_error(e, path, exp)?;
    }
    match &lenient {
        Err(e) => {
            check_error(e, path, exp)?;
            if exp.text.is_some() && exp.records.is_some() {
                return Err(format!("skip_invalid failed on a readable file: {e}"));
            }
            if !matches!(location_of(e), None | Some(Location::File)) {
                return Err(format!("skip_invalid still failed on one record: {e}"));
            }
            let same = strict.as_ref().err().map(ToString::to_string);
            if same.as_deref() != Some(e.to_string().as_str()) {
                return Err(format!(
                    "a whole-file error with skip_invalid ({e}) but not without: {same:?}"
                ));
            }
        }
        Ok((ds, report)) => {
            check_items(ds)?;
            if report.path != path || report.format != format || report.loaded != ds.len() {
                return Err(format!("report does not describe the load: {report:?}"));
            }
            let locs: Vec<Location> = report.skipped.iter().map(|s| s.location).collect();
            if locs.windows(2).any(|w| !less(w[0], w[1])) {
                return Err(format!("skipped locations are not increasing: {locs:?}"));
            }
            match (limit, exp.records) {
                (None, Some(records)) if report.loaded + locs.len() != records => {
                    return Err(format!(
                        "loaded {} + skipped {} != {records} records",
                        report.loaded,
                        locs.len()
                    ));
                }
                (Some(k), Some(records))
                    if report.loaded > k || report.loaded + locs.len() > records =>
                {
                    return Err(format!("limit {k}: loaded {}", report.loaded));
                }
                _ => {}
            }
            match &strict {
                Ok((sds, sreport)) => {
                    if sds != ds || !sreport.skipped.is_empty() || !locs.is_empty() {
                        return Err(
                            "a strict load that succeeds differs from the lenient one".into()
                        );
                    }
                }
                Err(e) => match (location_of(e), locs.first()) {
                    (Some(l @ (Location::Line(_) | Location::Element(_))), first)
                        if first != Some(&l) =>
                    {
                        return Err(format!(
                            "strict load fails at {l:?} but skip_invalid first skips {first:?}"
                        ));
                    }
                    (None | Some(Location::File), _) => {
                        return Err(format!("whole-file error only without skip_invalid: {e}"));
                    }
                    _ => {}
                },
            }
        }
    }
    if built.clean && exp.text.is_some() {
        match &strict {
            Ok((ds, _)) if ds.len() == limit.unwrap_or(usize::MAX).min(built.count) => {}
            Ok((ds, _)) => {
                return Err(format!(
                    "an unmutated file of {} records loaded {}",
                    built.count,
                    ds.len()
                ))
            }
            Err(e) => return Err(format!("an unmutated file failed to load: {e}")),
        }
    }
    if let Ok((Dataset::Pointwise(_), _)) = &strict {
        match load_pairwise(path, format, &LoadOptions::default()) {
            Err(e) if e.to_string().contains(&path.display().to_string()) => {}
            other => return Err(format!("load_pairwise of a pointwise file: {other:?}")),
        }
    }
    Ok(())
}

fn less(a: Location, b: Location) -> bool {
    match (a, b) {
        (Location::Line(x), Location::Line(y)) | (Location::Element(x), Location::Element(y)) => {
            x < y
        }
        _ => false,
    }
}

pub(crate) fn check_problems<T>(
    path: &Path,
    built: &Built,
    exp: &Expected,
    read: fn(&Path) -> Result<Vec<T>>,
) -> Result<(), String> {
    match read(path) {
        Ok(problems) => {
            if exp.records.is_some_and(|r| r != problems.len()) {
                return Err(format!(
                    "read {} problems of {:?} records",
                    problems.len(),
                    exp.records
                ));
            }
        }
        Err(e) => {
            check_error(&e, path, exp)?;
            if built.clean && exp.text.is_some() {
                return Err(format!("an unmutated file failed to load: {e}"));
            }
        }
    }
    Ok(())
}
