"""Figure 1(b) of the paper: the training loss, overall and for each group I1..I4, over training.

Same runs as ``figure1a.py`` (the exact flow and the paper's gradient descent, lr 0.01 x 30000,
from one start), overlaid on a linear and on a log time axis.  In Phase 1 the I1 loss falls while
the one-target groups I2, I3 first rise, then fall; every curve falls in Phase 2.

    python examples/figure1b.py
"""

from figure1a import HERE, paper_runs

import flowsim


def main():
    runs = paper_runs()
    for logx, prefix in ((False, "figure1b_"), (True, "figure1b_logt_")):
        for path in flowsim.plot(runs, HERE, kinds=["loss"], logx=logx, prefix=prefix):
            print(path)


if __name__ == "__main__":
    main()
