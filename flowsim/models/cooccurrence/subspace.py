"""Width as a number: a start as its coordinates in the subspace the flow never leaves (spec 7.6-7.7), by exact compression or direct sampling.

Every column of ``u = W^T a``, ``W_V``, ``W_K``, ``W_Q`` stays in the span of the initial columns
of ``[u(0), W_V(0), W_K(0), W_Q(0)]``, of dimension at most ``p = 3d + 1`` whatever m is (spec
7.6).  In an orthonormal basis ``B`` (``m x p``) of that span, the coordinates ``B^T u``,
``B^T W_V``, ... follow the same flow with ``p`` rows in place of ``m``, as long as the model keeps
the true ``m`` (the scores' ``1/sqrt(m)``) and ``m1`` (``du/dt = -m1 grad_u Lhat``) as numbers.
"""

from __future__ import annotations

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from .data import Dataset
from ...core.draws import draw
from .model import Params, word_columns


def rank_bound(d: int) -> int:
    """``p = 3d + 1``: the columns of ``u``, ``W_V``, ``W_K``, ``W_Q`` that span the flow's subspace."""
    return 3 * d + 1


class SubspaceStart(eqx.Module):
    """A start of width ``m``, ``m1`` given by coordinates: ``u`` (``p``) and ``W_V``, ``W_K``, ``W_Q``
    (``p x d``) in an orthonormal basis of a subspace of R^m that holds the flow (spec 7.6), with
    ``p = 3d + 1`` rows whatever the width (zero rows pad a smaller span).  ``m`` and ``m1`` are
    numbers (arrays, so that one compiled program serves every width).

    Made by :func:`compress` (exact, from matrices) or :func:`sample_start` (a random start
    drawn from its exact distribution without any m-sized array).  A compressed start that keeps
    its ``basis`` (``m x p``), ``W(0)`` and ``a`` gives the final matrices back, and its
    ``neuron_gram`` (``(W(0) B)^T (W(0) B)``) and ``neuron_scale`` (``||W(0) W(0)^T||_F``) give
    the neuron inner products ``<w_j1, w_j2>`` (Theorem 3.1); a sampled one gives neither.
    """

    u: Float[Array, " p"]
    W_V: Float[Array, "p d"]
    W_K: Float[Array, "p d"]
    W_Q: Float[Array, "p d"]
    m: Array  # the attention width, a number
    m1: Array  # the MLP width, a number
    sigma0: Array  # the std of the entries of W_V, W_K, W_Q it was drawn with (or measured: compress)
    sigma1: Array  # the std of the entries of W
    basis: Float[Array, "m p"] | None = None
    W0: Float[Array, "m1 m"] | None = None
    a: Float[Array, " m1"] | None = None
    neuron_gram: Float[Array, "p p"] | None = None
    neuron_scale: Float[Array, ""] | None = None

    def __check_init__(self):
        named = {"u": self.u, "W_V": self.W_V, "W_K": self.W_K, "W_Q": self.W_Q}
        for name, x in named.items():
            if not jnp.issubdtype(x.dtype, jnp.floating):
                raise ValueError(f"SubspaceStart.{name} must be a real floating-point array, got dtype {x.dtype}")
        p = self.u.shape[-1] if self.u.ndim else None
        for name in ("W_V", "W_K", "W_Q"):
            x = named[name]
            if x.ndim < 2 or x.shape[-2] != p or x.shape != self.W_V.shape:
                raise ValueError(f"SubspaceStart.{name} must be p x d with p = len(u) = {p} rows, like W_V "
                                 f"{self.W_V.shape}, got {x.shape}")
        if any(isinstance(x, jax.core.Tracer) for x in (*named.values(), self.m, self.m1)):
            return
        for name, x in named.items():
            if not np.all(np.isfinite(np.asarray(x))):
                raise ValueError(f"SubspaceStart.{name} has non-finite entries (NaN or inf)")
        for name, w in (("m", self.m), ("m1", self.m1)):
            if not np.all(np.asarray(w) >= 1):
                raise ValueError(f"SubspaceStart.{name} must be a width >= 1, got {np.asarray(w)}")

    @property
    def d(self) -> int:
        return self.W_V.shape[-1]

    def columns(self, dataset: Dataset):
        """``(u, V, K, Q)``: the coordinates of ``u`` and of the word vectors ``W_V mu_k``, ... as columns."""
        return (self.u, *(word_columns(X, dataset) for X in (self.W_V, self.W_K, self.W_Q)))


def compress(params: Params, *, final_params: bool = True) -> SubspaceStart:
    """The exact coordinates of ``params`` in an orthonormal basis of the span of the initial
    columns of ``[u(0), W_V, W_K, W_Q]`` (a QR decomposition, in float64 on the host).

    Every inner product the flow, the observables and the claims read is preserved exactly
    (to rounding).  ``final_params`` keeps the basis, ``W(0)`` and ``a`` so that the final
    matrices and the neuron inner products can be formed (memory ``m x p`` beyond the start's)."""
    W, W_V, W_K, W_Q, a = (np.asarray(x, np.float64) for x in (params.W, params.W_V, params.W_K, params.W_Q,
                                                                 params.a))
    m, d = W_V.shape
    p = rank_bound(d)
    u0 = W.T @ a
    basis, R = np.linalg.qr(np.concatenate([u0[:, None], W_V, W_K, W_Q], axis=1))
    R = _pad_rows(R, p)
    kept = {}
    if final_params:
        WB = W @ basis
        kept = dict(basis=_pad_rows(basis.T, p).T, W0=W, a=a, neuron_gram=_pad_rows(_pad_rows(WB.T @ WB, p).T, p),
                    neuron_scale=np.linalg.norm(W.T @ W if m <= W.shape[0] else W @ W.T))
    rms = lambda *xs: np.sqrt(np.mean(np.concatenate([np.ravel(x) for x in xs]) ** 2))
    return SubspaceStart(u=R[:, 0], W_V=R[:, 1:d + 1], W_K=R[:, d + 1:2 * d + 1], W_Q=R[:, 2 * d + 1:],
                         m=np.asarray(m, np.int64), m1=np.asarray(W.shape[0], np.int64),
                         sigma0=rms(W_V, W_K, W_Q), sigma1=rms(W), **kept)


def _pad_rows(x: np.ndarray, rows: int) -> np.ndarray:
    """``x`` with zero rows appended up to ``rows``: zero coordinates along unused basis directions
    stay zero under the flow, so padding changes no inner product and fixes the state's shape."""
    return np.concatenate([x, np.zeros((rows - x.shape[0], *x.shape[1:]), x.dtype)]) if x.shape[0] < rows else x


def sample_start(key: PRNGKeyArray, d: int, m: int, m1: int, sigma0: float, sigma1: float) -> SubspaceStart:
    """A Gaussian start (``W_ij ~ N(0, sigma1^2)``, entries of ``W_V, W_K, W_Q ~ N(0, sigma0^2)``,
    ``a`` any fixed signs) of widths ``m``, ``m1``, drawn as subspace coordinates with no m-sized
    array (spec 7.7).

    ``[u(0) / (sqrt(m1) sigma1), W_V / sigma0, W_K / sigma0, W_Q / sigma0]`` is an ``m x p`` matrix
    of i.i.d. N(0, 1) entries (``u(0) = W(0)^T a ~ N(0, m1 sigma1^2 I)`` is independent of the
    rest), and the R factor of its QR decomposition has the Bartlett distribution: ``R_ii =
    sqrt(chi^2_{m-i+1})`` (i = 1..p), ``R_ij ~ N(0, 1)`` above the diagonal, all independent.  The
    coordinates in the basis Q are R's columns, so drawing R draws the start exactly.  Below
    ``m = p`` the ``m x p`` Gaussian matrix itself is drawn and factored (it is small).
    """
    p = rank_bound(d)
    R = draw(_bartlett, key, np.float64(m), p=p) if m >= p else _pad_rows(
        np.linalg.qr(draw(jax.random.normal, key, (int(m), p), jnp.float64))[1], p)
    scale = np.concatenate([[np.sqrt(m1) * sigma1], np.full(3 * d, sigma0)])
    R = R * scale[None, :]
    return SubspaceStart(u=R[:, 0], W_V=R[:, 1:d + 1], W_K=R[:, d + 1:2 * d + 1], W_Q=R[:, 2 * d + 1:],
                         m=np.asarray(m, np.int64), m1=np.asarray(m1, np.int64),
                         sigma0=np.float64(sigma0), sigma1=np.float64(sigma1))


@functools.partial(jax.jit, static_argnames=("p",))
def _bartlett(key, m, *, p):
    """The R factor of the QR decomposition of an ``m x p`` standard Gaussian matrix (positive
    diagonal).  ``m`` is a value, not a shape, so one compiled program draws every width."""
    k_diag, k_upper = jax.random.split(key)
    dof = m - jnp.arange(p, dtype=jnp.float64)  # m - i + 1 for i = 1..p
    diag = jnp.sqrt(2 * jax.random.gamma(k_diag, dof / 2, dtype=jnp.float64))  # chi^2_k = 2 Gamma(k / 2)
    upper = jnp.triu(jax.random.normal(k_upper, (p, p), jnp.float64), k=1)
    return upper + jnp.diag(diag)
