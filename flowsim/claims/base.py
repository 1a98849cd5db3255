"""The contract of a claim: what its check reads and returns, the row it becomes, and the registry CLAIMS it joins.

A check reads a :class:`Trajectory` on the saves of a :class:`Window` and returns an
:class:`Outcome`, whose :class:`Margin` to the threshold (from :func:`at_least`, :func:`at_most`,
:func:`positive`) gives the verdict, or raises :class:`NotApplicable`.  An
:class:`AbstractClaim` joins :data:`CLAIMS` through :func:`register` (or, for a one-off check
written as a function, the :func:`claim` decorator) and becomes a :class:`Row` of the report.
"""

from __future__ import annotations

import abc
import dataclasses
import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from .assumptions import ASSUMPTIONS, THEORY, Assumption, RunContext

if TYPE_CHECKING:
    from ..flow import FlowResult

__all__ = ["CLAIMS", "FAILS", "HOLDS", "NA", "UNAVAILABLE", "AbstractClaim", "AtEnd", "Claim", "InPhase1", "InPhase2",
           "Margin", "NotApplicable", "Outcome", "Row", "Trajectory", "Window", "at_least", "at_most", "claim",
           "positive", "register"]

HOLDS, FAILS, NA = "holds", "does not hold", "not applicable"


# --- Margins: how far a measured quantity is from its threshold ---------------------------------


@dataclasses.dataclass(frozen=True)
class Margin:
    """The signed distance of a measured quantity from its threshold, relative to the threshold
    (for a sign criterion, whose threshold is 0, relative to the quantity's largest size):
    positive means the criterion holds, negative that it does not, and at exactly 0 the
    comparison's strictness decides.  NaN (a quantity that could not be measured, such as 0/0
    for one that never moves) never holds.  ``how`` says how the value was formed."""

    value: float
    how: str
    strict: bool = False

    @property
    def holds(self) -> bool:
        return self.value > 0 or (self.value == 0 and not self.strict)

    def __and__(self, other: Margin) -> Margin:
        """Both criteria: the nearer miss is the margin; at a tie a strict comparison decides."""
        value = float(np.minimum(self.value, other.value))  # NaN wins, as neither can then hold
        tied = [m for m in (self, other) if m.value == value]
        return Margin(value, f"min({self.how}, {other.how})", any(m.strict for m in tied))


def _relative(excess: float, threshold: float) -> float:
    """``excess`` in units of ``|threshold|``; beyond a zero threshold only its sign counts (+-inf).
    Dividing by a positive number keeps the sign of ``excess``, so the verdict read from the
    margin is exactly the comparison ``x >= c``."""
    excess, threshold = float(excess), float(threshold)
    if math.isnan(excess):
        return math.nan
    if threshold == 0:
        return math.copysign(math.inf, excess) if excess else 0.0
    return excess / abs(threshold)


def at_least(x: float, c: float, name: str, strict: bool = False) -> Margin:
    """``x >= c`` (``x > c`` if ``strict``): margin ``(x - c) / |c|``."""
    return Margin(_relative(x - c, c), f"({name} - {c:.4g}) / {abs(c):.4g}", strict)


def at_most(x: float, c: float, name: str) -> Margin:
    """``x <= c``: margin ``(c - x) / |c|``."""
    return Margin(_relative(c - x, c), f"({c:.4g} - {name}) / {abs(c):.4g}")


def positive(worst: float, size: float, name: str, size_name: str) -> Margin:
    """``x > 0`` everywhere, given the smallest ``worst`` of x: margin ``worst / size``, with
    ``size`` the largest |x| (so it lies in [-1, 1])."""
    value = float(worst) / float(size) if size > 0 else math.nan
    return Margin(value, f"{name} / {size_name}", strict=True)


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What a check found: the numbers it measured, the margin to its threshold and the
    criterion in words."""

    measured: dict
    margin: Margin
    criterion: str


class NotApplicable(Exception):
    """A claim this trajectory cannot decide; the message says why."""



# --- What a check reads -------------------------------------------------------------------------

#: Why an engine may be unable to form an observable (it then records NaN at every save).
UNAVAILABLE = {
    "neuron_gram_change": "<w_j1, w_j2> needs the m1 x m matrix W, which a width-free state such as "
                          "the Gram engine's d x d inner products (spec 7.5) does not hold",
    "drift_KQ": "the conserved m x m matrix W_K W_K^T - W_Q W_Q^T cannot be formed from the state",
    "drift_WV": "the conserved m x m matrix W^T W - W_V W_V^T cannot be formed from the state",
}


@dataclasses.dataclass(frozen=True)
class Trajectory:
    """A check's view of a run: saved times, observables and T1, and its context."""

    result: FlowResult
    context: RunContext = RunContext()

    @property
    def ts(self) -> np.ndarray:
        return np.asarray(self.result.ts, float)

    @property
    def T1(self) -> float | None:
        """Theorem 3.1's T1: the first time every training sample is classified correctly."""
        return self.result.events.get("phase1_end")

    @property
    def m(self) -> int:
        return self.result.params_init.m if self.context.m is None else self.context.m

    @property
    def sigma0(self) -> float:
        """The context's sigma0, else the root mean square of the entries of W_K(0), W_Q(0)."""
        if self.context.sigma0 is not None:
            return self.context.sigma0
        p0 = self.result.params_init
        return math.sqrt(float(np.mean(np.concatenate([np.ravel(p0.W_K), np.ravel(p0.W_Q)]) ** 2)))

    def __getitem__(self, key: str) -> np.ndarray:
        """Observable ``key`` at every save; a claim that needs one the engine could not form
        (NaN at every save) is not applicable."""
        x = np.asarray(self.result.observables[key], float)
        if np.isnan(x).all():
            engine = self.result.settings.get("engine", "unknown")
            why = UNAVAILABLE.get(key, "it is NaN at every save")
            raise NotApplicable(f"{key} is not available from this engine's state (engine {engine}: {why})")
        return x

    def at(self, key: str, t: float) -> np.ndarray:
        """Observable ``key`` at time ``t``, linearly interpolated between saves."""
        x = self[key]
        flat = x.reshape(len(x), -1)
        return np.array([np.interp(t, self.ts, flat[:, j]) for j in range(flat.shape[1])]).reshape(x.shape[1:])


# --- Windows: where on the trajectory a claim speaks ---------------------------------------------


class Window(abc.ABC):
    """A stretch of the trajectory: ``name`` for the report, :meth:`saves` for the checks."""

    name: str

    @abc.abstractmethod
    def saves(self, tr: Trajectory) -> np.ndarray:
        """Indices of the saves in the window; :class:`NotApplicable` if this trajectory has none
        or too few to decide."""

    @abc.abstractmethod
    def span(self, tr: Trajectory) -> str:
        """The window with its times, for criteria."""


def _enough(inside: np.ndarray, min_saves: int, where: str) -> np.ndarray:
    """The saves ``inside`` a window, or :class:`NotApplicable` if they are fewer than ``min_saves``."""
    if inside.size < min_saves:
        raise NotApplicable(f"fewer than {min_saves} saves {where}")
    return inside


@dataclasses.dataclass(frozen=True)
class InPhase1(Window):
    """``[lo T1, hi T1]`` inside Phase 1 [0, T1] (Theorem 3.1), with at least ``min_saves`` saves."""

    name: str
    lo: float = 0.0
    hi: float = 1.0
    min_saves: int = 1

    def saves(self, tr: Trajectory) -> np.ndarray:
        if tr.T1 is None:
            raise NotApplicable("T1 (every sample classified correctly) is not reached on this trajectory")
        if tr.T1 == 0.0:
            raise NotApplicable("T1 = 0: every sample is classified correctly at the start, so there is no Phase 1")
        inside = np.flatnonzero((tr.ts >= self.lo * tr.T1) & (tr.ts <= self.hi * tr.T1))
        return _enough(inside, self.min_saves, f"on {self.name}")

    def span(self, tr: Trajectory) -> str:
        return f"{self.name} = [{self.lo * tr.T1:.4g}, {self.hi * tr.T1:.4g}]"


@dataclasses.dataclass(frozen=True)
class InPhase2(Window):
    """Phase 2, (T1, t_end]: the simulator has no T2 (Theorem 3.2)."""

    name: str = "(T1, t_end]"
    min_saves: int = 3

    def saves(self, tr: Trajectory) -> np.ndarray:
        if tr.T1 is None:
            raise NotApplicable("T1 is not reached, so there is no Phase 2")
        return _enough(np.flatnonzero(tr.ts > tr.T1), self.min_saves, "after T1")

    def span(self, tr: Trajectory) -> str:
        return f"{self.name} = ({tr.T1:.4g}, {tr.ts[-1]:.4g}]"


@dataclasses.dataclass(frozen=True)
class AtEnd(Window):
    """The last save: "the end of training" of Theorem 3.3."""

    name: str = "t_end"

    def saves(self, tr: Trajectory) -> np.ndarray:
        return np.array([len(tr.ts) - 1])

    def span(self, tr: Trajectory) -> str:
        return f"t_end = {tr.ts[-1]:.4g}"


# --- Claims and their registry -------------------------------------------------------------------


@dataclasses.dataclass
class Row:
    """One claim checked on one trajectory: its id, what it says and where the paper says it,
    the window it was checked on, the verdict with its margin to the threshold (positive:
    holds; NaN when not applicable), the measured numbers, the criterion behind the verdict
    (for a claim not applicable: why), and whether the run meets the assumptions the claim
    rests on."""

    id: str
    claim: str
    reference: str
    window: str
    verdict: str
    margin: float
    measured: dict
    criterion: str
    assumptions: list[Assumption] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True, kw_only=True)
class AbstractClaim(abc.ABC):
    """A claim of the paper: ``id`` (a stable slug, ``<theorem>.<what>``), its ``text``, the
    paper ``reference``, the ``window`` it speaks about and the names of the
    :data:`ASSUMPTIONS` it rests on (none for an observation of the paper's experiment);
    :meth:`check` measures it."""

    id: str
    text: str
    reference: str
    window: Window
    assumes: tuple[str, ...] = THEORY

    @abc.abstractmethod
    def check(self, tr: Trajectory, saves: np.ndarray) -> Outcome:
        """Measure the claim on the window's ``saves`` of ``tr``; raise :class:`NotApplicable`
        when this trajectory cannot decide it."""

    def row(self, tr: Trajectory, assumptions: dict[str, Assumption]) -> Row:
        """The claim checked on ``tr``, as a row of the report; ``assumptions`` is the run's
        :data:`ASSUMPTIONS`, of which the row keeps those the claim rests on."""
        head = dict(id=self.id, claim=self.text, reference=self.reference, window=self.window.name,
                    assumptions=[assumptions[name] for name in self.assumes])
        try:
            out = self.check(tr, self.window.saves(tr))
        except NotApplicable as why:
            return Row(**head, verdict=NA, margin=math.nan, measured={}, criterion=str(why))
        return Row(**head, verdict=HOLDS if out.margin.holds else FAILS, margin=out.margin.value,
                   measured=plain(out.measured), criterion=f"{out.criterion}; margin = {out.margin.how}")


#: Every claim, by id, in the order registered: paper order (that of :mod:`flowsim.claims.paper`).
CLAIMS: dict[str, AbstractClaim] = {}


def register(c: AbstractClaim) -> AbstractClaim:
    """Add ``c`` to :data:`CLAIMS` (after the claims already there)."""
    if c.id in CLAIMS:
        raise ValueError(f"claim id {c.id!r} is already registered")
    if not set(c.assumes) <= set(ASSUMPTIONS):
        raise ValueError(f"claim {c.id!r} assumes {c.assumes}; known assumptions: {', '.join(ASSUMPTIONS)}")
    CLAIMS[c.id] = c
    return c


@dataclasses.dataclass(frozen=True, kw_only=True)
class Claim(AbstractClaim):
    """A one-off claim whose check is a plain function ``(trajectory, saves) -> Outcome``."""

    measure: Callable[[Trajectory, np.ndarray], Outcome]

    def check(self, tr: Trajectory, saves: np.ndarray) -> Outcome:
        return self.measure(tr, saves)


def claim(id: str, text: str, reference: str, window: Window, assumes: tuple[str, ...] = THEORY):
    """Register the decorated function ``(trajectory, saves) -> Outcome`` as the claim ``id``."""

    def make(measure):
        register(Claim(id=id, text=text, reference=reference, window=window, assumes=assumes, measure=measure))
        return measure

    return make


# --- Plain numbers, for rows and files ------------------------------------------------------------


def plain(x, digits: int | None = None):
    """Numbers as plain Python floats, ints, bools and lists (for JSON), to ``digits``
    significant digits if given; non-finite floats stay as they are."""
    if isinstance(x, dict):
        return {k: plain(v, digits) for k, v in x.items()}
    if isinstance(x, (list, tuple, np.ndarray)):
        return [plain(v, digits) for v in np.asarray(x).tolist()] if np.ndim(x) else plain(float(x), digits)
    if x is None or isinstance(x, str):
        return x
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    x = float(x)
    return x if digits is None or not math.isfinite(x) else float(f"{x:.{digits}g}")
