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
use crate::montecarlo::fill_normal;
use crate::nonlin::Nonlinearity;
use rand::{RngCore, SeedableRng};
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

/// Four interleaved partial sums: a single running sum is one serial chain of FP-add latency, which
/// bounded the whole sampled chain (the vectors are only n long and there are ~10 per block).
fn dot(a: &[f64], b: &[f64]) -> f64 {
    let (ca, cb) = (a.chunks_exact(4), b.chunks_exact(4));
    let tail: f64 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    let mut acc = [0.0; 4];
    for (x, y) in ca.zip(cb) {
        for j in 0..4 {
            acc[j] += x[j] * y[j];
        }
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
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

/// Writes P_x 1 / ||P_x 1|| (the mean direction orthogonal to x) into `e`; zero if 1 is parallel to x.
fn mean_direction(x: &[f64], e: &mut [f64]) {
    let xx = dot(x, x);
    let s: f64 = x.iter().sum();
    let k = s / xx;
    let mut ee = 0.0;
    for (ei, &xi) in e.iter_mut().zip(x) {
        *ei = 1.0 - k * xi;
        ee += *ei * *ei;
    }
    let k = if ee > 1e-12 * x.len() as f64 {
        ee.sqrt().recip()
    } else {
        0.0
    };
    e.iter_mut().for_each(|ei| *ei *= k);
}

/// G^T t1, G^T t2 for a fresh n x n Gaussian G of entry variance var / n: coordinate-wise jointly Gaussian
/// with covariance (var / n) [[|t1|^2, <t1, t2>], [<t1, t2>, |t2|^2]], independent across coordinates.
/// `a` = (|t1|^2, <t1, t2>, |t2|^2); z1, z2 are independent standard normals, one per coordinate.
fn gaussian_pair(
    a: (f64, f64, f64),
    var: f64,
    z1: &[f64],
    z2: &[f64],
    x: &mut [f64],
    y: &mut [f64],
) {
    let (a11, a12, a22) = a;
    let l11 = a11.sqrt();
    let l21 = if l11 > 0.0 { a12 / l11 } else { 0.0 };
    let l22 = (a22 - l21 * l21).max(0.0).sqrt();
    let k = (var / x.len() as f64).sqrt();
    let (c11, c21, c22) = (k * l11, k * l21, k * l22);
    for (((xi, yi), &u), &w) in x.iter_mut().zip(y.iter_mut()).zip(z1).zip(z2) {
        *xi = c11 * u;
        *yi = c21 * u + c22 * w;
    }
}

/// One network's forward pass and per-block transposed Jacobian on v' and e', sampled in O(n) per block
/// (theory/finite-width.md section 9, "The sampled chain"). Given f, W1 = h1 f^T / ||f||^2 + G1 P_f with G1
/// independent of h1, so h1 = W1 f is i.i.d. N(0, s1 ||f||^2 / n) and W1 acting orthogonally to f is fresh;
/// likewise W2 given a1. E^T t = v <g, t> / ||f|| + P_f G1^T y_t, y_t = D1 (w <g, t> / ||a1|| + P_w G2^T D2 t)
/// for E = D2 W2 D1 W1, so J^T t = t + alpha E^T t is drawn jointly for t = v' and t = e'.
///
/// A block's 6n standard normals come from one `fill_normal` call seeded by the draw's own generator (the
/// vectorised block generator; per-element samples cost most of the chain), so a draw's numbers still
/// depend only on (seed, draw index).
fn draw_network(blocks: &[ReluBlock], rng: &mut Xoshiro256PlusPlus) -> Vec<BlockDraw> {
    let n = blocks[0].width;
    let nf64 = n as f64;
    let mut f = vec![0.0; n];
    fill_normal(&mut f, rng.next_u64(), 1.0);
    let mut e = vec![0.0; n];
    mean_direction(&f, &mut e);
    let mut z = vec![0.0; 6 * n];
    let [mut h1, mut a1, mut h2, mut f1, mut e1, mut yu, mut ye, mut zu, mut ze] =
        std::array::from_fn(|_| vec![0.0; n]);
    let mut out = Vec::with_capacity(blocks.len());
    for b in blocks {
        let (a, s1, s2) = (b.alpha, b.sigma1_w2, b.sigma2_w2);
        fill_normal(&mut z, rng.next_u64(), 1.0);
        let (z_h1, rest) = z.split_at(n);
        let (z_h2, rest) = rest.split_at(n);
        let (z_y, z_z) = rest.split_at(2 * n);
        let ff = dot(&f, &f);
        let sd1 = (s1 * ff / nf64).sqrt();
        let (mut aa, mut d1) = (0.0, 0.0);
        for ((h, ai), &zi) in h1.iter_mut().zip(a1.iter_mut()).zip(z_h1) {
            *h = sd1 * zi;
            *ai = h.max(0.0);
            aa += *ai * *ai;
            d1 += if *h > 0.0 { 1.0 } else { 0.0 };
        }
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
        let sd2 = (s2 * aa / nf64).sqrt();
        // g = relu(h2) is kept in h2's place: h2 > 0 exactly where g > 0.
        let (mut gg, mut d2, mut ff1) = (0.0, 0.0, 0.0);
        for ((g, fi1), (&zi, &fi)) in h2.iter_mut().zip(f1.iter_mut()).zip(z_h2.iter().zip(&f)) {
            *g = (sd2 * zi).max(0.0);
            gg += *g * *g;
            d2 += if *g > 0.0 { 1.0 } else { 0.0 };
            *fi1 = fi + a * *g;
            ff1 += *fi1 * *fi1;
        }
        let g = &h2;
        let nf = ff.sqrt();
        let nf1 = ff1.sqrt();
        mean_direction(&f1, &mut e1);
        // u = f1 / ||f1|| is never stored: <x, u> = <x, f1> / ||f1||.
        let (mut gf1, mut ge, mut muu, mut mue, mut mee) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for ((&gi, &fi1), &ei1) in g.iter().zip(&f1).zip(&e1) {
            gf1 += gi * fi1;
            ge += gi * ei1;
            if gi > 0.0 {
                muu += fi1 * fi1;
                mue += fi1 * ei1;
                mee += ei1 * ei1;
            }
        }
        let gu = gf1 / nf1;
        let (muu, mue) = (muu / ff1, mue / nf1);
        let (z1, z2) = z_y.split_at(n);
        gaussian_pair((muu, mue, mee), s2, z1, z2, &mut yu, &mut ye);
        for (y, c) in [(&mut yu, gu), (&mut ye, ge)] {
            let k = (c - dot(&a1, y)) / aa;
            for ((yi, &ai), &hi) in y.iter_mut().zip(&a1).zip(&h1) {
                *yi = if hi > 0.0 { *yi + k * ai } else { 0.0 };
            }
        }
        let (z1, z2) = z_z.split_at(n);
        gaussian_pair(
            (dot(&yu, &yu), dot(&yu, &ye), dot(&ye, &ye)),
            s1,
            z1,
            z2,
            &mut zu,
            &mut ze,
        );
        // p = J^T u, q = J^T e' with E^T t = v <g, t> / ||f|| + P_f G1^T y_t, never stored: only their
        // inner products with e and each other are needed.
        let (zfu, zfe) = (dot(&zu, &f) / ff, dot(&ze, &f) / ff);
        let (cu, ce) = (gu / (nf * nf) - zfu, ge / (nf * nf) - zfe);
        let inv_nf1 = nf1.recip();
        let (mut pe, mut qe, mut pp, mut qq, mut pq) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for i in 0..n {
            let fi = f[i];
            let pi = f1[i] * inv_nf1 + a * (fi * cu + zu[i]);
            let qi = e1[i] + a * (fi * ce + ze[i]);
            pe += pi * e[i];
            qe += qi * e[i];
            pp += pi * pi;
            qq += qi * qi;
            pq += pi * qi;
        }
        let rho2 = ff1 / ff;
        let lambda = (pp - rho2).max(0.0);
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
            rqq: (qq - qe * qe).max(0.0),
            rpq: pq - pe * qe,
            fro,
        });
        // Homogeneity: only f's direction matters; keep it O(1).
        let scale = (nf64 / ff1).sqrt();
        for (fi, &x) in f.iter_mut().zip(&f1) {
            *fi = x * scale;
        }
        std::mem::swap(&mut e, &mut e1);
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
    // All starts advance together, block by block (start s joins at block s): the starts are independent,
    // so the inner loop has no carried dependency and pipelines/vectorises, and each start still sees
    // exactly the operations of its own pass.
    let (mut r, mut c, mut e, mut beta) = (
        vec![1.0; depth + 1],
        vec![0.0; depth + 1],
        vec![1.0; depth + 1],
        vec![1.0; depth + 1],
    );
    let mut log_scale = vec![0.0; depth + 1];
    for (j, k) in coefs.iter().enumerate() {
        let m = j + 1;
        for (((r, c), e), beta) in r[..m]
            .iter_mut()
            .zip(&mut c[..m])
            .zip(&mut e[..m])
            .zip(&mut beta[..m])
        {
            let trace =
                *beta * k.fro + (*r - *beta) * k.rho2 + (*e - *beta) * k.gain_e + *c * k.cross;
            let r1 = *r * k.rho2 + *e * k.pe2 + *c * k.cross + *beta * k.rpp;
            let c1 = *e * k.peqe + *c * k.rhoqe + *beta * k.rpq;
            let e1 = *e * k.qe2 + *beta * k.rqq;
            *beta = (trace - r1 - e1).max(0.0) * inv_rest;
            (*r, *c, *e) = (r1, c1, e1);
        }
        let out_of_range = r[..m]
            .iter()
            .zip(&e[..m])
            .zip(&beta[..m])
            .any(|((&r, &e), &b)| !(1e-150..=1e150).contains(&(r + e + (n - 2.0) * b)));
        if out_of_range {
            for s in 0..m {
                let t = r[s] + e[s] + (n - 2.0) * beta[s];
                if !(1e-150..=1e150).contains(&t) {
                    log_scale[s] += t.ln();
                    let k = t.recip();
                    (r[s], c[s], e[s], beta[s]) = (r[s] * k, c[s] * k, e[s] * k, beta[s] * k);
                }
            }
        }
    }
    (0..=depth)
        .map(|s| {
            0.5 * (log_scale[s] + (r[s] + e[s] + (n - 2.0) * beta[s]).ln() - n.ln() - log_fwd[s])
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
