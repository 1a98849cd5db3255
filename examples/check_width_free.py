"""The width-free engine checked two ways (spec 7.6-7.7), with the numbers docs/performance.md quotes.

1. Exactness: from one explicit start (theory data and init, d = 40, m = 4096), the four-matrix
   flow (engine "params") and the width-free one ("subspace", the start compressed exactly) at
   rtol 1e-12: the largest relative differences of the loss, G, the scores and T1.
2. Distribution: 64 starts drawn directly as subspace coordinates (the Bartlett draw) against 64
   explicit m = 2048 Gaussian starts compressed by QR: two-sample Kolmogorov-Smirnov p-values of
   T1 and of initial Gram entries, and the same test against draws whose sigma0 or number of
   degrees of freedom is off by 10% (which it must reject).

    python examples/check_width_free.py
"""

import numpy as np
from scipy.stats import ks_2samp

import flowsim
from flowsim.core.draws import draw
from flowsim.models.cooccurrence.subspace import SubspaceStart, _bartlett, rank_bound


def exactness():
    config = flowsim.RunConfig.preset("theory").merge({"m": 4096, "start": "matrices"})
    data, params, key = config.build()
    options = dict(rtol=1e-12, atol=1e-14, solver="dopri8", saves=101, n_test=500, test_key=key)
    ref, got = (flowsim.integrate(params, data, 100.0, engine=e, **options) for e in ("params", "subspace"))
    rel = lambda k: float(np.max(np.abs(got.observables[k] - ref.observables[k])) / np.max(np.abs(ref.observables[k])))
    print(f"exactness at m = 4096, m1 = {config.m1}, d = 40, t = 100 (theory data and init, rtol 1e-12):")
    print(f"  final loss relative difference {abs(got.observables['loss'][-1] / ref.observables['loss'][-1] - 1):.2e}")
    for key_ in ("loss", "G", "scores", "test_loss"):
        print(f"  {key_}: largest difference over the saves, relative to its largest value: {rel(key_):.2e}")
    print(f"  T1: params {ref.events['phase1_end']:.12g}, subspace {got.events['phase1_end']:.12g}, "
          f"difference {abs(got.events['phase1_end'] - ref.events['phase1_end']):.2e}")


def invariants(s) -> list[float]:
    u, V, K, Q = (np.asarray(x) for x in (s.u, s.W_V, s.W_K, s.W_Q))
    return [u @ u, u @ V[:, 0], V[:, 0] @ V[:, 0], V[:, 0] @ V[:, 1], K[:, 0] @ K[:, 0], K[:, 0] @ Q[:, 1]]


def distribution(m=2048, seeds=64):
    config = flowsim.RunConfig.preset("theory").merge({"m": m, "t_end": 1.0, "saves": 2, "n_test": 100})
    data, _, key = config.build()
    d, m1, L = config.d, config.m1, config.L
    s0, s1 = flowsim.init_scales("theory-unit", d=d, m=m, m1=m1, L=L)
    keys = [flowsim.RunConfig().merge({"seed": s}).keys()[1] for s in range(2 * seeds)]

    def T1(start):
        return flowsim.integrate(start, data, 1.0, engine="subspace", saves=2, n_test=100, test_key=key).events["all_correct"]

    def bartlett(k, sigma0=s0, dof=m):
        R = draw(_bartlett, k, p=rank_bound(d), m=dof) * np.r_[np.sqrt(m1) * s1, np.full(3 * d, sigma0)]
        return SubspaceStart(u=R[:, 0], W_V=R[:, 1:d + 1], W_K=R[:, d + 1:2 * d + 1], W_Q=R[:, 2 * d + 1:],
                             m=np.asarray(m), m1=np.asarray(m1), sigma0=np.float64(sigma0), sigma1=np.float64(s1))

    explicit = [flowsim.compress(flowsim.init_params(k, d, m, m1, scheme="theory-unit", L=L), final_params=False)
                for k in keys[:seeds]]
    samples = {"direct draws": [flowsim.init_subspace(k, d, m, m1, scheme="theory-unit", L=L) for k in keys[seeds:]],
               "sigma0 x 1.1": [bartlett(k, sigma0=1.1 * s0) for k in keys[seeds:]],
               "0.9 m degrees of freedom": [bartlett(k, dof=int(0.9 * m)) for k in keys[seeds:]]}
    ref_inv = np.array([invariants(s) for s in explicit])
    ref_T1 = np.array([T1(s) for s in explicit])
    print(f"distribution at m = {m}, {seeds} starts each, against QR of explicit Gaussian draws (KS p-values):")
    for name, starts in samples.items():
        inv = np.array([invariants(s) for s in starts])
        gram = [ks_2samp(ref_inv[:, j], inv[:, j]).pvalue for j in range(inv.shape[1])]
        print(f"  {name:26}: T1 p = {ks_2samp(ref_T1, [T1(s) for s in starts]).pvalue:.3g}; initial Gram entries "
              f"(||u||^2, u.V1, ||V1||^2, V1.V2, ||K1||^2, K1.Q2): smallest p = {min(gram):.3g}")


if __name__ == "__main__":
    exactness()
    distribution()
