//! The practitioner's question, answered from the closed forms (theory/diagnose.md): will this
//! network's gradients explode or vanish at initialisation, where does it happen, when does its domain
//! collapse, and what would change that.
//!
//! Every number here is one the other closed-form commands compute (`predict`, `phase`, the finite-width
//! law); this module only chooses which to ask and solves for the settings advised: the sigma_w^2 with
//! chi_1 = 1 (bisection on the fixed-point analysis), the residual scale alpha that keeps GSC(L, 0) at a
//! target (bisection on the residual network's prediction), and the width at which the finite-width
//! spread of ln GSC(L, 0) falls to a tolerance (the O(1/n) scaling of that spread).

use super::blocks::block_predictions;
use super::finite_width::{predict_finite, FiniteMethod, FiniteOptions, FiniteValue};
use super::fixed_point::{analyse, for_network, FixedPoint};
use super::phase::{phase_point, PhaseOptions};
use super::{predict, MfOptions};
use crate::arch::{Dense, Init, InputModel, Layer, Network, Op, Residual, Skip};
use crate::error::{Error, Result};
use crate::nonlin::Nonlinearity;
use serde::Serialize;

/// The JSON schema tag of [`Diagnosis`].
pub const SCHEMA: &str = "gradscale.diagnose/1";

/// What [`diagnose`] is asked beyond the network.
#[derive(Clone, Copy, Debug)]
pub struct DiagnoseOptions {
    /// GSC(L, 0) at or above this is "explodes", at or below its inverse "vanishes".
    pub explode_at: f64,
    /// The GSC(L, 0) the residual advice keeps to.
    pub target_gsc: f64,
    /// Sign-diversity threshold of the collapse depth (as `phase --threshold`).
    pub sign_diversity_threshold: f64,
    /// The pre-activation correlation whose crossing is reported as a second collapse depth.
    pub correlation_threshold: f64,
    /// The spread (sd) of ln GSC(L, 0) across networks beyond which finite-width fluctuations "matter".
    pub fluctuation_sd: f64,
    /// Deepest layer searched for the collapse depths.
    pub max_depth: usize,
}

impl Default for DiagnoseOptions {
    fn default() -> Self {
        DiagnoseOptions {
            explode_at: 2.0,
            target_gsc: 2.0,
            sign_diversity_threshold: 0.1,
            correlation_threshold: 0.99,
            fluctuation_sd: 0.1,
            max_depth: 100_000,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Explodes,
    Vanishes,
    Stable,
}

impl Verdict {
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Explodes => "explodes",
            Verdict::Vanishes => "vanishes",
            Verdict::Stable => "stable",
        }
    }
}

/// The gradient verdict at infinite width.
#[derive(Clone, Debug, Serialize)]
pub struct GradientVerdict {
    pub verdict: Verdict,
    /// Fitted per-layer rate r of ln GSC(L, L - l) = ln c + l ln r (as `predict`).
    pub rate: f64,
    pub log_gsc_total: f64,
    /// GSC(L, 0) (infinite when it overflows f64; `log_gsc_total` is always finite).
    pub gsc_total: f64,
    /// The layers (first, last) over which the central 90% of ln GSC(L, 0) accrues: the first layer whose
    /// cumulative ln GSC(l, 0) reaches 5% of the total and the first reaching 95%. None when the total is
    /// below 1e-9 in size.
    pub growth_layers: Option<(usize, usize)>,
    /// ln GSC(l, l - 1) for l = 1..=L: the scale-corrected per-layer profile.
    pub log_gsc_per_layer: Vec<f64>,
}

/// Phase and collapse of a uniform MLP at its variance fixed point (as `phase`).
#[derive(Clone, Debug, Serialize)]
pub struct PhaseDiagnosis {
    pub phase: String,
    pub q_star: Option<f64>,
    pub chi1: Option<f64>,
    pub xi_q: Option<f64>,
    pub xi_grad: Option<f64>,
    pub c_star: Option<f64>,
    pub xi_c: Option<f64>,
    /// First layer whose sign diversity arccos(sqrt c_l)/pi falls below the threshold (large batch).
    pub collapse_depth_sign_diversity: Option<usize>,
    /// First layer whose pre-activation correlation passes the correlation threshold.
    pub collapse_depth_correlation: Option<usize>,
}

/// The sigma_w^2 on the edge of chaos for the network's sigma_b^2 and phi.
#[derive(Clone, Debug, Serialize)]
pub struct EdgeAdvice {
    pub sigma_b2: f64,
    /// None when chi_1 = 1 has no solution with a fixed point (`note` says why).
    pub sigma_w2: Option<f64>,
    /// chi_1 at the recommendation (1 up to the solver's 1e-12).
    pub chi1: Option<f64>,
    pub q_star: Option<f64>,
    pub note: Option<String>,
}

/// The residual version of the MLP scaled to keep GSC(L, 0) at the target.
#[derive(Clone, Debug, Serialize)]
pub struct ResidualAdvice {
    pub target_gsc: f64,
    /// L blocks f_l = f_{l-1} + alpha W2 phi(W1 f_{l-1} + b1), W1 as the MLP's layer, W2 of variance 1/n.
    pub blocks: usize,
    /// ln GSC(L, 0) of that ResNet at alpha = 1.
    pub log_gsc_at_alpha_one: f64,
    /// The largest alpha in (0, 1] whose ResNet has GSC(L, 0) <= target.
    pub alpha: f64,
    pub log_gsc_at_alpha: f64,
    /// Dilution k = ||s|| / ||alpha rho|| of the first and the last block at that alpha.
    pub dilution_first: f64,
    pub dilution_last: f64,
}

/// Where finite-width fluctuations of ln GSC(L, 0) matter.
#[derive(Clone, Debug, Serialize)]
pub struct WidthAdvice {
    pub width: usize,
    /// Law of ln GSC(L, 0) at this width: mean and sd (None outside the law's validity).
    pub mean: Option<f64>,
    pub sd: Option<f64>,
    /// ln GSC(L, 0) at infinite width, for the mean's shift.
    pub mean_field: f64,
    /// The smallest width at which sd is at most the tolerance (None when it already is).
    pub width_for_sd: Option<usize>,
    /// How it was found: "expansion" (solved with the O(1/n) law itself) or "scaling" (exact route:
    /// sd ∝ n^(-1/2) from this width, the law's large-n behaviour).
    pub width_for_sd_method: Option<&'static str>,
    pub note: Option<String>,
}

/// Something that does not cure exploding gradients, with the audit claim behind the statement.
#[derive(Clone, Debug, Serialize)]
pub struct NotAHelp {
    pub what: &'static str,
    pub why: &'static str,
    pub claim: &'static str,
}

#[derive(Clone, Debug, Serialize)]
pub struct Diagnosis {
    pub schema: &'static str,
    pub gradient: GradientVerdict,
    pub phase: Option<PhaseDiagnosis>,
    pub edge_of_chaos: Option<EdgeAdvice>,
    pub residual: Option<ResidualAdvice>,
    pub width: Option<WidthAdvice>,
    pub does_not_help: Vec<NotAHelp>,
    /// Why a section is absent, one sentence each.
    pub notes: Vec<String>,
}

/// The uniform MLP's (phi, sigma_w^2, sigma_b^2, distribution, width), if the network is one.
fn uniform_mlp(net: &Network) -> Option<(Nonlinearity, f64, f64, Init, usize)> {
    for_network(net).ok().flatten()?;
    let widths = net.widths();
    if widths.iter().any(|&w| w != widths[0]) {
        return None;
    }
    match net.layers.first()?.ops.as_slice() {
        [Op::Dense(d), Op::Act(a)] => Some((*a, d.sigma_w2, d.sigma_b2, d.init, widths[0])),
        _ => None,
    }
}

/// The sigma_w^2 with chi_1 = 1 at the attracting fixed point, for this sigma_b^2 and phi.
pub fn edge_of_chaos(act: Nonlinearity, sigma_b2: f64) -> EdgeAdvice {
    let mut out = EdgeAdvice {
        sigma_b2,
        sigma_w2: None,
        chi1: None,
        q_star: None,
        note: None,
    };
    if act.is_positively_homogeneous() {
        // chi_1 = sigma_w^2 (a+^2 + a-^2)/2 whatever q is.
        let (ap, am) = act.slopes_at_zero();
        let sw2 = 2.0 / (ap * ap + am * am);
        out.sigma_w2 = Some(sw2);
        out.chi1 = Some(sw2 * (ap * ap + am * am) / 2.0);
        if sigma_b2 > 0.0 {
            out.note = Some(format!(
                "with sigma_b^2 > 0 a {} net at chi_1 = 1 has no fixed point: q_l grows linearly; use sigma_b^2 = 0",
                act.name()
            ));
        }
        return out;
    }
    let chi = |sw2: f64| {
        let a = analyse(act, sw2, sigma_b2);
        match a.fixed_point {
            FixedPoint::Point { q } => a.chi1.map(|c| (c, q)),
            _ => None,
        }
    };
    // chi_1 grows with sigma_w^2 (a larger gain, at a larger q* where phi' is smaller, but the gain wins
    // for the catalogue's phi); bracket the crossing on a log grid, then bisect in ln sigma_w^2.
    let grid: Vec<f64> = (0..=80)
        .map(|i| 10f64.powf(-2.0 + 0.05 * i as f64))
        .collect();
    let mut bracket = None;
    let mut prev: Option<(f64, f64)> = None;
    for &sw2 in &grid {
        if let Some((c, _)) = chi(sw2) {
            if let Some((psw, pc)) = prev {
                if pc < 1.0 && c >= 1.0 {
                    bracket = Some((psw, sw2));
                    break;
                }
            }
            prev = Some((sw2, c));
        } else {
            prev = None;
        }
    }
    let Some((lo, hi)) = bracket else {
        out.note = Some(format!(
            "chi_1 does not cross 1 for sigma_w^2 in [0.01, 100] at sigma_b^2 = {sigma_b2} ({} has no edge of chaos there)",
            act.name()
        ));
        return out;
    };
    let (mut lo, mut hi) = (lo.ln(), hi.ln());
    let mut best = (hi.exp(), f64::INFINITY, f64::NAN);
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        let Some((c, q)) = chi(mid.exp()) else {
            break;
        };
        if (c - 1.0).abs() < (best.1 - 1.0).abs() {
            best = (mid.exp(), c, q);
        }
        if (c - 1.0).abs() <= 1e-13 || hi - lo <= 1e-16 {
            break;
        }
        if c < 1.0 {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    if best.1.is_finite() {
        out.sigma_w2 = Some(best.0);
        out.chi1 = Some(best.1);
        out.q_star = Some(best.2);
    }
    out
}

/// The ResNet of [`ResidualAdvice`] at scale `alpha`.
pub fn residual_version(
    act: Nonlinearity,
    sigma_w2: f64,
    sigma_b2: f64,
    init: Init,
    width: usize,
    blocks: usize,
    alpha: f64,
) -> Network {
    let branch_init = if init == Init::Uniform {
        Init::Uniform
    } else {
        Init::Gaussian
    };
    let block = Layer {
        ops: vec![Op::Residual(Residual {
            skip: Skip::Identity,
            alpha,
            branch: vec![
                Op::Dense(Dense {
                    width,
                    sigma_w2,
                    sigma_b2,
                    init: branch_init,
                }),
                Op::Act(act),
                Op::Dense(Dense {
                    width,
                    sigma_w2: 1.0,
                    sigma_b2: 0.0,
                    init: branch_init,
                }),
            ],
        })],
    };
    Network {
        input: InputModel::sphere(width),
        layers: vec![block; blocks],
    }
}

fn residual_advice(
    act: Nonlinearity,
    sigma_w2: f64,
    sigma_b2: f64,
    init: Init,
    width: usize,
    blocks: usize,
    target: f64,
) -> Result<ResidualAdvice> {
    let opts = MfOptions {
        skip_fixed_point: true,
        ..MfOptions::default()
    };
    let log_gsc = |alpha: f64| -> Result<f64> {
        let net = residual_version(act, sigma_w2, sigma_b2, init, width, blocks, alpha);
        Ok(predict(&net, &opts)?.layers[blocks].log_gsc_from_input)
    };
    let log_target = target.ln();
    let at_one = log_gsc(1.0)?;
    // GSC(L, 0) -> 1 as alpha -> 0 (the skips alone are an isometry); bisect ln alpha in [1e-8, 0].
    let alpha = if at_one <= log_target {
        1.0
    } else {
        let (mut lo, mut hi) = (1e-8f64.ln(), 0.0f64);
        for _ in 0..100 {
            let mid = 0.5 * (lo + hi);
            if log_gsc(mid.exp())? <= log_target {
                lo = mid;
            } else {
                hi = mid;
            }
            if hi - lo <= 1e-13 {
                break;
            }
        }
        lo.exp()
    };
    let net = residual_version(act, sigma_w2, sigma_b2, init, width, blocks, alpha);
    let b = block_predictions(&net, &opts)?;
    Ok(ResidualAdvice {
        target_gsc: target,
        blocks,
        log_gsc_at_alpha_one: at_one,
        alpha,
        log_gsc_at_alpha: log_gsc(alpha)?,
        dilution_first: b.first().map_or(f64::NAN, |x| x.k),
        dilution_last: b.last().map_or(f64::NAN, |x| x.k),
    })
}

/// ln GSC(L, 0)'s finite-width law (method, mean, sd) for the uniform MLP `net` rebuilt at width `n`.
fn law_at(net: &Network, n: usize) -> Result<(FiniteMethod, FiniteValue)> {
    let mut wide = net.clone();
    wide.input.width = n;
    for layer in &mut wide.layers {
        for op in &mut layer.ops {
            if let Op::Dense(d) = op {
                d.width = n;
            }
        }
    }
    let opts = FiniteOptions {
        spectra: 400,
        ..FiniteOptions::default()
    };
    let f = predict_finite(&wide, &opts)?;
    Ok((f.method, f.log_gsc_to_output[0]))
}

fn width_advice(net: &Network, width: usize, mean_field: f64, sd_tol: f64) -> WidthAdvice {
    let mut out = WidthAdvice {
        width,
        mean: None,
        sd: None,
        mean_field,
        width_for_sd: None,
        width_for_sd_method: None,
        note: None,
    };
    match law_at(net, width) {
        Ok((method, FiniteValue::Law(l))) => {
            out.mean = Some(l.mean);
            out.sd = Some(l.sd);
            if l.sd <= sd_tol {
                return out;
            }
            // The expansion is deterministic and cheap: solve sd(n) = tol on integers (sd falls with n).
            // The exact route samples spectra, so there the O(1/n) scaling sd ∝ n^(-1/2) is used.
            let guess = (width as f64 * (l.sd / sd_tol).powi(2)).ceil() as usize;
            if method == FiniteMethod::Exact {
                out.width_for_sd = Some(guess);
                out.width_for_sd_method = Some("scaling");
                return out;
            }
            let sd_at = |n: usize| match law_at(net, n) {
                Ok((_, FiniteValue::Law(l))) => Some(l.sd),
                _ => None,
            };
            let (mut lo, mut hi) = (width, guess.max(width + 1));
            while sd_at(hi).is_some_and(|s| s > sd_tol) && hi < 1 << 40 {
                lo = hi;
                hi *= 2;
            }
            if sd_at(hi).is_none() {
                return out;
            }
            while hi - lo > 1 {
                let mid = lo + (hi - lo) / 2;
                if sd_at(mid).is_some_and(|s| s <= sd_tol) {
                    hi = mid;
                } else {
                    lo = mid;
                }
            }
            out.width_for_sd = Some(hi);
            out.width_for_sd_method = Some("expansion");
        }
        Ok((_, FiniteValue::OutsideValidity { tau, .. })) => {
            out.note = Some(format!(
                "fluctuations matter: at this width the finite-width expansion is outside its validity (sum of 1/n = {tau:.3}); widths above {} are inside it",
                (net.depth() as f64 / super::finite_width::TAU_MAX).ceil()
            ));
        }
        Err(Error::Unsupported(why)) => {
            out.note = Some(
                if net.layers.iter().any(|l| {
                    l.ops
                        .iter()
                        .any(|op| matches!(op, Op::Dense(d) if d.init == Init::Uniform))
                }) {
                    "finite-width law not available for uniform weights: it uses the Gaussian fourth moment (kurtosis 3), a uniform entry has 9/5, which changes the O(1/n) variance".to_string()
                } else {
                    format!("finite-width law not available: {why}")
                },
            );
        }
        Err(e) => out.note = Some(format!("finite-width law not available: {e}")),
    }
    out
}

/// The three "does not help" statements, each with the audit claim that supports it.
pub fn does_not_help() -> Vec<NotAHelp> {
    vec![
        NotAHelp {
            what: "Adam (or any adaptive optimiser)",
            why: "it rescales each parameter's update, not the ratio of gradient scales between layers that the GSC measures; the explosion is a property of the initialised network",
            claim: "paper/adam-does-not-solve",
        },
        NotAHelp {
            what: "batch norm",
            why: "a batch-normalised MLP still explodes: normalising the forward pass does not bound the backward growth",
            claim: "paper/batchnorm-does-not-solve",
        },
        NotAHelp {
            what: "SELU",
            why: "self-normalising activations keep q = 1 but have chi_1 > 1 there, so the gradients explode by sqrt(chi_1) per layer",
            claim: "paper/selu-does-not-solve",
        },
    ]
}

/// The whole diagnosis of `net` (closed forms only; nothing is sampled except the finite-width law's own
/// reduced spectra on the exact route, from a fixed seed).
pub fn diagnose(net: &Network, opts: &DiagnoseOptions) -> Result<Diagnosis> {
    if !(opts.explode_at > 1.0 && opts.explode_at.is_finite()) {
        return Err(Error::param(
            "--explode-at",
            opts.explode_at,
            "a finite number > 1",
        ));
    }
    if !(opts.target_gsc > 1.0 && opts.target_gsc.is_finite()) {
        return Err(Error::param(
            "--target-gsc",
            opts.target_gsc,
            "a finite number > 1",
        ));
    }
    let p = predict(net, &MfOptions::default())?;
    let depth = net.depth();
    let per_layer: Vec<f64> = p.layers[1..].iter().map(|l| l.log_gsc_layer).collect();
    let total = p.layers[depth].log_gsc_from_input;
    let growth_layers = (total.abs() > 1e-9).then(|| {
        let mut cum = 0.0;
        let (mut first, mut last) = (None, None);
        for (i, g) in per_layer.iter().enumerate() {
            cum += g;
            let frac = cum / total;
            if first.is_none() && frac >= 0.05 {
                first = Some(i + 1);
            }
            if last.is_none() && frac >= 0.95 {
                last = Some(i + 1);
            }
        }
        (first.unwrap_or(1), last.unwrap_or(depth))
    });
    let limit = opts.explode_at.ln();
    let verdict = if total >= limit {
        Verdict::Explodes
    } else if total <= -limit {
        Verdict::Vanishes
    } else {
        Verdict::Stable
    };
    let gradient = GradientVerdict {
        verdict,
        rate: p.fit.r,
        log_gsc_total: total,
        gsc_total: total.exp(),
        growth_layers,
        log_gsc_per_layer: per_layer,
    };
    let mut notes = Vec::new();
    let mlp = uniform_mlp(net);
    let (phase, edge, residual) = match mlp {
        Some((act, sw2, sb2, init, width)) => {
            let fp = p.fixed_point.clone();
            let popts = |threshold: f64| PhaseOptions {
                threshold,
                input_correlation: 0.0,
                max_depth: opts.max_depth,
            };
            let pt = phase_point(act, sw2, sb2, &popts(opts.sign_diversity_threshold));
            // sign diversity < t  <=>  c > cos^2(pi t): the correlation threshold as a sign-diversity one.
            let t_corr = opts.correlation_threshold.sqrt().acos() / std::f64::consts::PI;
            let pc = phase_point(act, sw2, sb2, &popts(t_corr));
            let phase = PhaseDiagnosis {
                phase: pt.phase.clone(),
                q_star: pt.q_star,
                chi1: fp.as_ref().and_then(|f| f.chi1).or(pt.chi1),
                xi_q: fp.as_ref().and_then(|f| f.xi_q),
                xi_grad: fp.as_ref().and_then(|f| f.xi_grad),
                c_star: pt.c_star,
                xi_c: pt.xi_c,
                collapse_depth_sign_diversity: pt.collapse_depth,
                collapse_depth_correlation: pc.collapse_depth,
            };
            let res = residual_advice(act, sw2, sb2, init, width, depth, opts.target_gsc)?;
            (Some(phase), Some(edge_of_chaos(act, sb2)), Some(res))
        }
        None => {
            notes.push("phase, edge-of-chaos and residual advice are for uniform MLPs (every layer the same dense map and nonlinearity at one width); this network is not one".into());
            (None, None, None)
        }
    };
    let width = mlp.map(|(_, _, _, _, n)| width_advice(net, n, total, opts.fluctuation_sd));
    Ok(Diagnosis {
        schema: SCHEMA,
        gradient,
        phase,
        edge_of_chaos: edge,
        residual,
        width,
        does_not_help: does_not_help(),
        notes,
    })
}
