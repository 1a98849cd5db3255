"""A model's result directory (run.json, trajectory.npz, state.npz, a checkpoint while it runs): written atomically, verified by digests when read back, resumed bit for bit.

The directory of ``flowsim integrate --model`` and :func:`run`:

- ``run.json``: format ``flowsim-model-run``; the model (``model``: its spec, ``sizes``: its
  factory's keywords, ``model_name``), ``seed``, ``scheme``, the flow's ``options`` (flat), the
  status and message, event times, solver statistics, the parameters' paths and shapes, the
  observables' meanings, package versions and the sha256 ``digests`` of every array file;
- ``trajectory.npz``: ``t`` (the saved times) and every observable, leading axis the saves;
- ``state.npz``: the parameters' leaves at t = 0 (``init<path>``, e.g. ``init.W``) and, once the
  run has ended, at its end (``final<path>``);
- while it runs, ``checkpoint.NNNNNN.npz`` (NNNNNN the chunks done): the saved rows so far
  (``rows/<name>``), the solver's state (``state/<k>``) and its next step; a new one is written
  after every chunk, then run.json names it, then the old one goes, so a kill at any moment
  leaves a run.json that names complete files whose digests it holds.

The data are not stored: they are drawn again from the seed, and a resume checks that the model
draws the start and data that the run was written with (their digests).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import time
import tomllib
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np

from .core import files, lock
from . import results
from .config import MODEL_KEYS, RunConfig, read_toml
from .core.errors import DamagedResult, FlowFailure, UsageError
from .core.messages import failure, shown
from .core.options import DescentOptions, FlowOptions
from .runner import RunInterrupted, check_out, default_out, signals_held
from .core.trajectory import FlowResult
from .models.contract import CORE_OBSERVABLES

FORMAT, FORMAT_VERSION = "flowsim-model-run", 1
KIND = (FORMAT, FORMAT_VERSION)
RUN_JSON, TRAJECTORY, STATE = results.RUN_JSON, results.TRAJECTORY, results.STATE
#: The key of a config file's ``[model]`` table that names the model; its other keys are sizes.
SPEC_KEY = "spec"


def checkpoint_name(chunks: int) -> str:
    return f"checkpoint.{chunks:06d}.npz"


def is_checkpoint(name: str) -> bool:
    return name.startswith("checkpoint.") and name.endswith(".npz")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Everything that determines a model's run: the model (``model``, a key of
    :data:`flowsim.models.MODELS` or ``module:factory``, and ``sizes``, its factory's keywords),
    the ``seed`` of its draws, its initialization ``scheme`` (``None``: the model's first) and
    the flow's ``options`` (keys of :data:`flowsim.config.MODEL_KEYS` but the seed; unset ones are the defaults)."""

    model: str
    sizes: dict[str, Any] = dataclasses.field(default_factory=dict)
    seed: int = 0
    scheme: str | None = None
    options: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if not isinstance(self.model, str) or not self.model:
            raise UsageError(f"model: must be a name or module:factory, got {shown(self.model)}")
        try:  # as run.json records them, so that a run read back has the configuration it was written with
            object.__setattr__(self, "sizes", json.loads(json.dumps(dict(self.sizes), allow_nan=False)))
        except (TypeError, ValueError):
            raise UsageError(f"model sizes must be finite numbers, strings, booleans and lists or tables of them, "
                              f"got {shown(self.sizes)}") from None
        if self.scheme is not None and not isinstance(self.scheme, str):
            raise UsageError(f"scheme: must be a name, got {shown(self.scheme)}")

    @classmethod
    def make(cls, model: str, sizes: Mapping[str, Any] | None = None, values: Mapping[str, Any] | None = None,
             label=lambda k: f"--{k.replace('_', '-')}") -> ModelConfig:
        """The configuration of ``model`` with ``sizes``, and ``values`` (``seed``, ``scheme``
        and the keys of :data:`flowsim.config.MODEL_KEYS`, as native values or text) each parsed and checked as
        ``flowsim integrate`` checks its flags; ``label(key)`` names a key in error messages."""
        values = dict(values or {})
        scheme = values.pop("scheme", None)
        unknown = [k for k in values if k not in MODEL_KEYS]
        if unknown:
            raise UsageError(f"{label(unknown[0])}: describes the paper's transformer, not a model's run; a model "
                              f"takes seed, scheme, {', '.join(MODEL_KEYS[1:])} and its sizes (--model-option KEY=VALUE "
                              "or a [model] table)")
        parsed = RunConfig().merge(values, label=label)
        given = {k: getattr(parsed, k) for k in values}
        return cls(model=model, sizes=dict(sizes or {}), seed=given.pop("seed", 0), scheme=scheme, options=given)

    @classmethod
    def from_toml(cls, path, model: str | None = None, sizes: Mapping[str, Any] | None = None,
                  values: Mapping[str, Any] | None = None) -> ModelConfig:
        """A config file's run: its ``[model]`` table (``spec``, the model, unless ``model`` is
        given; every other key a size) and its top-level keys (``seed``, ``scheme`` and those of
        :data:`flowsim.config.MODEL_KEYS`), under ``sizes`` and ``values`` given on the command line."""
        table = read_toml(path, "config file")
        section = table.pop("model", {})
        if not isinstance(section, dict):
            raise UsageError(f"{path}: model must be a table ([model]) of the model's spec and sizes")
        named = section.pop(SPEC_KEY, None)
        if model is None and named is None:
            raise UsageError(f"{path}: name the model with --model or a {SPEC_KEY} key in its [model] table")
        return cls.make(model or named, {**section, **(sizes or {})}, {**table, **(values or {})},
                        label=lambda k: f"{path}: {k}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> ModelConfig:
        options = dict(values["options"])
        return cls.make(values["model"], values["sizes"], {**options, "seed": values["seed"], "scheme": values["scheme"]},
                        label=str)

    def flow_options(self) -> FlowOptions | DescentOptions:
        """The options of the run's method: the flow's, or gradient descent's (``method = "gd"``),
        each taking the keys it knows (a flow has no learning rate, a descent no solver)."""
        kind = DescentOptions if self.options.get("method") == "gd" else FlowOptions
        return kind.make({k: v for k, v in self.options.items() if k in kind.keywords()})

    def build(self):
        """The model its factory builds from the sizes (a one-line :class:`UsageError` for a spec,
        a size or a scheme it refuses, or an error its code raises)."""
        from .models import load

        try:
            model = load(self.model, **self.sizes)
        except ValueError as e:
            raise UsageError(str(e)) from None
        except Exception as e:  # the factory is the user's code
            raise UsageError(f"model {self.model!r}: its factory raised {failure(e)}") from None
        self.check_scheme(model)
        return model

    def check_scheme(self, model) -> None:
        if self.scheme is not None and self.scheme not in model.SCHEMES:
            raise UsageError(f"scheme: model {model.name!r} has the schemes {', '.join(model.SCHEMES)}, "
                              f"got {shown(self.scheme)}")

    def draw(self, model):
        """``(params, data)`` of the seed and scheme, in float64 (:func:`flowsim.models.draw`)."""
        from .models.flow import draw

        try:
            with jax.enable_x64(True):
                return draw(model, self.seed, self.scheme)
        except Exception as e:  # the model's init and data law are the user's code
            raise UsageError(f"model {self.model!r}: drawing seed {self.seed} raised {failure(e)}") from None

    def resolved(self, model) -> ModelConfig:
        """The scheme written out and the options resolved (tolerances), as run.json records them."""
        flat = self.flow_options().flat()
        return dataclasses.replace(self, scheme=self.scheme or model.SCHEMES[0],
                                   options={k: flat[k] for k in MODEL_KEYS if k != "seed" and k in flat})


def parse_option(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` of ``--model-option``: the value read as a TOML literal (``8``, ``0.1``,
    ``[3.0, 2.0]``, ``true``, ``"text"``), else taken as text."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key.isidentifier():
        raise UsageError(f"--model-option: must be KEY=VALUE with KEY a keyword of the model's factory, "
                          f"got {shown(text)}")
    try:
        return key, tomllib.loads(f"v = {value.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        return key, value.strip()


@dataclasses.dataclass
class ModelRun:
    """A model's result directory read back by :func:`load`: ``meta`` is run.json; ``result`` the
    trajectory (``None`` while no chunk has finished; its ``params_init`` and ``params_final``
    are tuples of leaves until :meth:`with_model` gives them the model's structure), ``state``
    the leaves of the last checkpoint where there is one."""

    path: Path
    config: ModelConfig
    meta: dict[str, Any]
    init: tuple[np.ndarray, ...]
    result: FlowResult | None

    @property
    def status(self) -> str:
        return self.meta["status"]


def is_model_run(path) -> bool:
    """Whether ``path`` holds a model's run.json, of any version (read bounded; anything
    unreadable is not)."""
    try:
        meta = files.read_json(Path(path) / RUN_JSON, "run description", results.RUN_JSON_BYTES)
    except (OSError, ValueError):  # UsageError among them
        return False
    return isinstance(meta, dict) and meta.get("format") == FORMAT


def run(config: ModelConfig, out=None, *, force: bool = False, progress: bool = False) -> ModelRun:
    """Integrate ``config`` into the result directory ``out`` (default: a new ``runs/<time>``).

    Everything is checked (the model built, the start and data drawn, the memory the run needs)
    before the directory is created; it is claimed (``flowsim.core.lock``) for the whole run.  A
    checkpoint is written after every chunk: on Ctrl-C the run is marked interrupted and
    :class:`~flowsim.runner.RunInterrupted` raised (finish it with :func:`resume`); a solver
    failure writes what was computed and re-raises :class:`~flowsim.FlowFailure`; an
    ``OSError`` (a full disk) leaves the last checkpoint, resumable."""
    if out is not None:
        out = check_out(out, force)
    model = config.build()
    params, data = config.draw(model)
    _checked(config, model, params, data)
    config = config.resolved(model)
    out = default_out() if out is None else out
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"cannot create output directory {str(out)!r}: {e.strerror}") from None
    with lock.claim(out):
        check_out(out, force)
        clear(out)
        return _Writer(out, config, model, params, data).execute(None, 0.0, progress)


def run_batch(configs: list[ModelConfig], outs: list, *, devices=None, progress: bool = False) -> list[ModelRun]:
    """Integrate the points ``configs`` (one model and options; seeds apart) as one batched solve
    (:func:`flowsim.models.integrate_batch`, the batch padded to a multiple of the ``devices``
    and split over them), each into its result directory ``outs[i]`` (replacing a model run's
    files there), as :func:`run` would write it.  Each directory is marked running before the
    solve, so an interrupted batch leaves points that :func:`resume` finishes one by one; if the
    solve fails or the model's code raises, every point is recorded as failed."""
    from .models.flow import integrate_batch

    model = configs[0].build()
    drawn = [c.draw(model) for c in configs]
    devices = list(devices or [None])
    padded = drawn + [drawn[-1]] * (-len(drawn) % len(devices))
    options = configs[0].flow_options()
    _checked(configs[0], model, *drawn[0], members=len(padded))
    with contextlib.ExitStack() as held:
        writers = []
        for config, out, (params, data) in zip(configs, outs, drawn):
            out = Path(out)
            out.mkdir(parents=True, exist_ok=True)
            held.enter_context(lock.claim(out))
            clear(out)
            writers.append(_Writer(out, config.resolved(model), model, params, data))
        with signals_held():
            for w in writers:
                w.save(None, 0.0)
        started = time.perf_counter()
        wall = lambda: (time.perf_counter() - started) / len(writers)
        data = [d for _, d in padded]
        try:
            with _recorded(writers, wall):
                done = integrate_batch(model, [p for p, _ in padded], None if all(d is None for d in data) else data,
                                       options=options, devices=None if len(devices) < 2 else devices,
                                       progress=progress)
        except FlowFailure:
            pass  # recorded as failed in every point's directory
        else:
            with signals_held():
                for w, result in zip(writers, done):
                    w.save(result, wall())
    return [load(out) for out in outs]


def _checked(config: ModelConfig, model, params, data, members: int = 1) -> None:
    """:func:`flowsim.models.check` of a configuration's run (``members`` at once), refusals as one line."""
    from .models.flow import check

    try:
        check(model, params, data, options=config.flow_options(), members=members)
    except (TypeError, ValueError) as e:
        raise UsageError(f"model {config.model!r}: {e}") from None


@contextlib.contextmanager
def _recorded(writers: list[_Writer], wall) -> None:
    """What a run raises, recorded in its directories (``writers``'): Ctrl-C marks them
    interrupted and raises :class:`RunInterrupted`; a write error marks them interrupted (their
    last checkpoint is kept); an error of the model's code inside the solve marks them failed
    and raises :class:`~flowsim.FlowFailure`; a FlowFailure is the caller's to save."""
    try:
        yield
    except KeyboardInterrupt:
        with signals_held():
            messages = [results.mark_interrupted(w.out, wall(), kind=KIND) for w in writers]
        raise RunInterrupted(messages[0], writers[0].out) from None
    except FlowFailure:
        raise
    except OSError as e:
        with contextlib.suppress(OSError, UsageError), signals_held():
            for w in writers:
                results.mark_interrupted(w.out, wall(), f"stopped by a write error ({e.strerror})", kind=KIND)
        raise
    except Exception as e:  # the model's code raised inside the solve: the run ends as failed
        with contextlib.suppress(OSError, UsageError), signals_held():
            for w in writers:
                results.mark(w.out, "failed", failure(e), wall(), kind=KIND)
        raise FlowFailure(failure(e), None) from e


def resume(path, *, progress: bool = False) -> ModelRun:
    """Finish the interrupted (or killed) run in ``path`` from its last checkpoint (from t = 0 if
    none was written); the files end equal to those of an uninterrupted run.  Refused (one line)
    if the model no longer draws the start and data the run was written with."""
    results.read_meta(path, KIND)
    with lock.claim(path):
        saved = load(path)
        if saved.status in ("complete", "failed"):
            raise UsageError(f"{path} holds a {saved.status} run; only an interrupted or running one can be resumed")
        model = saved.config.build()
        params, data = saved.config.draw(model)
        writer = _Writer(saved.path, saved.config, model, params, data)
        for what, arrays in (("start", writer.start), ("data", writer.data)):
            if results.digest(arrays) != saved.meta["digests"][what]:
                raise UsageError(f"model {saved.config.model!r} now draws another {what} than the run in {path} was "
                                  "written with (its code or sizes changed); it cannot be resumed")
        checkpoint = saved.result
        if checkpoint is not None:
            checkpoint = dataclasses.replace(checkpoint, status="running", params_init=params,
                                             state=jax.tree.unflatten(jax.tree.structure(params), checkpoint.state))
        return writer.execute(checkpoint, saved.meta["wall_time_s"], progress)


def clear(path) -> None:
    """Remove a model run's files from ``path`` (anything else in it is left)."""
    path = Path(path)
    for p in path.iterdir():
        if p.name in (RUN_JSON, TRAJECTORY, STATE) or is_checkpoint(p.name):
            p.unlink()


def _ordered(observables: Mapping[str, np.ndarray], order) -> dict[str, np.ndarray]:
    """The observables in the model's order (``order``, run.json's ``observables``): the loop's is
    JAX's (sorted), a checkpoint's the file's, and the files must not depend on which came first."""
    order = list(order)
    return {k: observables[k] for k in sorted(observables, key=lambda k: order.index(k) if k in order else len(order))}


def _leaves(tree) -> list[np.ndarray]:
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


class _Writer:
    """Writes one run's directory: what stays fixed (the configuration, the start's and data's
    arrays and digests), and each save of a result."""

    def __init__(self, out: Path, config: ModelConfig, model, params, data):
        self.out, self.config, self.model = Path(out), config, model
        paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
        self.params, self.data_tree, self.paths = params, data, paths
        self.start = {f"init{p}": x for p, x in zip(paths, _leaves(params))}  # state.npz's, and their digest
        self.data = {str(k): x for k, x in enumerate(_leaves(data))}  # for its digest: the data are drawn again
        self.observables = CORE_OBSERVABLES | model.OBSERVABLES

    def execute(self, checkpoint: FlowResult | None, wall_before: float, progress: bool) -> ModelRun:
        from .models.flow import gradient_descent, integrate

        started = time.perf_counter()
        wall = lambda: wall_before + time.perf_counter() - started

        def save(result):
            with signals_held():
                self.save(result, wall())

        try:
            with _recorded([self], wall):
                if checkpoint is None:
                    save(None)
                options = self.config.flow_options()
                if isinstance(options, DescentOptions):  # one compiled loop: no checkpoints, a resume starts again
                    result = gradient_descent(self.model, self.params, self.data_tree, options=options,
                                              progress=progress)
                else:
                    result = integrate(self.model, self.params, self.data_tree, options=options, progress=progress,
                                       callback=save, resume=checkpoint)
        except FlowFailure as e:
            if e.result is not None:
                save(e.result)
            raise
        save(result)
        return load(self.out)

    def save(self, result: FlowResult | None, wall_time: float) -> None:
        """The files for ``result`` (``None``: nothing integrated yet), run.json last."""
        status = "running" if result is None else result.status
        out, digests = self.out, {"config": results.config_digest(self.config), "start": results.digest(self.start),
                                  "data": results.digest(self.data)}
        old = [p for p in out.iterdir() if is_checkpoint(p.name)]
        checkpoint = None
        rows = None if result is None else {"t": result.ts, **_ordered(result.observables, self.observables)}
        if status == "running" and result is not None:
            checkpoint = checkpoint_name(result.chunks_done)
            arrays = {f"rows/{k}": v for k, v in rows.items()} | {
                f"state/{k}": x for k, x in enumerate(_leaves(result.state))} | {
                "dt_next": np.asarray(result.dt_next, float), "chunks_done": np.asarray(result.chunks_done)}
            results.atomic_write(out / checkpoint, lambda f: results.write_npz(f, arrays))
            digests["checkpoint"] = results.digest(arrays)
        elif result is not None:
            results.atomic_write(out / TRAJECTORY, lambda f: results.write_npz(f, rows))
            digests["trajectory"] = results.digest(rows)
        final = {}
        if result is not None and status != "running" and result.params_final is not None:
            final = {f"final{p}": x for p, x in zip(self.paths, _leaves(result.params_final))}
            digests["final"] = results.digest(final)
        if status != "running" or not (out / STATE).exists():
            # Its start is digested apart from its end: a kill after the last state.npz but before
            # the last run.json leaves a running run whose start still checks out.
            results.atomic_write(out / STATE, lambda f: results.write_npz(f, self.start | final))
        options = self.config.flow_options()
        n_chunks = 1 if isinstance(options, DescentOptions) else math.ceil((options.save.saves - 1) / options.save.chunk)
        results.write_json(out / RUN_JSON, {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "status": status,
            "message": "" if result is None else result.message,
            "model_name": self.model.name,
            **self.config.to_dict(),
            "parameters": [{"path": p, "shape": list(x.shape), "dtype": x.dtype.str}
                           for p, x in zip(self.paths, self.start.values())],
            "observables": self.observables,
            "checkpoint": checkpoint,
            **results.progress(result, tuple(self.model.event_names), options.t_end, n_chunks, wall_time),
            "digests": digests,
        })
        for p in old:
            if p.name != checkpoint:
                p.unlink(missing_ok=True)


def load(path) -> ModelRun:
    """Read a model's result directory back, checking every file against the digests run.json
    recorded and the saved times against its options; anything else is refused with a one-line
    :class:`UsageError`.  Only numpy and json are used, and the model is not imported."""
    path = Path(path)
    meta = results.read_meta(path, KIND)
    try:
        return _load(path, meta)
    except UsageError:
        raise
    except (OSError, KeyError, TypeError, ValueError, IndexError, zipfile.BadZipFile) as e:
        raise DamagedResult(f"{path} is a damaged model result directory ({type(e).__name__}: {e})") from None


def saved_times(options: FlowOptions | DescentOptions) -> np.ndarray:
    """The times a run of ``options`` saves at: the flow's, or a descent's saved steps times its learning rate."""
    if isinstance(options, DescentOptions):
        from .core.descent import saved_steps

        return saved_steps(options) * options.lr
    return options.times()


def _check(path: Path, name: str, arrays: dict, meta: dict, key: str) -> None:
    if results.digest(arrays) != meta["digests"].get(key):
        raise DamagedResult(f"{path / name} does not hold the arrays {RUN_JSON} recorded (damaged, edited or "
                          "replaced); the directory is refused")


def _verified(path: Path, name: str, meta: dict, key: str | None) -> dict[str, np.ndarray]:
    """The arrays of ``name``, their digest checked against run.json's ``key`` (unless ``None``)."""
    try:
        arrays = results.read_npz(path / name)
    except (OSError, ValueError, zipfile.BadZipFile) as e:  # UsageError (a refused file) is worded already
        if isinstance(e, UsageError):
            raise
        raise DamagedResult(f"{path / name} cannot be read ({type(e).__name__}: {getattr(e, 'strerror', None) or e}); "
                          "the directory is damaged and refused") from None
    if key is not None:
        _check(path, name, arrays, meta, key)
    return arrays


def _load(path: Path, meta: dict) -> ModelRun:
    config = ModelConfig.from_dict(meta)
    if meta["digests"].get("config") != results.config_digest(config):
        raise DamagedResult(f"{path / RUN_JSON}: the configuration differs from the one the run was written with "
                          "(the file was edited); the directory is refused")
    state = _verified(path, STATE, meta, None)
    paths = [p["path"] for p in meta["parameters"]]
    start = {f"init{p}": state[f"init{p}"] for p in paths}
    _check(path, STATE, start, meta, "start")
    init, final = tuple(start.values()), None
    if "final" in meta["digests"] and meta["status"] in ("complete", "failed"):
        ends = {f"final{p}": state[f"final{p}"] for p in paths}
        _check(path, STATE, ends, meta, "final")
        final = tuple(ends.values())
    n = meta["saves_done"]
    if n == 0:
        return ModelRun(path=path, config=config, meta=meta, init=init, result=None)
    options = config.flow_options()
    leaves, dt_next = None, 0.0
    if meta["status"] in ("complete", "failed"):
        rows = _verified(path, TRAJECTORY, meta, "trajectory")
    else:
        name = meta["checkpoint"]
        if not isinstance(name, str) or not is_checkpoint(name) or "/" in name:
            raise DamagedResult(f"{path / RUN_JSON}: names no checkpoint file; the directory is damaged")
        arrays = _verified(path, name, meta, "checkpoint")
        rows = {k.removeprefix("rows/"): v for k, v in arrays.items() if k.startswith("rows/")}
        leaves = tuple(arrays[f"state/{k}"] for k in range(len(paths)))
        dt_next = float(arrays["dt_next"])
        if int(arrays["chunks_done"]) != meta["chunks_done"]:
            raise DamagedResult(f"{path / name}: from chunk {int(arrays['chunks_done'])} but {RUN_JSON} says "
                              f"{meta['chunks_done']}; the directory is damaged")
    ts = rows.pop("t")
    rows = _ordered(rows, meta["observables"])
    grid = saved_times(options)
    if {len(v) for v in rows.values()} | {len(ts)} != {n} or not np.array_equal(ts, grid[:n]):
        raise DamagedResult(f"{path}: the saved rows are not the {n} saved times of the options in {RUN_JSON}; "
                          "the directory is damaged")
    result = FlowResult(ts=ts, observables=rows, events=meta["events"], stats=meta["stats"], params_init=init,
                        params_final=final, t_reached=meta["t_reached"], status=meta["status"],
                        message=meta["message"], grid=grid, chunks_done=meta["chunks_done"], state=leaves,
                        options=options if isinstance(options, DescentOptions) else
                        dataclasses.replace(options, engine="generic"), dt_next=dt_next,
                        start_facts=meta["start_facts"] or {})
    return ModelRun(path=path, config=config, meta=meta, init=init, result=result)
