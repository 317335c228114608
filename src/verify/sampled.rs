//! Per-sample experiments that `simulate`'s per-layer summaries do not cover: a statistic computed on each
//! sampled network, then summarised over networks. The sample loops live here (not in `claims` or `plot`);
//! each sample has its own seeded RNG, so the result is the same for any thread count.

use crate::arch::{Network, Op};
use crate::error::{Error, Result};
use crate::montecarlo::{self, Estimator, SampleOutcome};
use crate::stats::Summary;
use rayon::prelude::*;

fn summarise(xs: Vec<f64>) -> Result<Summary> {
    Summary::of(&xs).ok_or_else(|| Error::Unsupported("no non-degenerate samples".into()))
}

/// A statistic of each usable sample's outcome, summarised over `samples` networks.
fn per_sample(
    net: &Network,
    samples: usize,
    seed: u64,
    est: Estimator,
    f: impl Fn(&SampleOutcome) -> f64 + Sync,
) -> Result<Summary> {
    let xs: Vec<f64> = (0..samples)
        .into_par_iter()
        .filter_map(|i| {
            let mut rng = montecarlo::sample_rng(seed, i as u64);
            let o = montecarlo::run_sample(net, &mut rng, est);
            o.usable().then(|| f(&o))
        })
        .collect();
    summarise(xs)
}

/// Per-sample least-squares slope of ln GSC(L, l) against -l over l in `range` (the per-layer log rate past
/// the transients at both ends), summarised over samples.
pub fn fitted_rate(
    net: &Network,
    samples: usize,
    seed: u64,
    est: Estimator,
    range: std::ops::Range<usize>,
) -> Result<Summary> {
    let ls: Vec<f64> = range.clone().map(|l| l as f64).collect();
    let n = ls.len() as f64;
    let mx = ls.iter().sum::<f64>() / n;
    let sxx: f64 = ls.iter().map(|x| (x - mx) * (x - mx)).sum();
    per_sample(net, samples, seed, est, |o| {
        let ys: Vec<f64> = range.clone().map(|l| o.log_gsc_to_output[l]).collect();
        let my = ys.iter().sum::<f64>() / n;
        let sxy: f64 = ls.iter().zip(&ys).map(|(x, y)| (x - mx) * (y - my)).sum();
        -sxy / sxx
    })
}

/// Per-sample (ln GSC(L, l0) - ln GSC(L, l1)) / (l1 - l0): the per-layer rate between two layers.
pub fn rate_between(
    net: &Network,
    samples: usize,
    seed: u64,
    est: Estimator,
    l0: usize,
    l1: usize,
) -> Result<Summary> {
    per_sample(net, samples, seed, est, |o| {
        (o.log_gsc_to_output[l0] - o.log_gsc_to_output[l1]) / (l1 - l0) as f64
    })
}

/// Per-sample ln GSC(k, 0).
pub fn log_gsc_from_input(
    net: &Network,
    samples: usize,
    seed: u64,
    est: Estimator,
    k: usize,
) -> Result<Summary> {
    per_sample(net, samples, seed, est, |o| o.log_gsc_from_input[k])
}

/// Cosine similarity of the first two inputs' representations at the last layer, per sample (the net's
/// batch must be at least 2); samples where either vanishes are dropped.
pub fn final_cosine(net: &Network, samples: usize, seed: u64) -> Result<Summary> {
    if net.input.batch < 2 {
        return Err(Error::param("batch", net.input.batch, "at least 2"));
    }
    let xs: Vec<f64> = (0..samples)
        .into_par_iter()
        .map(|i| {
            let mut rng = montecarlo::sample_rng(seed, i as u64);
            let params = montecarlo::draw_params(net, &mut rng);
            let x = montecarlo::draw_input(net, &mut rng);
            let f = montecarlo::forward(net, &params, x)
                .outputs
                .pop()
                .expect("output");
            let (a, b) = (f.column(0), f.column(1));
            let d = a.norm() * b.norm();
            if d > 0.0 {
                a.dot(&b) / d
            } else {
                f64::NAN
            }
        })
        .filter(|v| v.is_finite())
        .collect();
    summarise(xs)
}

/// One sampled network before and after multiplying layer `l`'s dense weights by `a` and layer `l + 1`'s by
/// 1/a (0-based layers, each starting with a dense op): the largest change of ln GSC(L, 0) and
/// ln GSC(l + 1, 0), and the factor by which ||f_{l+1}|| changed.
pub fn rescaling_invariance(net: &Network, seed: u64, l: usize, a: f64) -> Result<(f64, f64)> {
    if l + 1 >= net.depth()
        || !matches!(net.layers[l].ops.first(), Some(Op::Dense(_)))
        || !matches!(net.layers[l + 1].ops.first(), Some(Op::Dense(_)))
    {
        return Err(Error::param(
            "layer",
            l,
            "a layer followed by another, both starting with a dense op",
        ));
    }
    let mut rng = montecarlo::sample_rng(seed, 0);
    let mut params = montecarlo::draw_params(net, &mut rng);
    let x = montecarlo::draw_input(net, &mut rng);
    let t0 = montecarlo::forward(net, &params, x.clone());
    let o0 = montecarlo::outcome(net, &params, &t0, Estimator::Exact, &mut rng);
    for (layer, factor) in [(l, a), (l + 1, 1.0 / a)] {
        if let montecarlo::OpParams::Dense { w, .. } = &mut params[layer][0] {
            *w *= factor;
        }
    }
    let t1 = montecarlo::forward(net, &params, x);
    let o1 = montecarlo::outcome(net, &params, &t1, Estimator::Exact, &mut rng);
    let k = l + 1;
    let diff = (o1.log_gsc_to_output[0] - o0.log_gsc_to_output[0])
        .abs()
        .max((o1.log_gsc_from_input[k] - o0.log_gsc_from_input[k]).abs());
    Ok((diff, t1.outputs[k].norm() / t0.outputs[k].norm()))
}
