"""The four-matrix flow with its exact reductions (spec 7.1-7.2): u = W^T a and the moving word columns, as rows."""

from __future__ import annotations

import abc
from typing import ClassVar

import jax
import jax.numpy as jnp
import optimistix as optx
from jaxtyping import Array, Float, Int, PyTree

from .. import model
from ..data import Dataset
from ..model import Params
from .base import AbstractEngine, FlowArgs, Grams, Quantities, Reference, Sizes, in_basis, param_quantities, \
    present_words, rank_one_corr_change, reference_of, sum_squares


class AbstractWordRows(AbstractEngine):
    """Shared by the engines whose state is ``(u, V_a, K_a, Q_a)``: ``u = W^T a``
    (``du/dt = -m1 grad_u Lhat``, spec 7.1) and, as rows, the vectors ``W_V mu_k, W_K mu_k,
    W_Q mu_k`` of the words k present in the training set (rows, so that gathering a sample's
    words reads contiguous memory); the other words keep their initial vectors (spec 7.2).

    A row may be a vector of R^m itself or its coordinates in an orthonormal basis of a subspace
    that holds the flow (spec 7.6): inner products are the same, so the loss and its gradient
    are, as long as the scores keep the true ``m`` (:attr:`width`) and ``du/dt`` the true ``m1``
    (:attr:`mlp_width`)."""

    shaped_by_words: ClassVar[bool] = True
    # r: the rows, m for the reduced engine, p = 3d + 1 coordinates for the subspace one.
    # k word rows whatever words were drawn (base.word_rows): the present words, then padding
    # rows that no sample reads, which stay 0 (their gradient is exactly 0).
    present: Int[Array, " k"]  # the words present in the training set, then d for each padding row
    local: Int[Array, " d"]  # each word's index among the present ones (-1 if absent)
    u0: Float[Array, " r"]
    V0: Float[Array, "r d"]  # W_V mu_k, W_K mu_k, W_Q mu_k at t = 0, as columns
    K0: Float[Array, "r d"]
    Q0: Float[Array, "r d"]

    @property
    @abc.abstractmethod
    def width(self):
        """m, the attention width (the scores are divided by sqrt(m))."""

    @property
    @abc.abstractmethod
    def mlp_width(self):
        """m1, the number of MLP neurons (``du/dt = -m1 grad_u Lhat``)."""

    def init_state(self, start, dataset: Dataset) -> PyTree:
        return (start.columns(dataset)[0], *self._word_rows())

    def _word_rows(self) -> tuple[Array, Array, Array]:
        """``(V_a, K_a, Q_a)`` at t = 0: the present words' initial columns as rows, padding rows 0."""
        return tuple(jnp.take(X0, self.present, axis=1, mode="fill", fill_value=0).T for X0 in (self.V0, self.K0, self.Q0))

    def error_norm(self, y) -> Float[Array, ""]:
        # The padding rows' error is exactly 0: the RMS over the other entries is the norm the
        # state without them would have, so padding changes no step.
        words = jnp.sum(self.present < self.local.shape[0])
        return optx.two_norm(y) / jnp.sqrt(((1 + 3 * words) * self.u0.shape[0]).astype(self.u0.dtype))

    def _columns(self, X_a: Float[Array, "k r"], X0: Float[Array, "r d"], words=slice(None)) -> Array:
        """Columns ``words`` (default all d) in the embedding basis: those of present words from the
        state, the rest from t = 0."""
        k = self.local[words]
        return jnp.where(k >= 0, X_a[jnp.maximum(k, 0)].T, X0[:, words])

    def _full_basis(self, y) -> Params:
        u, V_a, K_a, Q_a = y
        # A one-neuron MLP with a = (1) and W = u^T computes exactly F: the loss sees W only through u.
        return Params(W=u[None, :], W_V=self._columns(V_a, self.V0), W_K=self._columns(K_a, self.K0),
                      W_Q=self._columns(Q_a, self.Q0), a=jnp.ones(1, u.dtype))

    def _outputs(self, y, data: Dataset) -> Float[Array, " n"]:
        u, V_a, K_a, Q_a = y
        return model.outputs_words(V_a @ u, K_a, Q_a, self.local[data.tokens], self.width)

    def loss(self, y: PyTree, args: FlowArgs) -> Float[Array, ""]:
        return jnp.mean(model.logistic_loss(self.margins(y, args)))

    def vector_field(self, t, y: PyTree, args: FlowArgs) -> PyTree:
        g_u, g_V, g_K, g_Q = jax.grad(self.loss)(y, args)
        return (-self.mlp_width * g_u, -g_V, -g_K, -g_Q)

    def margins(self, y, args: FlowArgs) -> Float[Array, " n"]:
        return args.dataset.labels * self._outputs(y, args.dataset)

    def G(self, y, args: FlowArgs, words=slice(None)) -> Float[Array, " k"]:
        return self._columns(y[1], self.V0, words).T @ y[0]

    def scores3(self, y, args: FlowArgs) -> Float[Array, "3 3"]:
        # Evaluated at every step by the event: only the three columns it needs.
        return self._columns(y[2], self.K0, slice(3)).T @ self._columns(y[3], self.Q0, slice(3))

    def _rebuild(self, y, args: FlowArgs, W0, a, lift=lambda X: X) -> Params:
        """The full matrices from the state, ``W(0)`` and ``a``: ``W = W(0) + a (u - u(0))^T / m1``,
        the columns of present words from the state and the others from t = 0, each row mapped
        to R^m by ``lift`` (the basis of the subspace the rows are coordinates in, if any)."""
        p = self._full_basis(y)
        data = args.dataset
        back = lift if data.basis == "standard" else (lambda X: lift(X) @ data.embedding.T)
        W = W0 + jnp.outer(a, lift(y[0] - self.u0)) / self.mlp_width
        return Params(W=W, W_V=back(p.W_V), W_K=back(p.W_K), W_Q=back(p.W_Q), a=a)

    def grams(self, y: PyTree, dataset: Dataset) -> Grams:
        # The columns are already W_V mu_k, ...: inner products need no basis.
        u, V, K, Q = self._words(y)
        return Grams(G=V.T @ u, M=K.T @ Q, C_V=V.T @ V, A=K.T @ K, B=Q.T @ Q, s=u @ u)

    def attention_width(self, y):
        return self.width

    def _words(self, y):
        """``(u, V, K, Q)``: u and every word's columns (d of them) at ``y``."""
        u, V_a, K_a, Q_a = y
        return u, self._columns(V_a, self.V0), self._columns(K_a, self.K0), self._columns(Q_a, self.Q0)

    def _neurons(self, y, W0, a, lift=lambda X: X) -> Float[Array, "m1 d"]:
        """``a_j w_j^T W_V mu_k`` with ``a_j w_j = a_j w_j(0) + (u - u(0)) / m1`` (spec 7.1, a_j^2 = 1),
        each row mapped to R^m by ``lift``."""
        u, V, _, _ = self._words(y)
        return (a[:, None] * W0) @ lift(V) + ((u - self.u0) @ V)[None, :] / self.mlp_width

    def conserved(self, y: PyTree):
        """The conserved matrices less their constant parts, in the rows' space (``r x r``; in
        coordinates isometric to the ``m x m`` matrices): absent columns and W(0) drop out of
        ``W_K W_K^T - W_Q W_Q^T`` and ``W^T W - W_V W_V^T = (u u^T - u0 u0^T) / m1 + const - W_V W_V^T``."""
        u, V_a, K_a, Q_a = y
        return K_a.T @ K_a - Q_a.T @ Q_a, jnp.outer(u, u) / self.mlp_width - V_a.T @ V_a

    def _quantities(self, y, args: FlowArgs, field, neuron_delta2, neuron_corr) -> Quantities:
        g_u, *rest = field
        grad2 = sum_squares(rest) + jnp.sum(g_u**2) / self.mlp_width  # ||a g^T||^2 = m1 ||g||^2
        return param_quantities(self._full_basis(y), args, in_basis(args.dataset), in_basis(args.test_set),
                                grad2, self.conserved(y), neuron_delta2, neuron_corr, m=self.width)


class ReducedEngine(AbstractWordRows):
    """The four-matrix flow through ``u = W^T a`` and the present words' columns, in R^m.  The
    full matrices are rebuilt exactly: ``W = W(0) + a (u - u(0))^T / m1`` and the absent columns
    from t = 0."""

    name: ClassVar[str] = "reduced"
    W0: Float[Array, "m1 m"]
    a: Float[Array, " m1"]

    @classmethod
    def build(cls, start: Params, dataset: Dataset) -> ReducedEngine:
        present, local = present_words(dataset)
        u0, V0, K0, Q0 = start.columns(dataset)
        return cls(present=jnp.asarray(present, jnp.int32), local=jnp.asarray(local, jnp.int32),
                   u0=u0, V0=V0, K0=K0, Q0=Q0, W0=start.W, a=start.a)

    @classmethod
    def step_cost(cls, s: Sizes) -> float:
        k = s.word_rows
        return 42 * s.m * (k + min(k * k, s.n * s.L * s.L)) + 40 * 3 * s.m * k

    @classmethod
    def footprint(cls, s: Sizes) -> tuple[float, float]:
        state = s.m * (1 + 3 * s.word_rows)
        # Held: W(0) and a, the initial columns, the full-basis matrices of one observation and
        # the m x m conserved matrices (now and at t = 0).
        return state, s.m1 * (s.m + 1) + 6 * s.m * s.d + 4 * s.m * s.m

    @property
    def width(self):
        return self.V0.shape[0]

    @property
    def mlp_width(self):
        return self.a.shape[0]

    def reference(self, y0, start: Params, dataset: Dataset) -> Reference:
        return reference_of(self, y0, start, dataset)

    def neuron_values(self, y, dataset: Dataset) -> Float[Array, "m1 d"]:
        return self._neurons(y, self.W0, self.a)

    def to_params(self, y: PyTree, args: FlowArgs) -> Params:
        return self._rebuild(y, args, self.W0, self.a)

    def quantities(self, y, args: FlowArgs, field) -> Quantities:
        # W W^T - W0 W0^T = v a^T + a v^T + c a a^T with v = W0 (u - u0) / m1, c = |u - u0|^2 / m1^2.
        a, m1 = self.a, self.mlp_width
        delta = y[0] - self.u0
        v, c, aa = self.W0 @ delta / m1, delta @ delta / m1**2, a @ a
        va = v @ a
        delta2 = 2 * (v @ v) * aa + 2 * va**2 + 4 * c * va * aa + c**2 * aa**2
        return self._quantities(y, args, field, delta2, rank_one_corr_change(self.W0, a, delta, m1))
