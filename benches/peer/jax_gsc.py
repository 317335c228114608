#!/usr/bin/env python3
"""Peer benchmark (not part of CI): the exact GSC(L, l) and GSC(k, 0) of a random tanh MLP, computed with
JAX on the CPU in float64 (jax.jacfwd for the forward family, jax.jacrev for the backward one), timed beside
`gradscale simulate` for the same network and sample count.

    pip install jax
    python3 benches/peer/jax_gsc.py --gradscale target/release/gradscale

Definitions as in theory/gsc-mlp.md: GSC(k, l) = ||dF_k/dF_l||_F / sqrt(n_l) * ||f_l|| / ||f_k||, layer l
is f_l = tanh(W_l f_{l-1}), W_l ~ N(0, sigma_w^2 / n), x ~ N(0, I) rescaled to ||x||^2 = n.
The two engines draw different random networks, so their means agree only within their standard errors.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

os.environ.setdefault("JAX_PLATFORMS", "cpu")
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

jax.config.update("jax_enable_x64", True)


def make_fns(depth):
    def layers(ws, x, eps):
        # f_l = tanh(W_l f_{l-1}) + eps_l: the derivative in eps_l is dF/df_l.
        fs = []
        f = x
        for l in range(depth):
            f = jnp.tanh(ws[l] @ f) + eps[l]
            fs.append(f)
        return jnp.stack(fs)

    def one(ws, x):
        zeros = jnp.zeros((depth, x.shape[0]))
        fs = layers(ws, x, zeros)
        # Forward family: d f_k / d x for every k at once.
        jf = jax.jacfwd(lambda x_: layers(ws, x_, zeros))(x)  # (L, n, n0)
        # Backward family: d f_L / d f_l for every l at once.
        jb = jax.jacrev(lambda e: layers(ws, x, e)[-1])(zeros)  # (n, L, n)
        n = x.shape[0]
        norm2 = jnp.concatenate([jnp.sum(x * x)[None], jnp.sum(fs * fs, axis=1)])
        jf2 = jnp.concatenate([jnp.array([float(n)]), jnp.sum(jf * jf, axis=(1, 2))])
        # dF_L/dF_l for l = 1..L; l = 0 is dF_L/dx = jf[-1].
        jb2 = jnp.concatenate([jf2[-1:], jnp.sum(jb * jb, axis=(0, 2))])
        log_from_input = 0.5 * (jnp.log(jf2) - jnp.log(n) + jnp.log(norm2[0]) - jnp.log(norm2))
        log_to_output = 0.5 * (jnp.log(jb2) - jnp.log(n) + jnp.log(norm2) - jnp.log(norm2[-1]))
        return log_to_output, log_from_input

    return jax.jit(jax.vmap(one))


def draw(rng, count, width, depth, sigma_w2):
    ws = rng.standard_normal((count, depth, width, width)) * np.sqrt(sigma_w2 / width)
    x = rng.standard_normal((count, width))
    x *= np.sqrt(width) / np.linalg.norm(x, axis=1, keepdims=True)
    return ws, x


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--width", type=int, default=100)
    ap.add_argument("--depth", type=int, default=50)
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--sigma-w2", type=float, default=1.0)
    ap.add_argument("--chunk", type=int, default=20, help="samples per vmapped call (bounds memory)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--gradscale", help="path to the gradscale binary, to time it beside JAX")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs of each side; the best is kept")
    a = ap.parse_args()

    fn = make_fns(a.depth)
    rng = np.random.default_rng(a.seed)
    chunks = []
    left = a.samples
    while left > 0:
        c = min(a.chunk, left)
        chunks.append(draw(rng, c, a.width, a.depth, a.sigma_w2))
        left -= c
    # Compile outside the timing (the full-size chunk and a short last one).
    for ws, x in {c[0].shape[0]: c for c in chunks}.values():
        jax.block_until_ready(fn(ws, x))

    best_jax = float("inf")
    for _ in range(a.repeats):
        t = time.perf_counter()
        outs = [fn(ws, x) for ws, x in chunks]
        jax.block_until_ready(outs)
        best_jax = min(best_jax, time.perf_counter() - t)
    to_out = np.concatenate([np.asarray(o[0]) for o in outs])
    from_in = np.concatenate([np.asarray(o[1]) for o in outs])
    flops = 4.0 * a.depth * a.width ** 3 * a.samples  # forward- and reverse-mode products, 2 flops each
    result = {
        "jax_seconds": best_jax,
        "jax_gflops": flops / best_jax / 1e9,
        "jax_note": "drawing the weights is not timed on the JAX side",
        "jax_log_gsc_L_0": [float(to_out[:, 0].mean()), float(to_out[:, 0].std(ddof=1) / np.sqrt(a.samples))],
        "jax_log_gsc_from_input_L": [float(from_in[:, -1].mean()), float(from_in[:, -1].std(ddof=1) / np.sqrt(a.samples))],
    }
    if a.gradscale:
        cmd = [a.gradscale, "simulate", "--act", "tanh", "--width", str(a.width), "--depth", str(a.depth),
               "--sigma-w2", str(a.sigma_w2), "--samples", str(a.samples), "--json"]
        best_rs = float("inf")
        for _ in range(a.repeats):
            t = time.perf_counter()
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            best_rs = min(best_rs, time.perf_counter() - t)
        m = json.loads(out)
        result.update({
            "gradscale_seconds": best_rs,
            "gradscale_note": "whole process: start-up, drawing, both Jacobian families, aggregation, JSON",
            "gradscale_log_gsc_L_0": [m["layers"][0]["log_gsc_to_output"]["mean"], m["layers"][0]["log_gsc_to_output"]["stderr"]],
            "speedup_vs_jax": best_jax / best_rs,
        })
    json.dump(result, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
