//! The Monte Carlo engine: sample networks at random initialisation from the same [`Network`]
//! description the closed-form engine reads, and measure ||f_l||, GSC(L, l) and GSC(k, 0) exactly
//! (full Jacobians) or with Gaussian probes.
//!
//! Reproducibility: sample i draws everything from its own generator, seeded from (seed, i), and results
//! are gathered in sample order, so the numbers do not depend on the thread count.
//! Definitions: theory/gsc-mlp.md (GSC, qm norm), theory/monte-carlo.md (estimators and errors).

pub mod collapse;
mod cost;
pub mod gemm;
pub mod isometry;
mod kernel;
mod normal;
mod ops;
pub mod param_jvp;
pub mod pythagorean;
mod sample;

pub use cost::{bytes_per_sample, draws_per_sample, flops_per_sample};
pub use normal::fill_normal;
#[allow(unused_imports)]
pub(crate) use ops::{batch_norm_tangent, layer_norm_tangent, normalise, scale_by, scale_rows};
pub use ops::{OpCache, OpParams, Sample};
// The per-sample internals. `forward_rescaled` and `jacobian_norms` serve only this engine (not re-exported
// from the private `sample` module). The others stay
// public because the training engine, the depth analysis and the integration tests (which compare
// one sampled network against autodiff or a hand computation) drive single samples; experiments over many
// samples go through `verify` (`verify::sampled`, `verify::observable`), not these.
pub(crate) use sample::forward_rescaled;
pub use sample::{
    draw_input, draw_params, forward, jacobian_batch, outcome, run_sample, NetParams,
    SampleOutcome, Trace,
};

use crate::arch::Network;
use crate::error::{Error, Result};
use crate::stats::Summary;
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;
use rayon::prelude::*;
use serde::Serialize;

/// How ||J||_F^2 is obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Estimator {
    /// The full Jacobian, by forward mode from the input and reverse mode from the output.
    Exact,
    /// `P` Rademacher probe vectors (entries +-1) each way: E||J v||^2 = ||J||_F^2, bias of the log
    /// corrected to second order (theory/monte-carlo.md). The default probe distribution: for a trace
    /// tr(A), A = J^T J, a Rademacher probe's variance is 2 (||A||_F^2 - sum_i A_ii^2) against a Gaussian
    /// probe's 2 ||A||_F^2 (Hutchinson 1990), about half for the Jacobians here (measured in
    /// theory/monte-carlo.md), and its draws are bits, not normals.
    Probes(usize),
    /// `P` Gaussian probe vectors each way (same estimator, the Gaussian probe distribution).
    GaussianProbes(usize),
}

impl Estimator {
    /// The probe count, or None for exact Jacobians.
    pub fn probes(&self) -> Option<usize> {
        match *self {
            Estimator::Exact => None,
            Estimator::Probes(p) | Estimator::GaussianProbes(p) => Some(p),
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct McOptions {
    pub samples: usize,
    pub seed: u64,
    pub estimator: Estimator,
}

impl Default for McOptions {
    fn default() -> Self {
        McOptions {
            samples: 200,
            seed: 0,
            estimator: Estimator::Exact,
        }
    }
}

/// `count` blocks of n x P probe directions for a probe estimator (Rademacher or Gaussian entries, see
/// [`Estimator`]); none for exact Jacobians.
pub fn probe_blocks(
    n: usize,
    count: usize,
    estimator: Estimator,
    rng: &mut dyn rand::RngCore,
) -> Vec<nalgebra::DMatrix<f64>> {
    match estimator {
        Estimator::Exact => Vec::new(),
        Estimator::Probes(p) => (0..count)
            .map(|_| ops::rademacher_matrix(n, p, rng))
            .collect(),
        Estimator::GaussianProbes(p) => (0..count)
            .map(|_| ops::gaussian_matrix(n, p, 1.0, rng))
            .collect(),
    }
}

/// The generator of sample `index` under `seed`: a SplitMix64-style mix of both, so nearby seeds and
/// indices give unrelated streams.
pub fn sample_rng(seed: u64, index: u64) -> Xoshiro256PlusPlus {
    let mut z = seed
        .wrapping_add(0x9E37_79B9_7F4A_7C15)
        .wrapping_mul(0xBF58_476D_1CE4_E5B9)
        ^ index.wrapping_mul(0x94D0_49BB_1331_11EB);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    Xoshiro256PlusPlus::seed_from_u64(z ^ (z >> 31))
}

/// Per-layer aggregate over the non-degenerate samples.
#[derive(Clone, Debug, Serialize)]
pub struct LayerMeasurement {
    pub index: usize,
    pub width: usize,
    /// ||f_l||^2 / dim f_l (infinite only where the values themselves are beyond the f64 range).
    pub sq_norm: Summary,
    /// ln(||f_l||^2 / dim f_l), always finite: what to read for very deep nets.
    pub log_sq_norm: Summary,
    /// ln GSC(L, l).
    pub log_gsc_to_output: Summary,
    /// ln GSC(l, 0).
    pub log_gsc_from_input: Summary,
}

#[derive(Clone, Debug, Serialize)]
pub struct Measurement {
    /// Samples drawn.
    pub samples: usize,
    /// Samples excluded because some layer output or Jacobian was exactly zero (e.g. a dead relu layer),
    /// where the GSC is 0/0.
    pub degenerate: usize,
    /// Samples excluded because a layer output became non-finite (overflow, or NaN from inf - inf) in a net
    /// that the engine cannot rescale exactly (`Network::scale_equivariant`).
    pub overflow: usize,
    pub seed: u64,
    pub estimator: Estimator,
    pub layers: Vec<LayerMeasurement>,
    /// The raw per-sample ln GSC(L, 0) values of the non-degenerate samples, in sample order (for
    /// distribution tests).
    #[serde(skip)]
    pub log_gsc_total: Vec<f64>,
    /// Per layer l, the per-sample ln GSC(L, l) of the non-degenerate samples (for variance and
    /// distribution tests).
    #[serde(skip)]
    pub log_gsc_to_output_samples: Vec<Vec<f64>>,
    /// Per layer l, the mean over usable samples of the probe estimator's variance in ln GSC(L, l) (0 for
    /// exact Jacobians): what the probes add to the across-sample variance of ln GSC(L, l).
    #[serde(skip)]
    pub probe_var_to_output: Vec<f64>,
    /// Per layer l, the per-sample ln(||f_l||^2 / dim f_l) of the usable samples (for comparisons that must
    /// not leave log space).
    #[serde(skip)]
    pub log_sq_norm_samples: Vec<Vec<f64>>,
}

/// Bytes of sample state allowed in flight at once (see `simulate_with_progress`).
pub const MEMORY_BUDGET: f64 = 640.0 * 1024.0 * 1024.0;

/// Runs `opts.samples` independent samples of `net` (in parallel) and aggregates them. `progress` is
/// called with the number of samples finished so far (from worker threads, in no particular order).
pub fn simulate_with_progress(
    net: &Network,
    opts: &McOptions,
    progress: &(dyn Fn(usize) + Sync),
) -> Result<Measurement> {
    net.validate()?;
    if opts.samples == 0 {
        return Err(Error::param("--samples", 0, "an integer >= 1"));
    }
    if opts.estimator.probes() == Some(0) {
        return Err(Error::param("--probes", 0, "an integer >= 2"));
    }
    if opts.estimator.probes() == Some(1) {
        return Err(Error::param(
            "--probes",
            1,
            "an integer >= 2 (the standard error needs two)",
        ));
    }
    let done = std::sync::atomic::AtomicUsize::new(0);
    // Samples in flight at once: all of them (rayon spreads them over the threads) unless that would
    // hold more than MEMORY_BUDGET (a width-1000, depth-100 sample keeps 0.8 GB of weights for reverse
    // mode). Fewer samples side by side then leave the threads to the split products inside each (gemm.rs). Either way each sample's
    // numbers come from its own generator, so the grouping changes nothing but the speed.
    let per_sample = bytes_per_sample(net, opts.estimator).max(1.0);
    let in_flight = ((MEMORY_BUDGET / per_sample) as usize).clamp(1, opts.samples);
    let mut outcomes: Vec<SampleOutcome> = Vec::with_capacity(opts.samples);
    let indices: Vec<usize> = (0..opts.samples).collect();
    for group in indices.chunks(in_flight) {
        let part: Vec<SampleOutcome> = group
            .par_iter()
            .map(|&i| {
                let mut rng = sample_rng(opts.seed, i as u64);
                let out = run_sample(net, &mut rng, opts.estimator);
                let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                progress(n);
                out
            })
            .collect();
        outcomes.extend(part);
    }
    Ok(aggregate(net, opts, &outcomes))
}

pub fn simulate(net: &Network, opts: &McOptions) -> Result<Measurement> {
    simulate_with_progress(net, opts, &|_| {})
}

/// Where a given network's inputs come from.
#[derive(Clone, Copy, Debug)]
pub enum GivenInputs<'a> {
    /// Drawn from the network's input model (Gaussian, or a random batch of its input data), one batch
    /// per sample.
    Drawn,
    /// These rows in order: sample i is the batch of rows i B .. (i+1) B (B = `net.input.batch`).
    Rows(&'a [Vec<f64>]),
}

impl GivenInputs<'_> {
    /// The input batch of sample `i` (n_0 x B).
    pub fn batch(
        &self,
        net: &Network,
        i: usize,
        rng: &mut dyn rand::RngCore,
    ) -> nalgebra::DMatrix<f64> {
        let bsz = net.input.batch;
        match self {
            GivenInputs::Drawn => draw_input(net, rng),
            GivenInputs::Rows(rows) => {
                nalgebra::DMatrix::from_fn(net.input.width, bsz, |r, b| rows[i * bsz + b][r])
            }
        }
    }

    /// Checks that sample indices 0..samples have rows of the input width.
    pub fn check(&self, net: &Network, samples: usize) -> Result<()> {
        if let GivenInputs::Rows(rows) = self {
            let avail = given_samples(net, rows.len());
            if samples > avail {
                return Err(Error::param(
                    "--samples",
                    samples,
                    format!(
                        "at most {avail} ({} input rows in batches of {})",
                        rows.len(),
                        net.input.batch
                    ),
                ));
            }
            if let Some((i, r)) = rows
                .iter()
                .enumerate()
                .find(|(_, r)| r.len() != net.input.width)
            {
                return Err(Error::Architecture(format!(
                    "input row {} has {} values, the network's input width is {}",
                    i + 1,
                    r.len(),
                    net.input.width
                )));
            }
        }
        Ok(())
    }
}

/// The number of samples `GivenInputs::Rows` supports: whole batches of rows.
pub fn given_samples(net: &Network, rows: usize) -> usize {
    rows / net.input.batch.max(1)
}

/// Checks that `params` has the structure and shapes `net` implies (as `draw_params` would give).
pub fn check_params(net: &Network, params: &NetParams) -> Result<()> {
    fn ops_ok(ops: &[crate::arch::Op], ps: &[OpParams], mut n: usize) -> Option<usize> {
        use crate::arch::Op;
        if ops.len() != ps.len() {
            return None;
        }
        for (op, p) in ops.iter().zip(ps) {
            match (op, p) {
                (Op::Dense(d), OpParams::Dense { w, b })
                    if w.shape() == (d.width, n) && b.len() == d.width =>
                {
                    n = d.width
                }
                (Op::Act(_), OpParams::None) => {}
                (Op::LayerNorm { .. } | Op::BatchNorm { .. }, OpParams::None) => {}
                (
                    Op::LayerNorm { .. } | Op::BatchNorm { .. },
                    OpParams::Norm {
                        scale,
                        shift,
                        running_mean,
                        running_var,
                    },
                ) if scale.len() == n
                    && shift.len() == n
                    && running_mean.as_ref().is_none_or(|v| v.len() == n)
                    && running_var.as_ref().is_none_or(|v| v.len() == n) => {}
                (Op::Residual(r), OpParams::Residual { skip, branch })
                    if skip.as_ref().is_none_or(|q| q.shape() == (n, n))
                        && skip.is_some() == (r.skip == crate::arch::Skip::Orthogonal) =>
                {
                    ops_ok(&r.branch, branch, n)?;
                }
                _ => return None,
            }
        }
        Some(n)
    }
    if params.len() != net.depth() {
        return Err(Error::Architecture(format!(
            "{} layers of parameters for a network of depth {}",
            params.len(),
            net.depth()
        )));
    }
    let mut n = net.input.width;
    for (l, (layer, lp)) in net.layers.iter().zip(params).enumerate() {
        n = ops_ok(&layer.ops, lp, n).ok_or_else(|| {
            Error::Architecture(format!(
                "layer {}: the parameters do not match its ops and widths",
                l + 1
            ))
        })?;
    }
    Ok(())
}

/// Measures a given network: every sample uses `params` (say, loaded from a checkpoint or trained) and
/// only the inputs vary. With `GivenInputs::Rows` sample i is the i-th batch of rows in order and
/// `opts.samples` must not exceed the batches available. Same aggregation as [`simulate`]; thread-count
/// independent in the same way.
pub fn simulate_given(
    net: &Network,
    params: &NetParams,
    inputs: GivenInputs,
    opts: &McOptions,
    progress: &(dyn Fn(usize) + Sync),
) -> Result<Measurement> {
    net.validate()?;
    check_params(net, params)?;
    if opts.samples == 0 {
        return Err(Error::param("--samples", 0, "an integer >= 1"));
    }
    if let Some(p) = opts.estimator.probes() {
        if p < 2 {
            return Err(Error::param("--probes", p, "an integer >= 2"));
        }
    }
    let bsz = net.input.batch;
    if let GivenInputs::Rows(rows) = inputs {
        let avail = given_samples(net, rows.len());
        if opts.samples > avail {
            return Err(Error::param(
                "--samples",
                opts.samples,
                format!(
                    "at most {avail} ({} input rows in batches of {bsz})",
                    rows.len()
                ),
            ));
        }
        if let Some((i, r)) = rows
            .iter()
            .enumerate()
            .find(|(_, r)| r.len() != net.input.width)
        {
            return Err(Error::Architecture(format!(
                "input row {} has {} values, the network's input width is {}",
                i + 1,
                r.len(),
                net.input.width
            )));
        }
    }
    let done = std::sync::atomic::AtomicUsize::new(0);
    let outcomes: Vec<SampleOutcome> = (0..opts.samples)
        .into_par_iter()
        .map(|i| {
            let mut rng = sample_rng(opts.seed, i as u64);
            let x = match inputs {
                GivenInputs::Drawn => draw_input(net, &mut rng),
                GivenInputs::Rows(rows) => {
                    nalgebra::DMatrix::from_fn(net.input.width, bsz, |r, b| rows[i * bsz + b][r])
                }
            };
            let trace = forward_rescaled(net, params, x);
            let out = outcome(net, params, &trace, opts.estimator, &mut rng);
            let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            progress(n);
            out
        })
        .collect();
    Ok(aggregate(net, opts, &outcomes))
}

fn aggregate(net: &Network, opts: &McOptions, outcomes: &[SampleOutcome]) -> Measurement {
    let good: Vec<&SampleOutcome> = outcomes.iter().filter(|o| o.usable()).collect();
    let widths = net.widths();
    let depth = net.depth();
    let column =
        |f: &dyn Fn(&SampleOutcome) -> f64| -> Vec<f64> { good.iter().map(|o| f(o)).collect() };
    let summarise =
        |f: &dyn Fn(&SampleOutcome) -> f64| Summary::of(&column(f)).unwrap_or(Summary::EMPTY);
    let layers = (0..=depth)
        .map(|l| LayerMeasurement {
            index: l,
            width: widths[l],
            sq_norm: Summary::of_exp(&column(&|o| o.log_sq_norm[l])).unwrap_or(Summary::EMPTY),
            log_sq_norm: summarise(&|o| o.log_sq_norm[l]),
            log_gsc_to_output: summarise(&|o| o.log_gsc_to_output[l]),
            log_gsc_from_input: summarise(&|o| o.log_gsc_from_input[l]),
        })
        .collect();
    Measurement {
        samples: outcomes.len(),
        degenerate: outcomes.iter().filter(|o| o.degenerate).count(),
        overflow: outcomes.iter().filter(|o| o.overflow).count(),
        seed: opts.seed,
        estimator: opts.estimator,
        layers,
        log_gsc_total: column(&|o| o.log_gsc_to_output[0]),
        log_gsc_to_output_samples: (0..=depth)
            .map(|l| column(&|o| o.log_gsc_to_output[l]))
            .collect(),
        probe_var_to_output: (0..=depth)
            .map(|l| {
                let v = column(&|o| o.probe_var_to_output[l]);
                v.iter().sum::<f64>() / v.len().max(1) as f64
            })
            .collect(),
        log_sq_norm_samples: (0..=depth).map(|l| column(&|o| o.log_sq_norm[l])).collect(),
    }
}
