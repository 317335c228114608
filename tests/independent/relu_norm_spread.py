"""Finding 1 of theory/collapse.md, quantified (numpy, no gradscale code): at finite width each input's
||f_l||^2 takes its own part of the log-normal walk, and the spread of norms between inputs adds to the
per-unit std of the pre-activations across inputs, which mean field attributes to angles alone.

Prints, for He-relu, width 256, batch 32 (inputs normalised to ||x||^2 = n), 60 networks, seed 3:
  - E (ln s_i - ln s_j)^2 measured, and predicted by the recursion
      D_l = D_{l-1} + (2/n) (K(1) - K(c_l)),  K(c) = E[relu(u)^2 relu(v)^2] / (E relu^2)^2 - 1,
    c_l the mean-field pre-activation correlation (relu kernel map from c_1 = 0);
  - the mean over units of the across-input variance of the pre-activations, split into the angular part
    sigma_w^2 s (1 - c_ang)(B - 1)/B and the norm part sigma_w^2 s (B - 1)/B D/8;
  - E[std] (what `gradscale collapse` reports) against sqrt(E[var]).
"""
import math

import numpy as np

n, B, L, R = 256, 32, 45, 60


def K(c, z1, z2):
    v = c * z1 + math.sqrt(max(1 - c * c, 0.0)) * z2
    return (np.maximum(z1, 0) ** 2 * np.maximum(v, 0) ** 2).mean() / 0.25 - 1


def J(c):
    return (math.sqrt(1 - c * c) + (math.pi - math.acos(c)) * c) / math.pi


def predicted_diff2():
    z = np.random.default_rng(0).standard_normal((2, 2_000_000))
    k1 = K(1.0, z[0], z[1])
    d, c, out = 0.0, 0.0, {}
    for l in range(1, L + 1):
        d += 2.0 / n * (k1 - K(c, z[0], z[1]))
        out[l] = d  # of f_l
        c = J(c)
    return out


def measured():
    rng = np.random.default_rng(3)
    res = {l: [] for l in (14, 24, 44)}
    for _ in range(R):
        x = rng.standard_normal((n, B))
        x *= np.sqrt(n) / np.linalg.norm(x, axis=0)
        f = x
        for l in range(1, L + 1):
            W = rng.standard_normal((n, n)) * np.sqrt(2.0 / n)
            h = W @ f
            if l in res:
                s = (f * f).mean(0)
                fh = f / np.sqrt(s)
                cang = ((fh.T @ fh) / n)[np.triu_indices(B, 1)].mean()
                res[l].append((h.var(axis=1).mean(), h.std(axis=1).mean(), cang,
                               2 * np.var(np.log(s)), s.mean()))
            f = np.maximum(h, 0)
    return {l: np.array(v).mean(0) for l, v in res.items()}


if __name__ == "__main__":
    pd = predicted_diff2()
    for l, m in measured().items():
        var, std, cang, d2, s = m
        ang = 2 * s * (1 - cang) * (B - 1) / B
        nrm = 2 * s * (B - 1) / B * pd[l - 1] / 8
        print(f"l={l}: E(dln s)^2 of f_(l-1) measured {d2:.4f} predicted {pd[l - 1]:.4f}; "
              f"E var {var:.4f} = angular {ang:.4f} + norm {nrm:.4f} (sum {ang + nrm:.4f}); "
              f"E std {std:.4f} vs sqrt E var {math.sqrt(var):.4f}")
