//! The Pythagorean decomposition of residual blocks, measured: for each block b = s + alpha rho of a
//! sampled network, the lengths ||s||, ||alpha rho|| and their inner product, and the Jacobian norms
//! ||J_s||_F, ||alpha J_rho||_F and tr(J_s^T alpha J_rho), over the same batch map as the GSC. Kept out of
//! the ordinary `simulate` path: it reruns each block's branch (theory/pythagorean.md).

use super::ops::{OpParams, Sample};
use super::sample::{draw_input, draw_params, forward_rescaled, jacobian_batch, NetParams};
use super::{sample_rng, Estimator, McOptions};
use crate::arch::{Network, Op};
use crate::error::{Error, Result};
use crate::stats::Summary;
use nalgebra::DMatrix;
use rayon::prelude::*;
use serde::Serialize;

/// Raw sums for one block of one sample (over the Jacobian's batch).
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct BlockSums {
    pub sq_x: f64,
    pub sq_s: f64,
    /// ||alpha rho||^2.
    pub sq_r: f64,
    /// <s, alpha rho>.
    pub dot: f64,
    pub jac_s: f64,
    /// ||alpha J_rho||_F^2.
    pub jac_r: f64,
    /// tr(J_s^T alpha J_rho).
    pub jac_sr: f64,
    /// dim of the block's input (n * B_J).
    pub dim: f64,
}

impl BlockSums {
    pub fn k(&self) -> f64 {
        (self.sq_s / self.sq_r).sqrt()
    }
    pub fn gsc_skip(&self) -> f64 {
        (self.jac_s / self.dim * self.sq_x / self.sq_s).sqrt()
    }
    /// alpha cancels: ||alpha J_rho|| ||x|| / ||alpha rho||.
    pub fn gsc_branch(&self) -> f64 {
        (self.jac_r / self.dim * self.sq_x / self.sq_r).sqrt()
    }
    pub fn gsc_block(&self) -> f64 {
        let jb = self.jac_s + self.jac_r + 2.0 * self.jac_sr;
        let nb = self.sq_s + self.sq_r + 2.0 * self.dot;
        (jb / self.dim * self.sq_x / nb).sqrt()
    }
    /// The Pythagorean formula applied to this sample's own k, GSC_s, GSC_rho.
    pub fn gsc_block_pythagorean(&self) -> f64 {
        let (k2, gs, gr) = (self.k().powi(2), self.gsc_skip(), self.gsc_branch());
        ((k2 * gs * gs + gr * gr) / (k2 + 1.0)).sqrt()
    }
    pub fn cos_length(&self) -> f64 {
        self.dot / (self.sq_s * self.sq_r).sqrt()
    }
    pub fn cos_jacobian(&self) -> f64 {
        self.jac_sr / (self.jac_s * self.jac_r).sqrt()
    }
}

/// Per-block aggregates over samples.
#[derive(Clone, Debug, Serialize)]
pub struct BlockMeasurement {
    pub layer: usize,
    pub log_k: Summary,
    pub log_gsc_skip: Summary,
    pub log_gsc_branch: Summary,
    pub log_gsc_block: Summary,
    /// ln GSC_b - ln of the Pythagorean formula on the same sample: the formula's error.
    pub pythagorean_error: Summary,
    pub cos_length: Summary,
    pub cos_jacobian: Summary,
}

/// The layers that are a single residual block (the ones reported).
pub fn block_layers(net: &Network) -> Vec<usize> {
    net.layers
        .iter()
        .enumerate()
        .filter(|(_, l)| matches!(l.ops.as_slice(), [Op::Residual(_)]))
        .map(|(i, _)| i + 1)
        .collect()
}

/// Block sums of one sampled network, in the order of [`block_layers`].
pub fn sample_blocks(
    net: &Network,
    rng: &mut dyn rand::RngCore,
    estimator: Estimator,
) -> Vec<BlockSums> {
    let params = draw_params(net, rng);
    let x = draw_input(net, rng);
    blocks_of(net, &params, x, rng, estimator)
}

/// Block sums of a network with parameters `params` on input batch `x`.
pub fn blocks_of(
    net: &Network,
    params: &NetParams,
    x: DMatrix<f64>,
    rng: &mut dyn rand::RngCore,
    estimator: Estimator,
) -> Vec<BlockSums> {
    // Every block quantity is a ratio within the block, so the exact power-of-two rescaling of a
    // scale-equivariant net changes nothing but keeps a deep one inside the f64 range.
    let trace = forward_rescaled(net, params, x);
    let bj = jacobian_batch(net);
    let mut out = Vec::new();
    for l in block_layers(net) {
        let (Op::Residual(r), OpParams::Residual { skip, branch }) =
            (&net.layers[l - 1].ops[0], &params[l - 1][0])
        else {
            continue;
        };
        let x = &trace.outputs[l - 1];
        let n = x.nrows();
        let mut h = x.clone();
        let mut caches = Vec::with_capacity(r.branch.len());
        for (op, p) in r.branch.iter().zip(branch) {
            let (o, c) = op.forward(p, &h);
            h = o;
            caches.push(c);
        }
        let s = match skip {
            Some(q) => q * x,
            None => x.clone(),
        };
        let rr = h * r.alpha;
        let (s_j, r_j) = (s.columns(0, bj), rr.columns(0, bj));
        let t: Vec<DMatrix<f64>> = match estimator {
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
        };
        let cols = t[0].ncols() as f64;
        // Probe columns are unit-variance directions: sums over them estimate traces times P.
        let scale = match estimator {
            Estimator::Exact => 1.0,
            Estimator::Probes(_) | Estimator::GaussianProbes(_) => 1.0 / cols,
        };
        let mut tr = t.clone();
        for ((op, p), c) in r.branch.iter().zip(branch).zip(&caches) {
            tr = op.jvp(p, c, tr);
        }
        let (mut js, mut jr, mut jsr) = (0.0, 0.0, 0.0);
        for (tb, rb) in t.iter().zip(&tr) {
            let sb = match skip {
                Some(q) => q * tb,
                None => tb.clone(),
            };
            let rb = rb * r.alpha;
            js += sb.norm_squared();
            jr += rb.norm_squared();
            jsr += sb.dot(&rb);
        }
        out.push(BlockSums {
            sq_x: x.columns(0, bj).norm_squared(),
            sq_s: s_j.norm_squared(),
            sq_r: r_j.norm_squared(),
            dot: s_j.dot(&r_j),
            jac_s: js * scale,
            jac_r: jr * scale,
            jac_sr: jsr * scale,
            dim: (n * bj) as f64,
        });
    }
    out
}

/// Per-block Pythagorean measurement over `opts.samples` networks (sample i seeded as in `simulate`, but
/// from a separate stream so it does not reuse the GSC run's draws by accident).
pub fn pythagorean(net: &Network, opts: &McOptions) -> Result<Vec<BlockMeasurement>> {
    pythagorean_over(net, opts, None)
}

/// [`pythagorean`] of a given network: every sample uses `params`, only the input batch varies.
pub fn pythagorean_given(
    net: &Network,
    params: &NetParams,
    inputs: super::GivenInputs,
    opts: &McOptions,
) -> Result<Vec<BlockMeasurement>> {
    super::check_params(net, params)?;
    inputs.check(net, opts.samples)?;
    pythagorean_over(net, opts, Some((params, inputs)))
}

fn pythagorean_over(
    net: &Network,
    opts: &McOptions,
    given: Option<(&NetParams, super::GivenInputs)>,
) -> Result<Vec<BlockMeasurement>> {
    net.validate()?;
    if opts.samples < 2 {
        return Err(Error::param("--samples", opts.samples, "an integer >= 2"));
    }
    if let Some(p) = opts.estimator.probes() {
        if p < 1 {
            return Err(Error::param("--probes", p, "an integer >= 1"));
        }
    }
    let layers = block_layers(net);
    if layers.is_empty() {
        return Err(Error::Architecture(
            "no layer is a single residual block: nothing to decompose".into(),
        ));
    }
    let per: Vec<Vec<BlockSums>> = (0..opts.samples)
        .into_par_iter()
        .map(|i| {
            let mut rng = sample_rng(opts.seed ^ 0x5079_7468_6167_6f72, i as u64);
            match given {
                Some((p, inputs)) => {
                    let x = inputs.batch(net, i, &mut rng);
                    blocks_of(net, p, x, &mut rng, opts.estimator)
                }
                None => sample_blocks(net, &mut rng, opts.estimator),
            }
        })
        .collect();
    Ok(layers
        .iter()
        .enumerate()
        .map(|(j, &layer)| {
            let sums: Vec<BlockSums> = per.iter().map(|s| s[j]).collect();
            summarise(layer, &sums)
        })
        .collect())
}

/// Aggregates one block's per-sample sums; a statistic that is not finite on a sample (a vanishing branch
/// makes k infinite) is left out of that statistic's summary, whose `n` then says so.
pub fn summarise(layer: usize, sums: &[BlockSums]) -> BlockMeasurement {
    let summ = |f: &dyn Fn(&BlockSums) -> f64| {
        let xs: Vec<f64> = sums.iter().map(f).filter(|v| v.is_finite()).collect();
        Summary::of(&xs).unwrap_or(Summary::EMPTY)
    };
    BlockMeasurement {
        layer,
        log_k: summ(&|b| b.k().ln()),
        log_gsc_skip: summ(&|b| b.gsc_skip().ln()),
        log_gsc_branch: summ(&|b| b.gsc_branch().ln()),
        log_gsc_block: summ(&|b| b.gsc_block().ln()),
        pythagorean_error: summ(&|b| b.gsc_block().ln() - b.gsc_block_pythagorean().ln()),
        cos_length: summ(&|b| b.cos_length()),
        cos_jacobian: summ(&|b| b.cos_jacobian()),
    }
}
