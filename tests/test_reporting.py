"""The claim checks on closed-form trajectories whose verdicts are known, and on a real flow."""

import json

import numpy as np
import pytest

import flowsim
from flowsim import reporting as rp

T1 = 1.0
S0 = np.array([[1.0, 0.2, 0.3], [0.4, 1.0, 0.5], [0.6, 0.7, 1.0]])
V0 = np.array([[1.0, 0.1, 0.2], [0.1, 1.0, 0.3], [0.2, 0.3, 1.0]])
# Directions of change: the target-target scores (s12, s21) up, the target-common ones (s31, s32) down.
P_SCORES = np.array([[0, 1, 0], [1, 0, 0], [-1, -1, 0]], float)
P_VALUES = np.array([[0, 1, -1], [1, 0, -1], [-1, -1, 0]], float)


def ideal(ts):
    """Closed-form curves on which every claim of spec 6 holds with room to spare (T1 = 1, m = 8)."""
    t = ts
    loss = 0.5 / (1 + t)
    one_target = 0.5 * (1 + 2 * t * np.exp(-5 * t)) / (1 + t)  # rises from 0, peaks, falls
    G12 = 0.8 * np.log1p(t)
    # Phase 1: -dG3/dt = 1.5 t / (1 + t^2) lies strictly between max(dG1, dG2) and dG1 + dG2 on
    # [T1/2, T1] and is small near t = 0; Phase 2: G1 + G3 < 0 < G1 + G2 + G3.
    G3 = np.where(t <= T1, -0.75 * np.log1p(t**2), -1.3 * G12 - 0.1)
    # ds_tt/dt = 0.05 Lhat exactly (Lemma 4.7) and the target-common scores fall at the same rate.
    change = 0.025 * np.log1p(t)
    return dict(
        loss=loss, test_loss=1.2 * loss, min_margin=t - T1,
        loss_groups=np.stack([loss, one_target, one_target, loss], 1),
        G_special=np.stack([G12, G12, G3], 1),
        scores=S0 + change[:, None, None] * P_SCORES,
        C=change[:, None, None] * P_SCORES,
        C_irrelevant_max=0.001 * np.log1p(t),
        value_corr=V0 + 0.01 * np.log1p(t)[:, None, None] * P_VALUES,
        key_corr=np.broadcast_to(V0, (len(t), 3, 3)), query_corr=np.broadcast_to(V0, (len(t), 3, 3)),
        neuron_gram_change=0.01 * t / (1 + t),
        balance_S2_S3=np.full_like(t, 0.1), balance_all_S234_S1=np.full_like(t, 2.0),
        balance_all_S1_S2=np.full_like(t, 2.0),
    )


def synthetic(change=None, T1_event=T1):
    ts = np.concatenate([[0.0], np.geomspace(1e-3, 100.0, 300)])
    obs = ideal(ts)
    if change is not None:
        change(ts, obs)
    rng = np.random.default_rng(0)
    p = flowsim.Params(W=rng.normal(size=(4, 8)), W_V=rng.normal(size=(8, 5)), W_K=rng.normal(size=(8, 5)),
                       W_Q=rng.normal(size=(8, 5)), a=np.ones(4))
    return flowsim.FlowResult(ts=ts, observables=obs, events=dict(phase1_end=T1_event), stats={},
                              params_init=p, params_final=p, t_reached=ts[-1], status="complete", message="",
                              grid=ts, chunks_done=1, state=None, settings={})


def failing(rows):
    return {r.id for r in rows if r.verdict == rp.FAILS}


def test_every_claim_holds_on_the_ideal_trajectory():
    rows = rp.check_claims(synthetic())
    assert [r.id for r in rows] == list(rp.CLAIMS) and len(rows) == 31
    assert [r.id for r in rows if r.verdict != rp.HOLDS] == []
    assert all(r.margin > 0 for r in rows)


def _set(key, fn):
    def change(ts, obs):
        obs[key] = fn(ts, obs[key].copy())
    return change


def _s31_rises(ts, x):
    x[ts > T1, 2, 0] = S0[2, 0] + 0.025 * np.log1p(ts[ts > T1])
    return x


def _I2_never_rises(ts, x):
    x[:, 1] = x[:, 0]
    return x


def _G3_positive_in_phase1(ts, x):
    x[ts <= T1, 2] *= -1
    return x


def _rate_constant(ts, obs):
    obs["scores"] = S0 + 0.025 * ts[:, None, None] * P_SCORES  # constant rate while Lhat falls 100-fold


def _denominator_changes_sign(ts, x):
    x[ts > 10] = -3.0
    return x


#: Changes to the ideal trajectory, each breaking the claims named with it and no other.
BROKEN = [
    (_set("G_special", _G3_positive_in_phase1), {"thm31.G_signs", "lem43.G_rates"}),
    (_set("loss", lambda ts, x: 0.1 * x), {"thm31.loss_constant"}),
    (_set("loss_groups", _I2_never_rises), {"lem42.one_target_rise_fall"}),
    (_set("value_corr", lambda ts, x: x + 0.5 * ts[:, None, None] * (ts[:, None, None] < T1)),
     {"thm31.near_init.value_corr"}),
    (_set("scores", _s31_rises), {"thm32.s31_down", "lem47.tc_same_rate"}),
    (_rate_constant, {"lem47.tt_rate_prop_loss"}),
    (_set("balance_S2_S3", lambda ts, x: x + ts), {"lem45.S2_S3_balanced"}),
    (_set("balance_all_S234_S1", _denominator_changes_sign), {"lem45.ratios_O1"}),
    (_set("C_irrelevant_max", lambda ts, x: 100 * x), {"thm33.C_irrelevant_small"}),
    (_set("test_loss", lambda ts, x: 100 * x), {"thm33.test_loss"}),
]


@pytest.mark.parametrize("change, expected", BROKEN)
def test_a_broken_claim_fails_alone(change, expected):
    rows = rp.check_claims(synthetic(change))
    assert failing(rows) == expected
    # The margin's sign is the verdict: negative for the broken claims, positive for the rest.
    assert {r.id for r in rows if r.margin < 0} == expected
    assert all(r.margin > 0 for r in rows if r.id not in expected)


def test_without_T1_the_phase_claims_are_not_applicable():
    rows = rp.check_claims(synthetic(T1_event=None))
    verdicts = [r.verdict for r in rows]
    assert verdicts[:-4] == [rp.NA] * (len(rows) - 4)
    assert verdicts[-4:] == [rp.HOLDS] * 4
    assert all(np.isnan(r.margin) for r in rows[:-4])


def test_report_on_a_real_flow(tiny_run, tmp_path, capsys):
    rows = rp.report(tiny_run, tmp_path)
    saved = json.loads((tmp_path / "report.json").read_text())
    assert [r["claim"] for r in saved] == [r.claim for r in rows] and len(rows) == 31
    assert all(r["verdict"] in (rp.HOLDS, rp.FAILS) for r in saved)
    printed = capsys.readouterr().out
    assert all(r.claim in printed for r in rows)
    # The T1 rows read the event time, and the attention-side changes from the saved trajectory.
    assert saved[0]["measured"]["T1"] == pytest.approx(tiny_run.events["phase1_end"], rel=1e-3)
    o, before = tiny_run.observables, tiny_run.ts <= tiny_run.events["phase1_end"]
    change = np.linalg.norm((o["key_corr"][before] - o["key_corr"][0]).reshape(before.sum(), -1), axis=1)
    key_corr = next(r for r in saved if r["id"] == "thm31.near_init.key_corr")
    assert key_corr["measured"]["max_relative_change"] >= np.max(change) / np.linalg.norm(o["key_corr"][0]) * (1 - 1e-3)
