use gradscale::claims::{run_audit, AuditOptions, Verdict};
use gradscale::plot::figures::FigureOptions;
use gradscale::{Error, Result};
use std::fmt::Write;
use std::path::PathBuf;

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
    let o = AuditOptions {
        seed: a.seed,
        quick: a.quick,
    };
    let t0 = std::time::Instant::now();
    let report = run_audit(&o, &archs, a.alpha, &|i, n, id| {
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
    std::fs::write(&md, report.to_markdown(&figures)).map_err(io_err(&md))?;
    let json = serde_json::to_string_pretty(&report).expect("json");
    std::fs::write(&js, &json).map_err(io_err(&js))?;
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
        "{} supported, {} contradicted, {} inconclusive, {} not testable; negative controls {} of {} rejected as expected ({:.0} s). Report: {} and {}; figures in {}",
        report.supported,
        report.contradicted,
        report.inconclusive,
        report.not_testable,
        report.controls_rejected,
        report.controls,
        t0.elapsed().as_secs_f64(),
        md.display(),
        js.display(),
        a.out.join("figures").display()
    );
    Ok(s)
}
