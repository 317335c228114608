use gradscale::plot::figures::{build, names, FigureOptions};
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
}

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
    if a.json {
        let figures: Vec<_> = written
            .iter()
            .map(|(n, f)| serde_json::json!({"figure": n, "files": f}))
            .collect();
        let v = serde_json::json!({"schema": "gradscale.plot/1", "command": "plot", "figures": figures});
        return Ok(format!(
            "{}\n",
            serde_json::to_string_pretty(&v).expect("json")
        ));
    }
    let mut s = String::new();
    for (n, files) in &written {
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
    Ok(s)
}
