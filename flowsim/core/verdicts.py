"""A claim's verdict and its report row: what the check of any model's claim registry returns and the report prints."""

from __future__ import annotations

import dataclasses

__all__ = ["FAILS", "HOLDS", "NA", "NOT_REACHED", "ORDER", "Row"]

HOLDS, FAILS, NA = "holds", "does not hold", "not applicable"
NOT_REACHED = "not reached"  # the run stopped (interrupted, failed) before the claim's window ends
ORDER = "judged on a sweep"  # an order statement: this run measures its quantity


@dataclasses.dataclass
class Row:
    """One claim checked on one trajectory: its id, what it says and where the paper says it,
    the window it was checked on, the verdict with its margin to the threshold (positive:
    holds; NaN when not decided here), the measured numbers, the criterion behind the verdict
    (for a claim not applicable or not reached: why), and whether the run meets the
    assumptions the claim rests on."""

    id: str
    claim: str
    reference: str
    window: str
    verdict: str
    margin: float
    measured: dict
    criterion: str
    assumptions: list = dataclasses.field(default_factory=list)  # the model's Assumption records
