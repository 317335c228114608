use super::{fmt, NetArgs};
use gradscale::montecarlo::collapse::measure_collapse;
use gradscale::theory::collapse::predict_collapse;
use gradscale::verify::collapse::{check_collapse, MetricComparison};
use gradscale::verify::Verdict;
use gradscale::Result;
use serde_json::json;
use std::fmt::Write;

/// The batch when --batch is not given: collapse metrics compare inputs, so 1 would mean nothing.
const DEFAULT_BATCH: usize = 16;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub net: NetArgs,
    /// Number of sampled networks (each with its own weights and input batch of --batch inputs, default
    /// 16) [default: 20]. With --weights and input rows: the first N batches of rows [default: every whole batch once].
    #[arg(long, value_parser = super::args::positive_usize, allow_hyphen_values = true)]
    pub samples: Option<usize>,
    /// A given network (safetensors; see `simulate --help`): every sample uses these weights and only the
    /// input batch varies.
    #[arg(long)]
    pub weights: Option<std::path::PathBuf>,
    /// Seed of the Monte Carlo measurement.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: &Args) -> Result<String> {
    let (net, names) = a.net.network_named_with_batch(DEFAULT_BATCH)?;
    let p = predict_collapse(&net, None)?;
    let m = match &a.weights {
        Some(w) => {
            use gradscale::montecarlo::{
                collapse::measure_collapse_given, given_samples, GivenInputs,
            };
            let params = gradscale::checkpoint::load_params_file(&net, &names, w)?;
            match &net.input.data {
                Some(d) => {
                    let n = a.samples.unwrap_or(given_samples(&net, d.vectors.len()));
                    measure_collapse_given(&net, &params, GivenInputs::Rows(&d.vectors), n, a.seed)?
                }
                None => measure_collapse_given(
                    &net,
                    &params,
                    GivenInputs::Drawn,
                    a.samples.unwrap_or(20),
                    a.seed,
                )?,
            }
        }
        None => measure_collapse(&net, a.samples.unwrap_or(20), a.seed)?,
    };
    let c = check_collapse(&p, &m, 1e-3);
    if a.json {
        let v = json!({"schema": "gradscale.collapse/1", "command": "collapse", "network": net, "predicted": p, "measured": m, "check": c});
        return Ok(format!(
            "{}\n",
            serde_json::to_string_pretty(&v).expect("json")
        ));
    }
    let mut s = String::new();
    let _ = writeln!(
        s,
        "collapse metrics over a batch of {}: predicted (infinite width, finite batch) vs measured ({} {}, seed {}; +- one standard error)",
        p.batch,
        m.samples,
        match &a.weights {
            Some(w) => format!("input batches through the given network {} (predictions: its architecture's initial distribution)", w.display()),
            None => "networks".into(),
        },
        m.seed
    );
    let _ = writeln!(
        s,
        "{:>5} {:>10} {:>21} {:>7} {:>10} {:>21} {:>7} {:>10} {:>21} {:>7}  verdict",
        "l", "corr", "measured", "z", "std", "measured", "z", "sdiv", "measured", "z"
    );
    let cell = |x: Option<&MetricComparison>| match x {
        Some(c) => format!(
            "{:>10} {:>21} {:>7}",
            fmt(c.predicted),
            format!("{} +- {:.1e}", fmt(c.measured), c.stderr),
            super::fmt_z(c.z)
        ),
        None => format!("{:>10} {:>21} {:>7}", "-", "-", "-"),
    };
    for r in &c.rows {
        let all: Vec<&MetricComparison> = std::iter::once(&r.corr)
            .chain(r.preact_std.as_ref())
            .chain(r.sign_diversity.as_ref())
            .collect();
        let verdict = if all.iter().any(|x| x.verdict == Verdict::Disagree) {
            "disagree"
        } else if all.iter().any(|x| x.verdict == Verdict::Inconclusive) {
            "inconclusive"
        } else {
            "agree"
        };
        let _ = writeln!(
            s,
            "{:>5} {} {} {}  {verdict}",
            r.index,
            cell(Some(&r.corr)),
            cell(r.preact_std.as_ref()),
            cell(r.sign_diversity.as_ref())
        );
    }
    let _ = writeln!(
        s,
        "verdicts: {} agree, {} disagree, {} inconclusive (|z| <= {:.2}: family false-alarm {} over all metrics; no finite-width bias allowance, theory/collapse.md)",
        c.agree, c.disagree, c.inconclusive, c.z_crit, c.family_alpha
    );
    if let Some(l) = m.layers.iter().find(|l| l.zero_outputs > 0) {
        let _ = writeln!(
            s,
            "note: from layer {} on, {} of {} networks have an all-zero output (a dead relu layer, or f64 underflow): \
             there corr reads 0/0 as 1 and std is 0 (zero_outputs per layer in --json)",
            l.index,
            l.zero_outputs,
            m.samples
        );
    }
    Ok(s)
}
