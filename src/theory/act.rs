//! Nonlinearity op at infinite width: f = phi(h), h ~ N(0, q). E[f^2], E[f], the qm^2 gain E[phi'(h)^2],
//! and the correlation map through the bivariate kernel (theory/mean-field.md, theory/collapse.md).
//!
//! q is carried as ln q; where q under- or overflows the moments come from the limiting piecewise-linear
//! map (slopes at 0 or at infinity), which is exact to O(q) resp. O(q^-1/2) relative.

use super::{MfOptions, MfState, MfStep};
use crate::error::{Error, Result};
use crate::nonlin::Nonlinearity;

/// q below this is treated by the small-q limit, above by the large-q limit.
// Below Q_TINY the small-q limits (phi(0)^2, or the slopes at 0) are used: their relative error is O(q),
// < 1e-29 here, far below the quadrature's; the moment table (table.rs) covers the range just above it.
const Q_TINY: f64 = 1e-30;
const Q_HUGE: f64 = 1e200;

/// (ln E[phi^2], ln E[phi'^2], E[phi] / sqrt(E[phi^2])) at z ~ N(0, e^log_q).
pub fn log_moments(act: Nonlinearity, log_q: f64) -> (f64, f64, f64) {
    let q = log_q.exp();
    let homog = act.is_positively_homogeneous();
    let piecewise_linear = |(ap, am): (f64, f64)| {
        let m2 = (ap * ap + am * am) / 2.0;
        let mean = (ap - am) / (2.0 * std::f64::consts::PI).sqrt();
        (log_q + m2.ln(), m2.ln(), mean / m2.sqrt())
    };
    if homog {
        return piecewise_linear(act.slopes_at_zero());
    }
    if q < Q_TINY {
        let p0 = act.phi(0.0);
        if p0 != 0.0 {
            let d0 = act.dphi(0.0);
            return ((p0 * p0).ln(), (d0 * d0).ln(), p0.signum());
        }
        return piecewise_linear(act.slopes_at_zero());
    }
    if q > Q_HUGE {
        if let Some((hi, lo, int_d2)) = act.saturation() {
            let m2 = (hi * hi + lo * lo) / 2.0;
            let mean = (hi + lo) / 2.0;
            let log_d2 = int_d2.ln() - 0.5 * ((2.0 * std::f64::consts::PI).ln() + log_q);
            return (m2.ln(), log_d2, mean / m2.sqrt());
        }
        return piecewise_linear(act.slopes_at_infinity());
    }
    if let Some(v) = super::table::lookup(act, log_q) {
        return v;
    }
    let m = act.moments(q);
    (m.second.ln(), m.dphi2.ln(), m.mean / m.second.sqrt())
}

pub(super) fn map(act: Nonlinearity, s: &MfState, opts: &MfOptions) -> Result<MfStep> {
    if !s.gaussian {
        return Err(Error::Architecture(format!(
            "{act} must follow a dense or norm op"
        )));
    }
    let (log_second, log_d2, mean_ratio) = log_moments(act, s.log_q);
    let c = if opts.correlation {
        correlation_map(act, s.log_q, s.c, log_second)
    } else {
        s.c
    };
    Ok(MfStep {
        state: MfState {
            width: s.width,
            log_q: log_second,
            mean_ratio,
            c,
            gaussian: false,
            preact_log_q: Some(s.log_q),
        },
        log_gain2: log_d2,
    })
}

/// c_out = E[phi(u1) phi(u2)] / E[phi^2] for pre-activations of variance q and correlation c.
fn correlation_map(act: Nonlinearity, log_q: f64, c: f64, log_second: f64) -> f64 {
    if c >= 1.0 {
        return 1.0;
    }
    // Positively homogeneous maps are scale-free: evaluate at q = 1.
    let log_q_eval = if act.is_positively_homogeneous() {
        0.0
    } else {
        log_q.clamp(Q_TINY.ln(), Q_HUGE.ln())
    };
    let q = log_q_eval.exp();
    let (cross, _) = act.cross_moments(q, q, c);
    let second = if log_q_eval == log_q {
        log_second.exp()
    } else {
        // The same q every layer once the map has reached the clamp: remembered (nonlin/moments.rs).
        act.kernel(q).0.second
    };
    (cross / second).clamp(-1.0, 1.0)
}
