use super::{fmt, NetArgs};
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
    if a.json {
        let v = json!({
            "command": "predict",
            "network": net,
            "layers": p.layers,
            "fit": p.fit,
            "fixed_point": p.fixed_point,
            "notes": p.notes,
        });
        return Ok(format!(
            "{}\n",
            serde_json::to_string_pretty(&v).expect("json")
        ));
    }
    Ok(table(&p))
}

pub fn table(p: &Prediction) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "closed-form prediction (infinite width)");
    let _ = writeln!(
        s,
        "{:>5} {:>6} {:>13} {:>13} {:>13} {:>13} {:>13}",
        "l", "width", "q_l", "|f_l|^2/n", "lnGSC(L,l)", "lnGSC(l,0)", "lnGSC(l,l-1)"
    );
    for l in &p.layers {
        let _ = writeln!(
            s,
            "{:>5} {:>6} {:>13} {:>13} {:>13} {:>13} {:>13}",
            l.index,
            l.width,
            fmt(l.q),
            fmt(l.sq_norm),
            fmt(l.log_gsc_to_output),
            fmt(l.log_gsc_from_input),
            fmt(l.log_gsc_layer)
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
    s
}
