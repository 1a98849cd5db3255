"""Checks that a figure is fit for a slide, shared by the figure tests (test_plotting, test_atlas)."""

import re

import numpy as np
from matplotlib.collections import PathCollection

DPI = 150  # plot() and plot_sweep() save at 150 dpi by default
SLIDE = (12.5, 7.5)  # inches: about 12 x 7, with the margin of bbox_inches="tight"
POWER = re.compile(r"^\$(\\mathdefault\{)?(\d+(\.\d+)?\\times)?10\^\{-?\d+\}\}?\$$")  # 10^{-2}, 5\times10^{-2}
PLAIN = re.compile(r"^\d[\d,]*(\.\d+)?$")  # 0.05, 3, 2,048


def check_slide_ready(fig) -> None:
    """The figure saved at 150 dpi fits about 12 x 7 inches; every axes, legend and title is inside
    the canvas and the title overlaps no legend; no data point of an axes is closer to its frame
    than its marker's size; the labels of every log axis are of one style (powers of ten or
    plain numbers, never 6e-01), at least three inside its limits."""
    fig.set_dpi(DPI)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    # What savefig(bbox_inches="tight") keeps: every artist's box, padded by 0.1 inch.
    saved = fig.get_tightbbox(renderer)
    assert saved.width + 0.2 <= SLIDE[0] and saved.height + 0.2 <= SLIDE[1], (saved.width, saved.height)
    inside = fig.bbox.padded(1)  # a pixel of rounding
    legends = [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend() is not None)]
    boxes = [leg.get_window_extent(renderer) for leg in legends]
    boxes += [ax.get_tightbbox(renderer) for ax in fig.axes if ax.get_visible()]  # tick labels, axis labels
    for box in boxes:
        assert inside.x0 <= box.x0 and box.x1 <= inside.x1 and inside.y0 <= box.y0 and box.y1 <= inside.y1, box
    (title,) = [t for t in fig.texts if t.get_text() == fig.get_suptitle()]
    title_box = title.get_window_extent(renderer)
    assert inside.y1 >= title_box.y1 and inside.x0 <= title_box.x0 and title_box.x1 <= inside.x1
    assert not any(title_box.overlaps(box) for box in boxes[:len(legends)])
    for ax in fig.axes:
        if ax.get_visible() and ax.get_label() != "<colorbar>":
            _clear_of_the_frame(ax)
            for axis in (ax.xaxis, ax.yaxis):
                if axis.get_scale() == "log":
                    _one_style(axis)


def _clear_of_the_frame(ax) -> None:
    """Every point of the curves (more than two points) and scatter plots inside the frame by more
    than its marker's radius (a pixel for a bare line)."""
    scale = DPI / 72
    shapes = [(line.get_xydata(), line.get_markersize() / 2 * scale if line.get_marker() not in ("None", "") else 0)
              for line in ax.get_lines() if len(line.get_xdata()) > 2]
    shapes += [(c.get_offsets(), np.sqrt(np.max(c.get_sizes())) / 2 * scale)
               for c in ax.collections if isinstance(c, PathCollection) and len(c.get_offsets())]
    box = ax.bbox
    for xy, radius in shapes:
        xy = np.asarray(xy, float)
        xy = xy[np.all(np.isfinite(xy), axis=1)]
        x, y = ax.transData.transform(xy).T
        margin = radius + 1
        assert np.all((box.x0 + margin < x) & (x < box.x1 - margin) & (box.y0 + margin < y) & (y < box.y1 - margin)), \
            (ax.get_title(), ax.get_ylabel())


def _one_style(axis) -> None:
    """(An axis whose labels are turned off, as an upper one of shared axes, is not checked.)"""
    if not any(tick.label1.get_visible() or tick.label2.get_visible() for tick in axis.get_major_ticks()):
        return
    lo, hi = sorted(axis.get_view_interval())
    texts = [t.get_text() for which in ("major", "minor")
             for t, loc in zip(axis.get_ticklabels(which=which), axis.get_ticklocs(minor=which == "minor"))
             if t.get_text() and lo <= loc <= hi]
    assert len(texts) >= 3, texts
    assert all(POWER.match(t) for t in texts) or all(PLAIN.match(t) for t in texts), texts
