"""The claim checks, their report and the order claims over a sweep, on closed-form trajectories
whose verdicts are known (tests/_synthetic.py: every marker on a saved time, so margins are
closed forms), and the report of a real flow."""

import ast
import json
import math
import re
from collections import Counter

import numpy as np
import pytest
from scipy import stats

import _synthetic as syn
import flowsim
from _synthetic import AT, ideal
from flowsim.models.cooccurrence import claims
from flowsim import cli
from flowsim import reporting as rp
from flowsim.models.cooccurrence.claims import scaling
from flowsim.models.cooccurrence.claims.base import SYMBOLS
from flowsim.models.cooccurrence.observables import DESCRIPTIONS, START_FACTS

T1 = AT["phase1_end"]  # the saves of the markers
SINGLE = [i for i, c in rp.CLAIMS.items() if not isinstance(c, rp.OrderClaim)]
ORDERS = [i for i, c in rp.CLAIMS.items() if isinstance(c, rp.OrderClaim)]
LAST = -1
PHASE2 = slice(T1 + 1, None)


def rows_of(result, context=None) -> dict:
    return {r.id: r for r in rp.check_claims(result, context)}


def failing(rows) -> set:
    return {i for i, r in rows.items() if r.verdict == rp.FAILS}


def test_the_ideal_trajectory_has_every_observable_and_start_fact():
    """So that a new observable or start fact (which a claim may read) must be given a curve here."""
    result = ideal()
    shapes = {k: ast.literal_eval(shape.replace("d", "33")) for k, (shape, _) in DESCRIPTIONS.items()}
    assert {k: v.shape[1:] for k, v in result.observables.items()} == shapes
    assert set(result.start_facts) == set(START_FACTS)
    assert all(result.ts[k] == t for k, t in zip(AT.values(), result.events.values()))


def test_every_claim_holds_on_the_ideal_trajectory():
    rows = rp.check_claims(ideal())
    assert [r.id for r in rows] == list(rp.CLAIMS) and len(rows) == 60 and len(SINGLE) == 29
    assert {r.id: r.verdict for r in rows} == {i: rp.HOLDS if i in SINGLE else rp.ORDER for i in rp.CLAIMS}
    assert all(r.margin > 0 for r in rows if r.id in SINGLE)
    assert all(math.isnan(r.margin) for r in rows if r.id in ORDERS)


# --- Each single-run claim broken alone ----------------------------------------------------------


def _facts(key, value):
    def change(ts, o, e, f):
        f[key] = value(f[key]) if callable(value) else value
    return change


def _at(key, index, value):
    """Observable ``key`` at ``index`` set to ``value(observables)``."""
    def change(ts, o, e, f):
        o[key][index] = value(o)
    return change


def _marker(name, save):
    def change(ts, o, e, f):
        e[name] = None if save is None else float(ts[save])
    return change


def _S(save, shape):
    """The group sums S_k at ``save`` in the proportions ``shape`` (and the balances made of them)."""
    def change(ts, o, e, f):
        S = o["loss"][save] * np.asarray(shape, float)
        total = S.sum()
        o["S"][save] = S
        with np.errstate(divide="ignore"):
            o["balance_S2_S3"][save] = abs(S[1] - S[2]) / min(S[1], S[2])
            o["balance_all_S234_S1"][save] = total / (S[1] + S[2] + S[3] - S[0])
            o["balance_all_S1_S2"][save] = total / (S[0] - S[1])
            o["balance_all_S1_S3"][save] = total / (S[0] - S[2])
    return change


def _flip(rate, i, j):
    """The rate of entry (i, j) (1-based) at the last save: a tenth of its size, of the other sign
    (the average Lemma 4.7 reads keeps its sign)."""
    return _at(rate, (LAST, i - 1, j - 1), lambda o: -0.1 * o[rate][LAST, i - 1, j - 1])


def _G_last(G1=None, G2=None, G3=None):
    def change(ts, o, e, f):
        G = o["G_special"][LAST]
        new = [G[0] if G1 is None else G1, G[1] if G2 is None else G2]
        o["G_special"][LAST] = [*new, -sum(new) - 0.1 if G3 == "below" else G[2] if G3 is None else G3]
    return change


def _G3_rate(save, ratio):
    """-dG3/dt = ratio dG1/dt at ``save``."""
    return _at("G_rate", (save, 2), lambda o: -ratio * o["G_rate"][save, 0])


def _scores_rate_constant(ts, o, e, f):
    """The scores' rates in Phase 2 frozen at their value at T1 while the loss falls 50-fold."""
    o["scores_rate"][PHASE2] = o["scores_rate"][T1]


#: Changes of the ideal trajectory (a function of (ts, observables, events, facts), or keywords of
#: ideal), each breaking the claims named with it and no other.
BROKEN = [
    ({"lem41.rates_positive"}, _facts("neuron_rate_target", lambda r: [-0.1 * r[1], r[1]])),
    ({"thmE19.dF_positive"}, _facts("dF_dt_min", lambda r: [r[0], r[1], -0.01, r[3]])),
    ({"thm31.G_signs"}, _at("G_special", (T1, 2), lambda o: 0.1)),
    ({"thm31.all_correct"}, _at("min_margin", T1, lambda o: -1e-3)),
    ({"thmE26.T1_is_cap"}, _facts("sigma1", lambda s: 1.1 * s)),
    ({"lem43.rates"}, _G3_rate(AT["all_correct"], 0.95)),
    ({"corE20.T_prime"}, _marker("one_target_margin", T1 + 10)),
    ({"fig1b.one_target_rise_fall"}, _at("loss_groups", (slice(None), 1), lambda o: o["loss"])),  # I2 never rises
    ({"thm32.s21_up"}, _flip("scores_rate", 2, 1)),
    ({"thm32.s12_up"}, _flip("scores_rate", 1, 2)),
    ({"thm32.s31_down"}, _flip("scores_rate", 3, 1)),
    ({"thm32.s32_down"}, _flip("scores_rate", 3, 2)),
    ({"thm32.v12_up"}, _flip("value_corr_rate", 1, 2)),
    ({"thm32.v13_down"}, _flip("value_corr_rate", 1, 3)),
    ({"thm32.v23_down"}, _flip("value_corr_rate", 2, 3)),
    ({"corF13.v11_up"}, _flip("value_corr_rate", 1, 1)),
    ({"corF13.v22_up"}, _flip("value_corr_rate", 2, 2)),
    # G1 + G2 + G3 > 0 > G2 + G3 imply G1 > 0: G1 < 0 cannot fail alone; here with G2 + G3 < 0.
    ({"thm32.G1_G2_positive", "thm32.G23_negative"}, _G_last(G1=-0.1, G2=10.0, G3=-9.0)),
    ({"thm32.G123_positive"}, _G_last(G3="below")),  # G3 = -(G1 + G2) - 0.1
    ({"thm32.G13_negative"}, _G_last(G1=10.0)),
    ({"thm32.G23_negative"}, _G_last(G2=10.0)),
    ({"defF1.gradient_order"}, _S(T1 + 20, [2.0, 1.05, 1.0, 1.2])),  # S4 > min(S2, S3)
    ({"lem44.S2_S3_balanced"}, _S(T1 + 20, [2.0, 1.2, 1.0, 0.5])),  # |S2 - S3| / min = 0.2
    # S1 = S2: Definition F.1 allows it (its margin is then 0), Lemma 4.5's S1 - S2 > 0 does not.
    ({"lem45.ratios_positive"}, _S(T1 + 20, [1.05, 1.05, 1.0, 0.5])),
    ({"lem45.rates"}, _G3_rate(LAST, 2.1)),
    ({"lem47.rates_follow_loss"}, _scores_rate_constant),
    ({"thmF8.loss_law"}, dict(law=1.5)),  # 1/Lhat - 1/Lhat(T1) grows as (t - T1)^1.5
    ({"fig1b.groups_fall"}, _at("loss_groups", (LAST, 3), lambda o: 1.01 * o["loss_groups"][-2, 3])),
    ({"thm33.C_signs"}, _at("C", (LAST, 2, 0), lambda o: 0.01)),
]


def broken(change):
    return ideal(**change) if isinstance(change, dict) else ideal(change)


def test_every_single_run_claim_is_broken_by_one_change():
    assert set().union(*(expected for expected, _ in BROKEN)) == set(SINGLE)


@pytest.mark.parametrize("expected, change", BROKEN, ids=[" ".join(sorted(e)) for e, _ in BROKEN])
def test_a_broken_claim_fails_alone(expected, change):
    rows = rows_of(broken(change))
    assert failing(rows) == expected
    # The margin's sign is the verdict: negative for the broken claims, positive for the rest.  At
    # S1 = S2 both gaps are 0: Definition F.1's ordering (<=) holds there, Lemma 4.5's (> 0) does not.
    at_edge = {"defF1.gradient_order", "lem45.ratios_positive"} if "lem45.ratios_positive" in expected else set()
    assert {i for i in SINGLE if rows[i].margin < 0} == expected - at_edge
    assert all(rows[i].margin > 0 for i in SINGLE if i not in expected | at_edge)
    assert all(rows[i].margin == 0 for i in at_edge)
    assert all(rows[i].verdict == rp.ORDER for i in ORDERS)


# --- Margins are the documented relative distance ------------------------------------------------

TAU_1 = 10**0.02  # the first save of Phase 2, in units of T1
T_C = 10**-0.4  # T_correct, in units of T1


@pytest.mark.parametrize("claim, change, margin", [
    # Lemma 4.3: the largest C = min(r - 1, 1 - r/2) over [T0.5, T1], r = -dG3/dG1 from 1.2 to 1.3.
    ("lem43.rates", None, 0.2),
    ("lem43.rates", _G3_rate(AT["all_correct"], 0.95), -0.05),
    ("lem43.rates", _G3_rate(AT["all_correct"], 1.0), 0.0),  # largest C exactly 0: "a constant C > 0" fails
    ("lem45.rates", None, min(0.3, 1 - 1.3 / 2)),  # the largest C itself
    ("lem45.rates", _G3_rate(LAST, 2.1), 1 - 2.1 / 2),
    ("lem45.rates", _G3_rate(LAST, 2.0), 0.0),  # largest C exactly 0: "a constant C > 0" fails (strict)
    ("thmF8.loss_law", dict(law=1.5), (0.2 - 0.5) / 0.2),  # (tolerance - |slope - 1|) / tolerance
    ("thmF8.loss_law", dict(law=1.1), (0.2 - 0.1) / 0.2),
    ("lem44.S2_S3_balanced", None, (0.1 - 0.05) / 0.1),
    ("lem44.S2_S3_balanced", _S(T1 + 20, [2.0, 1.2, 1.0, 0.5]), (0.1 - 0.2) / 0.1),
    ("corE20.T_prime", None, 1 - 10**-0.3),  # (T1 - T') / T1
    ("corE20.T_prime", _marker("one_target_margin", T1 + 10), 1 - 10**0.2),
    ("thmE26.T1_is_cap", _facts("sigma1", lambda s: 1.1 * s), (1e-6 - (1.1**2 - 1)) / 1e-6),
    # min_i y_i F_i(T1) over its largest size, F0 at t = 0.
    ("thm31.all_correct", None, (1 - T_C) / (1 + T_C)),
    ("thm31.G_signs", None, (1 + syn.P) / syn.R_PHASE2),  # min(G1, G2, -G3) / max |G| at T1 = (1, 1, 1.3/(1+P))
    ("defF1.gradient_order", None, 0.5 / 4.55),  # the smallest gap, min(S2, S3) - S4, over sum S
    ("lem45.ratios_positive", None, (4.55 / 1.0) / (4.55 / 0.55)),  # smallest ratio / largest
    # Each rate is proportional to 1/(1 + tau) in Phase 2: its smallest over its largest.
    ("thm32.v13_down", None, (1 + TAU_1) / 101),
    ("lem41.rates_positive", None, 0.5 / 1.5),
    ("thmE19.dF_positive", None, 0.1 / 0.4),
])
def test_margin_is_the_relative_distance_to_the_threshold(claim, change, margin):
    row = rows_of(ideal() if change is None else broken(change))[claim]
    assert row.verdict == (rp.HOLDS if margin > 0 else rp.FAILS)  # every margin here, 0 included, is strict or not 0
    assert row.margin == pytest.approx(margin, rel=1e-12)


def test_margins_combine_by_the_nearer_miss():
    assert rp.at_least(2.0, 2.0, "x").holds and not rp.at_least(2.0, 2.0, "x", strict=True).holds
    both = rp.at_least(3.0, 2.0, "x") & rp.at_most(3.0, 4.0, "x")  # margins 1/2 and 1/4
    assert both.value == 0.25 and both.holds
    assert not (rp.Margin(0.0, "a", strict=True) & rp.Margin(0.0, "b")).holds  # a tie: the strict one decides
    assert not (rp.Margin(float("nan"), "a") & rp.Margin(1.0, "b")).holds
    assert rp.at_least(0.0, 0.0, "x").holds and rp.at_least(1e-9, 0.0, "x").value == float("inf")
    assert rp.positive(-1.0, 4.0, "x", "y").value == -0.25 and math.isnan(rp.positive(0.0, 0.0, "x", "y").value)


# --- Windows: markers not reached, runs not finished ----------------------------------------------

#: The claims whose window opens or closes at T1 (at T1, [0, T1], [T0.5, T1], Phase 2): 11 + 8 + 3 + 25.
WITH_T1 = {i for i, c in rp.CLAIMS.items() if "T1" in c.window.name}
END = {i for i, c in rp.CLAIMS.items() if c.window.close == "t_end"}  # Phase 2, the figure's Phase 2, the end


@pytest.mark.parametrize("marker, expected", [
    ("rates_ordered", {"lem43.rates", "lem43.rate_size", "lem43.T_half_order"}),
    ("all_correct", {"fig1b.one_target_rise_fall", "fig1b.groups_fall", "thm31.T_correct_order"}),
    ("one_target_margin", {"corE20.T_prime_order"}),
    ("phase1_end", WITH_T1),
])
def test_a_marker_not_reached_by_a_complete_run_makes_its_claims_not_applicable(marker, expected):
    rows = rows_of(ideal(_marker(marker, None)))
    assert {i for i, r in rows.items() if r.verdict == rp.NA} == expected and len(WITH_T1) == 47
    assert all(math.isnan(rows[i].margin) and rows[i].measured == {} for i in expected)
    symbol = SYMBOLS[marker]
    assert all(rows[i].criterion == f"{symbol} ({marker}) is not reached by t_end = 100" for i in expected)
    # T' never reached does not come by T1: the claim it makes is decided, and fails.
    assert failing(rows) == ({"corE20.T_prime"} if marker == "one_target_margin" else set())


def test_a_run_stopped_in_phase_2_judges_what_it_reached_and_marks_the_rest_not_reached():
    stop = T1 + 15  # t = 10^0.3 T1
    result = ideal(status="interrupted", stop=stop)
    rows = rows_of(result)
    assert result.t_reached < result.options.t_end
    assert {i for i, r in rows.items() if r.verdict == rp.NOT_REACHED} == END and len(END) == 32
    assert {rows[i].verdict for i in set(SINGLE) - END} == {rp.HOLDS}
    assert {rows[i].verdict for i in set(ORDERS) - END} == {rp.ORDER}
    stopped = "the run stopped at t = 1.995 of t_end = 100 (interrupted)"
    assert rows["thm33.C_signs"].criterion == stopped and math.isnan(rows["thm33.C_signs"].margin)
    # A Phase 2 claim says what the part reached shows: |S2 - S3| / min(S2, S3) = 0.05 there.
    part = "on the part reached (to t = 1.995) it holds (margin +0.5)"
    assert rows["lem44.S2_S3_balanced"].criterion == f"{stopped}; {part}"
    assert rows["lem45.ratios_size"].criterion == stopped  # an order claim: nothing to judge on a part
    table = rp.format_table(list(rows.values()), result)
    assert table.splitlines()[0] == ("UNFINISHED RUN (interrupted): it stopped at t = 1.995 of t_end = 100; claims "
                                     "whose window it did not reach are marked \"not reached\"")
    assert table.splitlines()[-1] == "8 holds, 0 does not hold, 20 judged on a sweep, 32 not reached"
    assert rp.format_table(list(rows.values())).splitlines()[0] == "the theory's assumptions, met by this run?"


def test_a_run_stopped_before_T1_marks_every_claim_after_it_not_reached():
    result = ideal(status="interrupted", stop=T1 - 10)  # t = 10^-0.2 T1: past T_correct, before T1
    rows = rows_of(result)
    assert {i for i, r in rows.items() if r.verdict == rp.NOT_REACHED} == WITH_T1 | END
    assert rows["thm31.G_signs"].criterion == ("T1 (phase1_end) not reached: the run stopped at t = 0.631 of "
                                               "t_end = 100 (interrupted)")
    assert rows["fig1b.one_target_rise_fall"].verdict == rp.HOLDS  # [0, T_correct] was reached
    assert rp.unfinished(ideal()) == ""


# --- Order claims on one run: measured, not judged ---------------------------------------------------


def test_an_order_claim_reports_its_measured_quantity_and_is_judged_on_a_sweep():
    result = ideal()
    rows = rows_of(result)
    T1_time = result.events["phase1_end"]
    measured = {i: next(iter(rows[i].measured.values())) for i in ORDERS}
    # Closed forms of the ideal curves: T1 m; Lhat(T1) = 1/4; ||u(T1)||^2 = 1.5 sigma1^2 m m1;
    # kappa = 2 / (sigma1^2 m m1 T1) = 2 / C_T1; m Lhat(t_end) = 64 / 202; the three balance ratios' largest.
    assert measured["thm31.T1_order"] == 64 * T1_time
    assert measured["thm31.loss_size"] == pytest.approx(0.25, rel=1e-14)
    assert measured["thmE27.u_norm"] == pytest.approx(1.5, rel=1e-14)
    assert measured["thmF8.kappa"] == pytest.approx(0.2, rel=1e-12)
    assert measured["thm33.train_loss"] == pytest.approx(64 / 202, rel=1e-14)
    assert measured["lem45.ratios_size"] == pytest.approx(4.55 / 0.55, rel=1e-14)
    assert measured["lemF6.G_rate_ratio"] == 1.0
    for i in ORDERS:
        c, r = rp.CLAIMS[i], rows[i]
        assert r.verdict == rp.ORDER and list(r.measured) == [c.quantity]
        assert c.value(rp.Trajectory(result)) == measured[i]
        assert r.criterion.endswith("; a sweep fits the exponent") and f"{c.relation}(m^0)" in r.criterion
    table = rp.format_table(list(rows.values()), result)
    assert ("[JUDGED ON A SWEEP] Thm 3.1 = E.28, Def. E.2: T1 = O~(1/m)  (thm31.T1_order; t = T1)\n"
            "    measured: m T1=64.0\n    statement: O(m^0) up to logs on t = T1 = 1; a sweep fits the exponent") in table


# --- Observables an engine cannot form; empty groups; width-free starts ----------------------------


def test_an_observable_the_engine_cannot_form_makes_its_claims_not_applicable():
    def no_neurons(ts, o, e, f):
        o["neuron_value_change"][:] = np.nan
        f["neuron_rate_target"] = [math.nan, math.nan]

    rows = rows_of(ideal(no_neurons, engine="gram"))
    na = {i for i, r in rows.items() if r.verdict == rp.NA}
    assert na == {"thmE26.neuron_values", "thmE26.irrelevant_values", "lem41.rates_positive"}
    assert rows["thmE26.neuron_values"].criterion.startswith("neuron_value_change is not available from this "
                                                             "engine's state (engine gram: the neuron values ")
    # Lemma 4.1 speaks of every neuron: without them it is not decided (their sum is an order claim's).
    assert rows["lem41.rates_positive"].criterion.startswith("a statement about every neuron")


def test_an_empty_group_makes_its_claims_not_applicable_not_failing():
    def no_I2(ts, o, e, f):
        o["loss_groups"][:, 1] = np.nan
        f["dF_dt_min"][1] = f["dF_dt_max"][1] = math.nan

    rows = rows_of(ideal(no_I2))
    assert rows["fig1b.one_target_rise_fall"].verdict == rp.NA
    assert rows["fig1b.one_target_rise_fall"].criterion == "group I2 is empty in this training set"
    assert rows["fig1b.groups_fall"].verdict == rp.HOLDS  # judged on the non-empty groups
    assert set(rows["fig1b.groups_fall"].measured["intervals_rising"]) == {"I1", "I3", "I4"}
    assert rows["thmE19.dF_positive"].margin == pytest.approx(0.1 / 0.4)  # I1 and I3 alone


# --- Assumptions, judged on the run's start and training set ---------------------------------------


def _F0(value):
    return _at("F_abs_max", 0, lambda o: value)


@pytest.mark.parametrize("result, name, why", [
    (ideal(_F0(0.02)), "Condition 1 (start)", "max_i |F(0)(X_i)| = 0.02 > 0.01"),
    (ideal(_facts("softmax_dev", 1e-3)), "Condition 1 (start)", "max |p(0) - 1/L| = 0.001 > 2.11e-05"),
    (ideal(_at("G", (0, 5), lambda o: 0.5)), "Condition 1 (start)", "max |G(0)(mu)| = 0.5 > 0.0366"),
    (ideal(_facts("group_counts", [8, 4, 3, 3])), "Assumption 2.3", "group sizes 8/4/3/3, not n/2, n/6, n/6, n/6"),
    (ideal(_facts("irrelevant_max_uses", 2)), "Assumption 2.3", "an irrelevant word used 2 times"),
    (ideal(m=32), "Condition 1 (sizes)", "m = 32 < m1 = 64"),
    (ideal(n=12), "Condition 1 (sizes)", "n = 12 < L^2 = 16"),
])
def test_an_assumption_is_judged_on_the_run_itself(result, name, why):
    rows = rp.check_claims(result)
    for r in rows:
        if rp.CLAIMS[r.id].assumes:
            assert {a.name: a.met for a in r.assumptions} == {a: a != name for a in rp.ASSUMPTIONS}
            assert next(a.why for a in r.assumptions if a.name == name) == why
        else:
            assert r.assumptions == [] and r.id.startswith("fig1b.")  # observations of the paper's experiment
    assert all(a.met for a in rp.assess(ideal(), rp.RunContext()).values())


def test_start_bounds_are_appendix_D_written_out():
    facts = syn.start_facts()
    n, L, d, m, m1, s0, s1 = (facts[k] for k in ("n", "L", "d", "m", "m1", "sigma0", "sigma1"))
    delta = 0.05
    x = math.log(2 * d / delta)
    eta = math.sqrt(4 / m * x) + 4 / m * x  # Lemma H.2
    bounds = rp.start_bounds(facts, delta)
    D8 = 2 * s0 * s1 * math.sqrt(2 * L * m1 * m * math.log(2 * L * n / delta))
    assert bounds["F"] == pytest.approx(D8, rel=1e-14)
    assert bounds["softmax"] == pytest.approx((math.exp(2 * s0**2 * m * eta / math.sqrt(m)) - 1) / L, rel=1e-12)
    assert bounds["G"] == pytest.approx(math.sqrt(2 * x) * s0 * s1 * math.sqrt(m * m1 * (1 + eta)), rel=1e-14)
    # The theory init's constant makes Lemma D.8's bound exactly 0.01 (flowsim.models.cooccurrence.init.condition1_constant).
    c = flowsim.RunConfig.preset("theory").resolved().c0
    assert rp.start_bounds(facts | dict(sigma0=c / math.sqrt(L * m), sigma1=c / math.sqrt(m1)), 0.1)["F"] == \
        pytest.approx(0.01, rel=1e-12)


def test_the_table_states_the_assumptions_once_and_on_each_failing_row():
    result = ideal(lambda ts, o, e, f: (_F0(0.02)(ts, o, e, f), _at("C", (LAST, 2, 0), lambda o: 0.01)(ts, o, e, f)),
                   m=32)
    table = rp.format_table(rp.check_claims(result), result)
    head = table.splitlines()[:2]
    assert head[0] == "the theory's assumptions, met by this run?"
    assert head[1].startswith("  Condition 1 (start): no -- ")
    assert "max_i |F(0)(X_i)| = 0.02 vs 0.01 (Lemma D.8" in head[1]
    assert "\n  Condition 1 (sizes): no -- m = 32 < m1 = 64; m = 32 >= L^2 = 16; n = 18 >= L^2 = 16\n" in table
    line = ("    assumptions met: Condition 1 (start) no (max_i |F(0)(X_i)| = 0.02 > 0.01), Condition 1 (sizes) no "
            "(m = 32 < m1 = 64), Assumption 2.3 yes")
    assert table.count(line) == 1 and table.index(line) > table.index("(thm33.C_signs; t = t_end)")


# --- The registry ------------------------------------------------------------------------------------


def test_claims_are_registered_once_with_stable_ids_and_families_share_a_class():
    assert all(re.fullmatch(r"(lem|thm|cor|prop|def|fig)[A-F]?[0-9]+b?\.[A-Za-z0-9_.]+", i) for i in rp.CLAIMS)
    assert Counter(type(c).__name__ for c in rp.CLAIMS.values()) == {"OrderClaim": 31, "Claim": 16, "Moves": 9,
                                                                      "GSign": 4}
    assert [i for i, c in rp.CLAIMS.items() if not c.assumes] == ["fig1b.one_target_rise_fall", "fig1b.groups_fall"]
    with pytest.raises(ValueError, match="already registered"):
        rp.register(rp.CLAIMS["thm31.G_signs"])
    with pytest.raises(ValueError, match="known assumptions"):
        rp.register(rp.Claim(id="x.y", text="", reference="", window=rp.END, assumes=("Assumption 9",),
                             measure=None))
    with pytest.raises(ValueError, match="relation must be one of Theta, O, Omega"):
        rp.OrderClaim(id="x.z", text="", reference="", window=rp.END, relation="o", quantity="", measure=None)
    assert len(rp.CLAIMS) == 60  # nothing registered by the refusals


def test_every_claim_is_defined_in_the_paper_module_and_importable_where_it_was():
    """The layout: the contract in flowsim.models.cooccurrence.claims.base, the claims in flowsim.models.cooccurrence.claims.paper, and
    flowsim.reporting and flowsim still giving every name they gave."""
    for c in rp.CLAIMS.values():
        assert (c.measure if isinstance(c, (rp.Claim, rp.OrderClaim)) else type(c)).__module__ == "flowsim.models.cooccurrence.claims.paper"
    assert set(claims.__all__) <= set(rp.__all__) and all(getattr(rp, n) is getattr(claims, n) for n in claims.__all__)
    assert (flowsim.check_claims, flowsim.CLAIMS, flowsim.RunContext) == (rp.check_claims, rp.CLAIMS, rp.RunContext)
    assert flowsim.report is rp.report and flowsim.sweep_report is rp.sweep_report


def test_a_new_claim_is_one_more_row_and_changes_no_other():
    """The extension point: a claim defined outside the module, checked with the registered ones."""
    def final_loss(tr, saves):
        loss = tr["loss"][saves[0]]
        return rp.Outcome({"loss": loss}, rp.at_most(loss, 0.01, "loss"), "loss < 0.01")

    late_loss = rp.Claim(id="test.final_loss_small", text="the loss at the end is below 0.01", reference="-",
                         window=rp.END, measure=final_loss)
    result = ideal()
    before = rp.check_claims(result)
    after = rp.check_claims(result, claims=[*rp.CLAIMS.values(), late_loss])
    assert after[:-1] == before
    # The ideal loss at t_end = 100 T1 is 1/202: margin (0.01 - 1/202) / 0.01.
    assert after[-1].id == "test.final_loss_small" and after[-1].margin == pytest.approx(1 - 50 / 101)


def test_report_on_a_real_flow(tiny_run, tmp_path, capsys):
    rows = rp.report(tiny_run, tmp_path)
    saved = json.loads((tmp_path / "report.json").read_text())
    assert [r["id"] for r in saved] == [r.id for r in rows] == list(rp.CLAIMS)
    assert {r["verdict"] for r in saved} == {rp.HOLDS, rp.FAILS, rp.ORDER, rp.NA}  # T0.5 is not reached
    printed = capsys.readouterr().out
    assert all(r.claim in printed for r in rows)
    assert [a["name"] for a in saved[0]["assumptions"]] == list(rp.ASSUMPTIONS)
    T1_row = next(r for r in saved if r["id"] == "thm31.T1_order")
    assert T1_row["measured"] == {"m T1": pytest.approx(6 * tiny_run.events["phase1_end"], rel=1e-3)}


# --- Order claims over a sweep: fitted exponents ---------------------------------------------------


def _law(claim, exponent=0.0):
    return rp.OrderClaim(id="test.law", text="", reference="", window=rp.END, relation=claim, quantity="Q",
                         exponent=exponent, measure=None)


def test_fit_recovers_an_exact_power_law_and_leaves_out_what_it_cannot_fit():
    m = np.geomspace(10, 1e8, 8)
    fit = scaling.fit_exponent(m, 3.0 * m**-0.7)
    assert fit.alpha == pytest.approx(-0.7, abs=1e-12) and fit.prefactor == pytest.approx(3.0, rel=1e-10)
    assert fit.lo == pytest.approx(-0.7, abs=1e-9) and fit.hi == pytest.approx(-0.7, abs=1e-9) and fit.points == 8
    assert scaling.fit_exponent([*m, 50.0, 60.0, 70.0], [*(3.0 * m**-0.7), np.nan, 0.0, -1.0]).points == 8
    constant = scaling.fit_exponent(m, np.full(8, 0.25))  # fits exactly too (scipy's error is 0/0 there)
    assert (constant.alpha, constant.lo, constant.hi, constant.prefactor) == (0.0, 0.0, 0.0, pytest.approx(0.25))
    assert scaling.fit_exponent([10, 10, 10], [1, 2, 3]) is None and scaling.fit_exponent([10, 100], [1, 2]) is None


def test_fit_interval_is_the_t_interval_of_the_slope():
    rng = np.random.default_rng(1)
    m = np.repeat(np.geomspace(10, 1e6, 6), 8)
    Q = 3.0 * m**0.4 * np.exp(0.3 * rng.standard_normal(m.size))
    fit = scaling.fit_exponent(m, Q)
    slope, half = _textbook(m, Q)
    assert fit.alpha == pytest.approx(slope, rel=1e-12)
    assert (fit.lo, fit.hi) == pytest.approx((slope - half, slope + half))
    assert fit.lo < 0.4 < fit.hi


def _textbook(x, Q, level=0.95):
    """Least squares of log Q on log x: the slope and the half-width of its Student-t interval,
    slope +- t_{n-2} sqrt(SSR / (n - 2) / Sxx)."""
    x, y = np.log(np.asarray(x, float)), np.log(np.asarray(Q, float))
    slope = np.sum((x - x.mean()) * (y - y.mean())) / np.sum((x - x.mean()) ** 2)
    residuals = y - y.mean() - slope * (x - x.mean())
    return slope, stats.t.ppf(0.5 + level / 2, x.size - 2) * np.sqrt(np.sum(residuals**2) / (x.size - 2)
                                                                     / np.sum((x - x.mean()) ** 2))


@pytest.mark.parametrize("relation, exponent, alpha, verdict, margin", [
    # Theta: |alpha - exponent| <= TOL; O: alpha <= exponent + TOL; Omega: alpha >= exponent - TOL.
    ("Theta", 0.0, 0.1, rp.HOLDS, 0.5), ("Theta", 0.0, -0.3, rp.FAILS, -0.5), ("Theta", -1.0, -1.05, rp.HOLDS, 0.75),
    ("O", 0.0, -1.0, rp.HOLDS, 6.0), ("O", 0.0, 0.5, rp.FAILS, -1.5), ("O", -1.0, -0.5, rp.FAILS, -1.5),
    ("Omega", 0.0, -0.1, rp.HOLDS, 0.5), ("Omega", 0.0, -0.5, rp.FAILS, -1.5), ("Omega", 0.5, 2.0, rp.HOLDS, 8.5),
])
def test_judge_compares_the_fitted_exponent_with_the_theorys(relation, exponent, alpha, verdict, margin):
    m = np.array([16.0, 64.0, 256.0, 1024.0])
    v = scaling.judge(_law(relation, exponent), "m", m, 2.0 * m**alpha)
    assert (v.verdict, v.fit.alpha, v.left_out) == (verdict, pytest.approx(alpha, abs=1e-12), 0)
    assert v.margin == pytest.approx(margin, abs=1e-10) and scaling.TOL == 0.2


@pytest.mark.parametrize("relation, alpha, verdict, margin", [
    # Toward F -> 0 (Condition 1 takes F small) an upper bound fails when Q grows as F shrinks.
    ("O", 0.35, rp.HOLDS, (0.35 + 0.2) / 0.2), ("O", -0.5, rp.FAILS, (-0.5 + 0.2) / 0.2),
    ("Omega", -0.35, rp.HOLDS, (0.2 + 0.35) / 0.2), ("Omega", 0.5, rp.FAILS, (0.2 - 0.5) / 0.2),
    ("Theta", 0.1, rp.HOLDS, 0.5),
])
def test_judge_in_F_looks_toward_small_F(relation, alpha, verdict, margin):
    F = np.array([1e-4, 1e-3, 1e-2, 1e-1])
    v = scaling.judge(_law(relation, 0.0), "F", F, 3.0 * F**alpha)
    assert (v.verdict, v.fit.alpha) == (verdict, pytest.approx(alpha, abs=1e-12))
    assert v.margin == pytest.approx(margin, abs=1e-10) and "as F -> 0" in v.criterion


def test_judge_on_points_it_cannot_fit():
    m = np.array([16.0, 64.0, 256.0, 1024.0])
    Q = np.array([1.0, 1.0, 1.0, -1.0])  # not positive at the largest m
    for relation in ("Theta", "Omega"):  # the size the statement presumes fails where it matters most
        v = scaling.judge(_law(relation), "m", m, Q)
        assert v.verdict == rp.FAILS and v.margin == -math.inf
        assert v.criterion.endswith("the quantity is not positive at the largest m = 1024")
    v = scaling.judge(_law("O"), "m", m, Q)  # an upper bound: a non-positive value is left out of the fit
    assert (v.verdict, v.fit.points, v.left_out, v.fit.alpha) == (rp.HOLDS, 3, 1, 0.0)
    v = scaling.judge(_law("O"), "m", m, [1.0, np.nan, 0.0, 2.0])
    assert v.verdict == rp.NA and v.fit is None and math.isnan(v.margin) and v.left_out == 2  # the NaN and the 0
    assert v.criterion.endswith("needs 3 points with Q > 0 over 2 values of m")


F_SEED = (1.0, 1.5, 2.0)  # T1 = 5 F_SEED[seed] / m
WIDTHS = (16, 64, 256)


def theorem33_size(f: dict) -> float:
    """Theorem 3.3's size of C_12, C_21, -C_31, -C_32, from the spec."""
    s0, s1, m, m1, L = (f[k] for k in ("sigma0", "sigma1", "m", "m1", "L"))
    return (s0**2 * m / (math.sqrt(m) * L * s1**2 * m * m1) + s0**2 * math.sqrt(m) / (math.sqrt(m) * s1**2 * m * m1))


def point(values: dict):
    """A point of the sweep over m = m1 and seeds: the ideal curves with T1 = 5 F_SEED[seed] / m;
    min_i y_i F_i scaled by (16/m)^(1/2) and C by Theorem 3.3's size times 100 (m/16)^(1/2).
    At m = 64 seed 1 C_31 ends positive and T0.5 is never reached; m = 256 seed 2 is not run."""
    m, seed = values["m"], values["seed"]
    if (m, seed) == (256, 2):
        return None

    def change(ts, o, e, f):
        o["min_margin"] *= (16 / m) ** 0.5
        o["C"] *= 100 * (m / 16) ** 0.5 * theorem33_size(f) / o["C"][LAST, 0, 1]
        if (m, seed) == (64, 1):
            o["C"][LAST, 2, 0] = 0.01
            e["rates_ordered"] = None

    return ideal(change, T1=5 * F_SEED[seed] / m, m=m, m1=m)


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    root = tmp_path_factory.mktemp("swept")
    syn.write_sweep(root, {"m": list(WIDTHS), "seed": [0, 1, 2]}, point)
    return root


def test_sweep_report_counts_each_claim_per_width_over_seeds(swept):
    rep = rp.sweep_report(swept)
    assert rep.by == ("m",) and rep.pooled == ("seed",) and rep.labels == ["m=16", "m=64", "m=256"]
    assert rep.claims == tuple(rp.CLAIMS) and list(rep.points) == [3, 3, 2]
    assert rep.skipped == ("m=256_seed=2 (pending)",)
    single = np.array([i in SINGLE for i in rep.claims])
    expected = np.where(single[:, None], [[3, 3, 2]], 0)  # order claims hold or fail on a sweep only
    holds, applicable = expected.copy(), expected.copy()
    C_signs, lemma43 = rep.claims.index("thm33.C_signs"), rep.claims.index("lem43.rates")
    holds[C_signs] = [3, 2, 2]
    holds[lemma43] = applicable[lemma43] = [3, 2, 2]  # not applicable without T0.5
    np.testing.assert_array_equal(rep.holds, holds)
    np.testing.assert_array_equal(rep.applicable, applicable)
    assert rep.fraction[C_signs].tolist() == [1.0, 2 / 3, 1.0] and np.isnan(rep.fraction[~single]).all()
    np.testing.assert_array_equal(rep.met, [[3, 3, 2]] * 3)  # m = m1 >= L^2: every assumption met


def test_sweep_report_judges_the_order_claims_by_their_fitted_exponents(swept):
    rep = rp.sweep_report(swept)
    # One verdict per order claim: each speaks of m, which the sweep varies; not of n or F, which it does not.
    assert [v.id for v in rep.orders] == ORDERS
    assert {(v.variable, json.dumps(v.group)) for v in rep.orders} == {("m", "{}")}
    orders = {v.id: v for v in rep.orders}
    m = np.array([w for w in WIDTHS for s in range(3) if (w, s) != (256, 2)], float)
    seeds = np.array([s for w in WIDTHS for s in range(3) if (w, s) != (256, 2)])
    T1_times = np.array([syn.times(5 * F_SEED[s] / w)[T1] for w, s in zip(m, seeds)])
    # m T1 = 5 F_SEED: no trend but the seeds' spread (uneven at m = 256, one seed missing).
    slope, half = _textbook(m, m * T1_times)
    v = orders["thm31.T1_order"]
    assert v.verdict == rp.HOLDS and v.fit.points == 8 and v.left_out == 0
    assert (v.fit.alpha, v.fit.lo, v.fit.hi) == pytest.approx((slope, slope - half, slope + half), abs=1e-12)
    assert v.margin == pytest.approx((0.2 - slope) / 0.2, abs=1e-12)
    # Exact laws: Lhat(T1) = 1/4 (Theta holds); m Lhat(t_end) = m / 202 (O(1) fails: exponent 1);
    # min_i y_i F_i(T1) ~ m^(-1/2) (Omega(1) fails); C over Theorem 3.3's size ~ m^(1/2) (Theta fails).
    for claim, alpha, verdict in (("thm31.loss_size", 0.0, rp.HOLDS), ("thm33.train_loss", 1.0, rp.FAILS),
                                  ("thm31.margin_size", -0.5, rp.FAILS), ("thm33.C_size", 0.5, rp.FAILS)):
        v = orders[claim]
        # C_31 > 0 at m = 64 seed 1: a size that is not positive is left out of the fit.
        points, left_out = (7, 1) if claim == "thm33.C_size" else (8, 0)
        assert (v.verdict, v.fit.points, v.left_out) == (verdict, points, left_out), claim
        assert (v.fit.alpha, v.fit.lo, v.fit.hi) == pytest.approx((alpha, alpha, alpha), abs=1e-9), claim
        relation = rp.CLAIMS[claim].relation
        edge = {"Theta": 0.2 - abs(alpha), "O": 0.2 - alpha, "Omega": alpha + 0.2}[relation]
        assert v.margin == pytest.approx(edge / 0.2, abs=1e-9), claim
    # T0.5 is not reached at m = 64 seed 1: the point is not in that claim's fit.
    assert orders["lem43.T_half_order"].fit.points == 7


def test_sweep_report_groups_the_points_of_each_fit_by_the_other_grid_keys(tmp_path):
    syn.write_sweep(tmp_path, {"m": [16, 64, 256], "n": [18, 36]},
                    lambda v: ideal(T1=5 / v["m"], m=v["m"], m1=v["m"], n=v["n"]))
    rep = rp.sweep_report(tmp_path)
    assert rep.labels == [f"m={m}, n={n}" for m in (16, 64, 256) for n in (18, 36)]
    by_claim = {}
    for v in rep.orders:
        by_claim.setdefault(v.id, []).append((v.variable, json.dumps(v.group)))
    # Against m: a fit per n; against n (for the claims that speak of it): 2 values, no fit, per m.
    per_m = [("m", '{"n": 18}'), ("m", '{"n": 36}')]
    per_n = [("n", json.dumps({"m": m})) for m in (16, 64, 256)]
    assert by_claim == {i: per_m + (per_n if "n" in rp.CLAIMS[i].over else []) for i in ORDERS}
    assert {v.verdict for v in rep.orders if v.variable == "n"} == {rp.NA}
    assert [v.fit.points for v in rep.orders if v.id == "thm31.T1_order"] == [3, 3]


@pytest.mark.parametrize("by, labels, points", [
    (("seed",), ["seed=0", "seed=1", "seed=2"], [3, 3, 2]),
    ((), ["all points"], [8]),
])
def test_sweep_report_groups_by_any_grid_keys(swept, by, labels, points):
    rep = rp.sweep_report(swept, by=by)
    assert rep.labels == labels and rep.points.tolist() == points
    assert rep.holds[rep.claims.index("thm33.C_signs")].sum() == 7


def test_flowsim_report_on_a_sweep_prints_and_writes_the_tables(swept, tmp_path, capsys):
    assert cli.main(["report", str(swept), "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    line = next(x for x in printed.splitlines() if x.startswith("thm33.C_signs "))
    assert line.split()[1:] == ["1.00", "(3/3)", "0.67", "(2/3)", "1.00", "(2/2)"]
    assert "not checked (not complete): m=256_seed=2 (pending)" in printed
    assert ("statements of order, judged by the exponent of a power law fitted across the sweep (log factors: "
            "within 0.2 of the theory's):") in printed
    assert "\n  [DOES NOT HOLD] thm33.train_loss vs m: alpha = +1.000 [+1.000, +1.000]\n" in printed
    assert "\n  [HOLDS] thm31.loss_size vs m: alpha = +0.000 [+0.000, +0.000]\n" in printed
    saved = json.loads((tmp_path / rp.SWEEP_REPORT).read_text())
    assert saved["by"] == ["m"] and [g["points"] for g in saved["groups"]] == [3, 3, 2]
    row = next(c for c in saved["claims"] if c["id"] == "thm33.C_signs")
    assert row["holds"] == [3, 2, 2] and row["applicable"] == [3, 3, 2] and row["fraction"] == [1.0, 0.6667, 1.0]
    order = next(o for o in saved["orders"] if o["id"] == "thm33.train_loss")
    assert (order["verdict"], order["variable"], order["margin"]) == (rp.FAILS, "m", -4.0)
    assert order["fit"]["alpha"] == 1.0 and order["fit"]["points"] == 8
    assert len(saved["orders"]) == len(ORDERS)


def test_order_table_of_a_sweep_that_varies_no_width():
    assert rp.format_order_table([]) == ("statements of order: none judged (the sweep varies none of m, n, the "
                                         "init scale)")


@pytest.mark.parametrize("argv, message", [
    (["--by", "L"], "flowsim report: error: --by: 'L' is not a grid key of the sweep in "),
    (["--by", "m"], "flowsim report: error: --by: groups the points of a sweep, and "),
])
def test_flowsim_report_refuses_a_grouping_it_cannot_make(swept, capsys, argv, message):
    target = swept if argv[1] == "L" else swept / "points" / "m=16_seed=0"
    assert cli.main(["report", str(target), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and len(err.strip().splitlines()) == 1
