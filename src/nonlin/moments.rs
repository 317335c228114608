//! Gaussian moments of a nonlinearity at z ~ N(0, q). Closed forms where they exist, quadrature
//! ([`crate::gauss`]) otherwise. Derivations: `theory/gaussian-expectations.md`.

use super::{Nonlinearity, SELU_ALPHA, SELU_LAMBDA};
use crate::gauss::{self, MehlerSeries};
use std::cell::{Cell, RefCell};
use std::f64::consts::{FRAC_1_SQRT_2, PI};
use std::rc::Rc;

/// 1/sqrt(2 pi).
const C0: f64 = 0.398_942_280_401_432_7;

/// E[phi], E[phi^2], E[phi'^2] at one variance.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Moments {
    /// E[phi]
    pub mean: f64,
    /// E[phi^2]
    pub second: f64,
    /// E[phi'^2]
    pub dphi2: f64,
}

/// sqrt(num/den) for non-negative parts; 0/0 is read as 1, the q -> 0 limit of g and g_c for a
/// nonlinearity with phi(0) = 0 and phi'(0) != 0 (tanh, erf, linear, ...).
fn root_ratio(num: f64, den: f64) -> f64 {
    let (num, den) = (num.max(0.0), den.max(0.0));
    if den == 0.0 {
        if num == 0.0 {
            1.0
        } else {
            f64::INFINITY
        }
    } else {
        (num / den).sqrt()
    }
}

impl Moments {
    /// E[phi^2] - E[phi]^2, clamped at 0. It loses relative accuracy when Var << E[phi]^2 (e.g.
    /// softplus at q = 1e-6: ~1e-10 relative).
    pub fn variance(&self) -> f64 {
        (self.second - self.mean * self.mean).max(0.0)
    }

    /// Per-layer GSC sqrt(q E[phi'^2] / E[phi^2]).
    pub fn g(&self, q: f64) -> f64 {
        root_ratio(q * self.dphi2, self.second)
    }

    /// Centred variant sqrt(q E[phi'^2] / Var[phi]).
    pub fn g_c(&self, q: f64) -> f64 {
        root_ratio(q * self.dphi2, self.variance())
    }
}

/// E[e^{beta z} 1{z < 0}] = e^{beta^2/2} Phi(-beta) = erfcx(beta/sqrt2)/2 for beta >= 0.
fn exp_tail(beta: f64) -> f64 {
    0.5 * erfcx(beta * FRAC_1_SQRT_2)
}

/// e^{x^2} erfc(x) for x >= 0, to a few ulp and without overflow. Written for the x that erfc actually
/// sees: e^{x^2} with x^2 split exactly into hi + lo (fma), since a rounded x^2 alone would cost
/// ~x^2 * 1e-16 relative (4e-14 at q = 100 for E[selu'^2]).
fn erfcx(x: f64) -> f64 {
    if x < 26.0 {
        let hi = x * x;
        let lo = x.mul_add(x, -hi);
        hi.exp() * (1.0 + lo) * libm::erfc(x)
    } else {
        erfcx_asymptotic(x)
    }
}

/// Asymptotic series of erfcx; for x >= 26 eight terms are exact to f64.
fn erfcx_asymptotic(x: f64) -> f64 {
    let t = 1.0 / (2.0 * x * x);
    let (mut term, mut sum) = (1.0, 1.0);
    for n in 1..8 {
        term *= -((2 * n - 1) as f64) * t;
        sum += term;
    }
    sum / (x * PI.sqrt())
}

/// R(beta) = exp_tail(beta) - 1/2 + beta/sqrt(2 pi), the part of exp_tail beyond its linear Taylor
/// polynomial. Small-beta ELU moments are differences of O(1) terms cancelling to O(q), so they are
/// written through R, summed from its series there.
fn exp_tail_rest(beta: f64) -> f64 {
    if beta < 1.0 {
        exp_tail_rest_series(beta)
    } else {
        exp_tail(beta) - 0.5 + C0 * beta
    }
}

/// exp_tail' = beta exp_tail - C0 gives the Taylor coefficients a_{n+1} = a_{n-1}/(n+1), a_0 = 1/2,
/// a_1 = -C0; for beta <= 1 the terms fall faster than 1/n!! so ~25 terms reach f64.
fn exp_tail_rest_series(beta: f64) -> f64 {
    let (mut a_prev, mut a) = (0.5, -C0);
    let mut pow = beta;
    let mut sum = 0.0;
    for n in 1..60 {
        let a_next = a_prev / (n + 1) as f64;
        a_prev = a;
        a = a_next;
        pow *= beta;
        sum += a * pow;
        if (a * pow).abs() < 1e-18 * sum.abs() {
            break;
        }
    }
    sum
}

/// ELU with parameter alpha: (mean, second, dphi2, d second/dq). phi = x (x > 0), alpha (e^x - 1).
/// With A(b) = E[e^{b sqrt(q) z}...] = exp_tail(b sqrt q): E[e^{x}1{x<0}] = A(1), E[e^{2x}1{x<0}] = A(2).
fn elu_closed(alpha: f64, q: f64) -> (f64, f64, f64, f64) {
    let s = q.sqrt();
    let (r1, r2) = (exp_tail_rest(s), exp_tail_rest(2.0 * s));
    let (a1, a2) = (exp_tail(s), exp_tail(2.0 * s));
    let mean = C0 * s * (1.0 - alpha) + alpha * r1;
    // E[(e^x - 1)^2 1{x<0}] = A(2) - 2 A(1) + 1/2 = R(2s) - 2 R(s).
    let second = 0.5 * q + alpha * alpha * (r2 - 2.0 * r1);
    let dphi2 = 0.5 + alpha * alpha * a2;
    // d/dq A(k sqrt q) = k^2 A(k sqrt q)/2 - k C0/(2 sqrt q); the C0 terms cancel in A(2s) - 2A(s).
    let dsecond = 0.5 + alpha * alpha * (2.0 * a2 - a1);
    (mean, second, dphi2, dsecond)
}

/// Hard-tanh at a = 1/sqrt(q) > 0: (second, dphi2, d second/dq).
fn hard_tanh_closed(q: f64) -> (f64, f64, f64) {
    let a = 1.0 / q.sqrt();
    let inside = libm::erf(a * FRAC_1_SQRT_2); // P(|z| < a)
    let edge = 2.0 * a * C0 * (-0.5 * a * a).exp(); // 2 a pdf(a)
    let dsecond = inside - edge; // E[z^2 1{|z| < a}]
    let second = q * dsecond + libm::erfc(a * FRAC_1_SQRT_2);
    (second, inside, dsecond)
}

fn clean_q(q: f64) -> f64 {
    if q > 0.0 {
        q
    } else {
        0.0
    }
}

impl Nonlinearity {
    /// Closed form where one exists for all three moments: linear, relu, leaky relu, erf, hard-tanh, elu,
    /// selu. None otherwise (tanh, sigmoid, softplus, gelu, silu). q <= 0 (or NaN) is read as the
    /// q -> 0+ limit.
    pub fn closed_moments(&self, q: f64) -> Option<Moments> {
        use Nonlinearity::*;
        let q = clean_q(q);
        let s = q.sqrt();
        let m = |mean, second, dphi2| {
            Some(Moments {
                mean,
                second,
                dphi2,
            })
        };
        match *self {
            Linear => m(0.0, q, 1.0),
            Relu => m(C0 * s, 0.5 * q, 0.5),
            LeakyRelu { slope: a } => m(
                (1.0 - a) * C0 * s,
                0.5 * q * (1.0 + a * a),
                0.5 * (1.0 + a * a),
            ),
            // E[erf^2] = (2/pi) arcsin(2q/(1+2q)), written as an arctangent to stay well conditioned
            // as 2q/(1+2q) -> 1.
            Erf => m(
                0.0,
                (2.0 / PI) * (2.0 * q).atan2((1.0 + 4.0 * q).sqrt()),
                (4.0 / PI) / (1.0 + 4.0 * q).sqrt(),
            ),
            HardTanh => {
                if q == 0.0 {
                    m(0.0, 0.0, 1.0)
                } else {
                    let (second, dphi2, _) = hard_tanh_closed(q);
                    m(0.0, second, dphi2)
                }
            }
            Elu { alpha } => {
                let (mean, second, dphi2, _) = elu_closed(alpha, q);
                m(mean, second, dphi2)
            }
            Selu => {
                let (mean, second, dphi2, _) = elu_closed(SELU_ALPHA, q);
                let l = SELU_LAMBDA;
                m(l * mean, l * l * second, l * l * dphi2)
            }
            Tanh | Sigmoid | Softplus | Gelu | Silu => None,
        }
    }

    /// E[phi] when it has a closed form or a symmetry value even though the other moments do not.
    fn closed_mean(&self, q: f64) -> Option<f64> {
        use Nonlinearity::*;
        match *self {
            Tanh => Some(0.0),
            // sigmoid(x) - 1/2 is odd.
            Sigmoid => Some(0.5),
            // Stein: E[x Phi(x)] = q E[pdf(x)] = q / sqrt(2 pi (1 + q)).
            Gelu => Some(q * C0 / (1.0 + q).sqrt()),
            Linear
            | Relu
            | LeakyRelu { .. }
            | Softplus
            | Selu
            | Elu { .. }
            | Silu
            | Erf
            | HardTanh => self.closed_moments(q).map(|m| m.mean),
        }
    }

    /// Moments at z ~ N(0, q) by quadrature only (no closed forms): the engine the closed forms are
    /// tested against.
    pub fn quadrature_moments(&self, q: f64) -> Moments {
        let q = clean_q(q);
        let [mean, second, dphi2] = gauss::expect_many(
            q,
            |x| {
                let p = self.phi(x);
                let d = self.dphi(x);
                [p, p * p, d * d]
            },
            self.kinks(),
        );
        Moments {
            mean,
            second,
            dphi2,
        }
    }

    /// Moments at z ~ N(0, q): closed form when available, else quadrature (with the mean exact where it
    /// is known). q = 0 gives the q -> 0+ limit (relu: E[phi'^2] = 1/2).
    pub fn moments(&self, q: f64) -> Moments {
        let q = clean_q(q);
        if let Some(m) = self.closed_moments(q) {
            return m;
        }
        if q == 0.0 {
            let (p, d) = (self.phi(0.0), self.dphi(0.0));
            return Moments {
                mean: p,
                second: p * p,
                dphi2: d * d,
            };
        }
        match self.closed_mean(q) {
            Some(mean) => {
                let [second, dphi2] = gauss::expect_many(
                    q,
                    |x| {
                        let p = self.phi(x);
                        let d = self.dphi(x);
                        [p * p, d * d]
                    },
                    self.kinks(),
                );
                Moments {
                    mean,
                    second,
                    dphi2,
                }
            }
            None => self.quadrature_moments(q),
        }
    }

    /// d/dq E[phi(sqrt(q) z)^2] = E[z phi phi'] / sqrt(q) (Stein; no Dirac terms for Lipschitz phi).
    /// Closed form where the moments have one; q = 0 gives the q -> 0+ limit.
    pub fn d_second_dq(&self, q: f64) -> f64 {
        use Nonlinearity::*;
        let q = clean_q(q);
        match *self {
            Linear => 1.0,
            Relu => 0.5,
            LeakyRelu { slope: a } => 0.5 * (1.0 + a * a),
            Erf => 4.0 / (PI * (1.0 + 2.0 * q) * (1.0 + 4.0 * q).sqrt()),
            HardTanh => {
                if q == 0.0 {
                    1.0
                } else {
                    hard_tanh_closed(q).2
                }
            }
            Elu { alpha } => elu_closed(alpha, q).3,
            Selu => SELU_LAMBDA * SELU_LAMBDA * elu_closed(SELU_ALPHA, q).3,
            Tanh | Sigmoid | Softplus | Gelu | Silu => {
                if q == 0.0 {
                    let d = self.dphi(0.0);
                    d * d + self.phi(0.0) * self.d2phi(0.0)
                } else if q < 1e-2 {
                    // Stein's form is E[x phi phi']/q, a 0/0 as q -> 0 that loses ~phi(0)/sqrt(q)
                    // relative; for these smooth phi use (1/2) E[(phi^2)''] = E[phi'^2 + phi phi''].
                    gauss::expect(
                        q,
                        |x| {
                            let d = self.dphi(x);
                            d * d + self.phi(x) * self.d2phi(x)
                        },
                        self.kinks(),
                    )
                } else {
                    // At large q this form has a positive-leaning integrand, where phi'^2 + phi phi''
                    // cancels (tanh: sech^4 - 2 tanh^2 sech^2).
                    gauss::expect(q, |x| x * self.phi(x) * self.dphi(x), self.kinks()) / q
                }
            }
        }
    }

    /// (E[phi(u1) phi(u2)], E[phi'(u1) phi'(u2)]) with u1 = sqrt(q11) z1, u2 = sqrt(q22) (c z1 +
    /// sqrt(1-c^2) z2). Closed forms for linear, relu and leaky relu (arc-cosine kernel) and erf;
    /// quadrature otherwise. c is clamped to [-1, 1].
    pub fn cross_moments(&self, q11: f64, q22: f64, c: f64) -> (f64, f64) {
        use Nonlinearity::*;
        let (q11, q22) = (clean_q(q11), clean_q(q22));
        let c = if c.is_nan() { 0.0 } else { c.clamp(-1.0, 1.0) };
        let s12 = (q11 * q22).sqrt();
        match *self {
            Linear => (c * s12, 1.0),
            Relu => leaky_cross(0.0, s12, c),
            LeakyRelu { slope } => leaky_cross(slope, s12, c),
            Erf => {
                let q12 = c * s12;
                // det(I + 2 Sigma), expanded so that it never cancels: (1+2q11)(1+2q22) - 4 q12^2.
                let det = 1.0 + 2.0 * q11 + 2.0 * q22 + 4.0 * q11 * q22 * (1.0 - c * c);
                // arcsin(2 q12 / sqrt((1+2q11)(1+2q22))) as an arctangent: exact near |arg| = 1.
                let pp = (2.0 / PI) * (2.0 * q12).atan2(det.sqrt());
                (pp, (4.0 / PI) / det.sqrt())
            }
            Tanh | Sigmoid | Softplus | Selu | Elu { .. } | Gelu | Silu | HardTanh => {
                let k = self.kinks();
                let both = |x: f64| [self.phi(x), self.dphi(x)];
                // Equal variances and a smooth phi (every correlation map): Mehler's series, when its
                // own error checks pass (gauss/mehler.rs); the nested 2-D rule otherwise.
                if q11 == q22 && q11 > 0.0 && k.is_empty() {
                    if let Some([pp, dd]) = self.kernel(q11).1.and_then(|s| s.eval(c)) {
                        return (pp, dd);
                    }
                }
                let [pp, dd] = gauss::expect2_many(q11, q22, c, both, both, k, k);
                (pp, dd)
            }
        }
    }
}

/// Entries kept by [`Nonlinearity::kernel`]: a network's distinct nonlinearities at their current
/// variances (a few per layer), and each deep map settles on one q per nonlinearity.
const KERNEL_CACHE: usize = 8;

thread_local! {
    static KERNELS: RefCell<Vec<(Nonlinearity, u64, Kernel)>> = const { RefCell::new(Vec::new()) };
    static KERNEL_CACHE_ON: Cell<bool> = const { Cell::new(true) };
}

/// The moments at one variance and, for a smooth phi whose series passes its checks, the Mehler series
/// of [phi, phi'] there.
type Kernel = (Moments, Option<Rc<MehlerSeries<2>>>);

/// Runs `f` with the kernel cache off on this thread: the reference path for tests of the cache.
#[doc(hidden)]
pub fn without_kernel_cache<R>(f: impl FnOnce() -> R) -> R {
    let was = KERNEL_CACHE_ON.with(|c| c.replace(false));
    let r = f();
    KERNEL_CACHE_ON.with(|c| c.set(was));
    r
}

impl Nonlinearity {
    /// `moments(q)` and the Mehler series at q, remembered per (nonlinearity, exact q). A deep
    /// correlation map calls this once per layer, and once q has reached its fixed point (or the small-q
    /// clamp of theory/act.rs) every layer asks for the same bits: the Gauss–Hermite pass (192 nodes) and
    /// the 1-D quadrature are then paid once, and each layer costs one polynomial in c. Keyed on the exact
    /// bits of q, so a hit returns what a fresh computation would: results are unchanged.
    pub(crate) fn kernel(&self, q: f64) -> Kernel {
        let compute = || {
            let m = self.moments(q);
            let series = if q > 0.0 && self.kinks().is_empty() {
                MehlerSeries::new(q, |x| [self.phi(x), self.dphi(x)], [m.second, m.dphi2])
                    .map(Rc::new)
            } else {
                None
            };
            (m, series)
        };
        if !KERNEL_CACHE_ON.with(Cell::get) {
            return compute();
        }
        let key = q.to_bits();
        let hit = KERNELS.with(|k| {
            k.borrow()
                .iter()
                .find(|(a, b, _)| a == self && *b == key)
                .map(|(_, _, v)| v.clone())
        });
        if let Some(v) = hit {
            return v;
        }
        let v = compute();
        KERNELS.with(|k| {
            let mut k = k.borrow_mut();
            if k.len() >= KERNEL_CACHE {
                k.remove(0);
            }
            k.push((*self, key, v.clone()));
        });
        v
    }
}

/// Leaky relu phi = a x + (1-a) relu(x): E[u1 relu(u2)] = E[u1 u2]/2 by the symmetry u -> -u, and the
/// relu-relu term is the arc-cosine kernel (sqrt(q11 q22)/(2 pi)) (sin t + (pi - t) cos t), c = cos t.
fn leaky_cross(a: f64, s12: f64, c: f64) -> (f64, f64) {
    // (1-c)(1+c), not 1 - c^2: exact near c = 1, where 1 - c*c would carry c's rounding as a relative
    // error ~1e-16/(1-c) into sin t.
    let t = c.acos();
    let sin_t = ((1.0 - c) * (1.0 + c)).max(0.0).sqrt();
    let k = (sin_t + (PI - t) * c) / (2.0 * PI);
    let b = (1.0 - a) * (1.0 - a);
    (s12 * (a * c + b * k), a + b * (PI - t) / (2.0 * PI))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Mehler path of `cross_moments` against the nested 2-D rule it replaces, for every smooth
    /// catalogue nonlinearity over variances and correlations up to c = 1: within 1e-10 of the scale
    /// E[phi^2] (resp. E[phi'^2]) wherever the fast path accepts, and it must accept the small- and
    /// moderate-q cases that deep correlation maps visit.
    #[test]
    fn mehler_cross_moments_match_the_two_dimensional_rule() {
        use Nonlinearity::*;
        let mut accepted = 0;
        let mut total = 0;
        for act in [Tanh, Sigmoid, Softplus, Gelu, Silu] {
            for q in [1e-8, 1e-3, 0.1, 0.5, 1.0, 2.0, 5.0, 20.0] {
                let m = act.moments(q);
                for c in [-0.99, -0.5, 0.0, 0.3, 0.9, 0.99, 0.999_999, 1.0] {
                    total += 1;
                    let both = |x: f64| [act.phi(x), act.dphi(x)];
                    let Some([pp, dd]) = gauss::mehler_many(q, c, both, [m.second, m.dphi2]) else {
                        continue;
                    };
                    accepted += 1;
                    let [rp, rd] = gauss::expect2_many(q, q, c, both, both, &[], &[]);
                    assert!(
                        (pp - rp).abs() <= 1e-10 * m.second,
                        "{act} q={q} c={c}: phi {pp} vs {rp}"
                    );
                    assert!(
                        (dd - rd).abs() <= 1e-10 * m.dphi2,
                        "{act} q={q} c={c}: phi' {dd} vs {rd}"
                    );
                }
            }
            // Small variances (the ordered phase's deep layers) always take the fast path.
            let m = act.moments(1e-3);
            let both = |x: f64| [act.phi(x), act.dphi(x)];
            assert!(gauss::mehler_many(1e-3, 0.999, both, [m.second, m.dphi2]).is_some());
        }
        assert!(
            accepted * 2 > total,
            "fast path taken in {accepted} of {total}"
        );
    }

    #[test]
    fn elu_series_matches_direct_form_at_the_switch() {
        for b in [0.5, 0.9, 1.0] {
            let direct = exp_tail(b) - 0.5 + C0 * b;
            let series = exp_tail_rest_series(b);
            assert!(
                (series - direct).abs() < 1e-14 * direct,
                "{b}: {series} {direct}"
            );
        }
    }

    #[test]
    fn erfcx_branches_agree() {
        for x in [20.0f64, 25.999] {
            let (d, a) = (erfcx(x), erfcx_asymptotic(x));
            assert!((d - a).abs() / a < 1e-15, "{x}: {d} {a}");
        }
        assert!(exp_tail(1e6).is_finite() && exp_tail(1e6) > 0.0);
    }

    #[test]
    fn huge_and_zero_q_are_finite() {
        for nl in Nonlinearity::catalogue() {
            for q in [0.0, 1e-300, 1e6, 1e12] {
                let m = nl.moments(q);
                assert!(
                    m.mean.is_finite() && m.second.is_finite() && m.dphi2.is_finite(),
                    "{nl} {q} {m:?}"
                );
                assert!(nl.d_second_dq(q).is_finite(), "{nl} {q}");
                assert!(!m.g(q).is_nan() && !m.g_c(q).is_nan(), "{nl} {q}");
            }
        }
    }
}
