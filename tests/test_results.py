"""Result files and configuration, without integrating: round trips, atomic and deterministic writes, merging."""

import ast
import io
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

import flowsim
from flowsim import config, results
from flowsim.config import ConfigError, RunConfig
from flowsim.flow import FlowResult

TINY = dict(n=12, L=4, d=8, m=8, m1=8, t_end=2.0, saves=7, chunk=3, n_test=50, engine="params")


def fake_result(cfg, dataset, params, rows, status="running"):
    """A FlowResult with random observables of the documented shapes (no integration)."""
    rng = np.random.default_rng(0)
    shapes = {k: ast.literal_eval(shape.replace("d", str(cfg.d))) for k, (shape, _) in flowsim.OBSERVABLES.items()}
    with jax.enable_x64(True):
        moved = flowsim.Params(W=params.W + 1.0, W_V=params.W_V + 2.0, W_K=params.W_K + 3.0,
                               W_Q=params.W_Q + 4.0, a=params.a)
    return FlowResult(
        ts=flowsim.save_times(cfg.t_end, cfg.saves)[:rows],
        observables={k: rng.normal(size=(rows, *s)) for k, s in shapes.items()},
        events={"phase1_end": 0.25, "G3_negative": 0.0, "scores_leave_band": None},
        stats=dict(steps=10, accepted_steps=9, rejected_steps=1, nfev=61, solves=2),
        params_init=params, params_final=moved, t_reached=0.5, status=status, message="",
        grid=flowsim.save_times(cfg.t_end, cfg.saves), chunks_done=1,
        state=(moved.W, moved.W_V, moved.W_K, moved.W_Q), settings={},
    )


@pytest.fixture(scope="module")
def built():
    cfg = RunConfig().merge(TINY)
    dataset, params, _ = cfg.build()
    return cfg.resolved(), dataset, params


def test_save_load_round_trip(built, tmp_path):
    cfg, dataset, params = built
    result = fake_result(cfg, dataset, params, rows=4)
    results.save(tmp_path, cfg, dataset, params, result, wall_time=1.5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.eqx", "run.json", "state.npz", "trajectory.npz"]

    run = flowsim.load(tmp_path)
    assert run.config == cfg and run.status == "running" and run.meta["wall_time_s"] == 1.5
    assert run.meta["events"] == result.events and run.meta["stats"] == result.stats
    np.testing.assert_array_equal(run.result.ts, result.ts)
    assert run.result.observables.keys() == result.observables.keys()
    for k, v in result.observables.items():
        np.testing.assert_array_equal(run.result.observables[k], v)
    for name in ("W", "W_V", "W_K", "W_Q", "a"):
        np.testing.assert_array_equal(getattr(run.params_init, name), getattr(params, name))
        np.testing.assert_array_equal(getattr(run.result.params_final, name), getattr(result.params_final, name))
        assert getattr(run.params_init, name).dtype == np.float64
    for got, want in zip(run.result.state, result.state):
        np.testing.assert_array_equal(got, want)
    for name in ("tokens", "labels", "groups", "embedding"):
        np.testing.assert_array_equal(getattr(run.dataset, name), getattr(dataset, name))


def test_complete_result_drops_checkpoint_and_interrupt_keeps_it(built, tmp_path):
    cfg, dataset, params = built
    results.save(tmp_path, cfg, dataset, params, fake_result(cfg, dataset, params, rows=4), wall_time=1.0)
    message = results.mark_interrupted(tmp_path, wall_time=2.0)
    meta = json.loads((tmp_path / "run.json").read_text())
    assert meta["status"] == "interrupted" and meta["message"] == message and "--resume" in message
    assert (tmp_path / "checkpoint.eqx").exists()
    results.save(tmp_path, cfg, dataset, params, fake_result(cfg, dataset, params, rows=7, status="complete"), 3.0)
    assert not (tmp_path / "checkpoint.eqx").exists()
    assert flowsim.load(tmp_path).result.state is None


def test_checkpoint_from_another_chunk_is_refused(built, tmp_path):
    cfg, dataset, params = built
    results.save(tmp_path, cfg, dataset, params, fake_result(cfg, dataset, params, rows=4), wall_time=1.0)
    meta = json.loads((tmp_path / "run.json").read_text())
    meta["chunks_done"] = 2  # as if killed after checkpoint.eqx but before run.json was replaced
    (tmp_path / "run.json").write_text(json.dumps(meta))
    with pytest.raises(ConfigError, match="cannot be resumed"):
        flowsim.load(tmp_path)


def test_damaged_directory_is_refused_cleanly(built, tmp_path):
    cfg, dataset, params = built
    results.save(tmp_path, cfg, dataset, params, fake_result(cfg, dataset, params, rows=4), wall_time=1.0)
    (tmp_path / "trajectory.npz").write_bytes(b"not a zip")
    with pytest.raises(ConfigError, match="damaged result directory"):
        flowsim.load(tmp_path)
    (tmp_path / "state.npz").unlink()
    with pytest.raises(ConfigError, match="damaged result directory"):
        flowsim.load(tmp_path)


def test_npz_bytes_depend_only_on_the_arrays(monkeypatch):
    arrays = {"x": np.arange(6.0).reshape(2, 3), "k": np.array([1, 2], np.int32)}
    first = io.BytesIO()
    results.write_npz(first, arrays)
    monkeypatch.setattr("time.time", lambda: 2e9)  # zipfile stamps members with the current time
    second = io.BytesIO()
    results.write_npz(second, arrays)
    assert first.getvalue() == second.getvalue()
    first.seek(0)
    with np.load(first, allow_pickle=False) as z:
        assert z.files == ["x", "k"]
        np.testing.assert_array_equal(z["x"], arrays["x"])
        assert z["k"].dtype == np.int32


def test_atomic_write_keeps_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "run.json"
    target.write_text("old")

    def fail(f):
        f.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        results.atomic_write(target, fail)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]


def test_flags_override_config_file_over_preset(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('preset = "theory"\nn = 18\nd = 60\nt_end = 5\nsolver = "dopri5"\ncounts = [9, 3, 3, 3]\n')
    cfg = RunConfig.from_toml(path).merge({"n": "24", "t_end": "7.5", "counts": "12,4,4,4"})
    want = dict(RunConfig.preset("theory").to_dict(), n=24, d=60, t_end=7.5, solver="dopri5", counts=[12, 4, 4, 4])
    assert cfg.to_dict() == want
    assert RunConfig.from_toml(path, preset="paper").init == "kaiming"
    assert RunConfig().to_dict() == RunConfig.preset("paper").to_dict()


def test_resolved_config_draws_the_same_arrays():
    cfg = RunConfig.preset("theory")
    resolved = cfg.resolved()
    assert resolved.counts == (6, 2, 2, 2) and resolved.sigma0 == 1 / np.sqrt(5 * 64)
    for a, b in zip(jax.tree.leaves(cfg.build()[:2]), jax.tree.leaves(resolved.build()[:2])):
        np.testing.assert_array_equal(a, b)
        assert a.dtype == b.dtype


def test_name_lists_match_the_library():
    from flowsim import data, engines, flow, init

    assert config.DATA_MODES == data.MODES and config.EMBEDDINGS == data.BASES
    assert config.INITS == init.SCHEMES and config.GRIDS == flow.GRIDS
    assert config.SOLVERS == tuple(flow.SOLVERS) and config.PRECISIONS == flow.PRECISIONS
    assert config.ENGINES == ("auto", *engines.ENGINES)
    from flowsim import cli, plotting

    assert cli.PLOT_KINDS == tuple(plotting.KINDS)


def test_docs_name_every_file_key_and_flag(built, tmp_path, capsys):
    cfg, dataset, params = built
    results.save(tmp_path, cfg, dataset, params, fake_result(cfg, dataset, params, rows=4), wall_time=1.0)
    docs = Path(__file__).parents[1] / "docs"
    schema = (docs / "results.md").read_text()
    for name in ("trajectory.npz", "state.npz"):
        with np.load(tmp_path / name) as z:
            missing = [k for k in z.files if f"`{k}`" not in schema and f"`{k}_" not in schema]
            assert not missing, (name, missing)
    meta = json.loads((tmp_path / "run.json").read_text())
    assert not [k for k in meta if f"`{k}`" not in schema]
    usage = (docs / "cli.md").read_text()
    from flowsim import cli

    with pytest.raises(SystemExit):
        cli.main(["integrate", "--help"])
    flags = set(re.findall(r"(--[a-z][a-z0-9-]*)", capsys.readouterr().out)) - {"--help"}
    assert len(flags) > 25 and not [f for f in flags if f"`{f}" not in usage]


def test_config_files_are_bounded_and_may_start_with_a_bom(tmp_path):
    from flowsim.sweeps import Sweep

    for read in (RunConfig.from_toml, Sweep.from_toml):
        with pytest.raises(ConfigError, match="is not a regular file"):
            read("/dev/zero")
    big = tmp_path / "big.toml"
    big.write_text("# " + "x" * 2**20 + "\n")
    with pytest.raises(ConfigError, match="larger than 1 MB"):
        RunConfig.from_toml(big)
    bom = tmp_path / "bom.toml"
    bom.write_bytes("\ufeffn = 18\n".encode())
    assert RunConfig.from_toml(bom).n == 18


def test_messages_cut_what_they_echo(tmp_path):
    key = tmp_path / "key.toml"
    key.write_text("k" * 900_000 + " = 1\n")
    for make in (lambda: RunConfig.from_toml(key), lambda: RunConfig().merge({"counts": [0] * 2_000_000}),
                 lambda: RunConfig().merge({"n": "9" * 10**6})):
        with pytest.raises(ConfigError) as e:
            make()
        assert len(str(e.value)) < 400, str(e.value)[:400]


def test_a_lock_refuses_a_second_writer_and_is_released(tmp_path):
    from flowsim import lock

    with lock.claim(tmp_path):
        with pytest.raises(ConfigError, match=f"in use by pid {os.getpid()} on host {socket.gethostname()}"):
            with lock.claim(tmp_path):
                pass
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(RuntimeError), lock.claim(tmp_path):
        raise RuntimeError
    assert list(tmp_path.iterdir()) == []


def test_a_stale_lock_is_taken_over_and_a_foreign_one_refused(tmp_path):
    from flowsim import lock

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    record = {"pid": int(gone.stdout), "host": socket.gethostname(), "started": "2025-01-01T00:00:00"}
    (tmp_path / "flowsim.lock").write_text(json.dumps(record))
    with lock.claim(tmp_path):
        assert json.loads((tmp_path / "flowsim.lock").read_text())["pid"] == os.getpid()
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "flowsim.lock").write_text(json.dumps(record | {"host": "elsewhere"}))
    with pytest.raises(ConfigError, match="in use by pid .* on host elsewhere"), lock.claim(tmp_path):
        pass
