"""Regenerate the figures and claim tables of reproduction.md (the paper's configuration, flow and GD).

    python docs/make_figures.py > /tmp/tables.md
"""

from pathlib import Path

import numpy as np

import flowsim
from flowsim.reporting import markdown_table

OUT = Path(__file__).resolve().parent / "figures"


def main():
    config = flowsim.RunConfig.preset("paper")  # `flowsim integrate` with its defaults: seed 0
    data, params, test_key = config.build()
    # The configuration as context: each claim table rests on the run's m and sigma0, and says
    # which of the theory's assumptions the run meets.
    context = flowsim.RunContext.from_config(config.resolved())
    flow = flowsim.integrate(params, data, t_end=300.0, test_key=test_key)
    gd = flowsim.gradient_descent(params, data, lr=0.01, steps=30_000, test_key=test_key)
    flowsim.plot([flow, gd], OUT, formats=["png"])
    flowsim.plot([flow, gd], OUT, kinds=["scores", "loss"], logx=False, formats=["png"], prefix="linear_")
    for name, r in (("flow", flow), ("gradient descent, lr 0.01 x 30000", gd)):
        print(f"### {name}: T1 = {r.events['phase1_end']:.4g}, final loss {r.observables['loss'][-1]:.6e}\n")
        print(markdown_table(flowsim.check_claims(r, context)) + "\n")
    rel = abs(gd.observables["loss"][-1] / flow.observables["loss"][-1] - 1)
    print(f"final-loss relative difference GD vs flow: {rel:.3e}")
    print("flow scores at t_end:", np.round(flow.observables["scores"][-1], 4).tolist())


if __name__ == "__main__":
    main()
