"""The claims-vs-width atlas: which of the paper's claims hold as the width m = m1 grows, in the
theory's regime and in the paper's experiment, with a second look at every claim that does not.

    python examples/atlas.py                 # about 7 minutes on 2 cores; run it again to resume
    python examples/atlas.py --out DIR       # default examples/out/atlas

Runs four resumable sweeps (flowsim.sweep skips finished points): the three shipped sweep files
examples/atlas_theory.toml (theory data and init, n = 18), atlas_theory_n120.toml (the same at
n = 120) and atlas_paper.toml (the paper's experiment), each m = m1 from 10 to 1e8 with 8 seeds,
and one second-look sweep (below).  It draws each sweep's figures (flowsim.plot_sweep), and
writes DIR/atlas.md: per regime the claims x widths table of hold rates, each claim's reading
("holds from width ~X on", "holds only in the theory regime", "never holds in our runs"), and
the second looks:

- a denser save grid (4x the saves) at two widths for the claims whose verdict rests on finite
  differences and time windows of the save grid (Lemmas 4.2-4.3, Phase 1): same verdicts means
  the flow, not the grid;
- the neuron inner products <w_j1, w_j2> (Theorem 3.1), which a width-free start cannot give,
  from m-wide matrices at m = m1 = 10, 100, 1000 (compressed exactly onto the subspace engine);
- Theorem 3.3's claims at n = 120 against n = 18 (atlas_theory_n120.toml): a finite-n effect of
  the flow moves with n, a criterion would not.
"""

import argparse
import time
from pathlib import Path

import numpy as np

import flowsim
from flowsim.atlas import read, scaling_table

HERE = Path(__file__).resolve().parent
REGIMES = {"theory": "atlas_theory.toml", "theory-n120": "atlas_theory_n120.toml", "paper": "atlas_paper.toml"}
#: The claims whose verdicts are finite differences or windows of the save grid.
GRID_SENSITIVE = ("lem42.one_target_rise_fall", "lem42.G3_rate_small", "lem43.G_rates")


def run(plan, out: Path) -> None:
    flowsim.sweep(plan, out, progress=True)
    flowsim.plot_sweep(out, out / "plots", formats=["png"])


def width(m) -> str:
    return f"10^{round(np.log10(m))}"


def reading(fraction: np.ndarray, widths: list) -> tuple[str, int | None]:
    """``"holds from width ~X on"`` (on every applicable seed, at X and every larger width), or
    how often it holds; and X (None if there is none)."""
    if np.all(np.isnan(fraction)):
        return "not applicable", None
    full = np.nan_to_num(fraction, nan=0.0) == 1.0
    for i in range(len(widths)):
        if full[i:].all():
            return ("holds at every width" if i == 0 else f"holds from width {width(widths[i])} on"), widths[i]
    if np.nanmax(fraction) == 0:
        return "never holds", None
    lo, hi = np.nanmin(fraction), np.nanmax(fraction)
    return (f"holds on {lo:.0%} of seeds" if lo == hi else f"holds on {lo:.0%}-{hi:.0%} of seeds"), None


def verdict(readings: dict[str, tuple[str, int | None]]) -> str:
    """One of "holds from width ~X on", "holds only in the theory regime", "never holds in our runs",
    or else how often, from the readings of the three sweeps."""
    theory = [readings[k] for k in ("theory", "theory-n120")]
    paper = readings["paper"]
    if readings["theory"][0] == "not applicable":
        return "not applicable to a width-free start (second look below)"
    held = [r for r in theory if r[1] is not None]
    if held and paper[1] is not None:
        every = all(r[0] == "holds at every width" for r in (*held, paper))
        return "holds at every width in both regimes" if every else "holds from some width on in both regimes"
    if held:
        return "holds only in the theory regime"
    if all("never" in r[0] for r in (*theory, paper)):
        return "never holds in our runs"
    return "holds on some seeds only"


def table(rep) -> list[str]:
    widths = [g["m"] for g in rep.groups]
    lines = ["| claim | " + " | ".join(f"m = {m:.0e}" for m in widths) + " |",
             "|---|" + "---|" * len(widths)]
    for c, claim in enumerate(rep.claims):
        cells = ["-" if rep.applicable[c, g] == 0 else f"{rep.holds[c, g]}/{rep.applicable[c, g]}"
                 for g in range(len(widths))]
        lines.append(f"| `{claim}` | " + " | ".join(cells) + " |")
    return lines


def second_looks(base_dir: Path, coarse, lines: list[str]) -> None:
    """The second looks, against ``coarse``, the theory regime's report."""
    theory = flowsim.Sweep.from_toml(HERE / REGIMES["theory"])
    dense = flowsim.Sweep.make(theory.base.merge({"saves": 4 * theory.base.saves - 3}),
                               {"m": [100, 10**8], "seed": list(range(8))}, {"m1": "m"})
    run(dense, base_dir / "theory-dense")
    fine = flowsim.sweep_report(base_dir / "theory-dense")
    lines += ["", "### Second look: a denser save grid", "",
              f"Theory regime, n = 18, {theory.base.saves} saves against {dense.base.saves} (seeds holding / applicable):", "",
              "| claim | m = 1e2, saves " + f"{theory.base.saves} | {dense.base.saves} | m = 1e8, saves {theory.base.saves} | "
              f"{dense.base.saves} |", "|---|---|---|---|---|"]
    columns = {int(g["m"]): g_i for g_i, g in enumerate(coarse.groups)}
    for claim in GRID_SENSITIVE:
        c = coarse.claims.index(claim)
        cells = []
        for g_fine, m in enumerate((100, 10**8)):
            g = columns[m]
            cells += [f"{coarse.holds[c, g]}/{coarse.applicable[c, g]}", f"{fine.holds[c, g_fine]}/{fine.applicable[c, g_fine]}"]
        lines.append(f"| `{claim}` | " + " | ".join(cells) + " |")

    matrices = flowsim.Sweep.make(theory.base.merge({"start": "matrices"}), {"m": [10, 100, 1000], "seed": list(range(8))},
                                  {"m1": "m"})
    run(matrices, base_dir / "theory-matrices")
    rep = flowsim.sweep_report(base_dir / "theory-matrices")
    c = rep.claims.index("thm31.near_init.neuron_gram_change")
    lines += ["", "### Second look: the neuron inner products from m-wide matrices", "",
              "Theory regime, n = 18, the four matrices drawn at m = m1 and compressed exactly onto the "
              "subspace engine (which then keeps W(0) and the basis):", "",
              "| m = m1 | " + " | ".join(f"{g['m']:g}" for g in rep.groups) + " |", "|---|" + "---|" * len(rep.groups),
              "| `thm31.near_init.neuron_gram_change` | "
              + " | ".join(f"{rep.holds[c, g]}/{rep.applicable[c, g]}" for g in range(len(rep.groups))) + " |"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(HERE / "out" / "atlas"))
    ns = ap.parse_args()
    out = Path(ns.out)
    started = time.perf_counter()
    reports, lines = {}, ["# The claims-vs-width atlas", ""]
    for name, file in REGIMES.items():
        run(flowsim.Sweep.from_toml(HERE / file), out / name)
        atlas = read(out / name)
        reports[name] = atlas.report
        lines += [f"## {name} ({file})", "", *table(reports[name]), "", scaling_table(atlas), ""]
    lines += ["## Reading, claim by claim", "",
              "A claim holds at a width when it holds on every seed where it applies. "
              "Columns: the reading in each regime, and the verdict.", "",
              "| claim | theory, n = 18 | theory, n = 120 | paper | verdict |", "|---|---|---|---|---|"]
    for c, claim in enumerate(reports["theory"].claims):
        readings = {name: reading(rep.fraction[rep.claims.index(claim)], [g["m"] for g in rep.groups])
                    for name, rep in reports.items()}
        lines.append(f"| `{claim}` | {readings['theory'][0]} | {readings['theory-n120'][0]} | "
                     f"{readings['paper'][0]} | {verdict(readings)} |")
    second_looks(out, reports["theory"], lines)
    lines += ["", f"Wall time of the whole study (this run): {time.perf_counter() - started:.0f} s."]
    (out / "atlas.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:  # every finished point is on disk; the same command resumes
        raise SystemExit("atlas: interrupted; run the same command again to resume")
