//! Measured dynamical-isometry moments: the exact input-output Jacobian J of one input (forward mode),
//! m_1 = tr(J J^T)/n and m_2 = tr((J J^T)^2)/n per sample (theory/orthogonal.md).

use super::ops::Sample;
use super::sample::{draw_input, draw_params, forward};
use super::sample_rng;
use crate::arch::Network;
use crate::error::{Error, Result};
use nalgebra::DMatrix;
use rayon::prelude::*;

/// (m_1, m_2) of J J^T for `samples` sampled networks (first input of the batch), in sample order.
pub fn jacobian_moments(net: &Network, samples: usize, seed: u64) -> Result<Vec<(f64, f64)>> {
    net.validate()?;
    if net.batch_coupled() {
        return Err(Error::Unsupported(
            "isometry moments: networks with batch norm are not supported".into(),
        ));
    }
    Ok((0..samples)
        .into_par_iter()
        .map(|i| {
            let mut rng = sample_rng(seed ^ 0x6973_6f6d_6574_7279, i as u64);
            let params = draw_params(net, &mut rng);
            let x = draw_input(net, &mut rng);
            let trace = forward(net, &params, x);
            let n0 = net.input.width;
            let mut t = vec![DMatrix::<f64>::identity(n0, n0)];
            for ((layer, lp), lc) in net.layers.iter().zip(&params).zip(&trace.caches) {
                for ((op, p), c) in layer.ops.iter().zip(lp).zip(lc) {
                    t = op.jvp(p, c, t);
                }
            }
            let j = &t[0];
            let jjt = j * j.transpose();
            let n = jjt.nrows() as f64;
            (jjt.trace() / n, jjt.norm_squared() / n)
        })
        .collect())
}
