//! Fixed points of the length map q' = sigma_w^2 E[phi(sqrt(q) z)^2] + sigma_b^2 and the quantities defined
//! there: chi_1, the depth scales xi_q and xi_grad (theory/mean-field.md).

use super::act::log_moments;
use crate::arch::{Init, Network, Op};
use crate::error::Result;
use crate::nonlin::Nonlinearity;
use serde::Serialize;

/// Where the length map goes.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum FixedPoint {
    /// An attracting fixed point q* >= 0 (q* = 0 for e.g. tanh with sigma_w^2 <= 1, sigma_b = 0).
    Point { q: f64 },
    /// Every q is fixed (positively homogeneous phi exactly at criticality, no bias).
    EveryQ,
    /// No fixed point: `reason` says where q_l goes instead.
    None { reason: String },
}

/// The fixed point of a uniform MLP and what it implies.
#[derive(Clone, Debug, Serialize)]
pub struct MlpFixedPoint {
    pub fixed_point: FixedPoint,
    /// sigma_w^2 E[phi'^2] at q* (for `EveryQ`: the q-independent value); equals the per-layer GSC^2 there.
    pub chi1: Option<f64>,
    /// dq_{l+1}/dq_l at q*.
    pub length_slope: Option<f64>,
    /// -1/ln(length_slope); None when the slope is >= 1 or undefined.
    pub xi_q: Option<f64>,
    /// -1/ln chi_1: positive in the ordered phase (gradients vanish over xi_grad layers), negative in the
    /// chaotic phase (they grow over |xi_grad| layers), None at chi_1 = 1.
    pub xi_grad: Option<f64>,
}

fn length_map(act: Nonlinearity, sw2: f64, sb2: f64, q: f64) -> f64 {
    let (ls, _, _) = log_moments(act, q.ln());
    sw2 * ls.exp() + sb2
}

fn length_slope(act: Nonlinearity, sw2: f64, q: f64) -> f64 {
    if q == 0.0 {
        let (ap, am) = act.slopes_at_zero();
        return if act.phi(0.0) == 0.0 {
            sw2 * (ap * ap + am * am) / 2.0
        } else {
            // d/dq E[phi^2] at 0 = (phi^2)''(0)/2 = phi'(0)^2 + phi(0) phi''(0) (Stein).
            sw2 * (act.dphi(0.0).powi(2) + act.phi(0.0) * act.d2phi(0.0))
        };
    }
    sw2 * act.d_second_dq(q)
}

/// Solves q = sigma_w^2 E[phi^2](q) + sigma_b^2 for the attracting root.
pub fn fixed_point(act: Nonlinearity, sw2: f64, sb2: f64) -> FixedPoint {
    if act.is_positively_homogeneous() {
        let (ap, am) = act.slopes_at_zero();
        let gain = sw2 * (ap * ap + am * am) / 2.0;
        let critical = (gain - 1.0).abs() <= 1e-12;
        return if critical && sb2 == 0.0 {
            FixedPoint::EveryQ
        } else if critical {
            FixedPoint::None {
                reason: "q_l grows linearly (critical weights with a bias)".into(),
            }
        } else if gain > 1.0 {
            FixedPoint::None {
                reason: format!("q_l grows geometrically, by {gain} per layer"),
            }
        } else if sb2 > 0.0 {
            FixedPoint::Point {
                q: sb2 / (1.0 - gain),
            }
        } else {
            FixedPoint::None {
                reason: format!("q_l shrinks to 0 geometrically, by {gain} per layer"),
            }
        };
    }
    let g = |q: f64| length_map(act, sw2, sb2, q) - q;
    // Newton from the point the iteration reaches after a few steps is enough almost everywhere...
    let mut q = 1.0;
    for _ in 0..30 {
        q = length_map(act, sw2, sb2, q);
        if !q.is_finite() {
            break;
        }
    }
    if q.is_finite() && q > 1e-12 {
        for _ in 0..50 {
            let d = length_slope(act, sw2, q) - 1.0;
            if d == 0.0 {
                break;
            }
            let step = g(q) / d;
            let next = q - step;
            if next <= 0.0 || !next.is_finite() {
                break;
            }
            q = next;
            if step.abs() <= 1e-15 * q {
                break;
            }
        }
        // A root with slope near 1 is the slow critical approach to q* = 0 (e.g. tanh at sigma_w^2 = 1),
        // where Newton crawls; the scan below decides those.
        if g(q).abs() <= 1e-12 * q && length_slope(act, sw2, q) < 1.0 - 1e-6 {
            return FixedPoint::Point { q };
        }
    }
    // ...and where it is not (slow critical decay, several roots), scan a log grid for sign changes.
    let grid: Vec<f64> = (0..=200)
        .map(|i| 10f64.powf(-12.0 + 0.12 * i as f64))
        .collect();
    let vals: Vec<f64> = grid.iter().map(|&q| g(q)).collect();
    for i in 0..grid.len() - 1 {
        if vals[i] > 0.0 && vals[i + 1] <= 0.0 {
            // G goes from + to -: an attracting root (slope of F below 1) inside; bisect in log q.
            let (mut lo, mut hi) = (grid[i].ln(), grid[i + 1].ln());
            for _ in 0..200 {
                let mid = 0.5 * (lo + hi);
                if g(mid.exp()) > 0.0 {
                    lo = mid;
                } else {
                    hi = mid;
                }
                if hi - lo < 1e-15 {
                    break;
                }
            }
            return FixedPoint::Point {
                q: (0.5 * (lo + hi)).exp(),
            };
        }
    }
    if sb2 == 0.0 && act.phi(0.0) == 0.0 && vals[0] <= 0.0 {
        return FixedPoint::Point { q: 0.0 };
    }
    if vals.last().is_some_and(|&v| v > 0.0) {
        return FixedPoint::None {
            reason: "q_l grows without bound".into(),
        };
    }
    FixedPoint::None {
        reason: "no attracting fixed point found in q in [1e-12, 1e12]".into(),
    }
}

/// The fixed point and depth scales of a uniform MLP.
pub fn analyse(act: Nonlinearity, sw2: f64, sb2: f64) -> MlpFixedPoint {
    let fp = fixed_point(act, sw2, sb2);
    let at = |q: f64| {
        let chi1 = if q == 0.0 {
            let (ap, am) = act.slopes_at_zero();
            sw2 * (ap * ap + am * am) / 2.0
        } else {
            sw2 * log_moments(act, q.ln()).1.exp()
        };
        (chi1, length_slope(act, sw2, q))
    };
    let (chi1, slope) = match &fp {
        FixedPoint::Point { q } => {
            let (c, s) = at(*q);
            (Some(c), Some(s))
        }
        FixedPoint::EveryQ => (Some(at(1.0).0), Some(1.0)),
        FixedPoint::None { .. } => (None, None),
    };
    let scale = |x: f64| {
        let l = x.ln();
        (l != 0.0 && l.is_finite()).then(|| -1.0 / l)
    };
    MlpFixedPoint {
        fixed_point: fp,
        chi1,
        length_slope: slope,
        xi_q: slope.filter(|&s| s > 0.0 && s < 1.0).and_then(scale),
        xi_grad: chi1.filter(|&c| c > 0.0).and_then(scale),
    }
}

/// The fixed-point analysis when `net` is a uniform Gaussian MLP; None for any other architecture.
pub fn for_network(net: &Network) -> Result<Option<MlpFixedPoint>> {
    let mut spec = None;
    for layer in &net.layers {
        let this = match layer.ops.as_slice() {
            // Mean field sees only the weight variance: uniform weights have the Gaussian's fixed point.
            [Op::Dense(d), Op::Act(a)] if matches!(d.init, Init::Gaussian | Init::Uniform) => {
                (*a, d.sigma_w2.to_bits(), d.sigma_b2.to_bits())
            }
            _ => return Ok(None),
        };
        match spec {
            None => spec = Some(this),
            Some(s) if s != this => return Ok(None),
            _ => {}
        }
    }
    Ok(spec.map(|(a, w, b)| analyse(a, f64::from_bits(w), f64::from_bits(b))))
}
