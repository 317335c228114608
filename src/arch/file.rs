//! Architecture files (TOML). The format is the serde form of [`Network`], plus `repeat` to stack a layer,
//! a per-nonlinearity default for a dense layer's `sigma_w2`, and data paths relative to the file.
//! Documented in theory/architecture-files.md; examples in `examples/`.
//!
//! A bad value is reported with the file, line and column, the TOML path of the value (e.g.
//! `layers[0].ops[0].dense.sigma_w2`) and the parser's caret under it: range checks run while
//! deserialising (the `file_*` validators in `arch/mod.rs`), where the parser still knows the span.

use super::{Layer, MlpSpec, Network, Op};
use crate::error::{Error, Result};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLayer {
    #[serde(default = "one", deserialize_with = "repeat_count")]
    repeat: usize,
    ops: Vec<super::Op>,
}

fn one() -> usize {
    1
}

fn repeat_count<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<usize, D::Error> {
    let v = usize::deserialize(d)?;
    if (1..=100_000).contains(&v) {
        Ok(v)
    } else {
        Err(serde::de::Error::custom(format!(
            "repeat = {v} is not accepted (expected an integer in 1..=100000)"
        )))
    }
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

/// 1-based (line, column) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// The parser's message without its own location header and snippet (we print both ourselves).
fn bare_message(e: &toml::de::Error) -> String {
    e.message().trim().replace('\n', " ")
}

/// A dense layer without `sigma_w2` takes the command line's default for the nonlinearity that follows it
/// in the same op list (He 2/(1+a^2) for the relu family, 1 otherwise), or 1 when no nonlinearity follows.
fn fill_default_sigma_w2(ops: &mut [Op]) {
    for i in 0..ops.len() {
        if let Op::Residual(r) = &mut ops[i] {
            fill_default_sigma_w2(&mut r.branch);
            continue;
        }
        let next_act = ops[i + 1..].iter().find_map(|op| match op {
            Op::Act(a) => Some(*a),
            Op::Dense(_) | Op::Residual(_) => Some(crate::nonlin::Nonlinearity::Linear),
            _ => None,
        });
        if let Op::Dense(d) = &mut ops[i] {
            if d.sigma_w2.is_nan() {
                d.sigma_w2 = next_act.map_or(1.0, MlpSpec::default_sigma_w2);
            }
        }
    }
}

pub fn from_toml_str(text: &str, path: &str) -> Result<Network> {
    let de = toml::Deserializer::new(text);
    let f: FileNetwork = serde_path_to_error::deserialize(de).map_err(|e| {
        let at = e.path().to_string();
        let inner = e.into_inner();
        let mut message = match inner.span() {
            Some(span) => {
                let (line, col) = line_col(text, span.start);
                let src = text.lines().nth(line - 1).unwrap_or("");
                let width = text[span.clone()]
                    .lines()
                    .next()
                    .map_or(1, |s| s.chars().count().max(1));
                format!(
                    "line {line}, column {col}{}: {}\n{:>w$} |\n{line} | {src}\n{:>w$} | {}{}",
                    if at == "." || at.is_empty() {
                        String::new()
                    } else {
                        format!(", at `{at}`")
                    },
                    bare_message(&inner),
                    "",
                    "",
                    " ".repeat(col - 1),
                    "^".repeat(width),
                    w = line.to_string().len()
                )
            }
            None => format!("at `{at}`: {}", bare_message(&inner)),
        };
        if message.ends_with('\n') {
            message.pop();
        }
        Error::File {
            path: path.to_string(),
            message,
        }
    })?;
    let mut layers = Vec::new();
    for mut l in f.layers {
        fill_default_sigma_w2(&mut l.ops);
        for _ in 0..l.repeat {
            layers.push(Layer { ops: l.ops.clone() });
        }
    }
    let mut input = f.input;
    if let Some(d) = input.data.as_mut() {
        // A relative data path is relative to the architecture file, not to the working directory.
        let p = std::path::Path::new(&d.path);
        if p.is_relative() {
            if let Some(dir) = std::path::Path::new(path).parent() {
                d.path = dir.join(p).display().to_string();
            }
        }
        d.ensure_loaded()?;
    }
    let net = Network { input, layers };
    net.validate().map_err(|e| match e {
        // Checks that span several values (widths that do not chain, looks-linear placement) have no
        // single location; they name the layer, and the file is named here.
        Error::Architecture(m) => Error::File {
            path: path.to_string(),
            message: m,
        },
        other => other,
    })?;
    Ok(net)
}

pub fn load_file(path: &std::path::Path) -> Result<Network> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::File {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    from_toml_str(&text, &path.display().to_string())
}
