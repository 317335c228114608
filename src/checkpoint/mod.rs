//! Checkpoints: a network's parameters in and out of safetensors files, named by the architecture
//! file's ops ([`ParamNames`]). theory/checkpoints.md gives the conventions (names, layouts, dtypes,
//! which batch-norm statistics are used).

pub mod safetensors;

pub use safetensors::{serialize, write_atomic, SafeTensors, Tensor};

use crate::arch::{Field, Layout, Network, Op, ParamNames};
use crate::error::{Error, Result};
use crate::montecarlo::{NetParams, OpParams};
use nalgebra::{DMatrix, DVector};
use std::collections::BTreeMap;

fn shape_err(file: &str, name: &str, got: &[usize], want: &[usize], what: &str) -> Error {
    Error::File {
        path: file.to_string(),
        message: format!(
            "tensor \"{name}\" ({what}) has shape {got:?}, the architecture needs {want:?}"
        ),
    }
}

/// Reads tensor `f` of the op at `path`: `None` when it is absent and may be (a default-named bias or
/// norm parameter), an error when it is absent and must be there or when its shape is wrong.
fn read_vec(
    st: &SafeTensors,
    names: &ParamNames,
    path: &[usize],
    f: Field,
    n: usize,
    required: bool,
    what: &str,
) -> Result<Option<DVector<f64>>> {
    let (name, given) = names.name(path, f);
    if !st.contains(&name) && !given && !required {
        return Ok(None);
    }
    let t = st.tensor(&name).map_err(|e| match e {
        Error::File { path: p, message } => Error::File {
            path: p,
            message: format!("{message}; wanted by {what}"),
        },
        e => e,
    })?;
    if t.shape != [n] {
        return Err(shape_err(st.path(), &name, &t.shape, &[n], what));
    }
    Ok(Some(DVector::from_vec(t.data)))
}

fn read_matrix(
    st: &SafeTensors,
    name: &str,
    rows: usize,
    cols: usize,
    layout: Layout,
    what: &str,
) -> Result<DMatrix<f64>> {
    let t = st.tensor(name).map_err(|e| match e {
        Error::File { path: p, message } => Error::File {
            path: p,
            message: format!("{message}; wanted by {what}"),
        },
        e => e,
    })?;
    let want = match layout {
        Layout::OutIn => vec![rows, cols],
        Layout::InOut => vec![cols, rows],
    };
    if t.shape != want {
        let hint = if t.shape == [want[1], want[0]] {
            match layout {
                Layout::OutIn => {
                    " (transposed: for a Flax kernel write layout = \"in-out\" on the op)"
                }
                Layout::InOut => " (transposed: PyTorch's [out, in] is the default layout)",
            }
        } else {
            ""
        };
        let mut e = shape_err(st.path(), name, &t.shape, &want, what);
        if let Error::File { message, .. } = &mut e {
            message.push_str(hint);
        }
        return Err(e);
    }
    // Row-major data: [out, in] is W row by row, [in, out] is W^T row by row, i.e. W column by column.
    Ok(match layout {
        Layout::OutIn => DMatrix::from_row_slice(rows, cols, &t.data),
        Layout::InOut => DMatrix::from_vec(rows, cols, t.data),
    })
}

fn where_(path: &[usize]) -> String {
    let mut s = format!("layer {} op {}", path[0] + 1, path[1]);
    for k in &path[2..] {
        s.push_str(&format!(" branch op {k}"));
    }
    s
}

fn load_ops(
    ops: &[Op],
    mut n: usize,
    prefix: &[usize],
    st: &SafeTensors,
    names: &ParamNames,
) -> Result<(Vec<OpParams>, usize)> {
    let mut out = Vec::with_capacity(ops.len());
    for (k, op) in ops.iter().enumerate() {
        let mut path = prefix.to_vec();
        path.push(k);
        let what = where_(&path);
        let p = match op {
            Op::Dense(d) => {
                let (wname, _) = names.name(&path, Field::Weight);
                let w = read_matrix(
                    st,
                    &wname,
                    d.width,
                    n,
                    names.layout(&path),
                    &format!("{what} (dense weight)"),
                )?;
                let b = read_vec(
                    st,
                    names,
                    &path,
                    Field::Bias,
                    d.width,
                    false,
                    &format!("{what} (dense bias)"),
                )?
                .unwrap_or_else(|| DVector::zeros(d.width));
                n = d.width;
                OpParams::Dense { w, b }
            }
            Op::LayerNorm { .. } | Op::BatchNorm { .. } => {
                let get = |f: Field, label: &str| {
                    read_vec(st, names, &path, f, n, false, &format!("{what} ({label})"))
                };
                let scale = get(Field::Scale, "norm scale")?;
                let shift = get(Field::Shift, "norm shift")?;
                let rm = get(Field::RunningMean, "running mean")?;
                let rv = get(Field::RunningVar, "running variance")?;
                if let Some(v) = &rv {
                    if v.iter().any(|x| *x < 0.0) {
                        return Err(Error::File {
                            path: st.path().to_string(),
                            message: format!(
                                "tensor \"{}\" ({what} running variance) has a negative entry",
                                names.name(&path, Field::RunningVar).0
                            ),
                        });
                    }
                }
                if scale.is_none() && shift.is_none() && rm.is_none() && rv.is_none() {
                    OpParams::None
                } else {
                    OpParams::Norm {
                        scale: scale.unwrap_or_else(|| DVector::from_element(n, 1.0)),
                        shift: shift.unwrap_or_else(|| DVector::zeros(n)),
                        running_mean: rm,
                        running_var: rv,
                    }
                }
            }
            Op::Act(_) => OpParams::None,
            Op::Residual(r) => {
                let skip = match r.skip {
                    crate::arch::Skip::Identity => None,
                    crate::arch::Skip::Orthogonal => {
                        let (name, _) = names.name(&path, Field::Weight);
                        Some(read_matrix(
                            st,
                            &name,
                            n,
                            n,
                            Layout::OutIn,
                            &format!("{what} (skip matrix)"),
                        )?)
                    }
                };
                let (branch, _) = load_ops(&r.branch, n, &path, st, names)?;
                OpParams::Residual { skip, branch }
            }
        };
        out.push(p);
    }
    Ok((out, n))
}

/// The parameters of `net` from a checkpoint. Every dense weight must be present with the shape the
/// architecture implies; a default-named bias or norm parameter may be absent (zero bias, scale 1,
/// shift 0); a name the architecture file gives must be present. Tensors the network does not use are
/// ignored (a checkpoint may hold more, e.g. optimiser state).
pub fn load_params(net: &Network, names: &ParamNames, st: &SafeTensors) -> Result<NetParams> {
    net.validate()?;
    let mut n = net.input.width;
    let mut params = Vec::with_capacity(net.depth());
    for (l, layer) in net.layers.iter().enumerate() {
        let (p, out) = load_ops(&layer.ops, n, &[l], st, names)?;
        params.push(p);
        n = out;
    }
    Ok(params)
}

/// Reads `path` and loads the parameters of `net` from it.
pub fn load_params_file(
    net: &Network,
    names: &ParamNames,
    path: &std::path::Path,
) -> Result<NetParams> {
    load_params(net, names, &SafeTensors::read_file(path)?)
}

fn ones(n: usize) -> Tensor {
    Tensor {
        shape: vec![n],
        data: vec![1.0; n],
    }
}

fn zeros(n: usize) -> Tensor {
    Tensor {
        shape: vec![n],
        data: vec![0.0; n],
    }
}

/// The width entering op `k`: the output width of the last dense op before it.
fn path_width(params: &[OpParams], k: usize) -> Option<usize> {
    params[..k].iter().rev().find_map(|p| match p {
        OpParams::Dense { w, .. } => Some(w.nrows()),
        _ => None,
    })
}

fn save_ops(
    ops: &[Op],
    params: &[OpParams],
    prefix: &[usize],
    n_in: usize,
    names: &ParamNames,
    out: &mut BTreeMap<String, Tensor>,
) {
    for (k, (op, p)) in ops.iter().zip(params).enumerate() {
        let mut path = prefix.to_vec();
        path.push(k);
        let vec = |v: &DVector<f64>| Tensor {
            shape: vec![v.len()],
            data: v.as_slice().to_vec(),
        };
        match (op, p) {
            (Op::Dense(_), OpParams::Dense { w, b }) => {
                let t = match names.layout(&path) {
                    Layout::OutIn => Tensor {
                        shape: vec![w.nrows(), w.ncols()],
                        data: w.transpose().as_slice().to_vec(),
                    },
                    Layout::InOut => Tensor {
                        shape: vec![w.ncols(), w.nrows()],
                        data: w.as_slice().to_vec(),
                    },
                };
                out.insert(names.name(&path, Field::Weight).0, t);
                out.insert(names.name(&path, Field::Bias).0, vec(b));
            }
            (
                _,
                OpParams::Norm {
                    scale,
                    shift,
                    running_mean,
                    running_var,
                },
            ) => {
                out.insert(names.name(&path, Field::Scale).0, vec(scale));
                out.insert(names.name(&path, Field::Shift).0, vec(shift));
                if let Some(m) = running_mean {
                    out.insert(names.name(&path, Field::RunningMean).0, vec(m));
                }
                if let Some(v) = running_var {
                    out.insert(names.name(&path, Field::RunningVar).0, vec(v));
                }
            }
            // A norm without learned parameters is written at their initial values (scale 1, shift 0, and
            // batch norm's running mean 0 and variance 1, as PyTorch initialises them), so that the
            // checkpoint is complete for the names `explicit_names` gives.
            (Op::LayerNorm { .. } | Op::BatchNorm { .. }, OpParams::None) => {
                let n = path_width(params, k).unwrap_or(n_in);
                out.insert(names.name(&path, Field::Scale).0, ones(n));
                out.insert(names.name(&path, Field::Shift).0, zeros(n));
                if matches!(op, Op::BatchNorm { .. }) {
                    out.insert(names.name(&path, Field::RunningMean).0, zeros(n));
                    out.insert(names.name(&path, Field::RunningVar).0, ones(n));
                }
            }
            (Op::Residual(r), OpParams::Residual { skip, branch }) => {
                if let Some(q) = skip {
                    out.insert(
                        names.name(&path, Field::Weight).0,
                        Tensor {
                            shape: vec![q.nrows(), q.ncols()],
                            data: q.transpose().as_slice().to_vec(),
                        },
                    );
                }
                let n = path_width(params, k).unwrap_or(n_in);
                save_ops(&r.branch, branch, &path, n, names, out);
            }
            _ => {}
        }
    }
}

/// Every parameter of `params` as named tensors (dense weights in each op's layout, F64).
pub fn to_tensors(
    net: &Network,
    names: &ParamNames,
    params: &NetParams,
) -> BTreeMap<String, Tensor> {
    let mut out = BTreeMap::new();
    let widths = net.widths();
    for (l, (layer, lp)) in net.layers.iter().zip(params).enumerate() {
        save_ops(&layer.ops, lp, &[l], widths[l], names, &mut out);
    }
    out
}

/// Writes `params` to `path` (atomically) as a safetensors file.
pub fn save_params_file(
    net: &Network,
    names: &ParamNames,
    params: &NetParams,
    path: &std::path::Path,
    metadata: &BTreeMap<String, String>,
) -> Result<()> {
    write_atomic(path, &serialize(&to_tensors(net, names, params), metadata))
}

/// The names every parameter of `net` gets in a checkpoint written by `train`: the defaults, made
/// explicit so that the architecture file written next to it documents them.
pub fn explicit_names(net: &Network) -> ParamNames {
    fn walk(ops: &[Op], prefix: &[usize], names: &mut ParamNames) {
        for (k, op) in ops.iter().enumerate() {
            let mut path = prefix.to_vec();
            path.push(k);
            let fields: &[Field] = match op {
                Op::Dense(_) => &[Field::Weight, Field::Bias],
                Op::LayerNorm { .. } => &[Field::Scale, Field::Shift],
                Op::BatchNorm { .. } => &[
                    Field::Scale,
                    Field::Shift,
                    Field::RunningMean,
                    Field::RunningVar,
                ],
                Op::Residual(r) => {
                    if r.skip == crate::arch::Skip::Orthogonal {
                        names.set(
                            &path,
                            Field::Weight,
                            ParamNames::default_name(&path, Field::Weight),
                        );
                    }
                    walk(&r.branch, &path, names);
                    &[]
                }
                Op::Act(_) => &[],
            };
            for &f in fields {
                names.set(&path, f, ParamNames::default_name(&path, f));
            }
        }
    }
    let mut names = ParamNames::default();
    for (l, layer) in net.layers.iter().enumerate() {
        walk(&layer.ops, &[l], &mut names);
    }
    names
}
