"""The paper's claims as its appendix states them (spec 8), in paper order: the windows between phase markers, the thresholds, and each check.

Every statement of Theorems 3.1-3.3, the lemmas of Section 4 and the appendix statements they
abbreviate (E.4, E.6, E.16, E.19-E.21, E.23, E.26-E.28, Definition F.1, F.5-F.8, F.13, F.16) is
defined, and so registered in :data:`~flowsim.models.cooccurrence.claims.CLAIMS`, here.  A statement is split into
what one run can decide (signs, orderings, inequalities with the paper's own constants, exact
rates at every save of its window: an :class:`~flowsim.models.cooccurrence.claims.base.AbstractClaim`) and its
statements of order (Theta, O, Omega in m, n or F: an :class:`~flowsim.models.cooccurrence.claims.base.OrderClaim`,
each with its quantity made dimensionless by the theory's own expression, judged on a sweep by
a fitted exponent).  Windows open and close at the markers of :mod:`flowsim.models.cooccurrence.events`: T1 is
Definition E.2's (``phase1_end``), T0.5 Theorem E.19's (``rates_ordered``), T' Corollary E.20's
(``one_target_margin``); Phase 2 is (T1, T2) with T2 past the run's end.  Rates are exact (the
``*_rate`` observables, Jacobian-vector products along the flow), not finite differences.

Adding a claim is one definition: a function decorated with
:func:`~flowsim.models.cooccurrence.claims.base.claim`, an :class:`~flowsim.models.cooccurrence.claims.base.OrderClaim` passed to
:func:`~flowsim.models.cooccurrence.claims.base.register`, or a family class with an instance per member.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from .base import (AbstractClaim, Margin, NotApplicable, OrderClaim, Outcome, Window, at_most, claim, positive,
                   register)

__all__ = ["AT_T1", "BALANCE_SMALL", "END", "EXPONENT_TOL", "FIGURE_PHASE1", "FIGURE_PHASE2", "LEMMA43", "PHASE1",
           "PHASE2", "RISE", "START", "GSign", "Moves"]

# Thresholds where a statement names a constant without a value; every row states the one it used.
RISE = 0.01  # Fig. 1(b): a relative rise (and fall) of a group loss by more than this counts
BALANCE_SMALL = 0.1  # Lemma F.5's "small constant C << 1"
EXPONENT_TOL = 0.2  # a law in time ("proportional to Lhat", "1/(kappa t)"): fitted log-log slope within this of 1

# --- Windows: where on the trajectory the claims speak -------------------------------------------

START = Window("0", "0")
AT_T1 = Window("phase1_end", "phase1_end")
PHASE1 = Window("0", "phase1_end", min_saves=2)
LEMMA43 = Window("rates_ordered", "phase1_end")
PHASE2 = Window("phase1_end", "t_end", open_start=True, min_saves=3)
END = Window("t_end", "t_end")
# Figure 1 of the paper's experiment: its phase boundary drawn where every sample is first correct
# (Theorem 3.1's second item; the paper does not say where it drew it, and the experiment is
# outside Condition 1, where Definition E.2's T1 has no reason to fall on the figure's boundary).
FIGURE_PHASE1 = Window("0", "all_correct", min_saves=2)
FIGURE_PHASE2 = Window("all_correct", "t_end", open_start=True, min_saves=3)


def _order(id: str, text: str, reference: str, window: Window, relation: str, quantity: str, measure,
           over: tuple[str, ...] = ("m",), assumes=None):
    kwargs = {} if assumes is None else {"assumes": assumes}
    register(OrderClaim(id=id, text=text, reference=reference, window=window, relation=relation, quantity=quantity,
                        measure=measure, over=over, **kwargs))


def _rate_scale(tr) -> float:
    """``(sigma0^2 + sigma1^2) m``: Lemma 4.1's per-neuron rate of the target words at t = 0."""
    return (tr.sigma0**2 + tr.sigma1**2) * tr.m


def _first(tr, key: str) -> np.ndarray:
    return tr[key][0]


# --- t = 0: Lemmas 4.1 = E.4, 4.2 = E.16, E.6, and Theorem E.19's first step --------------------


@claim("lem41.rates_positive", "at t = 0 every neuron's value of mu_1 and mu_2 grows: "
       "d(a_j w_j^T W_V mu)/dt = Theta((sigma0^2 + sigma1^2) m) > 0 for every j, mu in {mu_1, mu_2}",
       "Lemma 4.1 = E.4", START)
def _rates_positive(tr, saves):
    """The sign part of Lemma E.4: min over neurons j and mu in {mu_1, mu_2} of
    d(a_j w_j^T W_V mu)/dt at t = 0 is positive.  A statement about every neuron: a width-free
    start, which holds none, cannot decide it (their sum, dG/dt, is lem41.rate_size's)."""
    low, high = tr.facts["neuron_rate_target"]
    if math.isnan(low):
        raise NotApplicable("a statement about every neuron, and this width-free start holds none "
                            "(draw the matrices, start = matrices, to decide it)")
    return Outcome(dict(min_rate=low, max_rate=high, min_per_scale=low / _rate_scale(tr),
                        max_per_scale=high / _rate_scale(tr)),
                   positive(low, max(abs(low), abs(high)), "min_j rate", "max_j |rate|"),
                   "min over neurons j and mu in {mu_1, mu_2} of d(a_j w_j^T W_V mu)/dt > 0 at t = 0 "
                   "(per_scale: in units of (sigma0^2 + sigma1^2) m)")


_order("lem41.rate_size", "at t = 0 dG(mu_1)/dt, dG(mu_2)/dt = Theta((sigma0^2 + sigma1^2) m m1)", "Lemma 4.1 = E.4",
       START, "Theta", "min(dG1/dt, dG2/dt)(0) / ((sigma0^2 + sigma1^2) m m1)",
       lambda tr, s: min(tr.facts["G_rate"][:2]) / (_rate_scale(tr) * tr.m1))


def _F0(tr) -> float:
    """F = max_i |F(X_i)| at t = 0 (Lemmas D.8, E.16, Proposition E.21)."""
    return float(_first(tr, "F_abs_max"))


def _e16_bound(tr) -> float:
    """Lemma E.16's expression ``sigma1^2 sqrt(m m1) + sigma0^2 sqrt(m L) + (sigma0^2 + sigma1^2) m F``."""
    s0, s1, m, m1 = tr.sigma0, tr.sigma1, tr.m, tr.m1
    return s1**2 * math.sqrt(m * m1) + s0**2 * math.sqrt(m * tr.L) + (s0**2 + s1**2) * m * _F0(tr)


_order("lem42.common_rate", "at t = 0 abs(d(a_j w_j^T W_V mu_3)/dt) = O~(sigma1^2 sqrt(m m1) + sigma0^2 sqrt(m L) + "
       "(sigma0^2 + sigma1^2) m F), F = max_i |F_i(0)|: small against Lemma 4.1's rate only when F is small",
       "Lemma 4.2 = E.16", START, "O",
       "|dG(mu_3)/dt|(0) / m1 (the neurons' mean rate, at most their largest) / E.16's expression",
       lambda tr, s: abs(tr.facts["G_rate"][2]) / tr.m1 / _e16_bound(tr), over=("m", "F"))


def _e6_bound(tr) -> float:
    """Lemma E.6's expression ``(sigma0^2 + sigma1^2) m / n + sigma0^2 sqrt(m L)``."""
    return _rate_scale(tr) / tr.n + tr.sigma0**2 * math.sqrt(tr.m * tr.L)


_order("lemE6.irrelevant_rate", "at t = 0 an irrelevant word's d(a_j w_j^T W_V mu)/dt = "
       "O((sigma0^2 + sigma1^2) m / n + sigma0^2 sqrt(m L))", "Lemma E.6", START, "O",
       "max over irrelevant words of |dG(mu)/dt|(0) / m1 / E.6's expression",
       lambda tr, s: float(np.max(np.abs(tr.facts["G_rate"][3:]), initial=0.0)) / tr.m1 / _e6_bound(tr),
       over=("m", "n"))


@claim("thmE19.dF_positive", "at t = 0 dF(X_i)/dt > 0 for every sample of I1, I2 and I3 (so the one-target "
       "groups' loss first rises)", "Thm E.19 (proof), Fig. 1(b)", START)
def _dF_positive(tr, saves):
    """min over I1, I2, I3 of dF(X_i)/dt at t = 0 is positive (empty groups skipped)."""
    low = np.asarray(tr.facts["dF_dt_min"], float)[:3]
    high = np.asarray(tr.facts["dF_dt_max"], float)[:3]
    if np.isnan(low).all():
        raise NotApplicable("the groups I1, I2, I3 are empty")
    worst = float(np.nanmin(low))
    return Outcome(dict(min_I1=low[0], min_I2=low[1], min_I3=low[2]),
                   positive(worst, float(np.nanmax(np.abs(np.concatenate([low, high])))),
                            "min dF_i/dt over I1, I2, I3", "max |dF_i/dt|"),
                   "dF(X_i)/dt > 0 at t = 0 for every i in I1, I2, I3")


# --- Phase 1, [0, T1]: Theorem 3.1 = E.28, E.26, Lemma 4.3 = E.19, E.20, E.21, E.23 ---------------


@claim("thm31.G_signs", "at T1 G(mu_1) > 0, G(mu_2) > 0 and G(mu_3) < 0", "Thm 3.1 = E.28", AT_T1)
def _G_signs(tr, saves):
    """The signs of G(mu_1), G(mu_2), G(mu_3) at T1 (interpolated between saves); their size
    Omega(1) is an order claim (thm31.G_size)."""
    G = tr.at("G_special", tr.T1)
    signed = np.array([G[0], G[1], -G[2]])
    return Outcome(dict(T1=tr.T1, G1=G[0], G2=G[1], G3=G[2]),
                   positive(signed.min(), np.abs(signed).max(), "min(G1, G2, -G3)", "max |G|"),
                   f"G1, G2 > 0 > G3 at {AT_T1.span(tr)}")


_order("thm31.G_size", "at T1 G(mu_1), G(mu_2), -G(mu_3) >= Omega(1)", "Thm 3.1 = E.28", AT_T1, "Omega",
       "min(G1, G2, -G3)(T1)", lambda tr, s: float(np.min(tr.at("G_special", tr.T1) * [1, 1, -1])))


@claim("thm31.all_correct", "at T1 every training sample is classified correctly: y_i F(X_i) > 0",
       "Thm 3.1 = E.28", AT_T1)
def _all_correct(tr, saves):
    """min_i y_i F_i at T1 (interpolated) is positive; its size Omega(1) is thm31.margin_size."""
    margin = float(tr.at("min_margin", tr.T1))
    return Outcome(dict(T1=tr.T1, min_margin=margin, T_correct=tr.result.events.get("all_correct")),
                   positive(margin, float(np.max(np.abs(tr["min_margin"]))), "min_i y_i F_i(T1)",
                            "max_t |min_i y_i F_i|"),
                   f"min_i y_i F(X_i) > 0 at {AT_T1.span(tr)}")


_order("thm31.margin_size", "at T1 y_i F(X_i) = Omega(1) for every i", "Thm 3.1 = E.28", AT_T1, "Omega",
       "min_i y_i F_i(T1)", lambda tr, s: float(tr.at("min_margin", tr.T1)))
_order("thm31.loss_size", "the training loss at T1 is still Theta(1)", "Thm 3.1 = E.28", AT_T1, "Theta",
       "Lhat(T1)", lambda tr, s: float(tr.at("loss", tr.T1)))
_order("thm31.T1_order", "T1 = O~(1/m)", "Thm 3.1 = E.28, Def. E.2", AT_T1, "O", "m T1", lambda tr, s: tr.m * tr.T1)
_order("thm31.T_correct_order", "every sample is correct by a time O~(1/m)", "Thm 3.1 = E.28", AT_T1, "O",
       "m T_correct (all_correct)", lambda tr, s: tr.m * tr.when("all_correct"))

#: Theorem E.28's near-initialization bounds on [0, T1]: observable, the theory's size, its expression.
NEAR_INIT = {
    "neuron_corr_change": ("<w_j1, w_j2>", "1/m", lambda tr: 1 / tr.m),
    "value_corr_change": ("mu^T W_V^T W_V nu", "1/m", lambda tr: 1 / tr.m),
    "score_change": ("mu^T W_K^T W_Q nu", "m^-3/2 (1/L + 1/sqrt(m))",
                     lambda tr: tr.m**-1.5 * (1 / tr.L + 1 / math.sqrt(tr.m))),
    "KQ_change": ("mu^T W_K^T W_K nu and mu^T W_Q^T W_Q nu", "1/m^2", lambda tr: tr.m**-2.0),
}
for _key, (_what, _size, _expression) in NEAR_INIT.items():
    _order(f"thm31.near_init.{_key}", f"on [0, T1] every {_what} stays within O~({_size}) of its initial value",
           "Thm 3.1 = E.28", PHASE1, "O", f"max change on [0, T1] / ({_size})",
           lambda tr, s, key=_key, expression=_expression: float(np.max(tr[key][s])) / expression(tr))


@claim("thmE26.T1_is_cap", "Definition E.2's near-initialization bounds hold up to C_T1 / (sigma1^2 m m1), so "
       "T1 is that cap (the bounds' constants ours: flowsim.core.options.MarkerOptions)", "Thm E.26, Def. E.2", AT_T1)
def _T1_is_cap(tr, saves):
    """T1 equals the cap C_T1 / (sigma1^2 m m1) (to the root finder's tolerance), i.e. no bound
    of Definition E.2 was left before it; otherwise the criterion names the bound left first."""
    options = tr.result.options.markers
    cap = options.C_T1 / (tr.sigma1**2 * tr.m * tr.m1)
    i = saves[0]
    units = {"(1) neurons": (tr.result.observables["neuron_value_change"][i, 0], options.R_neuron / tr.m1),
             "(2) irrelevant": (tr.result.observables["neuron_value_change"][i, 1],
                                options.R_irrelevant * (options.R_neuron / tr.m1) * (1 / tr.n + 1 / math.sqrt(tr.m))),
             "(3) scores": (tr.result.observables["score_change"][i], options.R_scores / tr.m**1.5),
             "(4) key/query": (tr.result.observables["KQ_change"][i], options.R_KQ * tr.sigma0**2 * math.sqrt(tr.m))}
    ratios = {k: float(v / b) for k, (v, b) in units.items()}
    return Outcome(dict(T1=tr.T1, cap=cap, **{f"{k}/bound": r for k, r in ratios.items()}),
                   at_most(abs(tr.T1 / cap - 1), 1e-6, "|T1/cap - 1|"),
                   f"T1 = C_T1 / (sigma1^2 m m1) with C_T1 = {options.C_T1:g}; each bound's use at the save "
                   "nearest T1 (NaN: no neurons in the state)")


def _unit(tr, key: int) -> float:
    """Definition E.2's unit of bound (1) (``1/m1``) or (2) (``(1/m1)(1/n + 1/sqrt(m))``)."""
    return 1 / tr.m1 if key == 0 else (1 / tr.m1) * (1 / tr.n + 1 / math.sqrt(tr.m))


for _k, _name in ((0, "neuron_values"), (1, "irrelevant_values")):
    _order(f"thmE26.{_name}", ("on [0, T1] every neuron value w_j^T W_V mu, mu in mu_1..mu_3, moves by at most "
                               "R = O(1/m1)") if _k == 0 else
           "on [0, T1] an irrelevant word's neuron values move by at most O(R/n + R/sqrt(m))",
           "Thm E.26, Def. E.2", PHASE1, "O",
           "max change on [0, T1] / " + ("(1/m1)" if _k == 0 else "((1/m1)(1/n + 1/sqrt(m)))"),
           lambda tr, s, k=_k: float(np.max(tr["neuron_value_change"][s, k])) / _unit(tr, k))


def _rates_C(dG: np.ndarray) -> np.ndarray:
    """The largest C with ``(1 + C) max(dG1, dG2) <= -dG3 <= (1 - C)(dG1 + dG2)`` at each save
    (``-inf`` where dG1 or dG2 is not positive: the lemmas also say they are)."""
    lower, total, x = np.maximum(dG[:, 0], dG[:, 1]), dG[:, 0] + dG[:, 1], -dG[:, 2]
    ok = np.minimum(dG[:, 0], dG[:, 1]) > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(ok, np.minimum(x / lower - 1, 1 - x / total), -np.inf)


@claim("lem43.rates", "on [T0.5, T1], (1+C) max(dG1/dt, dG2/dt) <= -dG3/dt <= (1-C)(dG1/dt + dG2/dt) for a "
       "constant 0 < C < 1, with dG1/dt, dG2/dt > 0", "Lemma 4.3 = E.19", LEMMA43)
def _lemma43(tr, saves):
    """The largest C for which both inequalities hold at every save of [T0.5, T1] (exact rates)
    is positive.  Theorem E.19 says there exist T0.5 and a constant C: the marker's C_rates only
    places T0.5 (the first time the left inequality holds with it), and holding C_rates itself
    all the way to T1 is a stronger statement (in the theory regime the largest C drifts from
    C_rates down to 0.06-0.1 through Phase 1, at every width)."""
    largest = _rates_C(tr["G_rate"][saves])
    worst = float(largest.min())
    return Outcome(dict(T0_5=tr.when("rates_ordered"), T1=tr.T1, saves=len(saves), largest_C=worst),
                   Margin(worst, "largest C", strict=True),
                   f"both inequalities at every save of {LEMMA43.span(tr)} with one C > 0 (exact rates)")


_order("lem43.rate_size", "on [T0.5, T1] dG1/dt, dG2/dt >= Omega((sigma0^2 + sigma1^2) m m1)", "Lemma 4.3 = E.19",
       LEMMA43, "Omega", "min over [T0.5, T1] of min(dG1/dt, dG2/dt) / ((sigma0^2 + sigma1^2) m m1)",
       lambda tr, s: float(np.min(tr["G_rate"][s][:, :2])) / (_rate_scale(tr) * tr.m1))
_order("lem43.T_half_order", "T0.5 = O(1/m)", "Thm E.19", LEMMA43, "O", "m T0.5",
       lambda tr, s: tr.m * tr.when("rates_ordered"))


@claim("corE20.T_prime", "T' (the first time min over I2, I3 of y_i F_i >= C) comes by T1", "Cor. E.20, Thm E.27",
       AT_T1)
def _T_prime(tr, saves):
    """T' <= T1, with C = C_margin of the one_target_margin marker: Theorem E.27 uses it for
    y_i F_i(T1) >= Omega(1) on I2, I3."""
    C = tr.result.options.markers.C_margin
    t = tr.result.events.get("one_target_margin")
    if t is None:
        return Outcome(dict(T_prime=None, T1=tr.T1), Margin(-math.inf, "T' not reached"),
                       f"T' (C = {C:g}) is not reached by t_end, so it does not come by T1")
    return Outcome(dict(T_prime=t, T1=tr.T1), Margin((tr.T1 - t) / tr.T1, "(T1 - T') / T1"),
                   f"T' <= T1 with C = {C:g}")


_order("corE20.T_prime_order", "T' = O(1/m)", "Cor. E.20", AT_T1, "O", "m T'",
       lambda tr, s: tr.m * tr.when("one_target_margin"))
_order("propE21.S2_S3", "on [0, T1] |S2 - S3| / n <= O(G0(mu_1) + G0(mu_2) + F)", "Prop. E.21", PHASE1, "O",
       "max over [0, T1] of |S2 - S3| / n / (|G0(mu_1)| + |G0(mu_2)| + F)",
       lambda tr, s: float(np.max(np.abs(tr["S"][s][:, 1] - tr["S"][s][:, 2]))) / tr.n
       / (abs(_first(tr, "G")[0]) + abs(_first(tr, "G")[1]) + _F0(tr)), over=("m", "F"))
_order("lemE23.score_rate", "on [0, T1] |d s(nu, mu)/dt| <= (1/sqrt(m)) (N_mu + N_nu)/n O~(1/L + 1/sqrt(m)) for "
       "every pair of words", "Lemma E.23", PHASE1, "O",
       "max over [0, T1] and word pairs of |ds/dt| / ((N_mu + N_nu)/n) / ((1/sqrt(m))(1/L + 1/sqrt(m)))",
       lambda tr, s: float(np.max(tr["score_rate_per_count"][s])) * math.sqrt(tr.m)
       / (1 / tr.L + 1 / math.sqrt(tr.m)))
_order("thmE27.u_norm", "at T1 ||u||^2 = sum_{j1,j2} <a_j1 w_j1, a_j2 w_j2> = Theta(sigma1^2 m m1)", "Thm E.27",
       AT_T1, "Theta", "||u(T1)||^2 / (sigma1^2 m m1)",
       lambda tr, s: float(tr.at("u_norm2", tr.T1)) / (tr.sigma1**2 * tr.m * tr.m1))


@claim("fig1b.one_target_rise_fall", "in Phase 1 the one-target groups' (I2, I3) loss first rises, then falls",
       "Fig. 1(b), Lemmas 4.2-4.3", FIGURE_PHASE1, assumes=())  # seen in the paper's experiment, which meets none
def _one_target_rise_fall(tr, saves):
    """For I2 and I3: the peak on [0, T_correct] (the figure's Phase 1) exceeds the start by more
    than RISE (relative), and the loss at T_correct is below the peak by more than RISE."""
    end = tr.when("all_correct")
    groups = np.concatenate([tr["loss_groups"][saves], tr.at("loss_groups", end)[None]])
    times = np.append(tr.ts[saves], end)
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
    return Outcome(measured, Margin((np.min(changes) - RISE) / RISE, f"(smallest rise or fall - {RISE:g}) / {RISE:g}",
                                    strict=True),
                   f"for I2 and I3 the peak on {FIGURE_PHASE1.span(tr)} exceeds the start by > {RISE:.0%} and the "
                   f"loss at its end is below the peak by > {RISE:.0%} (the figure's boundary: every sample correct)")


# --- Phase 2, (T1, T2): Theorem 3.2, Definition F.1, Lemmas 4.4-4.7 = F.5-F.16 -------------------


@dataclasses.dataclass(frozen=True, kw_only=True)
class Moves(AbstractClaim):
    """Entry ``(i, j)`` of a 3 x 3 observable moves in ``direction`` (+1 up, -1 down) on all of
    Phase 2: its exact rate (``rate``, the matching ``*_rate`` observable) has that sign at
    every save."""

    rate: str
    entry: tuple[int, int]
    direction: int

    #: The matrix between mu_i^T and mu_j of each rate this family reads, and its letter.
    MATRICES = {"scores_rate": ("s", "W_K^T W_Q"), "value_corr_rate": ("v", "W_V^T W_V")}

    @classmethod
    def of(cls, rate: str, i: int, j: int, direction: int, reference: str, prefix: str = "thm32") -> Moves:
        """mu_i^T X mu_j (1-based, as in the paper) moving along ``rate``."""
        letter, matrix = cls.MATRICES[rate]
        verb = "increases" if direction > 0 else "decreases"
        return cls(id=f"{prefix}.{letter}{i}{j}_{'up' if direction > 0 else 'down'}",
                   text=f"in Phase 2 mu_{i}^T {matrix} mu_{j} {verb}", reference=reference, window=PHASE2,
                   rate=rate, entry=(i - 1, j - 1), direction=direction)

    def check(self, tr, saves):
        r = tr[self.rate][(saves, *self.entry)] * self.direction
        fails = np.flatnonzero(r <= 0)
        return Outcome(dict(saves=len(r), smallest=r.min() * self.direction, at_end=r[-1] * self.direction,
                            first_failure_t=float(tr.ts[saves][fails[0]]) if fails.size else None),
                       positive(r.min(), np.abs(r).max(), "min signed rate", "max |rate|"),
                       f"the exact rate has the claimed sign at every save of {PHASE2.span(tr)}")


for _args in (("scores_rate", 2, 1, +1), ("scores_rate", 1, 2, +1), ("scores_rate", 3, 1, -1),
              ("scores_rate", 3, 2, -1)):
    register(Moves.of(*_args, reference="Thm 3.2, Lemma 4.7 = F.16"))
for _args in (("value_corr_rate", 1, 2, +1), ("value_corr_rate", 1, 3, -1), ("value_corr_rate", 2, 3, -1)):
    register(Moves.of(*_args, reference="Thm 3.2, Cor. 4.6 = F.13"))
for _args in (("value_corr_rate", 1, 1, +1), ("value_corr_rate", 2, 2, +1)):
    register(Moves.of(*_args, reference="Cor. F.13", prefix="corF13"))


@dataclasses.dataclass(frozen=True, kw_only=True)
class GSign(AbstractClaim):
    """Theorem 3.2: a combination of G(mu_1), G(mu_2), G(mu_3) has ``sign`` at every save of
    Phase 2.  ``weights`` on (G1, G2, G3), or ``None`` for min(G1, G2)."""

    weights: tuple[float, float, float] | None
    sign: int

    def values(self, tr, saves) -> np.ndarray:
        G = tr["G_special"][saves]
        return np.minimum(G[:, 0], G[:, 1]) if self.weights is None else G @ np.asarray(self.weights, float)

    def check(self, tr, saves):
        value = self.values(tr, saves)
        signed = self.sign * value
        return Outcome(dict(worst=self.sign * np.min(signed), at_end=value[-1]),
                       positive(np.min(signed), np.max(np.abs(value)),
                                "worst value" if self.sign > 0 else "-(worst value)", "largest |value|"),
                       f"at every save of {PHASE2.span(tr)}")


_G_ITEMS = (("G1_G2_positive", "G(mu_1) > 0 and G(mu_2) > 0", None, +1),
            ("G123_positive", "G(mu_1) + G(mu_2) + G(mu_3) > 0", (1, 1, 1), +1),
            ("G13_negative", "G(mu_1) + G(mu_3) < 0", (1, 0, 1), -1),
            ("G23_negative", "G(mu_2) + G(mu_3) < 0", (0, 1, 1), -1))
for _id, _statement, _weights, _sign in _G_ITEMS:
    register(GSign(id=f"thm32.{_id}", text=f"in Phase 2 {_statement}", reference="Thm 3.2", window=PHASE2,
                   weights=_weights, sign=_sign))
_order("thm32.G_size", "in Phase 2 G1, G2, G1 + G2 + G3 >= Omega(1) and G1 + G3, G2 + G3 <= -Omega(1)", "Thm 3.2",
       PHASE2, "Omega", "min over Phase 2 of min(G1, G2, G1 + G2 + G3, -(G1 + G3), -(G2 + G3))",
       lambda tr, s: float(min(np.min(g.sign * g.values(tr, s))
                               for g in (GSign(id="", text="", reference="", window=PHASE2, weights=w, sign=sg)
                                         for _, _, w, sg in _G_ITEMS))))


@claim("defF1.gradient_order", "in Phase 2 S4 <= min(S2, S3) <= max(S2, S3) <= S1 <= S2 + S3 + S4 and "
       "1/2 <= S2/S3 <= 2", "Def. F.1, Lemma F.6, Thm F.20", PHASE2)
def _gradient_order(tr, saves):
    """Definition F.1's ordering of the group sums S_k = sum over I_k of g(y_i F_i) at every save
    of Phase 2 (Theorem F.20 shows it holds there); the margin is the smallest gap relative to
    sum_i g_i."""
    S = tr["S"][saves]
    total = S.sum(axis=1)
    gaps = np.stack([np.minimum(S[:, 1], S[:, 2]) - S[:, 3], S[:, 0] - np.maximum(S[:, 1], S[:, 2]),
                     S[:, 1] + S[:, 2] + S[:, 3] - S[:, 0], 2 * S[:, 2] - S[:, 1], 2 * S[:, 1] - S[:, 2]], axis=1)
    worst = gaps / total[:, None]
    return Outcome(dict(smallest_gap=float(worst.min()), which=int(np.argmin(worst.min(axis=0)))),
                   Margin(float(worst.min()), "smallest gap / sum_i g_i"),
                   f"the ordering and the S2/S3 range at every save of {PHASE2.span(tr)} (which: 0 = S4 <= min, "
                   "1 = max <= S1, 2 = S1 <= S2+S3+S4, 3-4 = S2/S3 in [1/2, 2])")


@claim("lem44.S2_S3_balanced", "in Phase 2 |S2 - S3| / min(S2, S3) <= C for a small constant C << 1",
       "Lemma 4.4 = F.5", PHASE2)
def _S2_S3_balanced(tr, saves):
    """|S2 - S3| / min(S2, S3) <= BALANCE_SMALL at every save of Phase 2."""
    b = tr["balance_S2_S3"][saves]
    return Outcome(dict(worst=b.max(), first_save_after_T1=b[0], at_end=b[-1]),
                   at_most(b.max(), BALANCE_SMALL, "largest ratio"),
                   f"at most C = {BALANCE_SMALL} at every save of {PHASE2.span(tr)}")


_RATIOS = ("balance_all_S234_S1", "balance_all_S1_S2", "balance_all_S1_S3")


@claim("lem45.ratios_positive", "in Phase 2 the gaps S2 + S3 + S4 - S1, S1 - S2 and S1 - S3 stay positive "
       "(so sum_i g_i over each is a positive O(1))", "Lemma 4.5 = F.6", PHASE2)
def _ratios_positive(tr, saves):
    """Each of sum_i g_i / (S2+S3+S4-S1), / (S1-S2), / (S1-S3) is positive at every save of
    Phase 2 (a denominator that changes sign makes its ratio change sign); their size O(1) is
    lem45.ratios_size."""
    worst = min(float(tr[k][saves].min()) for k in _RATIOS)
    largest = max(float(np.abs(tr[k][saves]).max()) for k in _RATIOS)
    return Outcome({k: float(tr[k][saves].min()) for k in _RATIOS},
                   positive(worst, largest, "smallest ratio", "largest |ratio|"),
                   f"every ratio positive at every save of {PHASE2.span(tr)}")


_order("lem45.ratios_size", "in Phase 2 sum_i g_i / (S2+S3+S4-S1), sum_i g_i / (S1-S2), sum_i g_i / (S1-S3) = O(1)",
       "Lemma 4.5 = F.6", PHASE2, "O", "max over Phase 2 of the three ratios",
       lambda tr, s: max(float(tr[k][s].max()) for k in _RATIOS))


@claim("lem45.rates", "in Phase 2 (1+C) max(dG1/dt, dG2/dt) <= -dG3/dt <= (1-C)(dG1/dt + dG2/dt) for a "
       "constant C > 0", "Lemma 4.5 = F.6", PHASE2)
def _lemma45_rates(tr, saves):
    """The largest C for which both inequalities hold at every save of Phase 2 (exact rates) is
    positive."""
    largest = _rates_C(tr["G_rate"][saves])
    worst = float(largest.min())
    return Outcome(dict(largest_C=worst, at_T1=float(largest[0]), at_end=float(largest[-1])),
                   Margin(worst, "largest C", strict=True),
                   f"both inequalities at every save of {PHASE2.span(tr)} with one C > 0 (exact rates)")


def _both_ways(*ratios: np.ndarray) -> float:
    """The largest of ``max(r, 1/r)`` over the ratios: bounded exactly when each is Theta(1)
    (infinite where a ratio is not positive)."""
    r = np.concatenate(ratios)
    return float(np.max(np.where(r > 0, np.maximum(r, 1 / np.where(r > 0, r, 1.0)), np.inf)))


_order("lemF6.G_rate_ratio", "in Phase 2 (dG1/dt) / (dG2/dt) = Theta(1)", "Lemma F.6", PHASE2, "O",
       "max over Phase 2 of max(r, 1/r), r = (dG1/dt)/(dG2/dt)",
       lambda tr, s: _both_ways(tr["G_rate"][s][:, 0] / tr["G_rate"][s][:, 1]))
_order("corF7.G_ratios", "in Phase 2 G1/G2, G1/(-G3), G2/(-G3) = Theta(1)", "Cor. F.7", PHASE2, "O",
       "max over Phase 2 of max(r, 1/r) over r = G1/G2, G1/(-G3), G2/(-G3)",
       lambda tr, s: (lambda G: _both_ways(G[:, 0] / G[:, 1], -G[:, 0] / G[:, 2], -G[:, 1] / G[:, 2]))(
           tr["G_special"][s]))


def _target_rates(tr, saves):
    """Lemma 4.7's rates: of the target-target scores (s12 + s21)/2 and the target-common scores (s31 + s32)/2."""
    r = tr["scores_rate"][saves]
    return (r[:, 0, 1] + r[:, 1, 0]) / 2, (r[:, 2, 0] + r[:, 2, 1]) / 2


def _lemma47_scale(tr, saves) -> np.ndarray:
    """Lemma 4.7's expression ``(1/sqrt(m)) Lhat(t) sigma0^2 m / L`` at the saves."""
    return tr["loss"][saves] * tr.sigma0**2 * math.sqrt(tr.m) / tr.L


def _loglog_slope(x, y) -> float:
    keep = (x > 0) & (y > 0)
    return float(np.polyfit(np.log(x[keep]), np.log(y[keep]), 1)[0]) if keep.sum() >= 3 else math.nan


@claim("lem47.rates_follow_loss", "in Phase 2 the target-target score grows, and the target-common score falls, at a "
       "rate proportional to Lhat(t)", "Lemma 4.7 = F.16", PHASE2)
def _rates_follow_loss(tr, saves):
    """Both rates (exact) have their sign at every save of Phase 2, and the log-log slope of
    each |rate| against Lhat over Phase 2 is 1 +- EXPONENT_TOL (Theta~ in t: the same constant
    all along); their size in m is lem47.rate_size."""
    tt, tc = _target_rates(tr, saves)
    loss = tr["loss"][saves]
    slopes = [_loglog_slope(loss, tt), _loglog_slope(loss, -tc)]
    signs = positive(min(tt.min(), (-tc).min()), max(np.abs(tt).max(), np.abs(tc).max()), "min signed rate",
                     "max |rate|")
    margin = signs & at_most(max(abs(s - 1) for s in slopes), EXPONENT_TOL, "max |slope - 1|")
    return Outcome(dict(slope_tt=slopes[0], slope_tc=slopes[1], tt_over_scale=float(np.median(tt / _lemma47_scale(tr, saves))),
                        tc_over_scale=float(np.median(tc / _lemma47_scale(tr, saves)))), margin,
                   f"rates of sign +, - at every save of {PHASE2.span(tr)} and log-log slopes against Lhat in "
                   f"1 +- {EXPONENT_TOL} (over_scale: median rate / ((1/sqrt(m)) Lhat sigma0^2 m / L))")


_order("lem47.rate_size", "in Phase 2 d/dt of the target-target and target-common scores = +-(1/sqrt(m)) "
       "Theta~(Lhat sigma0^2 m) / L", "Lemma 4.7 = F.16", PHASE2, "Theta",
       "median over Phase 2 of min(|tt rate|, |tc rate|) / ((1/sqrt(m)) Lhat sigma0^2 m / L)",
       lambda tr, s: float(np.median(np.minimum(*map(np.abs, _target_rates(tr, s))) / _lemma47_scale(tr, s))))


def _loss_law(tr, saves):
    """F.8's ``kappa(t) = (1/Lhat(t) - 1/Lhat(T1)) / (sigma1^2 m m1 (t - T1))`` at the saves."""
    t, loss = tr.ts[saves], tr["loss"][saves]
    return t - tr.T1, 1 / loss - 1 / float(tr.at("loss", tr.T1))


@claim("thmF8.loss_law", "in Phase 2 Lhat(t) = 1 / (Theta(sigma1^2 m m1)(t - T1) + 1/Lhat(T1))", "Thm F.8",
       PHASE2)
def _loss_law_slope(tr, saves):
    """``1/Lhat(t) - 1/Lhat(T1)`` grows linearly in ``t - T1``: its log-log slope over Phase 2 is
    1 +- EXPONENT_TOL (a constant kappa all along); kappa's size in m is thmF8.kappa."""
    dt, inv = _loss_law(tr, saves)
    slope = _loglog_slope(dt, inv)
    kappa = inv / (tr.sigma1**2 * tr.m * tr.m1 * dt)
    return Outcome(dict(slope=slope, kappa_median=float(np.median(kappa)), kappa_min=float(kappa.min()),
                        kappa_max=float(kappa.max())),
                   at_most(abs(slope - 1), EXPONENT_TOL, "|slope - 1|"),
                   f"log-log slope of 1/Lhat - 1/Lhat(T1) against t - T1 over {PHASE2.span(tr)} in 1 +- "
                   f"{EXPONENT_TOL} (kappa: in units of sigma1^2 m m1)")


_order("thmF8.kappa", "the Phase 2 loss law's constant kappa = Theta(1)", "Thm F.8", PHASE2, "Theta",
       "median over Phase 2 of kappa = (1/Lhat - 1/Lhat(T1)) / (sigma1^2 m m1 (t - T1))",
       lambda tr, s: float(np.median((lambda dt, inv: inv / (tr.sigma1**2 * tr.m * tr.m1 * dt))(*_loss_law(tr, s)))))


@claim("fig1b.groups_fall", "in Phase 2 every group's loss (I1..I4) falls", "Fig. 1(b)", FIGURE_PHASE2,
       assumes=())  # seen in the paper's experiment, which meets none of the assumptions
def _groups_fall(tr, saves):
    """Each non-empty group's loss falls on every saved interval of the figure's Phase 2 (after
    every sample is correct)."""
    losses = tr["loss_groups"][saves]
    steps = {name: np.diff(losses[:, k]) for k, name in enumerate(("I1", "I2", "I3", "I4"))
             if not np.isnan(losses[:, k]).all()}  # an empty group's loss is NaN
    worst = max(float((d / np.abs(d).max()).max()) for d in steps.values())
    return Outcome(dict(intervals_rising={k: int((d >= 0).sum()) for k, d in steps.items()}),
                   Margin(-worst, "-(largest step / largest |step|) over the groups", strict=True),
                   f"each non-empty group's loss falls on every saved interval of {FIGURE_PHASE2.span(tr)}")


# --- The end of training: Theorem 3.3 ------------------------------------------------------------


def _special_C(tr) -> np.ndarray:
    """Theorem 3.3's C_12, C_21, C_31, C_32 at the end."""
    C = tr["C"][-1]
    return np.array([C[0, 1], C[1, 0], C[2, 0], C[2, 1]])


@claim("thm33.C_signs", "at the end W_K^T W_Q - W_K(0)^T W_Q(0) = sum_ij C_ij mu_i mu_j^T with C_12, C_21 > 0 "
       "and C_31, C_32 < 0", "Thm 3.3", END)
def _C_signs(tr, saves):
    """The signs of C_12, C_21, C_31, C_32 at t_end."""
    C12, C21, C31, C32 = _special_C(tr)
    signed = np.array([C12, C21, -C31, -C32])
    return Outcome(dict(C12=C12, C21=C21, C31=C31, C32=C32),
                   positive(signed.min(), np.abs(signed).max(), "min(C12, C21, -C31, -C32)", "max |C_ij|"),
                   f"signs at {END.span(tr)}")


def _C_scale(tr, irrelevant: bool = False) -> float:
    """Theorem 3.3's sizes: ``sigma0^2 m / (sqrt(m) L sigma1^2 m m1) + sigma0^2 sqrt(m) / (sqrt(m) sigma1^2 m m1)``,
    the first term divided by n for the coefficients with an irrelevant word."""
    s0, s1, m, m1 = tr.sigma0, tr.sigma1, tr.m, tr.m1
    first = s0**2 * m / (math.sqrt(m) * tr.L * s1**2 * m * m1) / (tr.n if irrelevant else 1)
    return first + s0**2 * math.sqrt(m) / (math.sqrt(m) * s1**2 * m * m1)


_order("thm33.train_loss", "at the end the training loss is <= 1/poly(m) (read as 1/m)", "Thm 3.3", END, "O",
       "m Lhat(t_end)", lambda tr, s: tr.m * float(tr["loss"][-1]))
_order("thm33.test_loss", "at the end the generalization loss is <= 1/poly(m) (read as 1/m)", "Thm 3.3", END, "O",
       "m L(t_end) (fresh i.i.d. test set)", lambda tr, s: tr.m * float(tr["test_loss"][-1]))
_order("thm33.C_size", "C_12, C_21, -C_31, -C_32 = Theta(sigma0^2 m / (sqrt(m) L sigma1^2 m m1) + sigma0^2 sqrt(m) / "
       "(sqrt(m) sigma1^2 m m1))", "Thm 3.3", END, "Theta", "min(C12, C21, -C31, -C32)(t_end) / Thm 3.3's size",
       lambda tr, s: float(np.min(_special_C(tr) * [1, 1, -1, -1])) / _C_scale(tr))
_order("thm33.C_irrelevant", "every C_ij with an irrelevant word = O~(sigma0^2 m / (n sqrt(m) L sigma1^2 m m1) + "
       "sigma0^2 sqrt(m) / (sqrt(m) sigma1^2 m m1))", "Thm 3.3", END, "O",
       "max |C_ij| over irrelevant pairs (t_end) / Thm 3.3's size", lambda tr, s: float(tr["C_irrelevant_max"][-1])
       / _C_scale(tr, irrelevant=True), over=("m", "n"))
_order("thm33.C_gap", "the coefficients with an irrelevant word are smaller by a factor of order min(n, sqrt(m)/L) "
       "(the ratio of Theorem 3.3's two sizes)", "Thm 3.3", END, "Omega",
       "min |C12, C21, C31, C32| / max irrelevant |C_ij| / min(n, sqrt(m)/L)",
       lambda tr, s: float(np.min(np.abs(_special_C(tr)))) / float(tr["C_irrelevant_max"][-1])
       / min(tr.n, math.sqrt(tr.m) / tr.L), over=("m", "n"))
