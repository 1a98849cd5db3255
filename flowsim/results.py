"""Result directories (run.json, trajectory.npz, state.npz, checkpoint.eqx): writing them atomically, reading them back."""

from __future__ import annotations

import dataclasses
import functools
import importlib.metadata
import json
import math
import os
import platform
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from . import lock
from .config import ConfigError, RunConfig
from .data import Dataset
from .engines import make_engine
from .events import EVENT_NAMES
from .flow import FlowResult, save_times
from .model import Params

FORMAT = "flowsim-run"
FORMAT_VERSION = 2  # 2: the checkpoint carries the proposed next step
RUN_JSON, TRAJECTORY, STATE, CHECKPOINT = "run.json", "trajectory.npz", "state.npz", "checkpoint.eqx"
FILES = (RUN_JSON, TRAJECTORY, STATE, CHECKPOINT)
MATRICES = ("W", "W_V", "W_K", "W_Q")
PACKAGES = ("flowsim", "jax", "jaxlib", "diffrax", "equinox", "optimistix", "numpy")


@dataclasses.dataclass
class Run:
    """A result directory read back by :func:`load`.

    ``meta`` is ``run.json`` as a dict; ``result`` is the trajectory as a
    :class:`~flowsim.FlowResult` (``None`` while no chunk has finished), with ``state`` set
    when the directory holds a checkpoint to resume from.
    """

    path: Path
    config: RunConfig
    meta: dict[str, Any]
    dataset: Dataset
    params_init: Params
    result: FlowResult | None

    @property
    def status(self) -> str:
        return self.meta["status"]


def atomic_write(path: Path, write: Callable) -> None:
    """Write through a temporary file in the same directory, then rename it over ``path``, so
    a reader (or a resume after a crash) sees the old file or the new one, never a mix."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_npz(f, arrays: dict[str, np.ndarray]) -> None:
    # np.savez stamps each member with the current time; a fixed stamp makes the same arrays
    # give the same bytes.
    with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as zf:
        for name, array in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            with zf.open(info, "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asarray(array), allow_pickle=False)


def write_json(path: Path, meta: dict) -> None:
    atomic_write(path, lambda f: f.write((json.dumps(meta, indent=2) + "\n").encode()))


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


@functools.cache
def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def holds_files(path) -> bool:
    """Whether the directory ``path`` holds anything besides a lock."""
    return any(p.name != lock.NAME for p in Path(path).iterdir())


def save(path, config: RunConfig, dataset: Dataset, params_init: Params, result: FlowResult | None,
         wall_time: float) -> None:
    """Write the directory for ``result`` (``None``: nothing integrated yet, status running).

    A running result also writes ``checkpoint.eqx``; a complete or failed one removes it.
    ``run.json`` is written last, so it never describes files that are not there yet.
    """
    path = Path(path)
    status = "running" if result is None else result.status
    if status == "running" and result is not None:
        atomic_write(path / CHECKPOINT,
                      lambda f: eqx.tree_serialise_leaves(
                         f, (np.asarray(result.chunks_done), np.asarray(result.dt_next, float), result.state)))
    if result is not None:
        atomic_write(path / TRAJECTORY, lambda f: write_npz(f, {"t": result.ts, **result.observables}))
    final = params_init if result is None else result.params_final
    if final is None:  # the Gram engine carries no matrices: the final ones are unknown
        final = jax.tree.map(lambda x: np.full(np.shape(x), np.nan), params_init)
    state = dict(tokens=dataset.tokens, labels=dataset.labels, groups=dataset.groups,
                 embedding=dataset.embedding, a=params_init.a)
    state |= {f"{k}_init": getattr(params_init, k) for k in MATRICES}
    state |= {f"{k}_final": getattr(final, k) for k in MATRICES}
    atomic_write(path / STATE, lambda f: write_npz(f, state))
    n_chunks = math.ceil((config.saves - 1) / config.chunk)
    write_json(path / RUN_JSON, {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "status": status,
        "message": "" if result is None else result.message,
        "config": config.to_dict(),
        "events": dict.fromkeys(EVENT_NAMES) if result is None else result.events,
        "stats": None if result is None else result.stats,
        "t_end": config.t_end,
        "t_reached": 0.0 if result is None else result.t_reached,
        "saves_done": 0 if result is None else len(result.ts),
        "chunks_done": 0 if result is None else result.chunks_done,
        "n_chunks": n_chunks,
        "wall_time_s": wall_time,
        "versions": dict(versions()),
    })
    if status in ("complete", "failed"):
        (path / CHECKPOINT).unlink(missing_ok=True)


def mark_interrupted(path, wall_time: float) -> str:
    """Set the status of the run in ``path`` to interrupted (its files are the last
    checkpoint's) and return the message recorded."""
    path = Path(path)
    meta = json.loads((path / RUN_JSON).read_text())
    meta["status"] = "interrupted"
    meta["message"] = (f"interrupted at t={meta['t_reached']:.6g} after {meta['chunks_done']} of "
                       f"{meta['n_chunks']} chunks; resume with: flowsim integrate --resume {path}")
    meta["wall_time_s"] = wall_time
    write_json(path / RUN_JSON, meta)
    return meta["message"]


def read_meta(path) -> dict:
    """``run.json`` of the result directory ``path``, or a one-line :class:`ConfigError` saying
    that ``path`` is not one (or one of another format version)."""
    path = Path(path)
    try:
        meta = json.loads((path / RUN_JSON).read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path} is not a flowsim result directory (cannot read {RUN_JSON}: {e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ConfigError(f"{path / RUN_JSON} is not a flowsim run description")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ConfigError(f"{path / RUN_JSON} has format version {meta.get('format_version')}, "
                          f"this flowsim reads {FORMAT_VERSION}")
    return meta


def load(path) -> Run:
    """Read the result directory ``path`` (written by ``flowsim integrate`` or
    :func:`flowsim.run`) back.  Only numpy and json are used; nothing is unpickled."""
    path = Path(path)
    meta = read_meta(path)
    try:
        return _load(path, meta)
    except ConfigError:
        raise
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as e:
        raise ConfigError(f"{path} is a damaged result directory ({type(e).__name__}: {e})") from None


def _load(path: Path, meta: dict) -> Run:
    config = RunConfig.from_dict(meta["config"])
    state = _read_npz(path / STATE)
    with jax.enable_x64(config.precision == 64):
        dataset = Dataset(**{k: jnp.asarray(state[k]) for k in ("tokens", "labels", "groups", "embedding")},
                          basis=config.embedding)
        params_init = Params(**{k: state[f"{k}_init"] for k in MATRICES}, a=state["a"])
        # A Gram-engine run has no final matrices (written as NaN).
        params_final = None if config.engine == "gram" else Params(
            **{k: state[f"{k}_final"] for k in MATRICES}, a=state["a"])
    result = None
    if meta["saves_done"] > 0:
        rows = _read_npz(path / TRAJECTORY)
        rows = {k: v[: meta["saves_done"]] for k, v in rows.items()}
        ts = rows.pop("t")
        gd = config.method == "gd"
        names = ("method", "lr", "steps", "precision", "engine", "band") if gd else (
            "method", "solver", "rtol", "atol", "precision", "engine", "band", "max_steps", "chunk")
        settings = {k: getattr(config, k) for k in names}
        result = FlowResult(
            ts=ts, observables=rows, events=meta["events"], stats=meta["stats"],
            params_init=params_init, params_final=params_final, t_reached=meta["t_reached"],
            status=meta["status"], message=meta["message"],
            grid=ts if gd else save_times(config.t_end, config.saves, config.grid),
            chunks_done=meta["chunks_done"],
            settings=settings, **_read_checkpoint(path, meta, config, params_init, dataset),
        )
    return Run(path=path, config=config, meta=meta, dataset=dataset, params_init=params_init, result=result)


def _read_checkpoint(path: Path, meta: dict, config: RunConfig, params_init: Params, dataset: Dataset):
    if not (path / CHECKPOINT).exists():
        return dict(state=None)
    # The engine resolves from the same start and data as the run did, so its state has the run's shapes.
    with jax.enable_x64(config.precision == 64):
        like = jax.tree.map(np.asarray, make_engine(config.engine, params_init, dataset).init_state(params_init, dataset))
    chunks, dt, state = eqx.tree_deserialise_leaves(path / CHECKPOINT, (np.asarray(0), np.asarray(0.0), like))
    if int(chunks) != meta["chunks_done"]:
        raise ConfigError(f"{path / CHECKPOINT} is from chunk {int(chunks)} but {RUN_JSON} says "
                          f"{meta['chunks_done']} (the run was killed while writing); it cannot be resumed")
    return dict(state=state, dt_next=float(dt))
