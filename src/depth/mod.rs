//! A trained network against its initialisation: the residual trick, the path expansion and the
//! effective depth (theory/effective-depth.md). Everything here takes one [`Network`], two parameter sets
//! of it (theta(0) and theta(t)) and inputs given as columns; how the parameters were obtained (a training
//! run, a checkpoint, a test's construction) is the caller's business.
//!
//! - [`residual`]: f_l = i_l(f_{l-1}) + r_l(f_{l-1}) per layer, with the Pythagorean block quantities.
//! - [`paths`]: the output change as a sum over paths of lambda residual factors, and its closed form for
//!   initialisation-like residuals.
//! - [`taylor`]: the top m layers replaced by their first-order expansion in the parameters; d_eff(tau).

pub mod paths;
pub mod residual;
pub mod taylor;

use crate::arch::{Layer, Network, Op, Skip};
use crate::error::{Error, Result};
use crate::montecarlo::param_jvp::param_diff;
use crate::montecarlo::{Estimator, NetParams, OpCache, OpParams, Sample};
use nalgebra::DMatrix;
use std::ops::Range;

/// How Jacobian norms are measured and seeded.
#[derive(Clone, Copy, Debug)]
pub struct DepthOptions {
    pub estimator: Estimator,
    pub seed: u64,
}

impl Default for DepthOptions {
    fn default() -> Self {
        DepthOptions {
            estimator: Estimator::Exact,
            seed: 0,
        }
    }
}

fn op_name(op: &Op) -> &'static str {
    match op {
        Op::Dense(_) => "dense",
        Op::Act(_) => "activation",
        Op::LayerNorm { .. } => "layer-norm",
        Op::BatchNorm { .. } => "batch-norm",
        Op::Residual(_) => "residual",
    }
}

fn check_finite(m: &DMatrix<f64>, what: &str, place: &str) -> std::result::Result<(), String> {
    if m.iter().all(|v| v.is_finite()) {
        Ok(())
    } else {
        Err(format!("{place}: {what} has a non-finite value"))
    }
}

/// Checks `p` against the ops of one layer (or branch) fed `n_in` units; returns the output width.
fn check_ops(
    ops: &[Op],
    params: &[OpParams],
    mut n: usize,
    place: &str,
) -> std::result::Result<usize, String> {
    if ops.len() != params.len() {
        return Err(format!(
            "{place}: {} parameter sets for {} ops",
            params.len(),
            ops.len()
        ));
    }
    for (j, (op, p)) in ops.iter().zip(params).enumerate() {
        let here = format!("{place} op {} ({})", j + 1, op_name(op));
        match (op, p) {
            (Op::Dense(d), OpParams::Dense { w, b }) => {
                if w.shape() != (d.width, n) {
                    return Err(format!(
                        "{here}: weight has shape [{}, {}], expected [{}, {}]",
                        w.nrows(),
                        w.ncols(),
                        d.width,
                        n
                    ));
                }
                if b.len() != d.width {
                    return Err(format!(
                        "{here}: bias has length {}, expected {}",
                        b.len(),
                        d.width
                    ));
                }
                check_finite(w, "weight", &here)?;
                if !b.iter().all(|v| v.is_finite()) {
                    return Err(format!("{here}: bias has a non-finite value"));
                }
                n = d.width;
            }
            (Op::Act(_) | Op::LayerNorm { .. } | Op::BatchNorm { .. }, OpParams::None) => {}
            (Op::LayerNorm { .. } | Op::BatchNorm { .. }, OpParams::Norm { scale, shift, .. }) => {
                if scale.len() != n || shift.len() != n {
                    return Err(format!(
                        "{here}: scale/shift have lengths {}/{}, expected {n}",
                        scale.len(),
                        shift.len()
                    ));
                }
                if !scale.iter().chain(shift.iter()).all(|v| v.is_finite()) {
                    return Err(format!("{here}: scale or shift has a non-finite value"));
                }
            }
            (Op::Residual(r), OpParams::Residual { skip, branch }) => {
                match (r.skip, skip) {
                    (Skip::Identity, None) => {}
                    (Skip::Orthogonal, Some(q)) => {
                        if q.shape() != (n, n) {
                            return Err(format!(
                                "{here}: skip matrix has shape [{}, {}], expected [{n}, {n}]",
                                q.nrows(),
                                q.ncols()
                            ));
                        }
                        check_finite(q, "skip matrix", &here)?;
                    }
                    _ => {
                        return Err(format!(
                            "{here}: skip parameters do not match the skip kind"
                        ))
                    }
                }
                let out = check_ops(&r.branch, branch, n, &format!("{here} branch"))?;
                if out != n {
                    return Err(format!("{here}: branch ends at width {out}, expected {n}"));
                }
            }
            _ => return Err(format!("{here}: parameters of another op kind")),
        }
    }
    Ok(n)
}

/// Checks a parameter set against the architecture: one clear error naming `which` (a file or "init" /
/// "trained"), the layer, the op and the shapes.
pub fn check_params(net: &Network, params: &NetParams, which: &str) -> Result<()> {
    let err = |message: String| Error::File {
        path: which.to_string(),
        message,
    };
    if params.len() != net.depth() {
        return Err(err(format!(
            "{} layers of parameters, the architecture has {}",
            params.len(),
            net.depth()
        )));
    }
    let mut n = net.input.width;
    for (l, (layer, p)) in net.layers.iter().zip(params).enumerate() {
        n = check_ops(&layer.ops, p, n, &format!("layer {}", l + 1)).map_err(err)?;
    }
    Ok(())
}

/// Checks both parameter sets and returns theta(t) - theta(0), layer by layer.
pub fn check_pair(net: &Network, init: &NetParams, trained: &NetParams) -> Result<NetParams> {
    net.validate()?;
    check_params(net, init, "init")?;
    check_params(net, trained, "trained")?;
    Ok(trained
        .iter()
        .zip(init)
        .map(|(lt, l0)| {
            lt.iter()
                .zip(l0)
                .map(|(a, b)| {
                    param_diff(a, b).expect("shapes checked against the same architecture")
                })
                .collect()
        })
        .collect())
}

/// Checks inputs (one column each) against the network: width, finiteness, enough columns for batch norm.
pub fn check_inputs(net: &Network, x: &DMatrix<f64>, what: &str) -> Result<()> {
    if x.nrows() != net.input.width {
        return Err(Error::param(
            format!("{what} (feature count)"),
            x.nrows(),
            format!(
                "{} features, the architecture's input width",
                net.input.width
            ),
        ));
    }
    let min = if net.batch_coupled() { 2 } else { 1 };
    if x.ncols() < min {
        return Err(Error::param(
            format!("{what} (examples)"),
            x.ncols(),
            format!("at least {min}"),
        ));
    }
    if let Some((i, _)) = x.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(Error::param(
            format!(
                "{what} (example {}, feature {})",
                i / x.nrows() + 1,
                i % x.nrows() + 1
            ),
            x[i],
            "a finite number",
        ));
    }
    Ok(())
}

pub(crate) fn layer_forward(
    layer: &Layer,
    params: &[OpParams],
    x: &DMatrix<f64>,
) -> (DMatrix<f64>, Vec<OpCache>) {
    let mut h = x.clone();
    let mut caches = Vec::with_capacity(layer.ops.len());
    for (op, p) in layer.ops.iter().zip(params) {
        let (o, c) = op.forward(p, &h);
        h = o;
        caches.push(c);
    }
    (h, caches)
}

pub(crate) fn layer_jvp(
    layer: &Layer,
    params: &[OpParams],
    caches: &[OpCache],
    mut t: Vec<DMatrix<f64>>,
) -> Vec<DMatrix<f64>> {
    for ((op, p), c) in layer.ops.iter().zip(params).zip(caches) {
        t = op.jvp(p, c, t);
    }
    t
}

/// Column chunks processed together: the whole batch when batch norm couples the examples (the Jacobian,
/// and so the GSC, is then of the batch map, as in the Monte Carlo engine), else runs of `CHUNK` examples,
/// each its own Jacobian.
pub(crate) fn chunks(net: &Network, n: usize) -> Vec<Range<usize>> {
    if net.batch_coupled() {
        std::iter::once(0..n).collect()
    } else {
        (0..n)
            .step_by(CHUNK)
            .map(|a| a..(a + CHUNK).min(n))
            .collect()
    }
}

/// Examples whose exact Jacobians are in memory at once (n x n each).
const CHUNK: usize = 32;

/// Rows (one example each, as data readers return them) as columns, the layout every engine takes.
pub fn to_columns(rows: &[Vec<f64>]) -> DMatrix<f64> {
    let n = rows.first().map_or(0, Vec::len);
    DMatrix::from_fn(n, rows.len(), |i, b| rows[b][i])
}
