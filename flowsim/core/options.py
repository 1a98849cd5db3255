"""Options of a flow or a descent as small frozen objects, each default defined once; checked when made (no JAX here)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from .checks import POSITIVE, integer, one_of
from .messages import shown
from .names import ENGINE_CHOICES, GRIDS, PRECISIONS, SOLVERS

#: Default (rtol, atol) of the step-size controller for each precision.
TOLERANCES = {64: (1e-8, 1e-10), 32: (1e-5, 1e-7)}
#: The smallest rtol a float32 flow can meet: a few units of float32's machine epsilon (1.2e-7).
FLOAT32_RTOL = 1e-6


class _Options:
    """Nested frozen dataclasses whose leaf fields are the public keywords: ``make(rtol=...)``
    puts each keyword in the group that owns it, ``flat()`` lists them all again."""

    @classmethod
    def make(cls, values: Mapping[str, Any] = (), **keywords):
        """An instance from flat keywords (``rtol=1e-6``, ``saves=11``, ...), the rest defaults."""
        given = dict(values, **keywords)
        built = cls._take(given)
        if given:
            raise TypeError(f"unknown option {next(iter(given))!r}; allowed: {', '.join(cls.keywords())}")
        return built

    @classmethod
    def _take(cls, given: dict):
        kwargs = {}
        for f in dataclasses.fields(cls):
            group = _group(f)
            if group is not None:
                kwargs[f.name] = group._take(given)
            elif f.name in given:
                kwargs[f.name] = given.pop(f.name)
        return cls(**kwargs)

    @classmethod
    def keywords(cls) -> list[str]:
        return [k for f in dataclasses.fields(cls) for k in (_group(f).keywords() if _group(f) else [f.name])]

    def flat(self) -> dict[str, Any]:
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out |= value.flat() if _group(f) else {f.name: value}
        return out


def _group(f: dataclasses.Field):
    default = f.default_factory if f.default_factory is not dataclasses.MISSING else None
    return default if isinstance(default, type) and issubclass(default, _Options) else None


@dataclasses.dataclass(frozen=True)
class SolverOptions(_Options):
    """diffrax's adaptive solve: the Runge-Kutta ``solver``, the PID controller's ``rtol`` and
    ``atol`` (``None``: the precision's defaults, :data:`TOLERANCES`), and ``max_steps``, a bound
    on the total number of solver steps."""

    solver: str = "tsit5"
    rtol: float | None = None
    atol: float | None = None
    max_steps: int = 100_000

    def __post_init__(self):
        object.__setattr__(self, "solver", one_of(SOLVERS)(self.solver, "solver"))
        for name in ("rtol", "atol"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, POSITIVE(getattr(self, name), name))
        object.__setattr__(self, "max_steps", integer(1)(self.max_steps, "max_steps"))

    def for_precision(self, precision: int) -> SolverOptions:
        """The same options with unset tolerances set to ``precision``'s defaults; refuses an
        rtol that float32 cannot meet."""
        rtol, atol = TOLERANCES[precision]
        out = dataclasses.replace(self, rtol=rtol if self.rtol is None else self.rtol,
                                  atol=atol if self.atol is None else self.atol)
        if precision == 32 and out.rtol < FLOAT32_RTOL:
            raise ValueError(f"rtol={out.rtol:g} cannot be met in float32 (machine epsilon 1.2e-7); "
                             f"use rtol >= {FLOAT32_RTOL:g}, or precision 64")
        return out


@dataclasses.dataclass(frozen=True)
class SaveOptions(_Options):
    """Where observables are recorded: ``saves`` times on a ``grid`` (:func:`save_times`, a log
    grid from ``t_first``) or the explicit times ``ts``; a flow integrates ``chunk`` saved times
    per solve and checkpoint."""

    saves: int = 201
    grid: str = "log"
    t_first: float | None = None
    ts: tuple[float, ...] | None = None
    chunk: int = 25

    def __post_init__(self):
        object.__setattr__(self, "saves", integer(2)(self.saves, "saves"))
        object.__setattr__(self, "grid", one_of(GRIDS)(self.grid, "grid"))
        object.__setattr__(self, "chunk", integer(1)(self.chunk, "chunk"))
        if self.t_first is not None:
            object.__setattr__(self, "t_first", POSITIVE(self.t_first, "t_first"))
        if self.ts is not None:
            object.__setattr__(self, "ts", tuple(_check_ts(self.ts).tolist()))

    def times(self, t_end: float, m: float | None = None) -> np.ndarray:
        """The saved times of a run to ``t_end`` at attention width ``m``; explicit ``ts`` must
        end at ``t_end``."""
        if self.ts is None:
            return save_times(t_end, self.saves, self.grid, self.t_first, m=m)
        ts = np.asarray(self.ts)
        if ts[-1] != t_end:
            raise ValueError(f"ts must end at t_end={t_end:g} (the run integrates to its last saved time), "
                             f"got ts[-1]={ts[-1]:g}")
        return ts


@dataclasses.dataclass(frozen=True)
class MarkerOptions(_Options):
    """The constants of the phase markers (:mod:`flowsim.models.cooccurrence.events`), each stated and settable.

    The paper writes its phase boundaries with unspecified constants ("a sufficiently large
    constant C_T1", "R < O(1/m1)"); these are ours:

    - ``phase1_end``, T1 of Definition E.2: ``min(t', C_T1 / (sigma1^2 m m1))``, where t' is the
      first time one of its near-initialization bounds is left:
      (1) ``max_{j, mu in mu_1..mu_3} |w_j^T W_V mu (t) - w_j^T W_V mu (0)| <= R``, ``R = R_neuron / m1``;
      (2) the same over the irrelevant words ``<= R_irrelevant (R / n + R / sqrt(m))``;
      (3) every score ``|mu^T W_K^T W_Q nu (t) - (0)| <= R_scores / (m sqrt(m))``;
      (4) every key and query self-correlation ``|mu^T W_K^T W_K nu (t) - (0)| <= R_KQ sigma0^2 sqrt(m)``
      (likewise W_Q);
    - ``rates_ordered``, T0.5 of Theorem E.19: the first time
      ``-dG(mu_3)/dt >= (1 + C_rates) max(dG(mu_1)/dt, dG(mu_2)/dt)``;
    - ``one_target_margin``, T' of Corollary E.20: the first time
      ``min over I2, I3 of y_i F(X_i) >= C_margin``;
    - ``scores_leave_band``: the scores mu_i^T W_K^T W_Q mu_j (i, j <= 3) leave a band of relative
      half-width ``band`` around their initial values.

    The defaults were read off the theory regime (Condition 1, n = 18, L = 4, m = m1 from 64 to
    10^8, docs/theory.md): there every sample is correct, T0.5 and T' are passed by at most
    5 / (sigma1^2 m m1), so ``C_T1 = 10`` puts T1 after them as the paper needs ("C_T1 sufficiently
    large"); up to that cap the four quantities reach at most 8.3, 45, 0.07 and 0.06 of their
    bounds' units, so the bounds (``R_*``) hold to the cap with a factor of 2 or more to spare and
    T1 is the cap, as Theorem E.26 says.  Whether those constants stay bounded as m grows is
    what the order claims of Theorem E.26 and E.28 test on a sweep.  Theorem 3.2's G1 + G3 < 0 and
    G2 + G3 < 0 need a later T1 where m c1^4 >~ 1: they set in 14 (m = 10^6) to 49 (m = 10^12)
    units 1/(sigma1^2 m m1) after t = 0, and hold from T1 on with ``C_T1 = 100``, to whose cap the
    bounds still hold (docs/reproduction.md, the atlas' second looks).
    """

    C_T1: float = 10.0
    R_neuron: float = 20.0
    R_irrelevant: float = 100.0
    R_scores: float = 1.0
    R_KQ: float = 1.0
    C_rates: float = 0.1
    C_margin: float = 0.1
    band: float = 0.1

    def __post_init__(self):
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, POSITIVE(getattr(self, f.name), f.name))


@dataclasses.dataclass(frozen=True)
class _RunOptions(_Options):
    """What a flow and a descent share: the save grid, the floating-point ``precision`` (64 or
    32), the constants of the phase markers (:class:`MarkerOptions`), and ``n_test``, the size
    of the i.i.d. test set drawn when none is given."""

    method: ClassVar[str]
    save: SaveOptions = dataclasses.field(default_factory=SaveOptions)
    markers: MarkerOptions = dataclasses.field(default_factory=MarkerOptions)
    precision: int = 64
    n_test: int = 2000

    def __post_init__(self):
        object.__setattr__(self, "precision", one_of(PRECISIONS)(self.precision, "precision"))
        object.__setattr__(self, "n_test", integer(1)(self.n_test, "n_test"))

    def flat(self) -> dict[str, Any]:
        return {"method": self.method} | super().flat()

    @classmethod
    def updated(cls, options: _RunOptions | None, **keywords):
        """``options`` (default: all defaults) with the flat ``keywords`` in place of its values."""
        given = {} if options is None else {k: v for k, v in options.flat().items() if k != "method"}
        return cls.make(given, **keywords)


@dataclasses.dataclass(frozen=True)
class FlowOptions(_RunOptions):
    """Everything :func:`flowsim.integrate` takes besides the problem: the horizon ``t_end``, the
    solver and save options, and the ``engine`` (``auto`` or a name of ``flowsim.models.cooccurrence.engines.ENGINES``)."""

    method: ClassVar[str] = "flow"
    t_end: float = 300.0
    solver: SolverOptions = dataclasses.field(default_factory=SolverOptions)
    engine: str = ENGINE_CHOICES[0]

    def __post_init__(self):
        super().__post_init__()
        object.__setattr__(self, "t_end", POSITIVE(self.t_end, "t_end"))
        object.__setattr__(self, "solver", self.solver.for_precision(self.precision))

    def times(self, m: float | None = None) -> np.ndarray:
        """The saved times at attention width ``m`` (see :func:`save_times`)."""
        return self.save.times(self.t_end, m)


@dataclasses.dataclass(frozen=True)
class DescentOptions(_RunOptions):
    """Everything :func:`flowsim.gradient_descent` takes besides the problem: the learning rate
    ``lr``, the number of ``steps``, ``save_every`` (save every so many steps instead of on the
    save grid) and ``t_end``, the flow time the descent approximates (spec 3: step ``k`` is at
    time ``k lr``).

    The steps are ``steps`` if given, else ``round(t_end / lr)`` (at least 1): the flow's horizon
    whatever the learning rate, so the defaults (``t_end`` 300, ``lr`` 0.01) are the paper's
    30000 steps and ``lr=0.02`` takes 15000, from Python as from ``flowsim integrate --method
    gd``.  Once made, ``t_end`` is ``steps x lr``, the horizon the steps reach."""

    method: ClassVar[str] = "gd"
    engine: ClassVar[str] = "params"  # descent steps the four matrices themselves
    lr: float = 0.01
    steps: int | None = None
    save_every: int | None = None
    t_end: float = FlowOptions.t_end

    def __post_init__(self):
        super().__post_init__()
        object.__setattr__(self, "lr", POSITIVE(self.lr, "lr"))
        if self.steps is None:
            object.__setattr__(self, "steps", max(1, round(POSITIVE(self.t_end, "t_end") / self.lr)))
        object.__setattr__(self, "steps", integer(1)(self.steps, "steps"))
        object.__setattr__(self, "t_end", self.steps * self.lr)
        if self.save_every is not None:
            object.__setattr__(self, "save_every", integer(1)(self.save_every, "save_every"))


def save_times(t_end: float, saves: int = SaveOptions.saves, grid: str = SaveOptions.grid,
               t_first: float | None = None, *, m: float | None = None) -> np.ndarray:
    """Saved times: ``0``, then ``saves - 1`` points up to ``t_end``, log-spaced from ``t_first``
    or evenly spaced.  The default ``t_first`` is ``min(1e-3, t_end / saves, 1 / m)``: Phase 1
    ends near 5-50/m (Theorem 3.1's T1 = O~(1/m)), so a run at attention width ``m`` saves from
    a fifth to a fiftieth of it on, and a wide run's Phase 1 is on its grid."""
    POSITIVE(t_end, "t_end")
    integer(2)(saves, "saves")
    if one_of(GRIDS)(grid, "grid") == "linear":
        return np.linspace(0.0, t_end, int(saves))
    if t_first is None:
        t_first = min(1e-3, t_end / saves, 1 / m if m else np.inf)
    t_first = float(t_first)
    if not 0 < t_first < t_end:
        raise ValueError(f"t_first must be in (0, t_end={t_end}), got {t_first}")
    if saves == 2:  # geomspace would give t_first alone
        return np.array([0.0, t_end])
    return np.concatenate([[0.0], np.geomspace(t_first, t_end, int(saves) - 1)])


def _check_ts(ts) -> np.ndarray:
    if isinstance(ts, (str, bytes)) or np.asarray(ts).dtype.kind not in "iuf":
        raise ValueError(f"ts must be a 1-d array of at least 2 finite times, got {shown(ts)}")
    ts = np.asarray(ts, dtype=float)
    if ts.ndim != 1 or ts.size < 2 or not np.all(np.isfinite(ts)):
        raise ValueError("ts must be a 1-d array of at least 2 finite times")
    if ts[0] != 0 or np.any(np.diff(ts) <= 0):
        raise ValueError("ts must start at 0 and increase strictly")
    return ts
