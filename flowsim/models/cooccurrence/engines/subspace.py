"""The width-free engine (spec 7.6): the reduced flow in coordinates of the subspace it never leaves, m and m1 as numbers."""

from __future__ import annotations

from typing import ClassVar

import jax.numpy as jnp
from jaxtyping import Array, Float, PyTree

from ..data import Dataset
from ..model import Params
from ..subspace import compress, rank_bound
from .base import FlowArgs, Quantities, Reference, Sizes, gram_norm, moving_WV_scale, present_words, \
    rank_one_corr_change
from .reduced import AbstractWordRows


class SubspaceEngine(AbstractWordRows):
    """The state is ``(u, V_a, K_a, Q_a)`` as for the reduced engine, but each row holds ``p = 3d + 1``
    coordinates in an orthonormal basis of the span of the initial columns of ``[u(0), W_V, W_K,
    W_Q]`` instead of ``m`` entries: ``du/dt = -m1 V h``, ``dW_V/dt = -u h^T``,
    ``dW_K/dt = -W_Q Gm^T``, ``dW_Q/dt = -W_K Gm`` keep every column in that span (spec 7.6), so the
    cost and memory of a step do not depend on m or m1, which enter as numbers: the scores'
    ``1/sqrt(m)`` and ``du/dt``'s ``m1``.

    Built from a width-free :class:`~flowsim.SubspaceStart`, or from ``Params`` by exact
    compression (:func:`flowsim.compress`).  The conservation laws are formed in coordinates
    (``p x p``, isometric to the ``m x m`` matrices).  The final matrices and the neuron inner
    products ``<w_j1, w_j2>`` need the basis and ``W(0)``: a compressed start keeps them, a sampled
    one has none (``to_params`` gives ``None``, ``neuron_gram_change`` is NaN)."""

    name: ClassVar[str] = "subspace"
    needs_matrices: ClassVar[bool] = False
    m: Float[Array, ""]
    m1: Float[Array, ""]
    basis: Float[Array, "m p"] | None
    W0: Float[Array, "m1 m"] | None
    a: Float[Array, " m1"] | None
    neuron_gram: Float[Array, "p p"] | None
    neuron_scale: Float[Array, ""] | None

    @classmethod
    def build(cls, start, dataset: Dataset) -> SubspaceEngine:
        dtype = start.W_V.dtype
        if isinstance(start, Params):
            start = compress(start)
        cast = lambda x: None if x is None else jnp.asarray(x, dtype)
        present, local = present_words(dataset)
        u0, V0, K0, Q0 = start.columns(dataset)
        return cls(present=jnp.asarray(present, jnp.int32), local=jnp.asarray(local, jnp.int32),
                   u0=cast(u0), V0=cast(V0), K0=cast(K0), Q0=cast(Q0), m=cast(start.m), m1=cast(start.m1),
                   basis=cast(start.basis), W0=cast(start.W0), a=cast(start.a),
                   neuron_gram=cast(start.neuron_gram), neuron_scale=cast(start.neuron_scale))

    @classmethod
    def step_cost(cls, s: Sizes) -> float:
        p, k = rank_bound(s.d), s.word_rows
        return 42 * p * (k + min(k * k, s.n * s.L * s.L)) + 40 * 3 * p * k

    @classmethod
    def footprint(cls, s: Sizes) -> tuple[float, float]:
        p = rank_bound(s.d)
        # Held: the initial coordinates and the p x p conserved matrices; an explicit start also
        # keeps its basis, W(0), a and the neuron Gram matrix for the final matrices.
        held = 3 * p * s.d + 4 * p * p + ((s.m + s.m1) * p + s.m1 * (s.m + 1) if s.explicit else 0)
        return p * (1 + 3 * s.word_rows), held

    @property
    def width(self):
        return self.m

    @property
    def mlp_width(self):
        return self.m1

    def init_state(self, start, dataset: Dataset) -> PyTree:
        # The coordinates built with the engine, whatever form the start was given in.
        return (self.u0, *self._word_rows())

    def reference(self, y0, start, dataset: Dataset) -> Reference:
        nan = jnp.array(jnp.nan, self.u0.dtype)
        return Reference(
            grams0=self.grams(y0, dataset),
            conserved0=self.conserved(y0),
            scale_KQ=gram_norm(self.K0) + gram_norm(self.Q0),
            scale_WV=moving_WV_scale(self.u0, self.m1, self.V0),
            scale_neurons=nan if self.neuron_scale is None else self.neuron_scale,
            neuron_values0=self.neuron_values(y0, dataset),
        )

    def neuron_values(self, y, dataset: Dataset) -> Float[Array, "m1 d"] | None:
        """Those of a compressed start, which keeps W(0) and the basis; a sampled one has none."""
        if self.basis is None:
            return None
        return self._neurons(y, self.W0, self.a, lift=lambda X: self.basis @ X)

    def to_params(self, y: PyTree, args: FlowArgs) -> Params | None:
        if self.basis is None:
            return None
        return self._rebuild(y, args, self.W0, self.a, lift=lambda X: self.basis @ X)

    def quantities(self, y, args: FlowArgs, field) -> Quantities:
        if self.neuron_gram is None:
            delta2 = corr = jnp.array(jnp.nan, y[0].dtype)
        else:
            # As the reduced engine's, with v = W(0) B delta / m1: v.v = delta^T (W(0)B)^T (W(0)B) delta / m1^2
            # and v.a = delta . u(0) / m1, since B^T W(0)^T a = B^T u(0) holds u(0)'s coordinates.
            m1, delta = self.m1, y[0] - self.u0
            vv, va, c = delta @ self.neuron_gram @ delta / m1**2, delta @ self.u0 / m1, delta @ delta / m1**2
            delta2 = 2 * vv * m1 + 2 * va**2 + 4 * c * va * m1 + c**2 * m1**2
            corr = rank_one_corr_change(self.W0, self.a, self.basis @ delta, m1)
        return self._quantities(y, args, field, delta2, corr)
