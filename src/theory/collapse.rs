//! Domain collapse at infinite width: per layer, the pre-activation variance q and correlation c of the
//! layer's last nonlinearity, and from them the expected collapse metrics over a batch of P inputs
//! (theory/collapse.md): the std of a unit's pre-activation across inputs and its sign diversity
//! min(P_j, N_j)/P, both at finite P.

use super::{input_state, MeanField, MfOptions};
use crate::arch::{Network, Op};
use crate::error::{Error, Result};
use crate::gauss;
use crate::nonlin::norm_cdf;
use serde::Serialize;

/// What mean field predicts for the collapse metrics of one layer.
#[derive(Clone, Debug, Serialize)]
pub struct CollapseLayer {
    pub index: usize,
    /// Pairwise correlation of the layer outputs, E[f(x1) f(x2)] / E[f^2] (uncentred).
    pub c: f64,
    /// Pre-activation variance q of the layer's last top-level nonlinearity (None: the layer has none).
    pub preact_q: Option<f64>,
    /// Pre-activation correlation of two inputs at that nonlinearity.
    pub preact_c: Option<f64>,
    /// E[s_j], s_j the across-batch std (1/P convention) of a unit's pre-activation.
    pub preact_std: Option<f64>,
    /// E[sdiv_j] at batch size P.
    pub sign_diversity: Option<f64>,
    /// The P -> infinity value arccos(sqrt c)/pi.
    pub sign_diversity_large_batch: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct CollapsePrediction {
    pub batch: usize,
    pub layers: Vec<CollapseLayer>,
}

/// E[s] for P s^2 / (q (1 - c)) ~ chi^2_{P-1}: sqrt(2 q (1-c) / P) Gamma(P/2) / Gamma((P-1)/2).
pub fn expected_std(q: f64, c: f64, p: usize) -> f64 {
    expected_std_from_log_q(q.ln(), c, p)
}

/// `expected_std` from ln q, assembled in log space so that it stays finite wherever the std itself is
/// (q can overflow f64 where sqrt q does not).
pub fn expected_std_from_log_q(log_q: f64, c: f64, p: usize) -> f64 {
    if p < 2 {
        return 0.0;
    }
    let pf = p as f64;
    let lg = statrs::function::gamma::ln_gamma(pf / 2.0)
        - statrs::function::gamma::ln_gamma((pf - 1.0) / 2.0);
    (0.5 * (2.0f64.ln() + log_q + (1.0 - c.clamp(0.0, 1.0)).ln() - pf.ln()) + lg).exp()
}

/// Mean over pairs a != b of x_a . x_b / (|x_a| |x_b|): with u_a = x_a / |x_a|,
/// sum_{a != b} u_a . u_b = |sum_a u_a|^2 - m, so one pass. Zero vectors count as cosine 0 with everything.
pub fn mean_pairwise_cosine_of(vectors: &[Vec<f64>]) -> f64 {
    let m = vectors.len();
    if m < 2 {
        return 0.0;
    }
    let n = vectors[0].len();
    let mut sum = vec![0.0; n];
    let mut units = 0.0;
    for v in vectors {
        // Scale first by the largest entry so the norm neither over- nor underflows.
        let top = v.iter().fold(0.0f64, |a, x| a.max(x.abs()));
        if top == 0.0 || !top.is_finite() {
            continue;
        }
        let norm = v.iter().map(|x| (x / top).powi(2)).sum::<f64>().sqrt();
        for (s, x) in sum.iter_mut().zip(v) {
            *s += x / top / norm;
        }
        units += 1.0;
    }
    let tot = sum.iter().map(|x| x * x).sum::<f64>();
    ((tot - units) / (m * (m - 1)) as f64).clamp(-1.0, 1.0)
}

/// arccos(sqrt c)/pi, as an arctangent so that it keeps its relative accuracy as c -> 1.
pub fn sign_diversity_large_batch(c: f64) -> f64 {
    let c = c.clamp(0.0, 1.0);
    (1.0 - c).sqrt().atan2(c.sqrt()) / std::f64::consts::PI
}

/// E[min(K, P-K)]/P for K ~ Bin(P, p).
fn binomial_min_fraction(p_pos: f64, p: usize) -> f64 {
    if p_pos <= 0.0 || p_pos >= 1.0 {
        return 0.0;
    }
    let (lp, lq) = (p_pos.ln(), (1.0 - p_pos).ln());
    let mut log_binom = 0.0; // ln C(P, k)
    let mut sum = 0.0;
    for k in 0..=p {
        if k > 0 {
            log_binom += ((p - k + 1) as f64).ln() - (k as f64).ln();
        }
        let m = k.min(p - k);
        if m > 0 {
            sum += m as f64 * (log_binom + k as f64 * lp + (p - k) as f64 * lq).exp();
        }
    }
    sum / p as f64
}

/// E[sdiv] at batch size P for exchangeable Gaussian pre-activations of correlation c >= 0: given the
/// shared offset u, the signs are i.i.d. with P(h > 0) = Phi(a u), a = sqrt(c/(1-c)), so
/// E[sdiv] = E_u[E[min(K, P-K)]/P], K ~ Bin(P, Phi(a u)); a u ~ N(0, c/(1-c)) is what is integrated.
pub fn expected_sign_diversity(c: f64, p: usize) -> f64 {
    if p < 2 {
        return 0.0;
    }
    let c = c.clamp(0.0, 1.0);
    if c >= 1.0 {
        return 0.0;
    }
    let var = c / (1.0 - c);
    gauss::expect(var, |x| binomial_min_fraction(norm_cdf(x), p), &[])
}

/// The collapse metrics predicted for `net` with a batch of `batch` inputs (the network's own batch
/// size when None).
pub fn predict_collapse(net: &Network, batch: Option<usize>) -> Result<CollapsePrediction> {
    net.validate()?;
    let p = batch.unwrap_or(net.input.batch);
    if p < 2 {
        return Err(Error::param(
            "--batch",
            p,
            "an integer >= 2 (collapse metrics compare inputs)",
        ));
    }
    let opts = MfOptions {
        correlation: true,
        batch: net.input.batch,
        ..Default::default()
    };
    let mut s = input_state(net);
    let mut layers = vec![CollapseLayer {
        index: 0,
        c: s.c,
        preact_q: None,
        preact_c: None,
        preact_std: None,
        sign_diversity: None,
        sign_diversity_large_batch: None,
    }];
    for (i, layer) in net.layers.iter().enumerate() {
        let mut pre = None;
        for op in &layer.ops {
            if matches!(op, Op::Act(_)) {
                pre = Some((s.log_q, s.c));
            }
            s = op.mean_field(&s, &opts)?.state;
        }
        layers.push(CollapseLayer {
            index: i + 1,
            c: s.c,
            preact_q: pre.map(|x| x.0.exp()),
            preact_c: pre.map(|x| x.1),
            preact_std: pre.map(|(log_q, c)| expected_std_from_log_q(log_q, c, p)),
            sign_diversity: pre.map(|(_, c)| expected_sign_diversity(c, p)),
            sign_diversity_large_batch: pre.map(|(_, c)| sign_diversity_large_batch(c)),
        });
    }
    Ok(CollapsePrediction { batch: p, layers })
}
