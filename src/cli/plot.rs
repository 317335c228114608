use gradscale::plot::figures::{build, gsc_depth_of, names, FigureOptions};
use gradscale::{Error, Result};
use std::fmt::Write;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Figure to draw (gsc-depth, gsc-width, resnet-dilution, ...); omit with --all.
    pub name: Option<String>,
    /// Draw every figure.
    #[arg(long)]
    pub all: bool,
    /// Output folder for NAME.png, NAME.svg and NAME.csv.
    #[arg(long, default_value = "figures")]
    pub out: PathBuf,
    /// Seed of the Monte Carlo points.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Fewer samples (faster, wider error bars).
    #[arg(long)]
    pub quick: bool,
    /// Print the written files as JSON.
    #[arg(long)]
    pub json: bool,
    /// Draw the per-layer figure (gsc-depth, the default name here) for this architecture file instead of
    /// the built-in networks; written as STEM-gsc-depth.
    #[arg(long)]
    pub arch: Option<PathBuf>,
}

/// The per-layer figures that take an architecture file.
const PER_LAYER: [&str; 1] = ["gsc-depth"];

/// Draws the named figures into `out` and returns (name, files written).
pub fn draw(
    list: &[String],
    out: &std::path::Path,
    o: &FigureOptions,
) -> Result<Vec<(String, Vec<PathBuf>)>> {
    let mut written = Vec::new();
    for (i, n) in list.iter().enumerate() {
        eprintln!("plot [{}/{}] {n}", i + 1, list.len());
        let fig = build(n, o)?;
        written.push((n.clone(), fig.render(out)?));
    }
    Ok(written)
}

pub fn run(a: &Args) -> Result<String> {
    if let Some(path) = &a.arch {
        if a.all {
            return Err(Error::param(
                "--all",
                "with --arch",
                "one per-layer figure for the architecture (gsc-depth), or --all without --arch",
            ));
        }
        let name = a.name.as_deref().unwrap_or("gsc-depth");
        if !PER_LAYER.contains(&name) {
            return Err(Error::param(
                "plot --arch",
                name,
                format!(
                    "a per-layer figure ({}); the others draw built-in networks",
                    PER_LAYER.join(", ")
                ),
            ));
        }
        let net = gradscale::arch::load_file(path)?;
        let stem = path
            .file_stem()
            .map_or_else(|| "arch".to_string(), |s| s.to_string_lossy().into_owned());
        let o = FigureOptions {
            seed: a.seed,
            quick: a.quick,
        };
        eprintln!("plot [1/1] {stem}-gsc-depth");
        let fig = gsc_depth_of(&net, &stem, &o)?;
        let files = fig.render(&a.out)?;
        return Ok(report(&[(fig.name.clone(), files)], a.json));
    }
    let list: Vec<String> = match (&a.name, a.all) {
        (Some(n), false) => vec![n.clone()],
        (None, true) => names().into_iter().map(String::from).collect(),
        // No name: say which figures there are (exit 0; nothing is drawn).
        (None, false) => {
            let mut s = String::from("figures (gradscale plot NAME, or --all):\n");
            for n in names() {
                let _ = writeln!(s, "  {n}");
            }
            return Ok(s);
        }
        _ => {
            return Err(Error::param(
                "plot",
                a.name.clone().unwrap_or_default(),
                format!("a figure name or --all (figures: {})", names().join(", ")),
            ))
        }
    };
    let written = draw(
        &list,
        &a.out,
        &FigureOptions {
            seed: a.seed,
            quick: a.quick,
        },
    )?;
    Ok(report(&written, a.json))
}

fn report(written: &[(String, Vec<PathBuf>)], json: bool) -> String {
    if json {
        let figures: Vec<_> = written
            .iter()
            .map(|(n, f)| serde_json::json!({"figure": n, "files": f}))
            .collect();
        let v = serde_json::json!({"schema": "gradscale.plot/1", "command": "plot", "figures": figures});
        return format!("{}\n", serde_json::to_string_pretty(&v).expect("json"));
    }
    let mut s = String::new();
    for (n, files) in written {
        let _ = writeln!(
            s,
            "{n}: {}",
            files
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    s
}
