"""Hostile input and faults (issue 19): the cache, API inputs, files flowsim reads, sizes and default directories.

One test per row of the issue's table, each failing before its fix.  Runs reuse the TINY
configuration of test_cli.py (its compiled programs), validation needs no integration at all.
"""

import contextlib
import datetime
import errno
import json
import os
import re
import shutil
import threading
import warnings
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_cli import TINY, assert_same_run, copy_of, interrupted, main, one_error_line, read_only, reference, \
    run_together, tiny_config  # noqa: F401  (interrupted, reference: fixtures)

import flowsim
from flowsim.core import aot, cache, loop
from flowsim import runner
from flowsim.core.cache import CacheWarning
from flowsim.config import ConfigError
from flowsim.models.cooccurrence.data import Dataset


@pytest.fixture
def own_cache(monkeypatch, tmp_path):
    """Make ``enable_compilation_cache`` look at ``FLOWSIM_CACHE_DIR`` again (the session's JAX cache
    directory put aside) and let its one warning be said again; returns a setter for the directory."""
    monkeypatch.setattr(cache, "_warned", False)
    saved = jax.config.jax_compilation_cache_dir
    jax.config.update("jax_compilation_cache_dir", None)
    yield lambda path: monkeypatch.setenv("FLOWSIM_CACHE_DIR", str(path))
    jax.config.update("jax_compilation_cache_dir", saved)


def cache_warnings(record) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, CacheWarning)]


# -- the cache --------------------------------------------------------------------------------------


def test_damaged_exported_programs_are_skipped_said_once_and_replaced(reference, tmp_path, monkeypatch):
    """Row 1: every later run failed (exit 1, struct.error) until the cache was deleted."""
    run_cache = tmp_path / "cache"
    shutil.copytree(Path(os.environ["FLOWSIM_CACHE_DIR"]) / "exported", run_cache / "exported")
    monkeypatch.setattr(cache, "_warned", False)
    monkeypatch.setattr(cache, "enable_compilation_cache", lambda path=None: str(run_cache))
    monkeypatch.setattr(aot, "enable_compilation_cache", cache.enable_compilation_cache, raising=False)
    monkeypatch.setattr(aot, "_LOADED", {})  # a new process: programs come from the directory
    assert main(["integrate", *TINY, "--out", str(tmp_path / "first"), "--quiet"]) == 0
    files = {key.split("-")[0]: run_cache / "exported" / f"{key}.bin" for key in aot._LOADED}
    assert sorted(files) == ["observe", "solve", "start", "to_params"]
    # Truncated, random bytes, another program's file (the solve, the costliest to trace, is left).
    damaged = {"observe": files["observe"].read_bytes()[:100], "to_params": os.urandom(5000),
               "start": files["to_params"].read_bytes()}
    for name, data in damaged.items():
        files[name].write_bytes(data)
    monkeypatch.setattr(aot, "_LOADED", {})
    with pytest.warns(CacheWarning) as record:
        assert main(["integrate", *TINY, "--out", str(tmp_path / "run"), "--quiet"]) == 0
    [said] = cache_warnings(record)
    assert str(run_cache) in said and f"rm -rf {run_cache}" in said and "replacing it" in said
    assert_same_run(tmp_path / "run", reference[2])
    monkeypatch.setattr(aot, "_LOADED", {})  # replaced: a third process reads them all back, silently
    monkeypatch.setattr(cache, "_warned", False)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        assert main(["integrate", *TINY, "--out", str(tmp_path / "again"), "--quiet"]) == 0
    assert cache_warnings(record) == []
    assert_same_run(tmp_path / "again", reference[2])
    assert all(aot._read(path, path.stem) is not None for path in files.values())


@pytest.mark.parametrize("kind", ["file", "read-only", "full"])
def test_a_cache_directory_that_cannot_serve_is_skipped(kind, reference, own_cache, tmp_path, monkeypatch):
    """Row 2: exit 74 with advice about the output directory, and RunConfig.build() raised."""
    where = tmp_path / "cache"
    if kind == "file":
        where.write_text("not a directory")
    else:
        where.mkdir()
        if kind == "read-only":
            read_only(monkeypatch, where)
        else:  # the disk is full: writes fail, and the file system says no space is left
            real_open = os.open

            def full(path, flags, *args, **kwargs):
                if flags & (os.O_WRONLY | os.O_RDWR) and str(os.fspath(path)).startswith(str(where)):
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
                return real_open(path, flags, *args, **kwargs)

            monkeypatch.setattr(os, "open", full)
            monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9, 0))
    own_cache(where)
    with pytest.warns(CacheWarning) as record:
        tiny_config().build()
        assert main(["integrate", *TINY, "--out", str(tmp_path / "run"), "--quiet"]) == 0
    [said] = cache_warnings(record)
    assert said.startswith(f"the compilation cache {where} ") and "compiling in memory" in said and "rm -rf" in said
    assert jax.config.jax_compilation_cache_dir is None  # JAX was not pointed at it
    assert_same_run(tmp_path / "run", reference[2])
    assert not where.is_dir() or list(where.iterdir()) == []


def test_a_program_that_cannot_be_written_is_used_from_memory(tmp_path, monkeypatch):
    """A cache directory that turns unwritable during a run (the disk filled up) costs nothing
    but the tracing: the program is used, and said once."""
    monkeypatch.setattr(cache, "_warned", False)
    (tmp_path / "exported").mkdir()
    read_only(monkeypatch, tmp_path / "exported")
    x = jnp.linspace(0.0, 1.0, 7)
    dynamic, static = eqx.partition((x,), eqx.is_array)
    leaves, treedef = jax.tree.flatten(dynamic)
    with pytest.warns(CacheWarning, match="cannot keep exported programs .*Read-only file system"):
        program = aot._load_or_export(tmp_path / "exported" / "p.bin", "p", lambda x: jnp.sin(x) * 2.0, static,
                                      leaves, treedef)
    np.testing.assert_allclose(program(leaves), 2.0 * np.sin(np.asarray(x)), rtol=1e-6)
    assert list((tmp_path / "exported").iterdir()) == []


def _fake_package(root: Path, editable: bool) -> Path:
    """A distribution ``fakedep`` 1.0 installed under ``root`` (development mode if ``editable``)."""
    source = root / "fakedep" / "__init__.py"
    source.parent.mkdir(parents=True)
    source.write_text("FACTOR = 0.9\n")
    info = root / "fakedep-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fakedep\nVersion: 1.0\n")
    (info / "RECORD").write_text("fakedep/__init__.py,,\nfakedep-1.0.dist-info/METADATA,,\n")
    if editable:
        (info / "direct_url.json").write_text(json.dumps({"url": f"file://{root}", "dir_info": {"editable": True}}))
    return source


@pytest.mark.parametrize("editable", [False, True], ids=["installed", "development"])
def test_the_key_changes_with_a_dependency_edited_within_its_version(editable, tmp_path, monkeypatch):
    """Row 3: a stale program (131 solver steps instead of 311) after diffrax was edited in the venv."""
    source = _fake_package(tmp_path, editable)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(aot, "TRACED", (*aot.TRACED, "fakedep"))
    x = [np.zeros(3)]

    def key():
        aot._source_digest.cache_clear()
        return aot._key("solve", None, x, jax.tree.structure(x))

    before = key()
    stat = source.stat()
    if editable:  # the same size and time, other contents: a development install is read
        source.write_text("FACTOR = 0.3\n")
        os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    else:
        source.write_text("FACTOR = 0.3  # edited in place\n")
    after = key()
    monkeypatch.undo()
    aot._source_digest.cache_clear()
    assert before != after
    assert {"jax", "jaxlib", "diffrax", "equinox", "optimistix", "lineax"} <= set(aot.TRACED)
    import diffrax

    assert aot.package_stamp("diffrax").startswith(diffrax.__version__ + ":")


# -- API inputs -------------------------------------------------------------------------------------


def test_an_orthonormal_embedding_is_used_whatever_basis_is_left_unset(tiny):
    """Row 4: Dataset(..., embedding=Q) with the default basis returned the identity embedding's loss."""
    params, data = tiny
    Q = flowsim.make_embedding(data.d, "random", jax.random.key(5))
    with jax.enable_x64(True):
        rotated = Dataset(tokens=data.tokens, labels=data.labels, groups=data.groups, embedding=Q)
        # Eq. (1)-(2) on the d x L samples X_i = Q[:, tokens_i], which never reads the basis name.
        X = jnp.moveaxis(jnp.asarray(Q)[:, np.asarray(data.tokens)], 0, 1)
        expected = jnp.mean(jnp.log1p(jnp.exp(-jnp.asarray(data.labels) * flowsim.forward(params, X))))
        assert rotated.basis != "standard"
        np.testing.assert_allclose(flowsim.loss(params, rotated), expected, rtol=1e-12)
        assert abs(float(flowsim.loss(params, data)) - float(expected)) > 1e-3  # the identity's differs
    assert Dataset(tokens=data.tokens, labels=data.labels, groups=data.groups, embedding=np.eye(data.d)).basis == "standard"
    with pytest.raises(ValueError, match="basis is 'standard' .* not the identity"):
        Dataset(tokens=data.tokens, labels=data.labels, groups=data.groups, embedding=Q, basis="standard")


def _dataset(data, **change):
    fields = dict(tokens=data.tokens, labels=data.labels, groups=data.groups, embedding=data.embedding) | change
    return lambda: Dataset(**fields)


BAD_INPUT = {
    "labels 2": (lambda p, d: _dataset(d, labels=np.where(d.labels > 0, 2.0, -1.0))(), r"Dataset.labels must be \+1 or -1, got 2.0"),
    "labels NaN": (lambda p, d: _dataset(d, labels=np.full(d.n, np.nan))(), r"Dataset.labels must be \+1 or -1, got nan"),
    "labels text": (lambda p, d: _dataset(d, labels=np.array(["1"] * d.n))(), "Dataset.labels must hold real numbers"),
    "groups 7": (lambda p, d: _dataset(d, groups=np.full(d.n, 7))(), r"Dataset.groups must be in 1..4 .*got 7"),
    "embedding NaN": (lambda p, d: _dataset(d, embedding=np.full((d.d, d.d), np.nan))(), "Dataset.embedding has non-finite"),
    "embedding skew": (lambda p, d: _dataset(d, embedding=2 * np.eye(d.d))(), "Dataset.embedding must be orthonormal"),
    "n = 0": (lambda p, d: _dataset(d, tokens=np.zeros((0, d.L), int), labels=np.ones(0), groups=np.ones(0, int))(),
              r"n >= 1 samples .*got shape \(0, 4\)"),
    "tokens float": (lambda p, d: _dataset(d, tokens=np.asarray(d.tokens, float))(), "Dataset.tokens must hold integer"),
    "integer Params": (lambda p, d: flowsim.Params(*(np.ones(np.shape(x), int) for x in (p.W, p.W_V, p.W_K, p.W_Q, p.a))),
                       "Params.W must be a real floating-point array, got dtype int"),
    "dict Params": (lambda p, d: flowsim.integrate({k: getattr(p, k) for k in ("W", "W_V", "W_K", "W_Q", "a")}, d),
                    r"params must be a flowsim.Params \(init_params\) or flowsim.SubspaceStart .*got dict"),
    "list dataset": (lambda p, d: flowsim.gradient_descent(p, [d]), "dataset must be a flowsim.Dataset .*got list"),
    't_end="5"': (lambda p, d: flowsim.integrate(p, d, t_end="5"), "t_end must be a positive finite number, got '5'"),
    "t_end=True": (lambda p, d: flowsim.integrate(p, d, t_end=True), "t_end must be a positive finite number, got True"),
    "rtol text": (lambda p, d: flowsim.integrate(p, d, rtol="1e-6"), "rtol must be a positive finite number"),
    "ts text": (lambda p, d: flowsim.integrate(p, d, ts=["0", "1"]), "ts must be a 1-d array"),
    "lr text": (lambda p, d: flowsim.gradient_descent(p, d, lr="0.01"), "lr must be a positive finite number"),
}


@pytest.mark.parametrize("name", list(BAD_INPUT))
def test_api_input_is_refused_where_it_enters(name, tiny):
    """Row 5: accepted silently (NaN group losses, T1 None), or an error far from the cause."""
    make, message = BAD_INPUT[name]
    params, data = tiny
    with pytest.raises((ValueError, TypeError), match=message) as raised:
        make(params, data)
    assert "\n" not in str(raised.value)


# -- files flowsim reads ----------------------------------------------------------------------------


def test_a_result_file_replaced_by_a_device_is_refused(reference, tmp_path, capsys):
    """Row 6: run.json replaced by /dev/zero was read until memory ran out."""
    out = copy_of(reference[2], tmp_path)
    (out / "run.json").unlink()
    (out / "run.json").symlink_to("/dev/zero")
    for command in (["report", str(out)], ["plot", str(out), "--kinds", "loss"], ["integrate", "--resume", str(out)]):
        assert main(command) == 2
        one_error_line(capsys, "run.json' is not a regular file")


def _finishes(command, fifo, seconds=20):
    """``main(command)``'s exit status, or ``None`` if it was still waiting on ``fifo`` after
    ``seconds``: then the FIFO is given a writer, so that the stuck reader sees an end of file
    and the command ends.  The command runs in this thread (the CLI sets signal handlers)."""
    finished, released = threading.Event(), threading.Event()

    def release():
        while not finished.wait(seconds):
            with contextlib.suppress(OSError):  # ENXIO until a reader has the FIFO open
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
                released.set()

    watchdog = threading.Thread(target=release, daemon=True)
    watchdog.start()
    try:
        status = main(command)
    finally:
        finished.set()
        watchdog.join()
    return None if released.is_set() else status


@pytest.mark.parametrize("name", ["run.json", "state.npz", "trajectory.npz", "checkpoint.eqx"])
def test_a_result_file_that_is_a_fifo_is_refused(name, reference, interrupted, tmp_path, capsys):
    """Row 7: report, plot and resume waited forever on a named pipe."""
    done, stopped = copy_of(reference[2], tmp_path / "done"), copy_of(interrupted, tmp_path / "stopped")
    commands = []
    if (done / name).exists():  # a complete run: what report and plot read
        commands += [(["report", str(done)], done), (["plot", str(done), "--kinds", "loss"], done)]
    if (stopped / name).exists():  # an interrupted one: what a resume reads
        commands += [(["integrate", "--resume", str(stopped), "--quiet"], stopped)]
    for command, run in commands:
        (run / name).unlink(missing_ok=True)
        os.mkfifo(run / name)
        assert _finishes(command, run / name) == 2, command
        one_error_line(capsys, f"{name}' is not a regular file (a device, a pipe or a socket)")


DEEP = "[" * 100_000 + "]" * 100_000


def test_deeply_nested_json_is_refused_in_one_line(reference, interrupted, tmp_path, capsys):
    """Row 8: a RecursionError traceback from run.json, sweep.json or the lock."""
    done = copy_of(reference[2], tmp_path / "done")
    (done / "run.json").write_text((done / "run.json").read_text().replace('"message": ""', f'"message": {DEEP}'))
    assert main(["report", str(done)]) == 2
    one_error_line(capsys, "run.json' is nested more than 32 levels deep")
    stopped = copy_of(interrupted, tmp_path / "stopped")
    (stopped / "flowsim.core.lock").write_text(DEEP)
    assert main(["integrate", "--resume", str(stopped), "--quiet"]) == 2
    one_error_line(capsys, "is in use by an unreadable lock", "flowsim.core.lock")
    sweep_dir = tmp_path / "sweep"
    sweep_dir.mkdir()
    (sweep_dir / "sweep.json").write_text(json.dumps({"format": "flowsim-sweep", "definition": {"grid": {}},
                                                      "points": []})[:-1] + f', "x": {DEEP}}}')
    for command in (["report", str(sweep_dir)], ["plot", str(sweep_dir)]):
        assert main(command) == 2
        one_error_line(capsys, "sweep.json' is nested more than 32 levels deep")
    config = tmp_path / "s.toml"
    config.write_text("n = 12\n[grid]\nseed = [0]\n")
    assert main(["sweep", "--config", str(config), "--out", str(sweep_dir), "--quiet"]) == 2
    one_error_line(capsys, "nested more than 32 levels deep")


# -- sizes ------------------------------------------------------------------------------------------


def test_a_sweep_is_counted_before_a_point_is_made(tmp_path, capsys):
    """Row 9: a grid of 10^7 points grew without bound, printing nothing, never refused."""
    config = tmp_path / "big.toml"
    config.write_text("n = 12\nL = 4\nd = 8\n[grid]\nseed = [" + ", ".join(map(str, range(10_000))) + "]\n"
                      "m = [" + ", ".join(map(str, range(1, 1001))) + "]\n")
    with pytest.raises(ConfigError, match=r"10000 seed x 1000 m make 10,000,000 points, more than the 10,000"):
        flowsim.Sweep.from_toml(config)
    assert main(["sweep", "--config", str(config), "--out", str(tmp_path / "out")]) == 2
    one_error_line(capsys, "flowsim sweep: error:", "split it into several sweeps")
    assert not (tmp_path / "out").exists()
    small = flowsim.Sweep.make(flowsim.RunConfig(), {"seed": [0, 1, 2], "m": [8, 16]})
    assert small.size == len(small.points()) == 6


def test_a_long_chunk_reports_its_progress_and_a_long_run_says_so(tmp_path, monkeypatch, capsys):
    """Row 10: the paper preset at m >= 1e11 ran for minutes with no progress and no estimate.

    Here a chunk of about 80 steps is solved in pieces of 20 (the pieces of a width-free
    run at m = 1e11 take seconds each); the pieces change no number, the progress bar shows the
    flow time, the steps and their rate between them, and with the threshold at 0 s the run
    says it may be long, with its step size and the step limit."""
    config = tiny_config().merge({"saves": 3})  # one chunk, TINY's shapes and compiled programs
    data, params, key = config.build()
    options = config.resolved().flow_options()
    whole = flowsim.integrate(params, data, test_key=key, options=options)
    monkeypatch.setattr(loop, "SEGMENT_STEPS", 20)
    monkeypatch.setattr(loop, "LONG_RUN_S", 0.0)
    seen = []
    advance = loop.advance
    monkeypatch.setattr(loop, "advance", lambda p, s, progress=None: advance(
        p, s, lambda state, t, dt: (seen.append((t, state.stats["steps"])), progress(state, t, dt))))
    pieces = flowsim.integrate(params, data, test_key=key, options=options, progress=True)
    err = capsys.readouterr().err
    assert whole.stats["steps"] > 60 and len(seen) >= whole.stats["steps"] // 20 - 1
    assert [t for t, _ in seen] == sorted(t for t, _ in seen) and seen[-1][0] < options.t_end
    assert re.search(r"t=[0-9.e-]+ steps=\d+ \([0-9.e+]+/s\)", err)
    [note] = [line for line in err.splitlines() if "a long run" in line]
    assert re.search(r"steps are [0-9.e-]+ long at t=.* steps/s\); at this step size t_end=2 is .* away", note)
    assert pieces.stats["steps"] == whole.stats["steps"] and pieces.events == whole.events
    for k, v in whole.observables.items():
        np.testing.assert_array_equal(pieces.observables[k], v, err_msg=k)


def test_a_long_sequence_is_refused_before_anything_is_allocated(tmp_path, monkeypatch, capsys):
    """Row 11: --L 100000 passed the memory check and died after 76 s (XLA RESOURCE_EXHAUSTED):
    every sample's attention is L x L, for the training set and for the test set."""
    monkeypatch.setenv("FLOWSIM_MEMORY_LIMIT", "16G")  # the data sets fit; their attention does not
    data = flowsim.make_dataset(jax.random.key(0), n=12, L=100_000, d=8)
    params = flowsim.init_params(jax.random.key(1), d=8, m=6, m1=10)
    with pytest.raises(flowsim.ResourceError, match=r"L=100000.* needs about [0-9.]+ TB .*choose a smaller L"):
        flowsim.plan(params, data, flowsim.FlowOptions(n_test=64))
    monkeypatch.chdir(tmp_path)
    sizes = ["--n", "12", "--L", "100000", "--d", "8", "--m", "6", "--m1", "10", "--n-test", "64"]  # drawn as above
    assert main(["integrate", *sizes]) == 2
    one_error_line(capsys, "flowsim integrate: error:", "choose a smaller L")
    assert list(tmp_path.iterdir()) == []


# -- default output directories ---------------------------------------------------------------------


def test_runs_started_together_get_distinct_default_directories(reference, tmp_path, monkeypatch):
    """Row 12: three runs without --out in the same second: two picked one runs/<timestamp>, one
    was refused.  All three pass their checks before any creates its directory."""
    monkeypatch.chdir(tmp_path)
    moment = datetime.datetime(2025, 1, 31, 14, 25, 1)
    monkeypatch.setattr(runner, "datetime", type("clock", (), {"datetime": type("now", (), {"now": lambda: moment})}))
    outcome = run_together(3, monkeypatch)
    assert all(isinstance(r, flowsim.Run) for r in outcome), outcome
    assert sorted(str(r.path) for r in outcome) == ["runs/20250131-142501", "runs/20250131-142501-2",
                                                   "runs/20250131-142501-3"]
    for r in outcome:
        assert_same_run(r.path, reference[2])


def test_the_long_run_note_waits_until_the_pace_is_known(monkeypatch, capsys):
    """The paper preset said "a long run ... about 2.66 h" at t = 0.007, from the pace of its first
    second (10 steps/s at a step of 0.0017), and then finished in one more second: the note waits
    until the pace has been measured for LONG_RUN_S / 6, and a run still slow by then gets it."""
    from types import SimpleNamespace

    now = [100.0]
    monkeypatch.setattr(loop.time, "perf_counter", lambda: now[0])
    problem = SimpleNamespace(grid=np.array([0.0, 300.0]), chunk=1,
                              options=SimpleNamespace(solver=SimpleNamespace(max_steps=100_000)))
    state = SimpleNamespace(chunks_done=0, stats={"steps": 0})
    bar = loop.Progress(problem, state)
    bar.piece(state, 0.0, 1e-3)  # starts measuring the pace
    state.stats["steps"], now[0] = 10, 101.0
    bar.piece(state, 0.007, 0.0017)  # 10 steps/s for 1 s: too early to foretell hours
    assert "a long run" not in capsys.readouterr().err
    state.stats["steps"], now[0] = 110, 111.0
    bar.piece(state, 0.2, 0.0017)  # still 10 steps/s after 11 s: the note
    bar.close()
    assert "a long run" in capsys.readouterr().err
