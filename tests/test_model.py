"""F, G and the loss against direct computations (Eq. 1, Eq. 2), and parameter validation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flowsim
from flowsim import model


def _loop_F(p, X):
    """Eq. (1) by explicit loops over query positions l and neurons j (numpy, float64)."""
    W, WV, WK, WQ, a = (np.asarray(x, np.float64) for x in (p.W, p.W_V, p.W_K, p.W_Q, p.a))
    m, L = WV.shape[0], X.shape[1]
    total = 0.0
    for l in range(L):
        logits = np.array([X[:, k] @ WK.T @ WQ @ X[:, l] for k in range(L)]) / np.sqrt(m)
        att = np.exp(logits - logits.max())
        att /= att.sum()
        for j in range(W.shape[0]):
            total += a[j] * W[j] @ WV @ X @ att
    return total


@pytest.mark.parametrize("basis", ["standard", "random"])
def test_F_equals_direct_loop(tiny, basis):
    params, _ = tiny
    with jax.enable_x64(True):
        data = flowsim.make_dataset(jax.random.key(4), n=12, L=4, d=8, embedding=basis)
        X = np.asarray(data.X)
        direct = np.array([_loop_F(params, x) for x in X])
        np.testing.assert_allclose(flowsim.forward(params, data.X), direct, rtol=1e-12, atol=1e-12)
        # The gathered training-set path (both of its branches) agrees with Eq. (1) as written.
        np.testing.assert_allclose(model.outputs(params, data), direct, rtol=1e-12, atol=1e-12)
        wide = flowsim.sample_test_set(jax.random.key(2), 40, data)
        np.testing.assert_allclose(
            model.outputs(params, wide), [_loop_F(params, x) for x in np.asarray(wide.X)], rtol=1e-12, atol=1e-12
        )


def test_loss_is_mean_logistic_loss_and_stable(tiny):
    params, data = tiny
    with jax.enable_x64(True):
        F = np.array([_loop_F(params, x) for x in np.asarray(data.X)])
        y = np.asarray(data.labels)
        np.testing.assert_allclose(flowsim.loss(params, data), np.mean(np.log1p(np.exp(-y * F))), rtol=1e-12)
        # Huge margins: log(1 + exp(-x)) must neither overflow nor lose the tiny value.
        big = jnp.array([-800.0, 800.0, 40.0])
        np.testing.assert_allclose(model.logistic_loss(big), [800.0, 0.0, np.exp(-40.0)], rtol=1e-12)
        assert np.all(np.isfinite(model.logistic_g(big)))


def test_G_scores_value_correlations(tiny):
    params, _ = tiny
    with jax.enable_x64(True):
        E = flowsim.make_embedding(8, "random", jax.random.key(9))
        W, WV, WK, WQ, a = (np.asarray(x) for x in (params.W, params.W_V, params.W_K, params.W_Q, params.a))
        mu = np.asarray(E)
        G_direct = [sum(a[j] * W[j] @ WV @ mu[:, k] for j in range(W.shape[0])) for k in range(8)]
        np.testing.assert_allclose(flowsim.G(params, E), G_direct, rtol=1e-12, atol=1e-12)
        s = np.array([[mu[:, i] @ WK.T @ WQ @ mu[:, j] for j in range(3)] for i in range(3)])
        np.testing.assert_allclose(flowsim.attention_scores(params, E), s, rtol=1e-12, atol=1e-14)
        v = np.array([[mu[:, i] @ WV.T @ WV @ mu[:, j] for j in range(3)] for i in range(3)])
        np.testing.assert_allclose(flowsim.value_correlations(params, E), v, rtol=1e-12, atol=1e-14)


def test_vector_field_is_minus_gradient_by_finite_differences(tiny):
    """The flow's right-hand side against central differences of the loss (float64)."""
    params, data = tiny
    from flowsim.engines import ParamEngine

    eng = ParamEngine.build(params, data)
    with jax.enable_x64(True):
        args = type("A", (), {"a": params.a, "dataset": data})()
        y = eng.init_state(params, data)
        vf = eng.vector_field(0.0, y, args)
        rng = np.random.default_rng(0)
        for _ in range(3):
            direction = tuple(jnp.asarray(rng.standard_normal(x.shape)) for x in y)
            h = 1e-5
            plus = tuple(x + h * v for x, v in zip(y, direction))
            minus = tuple(x - h * v for x, v in zip(y, direction))
            fd = (eng.loss(plus, args) - eng.loss(minus, args)) / (2 * h)
            directional = sum(jnp.sum(f * v) for f, v in zip(vf, direction))
            np.testing.assert_allclose(-directional, fd, rtol=1e-7)


def test_params_validation():
    ok = dict(W=np.zeros((5, 4)), W_V=np.zeros((4, 6)), W_K=np.zeros((4, 6)), W_Q=np.zeros((4, 6)), a=np.ones(5))
    flowsim.Params(**ok)
    bad = [
        (dict(W_K=np.zeros((4, 5))), r"W_K must have shape \(4, 6\) \(m x d, like W_V and W_Q\), got \(4, 5\)"),
        # The odd one out is named, W_V included (it was once blamed on W_K).
        (dict(W_V=np.zeros((3, 6))), r"W_V must have shape \(4, 6\) \(m x d, like W_K and W_Q\), got \(3, 6\)"),
        (dict(W_V=np.zeros((4, 5))), r"W_V must have shape \(4, 6\)"),
        (dict(W_Q=np.zeros((3, 6))), r"W_Q must have shape \(4, 6\)"),
        (dict(W_V=np.zeros((3, 6)), W_K=np.zeros((3, 6)), W_Q=np.zeros((3, 6))), "W must be an m1 x m matrix with m=3"),
        (dict(W=np.zeros((5, 3))), "W must be an m1 x m matrix"),
        (dict(a=np.ones(4)), "a must be a vector of length m1=5"),
        (dict(a=np.array([1, -1, 0.5, 1, 1])), r"\+1 or -1"),
        (dict(W_V=np.full((4, 6), np.nan)), "W_V has non-finite"),
        (dict(W_Q=np.full((4, 6), np.inf)), "W_Q has non-finite"),
        (dict(W_V=np.zeros(4)), "W_V must be an m x d matrix"),
    ]
    for change, match in bad:
        with pytest.raises(ValueError, match=match):
            flowsim.Params(**{**ok, **change})
