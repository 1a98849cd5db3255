"""A computed trajectory: saved times, observables, events, statistics and end points (FlowResult)."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from jaxtyping import PyTree

from .options import DescentOptions, FlowOptions

@dataclasses.dataclass
class FlowResult:
    """A trajectory: saved times, observables, event times, solver statistics and end points.

    ``observables[k][i]`` is observable ``k`` (see ``flowsim.models.cooccurrence.observables.DESCRIPTIONS``) at
    ``ts[i]``.  ``events`` maps each name of ``flowsim.models.cooccurrence.events.EVENT_NAMES`` to its time
    (``0.0`` if it holds at t = 0, ``None`` if not reached).  ``stats`` counts solver steps
    (attempted, accepted, rejected), diffeqsolve calls (``solves``: one per chunk plus one per
    event) and vector-field evaluations (``nfev``, from the solver's tableau, see
    :func:`flowsim.core.controller.evaluations_per_step`; ``None`` for implicit solvers, whose Newton
    iterations diffrax does not report).  ``options`` are the options the trajectory was
    computed with (:class:`~flowsim.FlowOptions`, the engine resolved, or
    :class:`~flowsim.DescentOptions`).  ``params_init`` is the start: :class:`~flowsim.Params`, or
    a :class:`~flowsim.SubspaceStart` for a width-free one; ``params_final`` is ``None`` where the
    engine cannot give the final matrices.

    ``start_facts`` are what the theorems say about the start that the observables do not hold
    (``flowsim.models.cooccurrence.observables.START_FACTS``: Corollary D.2's softmax, the per-neuron rates of Lemmas
    4.1, 4.2, E.6, the training set's group sizes, ...), for the report's checks of t = 0.

    A result whose ``status`` is not ``"complete"`` can be finished with
    ``integrate(..., resume=result)``: ``state``, ``chunks_done`` and ``dt_next`` (the step
    size the controller proposed next) say where it stopped.
    """

    ts: np.ndarray
    observables: dict[str, np.ndarray]
    events: dict[str, float | None]
    stats: dict[str, int | None]
    params_init: Any
    params_final: PyTree | None
    t_reached: float
    status: str
    message: str
    grid: np.ndarray
    chunks_done: int
    state: PyTree
    options: FlowOptions | DescentOptions
    dt_next: float = 0.0
    start_facts: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def phase1_end(self) -> float | None:
        """T1 of Definition E.2: the end of Phase 1 (:mod:`flowsim.models.cooccurrence.events`)."""
        return self.events["phase1_end"]

    @property
    def settings(self) -> dict[str, Any]:
        """The options as one flat dict (``method`` first: ``"flow"`` or ``"gd"``)."""
        return self.options.flat()
