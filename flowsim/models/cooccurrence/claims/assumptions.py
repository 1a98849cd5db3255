"""The theory's assumptions (Condition 1's start and sizes, Assumption 2.3), judged on the run itself: its start, its training set and its sizes, measured."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ..flow import FlowResult

__all__ = ["ASSUMPTIONS", "THEORY", "Assumption", "RunContext", "assess", "assumption23", "condition1_sizes",
           "condition1_start", "start_bounds"]


@dataclasses.dataclass(frozen=True)
class RunContext:
    """What a check needs beyond the run itself: the failure probability ``delta`` of the
    high-probability bounds the start is held against (default :data:`flowsim.models.cooccurrence.init.DELTA`, the
    default of every run).  Everything else is measured on the run (its start, training set and
    sizes, ``FlowResult.start_facts``), so a result from :func:`flowsim.integrate` and the same
    run read from its directory give the same report."""

    delta: float | None = None

    @classmethod
    def from_config(cls, config) -> RunContext:
        """The context of a :class:`~flowsim.RunConfig` (as recorded in ``run.json``)."""
        return cls(delta=config.delta)


@dataclasses.dataclass(frozen=True)
class Assumption:
    """Whether a run meets one assumption of the theory: ``met`` is True, False or None (the
    run does not say); ``why`` in a few words (shown on rows), ``detail`` with the numbers."""

    name: str
    met: bool | None
    why: str
    detail: str

    @property
    def answer(self) -> str:
        return {True: "yes", False: "no", None: "unknown"}[self.met]

    def __str__(self) -> str:
        return f"{self.name} {self.answer}" + ("" if self.met else f" ({self.why})")


def _eta(m: float, count: float, delta: float) -> float:
    """Lemma H.2's relative deviation ``sqrt(4/m log(2 count/delta)) + 4/m log(2 count/delta)``."""
    x = math.log(2 * count / delta)
    return math.sqrt(4 / m * x) + 4 / m * x


def start_bounds(facts: dict, delta: float) -> dict[str, float]:
    """Appendix D's bounds on a start of these sizes and scales, with failure probability ``delta``:

    - ``F``: Lemma D.8, ``|F(0)(X_i)| <= 2 sigma0 sigma1 sqrt(2 L m1 m log(2 L n / delta))``;
    - ``softmax``: Corollary D.2 made explicit: Lemma D.1 bounds every initial score
      ``|<W_K mu, W_Q nu>| <= sigma0^2 m eta_d`` (``eta_d`` = Lemma H.2's deviation over d words), so each
      logit is within ``eps = sigma0^2 m eta_d / sqrt(m)`` of 0 and ``|p - 1/L| <= (e^(2 eps) - 1) / L``;
    - ``G``: Lemma D.7 made explicit: ``G(0)(mu) ~ N(0, sigma1^2 m1 |W_V mu|^2)`` given W_V, with
      ``|W_V mu|^2 <= sigma0^2 m (1 + eta_d)`` (Lemma D.3), so a union bound over the d words gives
      ``|G(0)(mu)| <= sqrt(2 log(2 d / delta)) sigma0 sigma1 sqrt(m m1 (1 + eta_d))``."""
    from ..init import d8_bound

    n, L, d, m, m1, s0, s1 = (facts[k] for k in ("n", "L", "d", "m", "m1", "sigma0", "sigma1"))
    eta = _eta(m, d, delta)
    eps = s0**2 * m * eta / math.sqrt(m)
    return {"F": d8_bound(s0, s1, n=n, L=L, m=m, m1=m1, delta=delta),
            "softmax": math.expm1(2 * eps) / L,
            "G": math.sqrt(2 * math.log(2 * d / delta)) * s0 * s1 * math.sqrt(m * m1 * (1 + eta))}


def condition1_start(result: FlowResult, ctx: RunContext) -> Assumption:
    """Condition 1 as the proofs use it, judged on the start itself: every initial output
    ``|F(0)(X_i)| <= 0.01`` (Lemma D.8, what "by Condition 1" buys in Lemmas E.4, E.16, E.19 and
    Proposition E.21), the initial softmax within Corollary D.2's bound of 1/L, and every
    ``|G(0)(mu)|`` within Lemma D.7's, all measured (F(0) and G(0) from the first save)."""
    from ..init import D8_BOUND, DELTA

    facts = result.start_facts
    delta = DELTA if ctx.delta is None else ctx.delta
    bounds = start_bounds(facts, delta)
    F = float(np.asarray(result.observables["F_abs_max"])[0])
    G = float(np.max(np.abs(np.asarray(result.observables["G"])[0])))
    soft = facts["softmax_dev"]
    checks = {"max_i |F(0)(X_i)|": (F, D8_BOUND), "max |p(0) - 1/L|": (soft, bounds["softmax"]),
              "max |G(0)(mu)|": (G, bounds["G"])}
    failed = [k for k, (x, b) in checks.items() if not x <= b]
    c0, c1 = facts["sigma0"] * math.sqrt(facts["L"] * facts["m"]), facts["sigma1"] * math.sqrt(facts["m1"])
    detail = (f"start: max_i |F(0)(X_i)| = {F:.3g} vs 0.01 (Lemma D.8; its bound 2 sigma0 sigma1 "
              f"sqrt(2 L m1 m log(2Ln/delta)) = {bounds['F']:.3g}), max |p(0) - 1/L| = {soft:.3g} vs "
              f"{bounds['softmax']:.3g} (Cor. D.2), max |G(0)| = {G:.3g} vs {bounds['G']:.3g} (Lemma D.7); "
              f"delta = {delta:g}, c0 = sigma0 sqrt(L m) = {c0:.3g}, c1 = sigma1 sqrt(m1) = {c1:.3g}")
    why = "start within Appendix D's bounds" if not failed else \
        "; ".join(f"{k} = {checks[k][0]:.3g} > {checks[k][1]:.3g}" for k in failed)
    return Assumption("Condition 1 (start)", not failed, why, detail)


def assumption23(result: FlowResult, ctx: RunContext) -> Assumption:
    """Assumption 2.3 (spec 1), judged on the training set: group sizes exactly n/2, n/6, n/6, n/6
    and every irrelevant word used at most once in the whole set."""
    facts = result.start_facts
    n, counts, uses = facts["n"], facts["group_counts"], facts["irrelevant_max_uses"]
    balanced = 2 * counts[0] == n and all(6 * c == n for c in counts[1:])
    problems = ([] if balanced else [f"group sizes {'/'.join(map(str, counts))}, not n/2, n/6, n/6, n/6"]) + \
               ([] if uses <= 1 else [f"an irrelevant word used {uses} times"])
    detail = (f"training set: groups {'/'.join(map(str, counts))} of n = {n}, every irrelevant word used at "
              f"most {uses} time{'s' if uses != 1 else ''}")
    return Assumption("Assumption 2.3", not problems, "; ".join(problems) or "balanced, irrelevant words distinct",
                      detail)


def condition1_sizes(result: FlowResult, ctx: RunContext) -> Assumption:
    """Condition 1's sizes ``m >~ max(m1, L^2)``, ``n >~ L^2`` (spec 4), read without constants or
    logs: m >= m1, m >= L^2 and n >= L^2, each reported."""
    f = result.start_facts
    parts = [("m", f["m"], "m1", f["m1"]), ("m", f["m"], "L^2", f["L"] ** 2), ("n", f["n"], "L^2", f["L"] ** 2)]
    said = [f"{x} = {a} {'>=' if a >= b else '<'} {y} = {b}" for x, a, y, b in parts]
    failed = [t for t, (_, a, _, b) in zip(said, parts) if a < b]
    return Assumption("Condition 1 (sizes)", not failed, "; ".join(failed) or "m >= max(m1, L^2), n >= L^2",
                      "; ".join(said))


#: The theory's assumptions, by name: each judged on a run (its start facts and first save) and its context.
ASSUMPTIONS: dict[str, Callable[[FlowResult, RunContext], Assumption]] = {
    "Condition 1 (start)": condition1_start, "Condition 1 (sizes)": condition1_sizes, "Assumption 2.3": assumption23}
THEORY = tuple(ASSUMPTIONS)  # what Theorems 3.1-3.3 and the lemmas assume


def assess(result: FlowResult, context: RunContext) -> dict[str, Assumption]:
    """Every assumption of :data:`ASSUMPTIONS`, judged on ``result`` and ``context``."""
    return {name: judge(result, context) for name, judge in ASSUMPTIONS.items()}
