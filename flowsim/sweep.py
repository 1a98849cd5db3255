"""Sweeps: a grid of run configurations, integrated in shape-sharing batches sharded over JAX devices."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import time
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .config import ConfigError, RunConfig

#: Fields that change only the values of the arrays, not their shapes or the compiled solve: points
#: that differ only in these are integrated together as one batch.
BATCH_FREE = ("seed", "sigma0", "sigma1")
INDEX_JSON, INDEX_NPZ, POINTS = "sweep.json", "sweep.npz", "points"


@dataclasses.dataclass(frozen=True)
class Point:
    """One run of a sweep: its directory name, its configuration and the grid values that make it."""

    name: str
    config: RunConfig
    values: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Sweep:
    """A base configuration and a grid ``{field: [values, ...]}``; the points are the Cartesian
    product of the grid's lists, each merged over the base (checked like any configuration)."""

    base: RunConfig
    grid: dict[str, tuple]

    @classmethod
    def from_toml(cls, path, preset: str | None = None) -> Sweep:
        """Read a sweep file: an optional ``preset``, base keys at the top level (or in a
        ``[base]`` table) and a ``[grid]`` table of non-empty lists, e.g.::

            preset = "theory"
            t_end = 1000.0
            [grid]
            m = [16, 32, 64]
            seed = [0, 1, 2, 3]
        """
        try:
            with open(path, "rb") as f:
                table = tomllib.load(f)
        except OSError as e:
            raise ConfigError(f"cannot read sweep file {str(path)!r}: {e.strerror}") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise ConfigError(f"sweep file {str(path)!r} is not valid TOML: {e}") from None
        grid = table.pop("grid", None)
        base_table = table.pop("base", {})
        named = table.pop("preset", None)
        if not isinstance(grid, dict) or not grid:
            raise ConfigError(f"{path}: needs a [grid] table of lists, e.g. [grid] seed = [0, 1, 2]")
        if not isinstance(base_table, dict):
            raise ConfigError(f"{path}: base must be a table of configuration keys")
        if named is not None and named not in ("paper", "theory"):
            raise ConfigError(f"{path}: preset must be one of paper, theory, got {named!r}")
        base = RunConfig.preset(preset or named or "paper").merge({**table, **base_table},
                                                                    label=lambda k: f"{path}: {k}")
        return cls.make(base, grid, label=lambda k: f"{path}: grid.{k}")

    @classmethod
    def make(cls, base: RunConfig, grid: Mapping[str, Sequence], label=lambda k: f"grid.{k}") -> Sweep:
        """Check every grid value against ``base`` (one-line :class:`ConfigError` naming it)."""
        checked = {}
        for key, values in grid.items():
            if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
                raise ConfigError(f"{label(key)}: must be a non-empty list of values, got {values!r}")
            parsed = []
            for i, value in enumerate(values):
                parsed.append(getattr(base.merge({key: value}, label=lambda k: f"{label(k)}[{i}]"), key))
            if len(set(map(repr, parsed))) != len(parsed):
                raise ConfigError(f"{label(key)}: values must be distinct, got {list(values)!r}")
            checked[key] = tuple(parsed)
        if base.method != "flow":
            raise ConfigError("a sweep integrates the flow: method must be flow")
        return cls(base=base, grid=checked)

    def points(self) -> list[Point]:
        """Every grid point, in the order of the grid's keys and values, each checked as a whole
        (sizes, scales and saved times) before anything runs."""
        keys = list(self.grid)
        out = []
        for combo in itertools.product(*(self.grid[k] for k in keys)):
            values = dict(zip(keys, combo))
            config = dataclasses.replace(self.base, **values)
            name = "_".join(f"{k}={_fmt(v)}" for k, v in values.items())
            _check(config, name)
            out.append(Point(name=name, config=config, values=values))
        return out


def _fmt(value) -> str:
    if isinstance(value, tuple):
        return "-".join(map(str, value))
    return f"{value:g}" if isinstance(value, float) else str(value)


def _check(config: RunConfig, name: str) -> None:
    from .data import check_sizes
    from .flow import save_times
    from .init import init_scales

    try:
        check_sizes(config.n, config.L, config.d, config.data_mode)
        init_scales(config.init, d=config.d, m=config.m, m1=config.m1, L=config.L,
                    sigma0=config.sigma0, sigma1=config.sigma1)
        save_times(config.t_end, config.saves, config.grid)
    except ValueError as e:
        raise ConfigError(f"grid point {name}: {e}") from None


def batches(points: Sequence[Point]) -> list[list[Point]]:
    """Points grouped so that each group differs only in :data:`BATCH_FREE` fields (same shapes,
    same solver settings): one batched solve per group, in first-appearance order."""
    groups: dict[RunConfig, list[Point]] = {}
    for p in points:
        key = dataclasses.replace(p.config, **dict.fromkeys(BATCH_FREE, None) | {"seed": 0})
        groups.setdefault(key, []).append(p)
    return list(groups.values())
