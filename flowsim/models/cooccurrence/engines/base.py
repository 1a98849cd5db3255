"""The engine contract: a state representation of the gradient flow (Eq. 2), its vector field, and what observables read from it."""

from __future__ import annotations

import abc
import dataclasses
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PyTree

from .. import model
from ....core.contract import OWN_DATA, AbstractFlowEngine, leaves_of
from ..data import N_SPECIAL, Dataset
from ..model import Params

#: Every concrete engine, by name, in the order they were defined (filled by
#: :meth:`AbstractEngine.__init_subclass__`: writing the class is registering it).
ENGINES: dict[str, type[AbstractEngine]] = {}


@dataclasses.dataclass(frozen=True)
class Sizes:
    """The sizes that decide an engine's cost and memory, known before anything is allocated."""

    n: int  # training samples
    L: int  # sequence length
    d: int  # vocabulary
    word_rows: int  # the row engines' word rows (base.word_rows)
    m: int  # attention width
    m1: int  # MLP width
    n_test: int  # test samples
    explicit: bool = True  # whether the start is given as the four matrices (Params)

    @classmethod
    def of(cls, start, dataset: Dataset, n_test: int) -> Sizes:
        return cls(n=dataset.n, L=dataset.L, d=dataset.d, word_rows=word_rows(dataset), m=int(start.m),
                   m1=int(start.m1), n_test=int(n_test), explicit=isinstance(start, Params))


class Grams(eqx.Module):
    """The inner products of the word vectors in the embedding basis (spec 7.5's variables): what
    F, G, the scores and the correlations of Theorems 3.1-3.3 are made of."""

    G: Float[Array, " d"]  # z = W_V^T u: G(mu_k) for every word
    M: Float[Array, "d d"]  # W_K^T W_Q: the scores s(mu_k, mu_l)
    C_V: Float[Array, "d d"]  # W_V^T W_V: the value correlations
    A: Float[Array, "d d"]  # W_K^T W_K: the key self-correlations
    B: Float[Array, "d d"]  # W_Q^T W_Q: the query self-correlations
    s: Float[Array, ""]  # ||u||^2 = sum_{j1, j2} <a_j1 w_j1, a_j2 w_j2> (spec 7.5, Eq. 5)


class Reference(eqx.Module):
    """Quantities of the initial point that observables and events compare against."""

    grams0: Grams  # the Grams at t = 0
    conserved0: tuple[Array, Array] | None  # the engine's ``conserved`` at t = 0
    scale_KQ: Float[Array, ""]  # ||W_K W_K^T||_F + ||W_Q W_Q^T||_F at t = 0
    scale_WV: Float[Array, ""]  # ||u u^T||_F / m1 + ||W_V W_V^T||_F at t = 0 (moving_WV_scale)
    scale_neurons: Float[Array, ""]  # ||W W^T||_F at t = 0: the inner products <w_j1, w_j2>
    neuron_values0: Float[Array, "m1 d"] | None  # a_j w_j^T W_V mu_k at t = 0, where the state has them

    @property
    def M0(self) -> Float[Array, "d d"]:
        """s(mu_k, mu_l) at t = 0."""
        return self.grams0.M

    def as_tuple(self) -> tuple:
        """The fields as nested plain tuples (what jax.export serializes), for :meth:`from_tuple`."""
        return (tuple(getattr(self.grams0, f.name) for f in dataclasses.fields(Grams)),
                *(getattr(self, f.name) for f in dataclasses.fields(self)[1:]))

    @classmethod
    def from_tuple(cls, fields: tuple) -> Reference:
        return cls(Grams(*fields[0]), *fields[1:])


class Markers(eqx.Module):
    """The phase markers' constants in the flow's units (:class:`flowsim.core.options.MarkerOptions`
    made absolute for this start and these sizes, :func:`markers_of`)."""

    t1_cap: Float[Array, ""]  # C_T1 / (sigma1^2 m m1): Definition E.2's cap on T1
    R_neuron: Float[Array, ""]  # R = R_neuron / m1: bound (1) of Definition E.2
    R_irrelevant: Float[Array, ""]  # bound (2): R_irrelevant (R / n + R / sqrt(m))
    R_scores: Float[Array, ""]  # bound (3): R_scores / (m sqrt(m))
    R_KQ: Float[Array, ""]  # bound (4): R_KQ sigma0^2 sqrt(m)
    C_rates: Float[Array, ""]  # T0.5: -dG3/dt >= (1 + C_rates) max(dG1/dt, dG2/dt)
    C_margin: Float[Array, ""]  # T': min over I2, I3 of y_i F_i >= C_margin
    band: Float[Array, ""]  # relative half-width of the scores_leave_band event


class FlowArgs(eqx.Module):
    """Everything the vector field, the events and the observables read besides the state."""

    dataset: Dataset
    test_set: Dataset
    ref: Reference
    markers: Markers
    watching: jax.Array  # bool (n_events,): the events not yet located, still watched


class Quantities(eqx.Module):
    """What observables need from a state, whatever the engine."""

    margins: Float[Array, " n"]
    test_margins: Float[Array, " n_test"]
    grams: Grams
    neuron_gram_change: Float[Array, ""]  # ||W W^T - W(0) W(0)^T||_F / ||W(0) W(0)^T||_F (NaN: not available)
    neuron_corr_change: Float[Array, ""]  # max_{j1, j2} |<w_j1, w_j2>(t) - <w_j1, w_j2>(0)| (NaN: not available)
    grad_norm2: Float[Array, ""]  # ||grad Lhat||^2 = -dLhat/dt (spec 7.4)
    drift_KQ: Float[Array, ""]  # NaN where the engine cannot form the conserved matrices
    drift_WV: Float[Array, ""]


class AbstractEngine(AbstractFlowEngine):
    """A state ``y`` whose flow ``dy/dt = vector_field(t, y, args)`` is the gradient flow
    ``d theta/dt = -grad_theta Lhat(theta)`` of Eq. (2), or an exact reduction of it (spec 7):
    the transformer's side of the core's :class:`~flowsim.core.contract.AbstractFlowEngine`.

    An engine is built once per run from the start and the training set (:meth:`build`); it
    holds what stays constant (initial values, word indices) and the state holds what moves.
    ``args`` is a :class:`FlowArgs`.  To add an engine, subclass this with a ``name`` and
    implement every abstract method: the class is registered in :data:`ENGINES` by being
    defined, and ``engine="<name>"`` (and ``"auto"``, by :meth:`step_cost`) selects it.
    """

    #: The name ``integrate(engine=...)`` and run configurations use.
    name: eqx.AbstractClassVar[str]
    #: Whether the engine needs the four matrices as arrays (:class:`~flowsim.Params`); the
    #: others also take a width-free start (:class:`~flowsim.SubspaceStart`).
    needs_matrices: ClassVar[bool] = True
    #: Whether ``engine="auto"`` may choose it: an engine that drops observables (the Gram
    #: system: no conservation drifts, no final matrices) runs only when asked for by name.
    auto_eligible: ClassVar[bool] = True
    #: Whether the state's shape depends on the training set (the row engines' rows follow its
    #: open slots, which iid-mode data draws), so that members with different training sets
    #: cannot stack their states.
    shaped_by_words: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            ENGINES[cls.name] = cls

    # -- construction and cost ------------------------------------------------------------------

    @classmethod
    @abc.abstractmethod
    def build(cls, start, dataset: Dataset) -> AbstractEngine:
        """The engine for ``start`` (``Params``, or a ``SubspaceStart`` unless
        :attr:`needs_matrices`) and the training set."""

    @classmethod
    @abc.abstractmethod
    def step_cost(cls, sizes: Sizes) -> float:
        """Rough cost of one solver step: the stages' vector-field evaluations plus the solver's
        arithmetic over the state, in flop-like units comparable across engines."""

    @classmethod
    @abc.abstractmethod
    def footprint(cls, sizes: Sizes) -> tuple[float, float]:
        """``(state, held)``: numbers in the state (the solver keeps about a dozen copies) and
        numbers the engine and one evaluation of its observables hold besides."""

    @abc.abstractmethod
    def init_state(self, start, dataset: Dataset) -> PyTree:
        """The state at t = 0."""

    @abc.abstractmethod
    def reference(self, y0: PyTree, start, dataset: Dataset) -> Reference:
        """The :class:`Reference` quantities of the start."""

    # -- the flow ------------------------------------------------------------------------------

    @abc.abstractmethod
    def loss(self, y: PyTree, args: FlowArgs) -> Float[Array, ""]:
        """The training loss Lhat (Eq. 2) at state ``y``."""

    @abc.abstractmethod
    def vector_field(self, t, y: PyTree, args: FlowArgs) -> PyTree:
        """``dy/dt``: the gradient flow of Eq. (2) in this representation."""

    # -- what events and observables read -------------------------------------------------------

    @abc.abstractmethod
    def margins(self, y: PyTree, args: FlowArgs) -> Float[Array, " n"]:
        """``y_i F(X_i)`` for every training sample."""

    @abc.abstractmethod
    def G(self, y: PyTree, args: FlowArgs, words=slice(None)) -> Float[Array, " k"]:
        """``G(mu_k) = a^T W W_V mu_k`` for the (0-based) ``words``, default all."""

    @abc.abstractmethod
    def scores3(self, y: PyTree, args: FlowArgs) -> Float[Array, "3 3"]:
        """``s(mu_i, mu_j) = mu_i^T W_K^T W_Q mu_j`` for i, j in 1..3 (evaluated at every step by an event)."""

    @abc.abstractmethod
    def grams(self, y: PyTree, dataset: Dataset) -> Grams:
        """The word vectors' inner products at ``y`` in the embedding basis of ``dataset`` (cheap:
        no samples, no gradient), whose rates along the flow the observables read by a
        Jacobian-vector product."""

    @abc.abstractmethod
    def attention_width(self, y: PyTree):
        """m, the attention width the scores are divided by (``sqrt(m)``), as a number."""

    @abc.abstractmethod
    def neuron_values(self, y: PyTree, dataset: Dataset) -> Float[Array, "m1 d"] | None:
        """``a_j w_j^T W_V mu_k`` for every neuron j and word k (Definition E.2, Lemmas 4.1-4.2),
        or ``None`` where the state does not hold the m1 neurons (a width-free start)."""

    @abc.abstractmethod
    def quantities(self, y: PyTree, args: FlowArgs, field: PyTree) -> Quantities:
        """Everything :func:`flowsim.models.cooccurrence.observables.observables` needs at ``y``; ``field`` is
        ``vector_field(t, y, args)``, which the observables form once for this and the rates."""

    @abc.abstractmethod
    def conserved(self, y: PyTree) -> tuple[Array, Array] | None:
        """The two matrices gradient flow conserves (spec 7.3), ``W_K W_K^T - W_Q W_Q^T`` and
        ``W^T W - W_V W_V^T``, in any representation that differs from them by a constant and
        an isometry; ``None`` where the state cannot form them."""

    @abc.abstractmethod
    def to_params(self, y: PyTree, args: FlowArgs) -> Params | None:
        """The four matrices at ``y``, or ``None`` where the state cannot give them."""

    # -- the core's contract (flowsim.core.contract), through the transformer's modules ---------------

    @property
    def event_names(self) -> tuple[str, ...]:
        from ..events import EVENT_NAMES

        return EVENT_NAMES

    @classmethod
    def args_axes(cls, batched) -> FlowArgs:
        """The data shared or per member, the rest per member (the markers' constants depend on
        each start's scales)."""
        data = 0 if batched == OWN_DATA else None
        return FlowArgs(dataset=data, test_set=data, ref=0, markers=0, watching=0)

    def observe(self, y: PyTree, args: FlowArgs) -> dict:
        from ..observables import observables

        return observables(self, y, args)

    def event_values(self, t, y: PyTree, args: FlowArgs) -> tuple:
        from ..events import event_values

        return event_values(self, t, y, args)

    def start_facts(self, y: PyTree, args: FlowArgs) -> dict:
        from ..observables import start_facts

        return start_facts(self, y, args)

    def start_record(self, facts: dict, start, args: FlowArgs) -> dict:
        from ..observables import start_record

        return start_record(facts, start, args.dataset)

    def final_leaves(self, y: PyTree, args: FlowArgs) -> tuple | None:
        return leaves_of(self.to_params(y, args))

    def params_of(self, leaves: tuple) -> Params:
        return Params(*leaves)


# -- helpers shared by the engines ---------------------------------------------------------------


def conserved(params: Params) -> tuple[Array, Array]:
    """The two m x m matrices that gradient flow conserves exactly (spec 7.3):
    ``W_K W_K^T - W_Q W_Q^T`` and ``W^T W - W_V W_V^T``."""
    KK, QQ = params.W_K @ params.W_K.T, params.W_Q @ params.W_Q.T
    WW, VV = params.W.T @ params.W, params.W_V @ params.W_V.T
    return KK - QQ, WW - VV


def gram_norm(X: Float[Array, "p q"]) -> Float[Array, ""]:
    """``||X X^T||_F = ||X^T X||_F``, through the smaller of the two Gram matrices."""
    return jnp.linalg.norm(X.T @ X if X.shape[0] >= X.shape[1] else X @ X.T)


def reference_of(engine: AbstractEngine, y0: PyTree, params: Params, dataset: Dataset) -> Reference:
    """The :class:`Reference` of an explicit start, from its four matrices."""
    return Reference(
        grams0=engine.grams(y0, dataset),
        conserved0=engine.conserved(y0),
        scale_KQ=gram_norm(params.W_K) + gram_norm(params.W_Q),
        scale_WV=moving_WV_scale(params.W.T @ params.a, params.W.shape[0], params.W_V),
        scale_neurons=gram_norm(params.W),
        neuron_values0=engine.neuron_values(y0, dataset),
    )


def moving_WV_scale(u0, m1, W_V):
    """``||u(0) u(0)^T||_F / m1 + ||W_V(0) W_V(0)^T||_F``: the initial size of the parts of
    ``W^T W - W_V W_V^T`` that move.  ``W^T W = W(0)^T W(0) + (u u^T - u(0) u(0)^T) / m1`` exactly
    (spec 7.1), so ``W(0)^T W(0)``, which an m-wide start alone can form, never enters a drift."""
    return u0 @ u0 / m1 + gram_norm(W_V)


def drifts(now, ref: Reference) -> tuple[Array, Array]:
    """Relative drift of the conservation laws (spec 7.3), from any representation of
    the two conserved matrices that differs from the true ones by a constant."""
    if now is None:
        return jnp.array(jnp.nan), jnp.array(jnp.nan)
    fro = jnp.linalg.norm
    return (fro(now[0] - ref.conserved0[0]) / ref.scale_KQ,
            fro(now[1] - ref.conserved0[1]) / ref.scale_WV)


def in_basis(dataset: Dataset) -> Dataset:
    """The same samples with one-hot words, for matrices already expressed in the embedding basis."""
    return Dataset(tokens=dataset.tokens, labels=dataset.labels, groups=dataset.groups,
                   embedding=jnp.eye(dataset.d, dtype=dataset.embedding.dtype), basis="standard")


def neuron_gram_change(delta_norm2, ref: Reference) -> Float[Array, ""]:
    return jnp.sqrt(jnp.maximum(delta_norm2, 0.0)) / ref.scale_neurons


def grams_of(p: Params, embedding: Float[Array, "d d"]) -> Grams:
    """The :class:`Grams` of matrices ``p`` whose columns are read through ``embedding``."""
    V, K, Q = (X @ embedding for X in (p.W_V, p.W_K, p.W_Q))
    u = p.W.T @ p.a
    return Grams(G=(u @ p.W_V) @ embedding, M=K.T @ Q, C_V=V.T @ V, A=K.T @ K, B=Q.T @ Q, s=u @ u)


def param_quantities(p: Params, args: FlowArgs, data: Dataset, test: Dataset, grad_norm2, now,
                     neuron_delta2, neuron_corr, m=None) -> Quantities:
    """:class:`Quantities` from matrices ``p`` whose columns are read through ``data.embedding``;
    ``neuron_delta2`` is ``||W W^T - W(0) W(0)^T||_F^2`` and ``neuron_corr`` the largest entry of
    ``|W W^T - W(0) W(0)^T|``, which each engine forms its own way, and ``m`` the attention width
    of the scores' ``1/sqrt(m)`` (default: ``p``'s rows)."""
    drift_KQ, drift_WV = drifts(now, args.ref)
    grams = grams_of(p, data.embedding)
    m = p.m if m is None else m
    # F from (G, M), which the observables need anyway: no per-sample gathers of m-vectors.
    margins = lambda d: d.labels * model.outputs_reduced(grams.G, grams.M, d.tokens, m)
    return Quantities(
        margins=margins(data),
        test_margins=margins(test),
        grams=grams,
        neuron_gram_change=neuron_gram_change(neuron_delta2, args.ref),
        neuron_corr_change=neuron_corr,
        grad_norm2=grad_norm2,
        drift_KQ=drift_KQ,
        drift_WV=drift_WV,
    )


def rank_one_corr_change(W0: Float[Array, "m1 r"], a: Float[Array, " m1"], delta: Float[Array, " r"], m1):
    """``max_{j1, j2} |<w_j1, w_j2>(t) - <w_j1, w_j2>(0)|`` when ``W = W(0) + a delta^T / m1``
    (spec 7.1): the entries are ``a_j1 a_j2 (b_j1 + b_j2 + c)`` with ``b = a * W(0) delta / m1`` and
    ``c = |delta|^2 / m1^2``, so the largest is at the extreme b's (j1 = j2 included)."""
    b = a * (W0 @ delta) / m1
    c = delta @ delta / m1**2
    return jnp.maximum(jnp.abs(2 * b.max() + c), jnp.abs(2 * b.min() + c))


def sum_squares(tree) -> Float[Array, ""]:
    return sum(jnp.sum(g**2) for g in jax.tree.leaves(tree))


def word_rows(dataset: Dataset) -> int:
    """The most distinct words a training set laid out as ``dataset`` can hold: the three special
    words and one per open slot (a position that is not a special word), at most d.  The rows the
    row engines keep: a function of n, L, d and the group counts, not of which words were drawn,
    so every seed of a sampled- or theory-mode configuration has one state shape and one
    compiled program (iid-mode data draws its group counts too).  Theory-mode data uses each
    irrelevant word once, so it fills every row."""
    return min(dataset.d, N_SPECIAL + int(np.sum(np.asarray(dataset.tokens) >= N_SPECIAL)))


def present_words(dataset: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """``(present, local)``: the words that occur in the training set, padded to
    :func:`word_rows` entries with ``d`` (no word), and each word's index among them (-1 for an
    absent word)."""
    present = np.zeros(dataset.d, bool)
    present[np.asarray(dataset.tokens)] = True
    words = np.flatnonzero(present)
    padding = np.full(word_rows(dataset) - len(words), dataset.d)
    return np.concatenate([words, padding]), np.where(present, np.cumsum(present) - 1, -1)
