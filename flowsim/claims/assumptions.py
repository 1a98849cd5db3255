"""The theory's assumptions (Condition 1, Assumption 2.3, the width regime), judged on how a run was set up."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

__all__ = ["ASSUMPTIONS", "DATA_MODES", "LOG_FACTOR_MIN", "THEORY", "Assumption", "RunContext", "assess",
           "assumption23", "condition1", "width"]

LOG_FACTOR_MIN = 2.0  # Condition 1's "up to log factors": init constants within max(ln m, this) of 1


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

