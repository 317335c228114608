//! Tabulated Gaussian moments for the nonlinearities whose moments need quadrature (tanh, sigmoid,
//! softplus, gelu, silu): piecewise Chebyshev interpolants in t = ln q of (ln E[phi^2], ln E[phi'^2],
//! E[phi]/sqrt(E[phi^2])). One quadrature call costs ~25 µs, and a 10^4-point grid to depth 50 makes
//! 5·10^5 of them; a lookup costs ~0.1 µs. Derivation and accuracy: theory/cost.md ("Tabulated moments").
//!
//! Why it is accurate: E[g(sqrt(q) z)] is analytic in q for Re q > 0, i.e. in the strip |Im t| < pi/2,
//! so a degree-19 Chebyshev interpolant on a piece of width 1 converges like rho^-20 ~ 1e-16, with
//! rho = d/h + sqrt(d^2/h^2 + 1) = 6.4 for half-width h = 1/2 and strip half-width d = pi/2.
//! The table is checked against quadrature at every piece's two quarter points when it is built; if any
//! check misses [`TOLERANCE`] the table is not used for that nonlinearity (the engine then calls the
//! quadrature, exactly as without a table).

use crate::Nonlinearity;
use std::sync::OnceLock;

/// Range of t = ln q covered (q in [4e-31, 1.6e5]); below it the engine uses its small-q limit (act.rs,
/// relative error O(q) < 1e-30), above it quadrature or the saturation limit.
pub const T_MIN: f64 = -70.0;
pub const T_MAX: f64 = 12.0;
const PIECE: f64 = 1.0;
const NODES: usize = 20;
/// Largest accepted |table - quadrature| at the build-time checks (absolute on the logs and on the mean
/// ratio, i.e. relative ~1e-11 on the moments themselves).
pub const TOLERANCE: f64 = 1e-11;

struct Table {
    /// Per piece, per component: NODES Chebyshev coefficients.
    coef: Vec<[[f64; NODES]; 3]>,
}

fn exact(act: Nonlinearity, t: f64) -> [f64; 3] {
    let m = act.moments(t.exp());
    [m.second.ln(), m.dphi2.ln(), m.mean / m.second.sqrt()]
}

fn pieces() -> usize {
    ((T_MAX - T_MIN) / PIECE).round() as usize
}

impl Table {
    fn build(act: Nonlinearity) -> Option<Table> {
        let n = NODES as f64;
        let mut coef = Vec::with_capacity(pieces());
        for p in 0..pieces() {
            let (a, b) = (T_MIN + p as f64 * PIECE, T_MIN + (p + 1) as f64 * PIECE);
            let vals: Vec<[f64; 3]> = (0..NODES)
                .map(|k| {
                    let x = (std::f64::consts::PI * (k as f64 + 0.5) / n).cos();
                    exact(act, 0.5 * (a + b) + 0.5 * (b - a) * x)
                })
                .collect();
            if vals.iter().flatten().any(|v| !v.is_finite()) {
                return None;
            }
            let mut c = [[0.0; NODES]; 3];
            for (comp, cc) in c.iter_mut().enumerate() {
                for (j, cj) in cc.iter_mut().enumerate() {
                    let s: f64 = (0..NODES)
                        .map(|k| {
                            vals[k][comp]
                                * (std::f64::consts::PI * j as f64 * (k as f64 + 0.5) / n).cos()
                        })
                        .sum();
                    *cj = 2.0 * s / n;
                }
                cc[0] *= 0.5;
            }
            coef.push(c);
        }
        let table = Table { coef };
        for p in 0..pieces() {
            for frac in [0.25, 0.75] {
                let t = T_MIN + (p as f64 + frac) * PIECE;
                let e = exact(act, t);
                let v = table.eval(t)?;
                if (0..3).any(|i| (v[i] - e[i]).abs() > TOLERANCE) {
                    return None;
                }
            }
        }
        Some(table)
    }

    fn eval(&self, t: f64) -> Option<[f64; 3]> {
        if !(T_MIN..T_MAX).contains(&t) {
            return None;
        }
        let p = (((t - T_MIN) / PIECE) as usize).min(self.coef.len() - 1);
        let a = T_MIN + p as f64 * PIECE;
        let x = 2.0 * (t - a) / PIECE - 1.0;
        let mut out = [0.0; 3];
        for (o, c) in out.iter_mut().zip(&self.coef[p]) {
            // Clenshaw recurrence.
            let (mut b1, mut b2) = (0.0, 0.0);
            for &cj in c.iter().skip(1).rev() {
                let b0 = 2.0 * x * b1 - b2 + cj;
                b2 = b1;
                b1 = b0;
            }
            *o = x * b1 - b2 + c[0];
        }
        Some(out)
    }
}

static TABLES: [OnceLock<Option<Table>>; 5] = [
    OnceLock::new(),
    OnceLock::new(),
    OnceLock::new(),
    OnceLock::new(),
    OnceLock::new(),
];

fn slot(act: Nonlinearity) -> Option<usize> {
    match act {
        Nonlinearity::Tanh => Some(0),
        Nonlinearity::Sigmoid => Some(1),
        Nonlinearity::Softplus => Some(2),
        Nonlinearity::Gelu => Some(3),
        Nonlinearity::Silu => Some(4),
        _ => None,
    }
}

/// (ln E[phi^2], ln E[phi'^2], E[phi]/sqrt(E[phi^2])) at q = e^t from the table, or `None` when `act`
/// has no table (closed-form moments, or a failed build check) or t is outside [T_MIN, T_MAX).
/// The first call for a nonlinearity builds its table (~1700 quadrature calls, tens of milliseconds).
pub fn lookup(act: Nonlinearity, t: f64) -> Option<(f64, f64, f64)> {
    let i = slot(act)?;
    if !(T_MIN..T_MAX).contains(&t) {
        return None;
    }
    let table = TABLES[i].get_or_init(|| Table::build(act)).as_ref()?;
    let v = table.eval(t)?;
    Some((v[0], v[1], v[2]))
}

/// Whether `act`'s table exists and passed its build checks (builds it if needed).
pub fn is_tabulated(act: Nonlinearity) -> bool {
    slot(act).is_some() && lookup(act, 0.0).is_some()
}
