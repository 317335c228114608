//! Reverse mode for training: each op's input adjoint and parameter gradient for a minibatch, with the
//! adjoint stored n x B (one column per example). The op Jacobians are the Monte Carlo engine's (`Sample`:
//! forward, and the norm ops' transposed products `layer_norm_tangent` / `batch_norm_tangent`); what is
//! added here is the parameter side: dL/dW = A X^T and dL/db = A 1 for a dense op (one GEMM each way, not
//! B matrix-vector products), dL/dscale and dL/dshift for a norm's affine map.

use crate::arch::Op;
use crate::montecarlo::gemm;
use crate::montecarlo::{batch_norm_tangent, layer_norm_tangent, OpCache, OpParams, Sample};
use nalgebra::{DMatrix, DVector};

/// What the backward pass needs from one op's forward pass on a minibatch.
#[derive(Clone, Debug)]
pub struct Node {
    /// The op's input, n_in x B (a dense op's weight gradient needs it).
    pub input: DMatrix<f64>,
    pub cache: OpCache,
    /// Residual branch nodes.
    pub branch: Vec<Node>,
}

/// Forward through one op, keeping what backward needs. Non-residual ops run the engine's own forward.
pub fn forward_op(op: &Op, p: &OpParams, x: &DMatrix<f64>) -> (DMatrix<f64>, Node) {
    if let (Op::Residual(r), OpParams::Residual { skip, branch }) = (op, p) {
        let mut h = x.clone();
        let mut nodes = Vec::with_capacity(r.branch.len());
        for (bop, bp) in r.branch.iter().zip(branch) {
            let (out, node) = forward_op(bop, bp, &h);
            h = out;
            nodes.push(node);
        }
        let s = match skip {
            Some(q) => gemm::mul(q, false, x),
            None => x.clone(),
        };
        let node = Node {
            input: x.clone(),
            cache: OpCache::None,
            branch: nodes,
        };
        return (s + h * r.alpha, node);
    }
    let (y, cache) = op.forward(p, x);
    (
        y,
        Node {
            input: x.clone(),
            cache,
            branch: Vec::new(),
        },
    )
}

fn columns(a: &DMatrix<f64>) -> Vec<DMatrix<f64>> {
    a.column_iter()
        .map(|c| DMatrix::from_column_slice(c.len(), 1, c.as_slice()))
        .collect()
}

fn join(blocks: Vec<DMatrix<f64>>) -> DMatrix<f64> {
    let n = blocks.first().map_or(0, |b| b.nrows());
    let mut out = DMatrix::zeros(n, blocks.len());
    for (b, m) in blocks.iter().enumerate() {
        out.column_mut(b).copy_from(&m.column(0));
    }
    out
}

/// The gradient of an op's parameters in the shape of its `OpParams` (`None` for ops without trained
/// parameters; an orthogonal skip matrix is not trained: its gradient slot is `None`).
pub fn zero_like(p: &OpParams) -> OpParams {
    match p {
        OpParams::Dense { w, b } => OpParams::Dense {
            w: DMatrix::zeros(w.nrows(), w.ncols()),
            b: DVector::zeros(b.len()),
        },
        OpParams::Norm { scale, shift, .. } => OpParams::Norm {
            scale: DVector::zeros(scale.len()),
            shift: DVector::zeros(shift.len()),
            running_mean: None,
            running_var: None,
        },
        OpParams::None => OpParams::None,
        OpParams::Residual { branch, .. } => OpParams::Residual {
            skip: None,
            branch: branch.iter().map(zero_like).collect(),
        },
    }
}

/// Input adjoint and parameter gradient of one op, from the output adjoint `a` (n_out x B).
pub fn backward_op(
    op: &Op,
    p: &OpParams,
    node: &Node,
    a: DMatrix<f64>,
) -> (DMatrix<f64>, OpParams) {
    match (op, p, &node.cache) {
        (Op::Dense(_), OpParams::Dense { w, .. }, _) => {
            // dW = A X^T as (A^T)^T (X^T): one product of the engine's GEMM.
            let dw = gemm::mul(&a.transpose(), true, &node.input.transpose());
            let db = DVector::from_iterator(a.nrows(), a.row_iter().map(|r| r.sum()));
            (gemm::mul(w, true, &a), OpParams::Dense { w: dw, b: db })
        }
        (Op::Act(_), _, OpCache::Act(d)) => (a.component_mul(d), OpParams::None),
        (Op::LayerNorm { .. } | Op::BatchNorm { .. }, _, OpCache::Norm { y, inv_std }) => {
            let (ay, grad) = match p {
                OpParams::Norm { scale, .. } => {
                    let dscale = DVector::from_iterator(
                        a.nrows(),
                        (0..a.nrows()).map(|i| a.row(i).dot(&y.row(i))),
                    );
                    let dshift = DVector::from_iterator(a.nrows(), a.row_iter().map(|r| r.sum()));
                    let mut ay = a;
                    for mut col in ay.column_iter_mut() {
                        col.component_mul_assign(scale);
                    }
                    (
                        ay,
                        OpParams::Norm {
                            scale: dscale,
                            shift: dshift,
                            running_mean: None,
                            running_var: None,
                        },
                    )
                }
                _ => (a, OpParams::None),
            };
            // The engine's normalisation Jacobians act on per-example blocks; here each block is one column.
            let out = if matches!(op, Op::LayerNorm { .. }) {
                layer_norm_tangent(y, inv_std, columns(&ay))
            } else {
                batch_norm_tangent(y, inv_std, columns(&ay))
            };
            (join(out), grad)
        }
        (Op::Residual(r), OpParams::Residual { skip, branch }, _) => {
            let mut ab = &a * r.alpha;
            let mut grads = Vec::with_capacity(branch.len());
            for ((bop, bp), bn) in r.branch.iter().zip(branch).zip(&node.branch).rev() {
                let (prev, g) = backward_op(bop, bp, bn, ab);
                ab = prev;
                grads.push(g);
            }
            grads.reverse();
            let s = match skip {
                Some(q) => gemm::mul(q, true, &a),
                None => a,
            };
            (
                s + ab,
                OpParams::Residual {
                    skip: None,
                    branch: grads,
                },
            )
        }
        _ => unreachable!("a node from another op kind"),
    }
}
