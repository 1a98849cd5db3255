"""The reference engine: the four matrices (W, W_V, W_K, W_Q) under d theta/dt = -grad Lhat (Eq. 2), by autodiff."""

from __future__ import annotations

from typing import ClassVar

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PyTree

from .. import model
from ..data import Dataset
from ..model import Params
from .base import AbstractEngine, FlowArgs, Grams, Quantities, Reference, Sizes, conserved, grams_of, \
    param_quantities, reference_of, sum_squares


class ParamEngine(AbstractEngine):
    """The state is ``(W, W_V, W_K, W_Q)`` and ``d theta/dt = -grad_theta Lhat(theta)`` by autodiff
    of :func:`flowsim.loss` (Eq. 2); ``a`` is fixed."""

    name: ClassVar[str] = "params"
    W0: Float[Array, "m1 m"]
    a: Float[Array, " m1"]

    @classmethod
    def build(cls, start: Params, dataset: Dataset) -> ParamEngine:
        return cls(W0=start.W, a=start.a)

    @classmethod
    def step_cost(cls, s: Sizes) -> float:
        return 42 * s.m * (s.d + min(s.d * s.d, s.n * s.L * s.L) + s.m1) + 40 * (s.m1 * s.m + 3 * s.m * s.d)

    @classmethod
    def footprint(cls, s: Sizes) -> tuple[float, float]:
        # Held: W(0), a gradient's worth of intermediates, and the m x m conserved matrices
        # (four of them: now and at t = 0).
        state = s.m1 * s.m + 3 * s.m * s.d
        return state, 2 * state + 4 * s.m * s.m + s.m1 * s.m

    def init_state(self, start: Params, dataset: Dataset) -> PyTree:
        return (start.W, start.W_V, start.W_K, start.W_Q)

    def reference(self, y0, start: Params, dataset: Dataset) -> Reference:
        return reference_of(self, y0, start, dataset)

    def to_params(self, y: PyTree, args: FlowArgs) -> Params:
        W, W_V, W_K, W_Q = y
        return Params(W=W, W_V=W_V, W_K=W_K, W_Q=W_Q, a=self.a)

    def loss(self, y: PyTree, args: FlowArgs) -> Float[Array, ""]:
        return model.loss(self.to_params(y, args), args.dataset)

    def vector_field(self, t, y: PyTree, args: FlowArgs) -> PyTree:
        return jax.tree.map(jnp.negative, jax.grad(self.loss)(y, args))

    def conserved(self, y: PyTree):
        W, W_V, W_K, W_Q = y
        return conserved(Params(W=W, W_V=W_V, W_K=W_K, W_Q=W_Q, a=jnp.ones(W.shape[0], W.dtype)))

    def margins(self, y, args: FlowArgs) -> Float[Array, " n"]:
        return model.margins(self.to_params(y, args), args.dataset)

    def G(self, y, args: FlowArgs, words=slice(None)) -> Float[Array, " k"]:
        return model.G(self.to_params(y, args), args.dataset.embedding[:, words])

    def scores3(self, y, args: FlowArgs) -> Float[Array, "3 3"]:
        return model.attention_scores(self.to_params(y, args), args.dataset.embedding)

    def grams(self, y, dataset: Dataset) -> Grams:
        W, W_V, W_K, W_Q = y
        return grams_of(Params(W=W, W_V=W_V, W_K=W_K, W_Q=W_Q, a=self.a), dataset.embedding)

    def attention_width(self, y):
        return y[1].shape[0]

    def neuron_values(self, y, dataset: Dataset) -> Float[Array, "m1 d"]:
        W, W_V = y[0], y[1]
        return self.a[:, None] * (W @ (W_V @ dataset.embedding))

    def quantities(self, y, args: FlowArgs, field) -> Quantities:
        grad2 = sum_squares(field)
        # ||W W^T - W0 W0^T||_F^2 through m x m products: ||W^T W||^2 - 2 ||W0^T W||^2 + ||W0^T W0||^2.
        W, W0 = y[0], self.W0
        delta2 = (jnp.sum((W.T @ W) ** 2) - 2 * jnp.sum((W0.T @ W) ** 2) + jnp.sum((W0.T @ W0) ** 2))
        corr = jnp.max(jnp.abs(W @ W.T - W0 @ W0.T))
        return param_quantities(self.to_params(y, args), args, args.dataset, args.test_set,
                                grad2, self.conserved(y), delta2, corr)
