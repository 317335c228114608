//! Real input vectors from a file (CSV: one vector per line; .npy: a 2-D little-endian f64 or f32 array, C
//! order, one vector per row). The Monte Carlo engine feeds a random batch of them; the closed-form engine
//! uses their empirical mean square q_0 and mean pairwise correlation c_0 (theory/collapse.md: an
//! exchangeable approximation of a heterogeneous data set).

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputData {
    /// Where the vectors came from.
    pub path: String,
    /// The vectors (rows); loaded from `path`, never serialised.
    #[serde(skip)]
    pub vectors: Vec<Vec<f64>>,
}

fn file_err(path: &str, message: impl Into<String>) -> Error {
    Error::File {
        path: path.to_string(),
        message: message.into(),
    }
}

impl InputData {
    pub fn load(path: &std::path::Path) -> Result<InputData> {
        let p = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| file_err(&p, e.to_string()))?;
        let vectors = if bytes.starts_with(b"\x93NUMPY") {
            parse_npy(&bytes, &p)?
        } else {
            parse_csv(&String::from_utf8_lossy(&bytes), &p)?
        };
        let d = InputData { path: p, vectors };
        d.check()?;
        Ok(d)
    }

    /// Loads `path` if the vectors are not there yet (after reading an architecture file).
    pub fn ensure_loaded(&mut self) -> Result<()> {
        if self.vectors.is_empty() {
            *self = InputData::load(std::path::Path::new(&self.path))?;
        }
        Ok(())
    }

    fn check(&self) -> Result<()> {
        let n = self.dim();
        if self.vectors.is_empty() || n == 0 {
            return Err(file_err(&self.path, "no input vectors"));
        }
        for (i, v) in self.vectors.iter().enumerate() {
            if v.len() != n {
                return Err(file_err(
                    &self.path,
                    format!(
                        "vector {} has {} entries, the first has {n}",
                        i + 1,
                        v.len()
                    ),
                ));
            }
            if v.iter().any(|x| !x.is_finite()) {
                return Err(file_err(
                    &self.path,
                    format!("vector {} has a non-finite entry", i + 1),
                ));
            }
            if v.iter().all(|&x| x == 0.0) {
                return Err(file_err(&self.path, format!("vector {} is zero", i + 1)));
            }
        }
        Ok(())
    }

    pub fn dim(&self) -> usize {
        self.vectors.first().map_or(0, |v| v.len())
    }

    /// (q_0, c_0): mean of ||x||^2/n, and the mean over pairs a != b of (x_a . x_b / n) / q_0.
    pub fn moments(&self) -> (f64, f64) {
        let n = self.dim() as f64;
        let m = self.vectors.len();
        let q0 = self
            .vectors
            .iter()
            .map(|v| v.iter().map(|x| x * x).sum::<f64>())
            .sum::<f64>()
            / (m as f64 * n);
        if m < 2 {
            return (q0, 0.0);
        }
        // sum_{a != b} x_a . x_b = ||sum_a x_a||^2 - sum_a ||x_a||^2.
        let mut s = vec![0.0; self.dim()];
        for v in &self.vectors {
            for (si, x) in s.iter_mut().zip(v) {
                *si += x;
            }
        }
        let tot = s.iter().map(|x| x * x).sum::<f64>();
        let cross = (tot - q0 * n * m as f64) / (m as f64 * (m - 1) as f64 * n);
        (q0, (cross / q0).clamp(-1.0, 1.0))
    }
}

fn parse_csv(text: &str, path: &str) -> Result<Vec<Vec<f64>>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let row: std::result::Result<Vec<f64>, _> = line
            .split([',', ';', '\t', ' '])
            .filter(|s| !s.is_empty())
            .map(|s| s.trim().parse::<f64>())
            .collect();
        out.push(
            row.map_err(|_| file_err(path, format!("line {}: not a list of numbers", i + 1)))?,
        );
    }
    Ok(out)
}

fn parse_npy(b: &[u8], path: &str) -> Result<Vec<Vec<f64>>> {
    let bad = |m: &str| file_err(path, format!(".npy: {m}"));
    if b.len() < 10 {
        return Err(bad("truncated header"));
    }
    let major = b[6];
    let (hlen, start) = if major == 1 {
        (u16::from_le_bytes([b[8], b[9]]) as usize, 10)
    } else {
        if b.len() < 12 {
            return Err(bad("truncated header"));
        }
        (u32::from_le_bytes([b[8], b[9], b[10], b[11]]) as usize, 12)
    };
    let header = std::str::from_utf8(
        b.get(start..start + hlen)
            .ok_or_else(|| bad("truncated header"))?,
    )
    .map_err(|_| bad("header is not text"))?;
    let field = |key: &str| -> Option<&str> {
        let i = header.find(key)? + key.len();
        Some(header[i..].trim_start_matches([' ', ':']))
    };
    let descr = field("'descr'").ok_or_else(|| bad("no descr"))?;
    let size = if descr.starts_with("'<f8'") {
        8
    } else if descr.starts_with("'<f4'") {
        4
    } else {
        return Err(bad(
            "only little-endian float64 ('<f8') or float32 ('<f4') arrays are read",
        ));
    };
    if field("'fortran_order'").is_some_and(|s| s.starts_with("True")) {
        return Err(bad("Fortran-order arrays are not read; save with C order"));
    }
    let shape = field("'shape'").ok_or_else(|| bad("no shape"))?;
    let inner = shape
        .trim_start_matches('(')
        .split(')')
        .next()
        .unwrap_or("");
    let dims: Vec<usize> = inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>().map_err(|_| bad("bad shape")))
        .collect::<Result<_>>()?;
    let (rows, cols) = match dims.as_slice() {
        [r, c] => (*r, *c),
        [c] => (1, *c),
        _ => return Err(bad("expected a 1-D or 2-D array")),
    };
    let data = &b[start + hlen..];
    if data.len() < rows * cols * size {
        return Err(bad("data shorter than its shape"));
    }
    let val = |k: usize| -> f64 {
        let o = k * size;
        if size == 8 {
            f64::from_le_bytes(data[o..o + 8].try_into().expect("8 bytes"))
        } else {
            f32::from_le_bytes(data[o..o + 4].try_into().expect("4 bytes")) as f64
        }
    };
    Ok((0..rows)
        .map(|r| (0..cols).map(|c| val(r * cols + c)).collect())
        .collect())
}
