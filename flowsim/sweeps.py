"""Sweeps: a grid of run configurations, integrated in shape-sharing batches sharded over JAX devices."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .core import lock
from .config import RunConfig, read_toml
from .core.errors import FlowFailure, UsageError, as_usage
from .core.messages import failure, shown
from .core.names import DEFAULT_PRESET, PRESETS
from .sweepdir import FAILURE, INDEX_JSON, INDEX_NPZ, POINTS, failure_note, is_sweep, read_index, read_point

#: Fields that change only the values of the arrays, not their shapes or the compiled solve: points
#: that differ only in these are integrated together as one batch.
BATCH_FREE = ("seed", "sigma0", "sigma1")
#: Most points in one sweep: each is a result directory and a few kilobytes of the index, and the
#: grid is counted before any point is made.  A larger study is several sweeps.
MAX_POINTS = 10_000


@dataclasses.dataclass(frozen=True)
class Point:
    """One run of a sweep: its directory name, its configuration and the grid values that make it."""

    name: str
    config: RunConfig
    values: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Sweep:
    """A base configuration and a grid ``{field: [values, ...]}``; the points are the Cartesian
    product of the grid's lists, each merged over the base (checked like any configuration).
    ``tie`` maps a field to a grid key whose value it takes at every point (``{"m1": "m"}``:
    m1 = m, a diagonal rather than a product), or to a one-entry table ``{key: [values]}`` with
    one value per value of that grid key (``{"d": {"n": [33, 63]}}`` with ``n = [18, 36]``: d = 33
    where n = 18, 63 where n = 36), for a field that follows a grid key without equalling it."""

    base: RunConfig
    grid: dict[str, tuple]
    tie: dict[str, str | dict[str, list]] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_toml(cls, path, preset: str | None = None) -> Sweep:
        """Read a sweep file: an optional ``preset``, base keys at the top level (or in a
        ``[base]`` table) and a ``[grid]`` table of non-empty lists, e.g.::

            preset = "theory"
            t_end = 1000.0
            [grid]
            m = [16, 32, 64]
            seed = [0, 1, 2, 3]
            [tie]
            m1 = "m"    # optional: m1 takes m's value at every point
            # d = {m = [33, 40, 50]}   # or: one value per value of a grid key

        """
        table = read_toml(path, "sweep file")
        grid = table.pop("grid", None)
        tie = table.pop("tie", {})
        base_table = table.pop("base", {})
        named = table.pop("preset", None)
        if not isinstance(grid, dict) or not grid:
            raise UsageError(f"{path}: needs a [grid] table of lists, e.g. [grid] seed = [0, 1, 2]")
        if not isinstance(base_table, dict):
            raise UsageError(f"{path}: base must be a table of configuration keys")
        if named is not None and named not in PRESETS:
            raise UsageError(f"{path}: preset must be one of {', '.join(PRESETS)}, got {shown(named)}")
        base = RunConfig.preset(preset or named or DEFAULT_PRESET).merge({**table, **base_table},
                                                                    label=lambda k: f"{path}: {k}")
        return cls.make(base, grid, tie, label=lambda k: f"{path}: grid.{k}")

    @classmethod
    def make(cls, base: RunConfig, grid: Mapping[str, Sequence], tie: Mapping[str, str | Mapping] | None = None,
             label=lambda k: f"grid.{k}") -> Sweep:
        """Check every grid value against ``base`` and every tie (one-line :class:`~flowsim.core.errors.UsageError` naming it)."""
        if tie is not None and not isinstance(tie, Mapping):
            raise UsageError("tie must be a table of field = \"grid key\", e.g. [tie] m1 = \"m\"")
        check_lists(grid, label)
        fields = {f.name for f in dataclasses.fields(RunConfig)}
        tie = {key: _tie(key, target, grid, fields) for key, target in (tie or {}).items()}
        check_size(grid, label("").rstrip("."))
        checked = {}
        for key, values in grid.items():
            parsed = []
            for i, value in enumerate(values):
                parsed.append(getattr(base.merge({key: value}, label=lambda k: f"{label(k)}[{i}]"), key))
            if len(set(map(repr, parsed))) != len(parsed):
                raise UsageError(f"{label(key)}: values must be distinct, got {shown(list(values))}")
            checked[key] = tuple(parsed)
        for key, target in tie.items():
            copies = isinstance(target, str)
            for value in checked[target] if copies else next(iter(target.values())):
                base.merge({key: value}, label=lambda k: f"tie.{k} (= {target} = {value!r})" if copies
                           else f"tie.{k} (= {value!r})")
        if base.method != "flow":
            raise UsageError("a sweep integrates the flow: method must be flow")
        return cls(base=base, grid=checked, tie=tie)

    @property
    def size(self) -> int:
        """The number of points, counted without making them."""
        return _count(self.grid)

    def points(self) -> list[Point]:
        """Every grid point, in the order of the grid's keys and values, each checked as a whole
        (sizes, scales and saved times) before anything runs."""
        check_size(self.grid, "grid")
        keys = list(self.grid)
        out = []
        for combo in itertools.product(*(self.grid[k] for k in keys)):
            values = dict(zip(keys, combo))
            config = dataclasses.replace(self.base, **values, **{k: self.tied(k, values) for k in self.tie})
            name = point_name(values)
            _check(config, name)
            out.append(Point(name=name, config=config, values=values))
        return out


    def tied(self, key: str, values: Mapping[str, Any]):
        """The value of the tied field ``key`` at the point with grid ``values``."""
        target = self.tie[key]
        if isinstance(target, str):
            return values[target]
        (source, listed), = target.items()
        return getattr(self.base.merge({key: listed[self.grid[source].index(values[source])]}), key)


def _tie(key: str, target, grid: Mapping[str, Sequence], fields) -> str | dict[str, list]:
    """A tie of ``key`` checked: the grid key it copies, or ``{grid key: [one value per value of it]}``
    (values as JSON has them, so that a sweep directory's definition reads back equal)."""
    if key in fields and key not in grid:
        if isinstance(target, str) and target in grid:
            return target
        if isinstance(target, Mapping) and len(target) == 1:
            (source, listed), = target.items()
            if (source in grid and isinstance(listed, Sequence) and not isinstance(listed, (str, bytes))
                    and len(listed) == len(grid[source])):
                return {source: [_jsonable(v) for v in listed]}
    raise UsageError(f"tie.{key}: must tie a configuration field outside the grid to a grid key "
                      f"({', '.join(grid)}), as {key} = \"KEY\", or to one value per value of a grid key, as "
                      f"{key} = {{KEY = [...]}}; got {key} = {shown(target)}")


def _count(grid: Mapping[str, Sequence]) -> int:
    return math.prod(len(v) for v in grid.values())


def check_lists(grid: Mapping[str, Sequence], label) -> None:
    """Refuse (one line, naming ``label(key)``) a grid entry that is not a non-empty list."""
    for key, values in grid.items():
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
            raise UsageError(f"{label(key)}: must be a non-empty list of values, got {shown(values)}")


def check_size(grid: Mapping[str, Sequence], where: str) -> None:
    """Refuse (one line) a grid of more than :data:`MAX_POINTS` points, from its lists' lengths alone."""
    size = _count(grid)
    if size > MAX_POINTS:
        counts = " x ".join(f"{len(v)} {k}" for k, v in grid.items())
        raise UsageError(f"{where}: {counts} make {size:,} points, more than the {MAX_POINTS:,} a sweep may "
                          "hold; split it into several sweeps")


def point_name(values: Mapping[str, Any]) -> str:
    """A grid point's directory name: ``key=value`` joined by ``_`` (``m=100_seed=0``)."""
    return "_".join(f"{k}={_fmt(v)}" for k, v in values.items())


def _fmt(value) -> str:
    if isinstance(value, (tuple, list)):
        return "-".join(map(str, value))
    return f"{value:g}" if isinstance(value, float) else str(value)


def _check(config: RunConfig, name: str) -> None:
    from .models.cooccurrence.data import check_fits_data, check_sizes

    with as_usage(f"grid point {name}: "):
        check_sizes(config.n, config.L, config.d, config.data_mode)
        check_fits_data(config.n, config.L, config.d)
        check_fits_data(config.n_test, config.L, config.d, "n_test")
        config.resolved().options()  # the init scales among them


def batches(points: Sequence[Point]) -> list[list[Point]]:
    """Points grouped so that each group differs only in :data:`BATCH_FREE` fields (same shapes,
    same solver settings): one batched solve per group, in first-appearance order."""
    groups: dict[RunConfig, list[Point]] = {}
    for p in points:
        key = dataclasses.replace(p.config, **dict.fromkeys(BATCH_FREE, None) | {"seed": 0})
        groups.setdefault(key, []).append(p)
    return list(groups.values())


def sweep(plan: Sweep, out, *, devices=None, batch: int | None = None, progress: bool = False,
          force: bool = False, verdicts: bool = True) -> dict:
    """Integrate every point of ``plan`` into ``out/points/NAME/`` (the usual result directory)
    and write the index ``out/sweep.json`` and ``out/sweep.npz``; returns the index.

    Points of one :func:`batches` group are integrated together by :func:`flowsim.integrate_batch`,
    each with its own data, initialization and test set drawn from its seed, and split over
    ``devices`` (default: this process's ``jax.local_devices()``; the batch is padded to a
    multiple of their number).  Under ``jax.distributed`` (several processes, e.g. hosts) the
    groups are dealt round-robin to the processes, which write their points into the shared
    ``out``; process 0 writes the index once all are done.  Process 0 holds ``out``'s lock for
    the whole sweep and every process the lock of each point it writes, so a second sweep or
    run into them is refused (:class:`~flowsim.core.errors.DirectoryInUse`).  Running again on the same ``out`` skips
    the points already complete; a batch that fails is recorded as failed for its points and
    the sweep goes on.  ``verdicts`` adds each point's claim verdicts
    (:func:`flowsim.check_claims` with the point's :class:`~flowsim.RunContext`), by claim id,
    to the index.

    ``batch`` caps the points per solve.  Its default is 1 on a CPU backend, where a batched
    solve measured slower than the same points one after the other (docs/sweeps.md: every
    member's events restart the shared solve, and vmapped gathers run slowly on XLA's CPU
    backend), and the whole group on accelerators.
    """
    import jax

    points = plan.points()
    out = Path(out)
    definition = {"base": plan.base.to_dict(), "grid": {k: list(map(_jsonable, v)) for k, v in plan.grid.items()}}
    if plan.tie:
        definition["tie"] = plan.tie
    batch = batch_size(batch, len(points))
    _check_sweep_out(out, definition, force)
    rank, ranks = jax.process_index(), jax.process_count()
    _barrier(ranks, "flowsim sweep checked")  # every process has looked at out before any writes to it
    (out / POINTS).mkdir(parents=True, exist_ok=True)
    with lock.claim(out) if rank == 0 else contextlib.nullcontext():
        return _run(points, out, definition, devices, batch, progress, verdicts, rank, ranks)


def batch_size(batch: int | None, points: int) -> int:
    """Points per batched solve: ``batch``, checked, or by default 1 on a CPU backend (where a
    batched solve measured slower, :func:`sweep`) and all ``points`` on accelerators."""
    import jax

    if batch is None:
        batch = 1 if jax.default_backend() == "cpu" else points
    if int(batch) != batch or batch < 1:
        raise UsageError(f"batch must be an integer >= 1, got {shown(batch)}")
    return int(batch)


def _run(points, out, definition, devices, batch, progress, verdicts, rank, ranks) -> dict:
    """:func:`sweep` once its output is checked and claimed."""
    import jax

    devices = list(jax.local_devices()) if devices is None else list(devices)
    index = {p.name: _entry(out, p, verdicts) for p in points}
    solves = [g[i:i + batch] for g in batches(points) for i in range(0, len(g), batch)]
    mine = [g for i, g in enumerate(solves) if i % ranks == rank]
    if rank == 0:
        _write_index(out, definition, points, index)
    bar = _bar(sum(map(len, mine)), sum(index[p.name]["status"] == "complete" for g in mine for p in g)) \
        if progress else None
    try:
        for group in mine:
            todo = [p for p in group if index[p.name]["status"] != "complete"]
            if todo:
                for point in _integrate_group(out, todo, devices, progress):
                    index[point.name] = _entry(out, point, verdicts)
                if rank == 0:
                    _write_index(out, definition, points, index)
            if bar is not None:
                bar.update(len(todo))
    finally:
        if bar is not None:
            bar.close()
    if ranks > 1:
        _barrier(ranks, "flowsim sweep done")
        index = {p.name: _entry(out, p, verdicts) for p in points}
        if rank == 0:
            _write_index(out, definition, points, index)
    return {"definition": definition, "points": [index[p.name] for p in points]}


def _barrier(ranks: int, name: str) -> None:
    """Wait for every process of a ``jax.distributed`` sweep (nothing to wait for alone)."""
    if ranks > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def _integrate_group(out: Path, todo: Sequence[Point], devices, progress: bool) -> Sequence[Point]:
    """:func:`_solve_group` with each point's directory claimed while it is written."""
    with contextlib.ExitStack() as held:
        for point in todo:
            path = out / POINTS / point.name
            path.mkdir(parents=True, exist_ok=True)
            held.enter_context(lock.claim(path))
        return _solve_group(out, todo, devices, progress)


def _solve_group(out: Path, todo: Sequence[Point], devices, progress: bool) -> Sequence[Point]:
    """One batched solve for points that share shapes; each point's directory written (failed,
    with the reason, if the solve raised).  With ``progress``, the solve's own bar under the
    sweep's, so that a long point shows its flow time and steps too."""
    import jax

    from .models.cooccurrence.data import sample_test_set
    from .models.cooccurrence.flow import integrate, integrate_batch

    started = time.perf_counter()
    config = todo[0].config.resolved()
    built = [p.config.build() for p in todo]
    if len(todo) == 1:
        # A lone point is a plain run: the same compiled solve as flowsim integrate.
        dataset, params0, test_key = built[0]
        try:
            result = integrate(params0, dataset, test_key=test_key, options=config.flow_options(), progress=progress)
        except FlowFailure as e:
            result = e.result
        _save_point(out, todo[0], dataset, params0, result, time.perf_counter() - started)
        return todo
    padded = built + [built[-1]] * (-len(built) % len(devices))
    with jax.enable_x64(config.precision == 64):
        tests = [sample_test_set(k, config.n_test, ds) for ds, _, k in padded]
    params = jax.tree.map(lambda *xs: np.stack(xs), *[p for _, p, _ in padded])
    try:
        runs = integrate_batch(params, [ds for ds, _, _ in padded], test_sets=tests, progress=progress,
                               devices=devices if len(devices) > 1 else None, options=config.flow_options())
    except Exception as e:  # one failing batch must not stop the sweep
        runs = [None] * len(padded)
        reason = failure(e)
    wall = (time.perf_counter() - started) / len(todo)
    for point, (dataset, params0, _), result in zip(todo, built, runs):
        _save_point(out, point, dataset, params0, result, wall, reason="" if result else reason)
    return todo


def _save_point(out: Path, point: Point, dataset, params0, result, wall: float, reason: str = "") -> None:
    """A point's result directory; ``result=None`` (its batch raised) leaves the run unstarted
    with ``reason`` in :data:`FAILURE`, which a later success removes."""
    from . import results

    path = out / POINTS / point.name
    results.save(path, point.config.resolved(), dataset, params0, result, wall)
    if result is None:
        (path / FAILURE).write_text(reason + "\n")
    else:
        (path / FAILURE).unlink(missing_ok=True)


def _jsonable(v):
    return list(v) if isinstance(v, tuple) else v


def _check_sweep_out(out: Path, definition: dict, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise UsageError(f"sweep directory {str(out)!r} exists and is not a directory")
    from .results import holds_files

    if not out.is_dir() or not holds_files(out) or force:
        return
    if not is_sweep(out):
        raise UsageError(f"sweep directory {str(out)!r} holds something else; choose another or use --force")
    previous = read_index(out).get("definition")
    if previous != definition:
        raise UsageError(f"sweep directory {str(out)!r} holds a different sweep; choose another or use --force")


def _entry(out: Path, point: Point, verdicts: bool) -> dict:
    """A point's index entry, read from its result directory (the single source of truth, so a
    re-run, or process 0 of a multi-process sweep, sees what every run wrote)."""
    path = out / POINTS / point.name
    entry = {"name": point.name, "values": {k: _jsonable(v) for k, v in point.values.items()},
             "path": f"{POINTS}/{point.name}"}
    status, run = read_point(path)
    entry["status"] = status
    if run is None:
        return entry
    entry |= {"message": run.meta["message"] or failure_note(path), "config": run.meta["config"],
              "events": run.meta["events"], "t_reached": run.meta["t_reached"],
              "steps": (run.meta["stats"] or {}).get("steps"), "wall_time_s": run.meta["wall_time_s"]}
    if run.result is not None:
        o = run.result.observables
        entry |= {"final_loss": float(o["loss"][-1]), "final_test_loss": float(o["test_loss"][-1])}
        if verdicts and run.status == "complete":
            from .models.cooccurrence.claims import RunContext, check_claims

            rows = check_claims(run.result, RunContext.from_config(run.config))
            entry["verdicts"] = {r.id: r.verdict for r in rows}  # by id: stable where the wording is not
    return entry


def _write_index(out: Path, definition: dict, points: Sequence[Point], index: dict) -> None:
    """``sweep.json`` (every point's entry) and ``sweep.npz`` (a flat table, one row per point)."""
    from .models.cooccurrence.events import EVENT_NAMES
    from .results import atomic_write, write_json, write_npz

    entries = [index[p.name] for p in points]
    write_json(out / INDEX_JSON, {"format": "flowsim-sweep", "definition": definition, "points": entries})
    table = {"name": np.array([e["name"] for e in entries]), "status": np.array([e["status"] for e in entries])}
    for key in points[0].values:
        column = [p.values[key] for p in points]
        table[key] = np.array([_fmt(v) for v in column]) if isinstance(column[0], (str, tuple)) else np.array(column)
    nan = float("nan")
    for key in ("final_loss", "final_test_loss", "t_reached"):
        table[key] = np.array([e.get(key, nan) for e in entries], dtype=float)
    for name in EVENT_NAMES:
        table[name] = np.array([nan if (e.get("events") or {}).get(name) is None else e["events"][name]
                                for e in entries], dtype=float)
    atomic_write(out / INDEX_NPZ, lambda f: write_npz(f, table))


def _bar(total: int, initial: int):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="point", desc="sweep")
