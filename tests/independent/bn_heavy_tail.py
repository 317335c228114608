"""Independent-unit model of the batch-norm gradient rate at finite width (theory/batch-norm.md, "Finite
width: the heavy-tailed unit gain"): numpy, no code shared with gradscale.

Per unit j of a dense -> BN -> phi layer at the BSB1 point, the backward gain of a centred gradient is
Y_j = Q_j / (s_j^2 (B - 1)) with Q_j = tr(P'_j D_j P D_j P'_j) (u_j uniform on the sphere of radius sqrt(B)
in the centred subspace, D_j = diag(phi'(u_j)), P'_j = P - u_j u_j^T / B) and s_j^2 = alpha chi^2_{B-1} / B
independent of u_j (sigma_w^2 cancels). E Y = lambda, the closed-form rate. A layer of width n multiplies
the squared Jacobian norm by the mean of n independent Y_j; the measured rate is the typical one,
1/2 E ln(mean_n Y), which is below 1/2 ln lambda, by much when Y is heavy-tailed (B = 4: E Y^2 is infinite).
"mixing" also carries per-unit masses through fresh Gaussian weights over a depth-30 net and fits the slope
over layers 5..25, as bn_smooth_rate.py does for whole networks.

Usage: python3 bn_heavy_tail.py relu|tanh B WIDTH [LAYERS] [mixing NETS]
Prints: 1/2 ln lambda (Monte Carlo over the sphere), the model's typical rate and its standard error.
"""
import sys

import numpy as np


def sphere(rng, size, B):
    g = rng.standard_normal((size, B))
    g -= g.mean(1, keepdims=True)
    return np.sqrt(B) * g / np.linalg.norm(g, axis=1, keepdims=True)


def main():
    act, B, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    layers = int(sys.argv[4]) if len(sys.argv) > 4 else 20000
    if act == "relu":
        phi, dphi = (lambda u: np.maximum(u, 0.0)), (lambda u: (u > 0).astype(float))
    else:
        phi, dphi = np.tanh, (lambda u: 1.0 - np.tanh(u) ** 2)
    rng = np.random.default_rng(20261208)
    P = np.eye(B) - 1.0 / B

    def unit_q(size):
        u = sphere(rng, size, B)
        M = (P[None] - u[:, :, None] * u[:, None, :] / B) * dphi(u)[:, None, :]
        return np.einsum("nij,jk,nik->n", M, P, M)

    big = max(20_000, 32_000_000 // (B * B))
    u = sphere(rng, big, B)
    r = phi(u)
    alpha = np.mean(r[:, 0] ** 2) - np.mean(r[:, 0] * r[:, 1])
    eq = np.mean(unit_q(big))
    lam = B / ((B - 3) * (B - 1)) * eq / alpha
    print(f"half ln lambda (sphere Monte Carlo): {0.5 * np.log(lam):.5f}")

    def draw_y(size):
        s2 = alpha * rng.chisquare(B - 1, size) / B
        return unit_q(size) / (s2 * (B - 1))

    if len(sys.argv) > 5 and sys.argv[5] == "mixing":
        nets = int(sys.argv[6])
        slopes = []
        for _ in range(nets):
            a, lm = np.ones(n), [0.0]
            for _ in range(30):
                w2 = rng.standard_normal((n, n)) ** 2 / n
                a = w2.T @ (draw_y(n) * a)
                tot = a.sum()
                lm.append(lm[-1] + np.log(tot / n))
                a *= n / tot
            slopes.append(np.polyfit(np.arange(5, 26), 0.5 * np.array(lm)[5:26], 1)[0])
        slopes = np.array(slopes)
        print(f"mixing model, width {n}: {slopes.mean():.5f} +- {slopes.std() / np.sqrt(nets):.5f}")
        return
    g = np.concatenate([0.5 * np.log(draw_y(n * 100).reshape(100, n).mean(1)) for _ in range(layers // 100)])
    print(f"independent units, width {n}: {g.mean():.5f} +- {g.std() / np.sqrt(layers):.5f}")


if __name__ == "__main__":
    main()
