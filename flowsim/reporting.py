"""The paper's claims (spec 6) as a registry of self-contained checks, run on one trajectory.

Each claim of Theorems 3.1-3.3 and Lemmas 4.2-4.7 is an :class:`AbstractClaim`: a stable id
(``thm31.G_signs``), its text and paper reference, the :class:`Window` of the trajectory it
speaks about, and a ``check`` that returns the measured numbers and a signed :class:`Margin` to
its threshold (positive: the claim holds).  :data:`CLAIMS` holds them in paper order, and
:func:`check_claims` turns each into a :class:`Row` of the report, which also says whether the
run meets the assumptions of the claim's theorem (:data:`ASSUMPTIONS`, read from a
:class:`RunContext`).

Adding a claim is one definition below: a function decorated with :func:`claim`, or, for a
family of claims that differ only in parameters, one :class:`AbstractClaim` subclass and an
instance per member passed to :func:`register`.  Nothing refers to a claim by its position.
"""

from __future__ import annotations

import abc
import dataclasses
import json
import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .flow import FlowResult

HOLDS, FAILS, NA = "holds", "does not hold", "not applicable"

# Thresholds: the paper's statements are asymptotic in m, so on one finite run each "small",
# "constant size" or "O(1)" needs a cut.  Every row states the cut it used.
G_CONSTANT = 0.1  # |G(mu_k)(T1)| >= this: a margin moves the logistic loss by O(1) per unit
NEAR_INIT = 0.1  # relative change up to T1 that still counts as "near the initial value"
LOSS_CONSTANT = math.log(2) / 10  # a tenth of the loss of the zero-output classifier
RISE = 0.01  # relative rise (and fall) of a group loss that counts as a rise (fall)
EARLY = 0.1  # "early in Phase 1": [0, EARLY T1]
LATE = 0.5  # "later in Phase 1": [LATE T1, T1]
SMALL_RATE = 0.5  # |dG3/dt| at most this fraction of max(|dG1/dt|, |dG2/dt|) counts as small
FRACTION = 0.95  # fraction of saved intervals on which a "monotone" or inequality claim must hold
BALANCE_SMALL = 0.5  # |S2 - S3| / min(S2, S3) below this counts as balanced
BALANCE_O1 = 10.0  # the other balancing ratios count as O(1) below this
EXPONENT_TOL = 0.2  # "rate proportional to Lhat": log-log slope of rate against Lhat in 1 +- this
SAME_RATE = 2.0  # "falls at the same rate": rate ratio within a factor of this of -1
ORDER = 10.0  # "an order smaller"
LOG_FACTOR_MIN = 2.0  # Condition 1's "up to log factors": init constants within max(ln m, this) of 1


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


# --- The run's setup and the theory's assumptions ------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RunContext:
    """How a run was set up, which its trajectory does not record: the data mode, the init
    scheme and scales, and the sizes.  Every field is optional; an assumption that needs a
    missing one is reported as unknown.  Given ``m`` and ``sigma0`` the checks take them from
    here rather than from ``result.params_init`` (whose matrices need not be m wide)."""

    data_mode: str | None = None  # "theory" (Assumption 2.3), "sampled" or "iid"
    init: str | None = None  # "theory" (Condition 1), "kaiming", or another name for a custom one
    n: int | None = None
    L: int | None = None
    m: int | None = None
    m1: int | None = None
    sigma0: float | None = None
    sigma1: float | None = None

    @classmethod
    def from_config(cls, config) -> RunContext:
        """The context of a :class:`~flowsim.RunConfig` (as recorded in ``run.json``)."""
        c = config.resolved()
        return cls(data_mode=c.data_mode, init=c.init, n=c.n, L=c.L, m=c.m, m1=c.m1, sigma0=c.sigma0, sigma1=c.sigma1)


@dataclasses.dataclass(frozen=True)
class Assumption:
    """Whether a run meets one assumption of the theory: ``met`` is True, False or None (the
    context does not say); ``why`` in a few words (shown on rows), ``detail`` with the numbers."""

    name: str
    met: bool | None
    why: str
    detail: str

    @property
    def answer(self) -> str:
        return {True: "yes", False: "no", None: "unknown"}[self.met]

    def __str__(self) -> str:
        return f"{self.name} {self.answer}" + ("" if self.met else f" ({self.why})")


_GIVE = " (give check_claims a context, e.g. RunContext.from_config(config))"


def condition1(ctx: RunContext) -> Assumption:
    """Condition 1 (spec 4): the entries of W_V, W_K, W_Q have std sigma0 = 1/sqrt(L m) and those
    of W sigma1 = 1/sqrt(m1), up to log factors.  Kaiming's scales, sqrt(2/d) and sqrt(2/m), do
    not scale so with m and m1, whatever their size at one m: a Kaiming run does not meet it.
    Any other run meets it when c0 = sigma0 sqrt(L m) and c1 = sigma1 sqrt(m1) lie within a
    factor max(ln m, LOG_FACTOR_MIN) of 1."""
    name = "Condition 1"
    known = None not in (ctx.L, ctx.m, ctx.m1, ctx.sigma0, ctx.sigma1)
    c = (ctx.sigma0 * math.sqrt(ctx.L * ctx.m), ctx.sigma1 * math.sqrt(ctx.m1)) if known else None
    numbers = f"sigma0 sqrt(L m) = {c[0]:.3g}, sigma1 sqrt(m1) = {c[1]:.3g}" if known else "scales not given"
    if ctx.init == "kaiming":
        return Assumption(name, False, "Kaiming init", "Kaiming init: sigma0 = sqrt(2/d), sigma1 = sqrt(2/m) do not "
                          f"scale as 1/sqrt(L m), 1/sqrt(m1) ({numbers})")
    scheme = f"{ctx.init} init" if ctx.init else "init of unnamed scheme"
    if not known:
        return Assumption(name, None, "init not given", f"init scheme or scales not given{_GIVE}")
    slack = max(math.log(ctx.m), LOG_FACTOR_MIN)
    met = all(1 / slack <= x <= slack for x in c)
    return Assumption(name, met, scheme if met else f"{scheme} off scale",
                      f"{scheme}: {numbers}, {'within' if met else 'not both within'} a factor "
                      f"max(ln m, {LOG_FACTOR_MIN:g}) = {slack:.3g} of 1")


#: Assumption 2.3 for each data mode: met, in a few words, in detail.
DATA_MODES = {
    "theory": (True, "theory data", "groups n/2, n/6, n/6, n/6 and every irrelevant word used at most once"),
    "sampled": (False, "sampled data", "sampled data: irrelevant words may repeat across samples"),
    "iid": (False, "i.i.d. data", "i.i.d. data: random group sizes, irrelevant words may repeat"),
}


def assumption23(ctx: RunContext) -> Assumption:
    """Assumption 2.3 (spec 1): balanced group sizes and every irrelevant word used at most once,
    which the theory data mode builds and the others do not."""
    if ctx.data_mode not in DATA_MODES:
        said = "data mode not given" if ctx.data_mode is None else f"unknown data mode {ctx.data_mode!r}"
        return Assumption("Assumption 2.3", None, said, said + _GIVE)
    return Assumption("Assumption 2.3", *DATA_MODES[ctx.data_mode])


def width(ctx: RunContext) -> Assumption:
    """The theory's regime m >~ max(m1, L^2), n >~ L^2 (spec 4), read without constants:
    m >= m1, m >= L^2 and n >= L^2, each reported."""
    L2 = None if ctx.L is None else ctx.L**2
    parts = [("m", ctx.m, "m1", ctx.m1), ("m", ctx.m, "L^2", L2), ("n", ctx.n, "L^2", L2)]
    results = [None if None in (a, b) else a >= b for _, a, _, b in parts]
    said = [f"{x} = {'?' if a is None else a} {'>=' if ok else '<' if ok is False else 'vs'} {y} = {'?' if b is None else b}"
            for (x, a, y, b), ok in zip(parts, results)]
    met = False if False in results else None if None in results else True
    why = "; ".join(t for t, ok in zip(said, results) if ok is not True)
    return Assumption("width", met, why, "; ".join(said) + ("" if met is not None else _GIVE))


#: The theory's assumptions, by name: each a function of the run's context.
ASSUMPTIONS: dict[str, Callable[[RunContext], Assumption]] = {
    "Condition 1": condition1, "Assumption 2.3": assumption23, "width": width}
THEORY = tuple(ASSUMPTIONS)  # what Theorems 3.1-3.3 and Lemmas 4.2-4.7 assume


def assess(context: RunContext) -> dict[str, Assumption]:
    """Every assumption of :data:`ASSUMPTIONS`, judged on ``context``."""
    return {name: judge(context) for name, judge in ASSUMPTIONS.items()}


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
        if inside.size < self.min_saves:
            raise NotApplicable(f"fewer than {self.min_saves} saves on {self.name}")
        return inside

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
        inside = np.flatnonzero(tr.ts > tr.T1)
        if inside.size < self.min_saves:
            raise NotApplicable(f"fewer than {self.min_saves} saves after T1")
        return inside

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


AT_T1 = InPhase1("T1")  # the state at T1: needs only T1 > 0
PHASE1 = InPhase1("[0, T1]")
EARLY_PHASE1 = InPhase1(f"[0, {EARLY:g} T1]", hi=EARLY, min_saves=2)
LATE_PHASE1 = InPhase1(f"[{LATE:g} T1, T1]", lo=LATE, min_saves=2)
PHASE2 = InPhase2()
END = AtEnd()


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
                   measured=_plain(out.measured), criterion=f"{out.criterion}; margin = {out.margin.how}")


#: Every claim, by id, in paper order (the order of the definitions below).
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


def _relative_change(x: np.ndarray) -> np.ndarray:
    """||X(t) - X(0)||_F / ||X(0)||_F for a saved series X (the absolute change if X(0) = 0)."""
    flat = x.reshape(len(x), -1)
    return np.linalg.norm(flat - flat[0], axis=1) / (np.linalg.norm(flat[0]) or 1.0)


def _fraction(ok: np.ndarray) -> float:
    return float(np.mean(ok)) if len(ok) else float("nan")


# --- Phase 1, [0, T1]: Theorem 3.1, Lemmas 4.2-4.3 ------------------------------------------------


@claim("thm31.G_signs", "at T1: G(mu_1) > 0, G(mu_2) > 0, G(mu_3) < 0, each of constant size", "Thm 3.1", AT_T1)
def _G_signs(tr, saves):
    """G(mu_1), G(mu_2) >= G_CONSTANT and G(mu_3) <= -G_CONSTANT at T1."""
    G = tr.at("G_special", tr.T1)
    return Outcome(dict(T1=tr.T1, G1=G[0], G2=G[1], G3=G[2]),
                   at_least(np.min([G[0], G[1], -G[2]]), G_CONSTANT, "min(G1, G2, -G3)"),
                   f"G(mu_1), G(mu_2) >= {G_CONSTANT} and G(mu_3) <= -{G_CONSTANT} at T1 (interpolated between saves)")


@claim("thm31.all_correct", "at T1 every training sample is classified correctly (y_i F(X_i) > 0)", "Thm 3.1", AT_T1)
def _all_correct(tr, saves):
    """T1 is defined as the first time min_i y_i F_i >= 0, so the claim holds at T1; the first
    save after T1 must confirm it (min margin > 0)."""
    after = np.flatnonzero(tr.ts > tr.T1)
    margins = tr["min_margin"]
    if after.size:
        following = margins[after[0]]
        margin = positive(following, np.max(np.abs(margins[:after[0] + 1])),
                          "min_i y_i F_i at the first save after T1", "max |min_i y_i F_i| up to it")
    else:
        following, margin = math.nan, Margin(0.0, "0 (T1 = t_end: holds by the definition of T1)")
    return Outcome(dict(T1=tr.T1, m_times_T1=tr.m * tr.T1, min_margin_next_save=following), margin,
                   "T1 is defined as the first time min_i y_i F_i >= 0, so the claim holds once T1 is "
                   "reached and the first save after T1 has min margin > 0; the theory's T1 = O~(1/m) "
                   "needs several m and is only reported (m T1)")


@dataclasses.dataclass(frozen=True, kw_only=True)
class NearInit(AbstractClaim):
    """Theorem 3.1: until T1 an attention-side quantity stays near its initial value: its largest
    relative change on [0, T1] (T1 itself interpolated) is at most NEAR_INIT.  ``key`` is the
    observable: a 3 x 3 block over mu_1..mu_3, or (``is_change``) already the relative change."""

    key: str
    is_change: bool = False

    @classmethod
    def of(cls, key: str, quantity: str, is_change: bool = False) -> NearInit:
        return cls(id=f"thm31.near_init.{key}", text=f"until T1 {quantity} stays near its initial value",
                   reference="Thm 3.1", window=PHASE1, key=key, is_change=is_change)

    def check(self, tr, saves):
        series = np.concatenate([tr[self.key][saves], tr.at(self.key, tr.T1)[None]])
        change = series if self.is_change else _relative_change(series)
        worst = float(np.max(change))
        how = ("||W W^T - W(0) W(0)^T||_F / ||W(0) W(0)^T||_F" if self.is_change else
               "||X(t) - X(0)||_F / ||X(0)||_F over the 3 x 3 block of mu_1..mu_3; the absolute change if X(0) = 0")
        return Outcome(dict(max_relative_change=worst, at_T1=float(change[-1])),
                       at_most(worst, NEAR_INIT, "largest relative change"),
                       f"largest relative change on [0, T1] <= {NEAR_INIT} ({how})")


for _key, _quantity in (("scores", "mu^T W_K^T W_Q nu"), ("value_corr", "mu^T W_V^T W_V nu"),
                        ("key_corr", "mu^T W_K^T W_K nu"), ("query_corr", "mu^T W_Q^T W_Q nu")):
    register(NearInit.of(_key, _quantity))
register(NearInit.of("neuron_gram_change", "<w_j1, w_j2>", is_change=True))


@claim("thm31.loss_constant", "the training loss at T1 is still of constant size", "Thm 3.1", AT_T1)
def _loss_constant(tr, saves):
    """Lhat(T1) >= LOSS_CONSTANT."""
    loss_T1, loss_0 = float(tr.at("loss", tr.T1)), float(tr["loss"][0])
    return Outcome(dict(loss_T1=loss_T1, loss_0=loss_0, ratio_to_start=loss_T1 / loss_0),
                   at_least(loss_T1, LOSS_CONSTANT, "Lhat(T1)"),
                   f"Lhat(T1) >= log(2)/10 = {LOSS_CONSTANT:.4g}, a tenth of the loss of a zero-output "
                   "classifier (the theory starts near it and ends at 1/poly(m))")


@claim("lem42.one_target_rise_fall", "early in Phase 1 the one-target groups' (I2, I3) loss rises, then falls by T1",
       "Lemma 4.2, Fig. 1(b)", PHASE1)
def _one_target_rise_fall(tr, saves):
    """For I2 and I3: the peak on [0, T1] exceeds the start by more than RISE (relative), and the
    loss at T1 is below the peak by more than RISE."""
    groups = np.concatenate([tr["loss_groups"][saves], tr.at("loss_groups", tr.T1)[None]])
    times = np.append(tr.ts[saves], tr.T1)
    measured, changes = {}, []
    for k, name in ((1, "I2"), (2, "I3")):
        curve = groups[:, k]
        if np.isnan(curve).all():
            raise NotApplicable(f"group {name} is empty in this training set")
        peak = int(np.nanargmax(curve))
        rise, fall = curve[peak] / curve[0] - 1, 1 - curve[-1] / curve[peak]
        measured[name] = dict(start=curve[0], peak=curve[peak], t_peak=times[peak], at_T1=curve[-1],
                              rise=rise, fall=fall)
        changes += [rise, fall]
    return Outcome(measured, at_least(np.min(changes), RISE, "smallest rise or fall", strict=True),
                   f"for I2 and I3 the peak on [0, T1] exceeds the start by > {RISE:.0%} and the loss at T1 "
                   f"is below the peak by > {RISE:.0%}")


@claim("lem42.G3_rate_small", "early in Phase 1 the gradient of G(mu_3) is small", "Lemma 4.2", EARLY_PHASE1)
def _G3_rate_small(tr, saves):
    """|dG3/dt| <= SMALL_RATE max(|dG1/dt|, |dG2/dt|) on every saved interval of [0, EARLY T1]."""
    dG = np.abs(np.diff(tr["G_special"][saves], axis=0))
    ratio = dG[:, 2] / np.maximum(dG[:, 0], dG[:, 1])
    return Outcome(dict(window=[0.0, EARLY * tr.T1], max_ratio=np.max(ratio), first_interval_ratio=ratio[0]),
                   at_most(np.max(ratio), SMALL_RATE, "largest ratio"),
                   f"|dG3/dt| / max(|dG1/dt|, |dG2/dt|) <= {SMALL_RATE} on every saved interval of "
                   f"{EARLY_PHASE1.name}")


@claim("lem43.G_rates", "later in Phase 1 (1+C) max(dG1/dt, dG2/dt) <= -dG3/dt <= (1-C)(dG1/dt + dG2/dt)",
       "Lemma 4.3", LATE_PHASE1)
def _G_rates(tr, saves):
    """Both inequalities (C -> 0+) on at least FRACTION of the saved intervals of [LATE T1, T1]
    (finite differences of the saved G)."""
    dG = np.diff(tr["G_special"][saves], axis=0)
    lower, upper = np.maximum(dG[:, 0], dG[:, 1]), dG[:, 0] + dG[:, 1]
    left, right = -dG[:, 2] > lower, -dG[:, 2] < upper
    # The largest C for which both inequalities hold on every interval (negative: none does).
    C = np.min(np.minimum(-dG[:, 2] / lower - 1, 1 + dG[:, 2] / upper))
    both = _fraction(left & right)
    return Outcome(dict(window=[LATE * tr.T1, tr.T1], intervals=len(dG), fraction_both=both,
                        fraction_left=_fraction(left), fraction_right=_fraction(right), largest_C=C),
                   at_least(both, FRACTION, "fraction of intervals"),
                   f"both inequalities (C -> 0+) hold on >= {FRACTION:.0%} of the saved intervals "
                   f"of {LATE_PHASE1.name} (finite differences of the saved G)")


# --- Phase 2, (T1, t_end]: Theorem 3.2, Lemmas 4.4-4.7, Corollary 4.6 ------------------------------


@dataclasses.dataclass(frozen=True, kw_only=True)
class Monotone(AbstractClaim):
    """Theorem 3.2, Lemma 4.4: entry ``(i, j)`` of the 3 x 3 observable ``key`` moves in
    ``direction`` (+1 up, -1 down) on at least FRACTION of Phase 2's saved intervals."""

    key: str
    entry: tuple[int, int]
    direction: int

    #: The matrix between mu_i^T and mu_j of each observable this family reads.
    MATRICES = {"scores": ("s", "W_K^T W_Q"), "value_corr": ("v", "W_V^T W_V")}

    @classmethod
    def of(cls, key: str, i: int, j: int, direction: int) -> Monotone:
        """mu_i^T X mu_j (1-based, as in the paper) of observable ``key``."""
        letter, matrix = cls.MATRICES[key]
        verb = "increases" if direction > 0 else "decreases"
        return cls(id=f"thm32.{letter}{i}{j}_{'up' if direction > 0 else 'down'}",
                   text=f"in Phase 2 mu_{i}^T {matrix} mu_{j} {verb}", reference="Thm 3.2, Lemma 4.4",
                   window=PHASE2, key=key, entry=(i - 1, j - 1), direction=direction)

    def check(self, tr, saves):
        x = tr[self.key][(saves, *self.entry)]
        ok = np.diff(x) * self.direction > 0
        fails = np.flatnonzero(~ok)
        fraction = _fraction(ok)
        return Outcome(dict(fraction=fraction, intervals=len(ok), at_T1=x[0], at_end=x[-1],
                            first_failure_t=float(tr.ts[saves][fails[0]]) if fails.size else None),
                       at_least(fraction, FRACTION, "fraction of intervals"),
                       f"moves the claimed way on >= {FRACTION:.0%} of the saved intervals of {PHASE2.span(tr)}")


for _args in (("scores", 2, 1, +1), ("scores", 1, 2, +1), ("scores", 3, 1, -1), ("scores", 3, 2, -1),
              ("value_corr", 1, 2, +1), ("value_corr", 1, 3, -1), ("value_corr", 2, 3, -1)):
    register(Monotone.of(*_args))


@dataclasses.dataclass(frozen=True, kw_only=True)
class GSign(AbstractClaim):
    """Theorem 3.2, Corollary 4.6: a combination of G(mu_1), G(mu_2), G(mu_3) has ``sign`` at
    every save of Phase 2.  ``weights`` on (G1, G2, G3), or ``None`` for min(G1, G2)."""

    weights: tuple[float, float, float] | None
    sign: int

    def check(self, tr, saves):
        G = tr["G_special"][saves]
        value = np.minimum(G[:, 0], G[:, 1]) if self.weights is None else G @ np.asarray(self.weights, float)
        signed = self.sign * value
        worst = self.sign * np.min(signed)
        return Outcome(dict(fraction=_fraction(signed > 0), worst=worst, at_end=value[-1]),
                       positive(np.min(signed), np.max(np.abs(value)),
                                "worst value" if self.sign > 0 else "-(worst value)", "largest |value|"),
                       f"at every save of {PHASE2.span(tr)}")


for _id, _statement, _weights, _sign in (
        ("cor46.G1_G2_positive", "G(mu_1) > 0 and G(mu_2) > 0", None, +1),
        ("cor46.G123_positive", "G(mu_1) + G(mu_2) + G(mu_3) > 0", (1, 1, 1), +1),
        ("cor46.G13_negative", "G(mu_1) + G(mu_3) < 0", (1, 0, 1), -1),
        ("cor46.G23_negative", "G(mu_2) + G(mu_3) < 0", (0, 1, 1), -1)):
    register(GSign(id=_id, text=f"in Phase 2 {_statement}", reference="Thm 3.2, Cor. 4.6", window=PHASE2,
                   weights=_weights, sign=_sign))


@claim("fig1b.groups_fall", "in Phase 2 every group's loss (I1..I4) falls", "Fig. 1(b)", PHASE2,
       assumes=())  # seen in the paper's experiment, which meets none of the assumptions
def _groups_fall(tr, saves):
    """Each non-empty group's loss falls on at least FRACTION of Phase 2's saved intervals."""
    losses = tr["loss_groups"][saves]
    falls = {name: _fraction(np.diff(losses[:, k]) < 0) for k, name in enumerate(("I1", "I2", "I3", "I4"))
             if not np.isnan(losses[:, k]).all()}  # an empty group's loss is NaN
    return Outcome(dict(fraction_falling=falls), at_least(min(falls.values()), FRACTION, "smallest fraction"),
                   f"each non-empty group's loss falls on >= {FRACTION:.0%} of the saved intervals of "
                   f"{PHASE2.span(tr)}")


@claim("lem45.S2_S3_balanced", "in Phase 2 |S2 - S3| / min(S2, S3) stays small", "Lemma 4.5", PHASE2)
def _S2_S3_balanced(tr, saves):
    """|S2 - S3| / min(S2, S3) <= BALANCE_SMALL at every save of Phase 2."""
    b = tr["balance_S2_S3"][saves]
    return Outcome(dict(worst=b.max(), first_save_after_T1=b[0], at_end=b[-1]),
                   at_most(b.max(), BALANCE_SMALL, "largest ratio"),
                   f"at most {BALANCE_SMALL} at every save of {PHASE2.span(tr)}")


@claim("lem45.ratios_O1", "in Phase 2 sum_i g_i / (S2+S3+S4-S1) and sum_i g_i / (S1-S2) stay O(1)",
       "Lemma 4.5", PHASE2)
def _ratios_O1(tr, saves):
    """Both ratios in (0, BALANCE_O1] at every save of Phase 2; the margin is the distance to
    the nearer edge in units of BALANCE_O1.  A denominator is at most sum_i g_i in size, so
    |ratio| >= 1: the lower edge only asks that it keeps its sign."""
    r1, r2 = tr["balance_all_S234_S1"][saves], tr["balance_all_S1_S2"][saves]
    low = np.min([r1.min(), r2.min()])
    margin = (positive(low, BALANCE_O1, "smallest ratio", f"{BALANCE_O1:g}")
              & at_most(np.max([r1.max(), r2.max()]), BALANCE_O1, "largest ratio"))
    return Outcome(dict(worst_S234_S1=r1[np.argmax(np.abs(r1))], worst_S1_S2=r2[np.argmax(np.abs(r2))]), margin,
                   f"both ratios in (0, {BALANCE_O1}] at every save of {PHASE2.span(tr)} (a non-positive ratio "
                   "means the denominator changed sign)")


def _target_scores(tr, saves):
    """Lemma 4.7's target-target score (s12 + s21)/2 and target-common score (s31 + s32)/2."""
    s = tr["scores"][saves]
    return (s[:, 0, 1] + s[:, 1, 0]) / 2, (s[:, 2, 0] + s[:, 2, 1]) / 2


@claim("lem47.tt_rate_prop_loss", "the target-target score grows at a rate proportional to Lhat", "Lemma 4.7", PHASE2)
def _tt_rate_prop_loss(tr, saves):
    """(s12 + s21)/2 grows on every saved interval of Phase 2, and the log-log slope of its rate
    against Lhat is 1 +- EXPONENT_TOL.  The theory's constant, about sigma0^2 sqrt(m) / L, is
    only reported."""
    target_target, _ = _target_scores(tr, saves)
    rate = np.diff(target_target) / np.diff(tr.ts[saves])
    loss = tr["loss"][saves]
    loss_mid = (loss[1:] + loss[:-1]) / 2
    r = rate / loss_mid
    growing = rate > 0
    slope = (float(np.polyfit(np.log(loss_mid[growing]), np.log(rate[growing]), 1)[0])
             if growing.sum() >= 2 else float("nan"))
    # Growth is judged on rate / Lhat, which has the sign of the rate and, if the claim holds,
    # stays of one size while the rate itself falls with Lhat.
    margin = (positive(r.min(), np.abs(r).max(), "min rate/Lhat", "max |rate/Lhat|")
              & at_most(abs(slope - 1), EXPONENT_TOL, "|slope - 1|"))
    return Outcome(dict(rate_over_loss_median=np.median(r), p10=np.percentile(r, 10), p90=np.percentile(r, 90),
                        loglog_slope=slope, median_over_sigma0sq_sqrt_m=np.median(r) / (tr.sigma0**2 * math.sqrt(tr.m))),
                   margin,
                   f"target-target score (s12 + s21)/2 grows on every interval of {PHASE2.span(tr)} and the "
                   f"log-log slope of its rate against Lhat is 1 +- {EXPONENT_TOL}; the theory's constant, "
                   "about 1/L in units of sigma0^2 sqrt(m), is only reported")


@claim("lem47.tc_same_rate", "the target-common score falls at the same rate as the target-target score grows",
       "Lemma 4.7", PHASE2)
def _tc_same_rate(tr, saves):
    """The median over Phase 2's saved intervals of d[(s31 + s32)/2] / d[(s12 + s21)/2] lies in
    [-SAME_RATE, -1/SAME_RATE]."""
    target_target, target_common = _target_scores(tr, saves)
    ratio = np.diff(target_common) / np.diff(target_target)
    med = float(np.median(ratio))
    return Outcome(dict(median=med, p10=np.percentile(ratio, 10), p90=np.percentile(ratio, 90)),
                   at_least(-med, 1 / SAME_RATE, "-median") & at_most(-med, SAME_RATE, "-median"),
                   f"median over the saved intervals of {PHASE2.span(tr)} of d[(s31 + s32)/2] / d[(s12 + s21)/2] "
                   f"in [-{SAME_RATE:g}, -1/{SAME_RATE:g}]")


# --- End of training: Theorem 3.3 ---------------------------------------------------------------


def _special_C(tr) -> tuple[float, float, float, float]:
    """Theorem 3.3's C_12, C_21, C_31, C_32 at the end."""
    C = tr["C"][-1]
    return C[0, 1], C[1, 0], C[2, 0], C[2, 1]


@claim("thm33.C_signs", "C_12, C_21 > 0 and C_31, C_32 < 0", "Thm 3.3", END)
def _C_signs(tr, saves):
    """The signs of C_12, C_21, C_31, C_32 at t_end."""
    C12, C21, C31, C32 = _special_C(tr)
    signed = np.array([C12, C21, -C31, -C32])
    return Outcome(dict(C12=C12, C21=C21, C31=C31, C32=C32),
                   positive(signed.min(), np.abs(signed).max(), "min(C12, C21, -C31, -C32)", "max |C_ij|"),
                   f"signs at {END.span(tr)}; W_K^T W_Q - W_K(0)^T W_Q(0) = sum_ij C_ij mu_i mu_j^T")


@claim("thm33.C_irrelevant_small",
       "every C_ij involving an irrelevant word is an order smaller than C_12, C_21, C_31, C_32", "Thm 3.3", END)
def _C_irrelevant_small(tr, saves):
    """min(|C12|, |C21|, |C31|, |C32|) >= ORDER max |C_ij| over pairs with an irrelevant word."""
    smallest = float(np.min(np.abs(_special_C(tr))))
    irrelevant = float(tr["C_irrelevant_max"][-1])
    return Outcome(dict(smallest_special=smallest, C_irrelevant_max=irrelevant,
                        ratio=smallest / irrelevant if irrelevant > 0 else float("inf")),
                   at_least(smallest, ORDER * irrelevant, "smallest special |C_ij|"),
                   f"min(|C12|, |C21|, |C31|, |C32|) >= {ORDER:g} max |C_ij| over irrelevant pairs at {END.span(tr)}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class FinalLoss(AbstractClaim):
    """Theorem 3.3: a loss at t_end is at most 1/poly(m), read with the weakest polynomial, 1/m.
    ``key`` is the observable, ``as_`` its name among the measured numbers."""

    key: str
    as_: str

    def check(self, tr, saves):
        loss, bound = float(tr[self.key][-1]), 1 / tr.m
        return Outcome({self.as_: loss, "one_over_m": bound}, at_most(loss, bound, "loss"),
                       f"{self.as_} at {END.span(tr)} <= 1/m (the weakest poly(m))")


register(FinalLoss(id="thm33.train_loss", text="the training loss at the end is <= 1/poly(m)", reference="Thm 3.3",
                   window=END, key="loss", as_="train_loss"))
register(FinalLoss(id="thm33.test_loss", text="the generalization loss at the end is <= 1/poly(m)",
                   reference="Thm 3.3", window=END, key="test_loss", as_="test_loss"))


# --- The report --------------------------------------------------------------------------------


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
    assumptions = assess(tr.context)
    # A quantity that does not move (e.g. scores from W_K = W_Q = 0) makes rate ratios 0/0: NaN,
    # whose margin is NaN, so such a claim is reported as not holding.
    with np.errstate(invalid="ignore", divide="ignore"):
        return [c.row(tr, assumptions) for c in (CLAIMS.values() if claims is None else claims)]


def _plain(x, digits: int | None = None):
    """Numbers as plain Python floats, ints, bools and lists (for JSON), to ``digits``
    significant digits if given; non-finite floats stay as they are."""
    if isinstance(x, dict):
        return {k: _plain(v, digits) for k, v in x.items()}
    if isinstance(x, (list, tuple, np.ndarray)):
        return [_plain(v, digits) for v in np.asarray(x).tolist()] if np.ndim(x) else _plain(float(x), digits)
    if x is None or isinstance(x, str):
        return x
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    x = float(x)
    return x if digits is None or not math.isfinite(x) else float(f"{x:.{digits}g}")


def _short(v) -> str:
    v = _plain(v, 4)
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}={_short(x)}" for k, x in v.items()) + "}"
    return json.dumps(v)


def _margin(r: Row) -> str:
    return "" if math.isnan(r.margin) else f", margin {r.margin:+.3g}"


def _assumptions_met(assumptions: list[Assumption]) -> str:
    return "assumptions met: " + ", ".join(map(str, assumptions))


def format_table(rows: list[Row]) -> str:
    """The rows as a plain-text table: first whether the run meets the theory's assumptions,
    then per claim the verdict and margin, reference, claim, measured numbers, criterion (or
    why the claim is not applicable) and, where it does not hold, the assumptions it rests on."""
    seen = {a.name: a for r in rows for a in r.assumptions}
    lines = ["the theory's assumptions, met by this run?"] if seen else []
    lines += [f"  {a.name}: {a.answer} -- {a.detail}" for a in seen.values()]
    for i, r in enumerate(rows, 1):
        measured = ", ".join(f"{k}={_short(v)}" for k, v in r.measured.items()) or "-"
        lines.append(f"{i:>2}. [{r.verdict.upper()}{_margin(r)}] {r.reference}: {r.claim}  ({r.id})\n"
                     f"    measured: {measured}\n    {'why' if r.verdict == NA else 'criterion'}: {r.criterion}")
        if r.verdict == FAILS and r.assumptions:
            lines.append(f"    {_assumptions_met(r.assumptions)}")
    counts = {v: sum(r.verdict == v for r in rows) for v in (HOLDS, FAILS, NA)}
    lines.append(", ".join(f"{n} {v}" for v, n in counts.items()))
    return "\n".join(lines)


def markdown_table(rows: list[Row]) -> str:
    """The rows as a Markdown table (for the docs)."""
    out = ["| # | reference | claim | measured | margin | verdict |", "|---|---|---|---|---|---|"]
    for i, r in enumerate(rows, 1):
        measured = ", ".join(f"{k}={_short(v)}" for k, v in r.measured.items()) or "-"
        cells = (r.reference, r.claim, measured, "-" if math.isnan(r.margin) else f"{r.margin:+.3g}")
        out.append(f"| {i} | " + " | ".join(c.replace("|", "\\|") for c in cells) + f" | **{r.verdict}** |")
    return "\n".join(out)


def report(result: FlowResult, out_dir: str | Path | None = None, *, context: RunContext | None = None,
           echo: bool = True) -> list[Row]:
    """Check every claim (:func:`check_claims` with ``context``), print the table (``echo``) and,
    given ``out_dir``, write ``report.json`` there: a list of the rows as dicts (``id``,
    ``claim``, ``reference``, ``window``, ``verdict``, ``margin``, ``measured``, ``criterion``,
    ``assumptions``: a list of ``{name, met, why, detail}``)."""
    rows = check_claims(result, context)
    if echo:
        print(format_table(rows))
    if out_dir is not None:
        path = Path(out_dir) / "report.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps([_plain(dataclasses.asdict(r), 4) for r in rows], indent=1) + "\n")
    return rows


# --- Over a sweep --------------------------------------------------------------------------------

SWEEP_REPORT = "sweep_report.json"


@dataclasses.dataclass(frozen=True)
class SweepReport:
    """How often each claim holds over the points of a sweep, grouped by grid values: tables with
    one row per claim (paper order) and one column per group.

    ``holds[c, g]`` counts the points of group ``g`` on which claim ``claims[c]`` holds and
    ``applicable[c, g]`` those on which it holds or does not hold; :attr:`fraction` is their
    ratio, the heat map to draw.  ``met[a, g]`` counts the points of group ``g`` that meet
    assumption ``assumptions[a]``.  ``groups[g]`` are the values of the grid keys ``by`` that
    its points share (the keys ``pooled`` vary inside it), ``points[g]`` how many it has;
    ``skipped`` lists the points not checked (not complete) with their status."""

    by: tuple[str, ...]
    pooled: tuple[str, ...]
    groups: tuple[dict, ...]
    claims: tuple[str, ...]
    texts: tuple[str, ...]
    holds: np.ndarray
    applicable: np.ndarray
    points: np.ndarray
    assumptions: tuple[str, ...]
    met: np.ndarray
    skipped: tuple[str, ...]

    @property
    def fraction(self) -> np.ndarray:
        """Points holding / points applicable; NaN where the claim applies to none."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.applicable > 0, self.holds / self.applicable, np.nan)

    @property
    def labels(self) -> list[str]:
        """One label per group, e.g. ``m=16``."""
        return [", ".join(f"{k}={v}" for k, v in g.items()) or "all points" for g in self.groups]

    def to_dict(self) -> dict:
        """Plain lists and dicts, for JSON (a fraction of no applicable point is ``None``)."""
        fraction = [[None if math.isnan(x) else x for x in row] for row in _plain(self.fraction, 4)]
        return {
            "format": "flowsim-sweep-report", "by": list(self.by), "pooled": list(self.pooled),
            "groups": [{"label": label, "values": values, "points": int(n),
                        "assumptions_met": {a: int(k) for a, k in zip(self.assumptions, met)}}
                       for label, values, n, met in zip(self.labels, self.groups, self.points, self.met.T)],
            "claims": [{"id": i, "claim": text, "holds": h.tolist(), "applicable": a.tolist(), "fraction": f}
                       for i, text, h, a, f in zip(self.claims, self.texts, self.holds, self.applicable, fraction)],
            "skipped": list(self.skipped),
        }

    def write(self, out_dir: str | Path) -> Path:
        """Write :meth:`to_dict` to ``out_dir/sweep_report.json``; returns the path."""
        path = Path(out_dir) / SWEEP_REPORT
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1) + "\n")
        return path


def sweep_report(path: str | Path, by: Iterable[str] | None = None) -> SweepReport:
    """Every claim checked on every complete point of the sweep directory ``path`` (written by
    :func:`flowsim.sweep`), counted per group of points that share the values of the grid keys
    ``by`` (default: every grid key but ``seed``, so that seeds are pooled).

    Verdicts are recomputed from the points' result directories, each with the context of its
    own configuration: the verdicts in ``sweep.json`` may come from an older flowsim."""
    from .config import ConfigError
    from .results import load
    from .sweeps import FAILURE, INDEX_JSON

    path = Path(path)
    try:
        index = json.loads((path / INDEX_JSON).read_text())
        grid, entries = list(index["definition"]["grid"]), [(e["name"], e["path"]) for e in index["points"]]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"{path} is not a flowsim sweep directory (cannot read {INDEX_JSON}: {e})") from None
    by = tuple(k for k in grid if k != "seed") if by is None else tuple(by)
    unknown = [k for k in by if k not in grid]
    if unknown:
        raise ConfigError(f"--by: {unknown[0]!r} is not a grid key of the sweep in {path}; "
                          f"its grid keys: {', '.join(grid)}")
    groups: dict[str, tuple[dict, list]] = {}  # by JSON of the grid values: the values, the points' rows
    skipped = []
    for name, where in entries:
        point = path / where
        status = "pending"
        if (point / "run.json").exists():
            try:
                run = load(point)
                status = "failed" if (point / FAILURE).exists() else run.status
            except ConfigError:
                status = "unreadable"
        if status != "complete":
            skipped.append(f"{name} ({status})")
            continue
        values = _plain({k: getattr(run.config, k) for k in by})
        context = RunContext.from_config(run.config)
        checked = (check_claims(run.result, context), assess(context))
        groups.setdefault(json.dumps(values), (values, []))[1].append(checked)
    shape = (len(CLAIMS), len(groups))
    holds, applicable, met = np.zeros(shape, int), np.zeros(shape, int), np.zeros((len(ASSUMPTIONS), len(groups)), int)
    for g, (_, points) in enumerate(groups.values()):
        for rows, assumptions in points:
            holds[:, g] += [r.verdict == HOLDS for r in rows]
            applicable[:, g] += [r.verdict != NA for r in rows]
            met[:, g] += [assumptions[a].met is True for a in ASSUMPTIONS]
    return SweepReport(by=by, pooled=tuple(k for k in grid if k not in by),
                       groups=tuple(v for v, _ in groups.values()), claims=tuple(CLAIMS),
                       texts=tuple(c.text for c in CLAIMS.values()), holds=holds, applicable=applicable,
                       points=np.array([len(p) for _, p in groups.values()], int), assumptions=tuple(ASSUMPTIONS),
                       met=met, skipped=tuple(skipped))


def format_sweep_table(rep: SweepReport) -> str:
    """The hold rates as a plain-text table: one row per claim id, one column per group, each
    cell "fraction (holding/applicable)"; then the points and assumptions met per group, the
    points skipped and what each claim id says."""
    cells = [[f"{h / a:.2f} ({h}/{a})" if a else "- (0/0)" for h, a in zip(hs, As)]
             for hs, As in zip(rep.holds, rep.applicable)]
    counts = [[f"{k}/{n}" for k, n in zip(met, rep.points)] for met in rep.met]
    names = [*rep.claims, "points checked", *(f"{a} met" for a in rep.assumptions)]
    body = [*cells, [str(n) for n in rep.points], *counts]
    first = max(map(len, names)) + 2
    widths = [max(len(label), *(len(row[g]) for row in body)) + 2 for g, label in enumerate(rep.labels)]
    pooled = f"; pooled over {', '.join(rep.pooled)}" if rep.pooled else ""
    lines = [f"claims holding by {', '.join(rep.by) or 'sweep'}: points where it holds / points where it applies{pooled}",
             ("claim".ljust(first) + "".join(label.ljust(w) for label, w in zip(rep.labels, widths))).rstrip()]
    lines += [name.ljust(first) + "".join(c.ljust(w) for c, w in zip(row, widths)).rstrip()
              for name, row in zip(names, body)]
    if rep.skipped:
        lines.append(f"not checked (not complete): {', '.join(rep.skipped)}")
    lines += ["", "claims:"] + [f"  {i}: {text} ({CLAIMS[i].reference})" for i, text in zip(rep.claims, rep.texts)]
    return "\n".join(lines)
