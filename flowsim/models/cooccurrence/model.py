"""The one-layer transformer F, its linear-MLP function G and the logistic loss (paper: Eqs. 1-2)."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from .data import Dataset


class Params(eqx.Module):
    """Parameters of Eq. (1): ``F(X) = sum_l sum_j a_j w_j^T W_V X softmax(X^T W_K^T W_Q x_l / sqrt(m))``.

    ``W`` is ``m1 x m`` with rows ``w_j^T``; ``W_V``, ``W_K``, ``W_Q`` are ``m x d``; ``a`` in
    {+1, -1}^m1 is fixed during training.  Build one directly for a custom initialization
    (numpy or JAX arrays of a floating-point dtype); dtypes, shapes, finiteness and the signs of
    ``a`` are checked here.
    """

    W: Float[Array, "m1 m"]
    W_V: Float[Array, "m d"]
    W_K: Float[Array, "m d"]
    W_Q: Float[Array, "m d"]
    a: Float[Array, " m1"]

    def __init__(self, W, W_V, W_K, W_Q, a):
        # Host arrays stay numpy, so float64 values survive when JAX's x64 mode is off.
        self.W, self.W_V, self.W_K, self.W_Q, self.a = (
            x if isinstance(x, jax.Array) else np.asarray(x) for x in (W, W_V, W_K, W_Q, a)
        )

    def __check_init__(self):
        names = ("W", "W_V", "W_K", "W_Q", "a")
        arrays = (self.W, self.W_V, self.W_K, self.W_Q, self.a)
        for name, x in zip(names, arrays):
            if not jnp.issubdtype(x.dtype, jnp.floating):  # integers would be cast: say so instead
                raise ValueError(f"Params.{name} must be a real floating-point array, got dtype {x.dtype}")
        m, d = self._attention_shape()
        if self.W.ndim != 2 or self.W.shape[1] != m:
            raise ValueError(f"Params.W must be an m1 x m matrix with m={m} (the rows of W_V, W_K, W_Q), "
                             f"got shape {self.W.shape}")
        m1 = self.W.shape[0]
        if self.a.shape != (m1,):
            raise ValueError(f"Params.a must be a vector of length m1={m1}, got shape {self.a.shape}")
        if any(isinstance(x, jax.core.Tracer) for x in arrays):
            return
        for name, x in zip(names, arrays):
            if not np.all(np.isfinite(np.asarray(x))):
                raise ValueError(f"Params.{name} has non-finite entries (NaN or inf)")
        if not np.all(np.abs(np.asarray(self.a)) == 1):
            raise ValueError("Params.a must have every entry equal to +1 or -1")

    def columns(self, dataset: Dataset):
        """``(u, V, K, Q)``: ``u = W^T a`` (the MLP as the loss sees it, spec 7.1) and the word
        vectors ``W_V mu_k``, ``W_K mu_k``, ``W_Q mu_k`` as the columns of ``m x d`` matrices."""
        return (self.W.T @ self.a, *(word_columns(X, dataset) for X in (self.W_V, self.W_K, self.W_Q)))

    def _attention_shape(self) -> tuple[int, int]:
        """The shape (m, d) that W_V, W_K, W_Q share, or a ValueError naming the one that is wrong.

        m and d are each what at least two of the three say (m: W's columns when all three
        differ), so the message blames the odd one out rather than always W_K or W_Q.
        """
        named = {"W_V": self.W_V, "W_K": self.W_K, "W_Q": self.W_Q}
        for name, x in named.items():
            if x.ndim != 2:
                raise ValueError(f"Params.{name} must be an m x d matrix, got shape {x.shape}")
        rows = [x.shape[0] for x in named.values()]
        cols = [x.shape[1] for x in named.values()]
        W_cols = self.W.shape[1] if self.W.ndim == 2 else None
        shape = (_shared(rows, W_cols if W_cols in rows else rows[0]), _shared(cols, cols[0]))
        for name, x in named.items():
            if x.shape != shape:
                like = [n for n, y in named.items() if y.shape == shape]
                source = f"like {' and '.join(like)}" if like else "the size most of W_V, W_K, W_Q and W agree on"
                raise ValueError(f"Params.{name} must have shape {shape} (m x d, {source}), got {x.shape}")
        return shape

    @property
    def m(self) -> int:
        return self.W_V.shape[0]

    @property
    def m1(self) -> int:
        return self.W.shape[0]

    @property
    def d(self) -> int:
        return self.W_V.shape[1]


def _shared(sizes: list[int], fallback: int) -> int:
    """The size that at least two of ``sizes`` have, else ``fallback``."""
    return next((s for s in sizes if sizes.count(s) >= 2), fallback)


def logistic_loss(x: Array) -> Array:
    """l(x) = log(1 + exp(-x)) in the stable softplus form (Eq. 2)."""
    return jax.nn.softplus(-x)


def logistic_g(x: Array) -> Array:
    """g(x) = -l'(x) = 1 / (1 + exp(x))."""
    return jax.nn.sigmoid(-x)


def forward(params: Params, X: Float[Array, "*batch d L"]) -> Float[Array, "*batch"]:
    """F(X) of Eq. (1) for one sample ``X`` (d x L) or a batch of them."""
    m = params.m
    u = params.W.T @ params.a
    values = jnp.einsum("m,md,...dl->...l", u, params.W_V, X)
    keys = jnp.einsum("md,...dl->...ml", params.W_K, X)
    queries = jnp.einsum("md,...dl->...ml", params.W_Q, X)
    logits = jnp.einsum("...mk,...ml->...kl", keys, queries) / jnp.sqrt(m)
    return output_from_logits(values, logits)


def output_from_logits(values: Float[Array, "*b L"], logits: Float[Array, "*b L L"]) -> Float[Array, "*b"]:
    """``sum_l sum_k values_k softmax_k(logits[k, l])``: the softmax runs over keys k for each query l."""
    return jnp.einsum("...k,...kl->...", values, jax.nn.softmax(logits, axis=-2))


def word_columns(M: Float[Array, "m d"], dataset: Dataset) -> Float[Array, "m d"]:
    """``M mu_k`` for every word k, as columns (the identity basis needs no product)."""
    return M if dataset.basis == "standard" else M @ dataset.embedding


def outputs(params: Params, dataset: Dataset) -> Float[Array, " n"]:
    """F(X_i) for every sample, gathering word columns instead of forming X_i.

    The logits ``x_k^T W_K^T W_Q x_l`` come either per sample (cost ``n L^2 m``) or from the
    vocabulary's score matrix ``s(mu_k, mu_l)`` (cost ``d^2 m``), whichever is cheaper; both
    are the same numbers.
    """
    u = params.W.T @ params.a
    z = word_columns(params.W_V, dataset).T @ u
    return outputs_words(z, word_columns(params.W_K, dataset).T, word_columns(params.W_Q, dataset).T,
                         dataset.tokens)


def outputs_words(
    z: Float[Array, " d"], keys: Float[Array, "d r"], queries: Float[Array, "d r"], tokens: Int[Array, "n L"],
    m=None,
) -> Float[Array, " n"]:
    """F(X_i) from the words' values ``z_k = G(mu_k)``, keys ``W_K mu_k`` and queries ``W_Q mu_k``
    (one row per word, so that gathering a sample's words reads contiguous rows).  The rows may be
    coordinates in any orthonormal basis (spec 7.6); ``m`` is the attention width of the scores'
    ``1/sqrt(m)`` (default: the length of a row)."""
    d, r = keys.shape
    m = r if m is None else m
    n, L = tokens.shape
    if d**2 <= n * L**2:
        return outputs_reduced(z, keys @ queries.T, tokens, m)
    logits = jnp.einsum("nkm,nlm->nkl", keys[tokens], queries[tokens]) / jnp.sqrt(m)
    return output_from_logits(z[tokens], logits)


def outputs_reduced(
    z: Float[Array, " d"], M: Float[Array, "d d"], tokens: Int[Array, "n L"], m: int
) -> Float[Array, " n"]:
    """F(X_i) from the reduced variables of spec 7.5: ``z_k = G(mu_k)`` and ``M_kl = s(mu_k, mu_l)``.

    With fewer word pairs than position pairs (``d^2 < n L^2``, e.g. a large test set) the
    exponentials are taken once per pair of words: ``softmax_k(S_kl) = e^(S_kl - c_l) / sum_k'
    e^(S_k'l - c_l)`` holds for any ``c_l``, here the largest score of query word l over the
    vocabulary.  That is exact unless a column of ``S = M / sqrt(m)`` spans more than 600 (then
    an in-sample column could underflow), in which case the per-sample softmax is used.
    """
    d = z.shape[0]
    n, L = tokens.shape
    pairs = tokens[:, :, None] * d + tokens[:, None, :]  # flat indices of (key word, query word)
    S = M / jnp.sqrt(m)

    def per_sample(S):
        return output_from_logits(jnp.take(z, tokens), jnp.take(S.reshape(-1), pairs))

    if d * d >= n * L * L:
        return per_sample(S)

    def per_word(S):
        E = jnp.take(jnp.exp(S - S.max(axis=0, keepdims=True)).reshape(-1), pairs)
        return jnp.einsum("nk,nkl->n", jnp.take(z, tokens), E / E.sum(axis=1, keepdims=True))

    spread = jnp.max(S.max(axis=0) - S.min(axis=0))
    return jax.lax.cond(spread < 600, per_word, per_sample, S)


def margins(params: Params, dataset: Dataset) -> Float[Array, " n"]:
    """y_i F(X_i): sample i is classified correctly when its margin is positive."""
    return dataset.labels * outputs(params, dataset)


def loss(params: Params, dataset: Dataset) -> Float[Array, ""]:
    """Lhat = (1/n) sum_i l(y_i F(X_i)) (Eq. 2); on a fresh i.i.d. test set, the test loss."""
    return jnp.mean(logistic_loss(margins(params, dataset)))


def G(params: Params, embedding: Float[Array, "d d"]) -> Float[Array, " d"]:
    """The linear-MLP function on every word: ``G(mu_k) = a^T W W_V mu_k``."""
    return (params.a @ params.W @ params.W_V) @ embedding


def attention_scores(params: Params, embedding: Float[Array, "d d"], words=(0, 1, 2)) -> Array:
    """``s(mu_i, mu_j) = mu_i^T W_K^T W_Q mu_j`` for the given (0-based) words; mu_1..mu_3 by default."""
    E = embedding[:, jnp.asarray(words)]
    return (params.W_K @ E).T @ (params.W_Q @ E)


def value_correlations(params: Params, embedding: Float[Array, "d d"], words=(0, 1, 2)) -> Array:
    """``mu_i^T W_V^T W_V mu_j`` for the given (0-based) words."""
    return gram3(params.W_V, embedding, words)


def gram3(M: Float[Array, "m d"], embedding: Float[Array, "d d"], words=(0, 1, 2)) -> Array:
    """``mu_i^T M^T M mu_j`` for the given (0-based) words (e.g. M = W_K for Theorem 3.1's
    ``mu^T W_K^T W_K nu``)."""
    V = M @ embedding[:, jnp.asarray(words)]
    return V.T @ V
