"""Initialization schemes (spec 4) and custom initializations."""

import math

import jax
import numpy as np
import pytest

import _reference
import flowsim


# Condition 1's constant for n = 18, L = 5, delta = 0.1, from Lemma D.8 written out:
# 2 (c / sqrt(L m)) (c / sqrt(m1)) sqrt(2 L m1 m log(2 L n / delta)) = 0.01.
C18 = math.sqrt(0.01 / (2 * math.sqrt(2 * math.log(2 * 5 * 18 / 0.1))))


@pytest.mark.parametrize("scheme, s0, s1", [
    ("kaiming", math.sqrt(2 / 40), math.sqrt(2 / 300)),
    ("theory-unit", 1 / math.sqrt(5 * 300), 1 / math.sqrt(400)),
    ("theory", C18 / math.sqrt(5 * 300), C18 / math.sqrt(400)),
])
def test_scales_and_signs(scheme, s0, s1):
    with jax.enable_x64(True):
        p = flowsim.init_params(jax.random.key(0), d=40, m=300, m1=400, scheme=scheme, L=5, n=18)
    for x in (p.W_V, p.W_K, p.W_Q):
        assert x.shape == (300, 40)
        assert abs(np.std(np.asarray(x)) / s0 - 1) < 0.03 and abs(np.mean(np.asarray(x))) < 0.05 * s0
    assert p.W.shape == (400, 300) and abs(np.std(np.asarray(p.W)) / s1 - 1) < 0.03
    a = np.asarray(p.a)
    assert set(np.unique(a)) == {-1.0, 1.0} and abs(a.mean()) < 0.15


def test_overridden_scales_and_bad_scales():
    with jax.enable_x64(True):
        p = flowsim.init_params(jax.random.key(0), d=40, m=300, m1=400, scheme="theory", L=5, n=18,
                                sigma0=0.5, sigma1=2.0)
        q = flowsim.init_params(jax.random.key(0), d=40, m=300, m1=400, scheme="theory", L=5, n=18, c0=0.3, c1=3.0)
    assert abs(np.std(np.asarray(p.W_K)) / 0.5 - 1) < 0.03 and abs(np.std(np.asarray(p.W)) / 2.0 - 1) < 0.03
    assert abs(np.std(np.asarray(q.W_K)) * math.sqrt(5 * 300) / 0.3 - 1) < 0.03
    assert abs(np.std(np.asarray(q.W)) * math.sqrt(400) / 3.0 - 1) < 0.03
    with pytest.raises(ValueError, match="sigma0 must be a positive finite"):
        flowsim.init_params(jax.random.key(0), scheme="kaiming", sigma0=-1.0)
    with pytest.raises(ValueError, match="init scheme must be one of"):
        flowsim.init_params(jax.random.key(0), scheme="xavier")
    with pytest.raises(ValueError, match="needs the sequence length L and the training-set size n"):
        flowsim.init_params(jax.random.key(0), scheme="theory", L=5)
    with pytest.raises(ValueError, match=r"delta .* must be a number in \(0, 1\)"):
        flowsim.init_params(jax.random.key(0), scheme="theory", L=5, n=18, delta=1.5)
    with pytest.raises(ValueError, match="c0 and c1 are the constants of the theory schemes"):
        flowsim.init_params(jax.random.key(0), scheme="kaiming", c0=0.1)
    with pytest.raises(ValueError, match="m must be an integer >= 1, got 0"):
        flowsim.init_params(jax.random.key(0), m=0)


@pytest.mark.parametrize("m", [10**2, 10**3, 10**4, 10**6, 10**8])
def test_theory_init_meets_lemma_d8_on_nearly_every_seed(m):
    """Condition 1 as the appendix sets it: max_i |F(0)(X_i)| <= 0.01 on at least 7 of 8 seeds at every
    width, F(0) computed by the numpy reference's forward pass from the start itself (the four
    matrices at m = 100, the width-free coordinates above, with the true m in the softmax)."""
    n, L, d = 18, 4, 33
    data = _reference.Data.of(flowsim.make_dataset(jax.random.key(0), n=n, L=L, d=d, mode="theory"))
    F0 = []
    for seed in range(8):
        key = jax.random.key(100 + seed)
        if m <= 100:
            net = _reference.Net.of(flowsim.init_params(key, d, m, m, scheme="theory", L=L, n=n))
            F0.append(np.abs(_reference.outputs(net, data)).max())
        else:
            s = flowsim.init_subspace(key, d, m, m, scheme="theory", L=L, n=n)
            net = _reference.Net(W=np.asarray(s.u)[None, :], W_V=np.asarray(s.W_V), W_K=np.asarray(s.W_K),
                                 W_Q=np.asarray(s.W_Q), a=np.ones(1))
            F0.append(np.abs(_reference.outputs(net, data, m=m)).max())
    assert sum(f <= 0.01 for f in F0) >= 7, F0
    # theory-unit, the old unit constants, is far outside: O(1) outputs.
    unit = flowsim.init_subspace(jax.random.key(100), d, 10**6, 10**6, scheme="theory-unit", L=L)
    net = _reference.Net(W=np.asarray(unit.u)[None, :], W_V=np.asarray(unit.W_V), W_K=np.asarray(unit.W_K),
                         W_Q=np.asarray(unit.W_Q), a=np.ones(1))
    assert np.abs(_reference.outputs(net, data, m=10**6)).max() > 0.1


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
