"""State representations of the gradient flow and their vector fields (spec 3 and 7)."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PyTree

from . import model
from .data import Dataset
from .model import Params


class Reference(eqx.Module):
    """Quantities of the initial point that observables and events compare against."""

    M0: Float[Array, "d d"]  # s(mu_k, mu_l) at t = 0, embedding basis
    D_KQ0: Float[Array, "m m"]  # W_K W_K^T - W_Q W_Q^T at t = 0
    D_WV0: Float[Array, "m m"]  # W^T W - W_V W_V^T at t = 0
    scale_KQ: Float[Array, ""]  # ||W_K W_K^T||_F + ||W_Q W_Q^T||_F at t = 0
    scale_WV: Float[Array, ""]  # ||W^T W||_F + ||W_V W_V^T||_F at t = 0
    neuron_gram0: Float[Array, "m1 m1"]  # W W^T at t = 0: the inner products <w_j1, w_j2>


def conserved(params: Params) -> tuple[Array, Array]:
    """The two m x m matrices that gradient flow conserves exactly (spec 7.3):
    ``W_K W_K^T - W_Q W_Q^T`` and ``W^T W - W_V W_V^T``."""
    KK, QQ = params.W_K @ params.W_K.T, params.W_Q @ params.W_Q.T
    WW, VV = params.W.T @ params.W, params.W_V @ params.W_V.T
    return KK - QQ, WW - VV


def reference(params: Params, embedding) -> Reference:
    KK, QQ = params.W_K @ params.W_K.T, params.W_Q @ params.W_Q.T
    WW, VV = params.W.T @ params.W, params.W_V @ params.W_V.T
    fro = jnp.linalg.norm
    return Reference(
        M0=model.attention_scores(params, embedding, tuple(range(params.d))),
        D_KQ0=KK - QQ,
        D_WV0=WW - VV,
        scale_KQ=fro(KK) + fro(QQ),
        scale_WV=fro(WW) + fro(VV),
        neuron_gram0=params.W @ params.W.T,
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
    neuron_gram_change: Float[Array, ""]  # ||W W^T - W(0) W(0)^T||_F / ||W(0) W(0)^T||_F
    grad_norm2: Float[Array, ""]  # ||grad Lhat||^2 = -dLhat/dt (spec 7.4)
    drift_KQ: Float[Array, ""]
    drift_WV: Float[Array, ""]


class ParamEngine(eqx.Module):
    """The reference four-matrix flow: the state is ``(W, W_V, W_K, W_Q)`` and
    ``d theta/dt = -grad_theta Lhat(theta)`` by autodiff of :func:`flowsim.loss` (Eq. 2)."""

    name: str = eqx.field(static=True, default="params")

    def init_state(self, params: Params) -> PyTree:
        return (params.W, params.W_V, params.W_K, params.W_Q)

    def to_params(self, y: PyTree, args: FlowArgs) -> Params:
        W, W_V, W_K, W_Q = y
        return Params(W=W, W_V=W_V, W_K=W_K, W_Q=W_Q, a=args.a)

    def loss(self, y: PyTree, args: FlowArgs) -> Float[Array, ""]:
        return model.loss(self.to_params(y, args), args.dataset)

    def vector_field(self, t, y: PyTree, args: FlowArgs) -> PyTree:
        return jax.tree.map(jnp.negative, jax.grad(self.loss)(y, args))

    def margins(self, y, args: FlowArgs) -> Float[Array, " n"]:
        return model.margins(self.to_params(y, args), args.dataset)

    def G(self, y, args: FlowArgs) -> Float[Array, " d"]:
        return model.G(self.to_params(y, args), args.dataset.embedding)

    def scores3(self, y, args: FlowArgs) -> Float[Array, "3 3"]:
        return model.attention_scores(self.to_params(y, args), args.dataset.embedding)

    def quantities(self, y, args: FlowArgs) -> Quantities:
        p = self.to_params(y, args)
        E = args.dataset.embedding
        D_KQ, D_WV = conserved(p)
        grad = self.vector_field(None, y, args)
        return Quantities(
            margins=model.margins(p, args.dataset),
            test_margins=model.margins(p, args.test_set),
            G=model.G(p, E),
            M=model.attention_scores(p, E, tuple(range(p.d))),
            value_corr=model.gram3(p.W_V, E),
            key_corr=model.gram3(p.W_K, E),
            query_corr=model.gram3(p.W_Q, E),
            neuron_gram_change=jnp.linalg.norm(p.W @ p.W.T - args.ref.neuron_gram0)
            / jnp.linalg.norm(args.ref.neuron_gram0),
            grad_norm2=sum(jnp.sum(g**2) for g in grad),
            drift_KQ=jnp.linalg.norm(D_KQ - args.ref.D_KQ0) / args.ref.scale_KQ,
            drift_WV=jnp.linalg.norm(D_WV - args.ref.D_WV0) / args.ref.scale_WV,
        )


ENGINES = {"params": ParamEngine}


def make_engine(name: str):
    if name not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {name!r}")
    return ENGINES[name]()
