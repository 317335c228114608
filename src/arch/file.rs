//! Architecture files (TOML). The format is the serde form of [`Network`], plus `repeat` to stack a layer,
//! a per-nonlinearity default for a dense layer's `sigma_w2`, and data paths relative to the file.
//! Documented in theory/architecture-files.md; examples in `examples/`. Ops may also name the checkpoint
//! tensors that hold their parameters (`weight = "..."`, theory/checkpoints.md); those keys are taken out
//! before serde reads the op.
//!
//! A bad value is reported with the file, line and column, the TOML path of the value (e.g.
//! `layers[0].ops[0].dense.sigma_w2`) and the parser's caret under it: range checks run while
//! deserialising (the `file_*` validators in `arch/mod.rs`), where the parser still knows the span.

use super::names::{self, ParamNames};
use super::{InitScheme, Layer, MlpSpec, Network, Op};
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
    /// A framework scheme for every dense op that does not name its own `init`.
    #[serde(default, deserialize_with = "file_scheme_opt")]
    init: Option<InitScheme>,
    layers: Vec<FileLayer>,
}

fn file_scheme_opt<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<InitScheme>, D::Error> {
    super::file_scheme(d).map(Some)
}

/// What the file itself says about one op's initialisation (serde has already filled in the rest): the
/// scheme it names, and whether it gives the variances a scheme may fix.
enum OpInit {
    Other,
    Dense {
        scheme: Option<InitScheme>,
        sigma_w2: bool,
        sigma_b2: bool,
    },
    Residual(Vec<OpInit>),
}

fn op_inits(ops: &[toml::Value]) -> Vec<OpInit> {
    ops.iter()
        .map(|op| {
            if let Some(d) = op.get("dense") {
                OpInit::Dense {
                    scheme: d
                        .get("init")
                        .and_then(|v| v.as_str())
                        .and_then(|v| v.parse().ok()),
                    sigma_w2: d.get("sigma_w2").is_some(),
                    sigma_b2: d.get("sigma_b2").is_some(),
                }
            } else if let Some(toml::Value::Array(b)) =
                op.get("residual").and_then(|r| r.get("branch"))
            {
                OpInit::Residual(op_inits(b))
            } else {
                OpInit::Other
            }
        })
        .collect()
}

/// Sets the variances a named scheme fixes (from each dense op's fans, as `--init` does) and the file-level
/// scheme's distribution on dense ops without their own `init`. A scheme that fixes a variance the op also
/// gives is an error naming the op's TOML path.
fn apply_schemes(
    ops: &mut [Op],
    inits: &[OpInit],
    file_scheme: Option<InitScheme>,
    fan_in: &mut usize,
    at: &str,
    path: &str,
) -> Result<()> {
    for (k, (op, init)) in ops.iter_mut().zip(inits).enumerate() {
        match (op, init) {
            (
                Op::Dense(d),
                OpInit::Dense {
                    scheme,
                    sigma_w2,
                    sigma_b2,
                },
            ) => {
                let here = format!("{at}[{k}].dense");
                if let Some(s) = scheme.or(file_scheme) {
                    let from = if scheme.is_some() {
                        format!("init = \"{}\"", s.name())
                    } else {
                        format!("the file's init = \"{}\"", s.name())
                    };
                    let conflict = |key: &str| {
                        Error::File {
                        path: path.to_string(),
                        message: format!(
                            "at `{here}`: `{key}` and {from} both set it: give one (init = \"gaussian\" or \"uniform\" keeps a given {key})"
                        ),
                    }
                    };
                    d.init = s.distribution();
                    if s.fixes_scale() {
                        if *sigma_w2 {
                            return Err(conflict("sigma_w2"));
                        }
                        d.sigma_w2 = s.sigma_w2(*fan_in, d.width).unwrap_or(d.sigma_w2);
                    }
                    if s.fixes_bias() {
                        if *sigma_b2 {
                            return Err(conflict("sigma_b2"));
                        }
                        d.sigma_b2 = s.sigma_b2(*fan_in).unwrap_or(d.sigma_b2);
                    }
                }
                *fan_in = d.width;
            }
            (Op::Residual(r), OpInit::Residual(b)) => {
                // The branch starts from the block's input; the skip keeps that width.
                let mut f = *fan_in;
                apply_schemes(
                    &mut r.branch,
                    b,
                    file_scheme,
                    &mut f,
                    &format!("{at}[{k}].residual.branch"),
                    path,
                )?;
            }
            _ => {}
        }
    }
    Ok(())
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
            Op::LayerNorm { .. } | Op::BatchNorm { .. } => None,
        });
        if let Op::Dense(d) = &mut ops[i] {
            if d.sigma_w2.is_nan() {
                d.sigma_w2 = next_act.map_or(1.0, MlpSpec::default_sigma_w2);
            }
        }
    }
}

/// The file's error for a parser or serde failure: line, column, TOML path and a caret where the parser
/// knows the span; the TOML path alone where it does not (values read back from a name-stripped tree).
fn located(text: &str, path: &str, at: String, inner: toml::de::Error) -> Error {
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
}

pub fn from_toml_str(text: &str, path: &str) -> Result<Network> {
    from_toml_str_named(text, path).map(|(n, _)| n)
}

/// Reads an architecture file and the checkpoint tensor names its ops give (see [`ParamNames`]).
pub fn from_toml_str_named(text: &str, path: &str) -> Result<(Network, ParamNames)> {
    let original: toml::Value =
        toml::from_str(text).map_err(|e| located(text, path, String::new(), e))?;
    let mut value = original.clone();
    // Names are taken out of each op (expanded over `repeat`) before serde reads the op.
    let mut raw_layers: Vec<(usize, Vec<toml::Value>)> = Vec::new();
    if let Some(toml::Value::Array(ls)) = value.get("layers") {
        for l in ls {
            let repeat = l
                .get("repeat")
                .and_then(|r| r.as_integer())
                .unwrap_or(1)
                .clamp(0, 100_001) as usize;
            let ops = match l.get("ops") {
                Some(toml::Value::Array(o)) => o.clone(),
                _ => Vec::new(),
            };
            raw_layers.push((repeat, ops));
        }
    }
    let mut names = ParamNames::default();
    let mut layer_index = 0;
    for (repeat, ops) in &raw_layers {
        for _ in 0..(*repeat).min(100_000) {
            for (k, op) in ops.iter().enumerate() {
                let mut op = op.clone();
                names::strip_op(&mut op, &[layer_index, k], &mut names, path)?;
            }
            layer_index += 1;
        }
    }
    if let Some(toml::Value::Array(ls)) = value.get_mut("layers") {
        for l in ls.iter_mut() {
            if let Some(toml::Value::Array(ops)) = l.get_mut("ops") {
                for op in ops.iter_mut() {
                    // The path only labels messages here; the names were recorded above.
                    names::strip_op(op, &[0, 0], &mut ParamNames::default(), path)?;
                }
            }
        }
    }
    names::check_unique(&names, path)?;
    let f: FileNetwork = if value == original {
        // No tensor names: read the text itself, so errors keep their line, column and caret.
        serde_path_to_error::deserialize(toml::Deserializer::new(text))
            .map_err(|e| located(text, path, e.path().to_string(), e.into_inner()))?
    } else {
        serde_path_to_error::deserialize(value)
            .map_err(|e| located(text, path, e.path().to_string(), e.into_inner()))?
    };
    let mut layers = Vec::new();
    let mut fan_in = f.input.width;
    for (i, l) in f.layers.into_iter().enumerate() {
        let inits = original
            .get("layers")
            .and_then(|ls| ls.get(i))
            .and_then(|l| l.get("ops"))
            .and_then(|o| o.as_array())
            .map_or_else(Vec::new, |o| op_inits(o));
        for _ in 0..l.repeat {
            // Per repeat: a scheme's sigma_w^2 depends on the fans, which differ for the first copy.
            let mut ops = l.ops.clone();
            apply_schemes(
                &mut ops,
                &inits,
                f.init,
                &mut fan_in,
                &format!("layers[{i}].ops"),
                path,
            )?;
            fill_default_sigma_w2(&mut ops);
            layers.push(Layer { ops });
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
    Ok((net, names))
}

pub fn load_file(path: &std::path::Path) -> Result<Network> {
    load_file_named(path).map(|(n, _)| n)
}

/// [`load_file`] with the tensor names of its ops.
pub fn load_file_named(path: &std::path::Path) -> Result<(Network, ParamNames)> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::File {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    from_toml_str_named(&text, &path.display().to_string())
}

/// An architecture file for `net` whose ops carry the given tensor names (one `[[layers]]` entry per
/// layer, no `repeat`), so that reading it back gives the same network and names. Input data are
/// written by path.
pub fn to_toml_string(net: &Network, names: &ParamNames, title: &str) -> String {
    use super::names::Field;
    fn put(tab: &mut toml::Table, kind: &str, key: &str, v: toml::Value) {
        if let Some(toml::Value::Table(inner)) = tab.get_mut(kind) {
            inner.insert(key.to_string(), v);
        }
    }
    fn annotate(op: &super::Op, v: &mut toml::Value, path: &[usize], names: &ParamNames) {
        let Some(tab) = v.as_table_mut() else { return };
        let fields: &[Field] = match op {
            super::Op::Dense(_) => &[Field::Weight, Field::Bias],
            super::Op::LayerNorm { .. } | super::Op::BatchNorm { .. } => &[
                Field::Scale,
                Field::Shift,
                Field::RunningMean,
                Field::RunningVar,
            ],
            super::Op::Act(_) | super::Op::Residual(_) => &[],
        };
        let kind = tab.keys().next().cloned().unwrap_or_default();
        for &f in fields {
            if let Some(o) = names.ops.get(path) {
                let n = match f {
                    Field::Weight => &o.weight,
                    Field::Bias => &o.bias,
                    Field::Scale => &o.scale,
                    Field::Shift => &o.shift,
                    Field::RunningMean => &o.running_mean,
                    Field::RunningVar => &o.running_var,
                };
                if let Some(n) = n {
                    put(tab, &kind, f.key(), toml::Value::String(n.clone()));
                }
            }
        }
        if let super::Op::Dense(_) = op {
            if names.layout(path) == super::names::Layout::InOut {
                put(tab, &kind, "layout", toml::Value::String("in-out".into()));
            }
        }
        if let super::Op::Residual(r) = op {
            if let Some(n) = names.ops.get(path).and_then(|o| o.weight.clone()) {
                put(tab, &kind, "weight", toml::Value::String(n));
            }
            if let Some(toml::Value::Table(inner)) = tab.get_mut(&kind) {
                if let Some(toml::Value::Array(branch)) = inner.get_mut("branch") {
                    for (j, (bop, bv)) in r.branch.iter().zip(branch.iter_mut()).enumerate() {
                        let mut p = path.to_vec();
                        p.push(j);
                        annotate(bop, bv, &p, names);
                    }
                }
            }
        }
    }
    let mut root = toml::Table::new();
    root.insert("name".into(), toml::Value::String(title.to_string()));
    root.insert(
        "input".into(),
        toml::Value::try_from(&net.input).expect("the input model serialises"),
    );
    let layers: Vec<toml::Value> = net
        .layers
        .iter()
        .enumerate()
        .map(|(l, layer)| {
            let ops: Vec<toml::Value> = layer
                .ops
                .iter()
                .enumerate()
                .map(|(k, op)| {
                    let mut v = toml::Value::try_from(op).expect("ops serialise");
                    annotate(op, &mut v, &[l, k], names);
                    v
                })
                .collect();
            let mut t = toml::Table::new();
            t.insert("ops".into(), toml::Value::Array(ops));
            toml::Value::Table(t)
        })
        .collect();
    root.insert("layers".into(), toml::Value::Array(layers));
    toml::to_string(&root).expect("toml")
}
