"""Independent numpy diagnosis of the radial-bulk chain (theory/finite-width.md section 9) for
f_b = f_{b-1} + alpha relu(W2 relu(W1 f_{b-1})), bias-free, W ~ N(0, 2/n), Gaussian inputs.

Two things, no gradscale code:

1. `mc`: sampled networks with exact Jacobians. Per network and block it records the forward ratio
   rho^2 = ||f_{b+1}||^2 / ||f_b||^2, the leak lambda = ||P_f J^T u||^2 (u = f_{b+1} / ||f_{b+1}||, P_f the
   projector orthogonal to f_b), ||J||_F^2 of the block Jacobian, and ln GSC(b, 0). It then re-runs the
   two-mass chain R' = rho^2 R + lambda B / (n - 1), B' = B (||J||_F^2 - rho^2 - lambda) / (n - 1) on
   (a) each network's own block quantities, (b) their block means (the deterministic chain), (c) each
   block's quantities permuted across networks jointly (keeps within-block correlations, kills the
   cross-block ones), (d) each quantity permuted separately and (e) one quantity at a time set to its
   block mean (which fluctuation matters).

2. `chain`: the sampled chain of section 9, implemented from the note's formulas: the forward pass is
   sampled exactly in O(n) per block (h1 = W1 f is i.i.d. N(0, s1 ||f||^2 / n) given f, h2 i.i.d.
   N(0, s2 ||a1||^2 / n) given a1, independent of f's coordinates), lambda is sampled exactly given the
   forward pass (W1 = h1 f^T / ||f||^2 + G1 P_f with G1 fresh, likewise W2), and ||J||_F^2 is replaced by its
   conditional expectation given the forward pass.

Usage: python3 relu_resnet_radial.py WIDTH BLOCKS ALPHA NETS DRAWS SEED
       python3 relu_resnet_radial.py anisotropy WIDTH BLOCKS ALPHA NETS SEED
"""
import math
import sys

import numpy as np

S1 = S2 = 2.0


def chain_masses(n, rho2, lam, fro):
    """ln GSC(b, 0) for b = 1..L from per-block (rho^2, lambda, ||J||_F^2), arrays (nets, L)."""
    nets, L = rho2.shape
    R = np.ones(nets)
    B = np.full(nets, n - 1.0)
    logs = np.zeros(nets)
    lf = np.zeros(nets)
    out = np.empty((nets, L))
    for b in range(L):
        R, B = rho2[:, b] * R + lam[:, b] * B / (n - 1), B * (fro[:, b] - rho2[:, b] - lam[:, b]) / (n - 1)
        t = R + B
        logs += np.log(t)
        R /= t
        B /= t
        lf += np.log(rho2[:, b])
        out[:, b] = 0.5 * (logs - math.log(n) - lf)
    return out


def block(f, alpha, eye, rng):
    """One block f -> f + alpha g, g = relu(W2 relu(W1 f)): the branch output g and the block Jacobian J."""
    n = f.shape[0]
    W1 = rng.standard_normal((n, n)) * math.sqrt(S1 / n)
    W2 = rng.standard_normal((n, n)) * math.sqrt(S2 / n)
    h1 = W1 @ f
    h2 = W2 @ np.maximum(h1, 0)
    J = eye + alpha * ((h2 > 0)[:, None] * (W2 @ ((h1 > 0)[:, None] * W1)))
    return np.maximum(h2, 0), J


def mc(n, L, alpha, nets, rng):
    rho2 = np.empty((nets, L))
    lam = np.empty((nets, L))
    fro = np.empty((nets, L))
    lg = np.empty((nets, L))
    eye = np.eye(n)
    for k in range(nets):
        f = rng.standard_normal(n)
        P = eye.copy()
        logp = 0.0
        logf = 0.0
        for b in range(L):
            g, J = block(f, alpha, eye, rng)
            f1 = f + alpha * g
            rho2[k, b] = (f1 @ f1) / (f @ f)
            u = f1 / math.sqrt(f1 @ f1)
            v = f / math.sqrt(f @ f)
            jtu = J.T @ u
            jtu -= v * (v @ jtu)
            lam[k, b] = jtu @ jtu
            fro[k, b] = np.sum(J * J)
            P = J @ P
            s = np.sum(P * P)
            logp += math.log(s)
            P /= math.sqrt(s)
            logf += math.log(rho2[k, b])
            lg[k, b] = 0.5 * (logp - math.log(n) - logf)
            f = f1 / math.sqrt(f1 @ f1 / n)
    return lg, rho2, lam, fro


def anisotropy(n, L, alpha, nets, rng):
    """Per block, mean over networks of: the bulk Gram's mass along the mean direction 1 (made orthogonal
    to f) relative to the isotropic B / (n - 1), the effective leak (R' - rho^2 R) / (B / (n - 1))
    relative to lambda, split into the quadratic term ||P^T x||^2 and the radial-bulk cross term
    2 rho <P^T v, P^T x> (x = P_f J^T u), each over lambda B / (n - 1), and the mass along f_b - f_0 (the sum of the branch outputs, made orthogonal to
    f_b) relative to the isotropic share."""
    mean_ratio = np.zeros(L)
    leak_ratio = np.zeros(L)
    past_ratio = np.zeros(L)
    cross_ratio = np.zeros(L)
    quad_ratio = np.zeros(L)
    eye = np.eye(n)
    for _ in range(nets):
        f = rng.standard_normal(n)
        S = np.zeros(n)  # f_b - f_0 direction: the running sum of the branch outputs
        P = eye.copy()
        for b in range(L):
            g, J = block(f, alpha, eye, rng)
            v = f / math.sqrt(f @ f)
            f1 = f + alpha * g
            u = f1 / math.sqrt(f1 @ f1)
            R = np.sum((P.T @ v) ** 2)
            B = np.sum(P * P) - R
            jtu = J.T @ u
            lam = jtu @ jtu - (v @ jtu) ** 2
            x = jtu - v * (v @ jtu)  # P_f J^T u: R' = rho^2 R + 2 rho <P^T v, P^T x> + ||P^T x||^2
            iso = lam * B / (n - 1)
            pv, px = P.T @ v, P.T @ x
            cross_ratio[b] += 2 * (v @ jtu) * (pv @ px) / iso / nets
            quad_ratio[b] += (px @ px) / iso / nets
            P = J @ P
            s = math.sqrt(np.sum(P * P))
            P /= s
            R1 = np.sum((P.T @ u) ** 2) * s * s
            leak_ratio[b] += (R1 - (f1 @ f1) / (f @ f) * R) / (B / (n - 1)) / lam / nets
            e = np.ones(n) - u * u.sum()
            e /= math.sqrt(e @ e)
            R1n = np.sum((P.T @ u) ** 2)
            mean_ratio[b] += np.sum((P.T @ e) ** 2) / ((1 - R1n) / (n - 1)) / nets
            S = (S + alpha * g) * math.sqrt(n / (f1 @ f1))
            e = S - u * (u @ S)
            e /= math.sqrt(e @ e)
            past_ratio[b] += np.sum((P.T @ e) ** 2) / ((1 - R1n) / (n - 1)) / nets
            f = f1 / math.sqrt(f1 @ f1 / n)
    return mean_ratio, leak_ratio, past_ratio, cross_ratio, quad_ratio


def chain(n, L, alpha, draws, rng):
    rho2 = np.empty((draws, L))
    lam = np.empty((draws, L))
    fro = np.empty((draws, L))
    for k in range(draws):
        f = rng.standard_normal(n)
        for b in range(L):
            nf = math.sqrt(f @ f)
            h1 = rng.standard_normal(n) * math.sqrt(S1 * nf * nf / n)
            a1 = np.maximum(h1, 0)
            na = math.sqrt(a1 @ a1)
            h2 = rng.standard_normal(n) * math.sqrt(S2 * na * na / n)
            g = np.maximum(h2, 0)
            d1 = (h1 > 0).sum()
            d2 = (h2 > 0).sum()
            f1 = f + alpha * g
            nf1 = math.sqrt(f1 @ f1)
            u = f1 / nf1
            v = f / nf
            w = a1 / na
            c = g @ u
            d2u = (h2 > 0) * u
            x2 = rng.standard_normal(n) * math.sqrt(S2 * (d2u @ d2u) / n)
            x2 -= w * (w @ x2)
            y = w * c / na + (h1 > 0) * x2
            z1 = rng.standard_normal(n) * math.sqrt(S1 * (y @ y) / n)
            vec = g / nf1 + z1
            vec -= v * (v @ vec)
            lam[k, b] = alpha * alpha * (vec @ vec)
            r2 = (nf1 / nf) ** 2
            rho2[k, b] = r2
            fro[k, b] = r2 + (n - 1) * (
                1 + alpha * alpha * S1 * ((g @ g) / (n * na * na) + S2 * d2 * (d1 - 1) / (n * n))
            )
            f = f1 / math.sqrt(f1 @ f1 / n)
    return chain_masses(n, rho2, lam, fro), rho2, lam, fro


def summ(x):
    return f"{x.mean():.4f} ({x.std(ddof=1) / math.sqrt(len(x)):.4f}) sd {x.std(ddof=1):.3f}"


def main():
    if sys.argv[1] == "anisotropy":
        n, L, alpha, nets, seed = int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
        mr, lr, pr, cr, qr = anisotropy(n, L, alpha, nets, np.random.default_rng(seed))
        for b in sorted({1, 2, 5, 10, 20, 30, 50} & set(range(1, L + 1))):
            print(f"alpha={alpha} block {b}: mass along 1 / isotropic {mr[b - 1]:.2f}; effective leak / lambda {lr[b - 1]:.3f}; mass along f_b - f_0 / isotropic {pr[b - 1]:.2f}; leak split: quadratic {qr[b - 1]:.3f} + cross {cr[b - 1]:.3f}")
        return
    n, L, alpha = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    nets, draws, seed = int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
    rng = np.random.default_rng(seed)
    lg, rho2, lam, fro = mc(n, L, alpha, nets, rng)
    own = chain_masses(n, rho2, lam, fro)
    mean = chain_masses(n, *(np.broadcast_to(x.mean(0), x.shape) for x in (rho2, lam, fro)))
    perm_j = np.empty_like(lg)
    idx = np.stack([rng.permutation(nets) for _ in range(L)], 1)
    pj = [np.take_along_axis(x, idx, 0) for x in (rho2, lam, fro)]
    perm_j = chain_masses(n, *pj)
    ps = [np.take_along_axis(x, np.stack([rng.permutation(nets) for _ in range(L)], 1), 0) for x in (rho2, lam, fro)]
    perm_s = chain_masses(n, *ps)
    ch, crho2, clam, cfro = chain(n, L, alpha, draws, rng)
    at_mean = lambda x: np.broadcast_to(x.mean(0), x.shape)
    only = {
        "rho2 at its mean": chain_masses(n, at_mean(rho2), lam, fro),
        "lambda at its mean": chain_masses(n, rho2, at_mean(lam), fro),
        "fro at its mean": chain_masses(n, rho2, lam, at_mean(fro)),
    }
    for d in sorted({1, 2, 5, 10, 20, 50} & set(range(1, L + 1))):
        i = d - 1
        print(f"n={n} alpha={alpha} blocks={d}")
        print(f"  measured          {summ(lg[:, i])}")
        print(f"  chain on own      {summ(own[:, i])}  max |diff| {np.abs(own[:, i] - lg[:, i]).max():.4f}; paired own - measured {summ(own[:, i] - lg[:, i])}")
        print(f"  chain on means    {mean[0, i]:.4f}")
        print(f"  perm joint/block  {summ(perm_j[:, i])}")
        print(f"  perm separately   {summ(perm_s[:, i])}")
        print(f"  sampled chain     {summ(ch[:, i])}")
        for k, v in only.items():
            print(f"  own, {k:18} {summ(v[:, i])}")
        print(
            f"  block {d}: rho2 mc {rho2[:, i].mean():.3f} sd {rho2[:, i].std():.3f} chain {crho2[:, i].mean():.3f} sd {crho2[:, i].std():.3f}; "
            f"lam mc {lam[:, i].mean():.3f} sd {lam[:, i].std():.3f} chain {clam[:, i].mean():.3f} sd {clam[:, i].std():.3f}; "
            f"fro/n mc {fro[:, i].mean() / n:.4f} sd {fro[:, i].std() / n:.4f} chain {cfro[:, i].mean() / n:.4f} sd {cfro[:, i].std() / n:.4f}"
        )
        print(
            f"  corr(ln rho2, lam) mc {np.corrcoef(np.log(rho2[:, i]), lam[:, i])[0, 1]:.2f} chain {np.corrcoef(np.log(crho2[:, i]), clam[:, i])[0, 1]:.2f}; "
            f"corr(ln rho2, fro) mc {np.corrcoef(np.log(rho2[:, i]), fro[:, i])[0, 1]:.2f} chain {np.corrcoef(np.log(crho2[:, i]), cfro[:, i])[0, 1]:.2f}"
        )


if __name__ == "__main__":
    main()
