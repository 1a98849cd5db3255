"""T1 against the width m under the theory initialization, against Theorem 3.1's T1 = O~(1/m).

A sweep over m and seeds (theory-mode data, Condition 1 init with m1 = m), integrated by
``flowsim.sweep`` in batches of seeds; then
- T1 against m on log-log axes, with a least-squares fit log T1 = a + b log m and its spread
  (the slope refitted on bootstrap resamples of the seeds);
- the final training loss against flow time for each m;
- Theorem 3.3's C_12, C_21 (target-target) and C_31, C_32 (target-common) at t_end against m,
  with the largest coefficient that involves an irrelevant word.

    python examples/scaling.py                      # m = 16..256, 6 seeds, t_end 2000
    python examples/scaling.py --m 16 32 --seeds 2 --t-end 200   # a quick look
"""

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

import flowsim

HERE = Path(__file__).resolve().parent


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--m", type=int, nargs="+", default=[16, 32, 64, 128, 256])
    ap.add_argument("--seeds", type=int, default=6)
    ap.add_argument("--t-end", type=float, default=2000.0)
    ap.add_argument("--out", default=str(HERE / "out" / "scaling"))
    ns = ap.parse_args()

    base = flowsim.RunConfig.preset("theory").merge(
        {"t_end": ns.t_end, "saves": 81, "n_test": 500, "rtol": 1e-7, "atol": 1e-9})
    # m1 follows m (the theory wants m >~ m1): one sweep of seeds per width.
    index = {"points": []}
    for m in ns.m:
        sub = flowsim.Sweep.make(base.merge({"m": m, "m1": m}), {"seed": list(range(ns.seeds))})
        index["points"] += [dict(e, m=m) for e in flowsim.sweep(sub, Path(ns.out) / f"m{m}", progress=True)["points"]]

    ms = np.array([e["m"] for e in index["points"]], float)
    T1 = np.array([np.nan if e["events"]["phase1_end"] is None else e["events"]["phase1_end"]
                   for e in index["points"]])
    ok = np.isfinite(T1) & (T1 > 0)
    slope, intercept = np.polyfit(np.log(ms[ok]), np.log(T1[ok]), 1)
    rng = np.random.default_rng(0)
    boot = []
    for _ in range(500):
        pick = rng.integers(0, ok.sum(), ok.sum())
        boot.append(np.polyfit(np.log(ms[ok][pick]), np.log(T1[ok][pick]), 1)[0])
    lo, hi = np.percentile(boot, [2.5, 97.5])
    summary = {"slope": slope, "slope_95ci": [lo, hi], "intercept": intercept,
               "points": int(ok.sum()), "not_reached": int((~np.isfinite(T1)).sum())}
    print(json.dumps(summary, indent=2))

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    ax = axes[0]
    ax.loglog(ms[ok], T1[ok], "o", alpha=0.6, label="T1 per seed")
    grid = np.geomspace(ms.min(), ms.max(), 50)
    ax.loglog(grid, np.exp(intercept) * grid**slope, "k-",
              label=f"fit: T1 ~ m^{slope:.2f} (95% CI {lo:.2f}..{hi:.2f})")
    middle = np.sqrt(grid[0] * grid[-1])
    ax.loglog(grid, np.exp(intercept) * middle**slope * middle / grid, "r--", alpha=0.6,
              label="slope -1 (Theorem 3.1: T1 = O~(1/m))")
    ax.set_xlabel("m (= m1)")
    ax.set_ylabel("T1")
    ax.legend(fontsize=8)
    ax.set_title("Phase 1 length against width")

    ax = axes[1]
    for m in ns.m:
        run = flowsim.load(Path(ns.out) / f"m{m}" / "points" / "seed=0").result
        ax.loglog(run.ts[1:], run.observables["loss"][1:], label=f"m={m}")
    ax.set_xlabel("flow time t")
    ax.set_ylabel("training loss")
    ax.legend(fontsize=8)
    ax.set_title("Loss against flow time (seed 0)")

    ax = axes[2]
    finals = {m: [] for m in ns.m}
    for e in index["points"]:
        run = flowsim.load(Path(ns.out) / f"m{e['m']}" / e["path"]).result
        C = run.observables["C"][-1]
        finals[e["m"]].append([C[0, 1], C[1, 0], C[2, 0], C[2, 1], run.observables["C_irrelevant_max"][-1]])
    means = np.array([np.mean(finals[m], axis=0) for m in ns.m])
    for j, name in enumerate(["C_12", "C_21", "C_31", "C_32", "max irrelevant |C|"]):
        ax.plot(ns.m, means[:, j], "o-", label=name)
    ax.set_xscale("log")
    ax.axhline(0, color="0.7", lw=0.8)
    ax.set_xlabel("m (= m1)")
    ax.set_title(f"Theorem 3.3 coefficients at t = {ns.t_end:g} (seed mean)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(HERE / "scaling.png", dpi=100)
    fig.savefig(HERE / "scaling.pdf")
    print(f"figures: {HERE / 'scaling.png'}, {HERE / 'scaling.pdf'}")


if __name__ == "__main__":
    main()
