//! The residual trick, per layer: a trained layer F(theta_l(t), .) is the initial layer i_l = F(theta_l(0), .)
//! plus the residual r_l = F(theta_l(t), .) - F(theta_l(0), .), so any network is a residual network with
//! skip i_l. Measured on the trained net's own layer inputs f_{l-1}, with the block quantities of
//! `montecarlo::pythagorean` (dilution k, GSC of skip, residual and whole layer, cross terms).

use super::{check_inputs, check_pair, chunks, layer_forward, layer_jvp, DepthOptions};
use crate::arch::{Layer, Network};
use crate::error::Result;
use crate::montecarlo::pythagorean::{summarise, BlockMeasurement, BlockSums};
use crate::montecarlo::{forward, sample_rng, Estimator, NetParams, OpParams};
use nalgebra::DMatrix;
use rayon::prelude::*;
use serde::Serialize;

/// One layer's decomposition.
#[derive(Clone, Debug, Serialize)]
pub struct LayerResidual {
    pub layer: usize,
    /// The residual is exactly zero on every example: the layer did not change (its k is infinite and its
    /// residual GSC undefined, so neither is reported).
    pub unchanged: bool,
    /// Jacobian groups (examples, or the whole batch under batch norm) whose residual is exactly zero; they
    /// are left out of the k and GSC_r summaries.
    pub zero_residual_groups: usize,
    pub groups: usize,
    /// sqrt(sum ||i_l||^2 / sum ||r_l||^2) over all examples (infinite when unchanged).
    pub k_pooled: f64,
    /// max |i_l + r_l - f_l| / max |f_l|: the decomposition's rounding error.
    pub reconstruction_error: f64,
    /// Per group: ln k, ln GSC of skip (i), residual (r) and trained layer, the Pythagorean formula's error
    /// ln GSC - ln sqrt((k^2 GSC_i^2 + GSC_r^2)/(k^2 + 1)), and the cross terms it drops.
    pub blocks: BlockMeasurement,
}

#[derive(Clone, Debug, Serialize)]
pub struct ResidualReport {
    pub examples: usize,
    pub estimator: Estimator,
    pub layers: Vec<LayerResidual>,
    /// Set when some or all layers did not change (identical parameters give zero residuals, not NaN).
    pub message: Option<String>,
}

/// Block sums of layer `layer` at inputs `x` (a chunk of columns): skip = the layer at `p0`, residual =
/// the layer at `pt` minus the skip. One `BlockSums` per column, or one for the chunk when `coupled`.
/// Also returns max |skip + residual - trained| and max |trained| over the chunk.
pub(crate) fn layer_sums(
    layer: &Layer,
    p0: &[OpParams],
    pt: &[OpParams],
    x: &DMatrix<f64>,
    coupled: bool,
    estimator: Estimator,
    rng: &mut dyn rand::RngCore,
) -> (Vec<BlockSums>, f64, f64) {
    let (n, bsz) = (x.nrows(), x.ncols());
    let (s, c0) = layer_forward(layer, p0, x);
    let (f, ct) = layer_forward(layer, pt, x);
    let r = &f - &s;
    let recon = (&s + &r - &f).amax();
    let fmax = f.amax();
    // Start directions: per element its own identity (the element's Jacobian, or one block column of the
    // batch map's when coupled), or Gaussian probes.
    let width = if coupled { n * bsz } else { n };
    let t: Vec<DMatrix<f64>> = match estimator {
        Estimator::Exact => (0..bsz)
            .map(|b| {
                let off = if coupled { b * n } else { 0 };
                let mut m = DMatrix::zeros(n, width);
                for j in 0..n {
                    m[(j, off + j)] = 1.0;
                }
                m
            })
            .collect(),
        Estimator::Probes(_) | Estimator::GaussianProbes(_) => {
            crate::montecarlo::probe_blocks(n, bsz, estimator, rng)
        }
    };
    let scale = match estimator {
        Estimator::Exact => 1.0,
        Estimator::Probes(p) | Estimator::GaussianProbes(p) => 1.0 / p as f64,
    };
    let ji = layer_jvp(layer, p0, &c0, t.clone());
    let jt = layer_jvp(layer, pt, &ct, t);
    let per: Vec<BlockSums> = (0..bsz)
        .map(|b| {
            let jr = &jt[b] - &ji[b];
            let (xb, sb, rb) = (x.column(b), s.column(b), r.column(b));
            BlockSums {
                sq_x: xb.norm_squared(),
                sq_s: sb.norm_squared(),
                sq_r: rb.norm_squared(),
                dot: sb.dot(&rb),
                jac_s: ji[b].norm_squared() * scale,
                jac_r: jr.norm_squared() * scale,
                jac_sr: ji[b].dot(&jr) * scale,
                dim: n as f64,
            }
        })
        .collect();
    let sums = if coupled {
        let mut tot = BlockSums::default();
        for p in &per {
            tot.sq_x += p.sq_x;
            tot.sq_s += p.sq_s;
            tot.sq_r += p.sq_r;
            tot.dot += p.dot;
            tot.jac_s += p.jac_s;
            tot.jac_r += p.jac_r;
            tot.jac_sr += p.jac_sr;
        }
        tot.dim = (n * bsz) as f64;
        vec![tot]
    } else {
        per
    };
    (sums, recon, fmax)
}

/// Block sums of every layer at the inputs `outputs[l-1]` (one trajectory's layer inputs), chunk by chunk
/// in parallel; chunk c's probes come from its own generator, so results do not depend on the threads.
pub(crate) fn all_layer_sums(
    net: &Network,
    init: &NetParams,
    trained: &NetParams,
    outputs: &[DMatrix<f64>],
    opts: &DepthOptions,
    stream: u64,
) -> Vec<(Vec<BlockSums>, f64, f64)> {
    let coupled = net.batch_coupled();
    let n = outputs[0].ncols();
    let ranges = chunks(net, n);
    (0..net.depth())
        .map(|l| {
            let parts: Vec<(Vec<BlockSums>, f64, f64)> = ranges
                .par_iter()
                .enumerate()
                .map(|(c, rg)| {
                    let mut rng = sample_rng(opts.seed ^ stream, (l * ranges.len() + c) as u64);
                    let x = outputs[l].columns(rg.start, rg.len()).into_owned();
                    layer_sums(
                        &net.layers[l],
                        &init[l],
                        &trained[l],
                        &x,
                        coupled,
                        opts.estimator,
                        &mut rng,
                    )
                })
                .collect();
            let mut sums = Vec::new();
            let (mut recon, mut fmax) = (0.0f64, 0.0f64);
            for (s, r, f) in parts {
                sums.extend(s);
                recon = recon.max(r);
                fmax = fmax.max(f);
            }
            (sums, recon, fmax)
        })
        .collect()
}

/// The residual decomposition of every layer of the trained network on inputs `x` (one column each).
pub fn residual_decomposition(
    net: &Network,
    init: &NetParams,
    trained: &NetParams,
    x: &DMatrix<f64>,
    opts: &DepthOptions,
) -> Result<ResidualReport> {
    check_pair(net, init, trained)?;
    check_inputs(net, x, "inputs")?;
    let outputs = forward(net, trained, x.clone()).outputs;
    let per = all_layer_sums(net, init, trained, &outputs, opts, 0x7265_7369_6475_616c);
    let layers: Vec<LayerResidual> = per
        .into_iter()
        .enumerate()
        .map(|(l, (sums, recon, fmax))| {
            let zero = sums.iter().filter(|s| s.sq_r == 0.0).count();
            let (ss, sr) = sums
                .iter()
                .fold((0.0, 0.0), |(a, b), s| (a + s.sq_s, b + s.sq_r));
            LayerResidual {
                layer: l + 1,
                unchanged: zero == sums.len(),
                zero_residual_groups: zero,
                groups: sums.len(),
                k_pooled: (ss / sr).sqrt(),
                reconstruction_error: if fmax > 0.0 { recon / fmax } else { recon },
                blocks: summarise(l + 1, &sums),
            }
        })
        .collect();
    let unchanged: Vec<String> = layers
        .iter()
        .filter(|l| l.unchanged)
        .map(|l| l.layer.to_string())
        .collect();
    let message = if unchanged.len() == layers.len() {
        Some(
            "the trained parameters equal the initial ones: every residual is zero (nothing was trained)"
                .to_string(),
        )
    } else if !unchanged.is_empty() {
        Some(format!(
            "layer(s) {} did not change: their residual is zero, k infinite, GSC of the residual undefined",
            unchanged.join(", ")
        ))
    } else {
        None
    };
    Ok(ResidualReport {
        examples: x.ncols(),
        estimator: opts.estimator,
        layers,
        message,
    })
}
