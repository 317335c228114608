//! A claim-level test result: one prediction (or threshold) against one measured mean, with its z-score,
//! bias bound and p-value. The audit (`claims`) decides verdicts over many of these with Holm's procedure;
//! the numbers themselves are computed here (theory/verification.md).

use crate::stats::p_two_sided;
use serde::Serialize;

#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum TestKind {
    /// The prediction equals the measurement (up to the stated bias bound).
    Equality,
    /// The measurement exceeds `prediction` (the threshold), e.g. ln GSC > 0.
    Greater,
    /// The measurement is below `prediction` (the threshold).
    Less,
}

/// What a claim's test measured.
#[derive(Clone, Debug, Serialize)]
pub struct Evidence {
    pub kind: TestKind,
    /// The closed-form value (equality) or the threshold (greater).
    pub prediction: f64,
    pub measurement: f64,
    pub stderr: f64,
    /// Finite-width bias bound allowed on top of sampling noise (equality claims).
    pub bias_bound: f64,
    /// Signed (measurement - prediction) / stderr.
    pub z: f64,
    /// Equality claims: the smallest |measurement - prediction| the claim's test rejects at its Holm
    /// threshold, bias_bound + z * stderr (set by `apply_holm`). A claim whose resolution is at least
    /// |prediction| (prediction != 0) cannot fail: its allowance swallows the whole predicted effect.
    pub resolution: Option<f64>,
    /// p-value of the claim's null hypothesis, under a normal sample mean. Equality: two-sided, of "the
    /// closed form is right", judged on the excess of |measurement - prediction| over the bias bound (small
    /// p contradicts the claim). Greater / less: one-sided, of "the measurement is not beyond the threshold"
    /// (small p supports the claim).
    pub p_value: f64,
    /// What was measured, in words, with the configuration and seed.
    pub detail: String,
    /// A figure that shows it, if any.
    pub figure: Option<String>,
}

impl Evidence {
    /// An equality test: the null "prediction is right" is judged on the excess of |diff| over the bias
    /// bound.
    pub fn equality(
        prediction: f64,
        measurement: f64,
        stderr: f64,
        bias_bound: f64,
        detail: String,
    ) -> Evidence {
        let diff = measurement - prediction;
        let excess = (diff.abs() - bias_bound).max(0.0);
        let p_value = if stderr > 0.0 {
            p_two_sided(excess / stderr)
        } else if excess == 0.0 {
            1.0
        } else {
            0.0
        };
        Evidence {
            kind: TestKind::Equality,
            prediction,
            measurement,
            stderr,
            bias_bound,
            z: if stderr > 0.0 { diff / stderr } else { 0.0 },
            resolution: None,
            p_value,
            detail,
            figure: None,
        }
    }

    /// A one-sided test that the measurement exceeds `threshold`.
    pub fn greater(threshold: f64, measurement: f64, stderr: f64, detail: String) -> Evidence {
        let z = if stderr > 0.0 {
            (measurement - threshold) / stderr
        } else if measurement > threshold {
            f64::INFINITY
        } else {
            f64::NEG_INFINITY
        };
        // One-sided p-value of H0: measurement <= threshold.
        let p_value = 0.5 * libm::erfc(z / std::f64::consts::SQRT_2);
        Evidence {
            kind: TestKind::Greater,
            prediction: threshold,
            measurement,
            stderr,
            bias_bound: 0.0,
            z,
            resolution: None,
            p_value,
            detail,
            figure: None,
        }
    }

    /// A one-sided test that the measurement is below `threshold`.
    pub fn less(threshold: f64, measurement: f64, stderr: f64, detail: String) -> Evidence {
        let g = Evidence::greater(-threshold, -measurement, stderr, detail);
        Evidence {
            kind: TestKind::Less,
            prediction: threshold,
            measurement,
            z: -g.z,
            ..g
        }
    }

    pub fn with_figure(mut self, name: &str) -> Evidence {
        self.figure = Some(name.to_string());
        self
    }
}
