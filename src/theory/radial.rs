//! Finite-width ln GSC of ResNets whose branch ends in a relu: the radial-bulk chain
//! (theory/finite-width.md section 9).
//!
//! Such a network is positively homogeneous (bias-free dense layers, relu, identity skips), so its Jacobian
//! maps the input direction exactly onto the output: J f_k = f_L. That one direction grows with the forward
//! norm, while the remaining n - 1 grow with the mean-field Jacobian gain, which is smaller because the
//! relu branch adds a positive mean to f at every block. At infinite width the one direction weighs nothing;
//! at width n it carries 1/n of tr(J^T J) and receives a leak of O(1/n) per block from the bulk, so ln GSC
//! saturates near -1/2 ln n plus a few tenths instead of falling linearly with depth as the infinite-width
//! closed form does. The chain below carries the two masses, radial and bulk, through the blocks with
//! one-step moments from Gaussian expectations (Stein's lemma for the coherent parts). That deterministic
//! chain misses the width-n mean by up to 0.05 because the forward ratio rho^2 is random at width n and the
//! leak enters through the convex 1 / rho^2. The sampled chain (`predict_radial_with`), the law `predict`
//! reports, draws each network's forward pass and the Jacobian's projections on the new radial and mean
//! directions exactly in O(n) per block, and carries the Gram of the Jacobian in the frame (radial
//! direction, mean direction, rest): the two-mass split drops the radial-mean cross term, which at
//! alpha < 1 doubles the leak (theory/finite-width.md section 9, "The mean-direction closure").
//!
//! This is gradscale's own derivation, not a result of the seed paper; its measured error is in the note.

use crate::arch::{Network, Op, Skip};
use crate::nonlin::Nonlinearity;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use rand_xoshiro::Xoshiro256PlusPlus;
use rayon::prelude::*;
use std::f64::consts::PI;

/// One block f + alpha relu(W2 relu(W1 f)), W_i entries of variance sigma_i^2 / n.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ReluBlock {
    pub width: usize,
    pub alpha: f64,
    pub sigma1_w2: f64,
    pub sigma2_w2: f64,
}

/// The blocks of `net` when every layer is one identity-skip residual block with a bias-free Gaussian
/// dense -> relu -> dense -> relu branch of constant width; `None` for anything else.
pub fn relu_ended_blocks(net: &Network) -> Option<Vec<ReluBlock>> {
    let n = net.input.width;
    net.layers
        .iter()
        .map(|layer| match layer.ops.as_slice() {
            [Op::Residual(r)] if r.skip == Skip::Identity => match r.branch.as_slice() {
                [Op::Dense(d1), Op::Act(Nonlinearity::Relu), Op::Dense(d2), Op::Act(Nonlinearity::Relu)]
                    if d1.sigma_b2 == 0.0
                        && d2.sigma_b2 == 0.0
                        && d1.init == crate::arch::Init::Gaussian
                        && d2.init == crate::arch::Init::Gaussian
                        && d1.width == n
                        && d2.width == n =>
                {
                    Some(ReluBlock {
                        width: n,
                        alpha: r.alpha,
                        sigma1_w2: d1.sigma_w2,
                        sigma2_w2: d2.sigma_w2,
                    })
                }
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// Mean-field state of f: q = ||f||^2 / n and m = mean coordinate of f.
#[derive(Clone, Copy, Debug)]
struct State {
    q: f64,
    m: f64,
}

/// One block's moments: the next state, the radial gain rho^2 = q'/q, the bulk gain gamma, and the leak
/// lambda (n times the expected squared radial component of J t for a unit t orthogonal to f).
fn step(b: &ReluBlock, s: State) -> (State, f64, f64, f64) {
    let (a, s1, s2) = (b.alpha, b.sigma1_w2, b.sigma2_w2);
    let (q, m) = (s.q, s.m);
    let qa = s1 * q / 2.0; // E relu(h1)^2, h1 ~ N(0, s1 q)
    let sh = (s2 * qa).sqrt(); // sd of h2
    let qg = sh * sh / 2.0; // E g^2, g = relu(h2)
    let mu = sh / (2.0 * PI).sqrt(); // E g
    let q1 = q + 2.0 * a * m * mu + a * a * qg;
    let next = State {
        q: q1,
        m: m + a * mu,
    };
    // x = f + a g, A = W1^T D1 W2^T D2: ||J^T x||^2 = ||x||^2 + 2a <x, A x> + a^2 ||A x||^2.
    let c = s2 * s1 * (q + a * m * mu) / 2.0; // cov((W2 D1 W1 x)_i, h2_i)
    let x_ax = m * c / (sh * (2.0 * PI).sqrt()) + a * c / 2.0;
    let kappa = m / (sh * (2.0 * PI).sqrt()) + a / 2.0; // Stein: coherent part of W2^T D2 x along a1
    let masked_x2 = q / 2.0 + 2.0 * a * m * mu + a * a * qg; // E[1(h2 > 0) x^2]
    let ax2 = s2 * s2 * kappa * kappa * 0.75 * s1 * s1 * q + s1 / 2.0 * s2 * masked_x2;
    let jt = 1.0 + (2.0 * a * x_ax + a * a * ax2) / q1;
    let rho2 = q1 / q;
    let gamma = 1.0 + a * a * (s1 / 2.0) * (s2 / 2.0);
    (next, rho2, gamma, jt - rho2)
}

/// The sampled chain's law of ln GSC(L, l) at one l.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct SampledValue {
    pub mean: f64,
    /// Standard error of `mean` from the chain's own sampling (draws are independent).
    pub mean_se: f64,
    pub sd: f64,
    pub q05: f64,
    pub q95: f64,
}

/// Finite-width and infinite-width ln GSC(L, l) of a relu-ended ResNet, l = 0..=L (l counts blocks from the
/// input; entry L is 0), for Gaussian inputs.
#[derive(Clone, Debug, PartialEq)]
pub struct RadialLaw {
    pub width: usize,
    /// The sampled chain (the forward pass and the leak drawn at width n, section 9): the width-n law.
    pub sampled: Vec<SampledValue>,
    /// Number of chain draws behind `sampled`.
    pub draws: usize,
    /// The deterministic chain (every per-block quantity at its mean-field value): mean ln GSC(L, l).
    pub finite: Vec<f64>,
    /// The same chain at n = infinity (equals the mean-field closed form).
    pub infinite: Vec<f64>,
    /// -1/2 ln n: no positively homogeneous network of input width n has a smaller ln GSC (the input
    /// direction alone contributes ||f_L||^2 / ||f_l||^2 to tr(J^T J)).
    pub lower_bound: f64,
}

/// Draws and seed of the sampled chain.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RadialOptions {
    pub draws: usize,
    pub seed: u64,
}

impl Default for RadialOptions {
    fn default() -> Self {
        RadialOptions {
            draws: 2000,
            seed: 0x5EED_0017,
        }
    }
}

/// The radial-bulk chain for `net` with the default draws, or `None` when the network is not a relu-ended
/// ResNet with Gaussian inputs.
pub fn predict_radial(net: &Network) -> Option<RadialLaw> {
    predict_radial_with(net, &RadialOptions::default())
}

/// Generator of draw `index`: a SplitMix64 mix of (seed, index), so that a draw's numbers do not depend on
/// which thread runs it.
fn draw_rng(seed: u64, index: u64) -> Xoshiro256PlusPlus {
    let mut z = seed
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(0x243F_6A88_85A3_08D3)
        ^ index.wrapping_mul(0xD1B5_4A32_D192_ED03);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    Xoshiro256PlusPlus::seed_from_u64(z ^ (z >> 31))
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// One block's random quantities for one sampled network, in the frame (v, e, rest) before the block and
/// (v', e', rest') after it: v = f / ||f||, e = P_v 1 / ||P_v 1|| (the mean direction made orthogonal to v).
/// p = J^T v' and q = J^T e' (theory/finite-width.md section 9, "The mean-direction closure").
struct BlockDraw {
    /// rho^2 = ||f'||^2 / ||f||^2 = <p, v>^2 (homogeneity; <q, v> = 0 exactly).
    rho2: f64,
    /// <p, e> and <q, e>.
    pe: f64,
    qe: f64,
    /// ||p||^2 - rho^2 - pe^2, ||q||^2 - qe^2 and <p, q> - pe qe: p and q outside span(v, e).
    rpp: f64,
    rqq: f64,
    rpq: f64,
    /// E[||J||_F^2 | forward].
    fro: f64,
}

/// P_x 1 / ||P_x 1|| for a vector x (the mean direction orthogonal to x); zero if 1 is parallel to x.
fn mean_direction(x: &[f64]) -> Vec<f64> {
    let xx = dot(x, x);
    let s: f64 = x.iter().sum();
    let mut e: Vec<f64> = x.iter().map(|&xi| 1.0 - s * xi / xx).collect();
    let ee = dot(&e, &e);
    if ee > 1e-12 * x.len() as f64 {
        let k = ee.sqrt().recip();
        e.iter_mut().for_each(|ei| *ei *= k);
    } else {
        e.iter_mut().for_each(|ei| *ei = 0.0);
    }
    e
}

/// G^T t1, G^T t2 for a fresh n x n Gaussian G of entry variance var / n: coordinate-wise jointly Gaussian
/// with covariance (var / n) [[|t1|^2, <t1, t2>], [<t1, t2>, |t2|^2]], independent across coordinates.
fn gaussian_pair(
    t1: &[f64],
    t2: &[f64],
    var: f64,
    rng: &mut Xoshiro256PlusPlus,
) -> (Vec<f64>, Vec<f64>) {
    let n = t1.len() as f64;
    let (a11, a12, a22) = (dot(t1, t1), dot(t1, t2), dot(t2, t2));
    let l11 = a11.sqrt();
    let l21 = if l11 > 0.0 { a12 / l11 } else { 0.0 };
    let l22 = (a22 - l21 * l21).max(0.0).sqrt();
    let k = (var / n).sqrt();
    let mut x = Vec::with_capacity(t1.len());
    let mut y = Vec::with_capacity(t1.len());
    for _ in 0..t1.len() {
        let z1: f64 = rng.sample(StandardNormal);
        let z2: f64 = rng.sample(StandardNormal);
        x.push(k * l11 * z1);
        y.push(k * (l21 * z1 + l22 * z2));
    }
    (x, y)
}

/// One network's forward pass and per-block transposed Jacobian on v' and e', sampled in O(n) per block
/// (theory/finite-width.md section 9, "The sampled chain"). Given f, W1 = h1 f^T / ||f||^2 + G1 P_f with G1
/// independent of h1, so h1 = W1 f is i.i.d. N(0, s1 ||f||^2 / n) and W1 acting orthogonally to f is fresh;
/// likewise W2 given a1. E^T t = v <g, t> / ||f|| + P_f G1^T y_t, y_t = D1 (w <g, t> / ||a1|| + P_w G2^T D2 t)
/// for E = D2 W2 D1 W1, so J^T t = t + alpha E^T t is drawn jointly for t = v' and t = e'.
fn draw_network(blocks: &[ReluBlock], rng: &mut Xoshiro256PlusPlus) -> Vec<BlockDraw> {
    let n = blocks[0].width;
    let nf64 = n as f64;
    let normal = |k: usize, sd: f64, rng: &mut Xoshiro256PlusPlus| -> Vec<f64> {
        (0..k)
            .map(|_| sd * rng.sample::<f64, _>(StandardNormal))
            .collect()
    };
    let mut f = normal(n, 1.0, rng);
    let mut e = mean_direction(&f);
    let mut out = Vec::with_capacity(blocks.len());
    for b in blocks {
        let (a, s1, s2) = (b.alpha, b.sigma1_w2, b.sigma2_w2);
        let ff = dot(&f, &f);
        let h1 = normal(n, (s1 * ff / nf64).sqrt(), rng);
        let a1: Vec<f64> = h1.iter().map(|&x| x.max(0.0)).collect();
        let aa = dot(&a1, &a1);
        if aa == 0.0 {
            // Every unit of the first relu off (probability 2^-n): the branch and its Jacobian vanish and
            // the block is exactly the identity (v' = v, e' = e).
            out.push(BlockDraw {
                rho2: 1.0,
                pe: 0.0,
                qe: 1.0,
                rpp: 0.0,
                rqq: 0.0,
                rpq: 0.0,
                fro: nf64,
            });
            continue;
        }
        let h2 = normal(n, (s2 * aa / nf64).sqrt(), rng);
        let g: Vec<f64> = h2.iter().map(|&x| x.max(0.0)).collect();
        let d1 = h1.iter().filter(|&&x| x > 0.0).count() as f64;
        let d2 = h2.iter().filter(|&&x| x > 0.0).count() as f64;
        let f1: Vec<f64> = f.iter().zip(&g).map(|(x, y)| x + a * y).collect();
        let ff1 = dot(&f1, &f1);
        let gg = dot(&g, &g);
        let nf = ff.sqrt();
        let nf1 = ff1.sqrt();
        let u: Vec<f64> = f1.iter().map(|x| x / nf1).collect();
        let e1 = mean_direction(&f1);
        let mask2 = |t: &[f64]| -> Vec<f64> {
            t.iter()
                .zip(&h2)
                .map(|(&x, &h)| if h > 0.0 { x } else { 0.0 })
                .collect()
        };
        let (gu, ge) = (dot(&g, &u), dot(&g, &e1));
        let (mut yu, mut ye) = gaussian_pair(&mask2(&u), &mask2(&e1), s2, rng);
        for (y, c) in [(&mut yu, gu), (&mut ye, ge)] {
            let wy = dot(&a1, y) / aa;
            for ((yi, &ai), &hi) in y.iter_mut().zip(&a1).zip(&h1) {
                *yi = if hi > 0.0 {
                    *yi - wy * ai + ai * c / aa
                } else {
                    0.0
                };
            }
        }
        let (zu, ze) = gaussian_pair(&yu, &ye, s1, rng);
        // p = J^T u, q = J^T e' with E^T t = v <g, t> / ||f|| + P_f G1^T y_t.
        let transpose = |t: &[f64], gt: f64, z: &[f64]| -> Vec<f64> {
            let zf = dot(z, &f) / ff;
            t.iter()
                .zip(z)
                .zip(&f)
                .map(|((&ti, &zi), &fi)| ti + a * (fi * gt / (nf * nf) + zi - zf * fi))
                .collect()
        };
        let p = transpose(&u, gu, &zu);
        let q = transpose(&e1, ge, &ze);
        let rho2 = ff1 / ff;
        let (pe, qe) = (dot(&p, &e), dot(&q, &e));
        let lambda = (dot(&p, &p) - rho2).max(0.0);
        // E[||J||_F^2 | forward] - rho^2: the identity's n - 1 bulk directions plus the two random parts of
        // D2 W2 D1 W1 restricted to P_f (the rank-one g (G1^T w)^T / ||a1|| and D2 G2 P_w D1 G1 P_f).
        let fro = rho2
            + (nf64 - 1.0)
                * (1.0 + a * a * s1 * (gg / (nf64 * aa) + s2 * d2 * (d1 - 1.0) / (nf64 * nf64)));
        // ||J||_F^2 >= ||J^T u||^2 = rho^2 + lambda for every network; the conditional mean can fall below
        // the drawn lambda at tiny widths (at n = 100 lambda ~ 3 against ~ 2 n), which would make the
        // bulk mass negative.
        let fro = fro.max(rho2 + lambda);
        out.push(BlockDraw {
            rho2,
            pe,
            qe,
            rpp: (lambda - pe * pe).max(0.0),
            rqq: (dot(&q, &q) - qe * qe).max(0.0),
            rpq: dot(&p, &q) - pe * qe,
            fro,
        });
        // Homogeneity: only f's direction matters; keep it O(1).
        let scale = (nf64 / ff1).sqrt();
        f = f1.iter().map(|x| x * scale).collect();
        e = e1;
    }
    out
}

/// ln GSC(L, l) for l = 0..L of one sampled network (entry L is 0). The Gram K = P P^T of the Jacobian P
/// from f_l is carried as R = v^T K v, E = e^T K e, C = v^T K e and an isotropic rest beta on the n - 2
/// directions orthogonal to v and e; K_l = I. Per block K' = J K J^T, read off on v' and e'.
///
/// Every start needs its own pass (the clip of the rest at 0 makes the map nonlinear), so this is
/// O(L^2) per draw; the per-step cost is kept to a dozen multiply-adds: the per-block coefficients are
/// formed once, the map is homogeneous of degree 1 in (R, C, E, beta) so the state is rescaled (one ln)
/// only when it leaves [1e-150, 1e150] instead of every block, and sum ln rho^2 over blocks start..L is
/// one suffix sum shared by all starts.
fn draw_chain(n: f64, draws: &[BlockDraw]) -> Vec<f64> {
    let depth = draws.len();
    // Coefficients of block k's linear map on (r, c, e, beta) [trace row, then r1, c1, e1 rows].
    struct Coef {
        rho2: f64,
        fro: f64,
        gain_e: f64,
        cross: f64,
        pe2: f64,
        rpp: f64,
        peqe: f64,
        rhoqe: f64,
        rpq: f64,
        qe2: f64,
        rqq: f64,
    }
    let coefs: Vec<Coef> = draws
        .iter()
        .map(|d| {
            let rho = d.rho2.sqrt();
            Coef {
                rho2: d.rho2,
                fro: d.fro,
                // A unit direction orthogonal to v gains (||J||_F^2 - rho^2) / (n - 1) in mean square.
                gain_e: (d.fro - d.rho2) / (n - 1.0),
                cross: 2.0 * rho * d.pe,
                pe2: d.pe * d.pe,
                rpp: d.rpp,
                peqe: d.pe * d.qe,
                rhoqe: rho * d.qe,
                rpq: d.rpq,
                qe2: d.qe * d.qe,
                rqq: d.rqq,
            }
        })
        .collect();
    let mut log_fwd = vec![0.0; depth + 1];
    for k in (0..depth).rev() {
        log_fwd[k] = log_fwd[k + 1] + draws[k].rho2.ln();
    }
    let inv_rest = if n > 2.0 { (n - 2.0).recip() } else { 0.0 };
    (0..=depth)
        .map(|start| {
            let (mut r, mut c, mut e, mut beta) = (1.0, 0.0, 1.0, 1.0);
            let mut log_scale = 0.0;
            for k in &coefs[start..] {
                let trace =
                    beta * k.fro + (r - beta) * k.rho2 + (e - beta) * k.gain_e + c * k.cross;
                let r1 = r * k.rho2 + e * k.pe2 + c * k.cross + beta * k.rpp;
                let c1 = e * k.peqe + c * k.rhoqe + beta * k.rpq;
                let e1 = e * k.qe2 + beta * k.rqq;
                let beta1 = (trace - r1 - e1).max(0.0) * inv_rest;
                (r, c, e, beta) = (r1, c1, e1, beta1);
                let t = r + e + (n - 2.0) * beta;
                if !(1e-150..=1e150).contains(&t) {
                    log_scale += t.ln();
                    let k = t.recip();
                    (r, c, e, beta) = (r * k, c * k, e * k, beta * k);
                }
            }
            0.5 * (log_scale + (r + e + (n - 2.0) * beta).ln() - n.ln() - log_fwd[start])
        })
        .collect()
}

/// The radial-bulk chain for `net`, or `None` when the network is not a relu-ended ResNet with Gaussian
/// inputs (or `opts.draws` < 2).
pub fn predict_radial_with(net: &Network, opts: &RadialOptions) -> Option<RadialLaw> {
    if net.input.data.is_some() || opts.draws < 2 {
        return None;
    }
    let blocks = relu_ended_blocks(net)?;
    if blocks.is_empty() || net.input.width < 2 {
        return None;
    }
    let nw = net.input.width as f64;
    let runs: Vec<Vec<f64>> = (0..opts.draws)
        .into_par_iter()
        .map(|i| {
            draw_chain(
                nw,
                &draw_network(&blocks, &mut draw_rng(opts.seed, i as u64)),
            )
        })
        .collect();
    let sampled = (0..=blocks.len())
        .map(|l| {
            let xs: Vec<f64> = runs.iter().map(|r| r[l]).collect();
            let s = crate::stats::Summary::of(&xs).expect("draws >= 2");
            SampledValue {
                mean: s.mean,
                mean_se: s.stderr,
                sd: s.sd,
                q05: crate::stats::quantile(&xs, 0.05),
                q95: crate::stats::quantile(&xs, 0.95),
            }
        })
        .collect();
    let n = net.input.width as f64;
    let depth = blocks.len();
    let mut states = Vec::with_capacity(depth + 1);
    let mut s = State { q: 1.0, m: 0.0 };
    states.push(s);
    for b in &blocks {
        s = step(b, s).0;
        states.push(s);
    }
    let chain = |start: usize, n: Option<f64>| -> f64 {
        // Masses of tr(P^T P), P the Jacobian from f_start: radial (along f) and bulk (orthogonal).
        let (mut radial, mut bulk) = match n {
            Some(n) => (1.0, n - 1.0),
            None => (0.0, 1.0),
        };
        let mut log_fwd = 0.0;
        let mut log_scale = 0.0; // masses kept O(1): products of many gains overflow
        for (b, st) in blocks[start..].iter().zip(&states[start..]) {
            let (_, rho2, gamma, lambda) = step(b, *st);
            let leak = n.map_or(0.0, |n| lambda / n * bulk);
            radial = rho2 * radial + leak;
            bulk *= gamma - n.map_or(0.0, |n| lambda / n);
            log_fwd += rho2.ln();
            let t = radial + bulk;
            radial /= t;
            bulk /= t;
            log_scale += t.ln();
        }
        let norm = n.map_or(0.0, f64::ln);
        0.5 * (log_scale + (radial + bulk).ln() - norm - log_fwd)
    };
    let finite = (0..=depth).map(|l| chain(l, Some(n))).collect();
    let infinite = (0..=depth).map(|l| chain(l, None)).collect();
    Some(RadialLaw {
        width: net.input.width,
        sampled,
        draws: opts.draws,
        finite,
        infinite,
        lower_bound: -0.5 * n.ln(),
    })
}
