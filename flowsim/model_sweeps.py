"""A model's sweep: a grid of seeds, schemes, sizes and flow options from a TOML file, each point a model result directory, resumable."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .core import lock
from . import results
from .config import MODEL_KEYS, read_toml
from .core.errors import FlowFailure, UsageError
from .core.messages import shown
from .sweepdir import INDEX_JSON, POINTS, read_index
from .sweeps import batch_size, check_lists, check_size, point_name
from . import model_runs as runs

FORMAT = "flowsim-model-sweep"


@dataclasses.dataclass(frozen=True)
class ModelSweep:
    """A base :class:`~flowsim.model_runs.ModelConfig` and a grid ``{key: [values, ...]}`` whose
    keys are ``seed``, ``scheme``, flow options (:data:`~flowsim.config.MODEL_KEYS`) or the
    model's sizes; the points are the Cartesian product, each checked when the sweep is made."""

    base: runs.ModelConfig
    grid: dict[str, tuple]

    @classmethod
    def from_toml(cls, path) -> ModelSweep:
        """A sweep file: a ``[model]`` table (``spec`` and sizes), top-level keys (``seed``,
        ``scheme``, flow options) and a ``[grid]`` table of non-empty lists, e.g.::

            t_end = 50.0
            [model]
            spec = "teacher_student:make_model"
            width = 4
            [grid]
            seed = [0, 1, 2]
            width = [4, 8]
        """
        table = read_toml(path, "sweep file")
        grid = table.pop("grid", None)
        if not isinstance(grid, dict) or not grid:
            raise UsageError(f"{path}: needs a [grid] table of lists, e.g. [grid] seed = [0, 1, 2]")
        section = table.get("model")
        if not isinstance(section, dict) or runs.SPEC_KEY not in section:
            raise UsageError(f"{path}: a model's sweep names its model in a [model] table: {runs.SPEC_KEY} = "
                              "\"module:factory\" (or a name of flowsim.models.MODELS) and its sizes")
        section = dict(section)
        spec = section.pop(runs.SPEC_KEY)
        table.pop("model")
        base = runs.ModelConfig.make(spec, section, table, label=lambda k: f"{path}: {k}")
        return cls.make(base, grid, label=lambda k: f"{path}: grid.{k}")

    @classmethod
    def make(cls, base: runs.ModelConfig, grid: Mapping[str, Sequence], label=lambda k: f"grid.{k}") -> ModelSweep:
        """Check every grid value (one-line :class:`UsageError` naming it) and the grid's size."""
        check_lists(grid, label)
        check_size(grid, label("")[:-1])
        for key, values in grid.items():
            for i, value in enumerate(values):
                _point(base, {key: value}, lambda k: f"{label(k)}[{i}]")
            if len(set(map(repr, values))) != len(values):
                raise UsageError(f"{label(key)}: values must be distinct, got {shown(list(values))}")
        return cls(base=base, grid={k: tuple(v) for k, v in grid.items()})

    def points(self) -> list[tuple[str, dict[str, Any], runs.ModelConfig]]:
        """``(name, grid values, configuration)`` of every point, in the grid's order."""
        keys = list(self.grid)
        out = []
        for combo in itertools.product(*(self.grid[k] for k in keys)):
            values = dict(zip(keys, combo))
            name = point_name(values)
            out.append((name, values, _point(self.base, values, lambda k: f"grid point {name}: {k}")))
        return out

    def definition(self) -> dict:
        return {"base": self.base.to_dict(), "grid": {k: list(v) for k, v in self.grid.items()}}


def _point(base: runs.ModelConfig, values: Mapping[str, Any], label) -> runs.ModelConfig:
    """``base`` with the grid ``values``: seed, scheme and options parsed as flags are, the rest sizes."""
    run_keys = {k: v for k, v in values.items() if k in MODEL_KEYS or k == "scheme"}
    sizes = {k: v for k, v in values.items() if k not in run_keys}
    options = {**base.options, "seed": base.seed}
    options = {k: v for k, v in options.items() if v is not None}
    if base.scheme is not None:
        options["scheme"] = base.scheme
    return runs.ModelConfig.make(base.model, {**base.sizes, **sizes}, {**options, **run_keys}, label=label)


def sweep(plan: ModelSweep, out, *, force: bool = False, progress: bool = False, batch: int | None = None,
          devices=None) -> dict:
    """Run every point of ``plan`` into ``out/points/NAME/`` and write the index ``out/sweep.json``
    (each point's status, events, final loss and claim verdicts); returns the index.  The models
    are built before anything is written.

    Points of a flow that differ only in their seed (the same model, sizes and options: the same
    shapes and solver settings) are integrated together, up to ``batch`` per solve
    (:func:`flowsim.models.integrate_batch`; default 1 on CPU, all of them on accelerators, as
    the transformer's sweeps), split over ``devices`` (default: this process's
    ``jax.local_devices()``; the batch is padded to a multiple of their number); a batch that
    fails is recorded as failed for its points.  Gradient-descent points run one by one.  Run
    again on the same ``out``, it skips the points that ended (complete or failed) and finishes
    those that were interrupted, one by one."""
    import jax

    points = plan.points()
    models = {}
    for _, _, config in points:  # a size or scheme the model refuses is refused before anything is written
        key = _model_key(config)
        if key not in models:
            models[key] = config.build()
        config.check_scheme(models[key])
    batch = batch_size(batch, len(points))
    devices = list(jax.local_devices()) if devices is None else list(devices)
    out = Path(out)
    definition = plan.definition()
    _check_out(out, definition, force)
    (out / POINTS).mkdir(parents=True, exist_ok=True)
    with lock.claim(out):
        index = {}
        _write(out, definition, index, points)  # a sweep stopped in its first solve is still this sweep's
        for group in _solves(points, batch):
            paths = [out / POINTS / name for name, _, _ in group]
            status = [runs.load(p).status if runs.is_model_run(p) else None for p in paths]
            fresh = [(point, path) for point, path, s in zip(group, paths, status) if s is None]
            for path, s in zip(paths, status):
                if s in ("running", "interrupted"):
                    runs.resume(path, progress=progress)
            if len(fresh) > 1:
                runs.run_batch([c for (_, _, c), _ in fresh], [p for _, p in fresh], devices=devices,
                               progress=progress)
            elif fresh:
                try:
                    runs.run(fresh[0][0][2], fresh[0][1], force=True, progress=progress)
                except FlowFailure:
                    pass  # recorded in the point's directory as failed
            for (name, values, config), path in zip(group, paths):
                index[name] = _entry(path, name, values, models[_model_key(config)])
            _write(out, definition, index, points)
    return {"definition": definition, "points": _in_order(index, points)}


def _model_key(config: runs.ModelConfig) -> str:
    """What the built model depends on (its spec and sizes), as a key: points that share it share one model."""
    return results.config_digest(dataclasses.replace(config, seed=0, scheme=None, options={}))


def _solves(points, batch: int) -> list[list]:
    """The points in solves of at most ``batch``: those of a flow that differ only in their seed
    together, in first-appearance order; each gradient-descent point alone."""
    groups: dict[str, list] = {}
    for point in points:
        config = point[2]
        alone = config.options.get("method") == "gd"
        key = results.config_digest(dataclasses.replace(config, seed=0)) if not alone else point[0]
        groups.setdefault(key, []).append(point)
    return [g[i:i + batch] for g in groups.values() for i in range(0, len(g), batch)]


def _check_out(out: Path, definition: dict, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise UsageError(f"sweep directory {str(out)!r} exists and is not a directory")
    if not out.is_dir() or not results.holds_files(out) or force:
        return
    index = read_index(out) if (out / INDEX_JSON).exists() else None
    if index is None:
        raise UsageError(f"sweep directory {str(out)!r} holds something else; choose another or use --force")
    if index.get("definition") != definition:
        raise UsageError(f"sweep directory {str(out)!r} holds a different sweep; choose another or use --force")


def _entry(path: Path, name: str, values: dict, model) -> dict:
    """A point's index entry, read from its result directory (verified); its claims judged for ``model``."""
    from .models.flow import check_claims

    run = runs.load(path)
    entry = {"name": name, "values": values, "path": f"{POINTS}/{name}", "status": run.status,
             "message": run.meta["message"], "events": run.meta["events"], "t_reached": run.meta["t_reached"]}
    if run.result is not None:
        entry["final_loss"] = float(run.result.observables["loss"][-1])
        if run.status == "complete":
            entry["verdicts"] = {r.id: r.verdict for r in check_claims(run.result, model)}
    return entry


def _in_order(index: dict, points) -> list[dict]:
    """The index's entries in the grid's order (batches may finish points out of it)."""
    return [index[name] for name, _, _ in points if name in index]


def _write(out: Path, definition: dict, index: dict, points) -> None:
    results.write_json(out / INDEX_JSON, {"format": FORMAT, "definition": definition, "points": _in_order(index, points)})


def is_model_sweep(path) -> bool:
    """Whether ``path`` holds a model sweep's index (read bounded; anything unreadable is not)."""
    try:
        return read_index(path).get("format") == FORMAT
    except UsageError:
        return False
