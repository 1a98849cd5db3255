"""Figure 1(a) of the paper: the attention scores s(mu_i, mu_j) among mu_1, mu_2, mu_3 over training.

Runs the paper's experiment (Appendix A: n = 60 with groups 30/10/10/10, L = 5, d = 64, m = 128,
m1 = 256, Kaiming initialization) twice from the same start: the exact gradient flow to t = 300
and the paper's gradient descent, lr 0.01 x 30000 steps (t = steps x lr = 300), and overlays them
(flow solid, GD dashed), on a linear and on a log time axis.  Figures are saved next to this file.

    python examples/figure1a.py
"""

from pathlib import Path

import jax

import flowsim

HERE = Path(__file__).resolve().parent


def paper_runs(saves: int = 301):
    """The flow and gradient descent on the paper's configuration, from one start."""
    with jax.enable_x64(True):
        data = flowsim.make_dataset(jax.random.key(0), 60, 5, 64, counts=(30, 10, 10, 10))
        params = flowsim.init_params(jax.random.key(1), 64, 128, 256, scheme="kaiming")
    flow = flowsim.integrate(params, data, t_end=300.0, saves=saves)
    gd = flowsim.gradient_descent(params, data, lr=0.01, steps=30_000, saves=saves)
    for name, r in (("flow", flow), ("GD", gd)):
        print(f"{name:4s}: T1 = {r.events['phase1_end']:.4g}, final loss = {r.observables['loss'][-1]:.4e}")
    return flow, gd


def main():
    runs = paper_runs()
    for logx, prefix in ((False, "figure1a_"), (True, "figure1a_logt_")):
        for path in flowsim.plot(runs, HERE, kinds=["scores", "C"], logx=logx, prefix=prefix):
            print(path)


if __name__ == "__main__":
    main()
