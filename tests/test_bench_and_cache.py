"""``flowsim bench`` on a tiny configuration, and the compilation cache's opt-out."""

import json
import os
import subprocess
import sys

from flowsim import bench

TINY = ["--n", "12", "--L", "4", "--d", "16", "--m", "8", "--m1", "12", "--t-end", "2", "--repeats", "1"]


def test_bench_records_and_loss_agreement(tmp_path):
    path = tmp_path / "bench.json"
    assert bench.main(TINY + ["--only", "flowsim,gd,scipy", "--json", str(path)]) == 0
    out = json.loads(path.read_text())
    rec = out["records"]
    assert set(rec) == {"flowsim", "gd", "scipy"}
    assert rec["gd"]["steps"] == 200 and rec["flowsim"]["ratio"] == 1.0
    # Two integrations of the same ODE agree to their tolerances; gradient descent at lr 0.01
    # departs from the flow by O(lr).
    assert rec["scipy"]["loss_rel_diff"] < 1e-4
    assert rec["gd"]["loss_rel_diff"] < 5e-2


def _cache_dir(env):
    code = "import flowsim; print(flowsim.enable_compilation_cache())"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_compilation_cache_opt_out(tmp_path):
    env = dict(os.environ, FLOWSIM_CACHE_DIR=str(tmp_path / "cache"))
    env.pop("FLOWSIM_NO_CACHE", None)
    assert _cache_dir(env) == str(tmp_path / "cache") and (tmp_path / "cache").is_dir()
    assert _cache_dir(dict(env, FLOWSIM_NO_CACHE="1")) == "None"


def test_bench_help_through_the_cli(capsys):
    from flowsim.cli import main

    try:
        main(["bench", "--help"])
    except SystemExit as e:
        assert e.code == 0
    out = capsys.readouterr().out
    assert "usage: flowsim bench" in out and "--only" in out and "--preset" in out
