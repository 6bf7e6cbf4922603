//! Safetensors files: random valid ones (must load, with their values) and mutated ones
//! (header JSON, declared header length, data) through `read_file`.
use candle_core::{DType, Device, Tensor};
use serde_json::{json, Value};
use thinkjudge_model::loading::safetensors::read_file;
use thinkjudge_model::WeightMap;

use crate::fuzz_support::{preview, run, show, Rng};
use crate::{err_names, u64_interesting};

/// A valid safetensors file of random small tensors (supported dtypes, zero-sized and
/// scalar shapes included), with the header as JSON for mutation.
struct St {
    header: serde_json::Map<String, Value>,
    data: Vec<u8>,
}

const DTYPES: [(&str, DType, usize); 4] = [
    ("F32", DType::F32, 4),
    ("F16", DType::F16, 2),
    ("BF16", DType::BF16, 2),
    ("F64", DType::F64, 8),
];

fn random_st(rng: &mut Rng) -> St {
    let mut header = serde_json::Map::new();
    let mut data = Vec::new();
    for i in 0..rng.range(1, 5) {
        let (name, _, size) = *rng.pick(&DTYPES);
        let shape: Vec<usize> = (0..rng.below(4)).map(|_| rng.below(5)).collect();
        let n: usize = shape.iter().product::<usize>() * size;
        let start = data.len();
        // Finite values only, so a comparison of values is meaningful.
        for _ in 0..n / size {
            let bytes: Vec<u8> = match name {
                "F32" => ((rng.below(2000) as f32 - 1000.0) / 8.0)
                    .to_le_bytes()
                    .to_vec(),
                "F64" => ((rng.below(2000) as f64 - 1000.0) / 8.0)
                    .to_le_bytes()
                    .to_vec(),
                // 0x3c00 = 1.0 in f16, 0x3f80 = 1.0 in bf16: small exact values.
                "F16" => (0x3c00u16 + rng.below(64) as u16).to_le_bytes().to_vec(),
                _ => (0x3f80u16 + rng.below(64) as u16).to_le_bytes().to_vec(),
            };
            data.extend(bytes);
        }
        let tname = if rng.one_in(5) {
            format!("t{i}.\u{e9}\u{4e2d}")
        } else {
            format!("model.layers.{i}.weight")
        };
        header.insert(
            tname,
            json!({"dtype": name, "shape": shape, "data_offsets": [start, data.len()]}),
        );
    }
    if rng.one_in(2) {
        header.insert("__metadata__".into(), json!({"format": "pt"}));
    }
    St { header, data }
}

pub(crate) fn st_bytes(header: &[u8], data: &[u8], declared_len: Option<u64>) -> Vec<u8> {
    let mut out = declared_len
        .unwrap_or(header.len() as u64)
        .to_le_bytes()
        .to_vec();
    out.extend_from_slice(header);
    out.extend_from_slice(data);
    out
}

pub(crate) fn odd_json(rng: &mut Rng) -> Value {
    match rng.below(16) {
        0 => Value::Null,
        1 => json!(-1),
        2 => json!(0),
        3 => json!(1u64 << 60),
        4 => json!(u64::MAX),
        5 => json!(1.5),
        6 => json!(1e300),
        7 => json!("F32"),
        8 => json!(""),
        9 => json!([]),
        10 => json!({}),
        11 => json!([1u64 << 32, 1u64 << 32]),
        12 => json!([1, 2, 3]),
        13 => json!(true),
        14 => json!(rng.text(6)),
        _ => json!([[[[[[1]]]]]]),
    }
}

/// Mutates a safetensors header structurally.
pub(crate) fn mutate_st_header(rng: &mut Rng, h: &mut serde_json::Map<String, Value>) {
    let names: Vec<String> = h.keys().cloned().collect();
    if names.is_empty() {
        h.insert("t".into(), odd_json(rng));
        return;
    }
    let name = rng.pick(&names).clone();
    let is_object = h[&name].is_object();
    match rng.below(8) {
        0..=3 | 6 if !is_object => {
            h.insert(name, odd_json(rng));
        }
        0 => {
            let dt = *rng.pick(&["I64", "U8", "BOOL", "F8_E4M3", "I32", "f32", "", "F32 "]);
            h[&name]["dtype"] = json!(dt);
        }
        1 => {
            let shape = match rng.below(5) {
                0 => json!([1u64 << 60]),
                1 => json!([1u64 << 32, 1u64 << 32, 16]),
                2 => json!([u64::MAX, 2]),
                3 => json!([0]),
                _ => odd_json(rng),
            };
            h[&name]["shape"] = shape;
        }
        2 => {
            let offsets = match rng.below(5) {
                0 => json!([0, 1u64 << 63]),
                1 => json!([u64::MAX, 0]),
                2 => json!([4, 4]),
                3 => json!([0, 4, 8]),
                _ => odd_json(rng),
            };
            h[&name]["data_offsets"] = offsets;
        }
        3 => {
            if let Some(o) = h[&name].as_object_mut() {
                let k = rng.pick(&["dtype", "shape", "data_offsets"]).to_string();
                o.remove(&k);
            }
        }
        4 => {
            h.insert(name, odd_json(rng));
        }
        5 => {
            h.insert("__metadata__".into(), odd_json(rng));
        }
        6 => {
            // Two tensors over the same bytes.
            let other = rng.pick(&names).clone();
            let offs = h[&other]
                .get("data_offsets")
                .cloned()
                .unwrap_or(Value::Null);
            h[&name]["data_offsets"] = offs;
        }
        _ => {
            h.remove(&name);
        }
    }
}

fn check_st_values(weights: &WeightMap, st: &St) -> Result<(), String> {
    for (name, e) in &st.header {
        if name == "__metadata__" {
            continue;
        }
        let dt = e["dtype"].as_str().unwrap_or_default();
        let (_, dtype, _) = DTYPES.iter().find(|d| d.0 == dt).ok_or("dtype")?;
        let shape: Vec<usize> =
            serde_json::from_value(e["shape"].clone()).map_err(|e| e.to_string())?;
        let [a, b]: [usize; 2] =
            serde_json::from_value(e["data_offsets"].clone()).map_err(|e| e.to_string())?;
        let want = Tensor::from_raw_buffer(&st.data[a..b], *dtype, &shape, &Device::Cpu)
            .and_then(|t| t.to_dtype(DType::F32))
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(|e| e.to_string())?;
        let got = weights.get(name).map_err(|e| e.to_string())?;
        if got.dtype() != DType::F32 || got.dims() != shape.as_slice() {
            return Err(format!("{name}: {:?} {:?} loaded", got.dtype(), got.dims()));
        }
        let got: Vec<f32> = got
            .flatten_all()
            .and_then(|t| t.to_vec1())
            .map_err(|e| e.to_string())?;
        if got != want {
            return Err(format!("{name}: values differ"));
        }
    }
    Ok(())
}

/// Random valid safetensors files (must load, with their values) and mutated ones (header
/// JSON, declared header length, data) through `read_file`.
#[test]
fn fuzz_safetensors() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("model.safetensors");
    run("safetensors", 1_000, move |rng| {
        let _keep = &dir;
        let mut st = random_st(rng);
        let random = rng.one_in(30);
        let clean = !random && rng.one_in(5);
        let bytes = if random {
            let n = rng.len(2048);
            rng.bytes(n)
        } else if clean {
            let header = serde_json::to_vec(&Value::Object(st.header.clone())).unwrap_or_default();
            st_bytes(&header, &st.data, None)
        } else {
            for _ in 0..rng.range(0, 2) {
                mutate_st_header(rng, &mut st.header);
            }
            let mut header =
                serde_json::to_vec(&Value::Object(st.header.clone())).unwrap_or_default();
            let mut data = st.data.clone();
            let mut declared = None;
            match rng.below(6) {
                0 => declared = Some(u64_interesting(rng, header.len() as u64)),
                1 => {
                    let at = rng.below(header.len() + 1);
                    header.truncate(at);
                }
                2 => header.extend_from_slice(b"    "),
                3 => {
                    let at = rng.below(data.len() + 1);
                    data.truncate(at);
                }
                4 => data.extend(rng.bytes(3)),
                _ => {}
            }
            let mut b = st_bytes(&header, &data, declared);
            if rng.one_in(4) {
                let at = rng.below(b.len());
                b.truncate(at);
            }
            b
        };
        show("file", &String::from_utf8_lossy(&bytes));
        std::fs::write(&path, &bytes).map_err(|e| e.to_string())?;
        let mut weights = WeightMap::new(&path);
        let r = read_file(&path, &Device::Cpu, &mut weights);
        match r {
            Ok(()) if clean => check_st_values(&weights, &st),
            Ok(()) => {
                if weights.iter().any(|(_, t)| t.dtype() != DType::F32) {
                    return Err("a tensor was not converted to f32".into());
                }
                Ok(())
            }
            Err(e) if clean => Err(format!("a valid file failed: {e}")),
            Err(e) => err_names(&e, &[&path]),
        }
        .map_err(|e| format!("{e}\n  file: {}", preview(&bytes)))
    });
}
