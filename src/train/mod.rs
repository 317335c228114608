//! The training engine: minibatch reverse mode over the same [`Network`] both engines read, a linear
//! readout (the network's last layer) with a softmax cross-entropy or mean-squared-error head, SGD
//! (optional momentum, per-layer learning-rate multipliers) or Adam, optional gradient clipping, and a
//! log of the gradient scale coefficient measured on training data as training proceeds.
//! theory/training.md describes what is computed and logged.
//!
//! Reproducibility: the initial weights, the minibatch order (a shuffle per epoch seeded by (seed,
//! epoch)) and every product are thread-count independent (the engine's GEMM splits by shape only), so
//! the same seed gives bit-identical weights and logs.

pub mod backward;
pub mod mlp;

pub use backward::{backward_op, forward_op, zero_like, Node};

use crate::arch::{Network, Op};
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::montecarlo::{
    draw_params, sample_rng, simulate_given, Estimator, GivenInputs, McOptions, NetParams, OpParams,
};
use nalgebra::{DMatrix, DVector};
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

/// The loss on the readout f_L (one column per example), averaged over the minibatch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Loss {
    /// -ln softmax(f_L)_y.
    SoftmaxCe,
    /// ||f_L - e_y||^2 / K (K classes).
    Mse,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Optimizer {
    /// theta -= lr_l (g + momentum-buffer); the buffer v = momentum v + g (PyTorch's convention).
    Sgd { momentum: f64 },
    /// Kingma & Ba (2015), bias-corrected.
    Adam { beta1: f64, beta2: f64, eps: f64 },
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainConfig {
    pub optimizer: Optimizer,
    pub lr: f64,
    /// (layer l from 1, multiplier): the learning rate of layer l's parameters is lr * multiplier.
    pub lr_layer: Vec<(usize, f64)>,
    pub epochs: usize,
    pub batch_size: usize,
    pub seed: u64,
    pub loss: Loss,
    /// Rescale the whole gradient to this norm when it is larger (reported per epoch).
    pub clip: Option<f64>,
    /// Training rows on which the GSC is measured at logged steps (the first rows of the training set).
    pub gsc_rows: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            optimizer: Optimizer::Sgd { momentum: 0.0 },
            lr: 0.01,
            lr_layer: Vec::new(),
            epochs: 10,
            batch_size: 64,
            seed: 0,
            loss: Loss::SoftmaxCe,
            clip: None,
            gsc_rows: 32,
        }
    }
}

/// Initial parameters for training: the architecture's initial distribution (as the Monte Carlo engine
/// draws it, from `sample_rng(seed, 0)`), with every norm op given its learned affine map at scale 1,
/// shift 0, and batch norm its running statistics at mean 0, variance 1 (PyTorch's initial values).
pub fn init_params(net: &Network, seed: u64) -> NetParams {
    fn norms(ops: &[Op], ps: &mut [OpParams], mut n: usize) -> usize {
        for (op, p) in ops.iter().zip(ps.iter_mut()) {
            match op {
                Op::Dense(d) => n = d.width,
                Op::LayerNorm { .. } | Op::BatchNorm { .. } => {
                    let bn = matches!(op, Op::BatchNorm { .. });
                    *p = OpParams::Norm {
                        scale: DVector::from_element(n, 1.0),
                        shift: DVector::zeros(n),
                        running_mean: bn.then(|| DVector::zeros(n)),
                        running_var: bn.then(|| DVector::from_element(n, 1.0)),
                    };
                }
                Op::Residual(r) => {
                    if let OpParams::Residual { branch, .. } = p {
                        norms(&r.branch, branch, n);
                    }
                }
                Op::Act(_) => {}
            }
        }
        n
    }
    let mut rng = sample_rng(seed, 0);
    let mut params = draw_params(net, &mut rng);
    let mut n = net.input.width;
    for (layer, lp) in net.layers.iter().zip(params.iter_mut()) {
        n = norms(&layer.ops, lp, n);
    }
    params
}

/// Forward pass on a minibatch (n_0 x B), keeping every op's node for backward.
pub fn forward_batch(
    net: &Network,
    params: &NetParams,
    x: &DMatrix<f64>,
) -> (DMatrix<f64>, Vec<Vec<Node>>) {
    let mut h = x.clone();
    let mut nodes = Vec::with_capacity(net.depth());
    for (layer, lp) in net.layers.iter().zip(params) {
        let mut ln = Vec::with_capacity(layer.ops.len());
        for (op, p) in layer.ops.iter().zip(lp) {
            let (out, node) = forward_op(op, p, &h);
            h = out;
            ln.push(node);
        }
        nodes.push(ln);
    }
    (h, nodes)
}

/// Evaluation forward pass: batch norm uses its running statistics (when it has them), so each example's
/// output depends on that example alone.
pub fn forward_eval(net: &Network, params: &NetParams, x: &DMatrix<f64>) -> DMatrix<f64> {
    fn ops_eval(ops: &[Op], ps: &[OpParams], x: DMatrix<f64>) -> DMatrix<f64> {
        let mut h = x;
        for (op, p) in ops.iter().zip(ps) {
            h = match (op, p) {
                (
                    Op::BatchNorm { eps },
                    OpParams::Norm {
                        scale,
                        shift,
                        running_mean: Some(m),
                        running_var: Some(v),
                    },
                ) => {
                    let mut y = h;
                    for mut col in y.column_iter_mut() {
                        for i in 0..col.len() {
                            col[i] = scale[i] * (col[i] - m[i]) / (v[i] + eps).sqrt() + shift[i];
                        }
                    }
                    y
                }
                (Op::Residual(r), OpParams::Residual { skip, branch }) => {
                    let b = ops_eval(&r.branch, branch, h.clone());
                    let s = match skip {
                        Some(q) => q * &h,
                        None => h,
                    };
                    s + b * r.alpha
                }
                _ => forward_op(op, p, &h).0,
            };
        }
        h
    }
    let mut h = x.clone();
    for (layer, lp) in net.layers.iter().zip(params) {
        h = ops_eval(&layer.ops, lp, h);
    }
    h
}

/// Mean loss over the columns of `out`, its gradient with respect to `out`, and the number of errors
/// (argmax != label).
pub fn loss_and_adjoint(out: &DMatrix<f64>, y: &[usize], loss: Loss) -> (f64, DMatrix<f64>, usize) {
    let (k, b) = out.shape();
    let mut g = DMatrix::zeros(k, b);
    let mut total = 0.0;
    let mut errors = 0;
    for j in 0..b {
        let col = out.column(j);
        let argmax = (0..k).fold(0, |a, i| if col[i] > col[a] { i } else { a });
        if argmax != y[j] {
            errors += 1;
        }
        match loss {
            Loss::SoftmaxCe => {
                // log-sum-exp with the maximum taken out, so large logits do not overflow.
                let m = col.max();
                let z: f64 = col.iter().map(|v| (v - m).exp()).sum();
                let lse = m + z.ln();
                total += lse - col[y[j]];
                for i in 0..k {
                    g[(i, j)] =
                        ((col[i] - lse).exp() - if i == y[j] { 1.0 } else { 0.0 }) / b as f64;
                }
            }
            Loss::Mse => {
                for i in 0..k {
                    let d = col[i] - if i == y[j] { 1.0 } else { 0.0 };
                    total += d * d / k as f64;
                    g[(i, j)] = 2.0 * d / (k as f64 * b as f64);
                }
            }
        }
    }
    (total / b as f64, g, errors)
}

/// The minibatch loss and the gradient of every parameter (in the shape of `params`): a plain MLP through
/// the fused step of [`mlp`], any other network op by op.
pub fn loss_and_grad(
    net: &Network,
    params: &NetParams,
    x: &DMatrix<f64>,
    y: &[usize],
    loss: Loss,
) -> (f64, NetParams, usize) {
    match mlp::plan(net) {
        Some(acts) => {
            let mut grads = zero_grads(params);
            let (l, e) = mlp::loss_and_grad_into(&acts, params, x, y, loss, &mut grads);
            (l, grads, e)
        }
        None => loss_and_grad_ops(net, params, x, y, loss),
    }
}

/// [`loss_and_grad`] op by op (`forward_op` / `backward_op`) for any network: the reference the fused
/// MLP step is tested against.
pub fn loss_and_grad_ops(
    net: &Network,
    params: &NetParams,
    x: &DMatrix<f64>,
    y: &[usize],
    loss: Loss,
) -> (f64, NetParams, usize) {
    let (l, g, e, _) = loss_grad_nodes(net, params, x, y, loss);
    (l, g, e)
}

/// Zero gradients in the shape of `params`.
pub fn zero_grads(params: &NetParams) -> NetParams {
    params
        .iter()
        .map(|lp| lp.iter().map(zero_like).collect())
        .collect()
}

/// [`loss_and_grad`] that also returns the forward nodes (batch norm's running statistics read them).
fn loss_grad_nodes(
    net: &Network,
    params: &NetParams,
    x: &DMatrix<f64>,
    y: &[usize],
    loss: Loss,
) -> (f64, NetParams, usize, Vec<Vec<Node>>) {
    let (out, nodes) = forward_batch(net, params, x);
    let (l, mut a, errors) = loss_and_adjoint(&out, y, loss);
    let mut grads = zero_grads(params);
    for li in (0..net.depth()).rev() {
        let layer = &net.layers[li];
        for k in (0..layer.ops.len()).rev() {
            let (prev, g) = backward_op(&layer.ops[k], &params[li][k], &nodes[li][k], a);
            a = prev;
            grads[li][k] = g;
        }
    }
    (l, grads, errors, nodes)
}

/// Every trained parameter array of an op, in a fixed order (weight, bias; scale, shift; branch ops).
fn slices_mut(p: &mut OpParams, out: &mut Vec<*mut [f64]>) {
    match p {
        OpParams::Dense { w, b } => {
            out.push(w.as_mut_slice() as *mut [f64]);
            out.push(b.as_mut_slice() as *mut [f64]);
        }
        OpParams::Norm { scale, shift, .. } => {
            out.push(scale.as_mut_slice() as *mut [f64]);
            out.push(shift.as_mut_slice() as *mut [f64]);
        }
        OpParams::None => {}
        OpParams::Residual { branch, .. } => {
            for q in branch {
                slices_mut(q, out);
            }
        }
    }
}

/// The trained parameter arrays of each layer, in a fixed order.
pub fn layer_arrays(p: &mut NetParams) -> Vec<Vec<&mut [f64]>> {
    p.iter_mut()
        .map(|lp| {
            let mut raw = Vec::new();
            for q in lp.iter_mut() {
                slices_mut(q, &mut raw);
            }
            // SAFETY: each pointer is to a distinct array owned by `p`, which stays mutably borrowed for
            // the lifetime of the returned slices.
            raw.into_iter().map(|s| unsafe { &mut *s }).collect()
        })
        .collect()
}

/// [`slices_mut`] read-only.
fn slices<'a>(p: &'a OpParams, out: &mut Vec<&'a [f64]>) {
    match p {
        OpParams::Dense { w, b } => {
            out.push(w.as_slice());
            out.push(b.as_slice());
        }
        OpParams::Norm { scale, shift, .. } => {
            out.push(scale.as_slice());
            out.push(shift.as_slice());
        }
        OpParams::None => {}
        OpParams::Residual { branch, .. } => {
            for q in branch {
                slices(q, out);
            }
        }
    }
}

/// Squared norm of each layer's trained parameters (read in place: it runs every step, on the
/// parameters for the divergence check and on the gradient for clipping).
pub fn layer_sq_norms(p: &NetParams) -> Vec<f64> {
    p.iter()
        .map(|lp| {
            let mut arrays = Vec::new();
            for q in lp {
                slices(q, &mut arrays);
            }
            arrays
                .iter()
                .map(|s| s.iter().map(|v| v * v).sum::<f64>())
                .sum()
        })
        .collect()
}

/// Per layer, ||a_l - b_l||^2.
fn layer_sq_dist(a: &NetParams, b: &NetParams) -> Vec<f64> {
    let mut a = a.clone();
    let mut b = b.clone();
    let la = layer_arrays(&mut a);
    let lb = layer_arrays(&mut b);
    la.iter()
        .zip(&lb)
        .map(|(x, y)| {
            x.iter()
                .zip(y)
                .map(|(s, t)| {
                    s.iter()
                        .zip(t.iter())
                        .map(|(u, v)| (u - v) * (u - v))
                        .sum::<f64>()
                })
                .sum()
        })
        .collect()
}

/// Optimiser state: step count and the buffers (momentum, or Adam's first and second moments) in the
/// shape of the parameters.
#[derive(Clone, Debug)]
pub struct OptState {
    pub step: u64,
    pub m: NetParams,
    pub v: NetParams,
}

impl OptState {
    pub fn new(params: &NetParams) -> OptState {
        let z: NetParams = params
            .iter()
            .map(|lp| lp.iter().map(zero_like).collect())
            .collect();
        OptState {
            step: 0,
            m: z.clone(),
            v: z,
        }
    }
}

/// The learning-rate multiplier of each layer (1 unless `lr_layer` says otherwise).
pub fn layer_lrs(cfg: &TrainConfig, depth: usize) -> Result<Vec<f64>> {
    let mut m = vec![1.0; depth];
    for &(l, x) in &cfg.lr_layer {
        if l == 0 || l > depth {
            return Err(Error::param(
                "--lr-layer",
                l,
                format!("a layer number in 1..={depth}"),
            ));
        }
        if !(x.is_finite() && x >= 0.0) {
            return Err(Error::param("--lr-layer", x, "a finite multiplier >= 0"));
        }
        m[l - 1] = x;
    }
    Ok(m)
}

/// One optimiser step on `params` from `grads`; returns whether clipping fired.
pub fn apply_step(
    params: &mut NetParams,
    grads: &mut NetParams,
    state: &mut OptState,
    cfg: &TrainConfig,
    lrs: &[f64],
) -> bool {
    let mut clipped = false;
    if let Some(c) = cfg.clip {
        let norm = layer_sq_norms(grads).iter().sum::<f64>().sqrt();
        if norm > c {
            clipped = true;
            let f = c / norm;
            for l in layer_arrays(grads) {
                for s in l {
                    s.iter_mut().for_each(|v| *v *= f);
                }
            }
        }
    }
    state.step += 1;
    let t = state.step as f64;
    let mut m = std::mem::take(&mut state.m);
    let mut v = std::mem::take(&mut state.v);
    {
        let pl = layer_arrays(params);
        let gl = layer_arrays(grads);
        let ml = layer_arrays(&mut m);
        let vl = layer_arrays(&mut v);
        for ((((ps, gs), ms), vs), lr_mult) in pl.into_iter().zip(gl).zip(ml).zip(vl).zip(lrs) {
            let lr = cfg.lr * lr_mult;
            for (((p, g), mm), vv) in ps.into_iter().zip(gs).zip(ms).zip(vs) {
                // Zipped slices rather than indices: no bounds checks, so the loops vectorise (they
                // run over every parameter every step).
                match cfg.optimizer {
                    Optimizer::Sgd { momentum } if momentum > 0.0 => {
                        for ((p, g), mm) in p.iter_mut().zip(g.iter()).zip(mm.iter_mut()) {
                            *mm = momentum * *mm + g;
                            *p -= lr * *mm;
                        }
                    }
                    Optimizer::Sgd { .. } => {
                        for (p, g) in p.iter_mut().zip(g.iter()) {
                            *p -= lr * g;
                        }
                    }
                    Optimizer::Adam { beta1, beta2, eps } => {
                        let c1 = 1.0 - beta1.powf(t);
                        let c2 = 1.0 - beta2.powf(t);
                        for (((p, g), mm), vv) in p
                            .iter_mut()
                            .zip(g.iter())
                            .zip(mm.iter_mut())
                            .zip(vv.iter_mut())
                        {
                            *mm = beta1 * *mm + (1.0 - beta1) * g;
                            *vv = beta2 * *vv + (1.0 - beta2) * g * g;
                            *p -= lr * (*mm / c1) / ((*vv / c2).sqrt() + eps);
                        }
                    }
                }
            }
        }
    }
    state.m = m;
    state.v = v;
    clipped
}

/// Batch-norm running statistics after a training forward pass: mean and unbiased variance of each
/// unit over the minibatch, blended with momentum 0.1 (PyTorch's default).
fn update_running(net: &Network, params: &mut NetParams, nodes: &[Vec<Node>]) {
    fn walk(ops: &[Op], ps: &mut [OpParams], nodes: &[Node]) {
        for ((op, p), node) in ops.iter().zip(ps.iter_mut()).zip(nodes) {
            match (op, p) {
                (
                    Op::BatchNorm { .. },
                    OpParams::Norm {
                        running_mean: Some(rm),
                        running_var: Some(rv),
                        ..
                    },
                ) => {
                    let x = &node.input;
                    let b = x.ncols() as f64;
                    for i in 0..x.nrows() {
                        let r = x.row(i);
                        let mean = r.sum() / b;
                        let var =
                            r.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (b - 1.0).max(1.0);
                        rm[i] = 0.9 * rm[i] + 0.1 * mean;
                        rv[i] = 0.9 * rv[i] + 0.1 * var;
                    }
                }
                (Op::Residual(r), OpParams::Residual { branch, .. }) => {
                    walk(&r.branch, branch, &node.branch)
                }
                _ => {}
            }
        }
    }
    for ((layer, lp), ln) in net.layers.iter().zip(params.iter_mut()).zip(nodes) {
        walk(&layer.ops, lp, ln);
    }
}

fn batch_matrix(d: &Dataset, idx: &[usize]) -> DMatrix<f64> {
    let n = d.dim();
    DMatrix::from_fn(n, idx.len(), |i, b| d.x[idx[b]][i])
}

/// Loss and error rate of `params` on a whole data set (evaluation mode, in chunks of 512 rows).
pub fn evaluate(net: &Network, params: &NetParams, d: &Dataset, loss: Loss) -> (f64, f64) {
    let mut total = 0.0;
    let mut errors = 0;
    let idx: Vec<usize> = (0..d.len()).collect();
    for chunk in idx.chunks(512) {
        let out = forward_eval(net, params, &batch_matrix(d, chunk));
        let y: Vec<usize> = chunk.iter().map(|&i| d.y[i]).collect();
        let (l, _, e) = loss_and_adjoint(&out, &y, loss);
        total += l * chunk.len() as f64;
        errors += e;
    }
    (total / d.len() as f64, errors as f64 / d.len() as f64)
}

/// Mean and standard error.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
pub struct MeanSe {
    pub mean: f64,
    pub stderr: f64,
}

/// The GSC measured on training data at one step.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct GscLog {
    pub step: u64,
    pub epoch: usize,
    /// Per layer l = 0..=L: ln GSC(L, l) and ln GSC(l, 0) over the fixed batch of training rows.
    pub log_gsc_to_output: Vec<MeanSe>,
    pub log_gsc_from_input: Vec<MeanSe>,
    /// Inputs whose GSC was undefined (a zero layer output or Jacobian) or overflowed, excluded.
    pub excluded: usize,
    /// Per layer l = 1..=L: ||theta_l(t) - theta_l(t-1)|| / ||theta_l(t)|| (null at step 0).
    pub update_rel: Option<Vec<f64>>,
    /// Per layer: ||theta_l(t) - theta_l(0)|| / ||theta_l(0)||.
    pub dist_from_init: Vec<f64>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct EpochLog {
    pub epoch: usize,
    pub step: u64,
    pub train_loss: f64,
    pub train_error: f64,
    pub test_loss: Option<f64>,
    pub test_error: Option<f64>,
    /// Steps of this epoch at which the gradient was clipped.
    pub clipped_steps: usize,
}

/// Where a run diverged: the loss or a parameter stopped being finite.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Divergence {
    pub step: u64,
    pub epoch: usize,
    pub message: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Default)]
pub struct TrainLog {
    pub epochs: Vec<EpochLog>,
    pub gsc: Vec<GscLog>,
    pub diverged: Option<Divergence>,
}

/// Steps at which the GSC is measured besides epoch ends.
pub const LOGGED_STEPS: [u64; 4] = [0, 1, 10, 100];

/// The training rows on which `measure_gsc` measures: the first `rows`, rounded down to whole batches of
/// `net.input.batch`.
pub fn gsc_rows<'a>(net: &Network, d: &'a Dataset, rows: usize) -> Result<&'a [Vec<f64>]> {
    let bsz = net.input.batch.max(1);
    let take = rows.min(d.len()) / bsz * bsz;
    if take == 0 {
        return Err(Error::param(
            "GSC rows",
            rows,
            format!("at least the batch of {bsz}"),
        ));
    }
    Ok(&d.x[..take])
}

/// ln GSC per layer on the first `rows` training rows (given-weights Monte Carlo, exact Jacobians; a
/// network with batch norm is measured on batches of `net.input.batch` rows, with batch statistics).
pub fn measure_gsc(
    net: &Network,
    params: &NetParams,
    d: &Dataset,
    rows: usize,
) -> Result<(Vec<MeanSe>, Vec<MeanSe>, usize)> {
    let bsz = net.input.batch.max(1);
    let x = gsc_rows(net, d, rows)?;
    let opts = McOptions {
        samples: x.len() / bsz,
        seed: 0,
        estimator: Estimator::Exact,
    };
    let m = simulate_given(net, params, GivenInputs::Rows(x), &opts, &|_| {})?;
    let ms = |s: &crate::stats::Summary| MeanSe {
        mean: s.mean,
        stderr: s.stderr,
    };
    Ok((
        m.layers.iter().map(|l| ms(&l.log_gsc_to_output)).collect(),
        m.layers.iter().map(|l| ms(&l.log_gsc_from_input)).collect(),
        m.degenerate + m.overflow,
    ))
}

fn finite(p: &NetParams) -> bool {
    layer_sq_norms(p).iter().all(|v| v.is_finite())
}

/// A training run in progress: everything `--resume` needs.
#[derive(Clone, Debug)]
pub struct Trainer {
    pub net: Network,
    pub cfg: TrainConfig,
    pub params: NetParams,
    pub init: NetParams,
    pub state: OptState,
    /// Epochs completed.
    pub epoch: usize,
    pub log: TrainLog,
}

/// What happened after an epoch, for progress reporting and checkpointing.
pub struct EpochReport<'a> {
    pub trainer: &'a Trainer,
    pub batches_done: usize,
    pub batches: usize,
}

impl Trainer {
    /// Checks that `net` can be trained on `train`: its input width is the data's, its last layer is a
    /// linear readout (a dense op alone) with one output per class.
    pub fn new(net: Network, cfg: TrainConfig, train: &Dataset) -> Result<Trainer> {
        net.validate()?;
        check_fit(&net, &cfg, train)?;
        let params = init_params(&net, cfg.seed);
        Ok(Trainer {
            state: OptState::new(&params),
            init: params.clone(),
            params,
            net,
            cfg,
            epoch: 0,
            log: TrainLog::default(),
        })
    }

    fn log_gsc(&mut self, train: &Dataset, prev: Option<&NetParams>) -> Result<()> {
        let (to, from, excluded) = measure_gsc(&self.net, &self.params, train, self.cfg.gsc_rows)?;
        let norms = layer_sq_norms(&self.params);
        let init = layer_sq_norms(&self.init);
        let d0 = layer_sq_dist(&self.params, &self.init);
        let update_rel = prev.map(|p| {
            layer_sq_dist(&self.params, p)
                .iter()
                .zip(&norms)
                .map(|(d, n)| (d / n).sqrt())
                .collect()
        });
        self.log.gsc.push(GscLog {
            step: self.state.step,
            epoch: self.epoch,
            log_gsc_to_output: to,
            log_gsc_from_input: from,
            excluded,
            update_rel,
            dist_from_init: d0.iter().zip(&init).map(|(d, n)| (d / n).sqrt()).collect(),
        });
        Ok(())
    }

    /// Measures and logs the GSC at step 0 (once; `run` does it if it was not done), so that a caller can
    /// compare it with the closed form before training changes the weights.
    pub fn log_step0(&mut self, train: &Dataset) -> Result<()> {
        if self.state.step == 0 && self.log.gsc.is_empty() {
            self.log_gsc(train, None)?;
        }
        Ok(())
    }

    /// Runs the remaining epochs. `on_batch(done, total)` is called after each step, `on_epoch` after each
    /// epoch (checkpoint there). Stops at the first non-finite loss or parameter: the parameters stay at
    /// the last finite values and `log.diverged` says where.
    pub fn run(
        &mut self,
        train: &Dataset,
        test: Option<&Dataset>,
        on_batch: &mut dyn FnMut(usize, usize),
        on_epoch: &mut dyn FnMut(&Trainer) -> Result<()>,
    ) -> Result<()> {
        check_fit(&self.net, &self.cfg, train)?;
        let lrs = layer_lrs(&self.cfg, self.net.depth())?;
        self.log_step0(train)?;
        let n = train.len();
        let bs = self.cfg.batch_size.min(n);
        let batches = n.div_ceil(bs);
        let plan = mlp::plan(&self.net);
        // Reused from step to step (every entry is overwritten).
        let mut grads = zero_grads(&self.params);
        while self.epoch < self.cfg.epochs {
            let mut order: Vec<usize> = (0..n).collect();
            order.shuffle(&mut sample_rng(self.cfg.seed, 1 + self.epoch as u64));
            let mut clipped_steps = 0;
            for (bi, chunk) in order.chunks(bs).enumerate() {
                let x = batch_matrix(train, chunk);
                let y: Vec<usize> = chunk.iter().map(|&i| train.y[i]).collect();
                let (loss, nodes) = match &plan {
                    Some(acts) => {
                        let (l, _) = mlp::loss_and_grad_into(
                            acts,
                            &self.params,
                            &x,
                            &y,
                            self.cfg.loss,
                            &mut grads,
                        );
                        (l, None)
                    }
                    None => {
                        let (l, g, _, nodes) =
                            loss_grad_nodes(&self.net, &self.params, &x, &y, self.cfg.loss);
                        grads = g;
                        (l, Some(nodes))
                    }
                };
                let next = self.state.step + 1;
                let before = self.params.clone();
                let before_state = self.state.clone();
                if !loss.is_finite() {
                    self.log.diverged = Some(Divergence {
                        step: next,
                        epoch: self.epoch + 1,
                        message: format!("the minibatch loss is {loss} at step {next}"),
                    });
                    return Ok(());
                }
                if apply_step(
                    &mut self.params,
                    &mut grads,
                    &mut self.state,
                    &self.cfg,
                    &lrs,
                ) {
                    clipped_steps += 1;
                }
                // A plain MLP has no batch norm, hence no running statistics and no nodes.
                if let Some(nodes) = nodes {
                    update_running(&self.net, &mut self.params, &nodes);
                }
                if !finite(&self.params) {
                    self.params = before;
                    self.state = before_state;
                    self.log.diverged = Some(Divergence {
                        step: next,
                        epoch: self.epoch + 1,
                        message: format!("a parameter became non-finite at step {next}"),
                    });
                    return Ok(());
                }
                on_batch(bi + 1, batches);
                if LOGGED_STEPS.contains(&next) && bi + 1 != batches {
                    self.log_gsc(train, Some(&before))?;
                }
                if bi + 1 == batches {
                    self.epoch += 1;
                    self.log_gsc(train, Some(&before))?;
                }
            }
            let (train_loss, train_error) = evaluate(&self.net, &self.params, train, self.cfg.loss);
            let (test_loss, test_error) = match test {
                Some(t) => {
                    let (a, b) = evaluate(&self.net, &self.params, t, self.cfg.loss);
                    (Some(a), Some(b))
                }
                None => (None, None),
            };
            if !train_loss.is_finite() {
                self.log.diverged = Some(Divergence {
                    step: self.state.step,
                    epoch: self.epoch,
                    message: format!(
                        "the training loss is {train_loss} after epoch {}",
                        self.epoch
                    ),
                });
                return Ok(());
            }
            self.log.epochs.push(EpochLog {
                epoch: self.epoch,
                step: self.state.step,
                train_loss,
                train_error,
                test_loss,
                test_error,
                clipped_steps,
            });
            on_epoch(self)?;
        }
        Ok(())
    }
}

/// The data must fit the network: input width = features, readout width = classes.
pub fn check_fit(net: &Network, cfg: &TrainConfig, train: &Dataset) -> Result<()> {
    if cfg.batch_size == 0 {
        return Err(Error::param("--batch-size", 0, "an integer >= 1"));
    }
    if !(cfg.lr.is_finite() && cfg.lr > 0.0) {
        return Err(Error::param("--lr", cfg.lr, "a finite number > 0"));
    }
    if train.dim() != net.input.width {
        return Err(Error::Architecture(format!(
            "the data {} have {} features, the network's input width is {}",
            train.name,
            train.dim(),
            net.input.width
        )));
    }
    let out = *net.widths().last().expect("layers");
    if !matches!(
        net.layers.last().map(|l| l.ops.as_slice()),
        Some([Op::Dense(_)])
    ) {
        return Err(Error::Architecture(
            "the last layer must be a linear readout (a single dense op) for training".into(),
        ));
    }
    if out < train.classes {
        return Err(Error::Architecture(format!(
            "the readout has {out} outputs, the data {} have {} classes (labels 0..={})",
            train.name,
            train.classes,
            train.classes - 1
        )));
    }
    if net.batch_coupled() && cfg.batch_size.min(train.len()) < 2 {
        return Err(Error::param(
            "--batch-size",
            cfg.batch_size,
            "an integer >= 2 for a network with batch norm",
        ));
    }
    Ok(())
}

/// The MLP the `train` flags describe: `depth` hidden layers of [dense(width), act] and a linear readout
/// to `classes` outputs (weight variance 1, LeCun).
pub fn mlp_classifier(
    input: usize,
    width: usize,
    depth: usize,
    classes: usize,
    act: crate::Nonlinearity,
    sigma_w2: f64,
    sigma_b2: f64,
) -> Result<Network> {
    let mut widths = vec![width; depth];
    widths.push(classes);
    let mut net = Network::mlp_widths(input, &widths, act, sigma_w2, sigma_b2)?;
    let last = net.layers.last_mut().expect("a layer");
    last.ops.truncate(1);
    if let Some(Op::Dense(d)) = last.ops.first_mut() {
        d.sigma_w2 = 1.0;
    }
    net.validate()?;
    Ok(net)
}
