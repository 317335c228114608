"""Independent whole-network check of the batch-norm gradient rate (theory/batch-norm.md): numpy, no code
shared with gradscale. dense -> batch norm -> phi, depth 30, Gaussian inputs, 8 backward probes per net;
per-layer ln GSC rate from the slope of ln GSC(L, l) over l = 5..25.

Usage: python3 bn_smooth_rate.py WIDTH BATCH NETS [tanh|relu] [untied]
  relu uses sigma_w^2 = 2, tanh sigma_w^2 = 1. "untied" draws fresh weights for the backward pass (the
  gradient-independence assumption of the closed form made exact), to separate its violation from other
  finite-width effects. Prints width, batch, mean rate, standard error.
"""
import sys

import numpy as np


def run(n, B, depth, phi, dphi, sw2, seed, probes=8, untied=False):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, B))
    caches = []
    norms = [np.linalg.norm(x)]
    y = x
    for _ in range(depth):
        W = rng.standard_normal((n, n)) * np.sqrt(sw2 / n)
        h = W @ y
        hc = h - h.mean(1, keepdims=True)
        s = np.sqrt((hc ** 2).mean(1, keepdims=True) + 1e-5)
        u = hc / s
        y = phi(u)
        caches.append((W, u, s))
        norms.append(np.linalg.norm(y))
    Wb = [rng.standard_normal((n, n)) * np.sqrt(sw2 / n) for _ in range(depth)] if untied else None
    logs = np.zeros((probes, depth + 1))
    for p in range(probes):
        g = rng.standard_normal((n, B))
        logs[p, depth] = np.log((g * g).sum())
        for l in range(depth - 1, -1, -1):
            W, u, s = caches[l]
            gu = g * dphi(u)
            # BN backward: du/dh = (1/s)(I - 11^T/B - u u^T/B) per unit.
            gh = (gu - gu.mean(1, keepdims=True) - u * (gu * u).mean(1, keepdims=True)) / s
            g = (Wb[l] if untied else W).T @ gh
            logs[p, l] = np.log((g * g).sum())
    sq = np.log(np.exp(logs).mean(0))
    lg = 0.5 * (sq - sq[depth]) + np.log(np.array(norms)) - np.log(norms[-1])
    ls = np.arange(5, 26)
    return -np.polyfit(ls, lg[5:26], 1)[0]


if __name__ == "__main__":
    n, B, reps = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    act = sys.argv[4] if len(sys.argv) > 4 else "tanh"
    untied = len(sys.argv) > 5 and sys.argv[5] == "untied"
    if act == "relu":
        phi, dphi, sw2 = (lambda v: np.maximum(v, 0)), (lambda v: (v > 0) * 1.0), 2.0
    else:
        phi, dphi, sw2 = np.tanh, (lambda v: 1 / np.cosh(v) ** 2), 1.0
    r = [run(n, B, 30, phi, dphi, sw2, s, untied=untied) for s in range(reps)]
    print(n, B, np.mean(r), np.std(r) / np.sqrt(len(r)))
