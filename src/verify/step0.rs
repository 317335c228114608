//! The GSC a training run measures at step 0, on its own training rows, against the closed form of the
//! architecture's initial distribution (theory/training.md, "Step 0 against the closed form").
//!
//! The run measures one network, so its per-layer mean over rows scatters around the expectation by the
//! across-network standard deviation as well as by the rows' standard error. That deviation is measured
//! here by sampling networks from the initial distribution with the Monte Carlo engine, fed batches drawn
//! from the same training rows; the closed form is evaluated with those rows' own mean square and mean
//! pairwise cosine as the input model.

use super::{compare, CheckPolicy, Comparison, Verdict};
use crate::arch::{InputData, Network};
use crate::error::Result;
use crate::montecarlo::{self, Estimator, McOptions};
use crate::stats::{z_for_false_alarm, Summary};
use crate::theory::{predict, MfOptions};
use crate::train::GscLog;
use serde::{Deserialize, Serialize};

/// How the step-0 comparison is made.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct Step0Options {
    /// Networks sampled from the initial distribution to measure the across-network standard deviation.
    pub samples: usize,
    pub seed: u64,
    /// Family-wise false-alarm rate over the 2L comparisons (Bonferroni-split).
    pub family_alpha: f64,
    /// Finite-width bias bound per layer spanned, in units of 1/width (as `check`).
    pub kappa: f64,
}

impl Default for Step0Options {
    fn default() -> Self {
        let p = CheckPolicy::default();
        Step0Options {
            samples: 200,
            seed: 0,
            family_alpha: p.family_alpha,
            kappa: p.kappa,
        }
    }
}

/// One layer's comparison: `stderr` in the embedded comparison is the combined
/// sqrt(sd_networks^2 + se_rows^2), so `tolerance = z_crit * stderr + bias_bound`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Step0Comparison {
    pub quantity: String,
    /// The layer (the key is `index`, as in every other `--json` output).
    #[serde(rename = "index", alias = "layer")]
    pub layer: usize,
    pub predicted: f64,
    pub measured: f64,
    /// The rows' standard error of the measured mean (one network).
    pub se_rows: f64,
    /// Standard deviation of the per-sample ln GSC over sampled networks (and batches of the same rows).
    pub sd_networks: f64,
    pub bias_bound: f64,
    pub tolerance: f64,
    pub z: f64,
    pub verdict: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Step0Report {
    pub options: Step0Options,
    /// The input model the closed form was evaluated with: the GSC rows' mean square per coordinate and
    /// mean pairwise cosine.
    pub input_q0: f64,
    pub input_correlation: f64,
    pub alpha_per_comparison: f64,
    pub z_crit: f64,
    pub comparisons: Vec<Step0Comparison>,
    pub agree: usize,
    pub disagree: usize,
    pub inconclusive: usize,
}

impl Step0Report {
    /// The layers that disagree, as one line for a log or console ("" when none does).
    pub fn disagreements(&self) -> String {
        self.comparisons
            .iter()
            .filter(|c| c.verdict == "disagree")
            .map(|c| format!("{} l={}", c.quantity, c.layer))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn row(c: Comparison, se_rows: f64, sd_networks: f64) -> Step0Comparison {
    Step0Comparison {
        quantity: c.quantity,
        layer: c.layer,
        predicted: c.predicted,
        measured: c.measured,
        se_rows,
        sd_networks,
        bias_bound: c.bias_bound,
        tolerance: c.tolerance,
        z: c.z,
        verdict: match c.verdict {
            Verdict::Agree => "agree",
            Verdict::Disagree => "disagree",
            Verdict::Inconclusive => "inconclusive",
        }
        .into(),
    }
}

/// Compares `step0` (measured by the trainer on `rows`, one network) with the closed form of `net`'s
/// initial distribution on those rows. `net` is the architecture whose distribution is predicted: pass the
/// trained architecture; a different one (e.g. another sigma_w^2) states a different hypothesis.
///
/// Per layer, |measured - predicted| <= z_crit sqrt(sd_networks^2 + se_rows^2) + kappa * (sum of 1/n over
/// the layers spanned). sd_networks is the standard deviation of one sample's ln GSC (a fresh network and a
/// batch of rows), which bounds the across-network deviation of a mean over rows from above (the law of
/// total variance), so the stated false-alarm rate is an upper bound.
pub fn check_step0(
    net: &Network,
    rows: &[Vec<f64>],
    step0: &GscLog,
    opts: &Step0Options,
) -> Result<Step0Report> {
    let mut net = net.clone();
    let data = InputData {
        path: "training rows of the step-0 GSC".into(),
        vectors: rows.to_vec(),
    };
    let (q0, _) = data.moments();
    net.input.data = Some(data);
    net.validate()?;
    let p = predict(&net, &MfOptions::default())?;
    let input_correlation = crate::theory::input_state(&net).c;
    let m = montecarlo::simulate(
        &net,
        &McOptions {
            samples: opts.samples,
            seed: opts.seed,
            estimator: Estimator::Exact,
        },
    )?;
    let depth = net.depth();
    let inv_n: Vec<f64> = net.widths().iter().map(|&n| 1.0 / n as f64).collect();
    let span = |lo: usize, hi: usize| -> f64 { inv_n[lo + 1..=hi].iter().sum() };
    let n_cmp = 2 * depth;
    let alpha = opts.family_alpha / n_cmp.max(1) as f64;
    let z_crit = z_for_false_alarm(alpha);
    let mut comparisons = Vec::with_capacity(n_cmp);
    let mut one = |quantity: &str,
                   l: usize,
                   pred: f64,
                   got: crate::train::MeanSe,
                   mc: &Summary,
                   bias: f64| {
        let sd = mc.sd;
        let combined = Summary {
            mean: got.mean,
            stderr: (sd * sd + got.stderr * got.stderr).sqrt(),
            median: got.mean,
            sd,
            // Inconclusive when too few networks were usable to estimate the deviation.
            n: mc.n,
        };
        let c = compare(quantity, l, pred, &combined, z_crit, bias);
        comparisons.push(row(c, got.stderr, sd));
    };
    for l in 0..depth {
        one(
            "ln GSC(L, l)",
            l,
            p.layers[l].log_gsc_to_output,
            step0.log_gsc_to_output[l],
            &m.layers[l].log_gsc_to_output,
            opts.kappa * span(l, depth),
        );
    }
    for k in 1..=depth {
        one(
            "ln GSC(k, 0)",
            k,
            p.layers[k].log_gsc_from_input,
            step0.log_gsc_from_input[k],
            &m.layers[k].log_gsc_from_input,
            opts.kappa * span(0, k),
        );
    }
    let count = |v: &str| comparisons.iter().filter(|c| c.verdict == v).count();
    Ok(Step0Report {
        options: *opts,
        input_q0: q0,
        input_correlation,
        alpha_per_comparison: alpha,
        z_crit,
        agree: count("agree"),
        disagree: count("disagree"),
        inconclusive: count("inconclusive"),
        comparisons,
    })
}
