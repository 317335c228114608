//! Parsers over bytes already in memory (so property tests can feed them anything).

use super::Dataset;
use crate::error::{Error, Result};

fn err(path: &str, message: impl Into<String>) -> Error {
    Error::File {
        path: path.to_string(),
        message: message.into(),
    }
}

/// CSV reading options.
#[derive(Clone, Debug, Default)]
pub struct CsvOptions {
    /// Some(true): the first row is a header; Some(false): it is data; None: a first row none of whose
    /// cells is a number is taken as a header.
    pub header: Option<bool>,
    /// Column (0-based) of the label; None: the last column.
    pub label_column: Option<usize>,
}

/// A CSV of feature columns and one integer label column. Separators: comma, semicolon or tab. An empty
/// cell, a text cell, a row with another number of cells than the first, or a label that is not an
/// integer >= 0 is an error naming the line and column (both from 1).
pub fn parse_csv_labelled(text: &str, path: &str, opts: &CsvOptions) -> Result<Dataset> {
    let mut x = Vec::new();
    let mut y = Vec::new();
    let mut ncols: Option<usize> = None;
    let mut first = true;
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        let cells: Vec<&str> = line.split([',', ';', '\t']).map(str::trim).collect();
        if first {
            first = false;
            let is_header = match opts.header {
                Some(h) => h,
                None => cells.iter().all(|c| c.parse::<f64>().is_err()),
            };
            if is_header {
                ncols = Some(cells.len());
                continue;
            }
        }
        let n = *ncols.get_or_insert(cells.len());
        if cells.len() != n {
            return Err(err(
                path,
                format!(
                    "line {line_no}: {} cells, the first row has {n}",
                    cells.len()
                ),
            ));
        }
        if n < 2 {
            return Err(err(
                path,
                format!("line {line_no}: a row needs features and a label"),
            ));
        }
        let lc = opts.label_column.unwrap_or(n - 1);
        if lc >= n {
            return Err(Error::param(
                "--label-column",
                lc + 1,
                format!("a column of {path}, which has {n}"),
            ));
        }
        let mut row = Vec::with_capacity(n - 1);
        for (j, c) in cells.iter().enumerate() {
            if c.is_empty() {
                return Err(err(
                    path,
                    format!("line {line_no}, column {}: empty cell", j + 1),
                ));
            }
            let v: f64 = c.parse().map_err(|_| {
                err(
                    path,
                    format!("line {line_no}, column {}: \"{c}\" is not a number", j + 1),
                )
            })?;
            if !v.is_finite() {
                return Err(err(
                    path,
                    format!("line {line_no}, column {}: {c} is not finite", j + 1),
                ));
            }
            if j == lc {
                if v < 0.0 || v.fract() != 0.0 || v >= 1e9 {
                    return Err(err(
                        path,
                        format!("line {line_no}, column {}: label {c} is not a class index (an integer >= 0)", j + 1),
                    ));
                }
                y.push(v as usize);
            } else {
                row.push(v);
            }
        }
        x.push(row);
    }
    if x.is_empty() {
        return Err(err(path, "no data rows"));
    }
    let classes = y.iter().max().map_or(0, |m| m + 1);
    Ok(Dataset {
        name: path.to_string(),
        x,
        y,
        classes,
    })
}

/// An array read from `.npy` or IDX: its shape (first axis = rows) and its values, converted to f64.
#[derive(Clone, Debug, PartialEq)]
pub struct NpyArray {
    pub shape: Vec<usize>,
    pub data: Vec<f64>,
}

impl NpyArray {
    /// Rows of the array flattened (an N-D array becomes one row per first index).
    pub fn rows(&self) -> Vec<Vec<f64>> {
        let r = self.shape.first().copied().unwrap_or(1);
        let c = self.data.len().checked_div(r).unwrap_or(0);
        self.data.chunks(c.max(1)).map(<[f64]>::to_vec).collect()
    }
}

/// Checked element count: refuses shapes whose byte size overflows or exceeds what is present.
fn count(shape: &[usize], size: usize, avail: usize, path: &str, what: &str) -> Result<usize> {
    let n = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    match n.and_then(|n| n.checked_mul(size).map(|b| (n, b))) {
        Some((n, b)) if b <= avail => Ok(n),
        _ => Err(err(
            path,
            format!("{what}: shape {shape:?} needs more bytes than the {avail} present (truncated file or bad header)"),
        )),
    }
}

/// `.npy` (format 1, 2 or 3): little-endian or single-byte float and integer dtypes (f8, f4, f2, i8, i4,
/// i2, i1, u8, u4, u2, u1, and bool), C order, any number of dimensions (0-D is one value).
pub fn parse_npy(b: &[u8], path: &str) -> Result<NpyArray> {
    let bad = |m: String| err(path, format!(".npy: {m}"));
    if b.len() < 10 || !b.starts_with(b"\x93NUMPY") {
        return Err(bad("truncated or missing header".into()));
    }
    let (hlen, start) = if b[6] == 1 {
        (u16::from_le_bytes([b[8], b[9]]) as usize, 10usize)
    } else {
        if b.len() < 12 {
            return Err(bad("truncated header".into()));
        }
        (u32::from_le_bytes([b[8], b[9], b[10], b[11]]) as usize, 12)
    };
    let header = b
        .get(start..start.saturating_add(hlen))
        .ok_or_else(|| bad("truncated header".into()))?;
    let header = std::str::from_utf8(header).map_err(|_| bad("header is not text".into()))?;
    let field = |key: &str| -> Option<&str> {
        let i = header.find(key)? + key.len();
        Some(header[i..].trim_start_matches([' ', ':']))
    };
    let descr = field("'descr'").ok_or_else(|| bad("no descr".into()))?;
    let descr = descr
        .strip_prefix('\'')
        .and_then(|d| d.split('\'').next())
        .ok_or_else(|| bad("bad descr".into()))?;
    let (order, kind, size) = {
        let mut ch = descr.chars();
        let order = ch.next().unwrap_or('?');
        let kind = ch.next().unwrap_or('?');
        let size: usize = ch.as_str().parse().unwrap_or(0);
        (order, kind, size)
    };
    if order == '>' && size > 1 {
        return Err(bad(format!(
            "big-endian dtype '{descr}' is not read; save with a little-endian dtype"
        )));
    }
    let ok = matches!(
        (kind, size),
        ('f', 8 | 4 | 2) | ('i' | 'u', 8 | 4 | 2 | 1) | ('b', 1)
    );
    if !ok {
        return Err(bad(format!(
            "dtype '{descr}' is not read (float64/32/16, signed or unsigned integers, bool)"
        )));
    }
    if field("'fortran_order'").is_some_and(|s| s.starts_with("True")) {
        return Err(bad(
            "Fortran-order arrays are not read; save with C order".into()
        ));
    }
    let shape = field("'shape'").ok_or_else(|| bad("no shape".into()))?;
    let inner = shape
        .trim_start_matches('(')
        .split(')')
        .next()
        .unwrap_or("");
    let dims: Vec<usize> = inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .map_err(|_| bad(format!("bad shape ({inner})")))
        })
        .collect::<Result<_>>()?;
    let data = &b[(start + hlen).min(b.len())..];
    let n = count(&dims, size, data.len(), path, ".npy")?;
    let val = |k: usize| -> f64 {
        let c = &data[k * size..(k + 1) * size];
        match (kind, size) {
            ('f', 8) => f64::from_le_bytes(c.try_into().expect("8")),
            ('f', 4) => f32::from_le_bytes(c.try_into().expect("4")) as f64,
            ('f', 2) => half::f16::from_le_bytes([c[0], c[1]]).to_f64(),
            ('i', 8) => i64::from_le_bytes(c.try_into().expect("8")) as f64,
            ('i', 4) => i32::from_le_bytes(c.try_into().expect("4")) as f64,
            ('i', 2) => i16::from_le_bytes([c[0], c[1]]) as f64,
            ('i', 1) => c[0] as i8 as f64,
            ('u', 8) => u64::from_le_bytes(c.try_into().expect("8")) as f64,
            ('u', 4) => u32::from_le_bytes(c.try_into().expect("4")) as f64,
            ('u', 2) => u16::from_le_bytes([c[0], c[1]]) as f64,
            _ => c[0] as f64,
        }
    };
    let values: Vec<f64> = (0..n).map(val).collect();
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        return Err(bad(format!("non-finite value at flat index {i}")));
    }
    Ok(NpyArray {
        shape: if dims.is_empty() { vec![1] } else { dims },
        data: values,
    })
}

/// IDX (LeCun's MNIST format): two zero bytes, a type byte, the number of dimensions, big-endian u32
/// sizes, then big-endian data. Types: u8 (0x08), i8 (0x09), i16 (0x0b), i32 (0x0c), f32 (0x0d), f64
/// (0x0e).
pub fn parse_idx(b: &[u8], path: &str) -> Result<NpyArray> {
    let bad = |m: String| err(path, format!("IDX: {m}"));
    if b.len() < 4 || b[0] != 0 || b[1] != 0 {
        return Err(bad("not an IDX file (no 0x0000 magic)".into()));
    }
    let size = match b[2] {
        0x08 | 0x09 => 1,
        0x0b => 2,
        0x0c | 0x0d => 4,
        0x0e => 8,
        t => return Err(bad(format!("unknown element type 0x{t:02x}"))),
    };
    let nd = b[3] as usize;
    let hdr = 4 + 4 * nd;
    if b.len() < hdr {
        return Err(bad("truncated header".into()));
    }
    let dims: Vec<usize> = (0..nd)
        .map(|k| u32::from_be_bytes(b[4 + 4 * k..8 + 4 * k].try_into().expect("4")) as usize)
        .collect();
    let data = &b[hdr..];
    let n = count(&dims, size, data.len(), path, "IDX")?;
    let t = b[2];
    let values: Vec<f64> = (0..n)
        .map(|k| {
            let c = &data[k * size..(k + 1) * size];
            match t {
                0x08 => c[0] as f64,
                0x09 => c[0] as i8 as f64,
                0x0b => i16::from_be_bytes([c[0], c[1]]) as f64,
                0x0c => i32::from_be_bytes(c.try_into().expect("4")) as f64,
                0x0d => f32::from_be_bytes(c.try_into().expect("4")) as f64,
                _ => f64::from_be_bytes(c.try_into().expect("8")),
            }
        })
        .collect();
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        return Err(bad(format!("non-finite value at flat index {i}")));
    }
    Ok(NpyArray {
        shape: if dims.is_empty() { vec![1] } else { dims },
        data: values,
    })
}
