//! Labelled data sets for training: the vendored digits set, and readers for the formats users have
//! (CSV with a label column, `.npy` features + labels, IDX as MNIST / Fashion-MNIST ship it, gzipped or
//! not). Every reader checks sizes against the bytes present before allocating and reports a bad cell
//! by line and column. theory/training.md states the splits and the standardisation.

mod readers;

pub use readers::{parse_csv_labelled, parse_idx, parse_npy, CsvOptions, NpyArray};

use crate::error::{Error, Result};
use serde::Serialize;

/// Features (one row per example) and integer class labels 0..classes.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    pub name: String,
    pub x: Vec<Vec<f64>>,
    pub y: Vec<usize>,
    pub classes: usize,
}

impl Dataset {
    pub fn len(&self) -> usize {
        self.x.len()
    }
    pub fn is_empty(&self) -> bool {
        self.x.is_empty()
    }
    pub fn dim(&self) -> usize {
        self.x.first().map_or(0, Vec::len)
    }

    fn check(&self) -> Result<()> {
        if self.x.is_empty() {
            return Err(Error::File {
                path: self.name.clone(),
                message: "no examples".into(),
            });
        }
        if self.x.len() != self.y.len() {
            return Err(Error::File {
                path: self.name.clone(),
                message: format!("{} feature rows but {} labels", self.x.len(), self.y.len()),
            });
        }
        Ok(())
    }

    /// Rows `range` as a new data set.
    pub fn slice(&self, range: std::ops::Range<usize>, suffix: &str) -> Dataset {
        Dataset {
            name: format!("{}{suffix}", self.name),
            x: self.x[range.clone()].to_vec(),
            y: self.y[range].to_vec(),
            classes: self.classes,
        }
    }
}

/// The UCI "Optical Recognition of Handwritten Digits" test set as scikit-learn ships it
/// (`sklearn/datasets/data/digits.csv.gz`): 1797 images of 8x8 pixel counts 0..16, label last; by
/// E. Alpaydin and C. Kaynak, CC BY 4.0 (data/README.md).
const DIGITS_GZ: &[u8] = include_bytes!("../../data/digits.csv.gz");

pub fn digits() -> Result<Dataset> {
    use std::io::Read;
    let mut text = String::new();
    flate2::read::GzDecoder::new(DIGITS_GZ)
        .read_to_string(&mut text)
        .map_err(|e| Error::File {
            path: "digits (embedded)".into(),
            message: e.to_string(),
        })?;
    let d = parse_csv_labelled(&text, "digits", &CsvOptions::default())?;
    Ok(Dataset {
        name: "digits".into(),
        ..d
    })
}

/// Where Debian's `dataset-fashion-mnist` puts its gzipped IDX files.
pub const FASHION_MNIST_DIRS: [&str; 2] = [
    "/usr/share/fashion-mnist",
    "/usr/share/dataset-fashion-mnist",
];

/// Fashion-MNIST (train, test) from the Debian package's IDX files.
pub fn fashion_mnist() -> Result<(Dataset, Dataset)> {
    let find = |stem: &str| -> Option<std::path::PathBuf> {
        for d in FASHION_MNIST_DIRS {
            for ext in ["-ubyte.gz", "-ubyte", ".gz", ""] {
                let p = std::path::Path::new(d).join(format!("{stem}{ext}"));
                if p.exists() {
                    return Some(p);
                }
            }
        }
        None
    };
    let need = |stem: &str| {
        find(stem).ok_or_else(|| Error::File {
            path: "fashion-mnist".into(),
            message: format!(
                "{stem} not found in {}: install it with `apt-get install dataset-fashion-mnist` (`dpkg -L dataset-fashion-mnist` lists its files), or pass the IDX files with --data FILE --labels FILE",
                FASHION_MNIST_DIRS.join(" or ")
            ),
        })
    };
    let load = |imgs: &str, labels: &str, name: &str| -> Result<Dataset> {
        let xi = need(imgs)?;
        let yi = need(labels)?;
        load_pair(&xi, &yi, name)
    };
    Ok((
        load(
            "train-images-idx3",
            "train-labels-idx1",
            "fashion-mnist/train",
        )?,
        load("t10k-images-idx3", "t10k-labels-idx1", "fashion-mnist/test")?,
    ))
}

fn read(path: &std::path::Path) -> Result<Vec<u8>> {
    let p = path.display().to_string();
    let raw = std::fs::read(path).map_err(|e| Error::File {
        path: p.clone(),
        message: e.to_string(),
    })?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        use std::io::Read;
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .take(4 << 30)
            .read_to_end(&mut out)
            .map_err(|e| Error::File {
                path: p,
                message: format!("gzip: {e}"),
            })?;
        return Ok(out);
    }
    Ok(raw)
}

fn labels_from(a: &NpyArray, path: &str) -> Result<Vec<usize>> {
    a.data
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            if v >= 0.0 && v.fract() == 0.0 && v < 1e9 {
                Ok(v as usize)
            } else {
                Err(Error::File {
                    path: path.to_string(),
                    message: format!(
                        "label {} is {v}, not a class index (an integer >= 0)",
                        i + 1
                    ),
                })
            }
        })
        .collect()
}

/// Features and labels from two files (`.npy` or IDX, gzipped or not).
pub fn load_pair(
    features: &std::path::Path,
    labels: &std::path::Path,
    name: &str,
) -> Result<Dataset> {
    let parse = |p: &std::path::Path| -> Result<NpyArray> {
        let b = read(p)?;
        let ps = p.display().to_string();
        if b.starts_with(b"\x93NUMPY") {
            parse_npy(&b, &ps)
        } else {
            parse_idx(&b, &ps)
        }
    };
    let xa = parse(features)?;
    let ya = parse(labels)?;
    let rows = xa.shape.first().copied().unwrap_or(0);
    let cols = xa.data.len().checked_div(rows).unwrap_or(0);
    let x: Vec<Vec<f64>> = xa.data.chunks(cols.max(1)).map(<[f64]>::to_vec).collect();
    let y = labels_from(&ya, &labels.display().to_string())?;
    let classes = y.iter().max().map_or(0, |m| m + 1);
    let d = Dataset {
        name: name.to_string(),
        x,
        y,
        classes,
    };
    d.check()?;
    Ok(d)
}

/// How a loaded set is split into training and test rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Split {
    /// The data set's own split: Fashion-MNIST's train/test files; otherwise the last 20% of rows (in
    /// file order) are the test set.
    Fixed,
    /// Every row is a training row; no test set.
    None,
}

/// Input standardisation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Standardize {
    /// Per feature: subtract the training rows' mean, divide by their standard deviation (features that are
    /// constant on the training rows are only centred). The test rows use the training statistics.
    Feature,
    /// One mean and one standard deviation over every value of the training rows (the usual choice for
    /// pixels: a per-feature z-score blows up pixels that are almost always blank in training).
    Global,
    None,
}

/// A training set and an optional test set, as fed to the trainer.
#[derive(Clone, Debug)]
pub struct Prepared {
    pub train: Dataset,
    pub test: Option<Dataset>,
    pub split: String,
}

/// Loads `spec` ("digits", "fashion-mnist", or a path: CSV, or `.npy`/IDX features with `labels`), splits
/// and standardises it.
pub fn prepare(
    spec: &str,
    labels: Option<&std::path::Path>,
    csv: &CsvOptions,
    split: Split,
    standardize: Standardize,
) -> Result<Prepared> {
    let (all, own_test) = match spec {
        "digits" => (digits()?, None),
        "fashion-mnist" => {
            let (a, b) = fashion_mnist()?;
            (a, Some(b))
        }
        path => {
            let p = std::path::Path::new(path);
            match labels {
                Some(l) => (load_pair(p, l, path)?, None),
                None => {
                    let b = read(p)?;
                    if b.starts_with(b"\x93NUMPY") || b.starts_with(&[0, 0, 8]) {
                        return Err(Error::File {
                            path: path.to_string(),
                            message: "a .npy or IDX feature file needs its labels: --labels FILE"
                                .into(),
                        });
                    }
                    let text = String::from_utf8(b).map_err(|_| Error::File {
                        path: path.to_string(),
                        message: "not UTF-8 text (a CSV), .npy or IDX file".into(),
                    })?;
                    (parse_csv_labelled(&text, path, csv)?, None)
                }
            }
        }
    };
    let (mut train, mut test, how) = match (split, own_test) {
        (Split::None, Some(t)) => {
            let mut a = all;
            a.x.extend(t.x);
            a.y.extend(t.y);
            a.classes = a.classes.max(t.classes);
            (a, None, "none: every row is a training row".to_string())
        }
        (Split::None, None) => (all, None, "none: every row is a training row".to_string()),
        (Split::Fixed, Some(t)) => {
            let how = format!(
                "the data set's own: {} training rows, {} test rows",
                all.len(),
                t.len()
            );
            (all, Some(t), how)
        }
        (Split::Fixed, None) => {
            let n = all.len();
            let cut = n - n / 5;
            if cut == 0 || cut == n {
                return Err(Error::File {
                    path: all.name.clone(),
                    message: format!(
                        "{n} rows are too few to hold out 20% for testing; use --split none"
                    ),
                });
            }
            let how = format!(
                "fixed: rows 1..={cut} train, rows {}..={n} test (file order)",
                cut + 1
            );
            (
                all.slice(0..cut, "/train"),
                Some(all.slice(cut..n, "/test")),
                how,
            )
        }
    };
    let classes = train.classes.max(test.as_ref().map_or(0, |t| t.classes));
    train.classes = classes;
    if let Some(t) = test.as_mut() {
        t.classes = classes;
        if t.dim() != train.dim() {
            return Err(Error::File {
                path: t.name.clone(),
                message: format!(
                    "test rows have {} features, training rows {}",
                    t.dim(),
                    train.dim()
                ),
            });
        }
    }
    if standardize == Standardize::Global {
        let vals = train.x.iter().flatten();
        let n = (train.len() * train.dim()) as f64;
        let mean = vals.clone().sum::<f64>() / n;
        let var = vals.map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
        let sd = if var > 0.0 { var.sqrt() } else { 1.0 };
        for ds in std::iter::once(&mut train).chain(test.as_mut()) {
            for r in ds.x.iter_mut() {
                r.iter_mut().for_each(|v| *v = (*v - mean) / sd);
            }
        }
    }
    if standardize == Standardize::Feature {
        let d = train.dim();
        let n = train.len() as f64;
        let mut mean = vec![0.0; d];
        for r in &train.x {
            for (m, v) in mean.iter_mut().zip(r) {
                *m += v / n;
            }
        }
        let mut sd = vec![0.0; d];
        for r in &train.x {
            for ((s, v), m) in sd.iter_mut().zip(r).zip(&mean) {
                *s += (v - m) * (v - m) / n;
            }
        }
        let sd: Vec<f64> = sd
            .iter()
            .map(|v| if *v > 0.0 { v.sqrt() } else { 1.0 })
            .collect();
        let apply = |ds: &mut Dataset| {
            for r in ds.x.iter_mut() {
                for ((v, m), s) in r.iter_mut().zip(&mean).zip(&sd) {
                    *v = (*v - m) / s;
                }
            }
        };
        apply(&mut train);
        if let Some(t) = test.as_mut() {
            apply(t);
        }
    }
    Ok(Prepared {
        train,
        test,
        split: how,
    })
}
