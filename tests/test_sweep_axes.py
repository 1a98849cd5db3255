"""Sweep figures against a grid key other than the width (the init constants c0 = c1, a category
such as init) and the order verdicts of such a sweep, on a real sweep of the `tiny` fixture's
sizes (tests/conftest.py), whose compiled programs the init constants do not change."""

import json

import numpy as np
import pytest
from scipy import stats

import flowsim
from figures import check_slide_ready
from flowsim import atlas, cli
from flowsim.models.cooccurrence.claims.base import Trajectory
from flowsim.models.cooccurrence.claims.scaling import fit_exponent
from flowsim.sweeps import Sweep, sweep

# The `tiny` fixture's sizes, test set and save slots (as tests/test_sweep.py's BASE); theory-unit
# init, whose constants c0 = c1 the grid sets (init = "theory" with them set is the same start).
BASE = 'init = "theory-unit"\nn = 12\nL = 4\nd = 8\nm = 6\nm1 = 10\nt_end = 10.0\nsaves = 41\nn_test = 64\n'
GRID = 'init = ["theory", "theory-unit"]\nc0 = [1.0, 2.0, 4.0]\nseed = [0, 1]\n[tie]\nc1 = "c0"\n'
C0 = (1.0, 2.0, 4.0)


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    root = tmp_path_factory.mktemp("axes")
    (root / "sweep.toml").write_text(BASE + "[grid]\n" + GRID)
    index = sweep(Sweep.from_toml(root / "sweep.toml"), root / "out")
    assert [p["status"] for p in index["points"]] == ["complete"] * 12
    return root / "out"


def points(out):
    """Per point: its grid values, T1 and initial output F, read from its own files (not the atlas)."""
    rows = []
    for entry in json.loads((out / "sweep.json").read_text())["points"]:
        run = flowsim.load(out / entry["path"])
        rows.append((entry["values"], run.result.events["phase1_end"], float(run.result.observables["F_abs_max"][0]),
                     entry["verdicts"]))
    return rows


def test_figures_against_the_init_constant(swept):
    """x = c0 with c1 tied to it: a log axis ticked at 1, 2 and 4 in every figure, one series
    per init, the heat map's cells the hold rates of each (init, c0), T1 m fitted as c0^alpha."""
    a = atlas.read(swept, "c0")
    assert (a.x_key, a.series_keys, a.categories, a.tied) == ("c0", ("init",), (), True)
    np.testing.assert_allclose(np.unique(a.x), C0)
    claims = atlas.figure("claims", a).axes[0]
    assert [t.get_text() for t in claims.get_xticklabels()] == ["1", "2", "4"] * 2
    assert claims.get_xlabel() == "init constants $c_0 = c_1$"
    # The cells against the verdicts each point recorded in sweep.json when it was integrated.
    cells = np.ma.filled(claims.images[0].get_array(), np.nan)
    for column, (init, c0) in enumerate((i, c) for i in ("theory", "theory-unit") for c in C0):
        mine = [v for values, _, _, v in points(swept) if values["init"] == init and values["c0"] == c0]
        for row, claim in enumerate(flowsim.CLAIMS):
            decided = [v[claim] for v in mine if v[claim] in ("holds", "does not hold")]
            expected = np.mean([v == "holds" for v in decided]) if decided else np.nan
            np.testing.assert_allclose(cells[row, column], expected, err_msg=claim)
    # T1 m ~ c0^alpha per series, against numpy's own least squares on each point's T1.
    T1 = atlas.figure("T1", a).axes[0]
    legend = [t.get_text() for t in T1.get_legend().get_texts()]
    for init in ("theory", "theory-unit"):
        x, y = zip(*[(values["c0"], T * 6) for values, T, _, _ in points(swept) if values["init"] == init])
        alpha = np.polyfit(np.log(x), np.log(y), 1)[0]
        assert any(t.startswith(f"init={init}: fit $T_1\\, m \\propto c_0^{{\\alpha}}$\n$\\alpha$ = {alpha:.3f}")
                   for t in legend), legend
    # Theorem 3.3's 1/m is a level when m is not on the axis: here 1/6.
    for ax in atlas.figure("loss", a).axes:
        levels = [line.get_ydata()[0] for line in ax.get_lines() if line.get_linestyle() == ":"]
        assert levels == [pytest.approx(1 / 6)]
    for kind in atlas.KINDS:
        for fig in atlas.figures(kind, a).values():
            check_slide_ready(fig)
            assert all(ax.get_xscale() == "log" for ax in fig.axes if ax.get_label() != "<colorbar>"
                       and ax.get_xlabel() and not ax.images)


def test_a_categorical_key_is_drawn_as_categories(swept):
    """x = init: one tick per value in grid order on a linear axis, no power law fitted."""
    a = atlas.read(swept, "init")
    assert a.categories == ("theory", "theory-unit") and set(a.x) == {0.0, 1.0} and a.series_keys == ("c0",)
    fig = atlas.figure("T1", a)
    ax = fig.axes[0]
    assert ax.get_xscale() == "linear" and [t.get_text() for t in ax.get_xticklabels()] == ["theory", "theory-unit"]
    assert "no fit for c0=1.0, c0=2.0, c0=4.0: needs 3 points over 2 values of a numeric key" in fig.get_suptitle()
    assert "| c0 | init |" in atlas.scaling_table(a)
    check_slide_ready(fig)


def test_order_verdicts_fit_every_point_of_the_sweep(swept):
    """A statement of order in F, the initial output that c0 = c1 moves, is fitted over all 12
    points (both inits, both seeds): alpha is numpy's slope of log Q on log F over them."""
    rep = flowsim.sweep_report(swept)
    (verdict,) = [v for v in rep.orders if v.id == "lem42.common_rate" and v.variable == "F"]
    assert verdict.group == {} and verdict.fit.points == 12
    F, Q = [], []
    for entry in json.loads((swept / "sweep.json").read_text())["points"]:
        result = flowsim.load(swept / entry["path"]).result
        F.append(float(result.observables["F_abs_max"][0]))
        Q.append(flowsim.CLAIMS["lem42.common_rate"].value(Trajectory(result)))
    assert verdict.fit.alpha == pytest.approx(np.polyfit(np.log(F), np.log(Q), 1)[0], rel=1e-9)
    assert not any(v.variable == "m" for v in rep.orders)  # the sweep does not vary the width


def test_flowsim_plot_takes_the_x_key(swept, tmp_path, capsys):
    assert cli.main(["plot", str(swept), "--x", "c0", "--out", str(tmp_path), "--formats", "png", "--dpi", "30"]) == 0
    assert "| init | c0 | seeds with T1 |" in capsys.readouterr().out
    assert (tmp_path / "claims_phase1.png").stat().st_size > 1000
    for argv, message in ((["plot", str(swept), "--x", "seed"], "draw against a grid key other than seed; 'seed' is not one"),
                          (["plot", str(swept), "--x", "width"], "'width' is not one (its grid keys: init, c0, seed)"),
                          (["plot", str(swept / "points" / "init=theory_c0=1_seed=0"), "--x", "c0"],
                           "--x: names a grid key of a sweep directory")):
        assert cli.main([*argv, "--out", str(tmp_path / "bad")]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "bad").exists()


def test_fit_exponent_recovers_an_exact_power_law():
    m = np.geomspace(10, 1e8, 8)
    fit = fit_exponent(m, 3.0 * m**-0.7)
    assert fit.alpha == pytest.approx(-0.7, abs=1e-12) and fit.prefactor == pytest.approx(3.0, rel=1e-10)
    assert fit.lo == pytest.approx(-0.7, abs=1e-9) and fit.hi == pytest.approx(-0.7, abs=1e-9) and fit.points == 8
    # Not reached (NaN) and non-positive quantities are left out; one x or 2 points give no fit.
    assert fit_exponent([*m, 50.0, 60.0], [*(3.0 * m**-0.7), np.nan, 0.0]).points == 8
    assert fit_exponent([10, 10, 10], [1, 2, 3]) is None
    assert fit_exponent([10, 100], [1, 2]) is None


def test_fit_exponent_interval_is_the_t_interval_of_the_slope_and_covers_the_exponent():
    rng = np.random.default_rng(1)
    m = np.repeat(np.geomspace(10, 1e6, 6), 8)
    Q = 3.0 * m**-1.1 * np.exp(0.3 * rng.standard_normal(m.size))
    fit = fit_exponent(m, Q)
    # The textbook interval, written out: slope +- t_{n-2} sqrt(SSR / (n - 2) / Sxx).
    x, y = np.log(m), np.log(Q)
    slope = np.sum((x - x.mean()) * (y - y.mean())) / np.sum((x - x.mean()) ** 2)
    residuals = y - y.mean() - slope * (x - x.mean())
    half = stats.t.ppf(0.975, m.size - 2) * np.sqrt(np.sum(residuals**2) / (m.size - 2) / np.sum((x - x.mean()) ** 2))
    assert fit.alpha == pytest.approx(slope) and (fit.lo, fit.hi) == pytest.approx((slope - half, slope + half))
    assert fit.lo < -1.1 < fit.hi and fit.hi - fit.lo < 0.2
