"""Batched integration against separate runs; the reduced forward pass against the dense Eq. (1)."""

import jax
import numpy as np

import flowsim
from flowsim.models.cooccurrence import model


def test_batch_equals_separate_runs(absent):
    data, _, test = absent
    with jax.enable_x64(True):
        keys = jax.random.split(jax.random.key(7), 3)
        batch = jax.vmap(lambda k: flowsim.init_params(k, d=16, m=8, m1=12))(keys)
    opts = dict(rtol=1e-10, atol=1e-12, saves=21, chunk=7, engine="gram", test_set=test)
    results = flowsim.integrate_batch(batch, data, 30.0, **opts)
    assert len(results) == 3
    for b, got in enumerate(results):
        alone = flowsim.integrate(jax.tree.map(lambda x: x[b], batch), data, 30.0, **opts)
        for key in ("loss", "G", "scores", "test_loss"):
            a, g = alone.observables[key], got.observables[key]
            np.testing.assert_allclose(g, a, rtol=0, atol=1e-6 * np.abs(a).max())
        for name, t in alone.events.items():
            assert (t is None) == (got.events[name] is None)
            if t is not None:
                assert abs(got.events[name] - t) <= 1e-6 * max(1.0, t)
        np.testing.assert_array_equal(np.asarray(got.params_init.W_V), np.asarray(batch.W_V[b]))


def test_outputs_reduced_matches_dense_forward(absent):
    """Both branches of outputs_reduced (one exponential per word pair, and the per-sample
    softmax for huge scores) against Eq. (1) evaluated on the d x L matrices X_i."""
    data, params, _ = absent
    with jax.enable_x64(True):
        big = flowsim.sample_test_set(jax.random.key(3), 300, data)  # d^2 < n L^2: per-word exponentials
        for scale in (1.0, 1e4):  # 1e4: score columns span > 600 sqrt(m), the per-sample fallback
            p = model.Params(W=params.W, W_V=params.W_V, W_K=scale * params.W_K, W_Q=params.W_Q, a=params.a)
            z = model.G(p, big.embedding)
            M = model.attention_scores(p, big.embedding, tuple(range(big.d)))
            got = model.outputs_reduced(z, M, big.tokens, p.m)
            expected = jax.vmap(lambda X: model.forward(p, X))(big.X)
            np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)
