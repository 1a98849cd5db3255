"""Tiny configurations shared by the tests: few distinct shapes, so few compilations."""

import jax
import pytest

import flowsim


@pytest.fixture(scope="session")
def tiny():
    """n=12, L=4, d=16 (sampled: some irrelevant words absent), m=8, m1=12, Kaiming init, float64."""
    with jax.enable_x64(True):
        data = flowsim.make_dataset(jax.random.key(0), n=12, L=4, d=16, counts=(6, 2, 2, 2))
        params = flowsim.init_params(jax.random.key(1), d=16, m=8, m1=12)
        test = flowsim.sample_test_set(jax.random.key(2), 40, data)
    return data, params, test
