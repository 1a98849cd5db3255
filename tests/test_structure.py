"""Spec 7's exact structure of the flow, checked numerically: rank-one motion of W (7.1), frozen
absent words (7.2) and the closed reduced Gram system (7.5), against independent computations.
(7.3 conservation and 7.4 monotone loss: tests/test_flow.py and tests/test_gd.py.)"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import solve_ivp

import flowsim


def test_W_moves_only_along_a(tiny, tiny_run):
    """7.1: W(t) = W(0) + a (u(t) - u(0))^T / m1 with u = W^T a."""
    a = np.asarray(tiny_run.params_init.a)
    W0, W1 = np.asarray(tiny_run.params_init.W), np.asarray(tiny_run.params_final.W)
    u0, u1 = W0.T @ a, W1.T @ a
    assert np.max(np.abs(W1 - W0)) > 1e-2
    np.testing.assert_allclose(W1, W0 + np.outer(a, u1 - u0) / len(a), atol=1e-9)


@pytest.mark.parametrize("basis", ["standard", "random"])
def test_words_absent_from_the_data_get_zero_gradient(tiny, basis):
    """7.2: pad the vocabulary with two words that no sample uses; their directions get no gradient."""
    params, data = tiny
    d = data.d + 2
    with jax.enable_x64(True):
        E = flowsim.make_embedding(d, basis, jax.random.key(5))
        padded = flowsim.Dataset(tokens=data.tokens, labels=data.labels, groups=data.groups, embedding=E, basis=basis)
        rng = np.random.default_rng(0)
        p = flowsim.Params(W=params.W, a=params.a,
                           **{k: rng.normal(size=(params.m, d)) for k in ("W_V", "W_K", "W_Q")})
        grad = jax.grad(flowsim.loss)(p, padded)
    absent = E[:, data.d:]
    for g in (grad.W_V, grad.W_K, grad.W_Q):
        assert np.max(np.abs(np.asarray(g) @ E[:, :data.d])) > 1e-3
        np.testing.assert_allclose(np.asarray(g) @ absent, 0.0, atol=1e-14)


def _reduced_loss(z, M, tokens, labels, m):
    """Lhat from z_k = G(mu_k) and M_kl = s(mu_k, mu_l) alone, written out for one-hot words."""
    logits = M[tokens[:, :, None], tokens[:, None, :]] / np.sqrt(m)  # [i, key k, query l]
    F = jnp.einsum("ik,ikl->i", z[tokens], jax.nn.softmax(logits, axis=1))
    return jnp.mean(jnp.log1p(jnp.exp(-labels * F)))


def test_reduced_gram_system_reproduces_the_flow(tiny, tiny_run):
    """7.5: integrate the d x d system for (z, s, C_V, M, A, B) with SciPy and compare G and the
    scores with the four-matrix flow."""
    params, data = tiny
    d, m, m1 = params.d, params.m, params.m1
    P = {k: np.asarray(getattr(params, k), np.float64) for k in ("W", "W_V", "W_K", "W_Q", "a")}
    u = P["W"].T @ P["a"]
    y0 = [P["W_V"].T @ u, np.array([u @ u]), P["W_V"].T @ P["W_V"], P["W_K"].T @ P["W_Q"],
          P["W_K"].T @ P["W_K"], P["W_Q"].T @ P["W_Q"]]
    sizes = [x.size for x in y0]
    with jax.enable_x64(True):
        grads = jax.jit(jax.grad(_reduced_loss, argnums=(0, 1)), static_argnums=4)
        tokens, labels = jnp.asarray(data.tokens), jnp.asarray(data.labels)

        def rhs(t, y):
            z, s, CV, M, A, B = (p.reshape(x.shape) for p, x in zip(np.split(y, np.cumsum(sizes)[:-1]), y0))
            h, Gm = (np.asarray(g) for g in grads(jnp.asarray(z), jnp.asarray(M), tokens, labels, m))
            return np.concatenate([(-(s * h + m1 * CV @ h)).ravel(), [-2 * m1 * z @ h],
                                   (-(np.outer(h, z) + np.outer(z, h))).ravel(), (-(A @ Gm + Gm @ B)).ravel(),
                                   (-(Gm @ M.T + M @ Gm.T)).ravel(), (-(Gm.T @ M + M.T @ Gm)).ravel()])

        idx = [10, 25, 40]
        sol = solve_ivp(rhs, (0.0, tiny_run.ts[-1]), np.concatenate([x.ravel() for x in y0]), method="DOP853",
                        rtol=1e-11, atol=1e-12, t_eval=tiny_run.ts[idx])
    assert sol.success
    for k, i in enumerate(idx):
        z = sol.y[:d, k]
        M = sol.y[sizes[0] + sizes[1] + sizes[2]:][: d * d, k].reshape(d, d)
        np.testing.assert_allclose(z, tiny_run.observables["G"][i], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(M[:3, :3], tiny_run.observables["scores"][i], rtol=1e-5, atol=1e-6)
