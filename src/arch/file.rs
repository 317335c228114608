//! Architecture files (TOML). The format is the serde form of [`Network`], plus `repeat` to stack a layer.
//! See `examples/` and the README.

use super::{Layer, Network};
use crate::error::{Error, Result};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLayer {
    #[serde(default = "one")]
    repeat: usize,
    ops: Vec<super::Op>,
}

fn one() -> usize {
    1
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileNetwork {
    #[serde(default)]
    #[allow(dead_code)]
    name: Option<String>,
    input: super::InputModel,
    layers: Vec<FileLayer>,
}

pub fn from_toml_str(text: &str, path: &str) -> Result<Network> {
    let f: FileNetwork = toml::from_str(text).map_err(|e| Error::File {
        path: path.to_string(),
        message: e.to_string().trim().replace('\n', " "),
    })?;
    let mut layers = Vec::new();
    for l in f.layers {
        if l.repeat == 0 || l.repeat > 100_000 {
            return Err(Error::param(
                format!("{path}: repeat"),
                l.repeat,
                "an integer in 1..=100000",
            ));
        }
        for _ in 0..l.repeat {
            layers.push(Layer { ops: l.ops.clone() });
        }
    }
    let mut input = f.input;
    if let Some(d) = input.data.as_mut() {
        d.ensure_loaded()?;
    }
    let net = Network { input, layers };
    net.validate()?;
    Ok(net)
}

pub fn load_file(path: &std::path::Path) -> Result<Network> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::File {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    from_toml_str(&text, &path.display().to_string())
}
