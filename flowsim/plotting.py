"""Figure 1 of the paper and the other observables over time, for one trajectory or several overlaid (matplotlib).

Every figure is built for a reader who has not seen the code:

- time runs on a log axis by default, because Phase 1 ends at t ~ 0.1 on a horizon of hundreds
  and is invisible on a linear axis; Phase 1 is shaded up to each run's T1, which is drawn as a
  dashed line;
- labels are mathtext, legends say what each curve and group is, titles cite the paper's
  figures, theorems and lemmas;
- legends and colour bars sit outside the axes and constrained layout makes room for them, so
  nothing is cut off whatever the number of runs or the length of their labels;
- every figure that :func:`plot` saves fits a slide (about 12 x 7 inches, at most three axes
  across), and the tick labels of its log axes are of one style, with several on every axis.

Up to :data:`MAX_STYLED` runs are told apart by line style (colours are the curves); more runs
get one panel per curve, a colour per run and a colour bar naming the runs, and a figure of
several panels is saved as one figure per panel (:func:`figures`).
"""

from __future__ import annotations

import dataclasses
import math
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import BoundaryNorm, ListedColormap
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import LogFormatterSciNotation, LogLocator
from matplotlib.transforms import blended_transform_factory

from .models.cooccurrence.flow import FlowResult
from .core.names import DEFAULT_FORMATS, DPI, PLOT_KINDS, table

#: Line styles that tell up to four overlaid runs apart; colours tell the curves of a panel apart.
RUN_STYLES = ("-", "--", ":", "-.")
MAX_STYLED = len(RUN_STYLES)
COLORS = ("C0", "C1", "C2", "C3", "C4", "C5")
RUN_COLORMAP = "viridis"
T1_STYLE = dict(linestyle="--", linewidth=1.2)
T1_COLOR = "0.35"  # of the T1 lines when colours are the curves
#: Total opacity of the Phase 1 shading where every run is still in Phase 1.
PHASE1_ALPHA = 0.16
FONT = dict(title=14, label=12, ticks=11, legend=11)
#: Log axes whose every value lies in this range are labelled with plain numbers (0.05, 3, 200).
PLAIN = (1e-2, 1e4)


@dataclasses.dataclass(frozen=True)
class Curve:
    """One line of a panel: its legend label (mathtext) and its values at the saved times."""

    label: str
    values: Callable[[FlowResult], np.ndarray]


@dataclasses.dataclass(frozen=True)
class Panel:
    """Axes sharing one y quantity: ``zero`` draws the y = 0 line (for quantities whose sign the
    theorems talk about); ``name`` ends the file name of the figure the panel makes on its own
    (:func:`figures`), empty for the first panel."""

    ylabel: str
    yscale: str
    curves: tuple[Curve, ...]
    zero: bool = False
    name: str = ""


@dataclasses.dataclass(frozen=True)
class Kind:
    """A figure: a title, an optional second line saying what is left out or why, its panels and
    a title for the curve legend."""

    title: str
    panels: tuple[Panel, ...]
    note: str = ""
    legend_title: str | None = None


def _observable(key: str, *index) -> Callable[[FlowResult], np.ndarray]:
    return lambda r: np.asarray(r.observables[key])[(slice(None), *index)]


def _phase2_ratio(key: str, denominator: Callable[[np.ndarray], np.ndarray]) -> Callable[[FlowResult], np.ndarray]:
    """Lemma 4.5's ratio ``key`` where the lemma speaks about it: after T1, and where its
    ``denominator`` (a function of the group sums S) is positive.  In Phase 1 the denominators
    pass through zero and the ratios spike to +-1e3, which says nothing about the lemma."""

    def values(r: FlowResult) -> np.ndarray:
        T1 = r.events.get("phase1_end")
        if T1 is None:
            return np.full(len(r.ts), np.nan)
        keep = (np.asarray(r.ts) > T1) & (denominator(np.asarray(r.observables["S"])) > 0)
        return np.where(keep, r.observables[key], np.nan)

    return values


#: The pairs of Figure 1(a), each with what its words are: s(mu, nu) has key word mu, query word nu.
PAIRS = (((0, 1), "target, target"), ((1, 0), "target, target"), ((2, 0), "common, target"),
         ((2, 1), "common, target"), ((0, 2), "target, common"), ((1, 2), "target, common"))
ROLES = ("target", "target", "common word")
GROUPS = ("both targets", r"only $\mu_1$", r"only $\mu_2$", "neither target")


def _score_curves(key: str) -> tuple[Curve, ...]:
    return tuple(Curve(rf"$s(\mu_{i + 1},\mu_{j + 1})$  {roles}", _observable(key, i, j))
                 for (i, j), roles in PAIRS)


#: kind -> figure.  ``scores`` is Figure 1(a) with the change since t = 0 under it (the scores
#: move by ~0.02 against a spread of ~1 between pairs, so the trend shows only in the change);
#: ``loss`` is Figure 1(b).
KINDS: dict[str, Kind] = table(PLOT_KINDS, {
    "scores": Kind(
        r"Attention scores of the targets $\mu_1, \mu_2$ and the common word $\mu_3$ (paper's Figure 1a)",
        (Panel(r"score $s(\mu_i,\mu_j) = \mu_i^\top W_K^\top W_Q\,\mu_j$", "linear", _score_curves("scores")),
         Panel(r"change since $t = 0$: $s(t) - s(0)$", "linear", _score_curves("C"), zero=True, name="change")),
        legend_title="(key word, query word)"),
    "loss": Kind(
        "Training loss, overall and per group of samples (paper's Figure 1b)",
        (Panel(r"training loss $\hat L$", "log",
               (Curve("all samples", _observable("loss")),
                *(Curve(rf"$I_{k + 1}$: {g}", _observable("loss_groups", k)) for k, g in enumerate(GROUPS)))),),
        legend_title=r"group ($\mu_1, \mu_2$: targets)"),
    "G": Kind(
        r"Linear-MLP output per word, $G(\mu) = a^\top W\, W_V\, \mu$",
        (Panel(r"$G(\mu)$", "linear",
               tuple(Curve(rf"$G(\mu_{k + 1})$  {role}", _observable("G_special", k)) for k, role in enumerate(ROLES)),
               zero=True),),
        note=r"Theorem 3.1: at $T_1$, $G(\mu_1) > 0$, $G(\mu_2) > 0$ and $G(\mu_3) < 0$"),
    "balance": Kind(
        "Automatic balancing of gradients (Lemma 4.5)",
        (Panel("ratio", "log", (
            Curve(r"$|S_2 - S_3|\,/\,\min(S_2, S_3)$  (small)",
                  _phase2_ratio("balance_S2_S3", lambda S: np.minimum(S[:, 1], S[:, 2]))),
            Curve(r"$\Sigma_i\, g_i\,/\,(S_2 + S_3 + S_4 - S_1)$  (order 1)",
                  _phase2_ratio("balance_all_S234_S1", lambda S: S[:, 1] + S[:, 2] + S[:, 3] - S[:, 0])),
            Curve(r"$\Sigma_i\, g_i\,/\,(S_1 - S_2)$  (order 1)",
                  _phase2_ratio("balance_all_S1_S2", lambda S: S[:, 0] - S[:, 1])))),),
        note=r"Drawn for $t > T_1$ only: the lemma is about Phase 2, and in Phase 1 the denominators cross zero",
        legend_title=r"$g_i = 1 / (1 + e^{y_i F(X_i)})$, $S_k = \Sigma_{i \in I_k}\, g_i$"),
    "C": Kind(
        r"Change of the attention matrix, $W_K^\top W_Q - W_K(0)^\top W_Q(0) = \Sigma_{ij}\, C_{ij}\, \mu_i \mu_j^\top$",
        (Panel(r"$C_{ij}$", "linear", (
            *(Curve(rf"$C_{{{i + 1}{j + 1}}}$  {roles}", _observable("C", i, j)) for (i, j), roles in PAIRS[:4]),
            Curve(r"largest $|C_{ij}|$ with an irrelevant word", _observable("C_irrelevant_max"))), zero=True),),
        note=r"Theorem 3.3: $C_{12}, C_{21} > 0$ and $C_{31}, C_{32} < 0$ grow; the irrelevant ones stay an order smaller",
        legend_title="(key word, query word)"),
    "conservation": Kind(
        "Conserved quantities of the gradient flow: relative drift since $t = 0$",
        (Panel("relative drift", "log", (Curve(r"$W_K W_K^\top - W_Q W_Q^\top$", _observable("drift_KQ")),
                                          Curve(r"$W^\top W - W_V W_V^\top$", _observable("drift_WV")))),),
        note="Constant under the exact flow: their drift is integration error (gradient descent breaks them)"),
}, "flowsim.plotting.KINDS")


def label(result: FlowResult) -> str:
    """A short name for a trajectory, from its settings: ``GD lr=0.01`` or ``flow (tsit5)``."""
    s = result.settings
    if s.get("method") == "gd":
        return f"GD lr={s['lr']:g}"
    return f"flow ({s['solver']})" if "solver" in s else "flow"


def figure(kind: str, results: Sequence[FlowResult], *, logx: bool = True,
           labels: Sequence[str] | None = None) -> Figure:
    """The figure ``kind`` (a key of :data:`KINDS`) with every trajectory of ``results`` overlaid.

    Phase 1 is shaded up to each run's T1 (``events["phase1_end"]``), drawn as a dashed line.
    Up to :data:`MAX_STYLED` runs: one axes per panel, colours for the curves and line styles for
    the runs.  More runs: one axes per curve (three across), a colour per run and a colour bar;
    every panel of the kind in this one figure (:func:`figures` splits them).  ``logx``
    (default) puts time on a log axis, which leaves out the t = 0 save; on it the two phases
    are named above the axes.
    """
    spec, labels = _checked(kind, results, labels)
    return _draw(spec, results, labels, logx)


def figures(kind: str, results: Sequence[FlowResult], *, logx: bool = True,
            labels: Sequence[str] | None = None) -> dict[str, Figure]:
    """The figures :func:`plot` saves for ``kind``, by file name (without its suffix): ``{kind:
    figure(kind, ...)}``, except that more than :data:`MAX_STYLED` runs of a kind with several
    panels get a figure per panel, each the size of a slide: ``scores`` (the scores, Figure 1a)
    and ``scores_change`` (their change since t = 0)."""
    spec, labels = _checked(kind, results, labels)
    if len(results) <= MAX_STYLED or len(spec.panels) == 1:
        return {kind: _draw(spec, results, labels, logx)}
    return {f"{kind}_{p.name}" if p.name else kind:
            _draw(dataclasses.replace(spec, panels=(p,), note="\n".join(filter(None, (spec.note, p.ylabel)))),
                  results, labels, logx)
            for p in spec.panels}


def _checked(kind: str, results, labels) -> tuple[Kind, list[str]]:
    """The kind's :class:`Kind` and the runs' labels (default :func:`label`), checked."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if not results:
        raise ValueError("nothing to plot: no results given")
    labels = [label(r) for r in results] if labels is None else list(labels)
    if len(labels) != len(results):
        raise ValueError(f"{len(results)} results but {len(labels)} labels")
    return KINDS[kind], labels


def _draw(spec: Kind, results, labels, logx) -> Figure:
    draw = _by_style if len(results) <= MAX_STYLED else _by_colour
    fig = draw(spec, results, labels, logx)
    fig.suptitle(spec.title + (f"\n{spec.note}" if spec.note else ""), fontsize=FONT["title"])
    log_ticks(fig)
    return fig


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _by_style(spec: Kind, results, labels, logx) -> Figure:
    """One axes per panel; colours are curves, line styles are runs; legends to the right of the top
    axes (curves) and below the figure (runs)."""
    n_panels = len(spec.panels)
    fig = _new_figure(11, min(1.2 + 3.6 * n_panels, 7.0))  # at most a slide's height
    axes = fig.subplots(n_panels, 1, sharex=True, squeeze=False)[:, 0]
    for ax, panel in zip(axes, spec.panels):
        for r, style in zip(results, RUN_STYLES):
            for curve, color in zip(panel.curves, COLORS):
                ax.plot(*_series(r, curve, panel, logx), color=color, linestyle=style, linewidth=1.6)
        _mark_phases(ax, results, [T1_COLOR] * len(results), logx, names=ax is axes[0])
        _finish_axes(ax, panel, logx=logx)
    axes[-1].set_xlabel(_time_label(logx), fontsize=FONT["label"])
    curve_handles = [Line2D([], [], color=c, linewidth=2, label=curve.label)
                     for curve, c in zip(spec.panels[0].curves, COLORS)]
    # Attached to the top axes (not the figure), so that it stays clear of the title.
    axes[0].legend(handles=curve_handles + _phase_handles(results), loc="upper left",
                   bbox_to_anchor=(1.02, 1), borderaxespad=0, fontsize=FONT["legend"],
                   title=spec.legend_title, title_fontsize=FONT["legend"])
    run_handles = [Line2D([], [], color="k", linestyle=s, linewidth=1.6, label=_wrap(name))
                   for s, name in zip(RUN_STYLES, labels)]
    fig.legend(handles=run_handles, loc="outside lower center", ncols=_columns(labels),
               fontsize=FONT["legend"], title="runs (line style)" if len(labels) > 1 else "run",
               title_fontsize=FONT["legend"])
    return fig


def _by_colour(spec: Kind, results, labels, logx) -> Figure:
    """One axes per curve, each panel's on rows of three, the panels one under the other; colours
    are runs, named by a colour bar; the phases named above every axes (on a log time axis)."""
    n_cols = min(max(len(p.curves) for p in spec.panels), 3)
    places = []  # (row, column, panel, curve) of every axes
    for panel in spec.panels:
        first = places[-1][0] + 1 if places else 0
        places += [(first + k // n_cols, k % n_cols, panel, curve) for k, curve in enumerate(panel.curves)]
    n_rows = places[-1][0] + 1
    fig = _new_figure(2.4 + 3.1 * n_cols, 1.5 + 2.75 * n_rows)
    grid = fig.subplots(n_rows, n_cols, sharex=True, squeeze=False)
    used = np.zeros(grid.shape, bool)
    colors = colormaps[RUN_COLORMAP](np.linspace(0.0, 0.9, len(results)))
    for row, col, panel, curve in places:
        ax = grid[row, col]
        used[row, col] = True
        for r, color in zip(results, colors):
            ax.plot(*_series(r, curve, panel, logx), color=color, linewidth=1.3)
        named = _mark_phases(ax, results, colors, logx, names=True)
        _finish_axes(ax, panel, logx=logx, ylabel=col == 0)
        # Above the phase names, when there are any.
        ax.set_title(_wrap(curve.label, 34), fontsize=FONT["legend"], pad=FONT["legend"] + 8 if named else 6)
    spare = None  # the first empty cell of the grid, which holds the legend
    for (row, col), ax in np.ndenumerate(grid):
        if used[row, col]:
            if row == n_rows - 1 or not used[row + 1, col]:  # the lowest axes of its column
                ax.set_xlabel(_time_label(logx, short=True), fontsize=FONT["label"])
                ax.xaxis.set_tick_params(labelbottom=True)
        elif spare is None:
            spare = ax
            ax.axis("off")
        else:
            ax.set_visible(False)
    legend = dict(handles=_phase_handles(results, each_colour=True), fontsize=FONT["legend"])
    if spare is not None:
        spare.legend(loc="center", **legend)
    else:
        fig.legend(loc="outside lower center", ncols=2, **legend)
    n = len(results)
    # A discrete colour bar: one band per run, in the colours its curves were drawn in.
    mappable = ScalarMappable(norm=BoundaryNorm(np.arange(n + 1) - 0.5, n), cmap=ListedColormap(colors))
    ticks = np.unique(np.linspace(0, n - 1, min(n, 12)).round().astype(int))
    bar = fig.colorbar(mappable, ax=grid.ravel().tolist(), ticks=ticks, aspect=40, pad=0.01)
    bar.ax.set_yticklabels([_wrap(labels[i], 28) for i in ticks], fontsize=FONT["ticks"])
    bar.set_label("run", fontsize=FONT["label"])
    return fig


def _series(r: FlowResult, curve: Curve, panel: Panel, logx: bool) -> tuple[np.ndarray, np.ndarray]:
    """Times and values of ``curve`` for run ``r``; a log axis leaves out t = 0 and a log y axis
    the values <= 0 (a drift of exactly 0), which it cannot show."""
    t = np.asarray(r.ts, float)
    y = np.asarray(curve.values(r), float)
    keep = t > 0 if logx else np.ones(len(t), bool)
    if panel.yscale == "log":
        y = np.where(y > 0, y, np.nan)
    return t[keep], y[keep]


def _mark_phases(ax, results, colors, logx, *, names: bool) -> bool:
    """Shade Phase 1 up to each run's T1 and draw T1 dashed (in the run's colour).  The shadings
    of several runs add up: opaque where every run is in Phase 1, fading where they differ.  On
    a log axis, with ``names``, name the two phases above the axes.  Returns whether it did."""
    t_lo, t_hi = _time_limits(results, logx)
    T1s = [(r.events.get("phase1_end"), c) for r, c in zip(results, colors)]
    T1s = [(T1, c) for T1, c in T1s if T1 is not None and T1 > t_lo]
    if not T1s:
        return False
    alpha = 1 - (1 - PHASE1_ALPHA) ** (1 / len(T1s))
    for T1, color in T1s:
        ax.axvspan(t_lo, T1, color="0.5", alpha=alpha, linewidth=0, zorder=0)
        ax.axvline(T1, color=color, zorder=1, **T1_STYLE)
    if not (names and logx):
        return False
    first, last = min(T for T, _ in T1s), max(T for T, _ in T1s)
    where = blended_transform_factory(ax.transData, ax.transAxes)
    for text, lo, hi in (("Phase 1", t_lo, first), ("Phase 2", last, t_hi)):
        if hi > lo:
            ax.text(math.sqrt(lo * hi), 1.02, text, transform=where, ha="center", va="bottom",
                    fontsize=FONT["legend"], color="0.25")
    return True


def _phase_handles(results, each_colour: bool = False) -> list:
    """Legend entries for the Phase 1 shading and the T1 lines (none if no run reached T1)."""
    if all(r.events.get("phase1_end") is None for r in results):
        return []
    which = " (one per run, in its colour)" if each_colour else " (one per run)" if len(results) > 1 else ""
    line = "$T_1$: the near-initialization bounds left (Definition E.2)" + which
    return [Patch(facecolor="0.5", alpha=PHASE1_ALPHA * 1.5, label=r"Phase 1, $t \leq T_1$"),
            Line2D([], [], color=T1_COLOR, label=_wrap(line, 40), **T1_STYLE)]


def _time_limits(results, logx: bool) -> tuple[float, float]:
    ts = np.concatenate([np.asarray(r.ts, float) for r in results])
    positive = ts[ts > 0]
    hi = float(ts.max()) if ts.size else 1.0
    return (float(positive.min()) if logx and positive.size else 0.0), hi


def _finish_axes(ax, panel: Panel, *, logx: bool, ylabel: bool = True) -> None:
    ax.set_xscale("log" if logx else "linear")
    ax.set_yscale(panel.yscale)
    if panel.zero:
        ax.axhline(0.0, color="0.2", linewidth=0.8, zorder=1)
    if ylabel:
        ax.set_ylabel(panel.ylabel, fontsize=FONT["label"])
    ax.tick_params(which="both", labelsize=FONT["ticks"])
    ax.grid(True, alpha=0.3)


#: The coefficients a log axis labels between its decades, sparsest first (:func:`between`).
BETWEEN = ({1}, {1, 2, 5}, {1, 2, 3, 4, 5, 6, 8}, set(np.arange(1.0, 10.0, 0.5)))


def between(lo: float, hi: float) -> set:
    """The sparsest of :data:`BETWEEN` that labels at least four ticks from ``lo`` to ``hi``."""
    if not 0 < lo < hi:
        return BETWEEN[0]
    decades = range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
    return next((c for c in BETWEEN if sum(lo <= a * 10.0**k <= hi for k in decades for a in c) >= 4), BETWEEN[-1])


class LogLabels(LogFormatterSciNotation):
    """Tick labels of a log axis, in one style: powers of ten (``a x 10^k`` off the decades) or,
    with ``plain``, numbers (0.05, 3, 200).  Between the decades the ``minor`` ticks of
    :func:`between` are labelled, so that a short axis has four labels or more without
    crowding, and never a minor tick on a decade (a long axis' major ticks skip some)."""

    def __init__(self, plain: bool, minor: bool):
        super().__init__(labelOnlyBase=not minor)
        self.plain, self.minor = plain, minor

    def set_locs(self, locs=None):
        self._sublabels = between(*sorted(self.axis.get_view_interval()))

    def __call__(self, x, pos=None):
        coefficient = x / 10.0 ** math.floor(math.log10(x) + 1e-9)
        labelled = self._sublabels if self.minor else {1}
        if self.minor and abs(coefficient - 1) < 1e-9 or not any(abs(coefficient - c) < 1e-6 for c in labelled):
            return ""
        text = super().__call__(x, pos)
        return f"{x:g}" if text and self.plain else text


def log_ticks(fig: Figure, *groups) -> None:
    """Label the log axes of ``fig`` with :class:`LogLabels`, one style for each group of
    ``Axis`` objects that show one quantity (default: every x axis, the time, together and each
    y axis on its own): plain numbers if every axis of the group lies within :data:`PLAIN`, else
    powers of ten.  Called once everything is drawn, when the axes' limits are known."""
    groups = groups or ([ax.xaxis for ax in fig.axes], *([ax.yaxis] for ax in fig.axes))
    for group in groups:
        group = [axis for axis in group if axis.get_scale() == "log"]
        limits = [axis.axes.get_xlim() if axis is axis.axes.xaxis else axis.axes.get_ylim() for axis in group]
        plain = all(PLAIN[0] <= min(lim) and max(lim) <= PLAIN[1] for lim in limits)
        for axis, lim in zip(group, limits):
            # Minor ticks at the halves too where those are labelled.
            axis.set_minor_locator(LogLocator(subs=sorted(BETWEEN[-1]) if between(*sorted(lim)) is BETWEEN[-1] else "auto"))
            axis.set_major_formatter(LogLabels(plain, minor=False))
            axis.set_minor_formatter(LogLabels(plain, minor=True))


def _time_label(logx: bool, short: bool = False) -> str:
    """The time axis' label; ``short`` for narrow axes, which cannot hold what t is."""
    what = "training time $t$" if short else "training time $t$ = GD steps × learning rate"
    return what + (", log scale" if logx else "")


def _wrap(text: str, width: int = 36) -> str:
    """Long labels wrapped onto several lines, so that a legend never outgrows the figure; never
    inside a $...$ mathtext part, which a line break would cut in two."""
    parts = text.split("$")
    kept = "$".join(p.replace(" ", "\0") if i % 2 else p for i, p in enumerate(parts))
    lines = textwrap.wrap(kept, width, break_long_words=False, break_on_hyphens=False)
    return "\n".join(lines).replace("\0", " ") or text


def _columns(labels: Sequence[str]) -> int:
    """Runs' legend columns: all in one row when the labels are short, else two or one."""
    if sum(min(len(s), 36) for s in labels) <= 80:
        return len(labels)
    return 2 if len(labels) > 1 else 1


def plot(results: FlowResult | Sequence[FlowResult], out_dir: str | Path, *,
         kinds: Sequence[str] = PLOT_KINDS, logx: bool = True, labels: Sequence[str] | None = None,
         formats: Sequence[str] = DEFAULT_FORMATS, dpi: int = DPI, prefix: str = "") -> list[Path]:
    """Draw each of ``kinds`` (default all of :data:`KINDS`) for ``results`` (one trajectory or a
    list to overlay, any number) and save it as ``out_dir/{prefix}{kind}.{format}`` (a figure per
    panel for many runs, see :func:`figures`).  Time is on a log axis unless ``logx=False``.
    Returns the paths written."""
    results = [results] if isinstance(results, FlowResult) else list(results)
    return [path for kind in kinds
            for path in save(figures(kind, results, logx=logx, labels=labels), out_dir, formats, dpi, prefix)]


def save(figs: dict[str, Figure], out_dir: str | Path, formats: Sequence[str], dpi: int, prefix: str = "") -> list[Path]:
    """Save each figure as ``out_dir/{prefix}{name}.{format}`` (the directory made if need be),
    cropped to what it draws; returns the paths written.  Every figure flowsim saves goes here."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, fig in figs.items():
        for fmt in formats:
            written.append(out / f"{prefix}{name}.{fmt}")
            fig.savefig(written[-1], dpi=dpi, bbox_inches="tight")
    return written
