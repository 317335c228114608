//! Which checkpoint tensor holds which parameter. An architecture file may name them on the op
//! (`weight`, `bias`, `layout` on a dense op; `scale`, `shift`, `running_mean`, `running_var` on a norm
//! op; `weight` on a residual op for an orthogonal skip matrix). The names live beside the [`Network`]
//! rather than in it: they say where parameters are stored, not how the network at initialisation is
//! distributed, which is all that the engines read. theory/checkpoints.md describes the conventions.

use crate::error::{Error, Result};
use serde::Serialize;
use std::collections::BTreeMap;

/// How a dense weight matrix is stored: PyTorch's `[out, in]` (default) or Flax's `[in, out]` kernel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Layout {
    #[default]
    OutIn,
    InOut,
}

/// The tensor names one op gives (None: the default name, see [`ParamNames::name`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OpNames {
    pub weight: Option<String>,
    pub bias: Option<String>,
    pub scale: Option<String>,
    pub shift: Option<String>,
    pub running_mean: Option<String>,
    pub running_var: Option<String>,
    pub layout: Layout,
}

/// The parameter kinds an op can carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    Weight,
    Bias,
    Scale,
    Shift,
    RunningMean,
    RunningVar,
}

impl Field {
    pub fn key(self) -> &'static str {
        match self {
            Field::Weight => "weight",
            Field::Bias => "bias",
            Field::Scale => "scale",
            Field::Shift => "shift",
            Field::RunningMean => "running_mean",
            Field::RunningVar => "running_var",
        }
    }
}

impl OpNames {
    fn get(&self, f: Field) -> Option<&String> {
        match f {
            Field::Weight => self.weight.as_ref(),
            Field::Bias => self.bias.as_ref(),
            Field::Scale => self.scale.as_ref(),
            Field::Shift => self.shift.as_ref(),
            Field::RunningMean => self.running_mean.as_ref(),
            Field::RunningVar => self.running_var.as_ref(),
        }
    }
    fn set(&mut self, f: Field, v: String) {
        let slot = match f {
            Field::Weight => &mut self.weight,
            Field::Bias => &mut self.bias,
            Field::Scale => &mut self.scale,
            Field::Shift => &mut self.shift,
            Field::RunningMean => &mut self.running_mean,
            Field::RunningVar => &mut self.running_var,
        };
        *slot = Some(v);
    }
}

/// An op's position: layer index (0-based), op index in the layer, then op indices inside residual
/// branches.
pub type OpPath = Vec<usize>;

/// Tensor names keyed by op position.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ParamNames {
    pub ops: BTreeMap<OpPath, OpNames>,
}

impl ParamNames {
    /// The default name of a parameter: `layers.{l}.{k}[.{j}...].{field}` with l counted from 1 (layer l
    /// computes f_l) and k, j the op indices from 0.
    pub fn default_name(path: &[usize], f: Field) -> String {
        let mut s = format!("layers.{}", path[0] + 1);
        for k in &path[1..] {
            s.push_str(&format!(".{k}"));
        }
        format!("{s}.{}", f.key())
    }

    /// The tensor name of parameter `f` of the op at `path`, and whether the architecture file gave it
    /// (a given name must be in the checkpoint; a default-named bias or norm affine may be absent).
    pub fn name(&self, path: &[usize], f: Field) -> (String, bool) {
        match self.ops.get(path).and_then(|o| o.get(f)) {
            Some(n) => (n.clone(), true),
            None => (Self::default_name(path, f), false),
        }
    }

    pub fn layout(&self, path: &[usize]) -> Layout {
        self.ops.get(path).map(|o| o.layout).unwrap_or_default()
    }

    pub fn set(&mut self, path: &[usize], f: Field, name: String) {
        self.ops.entry(path.to_vec()).or_default().set(f, name);
    }

    pub fn set_layout(&mut self, path: &[usize], layout: Layout) {
        self.ops.entry(path.to_vec()).or_default().layout = layout;
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

const DENSE_KEYS: [Field; 2] = [Field::Weight, Field::Bias];
const NORM_KEYS: [Field; 4] = [
    Field::Scale,
    Field::Shift,
    Field::RunningMean,
    Field::RunningVar,
];

/// Removes the name keys from one TOML op table (`{ dense = {...} }` etc.), recording them under `path`;
/// `{layer}` in a name becomes the layer's number (from 1), so a repeated layer can name its tensors.
pub(crate) fn strip_op(
    op: &mut toml::Value,
    path: &[usize],
    names: &mut ParamNames,
    file: &str,
) -> Result<()> {
    let Some(tab) = op.as_table_mut() else {
        return Ok(());
    };
    let layer_no = (path[0] + 1).to_string();
    let where_ = || {
        format!(
            "{file}: layer {} op {}",
            path[0] + 1,
            path[1..]
                .iter()
                .map(|k| k.to_string())
                .collect::<Vec<_>>()
                .join(".")
        )
    };
    for (kind, body) in tab.iter_mut() {
        let Some(inner) = body.as_table_mut() else {
            continue;
        };
        let keys: &[Field] = match kind.as_str() {
            "dense" => &DENSE_KEYS,
            "layer-norm" | "batch-norm" => &NORM_KEYS,
            "residual" => &[Field::Weight],
            _ => &[],
        };
        for &f in keys {
            if let Some(v) = inner.remove(f.key()) {
                let s = v.as_str().ok_or_else(|| Error::File {
                    path: file.to_string(),
                    message: format!(
                        "{}: `{}` must be a string (a tensor name)",
                        where_(),
                        f.key()
                    ),
                })?;
                names.set(path, f, s.replace("{layer}", &layer_no));
            }
        }
        if kind == "dense" {
            if let Some(v) = inner.remove("layout") {
                let layout = match v.as_str() {
                    Some("out-in") => Layout::OutIn,
                    Some("in-out") => Layout::InOut,
                    _ => {
                        return Err(Error::File {
                            path: file.to_string(),
                            message: format!(
                                "{}: layout = {v} is not accepted (expected \"out-in\", PyTorch's [out, in], or \"in-out\", Flax's kernel)",
                                where_()
                            ),
                        })
                    }
                };
                names.set_layout(path, layout);
            }
        }
        if kind == "residual" {
            if let Some(toml::Value::Array(branch)) = inner.get_mut("branch") {
                for (j, b) in branch.iter_mut().enumerate() {
                    let mut p = path.to_vec();
                    p.push(j);
                    strip_op(b, &p, names, file)?;
                }
            }
        }
    }
    Ok(())
}

/// Every tensor name must be used once: two ops reading the same tensor is almost always a repeated
/// layer without `{layer}` in its names.
pub(crate) fn check_unique(names: &ParamNames, file: &str) -> Result<()> {
    let mut seen: BTreeMap<&String, &OpPath> = BTreeMap::new();
    for (path, o) in &names.ops {
        for f in DENSE_KEYS.iter().chain(&NORM_KEYS) {
            if let Some(n) = o.get(*f) {
                if let Some(prev) = seen.insert(n, path) {
                    return Err(Error::File {
                        path: file.to_string(),
                        message: format!(
                            "tensor name \"{n}\" is given to layer {} and layer {}; in a repeated layer write {{layer}} in the name",
                            prev[0] + 1,
                            path[0] + 1
                        ),
                    });
                }
            }
        }
    }
    Ok(())
}
