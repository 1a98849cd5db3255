"""Exported programs (flowsim.aot): a later process reads the solve back instead of tracing it,
and gets the same trajectory as a process that traced it."""

import json
import os
import subprocess
import sys

import numpy as np

RUN = """
import json, sys, jax, flowsim
with jax.enable_x64(True):
    data = flowsim.make_dataset(jax.random.key(0), n=12, L=4, d=8)
    params = flowsim.init_params(jax.random.key(1), d=8, m=6, m1=10)
r = flowsim.integrate(params, data, t_end=20.0, saves=11, n_test=32)
json.dump(dict(loss=r.observables["loss"].tolist(), G=r.observables["G"].tolist(), events=r.events,
               stats=r.stats), sys.stdout)
"""


def _run(env):
    out = subprocess.run([sys.executable, "-c", RUN], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_exported_solve_is_read_back_and_gives_the_traced_result(tmp_path):
    base = dict(os.environ, FLOWSIM_CACHE_DIR=str(tmp_path / "cache"))
    base.pop("FLOWSIM_NO_CACHE", None)
    traced = _run(dict(base, EQX_ON_ERROR="raise"))  # diffrax's checks stay callbacks: no export
    assert not (tmp_path / "cache" / "exported").exists()
    first = _run(dict(base, EQX_ON_ERROR="nan"))  # exports
    programs = sorted((tmp_path / "cache" / "exported").iterdir())
    assert [p.name.split("-")[0] for p in programs] == ["observe", "solve"]
    stamps = [p.stat().st_mtime_ns for p in programs]
    second = _run(dict(base, EQX_ON_ERROR="nan"))  # reads them back
    assert [p.stat().st_mtime_ns for p in programs] == stamps
    for run in (first, second):
        assert run["events"] == traced["events"] and run["stats"] == traced["stats"]
        np.testing.assert_allclose(run["loss"], traced["loss"], rtol=1e-13, atol=0)
        np.testing.assert_allclose(run["G"], traced["G"], rtol=1e-12, atol=1e-14)
