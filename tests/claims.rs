//! The claims registry's structure, checked without running the audit: unique ids, a derivation file that
//! exists for every claim, a test or a reason for every claim, and the capability claims present.
//! One cheap claim is run end to end (pure closed form / single network, well under a second).

use gradscale::claims::{registry, AuditOptions, TestKind};

#[test]
fn registry_ids_sources_and_links_are_well_formed() {
    let r = registry();
    let mut ids: Vec<&str> = r.iter().map(|c| c.id).collect();
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
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(c.theory);
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
    ] {
        let c = r
            .iter()
            .find(|c| c.id == id)
            .unwrap_or_else(|| panic!("{id}"));
        assert!(c.test.is_some(), "{id} untested");
    }
}

/// Scale invariance is exact up to round-off: the claim must come back as an equality with p = 1.
#[test]
fn a_cheap_claim_runs() {
    let r = registry();
    let c = r
        .iter()
        .find(|c| c.id == "derived/gsc-scale-invariance")
        .unwrap();
    let e = (c.test.unwrap())(&AuditOptions {
        seed: 0,
        quick: true,
    })
    .unwrap();
    assert_eq!(e.kind, TestKind::Equality);
    assert!(e.measurement.abs() <= 1e-10, "{e:?}");
    assert_eq!(e.p_value, 1.0);
}

/// The negative control is marked as one (and only it), and `apply_holm` keeps controls out of the
/// family: a rejected control must not change the thresholds of the claims under audit.
#[test]
fn negative_controls_stay_out_of_the_holm_family() {
    use gradscale::claims::{apply_holm, ClaimResult, Evidence, Source, Verdict};
    let r = registry();
    let controls: Vec<&str> = r.iter().filter(|c| c.control).map(|c| c.id).collect();
    assert_eq!(controls, ["derived/infinite-width-at-width-100"]);
    let row = |id: &str, p_z: f64, control: bool| ClaimResult {
        id: id.into(),
        statement: String::new(),
        source: Source::Derived,
        reference: String::new(),
        theory: String::new(),
        verdict: Verdict::Inconclusive,
        evidence: Some(Evidence::equality(0.0, p_z, 1.0, 0.0, String::new())),
        holm_threshold: None,
        control,
        note: String::new(),
        seconds: 0.0,
    };
    // Two claims under audit (z = 0; z = 3.3, p = 9.7e-4) and a control at z = 3.0 (p = 2.7e-3). Had the
    // control joined the family, b would be compared with alpha/3 = 0.0033; outside it, with alpha/2.
    let mut rows = vec![
        row("a", 0.0, false),
        row("b", 3.3, false),
        row("c", 3.0, true),
    ];
    apply_holm(&mut rows, 0.01);
    assert_eq!(rows[2].verdict, Verdict::Contradicted);
    assert_eq!(rows[2].holm_threshold, Some(0.01));
    assert_eq!(rows[1].holm_threshold, Some(0.005));
    assert_eq!(rows[1].verdict, Verdict::Contradicted);
    assert_eq!(rows[0].holm_threshold, Some(0.01));
    assert_eq!(rows[0].verdict, Verdict::Supported);
}
