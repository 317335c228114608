//! Gaussian moments against REFERENCE §10 (Table A, hard-tanh, identities, SELU, erf), quadrature against
//! every closed form, bivariate quadrature against the arc-cosine and erf kernels, and d E[phi^2]/dq
//! against finite differences. Notes: theory/gaussian-expectations.md.

use gradscale::gauss;
use gradscale::nonlin::moments::Moments;
use gradscale::nonlin::{Nonlinearity, SELU_ALPHA, SELU_LAMBDA};
use std::f64::consts::PI;

fn rel(a: f64, b: f64) -> f64 {
    if b == 0.0 {
        a.abs()
    } else {
        ((a - b) / b).abs()
    }
}

#[track_caller]
fn close(what: &str, got: f64, want: f64, tol: f64) {
    let e = rel(got, want);
    assert!(
        e <= tol,
        "{what}: got {got:.16e}, want {want:.16e}, rel err {e:.2e} > {tol:.0e}"
    );
}

/// The table's values have ~13 significant digits; rounding alone allows ~5e-13 on a 13-digit value.
const TABLE_TOL: f64 = 1e-10;

/// (nonlinearity, q, E phi, E phi^2, E phi'^2, g, g_c) from REFERENCE §10.1, Table A.
#[allow(clippy::type_complexity)]
#[rustfmt::skip]
fn table_a() -> Vec<(Nonlinearity, f64, f64, f64, f64, f64, f64)> {
    use Nonlinearity::*;
    let leaky = LeakyRelu { slope: 0.01 };
    let elu = Elu { alpha: 1.0 };
    vec![
        (Tanh, 0.25, 0.0, 0.1735161434324, 0.7173798616031, 1.016657459541, 1.016657459541),
        (Tanh, 1.0, 0.0, 0.3942944903978, 0.4644029024483, 1.085268276651, 1.085268276651),
        (Tanh, 4.0, 0.0, 0.6352612342569, 0.2559504432252, 1.269497241734, 1.269497241734),
        (Relu, 0.25, 0.1994711402007, 0.125, 0.5, 1.0, 1.211173896236),
        (Relu, 1.0, 0.3989422804014, 0.5, 0.5, 1.0, 1.211173896236),
        (Relu, 4.0, 0.7978845608029, 2.0, 0.5, 1.0, 1.211173896236),
        (Selu, 0.25, -0.05480050359611, 0.3306860291046, 1.360502101715, 1.014172170984, 1.018808831869),
        (Selu, 1.0, 0.0, 1.0, 1.071574992456, 1.035169064673, 1.035169064673),
        (Selu, 4.0, 0.2548284429532, 3.006039461855, 0.8438013885486, 1.059626411730, 1.071260460534),
        (Sigmoid, 0.25, 0.5, 0.2639555775601, 0.05603468325954, 0.2303737773611, 1.001900417691),
        (Sigmoid, 1.0, 0.5, 0.2933790358581, 0.04483624135019, 0.3909309551770, 1.016657459541),
        (Sigmoid, 4.0, 0.5, 0.3485736225995, 0.02902518140302, 0.5771254245703, 1.085268276651),
        (Softplus, 0.25, 0.723492801066, 0.5876846300672, 0.2639555775601, 0.3350913828361, 1.013498723329),
        (Softplus, 1.0, 0.8060591833474, 0.9212459088593, 0.2933790358581, 0.5643217022973, 1.039484512875),
        (Softplus, 4.0, 1.067714388051, 2.329781463624, 0.3485736225995, 0.7736057032461, 1.082545637398),
        (Gelu, 0.25, 0.08920620580764, 0.08350672379335, 0.3556851396521, 1.031910762691, 1.084897158851),
        (Gelu, 1.0, 0.2820947917739, 0.4252214825703, 0.4558508656493, 1.035389587757, 1.148409757389),
        (Gelu, 4.0, 0.7136496464611, 1.929865015864, 0.5060447640538, 1.024143933460, 1.193694702876),
        (Silu, 0.25, 0.05901110560997, 0.07224912420987, 0.3003079850851, 1.019382446477, 1.044874171071),
        (Silu, 1.0, 0.2066209641419, 0.3557755198174, 0.3794823516328, 1.032779860978, 1.100945554856),
        (Silu, 4.0, 0.6057055096022, 1.757889866679, 0.4664250548387, 1.030208431557, 1.158125690456),
        (Erf, 0.25, 0.0, 0.2163468959388, 0.9003163161571, 1.019981349011, 1.019981349011),
        (Erf, 1.0, 0.0, 0.4645590543975, 0.5694100347337, 1.107113365372, 1.107113365372),
        (Erf, 4.0, 0.0, 0.6970439505474, 0.3088059488033, 1.331198266554, 1.331198266554),
        (leaky, 0.25, 0.1974764287987, 0.1250125, 0.50005, 1.0, 1.205558277752),
        (leaky, 1.0, 0.3949528575974, 0.50005, 0.50005, 1.0, 1.205558277752),
        (leaky, 4.0, 0.7899057151948, 2.0002, 0.50005, 1.0, 1.205558277752),
        (elu, 0.25, 0.04908997492111, 0.1873406224243, 0.7615782918651, 1.008117846683, 1.014664958115),
        (elu, 1.0, 0.1605205722666, 0.6449454174929, 0.6681020012232, 1.017794045278, 1.038755724644),
        (elu, 4.0, 0.465986562026, 2.258206638856, 0.594410641302, 1.026104148815, 1.079307167606),
    ]
}

/// Absolute floor for entries the table gives as exactly 0 (E[selu](1) is ~1e-16 with f64 constants).
fn check_mean(what: &str, got: f64, want: f64) {
    if want == 0.0 {
        assert!(got.abs() < 1e-14, "{what}: got {got:e}, want 0");
    } else {
        close(what, got, want, TABLE_TOL);
    }
}

#[test]
fn table_a_moments_and_gsc() {
    let mut worst: f64 = 0.0;
    for (nl, q, mean, second, dphi2, g, gc) in table_a() {
        for (how, m) in [
            ("moments", nl.moments(q)),
            ("quadrature", nl.quadrature_moments(q)),
        ] {
            let w = format!("{nl} q={q} ({how})");
            check_mean(&format!("{w} E phi"), m.mean, mean);
            close(&format!("{w} E phi^2"), m.second, second, TABLE_TOL);
            close(&format!("{w} E phi'^2"), m.dphi2, dphi2, TABLE_TOL);
            close(&format!("{w} g"), m.g(q), g, TABLE_TOL);
            close(&format!("{w} g_c"), m.g_c(q), gc, TABLE_TOL);
            for (a, b) in [
                (m.second, second),
                (m.dphi2, dphi2),
                (m.g(q), g),
                (m.g_c(q), gc),
            ] {
                worst = worst.max(rel(a, b));
            }
        }
    }
    eprintln!("Table A worst relative error: {worst:.2e}");
}

#[test]
fn table_a_linear_any_q() {
    for q in [1e-6, 0.25, 1.0, 4.0, 100.0] {
        for m in [
            Nonlinearity::Linear.moments(q),
            Nonlinearity::Linear.quadrature_moments(q),
        ] {
            assert!(m.mean.abs() < 1e-14 * q.sqrt());
            close("linear E phi^2", m.second, q, 1e-13);
            close("linear E phi'^2", m.dphi2, 1.0, 1e-13);
            close("linear g", m.g(q), 1.0, 1e-13);
        }
    }
}

#[test]
fn hard_tanh_supplement() {
    // REFERENCE §10.2: (q, E phi^2, E phi'^2, g).
    let rows = [
        (0.25, 0.2301342314091, 0.9544997361036, 1.018280200200),
        (1.0, 0.5160585509617, 0.6826894921371, 1.150170222964),
        (4.0, 0.7405134605869, 0.3829249225480, 1.438203474545),
    ];
    for (q, second, dphi2, g) in rows {
        for m in [
            Nonlinearity::HardTanh.moments(q),
            Nonlinearity::HardTanh.quadrature_moments(q),
        ] {
            assert!(m.mean.abs() < 1e-15);
            close("hard-tanh E phi^2", m.second, second, TABLE_TOL);
            close("hard-tanh E phi'^2", m.dphi2, dphi2, TABLE_TOL);
            close("hard-tanh g", m.g(q), g, TABLE_TOL);
            close("hard-tanh g_c", m.g_c(q), g, TABLE_TOL);
        }
    }
}

#[test]
fn exact_identities() {
    use Nonlinearity::*;
    // §10.3
    close(
        "g_c relu",
        Relu.moments(1.0).g_c(1.0),
        (PI / (PI - 1.0)).sqrt(),
        1e-14,
    );
    close(
        "g_c relu",
        Relu.moments(1.0).g_c(1.0),
        1.211173896236,
        TABLE_TOL,
    );
    let leaky = LeakyRelu { slope: 0.01 }.moments(2.0);
    let want = (1.0 - 0.99f64.powi(2) / (1.0001 * PI)).powf(-0.5);
    close("g_c leaky", leaky.g_c(2.0), want, 1e-14);
    close("g_c leaky", want, 1.205558277752, TABLE_TOL);
    for q in [0.04, 0.25, 1.0, 4.0, 16.0, 100.0] {
        let s = Sigmoid.moments(q);
        let t = Tanh.moments(q / 4.0);
        close("sigmoid mean", s.mean, 0.5, 1e-15);
        close(
            "sigmoid quadrature mean",
            Sigmoid.quadrature_moments(q).mean,
            0.5,
            1e-14,
        );
        close(
            "g_c(sigmoid, q) = g(tanh, q/4)",
            s.g_c(q),
            t.g(q / 4.0),
            1e-12,
        );
        close(
            "E sigmoid'^2(q) = E tanh'^2(q/4)/16",
            s.dphi2,
            t.dphi2 / 16.0,
            1e-12,
        );
        close(
            "Var sigmoid(q) = E tanh^2(q/4)/4",
            s.variance(),
            t.second / 4.0,
            1e-12,
        );
        close(
            "E softplus'^2 = E sigmoid^2",
            Softplus.moments(q).dphi2,
            s.second,
            1e-12,
        );
    }
    close(
        "E gelu(1)",
        Gelu.moments(1.0).mean,
        1.0 / (4.0 * PI).sqrt(),
        1e-14,
    );
    let elu1 = (1.0 / (2.0 * PI)).sqrt() + 0.5f64.exp() * gradscale::nonlin::norm_cdf(-1.0) - 0.5;
    close(
        "E elu(1)",
        Elu { alpha: 1.0 }.moments(1.0).mean,
        elu1,
        1e-14,
    );
    close("E elu(1)", elu1, 0.1605205722666, TABLE_TOL);
}

#[test]
fn selu_constants_and_moments() {
    // §10.4
    let m = Nonlinearity::Selu.moments(1.0);
    assert!(m.mean.abs() < 1e-15, "E selu(1) = {:e}", m.mean);
    close("E selu^2(1)", m.second, 1.0, 1e-15);
    close("chi_1 SELU", m.dphi2, 1.071574992455799, 1e-14);
    let (l, a) = (SELU_LAMBDA, SELU_ALPHA);
    let chi = l * l / 2.0 + l * l * a * a * 2f64.exp() * gradscale::nonlin::norm_cdf(-2.0);
    close("chi_1 formula", m.dphi2, chi, 1e-15);
    close("g(1) SELU", m.g(1.0), 1.035169064672916, 1e-14);
    let mq = Nonlinearity::Selu.quadrature_moments(1.0);
    close(
        "chi_1 SELU by quadrature",
        mq.dphi2,
        1.071574992455799,
        1e-13,
    );
    assert!(mq.mean.abs() < 1e-14);
    // dq_{l+1}/dq_l at q* = 1 (sigma_w^2 = 1) is d E[selu^2]/dq.
    close(
        "SELU dq'/dq at q*",
        Nonlinearity::Selu.d_second_dq(1.0),
        0.7826478831968128,
        1e-13,
    );
}

#[test]
fn erf_closed_forms() {
    // §10.5
    let m = Nonlinearity::Erf.moments(1.0);
    close("E erf^2(1)", m.second, 0.4645590543975, TABLE_TOL);
    close("E erf'^2(1)", m.dphi2, 0.5694100347337, TABLE_TOL);
    close(
        "arcsin form",
        m.second,
        (2.0 / PI) * (2.0f64 / 3.0).asin(),
        1e-15,
    );
}

const QS: [f64; 7] = [1e-6, 1e-3, 0.25, 1.0, 4.0, 25.0, 100.0];

#[test]
fn quadrature_matches_every_closed_form() {
    let mut worst: f64 = 0.0;
    for nl in Nonlinearity::catalogue().into_iter().chain([
        Nonlinearity::Elu { alpha: 0.5 },
        Nonlinearity::LeakyRelu { slope: 0.2 },
    ]) {
        for q in QS {
            let quad = nl.quadrature_moments(q);
            let scale = nl.quadrature_moments_abs_mean(q);
            if let Some(c) = nl.closed_moments(q) {
                // The mean can be ~0 through cancellation (selu at q = 1): relative to E|phi| there.
                for (what, a, b, s) in [
                    ("mean", quad.mean, c.mean, scale.max(c.mean.abs())),
                    ("second", quad.second, c.second, c.second),
                    ("dphi2", quad.dphi2, c.dphi2, c.dphi2),
                ] {
                    let e = (a - b).abs() / s;
                    worst = worst.max(e);
                    assert!(
                        e < 1e-12,
                        "{nl} q={q} {what}: quad {a:.16e} closed {b:.16e} err {e:.1e}"
                    );
                }
            }
            // Partial closed forms used by moments(): the mean.
            let m = nl.moments(q);
            let e = (m.mean - quad.mean).abs() / scale.max(m.mean.abs());
            worst = worst.max(e);
            assert!(
                e < 1e-12,
                "{nl} q={q} mean: moments {:.16e} quad {:.16e}",
                m.mean,
                quad.mean
            );
        }
    }
    eprintln!("closed vs quadrature worst relative error: {worst:.2e}");
}

/// E|phi|: the scale for the mean's error.
trait AbsMean {
    fn quadrature_moments_abs_mean(&self, q: f64) -> f64;
}
impl AbsMean for Nonlinearity {
    fn quadrature_moments_abs_mean(&self, q: f64) -> f64 {
        gauss::expect(q, |x| self.phi(x).abs(), self.kinks())
    }
}

#[test]
fn tanh_extremes() {
    use Nonlinearity::Tanh;
    let q = 1e-6;
    let m = Tanh.moments(q);
    close(
        "E tanh^2 series",
        m.second,
        q - 2.0 * q * q + 17.0 / 3.0 * q * q * q,
        1e-13,
    );
    close(
        "E tanh'^2 series",
        m.dphi2,
        1.0 - 2.0 * q + 7.0 * q * q,
        1e-13,
    );
    close(
        "g(tanh, 1e-6) series",
        m.g(q),
        (1.0 + 4.0 / 3.0 * q * q).sqrt(),
        1e-13,
    );
    // q = 100: features of width 0.1 in s; compare with the same rule forced onto a fine grid of pieces.
    let q = 100.0;
    let m = Tanh.moments(q);
    let fine: Vec<f64> = (-400..=400).map(|i| i as f64 * 0.025).collect();
    let second = gauss::expect(q, |x| x.tanh().powi(2), &fine);
    let dphi2 = gauss::expect(q, |x| (1.0 - x.tanh().powi(2)).powi(2), &fine);
    close("E tanh^2(100)", m.second, second, 1e-13);
    close("E tanh'^2(100)", m.dphi2, dphi2, 1e-13);
    // sigmoid at 4 q is tanh at q: an independent evaluation of the same integral.
    let s = Nonlinearity::Sigmoid.moments(4.0 * q);
    close(
        "E tanh^2(100) via sigmoid",
        m.second,
        4.0 * s.variance(),
        1e-12,
    );
    close("E tanh'^2(100) via sigmoid", m.dphi2, 16.0 * s.dphi2, 1e-12);
}

#[test]
fn q_zero_limits() {
    use Nonlinearity::*;
    let relu = Relu.moments(0.0);
    assert_eq!(
        relu,
        Moments {
            mean: 0.0,
            second: 0.0,
            dphi2: 0.5
        }
    );
    let sig = Sigmoid.moments(0.0);
    assert_eq!(
        sig,
        Moments {
            mean: 0.5,
            second: 0.25,
            dphi2: 1.0 / 16.0
        }
    );
    let ht = HardTanh.moments(0.0);
    assert_eq!((ht.second, ht.dphi2), (0.0, 1.0));
    let elu = Elu { alpha: 1.0 }.moments(0.0);
    close("elu dphi2(0+)", elu.dphi2, 1.0, 1e-15);
    for nl in Nonlinearity::catalogue() {
        let m0 = nl.moments(0.0);
        let m = nl.moments(1e-12);
        assert!((m.mean - m0.mean).abs() < 1e-5, "{nl}");
        assert!((m.dphi2 - m0.dphi2).abs() < 1e-5, "{nl}");
        // Elu-type derivatives move like sqrt(q) near 0.
        assert!(
            (nl.d_second_dq(0.0) - nl.d_second_dq(1e-16)).abs() < 1e-6,
            "{nl}"
        );
    }
    close("tanh d E[phi^2]/dq at 0", Tanh.d_second_dq(0.0), 1.0, 1e-15);
}

#[test]
fn d_second_dq_vs_finite_difference() {
    for nl in Nonlinearity::catalogue() {
        for q in [1e-3, 0.25, 1.0, 4.0, 25.0] {
            // 4th-order central difference of the (closed or quadrature) second moment; the moment is
            // good to ~1e-15, so h = 1e-3 q leaves ~1e-11 from rounding and h^4 truncation.
            let h = 1e-3 * q;
            let f = |x: f64| nl.moments(x).second;
            let fd = (8.0 * (f(q + h) - f(q - h)) - (f(q + 2.0 * h) - f(q - 2.0 * h))) / (12.0 * h);
            let d = nl.d_second_dq(q);
            assert!(
                rel(d, fd) < 1e-8,
                "{nl} q={q}: d_second_dq {d:.15e} vs fd {fd:.15e}"
            );
        }
    }
}

#[test]
fn d_second_dq_quadrature_forms_agree_with_closed() {
    // The Stein form computed by quadrature for the nonlinearities that have a closed derivative.
    for nl in Nonlinearity::catalogue() {
        for q in QS {
            let stein = gauss::expect(q, |x| x * nl.phi(x) * nl.dphi(x), nl.kinks()) / q;
            let d = nl.d_second_dq(q);
            let tol = if q < 1e-2 { 1e-9 } else { 1e-12 };
            assert!(
                rel(stein, d) < tol,
                "{nl} q={q}: stein {stein:.15e} vs {d:.15e}"
            );
        }
    }
}

const CS: [f64; 7] = [-0.5, 0.0, 0.5, 0.9, 0.99, 0.999999, 1.0];

/// Cross moments by quadrature, bypassing the closed forms.
fn quad_cross(nl: Nonlinearity, q11: f64, q22: f64, c: f64) -> (f64, f64) {
    let k = nl.kinks();
    (
        gauss::expect2(q11, q22, c, |x| nl.phi(x), |x| nl.phi(x), k, k),
        gauss::expect2(q11, q22, c, |x| nl.dphi(x), |x| nl.dphi(x), k, k),
    )
}

#[test]
fn bivariate_relu_arc_cosine() {
    for (q11, q22) in [(1.0, 1.0), (0.25, 4.0)] {
        for c in CS {
            let (pp, dd) = Nonlinearity::Relu.cross_moments(q11, q22, c);
            let (qp, qd) = quad_cross(Nonlinearity::Relu, q11, q22, c);
            let t = c.acos();
            let want = (q11 * q22).sqrt() / (2.0 * PI) * ((1.0 - c * c).sqrt() + (PI - t) * c);
            close("relu kernel closed", pp, want, 1e-14);
            close(&format!("relu E phi phi c={c}"), qp, pp, 1e-12);
            close(&format!("relu E phi' phi' c={c}"), qd, dd, 1e-12);
        }
    }
    // §10.6: J(c) = 2 E[relu relu] at q = 1, J'(c) = 2 E[relu' relu'].
    for (c, j) in [
        // REFERENCE: 1/pi = 0.3183098861837907
        (0.0, std::f64::consts::FRAC_1_PI),
        (-0.5, 0.1089977810442294),
        (0.9, 0.9095383988446721),
        (0.99, 0.9903002557331543),
    ] {
        close(
            "J(c)",
            2.0 * Nonlinearity::Relu.cross_moments(1.0, 1.0, c).0,
            j,
            1e-14,
        );
    }
    close(
        "J'(0)",
        2.0 * Nonlinearity::Relu.cross_moments(1.0, 1.0, 0.0).1,
        0.5,
        1e-15,
    );
    close(
        "J'(-1/2)",
        2.0 * Nonlinearity::Relu.cross_moments(1.0, 1.0, -0.5).1,
        1.0 / 3.0,
        1e-15,
    );
}

#[test]
fn bivariate_leaky_and_linear() {
    for nl in [Nonlinearity::LeakyRelu { slope: 0.2 }, Nonlinearity::Linear] {
        for c in CS {
            let (pp, dd) = nl.cross_moments(0.5, 2.0, c);
            let (qp, qd) = quad_cross(nl, 0.5, 2.0, c);
            close(&format!("{nl} E phi phi c={c}"), qp, pp, 1e-12);
            close(&format!("{nl} E phi' phi' c={c}"), qd, dd, 1e-12);
        }
    }
}

#[test]
fn bivariate_erf_kernel() {
    for (q11, q22) in [(1.0, 1.0), (0.25, 4.0), (4.0, 4.0)] {
        for c in CS {
            let (pp, dd) = Nonlinearity::Erf.cross_moments(q11, q22, c);
            let q12 = c * (q11 * q22).sqrt();
            let arg = 2.0 * q12 / ((1.0 + 2.0 * q11) * (1.0 + 2.0 * q22)).sqrt();
            close("erf kernel arcsin form", pp, (2.0 / PI) * arg.asin(), 1e-13);
            let (qp, qd) = quad_cross(Nonlinearity::Erf, q11, q22, c);
            close(
                &format!("erf E phi phi q=({q11},{q22}) c={c}"),
                qp,
                pp,
                1e-12,
            );
            close(
                &format!("erf E phi' phi' q=({q11},{q22}) c={c}"),
                qd,
                dd,
                1e-12,
            );
        }
    }
}

#[test]
fn bivariate_diagonal_is_one_dimensional() {
    // c = 1 and q11 = q22: the cross moments are the 1-D moments.
    for nl in Nonlinearity::catalogue() {
        let (pp, dd) = nl.cross_moments(1.0, 1.0, 1.0);
        let m = nl.moments(1.0);
        close(&format!("{nl} c=1 E phi^2"), pp, m.second, 1e-12);
        close(&format!("{nl} c=1 E phi'^2"), dd, m.dphi2, 1e-12);
        // Near-diagonal: continuous as c -> 1.
        let (pp2, dd2) = nl.cross_moments(1.0, 1.0, 0.999999);
        assert!(
            (pp2 - pp).abs() < 1e-4 && (dd2 - dd).abs() < 2e-3,
            "{nl}: {pp2} {pp} {dd2} {dd}"
        );
        // c = 0: independent, so the product of means.
        let (p0, d0) = nl.cross_moments(1.0, 1.0, 0.0);
        let dmean = gauss::expect(1.0, |x| nl.dphi(x), nl.kinks());
        assert!(
            (p0 - m.mean * m.mean).abs() < 1e-13,
            "{nl} c=0: {p0} vs {}",
            m.mean * m.mean
        );
        assert!(
            (d0 - dmean * dmean).abs() < 1e-13,
            "{nl} c=0 phi': {d0} vs {}",
            dmean * dmean
        );
    }
}
