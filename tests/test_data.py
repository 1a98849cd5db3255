"""Data guarantees of spec section 1 (Definition 2.1, Assumption 2.3)."""

import jax
import numpy as np
import pytest

import flowsim
from flowsim.models.cooccurrence.data import balanced_counts, irrelevant_slots


def _check_structure(ds):
    tok, lab, grp = np.asarray(ds.tokens), np.asarray(ds.labels), np.asarray(ds.groups)
    for row, y, g in zip(tok, lab, grp):
        words = list(row)
        assert words.count(2) == 1, "mu_3 must appear exactly once in every sample"
        has1, has2 = 0 in words, 1 in words
        assert words.count(0) <= 1 and words.count(1) <= 1
        assert (has1, has2) == {1: (True, True), 2: (True, False), 3: (False, True), 4: (False, False)}[g]
        assert y == (1.0 if g == 1 else -1.0)
        assert sum(w >= 3 for w in words) == len(words) - 1 - has1 - has2


@pytest.mark.parametrize("mode", ["theory", "sampled", "iid"])
def test_structure_labels_and_groups(mode):
    ds = flowsim.make_dataset(jax.random.key(3), n=24, L=6, d=200, mode=mode)
    _check_structure(ds)
    counts = np.bincount(np.asarray(ds.groups), minlength=5)[1:]
    if mode != "iid":
        assert tuple(counts) == (12, 4, 4, 4)


def test_paper_counts_and_positions_are_random():
    ds = flowsim.make_dataset(jax.random.key(0), n=60, L=5, d=64, counts=(30, 10, 10, 10))
    assert tuple(np.bincount(np.asarray(ds.groups), minlength=5)[1:]) == (30, 10, 10, 10)
    _check_structure(ds)
    # mu_3's position is uniform over L positions: every position is used in 60 samples.
    assert len(set(np.argmax(np.asarray(ds.tokens) == 2, axis=1))) == 5


def test_theory_mode_uses_each_irrelevant_word_once():
    n, L = 12, 5
    d = 3 + irrelevant_slots(n, L)
    ds = flowsim.make_dataset(jax.random.key(1), n=n, L=L, d=d, mode="theory")
    irr = np.asarray(ds.tokens)[np.asarray(ds.tokens) >= 3]
    assert len(irr) == irrelevant_slots(n, L) == len(set(irr.tolist()))
    # The slot count by direct enumeration: L - 3, L - 2, L - 2, L - 1 per sample of I1..I4.
    c = balanced_counts(n)
    assert irrelevant_slots(n, L) == c[0] * (L - 3) + (c[1] + c[2]) * (L - 2) + c[3] * (L - 1)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(n=13, L=5, d=500, mode="theory"), "divisible by 6"),
        (dict(n=12, L=5, d=20, mode="theory"), "d >= 35"),
        (dict(n=12, L=2, d=20), "L must be >= 3"),
        (dict(n=0, L=5, d=20), "n must be a positive"),
        (dict(n=12, L=5, d=3), "d must be >= 4"),
        (dict(n=12, L=5, d=20, mode="bogus"), "data mode must be one of"),
        (dict(n=12, L=5, d=20, counts=(6, 2, 2, 1)), "summing to n=12"),
    ],
)
def test_impossible_sizes_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        flowsim.make_dataset(jax.random.key(0), **kwargs)


def test_same_seed_same_data_and_random_embedding_orthonormal():
    a = flowsim.make_dataset(jax.random.key(7), n=18, L=4, d=16, embedding="random")
    b = flowsim.make_dataset(jax.random.key(7), n=18, L=4, d=16, embedding="random")
    c = flowsim.make_dataset(jax.random.key(8), n=18, L=4, d=16, embedding="random")
    assert np.array_equal(a.tokens, b.tokens) and np.array_equal(a.embedding, b.embedding)
    assert not np.array_equal(a.tokens, c.tokens)
    E = np.asarray(a.embedding, dtype=np.float64)
    np.testing.assert_allclose(E.T @ E, np.eye(16), atol=1e-5)
    X = np.asarray(a.X)
    assert X.shape == (18, 16, 4)
    np.testing.assert_allclose(X[0][:, 1], E[:, int(a.tokens[0, 1])])


def test_test_set_is_iid_with_same_embedding():
    ds = flowsim.make_dataset(jax.random.key(0), n=12, L=4, d=16, embedding="random")
    test = flowsim.sample_test_set(jax.random.key(5), 3000, ds)
    assert test.L == 4 and np.array_equal(test.embedding, ds.embedding)
    _check_structure(test)
    freq = np.bincount(np.asarray(test.groups), minlength=5)[1:] / 3000
    np.testing.assert_allclose(freq, [1 / 2, 1 / 6, 1 / 6, 1 / 6], atol=0.03)


@pytest.mark.parametrize("mode, basis", [("sampled", "standard"), ("theory", "random"), ("iid", "standard")])
def test_same_key_same_draws_whatever_the_x64_flag(mode, basis):
    """A key fixes the data, the start and the test set, inside and outside jax.enable_x64
    (float32 and float64 runs of one seed are the same problem)."""
    def draws():
        data = flowsim.make_dataset(jax.random.key(5), n=12, L=5, d=40, mode=mode, embedding=basis)
        params = flowsim.init_params(jax.random.key(6), d=40, m=7, m1=9, scheme="theory-unit", L=5)
        test = flowsim.sample_test_set(jax.random.key(7), 50, data)
        return [np.asarray(x) for x in (*jax.tree.leaves(data), *jax.tree.leaves(params), test.tokens, test.groups)]

    plain = draws()
    with jax.enable_x64(True):
        wide = draws()
    for x, y in zip(plain, wide):
        assert x.dtype == y.dtype
        np.testing.assert_array_equal(x, y)


def test_a_seed_is_one_problem_at_both_precisions():
    """The CLI's --seed draws the same data and start for --precision 64 and 32."""
    from flowsim.config import RunConfig

    (d64, p64, k64), (d32, p32, k32) = (RunConfig.preset("theory").merge({"precision": b}).build() for b in (64, 32))
    for x, y in zip(jax.tree.leaves((d64, p64)), jax.tree.leaves((d32, p32))):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    np.testing.assert_array_equal(jax.random.key_data(k64), jax.random.key_data(k32))


def test_the_readme_draws_are_the_cli_seed():
    """README's Python snippet (keys split by hand) draws the problem `flowsim integrate --seed 0` solves."""
    from flowsim.config import RunConfig

    data, params, k_test = RunConfig.preset("paper").build()
    k_data, k_init, k_readme = jax.random.split(jax.random.key(0), 3)
    by_hand = (flowsim.make_dataset(k_data, n=60, L=5, d=64, counts=(30, 10, 10, 10)),
               flowsim.init_params(k_init, d=64, m=128, m1=256, scheme="kaiming"))
    for x, y in zip(jax.tree.leaves((data, params)), jax.tree.leaves(by_hand)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    np.testing.assert_array_equal(jax.random.key_data(k_test), jax.random.key_data(k_readme))


def test_sizes_that_cannot_fit_are_refused_before_allocating(tiny, monkeypatch):
    from flowsim.core.resources import ResourceError

    monkeypatch.setenv("FLOWSIM_MEMORY_LIMIT", "1G")
    like = tiny[1]
    with pytest.raises(ResourceError, match=r"n=1000000000 .*needs about 209 GB of memory but 1 GB is available; choose a smaller n$"):
        flowsim.make_dataset(jax.random.key(0), n=10**9, L=5, d=64)
    with pytest.raises(ResourceError, match="n_test=100000000 .*choose a smaller n_test"):
        flowsim.sample_test_set(jax.random.key(0), 10**8, like)
    with pytest.raises(ValueError, match="test set size n_test must be a positive integer, got 0"):
        flowsim.sample_test_set(jax.random.key(0), 0, like)
