//! Forward-mode products in the parameters: for an op with parameters p fed x, and a parameter direction dp,
//! the output's directional derivative J_x t + J_theta dp, with t the incoming tangent (one column per batch
//! element, stored as in `Sample::jvp`: element b's block is n x 1). This is what a first-order Taylor
//! expansion of a network in its parameters needs (theory/effective-depth.md); kept apart from the op's
//! other rules in `ops.rs` but built on them (the input part is `Sample::jvp`).

use super::gemm;
use super::ops::{OpCache, OpParams, Sample};
use crate::arch::Op;
use nalgebra::{DMatrix, DVector};

/// pt - p0, op by op; `None` when the two do not have the same structure and shapes.
pub fn param_diff(pt: &OpParams, p0: &OpParams) -> Option<OpParams> {
    // Exhaustive in `pt` on purpose: a new parameter kind must say how it is differenced.
    match pt {
        OpParams::Dense { w: wt, b: bt } => {
            let OpParams::Dense { w: w0, b: b0 } = p0 else {
                return None;
            };
            if wt.shape() != w0.shape() || bt.len() != b0.len() {
                return None;
            }
            Some(OpParams::Dense {
                w: wt - w0,
                b: bt - b0,
            })
        }
        OpParams::None => match p0 {
            OpParams::None => Some(OpParams::None),
            // No parameters mean scale 1 and shift 0.
            OpParams::Norm { scale, shift, .. } => Some(norm_diff(
                &DVector::from_element(scale.len(), 1.0),
                &DVector::zeros(shift.len()),
                scale,
                shift,
            )),
            _ => None,
        },
        OpParams::Norm {
            scale: st,
            shift: ht,
            ..
        } => match p0 {
            OpParams::None => Some(norm_diff(
                st,
                ht,
                &DVector::from_element(st.len(), 1.0),
                &DVector::zeros(ht.len()),
            )),
            OpParams::Norm {
                scale: s0,
                shift: h0,
                ..
            } if s0.len() == st.len() && h0.len() == ht.len() => Some(norm_diff(st, ht, s0, h0)),
            _ => None,
        },
        OpParams::Residual {
            skip: st,
            branch: bt,
        } => {
            let OpParams::Residual {
                skip: s0,
                branch: b0,
            } = p0
            else {
                return None;
            };
            let skip = match (st, s0) {
                (None, None) => None,
                (Some(a), Some(b)) if a.shape() == b.shape() => Some(a - b),
                _ => return None,
            };
            if bt.len() != b0.len() {
                return None;
            }
            let branch = bt
                .iter()
                .zip(b0)
                .map(|(a, b)| param_diff(a, b))
                .collect::<Option<Vec<_>>>()?;
            Some(OpParams::Residual { skip, branch })
        }
    }
}

/// The change of a norm op's learned affine map (running statistics are not parameters of the map the
/// engines compute: they use batch statistics).
fn norm_diff(
    st: &DVector<f64>,
    ht: &DVector<f64>,
    s0: &DVector<f64>,
    h0: &DVector<f64>,
) -> OpParams {
    OpParams::Norm {
        scale: st - s0,
        shift: ht - h0,
        running_mean: None,
        running_var: None,
    }
}

/// Sum of squares of every parameter (0 for parameter-free ops).
pub fn param_sq_norm(p: &OpParams) -> f64 {
    match p {
        OpParams::Dense { w, b } => w.norm_squared() + b.norm_squared(),
        OpParams::None => 0.0,
        OpParams::Norm { scale, shift, .. } => scale.norm_squared() + shift.norm_squared(),
        OpParams::Residual { skip, branch } => {
            skip.as_ref().map_or(0.0, |q| q.norm_squared())
                + branch.iter().map(param_sq_norm).sum::<f64>()
        }
    }
}

/// Adds `extra`'s column b to element b's single tangent column.
fn add_columns(mut t: Vec<DMatrix<f64>>, extra: &DMatrix<f64>) -> Vec<DMatrix<f64>> {
    for (b, tb) in t.iter_mut().enumerate() {
        debug_assert_eq!(
            tb.ncols(),
            1,
            "a parameter tangent has one column per element"
        );
        let mut c = tb.column_mut(0);
        c += extra.column(b);
    }
    t
}

/// The op's output at `p` on `x`, and J_x t + J_theta dp. `t` holds one n x 1 block per column of `x`.
pub fn param_jvp(
    op: &Op,
    p: &OpParams,
    dp: &OpParams,
    x: &DMatrix<f64>,
    t: Vec<DMatrix<f64>>,
) -> (DMatrix<f64>, Vec<DMatrix<f64>>) {
    match (op, p, dp) {
        (Op::Dense(_), OpParams::Dense { .. }, OpParams::Dense { w: dw, b: db }) => {
            let (out, cache) = op.forward(p, x);
            let mut extra = gemm::mul(dw, false, x);
            for mut col in extra.column_iter_mut() {
                col += db;
            }
            let t = op.jvp(p, &cache, t);
            (out, add_columns(t, &extra))
        }
        (
            Op::Residual(r),
            OpParams::Residual { skip, branch },
            OpParams::Residual {
                skip: dskip,
                branch: dbranch,
            },
        ) => {
            let mut h = x.clone();
            let mut th = t.clone();
            for ((bop, bp), bdp) in r.branch.iter().zip(branch).zip(dbranch) {
                let (o, tt) = param_jvp(bop, bp, bdp, &h, th);
                h = o;
                th = tt;
            }
            let s = match skip {
                Some(q) => q * x,
                None => x.clone(),
            };
            let mut ts: Vec<DMatrix<f64>> = match skip {
                Some(q) => t.iter().map(|tb| q * tb).collect(),
                None => t,
            };
            if let Some(dq) = dskip {
                ts = add_columns(ts, &(dq * x));
            }
            let tangent = ts
                .into_iter()
                .zip(th)
                .map(|(a, b)| a + b * r.alpha)
                .collect();
            (s + h * r.alpha, tangent)
        }
        // z = scale y + shift: dz = J_x t + dscale y + dshift, y the normalised input (in the cache).
        (
            Op::LayerNorm { .. } | Op::BatchNorm { .. },
            _,
            OpParams::Norm {
                scale: ds,
                shift: dh,
                ..
            },
        ) => {
            let (out, cache) = op.forward(p, x);
            let OpCache::Norm { y, .. } = &cache else {
                unreachable!("a norm op caches its normalised output")
            };
            let mut extra = y.clone();
            for mut col in extra.column_iter_mut() {
                col.component_mul_assign(ds);
                col += dh;
            }
            let t = op.jvp(p, &cache, t);
            (out, add_columns(t, &extra))
        }
        // Parameter-free ops: only the input part.
        (_, _, OpParams::None) => {
            let (out, cache) = op.forward(p, x);
            (out, op.jvp(p, &cache, t))
        }
        _ => {
            unreachable!("parameter direction of another op kind (depth::check_pair rules it out)")
        }
    }
}
