//! Observables: one quantity of a network with two sides, in the spirit of `rand_distr`'s distributions
//! (a small trait, one type per quantity). The closed-form side gives the predicted value, its own standard
//! error (non-zero only for closed forms that are themselves sampled, like the finite-width law) and the
//! finite-width bias bound where one is derived; the Monte Carlo side gives a summary over sampled networks.
//! [`test()`] pairs the two under a [`Relation`] and a [`TestPolicy`] and returns the [`Evidence`]; `claims`,
//! `plot` and `cli` only choose observables and present the outcome (theory/verification.md, "The
//! observable layer").
//!
//! Adding an observable: a type here implementing [`Observable`], the derivation of its closed form and bias
//! bound in theory/, and a test that compares both sides (CONTRIBUTING.md).

use super::evidence::Evidence;
use super::CheckPolicy;
use crate::arch::Network;
use crate::error::{Error, Result};
use crate::stats::Summary;
use crate::Nonlinearity;

pub use crate::montecarlo::Estimator;

/// The closed-form side of an observable.
#[derive(Clone, Debug, PartialEq)]
pub struct ClosedForm {
    pub value: f64,
    /// Standard error of `value` itself: 0 for an exact closed form; the sampling error of a closed form
    /// evaluated by quadrature over random draws (the finite-width law's exact route).
    pub stderr: f64,
    /// The finite-width bias bound |E measured - value| <= bias_bound stated for this observable and network.
    pub bias_bound: f64,
    /// Side quantities of the same evaluation, named, for reports (e.g. the dilution k of a block).
    pub notes: Vec<(&'static str, f64)>,
    /// How the value was obtained, for reports (e.g. the finite-width law's route).
    pub method: String,
}

/// The Monte Carlo side of an observable.
#[derive(Clone, Debug, PartialEq)]
pub struct Sampled {
    /// Over the usable samples.
    pub summary: Summary,
    /// Networks drawn (usable or not).
    pub samples: usize,
    /// Of those, degenerate ones (a layer output exactly zero), where the sampler reports them.
    pub degenerate: usize,
    /// Side quantities measured on the same draws, named, for reports.
    pub notes: Vec<(&'static str, f64)>,
}

fn note(notes: &[(&'static str, f64)], key: &str) -> Option<f64> {
    notes.iter().find(|(k, _)| *k == key).map(|&(_, v)| v)
}

impl ClosedForm {
    fn exact(value: f64, bias_bound: f64) -> ClosedForm {
        ClosedForm {
            value,
            stderr: 0.0,
            bias_bound,
            notes: Vec::new(),
            method: String::new(),
        }
    }

    /// A side quantity by name (None if this observable does not report it).
    pub fn note(&self, key: &str) -> Option<f64> {
        note(&self.notes, key)
    }
}

impl Sampled {
    fn of(summary: Summary, samples: usize) -> Sampled {
        Sampled {
            summary,
            samples,
            degenerate: 0,
            notes: Vec::new(),
        }
    }

    /// A side quantity by name (None if this observable does not report it).
    pub fn note(&self, key: &str) -> Option<f64> {
        note(&self.notes, key)
    }
}

/// One quantity of a network, predicted and measured.
pub trait Observable {
    /// What is measured, for reports (e.g. "ln GSC(L, 0)").
    fn name(&self) -> String;
    /// The prediction at infinite width (or the finite-width law) with its bias bound; None when the
    /// project has no closed form for it.
    fn closed_form(&self, net: &Network, policy: &CheckPolicy) -> Result<Option<ClosedForm>>;
    /// `samples` sampled networks, seeded (thread-count independent).
    fn monte_carlo(&self, net: &Network, samples: usize, seed: u64) -> Result<Sampled>;
    /// The bias bound when the measurement is compared with a stated `value` rather than the closed form.
    fn bias_bound(&self, net: &Network, value: f64, policy: &CheckPolicy) -> f64 {
        let _ = (net, value, policy);
        0.0
    }
}

/// How the measurement relates to the claim's value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Relation {
    /// Significantly above the value.
    Greater(f64),
    /// Significantly below the value.
    Less(f64),
    /// Equal to the observable's closed form within noise plus the bias bound.
    EqualsClosedForm,
    /// Equal to a stated value within noise plus the bias bound.
    Equals(f64),
}

/// How one observable is tested.
#[derive(Clone, Copy, Debug)]
pub struct TestPolicy {
    pub samples: usize,
    pub seed: u64,
    /// A bias bound stated by the claim, replacing the observable's own.
    pub bias_bound: Option<f64>,
    pub check: CheckPolicy,
}

impl TestPolicy {
    pub fn new(samples: usize, seed: u64) -> TestPolicy {
        TestPolicy {
            samples,
            seed,
            bias_bound: None,
            check: CheckPolicy::default(),
        }
    }

    pub fn with_bias_bound(mut self, b: f64) -> TestPolicy {
        self.bias_bound = Some(b);
        self
    }
}

/// Both sides of an observable and the evidence they give under the relation.
#[derive(Clone, Debug)]
pub struct Tested {
    pub evidence: Evidence,
    /// The closed form, whenever the observable has one (computed for directional relations too, so that
    /// reports can show it).
    pub closed_form: Option<ClosedForm>,
    pub sampled: Sampled,
}

/// The one verification entry point of claims and figures: both sides of `obs` on `net`, paired under
/// `relation`. Equality relations use the closed form's bias bound (or the policy's stated one) and the
/// combined standard error of measurement and closed form; the evidence's `detail` is a plain summary the
/// caller may replace with its own wording.
pub fn test(
    net: &Network,
    obs: &dyn Observable,
    relation: Relation,
    policy: &TestPolicy,
) -> Result<Tested> {
    let closed_form = obs.closed_form(net, &policy.check)?;
    let sampled = obs.monte_carlo(net, policy.samples, policy.seed)?;
    let s = &sampled.summary;
    let detail = |rel: String| {
        format!(
            "{} {rel}; measured {:.4} +- {:.4} over {} nets; seed {}",
            obs.name(),
            s.mean,
            s.stderr,
            s.n,
            policy.seed
        )
    };
    let evidence = match relation {
        Relation::Greater(v) => Evidence::greater(v, s.mean, s.stderr, detail(format!("> {v}"))),
        Relation::Less(v) => Evidence::less(v, s.mean, s.stderr, detail(format!("< {v}"))),
        Relation::Equals(v) => {
            let bias = policy
                .bias_bound
                .unwrap_or_else(|| obs.bias_bound(net, v, &policy.check));
            Evidence::equality(
                v,
                s.mean,
                s.stderr,
                bias,
                detail(format!("= {v}, bias bound {bias:.3e}")),
            )
        }
        Relation::EqualsClosedForm => {
            let cf = closed_form.as_ref().ok_or_else(|| {
                Error::Unsupported(format!("{}: no closed form to compare with", obs.name()))
            })?;
            let bias = policy.bias_bound.unwrap_or(cf.bias_bound);
            // The closed form's own sampling error adds in quadrature (independent draws); an exact closed
            // form leaves the measured standard error as it is (squaring a standard error below 1e-154
            // would underflow to 0 and make any difference infinitely significant).
            let se = if cf.stderr > 0.0 {
                (s.stderr.powi(2) + cf.stderr.powi(2)).sqrt()
            } else {
                s.stderr
            };
            Evidence::equality(
                cf.value,
                s.mean,
                se,
                bias,
                detail(format!(
                    "= closed form {:.6}, bias bound {bias:.3e}",
                    cf.value
                )),
            )
        }
    };
    Ok(Tested {
        evidence,
        closed_form,
        sampled,
    })
}

/// Sum of 1/n_i over the layers lo+1..=hi: the span weight of the finite-width bias bound
/// kappa * span (theory/verification.md).
pub fn span(net: &Network, lo: usize, hi: usize) -> f64 {
    net.widths()[lo + 1..=hi]
        .iter()
        .map(|&n| 1.0 / n as f64)
        .sum()
}

fn closed_form_of(net: &Network) -> Result<crate::theory::Prediction> {
    crate::theory::predict(net, &crate::theory::MfOptions::default())
}

fn simulate(
    net: &Network,
    samples: usize,
    seed: u64,
    estimator: Estimator,
) -> Result<crate::montecarlo::Measurement> {
    crate::montecarlo::simulate(
        net,
        &crate::montecarlo::McOptions {
            samples,
            seed,
            estimator,
        },
    )
}

/// One statistic of a `simulate` run, with its sample and degenerate counts.
fn simulated(
    net: &Network,
    samples: usize,
    seed: u64,
    estimator: Estimator,
    pick: impl FnOnce(&crate::montecarlo::Measurement) -> Summary,
) -> Result<Sampled> {
    let m = simulate(net, samples, seed, estimator)?;
    Ok(Sampled {
        summary: pick(&m),
        samples: m.samples,
        degenerate: m.degenerate,
        notes: Vec::new(),
    })
}

/// ln GSC(L, l): the gradient scale from layer l's output to the network's output. Bias bound
/// kappa * span(l, L).
#[derive(Clone, Copy, Debug)]
pub struct LnGscToOutput {
    pub layer: usize,
    pub estimator: Estimator,
}

impl Observable for LnGscToOutput {
    fn name(&self) -> String {
        if self.layer == 0 {
            "ln GSC(L, 0)".into()
        } else {
            format!("ln GSC(L, {})", self.layer)
        }
    }
    fn closed_form(&self, net: &Network, policy: &CheckPolicy) -> Result<Option<ClosedForm>> {
        let p = closed_form_of(net)?;
        let v = p.layers[self.layer].log_gsc_to_output;
        Ok(Some(ClosedForm::exact(v, self.bias_bound(net, v, policy))))
    }
    fn monte_carlo(&self, net: &Network, samples: usize, seed: u64) -> Result<Sampled> {
        simulated(net, samples, seed, self.estimator, |m| {
            m.layers[self.layer].log_gsc_to_output
        })
    }
    fn bias_bound(&self, net: &Network, _value: f64, policy: &CheckPolicy) -> f64 {
        policy.kappa * span(net, self.layer, net.depth())
    }
}

/// ln GSC(k, 0): the gradient scale from the input to layer k's output, sampled per network
/// (`sampled::log_gsc_from_input`). Bias bound kappa * span(0, k).
#[derive(Clone, Copy, Debug)]
pub struct LnGscFromInput {
    pub layer: usize,
    pub estimator: Estimator,
}

impl Observable for LnGscFromInput {
    fn name(&self) -> String {
        format!("ln GSC({}, 0)", self.layer)
    }
    fn closed_form(&self, net: &Network, policy: &CheckPolicy) -> Result<Option<ClosedForm>> {
        let p = closed_form_of(net)?;
        let v = p.layers[self.layer].log_gsc_from_input;
        Ok(Some(ClosedForm::exact(v, self.bias_bound(net, v, policy))))
    }
    fn monte_carlo(&self, net: &Network, samples: usize, seed: u64) -> Result<Sampled> {
        let s = super::sampled::log_gsc_from_input(net, samples, seed, self.estimator, self.layer)?;
        Ok(Sampled::of(s, samples))
    }
    fn bias_bound(&self, net: &Network, _value: f64, policy: &CheckPolicy) -> f64 {
        policy.kappa * span(net, 0, self.layer)
    }
}

/// ||f_l||^2 / n_l at layer l. Bias bound relative to the value: kappa * span(0, l) * |value|.
#[derive(Clone, Copy, Debug)]
pub struct SqNorm {
    pub layer: usize,
    pub estimator: Estimator,
}

impl Observable for SqNorm {
    fn name(&self) -> String {
        if self.layer == 0 {
            "||f_0||^2/n_0".into()
        } else {
            "||f_L||^2/n_L".into()
        }
    }
    fn closed_form(&self, net: &Network, policy: &CheckPolicy) -> Result<Option<ClosedForm>> {
        let p = closed_form_of(net)?;
        let v = p.layers[self.layer].sq_norm;
        Ok(Some(ClosedForm::exact(v, self.bias_bound(net, v, policy))))
    }
    fn monte_carlo(&self, net: &Network, samples: usize, seed: u64) -> Result<Sampled> {
        simulated(net, samples, seed, self.estimator, |m| {
            m.layers[self.layer].sq_norm
        })
    }
    fn bias_bound(&self, net: &Network, value: f64, policy: &CheckPolicy) -> f64 {
        policy.kappa * span(net, 0, self.layer) * value.abs()
    }
}

/// Which closed form a fitted per-layer rate is compared with.
#[derive(Clone, Copy, Debug)]
pub enum RateForm {
    /// The engine's per-layer ln GSC at this layer (a layer past the transients).
    Layer(usize),
    /// 1/2 ln lambda(B) of a dense -> batch norm -> phi layer at the BSB1 point (theory/batch-norm.md).
    BatchNorm { act: Nonlinearity, batch: usize },
}

/// The per-layer ln GSC rate fitted per sample by least squares of ln GSC(L, l) against -l over `range`
/// (past the transients at both ends), summarised over samples. Bias bound kappa / n_l at the middle of
/// the range, unless the claim states one.
#[derive(Clone, Debug)]
pub struct FittedRate {
    pub range: std::ops::Range<usize>,
    pub estimator: Estimator,
    pub form: RateForm,
}

impl Observable for FittedRate {
    fn name(&self) -> String {
        format!(
            "per-layer ln GSC rate fitted over layers {}..{}",
            self.range.start,
            self.range.end.saturating_sub(1)
        )
    }
    fn closed_form(&self, net: &Network, policy: &CheckPolicy) -> Result<Option<ClosedForm>> {
        let v = match self.form {
            RateForm::Layer(l) => closed_form_of(net)?.layers[l].log_gsc_layer,
            RateForm::BatchNorm { act, batch } => batch_norm_log_rate(act, batch)?,
        };
        Ok(Some(ClosedForm::exact(v, self.bias_bound(net, v, policy))))
    }
    fn monte_carlo(&self, net: &Network, samples: usize, seed: u64) -> Result<Sampled> {
        let s =
            super::sampled::fitted_rate(net, samples, seed, self.estimator, self.range.clone())?;
        Ok(Sampled::of(s, samples))
    }
    fn bias_bound(&self, net: &Network, _value: f64, policy: &CheckPolicy) -> f64 {
        let mid = (self.range.start + self.range.end) / 2;
        let w = net.widths();
        policy.kappa / w[mid.min(w.len() - 1)] as f64
    }
}

/// lambda(B): the per-layer GSC^2 of a dense -> batch norm -> `act` layer at the BSB1 point (Yang et al.
/// 2019 for relu, the sphere quadrature otherwise; theory/batch-norm.md).
pub fn batch_norm_lambda(act: Nonlinearity, batch: usize) -> Result<f64> {
    Ok(crate::theory::norm::batch_norm_rate(act, batch)?.lambda)
}

/// 1/2 ln lambda(B): the per-layer ln GSC of a dense -> batch norm -> `act` layer at the BSB1 point
/// (Yang et al. 2019 for relu, the sphere quadrature otherwise; theory/batch-norm.md).
pub fn batch_norm_log_rate(act: Nonlinearity, batch: usize) -> Result<f64> {
    Ok(0.5 * batch_norm_lambda(act, batch)?.ln())
}

/// 1/2 ln of batch norm's top-of-Jacobian factor at the BSB1 point (theory/batch-norm.md): the part of
/// ln GSC(1, 0) of a batch-normalised layer that the per-layer rate does not contain.
pub fn batch_norm_log_top(act: Nonlinearity, batch: usize) -> f64 {
    0.5 * crate::theory::sphere::bsb1(act, batch).top.ln()
}

/// chi_1 of an MLP's attracting fixed point (Poole et al. 2016), None when there is none.
pub fn chi1(act: Nonlinearity, sigma_w2: f64, sigma_b2: f64) -> Option<f64> {
    crate::theory::fixed_point::analyse(act, sigma_w2, sigma_b2).chi1
}

/// The mean pairwise correlation (cosine) of the batch's layer-l outputs (theory/collapse.md). Bias bound
/// (l / n) * |value|, relative (tests/collapse.rs).
#[derive(Clone, Copy, Debug)]
pub struct Correlation {
    pub layer: usize,
}

impl Observable for Correlation {
    fn name(&self) -> String {
        format!("mean pairwise correlation of layer-{} outputs", self.layer)
    }
    fn closed_form(&self, net: &Network, policy: &CheckPolicy) -> Result<Option<ClosedForm>> {
        let v = crate::theory::collapse::predict_collapse(net, None)?.layers[self.layer].c;
        Ok(Some(ClosedForm::exact(v, self.bias_bound(net, v, policy))))
    }
    fn monte_carlo(&self, net: &Network, samples: usize, seed: u64) -> Result<Sampled> {
        let m = crate::montecarlo::collapse::measure_collapse(net, samples, seed)?;
        Ok(Sampled::of(m.layers[self.layer].corr, samples))
    }
    fn bias_bound(&self, net: &Network, value: f64, _policy: &CheckPolicy) -> f64 {
        self.layer as f64 / net.widths()[self.layer] as f64 * value.abs()
    }
}

/// Cosine similarity of the first two inputs' representations at the last layer (the batch must be at
/// least 2). No closed form here: the correlation map is [`Correlation`].
#[derive(Clone, Copy, Debug)]
pub struct FinalCosine;

impl Observable for FinalCosine {
    fn name(&self) -> String {
        "cosine of two inputs' outputs".into()
    }
    fn closed_form(&self, _net: &Network, _policy: &CheckPolicy) -> Result<Option<ClosedForm>> {
        Ok(None)
    }
    fn monte_carlo(&self, net: &Network, samples: usize, seed: u64) -> Result<Sampled> {
        Ok(Sampled::of(
            super::sampled::final_cosine(net, samples, seed)?,
            samples,
        ))
    }
}

/// ln GSC of residual block `block` (0-based), against the Pythagorean equation
/// 1/2 ln((k^2 GSC_s^2 + GSC_rho^2) / (k^2 + 1)) (theory/pythagorean.md). Bias bound 2/n: the per-sample
/// formula error is second order in the cross terms cos_len, cos_jac, whose mean squares are 1/n and ~1/n^2
/// (tests/norm.rs, pythagorean_cross_terms_shrink_with_width). Notes: closed form `k`, `gsc_branch`,
/// `gsc_block` (the Pythagorean GSC itself);
/// measured `k`, `error` and `error_se` (the per-sample formula error).
#[derive(Clone, Copy, Debug)]
pub struct PythagoreanBlock {
    pub block: usize,
    pub estimator: Estimator,
}

impl Observable for PythagoreanBlock {
    fn name(&self) -> String {
        format!("ln GSC of block {}", self.block + 1)
    }
    fn closed_form(&self, net: &Network, policy: &CheckPolicy) -> Result<Option<ClosedForm>> {
        let blocks =
            crate::theory::blocks::block_predictions(net, &crate::theory::MfOptions::default())?;
        let b = blocks
            .get(self.block)
            .ok_or_else(|| Error::param("block", self.block, "a residual block of the network"))?;
        let v = b.gsc_block_pythagorean.ln();
        let mut cf = ClosedForm::exact(v, self.bias_bound(net, v, policy));
        cf.notes = vec![
            ("k", b.k),
            ("gsc_branch", b.gsc_branch),
            ("gsc_block", b.gsc_block_pythagorean),
        ];
        Ok(Some(cf))
    }
    fn monte_carlo(&self, net: &Network, samples: usize, seed: u64) -> Result<Sampled> {
        let ms = crate::montecarlo::pythagorean::pythagorean(
            net,
            &crate::montecarlo::McOptions {
                samples,
                seed,
                estimator: self.estimator,
            },
        )?;
        let m = ms
            .get(self.block)
            .ok_or_else(|| Error::param("block", self.block, "a residual block of the network"))?;
        Ok(Sampled {
            summary: m.log_gsc_block,
            samples,
            degenerate: 0,
            notes: vec![
                ("k", m.log_k.mean.exp()),
                ("error", m.pythagorean_error.mean),
                ("error_se", m.pythagorean_error.stderr),
            ],
        })
    }
    fn bias_bound(&self, net: &Network, _value: f64, _policy: &CheckPolicy) -> f64 {
        2.0 / net.widths()[net.depth()] as f64
    }
}

/// The normalised variance sigma^2_{JJ^T} / m_1^2 of the spectrum of J J^T (Pennington et al. 2017;
/// theory/orthogonal.md), measured as mean(m_2) / mean(m_1)^2 - 1 on exact Jacobians (its standard error
/// by the delta method). Bias bound 4 L / n (1 + value), stated in tests/norm.rs.
#[derive(Clone, Copy, Debug)]
pub struct IsometryVariance;

impl Observable for IsometryVariance {
    fn name(&self) -> String {
        "sigma^2_JJT / m_1^2".into()
    }
    fn closed_form(&self, net: &Network, policy: &CheckPolicy) -> Result<Option<ClosedForm>> {
        let v = crate::theory::isometry::isometry_moments(net)?.rel_var;
        Ok(Some(ClosedForm::exact(v, self.bias_bound(net, v, policy))))
    }
    fn monte_carlo(&self, net: &Network, samples: usize, seed: u64) -> Result<Sampled> {
        let ms = crate::montecarlo::isometry::jacobian_moments(net, samples, seed)?;
        let (mean, stderr) = crate::montecarlo::isometry::normalised_variance(&ms)
            .ok_or_else(|| Error::Unsupported("isometry: fewer than two samples".into()))?;
        let n = ms.len();
        Ok(Sampled::of(
            Summary {
                mean,
                stderr,
                // A ratio of means has no per-sample values: the median is the estimate itself and the
                // sd the one implied by the delta-method standard error.
                median: mean,
                sd: stderr * (n as f64).sqrt(),
                n,
            },
            samples,
        ))
    }
    fn bias_bound(&self, net: &Network, value: f64, _policy: &CheckPolicy) -> f64 {
        4.0 * net.depth() as f64 / net.widths()[net.depth()] as f64 * (1.0 + value)
    }
}

pub use crate::theory::finite_width::{FiniteLaw, FinitePrediction, FiniteValue};

/// The finite-width law of ln GSC(L, l) at every layer (theory/finite-width.md), `spectra` draws, seeded:
/// the closed-form side of [`FiniteWidthLaw`] for figures that draw its quantiles and validity.
pub fn finite_law(net: &Network, spectra: usize, seed: u64) -> Result<FinitePrediction> {
    crate::theory::finite_width::predict_finite(
        net,
        &crate::theory::finite_width::FiniteOptions {
            spectra,
            seed,
            ..Default::default()
        },
    )
}

/// ln GSC(L, l) against its finite-width law (theory/finite-width.md) rather than the infinite-width
/// value: the closed form is the law's mean with its own sampling error (`spectra` draws, seed `seed`), no
/// bias bound (the law is exact up to that error). Notes: closed form `sd`; the route is the `method`.
#[derive(Clone, Copy, Debug)]
pub struct FiniteWidthLaw {
    pub layer: usize,
    pub spectra: usize,
    pub seed: u64,
    pub estimator: Estimator,
}

impl Observable for FiniteWidthLaw {
    fn name(&self) -> String {
        LnGscToOutput {
            layer: self.layer,
            estimator: self.estimator,
        }
        .name()
    }
    fn closed_form(&self, net: &Network, _policy: &CheckPolicy) -> Result<Option<ClosedForm>> {
        let p = finite_law(net, self.spectra, self.seed)?;
        let law = *p.log_gsc_to_output[self.layer]
            .law()
            .ok_or_else(|| Error::Unsupported("finite law outside its validity".into()))?;
        Ok(Some(ClosedForm {
            value: law.mean,
            stderr: law.mean_se,
            bias_bound: 0.0,
            notes: vec![("sd", law.sd)],
            method: format!("{:?}", p.method),
        }))
    }
    fn monte_carlo(&self, net: &Network, samples: usize, seed: u64) -> Result<Sampled> {
        LnGscToOutput {
            layer: self.layer,
            estimator: self.estimator,
        }
        .monte_carlo(net, samples, seed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::MlpSpec;

    /// An observable with fixed sides, to test the pairing alone.
    struct Fixed {
        closed: Option<(f64, f64)>,
        measured: (f64, f64),
    }

    impl Observable for Fixed {
        fn name(&self) -> String {
            "fixed".into()
        }
        fn closed_form(&self, _: &Network, _: &CheckPolicy) -> Result<Option<ClosedForm>> {
            Ok(self.closed.map(|(value, stderr)| ClosedForm {
                value,
                stderr,
                bias_bound: 0.25,
                notes: Vec::new(),
                method: String::new(),
            }))
        }
        fn monte_carlo(&self, _: &Network, samples: usize, _: u64) -> Result<Sampled> {
            let (mean, stderr) = self.measured;
            Ok(Sampled::of(
                Summary {
                    mean,
                    stderr,
                    median: mean,
                    sd: stderr * (samples as f64).sqrt(),
                    n: samples,
                },
                samples,
            ))
        }
        fn bias_bound(&self, _: &Network, value: f64, _: &CheckPolicy) -> f64 {
            0.5 * value
        }
    }

    fn relu(width: usize, depth: usize) -> Network {
        Network::mlp(MlpSpec {
            act: Nonlinearity::Relu,
            width,
            depth,
            sigma_w2: 2.0,
            sigma_b2: 0.0,
        })
        .expect("valid")
    }

    #[test]
    fn closed_form_error_adds_in_quadrature_and_bias_bound_is_the_observables() {
        let net = relu(4, 1);
        let obs = Fixed {
            closed: Some((1.0, 3.0)),
            measured: (2.0, 4.0),
        };
        let t = test(
            &net,
            &obs,
            Relation::EqualsClosedForm,
            &TestPolicy::new(16, 0),
        )
        .unwrap();
        assert_eq!(t.evidence.stderr, 5.0);
        assert_eq!(t.evidence.bias_bound, 0.25);
        assert_eq!(t.evidence.prediction, 1.0);
        // A stated bias bound replaces the observable's; a stated value uses the value-dependent bound.
        let p = TestPolicy::new(16, 0).with_bias_bound(0.125);
        let t = test(&net, &obs, Relation::EqualsClosedForm, &p).unwrap();
        assert_eq!(t.evidence.bias_bound, 0.125);
        let t = test(&net, &obs, Relation::Equals(3.0), &TestPolicy::new(16, 0)).unwrap();
        assert_eq!((t.evidence.prediction, t.evidence.bias_bound), (3.0, 1.5));
        assert_eq!(t.evidence.stderr, 4.0, "a stated value carries no error");
    }

    #[test]
    fn an_exact_closed_form_leaves_a_tiny_measured_error_unchanged() {
        let net = relu(4, 1);
        let obs = Fixed {
            closed: Some((1.0, 0.0)),
            measured: (1.0, 1e-200),
        };
        let t = test(
            &net,
            &obs,
            Relation::EqualsClosedForm,
            &TestPolicy::new(16, 0),
        )
        .unwrap();
        assert_eq!(t.evidence.stderr, 1e-200);
    }

    #[test]
    fn equality_with_no_closed_form_is_an_error_and_directions_need_none() {
        let net = relu(4, 1);
        let obs = Fixed {
            closed: None,
            measured: (2.0, 0.5),
        };
        assert!(test(
            &net,
            &obs,
            Relation::EqualsClosedForm,
            &TestPolicy::new(16, 0)
        )
        .is_err());
        let t = test(&net, &obs, Relation::Greater(0.0), &TestPolicy::new(16, 0)).unwrap();
        assert_eq!(t.evidence.z, 4.0);
        let t = test(&net, &obs, Relation::Less(0.0), &TestPolicy::new(16, 0)).unwrap();
        assert_eq!(t.evidence.z, 4.0);
        assert!(t.evidence.p_value > 0.99, "2 is not below 0");
    }

    #[test]
    fn ln_gsc_pairs_the_engines_at_one_seed_with_the_span_bias_bound() {
        let (width, depth) = (8, 3);
        let net = relu(width, depth);
        let obs = LnGscToOutput {
            layer: 1,
            estimator: Estimator::Exact,
        };
        let t = test(
            &net,
            &obs,
            Relation::EqualsClosedForm,
            &TestPolicy::new(12, 7),
        )
        .unwrap();
        let (p, m) = super::super::predict_and_measure(&net, 12, 7, Estimator::Exact).unwrap();
        assert_eq!(t.evidence.prediction, p.layers[1].log_gsc_to_output);
        assert_eq!(t.evidence.measurement, m.layers[1].log_gsc_to_output.mean);
        // Layers 2 and 3 are spanned from f_1 to the output.
        let kappa = CheckPolicy::default().kappa;
        assert_eq!(t.evidence.bias_bound, kappa * 2.0 / width as f64);
        let sq = SqNorm {
            layer: depth,
            estimator: Estimator::Exact,
        };
        let b = sq.bias_bound(&net, -2.0, &CheckPolicy::default());
        assert_eq!(b, kappa * 3.0 / width as f64 * 2.0);
    }
}
