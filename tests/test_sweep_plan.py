"""Sweep files: grid expansion, checking, and shape-sharing batches."""

import json

import pytest

from flowsim.config import ConfigError, RunConfig
from flowsim.sweeps import Sweep, batches


def write(tmp_path, text):
    path = tmp_path / "sweep.toml"
    path.write_text(text)
    return path


def test_grid_points_and_batches(tmp_path):
    sweep = Sweep.from_toml(write(tmp_path, 'preset = "theory"\nt_end = 50.0\n[grid]\nm = [16, 32]\nseed = [0, 1, 2]\n'))
    points = sweep.points()
    assert [p.name for p in points[:4]] == ["m=16_seed=0", "m=16_seed=1", "m=16_seed=2", "m=32_seed=0"]
    assert len(points) == 6 and len({p.name for p in points}) == 6
    assert all(p.config.t_end == 50.0 and p.config.data_mode == "theory" for p in points)
    assert points[4].config == RunConfig.preset("theory").merge({"t_end": 50, "m": 32, "seed": 1})
    # Seeds share shapes and settings, widths do not: two batches of three.
    assert [[p.values for p in b] for b in batches(points)] == [
        [dict(m=16, seed=s) for s in range(3)], [dict(m=32, seed=s) for s in range(3)]]


@pytest.mark.parametrize("text, match", [
    ("[grid]\nm = []\n", "grid.m: must be a non-empty list"),
    ("[grid]\nm = [16, -2]\n", r"grid.m\[1\]: must be an integer in \[1, "),
    ("[grid]\nsolver = ['tsit5', 'rk4']\n", r"grid.solver\[1\]: must be one of"),
    ("[grid]\nwidth = [1]\n", r"grid.width\[0\]: unknown key"),
    ("[grid]\nseed = [1, 1]\n", "values must be distinct"),
    ("t_end = 10.0\n", r"needs a \[grid\] table"),
    ("method = 'gd'\n[grid]\nseed = [0]\n", "method must be flow"),
    ("data_mode = 'theory'\nn = 12\nd = 20\n[grid]\nL = [4, 5]\n", "grid point L=4: theory mode .* needs d >= 23"),
    ("[grid\nseed = [0]\n", "not valid TOML"),
    ("tie = 'm'\n[grid]\nm = [16]\n", "tie must be a table"),
])
def test_bad_sweep_files(tmp_path, text, match):
    with pytest.raises(ConfigError, match=match):
        Sweep.from_toml(write(tmp_path, text)).points()


def test_tie_makes_a_diagonal_not_a_product(tmp_path):
    """[tie] m1 = "m": m1 follows m at every point (widths m = m1), and a bad tie is one line."""
    path = tmp_path / "s.toml"
    path.write_text('preset = "theory"\n[grid]\nm = [64, 1000000]\nseed = [0, 1]\n[tie]\nm1 = "m"\n')
    points = Sweep.from_toml(path).points()
    assert [(p.config.m, p.config.m1, p.config.seed) for p in points] == \
        [(64, 64, 0), (64, 64, 1), (1000000, 1000000, 0), (1000000, 1000000, 1)]
    for tie, message in (('m1 = "n_test"', "tie.m1: must tie"), ('m = "m"', "tie.m: must tie"),
                         ('seed = "m"', r"tie.seed \(= m = 1000000000000\): must be an integer in")):
        path.write_text(f'preset = "theory"\n[grid]\nm = [1e12]\n[tie]\n{tie}\n')
        with pytest.raises(ConfigError, match=message):
            Sweep.from_toml(path)


def test_tie_to_one_value_per_grid_value(tmp_path):
    """[tie] d = {n = [...]}: d follows n without equalling it (theory mode needs d >= 3 + the
    irrelevant slots, which grow with n); the index records the tie so that a rerun reads it back
    equal; a list of the wrong length, or a value the data cannot take, is one line."""
    path = tmp_path / "s.toml"
    path.write_text('preset = "theory"\n[grid]\nn = [18, 36]\nseed = [0, 1]\n[tie]\nd = {n = [33, 63]}\n')
    plan = Sweep.from_toml(path)
    points = plan.points()
    assert [(p.config.n, p.config.d, p.config.seed) for p in points] == [(18, 33, 0), (18, 33, 1), (36, 63, 0), (36, 63, 1)]
    assert [p.values for p in points][2] == {"n": 36, "seed": 0}  # the tied field is not a grid value
    assert json.loads(json.dumps(plan.tie)) == plan.tie == {"d": {"n": [33, 63]}}
    for tie, message in (("d = {n = [33]}", "tie.d: must tie"), ("d = {m = [33, 63]}", "tie.d: must tie"),
                         ("d = {n = [33, 63], seed = [1, 2]}", "tie.d: must tie"),
                         ('d = {n = [33, "x"]}', r"tie.d \(= 'x'\): must be an integer"),
                         ("d = {n = [33, 40]}", "grid point n=36_seed=0: theory mode .* needs d >= 63")):
        path.write_text(f'preset = "theory"\n[grid]\nn = [18, 36]\nseed = [0, 1]\n[tie]\n{tie}\n')
        with pytest.raises(ConfigError, match=message):
            Sweep.from_toml(path).points()
