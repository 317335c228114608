//! Dynamical-isometry moments of the input-output Jacobian J = D_L W_L ... D_1 W_1 of an MLP at infinite
//! width (Pennington, Schoenholz & Ganguli 2017; theory/orthogonal.md): m_1 = tau(J J^T) and the normalised variance
//! sigma^2_{JJ^T} / m_1^2 = sum_l (mu_2/mu_1^2 - 1 - s_1), with mu_k = E[phi'(h_l)^{2k}] at the layer's
//! pre-activation variance and s_1 = -1 (Gaussian W) or 0 (orthogonal W). The normalised variances of free
//! factors add exactly (tau(PQPQ) for free P, Q), so this holds at any depth, not only at a fixed point.

use super::blocks::layer_states;
use super::MfOptions;
use crate::arch::{Init, Network, Op};
use crate::error::{Error, Result};
use crate::gauss;
use serde::Serialize;

#[derive(Clone, Copy, Debug, Serialize)]
pub struct IsometryMoments {
    /// ln m_1 = ln tau(J J^T).
    pub log_m1: f64,
    /// sigma^2_{JJ^T} / m_1^2 = tau((JJ^T)^2)/tau(JJ^T)^2 - 1.
    pub rel_var: f64,
}

pub fn isometry_moments(net: &Network) -> Result<IsometryMoments> {
    let states = layer_states(net, &MfOptions::default())?;
    let (mut log_m1, mut rel_var) = (0.0, 0.0);
    let mut n_in = net.input.width;
    for (i, layer) in net.layers.iter().enumerate() {
        let [Op::Dense(d), Op::Act(a)] = layer.ops.as_slice() else {
            return Err(Error::Unsupported(format!(
                "isometry moments: layer {} is not dense -> nonlinearity",
                i + 1
            )));
        };
        if d.width != n_in || d.sigma_b2 < 0.0 {
            return Err(Error::Unsupported(format!(
                "isometry moments: layer {} is not square",
                i + 1
            )));
        }
        let s1 =
            match d.init {
                // Marchenko–Pastur universality: any i.i.d. entries of this variance give the same.
                Init::Gaussian | Init::Uniform => -1.0,
                Init::Orthogonal => 0.0,
                Init::LooksLinear => return Err(Error::Unsupported(
                    "isometry moments: looks-linear layers are not free of each other's pairing"
                        .into(),
                )),
            };
        let q = states[i + 1]
            .preact_log_q
            .expect("a nonlinearity records its pre-activation")
            .exp();
        let [mu1, mu2] = gauss::expect_many(
            q,
            |x| {
                let d2 = a.dphi(x).powi(2);
                [d2, d2 * d2]
            },
            a.kinks(),
        );
        log_m1 += d.sigma_w2.ln() + mu1.ln();
        rel_var += mu2 / (mu1 * mu1) - 1.0 - s1;
        n_in = d.width;
    }
    Ok(IsometryMoments { log_m1, rel_var })
}
