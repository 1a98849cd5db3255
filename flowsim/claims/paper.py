"""The paper's claims (spec 6) in paper order: the thresholds they use, the windows they speak about, and each check.

Every claim of Theorems 3.1-3.3 and Lemmas 4.2-4.7 (and the Fig. 1(b) observation) is defined,
and so registered in :data:`~flowsim.claims.CLAIMS`, here.  Adding one is one definition: a
function decorated with :func:`~flowsim.claims.base.claim`, or, for a family of claims that
differ only in parameters, an :class:`~flowsim.claims.base.AbstractClaim` subclass and an
instance per member passed to :func:`~flowsim.claims.base.register`.  Nothing refers to a claim
by its position.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from .base import (AbstractClaim, AtEnd, InPhase1, InPhase2, Margin, NotApplicable, Outcome, at_least, at_most, claim,
                   positive, register)

__all__ = ["AT_T1", "BALANCE_O1", "BALANCE_SMALL", "EARLY", "EARLY_PHASE1", "END", "EXPONENT_TOL", "FRACTION",
           "G_CONSTANT", "LATE", "LATE_PHASE1", "LOSS_CONSTANT", "NEAR_INIT", "ORDER", "PHASE1", "PHASE2", "RISE",
           "SAME_RATE", "SMALL_RATE", "FinalLoss", "GSign", "Monotone", "NearInit"]

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


# --- Windows: where on the trajectory the claims speak -------------------------------------------


AT_T1 = InPhase1("T1")  # the state at T1: needs only T1 > 0
PHASE1 = InPhase1("[0, T1]")
EARLY_PHASE1 = InPhase1(f"[0, {EARLY:g} T1]", hi=EARLY, min_saves=2)
LATE_PHASE1 = InPhase1(f"[{LATE:g} T1, T1]", lo=LATE, min_saves=2)
PHASE2 = InPhase2()
END = AtEnd()


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

