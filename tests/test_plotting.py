"""Figures: files written, curves that are the saved observables, overlays, log time axis, no pyplot state."""


import numpy as np
import pytest
from matplotlib.legend import Legend

from flowsim import plotting


def test_writes_every_kind_in_png_and_pdf(tiny_run, tmp_path):
    written = plotting.plot(tiny_run, tmp_path)
    assert sorted(p.name for p in written) == sorted(f"{k}.{f}" for k in plotting.KINDS for f in ("png", "pdf"))
    assert all(p.stat().st_size > 1000 for p in written)
    assert (tmp_path / "scores.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "loss.pdf").read_bytes()[:4] == b"%PDF"


def test_curves_are_the_observables_with_T1_marked(tiny_run):
    fig = plotting.figure("loss", [tiny_run, tiny_run], labels=["a", "b"])
    ax = fig.axes[0]
    lines = [l for l in ax.get_lines() if len(l.get_xdata()) > 2]
    assert len(lines) == 2 * 5  # overall + I1..I4, for each of the two runs
    np.testing.assert_array_equal(lines[2].get_xdata(), tiny_run.ts)
    np.testing.assert_array_equal(lines[2].get_ydata(), tiny_run.observables["loss_groups"][:, 1])
    assert {l.get_linestyle() for l in lines} == {"-", "--"}
    T1_lines = [l for l in ax.get_lines() if len(l.get_xdata()) == 2]
    assert [l.get_xdata()[0] for l in T1_lines] == [tiny_run.events["phase1_end"]] * 2
    assert ax.get_yscale() == "log"
    # One legend names the curves, the other the runs by line style.
    legends = [c for c in ax.get_children() if isinstance(c, Legend)]
    assert [[t.get_text() for t in leg.get_texts()] for leg in legends] == [["all", "I1", "I2", "I3", "I4", "T1"], ["a", "b"]]


def test_log_time_axis_leaves_out_t0(tiny_run):
    ax = plotting.figure("scores", [tiny_run], logx=True).axes[0]
    assert ax.get_xscale() == "log"
    assert all(np.all(np.asarray(l.get_xdata()) > 0) for l in ax.get_lines())


def test_plot_overlays_several_results_and_leaves_no_pyplot_figures(tiny_run, tmp_path):
    written = plotting.plot([tiny_run, tiny_run], tmp_path, kinds=["G"], logx=True, formats=["png"], dpi=50)
    assert written == [tmp_path / "G.png"]
    import matplotlib.pyplot as plt

    assert plt.get_fignums() == []


def test_bad_arguments(tiny_run):
    with pytest.raises(ValueError, match="kind must be one of"):
        plotting.figure("nope", [tiny_run])
    with pytest.raises(ValueError, match="2 results but 1 labels"):
        plotting.figure("G", [tiny_run, tiny_run], labels=["one"])
