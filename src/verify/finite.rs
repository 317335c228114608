//! Finite-width predictions against the measured distribution of ln GSC: mean and variance per layer
//! (combined standard errors of both sides), a two-sample Kolmogorov–Smirnov test where an exact law exists,
//! and the degenerate fraction against its exact probability (theory/finite-width.md, §6).

use crate::montecarlo::Measurement;
use crate::stats::{p_two_sided, z_for_false_alarm};
use crate::theory::finite_width::{FiniteMethod, FinitePrediction, FiniteValue};
use serde::Serialize;

/// [`super::Verdict`]'s three outcomes plus `OutsideValidity` (no law to compare with), which a
/// mean-field comparison cannot have: hence its own type rather than a fold into `Verdict`.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum FiniteVerdict {
    Agree,
    Disagree,
    /// The expansion does not apply here (sum of 1/n over the span too large): no number to compare.
    OutsideValidity,
    Inconclusive,
}

#[derive(Clone, Debug, Serialize)]
pub struct FiniteComparison {
    pub quantity: String,
    pub layer: usize,
    pub predicted: f64,
    pub measured: f64,
    /// Combined standard error (measurement and, for the exact route, the theory's own sampling error);
    /// for the KS test and the degenerate count: NaN (`p_value` carries the result).
    pub stderr: f64,
    pub z: f64,
    pub p_value: f64,
    pub verdict: FiniteVerdict,
}

#[derive(Clone, Debug, Serialize)]
pub struct FiniteReport {
    pub method: FiniteMethod,
    pub alpha_per_comparison: f64,
    pub z_crit: f64,
    pub comparisons: Vec<FiniteComparison>,
    pub agree: usize,
    pub disagree: usize,
    pub outside_validity: usize,
    pub inconclusive: usize,
}

/// Two-sample Kolmogorov–Smirnov: (D, asymptotic p-value) with the Stephens small-sample correction.
pub fn ks_two_sample(a: &[f64], b: &[f64]) -> (f64, f64) {
    if a.is_empty() || b.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let mut x = a.to_vec();
    let mut y = b.to_vec();
    x.sort_by(|p, q| p.total_cmp(q));
    y.sort_by(|p, q| p.total_cmp(q));
    let (n, m) = (x.len(), y.len());
    let (mut i, mut j, mut d) = (0usize, 0usize, 0.0f64);
    while i < n && j < m {
        let v = x[i].min(y[j]);
        while i < n && x[i] <= v {
            i += 1;
        }
        while j < m && y[j] <= v {
            j += 1;
        }
        d = d.max((i as f64 / n as f64 - j as f64 / m as f64).abs());
    }
    let ne = (n * m) as f64 / (n + m) as f64;
    let lambda = (ne.sqrt() + 0.12 + 0.11 / ne.sqrt()) * d;
    (d, kolmogorov_q(lambda))
}

/// Q_KS(lambda) = 2 sum_{k>=1} (-1)^{k-1} exp(-2 k^2 lambda^2).
fn kolmogorov_q(lambda: f64) -> f64 {
    if lambda < 0.2 {
        return 1.0;
    }
    let mut s = 0.0;
    for k in 1..200 {
        let kf = k as f64;
        let t = (-2.0 * kf * kf * lambda * lambda).exp();
        s += if k % 2 == 1 { t } else { -t };
        if t < 1e-17 {
            break;
        }
    }
    (2.0 * s).clamp(0.0, 1.0)
}

fn mean_var(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, var)
}

fn verdict(ok: bool) -> FiniteVerdict {
    if ok {
        FiniteVerdict::Agree
    } else {
        FiniteVerdict::Disagree
    }
}

/// Two-sided binomial p-value of `k` successes in `n` at probability `p` (doubling the smaller tail).
fn binomial_p(k: usize, n: usize, p: f64) -> f64 {
    use statrs::distribution::{Binomial, DiscreteCDF};
    if p <= 0.0 {
        return if k == 0 { 1.0 } else { 0.0 };
    }
    let b = match Binomial::new(p.min(1.0), n as u64) {
        Ok(b) => b,
        Err(_) => return f64::NAN,
    };
    let lo = b.cdf(k as u64);
    let hi = if k == 0 {
        1.0
    } else {
        1.0 - b.cdf(k as u64 - 1)
    };
    (2.0 * lo.min(hi)).min(1.0)
}

/// Compares the finite-width law per layer with the measured samples. `family_alpha` is split evenly over
/// the comparisons made (Bonferroni), as in [`super::check`].
pub fn check_finite(p: &FinitePrediction, m: &Measurement, family_alpha: f64) -> FiniteReport {
    let depth = p.log_gsc_to_output.len() - 1;
    let exact = p.method == FiniteMethod::Exact;
    let n_cmp = 2 * depth + usize::from(exact) + 1;
    let alpha = family_alpha / n_cmp as f64;
    let z_crit = z_for_false_alarm(alpha);
    let mut out = Vec::new();
    for l in 0..depth {
        let xs = &m.log_gsc_to_output_samples[l];
        match p.log_gsc_to_output[l] {
            FiniteValue::OutsideValidity { .. } => {
                for q in ["mean ln GSC(L, l)", "var ln GSC(L, l)"] {
                    out.push(FiniteComparison {
                        quantity: q.into(),
                        layer: l,
                        predicted: f64::NAN,
                        measured: f64::NAN,
                        stderr: f64::NAN,
                        z: f64::NAN,
                        p_value: f64::NAN,
                        verdict: FiniteVerdict::OutsideValidity,
                    });
                }
            }
            FiniteValue::Law(law) => {
                if xs.len() < 3 {
                    for q in ["mean ln GSC(L, l)", "var ln GSC(L, l)"] {
                        out.push(FiniteComparison {
                            quantity: q.into(),
                            layer: l,
                            predicted: f64::NAN,
                            measured: f64::NAN,
                            stderr: f64::NAN,
                            z: f64::NAN,
                            p_value: f64::NAN,
                            verdict: FiniteVerdict::Inconclusive,
                        });
                    }
                    continue;
                }
                let (mean, var) = mean_var(xs);
                // Standard errors under the null hypothesis (the predicted law), not from the sample: at
                // n ~ 100 the sample's own spread and fourth moment miss the heavy right tail of ln GSC and
                // understate the error of the variance by up to 3x (theory/finite-width.md, "Testing the
                // variance"). The law's own Monte Carlo error is added in quadrature.
                let n = xs.len() as f64;
                let se_c = (law.sd * law.sd / n + law.mean_se * law.mean_se).sqrt();
                let z = if se_c > 0.0 {
                    (mean - law.mean) / se_c
                } else {
                    0.0
                };
                out.push(FiniteComparison {
                    quantity: "mean ln GSC(L, l)".into(),
                    layer: l,
                    predicted: law.mean,
                    measured: mean,
                    stderr: se_c,
                    z,
                    p_value: p_two_sided(z),
                    // The chain's mean carries a stated bias bound (theory/finite-width.md section 8),
                    // added to the statistical tolerance as everywhere else in `check`.
                    verdict: verdict(
                        (mean - law.mean).abs()
                            <= z_crit * se_c + p.bias_bound.get(l).copied().unwrap_or(0.0),
                    ),
                });
                // With probes, each measured ln GSC also carries the estimator's own noise (independent of
                // the network): the measured variance is the law's plus its mean, estimated per sample.
                let pv = law.sd * law.sd + m.probe_var_to_output.get(l).copied().unwrap_or(0.0);
                let pv_se = 2.0 * law.sd * law.sd_se;
                let var_se = pv * ((law.kurtosis - 1.0).max(0.0) / n).sqrt();
                let se_v = (var_se * var_se + pv_se * pv_se).sqrt();
                let zv = if se_v > 0.0 { (var - pv) / se_v } else { 0.0 };
                out.push(FiniteComparison {
                    quantity: "var ln GSC(L, l)".into(),
                    layer: l,
                    predicted: pv,
                    measured: var,
                    stderr: se_v,
                    z: zv,
                    p_value: p_two_sided(zv),
                    verdict: verdict(zv.abs() <= z_crit),
                });
            }
        }
    }
    // The KS test needs the measured draws to follow the law itself: with probes they follow its
    // convolution with the estimator's noise, so it is run on exact Jacobians only.
    if exact
        && m.estimator == crate::montecarlo::Estimator::Exact
        && !p.sample_total.is_empty()
        && m.log_gsc_total.len() >= 3
    {
        let (d, pv) = ks_two_sample(&p.sample_total, &m.log_gsc_total);
        out.push(FiniteComparison {
            quantity: "KS ln GSC(L, 0)".into(),
            layer: 0,
            predicted: f64::NAN,
            measured: d,
            stderr: f64::NAN,
            z: f64::NAN,
            p_value: pv,
            verdict: verdict(pv > alpha),
        });
    }
    let pd = binomial_p(m.degenerate, m.samples, p.degenerate_probability);
    out.push(FiniteComparison {
        quantity: "degenerate fraction".into(),
        layer: 0,
        predicted: p.degenerate_probability,
        measured: m.degenerate as f64 / m.samples as f64,
        stderr: (p.degenerate_probability * (1.0 - p.degenerate_probability) / m.samples as f64)
            .sqrt(),
        z: f64::NAN,
        p_value: pd,
        verdict: verdict(pd > alpha),
    });
    let count = |v: FiniteVerdict| out.iter().filter(|c| c.verdict == v).count();
    FiniteReport {
        method: p.method,
        alpha_per_comparison: alpha,
        z_crit,
        agree: count(FiniteVerdict::Agree),
        disagree: count(FiniteVerdict::Disagree),
        outside_validity: count(FiniteVerdict::OutsideValidity),
        inconclusive: count(FiniteVerdict::Inconclusive),
        comparisons: out,
    }
}
