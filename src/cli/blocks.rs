//! `gradscale blocks`: the Pythagorean report of a residual network, block by block.

use super::{fmt, McArgs, NetArgs};
use gradscale::montecarlo::pythagorean::{pythagorean, BlockMeasurement};
use gradscale::theory::blocks::{assumptions, block_predictions, BlockPrediction};
use gradscale::theory::MfOptions;
use gradscale::Result;
use serde_json::json;
use std::fmt::Write;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub net: NetArgs,
    #[command(flatten)]
    pub mc: McArgs,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: &Args) -> Result<String> {
    let (net, names) = a.net.network_named()?;
    let opts = MfOptions::default();
    let p = block_predictions(&net, &opts)?;
    if p.is_empty() {
        return Err(gradscale::Error::Unsupported(
            "blocks: this network has no residual blocks (a layer that is one residual op): give a residual architecture, e.g. --arch examples/resnet-plain-relu.toml (or any examples/resnet-*.toml)".into(),
        ));
    }
    let mut notes = assumptions(&net, &opts)?;
    let mut mc = a.mc.options();
    let m = match &a.mc.weights {
        Some(w) => {
            let params = gradscale::checkpoint::load_params_file(&net, &names, w)?;
            let inputs = super::simulate::given_inputs(&net, &a.mc, &mut mc);
            notes.push(format!(
                "given network ({}): the measured columns are one network over input batches; the predictions are for the architecture's initial distribution",
                w.display()
            ));
            a.mc.in_pool(|| {
                gradscale::montecarlo::pythagorean::pythagorean_given(&net, &params, inputs, &mc)
            })?
        }
        None => a.mc.in_pool(|| pythagorean(&net, &mc))?,
    };
    if a.json {
        let v = json!({
            "schema": "gradscale.blocks/1",
            "command": "blocks",
            "network": net,
            "samples": mc.samples,
            "seed": mc.seed,
            "predicted": p,
            "measured": m,
            "notes": notes,
        });
        return Ok(format!(
            "{}\n",
            serde_json::to_string_pretty(&v).expect("json")
        ));
    }
    Ok(table(&p, &m, &notes, mc.samples))
}

fn table(
    p: &[BlockPrediction],
    m: &[BlockMeasurement],
    notes: &[String],
    samples: usize,
) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Pythagorean report: block b = s + alpha rho; k = |s|/|alpha rho|; GSC_b^2 = (k^2 GSC_s^2 + GSC_rho^2)/(k^2 + 1) when s _|_ rho and tr(J_s^T J_rho) = 0"
    );
    let _ = writeln!(
        s,
        "predicted: infinite width; measured: mean over {samples} samples (+- se); cos = the cross terms, normalised"
    );
    let _ = writeln!(
        s,
        "{:>5} {:>10} {:>10} {:>10} {:>10} {:>10} | {:>10} {:>10} {:>10} {:>10} {:>17} {:>17} {:>10}",
        "l",
        "k",
        "GSC_s",
        "GSC_rho",
        "GSC_b",
        "cos_len",
        "k",
        "GSC_s",
        "GSC_rho",
        "GSC_b",
        "cos_len",
        "cos_jac",
        "pyth_err"
    );
    for (bp, bm) in p.iter().zip(m) {
        let e = |x: f64| fmt(x.exp());
        // No finite sample at this block (e.g. an overflowed non-rescalable net): a dash, not NaN.
        let pm = |x: &gradscale::stats::Summary| {
            if x.n == 0 {
                "-".to_string()
            } else {
                format!("{:+.4}+-{:.4}", x.mean, x.stderr)
            }
        };
        let _ = writeln!(
            s,
            "{:>5} {:>10} {:>10} {:>10} {:>10} {:>10} | {:>10} {:>10} {:>10} {:>10} {:>17} {:>17} {:>10}",
            bp.layer,
            fmt(bp.k),
            fmt(bp.gsc_skip),
            fmt(bp.gsc_branch),
            fmt(bp.gsc_block),
            format!("{:.4}", bp.cos_length),
            e(bm.log_k.mean),
            e(bm.log_gsc_skip.mean),
            e(bm.log_gsc_branch.mean),
            e(bm.log_gsc_block.mean),
            pm(&bm.cos_length),
            pm(&bm.cos_jacobian),
            if bm.pythagorean_error.n == 0 {
                "-".to_string()
            } else {
                format!("{:+.4}", bm.pythagorean_error.mean)
            },
        );
    }
    let _ = writeln!(
        s,
        "(measured k, GSC columns are exp of the mean log; pyth_err = mean of ln GSC_b - ln(Pythagorean formula on the same sample's k, GSC_s, GSC_rho))"
    );
    for n in notes {
        let _ = writeln!(s, "note: {n}");
    }
    s
}
