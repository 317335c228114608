//! What one sample costs: the matrix-product flops (for GFLOP/s reports) and the bytes held at once (to
//! bound how many samples run side by side). Counts follow `sample.rs`: a forward pass over the batch,
//! then `jvp` and `vjp` over the Jacobian's blocks (theory/cost.md).

use super::sample::jacobian_batch;
use super::Estimator;
use crate::arch::{Network, Op, Skip};

/// Multiply-adds are counted as 2 flops; only dense and orthogonal-skip products are counted (the
/// element-wise work is O(n) per column against their O(n^2)).
fn ops_flops(ops: &[Op], n_in: usize, cols: f64, total: &mut f64) -> usize {
    let mut n = n_in;
    for op in ops {
        match op {
            Op::Dense(d) => {
                *total += 2.0 * d.width as f64 * n as f64 * cols;
                n = d.width;
            }
            Op::Residual(r) => {
                if r.skip == Skip::Orthogonal {
                    *total += 2.0 * (n * n) as f64 * cols;
                }
                ops_flops(&r.branch, n, cols, total);
            }
            _ => {}
        }
    }
    n
}

fn pass_flops(net: &Network, cols: f64) -> f64 {
    let mut total = 0.0;
    let mut n = net.input.width;
    for layer in &net.layers {
        n = ops_flops(&layer.ops, n, cols, &mut total);
    }
    total
}

/// Columns pushed through the network per Jacobian pass: B_J blocks of n_0 B_J (exact, forward),
/// n_L B_J (exact, backward) or P (probes) columns each.
fn jacobian_columns(net: &Network, estimator: Estimator) -> (f64, f64) {
    let bj = jacobian_batch(net) as f64;
    let n0 = net.input.width as f64;
    let nl = *net.widths().last().expect("validated") as f64;
    match estimator {
        Estimator::Exact => (bj * bj * n0, bj * bj * nl),
        Estimator::Probes(p) | Estimator::GaussianProbes(p) => (bj * p as f64, bj * p as f64),
    }
}

/// Matrix-product flops of one sample: forward pass, forward-mode and reverse-mode Jacobian passes.
pub fn flops_per_sample(net: &Network, estimator: Estimator) -> f64 {
    let (fwd, bwd) = jacobian_columns(net, estimator);
    pass_flops(net, net.input.batch as f64) + pass_flops(net, fwd) + pass_flops(net, bwd)
}

/// Parameter entries of `ops` (dense weights and biases, orthogonal skips); returns the output width.
fn ops_params(ops: &[Op], n_in: usize, total: &mut f64) -> usize {
    let mut n = n_in;
    for op in ops {
        match op {
            Op::Dense(d) => {
                *total += (d.width as f64 + 1.0) * n as f64;
                n = d.width;
            }
            Op::Residual(r) => {
                if r.skip == Skip::Orthogonal {
                    *total += (n * n) as f64;
                }
                ops_params(&r.branch, n, total);
            }
            _ => {}
        }
    }
    n
}

/// Random draws of one sample: every parameter entry (a wide network's probe estimate is bound by these,
/// not by its products: theory/cost.md).
pub fn draws_per_sample(net: &Network) -> f64 {
    let mut total = 0.0;
    let mut n = net.input.width;
    for layer in &net.layers {
        n = ops_params(&layer.ops, n, &mut total);
    }
    total + (net.input.width * net.input.batch) as f64
}

/// Bytes one sample holds at its peak: every op's parameters (reverse mode needs them all), the forward
/// trace, and a few Jacobian blocks of the widest layer.
pub fn bytes_per_sample(net: &Network, estimator: Estimator) -> f64 {
    let mut total = 0.0;
    let mut n = net.input.width;
    let mut widest = n;
    let mut ops_count = 0usize;
    for layer in &net.layers {
        n = ops_params(&layer.ops, n, &mut total);
        widest = widest.max(n);
        ops_count += layer.ops.len();
    }
    total *= 8.0;
    let batch = net.input.batch as f64;
    // Outputs and caches (each at most two n x B matrices per op).
    total += 16.0 * batch * widest as f64 * (ops_count + net.depth()) as f64;
    let (fwd, bwd) = jacobian_columns(net, estimator);
    // Current blocks, the spare product buffer, and a residual branch's copy.
    total += 4.0 * 8.0 * widest as f64 * fwd.max(bwd);
    total
}
