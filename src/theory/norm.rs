//! Normalisation ops at infinite width (theory/layer-norm.md, theory/batch-norm.md).

use super::{MfOptions, MfState, MfStep};
use crate::error::{Error, Result};

/// Layer norm: each input's vector is centred and scaled across units. At infinite width the output has
/// mean square var/(var + eps) ~ 1 and is a centred Gaussian if the input was; its Jacobian is 1/std times
/// a projection removing two directions, so the qm^2 gain is 1/(var + eps) (the (n-2)/n factor is a
/// finite-width effect, see theory/layer-norm.md).
pub(super) fn layer_norm(eps: f64, s: &MfState, _opts: &MfOptions) -> Result<MfStep> {
    let q = s.log_q.exp();
    let var = q * (1.0 - s.mean_ratio * s.mean_ratio).max(0.0);
    let denom = var + eps;
    if denom <= 0.0 || !denom.is_finite() {
        return Err(Error::Unsupported(
            "layer norm of a zero (or overflowing) signal is undefined".into(),
        ));
    }
    // Correlation of two inputs after centring each across units: the shared offset cancels.
    let m2 = s.mean_ratio * s.mean_ratio;
    let c = if m2 < 1.0 {
        ((s.c - m2) / (1.0 - m2)).clamp(-1.0, 1.0)
    } else {
        1.0
    };
    Ok(MfStep {
        state: MfState {
            width: s.width,
            log_q: (var / denom).ln(),
            mean_ratio: 0.0,
            c,
            gaussian: true,
            preact_log_q: s.preact_log_q,
        },
        log_gain2: -denom.ln(),
    })
}

pub(super) fn batch_norm(_eps: f64, _s: &MfState, _opts: &MfOptions) -> Result<MfStep> {
    Err(Error::Unsupported(
        "batch norm: closed form not implemented yet".into(),
    ))
}
