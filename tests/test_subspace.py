"""Width as a number (spec 7.6-7.7): exact compression, the width-free engine against the
four-matrix flow, directly sampled starts against compressed m-wide draws, one compiled program
for every width, and widths far beyond memory through the configuration."""

import collections

import jax
import numpy as np
import pytest
from scipy.stats import ks_2samp

import flowsim
from flowsim.config import ConfigError, RunConfig
from flowsim.core.draws import draw
from flowsim.models.cooccurrence.subspace import SubspaceStart, _bartlett, compress, rank_bound

WIDE = dict(m=60, m1=30)  # m > p = 3d + 1 = 25 for d = 8


@pytest.fixture(scope="module")
def wide(tiny):
    """The tiny problem at m = 60 > p, theory scales."""
    _, data = tiny
    params = flowsim.init_params(jax.random.key(4), d=8, scheme="theory-unit", L=4, **WIDE)
    return params, data


def test_compression_keeps_every_inner_product(wide):
    params, _ = wide
    c = compress(params)
    p = rank_bound(8)
    assert c.W_V.shape == (p, 8) and c.basis.shape == (60, p)
    np.testing.assert_allclose(c.basis.T @ c.basis, np.eye(p), atol=1e-12)
    u = np.asarray(params.W).T @ np.asarray(params.a)
    cols = [np.concatenate([u[:, None], np.asarray(getattr(params, k))], axis=1) for k in ("W_V", "W_K", "W_Q")]
    full = np.concatenate([u[:, None], *(np.asarray(getattr(params, k)) for k in ("W_V", "W_K", "W_Q"))], axis=1)
    coords = np.concatenate([c.u[:, None], c.W_V, c.W_K, c.W_Q], axis=1)
    np.testing.assert_allclose(coords.T @ coords, full.T @ full, rtol=1e-12, atol=1e-12)  # every inner product
    np.testing.assert_allclose(c.basis @ coords, full, atol=1e-12)  # and the matrices themselves
    W = np.asarray(params.W)
    np.testing.assert_allclose(c.neuron_scale, np.linalg.norm(W @ W.T), rtol=1e-12)
    assert len(cols) == 3


@pytest.mark.slow
def test_width_free_engine_is_the_four_matrix_flow(absent):
    """Spec 7.6: the flow in p = 3d + 1 = 49 coordinates equals the flow of the 60-wide matrices
    (test_engines.py checks the padded case, m = 8 < p).  The options of test_engines.py's runs,
    so that the width-free solve is the one compiled there (m is a value, not a shape)."""
    data, _, test = absent
    with jax.enable_x64(True):
        params = flowsim.init_params(jax.random.key(4), d=16, m=60, m1=12, scheme="theory-unit", L=4)
    assert params.m > rank_bound(16)
    opts = dict(rtol=1e-10, atol=1e-12, saves=21, chunk=7, test_set=test)
    ref, got = (flowsim.integrate(params, data, 30.0, engine=e, **opts) for e in ("params", "subspace"))
    assert got.status == ref.status == "complete"
    o, r = got.observables, ref.observables
    # Two integrations at rtol 1e-10 agree to 1e-8 of each quantity's size (test_engines.py: <= 3.5e-10).
    for key in ("loss", "test_loss", "G", "scores", "value_corr", "key_corr", "query_corr", "neuron_gram_change",
                "G_rate", "scores_rate", "min_margin"):
        np.testing.assert_allclose(o[key], r[key], rtol=0, atol=1e-8 * np.abs(r[key]).max())
    for name, t in ref.events.items():
        assert (t is None) == (got.events[name] is None), name
        if t is not None:
            assert abs(got.events[name] - t) <= 1e-8 * max(1.0, t), name
    for name in ("W", "W_V", "W_K", "W_Q"):
        np.testing.assert_allclose(getattr(got.params_final, name), getattr(ref.params_final, name),
                                   atol=1e-8 * np.abs(getattr(ref.params_final, name)).max())
    assert np.max(o["drift_KQ"]) < 1e-8 and np.max(o["drift_WV"]) < 1e-8


def _invariants(s: SubspaceStart) -> np.ndarray:
    """Initial Gram entries of a start (basis-free): ||u||^2, <u, W_V e_1>, ||W_V e_1||^2,
    <W_V e_1, W_V e_2>, ||W_K e_1||^2, s(e_1, e_2) = <W_K e_1, W_Q e_2>."""
    u, V, K, Q = (np.asarray(x) for x in (s.u, s.W_V, s.W_K, s.W_Q))
    return np.array([u @ u, u @ V[:, 0], V[:, 0] @ V[:, 0], V[:, 0] @ V[:, 1], K[:, 0] @ K[:, 0], K[:, 0] @ Q[:, 1]])


def test_sampled_starts_are_distributed_as_compressed_wide_draws():
    """Spec 7.7 at m = 2048, 64 seeds each: the Bartlett draw against QR of explicit Gaussian
    matrices; the same two-sample test rejects a sigma0 or a number of degrees of freedom off by 10%."""
    d, m, m1, L, seeds = 8, 2048, 64, 4, 64
    s0, s1 = flowsim.init_scales("theory-unit", d=d, m=m, m1=m1, L=L)
    keys = jax.random.split(jax.random.key(11), 2 * seeds)
    explicit = np.array([_invariants(compress(flowsim.init_params(k, d, m, m1, scheme="theory-unit", L=L),
                                              final_params=False)) for k in keys[:seeds]])

    def sampled(sigma0=s0, dof=m):
        out = []
        for k in keys[seeds:]:
            R = draw(_bartlett, k, p=rank_bound(d), m=dof) * np.r_[np.sqrt(m1) * s1, np.full(3 * d, sigma0)]
            out.append(_invariants(SubspaceStart(u=R[:, 0], W_V=R[:, 1:d + 1], W_K=R[:, d + 1:2 * d + 1],
                                                 W_Q=R[:, 2 * d + 1:], m=np.asarray(m), m1=np.asarray(m1),
                                                 sigma0=np.float64(sigma0), sigma1=np.float64(s1))))
        return np.array(out)

    direct = np.array([_invariants(flowsim.init_subspace(k, d, m, m1, scheme="theory-unit", L=L)) for k in keys[seeds:]])
    np.testing.assert_allclose(direct, sampled(), rtol=1e-12)  # init_subspace is that draw
    p_values = lambda other: np.array([ks_2samp(explicit[:, j], other[:, j]).pvalue for j in range(explicit.shape[1])])
    assert p_values(direct).min() > 1e-3 / 6  # the same distribution (Bonferroni over 6 statistics)
    assert p_values(sampled(sigma0=1.1 * s0)).min() < 1e-6
    assert p_values(sampled(dof=int(0.9 * m))).min() < 1e-6


def test_one_compiled_program_serves_every_width():
    """m and m1 are values of the compiled programs, not shapes: a second width traces nothing,
    neither to draw its start nor to integrate it."""
    data, _, key = RunConfig.preset("theory").build()
    events = collections.Counter()
    listener = lambda name, duration, **kw: events.update([name])
    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        runs = []
        for m in (10**3, 10**6, 10**9):
            before = sum(v for k, v in events.items() if "trace" in k or "backend_compile" in k)
            start = flowsim.init_subspace(jax.random.key(1), d=33, m=m, m1=m, scheme="theory-unit", L=4)
            runs.append(flowsim.integrate(start, data, 1.0, saves=5, test_key=key, n_test=50))
            runs[-1].traced = sum(v for k, v in events.items() if "trace" in k or "backend_compile" in k) - before
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
    assert runs[1].traced == runs[2].traced == 0 and all(r.options.engine == "subspace" for r in runs)
    # T1 = O(1/m) (Theorem 3.1), up to finite-width corrections of order 1/sqrt(m): measured T1 m =
    # 6.1875, 6.2269, 6.2405, 6.2449, 6.2463 and 6.2468 at m = 10^3 .. 10^7 and 10^9, its distance to the
    # limit shrinking by sqrt(10) per decade.  So T1 m at 10^3 and 10^6 against 10^9: measured 9.5e-3, 3.2e-4.
    T1m = [r.events["phase1_end"] * m for r, m in zip(runs, (10**3, 10**6, 10**9))]
    assert abs(T1m[0] / T1m[2] - 1) < 3e-2 and abs(T1m[1] / T1m[2] - 1) < 1e-3


def test_width_is_a_number_in_the_configuration(tmp_path, monkeypatch):
    cfg = RunConfig.preset("theory").merge({"m": "1e9", "m1": 2e9, "t_end": 1.0, "saves": 5, "n_test": 50})
    assert (cfg.m, cfg.m1, cfg.resolved().start) == (10**9, 2 * 10**9, "subspace")
    assert RunConfig.preset("theory").resolved().start == "matrices"  # small sizes keep the matrices
    run = flowsim.run(cfg, tmp_path / "wide")
    assert run.meta["engine"] == "subspace" and run.config.start == "subspace"
    back = flowsim.load(tmp_path / "wide")
    assert isinstance(back.params_init, SubspaceStart) and int(back.params_init.m) == 10**9
    assert back.result.params_final is None and back.result.events == run.result.events
    # The default save grid starts at 1/m, so a wide run's Phase 1 (T1 ~ 6/m) is on it.
    assert run.result.ts[1] == 1e-9 < run.result.events["phase1_end"] < run.result.ts[-1]
    with pytest.raises(ConfigError, match="m: must be an integer in"):
        RunConfig().merge({"m": "12.5"})
    # Explicit matrices that cannot fit are refused before anything is allocated, with the way out.
    monkeypatch.setenv("FLOWSIM_MEMORY_LIMIT", "1G")
    with pytest.raises(ConfigError, match=r"needs about .* of memory but 1 GB is available; .*subspace"):
        RunConfig.preset("theory").merge({"m": 100_000, "m1": 100_000, "start": "matrices"}).build()


def test_rates_ordered_is_located_at_any_width():
    """T0.5 (rates_ordered, Theorem E.19) at m = m1 = 1e8, where dG/dt is of order 1e6: a root
    finder that waits for |c| < 1e-10 never stops on a difference of two such rates in float64,
    and the run failed at T0.5 ("the solver did not converge").  Then: T0.5 is where -dG3/dt first
    reaches 1.1 max(dG1/dt, dG2/dt), read from differences of the saved G around it (independent
    of the exact rates)."""
    data, _, key = RunConfig.preset("theory").build()
    start = flowsim.init_subspace(jax.random.key(4), d=33, m=10**8, m1=10**8, scheme="theory-unit", L=4)
    T = flowsim.integrate(start, data, 1e-6, saves=5, test_key=key, n_test=50).events["rates_ordered"]
    assert T is not None and 1e-8 < T < 1e-7
    h = 1e-3 * T
    ts = (0.0, T - 2 * h, T - h, T + h, T + 2 * h)
    G = flowsim.integrate(start, data, ts[-1], ts=ts, test_key=key, n_test=50).observables["G_special"]
    dG_before, dG_after = (G[2] - G[1]) / h, (G[4] - G[3]) / h
    condition = lambda dG: -dG[2] - (1 + flowsim.MarkerOptions().C_rates) * max(dG[0], dG[1])
    assert condition(dG_before) < 0 < condition(dG_after)
