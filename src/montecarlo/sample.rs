//! One sampled network: parameters, forward pass, and the two Jacobian families.

use super::kernel;
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
            probe_mean_and_rel_var(&per)
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

/// Whether every layer is [Dense, Act] and the Jacobian is over one input: then each layer's Jacobian is
/// one matrix M_l = D_l W_l (D_l = phi'(h_l) of the first input), and `dense_act_norms` applies it.
fn dense_act_layers(net: &Network) -> bool {
    jacobian_batch(net) == 1
        && net
            .layers
            .iter()
            .all(|l| matches!(l.ops.as_slice(), [Op::Dense(_), Op::Act(_)]))
}

/// A [Dense, Act] layer's weights W (n_out x n_in) and phi' at the first input (n_out).
fn dense_act<'a>(params: &'a [OpParams], cache: &'a [OpCache]) -> (&'a DMatrix<f64>, &'a [f64]) {
    let (OpParams::Dense { w, .. }, OpCache::Act(d)) = (&params[0], &cache[1]) else {
        unreachable!("a [Dense, Act] layer's parameters and cache")
    };
    (w, &d.as_slice()[..w.nrows()])
}

/// `jacobian_norms` for [Dense, Act] nets, where each layer's Jacobian is M_l = D_l W_l. Forward mode:
/// T_{l+1} = D_l (W_l T_l), phi' applied as the product's rows are stored. Reverse mode keeps the adjoint
/// transposed, S_l = A_l^T (P x n_l): A_l = W_l^T D_l A_{l+1} becomes S_l = (S_{l+1} D_l) W_l. So both
/// products read W_l where it lies (kernel.rs: columns as vectors forward, entries broadcast in reverse),
/// with no transposed copy; each product prefetches the next layer's weights.
fn dense_act_norms(
    net: &Network,
    params: &NetParams,
    trace: &Trace,
    estimator: Estimator,
    rng: &mut dyn rand::RngCore,
) -> JacobianNorms {
    let depth = net.depth();
    let widths = net.widths();
    let weights = |l: usize| dense_act(&params[l], &trace.caches[l]);
    let mut log_from_input = vec![0.0; depth + 1];
    let mut from_input_rel_var = vec![0.0; depth + 1];
    let mut k_total = 0;
    let mut t = start_blocks(widths[0], 1, estimator, rng);
    let cols = t[0].ncols();
    let mut spare = DMatrix::zeros(0, 0);
    record(
        &mut t,
        estimator,
        &mut k_total,
        &mut log_from_input[0],
        &mut from_input_rel_var[0],
    );
    for l in 0..depth {
        let (w, d) = weights(l);
        let (r, c) = w.shape();
        if spare.shape() != (r, cols) {
            spare = DMatrix::zeros(r, cols);
        }
        let next = if l + 1 < depth {
            weights(l + 1).0.as_slice()
        } else {
            &[]
        };
        kernel::matmul_with(
            kernel::isa(),
            r,
            cols,
            c,
            w.as_slice(),
            r,
            t[0].as_slice(),
            c,
            spare.as_mut_slice(),
            r,
            kernel::Extra {
                row_scale: Some(d),
                prefetch: next,
            },
        );
        std::mem::swap(&mut t[0], &mut spare);
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
    let mut s = start_blocks(widths[depth], 1, estimator, rng)[0].transpose();
    let rows = s.nrows();
    record_transposed(
        &mut s,
        estimator,
        &mut k_total,
        &mut log_to_output[depth],
        &mut to_output_rel_var[depth],
    );
    for l in (0..depth).rev() {
        let (w, d) = weights(l);
        let (r, c) = w.shape();
        // S D: column i of S times phi'_i.
        for (col, f) in s.as_mut_slice().chunks_exact_mut(rows).zip(d) {
            for x in col {
                *x *= f;
            }
        }
        if spare.shape() != (rows, c) {
            spare = DMatrix::zeros(rows, c);
        }
        let next = if l > 0 {
            weights(l - 1).0.as_slice()
        } else {
            &[]
        };
        kernel::matmul_with(
            kernel::isa(),
            rows,
            c,
            r,
            s.as_slice(),
            rows,
            w.as_slice(),
            r,
            spare.as_mut_slice(),
            rows,
            kernel::Extra {
                row_scale: None,
                prefetch: next,
            },
        );
        std::mem::swap(&mut s, &mut spare);
        record_transposed(
            &mut s,
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

/// `record` for a transposed block (probe directions in rows).
fn record_transposed(
    s: &mut DMatrix<f64>,
    estimator: Estimator,
    k_total: &mut i64,
    log: &mut f64,
    rel_var: &mut f64,
) {
    let (f, rv) = match estimator {
        Estimator::Exact => (sum_squares(s.as_slice()), 0.0),
        Estimator::Probes(p) | Estimator::GaussianProbes(p) => {
            let mut per = vec![0.0; p];
            for col in s.as_slice().chunks_exact(p) {
                for (acc, x) in per.iter_mut().zip(col) {
                    *acc += x * x;
                }
            }
            probe_mean_and_rel_var(&per)
        }
    };
    *log = f.ln() + 2.0 * *k_total as f64 * std::f64::consts::LN_2;
    *rel_var = rv;
    *k_total += rescale(std::slice::from_mut(s), f) as i64;
}

/// Mean of the per-probe squared norms and the relative variance of that mean.
fn probe_mean_and_rel_var(per: &[f64]) -> (f64, f64) {
    let p = per.len();
    let mean = per.iter().sum::<f64>() / p as f64;
    let var = per.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (p - 1) as f64;
    let rel = if mean > 0.0 {
        var / (p as f64 * mean * mean)
    } else {
        0.0
    };
    (mean, rel)
}

/// Doubles of tangent held per column panel (512 KB: a panel and its product stay in L2).
const PANEL_DOUBLES: usize = 1 << 16;

/// Widest layer for which the generic path cuts the columns into panels: beyond it one panel's products
/// would re-read weights larger than L2 for little work, and whole-block products can split over threads.
const PANEL_MAX_WIDTH: usize = 256;

/// One layer's Jacobian (`reverse`: its transpose) applied to the blocks, op by op.
fn apply_layer(
    ops: &[Op],
    params: &[OpParams],
    caches: &[OpCache],
    mut x: Vec<DMatrix<f64>>,
    reverse: bool,
) -> Vec<DMatrix<f64>> {
    if reverse {
        for ((op, p), c) in ops.iter().zip(params).zip(caches).rev() {
            x = op.vjp(p, c, x);
        }
    } else {
        for ((op, p), c) in ops.iter().zip(params).zip(caches) {
            x = op.jvp(p, c, x);
        }
    }
    x
}

/// What one panel's pass leaves per layer: ln of its squared norm (exact) or of each column's (probes),
/// with the panel's own power-of-two rescaling taken out.
enum PanelLog {
    Total(f64),
    Columns(Vec<f64>),
}

fn panel_log(x: &[DMatrix<f64>], estimator: Estimator, k_total: i64) -> (PanelLog, f64) {
    let shift = 2.0 * k_total as f64 * std::f64::consts::LN_2;
    let total: f64 = x.iter().map(|m| sum_squares(m.as_slice())).sum();
    let log = match estimator {
        Estimator::Exact => PanelLog::Total(total.ln() + shift),
        _ => {
            let n = x[0].nrows();
            let mut per = vec![0.0; x[0].ncols()];
            for m in x {
                for (acc, col) in per.iter_mut().zip(m.as_slice().chunks_exact(n)) {
                    *acc += col.iter().map(|v| v * v).sum::<f64>();
                }
            }
            PanelLog::Columns(per.iter().map(|v| v.ln() + shift).collect())
        }
    };
    (log, total)
}

/// ln of sum_i e^{v_i}, with NaN and +inf passed through (the overflow checks read them).
fn log_sum_exp(v: &[f64]) -> f64 {
    if v.len() == 1 {
        return v[0];
    }
    if v.iter().any(|x| x.is_nan()) {
        return f64::NAN;
    }
    let m = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !m.is_finite() {
        return m;
    }
    m + v.iter().map(|x| (x - m).exp()).sum::<f64>().ln()
}

/// One Jacobian family: `start` pushed through the layers (forward, recorded at 0..=depth, or
/// `reverse`, recorded at depth..=0), returning ln ||.||_F^2 and the probe relative variance per layer.
///
/// The columns are cut into panels that each go through every layer while they are in cache (every op
/// acts on each column, a direction, on its own): a batch-norm net's blocks are B blocks of n x nB
/// columns (20 MB at n = 100, B = 16), and layer-by-layer passes over them were bound by memory, not by
/// the products (theory/cost.md). Each panel rescales by its own powers of two; the per-layer logs are
/// combined exactly in log space.
fn family(
    net: &Network,
    params: &NetParams,
    trace: &Trace,
    estimator: Estimator,
    mut start: Vec<DMatrix<f64>>,
    reverse: bool,
    panel_doubles: usize,
) -> (Vec<f64>, Vec<f64>) {
    let depth = net.depth();
    let widest = net.widths().into_iter().max().unwrap_or(1).max(1);
    let (n0, cols) = start[0].shape();
    let width = (panel_doubles / (start.len() * widest)) / 8 * 8;
    let width = if widest > PANEL_MAX_WIDTH || width == 0 {
        cols
    } else {
        width.min(cols).max(1)
    };
    let mut logs: Vec<Vec<PanelLog>> = (0..=depth).map(|_| Vec::new()).collect();
    let order: Vec<usize> = if reverse {
        (0..depth).rev().collect()
    } else {
        (0..depth).collect()
    };
    let first = if reverse { depth } else { 0 };
    for c0 in (0..cols).step_by(width) {
        let w = width.min(cols - c0);
        // One panel spanning every column: the loop runs once, so the start blocks are moved, not copied.
        let mut x: Vec<DMatrix<f64>> = if w == cols {
            std::mem::take(&mut start)
        } else {
            start
                .iter()
                .map(|m| DMatrix::from_column_slice(n0, w, &m.as_slice()[c0 * n0..(c0 + w) * n0]))
                .collect()
        };
        let mut k_total = 0i64;
        let (log, total) = panel_log(&x, estimator, k_total);
        logs[first].push(log);
        k_total += rescale(&mut x, total) as i64;
        for &l in &order {
            x = apply_layer(&net.layers[l].ops, &params[l], &trace.caches[l], x, reverse);
            let (log, total) = panel_log(&x, estimator, k_total);
            logs[if reverse { l } else { l + 1 }].push(log);
            k_total += rescale(&mut x, total) as i64;
        }
    }
    logs.into_iter()
        .map(|panels| match estimator {
            Estimator::Exact => {
                let v: Vec<f64> = panels
                    .iter()
                    .map(|p| match p {
                        PanelLog::Total(t) => *t,
                        PanelLog::Columns(_) => unreachable!("exact panels log totals"),
                    })
                    .collect();
                (log_sum_exp(&v), 0.0)
            }
            _ => {
                let v: Vec<f64> = panels
                    .into_iter()
                    .flat_map(|p| match p {
                        PanelLog::Columns(c) => c,
                        PanelLog::Total(_) => unreachable!("probe panels log columns"),
                    })
                    .collect();
                if v.iter().any(|x| x.is_nan()) {
                    return (f64::NAN, 0.0);
                }
                let m = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                if !m.is_finite() {
                    return (m, 0.0);
                }
                let vals: Vec<f64> = v.iter().map(|x| (x - m).exp()).collect();
                let (mean, rel) = probe_mean_and_rel_var(&vals);
                (m + mean.ln(), rel)
            }
        })
        .unzip()
}

pub fn jacobian_norms(
    net: &Network,
    params: &NetParams,
    trace: &Trace,
    estimator: Estimator,
    rng: &mut dyn rand::RngCore,
) -> JacobianNorms {
    if dense_act_layers(net) {
        return dense_act_norms(net, params, trace, estimator, rng);
    }
    let bj = jacobian_batch(net);
    let widths = net.widths();
    let t = start_blocks(widths[0], bj, estimator, rng);
    let (log_from_input, from_input_rel_var) =
        family(net, params, trace, estimator, t, false, PANEL_DOUBLES);
    let a = start_blocks(widths[net.depth()], bj, estimator, rng);
    let (log_to_output, to_output_rel_var) =
        family(net, params, trace, estimator, a, true, PANEL_DOUBLES);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::Op;
    use crate::Nonlinearity;
    use rand::SeedableRng;

    fn setup(net: &Network, seed: u64) -> (NetParams, Trace) {
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(seed);
        let params = draw_params(net, &mut rng);
        let x = draw_input(net, &mut rng);
        let trace = forward_rescaled(net, &params, x);
        (params, trace)
    }

    fn close(a: &[f64], b: &[f64], what: &str) {
        for (l, (x, y)) in a.iter().zip(b).enumerate() {
            // Different summation orders of the same sums of squares: a few ulps of ln.
            assert!(
                (x - y).abs() <= 1e-12 * x.abs().max(1.0),
                "{what} layer {l}: {x} vs {y}"
            );
        }
    }

    /// A batch-norm net (B = 6, width 12: 72 columns per block) cut into 9 panels of 8 columns gives the
    /// same Jacobian norms as whole blocks, exact and with probes, both families.
    #[test]
    fn panels_give_the_norms_of_whole_blocks() {
        let net = Network::stack(
            12,
            6,
            4,
            vec![
                Op::dense(12, 2.0, 0.0),
                Op::BatchNorm { eps: 1e-5 },
                Op::Act(Nonlinearity::Tanh),
            ],
        );
        let (params, trace) = setup(&net, 3);
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(4);
        for est in [Estimator::Exact, Estimator::Probes(40)] {
            let start = start_blocks(12, 6, est, &mut rng);
            for reverse in [false, true] {
                let whole = family(&net, &params, &trace, est, start.clone(), reverse, 1 << 30);
                let cut = family(
                    &net,
                    &params,
                    &trace,
                    est,
                    start.clone(),
                    reverse,
                    6 * 12 * 8,
                );
                close(&whole.0, &cut.0, "log");
                close(&whole.1, &cut.1, "rel var");
            }
        }
    }

    /// The fused [Dense, Act] path (phi' in the product's store, transposed adjoints) against the op-by-op
    /// path on an MLP of unequal widths 9 -> 17 -> 33 -> 5, exact and with probes.
    #[test]
    fn fused_dense_act_layers_match_the_op_by_op_path() {
        let net = Network::mlp_widths(9, &[17, 33, 5], Nonlinearity::Tanh, 1.5, 0.1).unwrap();
        assert!(dense_act_layers(&net));
        let (params, trace) = setup(&net, 7);
        for est in [Estimator::Exact, Estimator::Probes(11)] {
            let mut r1 = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(9);
            let mut r2 = r1.clone();
            let fused = dense_act_norms(&net, &params, &trace, est, &mut r1);
            let t = start_blocks(9, 1, est, &mut r2);
            let fwd = family(&net, &params, &trace, est, t, false, PANEL_DOUBLES);
            let a = start_blocks(5, 1, est, &mut r2);
            let bwd = family(&net, &params, &trace, est, a, true, PANEL_DOUBLES);
            close(&fused.log_from_input, &fwd.0, "from input");
            close(&fused.log_to_output, &bwd.0, "to output");
            close(&fused.from_input_rel_var, &fwd.1, "from input rel var");
            close(&fused.to_output_rel_var, &bwd.1, "to output rel var");
        }
    }

    /// Both paths give the same bits on 1 and 2 threads (samples spread over the pool). The batch-norm
    /// net (width 32, B = 16: 512 columns per block) runs in 4 panels.
    #[test]
    fn bits_do_not_depend_on_the_thread_count() {
        let bn = Network::stack(
            32,
            16,
            3,
            vec![
                Op::dense(32, 2.0, 0.0),
                Op::BatchNorm { eps: 1e-5 },
                Op::Act(Nonlinearity::Relu),
            ],
        );
        let mlp = Network::mlp_widths(40, &[40, 40], Nonlinearity::Tanh, 1.2, 0.0).unwrap();
        for net in [bn, mlp] {
            let opts = super::super::McOptions {
                samples: 6,
                seed: 2,
                estimator: Estimator::Exact,
            };
            let run = |threads| {
                rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap()
                    .install(|| super::super::simulate(&net, &opts).unwrap())
            };
            let (a, b) = (run(1), run(2));
            let bits = |m: &super::super::Measurement| -> Vec<u64> {
                m.log_gsc_to_output_samples
                    .iter()
                    .flatten()
                    .chain(&m.log_gsc_total)
                    .map(|v| v.to_bits())
                    .collect()
            };
            assert_eq!(bits(&a), bits(&b));
            for (la, lb) in a.layers.iter().zip(&b.layers) {
                assert_eq!(
                    la.log_gsc_from_input.mean.to_bits(),
                    lb.log_gsc_from_input.mean.to_bits()
                );
            }
        }
    }
}
