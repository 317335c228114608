//! Dense op h = W x + b at infinite width: q_h = sigma_w^2 q_x + sigma_b^2, centred, and a qm^2 gain of
//! ||W||_F^2 / n_in = sigma_w^2 n_out / n_in (theory/mean-field.md).

use super::{log_add_exp, MfOptions, MfState, MfStep};
use crate::arch::Dense;
use crate::error::Result;

pub(super) fn map(d: &Dense, s: &MfState, _opts: &MfOptions) -> Result<MfStep> {
    let lw = d.sigma_w2.ln();
    let lb = if d.sigma_b2 > 0.0 {
        d.sigma_b2.ln()
    } else {
        f64::NEG_INFINITY
    };
    let log_q = log_add_exp(lw + s.log_q, lb);
    // Covariance of two inputs' pre-activations: sigma_w^2 q c + sigma_b^2, over the same q_h.
    let c = if d.sigma_b2 > 0.0 {
        let wq = (lw + s.log_q - log_q).exp();
        let b = (lb - log_q).exp();
        (wq * s.c + b).clamp(-1.0, 1.0)
    } else {
        s.c
    };
    Ok(MfStep {
        state: MfState {
            width: d.width,
            log_q,
            mean_ratio: 0.0,
            c,
            gaussian: true,
            preact_log_q: s.preact_log_q,
        },
        log_gain2: lw + (d.width as f64).ln() - (s.width as f64).ln(),
    })
}
