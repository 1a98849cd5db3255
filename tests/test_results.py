"""Result files and configuration, without integrating: round trips, atomic and deterministic writes, merging."""

import ast
import dataclasses
import io
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import equinox as eqx
import jax
import numpy as np
import pytest

import flowsim
from flowsim import results
from flowsim.config import ConfigError, RunConfig
from flowsim.models.cooccurrence.flow import FlowResult

TINY = dict(n=12, L=4, d=8, m=8, m1=8, t_end=2.0, saves=7, chunk=3, n_test=50, engine="params")


def fake_result(cfg, dataset, params, rows, status="running", chunks=1):
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
        grid=flowsim.save_times(cfg.t_end, cfg.saves), chunks_done=chunks,
        state=(moved.W, moved.W_V, moved.W_K, moved.W_Q), options=cfg.flow_options(),
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
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.eqx", "run.json", "state.npz", "trajectory.parts"]

    run = flowsim.load(tmp_path)
    assert run.config == cfg and run.status == "running" and run.meta["wall_time_s"] == 1.5
    assert run.meta["events"] == result.events and run.meta["stats"] == result.stats
    np.testing.assert_array_equal(run.result.ts, result.ts)
    assert run.result.observables.keys() == result.observables.keys()
    for k, v in result.observables.items():
        np.testing.assert_array_equal(run.result.observables[k], v)
    for name in ("W", "W_V", "W_K", "W_Q", "a"):
        np.testing.assert_array_equal(getattr(run.params_init, name), getattr(params, name))
        assert getattr(run.params_init, name).dtype == np.float64
    assert run.result.params_final is None  # known when the run ends; the checkpoint holds the state
    for got, want in zip(run.result.state, result.state):
        np.testing.assert_array_equal(got, want)
    for name in ("tokens", "labels", "groups", "embedding"):
        np.testing.assert_array_equal(getattr(run.dataset, name), getattr(dataset, name))

    done = fake_result(cfg, dataset, params, rows=7, status="complete", chunks=2)
    results.save(tmp_path, cfg, dataset, params, done, wall_time=2.0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json", "state.npz", "trajectory.npz"]
    run = flowsim.load(tmp_path)
    for name in ("W", "W_V", "W_K", "W_Q", "a"):
        np.testing.assert_array_equal(getattr(run.result.params_final, name), getattr(done.params_final, name))
    np.testing.assert_array_equal(run.result.observables["G"], done.observables["G"])


def test_complete_result_drops_checkpoint_and_interrupt_keeps_it(built, tmp_path):
    cfg, dataset, params = built
    results.save(tmp_path, cfg, dataset, params, fake_result(cfg, dataset, params, rows=4), wall_time=1.0)
    message = results.mark_interrupted(tmp_path, wall_time=2.0)
    meta = json.loads((tmp_path / "run.json").read_text())
    assert meta["status"] == "interrupted" and meta["message"] == message and "--resume" in message
    assert (tmp_path / "checkpoint.eqx").exists()
    results.save(tmp_path, cfg, dataset, params, fake_result(cfg, dataset, params, rows=7, status="complete", chunks=2), 3.0)
    assert not (tmp_path / "checkpoint.eqx").exists() and not (tmp_path / "trajectory.parts").exists()
    assert flowsim.load(tmp_path).result.state is None


def test_checkpoint_from_another_chunk_is_refused(built, tmp_path, monkeypatch):
    cfg, dataset, params = built
    results.save(tmp_path, cfg, dataset, params, fake_result(cfg, dataset, params, rows=4), wall_time=1.0)
    # killed after the next checkpoint but before run.json was replaced
    monkeypatch.setattr(results, "write_json", lambda path, meta: None)
    results.save(tmp_path, cfg, dataset, params, fake_result(cfg, dataset, params, rows=7, chunks=2), wall_time=1.0)
    with pytest.raises(ConfigError, match="damaged checkpoint .*from chunk 2 but run.json says 1.*--resume"):
        flowsim.load(tmp_path)


def test_damaged_directory_is_refused_cleanly(built, tmp_path):
    cfg, dataset, params = built
    results.save(tmp_path, cfg, dataset, params, fake_result(cfg, dataset, params, rows=4), wall_time=1.0)
    (tmp_path / "trajectory.parts" / "000001.npz").write_bytes(b"not a zip")
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
    c = np.sqrt(0.005 / np.sqrt(2 * np.log(2 * 4 * 18 / 0.1)))  # Lemma D.8's bound at 0.01, written out
    assert resolved.counts == (9, 3, 3, 3)
    assert resolved.sigma0 == pytest.approx(c / np.sqrt(4 * 64), rel=1e-12) and resolved.c1 == pytest.approx(c, rel=1e-12)
    for a, b in zip(jax.tree.leaves(cfg.build()[:2]), jax.tree.leaves(resolved.build()[:2])):
        np.testing.assert_array_equal(a, b)
        assert a.dtype == b.dtype


def test_docs_name_every_file_key_and_flag(built, tmp_path, capsys):
    cfg, dataset, params = built
    results.save(tmp_path, cfg, dataset, params, fake_result(cfg, dataset, params, rows=7, status="complete", chunks=2), 1.0)
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
    flags = set(re.findall(r"(--[A-Za-z][A-Za-z0-9-]*)", capsys.readouterr().out)) - {"--help"}
    assert len(flags) > 25 and not [f for f in flags if f"`{f}" not in usage]


def _complete(built, path):
    cfg, dataset, params = built
    path.mkdir(exist_ok=True)
    results.save(path, cfg, dataset, params, fake_result(cfg, dataset, params, rows=7, status="complete", chunks=2), 1.0)


def _edit_config(path, **changes):
    meta = json.loads((path / "run.json").read_text())
    meta["config"] |= changes
    (path / "run.json").write_text(json.dumps(meta))


@pytest.mark.parametrize("edit, match", [
    (dict(seed=5), "configuration differs .* edited"),
    (dict(m=16), "configuration differs .* edited"),
    (dict(t_end=4.0), "configuration differs .* edited"),
    (dict(n=18), r"tokens has shape \(12, 4\) .* needs \(18, 4\)"),
])
def test_an_edited_run_json_is_refused(built, tmp_path, edit, match):
    _complete(built, tmp_path)
    _edit_config(tmp_path, **edit)
    with pytest.raises(ConfigError, match=match) as e:
        flowsim.load(tmp_path)
    assert "\n" not in str(e.value)


def test_a_state_of_another_seed_is_refused(built, tmp_path):
    _complete(built, tmp_path / "run")
    cfg = built[0]
    other = dataclasses.replace(cfg, seed=5)
    dataset, params, _ = other.build()
    _complete((other, dataset, params), tmp_path / "other")
    (tmp_path / "other" / "state.npz").replace(tmp_path / "run" / "state.npz")
    with pytest.raises(ConfigError, match="does not hold the data and start the run was written with"):
        flowsim.load(tmp_path / "run")


def _damage_nan(path):
    cfg = flowsim.load(path)
    state = jax.tree.map(lambda x: np.full(np.shape(x), np.nan), cfg.result.state)
    eqx.tree_serialise_leaves(path / "checkpoint.eqx", (np.asarray(1), np.asarray(0.1), state))


@pytest.mark.parametrize("damage, why", [
    (_damage_nan, "non-finite"),
    (lambda p: (p / "checkpoint.eqx").write_bytes((p / "checkpoint.eqx").read_bytes()[:100]), "unreadable"),
    (lambda p: (p / "checkpoint.eqx").write_bytes(np.random.default_rng(0).bytes(3000)), "unreadable"),
    (lambda p: (p / "checkpoint.eqx").write_bytes((p / "checkpoint.eqx").read_bytes() + b"\0"), "shapes"),
], ids=["nan", "truncated", "random", "trailing"])
def test_a_damaged_checkpoint_is_refused(built, tmp_path, damage, why):
    cfg, dataset, params = built
    results.save(tmp_path, cfg, dataset, params, fake_result(cfg, dataset, params, rows=4), wall_time=1.0)
    damage(tmp_path)
    with pytest.raises(ConfigError, match=f"damaged checkpoint .*{why}.*delete it and run flowsim integrate --resume"):
        flowsim.load(tmp_path)


def test_checkpoint_writes_do_not_grow_with_the_saves_done(built, tmp_path, monkeypatch):
    """Each checkpoint writes what its chunk added (and the fixed-size solver state), not the
    whole trajectory again: 29 checkpoints of a 61-save run all write about the same bytes."""
    cfg = dataclasses.replace(built[0], saves=61, chunk=2)
    _, dataset, params = built
    written, write = [0], results.atomic_write

    def counting(path, fill):
        write(path, fill)
        written[0] += path.stat().st_size

    monkeypatch.setattr(results, "atomic_write", counting)
    results.save(tmp_path, cfg, dataset, params, None, 0.0)
    per_checkpoint = []
    for k in range(1, 30):
        written[0] = 0
        result = fake_result(cfg, dataset, params, rows=1 + 2 * k, chunks=k)  # t = 0, then 2 saves a chunk
        results.save(tmp_path, cfg, dataset, params, result, 0.0)
        per_checkpoint.append(written[0])
    assert max(per_checkpoint) < 1.25 * min(per_checkpoint), per_checkpoint
    assert flowsim.load(tmp_path).result.ts.shape == (59,)


def test_a_lock_refuses_a_second_writer_and_is_released(tmp_path):
    from flowsim.core import lock

    with lock.claim(tmp_path):
        with pytest.raises(ConfigError, match=f"in use by pid {os.getpid()} on host {socket.gethostname()}"):
            with lock.claim(tmp_path):
                pass
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(RuntimeError), lock.claim(tmp_path):
        raise RuntimeError
    assert list(tmp_path.iterdir()) == []


def test_a_stale_lock_is_taken_over_and_a_foreign_one_refused(tmp_path):
    from flowsim.core import lock

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    record = {"pid": int(gone.stdout), "host": socket.gethostname(), "started": "2025-01-01T00:00:00"}
    (tmp_path / "flowsim.core.lock").write_text(json.dumps(record))
    with lock.claim(tmp_path):
        assert json.loads((tmp_path / "flowsim.core.lock").read_text())["pid"] == os.getpid()
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "flowsim.core.lock").write_text(json.dumps(record | {"host": "elsewhere"}))
    with pytest.raises(ConfigError, match="in use by pid .* on host elsewhere"), lock.claim(tmp_path):
        pass


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


def test_a_float32_checkpoint_reads_back(built, tmp_path):
    """A precision-32 run checkpoints a float32 state over the float64 data and start that
    RunConfig.build draws; both read back as written (was: the checkpoint refused as float64)."""
    cfg, dataset, params = built
    cfg = dataclasses.replace(cfg, precision=32, rtol=1e-5, atol=1e-7)  # what float32 can meet
    result = fake_result(cfg, dataset, params, rows=4)
    result.state = tuple(np.asarray(x, np.float32) for x in result.state)
    results.save(tmp_path, cfg, dataset, params, result, wall_time=1.0)
    run = flowsim.load(tmp_path)
    assert [x.dtype for x in run.result.state] == [np.float32] * 4
    assert run.dataset.labels.dtype == run.params_init.W.dtype == np.float64
    for got, want in zip(run.result.state, result.state):
        np.testing.assert_array_equal(got, want)
