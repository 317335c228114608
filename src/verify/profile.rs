//! The per-layer GSC profile of one network, closed form next to Monte Carlo: ln GSC(L, l) for every layer,
//! indexed by the number of dense layers between f_l and the output (so a ResNet of 25 two-dense blocks and
//! a 50-layer MLP share an axis, as in the seed paper's Figure 1). The figures (`plot gsc-depth`,
//! `plot --arch`) read it; they choose what to draw but do not run the sampler themselves.

use crate::arch::{Network, Op};
use crate::error::Result;
use crate::montecarlo::Estimator;
use crate::stats::Summary;
use serde::Serialize;

/// One layer's row of a [`GscProfile`].
#[derive(Clone, Debug, Serialize)]
pub struct ProfileRow {
    /// Layer index l (f_l is layer l's output; 0 is the input).
    pub layer: usize,
    /// Dense layers between f_l and the output (inside residual branches too).
    pub dense_to_output: usize,
    /// Closed form ln GSC(L, l) at infinite width.
    pub predicted: f64,
    /// Measured ln GSC(L, l) over sampled networks (mean, standard error, n).
    pub measured: Summary,
}

#[derive(Clone, Debug, Serialize)]
pub struct GscProfile {
    pub samples: usize,
    pub degenerate: usize,
    pub seed: u64,
    /// Layers 0..L (the last row is GSC(L, L) = 1).
    pub rows: Vec<ProfileRow>,
}

fn dense_ops(ops: &[Op]) -> usize {
    ops.iter()
        .map(|op| match op {
            Op::Dense(_) => 1,
            Op::Residual(r) => dense_ops(&r.branch),
            Op::Act(_) | Op::LayerNorm { .. } | Op::BatchNorm { .. } => 0,
        })
        .sum()
}

/// Per layer l, the number of dense ops in layers l+1..=L.
pub fn dense_to_output(net: &Network) -> Vec<usize> {
    let mut out = vec![0; net.depth() + 1];
    for l in (0..net.depth()).rev() {
        out[l] = out[l + 1] + dense_ops(&net.layers[l].ops);
    }
    out
}

/// The closed form and `samples` sampled networks (seeded, thread-count independent) of `net`.
pub fn gsc_profile(
    net: &Network,
    samples: usize,
    seed: u64,
    estimator: Estimator,
) -> Result<GscProfile> {
    let (p, m) = super::predict_and_measure(net, samples, seed, estimator)?;
    let d = dense_to_output(net);
    let rows = (0..=net.depth())
        .map(|l| ProfileRow {
            layer: l,
            dense_to_output: d[l],
            predicted: p.layers[l].log_gsc_to_output,
            measured: m.layers[l].log_gsc_to_output,
        })
        .collect();
    Ok(GscProfile {
        samples: m.samples,
        degenerate: m.degenerate,
        seed,
        rows,
    })
}
