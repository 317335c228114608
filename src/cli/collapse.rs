use super::{fmt, NetArgs};
use gradscale::montecarlo::collapse::measure_collapse;
use gradscale::theory::collapse::predict_collapse;
use gradscale::Result;
use serde_json::json;
use std::fmt::Write;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub net: NetArgs,
    /// Number of sampled networks (each with its own weights and input batch; use --batch >= 2) [default:
    /// 20]. With --weights and input rows: the first N batches of rows [default: every whole batch once].
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
    let (net, names) = a.net.network_named()?;
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
    if a.json {
        let v = json!({"command": "collapse", "network": net, "predicted": p, "measured": m});
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
        "{:>5} {:>10} {:>21} {:>10} {:>21} {:>10} {:>21}",
        "l", "corr", "measured", "std", "measured", "sdiv", "measured"
    );
    let o = |x: Option<f64>| x.map(fmt).unwrap_or_else(|| "-".into());
    let pm = |x: Option<gradscale::stats::Summary>| {
        x.map(|v| format!("{} +- {:.1e}", fmt(v.mean), v.stderr))
            .unwrap_or_else(|| "-".into())
    };
    for (pl, ml) in p.layers.iter().zip(&m.layers) {
        let _ = writeln!(
            s,
            "{:>5} {:>10} {:>21} {:>10} {:>21} {:>10} {:>21}",
            pl.index,
            fmt(pl.c),
            pm(Some(ml.corr)),
            o(pl.preact_std),
            pm(ml.preact_std),
            o(pl.sign_diversity),
            pm(ml.sign_diversity)
        );
    }
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
