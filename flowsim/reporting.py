"""Every claim of Theorems 3.1-3.3 and Lemmas 4.2-4.7 checked on one trajectory: measured numbers and a verdict (spec 6)."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np

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


@dataclasses.dataclass
class Row:
    """One claim: what it says, where the paper says it, what this trajectory shows, the verdict
    and the criterion (threshold) behind the verdict."""

    claim: str
    reference: str
    measured: dict
    verdict: str
    criterion: str


def _verdict(ok: bool) -> str:
    return HOLDS if ok else FAILS


def _na(claim: str, reference: str, why: str) -> Row:
    return Row(claim, reference, {}, NA, why)


def _at(result: FlowResult, key: str, t: float) -> np.ndarray:
    """Observable ``key`` at time ``t``, linearly interpolated between saves."""
    x = np.asarray(result.observables[key], float)
    flat = x.reshape(len(x), -1)
    return np.array([np.interp(t, result.ts, flat[:, j]) for j in range(flat.shape[1])]).reshape(x.shape[1:])


def _relative_change(x: np.ndarray) -> np.ndarray:
    """||X(t) - X(0)||_F / ||X(0)||_F for a saved series X (the absolute change if X(0) = 0)."""
    flat = x.reshape(len(x), -1)
    return np.linalg.norm(flat - flat[0], axis=1) / (np.linalg.norm(flat[0]) or 1.0)


def _fraction(ok: np.ndarray) -> float:
    return float(np.mean(ok)) if len(ok) else float("nan")


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


def _phase1(result: FlowResult, T1: float | None) -> list[Row]:
    """Theorem 3.1 and Lemmas 4.2-4.3 on [0, T1]."""
    ref31 = "Thm 3.1"
    claims = [
        ("at T1: G(mu_1) > 0, G(mu_2) > 0, G(mu_3) < 0, each of constant size", ref31),
        ("at T1 every training sample is classified correctly (y_i F(X_i) > 0)", ref31),
        *[(f"until T1 {text} stays near its initial value", ref31) for _, text in ATTENTION_SIDE],
        ("the training loss at T1 is still of constant size", ref31),
        ("early in Phase 1 the one-target groups' (I2, I3) loss rises, then falls by T1", "Lemma 4.2, Fig. 1(b)"),
        ("early in Phase 1 the gradient of G(mu_3) is small", "Lemma 4.2"),
        ("later in Phase 1 (1+C) max(dG1/dt, dG2/dt) <= -dG3/dt <= (1-C)(dG1/dt + dG2/dt)", "Lemma 4.3"),
    ]
    if T1 is None:
        return [_na(c, r, "T1 (every sample classified correctly) is not reached on this trajectory")
                for c, r in claims]
    if T1 == 0.0:
        return [_na(c, r, "T1 = 0: every sample is classified correctly at the start, so there is no Phase 1")
                for c, r in claims]
    ts, o = result.ts, result.observables
    upto = ts <= T1
    rows = []

    G = _at(result, "G_special", T1)
    ok = G[0] >= G_CONSTANT and G[1] >= G_CONSTANT and G[2] <= -G_CONSTANT
    rows.append(Row(*claims[0], dict(T1=T1, G1=G[0], G2=G[1], G3=G[2]), _verdict(ok),
                    f"G(mu_1), G(mu_2) >= {G_CONSTANT} and G(mu_3) <= -{G_CONSTANT} at T1 (interpolated between saves)"))

    after = np.flatnonzero(ts > T1)
    next_margin = float(o["min_margin"][after[0]]) if after.size else float("nan")
    m = result.params_init.m
    rows.append(Row(*claims[1], dict(T1=T1, m_times_T1=m * T1, min_margin_next_save=next_margin),
                    _verdict(next_margin > 0 if after.size else True),
                    "T1 is defined as the first time min_i y_i F_i >= 0, so the claim holds once T1 is "
                    "reached and the first save after T1 has min margin > 0; the theory's T1 = O~(1/m) "
                    "needs several m and is only reported (m T1)"))

    for (key, text), claim in zip(ATTENTION_SIDE, claims[2:7]):
        series = np.concatenate([o[key][upto], _at(result, key, T1)[None]])
        change = series if key == "neuron_gram_change" else _relative_change(series)
        worst = float(np.max(change))
        rows.append(Row(*claim, dict(max_relative_change=worst, at_T1=float(change[-1])),
                        _verdict(worst <= NEAR_INIT),
                        f"largest relative change on [0, T1] <= {NEAR_INIT} "
                        + ("(||W W^T - W(0) W(0)^T||_F / ||W(0) W(0)^T||_F)" if key == "neuron_gram_change"
                           else "(||X(t) - X(0)||_F / ||X(0)||_F over the 3 x 3 block of mu_1..mu_3; "
                                "the absolute change if X(0) = 0)")))

    loss_T1, loss_0 = float(_at(result, "loss", T1)), float(o["loss"][0])
    rows.append(Row(*claims[7], dict(loss_T1=loss_T1, loss_0=loss_0, ratio_to_start=loss_T1 / loss_0),
                    _verdict(loss_T1 >= LOSS_CONSTANT),
                    f"Lhat(T1) >= log(2)/10 = {LOSS_CONSTANT:.4g}, a tenth of the loss of a zero-output "
                    "classifier (the theory starts near it and ends at 1/poly(m))"))

    groups = np.concatenate([o["loss_groups"][upto], _at(result, "loss_groups", T1)[None]])
    times = np.append(ts[upto], T1)
    measured, ok = {}, True
    for k, name in ((1, "I2"), (2, "I3")):
        curve = groups[:, k]
        peak = int(np.nanargmax(curve))
        rise = curve[peak] / curve[0] - 1
        fall = 1 - curve[-1] / curve[peak]
        measured[name] = dict(start=curve[0], peak=curve[peak], t_peak=times[peak],
                              at_T1=curve[-1], rise=rise, fall=fall)
        ok &= bool(rise > RISE and fall > RISE)
    rows.append(Row(*claims[8], measured, _verdict(ok),
                    f"for I2 and I3 the peak on [0, T1] exceeds the start by > {RISE:.0%} and the loss at T1 "
                    f"is below the peak by > {RISE:.0%}"))

    early = np.flatnonzero(ts <= EARLY * T1)
    if early.size < 2:
        rows.append(_na(*claims[9], f"fewer than 2 saves on [0, {EARLY} T1]"))
    else:
        dG = np.abs(np.diff(o["G_special"][early], axis=0))
        ratio = dG[:, 2] / np.maximum(dG[:, 0], dG[:, 1])
        rows.append(Row(*claims[9], dict(window=[0.0, EARLY * T1], max_ratio=np.max(ratio),
                                         first_interval_ratio=ratio[0]),
                        _verdict(np.max(ratio) <= SMALL_RATE),
                        f"|dG3/dt| / max(|dG1/dt|, |dG2/dt|) <= {SMALL_RATE} on every saved interval of "
                        f"[0, {EARLY} T1]"))

    late = np.flatnonzero((ts >= LATE * T1) & upto)
    if late.size < 2:
        rows.append(_na(*claims[10], f"fewer than 2 saves on [{LATE} T1, T1]"))
    else:
        dG = np.diff(o["G_special"][late], axis=0)
        lower, upper = np.maximum(dG[:, 0], dG[:, 1]), dG[:, 0] + dG[:, 1]
        left, right = -dG[:, 2] > lower, -dG[:, 2] < upper
        # The largest C for which both inequalities hold on every interval (negative: none does).
        C = np.min(np.minimum(-dG[:, 2] / lower - 1, 1 + dG[:, 2] / upper))
        both = _fraction(left & right)
        rows.append(Row(*claims[10], dict(window=[LATE * T1, T1], intervals=len(dG),
                                          fraction_both=both, fraction_left=_fraction(left),
                                          fraction_right=_fraction(right), largest_C=C),
                        _verdict(both >= FRACTION),
                        f"both inequalities (C -> 0+) hold on >= {FRACTION:.0%} of the saved intervals "
                        f"of [{LATE} T1, T1] (finite differences of the saved G)"))
    return rows


#: Theorem 3.1's attention-side quantities: observable key and the quantity in the paper's notation.
ATTENTION_SIDE = (
    ("scores", "mu^T W_K^T W_Q nu"),
    ("value_corr", "mu^T W_V^T W_V nu"),
    ("key_corr", "mu^T W_K^T W_K nu"),
    ("query_corr", "mu^T W_Q^T W_Q nu"),
    ("neuron_gram_change", "<w_j1, w_j2>"),
)

#: Phase 2 monotonicity claims (Theorem 3.2, Lemma 4.4): claim, observable, entry, direction.
MONOTONE = (
    ("mu_2^T W_K^T W_Q mu_1 increases", "scores", (1, 0), +1),
    ("mu_1^T W_K^T W_Q mu_2 increases", "scores", (0, 1), +1),
    ("mu_3^T W_K^T W_Q mu_1 decreases", "scores", (2, 0), -1),
    ("mu_3^T W_K^T W_Q mu_2 decreases", "scores", (2, 1), -1),
    ("mu_1^T W_V^T W_V mu_2 increases", "value_corr", (0, 1), +1),
    ("mu_1^T W_V^T W_V mu_3 decreases", "value_corr", (0, 2), -1),
    ("mu_2^T W_V^T W_V mu_3 decreases", "value_corr", (1, 2), -1),
)

#: Phase 2 sign claims on G (Theorem 3.2, Corollary 4.6): claim, weights on (G1, G2, G3), sign.
SIGNS = (
    ("G(mu_1) > 0 and G(mu_2) > 0", None, +1),
    ("G(mu_1) + G(mu_2) + G(mu_3) > 0", (1, 1, 1), +1),
    ("G(mu_1) + G(mu_3) < 0", (1, 0, 1), -1),
    ("G(mu_2) + G(mu_3) < 0", (0, 1, 1), -1),
)


def _phase2(result: FlowResult, T1: float | None) -> list[Row]:
    """Theorem 3.2, Lemmas 4.4-4.5, Corollary 4.6 and Lemma 4.7 on (T1, t_end]."""
    claims = [
        *[(f"in Phase 2 {c}", "Thm 3.2, Lemma 4.4") for c, *_ in MONOTONE],
        *[(f"in Phase 2 {c}", "Thm 3.2, Cor. 4.6") for c, *_ in SIGNS],
        ("in Phase 2 every group's loss (I1..I4) falls", "Fig. 1(b)"),
        ("in Phase 2 |S2 - S3| / min(S2, S3) stays small", "Lemma 4.5"),
        ("in Phase 2 sum_i g_i / (S2+S3+S4-S1) and sum_i g_i / (S1-S2) stay O(1)", "Lemma 4.5"),
        ("the target-target score grows at a rate proportional to Lhat", "Lemma 4.7"),
        ("the target-common score falls at the same rate as the target-target score grows", "Lemma 4.7"),
    ]
    if T1 is None:
        return [_na(c, r, "T1 is not reached, so there is no Phase 2") for c, r in claims]
    ts, o = result.ts, result.observables
    phase2 = np.flatnonzero(ts > T1)
    if phase2.size < 3:
        return [_na(c, r, "fewer than 3 saves after T1") for c, r in claims]
    window = f"(T1, t_end] = ({T1:.4g}, {ts[-1]:.4g}]"
    rows = []

    for (c, key, (i, j), sign), claim in zip(MONOTONE, claims):
        x = o[key][phase2, i, j]
        ok = np.diff(x) * sign > 0
        fails = np.flatnonzero(~ok)
        rows.append(Row(*claim, dict(fraction=_fraction(ok), intervals=len(ok), at_T1=x[0], at_end=x[-1],
                                     first_failure_t=float(ts[phase2][fails[0]]) if fails.size else None),
                        _verdict(_fraction(ok) >= FRACTION),
                        f"moves the claimed way on >= {FRACTION:.0%} of the saved intervals of {window}"))

    G = o["G_special"][phase2]
    for (c, weights, sign), claim in zip(SIGNS, claims[len(MONOTONE):]):
        value = np.minimum(G[:, 0], G[:, 1]) if weights is None else G @ np.asarray(weights, float)
        ok = value * sign > 0
        worst = value.min() if sign > 0 else value.max()
        rows.append(Row(*claim, dict(fraction=_fraction(ok), worst=worst, at_end=value[-1]),
                        _verdict(bool(ok.all())), f"at every save of {window}"))

    falls = [_fraction(np.diff(o["loss_groups"][phase2, k]) < 0) for k in range(4)]
    present = [f for f in falls if not math.isnan(f)]
    rows.append(Row(*claims[-5], dict(fraction_falling=dict(zip(("I1", "I2", "I3", "I4"), falls))),
                    _verdict(min(present) >= FRACTION),
                    f"each non-empty group's loss falls on >= {FRACTION:.0%} of the saved intervals of {window}"))

    b = o["balance_S2_S3"][phase2]
    rows.append(Row(*claims[-4], dict(worst=b.max(), first_save_after_T1=b[0], at_end=b[-1]),
                    _verdict(b.max() <= BALANCE_SMALL), f"at most {BALANCE_SMALL} at every save of {window}"))
    r1, r2 = o["balance_all_S234_S1"][phase2], o["balance_all_S1_S2"][phase2]
    ok = np.all((r1 > 0) & (r1 <= BALANCE_O1) & (r2 > 0) & (r2 <= BALANCE_O1))
    rows.append(Row(*claims[-3], dict(worst_S234_S1=r1[np.argmax(np.abs(r1))], worst_S1_S2=r2[np.argmax(np.abs(r2))]),
                    _verdict(bool(ok)),
                    f"both ratios in (0, {BALANCE_O1}] at every save of {window} (a non-positive ratio means "
                    "the denominator changed sign)"))

    s = o["scores"][phase2]
    target_target = (s[:, 0, 1] + s[:, 1, 0]) / 2
    target_common = (s[:, 2, 0] + s[:, 2, 1]) / 2
    dt = np.diff(ts[phase2])
    rate = np.diff(target_target) / dt
    loss_mid = (o["loss"][phase2][1:] + o["loss"][phase2][:-1]) / 2
    p0 = result.params_init
    sigma0_sq = float(np.mean(np.concatenate([np.ravel(p0.W_K), np.ravel(p0.W_Q)]) ** 2))
    r = rate / loss_mid
    growing = rate > 0
    slope = (float(np.polyfit(np.log(loss_mid[growing]), np.log(rate[growing]), 1)[0])
             if growing.sum() >= 2 else float("nan"))
    rows.append(Row(*claims[-2], dict(rate_over_loss_median=np.median(r), p10=np.percentile(r, 10),
                                      p90=np.percentile(r, 90), loglog_slope=slope,
                                      median_over_sigma0sq_sqrt_m=np.median(r) / (sigma0_sq * math.sqrt(p0.m))),
                    _verdict(bool(growing.all()) and abs(slope - 1) <= EXPONENT_TOL),
                    f"target-target score (s12 + s21)/2 grows on every interval of {window} and the "
                    f"log-log slope of its rate against Lhat is 1 +- {EXPONENT_TOL}; the theory's constant, "
                    "about 1/L in units of sigma0^2 sqrt(m) (sigma0^2 = mean square of W_K(0), W_Q(0)), is only reported"))
    ratio = np.diff(target_common) / np.diff(target_target)
    med = float(np.median(ratio))
    rows.append(Row(*claims[-1], dict(median=med, p10=np.percentile(ratio, 10), p90=np.percentile(ratio, 90)),
                    _verdict(-SAME_RATE <= med <= -1 / SAME_RATE),
                    f"median over the saved intervals of {window} of d[(s31 + s32)/2] / d[(s12 + s21)/2] "
                    f"in [-{SAME_RATE:g}, -1/{SAME_RATE:g}]"))
    return rows


def _end(result: FlowResult) -> list[Row]:
    """Theorem 3.3 at the end of the trajectory."""
    o, m = result.observables, result.params_init.m
    C = o["C"][-1]
    C12, C21, C31, C32 = C[0, 1], C[1, 0], C[2, 0], C[2, 1]
    irrelevant = float(o["C_irrelevant_max"][-1])
    smallest = min(abs(C12), abs(C21), abs(C31), abs(C32))
    train, test = float(o["loss"][-1]), float(o["test_loss"][-1])
    end = f"t_end = {result.ts[-1]:.4g}"
    return [
        Row("C_12, C_21 > 0 and C_31, C_32 < 0", "Thm 3.3",
            dict(C12=C12, C21=C21, C31=C31, C32=C32), _verdict(C12 > 0 and C21 > 0 and C31 < 0 and C32 < 0),
            f"signs at {end}; W_K^T W_Q - W_K(0)^T W_Q(0) = sum_ij C_ij mu_i mu_j^T"),
        Row("every C_ij involving an irrelevant word is an order smaller than C_12, C_21, C_31, C_32", "Thm 3.3",
            dict(smallest_special=smallest, C_irrelevant_max=irrelevant,
                 ratio=smallest / irrelevant if irrelevant > 0 else float("inf")),
            _verdict(smallest >= ORDER * irrelevant),
            f"min(|C12|, |C21|, |C31|, |C32|) >= {ORDER:g} max |C_ij| over irrelevant pairs at {end}"),
        Row("the training loss at the end is <= 1/poly(m)", "Thm 3.3", dict(train_loss=train, one_over_m=1 / m),
            _verdict(train <= 1 / m), f"Lhat({end.split(' = ')[1]}) <= 1/m (the weakest poly(m))"),
        Row("the generalization loss at the end is <= 1/poly(m)", "Thm 3.3",
            dict(test_loss=test, one_over_m=1 / m), _verdict(test <= 1 / m),
            f"loss on the fresh test set at {end} <= 1/m"),
    ]


def check_claims(result: FlowResult) -> list[Row]:
    """Every claim of spec 6 on ``result`` (a flow or a gradient-descent trajectory), in the order
    Theorem 3.1 / Lemmas 4.2-4.3 (Phase 1), Theorem 3.2 / Lemmas 4.4-4.7 (Phase 2), Theorem 3.3.

    T1 is ``result.events["phase1_end"]``; Phase 2 is (T1, t_end] (the simulator has no T2).
    Rates are finite differences between saves, so a denser save grid resolves them better.
    """
    if len(result.ts) < 2:
        raise ValueError("a report needs a trajectory with at least 2 saved times")
    T1 = result.events.get("phase1_end")
    # A quantity that does not move (e.g. scores from W_K = W_Q = 0) makes rate ratios 0/0: NaN,
    # and every comparison with NaN is False, so such a claim is reported as not holding.
    with np.errstate(invalid="ignore", divide="ignore"):
        rows = _phase1(result, T1) + _phase2(result, T1) + _end(result)
    for row in rows:
        row.measured = _plain(row.measured)
    return rows


def format_table(rows: list[Row]) -> str:
    """The rows as a plain-text table: reference, claim, measured numbers, verdict."""
    lines = []
    for i, r in enumerate(rows, 1):
        measured = ", ".join(f"{k}={_short(v)}" for k, v in r.measured.items()) or "-"
        lines.append(f"{i:>2}. [{r.verdict.upper()}] {r.reference}: {r.claim}\n"
                     f"    measured: {measured}\n    criterion: {r.criterion}")
    counts = {v: sum(r.verdict == v for r in rows) for v in (HOLDS, FAILS, NA)}
    lines.append(", ".join(f"{n} {v}" for v, n in counts.items()))
    return "\n".join(lines)


def _short(v) -> str:
    v = _plain(v, 4)
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}={_short(x)}" for k, x in v.items()) + "}"
    return json.dumps(v)


def markdown_table(rows: list[Row]) -> str:
    """The rows as a Markdown table (for the docs)."""
    out = ["| # | reference | claim | measured | verdict |", "|---|---|---|---|---|"]
    for i, r in enumerate(rows, 1):
        measured = ", ".join(f"{k}={_short(v)}" for k, v in r.measured.items()) or "-"
        cells = (r.reference, r.claim, measured)
        out.append(f"| {i} | " + " | ".join(c.replace("|", "\\|") for c in cells) + f" | **{r.verdict}** |")
    return "\n".join(out)


def report(result: FlowResult, out_dir: str | Path | None = None, *, echo: bool = True) -> list[Row]:
    """Check every claim (:func:`check_claims`), print the table (``echo``) and, given ``out_dir``,
    write ``report.json`` there: a list of ``{claim, reference, measured, verdict, criterion}``."""
    rows = check_claims(result)
    if echo:
        print(format_table(rows))
    if out_dir is not None:
        path = Path(out_dir) / "report.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps([_plain(dataclasses.asdict(r), 4) for r in rows], indent=1) + "\n")
    return rows
