//! The batch-mean part of the gradient in batch-coupled networks (theory/batch-norm.md, "The top of a
//! Jacobian" and "BN inside residual branches").
//!
//! Per unit, write the gradient's covariance over the batch as a Pi + b J (Pi the centring projector,
//! J = 11^T / B). A Jacobian's top receives I = Pi + J, i.e. a share s = 1/B of its trace in the mean
//! direction. A batch norm -> phi pair transmits the centred part with its rate lambda and the mean part
//! with m lambda, m = B top - (B - 1) (`sphere::bsb1`), and its output gradient is centred. An identity
//! or orthogonal skip passes the mean part unchanged, so in a ResNet whose branch ends in
//! "... -> batch norm -> phi -> dense" every block's branch sees a mean share s that is diluted by the
//! centred energy the branches above added. Layers without batch norm are taken to transmit both parts
//! alike (s unchanged): exact for the dense maps, an approximation for a plain phi in a batch-coupled net.

use super::sphere::bsb1;
use crate::arch::{Network, Op};

#[derive(Clone, Copy, Debug)]
pub(super) enum Rule {
    /// Both parts alike.
    Pass,
    /// The layer ends in batch norm -> phi: gain factor 1 - s (1 - m), and the gradient below is centred.
    Centre { m: f64 },
    /// A residual block whose branch's top-most batch norm -> phi is followed only by dense maps:
    /// block gain 1 + ag (1 - s (1 - m)) instead of 1 + ag, where 1 + ag is the block's gain for a
    /// centred gradient; the mean part's trace is unchanged, so s becomes s / gain below.
    Block { ag: f64, m: f64 },
}

fn mean_ratio(act: crate::Nonlinearity, batch: usize) -> f64 {
    let b = batch as f64;
    b * bsb1(act, batch).top - (b - 1.0)
}

/// m of a residual branch whose last batch norm -> phi pair is followed only by dense maps (the case the
/// rule covers); None otherwise.
pub(super) fn branch_mean_ratio(ops: &[Op], batch: usize) -> Option<f64> {
    let p = ops
        .windows(2)
        .rposition(|w| matches!(w, [Op::BatchNorm { .. }, Op::Act(_)]))?;
    let Op::Act(a) = ops[p + 1] else {
        return None;
    };
    ops[p + 2..]
        .iter()
        .all(|o| matches!(o, Op::Dense(_)))
        .then(|| mean_ratio(a, batch))
}

/// One rule per layer (index 0 unused), or None when no layer needs one (nets without batch norm, or
/// batches too small for the rate).
pub(super) fn rules(net: &Network, batch: usize, log_gains: &[f64]) -> Option<Vec<Rule>> {
    if batch < 4 || !net.batch_coupled() {
        return None;
    }
    let mut out = vec![Rule::Pass];
    for (i, layer) in net.layers.iter().enumerate() {
        let rule = match layer.ops.as_slice() {
            [.., Op::BatchNorm { .. }, Op::Act(a)] => Rule::Centre {
                m: mean_ratio(*a, batch),
            },
            [Op::Residual(r)] => match branch_mean_ratio(&r.branch, batch) {
                Some(m) => Rule::Block {
                    ag: log_gains[i + 1].exp_m1(),
                    m,
                },
                None => Rule::Pass,
            },
            _ => Rule::Pass,
        };
        out.push(rule);
    }
    out.iter().any(|r| !matches!(r, Rule::Pass)).then_some(out)
}

/// Walks down from a Jacobian's top k (mean share 1/B) and calls `visit(l, c)` for l = k - 1 .. 0 with
/// c = 1/2 sum_{m = l+1..k} ln(corrected gain / gain): the correction to ln GSC(k, l). Stops early once
/// nothing is left to correct (share 0), reporting the final value for the remaining l if `all`.
pub(super) fn walk_down(
    rules: &[Rule],
    k: usize,
    batch: usize,
    all: bool,
    mut visit: impl FnMut(usize, f64),
) {
    let mut s = 1.0 / batch as f64;
    let mut c = 0.0;
    for m in (1..=k).rev() {
        match rules[m] {
            Rule::Pass => {}
            Rule::Centre { m: mu } => {
                c += 0.5 * (1.0 - s * (1.0 - mu)).ln();
                s = 0.0;
            }
            Rule::Block { ag, m: mu } => {
                let gain = 1.0 + ag * (1.0 - s * (1.0 - mu));
                c += 0.5 * (gain / (1.0 + ag)).ln();
                s /= gain;
            }
        }
        visit(m - 1, c);
        if s == 0.0 {
            if all {
                for l in (0..m - 1).rev() {
                    visit(l, c);
                }
            }
            return;
        }
    }
}
