"""Independent Monte Carlo (numpy only, no gradscale code) of ln GSC(d, 0) for plain MLPs at finite width,
for theory/finite-width.md section 8 (the depth-uniform chain law).

Network: f_0 with ||f_0||^2 = n (direction irrelevant by rotation invariance), layer l:
h = W f + b, W_ij ~ N(0, sw2/n), b_i ~ N(0, sb2), f_l = phi(h). Jacobian J_l = diag(phi'(h)) W J_{l-1},
carried with its log-scale factored out (depths up to 2n). Records, for every network and every depth
d = 1..D, ln GSC(d, 0) = (ln(||J_d||_F^2 / n) - ln(||f_d||^2 / n)) / 2 (the prefix of a depth-D network is
a depth-d network, so one run gives every depth).

Usage: python3 finite_width_mc.py ACT WIDTH DEPTH SB2 NETS SEED OUT.npy
Also: python3 finite_width_mc.py resnet-relu WIDTH BLOCKS ALPHA NETS SEED OUT.npy, for
f_b = f_{b-1} + alpha relu(W2 relu(W1 f_{b-1})), W ~ N(0, 2/n) (He), no biases.
"""
import math
import sys

import numpy as np
from math import erf as _erf

SELU_L, SELU_A = 1.0507009873554805, 1.6732632423543772
SQ2 = math.sqrt(2.0)
_verf = np.vectorize(_erf, otypes=[float])


def phi_dphi(act, h):
    if act == "tanh":
        t = np.tanh(h)
        return t, 1 - t * t
    if act == "erf":
        return _verf(h), 2 / math.sqrt(math.pi) * np.exp(-h * h)
    if act == "selu":
        e = SELU_L * SELU_A * np.exp(np.minimum(h, 0))
        return np.where(h > 0, SELU_L * h, e - SELU_L * SELU_A), np.where(h > 0, SELU_L, e)
    if act == "gelu":
        pdf = np.exp(-h * h / 2) / math.sqrt(2 * math.pi)
        c = 0.5 * (1 + _verf(h / SQ2))
        return h * c, c + h * pdf
    if act == "relu":
        return np.maximum(h, 0), (h > 0).astype(float)
    if act == "linear":
        return h, np.ones_like(h)
    raise SystemExit(f"unknown act {act}")


def mlp(act, n, depth, sb2, nets, seed, batch=1):
    sw2 = 2.0 if act == "relu" else 1.0
    rng = np.random.default_rng(seed)
    out = np.empty((nets, depth))
    for b0 in range(0, nets, batch):
        B = min(batch, nets - b0)
        f = rng.standard_normal((B, n))
        f *= math.sqrt(n) / np.linalg.norm(f, axis=1, keepdims=True)
        J = np.broadcast_to(np.eye(n), (B, n, n)).copy()
        logj = np.zeros(B)  # ln of the factor taken out of J
        for d in range(depth):
            W = rng.standard_normal((B, n, n)) * math.sqrt(sw2 / n)
            h = np.einsum("bij,bj->bi", W, f)
            if sb2 > 0:
                h += rng.standard_normal((B, n)) * math.sqrt(sb2)
            p, dp = phi_dphi(act, h)
            J = dp[:, :, None] * (W[0] @ J[0])[None]
            fro = np.einsum("bij,bij->b", J, J)
            logj += np.log(fro)
            J /= np.sqrt(fro)[:, None, None]
            f = p
            lf = np.log((f * f).sum(1) / n)
            out[b0:b0 + B, d] = 0.5 * (logj - math.log(n) - lf)
    return out


def resnet(n, blocks, alpha, nets, seed, batch=1):
    rng = np.random.default_rng(seed)
    out = np.empty((nets, blocks))
    eye = np.eye(n)
    for b0 in range(0, nets, batch):
        B = min(batch, nets - b0)
        f = rng.standard_normal((B, n))
        f *= math.sqrt(n) / np.linalg.norm(f, axis=1, keepdims=True)
        lf0 = 0.0
        J = np.broadcast_to(eye, (B, n, n)).copy()
        logj = np.zeros(B)
        logf = np.zeros(B)  # f carried normalised too (it grows geometrically)
        for d in range(blocks):
            W1 = rng.standard_normal((B, n, n)) * math.sqrt(2.0 / n)
            W2 = rng.standard_normal((B, n, n)) * math.sqrt(2.0 / n)
            h1 = np.einsum("bij,bj->bi", W1, f)
            g1 = np.maximum(h1, 0)
            h2 = np.einsum("bij,bj->bi", W2, g1)
            g2 = np.maximum(h2, 0)
            D1 = (h1 > 0).astype(float)
            D2 = (h2 > 0).astype(float)
            JB = (W1[0] @ J[0]) * D1[0][:, None]
            J = J + (alpha * D2[0][:, None] * (W2[0] @ JB))[None]
            f = f + alpha * g2
            fro = np.einsum("bij,bij->b", J, J)
            logj += np.log(fro)
            J /= np.sqrt(fro)[:, None, None]
            nf = (f * f).sum(1)
            logf += np.log(nf / n)
            f /= np.sqrt(nf / n)[:, None]
            out[b0:b0 + B, d] = 0.5 * (logj - math.log(n) - logf)
    return out


if __name__ == "__main__":
    kind = sys.argv[1]
    n, depth = int(sys.argv[2]), int(sys.argv[3])
    x, nets, seed, path = float(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), sys.argv[7]
    if kind == "resnet-relu":
        res = resnet(n, depth, x, nets, seed)
    else:
        res = mlp(kind, n, depth, x, nets, seed)
    np.save(path, res)
    for d in sorted({1, 5, 10, 20, 50, depth} & set(range(1, depth + 1))):
        v = res[:, d - 1]
        print(f"{kind} n={n} d={d} x={x}: mean {v.mean():.4f} +- {v.std(ddof=1) / math.sqrt(len(v)):.4f}"
              f" sd {v.std(ddof=1):.4f}")
