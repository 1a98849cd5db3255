"""Figure 1(b) of the paper: the training loss, overall and for each group I1..I4, over training.

The same runs as ``figure1a.py`` (the exact flow and the paper's gradient descent, lr 0.01 x
30000, from one start; shared through ``_paper_runs.py``, so whichever script runs second reads
them from ``examples/out/``), on a log and on a linear time axis.  In the paper's picture the
I1 loss falls in Phase 1 while the one-target groups I2, I3 first rise, then fall; every curve
falls in Phase 2.

    python examples/figure1b.py
"""

import flowsim
from _paper_runs import HERE, LABELS, paper_runs


def main():
    runs = paper_runs()
    for logx, prefix in ((True, "figure1b_"), (False, "figure1b_linear_")):
        for path in flowsim.plot(runs, HERE, kinds=["loss"], logx=logx, labels=LABELS, prefix=prefix):
            print(path)


if __name__ == "__main__":
    main()
