"""The closed Gram system of spec 7.5: (z, s, C_V, M, A, B), d x d, whatever the widths m and m1."""

from __future__ import annotations

from typing import ClassVar

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PyTree

from .. import model
from ..data import Dataset
from .base import AbstractEngine, FlowArgs, Grams, Quantities, Reference, Sizes


class GramEngine(AbstractEngine):
    """The state is ``(z, s, C_V, M, A, B)`` in the embedding basis: ``z = W_V^T u`` (so
    ``z_k = G(mu_k)``), ``s = ||u||^2``, ``C_V = W_V^T W_V``, ``M = W_K^T W_Q``, ``A = W_K^T W_K``,
    ``B = W_Q^T W_Q``; its size and cost depend on d alone, and m, m1 are numbers, not shapes.

    The m x m conservation laws and the m1 x m1 neuron inner products cannot be formed from it:
    ``drift_KQ``, ``drift_WV``, ``neuron_gram_change`` and the neuron values are NaN, and there
    are no final parameters (``to_params`` returns ``None``)."""

    name: ClassVar[str] = "gram"
    needs_matrices: ClassVar[bool] = False
    auto_eligible: ClassVar[bool] = False
    m: Float[Array, ""]
    m1: Float[Array, ""]

    @classmethod
    def build(cls, start, dataset: Dataset) -> GramEngine:
        dtype = start.W_V.dtype  # prepare casts the start and the data to one dtype
        return cls(m=jnp.asarray(float(start.m), dtype), m1=jnp.asarray(float(start.m1), dtype))

    @classmethod
    def step_cost(cls, s: Sizes) -> float:
        # d x d products run at about a tenth of the gathers' cost per flop on a CPU (docs/performance.md).
        return 0.1 * 112 * s.d**3 + 40 * 4 * s.d * s.d

    @classmethod
    def footprint(cls, s: Sizes) -> tuple[float, float]:
        return 1 + s.d + 4 * s.d * s.d, 8 * s.d * s.d + s.n_test * s.L * s.L

    def init_state(self, start, dataset: Dataset) -> PyTree:
        u, V, K, Q = start.columns(dataset)
        return (V.T @ u, u @ u, V.T @ V, K.T @ Q, K.T @ K, Q.T @ Q)

    def reference(self, y0, start, dataset: Dataset) -> Reference:
        nan = jnp.array(jnp.nan, y0[0].dtype)
        return Reference(grams0=self.grams(y0, dataset), conserved0=None, scale_KQ=nan, scale_WV=nan,
                         scale_neurons=nan, neuron_values0=None)

    def to_params(self, y: PyTree, args: FlowArgs) -> None:
        return None

    def _margins(self, z, M, data: Dataset) -> Float[Array, " n"]:
        return data.labels * model.outputs_reduced(z, M, data.tokens, self.m)

    def loss_zM(self, z: Float[Array, " d"], M: Float[Array, "d d"], args: FlowArgs) -> Float[Array, ""]:
        """Lhat as a function of (z, M) alone (spec 7.5)."""
        return jnp.mean(model.logistic_loss(self._margins(z, M, args.dataset)))

    def loss(self, y: PyTree, args: FlowArgs) -> Float[Array, ""]:
        return self.loss_zM(y[0], y[3], args)

    def _gradients(self, y, args):
        z, s, C_V, M, A, B = y
        return jax.grad(self.loss_zM, argnums=(0, 1))(z, M, args)

    def vector_field(self, t, y: PyTree, args: FlowArgs) -> PyTree:
        """Spec 7.5: dz = -(s h + m1 C_V h), ds = -2 m1 z.h, dC_V = -(h z^T + z h^T),
        dM = -(A Gm + Gm B), dA = -(Gm M^T + M Gm^T), dB = -(Gm^T M + M^T Gm)."""
        z, s, C_V, M, A, B = y
        h, Gm = self._gradients(y, args)
        hz = jnp.outer(h, z)
        d = z.shape[0]
        # The four d x d products as two of twice the size, which BLAS runs closer to its peak.
        left = jnp.concatenate([A, M.T]) @ Gm  # [A Gm; M^T Gm]
        right = Gm @ jnp.concatenate([B, M.T], axis=1)  # [Gm B, Gm M^T]
        MTGm, GmMT = left[d:], right[:, d:]
        return (-(s * h + self.m1 * (C_V @ h)), -2 * self.m1 * (z @ h), -(hz + hz.T),
                -(left[:d] + right[:, :d]), -(GmMT + GmMT.T), -(MTGm + MTGm.T))

    def conserved(self, y: PyTree) -> None:
        return None

    def margins(self, y, args: FlowArgs) -> Float[Array, " n"]:
        return self._margins(y[0], y[3], args.dataset)

    def G(self, y, args: FlowArgs, words=slice(None)) -> Float[Array, " k"]:
        return y[0][words]

    def scores3(self, y, args: FlowArgs) -> Float[Array, "3 3"]:
        return y[3][:3, :3]

    def grams(self, y, dataset: Dataset) -> Grams:
        z, s, C_V, M, A, B = y
        return Grams(G=z, M=M, C_V=C_V, A=A, B=B, s=s)

    def attention_width(self, y):
        return self.m

    def neuron_values(self, y, dataset: Dataset) -> None:
        return None

    def quantities(self, y, args: FlowArgs, field) -> Quantities:
        """``||grad Lhat||^2`` from the Gram matrices: ``||a (W_V h)^T||^2 = m1 h^T C_V h``,
        ``||u h^T||^2 = s ||h||^2``, ``||W_Q Gm^T||^2 = tr(Gm B Gm^T)``, ``||W_K Gm||^2 = tr(Gm^T A Gm)``."""
        z, s, C_V, M, A, B = y
        h, Gm = self._gradients(y, args)
        grad2 = (self.m1 * h @ C_V @ h + s * h @ h
                 + jnp.sum((Gm @ B) * Gm) + jnp.sum((A @ Gm) * Gm))
        nan = jnp.array(jnp.nan, z.dtype)
        return Quantities(
            margins=self._margins(z, M, args.dataset),
            test_margins=self._margins(z, M, args.test_set),
            grams=self.grams(y, args.dataset), neuron_gram_change=nan, neuron_corr_change=nan, grad_norm2=grad2,
            drift_KQ=nan, drift_WV=nan,
        )
