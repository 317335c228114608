//! Collapse metrics, predicted against measured: per layer and metric a z-score and a verdict at a
//! Bonferroni-split family false-alarm rate. No finite-width bias allowance is added (none is derived for
//! these metrics), so a "disagree" deep in a narrow net can be a finite-width effect rather than a wrong
//! closed form: theory/collapse.md says which are known.

use super::Verdict;
pub use crate::montecarlo::collapse::CollapseMeasurement;
use crate::stats::{z_for_false_alarm, Summary};
pub use crate::theory::collapse::CollapsePrediction;
use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
pub struct MetricComparison {
    pub predicted: f64,
    pub measured: f64,
    pub stderr: f64,
    /// (measured - predicted) / stderr.
    pub z: f64,
    pub verdict: Verdict,
}

#[derive(Clone, Debug, Serialize)]
pub struct CollapseRow {
    pub index: usize,
    /// Pairwise correlation (mean cosine) of the layer outputs.
    pub corr: MetricComparison,
    pub preact_std: Option<MetricComparison>,
    pub sign_diversity: Option<MetricComparison>,
}

#[derive(Clone, Debug, Serialize)]
pub struct CollapseCheck {
    pub family_alpha: f64,
    pub z_crit: f64,
    pub rows: Vec<CollapseRow>,
    pub agree: usize,
    pub disagree: usize,
    pub inconclusive: usize,
}

fn metric(predicted: f64, m: &Summary, z_crit: f64) -> MetricComparison {
    let diff = m.mean - predicted;
    let z = if m.stderr > 0.0 {
        diff / m.stderr
    } else if diff == 0.0 {
        0.0
    } else {
        f64::INFINITY.copysign(diff)
    };
    let verdict = if m.n < 2 || !m.stderr.is_finite() || !predicted.is_finite() {
        Verdict::Inconclusive
    } else if z.abs() <= z_crit {
        Verdict::Agree
    } else {
        Verdict::Disagree
    };
    MetricComparison {
        predicted,
        measured: m.mean,
        stderr: m.stderr,
        z,
        verdict,
    }
}

/// Both sides of every collapse metric of `net` (its batch is the input model's): the mean-field
/// prediction with finite-batch formulas and `samples` sampled networks, seeded.
pub fn collapse_pair(
    net: &crate::arch::Network,
    samples: usize,
    seed: u64,
) -> crate::Result<(CollapsePrediction, CollapseMeasurement)> {
    let p = crate::theory::collapse::predict_collapse(net, None)?;
    let m = crate::montecarlo::collapse::measure_collapse(net, samples, seed)?;
    Ok((p, m))
}

/// Every metric of every layer, compared at family false-alarm rate `family_alpha`.
pub fn check_collapse(
    p: &CollapsePrediction,
    m: &CollapseMeasurement,
    family_alpha: f64,
) -> CollapseCheck {
    let count: usize = p
        .layers
        .iter()
        .map(|l| 1 + 2 * usize::from(l.preact_std.is_some()))
        .sum();
    let z_crit = z_for_false_alarm(family_alpha / count.max(1) as f64);
    let rows: Vec<CollapseRow> = p
        .layers
        .iter()
        .zip(&m.layers)
        .map(|(pl, ml)| CollapseRow {
            index: pl.index,
            corr: metric(pl.c, &ml.corr, z_crit),
            preact_std: pl
                .preact_std
                .zip(ml.preact_std)
                .map(|(p, m)| metric(p, &m, z_crit)),
            sign_diversity: pl
                .sign_diversity
                .zip(ml.sign_diversity)
                .map(|(p, m)| metric(p, &m, z_crit)),
        })
        .collect();
    let mut tally = [0usize; 3];
    for r in &rows {
        for c in std::iter::once(&r.corr)
            .chain(r.preact_std.as_ref())
            .chain(r.sign_diversity.as_ref())
        {
            tally[match c.verdict {
                Verdict::Agree => 0,
                Verdict::Disagree => 1,
                Verdict::Inconclusive => 2,
            }] += 1;
        }
    }
    CollapseCheck {
        family_alpha,
        z_crit,
        rows,
        agree: tally[0],
        disagree: tally[1],
        inconclusive: tally[2],
    }
}
