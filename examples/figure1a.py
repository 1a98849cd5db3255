"""Figure 1(a) of the paper: the attention scores s(mu_i, mu_j) among mu_1, mu_2, mu_3 over training.

The paper's experiment (Appendix A: n = 60 with groups 30/10/10/10, L = 5, d = 64, m = 128,
m1 = 256, Kaiming initialization, seed 0 as in ``flowsim integrate``) trained two ways from one
start: the exact gradient flow to t = 300 and the paper's gradient descent, lr 0.01 x 30000
steps, overlaid (flow solid, GD dashed).  The scores figure has their change since t = 0 under
them; C is Theorem 3.3's coefficients.  Log time axis (``figure1a_*``), where Phase 1 is visible,
and linear as in the paper (``figure1a_linear_*``); figures are saved next to this file.  The
runs are shared with ``figure1b.py`` through ``_paper_runs.py`` (computed once, ~1 min).

    python examples/figure1a.py
"""

import flowsim
from _paper_runs import HERE, LABELS, paper_runs


def main():
    runs = paper_runs()
    for logx, prefix in ((True, "figure1a_"), (False, "figure1a_linear_")):
        for path in flowsim.plot(runs, HERE, kinds=["scores", "C"], logx=logx, labels=LABELS, prefix=prefix):
            print(path)


if __name__ == "__main__":
    main()
