use gradscale::claims::{load_claims, registry, run_claims, AuditOptions, FailOn, Verdict};
use gradscale::plot::figures::FigureOptions;
use gradscale::{Error, Result};
use std::fmt::Write;
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Fewer samples and smaller sweeps: finishes in under a minute.
    #[arg(long)]
    pub quick: bool,
    /// Seed of every Monte Carlo measurement (each claim offsets it by its own constant).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Family-wise false-alarm rate over all tested claims (Holm).
    #[arg(long, default_value_t = 1e-3, value_parser = super::args::probability, allow_hyphen_values = true)]
    pub alpha: f64,
    /// Also audit these architecture files (TOML, see examples/): the closed form against the measurement at every layer.
    #[arg(long)]
    pub arch: Vec<PathBuf>,
    /// Audit the claims of this TOML file (repeatable; format: theory/verification.md, examples/claims/).
    /// Alone unless --with-builtin is given.
    #[arg(long, value_name = "FILE")]
    pub claims: Vec<PathBuf>,
    /// With --claims: also run the built-in claims.
    #[arg(long)]
    pub with_builtin: bool,
    /// Exit 1 when: a built-in claim is contradicted or a negative control is not rejected (broken), also
    /// when any user claim is contradicted (contradicted), or never.
    #[arg(long, value_enum, default_value_t = FailOnArg::Broken)]
    pub fail_on: FailOnArg,
    /// Output folder: report.md, report.json and figures/.
    #[arg(long, default_value = "audit-report")]
    pub out: PathBuf,
    /// Skip drawing the figures the report cites.
    #[arg(long)]
    pub no_figures: bool,
    /// Print the report as JSON on stdout (it is written to OUT/report.json either way).
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum FailOnArg {
    Broken,
    Contradicted,
    Never,
}

/// A relative path from `from` (a directory) to `to` (a directory), both made absolute; None if either
/// does not exist.
fn relative_dir(from: &Path, to: &Path) -> Option<String> {
    let (f, t) = (from.canonicalize().ok()?, to.canonicalize().ok()?);
    let (fc, tc): (Vec<_>, Vec<_>) = (f.components().collect(), t.components().collect());
    let common = fc.iter().zip(&tc).take_while(|(a, b)| a == b).count();
    let mut s = String::new();
    for _ in common..fc.len() {
        s.push_str("../");
    }
    for c in &tc[common..] {
        s.push_str(&c.as_os_str().to_string_lossy());
        s.push('/');
    }
    Some(s)
}

/// Writes `text` to `path` through a temporary file in the same folder and a rename.
fn write_atomic(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_err(path))
}

fn io_err(p: &std::path::Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::File {
        path: p.display().to_string(),
        message: e.to_string(),
    }
}

pub fn run(a: &Args) -> Result<String> {
    let archs = a
        .arch
        .iter()
        .map(|p| {
            let net = gradscale::arch::load_file(p)?;
            let name = p
                .file_stem()
                .map(|s| s.to_string_lossy().to_string())
                .unwrap_or_default();
            Ok((name, net))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut claims = Vec::new();
    if a.claims.is_empty() || a.with_builtin {
        claims = registry();
    }
    for p in &a.claims {
        for c in load_claims(p)? {
            if claims
                .iter()
                .any(|o: &gradscale::claims::Claim| o.id == c.id)
            {
                return Err(Error::File {
                    path: p.display().to_string(),
                    message: format!("claim '{}': id already used by another claim", c.id),
                });
            }
            claims.push(c);
        }
    }
    let o = AuditOptions {
        seed: a.seed,
        quick: a.quick,
    };
    let t0 = std::time::Instant::now();
    let report = run_claims(&o, &claims, &archs, a.alpha, &|i, n, id| {
        eprintln!(
            "audit [{i}/{n}] {id}  ({:.0} s)",
            t0.elapsed().as_secs_f64()
        );
    });
    std::fs::create_dir_all(&a.out).map_err(io_err(&a.out))?;
    let mut figures = Vec::new();
    if !a.no_figures {
        let mut cited: Vec<String> = report
            .results
            .iter()
            .filter_map(|r| r.evidence.as_ref().and_then(|e| e.figure.clone()))
            .collect();
        cited.sort();
        cited.dedup();
        let dir = a.out.join("figures");
        for (name, files) in super::plot::draw(
            &cited,
            &dir,
            &FigureOptions {
                seed: a.seed,
                quick: a.quick,
            },
        )? {
            if let Some(png) = files
                .iter()
                .find(|p| p.extension().is_some_and(|e| e == "png"))
            {
                figures.push((
                    name,
                    format!(
                        "figures/{}",
                        png.file_name().unwrap_or_default().to_string_lossy()
                    ),
                ));
            }
        }
    }
    let md = a.out.join("report.md");
    let js = a.out.join("report.json");
    // Derivation links relative to wherever --out is, when run from a checkout (theory/ present).
    let prefix = Path::new("theory")
        .is_dir()
        .then(|| relative_dir(&a.out, Path::new(".")))
        .flatten();
    write_atomic(&md, &report.to_markdown_linked(&figures, prefix.as_deref()))?;
    let mut v = serde_json::to_value(&report).expect("json");
    v["schema"] = "gradscale.audit/1".into();
    v["command"] = "audit".into();
    let json = serde_json::to_string_pretty(&v).expect("json");
    write_atomic(&js, &json)?;
    let fail_on = match a.fail_on {
        FailOnArg::Broken => FailOn::Broken,
        FailOnArg::Contradicted => FailOn::Contradicted,
        FailOnArg::Never => FailOn::Never,
    };
    let failures = report.failures(fail_on);
    if !failures.is_empty() {
        for f in &failures {
            eprintln!("audit failed: {f}");
        }
        super::set_exit_code(1);
    }
    if a.json {
        return Ok(format!("{json}\n"));
    }
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<36} {:<17} {:>9} {:>12}  measured",
        "claim", "verdict", "z", "p"
    );
    for r in &report.results {
        let v = match (r.verdict, r.control) {
            (Verdict::Contradicted, true) => "control: rejected",
            (_, true) => "CONTROL NOT REJECTED",
            (Verdict::Supported, _) => "supported",
            (Verdict::Contradicted, _) => "CONTRADICTED",
            (Verdict::Inconclusive, _) => "inconclusive",
            (Verdict::NotTestable, _) => "not testable",
            (Verdict::CannotFail, _) => "cannot fail",
        };
        match &r.evidence {
            Some(e) => {
                let _ = writeln!(
                    s,
                    "{:<36} {:<17} {:>9.2} {:>12.3e}  {:.4} ± {:.4}",
                    r.id, v, e.z, e.p_value, e.measurement, e.stderr
                );
            }
            None => {
                let _ = writeln!(
                    s,
                    "{:<36} {:<17} {:>9} {:>12}  {}",
                    r.id, v, "-", "-", r.note
                );
            }
        }
    }
    let _ = writeln!(
        s,
        "{} supported, {} contradicted, {} inconclusive, {} not testable, {} cannot fail; negative controls {} of {} rejected as expected ({:.0} s). Report: {} and {}{}",
        report.supported,
        report.contradicted,
        report.inconclusive,
        report.not_testable,
        report.cannot_fail,
        report.controls_rejected,
        report.controls,
        t0.elapsed().as_secs_f64(),
        md.display(),
        js.display(),
        if figures.is_empty() {
            String::new()
        } else {
            format!("; figures in {}", a.out.join("figures").display())
        }
    );
    Ok(s)
}
