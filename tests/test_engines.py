"""The reduced and Gram engines against the four-matrix reference flow (spec 7), and that flow's
observables and events against the independent numpy reference (tests/_reference.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import brentq

import _reference as ref
import flowsim
from flowsim.models.cooccurrence.engines import ParamEngine, make_engine

T_END = 30.0
OPTS = dict(rtol=1e-10, atol=1e-12, saves=21, chunk=7)


@pytest.fixture(scope="module")
def runs(absent):
    data, params, test = absent
    return {e: flowsim.integrate(params, data, T_END, engine=e, test_set=test, **OPTS)
            for e in ("params", "reduced", "subspace", "gram")}


def close(a, b, rtol=1e-8):
    """``b`` equals ``a`` to ``rtol`` times a's largest entry.  The default is for two integrations
    at rtol=1e-10: the engines' trajectories, final matrices and event times differ from the four-
    matrix flow's by at most 3.5e-10 (measured; subspace engine, min_margin)."""
    a, b = np.asarray(a), np.asarray(b)
    scale = np.max(np.abs(a))
    np.testing.assert_allclose(b, a, rtol=0, atol=rtol * scale)


def test_tiny_set_has_absent_words(absent):
    data, _, _ = absent
    assert len(np.unique(np.asarray(data.tokens))) < data.d  # so spec 7.2 removes columns


@pytest.mark.parametrize("engine", ["reduced", "subspace", "gram"])
def test_same_trajectory_as_four_matrix_flow(runs, engine):
    four, got = runs["params"], runs[engine]
    assert four.status == got.status == "complete"
    for key in ("loss", "loss_groups", "test_loss", "G", "scores", "value_corr", "grad_norm2", "C",
                "min_margin", "S", "F_abs_max", "u_norm2", "G_rate", "scores_rate", "value_corr_rate",
                "score_rate_per_count", "score_change", "KQ_change", "value_corr_change", "balance_all_S1_S3"):
        close(four.observables[key], got.observables[key])
    for name, t in four.events.items():
        assert (t is None) == (got.events[name] is None), name
        if t is not None:
            assert abs(got.events[name] - t) <= 1e-8 * max(1.0, t), name  # measured <= 5.3e-10
    assert None not in four.events.values()  # the comparison covers every event


@pytest.mark.parametrize("engine", ["reduced", "subspace"])
def test_rebuilds_final_params(runs, engine):
    """Spec 7.1-7.2 (and 7.6: the m = 8 start is padded to p = 3d + 1 = 49 coordinates)."""
    four, got = runs["params"].params_final, runs[engine].params_final
    for name in ("W", "W_V", "W_K", "W_Q"):
        close(getattr(four, name), getattr(got, name))
    for key in ("neuron_gram_change", "neuron_corr_change", "neuron_value_change"):
        close(runs["params"].observables[key], runs[engine].observables[key])
    assert runs["gram"].params_final is None


def test_reduced_conservation_drift_is_the_full_one(runs):
    # Both are integration error of the same exact invariants (spec 7.3); absent at this tolerance.
    for engine in ("params", "reduced", "subspace"):
        assert np.nanmax(runs[engine].observables["drift_KQ"]) < 1e-8
        assert np.nanmax(runs[engine].observables["drift_WV"]) < 1e-8
    assert np.all(np.isnan(runs["gram"].observables["drift_KQ"]))


def test_structure_of_the_four_matrix_flow(runs, absent):
    """Spec 7.1-7.2 on the reference engine's end point: W moves along a only, and the columns
    of words absent from the training set never move."""
    data, p0, _ = absent
    p1 = runs["params"].params_final
    dW = np.asarray(p1.W - p0.W)
    a = np.asarray(p0.a)
    c = a @ dW / len(a)
    np.testing.assert_allclose(dW, np.outer(a, c), atol=1e-10 * np.abs(dW).max())
    absent = np.setdiff1d(np.arange(data.d), np.asarray(data.tokens))
    for name in ("W_V", "W_K", "W_Q"):
        np.testing.assert_array_equal(np.asarray(getattr(p1, name))[:, absent],
                                      np.asarray(getattr(p0, name))[:, absent])


def test_gram_vector_field_is_the_pushforward(absent):
    """Spec 7.5's closed system equals d/dt of (z, s, C_V, M, A, B) along the four-matrix flow,
    computed by forward-mode autodiff of the map from parameters to Gram matrices."""
    data, params, test = absent
    with jax.enable_x64(True):
        # A random orthonormal basis, to exercise the basis change as well.
        data = flowsim.Dataset(tokens=data.tokens, labels=data.labels, groups=data.groups,
                               embedding=flowsim.make_embedding(16, "random", jax.random.key(5)), basis="random")
        ref_engine, gram = ParamEngine.build(params, data), make_engine("gram", params, data)
        args = _args(params, data, test)
        theta = ref_engine.init_state(params, data)
        to_gram = lambda th: gram.init_state(ref_engine.to_params(th, args), data)
        _, expected = jax.jvp(to_gram, (theta,), (ref_engine.vector_field(0.0, theta, args),))
        got = gram.vector_field(0.0, to_gram(theta), args)
    for e, g in zip(expected, got):
        close(e, g, rtol=1e-10)


def test_reduced_vector_field_matches_four_matrix_one(absent):
    """du/dt = -m1 grad_u Lhat (spec 7.1) is W's flow seen through u = W^T a."""
    data, params, test = absent
    with jax.enable_x64(True):
        ref_engine, red = ParamEngine.build(params, data), make_engine("reduced", params, data)
        args = _args(params, data, test)
        dW, dV, dK, dQ = ref_engine.vector_field(0.0, ref_engine.init_state(params, data), args)
        du, dV_a, dK_a, dQ_a = red.vector_field(0.0, red.init_state(params, data), args)
        close(dW.T @ params.a, du, rtol=1e-12)
    words = np.unique(np.asarray(data.tokens))
    open_slots = np.sum(~np.isin(np.asarray(data.tokens), [0, 1, 2]))
    assert len(red.present) == min(data.d, 3 + open_slots) > len(words)  # padded
    for full, part in ((dV, dV_a), (dK, dK_a), (dQ, dQ_a)):  # the reduced state holds words as rows
        close(full[:, words].T, part[:len(words)], rtol=1e-12)
        assert not np.any(part[len(words):])  # padding rows never move: no sample reads them


@pytest.mark.parametrize("engine", ["reduced", "subspace"])
def test_padding_rows_change_no_step(absent, engine):
    """The word rows are padded to what the training set's layout can hold whatever words were
    drawn; the padding is 0 and the step-size control's norm is the RMS norm over the other
    entries, as the unpadded state has."""
    data, params, _ = absent
    with jax.enable_x64(True):
        eng = make_engine(engine, params, data)
        u, *rows = eng.init_state(params, data)
        k = len(np.unique(np.asarray(data.tokens)))
        assert all(not np.any(X[k:]) for X in rows)
        noise = jax.tree.map(lambda x: np.random.default_rng(0).normal(size=x.shape), (u, *rows))
        noise = (noise[0], *(np.where(np.arange(len(X))[:, None] < k, X, 0.0) for X in noise[1:]))
        unpadded = np.concatenate([noise[0], *(X[:k].ravel() for X in noise[1:])])
        np.testing.assert_allclose(eng.error_norm(noise), np.sqrt(np.mean(unpadded**2)), rtol=1e-14)


def _args(params, data, test):
    from flowsim.models.cooccurrence.flow import prepare
    return prepare(params, data, dtype=jnp.float64, engine="params", test_set=test).args


@pytest.mark.parametrize("engine", ["reduced", "subspace", "gram"])
def test_resume_is_bit_identical(runs, absent, engine):
    data, params, test = absent
    parts = []
    full = flowsim.integrate(params, data, T_END, engine=engine, test_set=test, callback=parts.append, **OPTS)
    resumed = flowsim.integrate(params, data, T_END, engine=engine, test_set=test, resume=parts[0], **OPTS)
    assert len(parts) == 2 and parts[0].status == "running"
    for key, value in full.observables.items():
        np.testing.assert_array_equal(resumed.observables[key], value)  # NaN drifts compare equal
    assert resumed.events == full.events == runs[engine].events and resumed.stats == full.stats


@pytest.mark.parametrize("t_end", [0.2, 3.0, T_END])
def test_observables_recomputed_from_the_matrices(runs, absent, t_end):
    """Every observable at the last save against the numpy reference's computation from the
    params engine's final matrices: in Phase 1 (0.2 < T1 = 0.26), just after G(mu_3) turned
    negative (3.0) and late (T_END).  The shorter runs reuse the compiled solve."""
    data, params, test = absent
    run = runs["params"] if t_end == T_END else flowsim.integrate(params, data, t_end, engine="params",
                                                                  test_set=test, **OPTS)
    assert run.ts[-1] == t_end
    expected = ref.observables(ref.Net.of(run.params_final), ref.Net.of(params), ref.Data.of(data), ref.Data.of(test))
    for key, value in expected.items():
        # Measured: <= 5.3e-14 relative to each observable's largest entry; neuron_gram_change,
        # ||W^T W||^2 - 2 ||W0^T W||^2 + ||W0^T W0||^2 in flowsim, loses more early on: 3.7e-13 at t = 0.2.
        close(value, run.observables[key][-1], rtol=1e-11 if key == "neuron_gram_change" else 1e-12)


def test_G3_event_is_the_root_of_G3(runs, absent):
    """G(mu_3) starts positive here and turns negative: the G3_negative event against brentq on
    G(mu_3) computed by the numpy reference from the matrices of re-runs to each trial time."""
    data, params, test = absent
    run, E = runs["params"], np.asarray(data.embedding)
    t_event = run.events["G3_negative"]
    G3 = run.observables["G_special"][:, 2]
    before, after = run.ts < t_event, run.ts > t_event
    assert ref.G(ref.Net.of(params), E)[2] > 0 and 0 < t_event < T_END
    assert np.all(G3[before] > 0) and np.all(G3[after] < 0)

    def G3_at(t):
        end = flowsim.integrate(params, data, t, engine="params", test_set=test, **OPTS).params_final
        return ref.G(ref.Net.of(end), E)[2]

    root = brentq(G3_at, run.ts[before][-1], run.ts[after][0], xtol=1e-13)
    np.testing.assert_allclose(t_event, root, rtol=1e-9)  # measured 1.2e-10
