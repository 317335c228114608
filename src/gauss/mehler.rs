//! Bivariate expectations of smooth functions at equal variances by Mehler's formula: with
//! f(sqrt(q) z) = sum_n a_n h_n(z) in orthonormal (probabilists') Hermite polynomials,
//! E[f(u1) g(u2)] = sum_n a_n(f) a_n(g) c^n for u1, u2 of variance q and correlation c
//! (Mehler 1866; see e.g. O'Donnell, *Analysis of Boolean Functions*, ch. 11). The coefficients cost one
//! Gauss–Hermite pass per (f, q); the sum in c is then a polynomial. This replaces the nested 2-D rule of
//! `expect2` (1e5–1e6 evaluations) where the coefficients provably decay, which is what makes deep
//! correlation maps fast (theory/gaussian-expectations.md).
//!
//! Error control, all checked per call: (i) the rule's E[f^2] (discrete Parseval: the sum of all M squared
//! discrete coefficients) must match the caller's accurate E[f^2]; (ii) the coefficients beyond the N = M/2
//! kept must hold less than TAIL of it. As c^n <= 1, the truncation error of the sum is at most that tail
//! (times |E f g|-scale), for every c in [-1, 1]. Where either check fails (kinked f, or a saturating f at
//! large q, whose coefficients decay slowly) the caller falls back to `expect2`.

use std::sync::OnceLock;

/// Gauss–Hermite rules tried in turn (nodes M, exact for polynomials of degree < 2M), each keeping
/// N = M/2 coefficients: the quadrature resolves a_n for n < N to far beyond what the tail check admits.
/// Most (f, q) pass with the first; a saturating f at q ~ 1-2 (tanh on the chaotic side with a bias,
/// q* ~ 1) has Hermite coefficients that decay like exp(-pi sqrt(2n / q)) (poles at +-i pi/2) and needs
/// N ~ 200-800 (theory/cost.md, "Deep correlation maps"). The last rule reaches tanh at q ~ 6.
const SIZES: [usize; 4] = [192, 384, 768, 1536];
/// The largest N, for the table of square roots.
const N_MAX: usize = SIZES[SIZES.len() - 1] / 2;
/// Allowed share of E[f^2] in the dropped coefficients and in the rule's error on E[f^2].
const TAIL: f64 = 1e-13;

/// Orthonormal Hermite values h_0(z) .. h_{m-1}(z) by h_{n+1} = (z h_n - sqrt(n) h_{n-1}) / sqrt(n+1), and
/// h_m(z) last.
fn hermite(z: f64, m: usize) -> Vec<f64> {
    let mut h = Vec::with_capacity(m + 1);
    let (mut prev, mut cur) = (0.0, 1.0);
    for n in 0..=m {
        h.push(cur);
        let next = (z * cur - (n as f64).sqrt() * prev) / ((n + 1) as f64).sqrt();
        prev = cur;
        cur = next;
    }
    h
}

/// Eigenvalues of the m x m Jacobi matrix of the recurrence (zero diagonal, off-diagonal sqrt(k)) below
/// x: the negative pivots of its LDL^T factorisation (Sturm count). O(m), against O(m^3) for a dense
/// eigensolver, which at m = 768 took longer than the whole deep map.
fn count_below(x: f64, m: usize) -> usize {
    let mut d = -x;
    let mut count = usize::from(d < 0.0);
    for k in 1..m {
        if d == 0.0 {
            d = -1e-300;
        }
        d = -x - k as f64 / d;
        count += usize::from(d < 0.0);
    }
    count
}

/// A Gauss–Hermite rule (probabilists' weight) with m nodes. Nodes: the zeros of h_m, bracketed by Sturm
/// bisection on the Jacobi matrix (Golub–Welsch) to ~1e-7, then Newton on h_m (h_m' = sqrt(m) h_{m-1}),
/// mirrored so the rule is exactly symmetric. Weights: the Christoffel numbers 1 / sum_{n<m} h_n(z)^2,
/// accurate to full relative precision even where they are 1e-150 (the eigenvector form squares an
/// absolute error of 1e-17 there, and the outer weights, multiplied by huge h_n, would then wreck every
/// coefficient). Where the sum overflows (|z| > ~45) the weight is below 1e-400: 0.
fn make_rule(m: usize) -> (Vec<f64>, Vec<f64>) {
    // Gershgorin: every eigenvalue is within 2 sqrt(m - 1).
    let bound = 2.0 * (m as f64).sqrt() + 1.0;
    let mut nodes = vec![0.0; m];
    for i in 0..m / 2 {
        // Node i (ascending) is the x where the count passes from i to i + 1.
        let (mut lo, mut hi) = (-bound, 0.0);
        while hi - lo > 1e-7 {
            let mid = 0.5 * (lo + hi);
            if count_below(mid, m) > i {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        let mut z = 0.5 * (lo + hi);
        for _ in 0..8 {
            let h = hermite(z, m);
            let step = h[m] / ((m as f64).sqrt() * h[m - 1]);
            if !step.is_finite() {
                break;
            }
            z -= step;
            if step.abs() <= 1e-16 * z.abs() {
                break;
            }
        }
        nodes[i] = z;
        nodes[m - 1 - i] = -z;
    }
    let weights = nodes
        .iter()
        .map(|&z| {
            let h = hermite(z, m);
            let s: f64 = h[..m].iter().map(|v| v * v).sum();
            if s.is_finite() {
                1.0 / s
            } else {
                0.0
            }
        })
        .collect();
    (nodes, weights)
}

/// The rule of SIZES[level], built on first use.
fn rule(level: usize) -> &'static (Vec<f64>, Vec<f64>) {
    static RULES: [OnceLock<(Vec<f64>, Vec<f64>)>; SIZES.len()] =
        [const { OnceLock::new() }; SIZES.len()];
    RULES[level].get_or_init(|| make_rule(SIZES[level]))
}

/// sqrt(n) for n = 0 ..= N_MAX, so the coefficient pass does no square roots (the same bits as computing
/// them in place: the recurrence below is unchanged).
fn roots() -> &'static [f64; N_MAX + 1] {
    static ROOTS: OnceLock<[f64; N_MAX + 1]> = OnceLock::new();
    ROOTS.get_or_init(|| std::array::from_fn(|n| (n as f64).sqrt()))
}

/// The squared Hermite coefficients a_n(f_k)^2, n < N, of K functions at one variance, once they passed
/// the error checks: E[f_k(u1) f_k(u2)] at any correlation c is then the polynomial `eval(c)`. Splitting
/// the coefficients (one Gauss–Hermite pass, the cost) from the sum (N multiply-adds) lets a caller that
/// sees the same variance again, as a deep correlation map does once q has reached its fixed point or its
/// small-q limit, keep them (nonlin/moments.rs).
#[derive(Clone, Debug)]
pub struct MehlerSeries<const K: usize> {
    squares: Vec<[f64; K]>,
}

impl<const K: usize> MehlerSeries<K> {
    /// The series of f at variance q, or None when the error checks fail with every rule of SIZES.
    /// `second[k]` must be an accurate E[f_k(u)^2] (it is what the rule is checked against).
    pub fn new(q: f64, f: impl Fn(f64) -> [f64; K], second: [f64; K]) -> Option<Self> {
        if !(q.is_finite() && q > 0.0) {
            return None;
        }
        if second.iter().any(|e| !(e.is_finite() && *e >= 0.0)) {
            return None;
        }
        (0..SIZES.len()).find_map(|level| Self::with_rule(level, q, &f, second))
    }

    fn with_rule(
        level: usize,
        q: f64,
        f: &impl Fn(f64) -> [f64; K],
        second: [f64; K],
    ) -> Option<Self> {
        let (nodes, weights) = rule(level);
        let n_kept = SIZES[level] / 2;
        let sqrt_n = roots();
        let s = q.sqrt();
        let mut coef = vec![[0.0f64; K]; n_kept];
        let mut rule_second = [0.0f64; K];
        for (&z, &w) in nodes.iter().zip(weights) {
            if w < 1e-200 {
                // |w h_n| <= sqrt(w) (Christoffel: w sum h_n^2 = 1), so such a node adds under 1e-100 to
                // any coefficient; skipping it keeps h_n (up to 1e300 out there) from overflowing.
                continue;
            }
            let v = f(s * z);
            if v.iter().any(|x| !x.is_finite()) {
                return None;
            }
            for k in 0..K {
                rule_second[k] += w * v[k] * v[k];
            }
            // Orthonormal Hermite recurrence h_{n+1} = (z h_n - sqrt(n) h_{n-1}) / sqrt(n+1).
            let (mut h_prev, mut h) = (0.0, 1.0);
            for (n, row) in coef.iter_mut().enumerate() {
                for k in 0..K {
                    row[k] += w * v[k] * h;
                }
                let next = (z * h - sqrt_n[n] * h_prev) / sqrt_n[n + 1];
                h_prev = h;
                h = next;
            }
        }
        let mut squares = vec![[0.0; K]; n_kept];
        for k in 0..K {
            let e = second[k];
            if e == 0.0 {
                // f = 0 almost surely: every cross moment is 0.
                continue;
            }
            if (rule_second[k] - e).abs() > TAIL * e {
                return None;
            }
            let kept: f64 = coef.iter().map(|a| a[k] * a[k]).sum();
            // Discrete Parseval: rule_second = kept + the squares of the dropped discrete coefficients.
            if rule_second[k] - kept > TAIL * e {
                return None;
            }
            for (sq, a) in squares.iter_mut().zip(&coef) {
                sq[k] = a[k] * a[k];
            }
        }
        Some(MehlerSeries { squares })
    }

    /// [sum_n a_n(f_k)^2 c^n]_k, or None for c outside [-1, 1] (where the tail bound does not hold).
    pub fn eval(&self, c: f64) -> Option<[f64; K]> {
        if !(c.is_finite() && (-1.0..=1.0).contains(&c)) {
            return None;
        }
        Some(std::array::from_fn(|k| {
            self.squares.iter().rev().fold(0.0, |acc, a| acc * c + a[k])
        }))
    }
}

/// [sum_n a_n(f_k)^2 c^n]_k, i.e. E[f_k(u1) f_k(u2)] for u1, u2 ~ N(0, q) with correlation c, or None when
/// the error checks fail. `second[k]` must be an accurate E[f_k(u)^2] (it is what the rule is checked
/// against).
pub fn mehler_many<const K: usize>(
    q: f64,
    c: f64,
    f: impl Fn(f64) -> [f64; K],
    second: [f64; K],
) -> Option<[f64; K]> {
    if !(c.is_finite() && (-1.0..=1.0).contains(&c)) {
        return None;
    }
    MehlerSeries::new(q, f, second)?.eval(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_integrates_polynomials() {
        for (level, &size) in SIZES.iter().enumerate() {
            let (z, w) = rule(level);
            assert_eq!(z.len(), size);
            let m = |p: i32| z.iter().zip(w).map(|(z, w)| w * z.powi(p)).sum::<f64>();
            assert!((m(0) - 1.0).abs() < 1e-14, "{level}: {}", m(0));
            assert!((m(2) - 1.0).abs() < 1e-13, "{level}: {}", m(2));
            assert!((m(4) - 3.0).abs() < 1e-12, "{level}: {}", m(4));
            assert!((m(8) - 105.0).abs() < 1e-10, "{level}: {}", m(8));
            assert!(m(3).abs() < 1e-12);
            // Every node a zero of h_M to the last bits, in increasing order.
            assert!(z.windows(2).all(|p| p[0] < p[1]));
        }
    }

    /// Chaotic tanh with a bias (sigma_w^2 = 2.5, sigma_b^2 = 0.02, q* = 1.0105): the 192-node rule's
    /// tail check refuses tanh' there (5e-11 of E[phi'^2] beyond n = 96), the 384-node one accepts
    /// (3e-16 beyond 192); the series must then match the nested 2-D rule to 1e-10 at correlations
    /// from -1 to 1.
    #[test]
    fn larger_rule_takes_chaotic_tanh_with_a_bias() {
        let q = 1.010_472_621;
        let f = |x: f64| {
            let t = x.tanh();
            [t, 1.0 - t * t]
        };
        let [e1, e2] = crate::gauss::expect_many(
            q,
            |x| {
                let [a, b] = f(x);
                [a * a, b * b]
            },
            &[],
        );
        assert!(MehlerSeries::with_rule(0, q, &f, [e1, e2]).is_none());
        let s = MehlerSeries::new(q, f, [e1, e2]).expect("the 384-node rule accepts");
        assert_eq!(s.squares.len(), SIZES[1] / 2);
        for c in [-1.0, -0.3, 0.0, 0.5, 0.9, 0.99, 1.0] {
            let [pp, dd] = s.eval(c).unwrap();
            let [rp, rd] = crate::gauss::expect2_many(q, q, c, f, f, &[], &[]);
            assert!((pp - rp).abs() <= 1e-10 * e1, "{c}: {pp} vs {rp}");
            assert!((dd - rd).abs() <= 1e-10 * e2, "{c}: {dd} vs {rd}");
        }
    }

    #[test]
    fn linear_and_quadratic_are_exact() {
        // f(u) = u: E[u1 u2] = c q. f(u) = u^2: E[u1^2 u2^2] = q^2 (1 + 2 c^2).
        let q = 1.7;
        for c in [-1.0, -0.4, 0.0, 0.3, 0.999, 1.0] {
            let [v] = mehler_many(q, c, |x| [x], [q]).unwrap();
            assert!((v - c * q).abs() < 1e-13, "{c}: {v}");
            let [v] = mehler_many(q, c, |x| [x * x], [3.0 * q * q]).unwrap();
            assert!((v - q * q * (1.0 + 2.0 * c * c)).abs() < 1e-12, "{c}: {v}");
        }
    }

    #[test]
    fn kinks_and_wrong_second_moments_are_refused() {
        // relu's coefficients decay algebraically: the tail check must refuse it.
        let relu_second = 0.5;
        assert!(mehler_many(1.0, 0.5, |x| [x.max(0.0)], [relu_second]).is_none());
        // A caller's E[f^2] that the rule does not reproduce (here off by 1e-9) is refused.
        assert!(mehler_many(1.0, 0.5, |x| [x], [1.0 + 1e-9]).is_none());
    }
}
