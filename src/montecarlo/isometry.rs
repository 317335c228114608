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

/// The normalised spread of the spectrum, mean(m_2) / mean(m_1)^2 - 1, from per-sample (m_1, m_2), with
/// its standard error by the delta method (gradient (-2 b / a^3, 1 / a^2) of b / a^2). None below two
/// samples.
pub fn normalised_variance(moments: &[(f64, f64)]) -> Option<(f64, f64)> {
    if moments.len() < 2 {
        return None;
    }
    let k = moments.len() as f64;
    let a = moments.iter().map(|m| m.0).sum::<f64>() / k;
    let b = moments.iter().map(|m| m.1).sum::<f64>() / k;
    let (mut vaa, mut vbb, mut vab) = (0.0, 0.0, 0.0);
    for m in moments {
        vaa += (m.0 - a).powi(2);
        vbb += (m.1 - b).powi(2);
        vab += (m.0 - a) * (m.1 - b);
    }
    let norm = (k - 1.0) * k;
    let (ga, gb) = (-2.0 * b / a.powi(3), 1.0 / (a * a));
    let se = ((ga * ga * vaa + gb * gb * vbb + 2.0 * ga * gb * vab) / norm)
        .max(0.0)
        .sqrt();
    Some((b / (a * a) - 1.0, se))
}
