"""The paper's claims (spec 6) as a registry of checks, and check_claims, which runs them on one trajectory.

Each statement of Theorems 3.1-3.3, the lemmas of Section 4 and their appendix versions is an
:class:`AbstractClaim`: a stable id (``thm31.G_signs``), its text and paper reference, the
:class:`Window` between two phase markers it speaks about, and a ``check`` that returns the
measured numbers and a signed :class:`Margin` to its threshold (positive: the claim holds); a
statement of order is an :class:`OrderClaim`, measured on one run and judged on a sweep.
:func:`check_claims` turns each into a :class:`Row`, which also says whether the run meets the
assumptions of the claim's theorem.

- :mod:`.assumptions`: how a run was set up (:class:`RunContext`) and the theory's assumptions
  judged on it (:data:`ASSUMPTIONS`);
- :mod:`.base`: the contract (trajectory, windows, outcome and margin, row, claim) and the
  registry :data:`CLAIMS`;
- :mod:`.paper`: the thresholds and every claim of the paper, registered in paper order by
  being defined: the module to open to see what is checked and how, and where a claim is added;
- :mod:`.scaling`: the order claims judged across a sweep, by fitted exponents.

:mod:`flowsim.reporting` prints and writes the rows, for one run and over a sweep.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np

from . import assumptions, base, paper, scaling  # noqa: F401  scaling: the order claims over a sweep
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
    trajectory), in paper order: t = 0 (Lemmas 4.1-4.2 = E.4, E.16, E.6), Phase 1 (Theorem 3.1 =
    E.28, E.26, Lemma 4.3 = E.19, E.20, E.21, E.23), Phase 2 (Theorem 3.2, Definition F.1,
    Lemmas 4.4-4.7 = F.5-F.16, F.7, F.8), the end (Theorem 3.3).

    Each row says whether the run meets its theorem's assumptions, judged on the run itself
    (its start and training set, ``result.start_facts``); ``context`` (e.g.
    ``RunContext.from_config(run.config)``) adds how it was set up by name and its failure
    probability delta.  Windows open and close at the phase markers of ``result.events``;
    statements of order are measured here and judged on a sweep (:mod:`flowsim.models.cooccurrence.claims.scaling`).
    On a run that stopped early, a claim whose window it did not reach is "not reached".
    """
    if len(result.ts) < 2:
        raise ValueError("a report needs a trajectory with at least 2 saved times")
    context = context or RunContext()
    tr = Trajectory(result, context)
    judged = assess(result, context)
    # A quantity that does not move (e.g. scores from W_K = W_Q = 0) makes rate ratios 0/0: NaN,
    # whose margin is NaN, so such a claim is reported as not holding.
    with np.errstate(invalid="ignore", divide="ignore"):
        return [c.row(tr, judged) for c in (CLAIMS.values() if claims is None else claims)]
