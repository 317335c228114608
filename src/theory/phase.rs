//! The explosion/collapse phase diagram of a uniform MLP over (sigma_w^2, sigma_b^2)
//! (theory/tradeoff.md): at the variance fixed point q*, chi_1, the per-layer GSC, the correlation fixed
//! point c*, its depth scale xi_c and the depth at which the (large-batch) sign diversity of the
//! pre-activations falls below a threshold.
//!
//! Fast path: at q* the pre-activation correlation map is C(c) = (sigma_b^2 + sigma_w^2 sum_k a_k^2 c^k)/q*
//! (Mehler), a_k the normalised Hermite coefficients of phi(sqrt(q*) z). They come from one 1-D
//! Gauss–Hermite rule per grid point, after which every C(c) is a polynomial: a 100 x 100 grid takes well
//! under a second, where a bivariate quadrature per evaluation would take hours. Linear, relu, leaky relu
//! and erf use their closed forms through the public moments API instead. The coefficients beyond
//! `HERMITE_TERMS` are reported as `hermite_tail` (the part of C(1) = 1 they carry), a bound on the
//! truncation error of 1 - C(c) for every c.
//!
//! Everything runs in delta = 1 - c, so nothing is lost as c -> 1.

use super::fixed_point::{fixed_point, FixedPoint};
use crate::nonlin::Nonlinearity;
use rayon::prelude::*;
use serde::Serialize;
use std::sync::OnceLock;

const HERMITE_NODES: usize = 220;
const HERMITE_TERMS: usize = 160;

/// Options of the phase computation.
#[derive(Clone, Copy, Debug)]
pub struct PhaseOptions {
    /// Sign-diversity threshold (in (0, 1/2)).
    pub threshold: f64,
    /// Correlation of the inputs (the first pre-activations then have c_1 = (sw2 q_in c0 + sb2)/q*).
    pub input_correlation: f64,
    /// Depth searched for the threshold crossing.
    pub max_depth: usize,
}

impl Default for PhaseOptions {
    fn default() -> Self {
        PhaseOptions {
            threshold: 0.1,
            input_correlation: 0.0,
            max_depth: 10_000,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct PhasePoint {
    pub sigma_w2: f64,
    pub sigma_b2: f64,
    /// "ordered", "critical", "chaotic", "ordered-scale" (q* = 0: collapse through scale, the c-map
    /// tends to the identity), "no-fixed-point", or "chaotic-unresolved" (chi_1 > 1 but the truncated
    /// Hermite series of a kinked phi cannot place c*; c* and xi_c are then absent).
    pub phase: String,
    pub q_star: Option<f64>,
    pub chi1: Option<f64>,
    /// sqrt((q* - sigma_b^2) E[phi'^2] / E[phi^2]) at q*, computed apart from chi_1 (the tradeoff theorem
    /// says GSC^2 = chi_1).
    pub gsc_layer: Option<f64>,
    /// Attracting fixed point of the pre-activation correlation map (1 in the ordered phase).
    pub c_star: Option<f64>,
    /// -1/ln C'(c*); None where infinite (edge of chaos).
    pub xi_c: Option<f64>,
    /// First layer l >= 1 whose large-batch sign diversity arccos(sqrt c_l)/pi is below the threshold;
    /// None if it never is (within max_depth).
    pub collapse_depth: Option<usize>,
    /// Part of C(1) carried by Hermite terms beyond the truncation (0 for closed forms).
    pub hermite_tail: f64,
}

/// Probabilists' Gauss–Hermite rule (weights sum to 1) by Golub–Welsch.
fn gauss_hermite() -> &'static (Vec<f64>, Vec<f64>) {
    static RULE: OnceLock<(Vec<f64>, Vec<f64>)> = OnceLock::new();
    RULE.get_or_init(|| {
        let n = HERMITE_NODES;
        let mut j = nalgebra::DMatrix::<f64>::zeros(n, n);
        for k in 1..n {
            let b = (k as f64).sqrt();
            j[(k, k - 1)] = b;
            j[(k - 1, k)] = b;
        }
        let eig = nalgebra::SymmetricEigen::new(j);
        let mut x: Vec<f64> = eig.eigenvalues.iter().copied().collect();
        x.sort_by(f64::total_cmp);
        // Symmetrise (the rule is exactly symmetric, the eigensolver only to rounding), then take the
        // weights from Christoffel–Darboux, 1/w_i = sum_{k<N} h_k(x_i)^2 with h_k = He_k/sqrt(k!): the
        // eigenvector route gives the extreme weights (~1e-180) only to ~1e-32 absolute, which the large
        // Hermite values there would turn into garbage.
        for i in 0..n / 2 {
            let xm = 0.5 * (x[n - 1 - i] - x[i]);
            (x[i], x[n - 1 - i]) = (-xm, xm);
        }
        if n % 2 == 1 {
            x[n / 2] = 0.0;
        }
        let mut w: Vec<f64> = x
            .iter()
            .map(|&xi| {
                let (mut h0, mut h1) = (1.0f64, xi);
                let mut s = 1.0 + xi * xi;
                for k in 1..n - 1 {
                    let h2 = (xi * h1 - (k as f64).sqrt() * h0) / ((k + 1) as f64).sqrt();
                    h0 = h1;
                    h1 = h2;
                    s += h1 * h1;
                }
                1.0 / s
            })
            .collect();
        let s: f64 = w.iter().sum();
        w.iter_mut().for_each(|v| *v /= s);
        // Nodes of weight < 1e-24 change no sum below: for phi of at most linear growth they carry
        // < 1e-20 of E[phi^2], and since sum_i w_i h_k(x_i)^2 = 1 they move each Hermite coefficient
        // by at most sqrt(w) < 1e-12. Dropping them makes the rule ~3x cheaper.
        let keep: Vec<usize> = (0..n).filter(|&i| w[i] >= 1e-24).collect();
        let x: Vec<f64> = keep.iter().map(|&i| x[i]).collect();
        let w: Vec<f64> = keep.iter().map(|&i| w[i]).collect();
        (x, w)
    })
}

/// The pre-activation correlation map at a fixed point, in delta = 1 - c.
enum CMap {
    /// b_k = sigma_w^2 a_k^2 / q*, k = 0..K, plus the tail mass.
    Hermite { b: Vec<f64>, tail: f64, bias: f64 },
    Closed {
        act: Nonlinearity,
        q: f64,
        sw2: f64,
        sb2: f64,
        second: f64,
    },
}

impl CMap {
    /// 1 - C(1 - delta).
    fn one_minus(&self, delta: f64) -> f64 {
        match self {
            CMap::Hermite { b, tail, .. } => {
                // 1 - (1-delta)^k accumulated as a sum of positive terms.
                let (mut p, mut e, mut s) = (1.0, 0.0, 0.0);
                for &bk in b.iter().skip(1) {
                    e += delta * p;
                    p *= 1.0 - delta;
                    s += bk * e;
                }
                e += delta * p;
                (s + tail * e).clamp(0.0, 1.0)
            }
            CMap::Closed {
                act,
                q,
                sw2,
                sb2,
                second,
            } => {
                let (cross, _) = act.cross_moments(*q, *q, 1.0 - delta);
                let _ = sb2;
                (sw2 * (second - cross) / q).clamp(0.0, 1.0)
            }
        }
    }

    /// C'(1 - delta).
    fn slope(&self, delta: f64) -> f64 {
        match self {
            CMap::Hermite { b, tail, .. } => {
                let c = 1.0 - delta;
                let (mut p, mut s) = (1.0, 0.0);
                for (k, &bk) in b.iter().enumerate().skip(1) {
                    s += k as f64 * bk * p;
                    p *= c;
                }
                s + tail * (b.len() as f64) * p
            }
            CMap::Closed { act, q, sw2, .. } => sw2 * act.cross_moments(*q, *q, 1.0 - delta).1,
        }
    }

    fn tail(&self) -> f64 {
        match self {
            CMap::Hermite { tail, bias, .. } => {
                let _ = bias;
                *tail
            }
            CMap::Closed { .. } => 0.0,
        }
    }
}

fn hermite_map(act: Nonlinearity, q: f64, sw2: f64, sb2: f64, second: f64) -> CMap {
    let (x, w) = gauss_hermite();
    let sq = q.sqrt();
    let mut a = vec![0.0; HERMITE_TERMS + 1];
    // sqrt(k) and 1/sqrt(k+1) of the recurrence, hoisted: they would dominate the cost otherwise.
    let rk: Vec<(f64, f64)> = (0..HERMITE_TERMS)
        .map(|k| ((k as f64).sqrt(), 1.0 / ((k + 1) as f64).sqrt()))
        .collect();
    for (&xi, &wi) in x.iter().zip(w) {
        let f = wi * act.phi(sq * xi);
        // Normalised He_k(x)/sqrt(k!) by its three-term recurrence.
        let (mut h0, mut h1) = (1.0, xi);
        a[0] += f * h0;
        a[1] += f * h1;
        for k in 1..HERMITE_TERMS {
            let (sk, inv) = rk[k];
            let h2 = (xi * h1 - sk * h0) * inv;
            h0 = h1;
            h1 = h2;
            a[k + 1] += f * h1;
        }
    }
    let mut b: Vec<f64> = a.iter().map(|ak| sw2 * ak * ak / q).collect();
    // Trailing coefficients below 1e-20 only cost time in every later evaluation; they go to the tail.
    while b.len() > 2 && b[b.len() - 1] < 1e-20 {
        b.pop();
    }
    let total = sw2 * second / q;
    let tail = (total - b.iter().sum::<f64>()).max(0.0);
    CMap::Hermite {
        b,
        tail,
        bias: sb2 / q,
    }
}

/// One Gauss–Hermite pass at variance q: (E[phi^2], E[phi'^2], d E[phi^2]/dq = E[z phi phi']/sqrt(q)),
/// phi and phi' evaluated once per node. For analytic phi, ~1e-12 relative at the q of the phase diagram.
fn gh_pass(act: Nonlinearity, q: f64) -> (f64, f64, f64) {
    let (x, w) = gauss_hermite();
    let sq = q.sqrt();
    let (mut m2, mut d2, mut ds) = (0.0, 0.0, 0.0);
    for (&xi, &wi) in x.iter().zip(w) {
        let (p, d) = (act.phi(sq * xi), act.dphi(sq * xi));
        m2 += wi * p * p;
        d2 += wi * d * d;
        ds += wi * xi * p * d;
    }
    (m2, d2, ds / sq)
}

fn gh_moments(act: Nonlinearity, q: f64) -> crate::nonlin::moments::Moments {
    let (second, dphi2, _) = gh_pass(act, q);
    crate::nonlin::moments::Moments {
        mean: f64::NAN,
        second,
        dphi2,
    }
}

/// The attracting q* > 0 by iteration then Newton on the Gauss–Hermite moments; None when that does
/// not settle on a clearly attracting root (q* -> 0, slow critical decay), where the caller falls back
/// to the general solver.
fn gh_fixed_point(act: Nonlinearity, sw2: f64, sb2: f64) -> Option<f64> {
    let mut q = 1.0;
    for _ in 0..3 {
        q = sw2 * gh_pass(act, q).0 + sb2;
    }
    for _ in 0..40 {
        if !(q.is_finite() && q > 1e-6 && q < 1e6) {
            return None;
        }
        let (m2, _, ds) = gh_pass(act, q);
        let (f, d) = (sw2 * m2 + sb2 - q, sw2 * ds - 1.0);
        if d >= 0.0 {
            // Not yet where the map contracts: one more plain iteration.
            q += f;
            continue;
        }
        let step = f / d;
        if f.abs() <= 1e-13 * q {
            return (d < -1e-6).then_some(q);
        }
        let next = q - step;
        if !(next > 0.0 && next.is_finite()) {
            return None;
        }
        q = next;
    }
    None
}

fn has_closed_kernel(act: Nonlinearity) -> bool {
    matches!(
        act,
        Nonlinearity::Linear
            | Nonlinearity::Relu
            | Nonlinearity::LeakyRelu { .. }
            | Nonlinearity::Erf
    )
}

/// One point of the phase diagram.
pub fn phase_point(act: Nonlinearity, sw2: f64, sb2: f64, opts: &PhaseOptions) -> PhasePoint {
    let mut out = PhasePoint {
        sigma_w2: sw2,
        sigma_b2: sb2,
        phase: "no-fixed-point".into(),
        q_star: None,
        chi1: None,
        gsc_layer: None,
        c_star: None,
        xi_c: None,
        collapse_depth: None,
        hermite_tail: 0.0,
    };
    let smooth = act.kinks().is_empty() && !has_closed_kernel(act);
    let q = match smooth.then(|| gh_fixed_point(act, sw2, sb2)).flatten() {
        Some(q) => q,
        None => match fixed_point(act, sw2, sb2) {
            FixedPoint::Point { q } => q,
            FixedPoint::EveryQ => 1.0,
            FixedPoint::None { .. } => return out,
        },
    };
    out.q_star = Some(q);
    if q == 0.0 {
        let (ap, am) = act.slopes_at_zero();
        out.chi1 = Some(sw2 * (ap * ap + am * am) / 2.0);
        out.gsc_layer = Some(1.0);
        out.phase = "ordered-scale".into();
        return out;
    }
    let m = if smooth {
        gh_moments(act, q)
    } else {
        act.moments(q)
    };
    let chi1 = sw2 * m.dphi2;
    out.chi1 = Some(chi1);
    out.gsc_layer = Some(((q - sb2).max(0.0) * m.dphi2 / m.second).sqrt());
    let map = if has_closed_kernel(act) {
        CMap::Closed {
            act,
            q,
            sw2,
            sb2,
            second: m.second,
        }
    } else {
        hermite_map(act, q, sw2, sb2, m.second)
    };
    out.hermite_tail = map.tail();
    const EDGE: f64 = 1e-12;
    // delta* = 0 in the ordered phase; in the chaotic phase the root of g(d) = 1 - C(1-d) - d in (0, 1]:
    // g is concave in d (C convex), g(0) = 0, g'(0) = chi_1 - 1 > 0, so bisection on its sign is safe.
    let delta_star = if chi1 > 1.0 + EDGE {
        out.phase = "chaotic".into();
        let g = |d: f64| map.one_minus(d) - d;
        if g(1.0) >= 0.0 {
            1.0
        } else {
            let (mut lo, mut hi) = (0.0f64, 1.0f64);
            // Start lo at a point where g > 0 (g'(0) > 0 but may be tiny near the edge).
            let mut d = 0.5;
            while d > 1e-300 && g(d) <= 0.0 {
                hi = d;
                d *= 0.5;
            }
            if d <= 1e-300 {
                // The (truncated) map never rises above the diagonal although chi_1 > 1: its Hermite
                // series has lost C'(1) (a kinked phi whose coefficients decay too slowly). Say so
                // rather than report c* = 1 in the chaotic phase.
                out.phase = "chaotic-unresolved".into();
                return out;
            }
            lo = lo.max(d);
            for _ in 0..80 {
                let mid = 0.5 * (lo + hi);
                if hi - lo <= 1e-15 * hi {
                    break;
                }
                if g(mid) > 0.0 {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            0.5 * (lo + hi)
        }
    } else {
        out.phase = if chi1 < 1.0 - EDGE {
            "ordered".into()
        } else {
            "critical".into()
        };
        0.0
    };
    out.c_star = Some(1.0 - delta_star);
    let slope = if delta_star == 0.0 {
        chi1
    } else {
        map.slope(delta_star)
    };
    out.xi_c = (slope > 0.0 && slope < 1.0).then(|| -1.0 / slope.ln());
    // Threshold crossing: sdiv = arccos(sqrt c)/pi < t  <=>  delta < sin^2(pi t).
    let delta_t = (std::f64::consts::PI * opts.threshold).sin().powi(2);
    if delta_star >= delta_t {
        return out;
    }
    let c0 = opts.input_correlation;
    let mut delta = (q - sb2) * (1.0 - c0) / q;
    for l in 1..=opts.max_depth {
        if delta < delta_t {
            out.collapse_depth = Some(l);
            break;
        }
        // In the linear regime around delta*, jump: delta_l - delta* ~ (delta_k - delta*) slope^(l-k).
        let gap = delta - delta_star;
        if slope > 0.0 && slope < 1.0 && gap < 1e-3 * delta_t.max(delta_star) && gap > 0.0 {
            let need = ((delta_t - delta_star) / gap).ln() / slope.ln();
            let extra = need.max(0.0).ceil() as usize;
            if l + extra <= opts.max_depth {
                out.collapse_depth = Some(l + extra);
            }
            break;
        }
        delta = map.one_minus(delta);
    }
    out
}

/// The grid sw2s x sb2s (row-major in sigma_b^2 within each sigma_w^2), computed in parallel.
pub fn phase_grid(
    act: Nonlinearity,
    sw2s: &[f64],
    sb2s: &[f64],
    opts: &PhaseOptions,
) -> Vec<PhasePoint> {
    let pts: Vec<(f64, f64)> = sw2s
        .iter()
        .flat_map(|&w| sb2s.iter().map(move |&b| (w, b)))
        .collect();
    pts.par_iter()
        .map(|&(w, b)| phase_point(act, w, b, opts))
        .collect()
}
