use super::{fmt, NetArgs};
use gradscale::theory::finite_width::{FiniteMethod, FinitePrediction};
use gradscale::theory::{predict, FixedPoint, MfOptions, Prediction};
use gradscale::Result;
use serde_json::json;
use std::fmt::Write;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub net: NetArgs,
    /// Also track the correlation map c_l between two inputs (costs a 2-D quadrature per layer).
    #[arg(long)]
    pub correlation: bool,
    #[command(flatten)]
    pub finite: super::finite::FiniteArgs,
    /// Print every K-th layer (and always the first and the last) in the table; --json keeps every layer.
    #[arg(long, default_value_t = 1, value_parser = super::args::positive_usize, allow_hyphen_values = true)]
    pub every: usize,
    /// Print only the summary lines (fit, fixed point, notes), no per-layer table.
    #[arg(long, conflicts_with = "every")]
    pub summary: bool,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: &Args) -> Result<String> {
    let net = a.net.network()?;
    let p = predict(
        &net,
        &MfOptions {
            correlation: a.correlation,
            ..MfOptions::default()
        },
    )?;
    let fin = a.finite.predict(&net, false)?;
    // Relu-ended ResNets: the infinite-width number can be below what any width-n network has.
    let radial = if a.finite.no_finite {
        None
    } else {
        gradscale::theory::radial::predict_radial(&net)
    };
    if a.json {
        let mut layers = serde_json::to_value(&p.layers).expect("json");
        if let (Some(f), Some(arr)) = (&fin, layers.as_array_mut()) {
            for (row, v) in arr.iter_mut().zip(&f.log_gsc_to_output) {
                row["log_gsc_to_output_finite"] = serde_json::to_value(v).expect("json");
            }
        }
        let v = json!({
            "schema": "gradscale.predict/1",
            "command": "predict",
            "network": net,
            "layers": layers,
            "fit": p.fit,
            "fixed_point": p.fixed_point,
            "notes": p.notes,
            "finite_width": fin.as_ref().map(|f| json!({
                "method": f.method,
                "degenerate_probability": f.degenerate_probability,
                "spectra": f.spectra,
                "directions": f.directions,
            })),
            "finite_width_radial": radial.as_ref().map(|r| json!({
                "method": "radial-bulk-chain-sampled",
                "width": r.width,
                "draws": r.draws,
                "log_gsc_to_output": r.sampled.iter().map(|v| v.mean).collect::<Vec<_>>(),
                "log_gsc_to_output_law": r.sampled,
                "log_gsc_to_output_deterministic": r.finite,
                "log_gsc_to_output_infinite": r.infinite,
                "lower_bound": r.lower_bound,
            })),
        });
        return Ok(format!(
            "{}\n",
            serde_json::to_string_pretty(&v).expect("json")
        ));
    }
    let mut out = table(
        &p,
        fin.as_ref(),
        if a.summary { None } else { Some(a.every) },
    );
    if let Some(r) = radial {
        // Only the mean is printed: the chain's sd undershoots the measured spread beyond ~10 blocks
        // (section 9); sd and quantiles are in --json with that caveat in the schema.
        let v = r.sampled[0];
        let _ = writeln!(
            out,
            "finite width (sampled radial-bulk chain, theory/finite-width.md section 9): mean ln GSC(L, 0) = {} +- {} \
             at width {} (infinite width: {}); no bias-free relu network of this width has less than -1/2 ln n = {}",
            fmt(v.mean),
            fmt(v.mean_se),
            r.width,
            fmt(r.infinite[0]),
            fmt(r.lower_bound)
        );
        let gap = (r.infinite[0] - v.mean).abs();
        if r.infinite[0] < r.lower_bound || (gap > 0.1 && gap > 3.0 * v.sd) {
            let _ = writeln!(
                out,
                "note: the infinite-width ln GSC(L, 0) = {} is not what a width-{} network has (mean {}{})",
                fmt(r.infinite[0]),
                r.width,
                fmt(v.mean),
                if r.infinite[0] < r.lower_bound {
                    ", and it is below the floor no such network goes under"
                } else {
                    ""
                }
            );
        }
    }
    Ok(out)
}

/// The table; `every` = None prints the summary lines only, Some(k) every k-th layer (first and last
/// always).
pub fn table(p: &Prediction, fin: Option<&FinitePrediction>, every: Option<usize>) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "closed-form prediction (infinite width)");
    let last = p.layers.len() - 1;
    let shown = |l: usize| every.is_some_and(|k| l.is_multiple_of(k) || l == last);
    // The layer column grows with the depth so that every column stays aligned.
    let iw = last.to_string().len().max(5);
    if every.is_some() {
        let _ = writeln!(
            s,
            "{:>iw$} {:>6} {:>13} {:>13} {:>13} {:>13} {:>13}  {}",
            "l",
            "width",
            "q_l",
            "|f_l|^2/n",
            "lnGSC(L,l)",
            "lnGSC(l,0)",
            "lnGSC(l,l-1)",
            if fin.is_some() {
                "lnGSC(L,l) at this width: mean +- sd"
            } else {
                ""
            }
        );
        for l in p.layers.iter().filter(|l| shown(l.index)) {
            let _ = writeln!(
                s,
                "{:>iw$} {:>6} {:>13} {:>13} {:>13} {:>13} {:>13}  {}",
                l.index,
                l.width,
                super::fmt_pos(l.q, l.log_q),
                super::fmt_pos(l.sq_norm, l.log_sq_norm),
                fmt(l.log_gsc_to_output),
                fmt(l.log_gsc_from_input),
                fmt(l.log_gsc_layer),
                fin.map(|f| format!("{:>36}", super::finite::cell(&f.log_gsc_to_output[l.index])))
                    .unwrap_or_default()
            );
        }
    }
    if let Some(f) = fin {
        let _ = writeln!(
            s,
            "finite width ({}): P(degenerate network) = {:.4e}; quantiles and errors in --json",
            match f.method {
                FiniteMethod::Exact => "exact law, sampled reduced product",
                FiniteMethod::Expansion => "O(1/n) expansion",
                FiniteMethod::Chain => "scalar-state chain, sampled",
            },
            f.degenerate_probability
        );
    }
    let _ = writeln!(
        s,
        "explosion fit ln GSC(L, L-l) = ln c + l ln r:  r = {}  c = {}",
        fmt(p.fit.r),
        fmt(p.fit.c)
    );
    if let Some(fp) = &p.fixed_point {
        let opt = |x: Option<f64>| x.map(fmt).unwrap_or_else(|| "-".into());
        match &fp.fixed_point {
            FixedPoint::Point { q } => {
                let _ = writeln!(s, "fixed point q* = {}", fmt(*q));
            }
            FixedPoint::EveryQ => {
                let _ = writeln!(s, "fixed point: every q (critical, positively homogeneous)");
            }
            FixedPoint::None { reason } => {
                let _ = writeln!(s, "fixed point: none ({reason})");
            }
        }
        let _ = writeln!(
            s,
            "chi_1 = {}  dq'/dq = {}  xi_q = {}  xi_grad = {}",
            opt(fp.chi1),
            opt(fp.length_slope),
            opt(fp.xi_q),
            opt(fp.xi_grad)
        );
    }
    for n in &p.notes {
        let _ = writeln!(s, "note: {n}");
    }
    // No trailing blanks where the finite-width column is absent.
    s.lines().map(|l| format!("{}\n", l.trim_end())).collect()
}
