//! Subcommands. Errors a user can cause are one line on stderr and exit code 2; nothing is printed on
//! stdout before the whole result is ready, so a failed run leaves no partial output.

mod args;
mod audit;
mod bench;
mod blocks;
mod check;
mod collapse;
mod diagnose;
mod effective_depth;
mod finite;
mod phase;
mod plot;
mod predict;
mod residual;
mod simulate;
mod sweep;
mod train;

use clap::{Parser, Subcommand};
use std::io::IsTerminal;

pub use args::{McArgs, NetArgs};

#[derive(Parser)]
#[command(
    name = "gradscale",
    version,
    about = "Exploding gradients and domain collapse in randomly initialised networks: closed-form predictions, Monte Carlo measurements, and the verdicts between them.",
    long_about = "Exploding gradients and domain collapse in randomly initialised networks.\n\n\
The gradient scale coefficient GSC(k, l) = ||df_k/df_l||_qm * ||f_l|| / ||f_k|| (||J||_qm = ||J||_F / sqrt(dim f_l)) \
measures how much a relative change of layer l moves layer k; a network explodes with rate r when GSC(L, L-l) grows like r^l \
(Philipp, Song & Carbonell, arXiv 1712.05577). Layers are counted from the input: f_0 is the input, f_L the output.\n\n\
  diagnose  will this network's gradients explode, and what to change (start here)\n\
  predict   closed-form (infinite-width, mean-field) prediction\n\
  simulate  Monte Carlo measurement over sampled networks\n\
  check     both, side by side, with z-scores and verdicts\n\
  plot      figures: theory as lines, measurements as points\n\
  audit     every claim of the seed paper and every closed form, with verdicts\n\
  bench     timings against this machine's matrix-product peak\n\
  blocks    residual networks block by block (Pythagorean equation)\n\
  collapse  domain collapse over a batch: correlation, std, sign diversity\n\
  phase     the (sigma_w^2, sigma_b^2) phase diagram\n\n\
Example: gradscale diagnose --act tanh --width 256 --depth 20 --init xavier --sigma-b2 0.01"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The practitioner's question: do this network's gradients explode or vanish (GSC(L, 0), rate, where), when does its domain collapse, its phase, and advice from the same closed forms (edge-of-chaos sigma_w^2, ResNet alpha, widths where fluctuations matter, what does not help).
    Diagnose(diagnose::Args),
    /// Closed-form prediction at infinite width: q_l, ||f_l||^2/n, ln GSC(L, l), ln GSC(l, 0), the fitted explosion rate, and the fixed point (chi_1, depth scales) of a uniform MLP; plus the law of ln GSC(L, l) at the network's own finite widths (theory/finite-width.md).
    Predict(predict::Args),
    /// Monte Carlo: sample networks and inputs from --seed and measure ||f_l||^2/n, ln GSC(L, l) and ln GSC(l, 0) (mean, standard error, median).
    Simulate(simulate::Args),
    /// Predict and simulate the same network, and compare every quantity with a z-score and a verdict; then the finite-width law against the measured distribution (mean, variance, KS, degenerate fraction).
    Check(check::Args),
    /// Draw figures (closed form as lines, Monte Carlo as points with 95% error bars) as PNG, SVG and CSV.
    Plot(plot::Args),
    /// Run the claims registry (the seed paper's abstract and every closed form) and write a report with verdicts.
    Audit(audit::Args),
    /// Time both engines against this machine's f64 matrix-product peak (measured in the same run): GFLOP/s and fraction of peak per workload, the closed-form phase grid, and optional scaling sweeps.
    Bench(bench::Args),
    /// Residual networks, block by block: the dilution k = |s|/|alpha rho|, GSC of skip, branch and block, predicted and measured, and the measured cross terms that the Pythagorean equation drops.
    Blocks(blocks::Args),
    /// Collapse metrics per layer over a batch (pairwise correlation, pre-activation std across inputs, sign diversity): predicted and measured.
    Collapse(collapse::Args),
    /// Phase diagram over (sigma_w^2, sigma_b^2): chi_1, per-layer GSC, c*, xi_c and the depth where sign diversity falls below a threshold.
    Phase(phase::Args),
    /// Train a network on a data set (digits embedded, Fashion-MNIST, CSV, .npy, IDX): writes init/trained safetensors checkpoints, the architecture file that reloads them, and log.json with loss, error and ln GSC on training data over training.
    Train(train::Args),
    /// The residual trick on a trained network: each layer = its initial version (skip) + the change (residual); per layer the dilution k, GSC of skip, residual and trained layer, the Pythagorean prediction and its cross terms, on data.
    Residual(residual::Args),
    /// Effective depth of a trained network: train/test error with the top m layers replaced by their first-order Taylor expansion in the parameters, d_eff(tau), and the path-length profile beside it.
    EffectiveDepth(effective_depth::Args),
    /// A grid of networks x observables x seeds (spec file): run in this process (CSV, or --json), or printed as self-contained job lines (--emit-jobs) for `run-job` under GNU parallel or a Slurm array.
    Sweep(sweep::Args),
    /// Run job lines of `sweep --emit-jobs` (from --job or stdin): one result line per job.
    RunJob(sweep::RunJobArgs),
    /// Combine `run-job` result lines (any order) into the report `sweep` prints, byte for byte; every job of the spec exactly once.
    Merge(sweep::MergeArgs),
}

/// Set by a command that ran and printed its output but whose result is a failure (an audit that
/// contradicted a built-in claim or could not reject a control): the process exits with it (1).
static EXIT_CODE: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

pub fn set_exit_code(code: i32) {
    EXIT_CODE.store(code, std::sync::atomic::Ordering::Relaxed);
}

/// Runs the CLI and returns the exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            match e.kind() {
                ErrorKind::DisplayHelp
                | ErrorKind::DisplayVersion
                | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                    let _ = e.print();
                    return if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                        2
                    } else {
                        0
                    };
                }
                _ => {
                    // One line: clap's first line names the flag; our value parsers add the accepted range.
                    let text = e.render().to_string();
                    let first = text.lines().next().unwrap_or("error: invalid arguments");
                    eprintln!("{first}");
                    return 2;
                }
            }
        }
    };
    let result = match cli.command {
        Command::Diagnose(a) => diagnose::run(&a),
        Command::Predict(a) => predict::run(&a),
        Command::Simulate(a) => simulate::run(&a),
        Command::Check(a) => check::run(&a),
        Command::Plot(a) => plot::run(&a),
        Command::Audit(a) => audit::run(&a),
        Command::Bench(a) => bench::run(&a),
        Command::Blocks(a) => blocks::run(&a),
        Command::Collapse(a) => collapse::run(&a),
        Command::Phase(a) => phase::run(&a),
        Command::Train(a) => train::run(&a),
        Command::Residual(a) => residual::run(&a),
        Command::EffectiveDepth(a) => effective_depth::run(&a),
        Command::Sweep(a) => sweep::run(&a),
        Command::RunJob(a) => sweep::run_job(&a),
        Command::Merge(a) => sweep::merge(&a),
    };
    match result {
        Ok(text) => {
            use std::io::Write;
            // A reader that stops early (`| head`) closes the pipe: that is not an error of ours.
            match std::io::stdout().lock().write_all(text.as_bytes()) {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                    eprintln!("error: writing the output: {e}");
                    2
                }
                _ => EXIT_CODE.load(std::sync::atomic::Ordering::Relaxed),
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            2
        }
    }
}

/// A progress line on stderr when it is a terminal (never in pipes or CI logs).
pub fn progress_reporter(total: usize, what: &'static str) -> impl Fn(usize) + Sync {
    let tty = std::io::stderr().is_terminal();
    let step = (total / 100).max(1);
    let start = std::time::Instant::now();
    move |done: usize| {
        if tty && (done.is_multiple_of(step) || done == total) {
            // Samples cost alike, so the rate so far extrapolates to the rest.
            let elapsed = start.elapsed().as_secs_f64();
            let eta = if done > 0 {
                format!(
                    ", ~{:.0} s left",
                    elapsed / done as f64 * (total - done) as f64
                )
            } else {
                String::new()
            };
            eprint!("\r\x1b[2K{what}: {done}/{total} samples{eta}");
            if done == total {
                eprint!("\r\x1b[2K");
            }
        }
    }
}

/// Formats a float for tables: fixed for moderate magnitudes, scientific otherwise, "-" for None/NaN.
/// A z-score: two decimals, scientific notation when huge, "-" when undefined.
pub fn fmt_z(z: f64) -> String {
    if z.is_nan() {
        "-".into()
    } else if z.abs() < 1e4 || z.is_infinite() {
        format!("{z:.2}")
    } else {
        format!("{z:.2e}")
    }
}

/// A positive quantity known by its log: the value as `fmt` prints it while f64 can hold it, else `e^LOG`.
pub fn fmt_pos(x: f64, log: f64) -> String {
    if x.is_finite() && x >= f64::MIN_POSITIVE || !log.is_finite() {
        fmt(x)
    } else {
        format!("e^{log:.2}")
    }
}

pub fn fmt(x: f64) -> String {
    if !x.is_finite() {
        if x.is_nan() {
            "-".into()
        } else if x > 0.0 {
            "inf".into()
        } else {
            "-inf".into()
        }
    } else if x == 0.0 || (1e-3..1e6).contains(&x.abs()) {
        format!("{x:.6}")
    } else {
        format!("{x:.4e}")
    }
}
