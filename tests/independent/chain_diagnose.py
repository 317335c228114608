"""Diagnosis of the finite-width chain (theory/finite-width.md section 8), numpy only, no gradscale code.

Samples real plain MLPs (W ~ N(0, sw2/n), b ~ N(0, sb2), ||f_0||^2 = n) and records per layer the true
states of the Jacobian J = J_{m<-0} (normalised so that tr M = 1, M = J J^T / ||J||_F^2) and of the
forward pass: ln ||J||_F^2, the path fraction p = e^T M e (e = f_m / ||f_m||), the spread
s = n tr M^2, the cross weight c = e^T M^2 e - p^2, ln ||f_m||^2. At every step it also evaluates the
chain's one-step update *from the true state with the true units* (the same z, phi, phi'), so the
per-step bias of each of the chain's updates shows directly, without the chain's own drift.

The one-step comparison of run() is the chain *before* the fix of section 8 (the spread as a ratio of
expectations): that is what located the problem. compare() runs the chain free with the fixed spread
update (FIXED = True; the off-path variance is still the old one here) against the true trajectories.

Usage: python3 chain_diagnose.py ACT WIDTH DEPTH SB2 NETS SEED
       python3 chain_diagnose.py compare ACT WIDTH DEPTH SB2 NETS SEED
"""
import math
import sys

import numpy as np

from finite_width_mc import phi_dphi


def run(act, n, depth, sb2, nets, seed, gam=32):
    sw2 = 2.0 if act == "relu" else 1.0
    rng = np.random.default_rng(seed)
    B = nets
    f = rng.standard_normal((B, n))
    f *= math.sqrt(n) / np.linalg.norm(f, axis=1, keepdims=True)
    J = np.broadcast_to(np.eye(n) / math.sqrt(n), (B, n, n)).copy()  # tr M = 1
    lnF = np.full(B, math.log(n))
    rows = []
    for m in range(1, depth + 1):
        np_ = n
        e = f / np.linalg.norm(f, axis=1, keepdims=True)
        M = J @ J.transpose(0, 2, 1)
        Me = np.einsum("bij,bj->bi", M, e)
        p = np.einsum("bi,bi->b", e, Me)
        c = np.einsum("bi,bi->b", Me, Me) - p * p
        s = np_ * np.einsum("bij,bij->b", M, M)
        W = rng.standard_normal((B, n, np_)) * math.sqrt(sw2 / np_)
        sq = (f * f).sum(1)
        h = np.einsum("bij,bj->bi", W, f)
        z = h / np.sqrt(sw2 * sq / np_)[:, None]
        if sb2 > 0:
            h = h + rng.standard_normal((B, n)) * math.sqrt(sb2)
        ph, d = phi_dphi(act, h)
        d2 = d * d
        Jn = d[:, :, None] * (W @ J)
        gain = np.einsum("bij,bij->b", Jn, Jn)
        # exact decomposition of the gain: path + cross + off
        sig = sw2 / np_
        path = sig * p * (d2 * z * z).sum(1)
        G = W * math.sqrt(1 / sig) - z[:, :, None] * e[:, None, :]  # off-path Gaussian rows (orth. to e)
        v = Me - p[:, None] * e  # P M e
        cross = 2 * sig * (d2 * z * np.einsum("bij,bj->bi", G, v)).sum(1)
        off = gain - path - cross
        fn = ph
        en = fn / np.linalg.norm(fn, axis=1, keepdims=True)
        Jt_f = np.einsum("bij,bi->bj", Jn, en)
        p_new = (Jt_f * Jt_f).sum(1) / gain
        # chain's one-step update from the true state (p, s) and the same units
        phi2 = (ph * ph).sum(1)
        D2 = d2.sum(1)
        D4 = (d2 * d2).sum(1)
        pdz = (ph * d * z).sum(1)
        pd2 = (ph * ph * d2).sum(1)
        rank = np.maximum(np_ / s, 1.0)
        offm = sig * (1 - p) * D2
        rv1 = 2 * D4 / (rank * D2 * D2)
        g1 = rng.gamma(1 / rv1[:, None], rv1[:, None], size=(B, gam))
        cg = path[:, None] + offm[:, None] * g1
        rv2 = 2 / rank
        g2 = rng.gamma(1 / rv2[:, None], rv2[:, None], size=(B, gam))
        num = sig * p[:, None] * pdz[:, None] ** 2 + sig * (1 - p)[:, None] * pd2[:, None] * g2
        cp = np.clip(num / (phi2[:, None] * cg), 0, 1)
        one_v = n * D4 / D2 ** 2
        cs = (n / np_) * s + one_v * (1 + s / np_)
        # true s' and c' after the step
        Mn = Jn @ Jn.transpose(0, 2, 1) / gain[:, None, None]
        s_new = n * np.einsum("bij,bij->b", Mn, Mn)
        rows.append(dict(
            m=m, lnF=lnF.mean(), p=p.mean(), s=s.mean(), c=c.mean(), lnf=np.log(sq).mean(),
            dln_true=np.log(gain).mean(), dln_chain=np.log(cg).mean(),
            dln_nocross=np.log(path + off).mean(),
            var_true=np.log(gain).var(), var_chain=np.log(cg).var(),
            offrv_true=(off / (sig * (1 - p) * D2) - 1).var(), offrv_chain=rv1.mean(),
            pn_true=p_new.mean(), pn_chain=cp.mean(), sn_true=s_new.mean(), sn_chain=cs.mean(),
        ))
        lnF = lnF + np.log(gain)
        J = Jn / np.sqrt(gain)[:, None, None]
        f = fn
    return rows


def main():
    act, n, depth = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    sb2, nets, seed = float(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
    rows = run(act, n, depth, sb2, nets, seed)
    cum = dict(dln=0.0, nocross=0.0)
    print("m p s c | dlnF true-chain (cum) | cross effect | p' true chain | s' true chain | offrv true chain")
    for r in rows:
        cum["dln"] += r["dln_true"] - r["dln_chain"]
        cum["nocross"] += r["dln_true"] - r["dln_nocross"]
        if r["m"] % max(1, depth // 15) == 0 or r["m"] <= 3:
            print(f"{r['m']:3d} {r['p']:.4f} {r['s']:7.2f} {r['c']:.5f} | {r['dln_true'] - r['dln_chain']:+.5f}"
                  f" ({cum['dln']:+.4f}) | {cum['nocross']:+.4f} | {r['pn_true']:.4f} {r['pn_chain']:.4f} |"
                  f" {r['sn_true']:7.2f} {r['sn_chain']:7.2f} | {r['offrv_true']:.4f} {r['offrv_chain']:.4f}")


def geo_mu3(mu2, n):
    """tr M^3 of the geometric spectrum lam_k = q^k / sum (k < n) whose tr M^2 is mu2 (vectorised)."""
    mu2 = np.clip(mu2, 1.0 / n, 1.0)
    lo, hi = np.zeros_like(mu2), np.ones_like(mu2)

    def moments(q):
        qn = q ** n
        m2 = (1 - q) * (1 + qn) / ((1 + q) * (1 - qn))
        m3 = (1 - q) ** 3 * (1 - qn ** 3) / ((1 - qn) ** 3 * (1 - q ** 3))
        return m2, m3
    for _ in range(50):
        q = 0.5 * (lo + hi)
        m2, _ = moments(np.clip(q, 1e-12, 1 - 1e-9))
        lo = np.where(m2 > mu2, q, lo)
        hi = np.where(m2 > mu2, hi, q)
    return moments(np.clip(0.5 * (lo + hi), 1e-12, 1 - 1e-9))[1]


def chain_free(act, n, depth, sb2, draws, seed, fixed=False):
    """The chain of finite_chain.rs (k = 0 only), free-running, vectorised over draws: its own state
    trajectories, to compare with the true ones of run()."""
    sw2 = 2.0 if act == "relu" else 1.0
    rng = np.random.default_rng(seed)
    B = draws
    sq = np.full(B, float(n))
    p = np.full(B, 1.0 / n)
    s = np.ones(B)
    lnF = np.full(B, math.log(n))
    rows = []
    for m in range(1, depth + 1):
        rows.append(dict(m=m, lnF=lnF.mean(), p=p.mean(), s=s.mean(), lnf=np.log(sq).mean()))
        sig = sw2 / n
        z = rng.standard_normal((B, n))
        h = np.sqrt(sw2 * sq / n)[:, None] * z
        if sb2 > 0:
            h = h + rng.standard_normal((B, n)) * math.sqrt(sb2)
        ph, d = phi_dphi(act, h)
        d2 = d * d
        phi2 = (ph * ph).sum(1)
        D2, D4 = d2.sum(1), (d2 * d2).sum(1)
        d2z2 = (d2 * z * z).sum(1)
        pdz = (ph * d * z).sum(1)
        pd2 = (ph * ph * d2).sum(1)
        rank = np.maximum(n / s, 1.0)
        path = sig * p * d2z2
        rv1 = 2 * D4 / (rank * D2 * D2)
        gain = path + sig * (1 - p) * D2 * rng.gamma(1 / rv1, rv1)
        rv2 = 2 / rank
        num = sig * p * pdz ** 2 + sig * (1 - p) * pd2 * rng.gamma(1 / rv2, rv2)
        p = np.clip(num / (phi2 * gain), 0, 1)
        lnF = lnF + np.log(gain)
        if fixed:
            mu2 = s / n
            s = np.clip(s + (n * D4 / D2 ** 2) * (1 + mu2 - 8 * geo_mu3(mu2, n) + 6 * mu2 ** 2), 1, n)
        else:
            s = np.minimum(s + (n * D4 / D2 ** 2) * (1 + s / n), n)
        sq = phi2
    rows.append(dict(m=depth + 1, lnF=lnF.mean(), p=p.mean(), s=s.mean(), lnf=np.log(sq).mean()))
    return rows


FIXED = True


def compare(act, n, depth, sb2, nets, seed):
    tr = run(act, n, depth, sb2, nets, seed, gam=2)
    ch = chain_free(act, n, depth, sb2, 4 * nets, seed + 1, fixed=FIXED)
    print("m | lnF true chain | p true chain | s true chain | lnf true chain | lnGSC2 true chain")
    for t, c in zip(tr, ch):
        if t["m"] % max(1, depth // 12) == 1 or t["m"] == depth:
            g_t = t["lnF"] - math.log(n) - (t["lnf"] - math.log(n))
            g_c = c["lnF"] - math.log(n) - (c["lnf"] - math.log(n))
            print(f"{t['m']:3d} | {t['lnF']:8.3f} {c['lnF']:8.3f} | {t['p']:.4f} {c['p']:.4f} | {t['s']:6.2f}"
                  f" {c['s']:6.2f} | {t['lnf']:7.3f} {c['lnf']:7.3f} | {g_t:7.3f} {g_c:7.3f}")


if __name__ == "__main__":
    if sys.argv[1] == "compare":
        compare(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6]),
                int(sys.argv[7]))
    else:
        main()
