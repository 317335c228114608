//! Training experiments behind the seed paper's four training claims (depth limit, Adam, residual trick,
//! effective depth; theory/effective-depth.md, "Experiments"). This is the one place that trains networks
//! for the audit and the figures: it calls `train` and `depth` and returns observables with standard
//! errors over seeds; `claims` only judges them and `plot` only draws them.
//!
//! The design, fixed before measuring: an exploding family (dense -> layer norm -> tanh, per-layer GSC
//! 1.085 at initialisation) and its ResNet version, on the vendored digits set, trained by SGD and by Adam
//! over a stated learning-rate grid; per depth the rate with the lowest mean training error over seeds is
//! chosen, and only then are the trained nets analysed (Taylor-replacement depth, path-profile depth,
//! per-layer dilution k_l, GSC during training).

use crate::arch::{Network, Op};
use crate::data::{self, CsvOptions, Dataset, Split, Standardize};
use crate::depth::residual::residual_decomposition;
use crate::depth::taylor::{effective_depth, Labelled, TaylorPoint};
use crate::depth::{to_columns, DepthOptions};
use crate::error::Result;
use crate::stats::Summary;
use crate::train::{GscLog, Loss, Optimizer, TrainConfig, Trainer};
use crate::Nonlinearity;
use rayon::prelude::*;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// The plain exploding family or its ResNet version.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum Family {
    /// L - 1 layers dense -> layer norm -> tanh, then a linear readout.
    Plain,
    /// One such layer, L - 2 blocks f + (dense -> layer norm -> tanh -> dense) / sqrt(L - 2), the readout.
    Resnet,
}

#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum Opt {
    Sgd,
    Adam,
}

impl Opt {
    fn optimizer(self) -> Optimizer {
        match self {
            Opt::Sgd => Optimizer::Sgd { momentum: 0.0 },
            Opt::Adam => Optimizer::Adam {
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
            },
        }
    }
}

/// The grid of one study.
#[derive(Clone, Debug, Serialize)]
pub struct StudyOptions {
    pub width: usize,
    /// Compositional depths L (hidden layers + readout), each >= 3.
    pub depths: Vec<usize>,
    /// Seeds per configuration (>= 3 for the claims' intervals).
    pub seeds: usize,
    pub seed: u64,
    pub sgd_lrs: Vec<f64>,
    pub adam_lrs: Vec<f64>,
    /// The training budget.
    pub epochs: usize,
    pub batch_size: usize,
    /// Training rows (the first rows of digits' training split, globally standardised).
    pub train_rows: usize,
    /// Rows the trained nets are analysed on (Taylor curve, path profile, dilution).
    pub eval_rows: usize,
    pub tau: f64,
}

impl StudyOptions {
    /// The audit's grid; `quick` is the reduced one (`audit --quick`).
    pub fn audit(quick: bool, seed: u64) -> StudyOptions {
        if quick {
            StudyOptions {
                width: 16,
                depths: vec![3, 12],
                seeds: 3,
                seed,
                sgd_lrs: vec![0.03, 0.1, 0.3],
                adam_lrs: vec![0.001, 0.003, 0.01],
                epochs: 6,
                batch_size: 32,
                train_rows: 384,
                eval_rows: 128,
                tau: 0.01,
            }
        } else {
            StudyOptions {
                width: 24,
                depths: vec![3, 6, 12, 24],
                seeds: 3,
                seed,
                sgd_lrs: vec![0.03, 0.1, 0.3],
                adam_lrs: vec![0.001, 0.003, 0.01],
                epochs: 10,
                batch_size: 32,
                train_rows: 800,
                eval_rows: 200,
                tau: 0.01,
            }
        }
    }
}

fn ln_tanh(width: usize) -> Vec<Op> {
    vec![
        Op::dense(width, 1.0, 0.0),
        Op::LayerNorm { eps: 1e-5 },
        Op::Act(Nonlinearity::Tanh),
    ]
}

/// The network of `family` at compositional depth `depth` (counting the readout). The ResNet's branches
/// are scaled by 1/sqrt(blocks): each block then adds about 1/blocks of the branch's mean square to the
/// forward pass, so ||f||^2 grows by at most a bounded factor (e^c) instead of sqrt(3)^blocks-like growth
/// of unscaled He branches, which makes SGD diverge at depth 20 and beyond.
pub fn network(
    family: Family,
    width: usize,
    depth: usize,
    input: usize,
    classes: usize,
) -> Network {
    let mut layers = vec![ln_tanh(width)];
    let hidden = depth.saturating_sub(2);
    match family {
        Family::Plain => layers.extend((0..hidden).map(|_| ln_tanh(width))),
        Family::Resnet => {
            let alpha = 1.0 / (hidden.max(1) as f64).sqrt();
            let mut branch = ln_tanh(width);
            branch.push(Op::dense(width, 1.0, 0.0));
            layers.extend((0..hidden).map(|_| vec![Op::residual(alpha, branch.clone())]));
        }
    }
    layers.push(vec![Op::dense(classes, 1.0, 0.0)]);
    Network::from_layers(input, 1, layers)
}

/// One configuration's result at its chosen learning rate, over seeds.
#[derive(Clone, Debug, Serialize)]
pub struct Cell {
    pub family: Family,
    pub opt: Opt,
    pub depth: usize,
    /// (learning rate, training error over seeds) for every rate of the grid.
    pub lr_errors: Vec<(f64, Summary)>,
    pub best_lr: f64,
    /// Final training error at the best rate, over seeds.
    pub error: Summary,
    /// The same runs' training error after half the budget (how the verdicts move with the budget).
    pub half_budget_error: Summary,
    /// Seeds whose run diverged (non-finite loss) at the best rate.
    pub diverged: usize,
    /// Taylor-replacement depth d_eff(tau) per seed; None: the net never trained.
    pub d_eff: Vec<Option<usize>>,
    /// d_eff / L over the seeds that trained.
    pub d_eff_frac: Summary,
    /// Path-profile depth (90% of sum c_lambda) per seed, and its truncation error relative to the change.
    pub path_depth: Vec<Option<usize>>,
    pub path_frac: Summary,
    pub truncation_rel: Vec<f64>,
    /// ln k_l per seed and layer (pooled over the evaluation rows; +inf for an unchanged layer).
    pub ln_k: Vec<Vec<f64>>,
    /// Largest relative error of f_l = i_l + r_l over layers and seeds (exactness of the decomposition).
    pub reconstruction_error: f64,
    /// ln GSC(L, l) per seed and layer at initialisation and after training.
    pub ln_gsc_init: Vec<Vec<f64>>,
    pub ln_gsc_end: Vec<Vec<f64>>,
    /// The first seed's GSC log (steps 0, 1, 10, 100 and every epoch end) and Taylor curve.
    pub gsc_log: Vec<GscLog>,
    pub taylor: Vec<TaylorPoint>,
}

/// Every cell of one study.
#[derive(Clone, Debug, Serialize)]
pub struct Study {
    pub options: StudyOptions,
    pub data: String,
    pub cells: Vec<Cell>,
    pub seconds: f64,
}

impl Study {
    pub fn cell(&self, family: Family, opt: Opt, depth: usize) -> Option<&Cell> {
        self.cells
            .iter()
            .find(|c| c.family == family && c.opt == opt && c.depth == depth)
    }
    pub fn shallow(&self) -> usize {
        *self.options.depths.first().expect("depths")
    }
    pub fn deep(&self) -> usize {
        *self.options.depths.last().expect("depths")
    }

    /// (err(deep) - err(shallow)) of `family` under `opt`, with its standard error (independent runs).
    pub fn degradation(&self, family: Family, opt: Opt) -> (f64, f64) {
        self.degradation_of(family, opt, |c| &c.error)
    }

    pub fn degradation_of(&self, family: Family, opt: Opt, f: fn(&Cell) -> &Summary) -> (f64, f64) {
        let a = f(self.cell(family, opt, self.shallow()).expect("cell"));
        let b = f(self.cell(family, opt, self.deep()).expect("cell"));
        (
            b.mean - a.mean,
            (a.stderr.powi(2) + b.stderr.powi(2)).sqrt(),
        )
    }
}

struct Run {
    error: f64,
    half_error: f64,
    diverged: bool,
    trainer: Trainer,
}

fn train_one(
    net: &Network,
    opt: Opt,
    lr: f64,
    seed: u64,
    o: &StudyOptions,
    train: &Dataset,
) -> Result<Run> {
    let cfg = TrainConfig {
        optimizer: opt.optimizer(),
        lr,
        lr_layer: Vec::new(),
        epochs: o.epochs,
        batch_size: o.batch_size,
        seed,
        loss: Loss::SoftmaxCe,
        clip: None,
        gsc_rows: 8,
    };
    let mut t = Trainer::new(net.clone(), cfg, train)?;
    t.run(train, None, &mut |_, _| {}, &mut |_| Ok(()))?;
    // A diverged run counts as untrained: chance-level error (1 - 1/classes would flatter it less than the
    // last finite epoch, which may be the initial one).
    let diverged = t.log.diverged.is_some();
    let err_at = |e: usize| -> f64 {
        if diverged {
            return 1.0;
        }
        t.log
            .epochs
            .iter()
            .find(|x| x.epoch == e)
            .map_or(1.0, |x| x.train_error)
    };
    Ok(Run {
        error: err_at(o.epochs),
        half_error: err_at(o.epochs.div_ceil(2)),
        diverged,
        trainer: t,
    })
}

fn summary(xs: &[f64]) -> Summary {
    Summary::of(xs).unwrap_or(Summary::EMPTY)
}

fn ln_gsc_rows(log: &GscLog) -> Vec<f64> {
    log.log_gsc_to_output.iter().map(|m| m.mean).collect()
}

/// The digits rows a study trains on: digits' training split (first 80%), standardised globally, its
/// first `rows` rows.
pub fn study_data(rows: usize) -> Result<Dataset> {
    let p = data::prepare(
        "digits",
        None,
        &CsvOptions::default(),
        Split::Fixed,
        Standardize::Global,
    )?;
    let n = rows.min(p.train.len());
    Ok(p.train.slice(0..n, ""))
}

/// Runs the study: every (family, optimiser, depth, rate, seed), then the analysis of the best rate's nets.
pub fn run_study(o: &StudyOptions) -> Result<Study> {
    let start = std::time::Instant::now();
    let train = study_data(o.train_rows)?;
    let classes = train.classes;
    let mut configs = Vec::new();
    for family in [Family::Plain, Family::Resnet] {
        for opt in [Opt::Sgd, Opt::Adam] {
            for &depth in &o.depths {
                configs.push((family, opt, depth));
            }
        }
    }
    let mut jobs = Vec::new();
    for (ci, &(_, opt, _)) in configs.iter().enumerate() {
        let lrs = match opt {
            Opt::Sgd => &o.sgd_lrs,
            Opt::Adam => &o.adam_lrs,
        };
        for (li, &lr) in lrs.iter().enumerate() {
            for s in 0..o.seeds {
                jobs.push((ci, li, lr, s));
            }
        }
    }
    // Each run has its own seed (the seed index, not the job's position), so the results do not depend
    // on the thread count.
    let runs: Vec<Run> = jobs
        .par_iter()
        .map(|&(ci, _, lr, s)| {
            let (family, opt, depth) = configs[ci];
            let net = network(family, o.width, depth, train.dim(), classes);
            train_one(&net, opt, lr, o.seed + 1000 * s as u64 + 17, o, &train)
        })
        .collect::<Result<_>>()?;
    let eval = train.slice(0..o.eval_rows.min(train.len()), "");
    let x = to_columns(&eval.x);
    let mut cells = Vec::new();
    for (ci, &(family, opt, depth)) in configs.iter().enumerate() {
        let mine: Vec<(usize, &Run)> = jobs
            .iter()
            .zip(&runs)
            .filter(|(j, _)| j.0 == ci)
            .map(|(j, r)| (j.1, r))
            .collect();
        let lrs = match opt {
            Opt::Sgd => &o.sgd_lrs,
            Opt::Adam => &o.adam_lrs,
        };
        let lr_errors: Vec<(f64, Summary)> = lrs
            .iter()
            .enumerate()
            .map(|(li, &lr)| {
                let e: Vec<f64> = mine
                    .iter()
                    .filter(|(l, _)| *l == li)
                    .map(|(_, r)| r.error)
                    .collect();
                (lr, summary(&e))
            })
            .collect();
        let best = (0..lrs.len())
            .min_by(|&a, &b| lr_errors[a].1.mean.total_cmp(&lr_errors[b].1.mean))
            .expect("a rate");
        let best_runs: Vec<&Run> = mine
            .iter()
            .filter(|(l, _)| *l == best)
            .map(|(_, r)| *r)
            .collect();
        cells.push(analyse(
            family, opt, depth, lr_errors, best, &best_runs, &eval, &x, o,
        )?);
    }
    Ok(Study {
        options: o.clone(),
        data: format!(
            "digits (UCI optical digits, 8x8): first {} rows of the training split, standardised globally",
            train.len()
        ),
        cells,
        seconds: start.elapsed().as_secs_f64(),
    })
}

#[allow(clippy::too_many_arguments)]
fn analyse(
    family: Family,
    opt: Opt,
    depth: usize,
    lr_errors: Vec<(f64, Summary)>,
    best: usize,
    runs: &[&Run],
    eval: &Dataset,
    x: &nalgebra::DMatrix<f64>,
    o: &StudyOptions,
) -> Result<Cell> {
    let labelled = Labelled { x, labels: &eval.y };
    let dopts = DepthOptions::default();
    let per: Vec<_> = runs
        .par_iter()
        .map(|r| {
            let t = &r.trainer;
            let ed = effective_depth(&t.net, &t.init, &t.params, labelled, None, o.tau, &dopts)?;
            let rd = residual_decomposition(&t.net, &t.init, &t.params, x, &dopts)?;
            Ok((ed, rd))
        })
        .collect::<Result<Vec<_>>>()?;
    let l = depth as f64;
    let d_eff: Vec<Option<usize>> = per.iter().map(|(e, _)| e.d_eff).collect();
    let path_depth: Vec<Option<usize>> =
        per.iter().map(|(e, _)| e.d_eff.and(e.path_depth)).collect();
    let frac = |v: &[Option<usize>]| {
        summary(
            &v.iter()
                .flatten()
                .map(|&d| d as f64 / l)
                .collect::<Vec<_>>(),
        )
    };
    Ok(Cell {
        family,
        opt,
        depth,
        best_lr: lr_errors[best].0,
        error: summary(&runs.iter().map(|r| r.error).collect::<Vec<_>>()),
        half_budget_error: summary(&runs.iter().map(|r| r.half_error).collect::<Vec<_>>()),
        lr_errors,
        diverged: runs.iter().filter(|r| r.diverged).count(),
        d_eff_frac: frac(&d_eff),
        path_frac: frac(&path_depth),
        d_eff,
        path_depth,
        truncation_rel: per.iter().map(|(e, _)| e.paths.truncation_rel).collect(),
        ln_k: per
            .iter()
            .map(|(_, r)| r.layers.iter().map(|x| x.k_pooled.ln()).collect())
            .collect(),
        reconstruction_error: per
            .iter()
            .flat_map(|(_, r)| r.layers.iter().map(|x| x.reconstruction_error))
            .fold(0.0, f64::max),
        ln_gsc_init: runs
            .iter()
            .map(|r| {
                r.trainer
                    .log
                    .gsc
                    .first()
                    .map(ln_gsc_rows)
                    .unwrap_or_default()
            })
            .collect(),
        ln_gsc_end: runs
            .iter()
            .map(|r| {
                r.trainer
                    .log
                    .gsc
                    .last()
                    .map(ln_gsc_rows)
                    .unwrap_or_default()
            })
            .collect(),
        gsc_log: runs
            .first()
            .map(|r| r.trainer.log.gsc.clone())
            .unwrap_or_default(),
        taylor: per
            .first()
            .map(|(e, _)| e.points.clone())
            .unwrap_or_default(),
    })
}

/// Studies run in this process, by (quick, seed).
type StudyCache = HashMap<(bool, u64), Arc<Study>>;

/// The audit's study for (quick, seed), run once per process: the four claims and the figures share it.
pub fn audit_study(quick: bool, seed: u64) -> Result<Arc<Study>> {
    static CACHE: OnceLock<Mutex<StudyCache>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    let mut g = cache.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(s) = g.get(&(quick, seed)) {
        return Ok(s.clone());
    }
    let s = Arc::new(run_study(&StudyOptions::audit(quick, seed))?);
    g.insert((quick, seed), s.clone());
    Ok(s)
}

/// Pearson correlation across layers of ln k_l with ln GSC(L, l) at initialisation, per seed, over the
/// layers below the readout whose k is finite: positive when the layers the GSC marks as hard to train
/// (large GSC to the output) are the ones whose residual stayed small relative to their skip.
pub fn dilution_gsc_correlation(cell: &Cell) -> Vec<f64> {
    cell.ln_k
        .iter()
        .zip(&cell.ln_gsc_init)
        .filter_map(|(k, g)| {
            // Layer l (from 1) has parameters whose gradient is scaled by GSC(L, l); the readout is left
            // out (its GSC to the output is 1 by definition).
            let pts: Vec<(f64, f64)> = (0..k.len().saturating_sub(1))
                .filter(|&i| k[i].is_finite() && i + 1 < g.len() && g[i + 1].is_finite())
                .map(|i| (k[i], g[i + 1]))
                .collect();
            pearson(&pts)
        })
        .collect()
}

fn pearson(p: &[(f64, f64)]) -> Option<f64> {
    if p.len() < 3 {
        return None;
    }
    let n = p.len() as f64;
    let (mx, my) = (
        p.iter().map(|v| v.0).sum::<f64>() / n,
        p.iter().map(|v| v.1).sum::<f64>() / n,
    );
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for &(x, y) in p {
        sxy += (x - mx) * (y - my);
        sxx += (x - mx).powi(2);
        syy += (y - my).powi(2);
    }
    (sxx > 0.0 && syy > 0.0).then(|| sxy / (sxx * syy).sqrt())
}
