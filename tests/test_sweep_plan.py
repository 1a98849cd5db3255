"""Sweep files: grid expansion, checking, and shape-sharing batches."""

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
])
def test_bad_sweep_files(tmp_path, text, match):
    with pytest.raises(ConfigError, match=match):
        Sweep.from_toml(write(tmp_path, text)).points()
