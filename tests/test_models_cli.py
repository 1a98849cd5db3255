"""A user's model from the command line: integrate, report, plot, resume after Ctrl-C, damaged files and bad input refused, a sweep over seeds."""

import contextlib
import io
import json
import math
import os
import shutil
import signal
import sys
import zipfile
from pathlib import Path

import jax
import numpy as np
import pytest

import flowsim
from flowsim import cli, models
from flowsim import model_runs as runs

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
# One size everywhere (each distinct shape is a compilation): tests/test_models.py's teacher-student
# problem, 9 saves in 4 chunks of 2, so that a run can be stopped after its first checkpoint.
MODEL = ["--model", "teacher_student:make_model", "--model-option", "width=4", "--model-option", "n=16",
         "--scheme", "standard", "--t-end", "50", "--saves", "9", "--chunk", "2"]
SEED = ["--seed", "1"]


@contextlib.contextmanager
def in_examples():
    """Run from examples/, as a user of the tutorial does: the CLI puts the current directory on
    sys.path for ``module:factory`` (undone afterwards)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(EXAMPLES)
        patch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(EXAMPLES))])
        yield


def main(argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with in_examples(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = cli.main([str(a) for a in argv])
        except SystemExit as e:  # argparse's own errors
            rc = e.code
    return rc, out.getvalue(), err.getvalue()


def example_model():
    with in_examples():
        sys.path.insert(0, str(EXAMPLES))
        return models.load("teacher_student:make_model", width=4, n=16)


def meta(path) -> dict:
    return json.loads((Path(path) / "run.json").read_text())


def one_line(err: str, *pieces) -> None:
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for piece in pieces:
        assert piece in err, err


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted ``flowsim integrate --model`` of the example, and what it printed."""
    out = tmp_path_factory.mktemp("model") / "run"
    rc, printed, _ = main(["integrate", *MODEL, *SEED, "--out", out])
    assert rc == 0
    return out, printed


def student_loss(W, a, x, y) -> float:
    """The example's loss written out with numpy and math.erf (independent of its JAX code)."""
    erf = np.vectorize(math.erf)
    return 0.5 * np.mean((erf(x @ W.T / math.sqrt(2.0)) @ a - y) ** 2)


def test_integrate_writes_a_result_directory_that_numpy_can_check(reference):
    out, printed = reference
    m = meta(out)
    assert m["format"] == "flowsim-model-run" and m["status"] == "complete" and m["chunks_done"] == m["n_chunks"] == 4
    assert (m["model"], m["sizes"], m["seed"], m["scheme"]) == ("teacher_student:make_model", {"width": 4, "n": 16}, 1,
                                                                "standard")
    assert m["options"]["t_end"] == 50.0 and m["options"]["rtol"] == 1e-8 and m["versions"]["jax"] == jax.__version__
    assert sorted(p.name for p in out.iterdir()) == ["run.json", "state.npz", "trajectory.npz"]
    assert f"fits at t = {m['events']['fits']:.6g}" in printed and str(out) in printed
    with jax.enable_x64(True):
        params, (x, y) = models.draw(example_model(), 1, "standard")
    with np.load(out / "state.npz") as s, np.load(out / "trajectory.npz") as tr:
        assert set(tr.files) == {"t", "loss", "grad_norm2", "teacher_alignment"}
        np.testing.assert_array_equal(tr["t"], flowsim.save_times(50.0, 9))
        np.testing.assert_array_equal(s["init.W"], params.W)
        np.testing.assert_array_equal(s["init.a"], params.a)
        x, y = np.asarray(x), np.asarray(y)
        assert tr["loss"][0] == pytest.approx(student_loss(s["init.W"], s["init.a"], x, y), rel=1e-12)
        assert tr["loss"][-1] == pytest.approx(student_loss(s["final.W"], s["final.a"], x, y), rel=1e-12)
        assert tr["loss"][-1] < 1e-2 * tr["loss"][0] < tr["loss"][tr["t"] < m["events"]["fits"]].min()


def test_report_judges_the_models_claims(reference, tmp_path):
    out, _ = reference
    rc, printed, err = main(["report", out, "--out", tmp_path])
    assert rc == 0, err
    rows = json.loads((tmp_path / "report.json").read_text())
    assert [(r["id"], r["verdict"]) for r in rows] == [("teacher_student.loss_decreases", "holds")]
    assert "[HOLDS" in printed and "teacher_student.loss_decreases" in printed
    with np.load(out / "trajectory.npz") as tr:
        assert np.all(np.diff(tr["loss"]) <= 0)  # what the claim says, seen with numpy
    # The same claim on a trajectory whose loss rises does not hold: the check can fail.
    [c] = example_model().claims()
    assert not c.check({"loss": np.array([1.0, 0.5, 0.6])}, None)[0]


def test_plot_draws_every_observable_with_the_events(reference, tmp_path):
    out, _ = reference
    rc, printed, err = main(["plot", out, out, "--labels", "a", "b", "--out", tmp_path, "--formats", "png"])
    assert rc == 0, err
    assert printed.split() == [str(tmp_path / "observables.png")]
    import matplotlib.image

    height, width = matplotlib.image.imread(tmp_path / "observables.png").shape[:2]
    assert 1500 <= width <= 1900 and height <= 1100  # a slide: about 12 x 7 inches at 150 dpi
    from flowsim import model_plotting as plotting

    run = runs.load(out)
    [fig] = plotting.figures([run.result], title="t", labels=["a"]).values()
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in axes] == ["loss", "grad_norm2", "teacher_alignment"]
    for ax in axes:
        assert ax.get_xscale() == "log"
        assert any(line.get_xdata()[0] == meta(out)["events"]["fits"] for line in ax.get_lines())


@pytest.fixture(scope="module")
def interrupted(reference, tmp_path_factory):
    """The reference run stopped by a real SIGINT that arrives while its first checkpoint is
    being written: held until the files are whole, then the run stops (exit 130)."""
    out = tmp_path_factory.mktemp("sigint") / "run"
    save = runs._Writer.save

    def save_then_signal(self, result, wall_time):
        if result is not None and result.chunks_done == 1:
            os.kill(os.getpid(), signal.SIGINT)
        save(self, result, wall_time)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(runs._Writer, "save", save_then_signal)
        rc, _, err = main(["integrate", *MODEL, *SEED, "--out", out, "--quiet"])
    assert rc == 130, err
    one_line(err, "interrupted at t=", "--resume")
    return out


def test_resume_after_ctrl_c_equals_the_uninterrupted_run(interrupted, reference, tmp_path):
    run = shutil.copytree(interrupted, tmp_path / "run")
    m = meta(run)
    assert m["status"] == "interrupted" and m["chunks_done"] == 1 and m["checkpoint"] == "checkpoint.000001.npz"
    # Kills at the two moments run.json lags its files: while the next checkpoint was being
    # written (a file run.json does not name), and after the last trajectory.npz and state.npz
    # (with the end's leaves) but before the last run.json.
    (run / "checkpoint.000002.npz").write_bytes(b"half a checkpoint")
    for name in ("trajectory.npz", "state.npz"):
        shutil.copy(reference[0] / name, run / name)
    rc, _, err = main(["integrate", "--resume", run, "--quiet"])
    assert rc == 0, err
    for name in ("trajectory.npz", "state.npz"):
        assert (run / name).read_bytes() == (reference[0] / name).read_bytes(), name
    a, b = meta(run), meta(reference[0])
    assert {k for k in a if a[k] != b[k]} == {"wall_time_s"}
    assert sorted(p.name for p in run.iterdir()) == ["run.json", "state.npz", "trajectory.npz"]


def damage(path: Path, how: str = "flipped") -> None:
    """A byte of the last array's values flipped (the archive's checksum no longer matches), the
    file cut short, or the archive ``edited``: rewritten whole, with one number changed."""
    data = bytearray(path.read_bytes())
    if how == "edited":
        with np.load(path) as z:
            arrays = {k: z[k] for k in z.files}
        arrays["loss"][-1] *= 1 + 1e-12
        np.savez(path, **arrays)
        return
    if how == "truncated":
        data = data[: len(data) // 2]
    else:
        with zipfile.ZipFile(path) as z:
            last = z.infolist()[-1]
        start = last.header_offset + 30 + len(last.filename.encode()) + len(last.extra)  # the local header's size
        data[start + last.file_size - 1] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("command, how", [("report", "edited"), ("plot", "edited"), ("report", "flipped"),
                                          ("plot", "truncated")])
def test_a_damaged_trajectory_is_refused_in_one_line(command, how, reference, tmp_path):
    run = shutil.copytree(reference[0], tmp_path / "run")
    damage(run / "trajectory.npz", how)
    rc, out, err = main([command, run])
    assert rc == cli.EXIT_USAGE and out == ""
    one_line(err, "trajectory.npz" if how == "edited" else "damaged")
    assert not (run / "plots").exists() and not (run / "report.json").exists()


def test_an_edited_run_json_and_a_damaged_checkpoint_are_refused(reference, interrupted, tmp_path):
    run = shutil.copytree(reference[0], tmp_path / "run")
    m = meta(run)
    (run / "run.json").write_text(json.dumps(m | {"seed": 2}))
    rc, _, err = main(["report", run])
    assert rc == cli.EXIT_USAGE
    one_line(err, "edited")
    stopped = shutil.copytree(interrupted, tmp_path / "stopped")
    damage(stopped / "checkpoint.000001.npz")
    rc, _, err = main(["integrate", "--resume", stopped])
    assert rc == cli.EXIT_USAGE
    one_line(err, "checkpoint.000001.npz", "refused")


@pytest.mark.parametrize("argv, message", [
    (["--model", "no_such_module_xyz:make"], "cannot import module 'no_such_module_xyz'"),
    (["--model", "nope"], "one of saxe, zfb or module:factory"),
    ([*MODEL, "--model-option", "depth=3"], "does not take these sizes"),
    ([*MODEL, "--model-option", "width"], "--model-option: must be KEY=VALUE"),
    ([*MODEL, "--scheme", "huge"], "has the schemes small, standard"),
    ([*MODEL, "--m", "8"], "--m: describes the paper's transformer"),
    ([*MODEL, "--t-end", "-1"], "--t-end: must be a positive finite number"),
    (["--model-option", "width=4"], "need --model SPEC"),
    ([*MODEL, "--method", "gd", "--rtol", "1e-6"], "--rtol: only --method flow reads it; --method gd takes --lr, --steps"),
    ([*MODEL, "--lr", "0.1"], "--lr: only --method gd reads it"),
])
def test_bad_model_input_is_one_line_exit_2_and_writes_nothing(argv, message, tmp_path):
    rc, out, err = main(["integrate", *argv, "--out", tmp_path / "run"])
    assert rc == cli.EXIT_USAGE and out == ""
    one_line(err, message)
    assert not (tmp_path / "run").exists()


def test_a_sweep_over_two_seeds_runs_each_point_once(reference, tmp_path):
    config = tmp_path / "sweep.toml"
    config.write_text('t_end = 50.0\nsaves = 9\nchunk = 2\nscheme = "standard"\n'
                      '[model]\nspec = "teacher_student:make_model"\nwidth = 4\nn = 16\n[grid]\nseed = [1, 2]\n')
    out = tmp_path / "sweep"
    rc, printed, err = main(["sweep", "--config", config, "--out", out])
    assert rc == 0, err
    index = json.loads((out / "sweep.json").read_text())
    assert [(p["name"], p["status"], p["verdicts"]) for p in index["points"]] == [
        (f"seed={s}", "complete", {"teacher_student.loss_decreases": "holds"}) for s in (1, 2)]
    # The point of seed 1 is the single run of seed 1, byte for byte; seed 2 is another start.
    same = out / "points" / "seed=1" / "trajectory.npz"
    assert same.read_bytes() == (reference[0] / "trajectory.npz").read_bytes()
    with np.load(out / "points" / "seed=2" / "state.npz") as s2, np.load(reference[0] / "state.npz") as s1:
        assert not np.array_equal(s2["init.W"], s1["init.W"])
    written = same.stat().st_mtime_ns
    rc, printed, err = main(["sweep", "--config", config, "--out", out, "--quiet"])
    assert rc == 0 and same.stat().st_mtime_ns == written  # finished points are skipped
    rc, printed, err = main(["report", out])
    assert rc == 0 and "2/2" in printed
