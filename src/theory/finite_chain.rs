//! Depth-uniform finite-width law of ln GSC(L, l) for plain MLPs with any nonlinearity: the scalar-state
//! chain of theory/finite-width.md, section 8.
//!
//! Why a chain and not a series: the O(1/n) expansion's input-path weight rho grows linearly in depth, so
//! its correction is O(L^2/n) and the series stops converging at L ~ 0.2 n. Here nothing is expanded in
//! L/n. Each draw samples one network's *forward* pass exactly (the n_m pre-activations of layer m are
//! i.i.d. given the previous layer, so the units are drawn one by one), and carries the Jacobian through
//! three scalars per starting layer k: ln ||J_{m<-k}||_F^2, the fraction p of that Frobenius mass along the
//! current output direction (p = rho / n, saturating at 1 instead of growing without bound), and the
//! spectral spread s of J J^T (which sets how much the rows of W off the input path scatter ||J||_F^2).
//! Given those, the next layer's Jacobian gain is exact in its input-path part (it uses the same sampled
//! units as the forward pass) and moment-matched (a Gamma law) in its off-path part. What is neglected is
//! stated in theory/finite-width.md: the cross term between the input path and the rest, and the shape
//! of the off-path spectrum beyond its spread.

use crate::nonlin::Nonlinearity;
use rand::Rng;
use rand_distr::{Distribution, Gamma, StandardNormal};
use rand_xoshiro::Xoshiro256PlusPlus;

/// One plain-MLP layer as the chain sees it: (width, sigma_w^2, sigma_b^2, nonlinearity).
pub(crate) type ChainLayer = (usize, f64, f64, Nonlinearity);

/// Sums over the units of one layer (the sufficient statistics of the step), and ln ||f_m||^2.
struct UnitSums {
    /// sum phi^2, sum phi'^2, sum phi'^2 z^2, sum phi phi' z, sum (phi phi')^2, sum phi'^4, where z is the
    /// standardised weight part of the pre-activation (the component along the input direction).
    phi2: f64,
    d2: f64,
    d2z2: f64,
    pdz: f64,
    pd2: f64,
    d4: f64,
}

/// Draws one layer's units given s = ||f_{m-1}||^2 / n_{m-1}; redraws (at most a few times) a layer whose
/// forward output is exactly zero, which conditions on a non-degenerate network exactly: the event has the
/// same probability whatever came before (relu: 2^-n), so conditioning per layer does not tilt the past.
fn draw_units(
    n: usize,
    s: f64,
    sw2: f64,
    sb2: f64,
    act: Nonlinearity,
    rng: &mut Xoshiro256PlusPlus,
) -> Option<UnitSums> {
    let sd_w = (sw2 * s).sqrt();
    let sd_b = sb2.sqrt();
    for _ in 0..64 {
        let mut u = UnitSums {
            phi2: 0.0,
            d2: 0.0,
            d2z2: 0.0,
            pdz: 0.0,
            pd2: 0.0,
            d4: 0.0,
        };
        for _ in 0..n {
            let z: f64 = rng.sample(StandardNormal);
            let h = if sb2 > 0.0 {
                sd_w * z + sd_b * rng.sample::<f64, _>(StandardNormal)
            } else {
                sd_w * z
            };
            let p = act.phi(h);
            let d = act.dphi(h);
            let (p2, d2) = (p * p, d * d);
            u.phi2 += p2;
            u.d2 += d2;
            u.d2z2 += d2 * z * z;
            u.pdz += p * d * z;
            u.pd2 += p2 * d2;
            u.d4 += d2 * d2;
        }
        if u.phi2 > 0.0 && u.d2 > 0.0 {
            return Some(u);
        }
    }
    None
}

/// A positive factor with mean 1 and relative variance `rel_var` (Gamma law: the off-path quadratic forms
/// are sums of weighted chi-squares, skewed at small effective rank).
fn unit_gamma(rel_var: f64, rng: &mut Xoshiro256PlusPlus) -> f64 {
    if rel_var.is_nan() || rel_var <= 1e-12 {
        return 1.0;
    }
    if rel_var < 1e-6 {
        // Shape > 1e6: the Gamma is normal to within its own skewness 2 sqrt(rel_var).
        let g: f64 = rng.sample(StandardNormal);
        return 1.0 + rel_var.sqrt() * g;
    }
    let shape = 1.0 / rel_var;
    match Gamma::new(shape, rel_var) {
        Ok(d) => d.sample(rng),
        Err(_) => 1.0,
    }
}

/// State of J_{m<-k} for one starting layer k.
#[derive(Clone, Copy)]
struct JState {
    /// ln ||J||_F^2.
    ln_f: f64,
    /// ||J^T f^_m||^2 / ||J||_F^2: the share of the Frobenius mass along the current output direction.
    p: f64,
    /// n_m tr((J J^T)^2) / tr(J J^T)^2.
    spread: f64,
}

/// One draw of the chain: ln GSC(L, k) for k = 0..L-1, or for k = 0 alone unless `every_start` (the
/// other starting layers cost O(L^2) per draw); None if a layer could not be drawn non-degenerate.
pub(crate) fn draw(
    n0: usize,
    layers: &[ChainLayer],
    every_start: bool,
    rng: &mut Xoshiro256PlusPlus,
) -> Option<Vec<f64>> {
    let depth = layers.len();
    // ln ||f_m||^2 for m = 0..=L; ||x||^2 = n_0.
    let mut ln_sq = Vec::with_capacity(depth + 1);
    ln_sq.push((n0 as f64).ln());
    let mut states: Vec<JState> = Vec::with_capacity(depth);
    let mut width_prev = n0;
    for &(n, sw2, sb2, act) in layers {
        let np = width_prev as f64;
        // J_{m-1<-m-1} = I: all of its Frobenius mass n' is spread evenly, 1/n' of it along f.
        if every_start || states.is_empty() {
            states.push(JState {
                ln_f: np.ln(),
                p: 1.0 / np,
                spread: 1.0,
            });
        }
        let s = ln_sq.last().copied().unwrap_or(0.0).exp() / np;
        let u = draw_units(n, s, sw2, sb2, act, rng)?;
        let sig2 = sw2 / np;
        let nf = n as f64;
        // 1 + V for this layer's gates, from the drawn units.
        let one_plus_v = nf * u.d4 / (u.d2 * u.d2);
        for st in states.iter_mut() {
            let p = st.p.clamp(0.0, 1.0);
            // Effective rank of J J^T (>= 1): an off-path quadratic form g^T J J^T g with Gaussian g is a
            // chi-square with that many degrees of freedom, in distribution to second order.
            let rank = (np / st.spread).max(1.0);
            // ||J_m||_F^2 / ||J||_F^2: the input-path part (rows' components along f, which also set the
            // pre-activations: the same z's) plus the off-path part, sum_i phi'_i^2 g_i^T B B^T g_i, whose
            // relative variance is 2 sum phi'^4 / (rank (sum phi'^2)^2).
            // ||J_m||_F^2 / ||J||_F^2: the input-path part (rows' components along f, which also set the
            // pre-activations: the same z's) plus the off-path part, sum_i phi'_i^2 g_i^T B B^T g_i, whose
            // relative variance is 2 sum phi'^4 / (rank (sum phi'^2)^2). The cross term between the two
            // (weight ||B J^T f^||^2) is left out: see theory/finite-width.md section 8 for what that costs.
            let path = sig2 * p * u.d2z2;
            let off_mean = sig2 * (1.0 - p) * u.d2;
            let off = if off_mean > 0.0 {
                off_mean * unit_gamma(2.0 * u.d4 / (rank * u.d2 * u.d2), rng)
            } else {
                0.0
            };
            let gain = path + off;
            if gain.is_nan() || gain <= 0.0 {
                return None;
            }
            // ||J_m^T f_m||^2 / ||J||_F^2: J^T W^T (phi' phi) = along-path part sum_i phi_i phi'_i a_i J^T f^
            // plus an off-path Gaussian vector through B^T (one chi-square of the same rank).
            let num_path = sig2 * u.pdz * u.pdz * p;
            let num_off_mean = sig2 * (1.0 - p) * u.pd2;
            let num_off = if num_off_mean > 0.0 {
                num_off_mean * unit_gamma(2.0 / rank, rng)
            } else {
                0.0
            };
            st.p = ((num_path + num_off) / (u.phi2 * gain)).clamp(0.0, 1.0);
            st.ln_f += gain.ln();
            // Free addition of normalised variances (theory/finite-width.md section 3), with the
            // finite-rank term that makes the leading order exact in expectation; the spread of an n x n'
            // matrix cannot exceed n.
            st.spread = ((nf / np) * st.spread + one_plus_v * (1.0 + st.spread / np)).min(nf);
        }
        ln_sq.push(u.phi2.ln());
        width_prev = n;
    }
    let ln_l = ln_sq[depth];
    let mut n_k = n0;
    let mut out = Vec::with_capacity(depth);
    for (k, st) in states.iter().enumerate() {
        out.push(0.5 * (st.ln_f - (n_k as f64).ln() - (ln_l - ln_sq[k])));
        n_k = layers[k].0;
    }
    Some(out)
}
