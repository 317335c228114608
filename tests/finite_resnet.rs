//! The sampled radial-bulk chain (theory/finite-width.md section 9) for ResNets whose branch ends in a
//! relu, f_b = f_{b-1} + alpha relu(W2 relu(W1 f_{b-1})), against the Monte Carlo engine with exact
//! Jacobians. Seeds are fixed; false-alarm rates are stated per test.

mod common;

use gradscale::arch::Network;
use gradscale::stats::{z_for_false_alarm, Summary};
use gradscale::theory::radial::{predict_radial_with, RadialLaw, RadialOptions, SampledValue};

use common::relu_ended_resnet;

fn law(nw: &Network, seed: u64) -> RadialLaw {
    predict_radial_with(nw, &RadialOptions { draws: 2000, seed }).expect("relu-ended resnet")
}

use common::simulate_exact as mc;

/// Standard error of (chain mean - measured mean): the engine's and the chain's own sampling, independent.
fn combined_se(p: &SampledValue, got: &Summary) -> f64 {
    (got.stderr.powi(2) + p.mean_se.powi(2)).sqrt()
}

/// Bias bound of the sampled chain at alpha = 1, width 100, up to 50 blocks: the error of its two-mass
/// closure (the bulk Gram taken isotropic, ||J||_F^2 at its conditional mean), measured apart from any
/// sampling of the forward pass by feeding each numpy network's own exact per-block quantities to the
/// closure and pairing with the same network's exact ln GSC (tests/independent/relu_resnet_radial.py, 400
/// networks): |mean paired error| + 3 se, largest over 10, 20, 50 blocks (theory/finite-width.md section 9).
/// Measured for the two-mass closure; the mean-direction term added since moves alpha = 1 by 0.007-0.011
/// and the bound has not been re-measured for the closure with it.
const CLOSURE_BIAS_ALPHA_1: f64 = 0.02;

/// The done-when: ln GSC(L, 0) within 3 standard errors of 200 networks at width 100 for 10, 20, 50
/// blocks, alpha = 1. Asserted here at a stated false-alarm rate of 1e-4 per comparison (three
/// comparisons), with the combined se of the engine and the chain's own sampling plus the closure's bias
/// bound. The deterministic chain (every per-block quantity at its mean) misses the 10-block case by 4.8
/// se; the sampled one carries the randomness of rho^2, the leak and the bulk gain at width n.
#[test]
fn sampled_radial_chain_matches_relu_ended_resnets() {
    let z = z_for_false_alarm(1e-4);
    for (blocks, seed) in [(10, 11), (20, 12), (50, 13)] {
        let nw = relu_ended_resnet(100, blocks, 1.0);
        let law = law(&nw, seed ^ 0xABCD);
        let m = mc(&nw, 200, seed);
        let got = &m.layers[0].log_gsc_to_output;
        let p = law.sampled[0];
        let se = combined_se(&p, got);
        assert!(
            (p.mean - got.mean).abs() < z * se + CLOSURE_BIAS_ALPHA_1,
            "{blocks} blocks: sampled chain {:.4} +- {:.4}, measured {:.4} +- {:.4}",
            p.mean,
            p.mean_se,
            got.mean,
            got.stderr
        );
        // Within 3 combined se without the bias allowance: the done-when itself.
        assert!(
            (p.mean - got.mean).abs() < 3.0 * se,
            "{blocks} blocks: z = {:.2}",
            (p.mean - got.mean) / se
        );
        assert!(m.log_gsc_total.iter().all(|&x| x >= law.lower_bound - 1e-9));
    }
}

/// alpha = 0.2, 50 blocks, width 100: the case where the two-mass closure was 0.18 low (z = -39); the chain
/// with the mean-direction coherence (section 9) gives -1.796 against the engine's -1.797 (0.005). No bias
/// allowance (none measured for this closure): z(1e-4) combined se. Dropping the cross term 2 rho p_e C
/// from R' in `draw_chain` gives -1.978 and fails here (checked: z ~ -35).
#[test]
fn sampled_radial_chain_matches_at_small_alpha() {
    let z = z_for_false_alarm(1e-4);
    let nw = relu_ended_resnet(100, 50, 0.2);
    let p = law(&nw, 31).sampled[0];
    let got = &mc(&nw, 200, 32).layers[0].log_gsc_to_output;
    let se = combined_se(&p, got);
    assert!(
        (p.mean - got.mean).abs() < z * se,
        "chain {:.4} +- {:.4}, measured {:.4} +- {:.4}",
        p.mean,
        p.mean_se,
        got.mean,
        got.stderr
    );
}

/// The chain's per-block forward ratio and leak are sampled from the exact conditional laws, so at one
/// block (where the closure is exact: the bulk Gram is the identity) the sampled chain's mean and sd must
/// agree with the engine's at every alpha. 400 networks and 4000 draws; the sd comparison uses the
/// engine's se of the sd, sd / sqrt(2 (N - 1)) (normal approximation), inflated by 1.5 for the excess
/// kurtosis of ln GSC (measured 1.2-2 in numpy). False alarm 1e-4 per comparison, six comparisons.
#[test]
fn sampled_radial_chain_is_exact_at_one_block() {
    let z = z_for_false_alarm(1e-4);
    for (alpha, seed) in [(1.0, 21), (0.5, 22), (0.2, 23)] {
        let nw = relu_ended_resnet(100, 1, alpha);
        let law = predict_radial_with(&nw, &RadialOptions { draws: 4000, seed }).unwrap();
        let m = mc(&nw, 400, seed);
        let got = &m.layers[0].log_gsc_to_output;
        let p = law.sampled[0];
        let se = combined_se(&p, got);
        assert!(
            (p.mean - got.mean).abs() < z * se,
            "alpha {alpha}: chain {:.4} +- {:.4}, measured {:.4} +- {:.4}",
            p.mean,
            p.mean_se,
            got.mean,
            got.stderr
        );
        let sd_se = 1.5
            * (got.sd.powi(2) / (2.0 * (got.n as f64 - 1.0))
                + p.sd.powi(2) / (2.0 * (law.draws as f64 - 1.0)))
                .sqrt();
        assert!(
            (p.sd - got.sd).abs() < z * sd_se,
            "alpha {alpha}: chain sd {:.4}, measured sd {:.4} +- {:.4}",
            p.sd,
            got.sd,
            sd_se
        );
    }
}

/// Same seed, same numbers, whatever the thread count (draws are seeded by index).
#[test]
fn sampled_radial_chain_is_reproducible() {
    let nw = relu_ended_resnet(30, 5, 1.0);
    let a = law(&nw, 3);
    let b = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap()
        .install(|| law(&nw, 3));
    assert_eq!(a, b);
    assert!(a.sampled.iter().all(|v| v.mean.is_finite() && v.sd >= 0.0));
    assert_eq!(a.sampled[5].mean, 0.0);
}

/// The full grid of section 9 (alpha in {1, 0.5, 0.2}, 10 / 20 / 50 blocks, width 100, 200 networks):
/// prints the table recorded in theory/finite-width.md. Asserts nothing (the chain now carries the
/// mean-direction coherence, section 9; the two-mass closure was 4-39 se low at alpha < 1). Run with `cargo test --release --test finite_resnet -- --ignored`.
#[test]
#[ignore]
fn radial_grid() {
    println!("| alpha | blocks | sampled chain (se) | sd | deterministic chain | measured (se) | sd | z |");
    for (alpha, s0) in [(1.0, 100), (0.5, 200), (0.2, 300)] {
        for (blocks, ds) in [(10, 1), (20, 2), (50, 3)] {
            let nw = relu_ended_resnet(100, blocks, alpha);
            let law = law(&nw, s0 + ds + 7);
            let m = mc(&nw, 200, s0 + ds);
            let got = &m.layers[0].log_gsc_to_output;
            let p = law.sampled[0];
            let se = combined_se(&p, got);
            println!(
                "| {alpha} | {blocks} | {:.4} ({:.4}) | {:.3} | {:.4} | {:.4} ({:.4}) | {:.3} | {:.1} |",
                p.mean,
                p.mean_se,
                p.sd,
                law.finite[0],
                got.mean,
                got.stderr,
                got.sd,
                (p.mean - got.mean) / se
            );
        }
    }
}

/// Cross-implementation check of the sampled chain: the numpy implementation written from the note
/// (tests/independent/relu_resnet_radial.py, `chain`, 2000 draws, seed 101) gives -1.0706 (0.0031),
/// -1.3099 (0.0021), -1.3181 (0.0021) at 10, 20, 50 blocks, alpha = 1, width 100. The numpy code is the
/// two-mass closure (*); the Rust chain now also carries the mean-direction coherence, which moves alpha = 1
/// by 0.007-0.011 (section 9), so this checks the shared sampling at alpha = 1 within z(1e-4) combined se,
/// not the new term.
#[test]
fn sampled_radial_chain_matches_numpy_implementation() {
    let z = z_for_false_alarm(1e-4);
    for (blocks, numpy, numpy_se) in [
        (10, -1.0706, 0.0031),
        (20, -1.3099, 0.0021),
        (50, -1.3181, 0.0021),
    ] {
        let p = law(&relu_ended_resnet(100, blocks, 1.0), 5).sampled[0];
        let se = (p.mean_se.powi(2) + numpy_se * numpy_se).sqrt();
        assert!(
            (p.mean - numpy).abs() < z * se,
            "{blocks} blocks: rust {:.4} +- {:.4}, numpy {numpy} +- {numpy_se}",
            p.mean,
            p.mean_se
        );
    }
}

/// At width 4 the first relu of a block is off on every unit with probability 1/16: the block is then the
/// identity (rho^2 = 1, no leak, ||J||_F^2 = n), and the law stays finite.
#[test]
fn sampled_radial_chain_survives_dead_branches() {
    let law = law(&relu_ended_resnet(4, 3, 1.0), 9);
    assert!(
        law.sampled
            .iter()
            .all(|v| [v.mean, v.mean_se, v.sd, v.q05, v.q95]
                .iter()
                .all(|x| x.is_finite())),
        "{:?}",
        law.sampled
    );
}

/// The builder is the network a user writes in an architecture file (theory/architecture-files.md).
#[test]
fn relu_ended_resnet_builder_is_the_architecture_file_network() {
    let text = "[input]\nwidth = 100\n[[layers]]\nrepeat = 10\nops = [{ residual = { alpha = 0.5, branch = [\
        { dense = { width = 100, sigma_w2 = 2.0 } }, { act = \"relu\" }, \
        { dense = { width = 100, sigma_w2 = 2.0 } }, { act = \"relu\" }] } }]\n";
    let from_file = gradscale::arch::from_toml_str(text, "relu-ended.toml").unwrap();
    assert_eq!(from_file, relu_ended_resnet(100, 10, 0.5));
}
