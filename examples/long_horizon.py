"""The flow far beyond the paper's horizon (t = 1e6, i.e. 1e8 GD steps at lr 0.01), against Theorem 3.3.

An adaptive solver takes a few hundred steps where gradient descent would need 1e8.  Prints, at
each decade of flow time, the training and test loss and the attention coefficients C_ij of
Theorem 3.3 (W_K^T W_Q - W_K(0)^T W_Q(0) = sum C_ij mu_i mu_j^T): C_12, C_21 should be positive and
C_31, C_32 negative and large, every coefficient involving an irrelevant word an order smaller.
Also fits the late decay of the loss (Lhat ~ t^-p) and the growth of C per decade, then prints the
report's Theorem 3.3 rows.  Saves figures next to this file.

    python examples/long_horizon.py [T_END]
"""

import sys
from pathlib import Path

import numpy as np

import flowsim

HERE = Path(__file__).resolve().parent


def main(t_end: float = 1e6):
    data, params, test_key = flowsim.RunConfig.preset("paper").build()  # the problem of `flowsim integrate` (seed 0)
    r = flowsim.integrate(params, data, t_end=t_end, saves=401, max_steps=1_000_000, test_key=test_key)
    t, o = r.ts, r.observables
    print(f"T1 = {r.events['phase1_end']:.4g}; solver steps {r.stats['steps']}, gradient evaluations {r.stats['nfev']}")
    print(f"{'t':>8} {'loss':>10} {'test loss':>10} {'C12':>9} {'C21':>9} {'C31':>9} {'C32':>9} {'max|C_irr|':>10}")
    for decade in range(0, int(np.log10(t_end)) + 1):
        i = int(np.argmin(np.abs(np.log(t[1:]) - np.log(10.0**decade)))) + 1
        C = o["C"][i]
        print(f"{t[i]:8.0e} {o['loss'][i]:10.3e} {o['test_loss'][i]:10.3e} {C[0, 1]:9.4f} {C[1, 0]:9.4f} "
              f"{C[2, 0]:9.4f} {C[2, 1]:9.4f} {o['C_irrelevant_max'][i]:10.4f}")
    late = t >= t_end / 100
    p = -np.polyfit(np.log(t[late]), np.log(o["loss"][late]), 1)[0]
    growth = np.polyfit(np.log10(t[late]), o["C"][late][:, [0, 1, 2, 2], [1, 0, 0, 1]], 1)[0]
    print(f"late loss decay: Lhat ~ t^-{p:.3f}; change of C12, C21, C31, C32 per decade: {np.round(growth, 4).tolist()}")
    theorem33 = [c for name, c in flowsim.CLAIMS.items() if name.startswith("thm33.")]
    for row in flowsim.check_claims(r, claims=theorem33):
        print(f"[{row.verdict}] {row.claim}: " + ", ".join(f"{k} = {v:.4g}" for k, v in row.measured.items()))
    for path in flowsim.plot(r, HERE, kinds=["loss", "C", "scores"], prefix="long_horizon_"):
        print(path)


if __name__ == "__main__":
    main(*(float(a) for a in sys.argv[1:]))
