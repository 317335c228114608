//! Finite-width law of ln GSC(L, l) for plain MLPs (theory/finite-width.md).
//!
//! Two routes, chosen per network:
//! - **Exact** (bias-free Gaussian relu / linear layers): the Bartlett (QR) reduction of theory/finite-width.md
//!   turns the Jacobian into a product of triangular Gaussian factors with random ranks K_l ~ Bin(n_l, 1/2)
//!   (K_l = n_l for linear), and the input direction into an independent uniform unit vector. We sample that
//!   reduced product (a theory-side computation with its own seeded generator: it never sees the Monte Carlo
//!   engine) and report the law's mean (with its own Monte Carlo standard error), sd and quantiles.
//! - **Expansion** (any other MLP of dense + nonlinearity): the delta method to O(1/n) around the mean-field
//!   q_l, from Gaussian fourth moments. Valid only while the depth spanned is small against the width:
//!   sum of 1/n_l over the span <= [`TAU_MAX`]; beyond that we say "outside validity" instead of a number.
//!
//! The degenerate probability (some layer entirely zero) is exact for relu at any bias: 1 - prod(1 - 2^-n_l).

use crate::arch::{Init, Network, Op};
use crate::error::{Error, Result};
use crate::gauss;
use crate::nonlin::Nonlinearity;
use crate::theory::{predict, MfOptions};
use nalgebra::{DMatrix, DVector};
use rand::{Rng, SeedableRng};
use rand_distr::{Binomial, ChiSquared, Distribution, StandardNormal};
use rand_xoshiro::Xoshiro256PlusPlus;
use rayon::prelude::*;
use serde::Serialize;

/// The expansion is reported only while the sum over the spanned layers of 1/n_l is at most this, and
/// its mean shift from mean field is at most [`SHIFT_MAX`]. Basis: the sweep in theory/finite-width.md
/// (tanh, selu, erf and linear hold to tau = 0.33 and fail at 0.67; relu fails at 0.2; gelu at width 30
/// fails at tau = 0.1 with a shift of 0.2 while holding at width 100 up to tau = 0.2 with shift 0.17).
pub const TAU_MAX: f64 = 0.2;
/// Largest |E ln GSC - mean-field ln GSC| the O(1/n) expansion is trusted for (see [`TAU_MAX`]).
pub const SHIFT_MAX: f64 = 0.15;

/// The chain law (theory/finite-width.md section 8) is reported while the sum of 1/n_l over the span is at
/// most this and every spanned layer is at least [`CHAIN_MIN_WIDTH`] wide (below that, up to
/// [`TAU_CHAIN_NARROW`]), with its error stated by [`CHAIN_BIAS_PER_TAU`]. Basis (after the spread fix of
/// section 8): at tau = 1, 19 of 20 cases (tanh, selu, erf, gelu, with and without biases, widths 30, 60,
/// 100, 1000 networks each) within 3 se; at tau = 2 (width 60, depth 120) 6 of 6 within 1.5 se; at
/// tau = 1.67 (width 30, depth 50) the error is resolved (1000 Rust and 4000 numpy networks per case)
/// but at most 0.18 = 0.11 tau, inside the stated bias bound. Beyond it the chain's mean is still
/// returned as the `shift` of [`FiniteValue::OutsideValidity`].
pub const TAU_CHAIN: f64 = 2.0;

/// Narrowest width at which the chain was measured beyond tau = 1/3 (section 8).
pub const CHAIN_MIN_WIDTH: usize = 30;

/// Validity of the chain over spans containing a layer narrower than [`CHAIN_MIN_WIDTH`] (measured at
/// width 30 before the fix: every case within 3 se up to tau = 1/3).
pub const TAU_CHAIN_NARROW: f64 = 1.0 / 3.0;

/// Bias bound of the chain law's mean where it is valid, per unit of tau: its measured error was at most
/// 0.020 at tau = 1/6, 0.040 at tau = 1/3 (1000 networks), 0.104 at tau = 0.67 (200 networks, 2.1 se),
/// 0.118 at tau = 1 and 0.18 at tau = 1.67 (width 30, 1000 networks, z = -4.3; 0.14 against 4000 numpy
/// networks), i.e. at most 0.12 tau (theory/finite-width.md section 8).
pub const CHAIN_BIAS_PER_TAU: f64 = 0.15;

/// Work per [`predict_finite`] call for the exact route, in multiply-adds; wider or deeper networks go to
/// the expansion (where it is valid) so that `predict` stays interactive.
pub const DEFAULT_BUDGET: f64 = 4e9;

#[derive(Clone, Copy, Debug)]
pub struct FiniteOptions {
    /// Reduced spectra drawn by the exact route (each is one sampled product of Bartlett factors).
    pub spectra: usize,
    /// Input directions per spectrum (cheap: one matrix-vector product per layer each).
    pub directions: usize,
    pub seed: u64,
    /// Multiply-add budget of the exact route (see [`DEFAULT_BUDGET`]).
    pub budget: f64,
    /// Keep an i.i.d. sample of ln GSC(L, 0) (one direction per spectrum) for distribution tests.
    pub keep_sample: bool,
    /// Chain route: draw every layer's units one by one instead of their sums' moment-matched normal law
    /// (slower; the reference the normal law's error is measured against, theory/finite-width.md §8).
    pub unit_loop: bool,
}

impl Default for FiniteOptions {
    fn default() -> Self {
        FiniteOptions {
            spectra: 2000,
            directions: 8,
            seed: 0,
            budget: DEFAULT_BUDGET,
            keep_sample: false,
            unit_loop: false,
        }
    }
}

#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum FiniteMethod {
    /// Sampled reduced product: exact law up to its own Monte Carlo error.
    Exact,
    /// O(1/n) delta method around mean field.
    Expansion,
    /// Sampled scalar-state chain (theory/finite-width.md section 8): depth-uniform, any nonlinearity.
    Chain,
}

/// The finite-width law of ln GSC(L, l) at one layer.
#[derive(Clone, Copy, Debug, Serialize, PartialEq)]
pub struct FiniteLaw {
    pub mean: f64,
    pub sd: f64,
    pub q05: f64,
    pub q50: f64,
    pub q95: f64,
    /// Standard error of `mean` as an estimate of the exact law's mean (exact route: Monte Carlo error;
    /// expansion: 0, its error is the truncation, governed by the validity range).
    pub mean_se: f64,
    /// Standard error of `sd` (exact route), 0 for the expansion.
    pub sd_se: f64,
    /// Standardised fourth moment E[(X - mean)^4] / sd^4 of the law (3 for the expansion's normal law).
    /// The verifier needs it: the sampling error of a measured variance is sd^2 sqrt((kurtosis - 1) / n),
    /// and estimating the kurtosis from the measured sample itself underestimates it badly at n ~ 100
    /// because ln GSC is heavy-tailed (theory/finite-width.md, "Testing the variance").
    pub kurtosis: f64,
}

/// One layer's finite-width prediction: a law, or the statement that the expansion does not apply.
#[derive(Clone, Copy, Debug, Serialize, PartialEq)]
#[serde(rename_all = "kebab-case", tag = "status")]
pub enum FiniteValue {
    Law(FiniteLaw),
    /// sum of 1/n over the span (tau) exceeds [`TAU_MAX`], or the expansion's own shift from mean field
    /// (`shift`, null when not computed) exceeds [`SHIFT_MAX`].
    OutsideValidity {
        tau: f64,
        shift: Option<f64>,
    },
}

impl FiniteValue {
    pub fn law(&self) -> Option<&FiniteLaw> {
        match self {
            FiniteValue::Law(l) => Some(l),
            FiniteValue::OutsideValidity { .. } => None,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct FinitePrediction {
    pub method: FiniteMethod,
    /// Per layer l = 0..=L: law of ln GSC(L, l), conditioned on a non-degenerate network.
    pub log_gsc_to_output: Vec<FiniteValue>,
    /// P(some layer output is exactly zero): 1 - prod_l (1 - 2^-n_l) for relu layers, 0 otherwise.
    pub degenerate_probability: f64,
    /// Exact route: spectra actually drawn (after the budget cap) and directions per spectrum.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spectra: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub directions: Option<usize>,
    /// Exact route with `keep_sample`: i.i.d. draws of ln GSC(L, 0) from the exact law.
    #[serde(skip)]
    pub sample_total: Vec<f64>,
    /// Per layer l: bound on the bias of the law's mean, which `check` adds to its tolerance. The
    /// chain: [`CHAIN_BIAS_PER_TAU`] * tau (its measured error, theory/finite-width.md section 8); the
    /// exact route and the expansion (inside its validity): empty, i.e. 0.
    #[serde(skip)]
    pub bias_bound: Vec<f64>,
}

/// A plain MLP layer: (width, sigma_w2, sigma_b2, nonlinearity). `None` for anything else.
fn mlp_layers(net: &Network) -> Option<Vec<(usize, f64, f64, Nonlinearity)>> {
    net.layers
        .iter()
        .map(|layer| match layer.ops.as_slice() {
            [Op::Dense(d), Op::Act(a)] if d.init == Init::Gaussian => {
                Some((d.width, d.sigma_w2, d.sigma_b2, *a))
            }
            _ => None,
        })
        .collect()
}

/// Degenerate probability: relu layers die with probability 2^-n each, independently (at any bias: the
/// n pre-activations are i.i.d. symmetric given the previous layer); other nonlinearities are never exactly
/// zero.
fn degenerate_probability(layers: &[(usize, f64, f64, Nonlinearity)]) -> f64 {
    let mut log_alive = 0.0;
    for &(n, _, _, a) in layers {
        if a == Nonlinearity::Relu {
            log_alive += (-(0.5f64).powi(n.min(2000) as i32)).ln_1p();
        }
    }
    0.0 - log_alive.exp_m1()
}

/// The finite-width law of ln GSC(L, l) for every l, for a plain MLP.
pub fn predict_finite(net: &Network, opts: &FiniteOptions) -> Result<FinitePrediction> {
    net.validate()?;
    let layers = mlp_layers(net).ok_or_else(|| {
        Error::Unsupported(
            "finite-width prediction: only plain MLPs (Gaussian dense + nonlinearity per layer) are covered".into(),
        )
    })?;
    if net.batch_coupled() {
        return Err(Error::Unsupported(
            "finite-width prediction: batch-coupled networks are not covered".into(),
        ));
    }
    if opts.spectra < 2 || opts.directions < 1 {
        return Err(Error::param(
            "finite-width spectra/directions",
            format!("{}/{}", opts.spectra, opts.directions),
            "spectra >= 2 and directions >= 1",
        ));
    }
    let widths = net.widths();
    let p_deg = degenerate_probability(&layers);
    let exact_ok = layers
        .iter()
        .all(|&(_, _, b, a)| b == 0.0 && matches!(a, Nonlinearity::Relu | Nonlinearity::Linear));
    if exact_ok {
        let cost = exact_cost(&widths, &layers);
        let affordable = (opts.budget / cost).floor() as usize;
        let spectra = opts.spectra.min(affordable);
        // Over budget: the expansion where it is valid (accurate there); else fewer spectra (their error
        // is reported), down to 20; below that, the expansion's honest "outside validity".
        let tau: f64 = widths[1..].iter().map(|&n| 1.0 / n as f64).sum();
        let min_spectra = opts.spectra.min(200);
        if spectra >= min_spectra || (tau > TAU_MAX + 1e-9 && spectra >= 20) {
            return exact(net, &widths, &layers, opts, spectra, p_deg);
        }
    }
    chain_route(net, &widths, &layers, opts, p_deg, TAU_CHAIN)
}

/// Chain draws that carry every starting layer k (the others carry k = 0 only): the per-layer laws of
/// `check` need every k, but at O(L^2) per draw, which dominates the law's cost at depth 100 (the unit
/// sums are O(L) per draw); ln GSC(L, 0), the headline number, gets every draw. The per-layer laws'
/// own Monte Carlo error (in `mean_se`) is correspondingly larger, and `check` combines it.
pub const CHAIN_EVERY_START: usize = 200;

/// Work of one chain draw carrying k = 0 only, in the budget's units: about 20 multiply-adds per unit
/// below `MVN_MIN_WIDTH` (two normals, phi and phi'), about 150 per layer for the tabulated unit sums
/// above it, and 40 per state update (two Gamma draws).
fn chain_cost(widths: &[usize]) -> f64 {
    let depth = (widths.len() - 1) as f64;
    let units: f64 = widths[1..]
        .iter()
        .map(|&n| {
            if n >= crate::theory::finite_chain::MVN_MIN_WIDTH {
                150.0
            } else {
                20.0 * n as f64
            }
        })
        .sum();
    units + 40.0 * depth
}

/// The scalar-state chain (theory/finite-width.md section 8): `opts.spectra` draws (capped by the budget,
/// at least 200), each one sampled network's forward pass with the Jacobian carried through three scalars.
fn chain_route(
    net: &Network,
    widths: &[usize],
    layers: &[(usize, f64, f64, Nonlinearity)],
    opts: &FiniteOptions,
    p_deg: f64,
    tau_max: f64,
) -> Result<FinitePrediction> {
    let depth = layers.len();
    let draws = opts
        .spectra
        .min((opts.budget / chain_cost(widths)).floor() as usize)
        .max(opts.spectra.min(200));
    let tables = crate::theory::finite_chain::ChainTables::new(widths[0], layers);
    let results: Vec<Option<Vec<f64>>> = (0..draws)
        .into_par_iter()
        .map(|i| {
            let mut rng = spectrum_rng(opts.seed ^ 0x3C6E_F372_FE94_F82B, i as u64);
            crate::theory::finite_chain::draw(
                widths[0],
                layers,
                &tables,
                opts.unit_loop,
                i < CHAIN_EVERY_START,
                &mut rng,
            )
        })
        .collect();
    let ok: Vec<&Vec<f64>> = results.iter().flatten().collect();
    if ok.len() < 2 || ok.iter().any(|v| v.iter().any(|x| !x.is_finite())) {
        let values = (0..=depth)
            .map(|k| {
                if k == depth {
                    trivial_law()
                } else {
                    FiniteValue::OutsideValidity {
                        tau: widths[k + 1..].iter().map(|&n| 1.0 / n as f64).sum(),
                        shift: None,
                    }
                }
            })
            .collect();
        return Ok(FinitePrediction {
            method: FiniteMethod::Chain,
            log_gsc_to_output: values,
            degenerate_probability: p_deg,
            spectra: Some(draws),
            directions: None,
            sample_total: Vec::new(),
            bias_bound: Vec::new(),
        });
    }
    let mf = predict(net, &MfOptions::default())?;
    let mut values = Vec::with_capacity(depth + 1);
    for k in 0..depth {
        // Layers k >= 1 come from the draws that carry every starting layer (their own error is in
        // mean_se and sd_se).
        let rows: Vec<&[f64]> = ok
            .iter()
            .filter(|v| v.len() > k)
            .map(|v| &v[k..k + 1])
            .collect();
        if rows.len() < 2 {
            values.push(FiniteValue::OutsideValidity {
                tau: widths[k + 1..].iter().map(|&n| 1.0 / n as f64).sum(),
                shift: None,
            });
            continue;
        }
        let law = law_of(&rows);
        let tau: f64 = widths[k + 1..].iter().map(|&n| 1.0 / n as f64).sum();
        // The float sum of 1/n may exceed an exact tau = 1/3 (e.g. 10 layers of width 30) by an ulp.
        let narrow = widths[k + 1..].iter().any(|&n| n < CHAIN_MIN_WIDTH);
        let limit = if narrow && tau_max == TAU_CHAIN {
            TAU_CHAIN_NARROW
        } else {
            tau_max
        };
        values.push(if tau > limit + 1e-9 {
            FiniteValue::OutsideValidity {
                tau,
                shift: Some(law.mean - mf.layers[k].log_gsc_to_output),
            }
        } else {
            FiniteValue::Law(law)
        });
    }
    values.push(trivial_law());
    let sample_total = if opts.keep_sample {
        ok.iter().map(|v| v[0]).collect()
    } else {
        Vec::new()
    };
    Ok(FinitePrediction {
        method: FiniteMethod::Chain,
        log_gsc_to_output: values,
        degenerate_probability: p_deg,
        spectra: Some(draws),
        directions: None,
        sample_total,
        bias_bound: (0..=depth)
            .map(|k| {
                CHAIN_BIAS_PER_TAU * widths[k + 1..].iter().map(|&n| 1.0 / n as f64).sum::<f64>()
            })
            .collect(),
    })
}

/// The chain law for any plain MLP, including bias-free relu and linear ones (where the exact route is the
/// reference it is tested against), reported up to `tau_max` (for measuring its error beyond [`TAU_CHAIN`]).
pub fn predict_chain(
    net: &Network,
    opts: &FiniteOptions,
    tau_max: f64,
) -> Result<FinitePrediction> {
    net.validate()?;
    let layers = mlp_layers(net).ok_or_else(|| {
        Error::Unsupported("finite-width chain: only plain MLPs are covered".into())
    })?;
    let widths = net.widths();
    let p = degenerate_probability(&layers);
    chain_route(net, &widths, &layers, opts, p, tau_max)
}

// ---------------------------------------------------------------------------------------------------
// Exact route.

fn is_uniform(widths: &[usize], layers: &[(usize, f64, f64, Nonlinearity)]) -> bool {
    widths.iter().all(|&n| n == widths[0]) && layers.iter().all(|l| l.3 == layers[0].3)
}

/// Multiply-adds per spectrum: the reduced factors have about n/2 rows (relu) or n (linear).
fn exact_cost(widths: &[usize], layers: &[(usize, f64, f64, Nonlinearity)]) -> f64 {
    let rank = |l: usize| {
        let n = widths[l] as f64;
        if layers[l - 1].3 == Nonlinearity::Relu {
            n / 2.0
        } else {
            n
        }
    };
    let chain = |start: usize| -> f64 {
        let mut c = 0.0;
        let cols = rank(start + 1).min(widths[start] as f64);
        let mut r = cols;
        for l in start + 2..widths.len() {
            let r2 = rank(l).min(r);
            c += r2 * r * cols;
            r = r2;
        }
        c + cols * cols
    };
    if is_uniform(widths, layers) {
        chain(0)
    } else {
        (0..widths.len() - 1).map(chain).sum()
    }
}

/// Generator of spectrum `index`: a SplitMix64 mix of (seed, index), independent of the Monte Carlo
/// engine's streams by construction (different constant).
fn spectrum_rng(seed: u64, index: u64) -> Xoshiro256PlusPlus {
    let mut z = seed
        .wrapping_mul(0xD1B5_4A32_D192_ED03)
        .wrapping_add(0x8CB9_2BA7_2F3D_8DD7)
        ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    Xoshiro256PlusPlus::seed_from_u64(z ^ (z >> 31))
}

/// K ~ Bin(n, 1/2) conditioned on K >= 1 (relu), or n (linear).
fn draw_rank(n: usize, act: Nonlinearity, rng: &mut Xoshiro256PlusPlus) -> usize {
    if act != Nonlinearity::Relu {
        return n;
    }
    let bin = Binomial::new(n as u64, 0.5).expect("valid binomial");
    loop {
        let k = bin.sample(rng) as usize;
        if k >= 1 {
            return k;
        }
    }
}

fn chi(k: usize, rng: &mut Xoshiro256PlusPlus) -> f64 {
    ChiSquared::new(k as f64)
        .expect("k >= 1")
        .sample(rng)
        .sqrt()
}

/// One reduced chain from an input of width `n0` through layers with widths `ns` and nonlinearities `acts`:
/// returns, for depth d = 1..=len, `dirs` values of ln GSC(d, 0) (row-major [d][s]).
///
/// The Jacobian J_d = D_d W_d ... D_1 W_1 has, jointly with ||J_d u|| for the input direction u, the law of
/// T_d ... T_2 L_1 applied to the first K_1 coordinates of a uniform unit vector in R^n0, where L_1 is the
/// Bartlett factor of the LQ decomposition of a K_1 x n0 Gaussian and T_j that of the QR decomposition of a
/// K_j x r_{j-1} Gaussian (theory/finite-width.md). Weight scales cancel in the GSC, so entries are N(0, 1).
fn chain(
    n0: usize,
    ns: &[usize],
    acts: &[Nonlinearity],
    dirs: usize,
    rng: &mut Xoshiro256PlusPlus,
) -> Vec<f64> {
    let mut out = Vec::with_capacity(ns.len() * dirs);
    let k1 = draw_rank(ns[0], acts[0], rng);
    // First factor: LQ of a K_1 x n0 Gaussian if K_1 <= n0 (lower triangular K_1 x K_1, diagonal chi_{n0-i}),
    // else QR of it (upper triangular n0 x n0, diagonal chi_{K_1-i}).
    let (mut m, cols) = if k1 <= n0 {
        let mut l = DMatrix::<f64>::zeros(k1, k1);
        for i in 0..k1 {
            l[(i, i)] = chi(n0 - i, rng);
            for j in 0..i {
                l[(i, j)] = rng.sample(StandardNormal);
            }
        }
        (l, k1)
    } else {
        let mut t = DMatrix::<f64>::zeros(n0, n0);
        for i in 0..n0 {
            t[(i, i)] = chi(k1 - i, rng);
            for j in i + 1..n0 {
                t[(i, j)] = rng.sample(StandardNormal);
            }
        }
        (t, n0)
    };
    // Input directions: the first `cols` coordinates of uniform unit vectors in R^n0.
    let mut ys: Vec<DVector<f64>> = (0..dirs)
        .map(|_| {
            let g: Vec<f64> = (0..n0).map(|_| rng.sample(StandardNormal)).collect();
            let norm = g.iter().map(|x| x * x).sum::<f64>().sqrt();
            let u = DVector::from_iterator(cols, g[..cols].iter().map(|x| x / norm));
            &m * u
        })
        .collect();
    let ln_n0 = (n0 as f64).ln();
    let record = |m: &DMatrix<f64>, ys: &[DVector<f64>], out: &mut Vec<f64>| {
        let lf = m.norm_squared().ln() - ln_n0;
        for y in ys {
            out.push(0.5 * (lf - y.norm_squared().ln()));
        }
    };
    record(&m, &ys, &mut out);
    for j in 1..ns.len() {
        let r = m.nrows();
        let k = draw_rank(ns[j], acts[j], rng);
        let r2 = k.min(r);
        let mut t = DMatrix::<f64>::zeros(r2, r);
        for i in 0..r2 {
            t[(i, i)] = chi(k - i, rng);
            for c in i + 1..r {
                t[(i, c)] = rng.sample(StandardNormal);
            }
        }
        m = &t * &m;
        // Rescale everything by one factor (the GSC is scale-free): a product of many unnormalised
        // factors overflows (each multiplies norms by about sqrt(K)).
        let s = 1.0 / m.norm();
        m *= s;
        for y in ys.iter_mut() {
            *y = &t * &*y;
            *y *= s;
        }
        record(&m, &ys, &mut out);
    }
    out
}

fn quantile_sorted(v: &[f64], p: f64) -> f64 {
    let h = (v.len() - 1) as f64 * p;
    let lo = h.floor() as usize;
    let hi = h.ceil() as usize;
    v[lo] + (h - lo as f64) * (v[hi] - v[lo])
}

/// The law from `per_spectrum[i][s]` (spectra x directions): the mean's error comes from the spread of the
/// per-spectrum averages (spectra are independent, directions within one are not).
fn law_of(per_spectrum: &[&[f64]]) -> FiniteLaw {
    let ns = per_spectrum.len() as f64;
    let avgs: Vec<f64> = per_spectrum
        .iter()
        .map(|v| v.iter().sum::<f64>() / v.len() as f64)
        .collect();
    let mean = avgs.iter().sum::<f64>() / ns;
    let var_avg = avgs.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / (ns - 1.0);
    let mut all: Vec<f64> = per_spectrum
        .iter()
        .flat_map(|v| v.iter().copied())
        .collect();
    let nall = all.len() as f64;
    let var = all.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (nall - 1.0);
    // Error of the variance from per-spectrum averages of the squared deviations (same clustering).
    let dev: Vec<f64> = per_spectrum
        .iter()
        .map(|v| v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / v.len() as f64)
        .collect();
    let dm = dev.iter().sum::<f64>() / ns;
    let var_se = (dev.iter().map(|d| (d - dm).powi(2)).sum::<f64>() / (ns - 1.0) / ns).sqrt();
    let m4 = all.iter().map(|x| (x - mean).powi(4)).sum::<f64>() / nall;
    all.sort_by(|a, b| a.total_cmp(b));
    let sd = var.sqrt();
    FiniteLaw {
        kurtosis: if var > 0.0 { m4 / (var * var) } else { 3.0 },
        mean,
        sd,
        q05: quantile_sorted(&all, 0.05),
        q50: quantile_sorted(&all, 0.5),
        q95: quantile_sorted(&all, 0.95),
        mean_se: (var_avg / ns).sqrt(),
        sd_se: if sd > 0.0 { var_se / (2.0 * sd) } else { 0.0 },
    }
}

fn trivial_law() -> FiniteValue {
    FiniteValue::Law(FiniteLaw {
        mean: 0.0,
        sd: 0.0,
        q05: 0.0,
        q50: 0.0,
        q95: 0.0,
        mean_se: 0.0,
        sd_se: 0.0,
        kurtosis: 3.0,
    })
}

fn exact(
    net: &Network,
    widths: &[usize],
    layers: &[(usize, f64, f64, Nonlinearity)],
    opts: &FiniteOptions,
    spectra: usize,
    p_deg: f64,
) -> Result<FinitePrediction> {
    let depth = net.depth();
    let acts: Vec<Nonlinearity> = layers.iter().map(|l| l.3).collect();
    let dirs = opts.directions;
    let run = |start: usize, salt: u64| -> Vec<Vec<f64>> {
        (0..spectra)
            .into_par_iter()
            .map(|i| {
                let mut rng = spectrum_rng(
                    opts.seed ^ salt.wrapping_mul(0xA24B_AED4_963E_E407),
                    i as u64,
                );
                chain(
                    widths[start],
                    &widths[start + 1..],
                    &acts[start..],
                    dirs,
                    &mut rng,
                )
            })
            .collect()
    };
    let mut values = vec![trivial_law(); depth + 1];
    let full = run(0, 0);
    let law_at = |draws: &[Vec<f64>], d: usize| {
        let rows: Vec<&[f64]> = draws.iter().map(|v| &v[(d - 1) * dirs..d * dirs]).collect();
        law_of(&rows)
    };
    if is_uniform(widths, layers) {
        // ln GSC(L, l) has the law of a depth-(L - l) chain: one chain gives every layer.
        for (l, v) in values.iter_mut().enumerate().take(depth) {
            *v = FiniteValue::Law(law_at(&full, depth - l));
        }
    } else {
        values[0] = FiniteValue::Law(law_at(&full, depth));
        for (l, v) in values.iter_mut().enumerate().take(depth).skip(1) {
            let draws = run(l, l as u64);
            *v = FiniteValue::Law(law_at(&draws, depth - l));
        }
    }
    let sample_total = if opts.keep_sample {
        full.iter().map(|v| v[(depth - 1) * dirs]).collect()
    } else {
        Vec::new()
    };
    Ok(FinitePrediction {
        method: FiniteMethod::Exact,
        log_gsc_to_output: values,
        degenerate_probability: p_deg,
        spectra: Some(spectra),
        directions: Some(dirs),
        sample_total,
        bias_bound: Vec::new(),
    })
}

// ---------------------------------------------------------------------------------------------------
// Expansion route.

/// Gaussian moments at the mean-field pre-activation variance of one layer (theory/finite-width.md, §3).
#[derive(Clone, Copy, Debug)]
struct LayerMoments {
    /// Relative variance of phi(h)^2 and of phi'(h)^2, and their relative covariance.
    c: f64,
    v: f64,
    cov: f64,
    /// d ln E[phi^2] / d ln q and its derivative; the same for E[phi'^2].
    a: f64,
    b: f64,
    alpha: f64,
    beta: f64,
    /// E[phi'^2 phi^2] / (E[phi'^2] E[phi^2]) and E[(phi phi')'] ^2 q_w / (E[phi'^2] E[phi^2]): the two
    /// terms of the input-path weight recursion.
    x_ratio: f64,
    y_ratio: f64,
    /// Weight share of the pre-activation variance, sigma_w^2 E[phi_{l-1}^2] / q_l.
    w: f64,
    /// Per-unit covariances of the input-path noise u = phi'^2 (z^2 - 1) / E[phi'^2] (z the standardised
    /// weight part of h), centred by the ratio it enters through, with phi'^2 / E[phi'^2] (the gate noise
    /// eta) and with phi^2 / E[phi^2] (the forward noise eps): theory/finite-width.md section 3.
    path_eta: f64,
    path_eps: f64,
    /// Per-unit variance of that path noise.
    path_var: f64,
}

fn layer_moments(act: Nonlinearity, q: f64, q_w: f64) -> Option<LayerMoments> {
    let [m2, m4, g, g2, x, hy, g2h2, xh2, g2h4] = gauss::expect_many(
        q,
        |h| {
            let p = act.phi(h);
            let d = act.dphi(h);
            let (d2, p2) = (d * d, p * p);
            [
                p2,
                p2 * p2,
                d2,
                d2 * d2,
                d2 * p2,
                h * p * d,
                d2 * d2 * h * h,
                d2 * p2 * h * h,
                d2 * d2 * h.powi(4),
            ]
        },
        act.kinks(),
    );
    // Log-derivatives in ln q by central differences (the quadrature is good to ~1e-14, so a step of 1e-3
    // leaves ~1e-6 truncation and ~1e-8 rounding error).
    let h = 1e-3;
    let lm = |lq: f64| {
        let m = act.moments(lq.exp());
        (m.second.ln(), m.dphi2.ln())
    };
    let (s0, g0) = lm(q.ln());
    let (sp, gp) = lm(q.ln() + h);
    let (sm, gm) = lm(q.ln() - h);
    let y = hy / q; // E[(phi phi')'] by Stein's lemma (no Dirac terms needed at kinks)
    let w = q_w / q;
    let alpha = (gp - gm) / (2.0 * h);
    let kappa = 2.0 * w * alpha;
    let (v, cov) = (g2 / (g * g) - 1.0, x / (g * m2) - 1.0);
    // E[z^2 - 1 | h] = w (h^2/q - 1), so E[phi'^4 (z^2 - 1)] = w (E[phi'^4 h^2]/q - E[phi'^4]), and the same
    // with phi'^2 phi^2.
    let k4 = w * (g2h2 / q - g2) / (g * g);
    let k2 = w * (xh2 / q - x) / (g * m2);
    // E[phi'^4 (z^2 - 1)^2]: given h, z ~ N(mu, 1 - w) with mu^2 = w h^2 / q, so E[(z^2 - 1)^2 | h] =
    // mu^4 + 6 mu^2 (1 - w) + 3 (1 - w)^2 - 2 (mu^2 + 1 - w) + 1.
    let sw = 1.0 - w;
    let d4z = w * w * g2h4 / (q * q)
        + (6.0 * sw - 2.0) * w * g2h2 / q
        + (3.0 * sw * sw - 2.0 * sw + 1.0) * g2;
    let path_var = (d4z - 2.0 * kappa * k4 * g * g + kappa * kappa * g2) / (g * g);
    let lmo = LayerMoments {
        c: m4 / (m2 * m2) - 1.0,
        v,
        cov,
        a: (sp - sm) / (2.0 * h),
        b: (sp - 2.0 * s0 + sm) / (h * h),
        alpha,
        beta: (gp - 2.0 * g0 + gm) / (h * h),
        x_ratio: x / (g * m2),
        y_ratio: q_w * y * y / (g * m2),
        w,
        path_eta: k4 - kappa * (1.0 + v),
        path_eps: k2 - kappa * (1.0 + cov),
        path_var,
    };
    let fields = [
        lmo.c,
        lmo.v,
        lmo.cov,
        lmo.a,
        lmo.b,
        lmo.alpha,
        lmo.beta,
        lmo.x_ratio,
        lmo.y_ratio,
        lmo.w,
        lmo.path_eta,
        lmo.path_eps,
        lmo.path_var,
    ];
    fields.iter().all(|f| f.is_finite()).then_some(lmo)
}

fn expansion(
    net: &Network,
    widths: &[usize],
    layers: &[(usize, f64, f64, Nonlinearity)],
    p_deg: f64,
    tau_max: f64,
    shift_max: f64,
) -> Result<FinitePrediction> {
    let depth = net.depth();
    let mf = predict(net, &MfOptions::default())?;
    let nf = |l: usize| widths[l] as f64;
    // Layer m = 1..=L at index m (index 0 unused).
    let mut mom: Vec<Option<LayerMoments>> = vec![None];
    for m in 1..=depth {
        let (_, sw2, _, act) = layers[m - 1];
        let q = mf.layers[m].log_q.exp();
        let q_w = sw2 * mf.layers[m - 1].log_sq_norm.exp();
        mom.push(if q.is_finite() && q > 0.0 && q_w.is_finite() {
            layer_moments(act, q, q_w)
        } else {
            None
        });
    }
    // Forward recursion for delta_l = ln q^_l - ln q_l: mean mu, variance v (delta_1 = 0: ||x||^2 = n_0).
    // e_l = ln s_l - ln E[phi^2](q_l) has mean E_l and variance VE_l.
    let mut mu = vec![0.0; depth + 2];
    let mut var = vec![0.0; depth + 2];
    let mut e_mean = vec![0.0; depth + 1];
    let mut e_var = vec![0.0; depth + 1];
    let all_ok = mom[1..].iter().all(|m| m.is_some());
    let tau_of = |k: usize| -> f64 { (k + 1..=depth).map(|m| 1.0 / nf(m)).sum() };
    if !all_ok {
        let values = (0..=depth)
            .map(|k| {
                if k == depth {
                    trivial_law()
                } else {
                    FiniteValue::OutsideValidity {
                        tau: tau_of(k),
                        shift: None,
                    }
                }
            })
            .collect();
        return Ok(FinitePrediction {
            method: FiniteMethod::Expansion,
            log_gsc_to_output: values,
            degenerate_probability: p_deg,
            spectra: None,
            directions: None,
            sample_total: Vec::new(),
            bias_bound: Vec::new(),
        });
    }
    let mo = |m: usize| mom[m].expect("checked");
    for m in 1..=depth {
        let l = mo(m);
        e_mean[m] = l.a * mu[m] + 0.5 * l.b * var[m] - l.c / (2.0 * nf(m));
        e_var[m] = l.a * l.a * var[m] + l.c / nf(m);
        if m < depth {
            let w = mo(m + 1).w;
            mu[m + 1] = w * e_mean[m] + 0.5 * w * (1.0 - w) * e_var[m];
            var[m + 1] = w * w * e_var[m];
        }
    }
    let mut values = Vec::with_capacity(depth + 1);
    for k in 0..=depth {
        if k == depth {
            values.push(trivial_law());
            continue;
        }
        let tau = tau_of(k);
        // A small allowance: tau is a float sum, and tau = TAU_MAX exactly (e.g. 20 layers of width 100) is in.
        if tau > tau_max + 1e-9 {
            values.push(FiniteValue::OutsideValidity { tau, shift: None });
            continue;
        }
        // The input-path weight rho_{m-1} of J_{m-1<-k} and the spectral spread s_{m-1} =
        // n_{m-1} tr((J J^T)^2) / tr(J J^T)^2, both from k upward (rho_k = s_k = 1: J_{k<-k} = I).
        let mut rho_before = vec![0.0; depth + 1];
        let mut spread_before = vec![0.0; depth + 1];
        let (mut rho, mut spread) = (1.0, 1.0);
        for m in k + 1..=depth {
            let l = mo(m);
            rho_before[m] = rho;
            spread_before[m] = spread;
            rho = (nf(m) / nf(m - 1)) * l.y_ratio * rho + l.x_ratio;
            spread = (nf(m) / nf(m - 1)) * spread + 1.0 + l.v;
        }
        // Mean of ln GSC^2(L, k) minus its mean-field value.
        let mut mean2 = 0.0;
        for m in k + 1..=depth {
            let l = mo(m);
            let kappa = 2.0 * l.w * l.alpha;
            mean2 += l.alpha * mu[m] + 0.5 * l.beta * var[m] - l.v / (2.0 * nf(m))
                + kappa * rho_before[m] / nf(m - 1);
        }
        mean2 -= e_mean[depth];
        if k >= 1 {
            mean2 += e_mean[k];
        }
        // Variance of the linear part: backward pass over delta coefficients.
        let mut var2 = 0.0;
        let mut d_next = 0.0; // total coefficient of delta_{m+1}
        for m in (1..=depth).rev() {
            let l = mo(m);
            let mut c_delta = 0.0;
            let mut c_eps = 0.0;
            if m > k {
                c_delta += l.alpha;
            }
            if m == depth {
                c_delta -= l.a;
                c_eps -= 1.0;
            }
            if m == k {
                c_delta += l.a;
                c_eps += 1.0;
            }
            let w_next = if m < depth { mo(m + 1).w } else { 0.0 };
            let a_eps = c_eps + w_next * d_next;
            let b_eta = if m > k { 1.0 } else { 0.0 };
            var2 +=
                (a_eps * a_eps * l.c + b_eta * b_eta * l.v + 2.0 * a_eps * b_eta * l.cov) / nf(m);
            if m > k {
                // The input-path noise of g_m, weight rho_{m-1}/n_{m-1}, shares its units with eta_m and
                // eps_m (its own variance enters at O(rho^2/n^3)); and the rows of W_m off the input path scatter ||J_m||_F^2 by a relative variance
                // 2 (1 + V) s_{m-1} / (n_m n_{m-1}), independent of everything else.
                let p = rho_before[m] / nf(m - 1);
                var2 += (2.0 * p * (a_eps * l.path_eps + b_eta * l.path_eta) + p * p * l.path_var)
                    / nf(m);
                var2 += 2.0 * (1.0 + l.v) * spread_before[m] / (nf(m) * nf(m - 1));
            }
            d_next = c_delta + w_next * l.a * d_next;
        }
        let mean = mf.layers[k].log_gsc_to_output + 0.5 * mean2;
        if (0.5 * mean2).abs() > shift_max {
            values.push(FiniteValue::OutsideValidity {
                tau,
                shift: Some(0.5 * mean2),
            });
            continue;
        }
        let sd = 0.5 * var2.max(0.0).sqrt();
        // Quantiles from the normal law of the linearised statistic.
        let z = 1.644_853_626_951_472_2;
        values.push(FiniteValue::Law(FiniteLaw {
            mean,
            sd,
            q05: mean - z * sd,
            q50: mean,
            q95: mean + z * sd,
            mean_se: 0.0,
            sd_se: 0.0,
            kurtosis: 3.0,
        }));
    }
    Ok(FinitePrediction {
        method: FiniteMethod::Expansion,
        log_gsc_to_output: values,
        degenerate_probability: p_deg,
        spectra: None,
        directions: None,
        sample_total: Vec::new(),
        bias_bound: Vec::new(),
    })
}

/// The expansion alone, reported up to `tau_max` and `shift_max` (for comparing it with the exact route on
/// relu / linear networks, and for finding its validity range).
pub fn predict_expansion(net: &Network, tau_max: f64, shift_max: f64) -> Result<FinitePrediction> {
    net.validate()?;
    let layers = mlp_layers(net).ok_or_else(|| {
        Error::Unsupported("finite-width expansion: only plain MLPs are covered".into())
    })?;
    let widths = net.widths();
    let p = degenerate_probability(&layers);
    expansion(net, &widths, &layers, p, tau_max, shift_max)
}
