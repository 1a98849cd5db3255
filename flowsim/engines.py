"""State representations of the gradient flow and their vector fields (spec 3 and 7)."""

from __future__ import annotations

from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int, PyTree

from . import model
from .data import Dataset
from .model import Params


class Reference(eqx.Module):
    """Quantities of the initial point that observables and events compare against."""

    M0: Float[Array, "d d"]  # s(mu_k, mu_l) at t = 0, embedding basis
    conserved0: tuple[Array, Array] | None  # the engine's ``conserved`` at t = 0
    scale_KQ: Float[Array, ""]  # ||W_K W_K^T||_F + ||W_Q W_Q^T||_F at t = 0
    scale_WV: Float[Array, ""]  # ||W^T W||_F + ||W_V W_V^T||_F at t = 0
    scale_neurons: Float[Array, ""]  # ||W W^T||_F at t = 0: the inner products <w_j1, w_j2>


def conserved(params: Params) -> tuple[Array, Array]:
    """The two m x m matrices that gradient flow conserves exactly (spec 7.3):
    ``W_K W_K^T - W_Q W_Q^T`` and ``W^T W - W_V W_V^T``."""
    KK, QQ = params.W_K @ params.W_K.T, params.W_Q @ params.W_Q.T
    WW, VV = params.W.T @ params.W, params.W_V @ params.W_V.T
    return KK - QQ, WW - VV


def _gram_norm(X: Float[Array, "p q"]) -> Float[Array, ""]:
    """``||X X^T||_F = ||X^T X||_F``, through the smaller of the two Gram matrices."""
    return jnp.linalg.norm(X.T @ X if X.shape[0] >= X.shape[1] else X @ X.T)


def reference(engine, y0: PyTree, params: Params, embedding: Float[Array, "d d"]) -> Reference:
    return Reference(
        M0=model.attention_scores(params, embedding, tuple(range(params.d))),
        conserved0=engine.conserved(y0),
        scale_KQ=_gram_norm(params.W_K) + _gram_norm(params.W_Q),
        scale_WV=_gram_norm(params.W) + _gram_norm(params.W_V),
        scale_neurons=_gram_norm(params.W),
    )


class FlowArgs(eqx.Module):
    """Everything the vector field, the events and the observables read besides the state."""

    dataset: Dataset
    test_set: Dataset
    a: Float[Array, " m1"]
    ref: Reference
    band: Float[Array, ""]  # relative half-width of the attention-score band event
    active: jax.Array  # bool (n_events,): which events are still being watched


class Quantities(eqx.Module):
    """What observables need from a state, whatever the engine."""

    margins: Float[Array, " n"]
    test_margins: Float[Array, " n_test"]
    G: Float[Array, " d"]  # G(mu_k) for every word
    M: Float[Array, "d d"]  # s(mu_k, mu_l) for every pair of words
    value_corr: Float[Array, "3 3"]  # mu_i^T W_V^T W_V mu_j, i, j <= 3
    key_corr: Float[Array, "3 3"]  # mu_i^T W_K^T W_K mu_j, i, j <= 3
    query_corr: Float[Array, "3 3"]  # mu_i^T W_Q^T W_Q mu_j, i, j <= 3
    neuron_gram_change: Float[Array, ""]  # ||W W^T - W(0) W(0)^T||_F / ||W(0) W(0)^T||_F (NaN: gram)
    grad_norm2: Float[Array, ""]  # ||grad Lhat||^2 = -dLhat/dt (spec 7.4)
    drift_KQ: Float[Array, ""]  # NaN where the engine cannot form the m x m matrices
    drift_WV: Float[Array, ""]


def _drifts(now, ref: Reference) -> tuple[Array, Array]:
    """Relative drift of the conservation laws (spec 7.3), from any representation of
    the two conserved matrices that differs from the true ones by a constant."""
    if now is None:
        return jnp.array(jnp.nan), jnp.array(jnp.nan)
    fro = jnp.linalg.norm
    return (fro(now[0] - ref.conserved0[0]) / ref.scale_KQ,
            fro(now[1] - ref.conserved0[1]) / ref.scale_WV)


def _in_basis(dataset: Dataset) -> Dataset:
    """The same samples with one-hot words, for matrices already expressed in the embedding basis."""
    return Dataset(tokens=dataset.tokens, labels=dataset.labels, groups=dataset.groups,
                   embedding=jnp.eye(dataset.d, dtype=dataset.embedding.dtype), basis="standard")


def _neuron_gram_change(delta_norm2, ref: Reference) -> Float[Array, ""]:
    return jnp.sqrt(jnp.maximum(delta_norm2, 0.0)) / ref.scale_neurons


def _param_quantities(p: Params, args: FlowArgs, data: Dataset, test: Dataset, grad_norm2, now,
                      neuron_delta2) -> Quantities:
    """``neuron_delta2`` is ``||W W^T - W(0) W(0)^T||_F^2``, which each engine forms its own way."""
    E = data.embedding
    drift_KQ, drift_WV = _drifts(now, args.ref)
    G, M = model.G(p, E), model.attention_scores(p, E, tuple(range(p.d)))
    # F from (G, M), which the observables need anyway: no per-sample gathers of m-vectors.
    margins = lambda d: d.labels * model.outputs_reduced(G, M, d.tokens, p.m)
    return Quantities(
        margins=margins(data),
        test_margins=margins(test),
        G=G,
        M=M,
        value_corr=model.gram3(p.W_V, E),
        key_corr=model.gram3(p.W_K, E),
        query_corr=model.gram3(p.W_Q, E),
        neuron_gram_change=_neuron_gram_change(neuron_delta2, args.ref),
        grad_norm2=grad_norm2,
        drift_KQ=drift_KQ,
        drift_WV=drift_WV,
    )


def _sum_squares(tree) -> Float[Array, ""]:
    return sum(jnp.sum(g**2) for g in jax.tree.leaves(tree))


class ParamEngine(eqx.Module):
    """The reference four-matrix flow: the state is ``(W, W_V, W_K, W_Q)`` and
    ``d theta/dt = -grad_theta Lhat(theta)`` by autodiff of :func:`flowsim.loss` (Eq. 2)."""

    name: ClassVar[str] = "params"
    W0: Float[Array, "m1 m"]

    @classmethod
    def build(cls, params: Params, dataset: Dataset) -> "ParamEngine":
        return cls(W0=params.W)

    def init_state(self, params: Params, dataset: Dataset) -> PyTree:
        return (params.W, params.W_V, params.W_K, params.W_Q)

    def to_params(self, y: PyTree, args: FlowArgs) -> Params:
        W, W_V, W_K, W_Q = y
        return Params(W=W, W_V=W_V, W_K=W_K, W_Q=W_Q, a=args.a)

    def loss(self, y: PyTree, args: FlowArgs) -> Float[Array, ""]:
        return model.loss(self.to_params(y, args), args.dataset)

    def vector_field(self, t, y: PyTree, args: FlowArgs) -> PyTree:
        return jax.tree.map(jnp.negative, jax.grad(self.loss)(y, args))

    def conserved(self, y: PyTree):
        W, W_V, W_K, W_Q = y
        return conserved(Params(W=W, W_V=W_V, W_K=W_K, W_Q=W_Q, a=jnp.ones(W.shape[0], W.dtype)))

    def margins(self, y, args: FlowArgs) -> Float[Array, " n"]:
        return model.margins(self.to_params(y, args), args.dataset)

    def G(self, y, args: FlowArgs, words=slice(None)) -> Float[Array, " d"]:
        return model.G(self.to_params(y, args), args.dataset.embedding[:, words])

    def scores3(self, y, args: FlowArgs) -> Float[Array, "3 3"]:
        return model.attention_scores(self.to_params(y, args), args.dataset.embedding)

    def quantities(self, y, args: FlowArgs) -> Quantities:
        grad2 = _sum_squares(self.vector_field(None, y, args))
        # ||W W^T - W0 W0^T||_F^2 through m x m products: ||W^T W||^2 - 2 ||W0^T W||^2 + ||W0^T W0||^2.
        W, W0 = y[0], self.W0
        delta2 = (jnp.sum((W.T @ W) ** 2) - 2 * jnp.sum((W0.T @ W) ** 2) + jnp.sum((W0.T @ W0) ** 2))
        return _param_quantities(self.to_params(y, args), args, args.dataset, args.test_set,
                                 grad2, self.conserved(y), delta2)


class ReducedEngine(eqx.Module):
    """The four-matrix flow with its exact reductions (spec 7.1-7.2): the state is
    ``(u, V_a, K_a, Q_a)`` with ``u = W^T a`` (``du/dt = -m1 grad_u Lhat``) and the rows of
    ``V_a, K_a, Q_a`` the vectors ``W_V mu_k, W_K mu_k, W_Q mu_k`` of the words k present in the
    training set (rows, so that gathering a sample's words reads contiguous memory); the other
    words keep their initial vectors.  The full matrices are rebuilt exactly:
    ``W = W(0) + a (u - u(0))^T / m1`` and the absent columns from t = 0."""

    name: ClassVar[str] = "reduced"
    active: Int[Array, " k"]  # the words present in the training set
    local: Int[Array, " d"]  # each word's index among the active ones (-1 if absent)
    W0: Float[Array, "m1 m"]
    u0: Float[Array, " m"]
    V0: Float[Array, "m d"]  # W_V, W_K, W_Q at t = 0 in the embedding basis
    K0: Float[Array, "m d"]
    Q0: Float[Array, "m d"]

    @classmethod
    def build(cls, params: Params, dataset: Dataset) -> "ReducedEngine":
        present = np.zeros(dataset.d, bool)
        present[np.asarray(dataset.tokens)] = True
        local = np.where(present, np.cumsum(present) - 1, -1)
        return cls(active=jnp.asarray(np.flatnonzero(present), jnp.int32), local=jnp.asarray(local, jnp.int32),
                   W0=params.W, u0=params.W.T @ params.a,
                   V0=model.word_columns(params.W_V, dataset), K0=model.word_columns(params.W_K, dataset),
                   Q0=model.word_columns(params.W_Q, dataset))

    def init_state(self, params: Params, dataset: Dataset) -> PyTree:
        return (params.W.T @ params.a, self.V0[:, self.active].T, self.K0[:, self.active].T,
                self.Q0[:, self.active].T)

    def _columns(self, X_a: Float[Array, "k m"], X0: Float[Array, "m d"], words=slice(None)) -> Array:
        """Columns ``words`` (default all d) in the embedding basis: those of present words from the
        state, the rest from t = 0."""
        k = self.local[words]
        return jnp.where(k >= 0, X_a[jnp.maximum(k, 0)].T, X0[:, words])

    def _full_basis(self, y) -> Params:
        u, V_a, K_a, Q_a = y
        # A one-neuron MLP with a = (1) and W = u^T computes exactly F: the loss sees W only through u.
        return Params(W=u[None, :], W_V=self._columns(V_a, self.V0), W_K=self._columns(K_a, self.K0),
                      W_Q=self._columns(Q_a, self.Q0), a=jnp.ones(1, u.dtype))

    def to_params(self, y: PyTree, args: FlowArgs) -> Params:
        p = self._full_basis(y)
        data = args.dataset
        back = (lambda X: X) if data.basis == "standard" else (lambda X: X @ data.embedding.T)
        W = self.W0 + jnp.outer(args.a, y[0] - self.u0) / args.a.shape[0]
        return Params(W=W, W_V=back(p.W_V), W_K=back(p.W_K), W_Q=back(p.W_Q), a=args.a)

    def _outputs(self, y, data: Dataset) -> Float[Array, " n"]:
        u, V_a, K_a, Q_a = y
        return model.outputs_words(V_a @ u, K_a, Q_a, self.local[data.tokens])

    def loss(self, y: PyTree, args: FlowArgs) -> Float[Array, ""]:
        return jnp.mean(model.logistic_loss(self.margins(y, args)))

    def vector_field(self, t, y: PyTree, args: FlowArgs) -> PyTree:
        g_u, g_V, g_K, g_Q = jax.grad(self.loss)(y, args)
        return (-args.a.shape[0] * g_u, -g_V, -g_K, -g_Q)

    def conserved(self, y: PyTree):
        """The conserved matrices less their constant parts: absent columns and W(0) drop out of
        ``W_K W_K^T - W_Q W_Q^T`` and ``W^T W - W_V W_V^T = (u u^T - u0 u0^T) / m1 + const - W_V W_V^T``."""
        u, V_a, K_a, Q_a = y
        m1 = self.W0.shape[0]
        return K_a.T @ K_a - Q_a.T @ Q_a, jnp.outer(u, u) / m1 - V_a.T @ V_a

    def margins(self, y, args: FlowArgs) -> Float[Array, " n"]:
        return args.dataset.labels * self._outputs(y, args.dataset)

    def G(self, y, args: FlowArgs, words=slice(None)) -> Float[Array, " d"]:
        return self._columns(y[1], self.V0, words).T @ y[0]

    def scores3(self, y, args: FlowArgs) -> Float[Array, "3 3"]:
        # Evaluated at every step by the event: only the three columns it needs.
        return self._columns(y[2], self.K0, slice(3)).T @ self._columns(y[3], self.Q0, slice(3))

    def quantities(self, y, args: FlowArgs) -> Quantities:
        g_u, *rest = self.vector_field(None, y, args)
        grad2 = _sum_squares(rest) + jnp.sum(g_u**2) / args.a.shape[0]  # ||a g^T||^2 = m1 ||g||^2
        # W W^T - W0 W0^T = v a^T + a v^T + c a a^T with v = W0 (u - u0) / m1, c = |u - u0|^2 / m1^2.
        a, m1 = args.a, args.a.shape[0]
        delta = y[0] - self.u0
        v, c, aa = self.W0 @ delta / m1, delta @ delta / m1**2, a @ a
        va = v @ a
        delta2 = 2 * (v @ v) * aa + 2 * va**2 + 4 * c * va * aa + c**2 * aa**2
        return _param_quantities(self._full_basis(y), args, _in_basis(args.dataset), _in_basis(args.test_set),
                                 grad2, self.conserved(y), delta2)


class GramEngine(eqx.Module):
    """The closed Gram system of spec 7.5: the state is ``(z, s, C_V, M, A, B)`` in the embedding
    basis, ``z = W_V^T u`` (so ``z_k = G(mu_k)``), ``s = ||u||^2``, ``C_V = W_V^T W_V``,
    ``M = W_K^T W_Q``, ``A = W_K^T W_K``, ``B = W_Q^T W_Q``; its size and cost depend on d alone.

    The m x m conservation laws and the m1 x m1 neuron inner products cannot be formed from it:
    ``drift_KQ``, ``drift_WV`` and ``neuron_gram_change`` are NaN, and there are no final
    parameters (``to_params`` returns ``None``)."""

    name: ClassVar[str] = "gram"
    m: int = eqx.field(static=True)
    m1: int = eqx.field(static=True)

    @classmethod
    def build(cls, params: Params, dataset: Dataset) -> "GramEngine":
        return cls(m=params.m, m1=params.m1)

    def init_state(self, params: Params, dataset: Dataset) -> PyTree:
        V, K, Q = (model.word_columns(X, dataset) for X in (params.W_V, params.W_K, params.W_Q))
        u = params.W.T @ params.a
        return (V.T @ u, u @ u, V.T @ V, K.T @ Q, K.T @ K, Q.T @ Q)

    def to_params(self, y: PyTree, args: FlowArgs) -> None:
        return None

    def _margins(self, z, M, data: Dataset) -> Float[Array, " n"]:
        return data.labels * model.outputs_reduced(z, M, data.tokens, self.m)

    def loss_zM(self, z: Float[Array, " d"], M: Float[Array, "d d"], args: FlowArgs) -> Float[Array, ""]:
        """Lhat as a function of (z, M) alone (spec 7.5)."""
        return jnp.mean(model.logistic_loss(self._margins(z, M, args.dataset)))

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

    def G(self, y, args: FlowArgs, words=slice(None)) -> Float[Array, " d"]:
        return y[0][words]

    def scores3(self, y, args: FlowArgs) -> Float[Array, "3 3"]:
        return y[3][:3, :3]

    def quantities(self, y, args: FlowArgs) -> Quantities:
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
            G=z, M=M, value_corr=C_V[:3, :3], key_corr=A[:3, :3], query_corr=B[:3, :3],
            neuron_gram_change=nan, grad_norm2=grad2, drift_KQ=nan, drift_WV=nan,
        )


ENGINES = {"params": ParamEngine, "reduced": ReducedEngine, "gram": GramEngine}


def engine_costs(params: Params, dataset: Dataset) -> dict[str, float]:
    """Rough cost of one solver step per engine: the stages' vector-field evaluations plus the
    solver's arithmetic over the state.  Gathers and scatters over sample tokens dominate the
    parameter engines; the Gram system's d x d products run at a tenth of that cost per flop on
    a CPU (measured, docs/performance.md)."""
    m, m1, d, n, L = params.m, params.m1, params.d, dataset.n, dataset.L
    k = len(np.unique(np.asarray(dataset.tokens)))
    return {
        "params": 42 * m * (d + min(d * d, n * L * L) + m1) + 40 * (m1 * m + 3 * m * d),
        "reduced": 42 * m * (k + min(k * k, n * L * L)) + 40 * 3 * m * k,
        "gram": 0.1 * 112 * d**3 + 40 * 4 * d * d,
    }


def resolve_engine(name: str, params: Params, dataset: Dataset, allow_reduced: bool = True) -> str:
    """``name`` itself, or for ``"auto"`` the cheaper by :func:`engine_costs` of the two engines
    that carry the parameters (``params``, ``reduced``), so that a result always has its final
    matrices; the Gram system, which has none, runs only when asked for by name.

    ``allow_reduced=False`` (a batch whose members have different training sets, so different
    present words) leaves out the reduced engine, whose state shape depends on those words."""
    if name == "auto":
        costs = engine_costs(params, dataset)
        costs.pop("gram")
        if not allow_reduced:
            costs.pop("reduced")
        return min(costs, key=costs.get)
    if name not in ENGINES:
        raise ValueError(f"engine must be one of auto, {', '.join(ENGINES)}, got {name!r}")
    if name == "reduced" and not allow_reduced:
        raise ValueError("engine 'reduced' needs every member to share one training set")
    return name


def make_engine(name: str, params: Params, dataset: Dataset):
    """The engine ``name`` (or ``"auto"``) for this start and training set."""
    cls = ENGINES[resolve_engine(name, params, dataset)]
    return cls.build(params, dataset) if hasattr(cls, "build") else cls()
