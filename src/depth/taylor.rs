//! Taylor replacement and effective depth (theory/effective-depth.md). The top m layers of the trained
//! net are replaced by their first-order expansion in the parameters around theta(0), fed by the trained
//! lower net's output h = f_{L-m}: g(h) = F_top(theta(0), h) + J_theta F_top(theta(0), h) (theta(t) -
//! theta(0)), one map that is linear in the trained changes. Its compositional depth is L - m + 1. The
//! effective depth d_eff(tau) is the smallest such depth whose training error stays within tau of the
//! trained net's. The output f_L is read as class logits (softmax cross-entropy, argmax error).

use super::paths::{path_expansion, PathProfile};
use super::{check_inputs, check_pair, DepthOptions};
use crate::arch::Network;
use crate::error::{Error, Result};
use crate::montecarlo::param_jvp::param_jvp;
use crate::montecarlo::{forward, NetParams};
use nalgebra::DMatrix;
use serde::Serialize;

/// Inputs (one column each) and their class labels.
#[derive(Clone, Copy, Debug)]
pub struct Labelled<'a> {
    pub x: &'a DMatrix<f64>,
    pub labels: &'a [usize],
}

/// Mean softmax cross-entropy and error rate of logits (one column per example).
pub fn classification(logits: &DMatrix<f64>, labels: &[usize]) -> (f64, f64) {
    let mut loss = 0.0;
    let mut wrong = 0usize;
    for (col, &y) in logits.column_iter().zip(labels) {
        let m = col.max();
        let lse = m + col.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
        loss += lse - col[y];
        // The first maximum wins ties, so a constant output is wrong unless the label is class 0.
        let pred = col.iamax_full_signed();
        if pred != y {
            wrong += 1;
        }
    }
    let n = labels.len() as f64;
    (loss / n, wrong as f64 / n)
}

trait ArgMax {
    fn iamax_full_signed(&self) -> usize;
}

impl<S: nalgebra::Storage<f64, nalgebra::Dyn, nalgebra::U1>> ArgMax
    for nalgebra::Matrix<f64, nalgebra::Dyn, nalgebra::U1, S>
{
    fn iamax_full_signed(&self) -> usize {
        let mut best = 0;
        for i in 1..self.len() {
            if self[i] > self[best] {
                best = i;
            }
        }
        best
    }
}

fn check_labelled(net: &Network, d: &Labelled, what: &str) -> Result<()> {
    check_inputs(net, d.x, what)?;
    if d.labels.len() != d.x.ncols() {
        return Err(Error::param(
            format!("{what} (labels)"),
            d.labels.len(),
            format!("one label per example ({})", d.x.ncols()),
        ));
    }
    let classes = *net.widths().last().expect("input width");
    if let Some((i, y)) = d.labels.iter().enumerate().find(|(_, &y)| y >= classes) {
        return Err(Error::param(
            format!("{what} (label of example {})", i + 1),
            y,
            format!("a class in 0..{classes} (the network's output width)"),
        ));
    }
    Ok(())
}

/// The output of the trained net with its top m layers replaced by their first-order Taylor expansion in
/// the parameters (m = 0: the trained net itself). `lower` is the trained net's layer outputs on the inputs.
pub fn taylor_output(
    net: &Network,
    init: &NetParams,
    diff: &NetParams,
    lower: &[DMatrix<f64>],
    m: usize,
) -> DMatrix<f64> {
    let depth = net.depth();
    if m == 0 {
        return lower[depth].clone();
    }
    let mut h = lower[depth - m].clone();
    let mut t: Vec<DMatrix<f64>> = vec![DMatrix::zeros(h.nrows(), 1); h.ncols()];
    for l in depth - m..depth {
        for ((op, p), dp) in net.layers[l].ops.iter().zip(&init[l]).zip(&diff[l]) {
            let (o, tt) = param_jvp(op, p, dp, &h, t);
            h = o;
            t = tt;
        }
    }
    for (b, tb) in t.iter().enumerate() {
        let mut col = h.column_mut(b);
        col += tb.column(0);
    }
    h
}

/// One point of the Taylor-replacement curve.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct TaylorPoint {
    /// Layers replaced.
    pub m: usize,
    /// Compositional depth of the replaced net: L for m = 0 and m = 1, L - m + 1 otherwise.
    pub depth: usize,
    pub train_error: f64,
    pub train_loss: f64,
    pub test_error: Option<f64>,
    pub test_loss: Option<f64>,
}

/// Train (and test) error and loss for m = 0..=L replaced layers.
pub fn taylor_curve(
    net: &Network,
    init: &NetParams,
    trained: &NetParams,
    train: Labelled,
    test: Option<Labelled>,
) -> Result<Vec<TaylorPoint>> {
    let diff = check_pair(net, init, trained)?;
    check_labelled(net, &train, "training data")?;
    if let Some(t) = &test {
        check_labelled(net, t, "test data")?;
    }
    let depth = net.depth();
    let lower_train = forward(net, trained, train.x.clone()).outputs;
    let lower_test = test.map(|t| forward(net, trained, t.x.clone()).outputs);
    Ok((0..=depth)
        .map(|m| {
            let (train_loss, train_error) = classification(
                &taylor_output(net, init, &diff, &lower_train, m),
                train.labels,
            );
            let te = test
                .zip(lower_test.as_ref())
                .map(|(t, lo)| classification(&taylor_output(net, init, &diff, lo, m), t.labels));
            TaylorPoint {
                m,
                depth: if m == 0 { depth } else { depth - m + 1 },
                train_error,
                train_loss,
                test_error: te.map(|v| v.1),
                test_loss: te.map(|v| v.0),
            }
        })
        .collect())
}

/// The default tolerance: one percentage point of training error.
pub const DEFAULT_TAU: f64 = 0.01;

#[derive(Clone, Debug, Serialize)]
pub struct EffectiveDepthReport {
    pub tau: f64,
    /// Compositional depth L.
    pub depth: usize,
    pub points: Vec<TaylorPoint>,
    /// The trained net's training error.
    pub trained_error: f64,
    /// Error of always predicting the most frequent training class.
    pub chance_error: f64,
    /// d_eff(tau); `None` when the net never trained (no meaningful effective depth).
    pub d_eff: Option<usize>,
    /// The path-profile depth beside it: smallest lambda holding 90% of sum c_lambda (`None` when nothing
    /// changed).
    pub path_depth: Option<usize>,
    pub paths: PathProfile,
    pub message: Option<String>,
}

/// d_eff(tau) from a Taylor-replacement curve: the smallest depth L - m + 1 (m >= 1) whose training error
/// is at most the trained net's plus tau. m = 1 replaces one layer by one map, depth L, so d_eff <= L.
pub fn d_eff_of(points: &[TaylorPoint], tau: f64) -> usize {
    let base = points[0].train_error;
    points[1..]
        .iter()
        .filter(|p| p.train_error <= base + tau)
        .map(|p| p.depth)
        .min()
        .unwrap_or(points[0].depth)
}

/// Taylor-replacement curve, d_eff(tau) and the path-profile depth on the training data.
pub fn effective_depth(
    net: &Network,
    init: &NetParams,
    trained: &NetParams,
    train: Labelled,
    test: Option<Labelled>,
    tau: f64,
    opts: &DepthOptions,
) -> Result<EffectiveDepthReport> {
    if !(tau > 0.0 && tau < 1.0) {
        return Err(Error::param("--tau", tau, "a number in (0, 1)"));
    }
    let points = taylor_curve(net, init, trained, train, test)?;
    let paths = path_expansion(net, init, trained, train.x, opts)?;
    let classes = *net.widths().last().expect("input width");
    let mut counts = vec![0usize; classes];
    for &y in train.labels {
        counts[y] += 1;
    }
    let chance_error =
        1.0 - *counts.iter().max().expect("classes >= 1") as f64 / train.labels.len() as f64;
    let trained_error = points[0].train_error;
    let trained_enough = trained_error < chance_error - tau;
    let d_eff = trained_enough.then(|| d_eff_of(&points, tau));
    let message = (!trained_enough).then(|| {
        format!(
            "no meaningful effective depth: the trained net's training error {:.2}% is not below chance \
             ({:.2}%, the most frequent class) by more than tau = {} points",
            100.0 * trained_error,
            100.0 * chance_error,
            100.0 * tau
        )
    });
    Ok(EffectiveDepthReport {
        tau,
        depth: net.depth(),
        trained_error,
        chance_error,
        d_eff,
        path_depth: paths.depth90,
        paths,
        points,
        message,
    })
}
