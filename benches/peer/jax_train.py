#!/usr/bin/env python3
"""Peer benchmark (not part of CI): the training workload of `gradscale bench` in JAX on the CPU, float64,
jit-compiled, for a side-by-side time.

    pip install jax
    python3 benches/peer/jax_train.py [--repeats 3]

Workload (as `bench::train_case`): a ReLU MLP of 50 hidden layers of width 100 (He init, sigma_w^2 = 2,
zero biases) and a linear readout to the 10 classes, plain SGD (lr 1e-3) on the mean softmax cross-entropy,
one epoch over the digits training rows (the first 1438 of data/digits.csv.gz in file order; the last 20%
are the test set) in minibatches of 128 in file order (the last one has 30 rows), inputs standardised with
one mean and standard deviation over all training values. Flops counted as gradscale does: per dense
layer n_in -> n_out and batch b, 2 n_out n_in b for the forward product, the weight gradient and the input
gradient, except the first layer's input gradient. The first (compiling) epoch is not timed; the best of
`--repeats` timed epochs is reported.
"""
import argparse
import gzip
import os
import time

import numpy as np

os.environ.setdefault("JAX_PLATFORMS", "cpu")
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

jax.config.update("jax_enable_x64", True)

HERE = os.path.dirname(os.path.abspath(__file__))
DIGITS = os.path.join(HERE, "..", "..", "data", "digits.csv.gz")


def load_digits():
    with gzip.open(DIGITS, "rt") as f:
        rows = np.array([[float(c) for c in line.split(",")] for line in f if line.strip()])
    x, y = rows[:, :-1], rows[:, -1].astype(np.int64)
    n_test = len(x) // 5
    xtr, ytr = x[: len(x) - n_test], y[: len(x) - n_test]
    xtr = (xtr - xtr.mean()) / xtr.std()
    return xtr, ytr


def init(key, sizes):
    params = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        key, k = jax.random.split(key)
        s2 = 1.0 if i == len(sizes) - 2 else 2.0
        w = jax.random.normal(k, (n_out, n_in), dtype=jnp.float64) * jnp.sqrt(s2 / n_in)
        params.append((w, jnp.zeros((n_out,), dtype=jnp.float64)))
    return params


def loss(params, x, y):
    h = x.T  # features x batch, as gradscale stores it
    for w, b in params[:-1]:
        h = jax.nn.relu(w @ h + b[:, None])
    w, b = params[-1]
    logits = (w @ h + b[:, None]).T
    logp = jax.nn.log_softmax(logits, axis=1)
    return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))


@jax.jit
def step(params, x, y):
    g = jax.grad(loss)(params, x, y)
    return [(w - 1e-3 * gw, b - 1e-3 * gb) for (w, b), (gw, gb) in zip(params, g)]


def flops(sizes, batches):
    total = 0.0
    for b in batches:
        for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            total += (2 if i == 0 else 3) * 2.0 * n_out * n_in * b
    return total


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    xtr, ytr = load_digits()
    sizes = [xtr.shape[1]] + [100] * 50 + [10]
    batches = [(jnp.asarray(xtr[i : i + 128]), jnp.asarray(ytr[i : i + 128])) for i in range(0, len(xtr), 128)]
    p0 = init(jax.random.PRNGKey(0), sizes)

    def epoch():
        p = p0
        for x, y in batches:
            p = step(p, x, y)
        jax.block_until_ready(p)
        return p

    epoch()  # compiles both batch shapes
    best = float("inf")
    for _ in range(args.repeats):
        t = time.perf_counter()
        epoch()
        best = min(best, time.perf_counter() - t)
    f = flops(sizes, [int(x.shape[0]) for x, _ in batches])
    print(f"jax train epoch digits d50 w100 b128: {best:.3f} s, {f / best / 1e9:.1f} GFLOP/s ({f:.3e} flops)")


if __name__ == "__main__":
    main()
