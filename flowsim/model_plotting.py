"""Any model's observables against time, for one run or several overlaid: every scalar and small vector, events as labelled lines, slide-sized figures (matplotlib).

As for the transformer's figures (:mod:`flowsim.plotting`): time on a log axis by default, tick
labels of one style, legends outside the axes, each figure about 12 x 7 inches.  A figure holds
up to :data:`PER_FIGURE` panels (an observable each; a vector's entries are its curves), and a
model with more observables gets more figures.  Observables of more than :data:`MAX_ENTRIES`
numbers per save (matrices) are left out and named under the title.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.lines import Line2D
from matplotlib.transforms import blended_transform_factory

from .core.names import DEFAULT_FORMATS, DPI
from .plotting import COLORS, FONT, RUN_COLORMAP, RUN_STYLES, _new_figure, _time_label, _wrap, log_ticks, save
from .core.trajectory import FlowResult

#: Most entries of an observable drawn as curves (one line style each when runs are colours).
MAX_ENTRIES = len(RUN_STYLES)
#: Panels per figure: three across, two down, on a slide.
PER_FIGURE, COLUMNS = 6, 3
#: A positive quantity spanning more than this ratio is drawn on a log axis.
LOG_SPAN = 1e3
EVENT_STYLE = dict(linestyle=":", linewidth=1.3)
#: Runs saved at this many times or fewer get a marker at each save: their lines are mostly interpolation.
SPARSE = 30


def drawable(results: Sequence[FlowResult]) -> tuple[list[str], list[str]]:
    """The observables of ``results`` drawn (at most :data:`MAX_ENTRIES` numbers per save) and
    those left out, each in the order the runs name them."""
    drawn, left = {}, {}
    for r in results:
        for k, v in r.observables.items():
            (drawn if math.prod(np.shape(v)[1:]) <= MAX_ENTRIES else left)[k] = None
    return list(drawn), [k for k in left if k not in drawn]


def figures(results: Sequence[FlowResult], *, title: str, labels: Sequence[str], logx: bool = True) -> dict[str, object]:
    """The figures of ``results`` (overlaid) by file name: ``observables``, ``observables_2``, ..."""
    keys, left = drawable(results)
    pages = [keys[i:i + PER_FIGURE] for i in range(0, len(keys), PER_FIGURE)]
    colors = _run_colors(len(results))
    events = list(dict.fromkeys(k for r in results for k, t in r.events.items() if t is not None))
    out = {}
    for n, page in enumerate(pages, 1):
        fig = _page(results, page, labels, colors, events, logx)
        lines = [title + (f" ({n} of {len(pages)})" if len(pages) > 1 else "")]
        if left:
            lines.append(_wrap(f"not drawn (more than {MAX_ENTRIES} numbers per save): {', '.join(left)}", 110))
        fig.suptitle("\n".join(lines), fontsize=FONT["title"])
        log_ticks(fig)
        out["observables" if n == 1 else f"observables_{n}"] = fig
    return out


def plot(results: Sequence[FlowResult], out_dir, *, title: str, labels: Sequence[str], logx: bool = True,
         formats: Sequence[str] = DEFAULT_FORMATS, dpi: int = DPI) -> list[Path]:
    """Save :func:`figures` as ``out_dir/<name>.<format>``; returns the paths written."""
    return save(figures(results, title=title, labels=labels, logx=logx), out_dir, formats, dpi)


def _run_colors(n: int) -> list:
    return list(COLORS[:n]) if n <= len(COLORS) else list(colormaps[RUN_COLORMAP](np.linspace(0.0, 0.9, n)))


def _page(results, keys, labels, colors, events, logx):
    rows = math.ceil(len(keys) / COLUMNS)
    cols = min(len(keys), COLUMNS)
    fig = _new_figure(12, 7 if rows > 1 else 4.2)
    axes = fig.subplots(rows, cols, sharex=True, squeeze=False)
    several = len(results) > 1
    for i, ax in enumerate(axes.ravel()):
        if i >= len(keys):
            ax.set_visible(False)
            continue
        key = keys[i]
        having = [(r, c) for r, c in zip(results, colors) if key in r.observables]
        entries = max(math.prod(np.shape(r.observables[key])[1:]) for r, _ in having)
        for r, run_color in having:
            t, ys = _series(r, key, logx)
            for e, y in enumerate(ys):
                color, style = (run_color, RUN_STYLES[e]) if several else (COLORS[e], "-")
                ax.plot(t, y, color=color, linestyle=style, linewidth=1.5,
                        marker="o" if len(t) <= SPARSE else None, markersize=3.5)
        _events(ax, results, colors, events, logx)
        ax.set_xscale("log" if logx else "linear")
        ax.set_yscale(_yscale([r.observables[key] for r, _ in having]))
        ax.set_title(key, fontsize=FONT["label"])
        ax.tick_params(which="both", labelsize=FONT["ticks"])
        ax.grid(True, alpha=0.3)
        if entries > 1:
            handles = [Line2D([], [], color="k" if several else COLORS[e], linestyle=RUN_STYLES[e] if several else "-",
                              label=f"[{e}]") for e in range(entries)]
            ax.legend(handles=handles, fontsize=FONT["ticks"] - 1, loc="best", title="entry",
                      title_fontsize=FONT["ticks"] - 1)
        if i + cols >= len(keys):  # the lowest axes of its column
            ax.set_xlabel(_time_label(logx, short=True), fontsize=FONT["label"])
            ax.xaxis.set_tick_params(labelbottom=True)
    handles = []
    if several:
        handles += [Line2D([], [], color=c, linewidth=2, label=_wrap(s)) for c, s in zip(colors, labels)]
    for k, name in enumerate(events, 1):
        times = [r.events.get(name) for r in results]
        when = f" (t = {times[0]:.3g})" if not several else ""
        if logx and all(t is not None and t <= 0 for t in times):
            when = " (at t = 0, off the log axis)"
        handles.append(Line2D([], [], color="0.35", label=f"{k}: {name}{when}", **EVENT_STYLE))
    if handles:
        fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 4), fontsize=FONT["legend"],
                   title=("runs; " if several else "") + "events: dotted lines, numbered at the top",
                   title_fontsize=FONT["legend"])
    return fig


def _series(r: FlowResult, key: str, logx: bool) -> tuple[np.ndarray, list[np.ndarray]]:
    """The saved times and each entry's values (a log time axis leaves out t = 0)."""
    t = np.asarray(r.ts, float)
    v = np.asarray(r.observables[key], float).reshape(len(t), -1)
    keep = t > 0 if logx else np.ones(len(t), bool)
    return t[keep], [v[keep, e] for e in range(v.shape[1])]


def _yscale(values: Sequence[np.ndarray]) -> str:
    """Log for a positive quantity that spans more than :data:`LOG_SPAN`, else linear."""
    v = np.concatenate([np.asarray(x, float).ravel() for x in values])
    v = v[np.isfinite(v)]
    return "log" if v.size and v.min() > 0 and v.max() / v.min() > LOG_SPAN else "linear"


def _events(ax, results, colors, events, logx) -> None:
    """A dotted vertical line at each event a run reached (in the run's colour when there are
    several), numbered at the top as in the legend; the numbers of close events staggered."""
    where = blended_transform_factory(ax.transData, ax.transAxes)
    numbered = set()
    for r, color in zip(results, colors):
        for k, name in enumerate(events, 1):
            t = r.events.get(name)
            if t is None or (logx and t <= 0):
                continue
            ax.axvline(t, color=color if len(results) > 1 else "0.35", zorder=1, **EVENT_STYLE)
            if name not in numbered:
                numbered.add(name)
                ax.text(t, 0.97 - 0.07 * ((k - 1) % 3), str(k), transform=where, ha="center", va="top",
                        fontsize=FONT["ticks"] - 1, color="0.2",
                        bbox=dict(boxstyle="round,pad=0.15", facecolor="white", edgecolor="none", alpha=0.8))
