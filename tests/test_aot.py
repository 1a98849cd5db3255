"""Exported programs (flowsim.core.aot): a later process reads the solve back instead of tracing it,
and gets the trajectory that tracing gives."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

# The `tiny_run` fixture's problem and settings, so that it serves as the traced reference.
RUN = """
import json, sys, jax, flowsim
with jax.enable_x64(True):
    data = flowsim.make_dataset(jax.random.key(0), n=12, L=4, d=8, mode="sampled")
    params = flowsim.init_params(jax.random.key(1), d=8, m=6, m1=10, scheme="kaiming")
r = flowsim.integrate(params, data, t_end=20.0, saves=41, n_test=64)
# The user's own equinox checks still raise after flowsim traced its programs with NaN errors.
import equinox as eqx, jax.numpy as jnp
try:
    eqx.filter_jit(lambda x: eqx.error_if(x, x > 0, "user check"))(jnp.ones(3))
    raised = False
except Exception as e:
    raised = "user check" in str(e)
json.dump(dict(loss=r.observables["loss"].tolist(), G=r.observables["G"].tolist(), events=r.events,
               stats=r.stats, raised=raised), sys.stdout)
"""


def _run(env):
    out = subprocess.run([sys.executable, "-c", RUN], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_exported_solve_is_read_back_and_gives_the_traced_result(tiny_run, tmp_path):
    """A plain Python process (no EQX_ON_ERROR set) exports the programs; the next reads them back."""
    # A cache directory of its own, holding XLA's compiled programs of this session (tiny_run's
    # among them) but none of its exported ones: the first process traces and exports every
    # program, as on a fresh machine, without compiling them all again.
    (tmp_path / "cache").mkdir()
    for entry in Path(os.environ.get("FLOWSIM_CACHE_DIR", tmp_path / "none")).glob("*"):
        if entry.is_file():
            shutil.copy(entry, tmp_path / "cache")
    env = dict(os.environ, FLOWSIM_CACHE_DIR=str(tmp_path / "cache"))
    env.pop("FLOWSIM_NO_CACHE", None)
    env.pop("EQX_ON_ERROR", None)
    first = _run(env)  # traces, exports
    programs = sorted((tmp_path / "cache" / "exported").iterdir())
    assert [p.name.split("-")[0] for p in programs] == ["observe", "solve", "start", "to_params"]
    stamps = [p.stat().st_mtime_ns for p in programs]
    second = _run(env)  # reads them back
    assert [p.stat().st_mtime_ns for p in programs] == stamps
    for run in (first, second):
        assert run["raised"]
        assert run["events"] == tiny_run.events and run["stats"] == tiny_run.stats
        np.testing.assert_allclose(run["loss"], tiny_run.observables["loss"], rtol=1e-13, atol=0)
        np.testing.assert_allclose(run["G"], tiny_run.observables["G"], rtol=1e-12, atol=1e-14)


def test_the_key_covers_every_source_file():
    """An exported program is keyed by flowsim's source: every module, subpackages included
    (a stale program from before an edit to flowsim/models/cooccurrence/engines/ once gave different bits)."""
    import flowsim
    from flowsim.core import aot

    package = Path(flowsim.__file__).parent
    listed = set(aot.source_files())
    assert {p for p in package.rglob("*.py") if "__pycache__" not in p.parts} <= listed
    assert any(p.parent.name == "engines" for p in listed)
