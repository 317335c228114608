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
    /// Any other phi: the same fixed-point rate (infinite width, gradient independence, BSB1 point),
    /// evaluated by quadrature over the batch-norm output sphere (`theory::sphere::bsb1_rate`, ~1e-10).
    Bsb1Quadrature,
}

/// The batch-norm gradient rate lambda: the squared gradient norm grows by lambda per
/// dense -> batch norm -> phi layer at the batch's BSB1 fixed point (theory/batch-norm.md).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct BnRate {
    pub lambda: f64,
    pub kind: BnRateKind,
}

/// Arc-cosine kernel of ReLU normalised to E[relu^2] (Cho & Saul 2009, "Kernel methods for deep learning"; theory/collapse.md): J(c) and J'(c).
pub fn arccos_kernel(c: f64) -> (f64, f64) {
    let c = c.clamp(-1.0, 1.0);
    let t = c.acos();
    (((1.0 - c * c).sqrt() + (PI - t) * c) / PI, (PI - t) / PI)
}

/// lambda for phi after batch norm over `batch` inputs, B >= 4 (the exact rates diverge at B = 3).
/// ReLU and linear: Yang et al.'s formulas. Others: the same fixed-point rate by quadrature on the sphere
/// (theory/batch-norm.md, "The BSB1 rate for any phi"), which reproduces both formulas.
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
            let lambda = super::sphere::bsb1_rate(act, batch);
            if !(lambda.is_finite() && lambda > 0.0) {
                return Err(Error::Unsupported(format!(
                    "batch norm with {act}: Var[phi(u)] = 0 on the batch-norm sphere, no rate"
                )));
            }
            Ok(BnRate {
                lambda,
                kind: BnRateKind::Bsb1Quadrature,
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

/// (E[phi(y)], E[phi(y)^2], E[phi(y_1) phi(y_2)]) for a batch-norm output y of mean square q: per unit
/// the output is centred over the batch with mean square q, i.e. uniform on a sphere in the
/// (B-1)-dimensional centred subspace (theory/batch-norm.md; quadrature in `theory::sphere`). Cached per
/// (phi, B, q): at the fixed point every layer asks for the same q.
fn bn_output_moments(act: Nonlinearity, q: f64, batch: usize) -> (f64, f64, f64) {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    type Key = (String, usize, u64);
    type Cache = Mutex<HashMap<Key, (f64, f64, f64)>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let key = (format!("{act:?}"), batch, q.to_bits());
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    if let Some(v) = cache.lock().ok().and_then(|c| c.get(&key).copied()) {
        return v;
    }
    let kinks = act.kinks();
    let [m1, m2] = super::sphere::expect1(
        batch,
        q,
        |y| {
            let f = act.phi(y);
            [f, f * f]
        },
        kinks,
    );
    let [cross] = super::sphere::expect2(batch, q, |a, b| [act.phi(a) * act.phi(b)], kinks);
    if let Ok(mut c) = cache.lock() {
        c.insert(key, (m1, m2, cross));
    }
    (m1, m2, cross)
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
    let qy = log_qy.exp();
    // The BN output is uniform on a sphere (theory/batch-norm.md), so phi's moments and the batch
    // correlation c* of its output come from the sphere's exact marginals, not from a Gaussian law.
    let (mean, second, cross) = bn_output_moments(act, qy, batch);
    let c_star = (cross / second).clamp(-1.0, 1.0);
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
