//! The path expansion of a trained network around its initial trajectory f^0 (theory/effective-depth.md):
//! with i_l, r_l the initial layer and the residual, and Jacobians taken at f^0_{l-1},
//!
//!   a_l^(1) = J_{i_l} a_{l-1}^(1) + r_l(f^0_{l-1}),   a_l^(lambda) = J_{i_l} a_{l-1}^(lambda) + J_{r_l} a_{l-1}^(lambda-1),
//!
//! a_0 = 0. The sum over lambda is the output change f_L(theta(t)) - f_L(theta(0)) to first order in each
//! layer's input deviation (exact for affine layers); a_L^(lambda) collects the paths through exactly lambda
//! residual factors. All lambda are carried at once as the columns of one tangent block per example.

use super::residual::all_layer_sums;
use super::{check_inputs, check_pair, layer_forward, layer_jvp, DepthOptions};
use crate::arch::Network;
use crate::error::Result;
use crate::montecarlo::pythagorean::BlockSums;
use crate::montecarlo::{forward, NetParams};
use crate::stats::Summary;
use nalgebra::DMatrix;
use serde::Serialize;

/// Per-layer mean-square gains of a layer split into skip and residual, per example: E||J_i v||^2 / ||v||^2
/// = ||J_i||_F^2 / n_{l-1} for a direction v that is isotropic relative to J (and likewise for J_r), and
/// E||r_l(f^0_{l-1})||^2.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct LayerGains {
    pub skip_gain2: f64,
    pub residual_gain2: f64,
    pub residual_sq: f64,
}

/// The closed-form path profile for initialisation-like residuals (independent, centred residual maps, so
/// different paths are uncorrelated and each factor multiplies the squared norm by its gain):
/// E||a_L^(lambda)||^2 = sum over residual sets S of size lambda with lowest element s of
/// E||r_s||^2 prod_{l > s, l in S} residual_gain2_l prod_{l > s, l not in S} skip_gain2_l, i.e. the
/// coefficient of z^lambda in P_L(z), P_l(z) = (skip_gain2_l + z residual_gain2_l) P_{l-1}(z) +
/// z residual_sq_l, P_0 = 0. For equal layers this is the binomial path count sum_s E||r||^2
/// C(L - s, lambda - 1) g_i^(2(L - s - lambda + 1)) g_r^(2(lambda - 1)). Returns lambda = 1..=L.
pub fn closed_form_profile(gains: &[LayerGains]) -> Vec<f64> {
    let depth = gains.len();
    // coef[lambda] for lambda = 0..=depth; coef[0] stays 0 (every path carries a residual).
    let mut coef = vec![0.0; depth + 1];
    for g in gains {
        for lam in (1..=depth).rev() {
            coef[lam] = g.skip_gain2 * coef[lam] + g.residual_gain2 * coef[lam - 1];
        }
        coef[0] *= g.skip_gain2;
        coef[1] += g.residual_sq;
    }
    coef[1..].to_vec()
}

/// The smallest lambda whose paths up to lambda hold at least `fraction` of sum_lambda c_lambda; `None`
/// when the profile is all zero (nothing changed).
pub fn profile_depth(c: &[f64], fraction: f64) -> Option<usize> {
    let total: f64 = c.iter().sum();
    if total.is_nan() || total <= 0.0 {
        return None;
    }
    let mut acc = 0.0;
    for (i, v) in c.iter().enumerate() {
        acc += v;
        if acc >= fraction * total * (1.0 - 1e-12) {
            return Some(i + 1);
        }
    }
    Some(c.len())
}

#[derive(Clone, Debug, Serialize)]
pub struct PathProfile {
    pub examples: usize,
    /// c_lambda = E_x ||a_L^(lambda)|| for lambda = 1..=L (mean over examples, with standard error).
    pub c: Vec<Summary>,
    /// sqrt(E_x ||a_L^(lambda)||^2): what the closed form predicts.
    pub rms: Vec<f64>,
    /// The closed form fed by the gains measured on the initial trajectory (`gains`).
    pub predicted_rms: Vec<f64>,
    pub gains: Vec<LayerGains>,
    /// E_x ||f_L(theta(t)) - f_L(theta(0))||.
    pub change: f64,
    /// E_x ||change - sum_lambda a_L^(lambda)||: the expansion's truncation error (higher order in the
    /// input deviations; zero for affine layers up to rounding).
    pub truncation: f64,
    /// truncation / change (0 when nothing changed).
    pub truncation_rel: f64,
    /// Smallest lambda holding 90% of sum_lambda c_lambda (`None` when nothing changed).
    pub depth90: Option<usize>,
    /// truncation_rel <= TRUNCATION_LIMIT: the expansion describes the output change, so its profile
    /// (and depth90) says something about the network.
    pub describes: bool,
}

/// Largest relative truncation error at which the path profile is taken to describe the network.
pub const TRUNCATION_LIMIT: f64 = 0.1;

/// Fraction of sum c_lambda the path-profile depth holds.
pub const PROFILE_FRACTION: f64 = 0.9;

/// Runs the recursion on inputs `x` and measures the profile, its truncation error and, for the closed
/// form, each layer's gains on the initial trajectory.
pub fn path_expansion(
    net: &Network,
    init: &NetParams,
    trained: &NetParams,
    x: &DMatrix<f64>,
    opts: &DepthOptions,
) -> Result<PathProfile> {
    check_pair(net, init, trained)?;
    check_inputs(net, x, "inputs")?;
    let depth = net.depth();
    let bsz = x.ncols();
    let f0 = forward(net, init, x.clone()).outputs;
    let ft = forward(net, trained, x.clone()).outputs;
    let mut a: Vec<DMatrix<f64>> = vec![DMatrix::zeros(x.nrows(), depth); bsz];
    for l in 0..depth {
        let layer = &net.layers[l];
        let (s, c0) = layer_forward(layer, &init[l], &f0[l]);
        let (f, ct) = layer_forward(layer, &trained[l], &f0[l]);
        let r = f - s;
        let ji = layer_jvp(layer, &init[l], &c0, a.clone());
        let jt = layer_jvp(layer, &trained[l], &ct, a);
        a = ji
            .into_iter()
            .zip(jt)
            .enumerate()
            .map(|(b, (mut next, t))| {
                // J_r a^(lambda-1) = J_t a^(lambda-1) - J_i a^(lambda-1) moves one column up.
                for lam in (1..depth).rev() {
                    let jr = t.column(lam - 1) - next.column(lam - 1);
                    let mut col = next.column_mut(lam);
                    col += jr;
                }
                let mut col = next.column_mut(0);
                col += r.column(b);
                next
            })
            .collect();
    }
    let norms: Vec<Vec<f64>> = (0..depth)
        .map(|lam| a.iter().map(|ab| ab.column(lam).norm()).collect())
        .collect();
    let c: Vec<Summary> = norms
        .iter()
        .map(|v| Summary::of(v).expect("at least one example"))
        .collect();
    let rms: Vec<f64> = norms
        .iter()
        .map(|v| (v.iter().map(|x| x * x).sum::<f64>() / bsz as f64).sqrt())
        .collect();
    let (mut change, mut trunc) = (0.0, 0.0);
    for (b, ab) in a.iter().enumerate() {
        let delta = ft[depth].column(b) - f0[depth].column(b);
        let sum = ab.column_sum();
        change += delta.norm();
        trunc += (delta - sum).norm();
    }
    change /= bsz as f64;
    trunc /= bsz as f64;
    let sums = all_layer_sums(net, init, trained, &f0, opts, 0x7061_7468_7321);
    let gains: Vec<LayerGains> = sums
        .iter()
        .map(|(s, _, _)| {
            let m = s.len() as f64;
            let mean = |v: &dyn Fn(&BlockSums) -> f64| s.iter().map(v).sum::<f64>() / m;
            // A group is one example, or the whole batch under batch norm.
            let examples_per_group = bsz as f64 / m;
            LayerGains {
                skip_gain2: mean(&|b| b.jac_s / b.dim),
                residual_gain2: mean(&|b| b.jac_r / b.dim),
                residual_sq: mean(&|b| b.sq_r) / examples_per_group,
            }
        })
        .collect();
    let predicted_rms = closed_form_profile(&gains)
        .iter()
        .map(|v| v.sqrt())
        .collect();
    let means: Vec<f64> = c.iter().map(|s| s.mean).collect();
    let truncation_rel = if change > 0.0 { trunc / change } else { 0.0 };
    Ok(PathProfile {
        examples: bsz,
        depth90: profile_depth(&means, PROFILE_FRACTION),
        c,
        rms,
        predicted_rms,
        gains,
        change,
        truncation: trunc,
        truncation_rel,
        describes: truncation_rel <= TRUNCATION_LIMIT,
    })
}
