//! Small statistics shared by the Monte Carlo engine and the verifier.

use serde::Serialize;

/// Mean, standard error of the mean, median and standard deviation of a sample.
#[derive(Clone, Copy, Debug, Serialize, PartialEq)]
pub struct Summary {
    pub mean: f64,
    pub stderr: f64,
    pub median: f64,
    pub sd: f64,
    pub n: usize,
}

impl Summary {
    /// The summary of no values: NaN statistics, n = 0 (callers print it as "-").
    pub const EMPTY: Summary = Summary {
        mean: f64::NAN,
        stderr: f64::NAN,
        median: f64::NAN,
        sd: f64::NAN,
        n: 0,
    };

    /// Summary of finite values; `None` for an empty slice.
    pub fn of(xs: &[f64]) -> Option<Summary> {
        let n = xs.len();
        if n == 0 {
            return None;
        }
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = if n > 1 {
            xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64
        } else {
            0.0
        };
        let sd = var.sqrt();
        Some(Summary {
            mean,
            stderr: sd / (n as f64).sqrt(),
            median: quantile(xs, 0.5),
            sd,
            n,
        })
    }

    /// Summary of the values e^{x_i} given their logs, computed relative to the largest, so that squared
    /// deviations never overflow; a statistic is infinite only when it is itself beyond the f64 range.
    pub fn of_exp(logs: &[f64]) -> Option<Summary> {
        let m = logs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if !m.is_finite() {
            return Summary::of(&logs.iter().map(|x| x.exp()).collect::<Vec<_>>());
        }
        let rel: Vec<f64> = logs.iter().map(|x| (x - m).exp()).collect();
        let s = Summary::of(&rel)?;
        // Two half-factors: e^m itself may overflow where v e^m (v <= 1) does not.
        let half = (0.5 * m).exp();
        let up = |v: f64| if v == 0.0 { 0.0 } else { v * half * half };
        Some(Summary {
            mean: up(s.mean),
            stderr: up(s.stderr),
            median: up(s.median),
            sd: up(s.sd),
            n: s.n,
        })
    }
}

/// Empirical quantile with linear interpolation (type 7).
pub fn quantile(xs: &[f64], p: f64) -> f64 {
    let mut v: Vec<f64> = xs.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    let h = (v.len() - 1) as f64 * p.clamp(0.0, 1.0);
    let lo = h.floor() as usize;
    let hi = h.ceil() as usize;
    v[lo] + (h - lo as f64) * (v[hi] - v[lo])
}

/// Two-sided normal quantile for a false-alarm rate `alpha`: the z beyond which |Z| falls with
/// probability alpha.
pub fn z_for_false_alarm(alpha: f64) -> f64 {
    use statrs::distribution::{ContinuousCDF, Normal};
    let n = Normal::new(0.0, 1.0).expect("standard normal");
    n.inverse_cdf(1.0 - alpha / 2.0)
}

/// Two-sided p-value of a z-score.
pub fn p_two_sided(z: f64) -> f64 {
    libm::erfc(z.abs() / std::f64::consts::SQRT_2)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hand-computed values: the unbiased (n - 1) variance, the type-7 median, and one sample's spread
    /// reported as 0 rather than 0/0 (the verifier calls a single sample inconclusive by its count, so a
    /// NaN here would only hide that reason).
    #[test]
    fn summary_matches_hand_computed_values() {
        let s = Summary::of(&[1.0, 2.0, 4.0, 9.0]).unwrap();
        assert_eq!(s.n, 4);
        assert_eq!(s.mean, 4.0);
        // Squared deviations 9 + 4 + 0 + 25 = 38, over n - 1 = 3.
        assert!((s.sd - (38.0f64 / 3.0).sqrt()).abs() < 1e-15);
        assert!((s.stderr - s.sd / 2.0).abs() < 1e-15);
        assert_eq!(s.median, 3.0);
        let one = Summary::of(&[5.0]).unwrap();
        assert_eq!((one.mean, one.sd, one.stderr, one.n), (5.0, 0.0, 0.0, 1));
        assert!(Summary::of(&[]).is_none());
    }

    /// Computed relative to the largest log: equal to the direct summary where that one is finite, and
    /// finite at e^700, whose squared deviations overflow directly; all-zero values (logs of -inf) too.
    #[test]
    fn summary_of_logs_equals_the_direct_one_and_survives_huge_values() {
        let xs = [1.0f64, 2.0, 4.0, 9.0];
        let logs: Vec<f64> = xs.iter().map(|x| x.ln()).collect();
        let (a, b) = (Summary::of_exp(&logs).unwrap(), Summary::of(&xs).unwrap());
        for (u, v) in [
            (a.mean, b.mean),
            (a.sd, b.sd),
            (a.stderr, b.stderr),
            (a.median, b.median),
        ] {
            assert!((u - v).abs() <= 1e-14 * v.abs(), "{u} vs {v}");
        }
        let big = Summary::of_exp(&[700.0, 700.0 + 2f64.ln()]).unwrap();
        let e700 = 700f64.exp();
        assert!((big.mean / e700 - 1.5).abs() < 1e-13, "{}", big.mean / e700);
        assert!(
            (big.sd / e700 - 0.5f64.sqrt()).abs() < 1e-13,
            "{}",
            big.sd / e700
        );
        let zeros = Summary::of_exp(&[f64::NEG_INFINITY; 3]).unwrap();
        assert_eq!((zeros.mean, zeros.sd), (0.0, 0.0));
    }

    #[test]
    fn normal_quantile_and_p_value_are_inverse() {
        let z = z_for_false_alarm(0.05);
        assert!((z - 1.959_963_984_540_054).abs() < 1e-9);
        assert!((p_two_sided(z) - 0.05).abs() < 1e-12);
        assert!((p_two_sided(-z) - 0.05).abs() < 1e-12);
    }
}
