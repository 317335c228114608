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

use nalgebra::{DMatrix, SymmetricEigen};
use std::sync::OnceLock;

/// Gauss–Hermite nodes (probabilists' weight): exact for polynomials of degree < 2M.
const M: usize = 192;
/// Coefficients kept: the quadrature resolves a_n for n < N to far beyond what the tail check admits.
const N: usize = M / 2;
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

/// Gauss–Hermite nodes and weights (probabilists' weight). Nodes: eigenvalues of the Jacobi matrix of the
/// recurrence (Golub–Welsch), polished by Newton on h_M (h_M' = sqrt(M) h_{M-1}). Weights: the Christoffel
/// numbers 1 / sum_{n<M} h_n(z)^2, accurate to full relative precision even where they are 1e-150 (the
/// eigenvector form squares an absolute error of 1e-17 there, and the outer weights, multiplied by huge
/// h_n, would then wreck every coefficient).
fn rule() -> &'static (Vec<f64>, Vec<f64>) {
    static RULE: OnceLock<(Vec<f64>, Vec<f64>)> = OnceLock::new();
    RULE.get_or_init(|| {
        let mut j = DMatrix::<f64>::zeros(M, M);
        for k in 1..M {
            let b = (k as f64).sqrt();
            j[(k - 1, k)] = b;
            j[(k, k - 1)] = b;
        }
        let mut nodes: Vec<f64> = SymmetricEigen::new(j).eigenvalues.iter().copied().collect();
        nodes.sort_by(f64::total_cmp);
        let weights = nodes
            .iter_mut()
            .map(|z| {
                for _ in 0..3 {
                    let h = hermite(*z, M);
                    let step = h[M] / ((M as f64).sqrt() * h[M - 1]);
                    if step.is_finite() {
                        *z -= step;
                    }
                }
                let h = hermite(*z, M);
                1.0 / h[..M].iter().map(|v| v * v).sum::<f64>()
            })
            .collect();
        (nodes, weights)
    })
}

/// sqrt(n) for n = 0 ..= N, so the coefficient pass does no square roots (the same bits as computing
/// them in place: the recurrence below is unchanged).
fn roots() -> &'static [f64; N + 1] {
    static ROOTS: OnceLock<[f64; N + 1]> = OnceLock::new();
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
    /// The series of f at variance q, or None when the error checks fail. `second[k]` must be an accurate
    /// E[f_k(u)^2] (it is what the rule is checked against).
    pub fn new(q: f64, f: impl Fn(f64) -> [f64; K], second: [f64; K]) -> Option<Self> {
        if !(q.is_finite() && q > 0.0) {
            return None;
        }
        let (nodes, weights) = rule();
        let sqrt_n = roots();
        let s = q.sqrt();
        let mut coef = [[0.0f64; K]; N];
        let mut rule_second = [0.0f64; K];
        for (&z, &w) in nodes.iter().zip(weights) {
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
        let mut squares = vec![[0.0; K]; N];
        for k in 0..K {
            let e = second[k];
            if !(e.is_finite() && e >= 0.0) {
                return None;
            }
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
        let (z, w) = rule();
        let m = |p: i32| z.iter().zip(w).map(|(z, w)| w * z.powi(p)).sum::<f64>();
        assert!((m(0) - 1.0).abs() < 1e-14);
        assert!((m(2) - 1.0).abs() < 1e-13);
        assert!((m(4) - 3.0).abs() < 1e-12);
        assert!(m(3).abs() < 1e-12);
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
