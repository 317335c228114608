//! Closed form against closed form: consistency checks between two independent routes of the theory
//! engine, with no measurement. Labelled as such wherever they are reported.

use crate::arch::{MlpSpec, Network};
use crate::error::Result;
use crate::theory::fixed_point::{analyse, FixedPoint};
use crate::theory::phase::phase_point;
/// The phase diagram of an MLP over a (sigma_w^2, sigma_b^2) grid: closed form only, re-exported for the
/// figures (its measured counterparts are the collapse and GSC observables).
pub use crate::theory::phase::{phase_grid, PhaseOptions};
use crate::theory::{predict, MfOptions};
use crate::Nonlinearity;

/// The outcome of [`tradeoff_grid`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tradeoff {
    /// Largest relative |GSC^2 - chi_1| at depth 400 over the grid.
    pub worst: f64,
    /// Grid points compared.
    pub checked: usize,
    /// Points where (c* < 1) disagrees with (chi_1 > 1), or c* is missing.
    pub sign_mismatch: usize,
}

/// The tradeoff theorem on a grid of (phi, sigma_w^2, sigma_b^2) with an attracting fixed point q* > 0:
/// the engine's per-layer GSC^2 at depth 400 (the length map iterated by `predict`) against chi_1 of the
/// fixed-point analysis, and the correlation fixed point c* of the phase analysis against the sign of
/// chi_1 - 1. (The correlation map is not iterated over 400 layers here: that costs ~0.2 s per layer.)
pub fn tradeoff_grid() -> Result<Tradeoff> {
    let mut worst: f64 = 0.0;
    let mut checked = 0usize;
    let mut sign_mismatch = 0usize;
    for act in [
        Nonlinearity::Tanh,
        Nonlinearity::Erf,
        Nonlinearity::Softplus,
        Nonlinearity::Sigmoid,
    ] {
        for sw2 in [0.8, 1.0, 1.5, 2.0, 3.0] {
            for sb2 in [0.01, 0.1, 0.5] {
                let fp = analyse(act, sw2, sb2);
                let (FixedPoint::Point { q }, Some(chi1)) = (&fp.fixed_point, fp.chi1) else {
                    continue;
                };
                if *q <= 0.0 || (chi1 - 1.0).abs() < 1e-6 {
                    continue;
                }
                let depth = 400;
                let net = Network::mlp(MlpSpec {
                    act,
                    width: 100,
                    depth,
                    sigma_w2: sw2,
                    sigma_b2: sb2,
                })?;
                let p = predict(&net, &MfOptions::default())?;
                let g2 = (2.0 * p.layers[depth].log_gsc_layer).exp();
                worst = worst.max(((g2 - chi1) / chi1).abs());
                let Some(cs) = phase_point(act, sw2, sb2, &PhaseOptions::default()).c_star else {
                    sign_mismatch += 1;
                    continue;
                };
                if (cs < 1.0) != (chi1 > 1.0) {
                    sign_mismatch += 1;
                }
                checked += 1;
            }
        }
    }
    Ok(Tradeoff {
        worst,
        checked,
        sign_mismatch,
    })
}
