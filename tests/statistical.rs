//! Theory against Monte Carlo at large width. Every comparison allows z_crit standard errors (measured)
//! plus the finite-width bias bound kappa * sum(1/n_l) of `verify::CheckPolicy` (theory/verification.md),
//! with z_crit set by the stated false-alarm rate; seeds are fixed, so a pass is reproducible.

#![allow(clippy::needless_range_loop)] // index loops read like the formulas

use gradscale::arch::{MlpSpec, Network};
use gradscale::montecarlo::{simulate, Estimator, McOptions};
use gradscale::theory::{predict, MfOptions};
use gradscale::verify::{check, CheckPolicy, Verdict};
use gradscale::Nonlinearity;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

fn mlp(act: Nonlinearity, width: usize, depth: usize, sw2: f64, sb2: f64) -> Network {
    Network::mlp(MlpSpec {
        act,
        width,
        depth,
        sigma_w2: sw2,
        sigma_b2: sb2,
    })
    .unwrap()
}

/// Runs `check` and fails with the offending rows. `family_alpha` is the false-alarm rate of the whole
/// call (Bonferroni over its comparisons).
fn assert_agrees(net: &Network, samples: usize, seed: u64, family_alpha: f64) {
    assert_agrees_with(net, samples, seed, family_alpha, Estimator::Exact)
}

fn assert_agrees_with(
    net: &Network,
    samples: usize,
    seed: u64,
    family_alpha: f64,
    estimator: Estimator,
) {
    let p = predict(net, &MfOptions::default()).unwrap();
    let m = simulate(
        net,
        &McOptions {
            samples,
            seed,
            estimator,
        },
    )
    .unwrap();
    let r = check(
        net,
        &p,
        &m,
        &CheckPolicy {
            family_alpha,
            ..CheckPolicy::default()
        },
    );
    // The worst |measured - predicted| / tolerance, printed for --nocapture runs.
    let worst = r
        .comparisons
        .iter()
        .map(|c| (c.measured - c.predicted).abs() / c.tolerance)
        .fold(0.0f64, f64::max);
    println!("worst |diff|/tolerance {worst:.3}");
    let bad: Vec<String> = r
        .comparisons
        .iter()
        .filter(|c| c.verdict != Verdict::Agree)
        .map(|c| {
            format!(
                "{} l={} pred {:.5} meas {:.5} se {:.5} tol {:.5}",
                c.quantity, c.layer, c.predicted, c.measured, c.stderr, c.tolerance
            )
        })
        .collect();
    assert!(
        bad.is_empty(),
        "{}: {}",
        net.layers[0].ops.len(),
        bad.join("\n")
    );
}

#[test]
fn catalogue_at_width_256_agrees_with_mean_field() {
    // False-alarm rate 1e-6 per nonlinearity.
    for (i, act) in Nonlinearity::catalogue().into_iter().enumerate() {
        let sw2 = MlpSpec::default_sigma_w2(act) * 1.3;
        assert_agrees(&mlp(act, 256, 4, sw2, 0.02), 100, 100 + i as u64, 1e-6);
    }
}

#[test]
fn proptest_random_mlps_agree_with_mean_field() {
    // 8 random (phi, sigma_w^2, sigma_b^2, width >= 256, depth <= 8) from a fixed seed; each case has a
    // false-alarm rate of 1e-6, so the whole property 8e-6.
    let config = Config {
        cases: 8,
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner =
        TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &[42; 32]));
    let acts = Nonlinearity::catalogue();
    let strategy = (
        0..acts.len(),
        0.5f64..3.0,
        0.0f64..0.3,
        256usize..=320,
        1usize..=8,
        any::<u64>(),
    );
    runner
        .run(&strategy, |(ai, sw2, sb2, width, depth, seed)| {
            assert_agrees(&mlp(acts[ai], width, depth, sw2, sb2), 48, seed, 1e-6);
            Ok(())
        })
        .unwrap();
}

#[test]
fn probe_estimator_agrees_with_exact_jacobians() {
    // Same networks (same seed), two estimators: the probe estimate of ln GSC is unbiased to second
    // order, so the two sample means differ by sampling noise only. Tolerance: 4.89 combined se
    // (false-alarm 1e-6), conservative because the two estimates are positively correlated.
    let net = mlp(Nonlinearity::Tanh, 128, 6, 1.5, 0.0);
    let exact = simulate(
        &net,
        &McOptions {
            samples: 100,
            seed: 9,
            estimator: Estimator::Exact,
        },
    )
    .unwrap();
    let probes = simulate(
        &net,
        &McOptions {
            samples: 100,
            seed: 9,
            estimator: Estimator::Probes(16),
        },
    )
    .unwrap();
    for (a, b) in exact.layers.iter().zip(&probes.layers) {
        for (x, y) in [
            (&a.log_gsc_to_output, &b.log_gsc_to_output),
            (&a.log_gsc_from_input, &b.log_gsc_from_input),
        ] {
            let se = (x.stderr.powi(2) + y.stderr.powi(2)).sqrt();
            assert!(
                (x.mean - y.mean).abs() <= 4.89 * se + 1e-12,
                "layer {}: exact {} probes {} se {se}",
                a.index,
                x.mean,
                y.mean
            );
        }
    }
}

/// Batch-normalised MLPs, one description for both engines: 6 random (phi from the whole catalogue,
/// B in 6..=48, sigma_w^2, sigma_b^2, width 200-260, depth 2-4) from a fixed seed; every ln GSC(L, l),
/// ln GSC(l, 0) and ||f_l||^2/n_l against the closed form (the BSB1 rate by sphere quadrature and the
/// top-of-Jacobian factor, theory/batch-norm.md), 4 probes over the batch map. B >= 6 keeps the per-layer
/// gain's variance finite (B = 4 is the documented slow-convergence case). Each case has a false-alarm rate
/// of 1e-6; the bias bound is the verifier's kappa * sum(1/n), which covers the measured O(1/n) shifts of the
/// smooth-phi rate at these B/n (at most ~0.004 per layer, theory/batch-norm.md).
#[test]
fn proptest_random_batch_norm_mlps_agree_with_closed_form() {
    let config = Config {
        cases: 6,
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner =
        TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]));
    let acts = Nonlinearity::catalogue();
    let strategy = (
        0..acts.len(),
        6usize..=48,
        0.5f64..3.0,
        0.0f64..0.3,
        200usize..=260,
        2usize..=4,
        any::<u64>(),
    );
    runner
        .run(&strategy, |(ai, batch, sw2, sb2, width, depth, seed)| {
            let toml = format!(
                "[input]\nwidth = {width}\nbatch = {batch}\n[[layers]]\nrepeat = {depth}\nops = [{{ dense = {{ width = {width}, sigma_w2 = {sw2}, sigma_b2 = {sb2} }} }}, {{ batch-norm = {{}} }}, {{ act = \"{}\" }}]\n",
                acts[ai].name()
            );
            let net = gradscale::arch::from_toml_str(&toml, "prop").unwrap();
            println!("{} B={batch} sw2={sw2:.2} sb2={sb2:.2} n={width} L={depth}", acts[ai].name());
            assert_agrees_with(&net, 100, seed, 1e-6, Estimator::Probes(4));
            Ok(())
        })
        .unwrap();
}

#[test]
fn heavy_tailed_norm_means_are_inconclusive_not_agree() {
    // He-relu, width 12, depth 300: Var ln ||f_l||^2 grows by about 5/12 per layer (theory/collapse.md), so
    // past layer ~7 it exceeds ln 10 and ten samples cannot estimate E ||f_l||^2 (which is exact here:
    // E ||f_l||^2 / n = 1 at any width). Those rows must say inconclusive; the shallow ones still get a
    // verdict, and the GSC rows (logs, no heavy tail) are unaffected.
    let net = Network::mlp(MlpSpec {
        act: Nonlinearity::Relu,
        width: 12,
        depth: 300,
        sigma_w2: 2.0,
        sigma_b2: 0.0,
    })
    .unwrap();
    let p = predict(&net, &MfOptions::default()).unwrap();
    // Eleven draws: one is degenerate (a dead layer) at this seed, leaving ten, `CheckPolicy::min_samples`.
    let m = simulate(
        &net,
        &McOptions {
            samples: 11,
            seed: 3,
            estimator: Estimator::Exact,
        },
    )
    .unwrap();
    let r = check(&net, &p, &m, &CheckPolicy::default());
    let norms: Vec<_> = r
        .comparisons
        .iter()
        .filter(|c| c.quantity.starts_with("||f_l||"))
        .collect();
    assert_ne!(norms[0].verdict, Verdict::Inconclusive);
    assert!(norms[100..]
        .iter()
        .all(|c| c.verdict == Verdict::Inconclusive));
    assert!(r
        .comparisons
        .iter()
        .filter(|c| c.quantity.starts_with("ln GSC"))
        .all(|c| c.verdict != Verdict::Inconclusive));
}
