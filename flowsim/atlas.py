"""Sweep-level figures: the paper's claims, T1, the final losses and Theorem 3.3's coefficients against a grid key (the width m, the init constant c0, n, ...).

A sweep over a grid key x (default ``m``; and seeds) is drawn as four kinds of figure,
:data:`KINDS`: ``claims``, heat maps of the fraction of seeds on which each claim holds, per
value of x (one figure for the claims about Phase 1 and one for those about Phase 2 and the end
of training, each the size of a slide); ``T1``, T1 m against x with a fitted power law
(:func:`flowsim.models.cooccurrence.claims.scaling.fit_exponent`);
``loss``, the final training and test losses against x with Theorem 3.3's 1/m; ``C_ratio``,
Theorem 3.3's ratio of irrelevant to target coefficients against x.  A numeric x is drawn on a
log axis (the fits are power laws), any other (``init``, ``solver``) as categories.  Grid keys
other than x and ``seed`` make series: one line (and one block of heat-map columns) per
combination of their values.  Points that are not complete are left out and counted in each
figure's note.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

from .models.cooccurrence.claims.base import CLAIMS, OrderClaim, plain
from .models.cooccurrence.claims.scaling import LEVEL, Exponent, fit_exponent
from .core.errors import UsageError
from .core.names import DEFAULT_FORMATS, DPI, SWEEP_PLOT_KINDS, table
from .plotting import COLORS, FONT, Panel, _finish_axes, _new_figure, _wrap, log_ticks, save
from .reporting import SweepReport, sweep_report
from .sweepdir import SweepDir

WIDTH = "m"  # the grid key on the x axis unless another is asked for
#: How the x axis names a grid key: its label, the field that may equal it at every point, and
#: the label then (any other key is named by itself).
AXES = {"m": ("attention width $m$", "m1", "width $m = m_1$"),
        "c0": ("init constant $c_0$", "c1", "init constants $c_0 = c_1$"),
        "n": ("training samples $n$", None, ""), "L": ("sequence length $L$", None, ""),
        "m1": ("MLP width $m_1$", None, ""), "init": ("initialization", None, "")}
KINDS = SWEEP_PLOT_KINDS
TABLE = "T1_scaling.md"
#: Red where a claim holds on no seed, yellow on half of them, blue on all: the two ends differ in
#: hue and in lightness, and the middle is light, unlike the grey of "not applicable".
CLAIMS_COLORMAP = "RdYlBu"
NOT_APPLICABLE = "0.86"
#: The configuration keys that the figures' subtitles name when the grid does not vary them.
SETTING = ("init", "data_mode", "n", "L", "d", "m", "m1", "c0", "t_end")
#: Up to this many values, the x axis has a tick at each, named (16, 10^3); more get the decades.
WIDTH_TICKS = 10
#: The claims figures that :func:`figures` draws: by file name, a title and which claims.
_PHASE1 = ("0", "phase1_end", "all_correct")  # windows that close by the end of Phase 1
CLAIMS_FIGURES = {"claims_phase1": ("about t = 0 and Phase 1",
                                    lambda c: not isinstance(c, OrderClaim) and c.window.close in _PHASE1),
                  "claims_phase2": ("about Phase 2 and the end of training",
                                    lambda c: not isinstance(c, OrderClaim) and c.window.close not in _PHASE1)}


@dataclasses.dataclass(frozen=True)
class Atlas:
    """A sweep read for its figures against the grid key ``x_key``.  Per complete point: ``which``
    series it belongs to (an index into ``series``, the values of the grid keys ``series_keys``,
    i.e. all but x_key and seed), its ``x`` (the value of x_key, or for a categorical key the
    index of its value in ``categories``), its width ``m``, ``T1`` (NaN if not reached), final
    training ``loss``, ``test_loss`` and Theorem 3.3's ``ratio``.  ``report`` holds the claim
    hold rates per (series, x) group, ``skipped`` (from it) the points not complete,
    ``setting`` what the sweep keeps fixed, ``tied`` whether x_key's partner field of
    :data:`AXES` (m1 for m, c1 for c0) equals it at every point."""

    x_key: str
    categories: tuple
    x: np.ndarray
    series_keys: tuple[str, ...]
    series: tuple[dict, ...]
    which: np.ndarray
    m: np.ndarray
    T1: np.ndarray
    loss: np.ndarray
    test_loss: np.ndarray
    ratio: np.ndarray
    report: SweepReport
    setting: str
    tied: bool

    @property
    def skipped(self) -> tuple[str, ...]:
        return self.report.skipped

    def label(self, s: int, tex: bool = True) -> str:
        """Series ``s`` as ``m1=64, sigma0=0.1`` (widths by :func:`width_text`: ``m=10^6``; empty
        for a sweep of widths and seeds alone)."""
        return ", ".join(f"{k}={width_text(v, tex) if k in ('m', 'm1') else v}" for k, v in self.series[s].items())

    def series_of(self, values: dict) -> int:
        """The series of a point or group with grid ``values``."""
        return self.series.index({k: values[k] for k in self.series_keys})

    def position(self, value) -> float:
        """Where a value of x_key lies on the x axis: itself, or its category's index."""
        return float(self.categories.index(value)) if self.categories else float(value)


def read(path: str | Path, x: str | None = None, points: SweepDir | None = None) -> Atlas:
    """The sweep directory ``path`` read for its figures (:class:`Atlas`) against the grid key
    ``x`` (default ``m`` if the grid has it, else its first key but ``seed``); one-line
    :class:`~flowsim.core.errors.UsageError` if ``x`` is not a grid key other than seed or the sweep
    has no complete point.  ``points``: the sweep directory already read
    (:meth:`flowsim.sweepdir.SweepDir.read`; its points' files are then not read again)."""
    path = Path(path)
    sweep = points if points is not None else SweepDir.read(path)
    grid, entries = sweep.grid, sweep.points
    x = x or (WIDTH if WIDTH in grid else next((k for k in grid if k != "seed"), None))
    if x not in grid or x == "seed":
        raise UsageError(f"{path}: the sweep figures draw against a grid key other than seed; "
                          + (f"{x!r} is not one" if x else "this sweep has none") + f" (its grid keys: {', '.join(grid)})")
    runs = [run for _, _, run in entries if run is not None]
    if not runs:
        raise UsageError(f"{path}: no complete point to draw ({len(entries)} points, none complete)")
    keys = tuple(k for k in grid if k not in (x, "seed"))
    series: dict[str, dict] = {}  # by JSON of the values, in the order of first appearance (the grid's)
    which, numbers = [], []
    for run in runs:
        values = plain({k: getattr(run.config, k) for k in keys})
        key = json.dumps(values)
        series.setdefault(key, values)
        which.append(list(series).index(key))
        numbers.append(_finals(run))
    T1, loss, test_loss, ratio = np.array(numbers, float).T
    configs = [run.config for run in runs]
    values = [plain(getattr(c, x)) for c in configs]
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in values)
    categories = () if numeric else tuple(dict.fromkeys(values))
    partner = AXES.get(x, (None, None))[1]
    tied = partner is not None and all(getattr(c, partner) == getattr(c, x) for c in configs)
    return Atlas(x_key=x, categories=categories,
                 x=np.array([float(v) if numeric else categories.index(v) for v in values], float),
                 series_keys=keys, series=tuple(series.values()), which=np.array(which),
                 m=np.array([c.m for c in configs], float), T1=T1, loss=loss, test_loss=test_loss, ratio=ratio,
                 report=sweep_report(sweep), setting=_setting(configs, grid), tied=tied)


def _finals(run) -> tuple[float, float, float, float]:
    """A point's T1 (NaN if not reached), final training and test losses and Theorem 3.3's ratio:
    the largest |C_ij| with an irrelevant word over the smallest of |C_12|, |C_21|, |C_31|, |C_32|."""
    o = run.result.observables
    T1 = run.result.events.get("phase1_end")
    C = np.abs(o["C"][-1])
    with np.errstate(divide="ignore", invalid="ignore"):  # a target coefficient of 0: an infinite ratio
        ratio = o["C_irrelevant_max"][-1] / min(C[0, 1], C[1, 0], C[2, 0], C[2, 1])
    return math.nan if T1 is None else T1, o["loss"][-1], o["test_loss"][-1], ratio


#: How the subtitle names each key of :data:`SETTING`.
_SETTING_TEXT = {"init": "{} init", "data_mode": "{} data", "n": "n = {}", "L": "L = {}", "d": "d = {}",
                 "m": "m = {}", "m1": "$m_1$ = {}", "c0": "$c_0$ = {:.3g}", "t_end": r"$t_\mathrm{{end}}$ = {}"}


def _setting(configs: Sequence, grid: Sequence[str]) -> str:
    """What every point shares and the grid does not vary, e.g. ``theory init, theory data, n = 18,
    L = 4, d = 33, m1 = m`` (m1 = m where it follows m at every point; a field tied to a grid key
    varies, and is left out)."""
    def fixed(k):
        values = {repr(getattr(c, k)) for c in configs}
        return k not in grid and len(values) == 1 and getattr(configs[0], k) is not None

    follows = all(c.m1 == c.m for c in configs)
    parts = []
    for k in SETTING:
        if k == "m1" and follows:
            parts.append(f"$m = m_1$ = {width_text(configs[0].m)}" if fixed("m") else "$m_1 = m$")
        elif fixed(k) and not (k == "m" and follows):
            value = getattr(configs[0], k)
            whole = k in ("m", "m1") or (k == "t_end" and float(value).is_integer())
            parts.append(_SETTING_TEXT[k].format(width_text(value) if whole else value))
    return ", ".join(parts)


def width_text(m: float, tex: bool = True) -> str:
    """A width as 10^k where it is a power of ten from 10 up (mathtext unless ``tex`` is
    false), else as an integer with thousands separators."""
    k = round(math.log10(m))
    if m >= 10 and m == 10**k:
        return f"$10^{{{k}}}$" if tex else f"10^{k}"
    return f"{int(m):,}"


def x_text(atlas: Atlas, value, tex: bool = True) -> str:
    """A value of the x axis' key as its ticks name it: widths by :func:`width_text`, numbers to 3
    digits, categories as they are."""
    if atlas.categories:
        return str(value)
    return width_text(value, tex) if atlas.x_key in ("m", "m1") else f"{float(value):.3g}"


def _x_label(atlas: Atlas) -> str:
    label, _, tied = AXES.get(atlas.x_key, (atlas.x_key, None, ""))
    return tied if atlas.tied else label


def _x_name(atlas: Atlas) -> str:
    """The x axis' key in a title, short: "the width", "$c_0 = c_1$", "the initialization"."""
    label = _x_label(atlas)
    return "the width" if atlas.x_key == WIDTH else label[label.index("$"):] if "$" in label else f"the {label}"


def _x_axis(ax, atlas: Atlas) -> None:
    """The x axis: a numeric key on a log axis labelled by :func:`x_text` (16 as 16, not
    2 x 10^1) at each of the sweep's values, or at the decades if there are more than
    :data:`WIDTH_TICKS`; a categorical key with one tick per category."""
    values = np.unique(atlas.x)
    if atlas.categories:
        ax.set_xticks(values, [str(c) for c in atlas.categories])
        ax.set_xlim(values.min() - 0.5, values.max() + 0.5)
    else:
        ax.set_xscale("log")
        if len(values) <= WIDTH_TICKS:
            ax.xaxis.set_major_locator(FixedLocator(values))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: x_text(atlas, v)))
        ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel(_x_label(atlas), fontsize=FONT["label"])


def _title(fig, atlas: Atlas, title: str, *remarks: str) -> None:
    """The figure's title, then what the grid keeps fixed, the figure's remarks and the points
    left out, each wrapped to the figure's width."""
    lines = [atlas.setting, *remarks]
    if atlas.skipped:
        lines.append(f"{len(atlas.skipped)} of {len(atlas.skipped) + len(atlas.x)} points not complete, left out")
    # About 10 characters to an inch at the title's size (mathtext source draws shorter).
    note = "\n".join(_wrap(line, int(10 * fig.get_figwidth())) for line in lines if line)
    fig.suptitle(f"{title}\n{note}", fontsize=FONT["title"])


def _color(s: int) -> str:
    return COLORS[s % len(COLORS)]


def _spread(ax, atlas: Atlas, values: np.ndarray) -> int:
    """Each series' ``values`` against x: every seed a faint point, the median over seeds a line
    with markers, the interquartile range a band.  Returns how many values were left out for a
    log axis (not finite or not positive)."""
    drawable = np.isfinite(values) & (values > 0)
    ax.margins(y=0.08)  # the points, whose markers have a size, well clear of the frame
    for s in range(len(atlas.series)):
        mine = drawable & (atlas.which == s)
        xs = np.unique(atlas.x[mine])
        if not xs.size:
            continue
        q = np.array([np.percentile(values[mine & (atlas.x == x)], [25, 50, 75]) for x in xs])
        color = _color(s)
        ax.fill_between(xs, q[:, 0], q[:, 2], color=color, alpha=0.2, linewidth=0, zorder=1)
        ax.scatter(atlas.x[mine], values[mine], s=18, color=color, alpha=0.4, linewidths=0, zorder=2)
        ax.plot(xs, q[:, 1], "-o", color=color, markersize=5, linewidth=1.8, zorder=3)
    return int((~drawable).sum())


def _spread_handles(atlas: Atlas) -> list:
    """Legend entries for :func:`_spread`: what the points, lines and bands are, and (for several
    series) which colour is which series."""
    one = len(atlas.series) == 1
    ink = _color(0) if one else "0.3"
    handles = [Line2D([], [], marker="o", linestyle="", color=ink, alpha=0.4, markeredgewidth=0, label="each seed"),
               Line2D([], [], marker="o", color=ink, markersize=5, linewidth=1.8, label="median over seeds"),
               Patch(color=ink, alpha=0.2, linewidth=0, label="interquartile range over seeds")]
    if not one:
        handles += [Patch(color=_color(s), label=atlas.label(s)) for s in range(len(atlas.series))]
    return handles


def _legend(ax, handles) -> None:
    """A legend to the right of the axes (constrained layout makes room for it)."""
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1), borderaxespad=0, fontsize=FONT["legend"])


def _left_out(n: int, what: str) -> str:
    return f"{n} point{'s' * (n != 1)} {what}, left out" if n else ""


# --- The figures ---------------------------------------------------------------------------------


def _ink(rgba) -> str:
    """Black or white text, whichever reads on a cell of colour ``rgba`` (by its luminance)."""
    r, g, b = rgba[:3]
    return "black" if 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.45 else "white"


def _assumptions(rep: SweepReport) -> str:
    met = ", ".join(f"{a} {k}/{rep.points.sum()}" for a, k in zip(rep.assumptions, rep.met.sum(axis=1)))
    return f"assumptions met by the points: {met}"


def _claims_figure(atlas: Atlas, which=lambda claim: True, about: str = ""):
    """Rows: the claims (those ``which`` keeps) in paper order; columns: the values of x (in blocks,
    one per series); each cell the fraction of seeds on which the claim holds, with the counts
    written in it.  ``about`` names the claims in the title."""
    rep = atlas.report
    order = sorted(range(len(rep.groups)),
                   key=lambda g: (atlas.series_of(rep.groups[g]), atlas.position(rep.groups[g][atlas.x_key])))
    rows = [c for c, claim in enumerate(rep.claims) if which(CLAIMS[claim])]
    fraction, holds, applicable = (x[np.ix_(rows, order)] for x in (rep.fraction, rep.holds, rep.applicable))
    claims = [rep.claims[c] for c in rows]
    groups, points = [rep.groups[g] for g in order], rep.points[order]
    n_rows, n_cols = fraction.shape
    # At most about 7 inches of columns, so that a figure with 20 claims fits a 12 x 7 inch slide.
    fig = _new_figure(5.0 + np.clip(0.8 * n_cols, 4.5, 7.0), 2.4 + 0.23 * n_rows)
    ax = fig.subplots()
    cmap = colormaps[CLAIMS_COLORMAP].with_extremes(bad=NOT_APPLICABLE)
    image = ax.imshow(np.ma.masked_invalid(fraction), cmap=cmap, vmin=0, vmax=1, aspect="auto",
                      interpolation="nearest")
    hatch = dict(hatch="//", edgecolor="0.65", linewidth=0)
    for (c, g), f in np.ndenumerate(fraction):
        if np.isnan(f):
            ax.add_patch(Rectangle((g - 0.5, c - 0.5), 1, 1, fill=False, **hatch))
        else:
            ax.text(g, c, f"{holds[c, g]}/{applicable[c, g]}", ha="center", va="center",
                    fontsize=FONT["ticks"] - 1, color=_ink(cmap(f)))
    # White rules between the claims of different theorems and lemmas, and between series.
    for c in range(1, n_rows):
        if claims[c].split(".")[0] != claims[c - 1].split(".")[0]:
            ax.axhline(c - 0.5, color="white", linewidth=3)
    blocks = [atlas.series_of(g) for g in groups]
    for g in range(1, n_cols):
        if blocks[g] != blocks[g - 1]:
            ax.axvline(g - 0.5, color="white", linewidth=5)
    uneven = len(set(points)) > 1  # then each column says how many seeds it has
    ax.set_xticks(range(n_cols), [x_text(atlas, g[atlas.x_key]) + (f"\n({n} seeds)" if uneven else "")
                                  for g, n in zip(groups, points)], fontsize=FONT["ticks"])
    ax.set_yticks(range(n_rows), claims, fontsize=FONT["ticks"])
    ax.tick_params(length=0)
    ax.spines[:].set_visible(False)
    ax.set_xlabel(_x_label(atlas), fontsize=FONT["label"])
    if len(atlas.series) > 1:
        top = ax.secondary_xaxis("top")
        starts = [g for g in range(n_cols) if g == 0 or blocks[g] != blocks[g - 1]] + [n_cols]
        top.set_xticks([(a + b - 1) / 2 for a, b in zip(starts, starts[1:])],
                       [atlas.label(blocks[a]) for a in starts[:-1]], fontsize=FONT["label"])
        top.tick_params(length=0)
        top.spines[:].set_visible(False)
    bar = fig.colorbar(image, ax=ax, pad=0.02, aspect=40, ticks=np.linspace(0, 1, 5))
    # Wrapped: no longer than the bar, 0.23 inch per claim, at about 12 characters to an inch.
    bar.set_label(_wrap("fraction of seeds where the claim holds (of those where it applies)",
                        min(38, int(12 * 0.23 * n_rows))), fontsize=FONT["label"])
    bar.ax.tick_params(labelsize=FONT["ticks"])
    if np.isnan(fraction).any():  # the key to the hatched cells, where there are some
        not_applicable = Patch(facecolor=NOT_APPLICABLE, label="applies on no seed (flowsim report DIR says why)", **hatch)
        fig.legend(handles=[not_applicable], loc="outside lower center", fontsize=FONT["legend"], frameon=False)
    seeds = "" if uneven else f"{points[0]} seeds per column; "
    _title(fig, atlas, " ".join(filter(None, ("How often the paper's claims", about, f"hold, against {_x_name(atlas)}"))),
           f"{seeds}cell: seeds where the claim holds / seeds where it applies", _assumptions(rep))
    return fig


def _T1_fit(atlas: Atlas, mine: np.ndarray) -> Exponent | None:
    """The power law T1 m ~ x^alpha of a series (Theorem 3.1's T1 = O~(1/m): alpha about 0
    against the width; no fit against categories)."""
    return None if atlas.categories else fit_exponent(atlas.x[mine], atlas.T1[mine] * atlas.m[mine])


def _T1_figure(atlas: Atlas):
    """T1 m against x, with the power law fitted to each series."""
    fig = _new_figure(11.5, 6.2)
    ax = fig.subplots()
    _spread(ax, atlas, atlas.T1 * atlas.m)
    handles = _spread_handles(atlas)
    unfit = []
    width = atlas.x_key == WIDTH
    symbol = {"m": "m", "c0": "c_0", "n": "n", "m1": "m_1", "L": "L"}.get(atlas.x_key, atlas.x_key.replace("_", r"\_"))
    for s in range(len(atlas.series)):
        mine = atlas.which == s
        fit = _T1_fit(atlas, mine)
        if fit is None:
            unfit.append(atlas.label(s) or "the sweep")
            continue
        grid = np.geomspace(atlas.x[mine].min(), atlas.x[mine].max(), 100)
        ax.plot(grid, fit(grid), "--", color=_color(s), linewidth=1.4, zorder=4)
        prefix = f"{atlas.label(s)}: " if len(atlas.series) > 1 else ""
        label = (rf"{prefix}fit $T_1\, m \propto {symbol}^{{\alpha}}$" + "\n"
                 rf"$\alpha$ = {fit.alpha:.3f}, {fit.level:.0%} CI [{fit.lo:.3f}, {fit.hi:.3f}]")
        handles.append(Line2D([], [], linestyle="--", color=_color(s), linewidth=1.4, label=label))
    _finish_axes(ax, Panel(r"$T_1\, m$", "log", ()), logx=not atlas.categories)
    _x_axis(ax, atlas)
    log_ticks(fig, [ax.yaxis])
    _legend(ax, handles)
    theory = (r"Theorem 3.1: $T_1 = \tilde O(1/m)$, so $T_1\, m$ grows at most polylogarithmically" if width else
              r"Definition E.2 caps $T_1$ at $C_{T_1} / (\sigma_1^2 m m_1)$")
    how = rf"fit: least squares of $\log T_1 m$ on $\log {symbol}$"
    _title(fig, atlas, rf"End of Phase 1 against {_x_name(atlas)}: $T_1\, m$ ({theory})",
           rf"{how} over all seeds, {LEVEL:.0%} CI from Student's $t_{{n-2}}$ on the slope",
           _left_out(int(np.isnan(atlas.T1).sum()), "never reached $T_1$"),
           f"no fit for {', '.join(unfit)}: needs 3 points over 2 values of a numeric key" if unfit else "")
    return fig


def _loss_figure(atlas: Atlas):
    """The final training and test losses against x, each with the line 1/m (one level per
    width where x is not the width)."""
    fig = _new_figure(12, 6)
    axes = fig.subplots(1, 2, sharex=True)
    grid = np.geomspace(atlas.m.min(), atlas.m.max(), 100)
    left = 0
    for ax, values, ylabel, name in zip(axes, (atlas.loss, atlas.test_loss),
                                        (r"$\hat L(t_\mathrm{end})$", r"$L_\mathrm{test}(t_\mathrm{end})$"),
                                        ("training loss", "test loss (fresh i.i.d. samples)")):
        left += _spread(ax, atlas, values)
        if atlas.x_key == WIDTH:
            ax.plot(grid, 1 / grid, color="k", linestyle=":", linewidth=1.6, zorder=4)
        else:
            for m in np.unique(atlas.m):
                ax.axhline(1 / m, color="k", linestyle=":", linewidth=1.6, zorder=4)
        _finish_axes(ax, Panel(ylabel, "log", ()), logx=not atlas.categories)
        _x_axis(ax, atlas)
        ax.set_title(name, fontsize=FONT["label"])
    log_ticks(fig, [ax.yaxis for ax in axes])  # both losses in one style
    handles = [*_spread_handles(atlas),
               Line2D([], [], color="k", linestyle=":", linewidth=1.6, label=r"$1/m$: Theorem 3.3's weakest $1/\mathrm{poly}(m)$")]
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 4), fontsize=FONT["legend"])
    _title(fig, atlas, rf"Loss at the end of training against {_x_name(atlas)} (Theorem 3.3: both at most "
                       r"$1/\mathrm{poly}(m)$)",
           _left_out(left, "with a loss of 0 or not finite"))
    return fig


def _ratio_figure(atlas: Atlas):
    """Theorem 3.3's ratio of irrelevant to target coefficients against x (the theory: of order
    1/min(n, sqrt(m)/L); the report judges its exponent, claim thm33.C_gap)."""
    fig = _new_figure(11.5, 6.2)
    ax = fig.subplots()
    left = _spread(ax, atlas, atlas.ratio)
    handles = _spread_handles(atlas)
    _finish_axes(ax, Panel(r"$\max\, |C_\mathrm{irrelevant}|\ /\ \min\, |C_\mathrm{target}|$", "log", ()),
                 logx=not atlas.categories)
    _x_axis(ax, atlas)
    log_ticks(fig, [ax.yaxis])
    _legend(ax, handles)
    _title(fig, atlas, r"Theorem 3.3 at $t_\mathrm{end}$: the coefficients $C_{ij}$ that involve an irrelevant word, "
                       "relative to the target ones",
           r"$W_K^\top W_Q - W_K(0)^\top W_Q(0) = \Sigma_{ij}\, C_{ij}\, \mu_i \mu_j^\top$",
           r"ratio: the largest $|C_{ij}|$ with $i$ or $j$ irrelevant over $\min(|C_{12}|, |C_{21}|, |C_{31}|, |C_{32}|)$",
           _left_out(left, "with a ratio of 0 or not finite"))
    return fig


#: The figure of each kind, one per name of :data:`KINDS`.
_FIGURES = table(KINDS, {"claims": _claims_figure, "T1": _T1_figure, "loss": _loss_figure, "C_ratio": _ratio_figure},
                 "flowsim.atlas figures")


def figure(kind: str, atlas: Atlas):
    """The figure ``kind`` (one of :data:`KINDS`) of a sweep read by :func:`read`: every claim in
    one heat map for ``claims``."""
    if kind not in _FIGURES:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    return _FIGURES[kind](atlas)


def figures(kind: str, atlas: Atlas) -> dict:
    """The figures :func:`plot_sweep` saves for ``kind``, by file name (without its suffix):
    ``{kind: figure(kind, atlas)}``, but the claims in two heat maps the size of a slide,
    ``claims_phase1`` and ``claims_phase2`` (:data:`CLAIMS_FIGURES`)."""
    if kind != "claims":
        return {kind: figure(kind, atlas)}
    return {name: _claims_figure(atlas, which, about) for name, (about, which) in CLAIMS_FIGURES.items()}


# --- The T1 table and the files ------------------------------------------------------------------


def scaling_table(source: str | Path | Atlas) -> str:
    """T1 m per value of x (and series) of a sweep directory (or an :class:`Atlas`) as a Markdown
    table, then the fitted exponent of T1 m ~ x^alpha with its confidence interval
    (:func:`flowsim.models.cooccurrence.claims.scaling.fit_exponent`; for the docs)."""
    atlas = source if isinstance(source, Atlas) else read(source)
    keys, x = list(atlas.series_keys), atlas.x_key
    rows = [f"| {' | '.join([*keys, x])} | seeds with T1 | T1 m, median | T1 m, interquartile range | T1, median |",
            "|" + "---|" * (len(keys) + 5)]
    fits = []
    law = f"T1 m ~ {x}^alpha"
    for s in range(len(atlas.series)):
        mine = atlas.which == s
        for value in np.unique(atlas.x[mine]):
            here = mine & (atlas.x == value)
            T1 = atlas.T1[here]
            reached = np.isfinite(T1)
            shown = atlas.categories[int(value)] if atlas.categories else value
            cells = [*map(str, atlas.series[s].values()), x_text(atlas, shown, tex=False),
                     f"{reached.sum()}/{T1.size}"]
            if reached.any():
                q25, q50, q75 = np.percentile((T1 * atlas.m[here])[reached], [25, 50, 75])
                cells += [f"{q50:.4g}", f"{q25:.4g} - {q75:.4g}", f"{np.median(T1[reached]):.4g}"]
            else:
                cells += ["-"] * 3
            rows.append(f"| {' | '.join(cells)} |")
        fit = _T1_fit(atlas, mine)
        where = f"{atlas.label(s, tex=False)}: " if keys else ""
        fits.append(f"{where}{law} with " + (f"{fit.text()} ({fit.points} points)" if fit else
                                             "no fit (needs 3 points over 2 values of a numeric key)"))
    how = (f"Fit: least squares of log T1 m on log {x} over every seed that reached T1; "
           f"the {LEVEL:.0%} CI is the slope's standard error times Student's t quantile with n - 2 degrees of freedom.")
    return "\n".join([*rows, "", *fits, "", how]) + "\n"


def plot_sweep(path: str | Path | Atlas, out_dir: str | Path | None = None, *, kinds: Sequence[str] = KINDS,
               formats: Sequence[str] = DEFAULT_FORMATS, dpi: int = DPI, prefix: str = "",
               x: str | None = None) -> list[Path]:
    """Draw each of ``kinds`` (default all of :data:`KINDS`) for the sweep directory ``path`` (or
    an :class:`Atlas` already read, with ``out_dir``) against its grid key ``x`` (default: see
    :func:`read`) and save it as ``out_dir/{prefix}{kind}.{format}`` (default ``out_dir``:
    ``path/plots``; the claims as ``claims_phase1`` and ``claims_phase2``, see :func:`figures`);
    with ``T1``, also write :func:`scaling_table` as ``out_dir/{prefix}T1_scaling.md``.  Returns
    the paths written."""
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {unknown[0]!r}")
    if isinstance(path, Atlas) and out_dir is None:
        raise ValueError("plot_sweep of an Atlas needs out_dir")
    atlas = path if isinstance(path, Atlas) else read(path, x)
    out = Path(path) / "plots" if out_dir is None else Path(out_dir)
    written = [p for kind in kinds for p in save(figures(kind, atlas), out, formats, dpi, prefix)]
    if "T1" in kinds:
        written.append(out / f"{prefix}{TABLE}")
        written[-1].write_text(scaling_table(atlas))
    return written
