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
//! one-step moments from Gaussian expectations (Stein's lemma for the coherent parts).
//!
//! This is gradscale's own derivation, not a result of the seed paper; its measured error is in the note.

use crate::arch::{Network, Op, Skip};
use crate::nonlin::Nonlinearity;
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

/// Finite-width and infinite-width ln GSC(L, l) of a relu-ended ResNet, l = 0..=L (l counts blocks from the
/// input; entry L is 0), for Gaussian inputs (mean coordinate 0).
#[derive(Clone, Debug, PartialEq)]
pub struct RadialLaw {
    pub width: usize,
    /// The chain's mean ln GSC(L, l) at width n.
    pub finite: Vec<f64>,
    /// The same chain at n = infinity (equals the mean-field closed form).
    pub infinite: Vec<f64>,
    /// -1/2 ln n: no positively homogeneous network of input width n has a smaller ln GSC (the input
    /// direction alone contributes ||f_L||^2 / ||f_l||^2 to tr(J^T J)).
    pub lower_bound: f64,
}

/// The radial-bulk chain for `net`, or `None` when the network is not a relu-ended ResNet.
pub fn predict_radial(net: &Network) -> Option<RadialLaw> {
    let blocks = relu_ended_blocks(net)?;
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
        finite,
        infinite,
        lower_bound: -0.5 * n.ln(),
    })
}
