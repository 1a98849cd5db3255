"""Shared tiny configurations: every distinct shape costs a JAX compilation, so tests reuse these."""

import atexit
import fcntl
import os
import shutil
import signal
import tempfile

import jax
import pytest

import flowsim

# The suite keeps its compiled programs in a cache of its own (shared with the subprocesses it
# starts), so it never writes into the user's ~/.cache and runs as on a fresh machine.
if "FLOWSIM_CACHE_DIR" not in os.environ:
    os.environ["FLOWSIM_CACHE_DIR"] = tempfile.mkdtemp(prefix="flowsim-test-cache-")
    atexit.register(shutil.rmtree, os.environ["FLOWSIM_CACHE_DIR"], ignore_errors=True)
# With the persistent cache on, JAX also points XLA's GPU autotuning cache at a directory under
# it (and at a read-only mode in every process but process 0 of jax.distributed).  That goes into
# the compile options and so into every cache key: entries would not be found from a copy of the
# cache (test_aot.py) nor by process 1 of the distributed sweep (test_sweep.py), which would
# compile everything again.  It does nothing on the CPU; off for this session and its subprocesses.
os.environ["JAX_PERSISTENT_CACHE_ENABLE_XLA_CACHES"] = "none"
jax.config.update("jax_persistent_cache_enable_xla_caches", "none")
# Two host devices for this session and its subprocesses (the CPU backend is not started yet):
# test_sweep.py splits a batch over them in-process.  The device count is part of every cache key,
# so a subprocess that forced two devices would compile everything anew; here all share.
os.environ["JAX_NUM_CPU_DEVICES"] = "2"
jax.config.update("jax_num_cpu_devices", 2)
# The suite's programs are small and run for milliseconds; compiling them is most of its time.
# For this session and its subprocesses: XLA's backend (LLVM) optimizations off (about a fifth less
# wall time) and its CPU fusion emitters off (the tiny flow's backend compile 9.4 s -> 5.3 s, the
# same final loss).  Every comparison in the suite is within one session's build or against an
# independent reference with a tolerance, never against the bits of an optimized build.
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                           + " --xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false").strip()
# Tests stop runs with SIGINT, in this process and in the CLI processes it starts.  A shell that
# starts a job in the background without job control makes it ignore SIGINT, and its children
# inherit that; Python's own Ctrl-C handler for this session, which children reset to the default.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_addoption(parser):
    parser.addoption("--slow", action="store_true",
                     help="also run the tests marked slow (each compiles programs no other test shares: a sweep "
                          "over two processes, one over two forced devices, the bench, a wide start on two engines)")


def pytest_collection_modifyitems(config, items):
    """The tests marked slow run with ``--slow`` only, so that the default suite (the README's
    command, CI's) stays under 4 minutes on 2 cores; ``--slow`` adds about a minute."""
    if config.getoption("--slow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    """Under xdist (``-n``), a module's tests stay on one worker (``--dist loadscope`` in place of
    the default ``load``), so its module-scoped fixtures, a few integrations each, are computed
    once, not once per worker: a tenth of the suite's time on 2 cores (254 s against 285 s)."""
    config.addinivalue_line("markers", "slow: compiles programs no other test shares; run with --slow")
    if getattr(config.option, "dist", None) == "load":
        config.option.dist = "loadscope"


@pytest.fixture(scope="session")
def tiny():
    """A small sampled-mode problem (n=12, L=4, d=8, m=6, m1=10) in float64."""
    with jax.enable_x64(True):
        data = flowsim.make_dataset(jax.random.key(0), n=12, L=4, d=8, mode="sampled")
        params = flowsim.init_params(jax.random.key(1), d=8, m=6, m1=10, scheme="kaiming")
    return params, data


@pytest.fixture(scope="session")
def tiny_run(tiny):
    """The flow of ``tiny`` to t = 20 at default settings."""
    params, data = tiny
    return flowsim.integrate(params, data, t_end=20.0, saves=41, n_test=64)


@pytest.fixture(scope="session")
def theory_runs(tmp_path_factory):
    """The theory preset (Assumption 2.3's training set, n=18, L=4, d=33, and a Condition 1 start
    at m = m1 = 64: the theorems' regime) integrated to t = 10^4 with 101 saves, as a result
    directory (a :class:`flowsim.Run`), with Lemma 4.3's constant ``C_rates`` at its default 0.1
    and at 0.05 (a value, not a shape: one compilation, about as costly as ``tiny_run``'s).  Run
    once per session: the first xdist worker to need them writes them, the others read them."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    root = tmp_path_factory.getbasetemp() if worker is None else tmp_path_factory.getbasetemp().parent
    base = flowsim.RunConfig.preset("theory").merge({"saves": 101, "n_test": 200})
    configs = {"theory": base, "theory C_rates=0.05": base.merge({"C_rates": 0.05})}

    def complete(name, config):
        path = root / name
        if (path / "run.json").exists():
            run = flowsim.load(path)
            if run.meta["status"] == "complete":
                return run
        return flowsim.run(config, path, force=True)  # what a worker that failed half-way left is replaced

    with open(root / "theory_runs.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        return {name: complete(name, config) for name, config in configs.items()}


@pytest.fixture(scope="session")
def absent():
    """n=12, L=4, d=16 (sampled: some irrelevant words absent), m=8, m1=12, Kaiming init, with a test set."""
    data = flowsim.make_dataset(jax.random.key(0), n=12, L=4, d=16, counts=(6, 2, 2, 2))
    params = flowsim.init_params(jax.random.key(1), d=16, m=8, m1=12)
    test = flowsim.sample_test_set(jax.random.key(2), 40, data)
    return data, params, test
