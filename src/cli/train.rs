//! `gradscale train`: train a network on a data set, write its checkpoints, architecture file and log.

use super::args::{nonneg_f64, pos_f64, positive_usize};
use gradscale::arch::{to_toml_string, Network, ParamNames};
use gradscale::checkpoint::{self, write_atomic, SafeTensors, Tensor};
use gradscale::data::{self, CsvOptions, Split, Standardize};
use gradscale::train::{
    gsc_rows, mlp_classifier, Loss, OptState, Optimizer, TrainConfig, TrainLog, Trainer,
};
use gradscale::verify::step0::{check_step0, Step0Options, Step0Report};
use gradscale::{Error, Nonlinearity, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

fn nonlinearity(s: &str) -> std::result::Result<Nonlinearity, String> {
    s.parse()
}

/// `l=x,...` as one flag value (clap would read a bare Vec as repeated values).
#[derive(Clone, Debug)]
pub struct LrLayers(pub Vec<(usize, f64)>);

fn lr_layers(s: &str) -> std::result::Result<LrLayers, String> {
    let v: std::result::Result<Vec<(usize, f64)>, String> = s
        .split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            let (l, x) = p
                .split_once('=')
                .ok_or("expected l=x,... (layer from 1 = multiplier)")?;
            let l: usize = l
                .trim()
                .parse()
                .map_err(|_| format!("layer {l:?} is not an integer >= 1"))?;
            let x: f64 = x
                .trim()
                .parse()
                .map_err(|_| format!("multiplier {x:?} is not a number"))?;
            if l == 0 || !(x.is_finite() && x >= 0.0) {
                return Err("expected l=x with l >= 1 and a finite x >= 0".to_string());
            }
            Ok((l, x))
        })
        .collect();
    v.map(LrLayers)
}

#[derive(Clone, Copy, Debug, clap::ValueEnum, Serialize, Deserialize, PartialEq)]
pub enum OptName {
    Sgd,
    Adam,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum, Serialize, Deserialize, PartialEq)]
pub enum LossName {
    /// Softmax cross-entropy.
    Ce,
    /// Mean squared error against one-hot targets.
    Mse,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum, Serialize, Deserialize, PartialEq)]
pub enum SplitName {
    Fixed,
    None,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum, Serialize, Deserialize, PartialEq)]
pub enum StdName {
    Feature,
    Global,
    None,
}

/// The data flags, kept in log.json so `--resume` reads the same rows.
#[derive(clap::Args, Debug, Clone, Serialize, Deserialize)]
pub struct DataArgs {
    /// Data: `digits` (embedded, 1797 8x8 images, 10 classes), `fashion-mnist` (Debian's
    /// dataset-fashion-mnist), or a file: CSV (label in the last column), or `.npy`/IDX features with --labels.
    #[arg(long, default_value = "digits")]
    pub data: String,
    /// Labels for `.npy` or IDX features (gzipped or not).
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// CSV: the first row is a header (default: detected, a first row with no number is a header).
    #[arg(long, conflicts_with = "no_header")]
    pub header: bool,
    /// CSV: the first row is data (an error names it if it is not numeric).
    #[arg(long = "no-header")]
    #[serde(default)]
    pub no_header: bool,
    /// CSV: the label column, counted from 1 (default: the last).
    #[arg(long = "label-column", value_parser = positive_usize)]
    pub label_column: Option<usize>,
    /// Train/test split: `fixed` (Fashion-MNIST's own; otherwise the last 20% of rows in file order are
    /// the test set) or `none` (train on every row).
    #[arg(long, value_enum, default_value = "fixed")]
    pub split: SplitName,
    /// Input standardisation with the training rows' statistics: `global` (one mean and standard deviation
    /// over all values, as for pixels), `feature` (a z-score per feature) or `none` (values as they are).
    #[arg(long, value_enum, default_value = "global")]
    pub standardize: StdName,
}

impl DataArgs {
    pub fn prepare(&self) -> Result<data::Prepared> {
        data::prepare(
            &self.data,
            self.labels.as_deref(),
            &CsvOptions {
                header: if self.header {
                    Some(true)
                } else if self.no_header {
                    Some(false)
                } else {
                    None
                },
                label_column: self.label_column.map(|c| c - 1),
            },
            match self.split {
                SplitName::Fixed => Split::Fixed,
                SplitName::None => Split::None,
            },
            match self.standardize {
                StdName::Feature => Standardize::Feature,
                StdName::Global => Standardize::Global,
                StdName::None => Standardize::None,
            },
        )
    }
}

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Architecture file (TOML); its last layer must be a linear readout (one dense op) with at least one
    /// output per class. Replaces --act/--width/--depth/--sigma-w2/--sigma-b2.
    #[arg(long)]
    pub arch: Option<PathBuf>,
    /// Nonlinearity of the hidden layers (with flags).
    #[arg(long, default_value = "relu", value_parser = nonlinearity, allow_hyphen_values = true)]
    pub act: Nonlinearity,
    /// Hidden width (with flags; the input width is the data's, a linear readout maps to the classes).
    #[arg(long, default_value_t = 64, value_parser = positive_usize)]
    pub width: usize,
    /// Hidden layers (with flags).
    #[arg(long, default_value_t = 3, value_parser = positive_usize)]
    pub depth: usize,
    /// Weight variance of the hidden layers. Default: 2/(1+a^2) for relu/leaky-relu (He), 1 otherwise.
    #[arg(long = "sigma-w2", value_parser = pos_f64)]
    pub sigma_w2: Option<f64>,
    /// Bias variance at initialisation.
    #[arg(long = "sigma-b2", default_value_t = 0.0, value_parser = nonneg_f64)]
    pub sigma_b2: f64,
    #[command(flatten)]
    pub data: DataArgs,
    /// Optimiser: plain SGD (no momentum or weight decay unless asked) or Adam (beta1 0.9, beta2 0.999, eps 1e-8, bias-corrected).
    #[arg(long, value_enum, default_value = "sgd")]
    pub optimizer: OptName,
    /// Learning rate.
    #[arg(long, default_value_t = 0.05, value_parser = pos_f64)]
    pub lr: f64,
    /// SGD momentum (0: none).
    #[arg(long, default_value_t = 0.0, value_parser = nonneg_f64)]
    pub momentum: f64,
    /// Per-layer learning-rate multipliers, "l=x,...", layers counted from 1 (the readout is the last).
    #[arg(long = "lr-layer", value_parser = lr_layers)]
    pub lr_layer: Option<LrLayers>,
    /// Rescale the gradient to this norm when it is larger (steps clipped are counted per epoch).
    #[arg(long, value_parser = pos_f64)]
    pub clip: Option<f64>,
    /// Loss: the mean over the minibatch of softmax cross-entropy or squared error to one-hot targets.
    #[arg(long, value_enum, default_value = "ce")]
    pub loss: LossName,
    /// Epochs [default: 10]; with --resume, the total to reach (default: the run's own).
    #[arg(long, value_parser = positive_usize)]
    pub epochs: Option<usize>,
    /// Minibatch size; the number of training rows gives full-batch gradient descent (one step per epoch).
    #[arg(long = "batch-size", default_value_t = 64, value_parser = positive_usize)]
    pub batch_size: usize,
    /// Seed of the initial weights and the minibatch order; the same seed gives the same bits on any thread count.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Training rows on which ln GSC is measured at steps 0, 1, 10, 100 and each epoch end.
    #[arg(long = "gsc-rows", default_value_t = 32, value_parser = positive_usize)]
    pub gsc_rows: usize,
    /// Networks sampled from the initial distribution for the step-0 comparison with the closed form
    /// (their spread is the across-network part of its tolerance).
    #[arg(long = "check-samples", default_value_t = 200, value_parser = positive_usize)]
    pub check_samples: usize,
    /// Output directory: init.safetensors, trained.safetensors, arch.toml, log.json, state.safetensors.
    #[arg(long, default_value = "run")]
    pub out: PathBuf,
    /// Continue the run in this directory from its last epoch checkpoint (same result as not stopping); other flags are read from its log.json.
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Worker threads (default: all cores). Results do not depend on it.
    #[arg(long, value_parser = positive_usize)]
    pub threads: Option<usize>,
    /// Print the final log as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

fn train_schema() -> String {
    "gradscale.train/1".into()
}

/// Everything a run needs to be resumed, saved in log.json next to the log itself.
#[derive(Serialize, Deserialize)]
struct LogFile {
    /// "gradscale.train/1"; absent in logs written before the tag existed.
    #[serde(default = "train_schema")]
    schema: String,
    command: String,
    data: DataArgs,
    split: String,
    train_rows: usize,
    test_rows: Option<usize>,
    classes: usize,
    config: TrainConfig,
    /// Step 0 against the closed form of the initial distribution, or why there is none.
    #[serde(default)]
    step0_check: Step0Check,
    log: TrainLog,
}

#[derive(Serialize, Deserialize, Clone, Default)]
struct Step0Check {
    report: Option<Step0Report>,
    note: Option<String>,
}

fn step0(t: &mut Trainer, prep: &data::Prepared, samples: usize) -> Result<Step0Check> {
    t.log_step0(&prep.train)?;
    let rows = gsc_rows(&t.net, &prep.train, t.cfg.gsc_rows)?;
    let opts = Step0Options {
        samples,
        seed: t.cfg.seed,
        ..Step0Options::default()
    };
    Ok(match check_step0(&t.net, rows, &t.log.gsc[0], &opts) {
        Ok(r) => Step0Check {
            report: Some(r),
            note: None,
        },
        // An architecture without a closed form still trains; the log says why it is not compared.
        Err(e @ Error::Unsupported(_)) => Step0Check {
            report: None,
            note: Some(format!("step 0 not compared with the closed form: {e}")),
        },
        Err(e) => return Err(e),
    })
}

fn in_pool<T: Send>(threads: Option<usize>, f: impl FnOnce() -> T + Send) -> T {
    match threads.and_then(|n| rayon::ThreadPoolBuilder::new().num_threads(n).build().ok()) {
        Some(pool) => pool.install(f),
        None => f(),
    }
}

fn write_json(path: &Path, v: &impl Serialize) -> Result<()> {
    write_atomic(
        path,
        serde_json::to_string_pretty(v).expect("json").as_bytes(),
    )
}

fn state_tensors(net: &Network, names: &ParamNames, t: &Trainer) -> BTreeMap<String, Tensor> {
    let mut out = checkpoint::to_tensors(net, names, &t.params);
    for (prefix, p) in [
        ("optimizer.m.", &t.state.m),
        ("optimizer.v.", &t.state.v),
        ("init.", &t.init),
    ] {
        for (k, v) in checkpoint::to_tensors(net, names, p) {
            out.insert(format!("{prefix}{k}"), v);
        }
    }
    out
}

fn save(dir: &Path, names: &ParamNames, t: &Trainer, lf: &LogFile) -> Result<()> {
    let meta: BTreeMap<String, String> = [
        ("format".to_string(), "gradscale".to_string()),
        ("epoch".to_string(), t.epoch.to_string()),
        ("step".to_string(), t.state.step.to_string()),
    ]
    .into();
    checkpoint::save_params_file(
        &t.net,
        names,
        &t.params,
        &dir.join("trained.safetensors"),
        &meta,
    )?;
    write_atomic(
        &dir.join("state.safetensors"),
        &checkpoint::serialize(&state_tensors(&t.net, names, t), &meta),
    )?;
    write_json(&dir.join("log.json"), lf)
}

fn sub(st: &SafeTensors, prefix: &str, path: &str) -> Result<SafeTensors> {
    let mut m = BTreeMap::new();
    for n in st.names() {
        if let Some(rest) = n.strip_prefix(prefix) {
            m.insert(rest.to_string(), st.tensor(n)?);
        }
    }
    SafeTensors::parse(checkpoint::serialize(&m, &BTreeMap::new()), path)
}

fn resume(dir: &Path, epochs: Option<usize>, threads: Option<usize>, json: bool) -> Result<String> {
    let d = dir.display();
    let text = std::fs::read_to_string(dir.join("log.json")).map_err(|e| Error::File {
        path: format!("{d}/log.json"),
        message: e.to_string(),
    })?;
    let mut lf: LogFile = serde_json::from_str(&text).map_err(|e| Error::File {
        path: format!("{d}/log.json"),
        message: format!("not a train log: {e}"),
    })?;
    if let Some(e) = epochs {
        lf.config.epochs = e;
    }
    if lf.log.diverged.is_some() {
        return Err(Error::Unsupported(format!(
            "{d}: that run diverged; start a new run (e.g. with a smaller --lr)"
        )));
    }
    let (net, names) = gradscale::arch::load_file_named(&dir.join("arch.toml"))?;
    let prep = lf.data.prepare()?;
    let st = SafeTensors::read_file(&dir.join("state.safetensors"))?;
    let sp = format!("{d}/state.safetensors");
    let mut t = Trainer::new(net, lf.config.clone(), &prep.train)?;
    t.params = checkpoint::load_params(&t.net, &names, &st)?;
    t.init = checkpoint::load_params(&t.net, &names, &sub(&st, "init.", &sp)?)?;
    let m = checkpoint::load_params(&t.net, &names, &sub(&st, "optimizer.m.", &sp)?)?;
    let v = checkpoint::load_params(&t.net, &names, &sub(&st, "optimizer.v.", &sp)?)?;
    // Running statistics are in the parameters, not in the optimiser buffers.
    t.state = OptState {
        step: lf.log.epochs.last().map_or(0, |e| e.step),
        m: strip(m),
        v: strip(v),
    };
    t.epoch = lf.log.epochs.len();
    t.log = lf.log.clone();
    run_trainer(t, names, prep, lf.data, lf.step0_check, dir, threads, json)
}

fn strip(p: gradscale::montecarlo::NetParams) -> gradscale::montecarlo::NetParams {
    use gradscale::montecarlo::OpParams;
    fn f(p: OpParams) -> OpParams {
        match p {
            OpParams::Norm { scale, shift, .. } => OpParams::Norm {
                scale,
                shift,
                running_mean: None,
                running_var: None,
            },
            OpParams::Residual { branch, .. } => OpParams::Residual {
                skip: None,
                branch: branch.into_iter().map(f).collect(),
            },
            p => p,
        }
    }
    p.into_iter()
        .map(|l| l.into_iter().map(f).collect())
        .collect()
}

pub fn run(a: &Args) -> Result<String> {
    if let Some(dir) = &a.resume {
        return resume(dir, a.epochs, a.threads, a.json);
    }
    let prep = a.data.prepare()?;
    let net = match &a.arch {
        Some(p) => gradscale::arch::load_file(p)?,
        None => {
            let sw = a
                .sigma_w2
                .unwrap_or_else(|| gradscale::arch::MlpSpec::default_sigma_w2(a.act));
            mlp_classifier(
                prep.train.dim(),
                a.width,
                a.depth,
                prep.train.classes,
                a.act,
                sw,
                a.sigma_b2,
            )?
        }
    };
    let cfg = TrainConfig {
        optimizer: match a.optimizer {
            OptName::Sgd => Optimizer::Sgd {
                momentum: a.momentum,
            },
            OptName::Adam => Optimizer::Adam {
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
            },
        },
        lr: a.lr,
        lr_layer: a.lr_layer.clone().map(|l| l.0).unwrap_or_default(),
        epochs: a.epochs.unwrap_or(10),
        batch_size: a.batch_size,
        seed: a.seed,
        loss: match a.loss {
            LossName::Ce => Loss::SoftmaxCe,
            LossName::Mse => Loss::Mse,
        },
        clip: a.clip,
        gsc_rows: a.gsc_rows,
    };
    let names = checkpoint::explicit_names(&net);
    let mut t = Trainer::new(net, cfg, &prep.train)?;
    std::fs::create_dir_all(&a.out).map_err(|e| Error::File {
        path: a.out.display().to_string(),
        message: e.to_string(),
    })?;
    write_atomic(
        &a.out.join("arch.toml"),
        to_toml_string(&t.net, &names, "trained by gradscale train").as_bytes(),
    )?;
    checkpoint::save_params_file(
        &t.net,
        &names,
        &t.params,
        &a.out.join("init.safetensors"),
        &BTreeMap::new(),
    )?;
    let s0 = in_pool(a.threads, || step0(&mut t, &prep, a.check_samples))?;
    run_trainer(
        t,
        names,
        prep,
        a.data.clone(),
        s0,
        &a.out,
        a.threads,
        a.json,
    )
}

#[allow(clippy::too_many_arguments)]
fn run_trainer(
    mut t: Trainer,
    names: ParamNames,
    prep: data::Prepared,
    data_args: DataArgs,
    step0_check: Step0Check,
    dir: &Path,
    threads: Option<usize>,
    json: bool,
) -> Result<String> {
    let tty = std::io::stderr().is_terminal();
    let mk = |t: &Trainer| LogFile {
        schema: train_schema(),
        command: "train".into(),
        data: data_args.clone(),
        split: prep.split.clone(),
        train_rows: prep.train.len(),
        test_rows: prep.test.as_ref().map(|d| d.len()),
        classes: prep.train.classes,
        config: t.cfg.clone(),
        step0_check: step0_check.clone(),
        log: t.log.clone(),
    };
    let epochs = t.cfg.epochs;
    let body = |t: &mut Trainer| -> Result<()> {
        let epoch_no = std::cell::Cell::new(t.epoch);
        let mut on_batch = |done: usize, total: usize| {
            if tty {
                eprint!(
                    "\rtrain: epoch {}/{epochs}, batch {done}/{total}   ",
                    epoch_no.get() + 1
                );
            }
        };
        let mut on_epoch = |tr: &Trainer| -> Result<()> {
            epoch_no.set(tr.epoch);
            save(dir, &names, tr, &mk(tr))
        };
        t.run(
            &prep.train,
            prep.test.as_ref(),
            &mut on_batch,
            &mut on_epoch,
        )
    };
    in_pool(threads, || body(&mut t))?;
    if tty {
        eprint!("\r\x1b[2K");
    }
    let lf = mk(&t);
    write_json(&dir.join("log.json"), &lf)?;
    if let Some(dv) = &t.log.diverged {
        return Err(Error::Unsupported(format!(
            "training diverged at step {} (epoch {}): {}; {} keeps the last finite checkpoint (epoch {}) and the log",
            dv.step,
            dv.epoch,
            dv.message,
            dir.display(),
            t.log.epochs.len()
        )));
    }
    if json {
        return Ok(format!(
            "{}\n",
            serde_json::to_string_pretty(&lf).expect("json")
        ));
    }
    let mut s = String::new();
    let _ = writeln!(
        s,
        "trained on {} ({} training rows, {} test rows; split {}), {} epochs, {} steps; wrote {}/{{init,trained,state}}.safetensors, arch.toml, log.json",
        data_args.data,
        prep.train.len(),
        prep.test.as_ref().map_or(0, |d| d.len()),
        prep.split,
        t.epoch,
        t.state.step,
        dir.display()
    );
    let _ = writeln!(
        s,
        "{:>6} {:>7} {:>11} {:>11} {:>11} {:>11} {:>8}",
        "epoch", "step", "train loss", "train err", "test loss", "test err", "clipped"
    );
    let o = |x: Option<f64>| x.map(|v| format!("{v:.4}")).unwrap_or_else(|| "-".into());
    for e in &t.log.epochs {
        let _ = writeln!(
            s,
            "{:>6} {:>7} {:>11.4} {:>11.4} {:>11} {:>11} {:>8}",
            e.epoch,
            e.step,
            e.train_loss,
            e.train_error,
            o(e.test_loss),
            o(e.test_error),
            e.clipped_steps
        );
    }
    let _ = writeln!(
        s,
        "ln GSC(L, 0) on {} training rows (mean +- se) by step:",
        t.cfg.gsc_rows
    );
    for g in &t.log.gsc {
        let v = g.log_gsc_to_output[0];
        let _ = writeln!(
            s,
            "  step {:>6}: {:>9.4} +- {:.4}",
            g.step, v.mean, v.stderr
        );
    }
    if let Some(n) = &step0_check.note {
        let _ = writeln!(s, "note: {n}");
    }
    if let Some(r) = &step0_check.report {
        let _ = writeln!(
            s,
            "step 0 against the closed form of the initial distribution (input q0 {:.4}, correlation {:.4} of the GSC rows): \
             tolerance = {:.2} sqrt(sd_networks^2 + se_rows^2) + {} * (sum of 1/n over layers spanned), sd over {} sampled networks [family false-alarm {}]",
            r.input_q0, r.input_correlation, r.z_crit, r.options.kappa, r.options.samples, r.options.family_alpha
        );
        let _ = writeln!(
            s,
            "{:<14} {:>5} {:>11} {:>11} {:>9} {:>11} {:>11}  verdict",
            "quantity", "l", "predicted", "measured", "se rows", "sd networks", "tolerance"
        );
        for c in &r.comparisons {
            let _ = writeln!(
                s,
                "{:<14} {:>5} {:>11.4} {:>11.4} {:>9.4} {:>11.4} {:>11.4}  {}",
                c.quantity,
                c.layer,
                c.predicted,
                c.measured,
                c.se_rows,
                c.sd_networks,
                c.tolerance,
                if c.verdict == "disagree" {
                    "DISAGREE"
                } else {
                    &c.verdict
                }
            );
        }
        let _ = writeln!(
            s,
            "step 0: {} agree, {} disagree, {} inconclusive{}",
            r.agree,
            r.disagree,
            r.inconclusive,
            if r.disagree > 0 {
                format!(
                    "; the measured GSC disagrees with the closed form at {}",
                    r.disagreements()
                )
            } else {
                String::new()
            }
        );
    }
    Ok(s)
}
