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
        Self::load_with_header(path, None)
    }

    /// As `load`; for a CSV, `header` Some(true) skips the first row, Some(false) reads it as data, None
    /// detects it (a first row none of whose cells is a number is a header).
    pub fn load_with_header(path: &std::path::Path, header: Option<bool>) -> Result<InputData> {
        let p = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| file_err(&p, e.to_string()))?;
        let vectors = if bytes.starts_with(b"\x93NUMPY") {
            parse_npy(&bytes, &p)?
        } else {
            parse_csv(&String::from_utf8_lossy(&bytes), &p, header)?
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

/// One vector per line. Cells are separated by commas, semicolons or tabs (or, when a line has none of
/// those, by spaces). A first line none of whose cells is a number is a header and skipped. An empty cell,
/// a text cell or a line with another number of cells than the first is an error naming line and column.
fn parse_csv(text: &str, path: &str, header: Option<bool>) -> Result<Vec<Vec<f64>>> {
    let mut out = Vec::new();
    let mut width: Option<usize> = None;
    let mut first = true;
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let cells: Vec<&str> = if line.contains([',', ';', '\t']) {
            line.split([',', ';', '\t']).map(str::trim).collect()
        } else {
            line.split(' ').filter(|s| !s.is_empty()).collect()
        };
        if first {
            first = false;
            let is_header =
                header.unwrap_or_else(|| cells.iter().all(|c| c.parse::<f64>().is_err()));
            if is_header {
                continue;
            }
        }
        let n = *width.get_or_insert(cells.len());
        if cells.len() != n {
            return Err(file_err(
                path,
                format!(
                    "line {line_no}: {} cells, the first row has {n}",
                    cells.len()
                ),
            ));
        }
        let row = cells
            .iter()
            .enumerate()
            .map(|(j, c)| {
                if c.is_empty() {
                    return Err(file_err(
                        path,
                        format!("line {line_no}, column {}: empty cell", j + 1),
                    ));
                }
                c.parse::<f64>().map_err(|_| {
                    file_err(
                        path,
                        format!("line {line_no}, column {}: \"{c}\" is not a number", j + 1),
                    )
                })
            })
            .collect::<Result<Vec<f64>>>()?;
        out.push(row);
    }
    Ok(out)
}

/// `.npy` through the data readers (float, integer and bool dtypes; an N-D array is one row per first
/// index, flattened).
fn parse_npy(b: &[u8], path: &str) -> Result<Vec<Vec<f64>>> {
    let a = crate::data::parse_npy(b, path)?;
    let rows = if a.shape.len() == 1 {
        vec![a.data]
    } else {
        a.rows()
    };
    Ok(rows)
}
