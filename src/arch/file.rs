//! Architecture files (TOML). The format is the serde form of [`Network`], plus `repeat` to stack a layer.
//! See `examples/` and the README.

use super::names::{self, ParamNames};
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
    from_toml_str_named(text, path).map(|(n, _)| n)
}

/// Reads an architecture file and the checkpoint tensor names its ops give (see [`ParamNames`]).
pub fn from_toml_str_named(text: &str, path: &str) -> Result<(Network, ParamNames)> {
    let file_err = |e: toml::de::Error| Error::File {
        path: path.to_string(),
        message: e.to_string().trim().replace('\n', " "),
    };
    let mut value: toml::Value = toml::from_str(text).map_err(file_err)?;
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
    let f = FileNetwork::deserialize(value).map_err(file_err)?;
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
            _ => &[],
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
