//! Normalisation ops at infinite width (theory/layer-norm.md, theory/batch-norm.md).

use super::{MfOptions, MfState, MfStep};
use crate::error::{Error, Result};
use crate::nonlin::Nonlinearity;
use std::f64::consts::PI;

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

/// Where a batch-norm rate comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BnRateKind {
    /// Yang et al. 2019, ReLU at the BSB1 fixed point (exact under gradient independence).
    YangRelu,
    /// Linear network, (B-2)/(B-3) (exact under the same assumptions).
    Linear,
    /// (B-2)/(B-3) E[phi'(z)^2] / Var[phi(z)] at z ~ N(0, 1): the large-B limit with batch statistics
    /// frozen, times the linear network's exact finite-B factor (theory/batch-norm.md). A heuristic.
    LargeBHeuristic,
}

/// The batch-norm gradient rate lambda: the squared gradient norm grows by lambda per
/// dense -> batch norm -> phi layer at the batch's BSB1 fixed point (theory/batch-norm.md).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct BnRate {
    pub lambda: f64,
    pub kind: BnRateKind,
}

/// Arc-cosine kernel of ReLU normalised to E[relu^2] (REFERENCE §4.1): J(c) and J'(c).
pub fn arccos_kernel(c: f64) -> (f64, f64) {
    let c = c.clamp(-1.0, 1.0);
    let t = c.acos();
    (((1.0 - c * c).sqrt() + (PI - t) * c) / PI, (PI - t) / PI)
}

/// lambda for phi after batch norm over `batch` inputs, B >= 4 (the exact rates diverge at B = 3).
/// ReLU and linear: Yang et al.'s formulas. Others: the heuristic (B-2)/(B-3) E[phi'^2]/Var[phi].
pub fn batch_norm_rate(act: Nonlinearity, batch: usize) -> Result<BnRate> {
    if batch < 2 {
        return Err(Error::param(
            "--batch",
            batch,
            "an integer >= 2 for a network with batch norm",
        ));
    }
    let b = batch as f64;
    match act {
        _ if batch < 4 => Err(Error::Unsupported(format!(
            "batch norm with {act}: the closed-form rate needs --batch >= 4 (it diverges at B = 3), got {batch}"
        ))),
        Nonlinearity::Relu => {
            let c0 = -1.0 / (b - 1.0);
            let (j, dj) = arccos_kernel(c0);
            Ok(BnRate {
                lambda: (b - 1.0 + dj) / ((b - 3.0) * (1.0 - j)) - 1.0 / (b - 3.0),
                kind: BnRateKind::YangRelu,
            })
        }
        Nonlinearity::Linear => Ok(BnRate {
            lambda: (b - 2.0) / (b - 3.0),
            kind: BnRateKind::Linear,
        }),
        _ => {
            let m = act.moments(1.0);
            let var = m.variance();
            if var <= 0.0 || var.is_nan() {
                return Err(Error::Unsupported(format!(
                    "batch norm with {act}: Var[phi(z)] = 0, no rate"
                )));
            }
            Ok(BnRate {
                lambda: (b - 2.0) / (b - 3.0) * m.dphi2 / var,
                kind: BnRateKind::LargeBHeuristic,
            })
        }
    }
}

fn batch_size(opts: &MfOptions) -> Result<usize> {
    if opts.batch < 2 {
        return Err(Error::param(
            "--batch",
            opts.batch,
            "an integer >= 2 for a network with batch norm",
        ));
    }
    Ok(opts.batch)
}

/// Expected biased batch variance of a unit whose entries have mean square q and pairwise correlation c
/// across the batch: q (1 - c) (B - 1) / B (the shared component is what centring removes).
fn batch_variance(s: &MfState, batch: usize) -> f64 {
    let b = batch as f64;
    s.log_q.exp() * (1.0 - s.c).max(0.0) * (b - 1.0) / b
}

fn check_denominator(denom: f64) -> Result<()> {
    if denom <= 0.0 || !denom.is_finite() {
        return Err(Error::Unsupported(
            "batch norm of a signal that is constant across the batch (or overflows) is undefined"
                .into(),
        ));
    }
    Ok(())
}

/// Batch norm on its own (followed by a dense op or ending a layer): frozen batch statistics, i.e. the
/// qm^2 gain 1/(batch variance + eps). This is the heuristic of theory/batch-norm.md, not Yang's theorem.
/// The output is centred across the batch, so two inputs' correlation becomes c0 = -1/(B-1).
pub(super) fn batch_norm(eps: f64, s: &MfState, opts: &MfOptions) -> Result<MfStep> {
    let batch = batch_size(opts)?;
    let var = batch_variance(s, batch);
    let denom = var + eps;
    check_denominator(denom)?;
    Ok(MfStep {
        state: MfState {
            width: s.width,
            log_q: (var / denom).ln(),
            mean_ratio: 0.0,
            c: -1.0 / (batch as f64 - 1.0),
            gaussian: true,
            preact_log_q: s.preact_log_q,
        },
        log_gain2: -denom.ln(),
    })
}

/// (E[phi(y)], E[phi(y)^2]) for a batch-norm output y of mean square q: per unit the output is centred over
/// the batch with mean square q, i.e. uniform on a sphere in the (B-1)-dimensional centred subspace, so
/// y = sqrt(q (B-1)) t with density of t proportional to (1 - t^2)^((B-4)/2) on (-1, 1) (theory/batch-norm.md).
/// Substituting t = sin(theta) gives the smooth weight cos(theta)^(B-3); a midpoint rule over +-12 standard
/// deviations (or the whole interval) with an even cell count puts a kink at 0 on a cell boundary.
fn bn_output_moments(act: Nonlinearity, q: f64, batch: usize) -> (f64, f64) {
    let b = batch as f64;
    let half = (12.0 / (b - 1.0).sqrt()).min(std::f64::consts::FRAC_PI_2);
    let cells = 4000;
    let h = 2.0 * half / cells as f64;
    let scale = (q * (b - 1.0)).sqrt();
    let (mut w_sum, mut m1, mut m2) = (0.0, 0.0, 0.0);
    for i in 0..cells {
        let th = -half + (i as f64 + 0.5) * h;
        let w = th.cos().powf(b - 3.0);
        let y = scale * th.sin();
        let f = act.phi(y);
        w_sum += w;
        m1 += w * f;
        m2 += w * f * f;
    }
    (m1 / w_sum, m2 / w_sum)
}

/// Batch norm followed by a nonlinearity, mapped as one unit because the rate lambda is a property of the
/// pair. The gain is lambda * Vbar / (batch variance + eps), with Vbar = the batch-centred mean square
/// of phi's output at the BSB1 point, E[phi^2] (1 - c*) (B - 1)/B: the next layer's batch norm divides
/// by it, so at the fixed point a whole dense -> BN -> phi layer multiplies the squared GSC by exactly
/// lambda, and off it (e.g. the first layer, fed uncorrelated inputs) the frozen-statistics part adapts.
pub(super) fn batch_norm_act(
    eps: f64,
    act: Nonlinearity,
    s: &MfState,
    opts: &MfOptions,
) -> Result<MfStep> {
    let batch = batch_size(opts)?;
    let rate = batch_norm_rate(act, batch)?;
    let var = batch_variance(s, batch);
    let denom = var + eps;
    check_denominator(denom)?;
    let log_qy = (var / denom).ln();
    let (log_second_gauss, _log_d2, _) = super::act::log_moments(act, log_qy);
    let c0 = -1.0 / (batch as f64 - 1.0);
    let qy = log_qy.exp();
    let (cross, _) = act.cross_moments(qy, qy, c0);
    // c* from the Gaussian law (a 2-D integral under the exact law is not worth it: c* only enters the
    // batch variance of the next layer, which cancels at the fixed point); the moments of phi itself from
    // the exact finite-B marginal of the BN output.
    let c_star = (cross / log_second_gauss.exp()).clamp(-1.0, 1.0);
    let (mean, second) = bn_output_moments(act, qy, batch);
    let log_second = second.ln();
    let mean_ratio = if second > 0.0 {
        mean / second.sqrt()
    } else {
        0.0
    };
    let b = batch as f64;
    let vbar = second * (1.0 - c_star) * (b - 1.0) / b;
    Ok(MfStep {
        state: MfState {
            width: s.width,
            log_q: log_second,
            mean_ratio,
            c: c_star,
            gaussian: false,
            preact_log_q: Some(log_qy),
        },
        log_gain2: rate.lambda.ln() + vbar.ln() - denom.ln(),
    })
}
