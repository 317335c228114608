//! Depth-uniform finite-width law of ln GSC(L, l) for plain MLPs with any nonlinearity: the scalar-state
//! chain of theory/finite-width.md, section 8.
//!
//! Why a chain and not a series: the O(1/n) expansion's input-path weight rho grows linearly in depth, so
//! its correction is O(L^2/n) and the series stops converging at L ~ 0.2 n. Here nothing is expanded in
//! L/n. Each draw samples one network's *forward* pass exactly (the n_m pre-activations of layer m are
//! i.i.d. given the previous layer, so the units are drawn one by one), and carries the Jacobian through
//! three scalars per starting layer k: ln ||J_{m<-k}||_F^2, the fraction p of that Frobenius mass along the
//! current output direction (p = rho / n, saturating at 1 instead of growing without bound), and the
//! spectral spread s of J J^T (which sets how much the rows of W off the input path scatter ||J||_F^2).
//! Given those, the next layer's Jacobian gain is exact in its input-path part (it uses the same sampled
//! units as the forward pass) and moment-matched (a Gamma law) in its off-path part, whose variance
//! includes the path/off-path cross term. The spread's update is the ratio E[n tr N^2 / (tr N)^2] to
//! O(1/n) per step uniformly in s/n, closed by a geometric (Lyapunov) spectrum: the old ratio of
//! expectations let s run to n and made the chain's error O(L/n) (theory/finite-width.md section 8,
//! "Diagnosis"). From width [`MVN_MIN_WIDTH`] a layer's six unit sums are drawn from their moment-matched
//! law (normal plus a skewness term) instead of unit by unit. What is neglected is stated there: the
//! cross term of the path fraction's numerator and the off-path spectrum beyond its spread.

use crate::gauss::expect_many;
use crate::nonlin::Nonlinearity;
use rand::distributions::Open01;
use rand::Rng;
use rand_distr::StandardNormal;
use rand_xoshiro::Xoshiro256PlusPlus;
use std::sync::{Arc, Mutex};

/// One plain-MLP layer as the chain sees it: (width, sigma_w^2, sigma_b^2, nonlinearity).
pub(crate) type ChainLayer = (usize, f64, f64, Nonlinearity);

/// Sums over the units of one layer (the sufficient statistics of the step), and ln ||f_m||^2.
struct UnitSums {
    /// sum phi^2, sum phi'^2, sum phi'^2 z^2, sum phi phi' z, sum (phi phi')^2, sum phi'^4, where z is the
    /// standardised weight part of the pre-activation (the component along the input direction).
    phi2: f64,
    d2: f64,
    d2z2: f64,
    pdz: f64,
    pd2: f64,
    d4: f64,
}

/// Draws one layer's units given s = ||f_{m-1}||^2 / n_{m-1}; redraws (at most a few times) a layer whose
/// forward output is exactly zero, which conditions on a non-degenerate network exactly: the event has the
/// same probability whatever came before (relu: 2^-n), so conditioning per layer does not tilt the past.
fn draw_units(
    n: usize,
    s: f64,
    sw2: f64,
    sb2: f64,
    act: Nonlinearity,
    rng: &mut Xoshiro256PlusPlus,
) -> Option<UnitSums> {
    let sd_w = (sw2 * s).sqrt();
    let sd_b = sb2.sqrt();
    for _ in 0..64 {
        let mut u = UnitSums {
            phi2: 0.0,
            d2: 0.0,
            d2z2: 0.0,
            pdz: 0.0,
            pd2: 0.0,
            d4: 0.0,
        };
        for _ in 0..n {
            let z: f64 = rng.sample(StandardNormal);
            let h = if sb2 > 0.0 {
                sd_w * z + sd_b * rng.sample::<f64, _>(StandardNormal)
            } else {
                sd_w * z
            };
            let p = act.phi(h);
            let d = act.dphi(h);
            let (p2, d2) = (p * p, d * d);
            u.phi2 += p2;
            u.d2 += d2;
            u.d2z2 += d2 * z * z;
            u.pdz += p * d * z;
            u.pd2 += p2 * d2;
            u.d4 += d2 * d2;
        }
        if u.phi2 > 0.0 && u.d2 > 0.0 {
            return Some(u);
        }
    }
    None
}

/// Widths from which a layer's six unit sums are drawn from their moment-matched normal law instead of
/// unit by unit. Why a normal: each sum has n i.i.d. terms; the normal law has their exact mean and
/// covariance, so what it misses in E ln of a sum is the third cumulant, kappa_3 / (3 n^2) per layer, i.e.
/// O(L/n^2) in total, the order the chain aims at (theory/finite-width.md section 8, "Speed", where the
/// difference to the unit loop is measured).
pub(crate) const MVN_MIN_WIDTH: usize = 32;

/// Grid step in ln s of [`UnitTable`], read through 4-point Lagrange (cubic) interpolation, whose error
/// is 9 step^4 |d^4 f / d(ln s)^4| / 384 at mid-cell: for a moment going like s^k that is
/// (9/384) (k step)^4 relative, 2.2e-5 at |k| = 3.5, the steepest of the 33 (test
/// `unit_table_interpolation_matches_direct_quadrature`). Five times coarser than the earlier linear
/// grid (step 0.01, error (k step)^2 / 8 = 1.5e-4 at |k| = 3.5), so a table costs a fifth of the
/// quadratures.
const TABLE_STEP: f64 = 0.05;

/// E[z^6 | h] for z | h ~ N(m, v).
fn z6(m: f64, v: f64) -> f64 {
    let m2 = m * m;
    m2 * m2 * m2 + 15.0 * m2 * m2 * v + 45.0 * m2 * v * v + 15.0 * v * v * v
}

/// One row of [`UnitTable`]: the 33 per-unit moments at s = e^{ln_s}.
fn unit_row(sw2: f64, sb2: f64, act: Nonlinearity, ln_s: f64) -> [f64; 33] {
    let s = ln_s.exp();
    let q = sw2 * s + sb2;
    let a = (sw2 * s).sqrt() / q;
    let v = (1.0 - sw2 * s / q).max(0.0);
    expect_many::<33>(
        q,
        |h| {
            let (p, d) = (act.phi(h), act.dphi(h));
            let m = a * h;
            let (z1, z2) = (m, m * m + v);
            let z3 = m * m * m + 3.0 * m * v;
            let z4 = m.powi(4) + 6.0 * m * m * v + 3.0 * v * v;
            let (p2, d2) = (p * p, d * d);
            let (d4, pd) = (d2 * d2, p * d);
            [
                p2,
                d2,
                d2 * z2,
                pd * z1,
                p2 * d2,
                d4,
                p2 * p2,
                p2 * d2,
                p2 * d2 * z2,
                p2 * pd * z1,
                p2 * p2 * d2,
                p2 * d4,
                d4,
                d4 * z2,
                pd * d2 * z1,
                p2 * d4,
                d4 * d2,
                d4 * z4,
                pd * d2 * z3,
                p2 * d4 * z2,
                d4 * d2 * z2,
                p2 * d2 * z2,
                p2 * pd * d2 * z1,
                pd * d4 * z1,
                p2 * p2 * d4,
                p2 * d4 * d2,
                d4 * d4,
                // Third moments E v_a^3 (z^3 and z^6 given h for the z-terms).
                p2 * p2 * p2,
                d4 * d2,
                d4 * d2 * z6(m, v),
                pd * pd * pd * z3,
                p2 * p2 * p2 * d4 * d2,
                d4 * d4 * d4,
            ]
        },
        act.kinks(),
    )
}

/// Per-unit moments of (phi^2, phi'^2, phi'^2 z^2, phi phi' z, phi^2 phi'^2, phi'^4) for one layer kind
/// (sigma_w^2, sigma_b^2, phi) on a grid in ln s, s = ||f_{m-1}||^2 / n_{m-1}: the 6 means and the 21
/// second moments E[v_i v_j], from 1-D Gaussian integrals in h (z given h is N(a h, 1 - w) with
/// a = sqrt(sigma_w^2 s) / q, w = sigma_w^2 s / q, q = sigma_w^2 s + sigma_b^2).
///
/// Why the grid is anchored at ln s = 0 (row j at ln s = (i0 + j) step): a table covering a wider range
/// has the same rows where both are defined, so a draw reads the same numbers whichever cached table
/// serves it, and the law for a seed does not depend on what the process computed before.
pub(crate) struct UnitTable {
    kind: (f64, f64, Nonlinearity),
    i0: i64,
    step: f64,
    rows: Vec<[f64; 33]>,
}

/// Tables built in this process, reused by later calls for the same layer kind and a covered range
/// (`check` and the figures ask for the law per layer or per grid point with the same kinds).
static UNIT_CACHE: Mutex<Vec<Arc<UnitTable>>> = Mutex::new(Vec::new());
/// How many unit tables the cache keeps (the oldest is dropped); one is ~250 rows of 33 f64.
const UNIT_CACHE_MAX: usize = 32;

impl UnitTable {
    /// The table over ln s in [lo, hi] (at most ~2000 points; the step doubles beyond that).
    pub(crate) fn new(sw2: f64, sb2: f64, act: Nonlinearity, lo: f64, hi: f64) -> UnitTable {
        let step = Self::step_for(lo, hi);
        let (i0, i1) = Self::span(step, lo, hi);
        let rows = (i0..=i1)
            .map(|i| unit_row(sw2, sb2, act, i as f64 * step))
            .collect();
        UnitTable {
            kind: (sw2, sb2, act),
            i0,
            step,
            rows,
        }
    }

    fn step_for(lo: f64, hi: f64) -> f64 {
        let mut step = TABLE_STEP;
        while (hi - lo) / step > 2000.0 {
            step *= 2.0;
        }
        step
    }

    /// Grid indices [i0, i1] covering [lo, hi] with one row to spare either side for the cubic stencil.
    fn span(step: f64, lo: f64, hi: f64) -> (i64, i64) {
        (
            (lo / step).floor() as i64 - 1,
            (hi / step).ceil() as i64 + 2,
        )
    }

    /// A cached table for this kind covering [lo, hi], else a new one (then cached).
    pub(crate) fn cached(
        sw2: f64,
        sb2: f64,
        act: Nonlinearity,
        lo: f64,
        hi: f64,
    ) -> Arc<UnitTable> {
        let step = Self::step_for(lo, hi);
        let (i0, i1) = Self::span(step, lo, hi);
        let covers = |t: &UnitTable| {
            t.is_for(sw2, sb2, act)
                && t.step == step
                && t.i0 <= i0
                && t.i0 + t.rows.len() as i64 > i1
        };
        if let Ok(cache) = UNIT_CACHE.lock() {
            if let Some(t) = cache.iter().find(|t| covers(t)) {
                return Arc::clone(t);
            }
        }
        let t = Arc::new(UnitTable::new(sw2, sb2, act, lo, hi));
        if let Ok(mut cache) = UNIT_CACHE.lock() {
            if cache.len() >= UNIT_CACHE_MAX {
                cache.remove(0);
            }
            cache.push(Arc::clone(&t));
        }
        t
    }

    /// The 33 moments at s by cubic interpolation, or None outside the table.
    fn moments_at(&self, s: f64) -> Option<[f64; 33]> {
        let x = s.ln() / self.step - self.i0 as f64;
        if x.is_nan() || x < 1.0 || x >= (self.rows.len() - 2) as f64 {
            return None;
        }
        let i = x as usize;
        let t = x - i as f64;
        // Lagrange weights on the rows i-1, i, i+1, i+2.
        let w = [
            -t * (t - 1.0) * (t - 2.0) / 6.0,
            (t + 1.0) * (t - 1.0) * (t - 2.0) / 2.0,
            -(t + 1.0) * t * (t - 2.0) / 2.0,
            (t + 1.0) * t * (t - 1.0) / 6.0,
        ];
        let r = &self.rows[i - 1..i + 3];
        let mut m = [0.0; 33];
        for (k, mk) in m.iter_mut().enumerate() {
            *mk = w[0] * r[0][k] + w[1] * r[1][k] + w[2] * r[2][k] + w[3] * r[3][k];
        }
        Some(m)
    }

    /// Whether this table is for the layer kind (sigma_w^2, sigma_b^2, phi).
    pub(crate) fn is_for(&self, sw2: f64, sb2: f64, act: Nonlinearity) -> bool {
        self.kind.0 == sw2 && self.kind.1 == sb2 && self.kind.2 == act
    }

    /// Draws the six sums of n units from their normal law at s, or None outside the table or if a draw
    /// lands where a sum cannot be (then the caller draws the units one by one).
    // Index loops: a 6 x 6 Cholesky factor reads clearer with the textbook indices.
    #[allow(clippy::needless_range_loop)]
    fn draw(&self, n: usize, s: f64, rng: &mut Xoshiro256PlusPlus) -> Option<UnitSums> {
        let m = self.moments_at(s)?;
        // Covariance of one unit's vector, then its Cholesky factor; a zero pivot (phi'^2 = phi'^4 for
        // relu, phi' = 1 for linear) leaves that direction without noise, as the sums have none there.
        let mut c = [[0.0; 6]; 6];
        let mut k = 6;
        for a in 0..6 {
            for b in a..6 {
                c[a][b] = m[k] - m[a] * m[b];
                c[b][a] = c[a][b];
                k += 1;
            }
        }
        let mut l = [[0.0; 6]; 6];
        // Reciprocal pivots (0 for a zero pivot): one division per column instead of one per entry,
        // as divisions and square roots were most of this function's time (perf, issue 17).
        let mut inv = [0.0; 6];
        for a in 0..6 {
            for b in 0..=a {
                let mut sum = c[a][b];
                for j in 0..b {
                    sum -= l[a][j] * l[b][j];
                }
                if a == b {
                    if sum > 1e-12 * c[a][a].abs().max(1e-300) {
                        l[a][a] = sum.sqrt();
                        inv[a] = 1.0 / l[a][a];
                    }
                } else {
                    l[a][b] = sum * inv[b];
                }
            }
        }
        let nf = n as f64;
        let sn = nf.sqrt();
        let inv_6sn = 1.0 / (6.0 * sn);
        let mut xi = [0.0; 6];
        for v in xi.iter_mut() {
            *v = rng.sample(StandardNormal);
        }
        // Each sum's own skewness by a Cornish-Fisher term on its standardised marginal: the normal law
        // alone misses kappa_3 / (3 n^2) in E ln of a sum per layer, which the unit loop measured as 0.07
        // in ln GSC for gelu with biases at width 60, depth 60 (theory/finite-width.md section 8, "Speed").
        let mut out = [0.0; 6];
        for a in 0..6 {
            let mut e = 0.0;
            for j in 0..=a {
                e += l[a][j] * xi[j];
            }
            let var = c[a][a];
            if var > 0.0 {
                // sd gamma (y^2 - 1) / 6 with gamma = k3 / (var sd sn), y = e / sd: one division.
                let k3 = m[27 + a] - 3.0 * m[a] * (var + m[a] * m[a]) + 2.0 * m[a].powi(3);
                let inv_var = 1.0 / var;
                e += k3 * inv_var * (e * e * inv_var - 1.0) * inv_6sn;
            }
            out[a] = nf * m[a] + sn * e;
        }
        if out[0] <= 0.0 || out[1] <= 0.0 || out[2] < 0.0 || out[4] < 0.0 {
            return None;
        }
        // phi'^4 sums to at least (sum phi'^2)^2 / n (Cauchy-Schwarz). A normal draw can break that
        // where phi' is nearly constant (gelu at small q); rejecting such draws would condition the
        // others (measured: a bias of 0.07 in ln GSC, gelu width 60 depth 60), so it is clamped.
        out[5] = out[5].max(out[1] * out[1] / nf);
        Some(UnitSums {
            phi2: out[0],
            d2: out[1],
            d2z2: out[2],
            pdz: out[3],
            pd2: out[4],
            d4: out[5],
        })
    }
}

/// tr M^3 of the geometric closure (see [`geometric_mu3`]) tabulated for one dimension: ln tr M^2 and
/// ln tr M^3 along x = -ln q, both increasing, so a lookup is a bisection over the grid. The chain reads
/// it through `mu3_u`: tr M^3 itself (no exp per read) on a uniform grid in ln tr M^2, so that a lookup
/// is one index computation instead of a bisection (the bisection and the exp were a fifth of the
/// chain's time). Linear in tr M^3 at spacing ~ln(dim) / 4096 in ln tr M^2: relative error below
/// 1e-4 (test `closure_table_matches_geometric_mu3`), against terms of order 1 in the spread update.
pub(crate) struct ClosureTable {
    dim: f64,
    ln_mu2: Vec<f64>,
    ln_mu3: Vec<f64>,
    y0: f64,
    dy: f64,
    mu3_u: Vec<f64>,
}

impl ClosureTable {
    pub(crate) fn new(dim: f64) -> ClosureTable {
        // x from 1e-4 / dim (flat to 1e-4) to 40 (rank one to e^-40), 1200 points log-spaced.
        let (lo, hi) = ((1e-4 / dim).ln(), 40f64.ln());
        let pts = 1200;
        let mut ln_mu2 = Vec::with_capacity(pts);
        let mut ln_mu3 = Vec::with_capacity(pts);
        for i in 0..pts {
            let x = (lo + (hi - lo) * i as f64 / (pts - 1) as f64).exp();
            let (m2, m3) = geometric_moments(x, dim);
            ln_mu2.push(m2.ln());
            ln_mu3.push(m3.ln());
        }
        let mut t = ClosureTable {
            dim,
            ln_mu2,
            ln_mu3,
            y0: 0.0,
            dy: 1.0,
            mu3_u: Vec::new(),
        };
        let upts = 4096;
        let (y0, y1) = (t.ln_mu2[0], t.ln_mu2[pts - 1]);
        t.dy = (y1 - y0) / (upts - 1) as f64;
        t.y0 = y0;
        t.mu3_u = (0..upts)
            .map(|j| t.ln_mu3_bisect(y0 + t.dy * j as f64).exp())
            .collect();
        t
    }

    /// ln tr M^3 at ln tr M^2 = y inside the grid, linear between the bracketing grid points.
    fn ln_mu3_bisect(&self, y: f64) -> f64 {
        let n = self.ln_mu2.len();
        let i = self.ln_mu2.partition_point(|&v| v < y).clamp(1, n - 1) - 1;
        let t = (y - self.ln_mu2[i]) / (self.ln_mu2[i + 1] - self.ln_mu2[i]);
        self.ln_mu3[i] + t * (self.ln_mu3[i + 1] - self.ln_mu3[i])
    }

    fn mu3(&self, mu2: f64) -> f64 {
        let y = mu2.ln();
        let n = self.ln_mu2.len();
        if y <= self.ln_mu2[0] {
            return 1.0 / (self.dim * self.dim);
        }
        if y >= self.ln_mu2[n - 1] {
            return mu2.min(1.0);
        }
        let x = (y - self.y0) / self.dy;
        let j = (x as usize).min(self.mu3_u.len() - 2);
        let t = x - j as f64;
        self.mu3_u[j] + t * (self.mu3_u[j + 1] - self.mu3_u[j])
    }
}

/// (tr M^2, tr M^3) of the normalised geometric spectrum q^j / sum_i q^i, j < dim, q = e^{-x}.
fn geometric_moments(x: f64, dim: f64) -> (f64, f64) {
    let om = |a: f64| -(-a).exp_m1();
    let m2 = (0.5 * x).tanh() / (0.5 * dim * x).tanh();
    let m3 = om(x).powi(3) * om(3.0 * dim * x) / (om(dim * x).powi(3) * om(3.0 * x));
    (m2, m3)
}
/// A positive factor with mean 1 and relative variance `rel_var` (Gamma law: the off-path quadratic forms
/// are sums of weighted chi-squares, skewed at small effective rank).
fn unit_gamma(rel_var: f64, rng: &mut Xoshiro256PlusPlus) -> f64 {
    if rel_var.is_nan() || rel_var <= 1e-12 || rel_var.is_infinite() {
        return 1.0;
    }
    if rel_var < 1e-6 {
        // Shape > 1e6: the Gamma is normal to within its own skewness 2 sqrt(rel_var).
        let g: f64 = rng.sample(StandardNormal);
        return 1.0 + rel_var.sqrt() * g;
    }
    rel_var * gamma_unit_scale(1.0 / rel_var, rng)
}

/// A Gamma(shape, 1) draw by Marsaglia and Tsang's method ("A simple method for generating gamma
/// variables", ACM TOMS 26, 2000), with their squeeze u < 1 - 0.0331 x^4 that skips the logarithm in
/// ~98% of draws, and Gamma(a) = Gamma(a + 1) U^{1/a} for a < 1. The same law as `rand_distr::Gamma`
/// (which uses the same method, with the same calls on the stream) without its per-draw constructor:
/// the shape changes with every state step, and building the sampler was a twentieth of the chain's time.
fn gamma_unit_scale(shape: f64, rng: &mut Xoshiro256PlusPlus) -> f64 {
    let (a, boost) = if shape < 1.0 {
        let u: f64 = rng.sample(Open01);
        (shape + 1.0, (u.ln() / shape).exp())
    } else {
        (shape, 1.0)
    };
    let d = a - 1.0 / 3.0;
    let c = 1.0 / (9.0 * d).sqrt();
    loop {
        let x: f64 = rng.sample(StandardNormal);
        let v = 1.0 + c * x;
        if v <= 0.0 {
            continue;
        }
        let v = v * v * v;
        let u: f64 = rng.sample(Open01);
        let x2 = x * x;
        if u < 1.0 - 0.0331 * x2 * x2 || u.ln() < 0.5 * x2 + d * (1.0 - v + v.ln()) {
            return d * v * boost;
        }
    }
}

/// tr M^3 of the normalised geometric spectrum lambda_j = q^j / sum_i q^i (j < `dim`) whose tr M^2 is
/// `mu2`. Why geometric: the squared singular values of a product of L Gaussian matrices of width n
/// separate at the Lyapunov rate, lambda_{j+1} / lambda_j ~ ((n - j) / (n - j + 1))^L ~ e^{-L/n} for the
/// leading ones (theory/finite-width.md section 8). With q = e^{-x}: tr M^2 = tanh(x/2) coth(dim x/2).
/// The reference for [`ClosureTable`], which the chain uses.
pub(crate) fn geometric_mu3(mu2: f64, dim: f64) -> f64 {
    if mu2 >= 1.0 - 1e-12 {
        return 1.0;
    }
    if mu2 <= 1.0 / dim + 1e-15 {
        return 1.0 / (dim * dim);
    }
    // tr M^2 increases from 1/dim (x -> 0) to 1 (x -> inf): bisection in ln x.
    let (mut lo, mut hi) = ((1e-9 / dim).ln(), 60f64.ln());
    for _ in 0..60 {
        let mid = 0.5 * (lo + hi);
        if geometric_moments(mid.exp(), dim).0 < mu2 {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    geometric_moments((0.5 * (lo + hi)).exp(), dim).1
}

/// E[s'] for s' = n tr N^2 / (tr N)^2, N = D W M W^T D (M of dimension `np`, spread `s`, tr M^2 = mu2,
/// tr M^3 = mu3; 1 + V = n sum phi'^4 / (sum phi'^2)^2), to O(1/n) per step uniformly in s / n
/// (derivation: theory/finite-width.md section 8, "The spread").
fn spread_step(s: f64, n: f64, np: f64, one_plus_v: f64, mu2: f64, mu3: f64) -> f64 {
    (n / np) * s + one_plus_v * (1.0 + mu2 - 8.0 * mu3 + 6.0 * mu2 * mu2)
}

/// State of J_{m<-k} for one starting layer k.
#[derive(Clone, Copy)]
struct JState {
    /// ln ||J||_F^2 = ln_f + ln(f_scale): the gains are multiplied into f_scale and folded into ln_f
    /// only when it leaves [1e-150, 1e150], one logarithm per many layers instead of one per layer.
    ln_f: f64,
    f_scale: f64,
    /// ||J^T f^_m||^2 / ||J||_F^2: the share of the Frobenius mass along the current output direction.
    p: f64,
    /// n_m tr((J J^T)^2) / tr(J J^T)^2.
    spread: f64,
}

/// The tables one network's draws share: unit moments per layer kind, the closure per width.
pub(crate) struct ChainTables {
    units: Vec<Arc<UnitTable>>,
    closures: Vec<ClosureTable>,
}

impl ChainTables {
    /// Tables for `layers` fed by an input of width `n0`. The unit tables span the mean-field forward
    /// state s_m of every layer of their kind, e^4 either side (a draw outside falls back to the units).
    pub(crate) fn new(n0: usize, layers: &[ChainLayer]) -> ChainTables {
        let mut units: Vec<Arc<UnitTable>> = Vec::new();
        let mut ranges: Vec<((f64, f64, Nonlinearity), f64, f64)> = Vec::new();
        let mut s = 1.0f64;
        for &(n, sw2, sb2, act) in layers {
            if n >= MVN_MIN_WIDTH {
                let ls = s.max(1e-300).ln();
                match ranges.iter_mut().find(|r| r.0 == (sw2, sb2, act)) {
                    Some(r) => {
                        r.1 = r.1.min(ls);
                        r.2 = r.2.max(ls);
                    }
                    None => ranges.push(((sw2, sb2, act), ls, ls)),
                }
            }
            s = crate::gauss::expect(sw2 * s + sb2, |h| act.phi(h).powi(2), act.kinks());
        }
        for ((sw2, sb2, act), lo, hi) in ranges {
            units.push(UnitTable::cached(
                sw2,
                sb2,
                act,
                lo.max(-600.0) - 4.0,
                hi + 4.0,
            ));
        }
        let mut closures: Vec<ClosureTable> = Vec::new();
        for w in std::iter::once(n0).chain(layers.iter().map(|l| l.0)) {
            if !closures.iter().any(|c| c.dim == w as f64) {
                closures.push(ClosureTable::new(w as f64));
            }
        }
        ChainTables { units, closures }
    }
}

/// One draw of the chain: ln GSC(L, k) for k = 0..L-1, or for k = 0 alone unless `every_start` (the
/// other starting layers cost O(L^2) per draw); None if a layer could not be drawn non-degenerate.
pub(crate) fn draw(
    n0: usize,
    layers: &[ChainLayer],
    tables: &ChainTables,
    unit_loop: bool,
    every_start: bool,
    rng: &mut Xoshiro256PlusPlus,
) -> Option<Vec<f64>> {
    let depth = layers.len();
    // ln ||f_m||^2 for m = 0..=L; ||x||^2 = n_0.
    let mut ln_sq = Vec::with_capacity(depth + 1);
    ln_sq.push((n0 as f64).ln());
    let mut states: Vec<JState> = Vec::with_capacity(depth);
    let mut width_prev = n0;
    for &(n, sw2, sb2, act) in layers {
        let np = width_prev as f64;
        // J_{m-1<-m-1} = I: all of its Frobenius mass n' is spread evenly, 1/n' of it along f.
        if every_start || states.is_empty() {
            states.push(JState {
                ln_f: np.ln(),
                f_scale: 1.0,
                p: 1.0 / np,
                spread: 1.0,
            });
        }
        let s = ln_sq.last().copied().unwrap_or(0.0).exp() / np;
        let table = tables
            .units
            .iter()
            .find(|t| !unit_loop && t.is_for(sw2, sb2, act));
        let u = match table.and_then(|t| t.draw(n, s, rng)) {
            Some(u) => u,
            None => draw_units(n, s, sw2, sb2, act, rng)?,
        };
        let closure = tables.closures.iter().find(|c| c.dim == np);
        let sig2 = sw2 / np;
        let nf = n as f64;
        // 1 + V for this layer's gates, from the drawn units.
        let one_plus_v = nf * u.d4 / (u.d2 * u.d2);
        // Per-layer constants of the state step, hoisted: the step is run O(L^2) times per draw.
        let inv_np = 1.0 / np;
        let two_d4_d2sq = 2.0 * one_plus_v / nf;
        let inv_phi2 = 1.0 / u.phi2;
        for st in states.iter_mut() {
            let p = st.p.clamp(0.0, 1.0);
            // Effective rank of J J^T (>= 1): an off-path quadratic form g^T J J^T g with Gaussian g is a
            // chi-square with that many degrees of freedom, in distribution to second order; its
            // relative variance 2 / rank = 2 s / n' needs no division.
            let two_over_rank = (2.0 * st.spread * inv_np).min(2.0);
            // ||J_m||_F^2 / ||J||_F^2: the input-path part (rows' components along f, which also set the
            // pre-activations: the same z's) plus the off-path part sum_i phi'_i^2 g_i^T K g_i (K = P M P)
            // and the zero-mean cross term 2 sum_i phi'_i^2 z_i g_i . P M e. Their variances,
            // 2 D4 tr K^2 and 4 sum phi'^4 z^2 c with tr K^2 = mu2 - 2c - p^2, add up to
            // 2 D4 (mu2 - p^2) (E z^2 = 1): so both are drawn as one Gamma factor of that variance,
            // without needing c (theory/finite-width.md section 8, "The off-path variance").
            let path = sig2 * p * u.d2z2;
            let off_mean = sig2 * (1.0 - p) * u.d2;
            let mu2 = (st.spread * inv_np).clamp(inv_np, 1.0);
            let off = if off_mean > 0.0 {
                let k2 = (mu2 - p * p).max(0.0) / ((1.0 - p) * (1.0 - p));
                off_mean * unit_gamma(two_d4_d2sq * k2, rng)
            } else {
                0.0
            };
            let gain = path + off;
            if gain.is_nan() || gain <= 0.0 {
                return None;
            }
            // ||J_m^T f_m||^2 / ||J||_F^2: J^T W^T (phi' phi) = along-path part sum_i phi_i phi'_i a_i J^T f^
            // plus an off-path Gaussian vector through B^T (one chi-square of the same rank).
            let num_path = sig2 * u.pdz * u.pdz * p;
            let num_off_mean = sig2 * (1.0 - p) * u.pd2;
            let num_off = if num_off_mean > 0.0 {
                num_off_mean * unit_gamma(two_over_rank, rng)
            } else {
                0.0
            };
            st.p = ((num_path + num_off) * inv_phi2 / gain).clamp(0.0, 1.0);
            let f = st.f_scale * gain;
            if (1e-150..=1e150).contains(&f) {
                st.f_scale = f;
            } else {
                // Logs of the factors, not of their product, which may over- or underflow.
                st.ln_f += st.f_scale.ln() + gain.ln();
                st.f_scale = 1.0;
            }
            // E[n tr N^2 / (tr N)^2] for N = D W M W^T D to O(1/n) per step, uniformly in s / n
            // (theory/finite-width.md section 8, "The spread"): the ratio's own terms -8 mu3 + 6 mu2^2
            // are what stop a near-rank-one J from growing its spread past n (they cancel 1 + mu2 at
            // rank one). mu3 = tr M^3 is closed by the geometric (Lyapunov) spectrum with the same mu2.
            let mu3 = match closure {
                Some(c) => c.mu3(mu2),
                None => geometric_mu3(mu2, np),
            };
            st.spread = spread_step(st.spread, nf, np, one_plus_v, mu2, mu3).clamp(1.0, nf);
        }
        ln_sq.push(u.phi2.ln());
        width_prev = n;
    }
    let ln_l = ln_sq[depth];
    let mut n_k = n0;
    let mut out = Vec::with_capacity(depth);
    for (k, st) in states.iter().enumerate() {
        let ln_f = st.ln_f + st.f_scale.ln();
        out.push(0.5 * (ln_f - (n_k as f64).ln() - (ln_l - ln_sq[k])));
        n_k = layers[k].0;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::{
        gamma_unit_scale, geometric_moments, geometric_mu3, spread_step, unit_row, ClosureTable,
        UnitTable,
    };
    use crate::nonlin::Nonlinearity;
    use nalgebra::DMatrix;
    use rand::{Rng, SeedableRng};
    use rand_distr::StandardNormal;
    use rand_xoshiro::Xoshiro256PlusPlus;

    /// The spread update against its definition: M a near-rank-one geometric spectrum (n = 40,
    /// tr M^2 = 0.62), gates phi'(h)^2 of tanh at q = 1 independent of W (the update's setting), 3000
    /// draws of s' = n tr N^2 / (tr N)^2, N = D W M W^T D. The mean of s' minus the update (evaluated with
    /// each draw's own 1 + V) is 0 within z(1e-6) se plus the derived size of the terms the update drops
    /// (8 (mu2 + mu3) n D6 / D2^3 per draw, from Cov(A, T)). The old update (1 + V)(1 + mu2) is ~1.5 too
    /// high here.
    #[test]
    fn spread_update_matches_its_definition_near_rank_one() {
        let n = 40usize;
        let nf = n as f64;
        let (mu2, mu3) = geometric_moments(0.9, nf);
        let q = (-0.9f64).exp();
        let tot: f64 = (0..n).map(|j| q.powi(j as i32)).sum();
        let sqrt_m = DMatrix::from_fn(n, n, |i, j| {
            if i == j {
                (q.powi(i as i32) / tot).sqrt()
            } else {
                0.0
            }
        });
        let s = nf * mu2;
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(11);
        let (draws, mut sum, mut sum2, mut drop) = (3000, 0.0, 0.0, 0.0);
        for _ in 0..draws {
            let w = DMatrix::from_fn(n, n, |_, _| rng.sample::<f64, _>(StandardNormal));
            let d2: Vec<f64> = (0..n)
                .map(|_| {
                    let t = rng.sample::<f64, _>(StandardNormal).tanh();
                    (1.0 - t * t).powi(2)
                })
                .collect();
            let mut x = &w * &sqrt_m;
            for (i, &g) in d2.iter().enumerate() {
                x.row_mut(i).scale_mut(g.sqrt());
            }
            let nn = &x * x.transpose();
            let sp = nf * nn.norm_squared() / nn.trace().powi(2);
            let (s2, s4, s6) = d2.iter().fold((0.0, 0.0, 0.0), |a, &g| {
                (a.0 + g, a.1 + g * g, a.2 + g * g * g)
            });
            let diff = sp - spread_step(s, nf, nf, nf * s4 / (s2 * s2), mu2, mu3);
            sum += diff;
            sum2 += diff * diff;
            drop += 8.0 * (mu2 + mu3) * nf * s6 / s2.powi(3) / draws as f64;
        }
        let mean = sum / draws as f64;
        let se = ((sum2 / draws as f64 - mean * mean) / (draws - 1) as f64).sqrt();
        let z = crate::stats::z_for_false_alarm(1e-6);
        assert!(
            mean.abs() <= z * se + drop,
            "mean s' - update = {mean} (se {se}, dropped-term bound {drop}), mu2 {mu2}"
        );
    }

    /// The closed forms against the direct sums of q^j, at flat, intermediate and near-rank-one spectra.
    #[test]
    fn geometric_closure_matches_direct_sums() {
        for dim in [3usize, 30, 100] {
            for q in [0.999f64, 0.97, 0.8, 0.3, 0.01] {
                let l: Vec<f64> = (0..dim).map(|j| q.powi(j as i32)).collect();
                let t: f64 = l.iter().sum();
                let mu2: f64 = l.iter().map(|x| (x / t).powi(2)).sum();
                let mu3: f64 = l.iter().map(|x| (x / t).powi(3)).sum();
                let got = geometric_mu3(mu2, dim as f64);
                assert!(
                    (got / mu3 - 1.0).abs() < 1e-7,
                    "dim {dim} q {q}: {got} vs {mu3}"
                );
            }
        }
    }

    /// The cubic reads of the unit table against direct quadrature at mid-cell points (where the cubic's
    /// error peaks) over ln s in [-6, 3], for tanh, gelu and selu with and without biases, relative to each
    /// moment's size, against error budgets that leave the law unchanged: the 6 means 2e-6 (E ln of a
    /// sum moves by that per layer, 2e-4 at depth 100, ~1% of the law's Monte Carlo se), the 21 second
    /// moments 2e-5 (the sums' sd by ~1e-5), the 6 third moments 1e-4 (of the skewness term, itself
    /// O(n^-1/2)). Measured worst: 8.9e-7, 1.55e-5, 8.0e-5 (gelu phi^6 phi'^6 at small s, which goes like
    /// s^4.4 there); the grid is deterministic, so the margins (2.2x, 1.3x, 1.25x) are not sampling
    /// luck. Swapping the first two Lagrange weights fails it.
    #[test]
    fn unit_table_interpolation_matches_direct_quadrature() {
        let budget = [2e-6, 2e-5, 1e-4];
        let mut worst = [0.0f64; 3];
        for act in [Nonlinearity::Tanh, Nonlinearity::Gelu, Nonlinearity::Selu] {
            for sb2 in [0.0, 0.05] {
                let t = UnitTable::new(1.0, sb2, act, -6.0, 3.0);
                for j in 0..45 {
                    // Mid-cell (t = 0.5 of the step-0.05 grid), where the cubic's error peaks.
                    let ln_s = -6.0 + 0.2 * j as f64 + 0.5 * super::TABLE_STEP;
                    let got = t.moments_at(ln_s.exp()).expect("inside the table");
                    let want = unit_row(1.0, sb2, act, ln_s);
                    for k in 0..33 {
                        let g = if k < 6 {
                            0
                        } else if k < 27 {
                            1
                        } else {
                            2
                        };
                        let rel = (got[k] - want[k]).abs() / want[k].abs().max(1e-300);
                        worst[g] = worst[g].max(rel);
                        assert!(
                            rel < budget[g],
                            "{act:?} sb2 {sb2} ln s {ln_s} moment {k}: {} vs {}",
                            got[k],
                            want[k]
                        );
                    }
                }
            }
        }
        eprintln!("unit table: worst relative errors (means, second, third moments) {worst:?}");
    }

    /// The uniform-grid read of the closure table against the bisection on the geometric spectrum:
    /// relative error in tr M^3 below 1e-4 from flat to rank one, dims 3, 30, 100, 3000. Reading the
    /// wrong bracketing point (j + 1 for j) fails it.
    #[test]
    fn closure_table_matches_geometric_mu3() {
        for dim in [3.0f64, 30.0, 100.0, 3000.0] {
            let c = ClosureTable::new(dim);
            for i in 1..400 {
                let mu2 = (1.0 / dim) * (dim).powf(i as f64 / 400.0);
                let (got, want) = (c.mu3(mu2), geometric_mu3(mu2, dim));
                assert!(
                    (got / want - 1.0).abs() < 1e-4,
                    "dim {dim} mu2 {mu2}: {got} vs {want}"
                );
            }
        }
    }

    /// Mean and variance of the Gamma sampler (shape 0.3, 0.7, 2, 40; 50000 draws each) against
    /// the exact a and a, each within z(1e-6) of its standard error (from the draws' own fourth
    /// moment for the variance). Dropping the U^{1/a} boost below shape 1 fails it (mean a + 1).
    #[test]
    fn gamma_sampler_has_the_gamma_moments() {
        let z = crate::stats::z_for_false_alarm(1e-6);
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(5);
        for a in [0.3f64, 0.7, 2.0, 40.0] {
            let n = 50_000;
            let xs: Vec<f64> = (0..n).map(|_| gamma_unit_scale(a, &mut rng)).collect();
            let nf = n as f64;
            let mean = xs.iter().sum::<f64>() / nf;
            let m2 = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / nf;
            let m4 = xs.iter().map(|x| (x - mean).powi(4)).sum::<f64>() / nf;
            let se_mean = (m2 / nf).sqrt();
            let se_var = ((m4 - m2 * m2) / nf).sqrt();
            assert!((mean - a).abs() < z * se_mean, "shape {a}: mean {mean}");
            assert!((m2 - a).abs() < z * se_var, "shape {a}: variance {m2}");
        }
    }
}
