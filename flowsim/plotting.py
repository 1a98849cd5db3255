"""Figure 1 of the paper and the other observables over time, for one trajectory or an overlay of several (matplotlib)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from .flow import FlowResult

#: Line styles that tell overlaid trajectories apart; colours tell the curves of one panel apart.
RUN_STYLES = ("-", "--", ":", "-.")
COLORS = ("C0", "C1", "C2", "C3", "C4", "C5")

Curve = tuple[str, Callable[[dict], np.ndarray]]


def _pair(i: int, j: int) -> Curve:
    return f"s(mu{i + 1}, mu{j + 1})", lambda o: o["scores"][:, i, j]


def _group(k: int) -> Curve:
    return f"I{k + 1}", lambda o: o["loss_groups"][:, k]


def _G(k: int) -> Curve:
    return f"G(mu{k + 1})", lambda o: o["G_special"][:, k]


def _C(i: int, j: int) -> Curve:
    return f"C_{i + 1}{j + 1}", lambda o: o["C"][:, i, j]


def _key(key: str, label: str) -> Curve:
    return label, lambda o: o[key]


#: kind -> (title, y label, y scale, curves).  ``scores`` is Figure 1(a), ``loss`` Figure 1(b); ``C``
#: is the change of the scores since t = 0 (Theorem 3.3's coefficients), which shows Figure 1(a)'s
#: trends without the spread of the initial scores.
KINDS: dict[str, tuple[str, str, str, tuple[Curve, ...]]] = {
    "scores": ("Figure 1(a): attention scores s(mu_i, mu_j) = mu_i^T W_K^T W_Q mu_j", "score", "linear",
               tuple(_pair(i, j) for i, j in ((0, 1), (1, 0), (2, 0), (2, 1), (0, 2), (1, 2)))),
    "loss": ("Figure 1(b): training loss, overall and per group", "loss", "log",
             (_key("loss", "all"), *(_group(k) for k in range(4)))),
    "G": ("Linear-MLP function G(mu) = a^T W W_V mu", "G", "linear", tuple(_G(k) for k in range(3))),
    "balance": ("Automatic balancing of gradients (Lemma 4.5)", "ratio", "symlog",
                (_key("balance_S2_S3", "|S2-S3| / min(S2,S3)"),
                 _key("balance_all_S234_S1", "sum g / (S2+S3+S4-S1)"),
                 _key("balance_all_S1_S2", "sum g / (S1-S2)"))),
    "C": ("Theorem 3.3: W_K^T W_Q - W_K(0)^T W_Q(0) = sum C_ij mu_i mu_j^T", "C_ij", "linear",
          (*(_C(i, j) for i, j in ((0, 1), (1, 0), (2, 0), (2, 1))),
           _key("C_irrelevant_max", "max |C_ij|, irrelevant i or j"))),
    "conservation": ("Conservation laws (spec 7.3): relative drift", "relative drift", "log",
                     (_key("drift_KQ", "W_K W_K^T - W_Q W_Q^T"), _key("drift_WV", "W^T W - W_V W_V^T"))),
}


def label(result: FlowResult) -> str:
    """A short name for a trajectory, from its settings: ``GD lr=0.01`` or ``flow (tsit5)``."""
    s = result.settings
    if s.get("method") == "gd":
        return f"GD lr={s['lr']:g}"
    return f"flow ({s['solver']})" if "solver" in s else "flow"


def figure(kind: str, results: Sequence[FlowResult], *, logx: bool = False,
           labels: Sequence[str] | None = None) -> Figure:
    """One panel of ``kind`` (a key of :data:`KINDS`) with every trajectory of ``results`` overlaid:
    colours are curves, line styles are trajectories, and a vertical line (in the trajectory's
    style) marks each one's T1 (``events["phase1_end"]``).  ``logx`` puts time on a log axis
    (the t = 0 save is then left out)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if not results:
        raise ValueError("nothing to plot: no results given")
    labels = [label(r) for r in results] if labels is None else list(labels)
    if len(labels) != len(results):
        raise ValueError(f"{len(results)} results but {len(labels)} labels")
    title, ylabel, yscale, curves = KINDS[kind]
    fig = Figure(figsize=(9, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for r, style in zip(results, _styles(len(results))):
        keep = r.ts > 0 if logx else np.ones(len(r.ts), bool)
        for (_, values), color in zip(curves, COLORS):
            ax.plot(r.ts[keep], np.asarray(values(r.observables))[keep], color=color, linestyle=style)
        T1 = r.events.get("phase1_end")
        if T1 is not None and (T1 > 0 or not logx):
            ax.axvline(T1, color="0.4", linestyle=style, linewidth=0.8)
    ax.set(title=title, xlabel="training time t (= GD steps x lr)", ylabel=ylabel)
    ax.set_xscale("log" if logx else "linear")
    if yscale == "symlog":
        ax.set_yscale("symlog", linthresh=1.0)
    else:
        ax.set_yscale(yscale)
    ax.grid(True, alpha=0.3)
    handles = [Line2D([], [], color=c, label=name) for (name, _), c in zip(curves, COLORS)]
    handles.append(Line2D([], [], color="0.4", linewidth=0.8, label="T1"))
    # Legends outside the axes, so that they never hide a curve: curves above, trajectories below.
    first = ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    if len(results) > 1:
        ax.add_artist(first)
        ax.legend(handles=[Line2D([], [], color="k", linestyle=s, label=n)
                           for s, n in zip(_styles(len(results)), labels)],
                  loc="lower left", bbox_to_anchor=(1.01, 0), fontsize=8)
    fig.tight_layout()
    return fig


def _styles(n: int) -> list[str]:
    if n > len(RUN_STYLES):
        raise ValueError(f"at most {len(RUN_STYLES)} trajectories can be overlaid, got {n}")
    return list(RUN_STYLES[:n])


def plot(results: FlowResult | Sequence[FlowResult], out_dir: str | Path, *,
         kinds: Sequence[str] = tuple(KINDS), logx: bool = False, labels: Sequence[str] | None = None,
         formats: Sequence[str] = ("png", "pdf"), dpi: int = 100, prefix: str = "") -> list[Path]:
    """Draw each of ``kinds`` (default all of :data:`KINDS`) for ``results`` (one trajectory or a
    list to overlay) and save it as ``out_dir/{prefix}{kind}.{format}``.  Returns the paths written."""
    results = [results] if isinstance(results, FlowResult) else list(results)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for kind in kinds:
        fig = figure(kind, results, logx=logx, labels=labels)
        for fmt in formats:
            path = out / f"{prefix}{kind}.{fmt}"
            fig.savefig(path, dpi=dpi, bbox_inches="tight")
            written.append(path)
    return written
