//! The claims registry's structure, checked without running the audit: the embedded TOML parses, ids are
//! unique, a derivation file exists for every claim, a test or a reason for every claim; the verdict logic
//! of directional claims and negative controls; when an audit counts as failed; user claims files.
//! Cheap claims are run end to end.

use gradscale::claims::{
    apply_holm, parse_claims, registry, AuditOptions, AuditReport, ClaimResult, Evidence, FailOn,
    Source, TestKind, Verdict,
};

#[test]
fn registry_ids_sources_and_links_are_well_formed() {
    let r = registry();
    let mut ids: Vec<&str> = r.iter().map(|c| c.id.as_str()).collect();
    let n = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), n, "duplicate claim ids");
    for c in &r {
        let prefix = c.id.split('/').next().unwrap();
        assert!(
            ["paper", "derived", "literature"].contains(&prefix),
            "{}",
            c.id
        );
        assert!(c.builtin && c.source != Source::User, "{}", c.id);
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(&c.theory);
        assert!(path.exists(), "{}: {} missing", c.id, c.theory);
        assert!(
            c.test.is_some() || !c.untestable.is_empty(),
            "{}: neither a test nor a reason",
            c.id
        );
        assert!(!c.statement.is_empty());
    }
    for id in [
        "paper/batchnorm-does-not-solve",
        "literature/bn-relu-rate-b16",
        "literature/bn-relu-rate-b64",
        "derived/bn-tanh-rate-b16",
        "derived/bn-top-of-jacobian",
        "literature/orthogonal-isometry",
        "derived/layer-norm-tanh-gsc",
        "derived/pythagorean-block",
        "derived/tanh-correlation-map",
        "derived/tradeoff-theorem",
        "derived/finite-width-relu",
        "derived/infinite-width-at-width-100",
        "derived/unequal-widths",
    ] {
        let c = r
            .iter()
            .find(|c| c.id == id)
            .unwrap_or_else(|| panic!("{id}"));
        assert!(c.test.is_some(), "{id} untested");
    }
    // The unequal-widths claim's network has input, hidden and output widths that all differ.
    let uw = r.iter().find(|c| c.id == "derived/unequal-widths").unwrap();
    let Some(gradscale::claims::ClaimTest::Spec(s)) = &uw.test else {
        panic!("unequal-widths is a generic claim")
    };
    let w = s.network.widths();
    assert!(
        w[0] != w[1] && w[1] != w[2] && w[0] != *w.last().unwrap(),
        "{w:?}"
    );
}

fn quick() -> AuditOptions {
    AuditOptions {
        seed: 0,
        quick: true,
    }
}

fn run(id: &str) -> Evidence {
    let r = registry();
    let c = r.iter().find(|c| c.id == id).unwrap();
    c.test.as_ref().unwrap().run(&quick()).unwrap()
}

/// Scale invariance is exact up to round-off: the claim must come back as an equality with p = 1.
#[test]
fn a_cheap_claim_runs() {
    let e = run("derived/gsc-scale-invariance");
    assert_eq!(e.kind, TestKind::Equality);
    assert!(e.measurement.abs() <= 1e-10, "{e:?}");
    assert_eq!(e.p_value, 1.0);
}

fn row(id: &str, e: Evidence, control: bool, builtin: bool) -> ClaimResult {
    ClaimResult {
        id: id.into(),
        statement: String::new(),
        source: Source::Derived,
        reference: String::new(),
        theory: String::new(),
        verdict: Verdict::Inconclusive,
        evidence: Some(e),
        holm_threshold: None,
        control,
        builtin,
        note: String::new(),
        seconds: 0.0,
    }
}

fn eq(z: f64) -> Evidence {
    Evidence::equality(0.0, z, 1.0, 0.0, String::new())
}

/// The negative control is marked as one (and only it), and `apply_holm` keeps controls out of the
/// family: a rejected control must not change the thresholds of the claims under audit.
#[test]
fn negative_controls_stay_out_of_the_holm_family() {
    let r = registry();
    let controls: Vec<&str> = r
        .iter()
        .filter(|c| c.control)
        .map(|c| c.id.as_str())
        .collect();
    assert_eq!(controls, ["derived/infinite-width-at-width-100"]);
    // Two claims under audit (z = 0; z = 3.3, p = 9.7e-4) and a control at z = 3.0 (p = 2.7e-3). Had the
    // control joined the family, b would be compared with alpha/3 = 0.0033; outside it, with alpha/2.
    let mut rows = vec![
        row("a", eq(0.0), false, true),
        row("b", eq(3.3), false, true),
        row("c", eq(3.0), true, true),
    ];
    apply_holm(&mut rows, 0.01);
    assert_eq!(rows[2].verdict, Verdict::Contradicted);
    assert_eq!(rows[2].holm_threshold, Some(0.01));
    assert_eq!(rows[1].holm_threshold, Some(0.005));
    assert_eq!(rows[1].verdict, Verdict::Contradicted);
    assert_eq!(rows[0].holm_threshold, Some(0.01));
    assert_eq!(rows[0].verdict, Verdict::Supported);
}

fn report(results: Vec<ClaimResult>) -> AuditReport {
    AuditReport {
        seed: 0,
        quick: true,
        alpha: 0.01,
        results,
        supported: 0,
        contradicted: 0,
        inconclusive: 0,
        not_testable: 0,
        cannot_fail: 0,
        controls: 0,
        controls_rejected: 0,
    }
}

/// Directional claims: far beyond the threshold on the claimed side is supported, far on the other side
/// contradicted, near it inconclusive; for both `>` and `<`. A control within noise of its (false) claim is
/// not rejected, and that fails the audit; so does a contradicted built-in claim, while a contradicted user
/// claim fails it only under `FailOn::Contradicted`.
#[test]
fn directional_verdicts_controls_and_audit_failure() {
    let g = |m: f64| Evidence::greater(0.0, m, 1.0, String::new());
    let l = |m: f64| Evidence::less(0.0, m, 1.0, String::new());
    let mut rows = vec![
        row("g+", g(6.0), false, true),
        row("g-", g(-6.0), false, true),
        row("g0", g(0.5), false, true),
        row("l-", l(-6.0), false, true),
        row("l+", l(6.0), false, true),
        row("l0", l(-0.5), false, true),
        row("control", eq(0.5), true, true),
    ];
    assert!(rows[0].evidence.as_ref().unwrap().z > 0.0);
    assert!(rows[3].evidence.as_ref().unwrap().z < 0.0);
    apply_holm(&mut rows, 0.01);
    let v: Vec<Verdict> = rows.iter().map(|r| r.verdict).collect();
    use Verdict::*;
    assert_eq!(
        v,
        [
            Supported,
            Contradicted,
            Inconclusive,
            Supported,
            Contradicted,
            Inconclusive,
            Supported // a control "supported" is a control not rejected
        ]
    );
    let rep = report(rows.clone());
    let f = rep.failures(FailOn::Broken);
    assert_eq!(f.len(), 3, "{f:?}");
    assert!(f.iter().any(|s| s.contains("negative control control")));
    assert!(rep.failures(FailOn::Never).is_empty());
    // Only user claims contradicted, control rejected: passes unless --fail-on contradicted.
    let mut user = vec![
        row("u", g(-6.0), false, false),
        row("c", eq(6.0), true, true),
    ];
    apply_holm(&mut user, 0.01);
    let rep = report(user);
    assert!(rep.failures(FailOn::Broken).is_empty());
    assert_eq!(rep.failures(FailOn::Contradicted).len(), 1);
}

/// The seed paper's "explodes" claims come back supported (z well above 0) in quick mode, and the negative
/// control is rejected at the audit's rate: a flipped direction or a control that cannot be rejected fails.
#[test]
fn explodes_claims_and_the_control_have_power_in_quick_mode() {
    for id in ["paper/selu-does-not-solve", "paper/popular-mlps-explode"] {
        let e = run(id);
        assert_eq!(e.kind, TestKind::Greater, "{id}");
        assert!(e.z > 5.0 && e.p_value < 1e-6, "{id}: {e:?}");
    }
    let e = run("derived/infinite-width-at-width-100");
    assert!(e.p_value < 1e-3, "control not rejected: {e:?}");
}

/// The example user file parses (its file reference resolves), and malformed claims are one clear error
/// naming the file and the claim.
#[test]
fn user_claims_files_parse_and_bad_ones_are_named() {
    let p =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/claims/user-claims.toml");
    let cs = gradscale::claims::load_claims(&p).unwrap();
    assert_eq!(cs.len(), 3);
    assert!(cs.iter().all(|c| !c.builtin && c.source == Source::User));
    for (text, what) in [
        ("[[claim]]\nid = \"a\"\nstatement = \"s\"\nnetwork = { mlp = { act = \"tanh\", width = 10, depth = 2, sigma_w2 = 1.0 } }\nobservable = \"ln-gsc\"\nrelation = \">=\"\nvalue = 1.0\n", "relation"),
        ("[[claim]]\nid = \"a\"\nstatement = \"s\"\nnetwork = { mlp = { act = \"tanh\", width = 10, depth = 2, sigma_w2 = 1.0 } }\nobservable = \"ln-gsc\"\nrelation = \">\"\n", "value"),
        ("[[claim]]\nid = \"a\"\nstatement = \"s\"\nnetwork = { mlp = { act = \"tanh\", width = 0, depth = 2, sigma_w2 = 1.0 } }\nobservable = \"ln-gsc\"\nrelation = \">\"\nvalue = 1.0\n", "width"),
        ("[[claim]]\nid = \"a\"\nstatement = \"s\"\ntest = \"no-such-test\"\n", "no-such-test"),
        ("[[claim]]\nid = \"a\"\nstatement = \"s\"\n", "untestable"),
        ("[[claim]]\nid = \"a\"\nstatment = \"s\"\n", "statment"),
    ] {
        let e = parse_claims(text, "mine.toml", None, false).unwrap_err().to_string();
        assert!(e.contains("mine.toml") && e.contains(what), "{what}: {e}");
        assert_eq!(e.lines().count(), 1, "{e}");
    }
}

/// A prediction of 0.25 with a bias bound of 0.75 cannot fail: reported as such, not "supported"; the same
/// prediction with a bound of 0.05 is an ordinary supported claim, and its resolution is bound + z se.
#[test]
fn claims_that_cannot_fail_are_reported_as_such() {
    let e = |bias: f64| Evidence::equality(0.25, 0.26, 0.01, bias, String::new());
    let mut rows = vec![
        row("vacuous", e(0.75), false, true),
        row("fine", e(0.05), false, true),
    ];
    apply_holm(&mut rows, 0.01);
    assert_eq!(rows[0].verdict, Verdict::CannotFail);
    assert_eq!(rows[1].verdict, Verdict::Supported);
    let z = gradscale::stats::z_for_false_alarm(0.01);
    let r = rows[1].evidence.as_ref().unwrap().resolution.unwrap();
    assert!((r - (0.05 + z * 0.01)).abs() < 1e-12, "{r}");
}

/// The SELU fixed-point claims are wide enough (n = 1024) to resolve a 1% error in SELU's lambda: the length
/// map from q = 1 then reaches q_8 = 1.0819 instead of 1.0001 (iterated by Gauss-Hermite quadrature), an
/// effect of 0.082 on ||f_8||^2/n; and a 2% error in chi_1 would move ln GSC(8, 0) by 8 ln 1.01 = 0.080. In
/// quick mode each claim's resolution at the audit's smallest Holm threshold (1e-3 / number of tested
/// claims) must be below its effect, and the correct closed form must not be rejected there.
#[test]
fn selu_claims_resolve_a_one_percent_lambda_error() {
    let tested = registry().iter().filter(|c| c.test.is_some()).count() as f64;
    let threshold = 1e-3 / tested;
    let z = gradscale::stats::z_for_false_alarm(threshold);
    for (id, effect) in [
        ("derived/gsc2-equals-chi1", 8.0 * 1.01f64.ln()),
        ("literature/selu-fixed-point", 1.0819 - 1.0001),
    ] {
        let e = run(id);
        let resolution = e.bias_bound + z * e.stderr;
        println!("{id}: {e:?}, resolution {resolution:.4} vs effect {effect:.4}");
        assert!(resolution < effect, "{id}: {e:?}: resolution {resolution}");
        assert!(e.p_value > threshold, "{id}: {e:?}");
    }
}

mod training_claims {
    use super::row;
    use gradscale::claims::apply_holm;
    use gradscale::claims::training::{
        judge_depth_limit, judge_effective_depth, judge_residual_trick,
    };
    use gradscale::claims::Verdict;
    use gradscale::stats::Summary;
    use gradscale::verify::training::{Cell, Family, Opt, Study, StudyOptions};

    fn s(mean: f64, stderr: f64) -> Summary {
        Summary {
            mean,
            stderr,
            median: mean,
            sd: stderr * 3f64.sqrt(),
            n: 3,
        }
    }

    /// A fabricated cell: training error `err` +- 0.01, depths and dilutions as given.
    fn cell(family: Family, opt: Opt, depth: usize, err: f64) -> Cell {
        Cell {
            family,
            opt,
            depth,
            lr_errors: vec![(0.1, s(err, 0.01))],
            best_lr: 0.1,
            error: s(err, 0.01),
            half_budget_error: s(err, 0.01),
            diverged: 0,
            d_eff: vec![Some(depth); 3],
            d_eff_frac: s(1.0, 0.0),
            path_depth: vec![Some(depth); 3],
            path_frac: s(1.0, 0.0),
            truncation_rel: vec![0.01; 3],
            ln_k: vec![vec![0.0; depth]; 3],
            reconstruction_error: 0.0,
            ln_gsc_init: vec![vec![0.0; depth + 1]; 3],
            ln_gsc_end: vec![vec![0.0; depth + 1]; 3],
            gsc_log: Vec::new(),
            taylor: Vec::new(),
        }
    }

    fn study(plain: (f64, f64), resnet: (f64, f64)) -> Study {
        let mut cells = Vec::new();
        for (f, (a, b)) in [(Family::Plain, plain), (Family::Resnet, resnet)] {
            for opt in [Opt::Sgd, Opt::Adam] {
                cells.push(cell(f, opt, 3, a));
                cells.push(cell(f, opt, 12, b));
            }
        }
        let mut options = StudyOptions::audit(true, 0);
        options.depths = vec![3, 12];
        Study {
            options,
            data: "fabricated".into(),
            cells,
            seconds: 0.0,
        }
    }

    fn verdict(e: gradscale::claims::Evidence) -> Verdict {
        let mut rows = vec![row("x", e, false, true)];
        apply_holm(&mut rows, 0.01);
        rows[0].verdict
    }

    /// The depth-limit (and Adam) verdict follows the fabricated errors: the plain net degrading with depth
    /// while the ResNet does not is supported, the reverse contradicted, equal degradation inconclusive.
    #[test]
    fn depth_limit_verdict_follows_the_errors() {
        for opt in [Opt::Sgd, Opt::Adam] {
            let v = |p, r| verdict(judge_depth_limit(&study(p, r), opt));
            assert_eq!(v((0.02, 0.4), (0.02, 0.03)), Verdict::Supported);
            assert_eq!(v((0.02, 0.03), (0.02, 0.4)), Verdict::Contradicted);
            assert_eq!(v((0.02, 0.2), (0.02, 0.2)), Verdict::Inconclusive);
        }
    }

    /// Dilution that rises with the initial GSC (the hard-to-train lower layers keep small residuals) is
    /// supported; the opposite ordering contradicted.
    #[test]
    fn residual_trick_verdict_follows_the_dilution_ordering() {
        let mut c = cell(Family::Plain, Opt::Sgd, 12, 0.0);
        for (i, (k, g)) in c.ln_k.iter_mut().zip(c.ln_gsc_init.iter_mut()).enumerate() {
            for (l, (kl, gl)) in k.iter_mut().zip(g.iter_mut()).enumerate() {
                *gl = 0.08 * (12 - l) as f64;
                // Noise differing per seed, so the correlations are not all equal.
                *kl = 0.3 * (12 - l) as f64 + 0.2 * (((l * 7 + i * 3) % 5) as f64 - 2.0);
            }
        }
        assert_eq!(verdict(judge_residual_trick(&c)), Verdict::Supported);
        for k in c.ln_k.iter_mut() {
            for v in k.iter_mut() {
                *v = -*v;
            }
        }
        assert_eq!(verdict(judge_residual_trick(&c)), Verdict::Contradicted);
    }

    /// The prestated rule: a short path profile that describes the nets and a Taylor depth that agrees is
    /// supported; a long one contradicted; a path expansion that does not describe the nets, or a Taylor
    /// depth that disagrees, or nets that never trained, inconclusive.
    #[test]
    fn effective_depth_rule() {
        let mut c = cell(Family::Plain, Opt::Sgd, 12, 0.0);
        c.path_frac = s(0.2, 0.02);
        c.d_eff_frac = s(0.3, 0.02);
        assert_eq!(verdict(judge_effective_depth(&c, None)), Verdict::Supported);
        c.path_frac = s(0.9, 0.02);
        c.d_eff_frac = s(0.9, 0.02);
        assert_eq!(
            verdict(judge_effective_depth(&c, None)),
            Verdict::Contradicted
        );
        let mut t = c.clone();
        t.truncation_rel = vec![0.01, 0.5, 0.01];
        assert_eq!(
            verdict(judge_effective_depth(&t, None)),
            Verdict::Inconclusive
        );
        let mut t = c.clone();
        t.path_frac = s(0.2, 0.02);
        assert_eq!(
            verdict(judge_effective_depth(&t, None)),
            Verdict::Inconclusive
        );
        let mut t = c.clone();
        t.path_frac = s(0.2, 0.02);
        t.d_eff_frac = s(0.2, 0.02);
        t.d_eff = vec![None, None, Some(2)];
        assert_eq!(
            verdict(judge_effective_depth(&t, None)),
            Verdict::Inconclusive
        );
    }

    /// A contradicted seed-paper claim is a finding about the paper: it does not fail the audit, while a
    /// contradicted built-in derived claim does.
    #[test]
    fn a_contradicted_seed_paper_claim_does_not_fail_the_audit() {
        use gradscale::claims::{AuditReport, FailOn, Source};
        let g = gradscale::claims::Evidence::greater(0.0, -6.0, 1.0, String::new());
        let mut paper = row("paper/x", g.clone(), false, true);
        paper.source = Source::SeedPaper;
        let mut rows = vec![paper, row("derived/y", g, false, true)];
        apply_holm(&mut rows, 0.01);
        assert!(rows.iter().all(|r| r.verdict == Verdict::Contradicted));
        let rep = AuditReport {
            seed: 0,
            quick: true,
            alpha: 0.01,
            results: rows,
            supported: 0,
            contradicted: 2,
            inconclusive: 0,
            not_testable: 0,
            cannot_fail: 0,
            controls: 0,
            controls_rejected: 0,
        };
        let f = rep.failures(FailOn::Broken);
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(f[0].contains("derived/y"));
        assert_eq!(rep.failures(FailOn::Contradicted).len(), 2);
    }
}
