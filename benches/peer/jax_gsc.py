#!/usr/bin/env python3
"""Peer benchmark (not part of CI): the exact ln GSC(L, l) (every l) and ln GSC(k, 0) (every k) of random
tanh MLPs, computed with JAX on the CPU in float64 the way a JAX user would write it, timed beside
`gradscale simulate` for the same networks' sizes and sample count, in the same run.

    pip install jax
    python3 benches/peer/jax_gsc.py --gradscale target/release/gradscale

The JAX formulation: one jit-compiled, vmapped function over a chunk of samples; the layers are a
`lax.scan` (an unrolled Python loop took 27 s to compile and ran 5x slower here at depth 50). The forward
family is `jax.jacfwd` of the stack of all layer outputs in the input (one forward-mode pass with n
tangents gives every dF_k/dx). The backward family is `jax.jacrev` of the last layer in additive per-layer
probes eps_l (zero perturbations added to each layer's output, so one reverse pass with n cotangents gives
every dF_L/dF_l). Weights and inputs are drawn with numpy.

Timing, both sides on the whole machine:
  * whole process: this script re-runs itself as a child process (`--child`) and times it from outside:
    Python start-up, importing JAX, drawing the weights, compiling, computing, printing. `gradscale
    simulate ... --json` is timed the same way (start-up, drawing, both families, aggregation, JSON).
  * steady state: in a further child, the jitted function re-run on the same chunks after compilation
    (best of --repeats), excluding start-up, drawing and compilation.

Definitions as in theory/gsc-mlp.md: GSC(k, l) = ||dF_k/dF_l||_F / sqrt(n_l) * ||f_l|| / ||f_k||, layer l
is f_l = tanh(W_l f_{l-1}), W_l ~ N(0, sigma_w^2 / n), x ~ N(0, I) rescaled to ||x||^2 = n.
The two engines draw different random networks, so their means agree only within their standard errors:
the script reports z = (mean_jax - mean_gradscale) / sqrt(se_jax^2 + se_gradscale^2) for every layer of
both families and the largest |z|.
"""
import argparse
import json
import math
import os
import subprocess
import sys
import time

T_START = time.perf_counter()


def make_fn(depth):
    import jax
    import jax.numpy as jnp

    def layers(ws, x, eps):
        # f_l = tanh(W_l f_{l-1}) + eps_l: the derivative in eps_l is dF/df_l.
        def step(f, w_e):
            w, e = w_e
            g = jnp.tanh(w @ f) + e
            return g, g

        _, fs = jax.lax.scan(step, x, (ws, eps))
        return fs  # (L, n)

    def one(ws, x):
        n = x.shape[0]
        zeros = jnp.zeros((depth, n), dtype=x.dtype)
        fs = layers(ws, x, zeros)
        jf = jax.jacfwd(lambda x_: layers(ws, x_, zeros))(x)  # (L, n, n0): dF_k/dx
        jb = jax.jacrev(lambda e: layers(ws, x, e)[-1])(zeros)  # (n, L, n): dF_L/dF_l
        norm2 = jnp.concatenate([jnp.sum(x * x)[None], jnp.sum(fs * fs, axis=1)])
        jf2 = jnp.concatenate([jnp.array([float(n)]), jnp.sum(jf * jf, axis=(1, 2))])
        # dF_L/dF_l for l = 1..L-1 from the probes; l = 0 is dF_L/dx = jf[-1]; l = L is the identity.
        jb2 = jnp.concatenate([jf2[-1:], jnp.sum(jb * jb, axis=(0, 2))])
        log_from_input = 0.5 * (jnp.log(jf2) - jnp.log(n) + jnp.log(norm2[0]) - jnp.log(norm2))
        log_to_output = 0.5 * (jnp.log(jb2) - jnp.log(n) + jnp.log(norm2) - jnp.log(norm2[-1]))
        return log_to_output, log_from_input

    return jax.jit(jax.vmap(one))


def draw(rng, count, width, depth, sigma_w2):
    import numpy as np

    ws = rng.standard_normal((count, depth, width, width)) * np.sqrt(sigma_w2 / width)
    x = rng.standard_normal((count, width))
    x *= np.sqrt(width) / np.linalg.norm(x, axis=1, keepdims=True)
    return ws, x


def child(a):
    """One whole JAX run; prints JSON with its internal timings and per-layer statistics."""
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import numpy as np
    import jax

    jax.config.update("jax_enable_x64", True)
    t_import = time.perf_counter()
    rng = np.random.default_rng(a.seed)
    chunks = []
    left = a.samples
    while left > 0:
        c = min(a.chunk, left)
        chunks.append(draw(rng, c, a.width, a.depth, a.sigma_w2))
        left -= c
    t_draw = time.perf_counter()
    fn = make_fn(a.depth)
    outs = [fn(ws, x) for ws, x in chunks]  # the first pass compiles (once per distinct chunk size)
    jax.block_until_ready(outs)
    t_first = time.perf_counter()
    steady = float("inf")
    for _ in range(a.steady_repeats):
        t = time.perf_counter()
        again = [fn(ws, x) for ws, x in chunks]
        jax.block_until_ready(again)
        steady = min(steady, time.perf_counter() - t)
    to_out = np.concatenate([np.asarray(o[0]) for o in outs])
    from_in = np.concatenate([np.asarray(o[1]) for o in outs])
    m = lambda v: [float(v.mean()), float(v.std(ddof=1) / math.sqrt(len(v)))]
    json.dump({
        "start_to_import_s": t_import - T_START,
        "draw_s": t_draw - t_import,
        "first_pass_with_compile_s": t_first - t_draw,
        "steady_s": steady,
        "to_output": [m(to_out[:, l]) for l in range(a.depth + 1)],
        "from_input": [m(from_in[:, k]) for k in range(a.depth + 1)],
    }, sys.stdout)


def timed(cmd):
    t = time.perf_counter()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return time.perf_counter() - t, out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--width", type=int, default=100)
    ap.add_argument("--depth", type=int, default=50)
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--sigma-w2", type=float, default=1.0)
    ap.add_argument("--chunk", type=int, default=5,
                    help="samples per vmapped call (5 ran fastest per sample of 1-50 here: cache)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--gradscale", help="path to the gradscale binary, to time it beside JAX")
    ap.add_argument("--repeats", type=int, default=3,
                    help="whole-process runs of each side (alternated; best kept), and steady-state passes")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--steady-repeats", type=int, default=0, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        child(a)
        return

    jax_cmd = [sys.executable, os.path.abspath(__file__), "--child", "--width", str(a.width), "--depth",
               str(a.depth), "--samples", str(a.samples), "--sigma-w2", str(a.sigma_w2), "--chunk",
               str(a.chunk), "--seed", str(a.seed)]
    rs_cmd = None
    if a.gradscale:
        rs_cmd = [a.gradscale, "simulate", "--act", "tanh", "--width", str(a.width), "--depth", str(a.depth),
                  "--sigma-w2", str(a.sigma_w2), "--samples", str(a.samples), "--seed", str(a.seed), "--json"]
    jax_runs, rs_runs = [], []
    for _ in range(a.repeats):
        # Alternate the two sides so that a change in the machine's load hits both.
        jax_runs.append(timed(jax_cmd))
        if rs_cmd:
            rs_runs.append(timed(rs_cmd))
    best = min(jax_runs, key=lambda r: r[0])
    inner = json.loads(best[1])
    # Steady state in a separate child, so that the whole-process runs above do one pass each.
    steady = json.loads(timed(jax_cmd + ["--steady-repeats", str(a.repeats)])[1])
    inner["steady_s"] = steady["steady_s"]
    flops = 4.0 * a.depth * a.width ** 3 * a.samples  # forward- and reverse-mode products, 2 flops each
    result = {
        "load_average_1min": os.getloadavg()[0],
        "jax_whole_process_s": [r[0] for r in jax_runs],
        "jax_best_whole_process_s": best[0],
        "jax_inside": {k: inner[k] for k in ("start_to_import_s", "draw_s", "first_pass_with_compile_s", "steady_s")},
        "jax_steady_gflops": flops / inner["steady_s"] / 1e9,
        "jax_log_gsc_to_output_l0": inner["to_output"][0],
        "jax_log_gsc_from_input_L": inner["from_input"][-1],
    }
    if rs_cmd:
        rs_best = min(rs_runs, key=lambda r: r[0])
        m = json.loads(rs_best[1])
        zs = []
        for fam in ("to_output", "from_input"):
            for l, layer in enumerate(m["layers"]):
                g = layer["log_gsc_" + fam]
                j = inner[fam][l]
                se = math.hypot(g["stderr"], j[1])
                if se > 0:
                    zs.append((abs(j[0] - g["mean"]) / se, fam, l))
        zmax = max(zs)
        g0 = m["layers"][0]["log_gsc_to_output"]
        result.update({
            "gradscale_whole_process_s": [r[0] for r in rs_runs],
            "gradscale_best_whole_process_s": rs_best[0],
            "gradscale_gflops_whole_process": flops / rs_best[0] / 1e9,
            "gradscale_log_gsc_to_output_l0": [g0["mean"], g0["stderr"]],
            "agreement_max_abs_z": {"z": zmax[0], "family": zmax[1], "layer": zmax[2], "of": len(zs)},
            "speedup_whole_process": best[0] / rs_best[0],
            "speedup_vs_jax_steady_state": inner["steady_s"] / rs_best[0],
        })
    json.dump(result, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
