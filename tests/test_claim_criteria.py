"""Claim criteria held to the appendix's quantifiers: a claim that says "there is a constant C"
holds with any C > 0, whatever the marker constant that places its window.  Synthetic
trajectories with set exact rates (nothing integrated)."""

import numpy as np
import pytest

import flowsim
from flowsim.models.cooccurrence.claims.base import Trajectory
from flowsim.core.options import FlowOptions

TS = np.linspace(0.0, 1.0, 11)
T_HALF, T1 = 0.2, 0.8  # the window [T0.5, T1] holds the saves at 0.2, 0.3, ..., 0.8


def lemma43(left: np.ndarray, right: float = 0.3):
    """lem43.rates on rates dG1/dt = 1, dG2/dt = 0.9 and -dG3/dt = (1 + left) at each save, so
    the left inequality holds with C = left there and the right one with C = 1 - (1 + left) / 1.9."""
    dG = np.stack([np.ones_like(TS), np.full_like(TS, 0.9), -(1 + left)], axis=1)
    result = flowsim.FlowResult(ts=TS, observables={"G_rate": dG}, events=dict(rates_ordered=T_HALF, phase1_end=T1),
                                stats={}, params_init=None, params_final=None, t_reached=1.0, status="complete",
                                message="", grid=TS, chunks_done=1, state=None, options=FlowOptions())
    tr = Trajectory(result)
    claim = flowsim.CLAIMS["lem43.rates"]
    return claim.check(tr, claim.window.saves(tr))


def test_lemma_43_holds_with_any_positive_constant():
    """Theorem E.19: there exist T0.5 <= T1 and a constant 0 < C < 1 with both inequalities on
    [T0.5, T1].  The marker's C_rates = 0.1 places T0.5; the rates that follow it may hold the
    inequalities with a smaller constant only (0.05 here), which is the statement all the same."""
    assert FlowOptions().markers.C_rates == 0.1
    left = np.where(TS <= 0.3, 0.1, 0.05)
    out = lemma43(left)
    window = (TS >= T_HALF) & (TS <= T1)
    expected = min(np.min(left[window]), np.min(1 - (1 + left[window]) / 1.9))
    assert out.measured["largest_C"] == pytest.approx(expected) == 0.05
    assert out.margin.holds and out.measured["saves"] == 7
    # One save of the window where -dG3/dt falls to max(dG1/dt, dG2/dt): no constant C > 0 serves.
    left[6] = 0.0  # t = 0.6
    assert not lemma43(left).margin.holds
    # Outside the window it does not matter.
    left[6], left[9] = 0.05, -0.5  # t = 0.6, 0.9
    assert lemma43(left).margin.holds
