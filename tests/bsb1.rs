//! The batch-norm rate for any phi at the BSB1 point (theory/batch-norm.md): closed-form special cases.

use gradscale::theory::norm::batch_norm_rate;
use gradscale::theory::sphere::{bsb1_rate, expect1, expect2};
use gradscale::Nonlinearity;

/// Sphere moments that are known exactly: E[u_1^2] = 1, E[u_1 u_2] = -1/(B-1), E[u_1^4] = 3(B-1)/(B+1)
/// (a coordinate of a uniform unit vector in R^m has E t^4 = 3/(m(m+2)), times (m q)^2).
#[test]
fn sphere_moments_are_exact() {
    for b in [4usize, 5, 8, 16, 64, 256, 1024] {
        let m = b as f64 - 1.0;
        let [m2, m4] = expect1(b, 1.0, |u| [u * u, u.powi(4)], &[]);
        let [c] = expect2(b, 1.0, |u1, u2| [u1 * u2], &[]);
        assert!((m2 - 1.0).abs() < 1e-12, "B={b} {m2}");
        assert!((m4 - 3.0 * m / (m + 2.0)).abs() < 1e-11, "B={b} {m4}");
        assert!((c + 1.0 / m).abs() < 1e-12, "B={b} {c}");
    }
}

#[test]
fn bsb1_rate_reproduces_yang_relu_and_linear() {
    for b in [4usize, 5, 6, 8, 16, 32, 64, 256, 1024] {
        let yang = batch_norm_rate(Nonlinearity::Relu, b).unwrap().lambda;
        let ours = bsb1_rate(Nonlinearity::Relu, b);
        assert!(
            (ours / yang - 1.0).abs() < 1e-10,
            "relu B={b}: {ours} vs {yang}"
        );
        let lin = (b as f64 - 2.0) / (b as f64 - 3.0);
        let ours = bsb1_rate(Nonlinearity::Linear, b);
        assert!(
            (ours / lin - 1.0).abs() < 1e-12,
            "linear B={b}: {ours} vs {lin}"
        );
    }
}

#[test]
#[ignore]
fn print_rates() {
    for act in [
        "tanh",
        "selu",
        "gelu",
        "sigmoid",
        "hard-tanh",
        "elu",
        "softplus",
        "erf",
    ] {
        let a: Nonlinearity = act.parse().unwrap();
        for b in [4usize, 16, 64, 256] {
            let t = std::time::Instant::now();
            let l = bsb1_rate(a, b);
            let h = batch_norm_rate(a, b).unwrap().lambda;
            println!("{act} B={b}: lambda {l:.10} (1/2 ln {:.6}), heuristic {h:.6} (1/2 ln {:.6}); {:.1} ms", 0.5 * l.ln(), 0.5 * h.ln(), t.elapsed().as_secs_f64() * 1e3);
        }
    }
}

/// Against an independent Monte Carlo over the sphere (tests/independent/bsb1_rate.py, numpy, 10^7 and
/// 5 * 10^6 draws): tanh at B = 16 and 64. False-alarm rate 1e-6 on the fixture's standard error.
#[test]
fn bsb1_rate_matches_independent_monte_carlo() {
    let z = gradscale::stats::z_for_false_alarm(1e-6);
    for (b, lambda, se) in [
        (16usize, 1.2463401542878154, 9.994545175572401e-05),
        (64, 1.1923511288914967, 7.248093893016097e-05),
    ] {
        let ours = bsb1_rate(Nonlinearity::Tanh, b);
        assert!(
            (ours - lambda).abs() <= z * se,
            "B={b}: {ours} vs {lambda} +- {se}"
        );
    }
}

/// The top factor for the identity is (B - 1)/B: the uncentred gradient loses its mean direction.
#[test]
fn top_factor_of_the_identity() {
    use gradscale::theory::sphere::bsb1;
    for b in [4usize, 16, 256] {
        let t = bsb1(Nonlinearity::Linear, b).top;
        let want = (b as f64 - 1.0) / b as f64;
        assert!((t - want).abs() < 1e-12, "B={b}: {t}");
    }
}
