"""The model contract: what a model names (parameters, data law, initializations, loss, observables, events, claims) for flowsim to integrate its exact gradient flow."""

from __future__ import annotations

import abc
import dataclasses
import functools
import math
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import equinox as eqx
import jax
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray, PyTree

#: A trajectory as a claim reads it: ``"t"`` (the saved times, shape ``(T,)``), every observable
#: with leading axis ``T``, every event time by name (NaN where it was not reached) and ``"rtol"``,
#: the solver's relative tolerance (NaN for gradient descent).
Trajectory = Mapping[str, Any]

#: How many times the solver's relative tolerance an identity of the exact flow may miss by on a
#: computed trajectory (:func:`within_solver`): its local errors accumulate over the run.
SOLVER_SLACK = 100.0


#: What every model's run records besides its own observables (:class:`flowsim.models.GenericEngine`).
CORE_OBSERVABLES: dict[str, str] = {"loss": "the training loss L", "grad_norm2": "||grad L||^2 = -dL/dt"}


class AbstractModel(eqx.Module):
    """A model whose gradient flow ``d theta/dt = -grad L(theta)`` flowsim integrates.

    An instance holds the model's sizes and constants (arrays such as a task's singular vectors
    are fine: they are inputs of the compiled solve, not constants folded into it); every method
    is a pure function of its arguments.  The parameters ``theta`` are any pytree of floating
    arrays (an ``eqx.Module``, a tuple, a dict) and every leaf is trained; the data are any
    pytree (``None`` for a population loss).  To add a model, subclass this with a ``name`` and
    implement :meth:`sample_data`, :meth:`init` and :meth:`loss`; observables, events and claims
    are optional.  :func:`flowsim.models.integrate` integrates it with the core's solver, step
    control, event location, saves, checkpoints and progress, and
    :func:`flowsim.models.check_claims` judges its claims on the result.
    """

    #: How ``flowsim.models.MODELS`` and ``--model`` name it.
    name: eqx.AbstractClassVar[str]
    #: Its initialization schemes; the first is the default of :meth:`init`.
    SCHEMES: ClassVar[tuple[str, ...]] = ("default",)
    #: Its observables besides ``loss`` and ``grad_norm2`` (which every model has), each with its
    #: meaning: the result file's trajectory schema.
    OBSERVABLES: ClassVar[dict[str, str]] = {}

    @property
    def event_names(self) -> tuple[str, ...]:
        """Its events, in the order of :meth:`event_values` (none by default)."""
        return ()

    @abc.abstractmethod
    def sample_data(self, key: PRNGKeyArray) -> PyTree:
        """A training set drawn from the model's data law (``None`` for a population loss)."""

    @abc.abstractmethod
    def init(self, key: PRNGKeyArray, scheme: str) -> PyTree:
        """The parameters at t = 0 under initialization ``scheme`` (one of :attr:`SCHEMES`)."""

    @abc.abstractmethod
    def loss(self, params: PyTree, data: PyTree) -> Float[Array, ""]:
        """The training loss ``L(theta)`` whose gradient flow is integrated (pure JAX)."""

    def reference(self, params0: PyTree, data: PyTree) -> PyTree:
        """What the observables and events compare against, computed once from the start."""
        return None

    def observables(self, params: PyTree, data: PyTree, ref: PyTree) -> dict[str, Array]:
        """The model's observables at ``params`` (keys of :attr:`OBSERVABLES`)."""
        return {}

    def event_values(self, t, params: PyTree, data: PyTree, ref: PyTree) -> tuple[Array, ...]:
        """Each event's condition ``c``, negative before the event and crossing zero upward at it;
        the core locates the crossing by root finding on the solver's dense output."""
        return ()

    def claims(self) -> tuple[ModelClaim, ...]:
        """The statements of the model's paper that a trajectory can check."""
        return ()


@dataclasses.dataclass(frozen=True)
class ModelClaim:
    """A paper's statement (``text``, ``reference``), what is ``measured``, and its check
    ``check(trajectory, model) -> (holds, margin)``, margin positive when it holds."""

    id: str
    text: str
    reference: str
    measured: str
    check: Callable[[Trajectory, AbstractModel], tuple[bool, float]]


def at_most(x: float, tol: float) -> tuple[bool, float]:
    """``x <= tol`` with the margin ``1 - x / tol`` (positive when it holds; NaN never holds)."""
    margin = 1.0 - float(x) / tol
    return (not math.isnan(margin)) and margin >= 0, margin


def within_solver(tol: float, traj: Trajectory) -> float:
    """The tolerance of a check that the exact flow meets exactly (a closed form, a conserved
    quantity): ``tol``, or :data:`SOLVER_SLACK` times the run's ``rtol`` where that is larger, as
    a looser solve cannot confirm an identity more closely than its own error."""
    rtol = float(traj.get("rtol", math.nan))
    return tol if math.isnan(rtol) else max(tol, SOLVER_SLACK * rtol)  # NaN: no solver (gradient descent)


def in_float64(check: Callable[..., tuple[bool, float]]) -> Callable[..., tuple[bool, float]]:
    """``check`` run in JAX's 64-bit mode whatever the caller's: the closed forms it compares a
    trajectory against are JAX functions, whose dtype follows the x64 flag, and a float32 closed
    form would fail a float64 trajectory at 1e-8."""
    @functools.wraps(check)
    def checked(*args, **kwargs):
        with jax.enable_x64(True):
            return check(*args, **kwargs)
    return checked


def check_names(model: AbstractModel) -> None:
    """Refuse a model whose observables or events collide with the core's names or each other."""
    taken = {"t", "rtol", *CORE_OBSERVABLES}
    for kind, names in (("observable", tuple(model.OBSERVABLES)), ("event", tuple(model.event_names))):
        for n in names:
            if n in taken and not (kind == "observable" and n == "loss"):
                raise ValueError(f"model {model.name!r}: the {kind} name {n!r} is taken (by the core or another name)")
            taken.add(n)
    if not model.SCHEMES:
        raise ValueError(f"model {model.name!r} names no initialization scheme")


def as_trajectory(ts: np.ndarray, observables: Mapping[str, np.ndarray], events: Mapping[str, float | None],
                  rtol: float = math.nan) -> dict:
    """The :data:`Trajectory` of a run's saves, event times and solver tolerance."""
    return {"t": np.asarray(ts), **{k: np.asarray(v) for k, v in observables.items()},
            **{k: np.nan if v is None else float(v) for k, v in events.items()}, "rtol": float(rtol)}
