//! Gaussian expectations E[f(sqrt(q) z)], z ~ N(0, 1), to ~1e-14 of E|f|, by split tanh–sinh quadrature.
//!
//! Why this rule: the integrands are analytic between a few known points (kinks of relu/elu/hard-tanh, and
//! the near-singular region |x| ≲ 1 of saturating nonlinearities at large q), and tanh–sinh converges
//! exponentially on every analytic piece whatever happens at its ends. Gauss–Hermite across a kink only
//! converges algebraically. Notes and accuracy contract: `theory/gaussian-expectations.md`.

mod mehler;

pub use mehler::{mehler_many, MehlerSeries};

use std::sync::OnceLock;

/// Half-width of the integration window in the standard variable: 2 Phi(-10) = 1.5e-23, far below the
/// accuracy contract even for integrands growing like s^2.
pub const S_MAX: f64 = 10.0;

/// Two successive tanh–sinh levels must agree to this, relative to the L1 scale of the whole integral.
const TOL: f64 = 1e-15;

/// Last level: step 2^-MAX_LEVEL. Analytic pieces converge by level 4–5; the cap only bounds the work
/// for pathological (non-analytic, unsplit) integrands.
const MAX_LEVEL: usize = 8;

/// Beyond t = 3.5 the tanh–sinh weight is below 3e-21.
const T_MAX: f64 = 3.5;

#[derive(Clone, Copy)]
struct Node {
    /// 1 - x: kept separately so that points next to a piece's end are placed to full relative precision.
    delta: f64,
    w: f64,
}

/// levels[0] holds t = 1, 2, 3 (t = 0 is the centre, handled apart); levels[k] the odd multiples of 2^-k.
fn table() -> &'static [Vec<Node>] {
    static TABLE: OnceLock<Vec<Vec<Node>>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let node = |t: f64| {
            let u = std::f64::consts::FRAC_PI_2 * t.sinh();
            let ch = u.cosh();
            Node {
                delta: 2.0 / (1.0 + (2.0 * u).exp()),
                w: std::f64::consts::FRAC_PI_2 * t.cosh() / (ch * ch),
            }
        };
        let mut levels = Vec::with_capacity(MAX_LEVEL + 1);
        levels.push((1..=3).map(|j| node(j as f64)).collect());
        for k in 1..=MAX_LEVEL {
            let h = (0.5f64).powi(k as i32);
            let mut v = Vec::new();
            let mut j = 1usize;
            while (j as f64) * h <= T_MAX {
                v.push(node(j as f64 * h));
                j += 2;
            }
            levels.push(v);
        }
        levels
    })
}

#[inline]
fn std_pdf(s: f64) -> f64 {
    // 1/sqrt(2 pi)
    0.398_942_280_401_432_7 * (-0.5 * s * s).exp()
}

/// State of one piece [a, b] under refinement.
#[derive(Clone, Copy)]
struct Piece<const K: usize> {
    a: f64,
    b: f64,
    /// Sum of w_j * g * pdf over all nodes so far (not yet multiplied by h * r).
    raw: [f64; K],
    /// The same for |g|, at level 0: the piece's size, for the quadratic-regime error estimate.
    l1: [f64; K],
}

#[inline]
fn add_level<const K: usize>(
    g: &mut impl FnMut(f64) -> [f64; K],
    a: f64,
    b: f64,
    nodes: &[Node],
    raw: &mut [f64; K],
    l1: &mut [f64; K],
) {
    let r = 0.5 * (b - a);
    for n in nodes {
        let d = r * n.delta;
        let (s1, s2) = (b - d, a + d);
        let (w1, w2) = (n.w * std_pdf(s1), n.w * std_pdf(s2));
        let (f1, f2) = (g(s1), g(s2));
        for i in 0..K {
            let (v1, v2) = (f1[i] * w1, f2[i] * w2);
            raw[i] += v1 + v2;
            l1[i] += v1.abs() + v2.abs();
        }
    }
}

/// ∫_{-S}^{S} g(s) pdf(s) ds, split at `splits` (sorted, strictly inside (-S, S)).
fn integrate_std<const K: usize>(mut g: impl FnMut(f64) -> [f64; K], splits: &[f64]) -> [f64; K] {
    let tab = table();
    let mut pieces: Vec<Piece<K>> = Vec::with_capacity(splits.len() + 1);
    let mut scale = [0.0; K];
    let mut lo = -S_MAX;
    for &x in splits.iter().chain(std::iter::once(&S_MAX)) {
        let (a, b) = (lo, x);
        lo = x;
        if b <= a {
            continue;
        }
        let mut raw = [0.0; K];
        let mut l1 = [0.0; K];
        let m = 0.5 * (a + b);
        let w0 = std::f64::consts::FRAC_PI_2 * std_pdf(m);
        let f0 = g(m);
        for i in 0..K {
            raw[i] = f0[i] * w0;
            l1[i] = raw[i].abs();
        }
        add_level(&mut g, a, b, &tab[0], &mut raw, &mut l1);
        let r = 0.5 * (b - a);
        for i in 0..K {
            scale[i] += l1[i] * r;
        }
        pieces.push(Piece { a, b, raw, l1 });
    }
    let tol: [f64; K] = std::array::from_fn(|i| TOL * scale[i]);
    let mut total = [0.0; K];
    // add_level also accumulates |g|; only level 0's is used (for the scale), so the rest goes here.
    let mut scratch = [0.0; K];
    for p in pieces.iter_mut() {
        let r = 0.5 * (p.b - p.a);
        let own: [f64; K] = std::array::from_fn(|i| p.l1[i] * r);
        let mut prev: [f64; K] = std::array::from_fn(|i| p.raw[i] * r);
        let mut dprev = [f64::INFINITY; K];
        let mut h = 1.0;
        for (k, nodes) in tab.iter().enumerate().skip(1) {
            h *= 0.5;
            add_level(&mut g, p.a, p.b, nodes, &mut p.raw, &mut scratch);
            let cur: [f64; K] = std::array::from_fn(|i| p.raw[i] * h * r);
            let d: [f64; K] = std::array::from_fn(|i| (cur[i] - prev[i]).abs());
            // Two levels agreeing is the test. Once a piece is in tanh–sinh's asymptotic regime
            // (9+ digits, and the change fell by 1e4 in one level) digits double per level, so the newer
            // level is already good to ~d^2/own and the confirming level is skipped.
            let done = k >= 2
                && (0..K)
                    .all(|i| d[i] <= tol[i] || (d[i] <= 1e-9 * own[i] && d[i] <= 1e-4 * dprev[i]));
            prev = cur;
            dprev = d;
            if done {
                break;
            }
        }
        for i in 0..K {
            total[i] += prev[i];
        }
    }
    total
}

/// Split points in the standard variable s.
///
/// `fixed` points (kinks) are kept exactly; `soft` points only shorten pieces where the integrand bends
/// on a scale much shorter than the Gaussian's, and are dropped when they nearly coincide with a kept
/// point: a sliver piece costs a whole tanh–sinh rule and buys nothing.
#[derive(Default)]
struct Splits {
    fixed: Vec<f64>,
    soft: Vec<f64>,
}

impl Splits {
    fn kink(&mut self, s: f64) {
        if s.is_finite() && s.abs() < S_MAX {
            self.fixed.push(s);
        }
    }

    /// A smooth bend of width `width` (in s) centred at `centre`, e.g. tanh(sqrt(q) s) at s = 0 with
    /// width 1/sqrt(q): its complex singularities sit ~width away, so pieces growing geometrically away
    /// from the centre keep every piece's length comparable to its distance from them.
    fn bend(&mut self, centre: f64, width: f64) {
        if !(centre.is_finite() && width.is_finite()) || centre.abs() >= S_MAX {
            return;
        }
        if width < 1.5 {
            self.soft.push(centre);
        }
        let mut d = width;
        for _ in 0..16 {
            if d > 3.0 {
                break;
            }
            self.soft.push(centre + d);
            self.soft.push(centre - d);
            d *= 3.0;
        }
    }

    fn finish(self) -> Vec<f64> {
        let Splits {
            mut fixed,
            mut soft,
        } = self;
        fixed.push(0.0);
        fixed.sort_by(f64::total_cmp);
        fixed.dedup();
        // The Gaussian weight itself bends on scale 1.
        soft.extend_from_slice(GAUSS_SPLITS);
        soft.retain(|s| s.abs() < S_MAX);
        soft.sort_by(|a, b| a.abs().total_cmp(&b.abs()));
        let mut kept = fixed;
        for s in soft {
            if !kept
                .iter()
                .any(|&k| (s - k).abs() < MERGE * s.abs().max(k.abs()))
            {
                kept.push(s);
            }
        }
        kept.sort_by(f64::total_cmp);
        kept.dedup();
        kept
    }
}

/// The Gaussian weight alone: pieces over which log pdf changes by a few units, so each is in
/// tanh–sinh's fast regime (a long tail piece like [3, 10] converges only a few digits per level).
const GAUSS_SPLITS: &[f64] = &[-4.5, -2.0, 2.0, 4.5];

/// Soft points closer than this fraction of their magnitude to a kept point are dropped.
const MERGE: f64 = 0.35;

/// E[f(sqrt(q) z)], z ~ N(0, 1). `kinks` are points in x-space (the argument of f) where f is not
/// analytic; the rule splits there. q = 0 gives f(0).
pub fn expect(q: f64, f: impl Fn(f64) -> f64, kinks: &[f64]) -> f64 {
    expect_many(q, |x| [f(x)], kinks)[0]
}

/// Several integrands on the same nodes at once.
pub fn expect_many<const K: usize>(q: f64, f: impl Fn(f64) -> [f64; K], kinks: &[f64]) -> [f64; K] {
    if q.is_nan() || q <= 0.0 {
        return f(0.0);
    }
    let sq = q.sqrt();
    let mut sp = Splits::default();
    for &k in kinks {
        sp.kink(k / sq);
    }
    sp.bend(0.0, 1.0 / sq);
    integrate_std(|s| f(sq * s), &sp.finish())
}

/// E[f1(u1) f2(u2)] with u1 = sqrt(q11) z1, u2 = sqrt(q22) (c z1 + sqrt(1-c^2) z2), c in [-1, 1]
/// (clamped; NaN c is treated as 0). Nested 1-D rules; the inner one is split at the kinks of f2 seen
/// from z2. Costs ~1e5–1e6 evaluations: for moments use the closed forms where they exist.
pub fn expect2(
    q11: f64,
    q22: f64,
    c: f64,
    f1: impl Fn(f64) -> f64,
    f2: impl Fn(f64) -> f64,
    kinks1: &[f64],
    kinks2: &[f64],
) -> f64 {
    expect2_many(q11, q22, c, |x| [f1(x)], |x| [f2(x)], kinks1, kinks2)[0]
}

/// [E[f1_i(u1) f2_i(u2)]]_i for K pairs on the same nodes (one nested pass instead of K).
pub fn expect2_many<const K: usize>(
    q11: f64,
    q22: f64,
    c: f64,
    f1: impl Fn(f64) -> [f64; K],
    f2: impl Fn(f64) -> [f64; K],
    kinks1: &[f64],
    kinks2: &[f64],
) -> [f64; K] {
    let c = if c.is_nan() { 0.0 } else { c.clamp(-1.0, 1.0) };
    let s1 = if q11 > 0.0 { q11.sqrt() } else { 0.0 };
    let s2 = if q22 > 0.0 { q22.sqrt() } else { 0.0 };
    // (1-c)(1+c) stays exact as |c| -> 1, where 1 - c*c loses all relative accuracy.
    let sc = ((1.0 - c) * (1.0 + c)).max(0.0).sqrt();
    let a2 = s2 * c;
    let mut outer = Splits::default();
    if s1 > 0.0 {
        for &k in kinks1 {
            outer.kink(k / s1);
        }
        outer.bend(0.0, 1.0 / s1);
    }
    let b = s2 * sc;
    if b == 0.0 {
        // u2 = sqrt(q22) c z1 depends on z1 alone (|c| = 1 or q22 = 0).
        if a2 != 0.0 {
            for &k in kinks2 {
                outer.kink(k / a2);
            }
            outer.bend(0.0, 1.0 / a2.abs());
        }
        return integrate_std(
            |z| {
                let (v1, v2) = (f1(s1 * z), f2(a2 * z));
                std::array::from_fn(|i| v1[i] * v2[i])
            },
            &outer.finish(),
        );
    }
    // z1 -> E_z2 f2(a2 z1 + b z2) is f2(a2 z1) blurred over a width sc/|c| in z1: smooth, but nearly as
    // sharp as f2 when |c| -> 1, so its kinks and bends are soft points there.
    if a2 != 0.0 {
        let blur = sc / c.abs();
        for &k in kinks2 {
            outer.bend(k / a2, blur);
        }
        outer.bend(0.0, (1.0 / a2.abs()).max(blur));
    }
    integrate_std(
        |z1| {
            let v1 = f1(s1 * z1);
            if v1.iter().all(|&v| v == 0.0) {
                // Saves the inner rule on relu's and hard-tanh's flat parts.
                return [0.0; K];
            }
            let off = a2 * z1;
            let mut inner = Splits::default();
            for &k in kinks2 {
                inner.kink((k - off) / b);
            }
            inner.bend(-off / b, 1.0 / b);
            let e = integrate_std(|z2| f2(off + b * z2), &inner.finish());
            std::array::from_fn(|i| v1[i] * e[i])
        },
        &outer.finish(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(a: f64, b: f64) -> f64 {
        ((a - b) / b).abs()
    }

    #[test]
    fn constant_and_polynomials() {
        assert!(rel(expect(1.0, |_| 1.0, &[]), 1.0) < 1e-15);
        assert!(rel(expect(2.0, |x| x * x, &[]), 2.0) < 1e-15);
        assert!(rel(expect(3.0, |x| x.powi(4), &[]), 27.0) < 1e-15);
        assert!(rel(expect(1e-6, |x| x.powi(6), &[]), 15e-18) < 1e-14);
        let relu = expect(0.5, |x| x.max(0.0), &[0.0]);
        assert!(rel(relu, (0.5f64 / (2.0 * std::f64::consts::PI)).sqrt()) < 1e-15);
    }

    #[test]
    fn kinks_far_outside_and_q_zero() {
        // Kinks beyond the window are ignored; q = 0 is f(0).
        assert!(
            rel(
                expect(1e-4, |x| x.clamp(-1.0, 1.0).powi(2), &[-1.0, 1.0]),
                1e-4
            ) < 1e-14
        );
        assert_eq!(expect(0.0, |x| x + 3.0, &[]), 3.0);
        // An indicator at large q reduces to a normal probability.
        let p = expect(1e4, |x| if x.abs() < 1.0 { 1.0 } else { 0.0 }, &[-1.0, 1.0]);
        assert!(rel(p, libm::erf(0.01 / std::f64::consts::SQRT_2)) < 1e-14);
    }

    #[test]
    fn expect_many_matches_expect() {
        let [a, b] = expect_many(2.5, |x| [x.tanh(), x.tanh().powi(2)], &[]);
        assert!(a.abs() < 1e-16);
        assert_eq!(b, expect(2.5, |x| x.tanh().powi(2), &[]));
    }

    #[test]
    fn bivariate_basics() {
        // E[u1 u2] = c sqrt(q11 q22), including both ends of c, and NaN-free at |c| -> 1.
        for c in [-1.0, -0.999_999_999, -0.3, 0.0, 0.7, 0.999_999_999, 1.0] {
            let v = expect2(2.0, 0.5, c, |x| x, |x| x, &[], &[]);
            assert!((v - c).abs() < 1e-14, "c={c}: {v}");
        }
        // Degenerate variances.
        assert_eq!(
            expect2(0.0, 0.0, 0.5, |x| x + 1.0, |x| x + 2.0, &[], &[]),
            2.0
        );
        let v = expect2(1.0, 0.0, 0.5, |x| x * x, |x| x + 2.0, &[], &[]);
        assert!(rel(v, 2.0) < 1e-15);
    }
}
