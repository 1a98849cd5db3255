"""The sweep figures: the fitted power law against known exponents, the heat map against the sweep
report, what each figure draws, and ``flowsim plot SWEEP_DIR``.  Synthetic sweep directories
(saved result directories, nothing integrated): the figures alone are under test."""

import ast

import numpy as np
import pytest

import _synthetic as syn
import flowsim
from figures import check_slide_ready
from flowsim import atlas, cli
from flowsim.models.cooccurrence.claims.scaling import fit_exponent
from flowsim.models.cooccurrence.observables import DESCRIPTIONS

WIDTHS = (10, 100, 1000)
SEEDS = (0, 1)
ALPHA, PREFACTOR = 0.8, 2.0
D = syn.SIZES["d"]


def T1_of(m, seed):
    """T1 = PREFACTOR m^-ALPHA times a factor per seed: the same factors at every width leave the
    least-squares slope exactly -ALPHA, with residuals, so that its interval has a width."""
    return PREFACTOR * m**-ALPHA * (1.0, 1.5)[seed]


def synthetic_result(values: dict) -> flowsim.FlowResult:
    """Random observables of the recorded shapes on the synthetic save grid (tests/_synthetic.py),
    with positive losses and the point's T1, and the start facts of the theory preset's sizes."""
    m, seed = values.get("m", 10), values["seed"]
    rng = np.random.default_rng(seed * 1000 + m)

    def randomize(ts, obs, events, facts):
        for k, (shape, _) in DESCRIPTIONS.items():
            obs[k] = rng.normal(size=(len(ts), *ast.literal_eval(shape.replace("d", str(D)))))
        for key in ("loss", "test_loss", "C_irrelevant_max"):
            obs[key] = np.exp(obs[key])
        if m >= 1000:  # as an engine without the neurons records them: the claims on them do not apply
            for key in ("neuron_corr_change", "neuron_value_change"):
                obs[key] = np.full_like(obs[key], np.nan)
        events.update(phase1_end=T1_of(m, seed))

    return syn.ideal(randomize, d=D, **{k: values[k] for k in ("m", "m1") if k in values})


def make_sweep(root, grid: dict, pending: tuple[str, ...] = ()):
    """A sweep directory over ``grid`` (keys of RunConfig), every point saved but ``pending``."""
    syn.write_sweep(root, grid, lambda values: None if "_".join(f"{k}={v}" for k, v in values.items()) in pending
                    else synthetic_result(values))
    return root


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """m = 10, 100, 1000 with seeds 0 and 1, plus a seed 2 at m = 1000 not run yet."""
    root = make_sweep(tmp_path_factory.mktemp("atlas"), {"m": list(WIDTHS), "seed": [0, 1, 2]},
                      pending=tuple(f"m={m}_seed=2" for m in WIDTHS))
    return root, atlas.read(root)


def test_read_takes_each_complete_point(swept):
    root, a = swept
    assert a.series_keys == () and a.series == ({},) and list(a.which) == [0] * 6
    np.testing.assert_allclose(sorted(zip(a.m, a.T1)), sorted((m, T1_of(m, s)) for m in WIDTHS for s in SEEDS))
    assert a.skipped == tuple(f"m={m}_seed=2 (pending)" for m in WIDTHS)
    run = flowsim.load(root / "points" / "m=100_seed=1").result
    i = next(k for k in range(6) if a.m[k] == 100 and a.T1[k] == T1_of(100, 1))
    C = np.abs(run.observables["C"][-1])
    assert a.ratio[i] == pytest.approx(run.observables["C_irrelevant_max"][-1] / min(C[0, 1], C[1, 0], C[2, 0], C[2, 1]))
    assert a.loss[i] == run.observables["loss"][-1] and a.test_loss[i] == run.observables["test_loss"][-1]


def test_heat_map_cells_are_the_sweep_report_fractions(swept):
    root, a = swept
    rep = flowsim.sweep_report(root)
    fig = atlas.figure("claims", a)
    ax = fig.axes[0]
    cells = ax.images[0].get_array()
    np.testing.assert_array_equal(np.ma.filled(cells, np.nan), rep.fraction)  # NaN: applies to no seed
    texts = {(round(t.get_position()[1]), round(t.get_position()[0])): t.get_text() for t in ax.texts}
    for (c, g), f in np.ndenumerate(rep.fraction):
        assert texts.get((c, g)) == (None if np.isnan(f) else f"{rep.holds[c, g]}/{rep.applicable[c, g]}")
    assert sum(p.get_hatch() == "//" for p in ax.patches) == np.isnan(rep.fraction).sum()
    assert len(fig.legends) == 1 and np.isnan(rep.fraction).any()  # the key to the hatched cells
    assert [t.get_text() for t in ax.get_yticklabels()] == list(rep.claims)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["$10^{1}$", "$10^{2}$", "$10^{3}$"]
    assert "3 of 9 points not complete, left out" in fig.get_suptitle()


def test_T1_figure_draws_T1_m_per_seed_the_medians_and_the_fit(swept):
    _, a = swept
    ax = atlas.figure("T1", a).axes[0]
    seeds = ax.collections[1].get_offsets()  # after the interquartile band
    np.testing.assert_allclose(sorted(map(tuple, seeds)), sorted((m, m * T1_of(m, s)) for m in WIDTHS for s in SEEDS))
    median, fitted = ax.get_lines()[:2]
    np.testing.assert_allclose(median.get_ydata(), [m * np.mean([T1_of(m, s) for s in SEEDS]) for m in WIDTHS])
    fit = fit_exponent(a.m, a.m * a.T1)  # T1 m ~ m^(1 - ALPHA)
    assert fit.alpha == pytest.approx(1 - ALPHA) and fit.lo < 1 - ALPHA < fit.hi
    np.testing.assert_allclose(fitted.get_ydata(), fit(fitted.get_xdata()))
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any(rf"$\alpha$ = {1 - ALPHA:.3f}, 95% CI [" in t for t in legend)
    assert ax.get_xscale() == ax.get_yscale() == "log"


def test_loss_figure_draws_one_over_m_and_the_ratio_figure_each_point(swept):
    _, a = swept
    for ax in atlas.figure("loss", a).axes:
        one_over_m = [line for line in ax.get_lines() if line.get_linestyle() == ":"][0]
        np.testing.assert_allclose(one_over_m.get_ydata(), 1 / one_over_m.get_xdata())
    # Theorem 3.3's gap is an order in n and m (thm33.C_gap, the order table), not a fixed 1/10:
    # the ratio figure shows each seed's ratio and no threshold line.
    ax = atlas.figure("C_ratio", a).axes[0]
    points = ax.collections[1].get_offsets()  # after the interquartile band
    np.testing.assert_allclose(sorted(map(tuple, points)), sorted(zip(a.m, a.ratio)))
    # No threshold line: Theorem 3.3's gap is an order, min(n, sqrt(m)/L), which the report judges by a
    # fitted exponent (thm33.C_gap), not a fixed factor; the only line is the median over seeds.
    (median,) = ax.get_lines()
    np.testing.assert_allclose(median.get_ydata(), [np.median(a.ratio[a.m == m]) for m in WIDTHS])


def test_scaling_table_gives_T1_m_per_width_and_the_exponent(swept):
    root, a = swept
    table = atlas.scaling_table(root)
    row = next(line for line in table.splitlines() if line.startswith("| 10^2 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "2/2" and float(cells[2]) == pytest.approx(100 * np.mean([T1_of(100, s) for s in SEEDS]), rel=1e-3)
    fit = fit_exponent(a.m, a.m * a.T1)
    assert f"T1 m ~ m^alpha with alpha = {1 - ALPHA:.3f}, 95% CI [{fit.lo:.3f}, {fit.hi:.3f}] (6 points)" in table


def test_other_grid_keys_make_one_series_each(tmp_path):
    root = make_sweep(tmp_path, {"m": [10, 1000], "m1": [16, 64], "seed": list(SEEDS)})
    a = atlas.read(root)
    assert a.series_keys == ("m1",) and a.series == ({"m1": 16}, {"m1": 64}) and not a.tied
    fig = atlas.figure("claims", a)
    top = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"][0].child_axes[0]
    assert [t.get_text() for t in top.get_xticklabels()] == ["m1=16", "m1=64"]
    legend = [t.get_text() for t in atlas.figure("T1", a).axes[0].get_legend().get_texts()]
    assert sum(t.startswith(f"m1={v}: fit") for t in legend for v in (16, 64)) == 2
    assert "| m1 | m |" in atlas.scaling_table(a)


def test_nothing_sticks_out_of_the_heat_map(swept):
    fig = atlas.figure("claims", swept[1])
    fig.set_dpi(150)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    inside = fig.bbox.padded(1)
    for box in [ax.get_tightbbox(renderer) for ax in fig.axes] + [leg.get_window_extent(renderer) for leg in fig.legends]:
        assert inside.x0 <= box.x0 and box.x1 <= inside.x1 and inside.y0 <= box.y0 and box.y1 <= inside.y1, box


def test_every_saved_sweep_figure_is_fit_for_a_slide_with_integer_widths(tmp_path):
    """Widths 16, 32, 64 labelled as such (not 2 x 10^1); the claims in two heat maps, Phase 1's
    and the rest, in paper order; each figure checked by tests/figures.py."""
    a = atlas.read(make_sweep(tmp_path, {"m": [16, 32, 64], "seed": list(SEEDS)}))
    saved = {name: fig for kind in atlas.KINDS for name, fig in atlas.figures(kind, a).items()}
    assert list(saved) == ["claims_phase1", "claims_phase2", "T1", "loss", "C_ratio"]
    # A key to the hatched cells where there are some, and only there.
    for name in ("claims_phase1", "claims_phase2"):
        cells = np.ma.filled(saved[name].axes[0].images[0].get_array(), np.nan)
        assert len(saved[name].legends) == int(np.isnan(cells).any()), name
    one = atlas._claims_figure(a, lambda claim: claim.id == "thm31.G_signs")  # applies wherever T1 is reached
    assert not np.isnan(np.ma.filled(one.axes[0].images[0].get_array(), np.nan)).any() and not one.legends
    for name, fig in saved.items():
        check_slide_ready(fig)
        for ax in fig.axes:
            if ax.get_label() != "<colorbar>" and ax.get_xlabel():
                assert [t.get_text() for t in ax.get_xticklabels()] == ["16", "32", "64"], name
    rows = [[t.get_text() for t in saved[name].axes[0].get_yticklabels()] for name in ("claims_phase1", "claims_phase2")]
    single = [c for c, claim in flowsim.CLAIMS.items() if not isinstance(claim, flowsim.models.cooccurrence.claims.OrderClaim)]
    assert rows[0] + rows[1] == single  # the order claims are judged in the order table, not counted
    phase1 = ("0", "phase1_end", "all_correct")
    assert all(flowsim.CLAIMS[c].window.close in phase1 for c in rows[0]) and rows[0]
    assert not any(flowsim.CLAIMS[c].window.close in phase1 for c in rows[1])


def test_flowsim_plot_on_a_sweep_writes_the_figures_and_prints_the_table(swept, tmp_path, capsys):
    root, _ = swept
    assert cli.main(["plot", str(root), "--out", str(tmp_path), "--formats", "png", "--dpi", "30"]) == 0
    printed = capsys.readouterr().out
    paths = printed.split("\n\n")[0].split()
    assert paths == [str(tmp_path / f) for f in ("claims_phase1.png", "claims_phase2.png", "T1.png", "loss.png",
                                                   "C_ratio.png", "T1_scaling.md")]
    assert all((tmp_path / f).stat().st_size > 1000 for f in ("claims_phase1.png", "T1.png"))
    assert (tmp_path / "T1_scaling.md").read_text() in printed
    assert flowsim.plot_sweep is atlas.plot_sweep and cli.SWEEP_PLOT_KINDS == atlas.KINDS
    import matplotlib.pyplot as plt

    assert plt.get_fignums() == []


@pytest.mark.parametrize("case, argv, message", [
    ("not a sweep", [], "is not a flowsim sweep directory (cannot read sweep.json"),
    ("no m", [], "the sweep figures draw against a grid key other than seed; this sweep has none (its grid keys: seed)"),
    ("sweep", ["--x", "seed"], "the sweep figures draw against a grid key other than seed; 'seed' is not one (its grid keys: m, seed)"),
    ("nothing complete", [], "no complete point to draw (1 points, none complete)"),
    ("sweep", ["--kinds", "scores"], "--kinds: scores is a figure of result directories; a sweep directory draws"),
    ("sweep", ["--linear-time"], "--linear-time: the sweep figures have no time axis"),
    ("two", [], "a sweep directory is plotted on its own, got 2 directories"),
])
def test_a_bad_sweep_directory_is_one_line_and_exit_2(swept, tmp_path, capsys, case, argv, message):
    target = [str(swept[0])]
    if case == "not a sweep":
        (tmp_path / "sweep.json").write_text("{")
        target = [str(tmp_path)]
    elif case == "no m":
        target = [str(make_sweep(tmp_path, {"seed": [0]}))]
    elif case == "nothing complete":
        target = [str(make_sweep(tmp_path, {"m": [10], "seed": [0]}, pending=("m=10_seed=0",)))]
    elif case == "two":
        target *= 2
    assert cli.main(["plot", *target, "--out", str(tmp_path / "plots"), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("flowsim plot: error: ") and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "plots").exists()


def test_series_of_widths_are_named_as_powers_of_ten(tmp_path):
    """A width that makes a series is named 10^k, as on the axes: in the legends, the heat map's
    block headings and (as plain text) the T1 table."""
    a = atlas.read(make_sweep(tmp_path, {"m1": [16, 64, 256], "m": [10, 1000], "seed": list(SEEDS)}), x="m1")
    assert [a.label(s) for s in range(2)] == ["m=$10^{1}$", "m=$10^{3}$"] and a.label(1, tex=False) == "m=10^3"
    assert "m=10^3: T1 m ~ m1^alpha with alpha = " in atlas.scaling_table(a)
    top = [ax for ax in atlas.figure("claims", a).axes if ax.get_label() != "<colorbar>"][0].child_axes[0]
    assert [t.get_text() for t in top.get_xticklabels()] == ["m=$10^{1}$", "m=$10^{3}$"]
