"""``flowsim bench`` on a tiny configuration, and the compilation cache's opt-out."""

import json
import os
import subprocess
import sys

import pytest

from flowsim import bench

TINY = ["--n", "12", "--L", "4", "--d", "16", "--m", "8", "--m1", "12", "--t-end", "2", "--repeats", "1"]


@pytest.mark.slow
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


def test_bench_presets_are_the_run_presets_and_theory_large_says_its_size():
    from flowsim import PRESETS, RunConfig

    assert {name: bench.PRESETS[name] for name in PRESETS} == {name: RunConfig.preset(name) for name in PRESETS}
    large = bench.PRESETS["theory-large"]
    assert (large.data_mode, large.init, large.n, large.L, large.d, large.m, large.m1) == ("theory", "theory", 120, 8, 963, 1024, 1024)


def test_bench_draws_the_problem_of_flowsim_integrate_and_says_when_torch_is_missing(monkeypatch, capsys, tmp_path):
    from flowsim import RunConfig

    monkeypatch.setitem(sys.modules, "torch", None)  # import torch raises ImportError
    path = tmp_path / "bench.json"
    assert bench.main(TINY + ["--seed", "3", "--only", "torch", "--json", str(path)]) == 0
    out = json.loads(path.read_text())
    sizes = dict(n=12, L=4, d=16, m=8, m1=12, t_end=2.0, seed=3)
    assert out["config"] == RunConfig.preset("paper").merge(sizes).to_dict()
    assert out["records"] == {"torch": {"note": "not installed"}}
    (row,) = [line for line in capsys.readouterr().out.splitlines() if line.startswith("torch")]
    assert "not installed" in row


def test_bench_help_describes_every_option_and_bad_sizes_are_one_line(capsys):
    parser = bench.build_parser()
    assert all(action.help for action in parser._actions)
    assert parser.description.endswith("compare their final losses.")
    with pytest.raises(SystemExit) as stop:
        bench.main(["--preset", "theory", "--d", "20", "--only", "gd"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("flowsim bench: error: ") and "d >=" in err, err
