//! The registry. Each testable claim is a function from the audit options to its evidence; each runs its
//! own fixed seed (offset from the audit seed), so an audit is reproducible.

use super::capabilities as cap;
use super::{Claim, Evidence, Source};
use crate::arch::{Dense, Init, InputModel, Layer, MlpSpec, Network, Op, Residual, Skip};
use crate::error::Result;
use crate::montecarlo::{self, simulate, Estimator, McOptions, Measurement};
use crate::theory::{self, predict, MfOptions};
use crate::verify::CheckPolicy;
use crate::Nonlinearity;

/// Options of one audit run.
#[derive(Clone, Debug)]
pub struct AuditOptions {
    pub seed: u64,
    /// Fewer samples, smaller networks where the claim allows (finishes in under a minute).
    pub quick: bool,
}

impl AuditOptions {
    pub(crate) fn samples(&self, full: usize) -> usize {
        if self.quick {
            (full / 4).max(16)
        } else {
            full
        }
    }
}

fn dense(width: usize, sigma_w2: f64) -> Op {
    Op::Dense(Dense {
        width,
        sigma_w2,
        sigma_b2: 0.0,
        init: Init::Gaussian,
    })
}

fn mlp(
    act: Nonlinearity,
    width: usize,
    depth: usize,
    sigma_w2: f64,
    sigma_b2: f64,
) -> Result<Network> {
    Network::mlp(MlpSpec {
        act,
        width,
        depth,
        sigma_w2,
        sigma_b2,
    })
}

fn stack(width: usize, batch: usize, depth: usize, ops: Vec<Op>) -> Network {
    Network {
        input: InputModel {
            width,
            batch,
            correlation: 0.0,
            data: None,
        },
        layers: vec![Layer { ops }; depth],
    }
}

fn measure(net: &Network, samples: usize, seed: u64, estimator: Estimator) -> Result<Measurement> {
    simulate(
        net,
        &McOptions {
            samples,
            seed,
            estimator,
        },
    )
}

/// The finite-width bias bound of theory/verification.md for a quantity spanning `layers` layers of width n.
fn bias_bound(layers: usize, n: usize) -> f64 {
    CheckPolicy::default().kappa * layers as f64 / n as f64
}

/// ln GSC(L, 0) > 0: the measured network explodes.
fn explodes(
    net: &Network,
    o: &AuditOptions,
    samples: usize,
    seed: u64,
    estimator: Estimator,
    what: &str,
) -> Result<Evidence> {
    let m = measure(net, o.samples(samples), o.seed + seed, estimator)?;
    let s = &m.layers[0].log_gsc_to_output;
    let depth = net.depth();
    Ok(Evidence::greater(
        0.0,
        s.mean,
        s.stderr,
        format!(
            "{what}: measured ln GSC(L, 0) = {:.4} +- {:.4} over {} nets ({} degenerate), i.e. {:.4} per layer (GSC x{:.3} over {depth} layers); seed {}",
            s.mean,
            s.stderr,
            m.samples,
            m.degenerate,
            s.mean / depth as f64,
            s.mean.exp(),
            o.seed + seed
        ),
    ))
}

/// Closed form against measurement for ln GSC(L, 0).
fn gsc_matches(
    net: &Network,
    o: &AuditOptions,
    samples: usize,
    seed: u64,
    what: &str,
) -> Result<Evidence> {
    let p = predict(net, &MfOptions::default())?;
    let m = measure(net, o.samples(samples), o.seed + seed, Estimator::Exact)?;
    let s = &m.layers[0].log_gsc_to_output;
    let widths = net.widths();
    let span: f64 = widths[1..].iter().map(|&n| 1.0 / n as f64).sum();
    let bias = CheckPolicy::default().kappa * span;
    Ok(Evidence::equality(
        p.layers[0].log_gsc_to_output,
        s.mean,
        s.stderr,
        bias,
        format!(
            "{what}: predicted ln GSC(L, 0) = {:.4}, measured {:.4} +- {:.4} over {} nets; seed {}",
            p.layers[0].log_gsc_to_output,
            s.mean,
            s.stderr,
            m.samples,
            o.seed + seed
        ),
    ))
}

fn selu_explodes(o: &AuditOptions) -> Result<Evidence> {
    let net = mlp(Nonlinearity::Selu, 100, 50, 1.0, 0.0)?;
    Ok(explodes(
        &net,
        o,
        64,
        1,
        Estimator::Exact,
        "SELU MLP, sigma_w^2 = 1, width 100, depth 50",
    )?
    .with_figure("gsc-depth"))
}

fn layer_tanh(width: usize, depth: usize) -> Network {
    stack(
        width,
        1,
        depth,
        vec![
            dense(width, 1.0),
            Op::LayerNorm { eps: 1e-5 },
            Op::Act(Nonlinearity::Tanh),
        ],
    )
}

fn popular_explode(o: &AuditOptions) -> Result<Evidence> {
    explodes(
        &layer_tanh(100, 50),
        o,
        64,
        2,
        Estimator::Exact,
        "layer-tanh MLP (dense -> layer norm -> tanh), width 100, depth 50",
    )
}

/// Mean cosine similarity of two independent inputs' representations at the last layer.
fn mean_final_cosine(net: &Network, samples: usize, seed: u64) -> (f64, f64) {
    let xs: Vec<f64> = (0..samples)
        .map(|i| {
            let mut rng = montecarlo::sample_rng(seed, i as u64);
            let params = montecarlo::draw_params(net, &mut rng);
            let x = montecarlo::draw_input(net, &mut rng);
            let f = montecarlo::forward(net, &params, x)
                .outputs
                .pop()
                .expect("output");
            let (a, b) = (f.column(0), f.column(1));
            let d = a.norm() * b.norm();
            if d > 0.0 {
                a.dot(&b) / d
            } else {
                f64::NAN
            }
        })
        .filter(|v| v.is_finite())
        .collect();
    let s = crate::stats::Summary::of(&xs).expect("samples");
    (s.mean, s.stderr)
}

fn collapsing_domain(o: &AuditOptions) -> Result<Evidence> {
    // He-ReLU has GSC exactly 1 at infinite width (no explosion) ...
    let mut net = mlp(Nonlinearity::Relu, 100, 50, 2.0, 0.0)?;
    let p = predict(&net, &MfOptions::default())?;
    // ... and two independent inputs (correlation ~0) become nearly parallel.
    net.input.batch = 2;
    let seed = o.seed + 4;
    let (c, se) = mean_final_cosine(&net, o.samples(64), seed);
    Ok(Evidence::greater(
        0.9,
        c,
        se,
        format!(
            "He-ReLU MLP, width 100, depth 50: predicted ln GSC(L, 0) = {:.1e} (no explosion), yet two independent inputs end with cosine similarity {c:.4} +- {se:.4} (threshold 0.9); seed {seed}",
            p.layers[0].log_gsc_to_output
        ),
    ))
}

fn resnet_tanh(width: usize, blocks: usize) -> Network {
    stack(
        width,
        1,
        blocks,
        vec![Op::Residual(Residual {
            skip: Skip::Identity,
            alpha: 1.0,
            branch: vec![
                dense(width, 1.0),
                Op::LayerNorm { eps: 1e-5 },
                Op::Act(Nonlinearity::Tanh),
                dense(width, 1.0),
            ],
        })],
    )
}

fn resnet_smaller(o: &AuditOptions) -> Result<Evidence> {
    let n = o.samples(64);
    let plain = measure(&layer_tanh(100, 50), n, o.seed + 5, Estimator::Exact)?;
    let res = measure(&resnet_tanh(100, 50), n, o.seed + 6, Estimator::Exact)?;
    let (a, b) = (
        &plain.layers[0].log_gsc_to_output,
        &res.layers[0].log_gsc_to_output,
    );
    let diff = a.mean - b.mean;
    let se = (a.stderr.powi(2) + b.stderr.powi(2)).sqrt();
    Ok(Evidence::greater(
        0.0,
        diff,
        se,
        format!(
            "ln GSC(L, 0): layer-tanh MLP {:.3} +- {:.3} vs ResNet with branch dense -> LN -> tanh -> dense {:.3} +- {:.3} (width 100, 50 layers/blocks): ResNet GSC smaller by a factor {:.2}; seeds {}, {}",
            a.mean, a.stderr, b.mean, b.stderr, diff.exp(), o.seed + 5, o.seed + 6
        ),
    ))
}

fn pythagorean(o: &AuditOptions) -> Result<Evidence> {
    Ok(gsc_matches(
        &resnet_tanh(100, 50),
        o,
        64,
        7,
        "ResNet, 50 blocks x + (dense -> LN -> tanh -> dense), width 100, Pythagorean closed form",
    )?
    .with_figure("resnet-dilution"))
}

fn relu_gsc_one(o: &AuditOptions) -> Result<Evidence> {
    let net = mlp(Nonlinearity::Relu, 256, 4, 2.0, 0.0)?;
    gsc_matches(
        &net,
        o,
        128,
        8,
        "He-ReLU MLP, width 256, depth 4 (infinite-width GSC exactly 1)",
    )
}

fn gsc2_is_chi1(o: &AuditOptions) -> Result<Evidence> {
    let fp = theory::fixed_point::analyse(Nonlinearity::Selu, 1.0, 0.0);
    let chi1 = fp.chi1.unwrap_or(f64::NAN);
    let depth = 8;
    let net = mlp(Nonlinearity::Selu, 256, depth, 1.0, 0.0)?;
    let m = measure(&net, o.samples(128), o.seed + 9, Estimator::Exact)?;
    let s = &m.layers[0].log_gsc_to_output;
    Ok(Evidence::equality(
        0.5 * depth as f64 * chi1.ln(),
        s.mean,
        s.stderr,
        bias_bound(depth, 256),
        format!(
            "SELU at its fixed point q* = 1: ln GSC(L, 0) = (L/2) ln chi_1 with chi_1 = {chi1:.12}; measured {:.4} +- {:.4} at width 256, depth {depth}; seed {}",
            s.mean,
            s.stderr,
            o.seed + 9
        ),
    ))
}

fn selu_fixed_point(o: &AuditOptions) -> Result<Evidence> {
    let depth = 8;
    let net = mlp(Nonlinearity::Selu, 256, depth, 1.0, 0.0)?;
    let m = measure(&net, o.samples(128), o.seed + 10, Estimator::Exact)?;
    let s = &m.layers[depth].sq_norm;
    Ok(Evidence::equality(
        1.0,
        s.mean,
        s.stderr,
        bias_bound(depth, 256),
        format!(
            "SELU, sigma_w^2 = 1, inputs with ||x||^2/n = 1: ||f_L||^2/n stays 1; measured {:.4} +- {:.4} at width 256, depth {depth}; seed {}",
            s.mean,
            s.stderr,
            o.seed + 10
        ),
    ))
}

fn tanh_chaotic(o: &AuditOptions) -> Result<Evidence> {
    let net = mlp(Nonlinearity::Tanh, 256, 10, 2.0, 0.05)?;
    gsc_matches(
        &net,
        o,
        128,
        11,
        "tanh MLP, sigma_w^2 = 2, sigma_b^2 = 0.05, width 256, depth 10",
    )
}

fn scale_invariance(o: &AuditOptions) -> Result<Evidence> {
    // Rescale layer 2's weights by a and layer 3's by 1/a in a bias-free relu net: the function is
    // unchanged, f_2 scales by a, and GSC(L, 0), GSC(2, 0) must not move (raw gradient norms do).
    let net = mlp(Nonlinearity::Relu, 50, 5, 2.0, 0.0)?;
    let mut rng = montecarlo::sample_rng(o.seed + 12, 0);
    let mut params = montecarlo::draw_params(&net, &mut rng);
    let x = montecarlo::draw_input(&net, &mut rng);
    let t0 = montecarlo::forward(&net, &params, x.clone());
    let o0 = montecarlo::outcome(&net, &params, &t0, Estimator::Exact, &mut rng);
    let a = 7.5;
    for (l, factor) in [(1usize, a), (2usize, 1.0 / a)] {
        if let montecarlo::OpParams::Dense { w, .. } = &mut params[l][0] {
            *w *= factor;
        }
    }
    let t1 = montecarlo::forward(&net, &params, x);
    let o1 = montecarlo::outcome(&net, &params, &t1, Estimator::Exact, &mut rng);
    let diff = (o1.log_gsc_to_output[0] - o0.log_gsc_to_output[0])
        .abs()
        .max((o1.log_gsc_from_input[2] - o0.log_gsc_from_input[2]).abs());
    Ok(Evidence::equality(
        0.0,
        diff,
        0.0,
        1e-10,
        format!(
            "relu net width 50: layer 2 weights x{a}, layer 3 x1/{a}: max change of ln GSC(L, 0), ln GSC(2, 0) = {diff:.2e} (round-off bound 1e-10), while ||f_2|| changed by x{:.3}",
            (t1.outputs[2].norm() / t0.outputs[2].norm())
        ),
    ))
}

/// Every claim, in report order.
pub fn registry() -> Vec<Claim> {
    const PAPER: &str = "Philipp, Song & Carbonell, arXiv 1712.05577, abstract";
    vec![
        Claim {
            id: "paper/popular-mlps-explode",
            statement: "Exploding gradients occur in popular MLP architectures (here: layer-normalised tanh).",
            source: Source::SeedPaper,
            reference: PAPER,
            theory: "theory/layer-norm.md",
            test: Some(popular_explode),
            untestable: "",
            control: false,
        },
        Claim {
            id: "paper/selu-does-not-solve",
            statement: "SeLU does not solve exploding gradients.",
            source: Source::SeedPaper,
            reference: PAPER,
            theory: "theory/mean-field.md",
            test: Some(selu_explodes),
            untestable: "",
            control: false,
        },
        Claim {
            id: "paper/batchnorm-does-not-solve",
            statement: "Batch normalisation does not solve exploding gradients.",
            source: Source::SeedPaper,
            reference: PAPER,
            theory: "theory/batch-norm.md",
            test: Some(cap::batchnorm_rate_positive),
            untestable: "",
            control: false,
        },
        Claim {
            id: "paper/adam-does-not-solve",
            statement: "Adam does not solve exploding gradients.",
            source: Source::SeedPaper,
            reference: PAPER,
            theory: "theory/README.md",
            test: None,
            untestable: "needs training with Adam; gradscale studies networks at initialisation (not yet testable)",
            control: false,
        },
        Claim {
            id: "paper/depth-limit",
            statement: "Exploding gradients limit the depth to which networks can be effectively trained.",
            source: Source::SeedPaper,
            reference: PAPER,
            theory: "theory/README.md",
            test: None,
            untestable: "needs training runs across depths (not yet testable)",
            control: false,
        },
        Claim {
            id: "paper/collapsing-domain",
            statement: "Architectures that avoid exploding gradients can suffer from the collapsing domain problem.",
            source: Source::SeedPaper,
            reference: PAPER,
            theory: "theory/gsc-mlp.md",
            test: Some(collapsing_domain),
            untestable: "",
            control: false,
        },
        Claim {
            id: "paper/resnet-smaller-gsc",
            statement: "ResNets have (much) smaller gradients than comparable plain networks.",
            source: Source::SeedPaper,
            reference: PAPER,
            theory: "theory/pythagorean.md",
            test: Some(resnet_smaller),
            untestable: "",
            control: false,
        },
        Claim {
            id: "paper/pythagorean",
            statement: "The small ResNet GSC is a direct consequence of the Pythagorean equation (here: the closed form built on it predicts the measured GSC).",
            source: Source::SeedPaper,
            reference: PAPER,
            theory: "theory/pythagorean.md",
            test: Some(pythagorean),
            untestable: "",
            control: false,
        },
        Claim {
            id: "paper/residual-trick",
            statement: "Any neural network can be expressed as a residual network; skip connections simplify the network mathematically.",
            source: Source::SeedPaper,
            reference: PAPER,
            theory: "theory/README.md",
            test: None,
            untestable: "a statement about trained networks (trained layer = initial layer + change); needs training (not yet testable)",
            control: false,
        },
        Claim {
            id: "paper/effective-depth",
            statement: "The effective depth of trained networks can be far below their compositional depth.",
            source: Source::SeedPaper,
            reference: PAPER,
            theory: "theory/README.md",
            test: None,
            untestable: "effective depth is defined on trained networks (not yet testable)",
            control: false,
        },
        Claim {
            id: "derived/relu-gsc-exactly-one",
            statement: "Positively homogeneous nonlinearities (relu, leaky relu, linear) have per-layer GSC exactly 1 at infinite width, for every sigma_w.",
            source: Source::Derived,
            reference: "",
            theory: "theory/gsc-mlp.md",
            test: Some(relu_gsc_one),
            untestable: "",
            control: false,
        },
        Claim {
            id: "derived/gsc2-equals-chi1",
            statement: "At a fixed point of the length map, per-layer GSC^2 = chi_1 (SELU: 1.071574992456).",
            source: Source::Derived,
            reference: "",
            theory: "theory/gsc-mlp.md",
            test: Some(gsc2_is_chi1),
            untestable: "",
            control: false,
        },
        Claim {
            id: "literature/selu-fixed-point",
            statement: "SELU with sigma_w^2 = 1 keeps unit mean-square activations (q* = 1).",
            source: Source::Literature,
            reference: "Klambauer et al. 2017, Self-Normalizing Neural Networks",
            theory: "theory/mean-field.md",
            test: Some(selu_fixed_point),
            untestable: "",
            control: false,
        },
        Claim {
            id: "derived/tanh-mean-field-gsc",
            statement: "The mean-field GSC of a chaotic tanh MLP with bias matches finite-width networks (width 256).",
            source: Source::Derived,
            reference: "",
            theory: "theory/gsc-mlp.md",
            test: Some(tanh_chaotic),
            untestable: "",
            control: false,
        },
        Claim {
            id: "derived/gsc-scale-invariance",
            statement: "The GSC is invariant to rescaling a layer (compensated in the next), unlike raw gradient norms.",
            source: Source::Derived,
            reference: "",
            theory: "theory/gsc-mlp.md",
            test: Some(scale_invariance),
            untestable: "",
            control: false,
        },
        Claim {
            id: "literature/bn-relu-rate-b16",
            statement: "Batch-normalised ReLU MLPs grow the GSC by sqrt(lambda_G(B)) per layer (B = 16: 1.2609).",
            source: Source::Literature,
            reference: "Yang et al. 2019, A Mean Field Theory of Batch Normalization",
            theory: "theory/batch-norm.md",
            test: Some(cap::bn_rate_b16),
            untestable: "",
            control: false,
        },
        Claim {
            id: "literature/bn-relu-rate-b64",
            statement: "Batch-normalised ReLU MLPs grow the GSC by sqrt(lambda_G(B)) per layer (B = 64).",
            source: Source::Literature,
            reference: "Yang et al. 2019, A Mean Field Theory of Batch Normalization",
            theory: "theory/batch-norm.md",
            test: Some(cap::bn_rate_b64),
            untestable: "",
            control: false,
        },
        Claim {
            id: "derived/bn-tanh-rate-b16",
            statement: "Batch-normalised tanh MLPs grow the GSC by sqrt(lambda(16)) = 1.1164 per layer, the BSB1 rate for any phi derived here (sphere quadrature).",
            source: Source::Derived,
            reference: "",
            theory: "theory/batch-norm.md",
            test: Some(cap::bn_tanh_rate_b16),
            untestable: "",
            control: false,
        },
        Claim {
            id: "derived/bn-top-of-jacobian",
            statement: "The top layer of a Jacobian ending in batch norm -> phi contributes lambda times the factor top (uncentred incoming gradient): ln GSC(1, 0) of BN-tanh, B = 16.",
            source: Source::Derived,
            reference: "",
            theory: "theory/batch-norm.md",
            test: Some(cap::bn_top_of_jacobian),
            untestable: "",
            control: false,
        },
        Claim {
            id: "literature/orthogonal-isometry",
            statement: "Orthogonal weights halve the spread of a ReLU net's Jacobian spectrum: sigma^2_{JJ^T}/m_1^2 = L (orthogonal) vs 2L (Gaussian) at the critical point.",
            source: Source::Literature,
            reference: "Pennington, Schoenholz & Ganguli 2017, Resurrecting the sigmoid in deep learning through dynamical isometry",
            theory: "theory/orthogonal.md",
            test: Some(cap::orthogonal_isometry),
            untestable: "",
            control: false,
        },
        Claim {
            id: "derived/layer-norm-tanh-gsc",
            statement: "Dense -> layer norm -> tanh has per-layer GSC g(1) = 1.085268 at every layer.",
            source: Source::Derived,
            reference: "",
            theory: "theory/layer-norm.md",
            test: Some(cap::layer_norm_tanh),
            untestable: "",
            control: false,
        },
        Claim {
            id: "derived/pythagorean-block",
            statement: "A residual block's GSC obeys GSC_b^2 = (k^2 GSC_s^2 + GSC_rho^2) / (k^2 + 1) (dense-relu-dense branch, identity skip).",
            source: Source::Derived,
            reference: "",
            theory: "theory/pythagorean.md",
            test: Some(cap::pythagorean_block),
            untestable: "",
            control: false,
        },
        Claim {
            id: "derived/tanh-correlation-map",
            statement: "The mean-field correlation map predicts two inputs' correlation at depth (chaotic tanh: no collapse).",
            source: Source::Derived,
            reference: "",
            theory: "theory/collapse.md",
            test: Some(cap::tanh_correlation),
            untestable: "",
            control: false,
        },
        Claim {
            id: "derived/tradeoff-theorem",
            statement: "At the fixed point GSC^2 = chi_1, and c* < 1 iff chi_1 > 1 (closed-form consistency check over a grid, not a measurement).",
            source: Source::Derived,
            reference: "",
            theory: "theory/tradeoff.md",
            test: Some(cap::tradeoff_grid),
            untestable: "",
            control: false,
        },
        Claim {
            id: "derived/finite-width-relu",
            statement: "The finite-width law predicts E ln GSC(L, 0) of He-ReLU at width 100, depth 50 (about 0.30, where the infinite-width value is 0).",
            source: Source::Derived,
            reference: "",
            theory: "theory/finite-width.md",
            test: Some(cap::finite_width_relu),
            untestable: "",
            control: false,
        },
        Claim {
            id: "derived/infinite-width-at-width-100",
            statement: "The infinite-width GSC (He-ReLU: exactly 1) holds at width 100, depth 50 without a finite-width correction. A negative control: expected to be contradicted (the finite-width law is needed), it shows the audit can reject a wrong closed form at this sample size.",
            source: Source::Derived,
            reference: "",
            theory: "theory/finite-width.md",
            test: Some(cap::infinite_width_at_100),
            untestable: "",
            control: true,
        },
    ]
}
