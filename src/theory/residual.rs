//! Residual block f = s(x) + alpha rho(x) at infinite width (theory/pythagorean.md).
//!
//! Lengths add up to the cross term 2 alpha E[s_i rho_i], which at infinite width is the product of the
//! two paths' mean entries (nonzero when both carry a relu offset: the orthogonality assumption then fails
//! and the term is kept, not dropped). Jacobian qm^2 gains add: tr(J_s^T J_rho) vanishes at random
//! initialisation because the branch's first weight matrix is centred and independent of the skip.

use super::{log_add_exp, map_ops, MfOptions, MfState, MfStep};
use crate::arch::{Residual, Skip};
use crate::error::Result;

pub(super) fn map(r: &Residual, s: &MfState, opts: &MfOptions) -> Result<MfStep> {
    let branch = map_ops(&r.branch, s, opts)?;
    let b = branch.state;
    let (skip_mean_ratio, skip_c) = match r.skip {
        Skip::Identity => (s.mean_ratio, s.c),
        // A Haar rotation spreads the offset over all directions: entries become centred, with the
        // offset's share of the length moving into the fluctuations; pairwise products are preserved.
        Skip::Orthogonal => (0.0, s.c),
    };
    let la2 = 2.0 * r.alpha.abs().ln();
    let log_rho = b.log_q + la2;
    // Cross term in units of sqrt(q_s q_rho).
    let cross = 2.0 * r.alpha.signum() * skip_mean_ratio * b.mean_ratio;
    let log_geo = 0.5 * (s.log_q + log_rho);
    let sum = log_add_exp(s.log_q, log_rho);
    let log_q = if cross == 0.0 {
        sum
    } else {
        let v = (sum - log_geo).exp() + cross;
        log_geo + v.max(f64::MIN_POSITIVE).ln()
    };
    let w_s = (s.log_q - log_q).exp();
    let w_r = (log_rho - log_q).exp();
    let w_x = (log_geo - log_q).exp();
    let mean_ratio = w_s.sqrt() * skip_mean_ratio + r.alpha.signum() * w_r.sqrt() * b.mean_ratio;
    let c = (w_s * skip_c + w_r * b.c + w_x * cross).clamp(-1.0, 1.0);
    Ok(MfStep {
        state: MfState {
            width: s.width,
            log_q,
            mean_ratio,
            c,
            gaussian: false,
            preact_log_q: b.preact_log_q,
        },
        // Skip gain is 1 (identity or orthogonal), branch gain alpha^2 G_rho.
        log_gain2: log_add_exp(0.0, la2 + branch.log_gain2),
    })
}
