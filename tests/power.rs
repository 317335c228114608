//! Tests that the checks can fail: the verifier rejects predictions that are off by a few standard errors
//! at its stated false-alarm rate, says "inconclusive" without enough samples, and the closed forms are
//! exercised where a wrong formula would show (Pythagorean blocks with k != 1 and GSC_rho != 1; networks
//! whose input, hidden and output widths all differ). Each test names the one-line breakage it catches
//! (theory/verification.md, "Test power").

mod common;

use common::{dense, layers, resnet};
use gradscale::arch::{Network, Op};
use gradscale::montecarlo::{simulate, Estimator, McOptions};
use gradscale::stats::{z_for_false_alarm, Summary};
use gradscale::theory::{predict, MfOptions};
use gradscale::verify::{check, compare, CheckPolicy, Verdict};
use gradscale::Nonlinearity;
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};

fn tanh_net() -> Network {
    common::mlp(Nonlinearity::Tanh, 64, 4, 1.5, 0.05)
}

fn measure(net: &Network, samples: usize, seed: u64) -> gradscale::montecarlo::Measurement {
    simulate(
        net,
        &McOptions {
            samples,
            seed,
            estimator: Estimator::Exact,
        },
    )
    .unwrap()
}

/// Each row's prediction moved by its own tolerance plus 3 standard errors, up and down: every moved row
/// must disagree (the unmoved rows agree). Catches `compare` always saying "agree" and a one-sided test.
#[test]
fn verify_rejects_predictions_off_by_a_few_standard_errors() {
    let net = tanh_net();
    let p = predict(&net, &MfOptions::default()).unwrap();
    let m = measure(&net, 100, 7);
    let policy = CheckPolicy::default();
    let base = check(&net, &p, &m, &policy);
    assert_eq!(base.disagree, 0, "{base:#?}");
    let depth = net.depth();
    for sign in [1.0, -1.0] {
        let mut q = p.clone();
        for c in &base.comparisons {
            let shift = sign * (c.tolerance + 3.0 * c.stderr);
            let l = &mut q.layers[c.layer];
            match c.quantity.as_str() {
                "ln GSC(L, l)" => l.log_gsc_to_output += shift,
                "ln GSC(k, 0)" => l.log_gsc_from_input += shift,
                // Compared in its own units: move the mean by the shift, relative to the prediction.
                _ => l.log_sq_norm += (1.0 + shift / c.predicted).ln(),
            }
        }
        let r = check(&net, &q, &m, &policy);
        assert_eq!(r.comparisons.len(), 3 * depth);
        for c in &r.comparisons {
            assert_eq!(
                c.verdict,
                Verdict::Disagree,
                "shift {sign:+}: {c:?} should disagree"
            );
        }
    }
}

/// The verdict's stated false-alarm rate and its power, on synthetic sample means whose truth is known:
/// 4000 checks of 400 standard-normal draws each at per-comparison alpha = 0.05. Under the null the number
/// of "disagree" is Binomial(4000, 0.05 + O(1/n) from using z instead of t); accepted within 5 of its
/// standard deviations (false alarm ~6e-7). With the prediction 4 se off (no bias bound), the power is
/// Phi(4 - 1.96) = 0.979; required >= 0.95. With a bias bound of 4 se the same offset must agree at least as
/// often as the null rate says. Catches "always agree", "always disagree", a tolerance without the
/// z_crit factor, and a bias bound not added.
#[test]
fn verify_false_alarm_rate_and_power_are_as_stated() {
    let (reps, n, alpha) = (4000usize, 400usize, 0.05);
    let z = z_for_false_alarm(alpha);
    let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(11);
    let mut null_rejects = 0;
    let mut power_rejects = 0;
    let mut biased_rejects = 0;
    for _ in 0..reps {
        let xs: Vec<f64> = (0..n).map(|_| StandardNormal.sample(&mut rng)).collect();
        let s = Summary::of(&xs).unwrap();
        let se = 1.0 / (n as f64).sqrt();
        let d = |v: Verdict| usize::from(v == Verdict::Disagree);
        null_rejects += d(compare("x", 0, 0.0, &s, z, 0.0).verdict);
        power_rejects += d(compare("x", 0, 4.0 * se, &s, z, 0.0).verdict);
        biased_rejects += d(compare("x", 0, 4.0 * se, &s, z, 4.0 * se).verdict);
    }
    let sd = (reps as f64 * alpha * (1.0 - alpha)).sqrt();
    let expected = reps as f64 * alpha;
    println!("null {null_rejects}, power {power_rejects}, biased {biased_rejects} of {reps}");
    assert!(
        (null_rejects as f64 - expected).abs() <= 5.0 * sd,
        "false alarms {null_rejects} of {reps}, expected {expected} +- {sd:.1}"
    );
    assert!(
        power_rejects as f64 >= 0.95 * reps as f64,
        "{power_rejects}"
    );
    assert!(
        biased_rejects as f64 <= expected + 5.0 * sd,
        "a bias bound must widen the tolerance: {biased_rejects}"
    );
}

/// One sample has no standard error: every row is inconclusive, never agree or disagree.
#[test]
fn verify_is_inconclusive_with_one_sample() {
    let net = tanh_net();
    let p = predict(&net, &MfOptions::default()).unwrap();
    let m = measure(&net, 1, 3);
    let r = check(&net, &p, &m, &CheckPolicy::default());
    assert_eq!(r.inconclusive, r.comparisons.len(), "{r:#?}");
    let one = Summary::of(&[0.3]).unwrap_or(Summary::EMPTY);
    assert_eq!(
        compare("x", 0, 0.3, &one, 3.0, 0.0).verdict,
        Verdict::Inconclusive
    );
}

/// Input 40, hidden 120, 70 and 150, output 90: ln GSC(k, 0) divides ||J||_F^2 by the *input* dimension
/// and ln GSC(L, l) by layer l's, so a wrong layer's dimension moves a row by 1/2 ln(n_a / n_b) >= 0.27,
/// many tolerances at 120 samples. Every row must agree at family false-alarm 1e-6.
#[test]
fn unequal_widths_agree_layer_by_layer() {
    let net = unequal_widths_net();
    let widths = net.widths();
    let mut sorted = widths.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(
        sorted.len(),
        widths.len(),
        "widths must all differ: {widths:?}"
    );
    let p = predict(&net, &MfOptions::default()).unwrap();
    let m = measure(&net, 120, 5);
    let r = check(
        &net,
        &p,
        &m,
        &CheckPolicy {
            family_alpha: 1e-6,
            ..CheckPolicy::default()
        },
    );
    let bad: Vec<_> = r
        .comparisons
        .iter()
        .filter(|c| c.verdict != Verdict::Agree)
        .collect();
    assert!(bad.is_empty(), "{bad:#?}");
}

fn unequal_widths_net() -> Network {
    let l = |w: usize| vec![dense(w, 1.5, 0.05), Op::Act(Nonlinearity::Tanh)];
    layers(40, 1, vec![l(120), l(70), l(150), l(90)])
}

/// A branch dense(3) -> tanh -> dense(1.5) with alpha = 0.8: GSC_rho is 1.2 to 1.6 and k 1.3 to 2.4
/// (closed form, blocks 1 to 6), so any wrong form of GSC_b^2 = (k^2 GSC_s^2 + GSC_rho^2) / (k^2 + 1)
/// (a 10% error, a dropped square) shows.
fn tanh_branch_resnet(width: usize) -> Network {
    resnet(
        width,
        6,
        0.8,
        vec![
            dense(width, 3.0, 0.0),
            Op::Act(Nonlinearity::Tanh),
            dense(width, 1.5, 0.0),
        ],
    )
}

/// Closed form: the Pythagorean block GSC equals the block's GSC from the mean-field map of the whole
/// block (computed independently; the cross terms vanish at infinite width) on non-degenerate blocks.
#[test]
fn pythagorean_equation_holds_in_closed_form_on_nondegenerate_blocks() {
    let net = tanh_branch_resnet(100);
    let bs = gradscale::theory::blocks::block_predictions(&net, &MfOptions::default()).unwrap();
    assert_eq!(bs.len(), 6);
    assert!(bs.iter().any(|b| (b.k - 1.0).abs() > 0.2), "k: {bs:#?}");
    assert!(bs.iter().all(|b| b.gsc_branch > 1.1), "GSC_rho: {bs:#?}");
    for b in &bs {
        let rel = (b.gsc_block_pythagorean / b.gsc_block - 1.0).abs();
        assert!(rel < 1e-9, "block {}: {b:?}", b.layer);
    }
}

/// Monte Carlo: per sample, ln GSC_b minus ln of the formula on the same sample's k, GSC_s, GSC_rho has
/// mean zero up to its second-order cross terms (bias bound 2/n, as in the audit claim); and the measured
/// ln GSC_b matches the closed-form Pythagorean value within z se + 2/n per block. z for 1e-6 per block.
#[test]
fn pythagorean_equation_holds_in_monte_carlo_on_nondegenerate_blocks() {
    let n = 150;
    let net = tanh_branch_resnet(n);
    let bs = gradscale::theory::blocks::block_predictions(&net, &MfOptions::default()).unwrap();
    let ms = gradscale::montecarlo::pythagorean::pythagorean(
        &net,
        &McOptions {
            samples: 100,
            seed: 41,
            estimator: Estimator::Exact,
        },
    )
    .unwrap();
    let z = z_for_false_alarm(1e-6);
    let bias = 2.0 / n as f64;
    for (b, m) in bs.iter().zip(&ms) {
        let e = &m.pythagorean_error;
        println!(
            "block {}: k {:.3} (measured {:.3}), GSC_rho {:.3}, formula error {:.5} +- {:.5}, ln GSC_b {:.4} +- {:.4} vs {:.4}",
            b.layer, b.k, m.log_k.mean.exp(), b.gsc_branch, e.mean, e.stderr,
            m.log_gsc_block.mean, m.log_gsc_block.stderr, b.gsc_block_pythagorean.ln()
        );
        assert!(
            e.mean.abs() <= z * e.stderr + bias,
            "block {}: {e:?}",
            b.layer
        );
        let g = &m.log_gsc_block;
        let pred = b.gsc_block_pythagorean.ln();
        assert!(
            (g.mean - pred).abs() <= z * g.stderr + bias,
            "block {}: measured {g:?}, closed form {pred}",
            b.layer
        );
    }
}
