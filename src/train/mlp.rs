//! The training step of a plain MLP (each layer one dense op, optionally followed by an activation), the
//! shape of every `train` and `bench` network without norms or residual branches. It computes what the
//! per-op path (`backward_op`) computes, in the same order of operations, without its per-op nodes: no copy
//! of each op's input, no transposed copies for the weight gradient (the product reads X^T as a strided
//! view), bias and activation applied in one pass after the product, the ReLU mask read from the stored
//! output instead of a stored derivative, the first layer's unused input gradient skipped, and the layer
//! buffers kept per thread from one step to the next.
//!
//! Every product is one single-threaded faer call whose shape depends on the network and batch only, so the
//! bits do not depend on the thread count; `tests/train.rs` checks the gradients against the per-op path
//! and against finite differences.

use super::{loss_and_adjoint, Loss};
use crate::arch::{Network, Op};
use crate::montecarlo::{NetParams, OpParams};
use crate::Nonlinearity;
use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};
use nalgebra::DMatrix;
use std::cell::RefCell;

/// The activation after each layer's dense op (`None`: a linear layer such as the readout), when every
/// layer of `net` is [dense] or [dense, act]; `None` for any other network.
pub fn plan(net: &Network) -> Option<Vec<Option<Nonlinearity>>> {
    net.layers
        .iter()
        .map(|l| match l.ops.as_slice() {
            [Op::Dense(_)] => Some(None),
            // phi'(x) = 1: the adjoint passes unchanged, as multiplying by 1 would leave it.
            [Op::Dense(_), Op::Act(Nonlinearity::Linear)] => Some(None),
            [Op::Dense(_), Op::Act(a)] => Some(Some(*a)),
            _ => None,
        })
        .collect()
}

/// Per layer: the layer's output (after the activation) and, for activations other than ReLU, phi' at
/// the pre-activation; plus the adjoint and its predecessor.
#[derive(Default)]
struct Work {
    out: Vec<Vec<f64>>,
    deriv: Vec<Vec<f64>>,
    g: Vec<f64>,
    g_prev: Vec<f64>,
}

thread_local! {
    /// Reused across steps: a depth-50 width-100 batch-128 step holds 5 MB of layer outputs, which
    /// re-allocated and zeroed every step cost a visible share of it.
    static WORK: RefCell<Work> = RefCell::new(Work::default());
}

fn mref(s: &[f64], r: usize, c: usize) -> MatRef<'_, f64> {
    MatRef::from_column_major_slice(s, r, c)
}

fn mmut(s: &mut [f64], r: usize, c: usize) -> MatMut<'_, f64> {
    MatMut::from_column_major_slice_mut(s, r, c)
}

fn dense(p: &[OpParams]) -> (&DMatrix<f64>, &[f64]) {
    match p.first() {
        Some(OpParams::Dense { w, b }) => (w, b.as_slice()),
        _ => unreachable!("plan() admits only layers that start with a dense op"),
    }
}

/// z = out + bias (per column), then out = phi(z) and deriv = phi'(z); one pass, the activation's kind
/// decided once per layer rather than per element.
fn bias_act(out: &mut [f64], deriv: &mut Vec<f64>, bias: &[f64], act: Option<Nonlinearity>) {
    let n = bias.len();
    match act {
        None => {
            for col in out.chunks_exact_mut(n) {
                for (v, b) in col.iter_mut().zip(bias) {
                    *v += b;
                }
            }
        }
        Some(Nonlinearity::Relu) => {
            for col in out.chunks_exact_mut(n) {
                for (v, b) in col.iter_mut().zip(bias) {
                    *v = (*v + b).max(0.0);
                }
            }
        }
        Some(a) => {
            deriv.resize(out.len(), 0.0);
            for (col, dcol) in out.chunks_exact_mut(n).zip(deriv.chunks_exact_mut(n)) {
                for ((v, d), b) in col.iter_mut().zip(dcol.iter_mut()).zip(bias) {
                    let z = *v + b;
                    *d = a.dphi(z);
                    *v = a.phi(z);
                }
            }
        }
    }
}

/// The adjoint through an activation: g * phi'(z). ReLU's phi'(z) is 1 where its output is > 0 and 0
/// elsewhere (at z = 0 and for a NaN z too, where max(z, 0) is 0), read from the stored output.
fn act_adjoint(g: &mut [f64], out: &[f64], deriv: &[f64], act: Option<Nonlinearity>) {
    match act {
        None => {}
        Some(Nonlinearity::Relu) => {
            for (v, h) in g.iter_mut().zip(out) {
                *v *= if *h > 0.0 { 1.0 } else { 0.0 };
            }
        }
        Some(_) => {
            for (v, d) in g.iter_mut().zip(deriv) {
                *v *= d;
            }
        }
    }
}

/// Mean loss and errors of the minibatch `x` (n_0 x B), with every layer's weight and bias gradient
/// written into `grads` (which must have the shape of `params`, e.g. from `zero_like`).
pub fn loss_and_grad_into(
    acts: &[Option<Nonlinearity>],
    params: &NetParams,
    x: &DMatrix<f64>,
    y: &[usize],
    loss: Loss,
    grads: &mut NetParams,
) -> (f64, usize) {
    WORK.with(|w| {
        let mut guard = w.borrow_mut();
        let work = &mut *guard;
        step(work, acts, params, x, y, loss, grads)
    })
}

fn step(
    work: &mut Work,
    acts: &[Option<Nonlinearity>],
    params: &NetParams,
    x: &DMatrix<f64>,
    y: &[usize],
    loss: Loss,
    grads: &mut NetParams,
) -> (f64, usize) {
    let depth = acts.len();
    let bsz = x.ncols();
    work.out.resize_with(depth, Vec::new);
    work.deriv.resize_with(depth, Vec::new);
    for l in 0..depth {
        let (w, bias) = dense(&params[l]);
        let (n, n_in) = w.shape();
        let (done, rest) = work.out.split_at_mut(l);
        let input: &[f64] = if l == 0 { x.as_slice() } else { &done[l - 1] };
        let out = &mut rest[0];
        out.resize(n * bsz, 0.0);
        matmul(
            mmut(out, n, bsz),
            Accum::Replace,
            mref(w.as_slice(), n, n_in),
            mref(input, n_in, bsz),
            1.0,
            Par::Seq,
        );
        bias_act(out, &mut work.deriv[l], bias, acts[l]);
    }
    let k = dense(&params[depth - 1]).0.nrows();
    let logits = DMatrix::from_column_slice(k, bsz, &work.out[depth - 1]);
    let (mean_loss, adj, errors) = loss_and_adjoint(&logits, y, loss);
    work.g.clear();
    work.g.extend_from_slice(adj.as_slice());
    for l in (0..depth).rev() {
        let (w, _) = dense(&params[l]);
        let (n, n_in) = w.shape();
        let input: &[f64] = if l == 0 {
            x.as_slice()
        } else {
            &work.out[l - 1]
        };
        let (dw, db) = match grads[l].first_mut() {
            Some(OpParams::Dense { w, b }) => (w, b),
            _ => unreachable!("gradients in the shape of the parameters"),
        };
        // dW = G X^T, X^T read through a transposed view rather than copied.
        matmul(
            mmut(dw.as_mut_slice(), n, n_in),
            Accum::Replace,
            mref(&work.g, n, bsz),
            mref(input, n_in, bsz).transpose(),
            1.0,
            Par::Seq,
        );
        // db = G 1, summed over the batch in column order (each unit's sum in the same order as a row sum).
        let db = db.as_mut_slice();
        db.fill(0.0);
        for col in work.g.chunks_exact(n) {
            for (s, v) in db.iter_mut().zip(col) {
                *s += v;
            }
        }
        if l == 0 {
            // The input's adjoint is not needed.
            break;
        }
        work.g_prev.resize(n_in * bsz, 0.0);
        matmul(
            mmut(&mut work.g_prev, n_in, bsz),
            Accum::Replace,
            mref(w.as_slice(), n, n_in).transpose(),
            mref(&work.g, n, bsz),
            1.0,
            Par::Seq,
        );
        act_adjoint(
            &mut work.g_prev,
            &work.out[l - 1],
            &work.deriv[l - 1],
            acts[l - 1],
        );
        std::mem::swap(&mut work.g, &mut work.g_prev);
    }
    (mean_loss, errors)
}
