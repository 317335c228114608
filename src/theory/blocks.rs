//! Per-block closed form of a residual network (the Pythagorean report, theory/pythagorean.md) and the
//! list of assumptions a prediction rests on, so that the output says when a formula is a heuristic or an
//! assumption is violated instead of silently applying it.

use super::norm::{batch_norm_rate, BnRateKind};
use super::{input_state, map_ops, MfOptions, MfState};
use crate::arch::{Network, Op, Skip};
use crate::error::Result;
use serde::Serialize;

/// The closed form of one residual block b = s + alpha rho, in the notation of theory/pythagorean.md (Philipp, Song & Carbonell, arXiv 1712.05577, on ResNets).
#[derive(Clone, Debug, Serialize)]
pub struct BlockPrediction {
    /// Layer index l of the block's output f_l.
    pub layer: usize,
    /// k = ||s|| / ||alpha rho||.
    pub k: f64,
    pub gsc_skip: f64,
    pub gsc_branch: f64,
    /// GSC of the block from the Pythagorean equation, sqrt((k^2 GSC_s^2 + GSC_rho^2) / (k^2 + 1)).
    pub gsc_block_pythagorean: f64,
    /// GSC of the block from the engine, which keeps the length cross term.
    pub gsc_block: f64,
    /// <s, alpha rho> / (||s|| ||alpha rho||) at infinite width: sign(alpha) mu_s mu_rho.
    pub cos_length: f64,
    /// tr(J_s^T alpha J_rho) / (||J_s||_F ||alpha J_rho||_F) at infinite width: 0 (the branch's first
    /// dense matrix is centred and independent of the skip).
    pub cos_jacobian: f64,
}

/// The mean-field state of every layer output f_0..f_L (as `predict` computes them).
pub fn layer_states(net: &Network, opts: &MfOptions) -> Result<Vec<MfState>> {
    net.validate()?;
    let opts = &MfOptions {
        batch: net.input.batch,
        ..*opts
    };
    let mut states = vec![input_state(net)];
    for layer in &net.layers {
        let prev = *states.last().expect("non-empty");
        let start = MfState {
            preact_log_q: None,
            ..prev
        };
        states.push(map_ops(&layer.ops, &start, opts)?.state);
    }
    Ok(states)
}

/// One entry per layer that is a single residual block.
pub fn block_predictions(net: &Network, opts: &MfOptions) -> Result<Vec<BlockPrediction>> {
    let states = layer_states(net, opts)?;
    let opts = &MfOptions {
        batch: net.input.batch,
        ..*opts
    };
    let mut out = Vec::new();
    for (i, layer) in net.layers.iter().enumerate() {
        let [Op::Residual(r)] = layer.ops.as_slice() else {
            continue;
        };
        let x = MfState {
            preact_log_q: None,
            ..states[i]
        };
        let branch = map_ops(&r.branch, &x, opts)?;
        let block = map_ops(&layer.ops, &x, opts)?;
        let la2 = 2.0 * r.alpha.abs().ln();
        // Skip: identity or orthogonal, length- and gain-preserving, so GSC_s = 1.
        let log_k2 = x.log_q - (branch.state.log_q + la2);
        let k2 = log_k2.exp();
        // The block's (and the branch's) Jacobian has its top here: the branch's BN pair sees the
        // gradient's batch-mean share 1/B (theory/batch-norm.md, "BN inside residual branches").
        let f = match super::batch_mean::branch_mean_ratio(&r.branch, opts.batch) {
            Some(m) if opts.batch >= 4 && net.batch_coupled() && !opts.ignore_batch_mean => {
                1.0 - (1.0 - m) / opts.batch as f64
            }
            _ => 1.0,
        };
        let gsc_rho2 = f * (branch.log_gain2 + x.log_q - branch.state.log_q).exp();
        let block_log_gain2 = (f * block.log_gain2.exp_m1()).ln_1p();
        let pyth = if k2.is_finite() {
            ((k2 + gsc_rho2) / (k2 + 1.0)).sqrt()
        } else {
            1.0
        };
        let mu_s = match r.skip {
            Skip::Identity => x.mean_ratio,
            Skip::Orthogonal => 0.0,
        };
        out.push(BlockPrediction {
            layer: i + 1,
            k: k2.sqrt(),
            gsc_skip: 1.0,
            gsc_branch: gsc_rho2.sqrt(),
            gsc_block_pythagorean: pyth,
            gsc_block: (0.5 * (block_log_gain2 + x.log_q - block.state.log_q)).exp(),
            cos_length: r.alpha.signum() * mu_s * branch.state.mean_ratio,
            cos_jacobian: 0.0,
        });
    }
    Ok(out)
}

fn layer_range(ls: &[usize]) -> String {
    match ls {
        [] => String::new(),
        [a] => format!("layer {a}"),
        [a, .., b] => format!("layers {a}..{b}"),
    }
}

/// Heuristics and violated assumptions behind `predict(net)`, one sentence each.
pub fn assumptions(net: &Network, opts: &MfOptions) -> Result<Vec<String>> {
    let mut notes = Vec::new();
    // Batch norm: which rate each (norm, nonlinearity) pair uses.
    let mut kinds: Vec<(String, Vec<usize>)> = Vec::new();
    let mut push = |key: String, l: usize| match kinds.iter_mut().find(|(k, _)| *k == key) {
        Some((_, v)) => v.push(l),
        None => kinds.push((key, vec![l])),
    };
    fn walk(ops: &[Op], l: usize, batch: usize, push: &mut dyn FnMut(String, usize)) {
        for (i, op) in ops.iter().enumerate() {
            match (op, ops.get(i + 1)) {
                (Op::BatchNorm { .. }, Some(Op::Act(a))) => match batch_norm_rate(*a, batch) {
                    Ok(r) => {
                        let what = match r.kind {
                            BnRateKind::YangRelu => format!(
                                "batch norm + relu: Yang et al. rate lambda_G({batch}) = {:.6} (assumes gradient independence and the batch covariance at its BSB1 fixed point; per-layer GSC sqrt(lambda_G) = {:.6})",
                                r.lambda,
                                r.lambda.sqrt()
                            ),
                            BnRateKind::Linear => format!(
                                "batch norm + linear: rate (B-2)/(B-3) = {:.6} (same assumptions as Yang et al.)",
                                r.lambda
                            ),
                            BnRateKind::Bsb1Quadrature => format!(
                                "batch norm + {a}: rate lambda({batch}) = {:.6} at the BSB1 fixed point by quadrature on the batch-norm output sphere (same assumptions as Yang et al.; per-layer GSC {:.6}; at finite width the measured rate differs by O(1/n): above it for tanh and SELU at B = 16-64, see theory/batch-norm.md)",
                                r.lambda,
                                r.lambda.sqrt()
                            ),
                        };
                        push(what, l);
                    }
                    Err(e) => push(format!("batch norm: {e}"), l),
                },
                (Op::BatchNorm { .. }, _) => push(
                    "batch norm not followed by a nonlinearity: HEURISTIC frozen batch statistics (gain 1/batch variance)".into(),
                    l,
                ),
                (Op::Residual(r), _) => walk(&r.branch, l, batch, push),
                _ => {}
            }
        }
    }
    for (i, layer) in net.layers.iter().enumerate() {
        walk(&layer.ops, i + 1, net.input.batch, &mut push);
        if let [.., Op::BatchNorm { .. }, Op::Act(a)] = layer.ops.as_slice() {
            if net.input.batch >= 4 {
                let top = super::sphere::bsb1(*a, net.input.batch).top;
                push(
                    format!(
                        "batch norm + {a} ends the layer: every ln GSC(k, l) with this layer as its top k includes the top-of-Jacobian factor 1/2 ln top = {:.6} (the uncentred incoming gradient; theory/batch-norm.md)",
                        0.5 * top.ln()
                    ),
                    i + 1,
                );
            }
        }
    }
    for (k, ls) in &kinds {
        notes.push(format!("{}: {k}", layer_range(ls)));
    }
    // Residual blocks whose skip and branch both carry a mean: the Pythagorean equation's orthogonality
    // assumption fails; the engine keeps the cross term.
    if let Ok(blocks) = block_predictions(net, opts) {
        let bad: Vec<&BlockPrediction> = blocks
            .iter()
            .filter(|b| b.cos_length.abs() > 1e-9)
            .collect();
        if let (Some(first), Some(last)) = (bad.first(), bad.last()) {
            notes.push(format!(
                "{}: residual skip and branch both have a nonzero mean (e.g. a branch ending in relu): s and rho are NOT orthogonal, cos(s, alpha rho) = {:.4} .. {:.4}; the prediction keeps the cross term, the Pythagorean formula (k^2 + GSC_rho^2)/(k^2 + 1) does not apply",
                layer_range(&[first.layer, last.layer]),
                first.cos_length,
                last.cos_length
            ));
        }
    }
    Ok(notes)
}
