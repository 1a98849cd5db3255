"""F, G and the loss against direct computations (Eq. 1, Eq. 2), and parameter validation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import _reference as ref
import flowsim
from flowsim.models.cooccurrence import model
from flowsim.models.cooccurrence.engines import make_engine


@pytest.mark.parametrize("basis", ["standard", "random"])
def test_F_equals_direct_loop(tiny, basis):
    params, _ = tiny
    with jax.enable_x64(True):
        data = flowsim.make_dataset(jax.random.key(4), n=12, L=4, d=8, embedding=basis)
        net = ref.Net.of(params)
        direct = ref.outputs(net, ref.Data.of(data))
        np.testing.assert_allclose(flowsim.forward(params, data.X), direct, rtol=1e-12, atol=1e-12)
        # The gathered training-set path (both of its branches) agrees with Eq. (1) as written.
        np.testing.assert_allclose(model.outputs(params, data), direct, rtol=1e-12, atol=1e-12)
        wide = flowsim.sample_test_set(jax.random.key(2), 40, data)
        np.testing.assert_allclose(
            model.outputs(params, wide), ref.outputs(net, ref.Data.of(wide)), rtol=1e-12, atol=1e-12
        )


def test_loss_is_mean_logistic_loss_and_stable(tiny):
    params, data = tiny
    with jax.enable_x64(True):
        np.testing.assert_allclose(flowsim.loss(params, data), ref.loss(ref.Net.of(params), ref.Data.of(data)),
                                   rtol=1e-12)
        # Huge margins: log(1 + exp(-x)) must neither overflow nor lose the tiny value.
        big = jnp.array([-800.0, 800.0, 40.0])
        np.testing.assert_allclose(model.logistic_loss(big), [800.0, 0.0, np.exp(-40.0)], rtol=1e-12)
        assert np.all(np.isfinite(model.logistic_g(big)))


def test_G_scores_value_correlations(tiny):
    params, _ = tiny
    with jax.enable_x64(True):
        E = flowsim.make_embedding(8, "random", jax.random.key(9))
        net, mu = ref.Net.of(params), np.asarray(E)
        np.testing.assert_allclose(flowsim.G(params, E), ref.G(net, mu), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(flowsim.attention_scores(params, E), ref.scores(net, mu)[:3, :3], rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(flowsim.value_correlations(params, E), ref.correlation(net.W_V, mu),
                                   rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("engine", ["params", "reduced"])
def test_vector_field_is_minus_gradient_by_finite_differences(tiny, engine):
    """Each engine's right-hand side against finite differences of the independent numpy loss
    (tests/_reference.py), along random directions of the four matrices; for the reduced engine
    (spec 7.1-7.2) moving u = W^T a by m1 c is moving W by a c^T, and a present word's rows are
    its columns of W_V, W_K, W_Q."""
    params, data = tiny
    net, samples = ref.Net.of(params), ref.Data.of(data)
    with jax.enable_x64(True):
        eng = make_engine(engine, params, data)
        args = type("A", (), {"dataset": data})()
        vf = [np.asarray(v) for v in eng.vector_field(0.0, eng.init_state(params, data), args)]
    rng = np.random.default_rng(0)
    for _ in range(3):
        steps = [rng.standard_normal(v.shape) for v in vf]
        if engine == "params":
            direction = ref.Net(*steps, a=net.a)
        else:
            c, *rows = steps
            columns = [np.zeros_like(net.W_V) for _ in rows]
            for full, part in zip(columns, rows):
                full[:, np.asarray(eng.present)] = part.T
            direction = ref.Net(np.outer(net.a, c), *columns, a=net.a)
        fd = ref.directional_derivative(lambda th: ref.loss_flat(th, net, samples), ref.flatten(net),
                                        ref.flatten(direction))
        # The loss changes at -(vector field) . direction; measured agreement <= 6.6e-12 (h = 3e-3).
        np.testing.assert_allclose(-sum(np.sum(v * s) for v, s in zip(vf, steps)), fd, rtol=1e-10)


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
