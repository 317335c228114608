//! The two engines on their own: exact identities of the closed form, Jacobians against finite
//! differences, reproducibility and degenerate samples of the Monte Carlo engine.

#![allow(clippy::needless_range_loop)] // index loops read like the formulas

use gradscale::arch::{Dense, Init, InputModel, Layer, MlpSpec, Network, Op, Residual, Skip};
use gradscale::montecarlo::{self, draw_input, draw_params, forward, Estimator, McOptions, Sample};
use gradscale::theory::{self, FixedPoint, MfOptions};
use gradscale::Nonlinearity;
use nalgebra::DMatrix;

fn mlp(act: &str, width: usize, depth: usize, sw2: f64, sb2: f64) -> Network {
    Network::mlp(MlpSpec {
        act: act.parse().unwrap(),
        width,
        depth,
        sigma_w2: sw2,
        sigma_b2: sb2,
    })
    .unwrap()
}

#[test]
fn positively_homogeneous_nets_have_gsc_exactly_one_at_infinite_width() {
    for act in ["relu", "linear", "leaky-relu:0.2"] {
        for sw2 in [0.5, 2.0, 3.0] {
            let p = theory::predict(&mlp(act, 100, 40, sw2, 0.0), &MfOptions::default()).unwrap();
            for l in &p.layers {
                assert!(
                    l.log_gsc_to_output.abs() < 1e-12,
                    "{act} {sw2}: {}",
                    l.log_gsc_to_output
                );
                assert!(l.log_gsc_from_input.abs() < 1e-12);
            }
        }
    }
}

#[test]
fn depth_ten_thousand_does_not_overflow() {
    // relu with sigma_w^2 = 4 doubles q every layer: 2^10000 overflows f64 unless the engine stays in logs.
    for (act, sw2) in [
        ("relu", 4.0),
        ("relu", 0.5),
        ("selu", 4.0),
        ("tanh", 0.3),
        ("tanh", 3.0),
    ] {
        let p = theory::predict(&mlp(act, 10, 10_000, sw2, 0.0), &MfOptions::default()).unwrap();
        for l in &p.layers {
            assert!(
                l.log_gsc_to_output.is_finite(),
                "{act} {sw2} layer {}",
                l.index
            );
            assert!(l.log_sq_norm.is_finite(), "{act} {sw2} layer {}", l.index);
        }
        assert!(p.fit.log_r.is_finite());
    }
}

#[test]
fn selu_chi1_and_fixed_point() {
    let fp = theory::fixed_point::analyse(Nonlinearity::Selu, 1.0, 0.0);
    match fp.fixed_point {
        FixedPoint::Point { q } => assert!((q - 1.0).abs() < 1e-10, "q* = {q}"),
        other => panic!("expected q* = 1, got {other:?}"),
    }
    let chi1 = fp.chi1.unwrap();
    assert!((chi1 - 1.071574992455799).abs() < 1e-12, "chi_1 = {chi1}");
    // REFERENCE §10.4: dq'/dq = 0.7826478831968128 at q* = 1, xi_q = 4.080427073.
    assert!((fp.length_slope.unwrap() - 0.7826478831968128).abs() < 1e-10);
    assert!((fp.xi_q.unwrap() - 4.080427073).abs() < 1e-8);
}

#[test]
fn fixed_point_kinds() {
    use Nonlinearity::*;
    let kind = |a, w, b| theory::fixed_point::fixed_point(a, w, b);
    assert_eq!(kind(Relu, 2.0, 0.0), FixedPoint::EveryQ);
    assert!(matches!(kind(Relu, 2.0, 0.1), FixedPoint::None { .. }));
    assert!(matches!(kind(Relu, 3.0, 0.0), FixedPoint::None { .. }));
    assert!(matches!(kind(Relu, 1.0, 0.0), FixedPoint::None { .. }));
    // Below criticality a bias gives q* = sigma_b^2 / (1 - sigma_w^2/2).
    assert_eq!(kind(Relu, 1.0, 0.5), FixedPoint::Point { q: 1.0 });
    // tanh at sigma_w^2 = 1 without bias: q* = 0, approached as a power law.
    assert_eq!(kind(Tanh, 1.0, 0.0), FixedPoint::Point { q: 0.0 });
    // REFERENCE §10.8: the tanh critical line passes (sigma_w^2, sigma_b^2) = (1.760954639607, 0.05) with
    // q* = 0.5700478816408 and chi_1 = 1.
    let fp = theory::fixed_point::analyse(Tanh, 1.760954639607, 0.05);
    match fp.fixed_point {
        FixedPoint::Point { q } => assert!((q - 0.5700478816408).abs() < 1e-9, "q* = {q}"),
        other => panic!("{other:?}"),
    }
    assert!((fp.chi1.unwrap() - 1.0).abs() < 1e-10);
}

#[test]
fn per_layer_gsc_equals_sqrt_chi1_at_the_fixed_point() {
    // A network started at q* stays there; then GSC(l, l-1)^2 = chi_1 with or without bias (theory/gsc-mlp.md).
    for (act, sw2, sb2) in [
        ("tanh", 2.0, 0.1),
        ("erf", 1.5, 0.0),
        ("gelu", 1.5, 0.2),
        ("sigmoid", 4.0, 0.3),
    ] {
        let a: Nonlinearity = act.parse().unwrap();
        let fp = theory::fixed_point::analyse(a, sw2, sb2);
        let FixedPoint::Point { q } = fp.fixed_point else {
            panic!("{act}: no fixed point")
        };
        let p = theory::predict(&mlp(act, 50, 300, sw2, sb2), &MfOptions::default()).unwrap();
        let last = p.layers.last().unwrap();
        assert!(
            (last.q - q).abs() < 1e-8 * q.max(1.0),
            "{act}: q_L {} vs q* {q}",
            last.q
        );
        let chi1 = fp.chi1.unwrap();
        assert!(
            (2.0 * last.log_gsc_layer - chi1.ln()).abs() < 1e-8,
            "{act}: per-layer ln GSC^2 {} vs ln chi_1 {}",
            2.0 * last.log_gsc_layer,
            chi1.ln()
        );
    }
}

fn finite_difference_check(net: &Network) {
    let mut rng = montecarlo::sample_rng(3, 0);
    let params = draw_params(net, &mut rng);
    let x = draw_input(net, &mut rng);
    let trace = forward(net, &params, x.clone());
    let n0 = net.input.width;
    let bj = montecarlo::jacobian_batch(net);
    let mut t: Vec<DMatrix<f64>> = (0..bj)
        .map(|b| {
            let mut m = DMatrix::zeros(n0, n0 * bj);
            for j in 0..n0 {
                m[(j, b * n0 + j)] = 1.0;
            }
            m
        })
        .collect();
    for l in 0..net.depth() {
        for ((op, p), c) in net.layers[l]
            .ops
            .iter()
            .zip(&params[l])
            .zip(&trace.caches[l])
        {
            t = op.jvp(p, c, t);
        }
    }
    let h = 1e-6;
    for b2 in 0..bj {
        for j in 0..n0 {
            let mut xp = x.clone();
            let mut xm = x.clone();
            xp[(j, b2)] += h;
            xm[(j, b2)] -= h;
            let fp = forward(net, &params, xp).outputs.pop().unwrap();
            let fm = forward(net, &params, xm).outputs.pop().unwrap();
            for b in 0..bj {
                for i in 0..fp.nrows() {
                    let fd = (fp[(i, b)] - fm[(i, b)]) / (2.0 * h);
                    let an = t[b][(i, b2 * n0 + j)];
                    // Central differences: O(h^2) truncation plus O(eps/h) round-off, ~1e-8 here.
                    assert!(
                        (fd - an).abs() < 1e-6 * (1.0 + an.abs()),
                        "d f[{i},{b}] / d x[{j},{b2}]: fd {fd} vs {an}"
                    );
                }
            }
        }
    }
}

#[test]
fn jacobians_match_finite_differences() {
    let smooth = ["tanh", "gelu", "silu", "erf", "softplus", "sigmoid"];
    for act in smooth {
        finite_difference_check(&mlp(act, 7, 4, 1.7, 0.1));
    }
    let tanh = Nonlinearity::Tanh;
    let dense = |w| {
        Op::Dense(Dense {
            width: w,
            sigma_w2: 1.5,
            sigma_b2: 0.05,
            init: Init::Gaussian,
        })
    };
    // Layer norm, batch norm and residual blocks, each once.
    let ln = Network {
        input: InputModel::sphere(6),
        layers: vec![
            Layer {
                ops: vec![dense(6), Op::LayerNorm { eps: 1e-5 }, Op::Act(tanh)]
            };
            3
        ],
    };
    finite_difference_check(&ln);
    let bn = Network {
        input: InputModel {
            width: 4,
            batch: 5,
            correlation: 0.3,
            data: None,
        },
        layers: vec![
            Layer {
                ops: vec![dense(4), Op::BatchNorm { eps: 1e-5 }, Op::Act(tanh)]
            };
            2
        ],
    };
    finite_difference_check(&bn);
    let res = Network {
        input: InputModel::sphere(6),
        layers: vec![
            Layer {
                ops: vec![Op::Residual(Residual {
                    skip: Skip::Orthogonal,
                    alpha: 0.7,
                    branch: vec![dense(6), Op::Act(tanh), dense(6)],
                })]
            };
            3
        ],
    };
    finite_difference_check(&res);
}

#[test]
fn results_do_not_depend_on_the_thread_count() {
    let net = mlp("tanh", 30, 5, 1.5, 0.05);
    let opts = McOptions {
        samples: 24,
        seed: 11,
        estimator: Estimator::Exact,
    };
    let run = |threads| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| montecarlo::simulate(&net, &opts).unwrap())
    };
    let a = run(1);
    let b = run(2);
    for (la, lb) in a.layers.iter().zip(&b.layers) {
        assert_eq!(la.log_gsc_to_output, lb.log_gsc_to_output);
        assert_eq!(la.log_gsc_from_input, lb.log_gsc_from_input);
        assert_eq!(la.sq_norm, lb.sq_norm);
    }
    // A different seed gives different numbers.
    let c = montecarlo::simulate(&net, &McOptions { seed: 12, ..opts }).unwrap();
    assert_ne!(
        a.layers[0].log_gsc_to_output.mean,
        c.layers[0].log_gsc_to_output.mean
    );
}

#[test]
fn dead_relu_networks_are_counted_not_nan() {
    // Width 2 relu: each layer is entirely dead with probability 2^-2, so a depth-6 sample is degenerate
    // with probability p = 1 - (3/4)^6 (theory/finite-width.md). Binomial(200, p) tolerance at a
    // false-alarm rate of 1e-6 (z = 4.89).
    let net = mlp("relu", 2, 6, 2.0, 0.0);
    let m = montecarlo::simulate(
        &net,
        &McOptions {
            samples: 200,
            seed: 5,
            estimator: Estimator::Exact,
        },
    )
    .unwrap();
    let p = 1.0 - 0.75f64.powi(6);
    let (mean, sd) = (200.0 * p, (200.0 * p * (1.0 - p)).sqrt());
    assert!(
        (m.degenerate as f64 - mean).abs() <= 4.89 * sd,
        "degenerate {} vs expected {mean:.1} +- {sd:.1}",
        m.degenerate
    );
    for l in &m.layers {
        assert!(l.log_gsc_to_output.mean.is_finite());
        assert!(l.sq_norm.mean.is_finite());
    }
}

#[test]
fn deep_homogeneous_nets_are_measured_in_log_space() {
    // Depth 1500: ||f||^2 and ||J||^2 scale as (sigma_w^2 / 2)^L, so sigma_w^2 = 4 reaches 2^1500 and 0.5
    // reaches 2^-3000, both far outside f64. The same seed draws the same normals, scaled by
    // sqrt(sigma_w^2): the GSC must be the same for all three and ln ||f_l||^2 must shift by exactly
    // l ln(sigma_w^2 / 2), up to rounding. Before the engine kept its scales in log space, every sample
    // here was reported "degenerate".
    let depth = 1500;
    let opts = McOptions {
        samples: 4,
        seed: 4,
        estimator: Estimator::Exact,
    };
    let run = |sw2: f64| montecarlo::simulate(&mlp("relu", 16, depth, sw2, 0.0), &opts).unwrap();
    // A layer dies (all 16 units off) with probability 2^-16, i.e. 2.3% of depth-1500 samples: the same
    // samples die whatever sigma_w^2, so the usable samples line up.
    let base = run(2.0);
    assert_eq!(base.overflow, 0);
    assert!(base.degenerate < opts.samples);
    for sw2 in [4.0, 0.5] {
        let m = run(sw2);
        assert_eq!(
            (m.degenerate, m.overflow),
            (base.degenerate, 0),
            "sigma_w^2 {sw2}"
        );
        for l in [1, 700, depth] {
            let shift = l as f64 * (sw2 / 2.0f64).ln();
            for (a, b) in m.log_sq_norm_samples[l]
                .iter()
                .zip(&base.log_sq_norm_samples[l])
            {
                assert!(
                    (a - b - shift).abs() < 1e-9 * (1.0 + shift.abs()),
                    "{sw2} {l}"
                );
            }
            let (a, b) = (&m.layers[l], &base.layers[l]);
            assert!((a.log_gsc_from_input.mean - b.log_gsc_from_input.mean).abs() < 1e-9);
            assert!((a.log_gsc_to_output.mean - b.log_gsc_to_output.mean).abs() < 1e-9);
            assert!(a.log_gsc_from_input.mean.is_finite());
        }
    }
}

#[test]
fn overflow_is_counted_apart_from_degenerate_samples() {
    // SELU is not homogeneous, so it cannot be rescaled exactly: at sigma_w^2 = 4 its squared norm grows by
    // about 2 lambda^2 = 2.2 per layer and leaves f64 near layer 900. Those samples are "overflow", never
    // "degenerate" (the latter is compared with the dead-relu law in verify::finite).
    let m = montecarlo::simulate(
        &mlp("selu", 16, 1200, 4.0, 0.0),
        &McOptions {
            samples: 3,
            seed: 1,
            estimator: Estimator::Exact,
        },
    )
    .unwrap();
    assert_eq!((m.overflow, m.degenerate), (3, 0));
}
