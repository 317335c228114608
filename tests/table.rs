//! The tabulated moments (src/theory/table.rs, theory/cost.md) against quadrature at points the table
//! was not built or checked on. Deterministic: no false-alarm rate, the bound is the interpolation error.

use gradscale::theory::table::{is_tabulated, lookup, T_MAX, T_MIN};
use gradscale::Nonlinearity;

#[test]
fn tables_match_quadrature_between_their_nodes() {
    use Nonlinearity::*;
    for act in [Tanh, Sigmoid, Softplus, Gelu, Silu] {
        assert!(is_tabulated(act), "{act}: table failed its build checks");
        let mut worst: f64 = 0.0;
        // 401 points, irrational spacing so none lands on a node or a build-time check point.
        for i in 0..401 {
            let t = T_MIN + (T_MAX - T_MIN) * ((i as f64 * 0.618_033_988_749_894_8) % 1.0);
            let (a, b, c) = lookup(act, t).expect("inside the table");
            let m = act.moments(t.exp());
            let e = [m.second.ln(), m.dphi2.ln(), m.mean / m.second.sqrt()];
            for (x, y) in [a, b, c].iter().zip(e) {
                worst = worst.max((x - y).abs());
            }
        }
        assert!(
            worst <= 1e-10,
            "{act}: worst |table - quadrature| = {worst:e}"
        );
        println!("{act}: worst |table - quadrature| = {worst:e}");
    }
    assert!(lookup(Tanh, T_MAX + 1.0).is_none());
    assert!(lookup(Relu, 0.0).is_none());
}
