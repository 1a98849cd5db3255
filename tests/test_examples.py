"""Shipped example configurations: each parses and gives the points it promises, every config file
the README and docs name exists, and the docs' copies say what the files say."""

import itertools
import math
import re
import tomllib
from pathlib import Path

import pytest

from flowsim import RunConfig, Sweep
from flowsim.model_runs import ModelConfig
from flowsim.model_sweeps import ModelSweep

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted((ROOT / "examples").glob("*.toml"))
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_the_examples_the_docs_use_are_shipped():
    assert {p.name for p in SHIPPED} >= {"sweep.toml", "run.toml"}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_toml_is_a_valid_configuration(path):
    table = tomllib.loads(path.read_text())
    if "model" in table:  # a model's run or sweep (docs/models.md), each value checked
        model = table.pop("model")
        if "grid" in table:
            grid = table.pop("grid")
            points = ModelSweep.from_toml(path).points()
            assert [values for _, values, _ in points] == [dict(zip(grid, combo)) for combo in itertools.product(*grid.values())]
            for _, values, config in points:
                sizes = {k: v for k, v in {**model, **values}.items() if k not in ("spec", "seed")}
                assert config.seed == values["seed"] and config.sizes == sizes and config.model == model["spec"]
        else:
            config = ModelConfig.from_toml(path)
            assert (config.model, config.seed, config.scheme) == (model.pop("spec"), table.pop("seed"), table.pop("scheme"))
            assert config.sizes == model and config.options == table
        return
    if "grid" in table:
        points = Sweep.from_toml(path).points()  # checks every point's sizes, scales and saved times
        assert len(points) == math.prod(len(v) for v in table["grid"].values())
        assert len({p.name for p in points}) == len(points)
        for point in points:
            assert all(getattr(point.config, k) == v for k, v in point.values.items())
            expected = table.get("data_mode", RunConfig.preset(table.get("preset", "paper")).data_mode)
            assert point.config.data_mode == expected
            for key, target in table.get("tie", {}).items():  # a grid key's value, or one listed per value
                source, listed = (target, None) if isinstance(target, str) else next(iter(target.items()))
                want = point.values[source] if listed is None else listed[table["grid"][source].index(point.values[source])]
                assert getattr(point.config, key) == want
    else:
        config = RunConfig.from_toml(path)
        expected = {k: tuple(v) if isinstance(v, list) else v for k, v in table.items() if k != "preset"}
        assert {k: getattr(config, k) for k in expected} == expected
        config.build()  # the combination is one the library accepts (theory mode: d large enough)


def test_the_example_sweep_is_the_theory_preset_over_four_seeds_and_three_widths():
    points = Sweep.from_toml(ROOT / "examples" / "sweep.toml").points()
    assert sorted((p.config.m, p.config.seed) for p in points) == [(m, s) for m in (16, 32, 64) for s in range(4)]
    assert {(p.config.data_mode, p.config.init, p.config.n, p.config.d) for p in points} == {("theory", "theory", 18, 33)}


def test_every_config_file_named_in_the_docs_exists():
    named = {name for doc in DOCS for name in re.findall(r"--config\s+(\S+\.toml)", doc.read_text())}
    real = {name for name in named if not Path(name).stem.isupper()}  # FILE.toml, SWEEP.toml: placeholders
    assert {"examples/sweep.toml", "examples/run.toml"} <= real
    # A model's config files are named from examples/, where the command finds the model's module.
    assert all((ROOT / name).is_file() or (ROOT / "examples" / name).is_file() for name in real), sorted(real)


def test_the_docs_copies_of_shipped_configs_match_the_files():
    copies = [block for doc in DOCS for block in re.findall(r"```toml\n(.*?)```", doc.read_text(), re.S)
              if block.startswith("# examples/")]
    assert len(copies) >= 2
    for block in copies:
        name = block.splitlines()[0].removeprefix("# ").strip()
        assert tomllib.loads(block) == tomllib.loads((ROOT / name).read_text()), name
