//! Expectations over a batch-norm output at infinite width, and the batch-norm gradient rate for any
//! nonlinearity (theory/batch-norm.md, "The BSB1 rate for any phi").
//!
//! Per unit, batch norm maps the B pre-activations of a batch to u = sqrt(B) P h / ||P h|| (P the centring
//! projector), and at infinite width the centred pre-activations are isotropic in the (B-1)-dimensional
//! centred subspace, so u is exactly uniform on the sphere of radius sqrt(B) there. Its coordinates are
//! therefore not Gaussian: one coordinate is sqrt(B-1) t with t the coordinate of a uniform unit vector in
//! R^(B-1), and the rate needs pairs. Spherical coordinates make both weights smooth (cos^(m-2), cos^(m-3),
//! m = B - 1), and composite Gauss-Legendre split at the kinks of phi integrates each analytic piece to
//! round-off.

use crate::nonlin::Nonlinearity;
use std::collections::HashMap;
use std::f64::consts::FRAC_PI_2;
use std::sync::{Mutex, OnceLock};

const GL_POINTS: usize = 12;
/// Cells of the composite rule over the window (before splitting at kinks).
const CELLS: usize = 48;
/// Geometric refinement levels next to a square-root point (the last cell is 2^-GRADING of a cell wide).
const GRADING: i32 = 30;

/// Gauss-Legendre nodes and weights on [-1, 1] (Newton on P_n from the Chebyshev guess).
fn gauss_legendre() -> &'static [(f64, f64)] {
    static GL: OnceLock<Vec<(f64, f64)>> = OnceLock::new();
    GL.get_or_init(|| {
        let n = GL_POINTS;
        (0..n)
            .map(|i| {
                let mut x = (std::f64::consts::PI * (i as f64 + 0.75) / (n as f64 + 0.5)).cos();
                let mut dp = 1.0;
                for _ in 0..100 {
                    let (mut p0, mut p1) = (1.0, x);
                    for k in 2..=n {
                        let p2 = ((2 * k - 1) as f64 * x * p1 - (k - 1) as f64 * p0) / k as f64;
                        p0 = p1;
                        p1 = p2;
                    }
                    dp = n as f64 * (x * p1 - p0) / (x * x - 1.0);
                    let dx = p1 / dp;
                    x -= dx;
                    if dx.abs() < 1e-16 {
                        break;
                    }
                }
                (x, 2.0 / ((1.0 - x * x) * dp * dp))
            })
            .collect()
    })
}

/// Integrates `f(theta) * cos(theta)^power` over the window where the weight matters, split at `breaks`.
/// Returns (integral of f * weight, integral of weight) so callers can normalise exactly.
/// `graded` breaks are square-root points of the integrand: the cells next to them shrink geometrically
/// towards them, which restores fast convergence there.
fn integrate<const K: usize>(
    power: f64,
    breaks: &[f64],
    graded: &[f64],
    mut f: impl FnMut(f64) -> [f64; K],
) -> ([f64; K], f64) {
    // cos^p(theta) ~ exp(-p theta^2 / 2): beyond 14 / sqrt(p) the weight is below e^-98.
    let half = if power > 0.0 {
        (14.0 / power.sqrt()).min(FRAC_PI_2)
    } else {
        FRAC_PI_2
    };
    let mut pts: Vec<f64> = (0..=CELLS)
        .map(|i| -half + 2.0 * half * i as f64 / CELLS as f64)
        .collect();
    pts.extend(breaks.iter().copied().filter(|b| b.abs() < half));
    let cell = 2.0 * half / CELLS as f64;
    for &g in graded.iter().filter(|g| g.abs() < half) {
        pts.push(g);
        for j in 1..=GRADING {
            let d = cell * 0.5f64.powi(j);
            pts.extend([g - d, g + d].into_iter().filter(|x| x.abs() < half));
        }
    }
    pts.sort_by(|a, b| a.total_cmp(b));
    pts.dedup_by(|a, b| (*a - *b).abs() < 1e-15);
    let gl = gauss_legendre();
    let (mut acc, mut wsum) = ([0.0; K], 0.0);
    for w in pts.windows(2) {
        let (a, b) = (w[0], w[1]);
        let (mid, rad) = ((a + b) / 2.0, (b - a) / 2.0);
        for &(x, wx) in gl {
            let th = mid + rad * x;
            let wt = wx * rad * th.cos().powf(power);
            let v = f(th);
            for k in 0..K {
                acc[k] += wt * v[k];
            }
            wsum += wt;
        }
    }
    (acc, wsum)
}

/// E[f(u_1)] for u uniform on the sphere of radius sqrt(B q) in the centred subspace of R^B (a batch-norm
/// output of mean square q per entry).
pub fn expect1<const K: usize>(
    batch: usize,
    q: f64,
    f: impl Fn(f64) -> [f64; K],
    kinks: &[f64],
) -> [f64; K] {
    let m = batch as f64 - 1.0;
    let r = (m * q).sqrt();
    let breaks: Vec<f64> = kinks
        .iter()
        .filter(|k| k.abs() < r)
        .map(|k| (k / r).asin())
        .collect();
    let (acc, w) = integrate(m - 2.0, &breaks, &[], |th| f(r * th.sin()));
    acc.map(|a| a / w)
}

/// E[f(u_1, u_2)] for two coordinates of the same sphere (their correlation is -1/(B-1)).
pub fn expect2<const K: usize>(
    batch: usize,
    q: f64,
    f: impl Fn(f64, f64) -> [f64; K],
    kinks: &[f64],
) -> [f64; K] {
    let m = batch as f64 - 1.0;
    let r = (m * q).sqrt();
    let rho = -1.0 / m;
    let rho_c = (1.0 - rho * rho).sqrt();
    // Outer breaks: the kinks of f in u_1, and the theta_1 where a kink of f in u_2 touches the end of
    // u_2's range (the inner integral has a square-root point there). With rho = sin(g):
    // u_2 / r ranges over [-cos(theta_1 + g), cos(theta_1 - g)].
    let g = rho.asin();
    let (mut outer, mut touch) = (Vec::new(), Vec::new());
    for &k in kinks.iter().filter(|k| k.abs() < r) {
        let t = k / r;
        outer.push(t.asin());
        let (ap, am) = (t.acos(), (-t).acos());
        touch.extend([g + ap, g - ap, -g + am, -g - am]);
    }
    let (acc, w) = integrate(m - 2.0, &outer, &touch, |th1| {
        let (s1, c1) = th1.sin_cos();
        let u1 = r * s1;
        // u_2 = r (rho t_1 + sqrt(1 - rho^2) t_2) with t_2 = cos(theta_1) sin(theta_2).
        let inner: Vec<f64> = kinks
            .iter()
            .filter_map(|k| {
                let s = (k / r - rho * s1) / (rho_c * c1);
                (s.abs() < 1.0).then(|| s.asin())
            })
            .collect();
        let (a, wi) = integrate(m - 3.0, &inner, &[], |th2| {
            f(u1, r * (rho * s1 + rho_c * c1 * th2.sin()))
        });
        a.map(|x| x / wi)
    });
    acc.map(|a| a / w)
}

/// The batch-norm gradient rate of a dense -> batch norm -> phi layer at the BSB1 fixed point, at infinite
/// width under gradient independence, for any phi (theory/batch-norm.md, "The BSB1 rate for any phi").
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bsb1 {
    /// Growth of the squared gradient per layer, for a centred incoming gradient (every layer but the
    /// top one of a Jacobian):
    ///   lambda = B / ((B - 3)(B - 1)) * E[Q] / alpha,
    ///   E[Q] = A (B - 2 + 1/B) + (B - 1)/B (C - X + Y),   alpha = E[phi_1^2] - E[phi_1 phi_2],
    /// with a = phi'(u), A = E[a_1^2], C = E[a_1 a_2], X = E[a_1^2 u_1^2], Y = E[a_1 u_1 a_2 u_2] on the
    /// sphere. ReLU: Yang et al.'s closed form; identity: (B - 2)/(B - 3) (tested).
    pub lambda: f64,
    /// The top layer of a Jacobian receives an uncentred gradient (all of R^B per unit, not only the
    /// centred subspace), so its gain is lambda * top with top = (A (B - 1) - X)(B - 1) / (B E[Q]):
    /// (B - 1)/B for the identity, 0.9482 for relu at B = 16.
    pub top: f64,
}

/// [`Bsb1`] for phi and B >= 4 (the rate diverges at B = 3). Cached per (phi, B): the 2-D rule costs
/// ~10^5 evaluations.
pub fn bsb1(act: Nonlinearity, batch: usize) -> Bsb1 {
    static CACHE: OnceLock<Mutex<HashMap<(String, usize), Bsb1>>> = OnceLock::new();
    let key = (format!("{act:?}"), batch);
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    if let Some(v) = cache.lock().ok().and_then(|c| c.get(&key).copied()) {
        return v;
    }
    let b = batch as f64;
    let kinks = act.kinks();
    let [a, x, p2] = expect1(
        batch,
        1.0,
        |u| {
            let d = act.dphi(u);
            let p = act.phi(u);
            [d * d, d * d * u * u, p * p]
        },
        kinks,
    );
    let [c, y, p12] = expect2(
        batch,
        1.0,
        |u1, u2| {
            let (d1, d2) = (act.dphi(u1), act.dphi(u2));
            [d1 * d2, d1 * u1 * d2 * u2, act.phi(u1) * act.phi(u2)]
        },
        kinks,
    );
    let eq = a * (b - 2.0 + 1.0 / b) + (b - 1.0) / b * (c - x + y);
    let alpha = p2 - p12;
    let r = Bsb1 {
        lambda: b / ((b - 3.0) * (b - 1.0)) * eq / alpha,
        top: (a * (b - 1.0) - x) * (b - 1.0) / (b * eq),
    };
    if let Ok(mut c) = cache.lock() {
        c.insert(key, r);
    }
    r
}

/// `bsb1(act, batch).lambda`.
pub fn bsb1_rate(act: Nonlinearity, batch: usize) -> f64 {
    bsb1(act, batch).lambda
}
