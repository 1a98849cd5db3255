"""T1 against the width m = m1 from 10 to 1e8 under the theory's initialization, against
Theorem 3.1's T1 = O~(1/m): a resumable sweep (examples/scaling.toml, 64 points), the figure of
T1 m against m with a least-squares power law T1 m ~ m^alpha and its 95% confidence interval, and
the table of T1 m per width.

    python examples/scaling.py                          # figures and table in examples/out/scaling
    python examples/scaling.py --figures docs/figures   # as docs/sweeps.md shows them
"""

import argparse
from pathlib import Path

import flowsim
from flowsim.atlas import scaling_table

HERE = Path(__file__).resolve().parent


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(HERE / "out" / "scaling"), help="the sweep directory")
    ap.add_argument("--figures", help="where the figure goes (default: the sweep directory's plots/)")
    ns = ap.parse_args()
    out = Path(ns.out)
    flowsim.sweep(flowsim.Sweep.from_toml(HERE / "scaling.toml"), out, progress=True)
    figures = Path(ns.figures) if ns.figures else out / "plots"
    for path in flowsim.plot_sweep(out, figures, kinds=["T1"], formats=["png"], prefix="scaling_"):
        print(path)
    print(scaling_table(out))


if __name__ == "__main__":
    main()
