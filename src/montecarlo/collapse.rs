//! Collapse metrics measured on sampled networks (theory/collapse.md): per layer, the mean pairwise
//! cosine of the layer outputs over the batch, and at the layer's last top-level nonlinearity the
//! pre-activations' pairwise cosine, per-unit std across the batch (1/P convention) and per-unit sign
//! diversity min(P_j, N_j)/(P_j + N_j), each averaged over units. A separate forward pass, so the GSC hot
//! path keeps its caches as they are.

use super::ops::Sample;
use super::sample::{draw_input, draw_params, NetParams};
use super::sample_rng;
use crate::arch::{Network, Op};
use crate::error::{Error, Result};
use crate::stats::Summary;
use nalgebra::DMatrix;
use rayon::prelude::*;
use serde::Serialize;

/// One network's collapse metrics at one layer.
#[derive(Clone, Copy, Debug, Default)]
pub struct LayerCollapse {
    pub corr: f64,
    /// The layer output is exactly zero for every input (a dead relu layer, or f64 underflow).
    pub zero: bool,
    /// (pairwise cosine, ln of the mean std, mean sign diversity) of the pre-activations, if the layer has
    /// a nonlinearity.
    pub preact: Option<(f64, f64, f64)>,
}

/// Mean over pairs a < b of the cosine between columns a and b (0/0 read as 1: two zero vectors are alike).
/// Each column is first divided by its largest entry, so the Gram matrix neither underflows (a deep ordered
/// net's outputs of 1e-160 would make every cosine 0/0) nor overflows.
pub fn mean_pairwise_cosine(m: &DMatrix<f64>) -> f64 {
    let b = m.ncols();
    if b < 2 {
        return 1.0;
    }
    let mut m = m.clone();
    for mut col in m.column_iter_mut() {
        let top = col.amax();
        if top > 0.0 && top.is_finite() {
            col /= top;
        }
    }
    let g = m.transpose() * &m;
    let mut s = 0.0;
    for i in 0..b {
        for j in i + 1..b {
            let d = g[(i, i)].sqrt() * g[(j, j)].sqrt();
            s += if d > 0.0 { g[(i, j)] / d } else { 1.0 };
        }
    }
    s / (b * (b - 1) / 2) as f64
}

/// (mean over units of the across-batch std, mean over units of the sign diversity); the std is returned
/// as its log, with each unit's row divided by its largest entry first, so neither tiny nor huge
/// pre-activations lose it. `log_scale` is added: the stored h is the true one times e^-log_scale.
pub fn unit_metrics(h: &DMatrix<f64>, log_scale: f64) -> (f64, f64) {
    let (n, b) = (h.nrows(), h.ncols());
    let mut stds = Vec::with_capacity(n);
    let mut sdiv_sum = 0.0;
    for j in 0..n {
        let row = h.row(j);
        let top = row.amax();
        let unit = if top > 0.0 && top.is_finite() {
            top
        } else {
            1.0
        };
        let mean = row.iter().map(|v| v / unit).sum::<f64>() / b as f64;
        let var = row.iter().map(|v| (v / unit - mean).powi(2)).sum::<f64>() / b as f64;
        stds.push(var.sqrt().ln() + unit.ln());
        let pos = row.iter().filter(|&&v| v > 0.0).count();
        let neg = row.iter().filter(|&&v| v < 0.0).count();
        if pos + neg > 0 {
            sdiv_sum += pos.min(neg) as f64 / (pos + neg) as f64;
        }
    }
    // Mean of the unit stds, computed relative to the largest (log-sum-exp).
    let top = stds.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let log_mean_std = if top.is_finite() {
        top + (stds.iter().map(|s| (s - top).exp()).sum::<f64>() / n as f64).ln()
    } else {
        top
    };
    (log_mean_std + log_scale, sdiv_sum / n as f64)
}

/// Forward pass recording, per layer, the collapse metrics (layer 0: the input's cosine only). A
/// scale-equivariant net is rescaled by powers of two as in the GSC engine (theory/monte-carlo.md), which
/// leaves cosines and signs unchanged and is undone in the std.
pub fn collapse_trace(net: &Network, params: &NetParams, x: DMatrix<f64>) -> Vec<LayerCollapse> {
    let mut out = vec![LayerCollapse {
        corr: mean_pairwise_cosine(&x),
        zero: x.iter().all(|&v| v == 0.0),
        preact: None,
    }];
    let rescale = net.scale_equivariant();
    let mut log_scale = 0.0;
    let mut h = x;
    for (layer, lp) in net.layers.iter().zip(params) {
        let mut pre = None;
        for (op, p) in layer.ops.iter().zip(lp) {
            if matches!(op, Op::Act(_)) {
                let (s, d) = unit_metrics(&h, log_scale);
                pre = Some((mean_pairwise_cosine(&h), s, d));
            }
            h = op.forward(p, &h).0;
        }
        if rescale {
            let sq = h.norm_squared();
            log_scale += super::sample::rescale(std::slice::from_mut(&mut h), sq) as f64
                * std::f64::consts::LN_2;
        }
        out.push(LayerCollapse {
            corr: mean_pairwise_cosine(&h),
            zero: h.iter().all(|&v| v == 0.0),
            preact: pre,
        });
    }
    out
}

#[derive(Clone, Debug, Serialize)]
pub struct CollapseLayerMeasurement {
    pub index: usize,
    pub corr: Summary,
    pub preact_corr: Option<Summary>,
    pub preact_std: Option<Summary>,
    pub sign_diversity: Option<Summary>,
    /// Networks whose output at this layer is exactly zero (a dead relu layer, or f64 underflow in a net
    /// that cannot be rescaled): there the cosine reads 0/0 as 1 and the std is 0, which describe the f64
    /// computation, not necessarily the real-valued network.
    pub zero_outputs: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct CollapseMeasurement {
    pub samples: usize,
    pub seed: u64,
    pub batch: usize,
    pub layers: Vec<CollapseLayerMeasurement>,
}

/// Collapse metrics over `samples` independent networks and input batches; means and standard errors
/// are over networks (units of one network share its input and are not independent at finite width).
pub fn measure_collapse(net: &Network, samples: usize, seed: u64) -> Result<CollapseMeasurement> {
    collapse_over(net, samples, seed, None)
}

/// [`measure_collapse`] of a given network: every sample uses `params`, only the input batch varies
/// (sample i is batch i of `inputs`); the spread is then over input batches only.
pub fn measure_collapse_given(
    net: &Network,
    params: &NetParams,
    inputs: super::GivenInputs,
    samples: usize,
    seed: u64,
) -> Result<CollapseMeasurement> {
    super::check_params(net, params)?;
    inputs.check(net, samples)?;
    collapse_over(net, samples, seed, Some((params, inputs)))
}

fn collapse_over(
    net: &Network,
    samples: usize,
    seed: u64,
    given: Option<(&NetParams, super::GivenInputs)>,
) -> Result<CollapseMeasurement> {
    net.validate()?;
    if samples < 2 {
        return Err(Error::param("--samples", samples, "an integer >= 2"));
    }
    if net.input.batch < 2 {
        return Err(Error::param(
            "--batch",
            net.input.batch,
            "an integer >= 2 (collapse metrics compare inputs)",
        ));
    }
    let runs: Vec<Vec<LayerCollapse>> = (0..samples)
        .into_par_iter()
        .map(|i| {
            let mut rng = sample_rng(seed, i as u64);
            match given {
                Some((p, inputs)) => collapse_trace(net, p, inputs.batch(net, i, &mut rng)),
                None => {
                    let params = draw_params(net, &mut rng);
                    let x = draw_input(net, &mut rng);
                    collapse_trace(net, &params, x)
                }
            }
        })
        .collect();
    let summ = |xs: Vec<f64>| Summary::of(&xs).expect("samples >= 2");
    let layers = (0..=net.depth())
        .map(|l| {
            let pre = runs[0][l].preact.is_some();
            let col = |k: usize| {
                pre.then(|| {
                    let xs: Vec<f64> = runs
                        .iter()
                        .map(|r| {
                            let p = r[l].preact.unwrap_or_default();
                            [p.0, p.1, p.2][k]
                        })
                        .collect();
                    // The std is carried as its log (it can leave the f64 range in a deep net).
                    if k == 1 {
                        Summary::of_exp(&xs).expect("samples >= 2")
                    } else {
                        summ(xs)
                    }
                })
            };
            CollapseLayerMeasurement {
                index: l,
                corr: summ(runs.iter().map(|r| r[l].corr).collect()),
                preact_corr: col(0),
                preact_std: col(1),
                sign_diversity: col(2),
                zero_outputs: runs.iter().filter(|r| r[l].zero).count(),
            }
        })
        .collect();
    Ok(CollapseMeasurement {
        samples,
        seed,
        batch: net.input.batch,
        layers,
    })
}
