"""Figures: files written, curves that are the saved observables, the phases marked, nothing cut off,
any number of runs, no pyplot state.  Synthetic trajectories: plotting alone is under test."""

import ast
import re

import numpy as np
import pytest
from matplotlib.legend import Legend
from matplotlib.patches import Rectangle

from figures import check_slide_ready
from flowsim import plotting
from flowsim.core.options import DescentOptions, FlowOptions, SolverOptions
from flowsim.models.cooccurrence.flow import FlowResult
from flowsim.models.cooccurrence.observables import DESCRIPTIONS

T1 = 0.15
D = 8


def synthetic(seed: int = 0, T1: float | None = T1, saves: int = 41, method: str = "flow") -> FlowResult:
    """A trajectory with every observable at its recorded shape (random smooth values) and group
    sums S shaped like a real run's: S2 + S3 + S4 - S1 crosses zero in Phase 1."""
    rng = np.random.default_rng(seed)
    ts = np.concatenate([[0.0], np.geomspace(1e-3, 300.0, saves - 1)])
    trend = np.log1p(ts)
    observables = {}
    for key, (shape, _) in DESCRIPTIONS.items():
        shape = ast.literal_eval(shape.replace("d", str(D)))
        base, slope = rng.standard_normal((2, *shape))
        observables[key] = base + 0.1 * slope * trend.reshape(-1, *[1] * len(shape))
    for key in ("loss", "drift_KQ", "drift_WV", "balance_S2_S3", "balance_all_S234_S1", "balance_all_S1_S2"):
        observables[key] = np.exp(observables[key])
    observables["drift_KQ"][0] = observables["drift_WV"][0] = 0.0  # as at t = 0 of a real run
    early = np.exp(-ts / 0.05)
    ones = np.ones_like(ts)
    observables["S"] = np.stack([1 + 2 * early, 0.5 * ones, 0.5 * ones, 0.2 * ones], axis=1)
    options = DescentOptions(lr=0.01) if method == "gd" else FlowOptions(solver=SolverOptions("tsit5"))
    return FlowResult(ts=ts, observables=observables, events={"phase1_end": T1}, stats={}, params_init=None,
                      params_final=None, t_reached=300.0, status="complete", message="", grid=ts, chunks_done=1,
                      state=None, options=options)


def data_lines(ax):
    """The curves of an axes (not the T1 markers or the zero line, which have two points)."""
    return [line for line in ax.get_lines() if len(line.get_xdata()) > 2]


def t1_lines(ax):
    return [line for line in ax.get_lines() if len(line.get_xdata()) == 2 and line.get_xdata()[0] == line.get_xdata()[1]]


def test_writes_every_kind_in_png_and_pdf(tmp_path):
    written = plotting.plot(synthetic(), tmp_path)
    assert sorted(p.name for p in written) == sorted(f"{k}.{f}" for k in plotting.KINDS for f in ("png", "pdf"))
    assert all(p.stat().st_size > 1000 for p in written)
    assert (tmp_path / "scores.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "loss.pdf").read_bytes()[:4] == b"%PDF"


def test_curves_are_the_observables_with_runs_told_apart_by_style():
    runs = [synthetic(0), synthetic(1, T1=0.2, method="gd")]
    fig = plotting.figure("loss", runs, labels=["a", "b"])
    (ax,) = fig.axes
    lines = data_lines(ax)
    assert len(lines) == 2 * 5  # overall + I1..I4, for each of the two runs
    # The default log time axis leaves out t = 0.
    np.testing.assert_array_equal(lines[2].get_xdata(), runs[0].ts[1:])
    np.testing.assert_array_equal(lines[2].get_ydata(), runs[0].observables["loss_groups"][1:, 1])
    assert {line.get_linestyle() for line in lines} == {"-", "--"}
    assert sorted(line.get_xdata()[0] for line in t1_lines(ax)) == [0.15, 0.2]
    assert ax.get_yscale() == "log" and ax.get_xscale() == "log"
    # The curves' legend says what each group is; the runs' legend names the runs.
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert texts[:5] == ["all samples", "$I_1$: both targets", r"$I_2$: only $\mu_1$", r"$I_3$: only $\mu_2$",
                         "$I_4$: neither target"]
    (runs_legend,) = fig.legends
    assert [t.get_text() for t in runs_legend.get_texts()] == ["a", "b"]


@pytest.mark.parametrize("n_runs", [1, 2])
def test_phase1_is_shaded_and_T1_dashed(n_runs):
    runs = [synthetic(k, T1=T1 * (1 + k)) for k in range(n_runs)]
    ax = plotting.figure("G", runs).axes[0]
    markers = t1_lines(ax)
    assert len(markers) == n_runs and all(line.get_linestyle() == "--" for line in markers)
    spans = [p for p in ax.patches if isinstance(p, Rectangle)]
    np.testing.assert_allclose(sorted((p.get_x(), p.get_x() + p.get_width()) for p in spans),
                               [(1e-3, r.events["phase1_end"]) for r in runs])
    assert {t.get_text() for t in ax.texts} == {"Phase 1", "Phase 2"}


def test_linear_time_on_request_keeps_t0():
    ax = plotting.figure("scores", [synthetic()], logx=False).axes[0]
    assert ax.get_xscale() == "linear"
    assert data_lines(ax)[0].get_xdata()[0] == 0.0


def test_labels_are_mathtext_and_cite_no_internal_spec():
    ascii_mu = re.compile(r"(?<![\\a-zA-Z])mu")  # mu1, mu_i^T: not the mathtext \mu
    for kind in plotting.KINDS:
        fig = plotting.figure(kind, [synthetic()])
        texts = [fig.get_suptitle()] + [t.get_text() for ax in fig.axes for t in (ax.yaxis.label, ax.xaxis.label)]
        texts += [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]
        assert not any("spec" in t or ascii_mu.search(t) for t in texts), texts
    legend = plotting.figure("scores", [synthetic()]).axes[0].get_legend()
    assert legend.get_texts()[0].get_text().startswith(r"$s(\mu_1,\mu_2)$")


def test_balance_ratios_are_drawn_only_in_phase_2_where_their_denominator_is_positive():
    run = synthetic()
    S = run.observables["S"]
    S[-3, 0] = S[-3, 1] - 0.1  # S1 - S2 < 0 once after T1: that ratio is left out there
    lines = data_lines(plotting.figure("balance", [run]).axes[0])
    t = run.ts[1:]
    for line, key in zip(lines, ("balance_S2_S3", "balance_all_S234_S1", "balance_all_S1_S2")):
        y = np.asarray(line.get_ydata())
        assert np.all(np.isnan(y[t <= T1]))
        drawn = (t > T1) & ~((key == "balance_all_S1_S2") & (np.arange(len(t)) == len(t) - 3))
        np.testing.assert_array_equal(y[drawn], run.observables[key][1:][drawn])
    assert np.isnan(np.asarray(lines[2].get_ydata())[-3])
    assert "only" in plotting.figure("balance", [run]).get_suptitle()


def test_balance_without_T1_draws_nothing():
    lines = data_lines(plotting.figure("balance", [synthetic(T1=None)]).axes[0])
    assert all(np.all(np.isnan(np.asarray(line.get_ydata()))) for line in lines)


def test_many_runs_get_a_colour_each_and_a_panel_per_curve():
    runs = [synthetic(k, T1=0.1 + 0.02 * k) for k in range(7)]
    labels = [f"seed {k}" for k in range(7)]
    fig = plotting.figure("scores", runs, labels=labels)
    panels = [ax for ax in fig.axes if ax.get_visible() and ax.get_label() != "<colorbar>"]
    assert len(panels) == 2 * 6  # values and change since t = 0, one axes per pair
    for ax in panels:
        lines = data_lines(ax)
        assert len(lines) == 7 and len({tuple(line.get_color()) for line in lines}) == 7
        assert len(t1_lines(ax)) == 7 and all(line.get_linestyle() == "--" for line in t1_lines(ax))
    (bar,) = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert [t.get_text() for t in bar.get_yticklabels()] == labels
    # The change panel is the change since t = 0 of the value panel's pair.
    np.testing.assert_array_equal(data_lines(panels[6])[3].get_ydata(), runs[3].observables["C"][1:, 0, 1])


LONG = "a rather long run label that would once have been cut off at the right edge"


@pytest.mark.parametrize("n_runs", [1, 2, 7])
@pytest.mark.parametrize("kind", ["scores", "balance", "loss"])
def test_every_saved_figure_is_fit_for_a_slide(kind, n_runs):
    """At 150 dpi within about 12 x 7 inches, nothing outside the canvas or on the title, no curve
    on the frame, log axes labelled in one style with at least three labels (tests/figures.py)."""
    runs = [synthetic(k) for k in range(n_runs)]
    labels = [f"{LONG} {k}" for k in range(n_runs)]
    for fig in plotting.figures(kind, runs, labels=labels).values():
        check_slide_ready(fig)


def test_many_runs_of_several_panels_make_a_figure_per_panel_with_the_phases_named():
    runs = [synthetic(k, T1=0.1 + 0.02 * k) for k in range(7)]
    figs = plotting.figures("scores", runs)
    assert list(figs) == ["scores", "scores_change"]
    for fig, key in zip(figs.values(), ("scores", "C")):
        panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
        assert len(panels) == 6 and max(ax.get_subplotspec().colspan.stop for ax in panels) == 3
        for ax, (i, j) in zip(panels, [pair for pair, _ in plotting.PAIRS]):
            np.testing.assert_array_equal(data_lines(ax)[2].get_ydata(), runs[2].observables[key][1:, i, j])
            assert [t.get_text() for t in ax.texts] == ["Phase 1", "Phase 2"]
    assert list(plotting.figures("loss", runs)) == ["loss"]
    assert list(plotting.figures("scores", runs[:2])) == ["scores"]  # line styles: both panels in one


def test_short_log_axes_get_labels_between_the_decades_in_one_style():
    """T1 m from 2.5 to 8.5 (five labels, not three), a ratio from 5.6 to 7.7, a loss over eight
    decades: plain numbers where every value is between 0.01 and 10^4, powers of ten elsewhere."""
    fig = plotting.figure("balance", [synthetic()])
    ax = fig.axes[0]
    for lo, hi, expected in ((2.5, 8.5, ["3", "4", "5", "6", "8"]), (5.6, 7.7, ["6", "6.5", "7", "7.5"]),
                             (0.04, 0.9, ["0.05", "0.1", "0.2", "0.5"]),
                             (2e-8, 10, [rf"$\mathdefault{{10^{{{k}}}}}$" for k in range(-7, 2)])):
        ax.set_ylim(lo, hi)
        plotting.log_ticks(fig, [ax.yaxis])
        fig.canvas.draw()
        labels = sorted((loc, t.get_text()) for which in ("major", "minor") for t, loc in
                        zip(ax.yaxis.get_ticklabels(which=which), ax.yaxis.get_ticklocs(minor=which == "minor"))
                        if t.get_text() and lo <= loc <= hi)
        got = [t for _, t in labels]
        assert got == expected or (hi == 10 and set(got) <= set(expected) and len(got) >= 4), got


def test_plot_overlays_several_results_and_leaves_no_pyplot_figures(tmp_path):
    written = plotting.plot([synthetic(0), synthetic(1)], tmp_path, kinds=["G"], logx=False, formats=["png"], dpi=50)
    assert written == [tmp_path / "G.png"]
    import matplotlib.pyplot as plt

    assert plt.get_fignums() == []


def test_bad_arguments():
    with pytest.raises(ValueError, match="kind must be one of"):
        plotting.figure("nope", [synthetic()])
    with pytest.raises(ValueError, match="2 results but 1 labels"):
        plotting.figure("G", [synthetic(), synthetic()], labels=["one"])
    with pytest.raises(ValueError, match="no results"):
        plotting.figure("G", [])
