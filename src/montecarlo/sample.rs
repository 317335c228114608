//! One sampled network: parameters, forward pass, and the two Jacobian families.

use super::ops::{gaussian_matrix, OpCache, OpParams, Sample};
use super::Estimator;
use crate::arch::{Network, Op};
use nalgebra::DMatrix;
use rand::Rng;
use rand_distr::StandardNormal;

/// Parameters of every op, layer by layer.
pub type NetParams = Vec<Vec<OpParams>>;

/// Draws every op's parameters in a fixed order (layer by layer, op by op).
pub fn draw_params(net: &Network, rng: &mut dyn rand::RngCore) -> NetParams {
    let mut n = net.input.width;
    net.layers
        .iter()
        .map(|layer| {
            layer
                .ops
                .iter()
                .map(|op| {
                    let p = op.draw(n, rng);
                    if let Op::Dense(d) = op {
                        n = d.width;
                    }
                    p
                })
                .collect()
        })
        .collect()
}

/// The input batch, n_0 x B: x_b = sqrt(c0) u + sqrt(1 - c0) e_b with u, e_b ~ N(0, I), each column
/// rescaled to ||x_b||^2 = n_0 (so pairwise correlations are c0 up to O(n_0^-1/2)).
pub fn draw_input(net: &Network, rng: &mut dyn rand::RngCore) -> DMatrix<f64> {
    let n = net.input.width;
    let bsz = net.input.batch;
    if let Some(d) = &net.input.data {
        // A batch of distinct vectors, drawn at random, used as they are (no rescaling).
        let idx = rand::seq::index::sample(rng, d.vectors.len(), bsz);
        return DMatrix::from_fn(n, bsz, |i, b| d.vectors[idx.index(b)][i]);
    }
    let c0 = net.input.correlation;
    let shared = gaussian_matrix(n, 1, 1.0, rng);
    let mut x = DMatrix::from_fn(n, bsz, |i, _| {
        let e: f64 = rng.sample(StandardNormal);
        c0.sqrt() * shared[(i, 0)] + (1.0 - c0).sqrt() * e
    });
    for mut col in x.column_iter_mut() {
        let norm = col.norm();
        if norm > 0.0 {
            col *= (n as f64).sqrt() / norm;
        }
    }
    x
}

/// A forward pass: every layer output f_l (n_l x B) and every op's cache. When `log_scale` is not all
/// zero, the stored output is f_l e^{-log_scale[l]} (see `forward_rescaled`).
pub struct Trace {
    pub outputs: Vec<DMatrix<f64>>,
    pub caches: Vec<Vec<OpCache>>,
    pub log_scale: Vec<f64>,
}

pub fn forward(net: &Network, params: &NetParams, x: DMatrix<f64>) -> Trace {
    run_forward(net, params, x, false)
}

/// Like `forward`, but a scale-equivariant net (`Network::scale_equivariant`) has each layer output
/// brought back towards unit size by a power of two whenever its squared norm leaves [2^-RANGE, 2^RANGE];
/// the factor is kept in `log_scale`. Powers of two are exact, so the trace is bit-identical to `forward`'s
/// whenever no rescaling was needed, and the Jacobians (degree-0 homogeneous) are those of the true net.
pub fn forward_rescaled(net: &Network, params: &NetParams, x: DMatrix<f64>) -> Trace {
    run_forward(net, params, x, net.scale_equivariant())
}

/// Squared norms beyond 2^+-RANGE are rescaled: far from the f64 limits (2^+-1022), with room for one
/// more layer's growth.
const RANGE: i32 = 400;

/// When the squared norm `sq` of `blocks` has left [2^-RANGE, 2^RANGE], divides them by the power of two
/// 2^k that brings it back near 1 (exact in floating point) and returns k; otherwise returns 0.
pub(crate) fn rescale(blocks: &mut [DMatrix<f64>], sq: f64) -> i32 {
    if !(sq > 0.0 && sq.is_finite()) || sq.log2().abs() <= RANGE as f64 {
        return 0;
    }
    let k = (sq.log2() / 2.0).round() as i32;
    let factor = 2f64.powi(-k);
    for m in blocks.iter_mut() {
        *m *= factor;
    }
    k
}

fn run_forward(net: &Network, params: &NetParams, x: DMatrix<f64>, rescaled: bool) -> Trace {
    let mut outputs = vec![x];
    let mut caches = Vec::with_capacity(net.depth());
    let mut log_scale = vec![0.0; net.depth() + 1];
    let mut k_total = 0i64;
    for (l, (layer, lp)) in net.layers.iter().zip(params).enumerate() {
        let mut h = outputs.last().expect("input").clone();
        let mut lc = Vec::with_capacity(layer.ops.len());
        for (op, p) in layer.ops.iter().zip(lp) {
            let (out, c) = op.forward(p, &h);
            h = out;
            lc.push(c);
        }
        if rescaled {
            let sq = h.norm_squared();
            k_total += rescale(std::slice::from_mut(&mut h), sq) as i64;
        }
        log_scale[l + 1] = k_total as f64 * std::f64::consts::LN_2;
        outputs.push(h);
        caches.push(lc);
    }
    Trace {
        outputs,
        caches,
        log_scale,
    }
}

/// Logs of the squared Frobenius norms of the two Jacobian families, over the batch map that the GSC is
/// defined on (the first input alone, or the whole batch when the network has batch norm):
/// `log_from_input[k] = ln ||d f_k / d f_0||_F^2` and `log_to_output[l] = ln ||d f_L / d f_l||_F^2`
/// (-inf when a Jacobian vanishes). With probes, the norms are unbiased estimates, and `*_rel_var` holds
/// the estimated relative variance of each estimate (for the log-bias correction). The tangents are
/// rescaled by powers of two on the way (exact), so a product of many layers never overflows.
pub struct JacobianNorms {
    pub log_from_input: Vec<f64>,
    pub log_to_output: Vec<f64>,
    pub from_input_rel_var: Vec<f64>,
    pub to_output_rel_var: Vec<f64>,
}

/// Number of batch elements the Jacobian is taken over.
pub fn jacobian_batch(net: &Network) -> usize {
    if net.batch_coupled() {
        net.input.batch
    } else {
        1
    }
}

fn start_blocks(
    n: usize,
    bj: usize,
    estimator: Estimator,
    rng: &mut dyn rand::RngCore,
) -> Vec<DMatrix<f64>> {
    match estimator {
        // Direction (j, b') of the batch map: identity block at columns b' n .. (b'+1) n of element b'.
        Estimator::Exact => (0..bj)
            .map(|b| {
                let mut m = DMatrix::zeros(n, n * bj);
                for j in 0..n {
                    m[(j, b * n + j)] = 1.0;
                }
                m
            })
            .collect(),
        Estimator::Probes(_) | Estimator::GaussianProbes(_) => {
            super::probe_blocks(n, bj, estimator, rng)
        }
    }
}

/// Sum of squares with eight partial sums, so it vectorises (a single running sum cannot be reordered).
fn sum_squares(v: &[f64]) -> f64 {
    let mut acc = [0.0; 8];
    let mut chunks = v.chunks_exact(8);
    for c in &mut chunks {
        for j in 0..8 {
            acc[j] += c[j] * c[j];
        }
    }
    let tail: f64 = chunks.remainder().iter().map(|x| x * x).sum();
    acc.iter().sum::<f64>() + tail
}

/// ||sum_b T_b||_F^2 and, for probes, the relative variance of the probe average.
fn frob(blocks: &[DMatrix<f64>], estimator: Estimator) -> (f64, f64) {
    match estimator {
        Estimator::Exact => (blocks.iter().map(|m| sum_squares(m.as_slice())).sum(), 0.0),
        Estimator::Probes(p) | Estimator::GaussianProbes(p) => {
            let per: Vec<f64> = (0..p)
                .map(|c| blocks.iter().map(|m| m.column(c).norm_squared()).sum())
                .collect();
            let mean = per.iter().sum::<f64>() / p as f64;
            let var = per.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (p - 1) as f64;
            let rel = if mean > 0.0 {
                var / (p as f64 * mean * mean)
            } else {
                0.0
            };
            (mean, rel)
        }
    }
}

/// Records ln ||blocks||_F^2 (with the scale removed so far) and rescales the blocks when they have left
/// [2^-RANGE, 2^RANGE].
fn record(
    blocks: &mut [DMatrix<f64>],
    estimator: Estimator,
    k_total: &mut i64,
    log: &mut f64,
    rel_var: &mut f64,
) {
    let (f, rv) = frob(blocks, estimator);
    *log = f.ln() + 2.0 * *k_total as f64 * std::f64::consts::LN_2;
    *rel_var = rv;
    *k_total += rescale(blocks, f) as i64;
}

pub fn jacobian_norms(
    net: &Network,
    params: &NetParams,
    trace: &Trace,
    estimator: Estimator,
    rng: &mut dyn rand::RngCore,
) -> JacobianNorms {
    let bj = jacobian_batch(net);
    let depth = net.depth();
    let widths = net.widths();
    let mut log_from_input = vec![0.0; depth + 1];
    let mut from_input_rel_var = vec![0.0; depth + 1];
    let mut k_total = 0;
    let mut t = start_blocks(widths[0], bj, estimator, rng);
    record(
        &mut t,
        estimator,
        &mut k_total,
        &mut log_from_input[0],
        &mut from_input_rel_var[0],
    );
    for l in 0..depth {
        for ((op, p), c) in net.layers[l]
            .ops
            .iter()
            .zip(&params[l])
            .zip(&trace.caches[l])
        {
            t = op.jvp(p, c, t);
        }
        record(
            &mut t,
            estimator,
            &mut k_total,
            &mut log_from_input[l + 1],
            &mut from_input_rel_var[l + 1],
        );
    }
    let mut log_to_output = vec![0.0; depth + 1];
    let mut to_output_rel_var = vec![0.0; depth + 1];
    let mut k_total = 0;
    let mut a = start_blocks(widths[depth], bj, estimator, rng);
    record(
        &mut a,
        estimator,
        &mut k_total,
        &mut log_to_output[depth],
        &mut to_output_rel_var[depth],
    );
    for l in (0..depth).rev() {
        for ((op, p), c) in net.layers[l]
            .ops
            .iter()
            .zip(&params[l])
            .zip(&trace.caches[l])
            .rev()
        {
            a = op.vjp(p, c, a);
        }
        record(
            &mut a,
            estimator,
            &mut k_total,
            &mut log_to_output[l],
            &mut to_output_rel_var[l],
        );
    }
    JacobianNorms {
        log_from_input,
        log_to_output,
        from_input_rel_var,
        to_output_rel_var,
    }
}

/// Everything measured on one sampled network.
#[derive(Clone, Debug)]
pub struct SampleOutcome {
    /// ln(||f_l||^2 / (n_l B_J)) over the Jacobian's batch (B_J = 1 unless the net has batch norm).
    pub log_sq_norm: Vec<f64>,
    pub log_gsc_to_output: Vec<f64>,
    pub log_gsc_from_input: Vec<f64>,
    /// The probe estimator's own variance in ln GSC(L, l) (a quarter of the estimated relative variance of
    /// the probe average; 0 for exact Jacobians): part of the spread of `log_gsc_to_output` across samples.
    pub probe_var_to_output: Vec<f64>,
    /// Some layer output or Jacobian vanished exactly: the GSC is 0/0 and the sample is excluded.
    pub degenerate: bool,
    /// Some layer output left the f64 range (inf or NaN) in a net that cannot be rescaled exactly
    /// (biases, smooth nonlinearities, norm layers): the sample is excluded.
    pub overflow: bool,
}

impl SampleOutcome {
    /// Whether the sample's GSC is defined and measured.
    pub fn usable(&self) -> bool {
        !self.degenerate && !self.overflow
    }
}

/// ln GSC from logs of squared norms: 0.5 (ln ||J||_F^2 - ln dim f_l + ln ||f_l||^2 - ln ||f_k||^2), with
/// the probe estimate's second-order log bias, -rel_var/2, added back.
fn log_gsc(log_jac2: f64, rel_var: f64, dim_l: f64, log_norm2_l: f64, log_norm2_k: f64) -> f64 {
    0.5 * (log_jac2 + 0.5 * rel_var - dim_l.ln() + log_norm2_l - log_norm2_k)
}

/// Runs one sample: parameters, input, forward pass (rescaled when exact), Jacobian norms, GSC.
pub fn run_sample(
    net: &Network,
    rng: &mut dyn rand::RngCore,
    estimator: Estimator,
) -> SampleOutcome {
    let params = draw_params(net, rng);
    let x = draw_input(net, rng);
    let trace = forward_rescaled(net, &params, x);
    outcome(net, &params, &trace, estimator, rng)
}

/// GSC and norms from a forward trace (also used by the fixture tests, with given weights).
pub fn outcome(
    net: &Network,
    params: &NetParams,
    trace: &Trace,
    estimator: Estimator,
    rng: &mut dyn rand::RngCore,
) -> SampleOutcome {
    let bj = jacobian_batch(net);
    let depth = net.depth();
    let stored: Vec<f64> = trace
        .outputs
        .iter()
        .map(|f| f.columns(0, bj).norm_squared())
        .collect();
    let log_norm2: Vec<f64> = stored
        .iter()
        .zip(&trace.log_scale)
        .map(|(v, s)| v.ln() + 2.0 * s)
        .collect();
    let dims: Vec<f64> = trace
        .outputs
        .iter()
        .map(|f| (f.nrows() * bj) as f64)
        .collect();
    let j = jacobian_norms(net, params, trace, estimator, rng);
    let all = || {
        log_norm2
            .iter()
            .chain(&j.log_from_input)
            .chain(&j.log_to_output)
    };
    // An inf or NaN in the columns the GSC is taken over shows in their squared norm.
    let overflow = all().any(|v| v.is_nan() || *v == f64::INFINITY);
    let degenerate = !overflow && all().any(|&v| v == f64::NEG_INFINITY);
    let log_gsc_from_input = (0..=depth)
        .map(|k| {
            log_gsc(
                j.log_from_input[k],
                j.from_input_rel_var[k],
                dims[0],
                log_norm2[0],
                log_norm2[k],
            )
        })
        .collect();
    let log_gsc_to_output = (0..=depth)
        .map(|l| {
            log_gsc(
                j.log_to_output[l],
                j.to_output_rel_var[l],
                dims[l],
                log_norm2[l],
                log_norm2[depth],
            )
        })
        .collect();
    SampleOutcome {
        log_sq_norm: log_norm2
            .iter()
            .zip(&dims)
            .map(|(v, d)| v - d.ln())
            .collect(),
        log_gsc_to_output,
        log_gsc_from_input,
        probe_var_to_output: j.to_output_rel_var.iter().map(|v| 0.25 * v).collect(),
        degenerate,
        overflow,
    }
}
