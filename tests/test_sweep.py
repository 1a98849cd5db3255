"""``flowsim sweep``: batched grid points against separate runs, resume, failures, device sharding."""

import contextlib
import io
import json
import os
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

import flowsim
from flowsim import cli
from flowsim.sweeps import Sweep, sweep

COMMAND = [sys.executable, "-m", "flowsim.cli", "sweep"]
# The `tiny` fixture's sizes, test set and save slots (tests/conftest.py): a lone point is the
# plain run of test_flow.py, and its compiled programs serve here too.  The grid's two horizons
# make two batches (t_end is not batch-free) of one shape, so the batched solve is one program.
BASE = 'n = 12\nL = 4\nd = 8\nm = 6\nm1 = 10\nt_end = 2.0\nsaves = 41\nn_test = 64\n'
GRID = "t_end = [1.0, 2.0]\nseed = [0, 1]\n"


def sweep_file(tmp_path, grid=GRID, base=BASE):
    path = tmp_path / "sweep.toml"
    path.write_text(base + "[grid]\n" + grid)
    return path


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    plan = Sweep.from_toml(sweep_file(root))
    # batch=2: each horizon's two seeds in one batched solve (the CPU default is one solve per
    # point), on one device (the default would split it over the session's two).
    return plan, root / "out", sweep(plan, root / "out", batch=2, devices=jax.devices()[:1])


def test_points_equal_separate_runs(swept):
    plan, out, index = swept
    assert [p["status"] for p in index["points"]] == ["complete"] * 4
    for point, entry in zip(plan.points(), index["points"]):
        data, params, test_key = point.config.build()
        alone = flowsim.integrate(params, data, test_key=test_key, options=point.config.flow_options())
        # The batch shares one step-size sequence: agreement is to the integration tolerance.
        np.testing.assert_allclose(entry["final_loss"], alone.observables["loss"][-1], rtol=1e-6)
        np.testing.assert_allclose(entry["final_test_loss"], alone.observables["test_loss"][-1], rtol=1e-6)
        saved = np.load(out / entry["path"] / "trajectory.npz")
        np.testing.assert_allclose(saved["G"][-1], alone.observables["G"][-1], rtol=1e-5, atol=1e-7)
        if alone.events["phase1_end"] is not None:
            assert entry["events"]["phase1_end"] == pytest.approx(alone.events["phase1_end"], rel=1e-5)
        assert list(entry["verdicts"]) == list(flowsim.CLAIMS)  # keyed by claim id, in paper order
        assert set(entry["verdicts"].values()) <= {"holds", "does not hold", "not applicable", "judged on a sweep"}


def test_index_files_and_rerun_skips_finished_points(swept):
    plan, out, index = swept
    table = np.load(out / "sweep.npz")
    assert list(table["t_end"]) == [1.0, 1.0, 2.0, 2.0] and list(table["seed"]) == [0, 1, 0, 1]
    np.testing.assert_array_equal(table["final_loss"], [p["final_loss"] for p in index["points"]])
    stamps = [os.stat(out / p["path"] / "run.json").st_mtime_ns for p in index["points"]]
    again = sweep(plan, out, batch=2)
    assert [os.stat(out / p["path"] / "run.json").st_mtime_ns for p in again["points"]] == stamps
    assert json.loads((out / "sweep.json").read_text())["points"] == again["points"]


@pytest.fixture(scope="module")
def single(swept, tmp_path_factory):
    """The same sweep with one solve per point (the CPU default)."""
    out = tmp_path_factory.mktemp("single") / "out"
    return out, sweep(swept[0], out, verdicts=False)


def test_one_solve_per_point_equals_the_batched_sweep(swept, single):
    _, _, index = swept
    np.testing.assert_allclose([p["final_loss"] for p in single[1]["points"]],
                               [p["final_loss"] for p in index["points"]], rtol=1e-6)


def test_a_failing_batch_is_recorded_and_the_rest_runs(tmp_path):
    # 2 save slots per solve and max_steps=20: the compiled solves of test_cli.py's runs.
    plan = Sweep.from_toml(sweep_file(tmp_path, "max_steps = [20, 100000]\n", BASE + "chunk = 2\n"))
    index = sweep(plan, tmp_path / "out", verdicts=False)
    first, second = index["points"]
    assert first["status"] == "failed" and "step limit" in first["message"]
    assert second["status"] == "complete"


def test_cli_sweep_and_bad_input(tmp_path):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = cli.main(["sweep", "--config", str(sweep_file(tmp_path, "seed = [0, 0]\n")), "--out", str(tmp_path / "o")])
    assert rc == 2 and "values must be distinct" in err.getvalue() and not (tmp_path / "o").exists()
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        rc = cli.main(["sweep", "--config", str(sweep_file(tmp_path, "seed = [3]\n")), "--out", str(tmp_path / "s"),
                       "--quiet"])
    assert rc == 0 and json.loads((tmp_path / "s" / "sweep.json").read_text())["points"][0]["status"] == "complete"
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = cli.main(["sweep", "--config", str(sweep_file(tmp_path, "seed = [4]\n")), "--out", str(tmp_path / "s")])
    assert rc == 2 and "holds a different sweep" in err.getvalue()
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = cli.main(["sweep", "--config", str(sweep_file(tmp_path)), "--num-processes", "2"])
    assert rc == 2 and "need --distributed" in err.getvalue()


@pytest.mark.slow
def test_two_forced_host_devices_give_the_same_points(swept, tmp_path):
    """The batch split over 2 XLA host devices (jax.sharding; tests/conftest.py gives the
    session two) against the one-device sweep."""
    plan, out, index = swept
    assert len(jax.devices()) == 2
    sharded = sweep(plan, tmp_path / "sharded", batch=2, devices=jax.devices(), verdicts=False)
    np.testing.assert_allclose([p["final_loss"] for p in sharded["points"]],
                               [p["final_loss"] for p in index["points"]], rtol=1e-9)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(condition, procs, what, timeout=240):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline or any(p.poll() not in (None, 0) for p in procs):
            for p in procs:
                p.kill()
            pytest.fail(f"waiting for {what}: " + " | ".join(p.stderr.read()[-1500:] for p in procs))
        time.sleep(0.01)


def _complete(out, name) -> bool:
    with contextlib.suppress(OSError, ValueError):
        return json.loads((out / "points" / name / "run.json").read_text())["status"] == "complete"
    return False


@pytest.mark.slow
def test_distributed_sweep_over_two_processes(single, tmp_path):
    """``flowsim sweep --distributed`` as two real processes (jax.distributed, CPU collectives,
    coordinator on 127.0.0.1), one point each.  Process 1 is killed while it integrates its
    point, and process 0, left waiting at the final barrier, is killed too (as a job scheduler
    would); the finished point stays as it is, and the same command again finishes the sweep,
    point for point equal to the single-process one."""
    config, out = sweep_file(tmp_path, "t_end = [2.0]\nseed = [0, 1]\n"), tmp_path / "dist"
    names = ["t_end=2_seed=0", "t_end=2_seed=1"]  # dealt round-robin: one to each process

    def launch():
        port = _free_port()
        return [subprocess.Popen([*COMMAND, "--config", str(config), "--out", str(out), "--quiet", "--distributed",
                                  "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2", "--process-id", str(i)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]

    procs = launch()
    _wait_for(lambda: (out / "points" / names[1] / "flowsim.core.lock").exists(), procs, "process 1's point")
    procs[1].kill()
    _wait_for(lambda: _complete(out, names[0]), procs[:1], "process 0's point")
    procs[0].kill()
    for p in procs:
        p.communicate()
    assert not _complete(out, names[1])
    finished = (out / "points" / names[0] / "trajectory.npz").read_bytes()

    procs = launch()
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-2000:]
    assert (out / "points" / names[0] / "trajectory.npz").read_bytes() == finished
    index = json.loads((out / "sweep.json").read_text())
    assert [p["status"] for p in index["points"]] == ["complete"] * 2
    for name in names:
        with np.load(out / "points" / name / "trajectory.npz") as got, \
                np.load(single[0] / "points" / name / "trajectory.npz") as want:
            assert got.files == want.files
            for key in want.files:
                np.testing.assert_array_equal(got[key], want[key], err_msg=f"{name} {key}")
