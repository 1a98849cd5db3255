"""The core's engine contract: what the compiled solve and the host loop read from any state representation of any model's gradient flow."""

from __future__ import annotations

import abc
from typing import ClassVar

import equinox as eqx
import jax
import numpy as np
import optimistix as optx
from jaxtyping import Array, Float, PyTree

# How the members of a solve are laid out: one run, a batch of starts on shared data, or a batch
# whose members each have their own data (e.g. a sweep over data seeds).
SINGLE, SHARED_DATA, OWN_DATA = None, "shared", "own"


class AbstractFlowEngine(eqx.Module):
    """A state ``y`` whose flow ``dy/dt = vector_field(t, y, args)`` is a gradient flow
    ``d theta/dt = -grad L(theta)`` (or an exact reduction of one), with what a run records along it.

    This is all the core (:mod:`flowsim.core.programs`, :mod:`flowsim.core.loop`) knows about a model:
    the transformer's engines (:class:`flowsim.models.cooccurrence.engines.AbstractEngine`) and the generic engine of
    any model (:class:`flowsim.models.GenericEngine`) implement it.  ``args`` is the engine's own
    pytree of run arguments (data, reference quantities of the start, and ``watching``: a bool
    array over :attr:`event_names`, the events not located yet).  Every observable dict has a
    scalar ``"loss"``, which progress bars show.
    """

    #: Whether the solve of this engine may be exported to flowsim's compilation cache, whose key
    #: covers flowsim's own source only: an engine that runs a user's code is compiled in memory.
    exportable: ClassVar[bool] = True

    @property
    @abc.abstractmethod
    def event_names(self) -> tuple[str, ...]:
        """The events, in the order of :meth:`event_values`."""

    @classmethod
    @abc.abstractmethod
    def args_axes(cls, batched) -> PyTree:
        """``vmap`` axes of ``args`` for a batch (``programs.SHARED_DATA`` or ``OWN_DATA``): 0 for
        the fields stacked per member, ``None`` for the shared ones."""

    @abc.abstractmethod
    def vector_field(self, t, y: PyTree, args) -> PyTree:
        """``dy/dt`` of the gradient flow in this representation."""

    def error_norm(self, y: PyTree) -> Float[Array, ""]:
        """The norm of a scaled local error that the step-size control holds below 1: diffrax's
        RMS norm over the state's entries."""
        return optx.rms_norm(y)

    @abc.abstractmethod
    def observe(self, y: PyTree, args) -> dict[str, Array]:
        """Every observable at ``y`` (the result file's trajectory schema), ``"loss"`` among them."""

    @abc.abstractmethod
    def event_values(self, t, y: PyTree, args) -> tuple[Array, ...]:
        """Each event's condition ``c(t, y)``: negative before the event, crossing zero upward at it."""

    def start_facts(self, y: PyTree, args) -> dict[str, Array]:
        """What is measured once, at the start (none by default)."""
        return {}

    def start_record(self, facts: dict, start, args) -> dict:
        """The start's facts as plain numbers, for results and run.json."""
        return {k: np.asarray(v, float).tolist() for k, v in facts.items()}

    @abc.abstractmethod
    def final_leaves(self, y: PyTree, args) -> tuple | None:
        """The leaves of the model's parameters at ``y`` (a plain tuple: exported programs return no
        custom pytree), or ``None`` where the state cannot give them."""

    @abc.abstractmethod
    def params_of(self, leaves: tuple) -> PyTree:
        """The parameters from :meth:`final_leaves`."""


def leaves_of(tree) -> tuple | None:
    """``tree``'s leaves as a tuple, or ``None`` for ``None``."""
    return None if tree is None else tuple(jax.tree.leaves(tree))
