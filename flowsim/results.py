"""Result directories (run.json, trajectory.npz, state.npz, checkpoint.eqx): written atomically, checked when read back."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.metadata
import json
import math
import os
import platform
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .core import files, lock
from .config import RunConfig
from .core.errors import DamagedResult, UsageError
from .core.messages import shown
from .core.resources import available_bytes, format_bytes
from .models.cooccurrence.data import Dataset
from .models.cooccurrence.engines import make_engine
from .models.cooccurrence.events import EVENT_NAMES
from .core.trajectory import FlowResult
from .models.cooccurrence.model import Params
from .models.cooccurrence.subspace import SubspaceStart

FORMAT = "flowsim-run"
# 4: the paper's phase markers (phase1_end is Definition E.2's T1; all_correct the first time every
#    sample is correct), the start's facts, the exact rates and the phase-1 bounds as observables;
# 3: trajectory parts while a run goes on, digests of the configuration and the start, a lock file;
# 2: the checkpoint carries the proposed next step
FORMAT_VERSION = 4
RUN_JSON, TRAJECTORY, STATE, CHECKPOINT, PARTS = "run.json", "trajectory.npz", "state.npz", "checkpoint.eqx", "trajectory.parts"
FILES = (RUN_JSON, TRAJECTORY, STATE, CHECKPOINT, PARTS)
MATRICES = ("W", "W_V", "W_K", "W_Q")
FINAL = "_final"  # suffix of the state.npz arrays written when a run ends: every other one is an input
#: Largest run.json read back (bytes): a few kilobytes, more with a long failure message.
RUN_JSON_BYTES = 2**24
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
    a reader (or a resume after a crash) sees the old file or the new one, never a mix.  An
    OSError (a full disk, a read-only directory) names ``path``, not the temporary file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        raise OSError(e.errno, e.strerror, str(path)) from None
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


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """The arrays of an .npz file, refused (one line) unless it is a regular file whose arrays,
    as its directory declares them, fit in the memory available: a damaged or crafted archive is
    never expanded past that."""
    limit = available_bytes()
    with files.open_regular(path, "array file", limit, "the memory available") as f, \
            np.load(f, allow_pickle=False) as z:
        if sum(info.file_size for info in z.zip.infolist()) > limit:
            raise DamagedResult(f"array file {str(path)!r} declares arrays larger than the memory available "
                              f"({format_bytes(limit)}); refused")
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
    """Whether the directory ``path`` holds anything besides a lock (or a claim being tried:
    the loser of two runs started into one directory leaves its private lock file there for a
    moment, which the winner's second look must not take for results)."""
    return any(not lock.is_lock_file(p.name) for p in Path(path).iterdir())


def clear(path) -> None:
    """Remove the result files of ``path`` (anything else in it is left)."""
    path = Path(path)
    shutil.rmtree(path / PARTS, ignore_errors=True)
    for name in FILES:
        if name != PARTS:
            (path / name).unlink(missing_ok=True)


def digest(arrays: dict[str, np.ndarray]) -> str:
    """sha256 of named arrays (names, dtypes, shapes and bytes), independent of their order."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(json.dumps([name, a.dtype.str, a.shape]).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def config_digest(config: RunConfig) -> str:
    return hashlib.sha256(json.dumps(config.to_dict(), sort_keys=True).encode()).hexdigest()


def inputs(dataset: Dataset, params_init) -> dict[str, np.ndarray]:
    """What state.npz holds that determines the run: the training set and the start (``a`` and
    ``W_init``, ...; or for a width-free start its coordinates ``start_u``, ``start_W_V``, ... and
    widths ``start_m``, ``start_m1`` and scales ``start_sigma0``, ``start_sigma1``)."""
    data = dict(tokens=dataset.tokens, labels=dataset.labels, groups=dataset.groups, embedding=dataset.embedding)
    if isinstance(params_init, SubspaceStart):
        start = {"start_u": params_init.u, **{f"start_{k}": getattr(params_init, k) for k in MATRICES[1:]},
                 "start_m": params_init.m, "start_m1": params_init.m1, "start_sigma0": params_init.sigma0,
                 "start_sigma1": params_init.sigma1}
    else:
        start = {"a": params_init.a, **{f"{k}_init": getattr(params_init, k) for k in MATRICES}}
    return {k: np.asarray(v) for k, v in (data | start).items()}


def rows_after(config: RunConfig, chunks: int) -> int:
    """Saved times a flow run holds after ``chunks`` chunks (the first chunk brings t = 0 too)."""
    chunk = min(config.chunk, config.saves - 1)
    return 0 if chunks == 0 else min(1 + chunks * chunk, config.saves)


def part(path: Path, chunks: int) -> Path:
    """The file of the saved times that chunk number ``chunks`` (1, 2, ...) added."""
    return Path(path) / PARTS / f"{chunks:06d}.npz"


def save(path, config: RunConfig, dataset: Dataset, params_init: Params, result: FlowResult | None,
         wall_time: float) -> None:
    """Write the directory for ``result`` (``None``: nothing integrated yet, status running).

    What a checkpoint writes is proportional to what is new: a running result adds the saved
    times of its last chunk as one file of ``trajectory.parts/`` and replaces ``checkpoint.eqx``;
    ``state.npz`` is written when the run starts (or at its first save) and when it ends.  A complete or failed
    result writes the whole ``trajectory.npz`` and removes the parts and the checkpoint.
    ``run.json`` is written last, so it never describes files that are not there yet.
    """
    path = Path(path)
    status = "running" if result is None else result.status
    start = inputs(dataset, params_init)
    if status == "running" and result is not None:
        first = rows_after(config, result.chunks_done - 1)
        (path / PARTS).mkdir(exist_ok=True)
        atomic_write(part(path, result.chunks_done),
                     lambda f: write_npz(f, {"t": result.ts[first:]} | {k: v[first:] for k, v in result.observables.items()}))
        atomic_write(path / CHECKPOINT,
                     lambda f: eqx.tree_serialise_leaves(
                         f, (np.asarray(result.chunks_done), np.asarray(result.dt_next, float), result.state)))
    elif result is not None:
        atomic_write(path / TRAJECTORY, lambda f: write_npz(f, {"t": result.ts, **result.observables}))
    if status != "running" or result is None or not (path / STATE).exists():
        # The final matrices are known when the run ends; until then they are NaN (the checkpoint
        # holds the current state), and NaN for good where the engine carries none.
        atomic_write(path / STATE, lambda f: write_npz(f, start | finals(params_init, None if status == "running"
                                                                          else result.params_final)))
    n_chunks = math.ceil((config.saves - 1) / config.chunk)
    write_json(path / RUN_JSON, {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "status": status,
        "message": "" if result is None else result.message,
        "config": config.to_dict(),
        "digests": {"config": config_digest(config), "state": digest(start)},
        "engine": None if result is None else result.options.engine,
        **progress(result, EVENT_NAMES, config.t_end, n_chunks, wall_time),
    })
    if status in ("complete", "failed"):
        (path / CHECKPOINT).unlink(missing_ok=True)
        shutil.rmtree(path / PARTS, ignore_errors=True)


def progress(result: FlowResult | None, events: tuple[str, ...], t_end: float, n_chunks: int, wall_time: float) -> dict:
    """run.json's record of how far a run got (any model's): its events, the start's facts, the
    solver's statistics, the time and saves reached, the chunks done, the wall time and the
    packages' versions."""
    return {
        "events": dict.fromkeys(events) if result is None else result.events,
        "start_facts": None if result is None else result.start_facts,
        "stats": None if result is None else result.stats,
        "t_end": t_end,
        "t_reached": 0.0 if result is None else result.t_reached,
        "saves_done": 0 if result is None else len(result.ts),
        "chunks_done": 0 if result is None else result.chunks_done,
        "n_chunks": n_chunks,
        "wall_time_s": wall_time,
        "versions": dict(versions()),
    }


def finals(start, final: Params | None) -> dict[str, np.ndarray]:
    """state.npz's final matrices ``W_final``, ...: NaN where they are not known; none at all for
    a width-free start, which has no m-sized array."""
    if isinstance(start, SubspaceStart):
        return {}
    return {f"{k}{FINAL}": np.full(np.shape(getattr(start, k)), np.nan) if final is None else np.asarray(getattr(final, k))
            for k in MATRICES}


def start_from(arrays: dict) -> Params | SubspaceStart:
    """The start from state.npz's arrays (:func:`inputs`)."""
    if "start_u" in arrays:
        return SubspaceStart(u=arrays["start_u"], **{k: arrays[f"start_{k}"] for k in MATRICES[1:]},
                             m=arrays["start_m"], m1=arrays["start_m1"], sigma0=arrays["start_sigma0"],
                             sigma1=arrays["start_sigma1"])
    return Params(**{k: arrays[f"{k}_init"] for k in MATRICES}, a=arrays["a"])


#: A result directory's kind: run.json's ``format`` and ``format_version`` (a model's run has its own).
RUN_KIND = (FORMAT, FORMAT_VERSION)


def mark(path, status: str, message: str, wall_time: float, kind: tuple[str, int] = RUN_KIND) -> None:
    """Set the status and message of the run in ``path`` (its files are the last checkpoint's)."""
    path = Path(path)
    meta = read_meta(path, kind)
    write_json(path / RUN_JSON, meta | {"status": status, "message": message, "wall_time_s": wall_time})


def mark_interrupted(path, wall_time: float, why: str = "interrupted", kind: tuple[str, int] = RUN_KIND) -> str:
    """Set the status of the run in ``path`` to interrupted (its files are the last
    checkpoint's) and return the message recorded, which starts with ``why``."""
    meta = read_meta(path, kind)
    message = (f"{why} at t={meta['t_reached']:.6g} after {meta['chunks_done']} of "
               f"{meta['n_chunks']} chunks; resume with: flowsim integrate --resume {path}")
    mark(path, "interrupted", message, wall_time, kind)
    return message


def read_meta(path, kind: tuple[str, int] = RUN_KIND) -> dict:
    """``run.json`` of the result directory ``path`` (of ``kind``: format and format version), or
    a one-line error: a :class:`~flowsim.core.errors.UsageError` if ``path`` is not one (no run.json,
    another program's, another kind or format version), a :class:`~flowsim.core.errors.DamagedResult`
    if its run.json cannot be trusted (not JSON, not a regular file, too large)."""
    path = Path(path)
    format, version = kind
    try:
        meta = files.read_json(path / RUN_JSON, "run description", RUN_JSON_BYTES)
    except UsageError as e:  # refused by flowsim.core.files
        raise DamagedResult(str(e)) from None
    except (OSError, ValueError) as e:
        error = UsageError if isinstance(e, OSError) else DamagedResult
        raise error(f"{path} is not a flowsim result directory (cannot read {RUN_JSON}: "
                    f"{getattr(e, 'strerror', None) or e})") from None
    if not isinstance(meta, dict) or meta.get("format") != format:
        raise UsageError(f"{path / RUN_JSON} is not a {format} description")
    if meta.get("format_version") != version:
        raise UsageError(f"{path / RUN_JSON} has format version {shown(meta.get('format_version'))}, "
                          f"this flowsim reads {version}")
    return meta


def load(path) -> Run:
    """Read the result directory ``path`` (written by ``flowsim integrate`` or
    :func:`flowsim.run`) back, checking that its files belong together: run.json's
    configuration and state.npz against the digests recorded when the run started, the
    trajectory against the saved times, the checkpoint against the state.  Anything else is
    refused with a one-line :class:`~flowsim.core.errors.DamagedResult` (a directory that is not a
    result directory at all: see :func:`read_meta`).  Only numpy and json are used; nothing is
    unpickled."""
    path = Path(path)
    meta = read_meta(path)
    try:
        return _load(path, meta)
    except DamagedResult:
        raise
    except UsageError as e:  # a file refused by flowsim.core.files, a configuration refused by RunConfig
        raise DamagedResult(str(e)) from None
    except (OSError, KeyError, TypeError, ValueError, zipfile.BadZipFile) as e:
        raise DamagedResult(f"{path} is a damaged result directory ({type(e).__name__}: {e})") from None


def _load(path: Path, meta: dict) -> Run:
    config = RunConfig.from_dict(meta["config"])
    state = read_npz(path / STATE)
    start = {k: v for k, v in state.items() if not k.endswith(FINAL)}
    _check_inputs(path, meta, config, start)
    # The arrays as stored (float64 whatever the precision, as RunConfig.build draws them): a
    # resumed run then writes the same state.npz, with the same digest, as the original.
    dataset = Dataset(**{k: state[k] for k in ("tokens", "labels", "groups", "embedding")}, basis=config.embedding)
    params_init = start_from(start)
    # Final matrices exist once a run has ended, where the engine gives them (else NaN or absent).
    ended = meta["status"] in ("complete", "failed") and f"W{FINAL}" in state and not np.isnan(state[f"W{FINAL}"]).all()
    params_final = Params(**{k: state[f"{k}{FINAL}"] for k in MATRICES}, a=state["a"]) if ended else None
    result = None
    if meta["saves_done"] > 0:
        rows = _read_rows(path, meta, config)
        ts = rows.pop("t")
        gd = config.method == "gd"
        options = config.options()
        if not gd and meta.get("engine"):
            options = dataclasses.replace(options, engine=meta["engine"])
        result = FlowResult(
            ts=ts, observables=rows, events=meta["events"], stats=meta["stats"],
            params_init=params_init, params_final=params_final, t_reached=meta["t_reached"],
            status=meta["status"], message=meta["message"],
            grid=ts if gd else options.times(m=config.m), chunks_done=meta["chunks_done"],
            options=options, start_facts=meta["start_facts"],
            **_read_checkpoint(path, meta, config, params_init, dataset),
        )
    return Run(path=path, config=config, meta=meta, dataset=dataset, params_init=params_init, result=result)


def _check_inputs(path: Path, meta: dict, config: RunConfig, start: dict) -> None:
    """run.json's configuration against state.npz: the data's shapes (for the arrays present; the
    start's shapes depend on the engine), then the digests recorded when the run was written."""
    expected = {"tokens": (config.n, config.L), "labels": (config.n,), "groups": (config.n,),
                "embedding": (config.d, config.d)}
    for name, shape in expected.items():
        if name in start and start[name].shape != shape:
            raise DamagedResult(f"{path / STATE}: {name} has shape {start[name].shape} but the configuration in "
                              f"{RUN_JSON} (n={config.n}, L={config.L}, d={config.d}) needs {shape}")
    recorded = meta.get("digests") or {}
    if recorded.get("config") != config_digest(config):
        raise DamagedResult(f"{path / RUN_JSON}: the configuration differs from the one the run was written "
                          "with (the file was edited); the directory is refused")
    if recorded.get("state") != digest(start):
        raise DamagedResult(f"{path / STATE} does not hold the data and start the run was written with "
                          "(replaced or damaged); the directory is refused")


def _read_rows(path: Path, meta: dict, config: RunConfig) -> dict[str, np.ndarray]:
    """The saved rows: trajectory.npz once a run has ended, its parts while it is unfinished;
    checked to be ``saves_done`` rows at the run's saved times."""
    n = meta["saves_done"]
    if meta["status"] in ("complete", "failed"):
        rows = read_npz(path / TRAJECTORY)
    else:
        chunks = [read_npz(part(path, k)) for k in range(1, meta["chunks_done"] + 1)]
        rows = {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]} if chunks else {}
    lengths = {len(v) for v in rows.values()}
    if lengths != {n}:
        raise DamagedResult(f"{path} holds {sorted(lengths)} saved times but {RUN_JSON} says {n}; "
                          "the directory is damaged")
    if config.method == "flow" and not np.array_equal(rows["t"], config.flow_options().times(m=config.m)[:n]):
        raise DamagedResult(f"{path}: the saved times are not those of the configuration in {RUN_JSON}; "
                          "the directory is damaged")
    return rows


def _read_checkpoint(path: Path, meta: dict, config: RunConfig, params_init: Params, dataset: Dataset):
    if not (path / CHECKPOINT).exists():
        return dict(state=None)
    # The engine resolves from the same start and data as the run did, so its state has the run's
    # shapes; the flow integrates in the run's precision, so its floating arrays have that dtype.
    dtype = np.float64 if config.precision == 64 else np.float32
    with jax.enable_x64(config.precision == 64):
        start = make_engine(meta.get("engine") or config.engine, params_init, dataset).init_state(params_init, dataset)
    like = jax.tree.map(lambda x: np.asarray(x, dtype if jnp.issubdtype(x.dtype, jnp.floating) else x.dtype), start)
    try:
        with files.open_regular(path / CHECKPOINT, "checkpoint", available_bytes(), "the memory available") as f:
            chunks, dt, state = eqx.tree_deserialise_leaves(f, (np.asarray(0), np.asarray(0.0), like))
            trailing = f.read(1)
    except (OSError, UsageError):
        raise
    except Exception:  # random bytes fail in many ways: zip, npy headers, refused pickles, tree paths
        raise _damaged(path, "unreadable") from None
    got, want = jax.tree.leaves(state), jax.tree.leaves(like)
    if trailing or [(np.shape(x), np.asarray(x).dtype) for x in got] != [(x.shape, x.dtype) for x in want]:
        raise _damaged(path, "its arrays do not have the run's shapes")
    if not (all(np.all(np.isfinite(x)) for x in got) and np.isfinite(dt) and dt >= 0):
        raise _damaged(path, "it holds non-finite values")
    if int(chunks) != meta["chunks_done"]:
        raise _damaged(path, f"from chunk {int(chunks)} but {RUN_JSON} says {meta['chunks_done']}: the run was "
                             "killed while writing")
    return dict(state=state, dt_next=float(dt))


def _damaged(path: Path, why: str) -> DamagedResult:
    return DamagedResult(f"damaged checkpoint {path / CHECKPOINT} ({why}); it cannot be resumed: delete it and "
                       f"run flowsim integrate --resume {path} to start this run again from t = 0")
