"""Running a configuration into a result directory: a checkpoint after every chunk, clean stops, resume."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import itertools
import signal
import threading
import time
from pathlib import Path

from .core import lock
from . import results
from .config import RunConfig
from .core.errors import FlowFailure, UsageError, as_usage
from .models.cooccurrence.flow import integrate, plan
from .models.cooccurrence.gd import gradient_descent
from .core.messages import failure


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM under the CLI) stopped a run; its directory holds the last checkpoint."""

    def __init__(self, message: str, path: Path):
        super().__init__(message)
        self.path = path


#: Where result directories go by default (under the current directory).
RUNS = Path("runs")


def default_out(root=RUNS, prefix: str = "") -> Path:
    """A new, empty directory under ``root`` named from the local time, e.g.
    ``runs/20250131-142501`` (``-2``, ``-3``, ... when taken), created here: creating it is what
    claims the name, so runs started in the same second get distinct directories."""
    stem = Path(root) / (prefix + datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))
    try:
        stem.parent.mkdir(parents=True, exist_ok=True)
        for k in itertools.count(1):
            out = stem if k == 1 else stem.with_name(f"{stem.name}-{k}")
            with contextlib.suppress(FileExistsError):
                out.mkdir()
                return out
    except OSError as e:
        raise UsageError(f"cannot create an output directory under {str(root)!r}: {e.strerror}") from None


def check_out(out, force: bool = False) -> Path:
    """Refuse an output path that is a file, or a directory that already holds something
    (unless ``force``: then the result files in it are replaced and anything else is left)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"output directory {str(out)!r} exists and is not a directory")
    if out.is_dir() and results.holds_files(out) and not force:
        raise UsageError(f"output directory {str(out)!r} already holds files; choose another or use --force "
                          "(force=True) to replace the results in it")
    return out


def run(config: RunConfig, out=None, *, force: bool = False, progress: bool = False) -> results.Run:
    """Integrate ``config`` into the result directory ``out`` (default: a new one from
    :func:`default_out`, created once the configuration has been checked).

    Everything is checked (the data and initialization are drawn) before the directory is
    created.  The directory is claimed (``flowsim.core.lock``) for the whole run: a second run or
    resume into it raises :class:`~flowsim.core.errors.DirectoryInUse` naming the holder and touches nothing.  A
    checkpoint is written after every chunk.  On Ctrl-C it raises :class:`RunInterrupted` with
    the run marked ``interrupted`` (finish it with :func:`resume`); on a solver failure it
    writes what was computed (status ``failed``) and re-raises :class:`~flowsim.FlowFailure`;
    when the files cannot be written (a full disk) it re-raises the ``OSError`` with the last
    checkpoint intact (resumable).
    """
    if out is not None:
        out = check_out(out, force)
    dataset, params, test_key = config.build()
    config = config.resolved()
    if config.method == "flow":
        with as_usage():  # the engine's memory, checked before anything is written
            plan(params, dataset, config.flow_options())
    if out is None:
        out = default_out()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"cannot create output directory {str(out)!r}: {e.strerror}") from None
    with lock.claim(out):
        check_out(out, force)  # again, now that nobody else writes here: another run may have finished
        results.clear(out)
        return _execute(out, config, dataset, params, test_key, None, 0.0, progress)


def resume(path, *, progress: bool = False) -> results.Run:
    """Finish the interrupted (or killed) run in ``path`` from its last checkpoint; the files
    end up equal to those of an uninterrupted run.  A run without a checkpoint (none was
    written yet, or a damaged one was deleted) starts again from t = 0.  The directory is
    claimed as by :func:`run`."""
    results.read_meta(path)  # a directory that is not a run is refused before it is locked
    with lock.claim(path):
        saved = results.load(path)
        if saved.status in ("complete", "failed"):
            raise UsageError(f"{path} holds a {saved.status} run; only an interrupted or running one can be resumed")
        checkpoint = saved.result
        if checkpoint is not None and checkpoint.state is None:
            checkpoint = None
        if checkpoint is not None:
            # The last checkpoint of an interrupted run is the running result it saved then.
            checkpoint = dataclasses.replace(checkpoint, status="running")
        test_key = saved.config.keys()[2]
        return _execute(saved.path, saved.config, saved.dataset, saved.params_init, test_key, checkpoint,
                        saved.meta["wall_time_s"], progress)


def _execute(out, config, dataset, params, test_key, checkpoint, wall_before, progress) -> results.Run:
    started = time.perf_counter()
    wall = lambda: wall_before + time.perf_counter() - started

    def save(result):
        with signals_held():
            results.save(out, config, dataset, params, result, wall())

    try:
        if checkpoint is None:
            save(None)
        if config.method == "gd":
            # One compiled scan: nothing to checkpoint before it ends (a resume starts it again).
            result = gradient_descent(params, dataset, test_key=test_key, options=config.descent_options(),
                                      progress=progress)
        else:
            result = integrate(params, dataset, test_key=test_key, progress=progress, callback=save,
                               resume=checkpoint, options=config.flow_options())
    except KeyboardInterrupt:
        with signals_held():
            message = results.mark_interrupted(out, wall())
        raise RunInterrupted(message, out) from None
    except FlowFailure as e:
        save(e.result)
        raise
    except OSError as e:
        # Writing failed (a full disk): the files are the last checkpoint's, which a resume
        # continues from; run.json says so if it can still be written.
        with contextlib.suppress(OSError, UsageError), signals_held():
            results.mark_interrupted(out, wall(), f"stopped by a write error ({e.strerror})")
        raise
    except Exception as e:  # anything unforeseen ends the run as failed, not left running
        raise _failed(out, config, dataset, params, failure(e), wall()) from e
    save(result)
    return results.load(out)


def _failed(out, config, dataset, params, message: str, wall: float) -> FlowFailure:
    """Record the run in ``out`` as failed with ``message`` (the rows of its last checkpoint kept)
    and return the :class:`FlowFailure` to raise."""
    last = None
    with contextlib.suppress(OSError, UsageError), signals_held():  # recorded if the directory still can be
        last = results.load(out).result
        if last is None:
            results.mark(out, "failed", message, wall)
        else:
            last = dataclasses.replace(last, status="failed", message=message)
            results.save(out, config, dataset, params, last, wall)
    return FlowFailure(message, last)


@contextlib.contextmanager
def signals_held():
    """Hold SIGINT and SIGTERM while files are written, so a stop never leaves half a set of
    them; a signal that came meanwhile is raised again afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = []
    previous = {s: signal.signal(s, lambda signum, frame: caught.append(signum))
                for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, signal.SIG_DFL if handler is None else handler)
        if caught:
            signal.raise_signal(caught[0])
