"""``flowsim integrate --method gd``, ``flowsim plot`` and ``flowsim report`` through the CLI."""

import contextlib
import io
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib.image
import numpy as np
import pytest

import flowsim
from flowsim import cli, reporting

# The `tiny` fixture's sizes and test set (tests/conftest.py), 11 saves as test_gd.py's descents
# and 2 save slots per solve as test_flow.py's chunked flows, so that both runs reuse compiled programs.
TINY = ["--n", "12", "--L", "4", "--d", "8", "--m", "6", "--m1", "10", "--n-test", "64", "--saves", "11",
        "--chunk", "2"]


def run_cli(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = cli.main(argv)
        except SystemExit as e:
            rc = e.code
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("analysis")
    flow, gd = root / "flow", root / "gd"
    assert run_cli(["integrate", *TINY, "--t-end", "2", "--out", str(flow), "--quiet"])[0] == 0
    assert run_cli(["integrate", *TINY, "--method", "gd", "--lr", "0.01", "--steps", "200",
                    "--out", str(gd), "--quiet"])[0] == 0
    return flow, gd


def test_gd_through_the_cli_equals_a_hand_written_descent(dirs):
    _, gd = dirs
    meta = json.loads((gd / "run.json").read_text())
    assert meta["config"]["method"] == "gd" and meta["config"]["steps"] == 200
    assert meta["config"]["t_end"] == pytest.approx(2.0) and meta["status"] == "complete"
    state = np.load(gd / "state.npz")
    traj = np.load(gd / "trajectory.npz")
    assert traj["t"][-1] == pytest.approx(2.0)
    with jax.enable_x64(True):
        data = flowsim.Dataset(tokens=state["tokens"], labels=state["labels"], groups=state["groups"],
                               embedding=state["embedding"])
        theta = {k: jnp.asarray(state[f"{k}_init"]) for k in ("W", "W_V", "W_K", "W_Q")}
        grad = jax.jit(jax.grad(lambda th: flowsim.loss(flowsim.Params(**th, a=state["a"]), data)))
        for _ in range(200):
            theta = jax.tree.map(lambda x, g: x - 0.01 * g, theta, grad(theta))
        for k, v in theta.items():
            np.testing.assert_allclose(state[f"{k}_final"], v, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(traj["loss"][-1], flowsim.loss(flowsim.Params(**theta, a=state["a"]), data), rtol=1e-10)


def test_plot_overlays_flow_and_gd(dirs, tmp_path):
    flow, gd = dirs
    rc, out, err = run_cli(["plot", str(flow), str(gd), "--out", str(tmp_path), "--kinds", "scores", "loss",
                            "--formats", "png", "--labels", "flow", "GD", "--dpi", "50"])
    assert rc == 0, err
    written = sorted(Path(p).name for p in out.split())
    assert written == ["loss.png", "scores.png"]
    image = matplotlib.image.imread(tmp_path / "scores.png")
    assert image.ndim == 3 and image.shape[0] > 100 and image.std() > 0.01
    import matplotlib.pyplot as plt

    assert plt.get_fignums() == []


def test_plot_overlays_any_number_of_runs_labelled_by_what_differs(dirs, tmp_path):
    flow, gd = dirs
    rc, out, err = run_cli(["plot", *[str(flow)] * 4, str(gd), "--out", str(tmp_path), "--kinds", "G",
                            "--formats", "png", "--dpi", "20", "--linear-time"])
    assert rc == 0 and err == "" and out.split() == [str(tmp_path / "G.png")]
    runs = [flowsim.load(d) for d in (flow, gd)]
    assert cli.run_labels(runs) == ["flow (tsit5)", "GD lr=0.01"]
    assert cli.run_labels(runs[:1]) == ["flow (tsit5)"]
    assert cli.run_labels([runs[0], runs[0]]) == ["flow (tsit5) (flow)"] * 2  # nothing differs: the directories


def test_report_writes_a_verdict_for_every_claim(dirs):
    flow, _ = dirs
    rc, out, err = run_cli(["report", str(flow)])
    assert rc == 0, err
    rows = json.loads((flow / "report.json").read_text())
    assert len(rows) == len(reporting.check_claims(flowsim.load(flow).result))
    assert {r["verdict"] for r in rows} <= {reporting.HOLDS, reporting.FAILS, reporting.NA, reporting.ORDER}
    assert all(r["claim"] in out for r in rows)


@pytest.mark.parametrize("argv, match", [
    (["plot", "/nonexistent/run"], "flowsim plot: error: "),
    (["report", "/nonexistent/run"], "flowsim report: error: "),
    (["plot", "DIR", "--labels", "a", "b"], "--labels: give one label per DIR"),
    (["plot", "DIR", "--kinds", "nope"], "invalid choice"),
    (["plot", "DIR", "--dpi", "0"], "--dpi: must be an integer in [10, 600]"),
    (["integrate", "--method", "sgd"], "--method: must be one of flow, gd"),
    (["integrate", "--method", "gd", "--lr", "0"], "--lr: must be a positive finite number"),
    (["integrate", "--method", "gd", "--steps", "-5"], "--steps: must be an integer >= 1"),
])
def test_bad_input_is_one_line_and_exit_2(dirs, argv, match):
    argv = [a.replace("DIR", str(dirs[0])) for a in argv]
    rc, out, err = run_cli(argv)
    assert rc == 2 and match in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_an_out_that_cannot_be_written_is_one_line_and_exit_74(dirs):
    """An --out under a file is an I/O failure (EX_IOERR), like a full disk: one line, nothing drawn."""
    rc, out, err = run_cli(["plot", str(dirs[0]), "--out", f"{dirs[0]}/run.json/plots"])
    assert rc == 74 and "flowsim plot: error: cannot write" in err and len(err.strip().splitlines()) == 1
