//! The claims registry and the audit: every claim of the seed paper's abstract and every closed form the
//! project encodes, each with where it comes from, the measurement that tests it, its tolerance and
//! false-alarm rate, and a verdict. A claim no measurement tests yet is listed as not testable, never dropped.
//!
//! Statistics: each testable claim yields a p-value for rejecting its null hypothesis. For an *equality*
//! claim (a closed form equals the measurement) the null is "the formula is right": rejecting it
//! contradicts the claim. For a *directional* claim (e.g. "SELU nets explode") the null is the claim's
//! negation: rejecting it supports the claim. Rejections are decided by Holm's step-down procedure over all
//! claims of one audit at family-wise rate `alpha` (theory/verification.md).

mod capabilities;
mod file;
mod registry;
pub mod training;

pub use crate::verify::{Evidence, TestKind};
pub use file::{load_claims, parse_claims, Observable, Relation, Spec};
pub use registry::{builtin_test, registry, AuditOptions, REGISTRY_TOML};

use crate::error::Result;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// Stated in Philipp, Song & Carbonell, arXiv 1712.05577 (abstract).
    SeedPaper,
    /// Stated in the cited literature (named in the claim).
    Literature,
    /// Derived in this project (theory/).
    Derived,
    /// A user's claims file.
    User,
}

/// A claim's verdict: a presentation of `verify`'s evidence after Holm's procedure over all claims, not a
/// second comparison. For an equality claim `Contradicted` is `verify::Verdict::Disagree` at the claim's
/// Holm threshold and `Supported` is `Agree` (or `CannotFail` when the tolerance covers the whole effect);
/// for a directional claim `Supported` is a significant excess beyond the threshold (theory/verification.md,
/// "The observable layer").
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Supported,
    Contradicted,
    Inconclusive,
    NotTestable,
    /// An equality claim whose tolerance covers its whole predicted effect: it could not have failed.
    CannotFail,
}

/// A built-in measurement, named in a claims file by `test = "..."`.
pub type ClaimTestFn = fn(&AuditOptions) -> Result<Evidence>;

/// How a claim is tested.
#[derive(Clone, Debug)]
pub enum ClaimTest {
    Builtin(ClaimTestFn),
    /// Network + observable + relation, as stated in a claims file.
    Spec(Box<Spec>),
}

impl ClaimTest {
    pub fn run(&self, o: &AuditOptions) -> Result<Evidence> {
        match self {
            ClaimTest::Builtin(f) => f(o),
            ClaimTest::Spec(s) => s.run(o),
        }
    }
}

/// One entry of the registry or of a user's claims file.
#[derive(Clone, Debug)]
pub struct Claim {
    pub id: String,
    pub statement: String,
    pub source: Source,
    /// The publication, for `Source::Literature` and `Source::SeedPaper`.
    pub reference: String,
    /// The derivation in theory/.
    pub theory: String,
    /// None: not testable by this project (yet); `untestable` says why.
    pub test: Option<ClaimTest>,
    pub untestable: String,
    /// From the embedded registry (not a user's file).
    pub builtin: bool,
    /// A negative control: a claim known to be false (e.g. a closed form applied outside its validity),
    /// expected to come back contradicted. It shows the audit has the power to reject; it is judged on
    /// its own at rate `alpha`, outside the Holm family of the claims under audit.
    pub control: bool,
}

/// One row of the audit report.
#[derive(Clone, Debug, Serialize)]
pub struct ClaimResult {
    pub id: String,
    pub statement: String,
    pub source: Source,
    pub reference: String,
    pub theory: String,
    pub verdict: Verdict,
    pub evidence: Option<Evidence>,
    /// The per-claim rate Holm compared this p-value with (None if not tested).
    pub holm_threshold: Option<f64>,
    /// A negative control (see `Claim::control`).
    pub control: bool,
    /// From the embedded registry.
    pub builtin: bool,
    pub note: String,
    pub seconds: f64,
}

/// Applies Holm's step-down procedure at family-wise rate `alpha` and sets the verdicts.
pub fn apply_holm(results: &mut [ClaimResult], alpha: f64) {
    let mut idx: Vec<usize> = results
        .iter()
        .enumerate()
        .filter(|(_, r)| r.evidence.is_some() && !r.control)
        .map(|(i, _)| i)
        .collect();
    idx.sort_by(|&a, &b| {
        let pa = results[a]
            .evidence
            .as_ref()
            .map(|e| e.p_value)
            .unwrap_or(1.0);
        let pb = results[b]
            .evidence
            .as_ref()
            .map(|e| e.p_value)
            .unwrap_or(1.0);
        pa.total_cmp(&pb)
    });
    // Controls: one test each at `alpha` (rejecting a control is the expected outcome, so it must not
    // lower the thresholds of the claims under audit).
    for r in results.iter_mut().filter(|r| r.control) {
        if let Some(e) = &r.evidence {
            r.holm_threshold = Some(alpha);
            r.verdict = verdict_of(e, e.p_value <= alpha, alpha);
            set_resolution(r, alpha);
        }
    }
    let m = idx.len();
    let mut still_rejecting = true;
    for (rank, &i) in idx.iter().enumerate() {
        let threshold = alpha / (m - rank) as f64;
        let r = &mut results[i];
        let e = r.evidence.as_ref().expect("tested");
        let reject = still_rejecting && e.p_value <= threshold;
        if !reject {
            still_rejecting = false;
        }
        r.holm_threshold = Some(threshold);
        r.verdict = verdict_of(e, reject, threshold);
        set_resolution(r, threshold);
    }
}

fn set_resolution(r: &mut ClaimResult, threshold: f64) {
    let Some(e) = r.evidence.as_mut() else {
        return;
    };
    if e.kind != TestKind::Equality {
        return;
    }
    let res = e.bias_bound + crate::stats::z_for_false_alarm(threshold) * e.stderr;
    e.resolution = Some(res);
    // A prediction of zero (up to round-off: relu's ln GSC is ~1e-16) claims "no effect", which a
    // measurement can contradict whatever the allowance; only a nonzero effect can be swallowed.
    if r.verdict == Verdict::Supported && e.prediction.abs() > 1e-9 && res >= e.prediction.abs() {
        r.verdict = Verdict::CannotFail;
    }
}

fn verdict_of(e: &Evidence, reject: bool, threshold: f64) -> Verdict {
    match (e.kind, reject) {
        (TestKind::Equality, true) => Verdict::Contradicted,
        (TestKind::Equality, false) => Verdict::Supported,
        (TestKind::Greater | TestKind::Less, true) => Verdict::Supported,
        // Not significantly beyond the threshold: contradicted if significantly on the wrong side of it.
        (TestKind::Greater | TestKind::Less, false) => {
            let wrong_side = if e.kind == TestKind::Greater {
                -e.z
            } else {
                e.z
            };
            if wrong_side > crate::stats::z_for_false_alarm(2.0 * threshold) {
                Verdict::Contradicted
            } else {
                Verdict::Inconclusive
            }
        }
    }
}

/// The audit's result.
#[derive(Clone, Debug, Serialize)]
pub struct AuditReport {
    pub seed: u64,
    pub quick: bool,
    /// Family-wise false-alarm rate over all tested claims (Holm).
    pub alpha: f64,
    pub results: Vec<ClaimResult>,
    pub supported: usize,
    pub contradicted: usize,
    pub inconclusive: usize,
    pub not_testable: usize,
    /// Equality claims whose tolerance covers the whole predicted effect (`Verdict::CannotFail`).
    #[serde(default)]
    pub cannot_fail: usize,
    /// Negative controls run, and how many came back contradicted as expected (not in the counts above).
    pub controls: usize,
    pub controls_rejected: usize,
}

/// A user's architecture as a claim: the closed form agrees with the measurement at every layer.
/// The p-value is the Bonferroni-adjusted smallest p over the per-layer comparisons of `verify::check`.
pub fn architecture_claim(net: &crate::Network, name: &str, o: &AuditOptions) -> Result<Evidence> {
    use crate::verify::Estimator;
    // A batch-coupled net's Jacobian is of the whole batch map (n B wide): probes, as in examples/README.md.
    let estimator = if net.batch_coupled() {
        Estimator::Probes(4)
    } else {
        Estimator::Exact
    };
    architecture_check(
        net,
        name,
        if o.quick { 32 } else { 128 },
        o.seed + 1000,
        estimator,
    )
}

/// The closed form against the measurement at every layer (`verify::check`), as one equality claim
/// (`verify::every_layer`).
pub fn architecture_check(
    net: &crate::Network,
    name: &str,
    samples: usize,
    seed: u64,
    estimator: crate::verify::Estimator,
) -> Result<Evidence> {
    crate::verify::every_layer(net, name, samples, seed, estimator)
}

/// Runs every built-in claim (and the user's architectures), then Holm over the tested ones. `progress`
/// gets (index, total, id) before each claim.
pub fn run_audit(
    o: &AuditOptions,
    archs: &[(String, crate::Network)],
    alpha: f64,
    progress: &dyn Fn(usize, usize, &str),
) -> AuditReport {
    run_claims(o, &registry(), archs, alpha, progress)
}

/// Runs the given claims (built-in, a user's, or both) and architectures, then Holm over the tested ones.
pub fn run_claims(
    o: &AuditOptions,
    reg: &[Claim],
    archs: &[(String, crate::Network)],
    alpha: f64,
    progress: &dyn Fn(usize, usize, &str),
) -> AuditReport {
    let total = reg.len() + archs.len();
    let mut results = Vec::with_capacity(total);
    let timed = |f: &dyn Fn() -> Result<Evidence>| {
        let t = std::time::Instant::now();
        let r = f();
        (r, t.elapsed().as_secs_f64())
    };
    for (i, c) in reg.iter().enumerate() {
        progress(i + 1, total, &c.id);
        let (evidence, note, seconds) = match &c.test {
            None => (None, c.untestable.clone(), 0.0),
            Some(test) => match timed(&|| test.run(o)) {
                (Ok(e), s) => (Some(e), String::new(), s),
                (Err(e), s) => (None, format!("could not be run: {e}"), s),
            },
        };
        results.push(ClaimResult {
            id: c.id.clone(),
            statement: c.statement.clone(),
            source: c.source,
            reference: c.reference.clone(),
            theory: c.theory.clone(),
            verdict: if c.test.is_none() {
                Verdict::NotTestable
            } else {
                Verdict::Inconclusive
            },
            evidence,
            holm_threshold: None,
            control: c.control,
            builtin: c.builtin,
            note,
            seconds,
        });
    }
    for (j, (name, net)) in archs.iter().enumerate() {
        let id = format!("arch/{name}");
        progress(reg.len() + j + 1, total, &id);
        let (r, seconds) = timed(&|| architecture_claim(net, name, o));
        let (evidence, note) = match r {
            Ok(e) => (Some(e), String::new()),
            Err(e) => (None, format!("could not be run: {e}")),
        };
        results.push(ClaimResult {
            id,
            statement: format!("The closed form predicts ln GSC(L, l), ln GSC(l, 0) and ||f_l||^2/n_l of {name} at every layer."),
            source: Source::Derived,
            reference: String::new(),
            theory: "theory/verification.md".into(),
            verdict: Verdict::Inconclusive,
            evidence,
            holm_threshold: None,
            control: false,
            builtin: false,
            note,
            seconds,
        });
    }
    apply_holm(&mut results, alpha);
    let count = |v: Verdict| {
        results
            .iter()
            .filter(|r| !r.control && r.verdict == v)
            .count()
    };
    let controls = results.iter().filter(|r| r.control).count();
    let controls_rejected = results
        .iter()
        .filter(|r| r.control && r.verdict == Verdict::Contradicted)
        .count();
    AuditReport {
        seed: o.seed,
        quick: o.quick,
        alpha,
        supported: count(Verdict::Supported),
        contradicted: count(Verdict::Contradicted),
        inconclusive: count(Verdict::Inconclusive),
        not_testable: count(Verdict::NotTestable),
        cannot_fail: count(Verdict::CannotFail),
        controls,
        controls_rejected,
        results,
    }
}

/// When an audit counts as failed (the CLI then exits 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailOn {
    /// The audit itself is broken: a built-in claim contradicted, or a negative control not rejected (the
    /// audit could not reject a claim known to be false).
    Broken,
    /// As `Broken`, and also any contradicted claim of a user's file or architecture.
    Contradicted,
    /// Never (exploration).
    Never,
}

impl AuditReport {
    /// Why the audit failed under `fail_on`, one line per reason; empty if it passed.
    pub fn failures(&self, fail_on: FailOn) -> Vec<String> {
        if fail_on == FailOn::Never {
            return Vec::new();
        }
        let mut out = Vec::new();
        for r in &self.results {
            if r.control {
                if r.verdict != Verdict::Contradicted {
                    out.push(format!(
                        "negative control {} was not rejected: the audit could not reject a false claim",
                        r.id
                    ));
                }
            } else if r.verdict == Verdict::Contradicted
                // A contradicted seed-paper claim is a finding about the paper (the training claims are
                // experiments whose outcome is open), not a broken closed form of gradscale's.
                && ((r.builtin && r.source != Source::SeedPaper) || fail_on == FailOn::Contradicted)
            {
                out.push(format!(
                    "{} claim {} is contradicted",
                    if r.builtin { "built-in" } else { "user" },
                    r.id
                ));
            }
        }
        out
    }

    /// The report as Markdown, linking derivations as `../theory/...` (an `--out` one level below the
    /// repository root); `figures` maps figure names to paths relative to the report.
    pub fn to_markdown(&self, figures: &[(String, String)]) -> String {
        self.to_markdown_linked(figures, Some("../"))
    }

    /// The report as Markdown; derivations are linked as `prefix` + path (None: named, not linked).
    pub fn to_markdown_linked(&self, figures: &[(String, String)], prefix: Option<&str>) -> String {
        let mut s = String::new();
        s.push_str("# gradscale audit\n\n");
        s.push_str(&format!(
            "Seed {}, {} mode. {} supported, {} contradicted, {} inconclusive, {} not testable, {} cannot fail (an equality claim whose tolerance at its Holm threshold, the \"resolves\" value, covers the whole predicted effect). Verdicts use Holm's procedure over all tested claims at family-wise false-alarm rate {}. Equality claims are contradicted when the measurement is farther from the closed form than sampling noise plus the stated finite-width bias bound allows; directional claims are supported when the measurement is significantly beyond the threshold.\n\n",
            self.seed,
            if self.quick { "quick" } else { "full" },
            self.supported,
            self.contradicted,
            self.inconclusive,
            self.not_testable,
            self.cannot_fail,
            self.alpha
        ));
        if self.controls > 0 {
            s.push_str(&format!(
                "Negative controls (claims known to be false, run to show the audit can reject; not in the counts above, each judged alone at rate {}): {} of {} contradicted as expected.\n\n",
                self.alpha, self.controls_rejected, self.controls
            ));
        }
        s.push_str("The p column: for an equality claim, the two-sided p-value of \"the closed form is right\", computed on the excess of |measurement - prediction| over the bias bound (small p contradicts the claim); for a directional claim (> or <), the one-sided p-value of \"the measurement is not beyond the threshold\" (small p supports it). Both assume a normal sample mean with the measured standard error.\n\n");
        s.push_str("| claim | source | verdict | prediction / threshold | measurement | z | p | derivation |\n|---|---|---|---|---|---|---|---|\n");
        for r in &self.results {
            let verdict = match (r.verdict, r.control) {
                (Verdict::Contradicted, true) => "contradicted (negative control: expected)",
                (_, true) => "**not rejected (negative control: the audit lacked power)**",
                (Verdict::Supported, _) => "supported",
                (Verdict::Contradicted, _) => "**contradicted**",
                (Verdict::Inconclusive, _) => "inconclusive",
                (Verdict::NotTestable, _) => "not testable",
                (Verdict::CannotFail, _) => "cannot fail (tolerance covers the effect)",
            };
            let source = match r.source {
                Source::SeedPaper => "seed paper",
                Source::Literature => "literature",
                Source::Derived => "derived here",
                Source::User => "user",
            };
            let (pred, meas, z, p) = match &r.evidence {
                Some(e) => (
                    match e.kind {
                        TestKind::Equality => {
                            format!(
                                "= {:.4} (bias bound {:.2e}; resolves {})",
                                e.prediction,
                                e.bias_bound,
                                e.resolution.map_or("-".into(), |r| format!("{r:.2e}"))
                            )
                        }
                        TestKind::Greater => format!("> {:.4}", e.prediction),
                        TestKind::Less => format!("< {:.4}", e.prediction),
                    },
                    format!("{:.4} ± {:.4}", e.measurement, e.stderr),
                    format!("{:.2}", e.z),
                    format!("{:.2e}", e.p_value),
                ),
                None => ("-".into(), "-".into(), "-".into(), "-".into()),
            };
            let derivation = match (prefix, r.theory.is_empty()) {
                (_, true) => "-".to_string(),
                (Some(pre), false) => format!("[{}]({pre}{})", r.theory, r.theory),
                (None, false) => format!("`{}`", r.theory),
            };
            s.push_str(&format!(
                "| `{}` | {} | {} | {} | {} | {} | {} | {} |\n",
                r.id, source, verdict, pred, meas, z, p, derivation
            ));
        }
        s.push_str("\n## Details\n\n");
        for r in &self.results {
            s.push_str(&format!("### `{}`\n\n{}", r.id, r.statement));
            if !r.reference.is_empty() {
                s.push_str(&format!(" ({})", r.reference));
            }
            s.push_str("\n\n");
            if let Some(e) = &r.evidence {
                s.push_str(&format!("{}\n\n", e.detail));
                if let Some(t) = r.holm_threshold {
                    s.push_str(&format!(
                        "p = {:.3e}, Holm threshold {:.3e}; {:.1} s.\n\n",
                        e.p_value, t, r.seconds
                    ));
                }
                if let Some(f) = &e.figure {
                    if let Some((_, path)) = figures.iter().find(|(n, _)| n == f) {
                        s.push_str(&format!("![{f}]({path})\n\n"));
                    }
                }
            }
            if !r.note.is_empty() {
                s.push_str(&format!("{}\n\n", r.note));
            }
        }
        s
    }
}
