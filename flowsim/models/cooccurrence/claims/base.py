"""The contract of a claim: what its check reads and returns, the window between two phase markers it speaks about, the row it becomes, and the registry CLAIMS it joins.

A check reads a :class:`Trajectory` on the saves of a :class:`Window` (between two of the
markers of :mod:`flowsim.models.cooccurrence.events`, the start or the end) and returns an :class:`Outcome`, whose
:class:`Margin` to the threshold (from :func:`at_least`, :func:`at_most`, :func:`positive`) gives
the verdict, or raises :class:`NotApplicable` (:class:`NotReached` when the run stopped before
the window).  An :class:`AbstractClaim` joins :data:`CLAIMS` through :func:`register` (or, for a
one-off check written as a function, the :func:`claim` decorator) and becomes a :class:`Row`
of the report.  A statement of order (Theta, O, Omega in m, n or the initial output F) is an
:class:`OrderClaim`: one run only measures its quantity, a sweep judges it by a fitted
exponent (:mod:`flowsim.models.cooccurrence.claims.scaling`).
"""

from __future__ import annotations

import abc
import dataclasses
import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from ....core.verdicts import FAILS, HOLDS, NA, NOT_REACHED, ORDER, Row
from .assumptions import ASSUMPTIONS, THEORY, Assumption, RunContext

if TYPE_CHECKING:
    from ..flow import FlowResult

__all__ = ["CLAIMS", "FAILS", "HOLDS", "NA", "NOT_REACHED", "ORDER", "RELATIONS", "UNAVAILABLE", "AbstractClaim", "Claim",
           "Margin", "NotApplicable", "NotReached", "OrderClaim", "Outcome", "Row", "Trajectory", "Window", "at_least",
           "at_most", "claim", "positive", "register"]



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


class NotReached(NotApplicable):
    """A claim whose window this run did not reach: it stopped (interrupted, failed) before."""



# --- What a check reads -------------------------------------------------------------------------

#: Why an engine may be unable to form an observable (it then records NaN at every save).
UNAVAILABLE = {
    "neuron_gram_change": "<w_j1, w_j2> needs the m1 x m matrix W, which a width-free state such as "
                          "the Gram engine's d x d inner products (spec 7.5) does not hold",
    "neuron_corr_change": "<w_j1, w_j2> needs the m1 x m matrix W, which a width-free state does not hold",
    "neuron_value_change": "the neuron values w_j^T W_V mu need the m1 neurons, which a width-free state does not hold",
    "drift_KQ": "the conserved m x m matrix W_K W_K^T - W_Q W_Q^T cannot be formed from the state",
    "drift_WV": "the conserved m x m matrix W^T W - W_V W_V^T cannot be formed from the state",
}

#: The paper's name of each marker of flowsim.models.cooccurrence.events, and of the two ends of a run.
SYMBOLS = {"0": "0", "t_end": "t_end", "phase1_end": "T1", "rates_ordered": "T0.5", "one_target_margin": "T'",
           "all_correct": "T_correct", "G3_negative": "T_G3", "scores_leave_band": "T_band"}


@dataclasses.dataclass(frozen=True)
class Trajectory:
    """A check's view of a run: saved times, observables, the phase markers, the start's facts
    (``result.start_facts``: sizes, scales, rates at t = 0) and how the run was set up."""

    result: FlowResult
    context: RunContext = RunContext()

    @property
    def ts(self) -> np.ndarray:
        return np.asarray(self.result.ts, float)

    @property
    def facts(self) -> dict:
        return self.result.start_facts

    @property
    def complete(self) -> bool:
        return self.result.status == "complete"

    @property
    def T1(self) -> float | None:
        """T1 of Definition E.2 (``phase1_end``)."""
        return self.result.events.get("phase1_end")

    # The sizes and scales of the start, as its facts record them.
    n = property(lambda self: self.facts["n"], doc="training samples")
    L = property(lambda self: self.facts["L"], doc="sequence length")
    d = property(lambda self: self.facts["d"], doc="vocabulary")
    m = property(lambda self: self.facts["m"], doc="attention width")
    m1 = property(lambda self: self.facts["m1"], doc="MLP width")
    sigma0 = property(lambda self: self.facts["sigma0"], doc="std of the entries of W_V, W_K, W_Q at t = 0")
    sigma1 = property(lambda self: self.facts["sigma1"], doc="std of the entries of W at t = 0")

    @property
    def delta(self) -> float:
        """The failure probability of the high-probability bounds (the run's, else the default)."""
        from ..init import DELTA

        return DELTA if self.context.delta is None else self.context.delta

    def when(self, marker: str) -> float:
        """The time of ``marker`` (an event name, ``"0"`` or ``"t_end"``); :class:`NotApplicable`
        if the run ended without reaching it, :class:`NotReached` if it stopped before."""
        stopped = (f"the run stopped at t = {self.result.t_reached:.4g} of t_end = {self.result.options.t_end:.4g} "
                   f"({self.result.status})")
        if marker == "0":
            return 0.0
        if marker == "t_end":
            if not self.complete:
                raise NotReached(stopped)
            return float(self.ts[-1])
        t = self.result.events.get(marker)
        if t is None:
            if not self.complete:
                raise NotReached(f"{SYMBOLS.get(marker, marker)} ({marker}) not reached: {stopped}")
            raise NotApplicable(f"{SYMBOLS.get(marker, marker)} ({marker}) is not reached by t_end = {self.ts[-1]:.4g}")
        return float(t)

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


# --- Windows: where on the trajectory a claim speaks, between two markers -----------------------


@dataclasses.dataclass(frozen=True)
class Window:
    """The stretch of the trajectory from marker ``open`` to marker ``close`` (event names of
    :mod:`flowsim.models.cooccurrence.events`, ``"0"`` or ``"t_end"``): closed, or open at its start if
    ``open_start`` (Phase 2, (T1, T2)); a point if the two are the same marker.  It must hold
    ``min_saves`` saves."""

    open: str
    close: str
    open_start: bool = False
    min_saves: int = 1

    @property
    def name(self) -> str:
        a, b = SYMBOLS.get(self.open, self.open), SYMBOLS.get(self.close, self.close)
        if self.open == self.close:
            return f"t = {a}"
        return f"{'(' if self.open_start else '['}{a}, {b}]"

    def times(self, tr: Trajectory) -> tuple[float, float]:
        """Its ends on ``tr``; :class:`NotApplicable` where a marker is missing or the window is empty."""
        a, b = tr.when(self.open), tr.when(self.close)
        if b < a or (b == a and self.open != self.close):
            raise NotApplicable(f"{self.name} is empty on this trajectory ({SYMBOLS.get(self.open)} = {a:.4g}, "
                                f"{SYMBOLS.get(self.close)} = {b:.4g})")
        return a, b

    def saves(self, tr: Trajectory, *, partial: bool = False) -> np.ndarray:
        """Indices of the saves in the window (``partial``: of the part a stopped run reached)."""
        if partial:
            a, b = tr.when(self.open), float(tr.ts[-1])
        else:
            a, b = self.times(tr)
        if self.open == self.close:
            return np.array([int(np.argmin(np.abs(tr.ts - a)))])
        inside = (tr.ts > a if self.open_start else tr.ts >= a) & (tr.ts <= b)
        inside = np.flatnonzero(inside)
        if inside.size < self.min_saves:
            raise NotApplicable(f"fewer than {self.min_saves} saves on {self.name}")
        return inside

    def span(self, tr: Trajectory) -> str:
        """The window with its times, for criteria; on a run that stopped inside it, the part
        reached (what :meth:`AbstractClaim.row` reports for such a run)."""
        try:
            a, b = self.times(tr)
        except NotReached:
            a, b = tr.when(self.open), float(tr.ts[-1])
            return f"{self.name} to where the run stopped = [{a:.4g}, {b:.4g}]"
        return f"{self.name} = {a:.4g}" if self.open == self.close else f"{self.name} = [{a:.4g}, {b:.4g}]"


# --- Claims and their registry -------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, kw_only=True)
class AbstractClaim(abc.ABC):
    """A claim of the paper: ``id`` (a stable slug, ``<theorem>.<what>``), its ``text`` (the
    statement in our words), the paper ``reference`` (appendix numbers), the ``window`` it speaks
    about and the names of the :data:`ASSUMPTIONS` it rests on (none for an observation of the
    paper's experiment); :meth:`check` measures it."""

    id: str
    text: str
    reference: str
    window: Window
    assumes: tuple[str, ...] = THEORY

    @abc.abstractmethod
    def check(self, tr: Trajectory, saves: np.ndarray) -> Outcome:
        """Measure the claim on the window's ``saves`` of ``tr``; raise :class:`NotApplicable`
        when this trajectory cannot decide it."""

    def verdict(self, out: Outcome) -> str:
        return HOLDS if out.margin.holds else FAILS

    def row(self, tr: Trajectory, assumptions: dict[str, Assumption]) -> Row:
        """The claim checked on ``tr``, as a row of the report; ``assumptions`` is the run's
        :data:`ASSUMPTIONS`, of which the row keeps those the claim rests on.  On a run that
        stopped before the window's end the verdict is "not reached", with what the part it
        reached shows."""
        head = dict(id=self.id, claim=self.text, reference=self.reference, window=self.window.name,
                    assumptions=[assumptions[name] for name in self.assumes])
        try:
            out = self.check(tr, self.window.saves(tr))
        except NotReached as why:
            return Row(**head, verdict=NOT_REACHED, margin=math.nan, measured={},
                       criterion=f"{why}{self._partial(tr)}")
        except NotApplicable as why:
            return Row(**head, verdict=NA, margin=math.nan, measured={}, criterion=str(why))
        verdict = self.verdict(out)
        return Row(**head, verdict=verdict, margin=out.margin.value if verdict in (HOLDS, FAILS) else math.nan,
                   measured=plain(out.measured), criterion=f"{out.criterion}; margin = {out.margin.how}"
                   if verdict in (HOLDS, FAILS) else out.criterion)

    def _partial(self, tr: Trajectory) -> str:
        """What the reached part of a window shows, for a run that stopped inside it."""
        try:
            out = self.check(tr, self.window.saves(tr, partial=True))
        except (NotApplicable, IndexError, ValueError):
            return ""
        if self.verdict(out) == ORDER:
            return ""
        return (f"; on the part reached (to t = {tr.ts[-1]:.4g}) it {'holds' if out.margin.holds else 'does not hold'}"
                f" (margin {out.margin.value:+.3g})")


#: Every claim, by id, in the order registered: paper order (that of :mod:`flowsim.models.cooccurrence.claims.paper`).
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


#: Order relations: the quantity is Theta, O or Omega of x^exponent in the sweep variable x.
RELATIONS = ("Theta", "O", "Omega")


@dataclasses.dataclass(frozen=True, kw_only=True)
class OrderClaim(AbstractClaim):
    """A statement of order: a positive ``quantity`` measured on one run (``measure(tr, saves)``,
    in words ``quantity``) is ``relation`` (Theta, O, Omega) of ``x^exponent`` for each sweep
    variable x of ``over`` (``"m"``, ``"n"``, or ``"F"``: the initial output max_i |F(X_i)|),
    up to log factors.  A quantity made dimensionless by the theory's own expression has
    exponent 0.  One run only reports it (verdict "judged on a sweep"); a sweep that varies x
    fits the exponent (:func:`flowsim.models.cooccurrence.claims.scaling.judge`)."""

    relation: str
    quantity: str
    over: tuple[str, ...] = ("m",)
    exponent: float = 0.0
    measure: Callable[[Trajectory, np.ndarray], float]

    def __post_init__(self):
        if self.relation not in RELATIONS:
            raise ValueError(f"claim {self.id!r}: relation must be one of {', '.join(RELATIONS)}")

    def verdict(self, out: Outcome) -> str:
        return ORDER

    def value(self, tr: Trajectory) -> float:
        """The measured quantity on ``tr`` (NaN where it cannot be measured)."""
        try:
            return float(self.measure(tr, self.window.saves(tr)))
        except NotApplicable:
            return math.nan

    def check(self, tr: Trajectory, saves: np.ndarray) -> Outcome:
        value = float(self.measure(tr, saves))
        law = " and ".join(f"{self.relation}({x}^{self.exponent:g})" for x in self.over)
        return Outcome({self.quantity: value}, Margin(math.nan, "judged on a sweep"),
                       f"{law} up to logs on {self.window.span(tr)}; a sweep fits the exponent")


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
