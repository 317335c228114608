//! Network builders shared by the integration tests (each test file includes this module with
//! `mod common;`, so not every helper is used by every file).

#![allow(dead_code)]

pub mod schema;

use gradscale::arch::{MlpSpec, Network, Op};
use gradscale::Nonlinearity;

pub fn mlp(act: Nonlinearity, width: usize, depth: usize, sigma_w2: f64, sigma_b2: f64) -> Network {
    Network::mlp(MlpSpec {
        act,
        width,
        depth,
        sigma_w2,
        sigma_b2,
    })
    .expect("valid mlp")
}

pub fn dense(width: usize, sigma_w2: f64, sigma_b2: f64) -> Op {
    Op::dense(width, sigma_w2, sigma_b2)
}

/// A network from an input width and one op list per layer (widths may differ from layer to layer).
pub fn layers(input_width: usize, batch: usize, layers: Vec<Vec<Op>>) -> Network {
    Network::from_layers(input_width, batch, layers)
}

/// `depth` copies of one layer.
pub fn stack(width: usize, batch: usize, depth: usize, ops: Vec<Op>) -> Network {
    layers(width, batch, vec![ops; depth])
}

/// `blocks` residual blocks x + alpha * branch(x), identity skip.
pub fn resnet(width: usize, blocks: usize, alpha: f64, branch: Vec<Op>) -> Network {
    stack(width, 1, blocks, vec![Op::residual(alpha, branch)])
}

/// Runs the built binary with `args`: (exit code, stdout, stderr).
pub fn run(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gradscale"))
        .args(args)
        .output()
        .expect("binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Parses `json` (a command's `--json` output, or a file it wrote) and asserts it validates against
/// `schema/COMMAND.schema.json`, listing every violation otherwise.
pub fn assert_schema(command: &str, json: &str) -> serde_json::Value {
    let path = format!(
        "{}/schema/{command}.schema.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect(&path)).expect(&path);
    let v: serde_json::Value = serde_json::from_str(json).expect("valid JSON");
    let errors = schema::validate(&schema, &v);
    assert!(
        errors.is_empty(),
        "{command}: {path}:\n{}",
        errors.join("\n")
    );
    assert_eq!(v["schema"], format!("gradscale.{command}/1"));
    v
}

/// One exact-Jacobian Monte Carlo run: `samples` networks from `seed`.
pub fn simulate_exact(
    net: &Network,
    samples: usize,
    seed: u64,
) -> gradscale::montecarlo::Measurement {
    gradscale::montecarlo::simulate(
        net,
        &gradscale::montecarlo::McOptions {
            samples,
            seed,
            estimator: gradscale::montecarlo::Estimator::Exact,
        },
    )
    .unwrap()
}

/// f_b = f_{b-1} + alpha relu(W2 relu(W1 f_{b-1})), He weights (sigma^2 = 2), no biases: the ResNet whose
/// branch ends in a relu (theory/finite-width.md section 9).
pub fn relu_ended_resnet(width: usize, blocks: usize, alpha: f64) -> Network {
    let branch = vec![
        Op::dense(width, 2.0, 0.0),
        Op::Act(Nonlinearity::Relu),
        Op::dense(width, 2.0, 0.0),
        Op::Act(Nonlinearity::Relu),
    ];
    Network::stack(width, 1, blocks, vec![Op::residual(alpha, branch)])
}
