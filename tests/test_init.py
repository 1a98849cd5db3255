"""Initialization schemes (spec 4) and custom initializations."""

import math

import jax
import numpy as np
import pytest

import flowsim


@pytest.mark.parametrize("scheme, s0, s1", [
    ("kaiming", math.sqrt(2 / 40), math.sqrt(2 / 300)),
    ("theory", 1 / math.sqrt(5 * 300), 1 / math.sqrt(400)),
])
def test_scales_and_signs(scheme, s0, s1):
    with jax.enable_x64(True):
        p = flowsim.init_params(jax.random.key(0), d=40, m=300, m1=400, scheme=scheme, L=5)
    for x in (p.W_V, p.W_K, p.W_Q):
        assert x.shape == (300, 40)
        assert abs(np.std(np.asarray(x)) / s0 - 1) < 0.03 and abs(np.mean(np.asarray(x))) < 0.05 * s0
    assert p.W.shape == (400, 300) and abs(np.std(np.asarray(p.W)) / s1 - 1) < 0.03
    a = np.asarray(p.a)
    assert set(np.unique(a)) == {-1.0, 1.0} and abs(a.mean()) < 0.15


def test_overridden_scales_and_bad_scales():
    with jax.enable_x64(True):
        p = flowsim.init_params(jax.random.key(0), d=40, m=300, m1=400, scheme="theory", L=5, sigma0=0.5, sigma1=2.0)
    assert abs(np.std(np.asarray(p.W_K)) / 0.5 - 1) < 0.03 and abs(np.std(np.asarray(p.W)) / 2.0 - 1) < 0.03
    with pytest.raises(ValueError, match="sigma0 must be a positive finite"):
        flowsim.init_params(jax.random.key(0), scheme="kaiming", sigma0=-1.0)
    with pytest.raises(ValueError, match="init scheme must be one of"):
        flowsim.init_params(jax.random.key(0), scheme="xavier")
    with pytest.raises(ValueError, match="needs the sequence length L"):
        flowsim.init_params(jax.random.key(0), scheme="theory")
    with pytest.raises(ValueError, match="m must be a positive integer"):
        flowsim.init_params(jax.random.key(0), m=0)


def test_custom_init_round_trip(tiny):
    """User arrays (numpy) go in unchanged and come back as the run's initial point."""
    _, data = tiny
    rng = np.random.default_rng(0)
    arrays = dict(W=rng.normal(size=(10, 6)), W_V=rng.normal(size=(6, 8)), W_K=rng.normal(size=(6, 8)) * 0.1,
                  W_Q=rng.normal(size=(6, 8)) * 0.1, a=rng.choice([-1.0, 1.0], size=10))
    params = flowsim.Params(**arrays)
    run = flowsim.integrate(params, data, t_end=1.0, saves=41, n_test=64)  # tiny_run's sizes and save slots
    for name, x in arrays.items():
        assert np.array_equal(np.asarray(getattr(run.params_init, name)), x), name
    assert np.array_equal(np.asarray(run.params_final.a), arrays["a"])
    assert run.observables["loss"][-1] < run.observables["loss"][0]


def test_init_from_a_function_of_a_key():
    def scheme(key):
        k1, k2 = jax.random.split(key)
        return dict(W=jax.random.normal(k1, (7, 5)), W_V=jax.numpy.ones((5, 4)), W_K=jax.numpy.zeros((5, 4)),
                    W_Q=jax.random.normal(k2, (5, 4)), a=jax.numpy.ones(7))

    p = flowsim.init_params(jax.random.key(3), d=4, m=5, m1=7, scheme=scheme)
    q = flowsim.init_params(jax.random.key(3), d=4, m=5, m1=7, scheme=scheme)
    assert np.array_equal(p.W, q.W) and np.array_equal(p.W_V, np.ones((5, 4)))
    with pytest.raises(ValueError, match="expected"):
        flowsim.init_params(jax.random.key(3), d=4, m=6, m1=7, scheme=scheme)
    with pytest.raises(ValueError, match="a must have every entry"):
        flowsim.init_params(jax.random.key(3), d=4, m=5, m1=7, scheme=lambda k: {**scheme(k), "a": jax.numpy.zeros(7)})


def test_integrate_refuses_mismatched_or_bad_params(tiny):
    params, data = tiny
    with pytest.raises(ValueError, match="params have d=5 but the dataset has d=8"):
        flowsim.integrate(flowsim.init_params(jax.random.key(0), d=5, m=6, m1=10), data, t_end=1.0)
    with pytest.raises(ValueError, match="non-finite"):
        flowsim.Params(W=np.asarray(params.W) * np.nan, W_V=params.W_V, W_K=params.W_K, W_Q=params.W_Q, a=params.a)
