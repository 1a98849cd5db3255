"""The paper's claims (spec 6) as a registry of checks, and check_claims, which runs them on one trajectory.

Each claim of Theorems 3.1-3.3 and Lemmas 4.2-4.7 is an :class:`AbstractClaim`: a stable id
(``thm31.G_signs``), its text and paper reference, the :class:`Window` of the trajectory it
speaks about, and a ``check`` that returns the measured numbers and a signed :class:`Margin` to
its threshold (positive: the claim holds).  :func:`check_claims` turns each into a :class:`Row`,
which also says whether the run meets the assumptions of the claim's theorem.

- :mod:`.assumptions`: how a run was set up (:class:`RunContext`) and the theory's assumptions
  judged on it (:data:`ASSUMPTIONS`);
- :mod:`.base`: the contract (trajectory, windows, outcome and margin, row, claim) and the
  registry :data:`CLAIMS`;
- :mod:`.paper`: the thresholds and every claim of the paper, registered in paper order by
  being defined: the module to open to see what is checked and how, and where a claim is added.

:mod:`flowsim.reporting` prints and writes the rows, for one run and over a sweep.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np

from . import assumptions, base, paper
from .assumptions import *  # noqa: F403
from .base import *  # noqa: F403
from .paper import *  # noqa: F403  defining the claims registers them, in paper order
from .assumptions import RunContext, assess  # isort: skip
from .base import CLAIMS, AbstractClaim, Row, Trajectory  # isort: skip

if TYPE_CHECKING:
    from ..flow import FlowResult

__all__ = [*assumptions.__all__, *base.__all__, *paper.__all__, "check_claims"]


def check_claims(result: FlowResult, context: RunContext | None = None, *,
                 claims: Iterable[AbstractClaim] | None = None) -> list[Row]:
    """Every claim of :data:`CLAIMS` (or ``claims``) on ``result`` (a flow or a gradient-descent
    trajectory), in paper order: Theorem 3.1 / Lemmas 4.2-4.3 (Phase 1), Theorem 3.2 / Lemmas
    4.4-4.7 (Phase 2), Theorem 3.3.

    ``context`` (e.g. ``RunContext.from_config(run.config)``) says how the run was set up: each
    row then says whether the run meets its theorem's assumptions, and m and sigma0 are taken
    from it.  Without it the assumptions are unknown and m, sigma0 are read from
    ``result.params_init``.

    T1 is ``result.events["phase1_end"]``; Phase 2 is (T1, t_end] (the simulator has no T2).
    Rates are finite differences between saves, so a denser save grid resolves them better.
    """
    if len(result.ts) < 2:
        raise ValueError("a report needs a trajectory with at least 2 saved times")
    tr = Trajectory(result, context or RunContext())
    judged = assess(tr.context)
    # A quantity that does not move (e.g. scores from W_K = W_Q = 0) makes rate ratios 0/0: NaN,
    # whose margin is NaN, so such a claim is reported as not holding.
    with np.errstate(invalid="ignore", divide="ignore"):
        return [c.row(tr, judged) for c in (CLAIMS.values() if claims is None else claims)]
