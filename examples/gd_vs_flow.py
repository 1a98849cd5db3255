"""How far the paper's gradient descent (lr 0.01 x 30000) is from the exact gradient flow, over time.

Both start from the paper's configuration; the flow is saved at exactly the times t = k lr of the
saved GD steps, so the two trajectories are compared point by point: relative difference of the
training loss, largest difference of the attention scores s(mu_i, mu_j) and of G(mu_1..3), and the
conservation-law drift (zero for the flow up to integration error; GD breaks the laws by
O(lr^2) per step).  Prints a table and saves ``gd_vs_flow.png`` next to this file.

    python examples/gd_vs_flow.py
"""

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

import flowsim

HERE = Path(__file__).resolve().parent


def main():
    data, params, test_key = flowsim.RunConfig.preset("paper").build()  # the problem of `flowsim integrate` (seed 0)
    gd = flowsim.gradient_descent(params, data, lr=0.01, steps=30_000, saves=301, test_key=test_key)
    flow = flowsim.integrate(params, data, ts=gd.ts, test_key=test_key)
    g, f, t = gd.observables, flow.observables, gd.ts

    loss_rel = np.abs(g["loss"] / f["loss"] - 1)
    scores = np.abs(g["scores"] - f["scores"]).reshape(len(t), -1).max(1)
    G = np.abs(g["G_special"] - f["G_special"]).max(1)
    print(f"T1: flow {flow.events['phase1_end']:.4g}, GD {gd.events['phase1_end']:.4g} (first saved step)")
    print(f"{'t':>8} {'loss flow':>11} {'loss GD':>11} {'rel diff':>9} {'|ds| max':>9} {'|dG| max':>9} "
          f"{'drift_WV GD':>12} {'flow':>9}")
    for target in (0.01, 0.1, 0.2, 1, 10, 100, 300):
        i = int(np.argmin(np.abs(t - target)))
        print(f"{t[i]:8.3g} {f['loss'][i]:11.4e} {g['loss'][i]:11.4e} {loss_rel[i]:9.2e} {scores[i]:9.2e} "
              f"{G[i]:9.2e} {g['drift_WV'][i]:12.2e} {f['drift_WV'][i]:9.1e}")
    late = t >= 1.0
    print(f"final loss: flow {f['loss'][-1]:.6e}, GD {g['loss'][-1]:.6e}, relative difference {loss_rel[-1]:.2e}")
    print(f"largest relative loss difference for t >= 1: {loss_rel[late].max():.2e}; over all t: {loss_rel.max():.2e}")

    fig = Figure(figsize=(8, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for y, name in ((loss_rel, "|loss_GD / loss_flow - 1|"), (scores, "max |s_GD - s_flow|"),
                    (G, "max |G_GD - G_flow|, mu_1..3"), (g["drift_KQ"], "GD drift W_K W_K^T - W_Q W_Q^T"),
                    (g["drift_WV"], "GD drift W^T W - W_V W_V^T"), (f["drift_WV"], "flow drift W^T W - W_V W_V^T")):
        ax.plot(t[1:], y[1:], label=name)
    ax.axvline(flow.events["phase1_end"], color="0.4", linewidth=0.8, label="T1 (flow)")
    ax.set(xscale="log", yscale="log", xlabel="training time t (= GD steps x 0.01)",
           title="Gradient descent (lr 0.01) against the exact gradient flow")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.savefig(HERE / "gd_vs_flow.png", dpi=100, bbox_inches="tight")
    print(HERE / "gd_vs_flow.png")


if __name__ == "__main__":
    main()
