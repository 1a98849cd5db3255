"""``flowsim integrate``: end-to-end runs, interrupt and resume, solver failure, bad input (exit 2, one line, nothing written)."""

import ast
import builtins
import contextlib
import errno
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import jax
import numpy as np
import pytest

import flowsim
from flowsim import cli, results
from flowsim.config import ConfigError

# One tiny configuration for every run (JAX compiles the flow once per configuration): the sizes
# and test set of the `tiny` fixture (tests/conftest.py) and 2 save slots per solve, so that these
# runs share their compiled programs with test_flow.py's chunked runs.  50 chunks leave a wide
# window for signalling a subprocess between its first checkpoint and its end.
TINY = ["--n", "12", "--L", "4", "--d", "8", "--m", "6", "--m1", "10", "--t-end", "2", "--saves", "101",
        "--chunk", "2", "--n-test", "64"]
COMMAND = [sys.executable, "-m", "flowsim.cli", "integrate"]
BYTE_EQUAL = ("trajectory.npz", "state.npz")


def tiny_config():
    """TINY as a RunConfig (the flags over the paper preset, as the command builds it)."""
    return flowsim.RunConfig.preset("paper").merge({f[2:].replace("-", "_"): v for f, v in zip(TINY[::2], TINY[1::2])})


def main(argv) -> int:
    try:
        return cli.main(argv)
    except SystemExit as e:  # argparse's own errors
        return e.code


def meta(path) -> dict:
    return json.loads((Path(path) / "run.json").read_text())


def assert_same_run(got, want):
    """Bit-identical arrays, and run.json equal but for the wall time."""
    for name in BYTE_EQUAL:
        assert (Path(got) / name).read_bytes() == (Path(want) / name).read_bytes(), name
    a, b = meta(got), meta(want)
    assert {k for k in a if a[k] != b[k]} == {"wall_time_s"}


@pytest.fixture(scope="module")
def sigint_run(reference, tmp_path_factory):
    """A CLI subprocess stopped by a real SIGINT once its first checkpoint is on disk.  It starts
    after the in-process reference run, so that it reads that run's exported and compiled
    programs from the session's cache instead of compiling them a second time."""
    out = tmp_path_factory.mktemp("sigint") / "run"
    proc = subprocess.Popen([*COMMAND, *TINY, "--out", str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)

    def interrupt_after_first_checkpoint():
        while proc.poll() is None:
            with contextlib.suppress(OSError, ValueError):
                if meta(out)["chunks_done"] >= 1:
                    proc.send_signal(signal.SIGINT)
                    return
            time.sleep(0.005)

    watcher = threading.Thread(target=interrupt_after_first_checkpoint)
    watcher.start()

    def finish():
        watcher.join(timeout=300)
        _, err = proc.communicate(timeout=300)
        return proc.returncode, err, out

    yield finish
    if proc.poll() is None:
        proc.kill()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted in-process ``flowsim integrate`` of TINY, and what it printed."""
    out = tmp_path_factory.mktemp("reference") / "run"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        rc = main(["integrate", *TINY, "--out", str(out)])
    return rc, stdout.getvalue(), out


def test_end_to_end_run(reference):
    rc, printed, out = reference
    assert rc == 0
    m = meta(out)
    assert m["status"] == "complete" and m["t_reached"] == 2.0 and m["chunks_done"] == m["n_chunks"] == 50
    assert f"T1 (phase1_end): {m['events']['phase1_end']:.6g}" in printed and str(out) in printed
    assert sorted(p.name for p in out.iterdir()) == ["run.json", "state.npz", "trajectory.npz"]
    assert m["config"]["counts"] == [6, 2, 2, 2] and m["config"]["sigma0"] == 0.5  # Kaiming sqrt(2/d)
    with np.load(out / "trajectory.npz", allow_pickle=False) as z:
        assert set(z.files) == {"t", *flowsim.OBSERVABLES}
        np.testing.assert_array_equal(z["t"], flowsim.save_times(2.0, 101))
        for key, (shape, _) in flowsim.OBSERVABLES.items():
            assert z[key].shape == (101, *ast.literal_eval(shape.replace("d", "8"))), key
        assert np.all(np.diff(z["loss"]) <= 1e-12)  # gradient flow never increases the loss (spec 7.4)


# Reads a result directory with numpy and json alone and recomputes the final training loss from
# state.npz with Eq. (1) written out independently of flowsim.
NUMPY_ONLY = textwrap.dedent("""
    import json, sys
    import numpy as np
    run = json.load(open(sys.argv[1] + "/run.json"))
    s = np.load(sys.argv[1] + "/state.npz", allow_pickle=False)
    tr = np.load(sys.argv[1] + "/trajectory.npz", allow_pickle=False)
    E, W, V, K, Q, a = (s[k] for k in ("embedding", "W_final", "W_V_final", "W_K_final", "W_Q_final", "a"))
    X = E[:, s["tokens"]].transpose(1, 0, 2)                       # n x d x L
    logits = np.einsum("md,ndk,me,nel->nkl", K, X, Q, X) / np.sqrt(V.shape[0])
    attn = np.exp(logits - logits.max(1, keepdims=True)); attn /= attn.sum(1, keepdims=True)
    F = np.einsum("j,jm,md,ndk,nkl->n", a, W, V, X, attn)
    loss = np.mean(np.log1p(np.exp(-s["labels"] * F)))
    assert "jax" not in sys.modules
    print(json.dumps([run["status"], float(loss), float(tr["loss"][-1])]))
""")


def test_files_load_with_numpy_alone(reference):
    out = reference[2]
    done = subprocess.run([sys.executable, "-c", NUMPY_ONLY, str(out)], capture_output=True, text=True, check=True)
    status, recomputed, recorded = json.loads(done.stdout)
    assert status == "complete"
    assert recomputed == pytest.approx(recorded, rel=1e-10)
    with np.load(out / "state.npz", allow_pickle=False) as s:
        assert np.all((s["labels"] == 1) == (s["groups"] == 1))
        assert np.bincount(s["groups"], minlength=5)[1:].tolist() == [6, 2, 2, 2]


def test_load_reads_back_the_files(reference):
    out = reference[2]
    run = flowsim.load(out)
    m = meta(out)
    assert run.status == "complete" and run.result.events == m["events"] and run.result.stats == m["stats"]
    assert run.config.to_dict() == m["config"]
    with np.load(out / "trajectory.npz") as z:
        np.testing.assert_array_equal(run.result.ts, z["t"])
        for k in flowsim.OBSERVABLES:
            np.testing.assert_array_equal(run.result.observables[k], z[k])
    with np.load(out / "state.npz") as s:
        np.testing.assert_array_equal(run.result.params_final.W_Q, s["W_Q_final"])
        np.testing.assert_array_equal(run.dataset.tokens, s["tokens"])
    # the trajectory starts at the drawn initialization: the loss at t = 0 from flowsim's own model
    with jax.enable_x64(True):
        loss0 = float(flowsim.loss(run.params_init, run.dataset))
    assert loss0 == pytest.approx(run.result.observables["loss"][0], rel=1e-12)


def test_sigint_subprocess_then_resume_equals_uninterrupted(sigint_run, reference):
    rc, err, out = sigint_run()
    assert rc == 130, err
    assert err.strip().splitlines()[-1].startswith("flowsim integrate: interrupted at t=")
    m = meta(out)
    assert m["status"] == "interrupted" and 1 <= m["chunks_done"] < m["n_chunks"]
    assert "--resume" in m["message"] and (out / "checkpoint.eqx").exists()
    assert len(flowsim.load(out).result.ts) == m["saves_done"] == 1 + 2 * m["chunks_done"]

    assert main(["integrate", "--resume", str(out), "--quiet"]) == 0
    assert_same_run(out, reference[2])
    assert not (out / "checkpoint.eqx").exists()


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_during_checkpoint_stops_cleanly(signum, code, reference, tmp_path, monkeypatch, capsys):
    """A signal that arrives while a checkpoint is being written is held until the files are
    complete, then stops the run; resuming gives the uninterrupted files."""
    write = results.save

    def save_then_signal(path, config, dataset, params, result, wall_time):
        if result is not None and result.chunks_done == 3:
            os.kill(os.getpid(), signum)  # arrives in the middle of this checkpoint
        write(path, config, dataset, params, result, wall_time)

    monkeypatch.setattr(results, "save", save_then_signal)
    out = tmp_path / "run"
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    assert main(["integrate", *TINY, "--out", str(out), "--quiet"]) == code
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers  # restored
    assert capsys.readouterr().err.count("\n") == 1
    m = meta(out)
    assert m["status"] == "interrupted" and m["chunks_done"] == 3
    monkeypatch.setattr(results, "save", write)
    flowsim.resume(out)
    assert_same_run(out, reference[2])


def test_rerun_with_force_gives_identical_files(reference, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main(["integrate", *TINY, "--out", str(out), "--quiet"]) == 2  # not empty, no --force
    assert main(["integrate", *TINY, "--out", str(out), "--quiet", "--force"]) == 0
    assert_same_run(out, reference[2])
    assert (out / "notes.txt").read_text() == "mine"


def test_solver_failure_exits_1_with_partial_files(reference, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["integrate", *TINY, "--max-steps", "20", "--out", str(out), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "failed" in err and "max_steps" in err
    m = meta(out)
    t = float(re.search(r"at t=([-+.eE0-9]+)", err).group(1))
    assert m["status"] == "failed" and m["t_reached"] == pytest.approx(t, rel=1e-5) and 0 < t < 2
    assert m["stats"]["steps"] >= 20 and not (out / "checkpoint.eqx").exists()
    with np.load(out / "trajectory.npz") as z:
        assert 1 < len(z["t"]) < 101 and z["t"][-1] <= m["t_reached"]
    # the reference run took these saves with more steps allowed: the same numbers up to there
    with np.load(out / "trajectory.npz") as z, np.load(reference[2] / "trajectory.npz") as ref:
        np.testing.assert_allclose(z["loss"], ref["loss"][: len(z["t"])], rtol=1e-12)
    assert main(["integrate", "--resume", str(out)]) == 2


def _config(tmp_path, text):
    path = tmp_path / "c.toml"
    path.write_text(text)
    return str(path)


# (arguments, a piece of the message: the option named)
BAD = [
    (["--n", "0"], "--n: must be an integer >= 1"),
    (["--n", "-3"], "--n"),
    (["--n", "abc"], "--n: must be an integer"),
    (["--n", "2.5"], "--n"),
    (["--m", "0"], "--m:"),
    (["--m1", "-1"], "--m1:"),
    (["--d", "0"], "--d:"),
    (["--L", "2"], "--L: must be an integer >= 3"),
    (["--preset", "theory", "--d", "20"], "theory mode with n=12, L=4 uses every irrelevant word once and needs d >= 23"),
    (["--preset", "theory", "--n", "10"], "n divisible by 6"),
    (["--t-end", "0"], "--t-end: must be a positive finite number"),
    (["--t-end=-1"], "--t-end"),
    (["--t-end", "inf"], "--t-end"),
    (["--t-end", "nan"], "--t-end"),
    (["--t-end", "soon"], "--t-end"),
    (["--rtol", "0"], "--rtol"),
    (["--atol=-1e-9"], "--atol"),
    (["--sigma0", "0"], "--sigma0"),
    (["--solver", "euler"], "--solver: must be one of tsit5"),
    (["--init", "xavier"], "--init: must be one of kaiming, theory"),
    (["--preset", "huge"], "--preset"),
    (["--precision", "16"], "--precision: must be one of 64, 32"),
    (["--data-mode", "random"], "--data-mode"),
    (["--embedding", "onehot"], "--embedding"),
    (["--counts", "1,2,3"], "--counts"),
    (["--counts", "30,10,10,11"], "counts"),
    (["--saves", "1"], "--saves"),
    (["--seed", "-1"], "--seed"),
    (["--max-steps", "0"], "--max-steps"),
    (["--method", "gd", "--solver", "dopri5"], "--solver: only --method flow reads it; --method gd takes --lr, --steps"),
    (["--steps", "100"], "--steps: only --method gd reads it; --method flow takes --solver"),
    (["--bogus", "1"], "--bogus"),
    (["--n"], "--n"),
    (["--config", "{tmp}/missing.toml"], "missing.toml"),
    (["--config", "{tmp}"], "cannot read config file"),
    (["--config", "TOML:n = = 3"], "not valid TOML"),
    (["--config", "TOML:nn = 3"], "nn: unknown key"),
    (["--config", 'TOML:n = "many"'], "n: must be an integer"),
    (["--config", "TOML:n = true"], "n: must be an integer"),
    (["--config", "TOML:t_end = -5"], "t_end: must be a positive finite number"),
    (["--config", "TOML:preset = 3"], "preset"),
    (["--config", "TOML:[solver]\nname = 'x'"], "solver"),
    (["--config", "/dev/zero"], "is not a regular file"),
    (["--config", "TOML:#" + "x" * 2**20], "larger than 1 MB"),
    (["--n-test", "1000000000"], "n_test=1000000000 sequences of length L=4 over d=8 words needs about"),
    (["--out", "{tmp}/file.txt"], "not a directory"),
    (["--out", "{tmp}/full"], "already holds files"),
    (["--out", "{tmp}/file.txt/run"], "cannot create output directory"),
    (["--resume", "{tmp}/full", "--n", "12"], "--resume cannot be combined with --n"),
    (["--resume", "{tmp}/nothing"], "not a flowsim result directory"),
    (["--resume", "{tmp}/full"], "not a flowsim result directory"),
    # Sizes that cannot fit are refused before anything is allocated, with what would fit.
    (["--start", "matrices", "--m", "200000", "--m1", "200000"], "start='subspace'"),
    (["--start", "matrices", "--engine", "reduced", "--m", "50000", "--m1", "100"], "engine subspace"),
    (["--start", "subspace", "--engine", "reduced"], "needs the four matrices"),
    (["--m", "12.5"], "--m: must be an integer in [1, "),
    (["--saves", "10000000000"], "10000000000 saved times of every observable (d=8) needs about"),
]


@pytest.mark.parametrize("argv, named", BAD, ids=[" ".join(a)[:40] for a, _ in BAD])
def test_bad_input_exit_2_one_line_nothing_written(argv, named, reference, tmp_path, monkeypatch, capsys):
    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep").write_text("x")
    argv = [_config(tmp_path, a[5:]) if a.startswith("TOML:") else a.format(tmp=tmp_path) for a in argv]
    if "--resume" not in argv:
        argv = TINY + argv  # the sizes already drawn by the reference run: no new compilation
    before = sorted(tmp_path.rglob("*"))
    monkeypatch.chdir(tmp_path)  # the default output directory would be ./runs/...
    monkeypatch.setenv("FLOWSIM_MEMORY_LIMIT", "1G")  # memory refusals do not depend on the machine
    assert main(["integrate", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and re.match(r"flowsim( integrate)?: error: ", err), err
    assert named in err and "Traceback" not in err
    assert sorted(tmp_path.rglob("*")) == before


def test_resume_of_a_complete_run_is_refused(reference, capsys):
    out = reference[2]
    before = (out / "run.json").read_bytes()
    assert main(["integrate", "--resume", str(out)]) == 2
    assert "complete run" in capsys.readouterr().err
    assert (out / "run.json").read_bytes() == before


@pytest.mark.parametrize("argv, named", [(["--n", "abc"], "--n"), (["--preset", "theory", "--d", "20"], "d >= 33")])
def test_bad_input_in_a_real_process(argv, named, tmp_path):
    done = subprocess.run([*COMMAND, *argv], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and named in done.stderr and "Traceback" not in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_help_is_fast_and_does_not_import_jax():
    code = "import sys, flowsim.cli; flowsim.cli.build_parser().format_help(); print('jax' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
    help_text = subprocess.run([*COMMAND, "--help"], capture_output=True, text=True, check=True).stdout
    for f in ("--n", "--t-end", "--precision", "--resume", "--force", "--quiet", "--preset", "theory", "d >= 3"):
        assert f in help_text


def test_integrate_help_states_each_options_real_default():
    import argparse
    import dataclasses
    import math

    commands = next(a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    helps = {a.dest: a.help for a in commands.choices["integrate"]._actions}
    for f in dataclasses.fields(flowsim.RunConfig):
        assert helps[f.name].count("default") == 1, helps[f.name]
        if f.default is not None:
            assert helps[f.name].endswith(f"(default {f.default})"), helps[f.name]
    # What the texts of the defaults that depend on other fields say is what the library does.
    assert helps["steps"].endswith("(default round(t_end / lr))")
    gd = flowsim.RunConfig.preset("paper").merge({"method": "gd", "t_end": 3.0, "lr": 0.02}).resolved()
    assert gd.steps == round(3.0 / 0.02)
    assert "sqrt(2/d) for kaiming, c0/sqrt(L m) for the theory inits" in helps["sigma0"]
    assert "sqrt(2/m) for kaiming, c1/sqrt(m1) for the theory inits" in helps["sigma1"]
    d, m, m1, L = 10, 20, 30, 5
    assert flowsim.init_scales("kaiming", d=d, m=m, m1=m1) == (math.sqrt(2 / d), math.sqrt(2 / m))
    assert flowsim.init_scales("theory-unit", d=d, m=m, m1=m1, L=L) == (1 / math.sqrt(L * m), 1 / math.sqrt(m1))
    c = math.sqrt(0.005 / math.sqrt(2 * math.log(2 * L * 18 / 0.1)))  # the help's c0 default, written out
    assert "sqrt(0.005 / sqrt(2 log(2 L n / delta)))" in helps["c0"]
    assert flowsim.init_scales("theory", d=d, m=m, m1=m1, L=L, n=18) == pytest.approx(
        (c / math.sqrt(L * m), c / math.sqrt(m1)), rel=1e-12)
    assert "n/2, n/6, n/6, n/6" in helps["counts"]
    assert flowsim.RunConfig.preset("paper").merge({"n": 12}).resolved().counts == (6, 2, 2, 2)


@pytest.fixture(scope="module")
def interrupted(reference, tmp_path_factory):
    """TINY stopped by Ctrl-C right after its second checkpoint (status interrupted)."""
    out = tmp_path_factory.mktemp("interrupted") / "run"
    write = results.save

    def save_then_stop(path, config, dataset, params, result, wall_time):
        write(path, config, dataset, params, result, wall_time)
        if result is not None and result.chunks_done == 2:
            raise KeyboardInterrupt

    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stderr(io.StringIO()):
        patch.setattr(results, "save", save_then_stop)
        assert main(["integrate", *TINY, "--out", str(out), "--quiet"]) == 130
    return out


def copy_of(run, tmp_path):
    shutil.copytree(run, tmp_path / "run")
    return tmp_path / "run"


def one_error_line(capsys, *pieces):
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for piece in pieces:
        assert piece in err, err
    return err


def test_a_damaged_checkpoint_is_refused_and_deleting_it_restarts(interrupted, reference, tmp_path, capsys):
    out = copy_of(interrupted, tmp_path)
    good, before = (out / "checkpoint.eqx").read_bytes(), (out / "run.json").read_bytes()
    run = flowsim.load(out)
    nan = jax.tree.map(lambda x: np.full(np.shape(x), np.nan), run.result.state)
    with open(out / "checkpoint.eqx", "wb") as f:
        import equinox as eqx

        eqx.tree_serialise_leaves(f, (np.asarray(2), np.asarray(run.result.dt_next), nan))
    nan_bytes = (out / "checkpoint.eqx").read_bytes()
    for damaged, why in ((nan_bytes, "non-finite"), (good[: len(good) // 2], "unreadable"),
                         (np.random.default_rng(0).bytes(len(good)), "unreadable")):
        (out / "checkpoint.eqx").write_bytes(damaged)
        assert main(["integrate", "--resume", str(out), "--quiet"]) == 2
        one_error_line(capsys, "damaged checkpoint", why, f"delete it and run flowsim integrate --resume {out}")
        assert (out / "run.json").read_bytes() == before
    with pytest.raises(ConfigError, match="damaged checkpoint"):  # from Python: refused, not a ValueError mid-run
        flowsim.resume(out)
    (out / "checkpoint.eqx").unlink()
    assert main(["integrate", "--resume", str(out), "--quiet"]) == 0
    assert_same_run(out, reference[2])


def test_an_edited_run_json_is_refused(interrupted, reference, tmp_path, capsys):
    out = copy_of(interrupted, tmp_path)
    m = meta(out)
    m["config"]["seed"] = 5
    (out / "run.json").write_text(json.dumps(m))
    assert main(["integrate", "--resume", str(out), "--quiet"]) == 2
    one_error_line(capsys, "edited")
    done = copy_of(reference[2], tmp_path / "done")
    m = meta(done)
    m["config"]["t_end"] = 4.0
    (done / "run.json").write_text(json.dumps(m))
    assert main(["report", str(done)]) == 2
    one_error_line(capsys, "flowsim report: error:", "edited")


def test_a_full_disk_exits_74_and_the_run_resumes(reference, tmp_path, monkeypatch, capsys):
    out, calls, write = tmp_path / "run", [], results.write_npz

    def fill_up(f, arrays):
        calls.append(1)
        if len(calls) == 5:  # state.npz, then the parts of chunks 1-3; the 4th finds the disk full
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        write(f, arrays)

    monkeypatch.setattr(results, "write_npz", fill_up)
    assert main(["integrate", *TINY, "--out", str(out), "--quiet"]) == 74
    one_error_line(capsys, f"cannot write {out}/trajectory.parts/000004.npz: No space left on device",
                   f"flowsim integrate --resume {out}")
    m = meta(out)
    assert m["status"] == "interrupted" and m["chunks_done"] == 3 and "write error" in m["message"]
    monkeypatch.setattr(results, "write_npz", write)
    assert main(["integrate", "--resume", str(out), "--quiet"]) == 0
    assert_same_run(out, reference[2])


def run_together(count: int, monkeypatch, out=None) -> list:
    """``count`` TINY runs by ``flowsim.run`` into ``out`` in threads, held by a barrier until all
    have passed their checks (``RunConfig.build`` is the first step after the output check);
    each one's Run or exception."""
    checked, outcome = threading.Barrier(count, timeout=120), []
    build = flowsim.RunConfig.build
    monkeypatch.setattr(flowsim.RunConfig, "build", lambda self: (checked.wait(), build(self))[1])

    def one():
        try:
            outcome.append(flowsim.run(tiny_config(), out))
        except Exception as e:
            outcome.append(e)

    threads = [threading.Thread(target=one) for _ in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    return outcome


def test_two_runs_into_one_directory_one_wins(reference, tmp_path, monkeypatch):
    """Both runs pass the output check before either writes (a barrier holds them there); one
    of them must be refused, and the other's files are those of an undisturbed run."""
    out = tmp_path / "run"
    outcome = run_together(2, monkeypatch, out)
    refused = [e for e in outcome if isinstance(e, Exception)]
    assert len(outcome) == 2 and len(refused) == 1, outcome
    assert isinstance(refused[0], ConfigError) and re.search("in use by pid|already holds files", str(refused[0]))
    assert_same_run(out, reference[2])
    assert not (out / "flowsim.core.lock").exists()


def test_a_run_in_progress_keeps_a_resume_out(interrupted, tmp_path, capsys):
    out = copy_of(interrupted, tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        record = {"pid": holder.pid, "host": socket.gethostname(), "started": "2025-01-01T00:00:00"}
        (out / "flowsim.core.lock").write_text(json.dumps(record))
        before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
        assert main(["integrate", "--resume", str(out), "--quiet"]) == 2
        one_error_line(capsys, f"in use by pid {holder.pid} on host {socket.gethostname()}")
        assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    finally:
        holder.kill()
        holder.wait()
    assert main(["integrate", "--resume", str(out), "--quiet"]) == 0  # its holder gone, the lock is stale


def read_only(monkeypatch, root):
    """Make creating or writing anything under ``root`` fail as on a read-only file system (the
    tests run as root, whom chmod does not stop)."""
    root, real_open, real_os_open, real_mkdir = str(root), builtins.open, os.open, os.mkdir

    def guard(path, writing):
        if writing and os.path.abspath(os.fspath(path)).startswith(root):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fspath(path))

    def fake_open(file, mode="r", *args, **kwargs):
        if isinstance(file, (str, bytes, os.PathLike)):
            guard(file, any(c in mode for c in "wax+"))
        return real_open(file, mode, *args, **kwargs)

    def fake_os_open(path, flags, *args, **kwargs):
        guard(path, flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
        return real_os_open(path, flags, *args, **kwargs)

    def fake_mkdir(path, *args, **kwargs):
        guard(path, True)
        return real_mkdir(path, *args, **kwargs)

    for module, name, fake in ((builtins, "open", fake_open), (io, "open", fake_open),
                               (os, "open", fake_os_open), (os, "mkdir", fake_mkdir)):
        monkeypatch.setattr(module, name, fake)


def test_report_and_plot_of_a_read_only_directory(reference, tmp_path, monkeypatch, capsys):
    done = copy_of(reference[2], tmp_path)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "elsewhere"))
    (tmp_path / "elsewhere").mkdir()
    before = sorted(done.rglob("*"))
    read_only(monkeypatch, done)
    assert main(["report", str(done)]) == 0
    captured = capsys.readouterr()
    assert "Thm 3.1" in captured.out
    assert captured.err.count("\n") == 1 and "Read-only file system" in captured.err
    [report] = (tmp_path / "elsewhere").glob("flowsim-report-*/report.json")
    assert str(report.parent) in captured.err and json.loads(report.read_text())
    assert main(["plot", str(done), "--kinds", "loss", "--formats", "png"]) == 0
    captured = capsys.readouterr()
    [figure] = (tmp_path / "elsewhere").glob("flowsim-plot-*/loss.png")
    assert str(figure) in captured.out and str(figure.parent) in captured.err
    assert sorted(done.rglob("*")) == before


def test_an_unforeseen_error_ends_the_run_failed(reference, tmp_path, monkeypatch, capsys):
    """An exception other than a solver failure (here raised after the second checkpoint) is
    not left as status running: the run is recorded failed with the rows it had, exit 1."""
    from flowsim import runner

    integrate = runner.integrate

    def breaks_after_two_chunks(*args, callback, **kwargs):
        def save(result):
            callback(result)
            if result.chunks_done == 2:
                raise ValueError("something unforeseen")
        return integrate(*args, callback=save, **kwargs)

    monkeypatch.setattr(runner, "integrate", breaks_after_two_chunks)
    out = tmp_path / "run"
    assert main(["integrate", *TINY, "--out", str(out), "--quiet"]) == 1
    one_error_line(capsys, "ValueError: something unforeseen", "(status failed)")
    m = meta(out)
    assert m["status"] == "failed" and m["message"] == "ValueError: something unforeseen"
    assert sorted(p.name for p in out.iterdir()) == ["run.json", "state.npz", "trajectory.npz"]
    with np.load(out / "trajectory.npz") as z, np.load(reference[2] / "trajectory.npz") as ref:
        assert len(z["t"]) == m["saves_done"] == 5
        np.testing.assert_array_equal(z["loss"], ref["loss"][:5])
    with pytest.raises(flowsim.FlowFailure, match="something unforeseen"):  # from Python
        flowsim.run(tiny_config(), tmp_path / "python")
