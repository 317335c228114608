#!/usr/bin/env python3
"""Independent check of the Monte Carlo GSC of batch-normalised ReLU nets (issue 4).

Written from the definitions only, sharing no code with src/: numpy forward pass, and Jacobian-vector
products by the complex step (f(x + i h v).imag / h, exact to rounding for every op here: dense, batch norm
with the biased variance written without conjugation, and relu(z) = z * [Re z > 0]). ln GSC(L, 0) of the
whole batch map (dim n B) = 1/2 [ln ||J||_F^2 - ln(n B) + ln ||x||^2 - ln ||f_L||^2], with ||J||_F^2 estimated
by P Gaussian probes and the same second-order log-bias correction as the Rust engine (theory/monte-carlo.md).

Usage: python3 tests/independent/bn_gsc.py B [width depth samples probes seed]
Prints: mean, standard error of ln GSC(L, 0) over samples (compare with
`gradscale simulate --arch ... --probes P --json`, layer L's log_gsc_from_input).
"""
import sys
import numpy as np


def bn(h, eps):
    m = h.mean(axis=-1, keepdims=True)
    d = h - m
    var = (d * d).mean(axis=-1, keepdims=True)
    return d / np.sqrt(var + eps)


def relu(z):
    return z * (z.real > 0)


def main():
    b = int(sys.argv[1])
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 100
    depth = int(sys.argv[3]) if len(sys.argv) > 3 else 20
    samples = int(sys.argv[4]) if len(sys.argv) > 4 else 100
    probes = int(sys.argv[5]) if len(sys.argv) > 5 else 8
    seed = int(sys.argv[6]) if len(sys.argv) > 6 else 0
    rng = np.random.default_rng(seed)
    step = 1e-30
    out = []
    for _ in range(samples):
        x = rng.standard_normal((n, b))
        x *= np.sqrt(n) / np.linalg.norm(x, axis=0)
        ws = [rng.standard_normal((n, n)) * np.sqrt(2.0 / n) for _ in range(depth)]
        v = rng.standard_normal((probes, n, b))
        z = x[None, :, :] + 1j * step * v
        for w in ws:
            z = relu(bn(w @ z, 1e-5))
        f = z[0].real
        jv2 = ((z.imag / step) ** 2).sum(axis=(1, 2))
        mean = jv2.mean()
        rel = jv2.var(ddof=1) / (probes * mean * mean)
        lg = 0.5 * (np.log(mean) + 0.5 * rel - np.log(n * b) + np.log((x * x).sum()) - np.log((f * f).sum()))
        out.append(lg)
    out = np.array(out)
    print(f"{out.mean():.6f} {out.std(ddof=1) / np.sqrt(len(out)):.6f}")


if __name__ == "__main__":
    main()
