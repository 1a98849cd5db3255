"""Regenerate the figures and claim tables of reproduction.md (the paper's configuration, flow and GD).

    python docs/make_figures.py > /tmp/tables.md
"""

from pathlib import Path

import jax
import numpy as np

import flowsim
from flowsim.reporting import markdown_table

OUT = Path(__file__).resolve().parent / "figures"


def main():
    with jax.enable_x64(True):
        data = flowsim.make_dataset(jax.random.key(0), 60, 5, 64, counts=(30, 10, 10, 10))
        params = flowsim.init_params(jax.random.key(1), 64, 128, 256, scheme="kaiming")
    # The paper preset's sizes, data mode and init scheme (drawn above from keys 0 and 1): each
    # claim table then rests on the run's m and sigma0, and its assumptions are known.
    context = flowsim.RunContext.from_config(flowsim.RunConfig.preset("paper"))
    flow = flowsim.integrate(params, data, t_end=300.0)
    gd = flowsim.gradient_descent(params, data, lr=0.01, steps=30_000)
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
