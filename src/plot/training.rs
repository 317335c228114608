//! The training figures (issue 15): drawn from the audit's training study (`verify::training`), which is
//! run once per process and shared with the audit's four training claims. Nothing here trains.

use super::figures::FigureOptions;
use super::{Figure, Series};
use crate::error::Result;
use crate::verify::training::{audit_study, Cell, Family, Opt, Study};

/// Figure names drawn from the training study.
pub const NAMES: [&str; 5] = [
    "train-error-depth",
    "effective-depth",
    "taylor-curves",
    "dilution-layers",
    "gsc-training",
];

const Z95: f64 = 1.959964;

fn label(f: Family, o: Opt) -> &'static str {
    match (f, o) {
        (Family::Plain, Opt::Sgd) => "plain, SGD",
        (Family::Plain, Opt::Adam) => "plain, Adam",
        (Family::Resnet, Opt::Sgd) => "ResNet, SGD",
        (Family::Resnet, Opt::Adam) => "ResNet, Adam",
    }
}

fn cells(s: &Study, f: Family, o: Opt) -> Vec<&Cell> {
    s.options
        .depths
        .iter()
        .filter_map(|&d| s.cell(f, o, d))
        .collect()
}

fn caption(s: &Study) -> String {
    let o = &s.options;
    format!(
        "digits, width {}, {} seeds, {} epochs, best rate per depth (SGD {:?}, Adam {:?}); seed {}",
        o.width, o.seeds, o.epochs, o.sgd_lrs, o.adam_lrs, o.seed
    )
}

const COMBOS: [(Family, Opt); 4] = [
    (Family::Plain, Opt::Sgd),
    (Family::Resnet, Opt::Sgd),
    (Family::Plain, Opt::Adam),
    (Family::Resnet, Opt::Adam),
];

pub fn build(name: &str, o: &FigureOptions) -> Result<Figure> {
    let s = audit_study(o.quick, o.seed)?;
    let base = |title: &str, x: &str, y: &str, log_y: bool, series: Vec<Series>| Figure {
        name: name.to_string(),
        title: title.to_string(),
        caption: caption(&s),
        x_label: x.to_string(),
        y_label: y.to_string(),
        log_y,
        log_x: false,
        series,
        panels: Vec::new(),
    };
    let plain_deep = s.cell(Family::Plain, Opt::Sgd, s.deep()).expect("cell");
    let res_deep = s.cell(Family::Resnet, Opt::Sgd, s.deep()).expect("cell");
    Ok(match name {
        "train-error-depth" => {
            let series = COMBOS
                .iter()
                .enumerate()
                .map(|(i, &(f, op))| {
                    let cs = cells(&s, f, op);
                    Series::points(
                        label(f, op),
                        i,
                        cs.iter().map(|c| (c.depth as f64, c.error.mean)).collect(),
                        cs.iter()
                            .map(|c| {
                                let h = Z95 * c.error.stderr;
                                (c.error.mean - h, c.error.mean + h)
                            })
                            .collect(),
                    )
                })
                .collect();
            base(
                "Best training error vs compositional depth (layer-norm tanh)",
                "compositional depth L",
                "training error",
                false,
                series,
            )
        }
        "effective-depth" => {
            let mut series = vec![Series::line(
                "d = L",
                7,
                s.options
                    .depths
                    .iter()
                    .map(|&d| (d as f64, d as f64))
                    .collect(),
            )];
            for (i, f) in [Family::Plain, Family::Resnet].into_iter().enumerate() {
                let cs = cells(&s, f, Opt::Sgd);
                for (j, (what, pick)) in [("Taylor d_eff", true), ("path-profile depth", false)]
                    .into_iter()
                    .enumerate()
                {
                    let pts: Vec<(f64, (f64, f64))> = cs
                        .iter()
                        .filter_map(|c| {
                            let fr = if pick { &c.d_eff_frac } else { &c.path_frac };
                            (fr.n > 0).then(|| {
                                let l = c.depth as f64;
                                let h = Z95 * fr.stderr.max(0.0);
                                (l, (fr.mean * l, h * l))
                            })
                        })
                        .collect();
                    series.push(Series::points(
                        format!("{}: {what}", label(f, Opt::Sgd)),
                        2 * i + j,
                        pts.iter().map(|(l, (m, _))| (*l, *m)).collect(),
                        pts.iter().map(|(_, (m, h))| (m - h, m + h)).collect(),
                    ));
                }
            }
            base(
                "Effective depth vs compositional depth (SGD)",
                "compositional depth L",
                "depth",
                false,
                series,
            )
        }
        "taylor-curves" => {
            let mut series = Vec::new();
            for (i, f) in [Family::Plain, Family::Resnet].into_iter().enumerate() {
                for (j, c) in cells(&s, f, Opt::Sgd).into_iter().enumerate() {
                    series.push(Series::line(
                        format!("{} L={}", label(f, Opt::Sgd), c.depth),
                        (4 * i + j) % 12,
                        c.taylor
                            .iter()
                            .skip(1)
                            .map(|p| (p.depth as f64, p.train_error))
                            .collect(),
                    ));
                }
            }
            base(
                "Top layers replaced by their Taylor expansion (first seed)",
                "compositional depth after replacement",
                "training error",
                false,
                series,
            )
        }
        "dilution-layers" => {
            let series = [plain_deep, res_deep]
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let layers = c.ln_k.first().map_or(0, Vec::len);
                    let mut pts = Vec::new();
                    let mut bars = Vec::new();
                    for l in 0..layers {
                        let v: Vec<f64> = c
                            .ln_k
                            .iter()
                            .filter_map(|r| r.get(l).copied())
                            .filter(|x| x.is_finite())
                            .collect();
                        if let Some(sm) = crate::stats::Summary::of(&v) {
                            let h = Z95
                                * if sm.stderr.is_finite() {
                                    sm.stderr
                                } else {
                                    0.0
                                };
                            pts.push(((l + 1) as f64, sm.mean.exp()));
                            bars.push(((sm.mean - h).exp(), (sm.mean + h).exp()));
                        }
                    }
                    Series::points(
                        format!("{}, L={}", label(c.family, Opt::Sgd), c.depth),
                        i,
                        pts,
                        bars,
                    )
                })
                .collect();
            base(
                "Dilution k_l = ||initial layer|| / ||change|| after training",
                "layer l",
                "k_l",
                true,
                series,
            )
        }
        _ => {
            // gsc-training: ln GSC(L, l) per layer at steps 0, 1, 10, 100 and the end (plain, SGD, first seed).
            let log = &plain_deep.gsc_log;
            let end = log.last().map_or(0, |g| g.step);
            let mut series = Vec::new();
            for (i, step) in [0u64, 1, 10, 100, end].into_iter().enumerate() {
                if let Some(g) = log.iter().find(|g| g.step == step) {
                    let name = format!("step {step}");
                    if series.iter().any(|x: &Series| x.name == name) {
                        continue;
                    }
                    series.push(Series::line(
                        name,
                        i,
                        g.log_gsc_to_output
                            .iter()
                            .enumerate()
                            .filter(|(_, m)| m.mean.is_finite())
                            .map(|(l, m)| (l as f64, m.mean))
                            .collect(),
                    ));
                }
            }
            base(
                &format!(
                    "ln GSC(L, l) during training (plain, SGD, L={})",
                    plain_deep.depth
                ),
                "layer l",
                "ln GSC(L, l)",
                false,
                series,
            )
        }
    })
}
