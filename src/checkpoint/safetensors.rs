//! The safetensors layout (Hugging Face, as written by `safetensors.{torch,flax,numpy}.save_file`):
//! an 8-byte little-endian header length N, N bytes of JSON `{name: {dtype, shape, data_offsets: [a, b]},
//! "__metadata__": {...}}`, then the tensors' little-endian bytes, each at [a, b) of the data section.
//! Read here: F64, F32, F16 and BF16 (converted to f64 exactly); written: F64.
//!
//! Every size in the header is checked against the bytes actually present before anything is
//! allocated, so a file claiming an absurd length or shape is refused, not trusted.

use crate::error::{Error, Result};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Largest header accepted (the format's reference implementation uses the same 100 MB cap).
pub const MAX_HEADER: u64 = 100_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dtype {
    F64,
    F32,
    F16,
    BF16,
}

impl Dtype {
    fn size(self) -> usize {
        match self {
            Dtype::F64 => 8,
            Dtype::F32 => 4,
            Dtype::F16 | Dtype::BF16 => 2,
        }
    }
}

#[derive(Clone, Debug)]
struct Entry {
    dtype: Dtype,
    shape: Vec<usize>,
    start: usize,
    end: usize,
}

/// A parsed safetensors file: the tensors are converted to f64 when asked for.
#[derive(Clone, Debug)]
pub struct SafeTensors {
    path: String,
    bytes: Vec<u8>,
    data_start: usize,
    entries: BTreeMap<String, Entry>,
}

/// One tensor as f64, row-major (C order), with its shape.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f64>,
}

fn err(path: &str, message: impl Into<String>) -> Error {
    Error::File {
        path: path.to_string(),
        message: message.into(),
    }
}

impl SafeTensors {
    pub fn read_file(path: &std::path::Path) -> Result<SafeTensors> {
        let p = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| err(&p, e.to_string()))?;
        SafeTensors::parse(bytes, &p)
    }

    /// Parses `bytes`; `path` names the source in errors.
    pub fn parse(bytes: Vec<u8>, path: &str) -> Result<SafeTensors> {
        let bad = |m: String| err(path, format!("safetensors: {m}"));
        if bytes.len() < 8 {
            return Err(bad(format!(
                "{} bytes, shorter than the 8-byte header length (truncated or not a safetensors file)",
                bytes.len()
            )));
        }
        let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
        let avail = (bytes.len() - 8) as u64;
        if n > MAX_HEADER || n > avail {
            return Err(bad(format!(
                "the header claims {n} bytes, the file has {avail} after the length (truncated or not a safetensors file)"
            )));
        }
        let n = n as usize;
        let header: Map<String, Value> = serde_json::from_slice(&bytes[8..8 + n])
            .map_err(|e| bad(format!("header is not a JSON object: {e}")))?;
        let data_start = 8 + n;
        let data_len = bytes.len() - data_start;
        let mut entries = BTreeMap::new();
        for (name, v) in &header {
            if name == "__metadata__" {
                continue;
            }
            let t = v
                .as_object()
                .ok_or_else(|| bad(format!("tensor \"{name}\": entry is not an object")))?;
            let dtype = match t.get("dtype").and_then(Value::as_str) {
                Some("F64") => Dtype::F64,
                Some("F32") => Dtype::F32,
                Some("F16") => Dtype::F16,
                Some("BF16") => Dtype::BF16,
                Some(other) => {
                    return Err(bad(format!(
                        "tensor \"{name}\" has dtype {other}, not read (expected F64, F32, F16 or BF16)"
                    )))
                }
                None => return Err(bad(format!("tensor \"{name}\" has no dtype"))),
            };
            let shape: Vec<usize> = t
                .get("shape")
                .and_then(Value::as_array)
                .ok_or_else(|| bad(format!("tensor \"{name}\" has no shape")))?
                .iter()
                .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
                .collect::<Option<_>>()
                .ok_or_else(|| {
                    bad(format!(
                        "tensor \"{name}\": shape is not a list of integers"
                    ))
                })?;
            let offs: Vec<usize> = t
                .get("data_offsets")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
                        .collect::<Option<Vec<_>>>()
                })
                .and_then(|o| o.filter(|o| o.len() == 2))
                .ok_or_else(|| {
                    bad(format!(
                        "tensor \"{name}\": data_offsets is not [begin, end]"
                    ))
                })?;
            let (start, end) = (offs[0], offs[1]);
            // Element count with overflow checks: a claimed shape is only believed when the bytes are there.
            let count = shape
                .iter()
                .try_fold(1usize, |acc, &d| acc.checked_mul(d))
                .and_then(|c| c.checked_mul(dtype.size()));
            if start > end || end > data_len || count != Some(end - start) {
                return Err(bad(format!(
                    "tensor \"{name}\": shape {shape:?} of {dtype:?} does not fit data_offsets [{start}, {end}] of {data_len} data bytes (truncated file or bad header)"
                )));
            }
            entries.insert(
                name.clone(),
                Entry {
                    dtype,
                    shape,
                    start,
                    end,
                },
            );
        }
        Ok(SafeTensors {
            path: path.to_string(),
            bytes,
            data_start,
            entries,
        })
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.entries.keys()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    /// The tensor `name` as f64; a missing tensor or a non-finite value is an error naming it.
    pub fn tensor(&self, name: &str) -> Result<Tensor> {
        let e = self.entries.get(name).ok_or_else(|| {
            err(
                &self.path,
                format!("no tensor \"{name}\" (the file has {})", self.listing()),
            )
        })?;
        let raw = &self.bytes[self.data_start + e.start..self.data_start + e.end];
        let data: Vec<f64> = match e.dtype {
            Dtype::F64 => raw
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().expect("8")))
                .collect(),
            Dtype::F32 => raw
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().expect("4")) as f64)
                .collect(),
            Dtype::F16 => raw
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f64())
                .collect(),
            Dtype::BF16 => raw
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f64())
                .collect(),
        };
        if let Some(i) = data.iter().position(|v| !v.is_finite()) {
            return Err(err(
                &self.path,
                format!(
                    "tensor \"{name}\" has a non-finite value ({}) at flat index {i}",
                    data[i]
                ),
            ));
        }
        Ok(Tensor {
            shape: e.shape.clone(),
            data,
        })
    }

    fn listing(&self) -> String {
        let n = self.entries.len();
        let shown: Vec<String> = self
            .entries
            .iter()
            .take(8)
            .map(|(k, e)| format!("{k} {:?}", e.shape))
            .collect();
        let more = if n > 8 {
            format!(", ... {} more", n - 8)
        } else {
            String::new()
        };
        if n == 0 {
            "no tensors".into()
        } else {
            format!("{}{more}", shown.join(", "))
        }
    }
}

/// Serialises tensors (F64, in name order) in the safetensors layout. The header is padded with spaces
/// to a multiple of 8 bytes, as the reference writer does, so the data are aligned.
pub fn serialize(
    tensors: &BTreeMap<String, Tensor>,
    metadata: &BTreeMap<String, String>,
) -> Vec<u8> {
    let mut header = Map::new();
    if !metadata.is_empty() {
        header.insert(
            "__metadata__".into(),
            Value::Object(
                metadata
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                    .collect(),
            ),
        );
    }
    let mut offset = 0usize;
    for (name, t) in tensors {
        let len = t.data.len() * 8;
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": "F64", "shape": t.shape, "data_offsets": [offset, offset + len]}),
        );
        offset += len;
    }
    let mut h = serde_json::to_vec(&Value::Object(header)).expect("json");
    while !h.len().is_multiple_of(8) {
        h.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + h.len() + offset);
    out.extend_from_slice(&(h.len() as u64).to_le_bytes());
    out.extend_from_slice(&h);
    for t in tensors.values() {
        for v in &t.data {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    out
}

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename, so a reader
/// (or an interrupted run) never sees a partial file under the final name.
pub fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let p = path.display().to_string();
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    let fname = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    let tmp = match dir {
        Some(d) => d.join(format!(".{fname}.tmp{}", std::process::id())),
        None => std::path::PathBuf::from(format!(".{fname}.tmp{}", std::process::id())),
    };
    let res = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    res.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        err(&p, format!("cannot write: {e}"))
    })
}
