"""Synthetic trajectories for the claim and sweep tests: closed-form curves on which every claim
of the paper holds (:func:`ideal`), their start facts, and sweep directories of saved points.

Nothing here is integrated.  Time is measured in units of T1: the saved times are
``t_k = T1 10^((k - 150) / 50)`` for k = 0..250 (50 per decade from 1e-3 T1 to 100 T1, the
default log grid of a run with ``t_first = 1e-3 T1``, ``t_end = 100 T1``, ``saves = 252``),
and every phase marker sits on a saved time, so that margins are exact closed forms:
T0.5 at ``10^-0.6 T1``, T_correct at ``10^-0.4 T1``, T' at ``10^-0.3 T1``, T1 at save 151.
"""

from __future__ import annotations

import json
import math

import numpy as np

import flowsim
from flowsim import results
from flowsim.core.options import MarkerOptions, save_times

#: The theory preset's sizes (Condition 1's sizes and Assumption 2.3 hold for them).
SIZES = dict(n=18, L=4, d=33, m=64, m1=64)
SAVES, T_FIRST, T_END = 252, 1e-3, 100.0  # the grid, in units of T1
#: The markers' saves (index into ts: save 0 is t = 0, save k + 1 is the k-th point of the log grid).
AT = dict(rates_ordered=121, all_correct=131, one_target_margin=136, phase1_end=151, G3_negative=1,
          scores_leave_band=201)
C0 = 0.036  # sigma0 = C0 / sqrt(L m), about Condition 1's constant for these sizes
F0 = 0.005  # max_i |F(X_i)| at t = 0 (Lemma D.8: at most 0.01)
#: -dG3/dt over dG1/dt (= dG2/dt): 1.2 at T0.5, rising as tau^P to 1.3 at T1, then 1.3 (Lemmas 4.3, 4.5).
R_T05, R_PHASE2 = 1.2, 1.3
P = math.log(R_PHASE2 / R_T05) / (0.6 * math.log(10))
S_SHAPE = np.array([2.0, 1.05, 1.0, 0.5])  # S1..S4 over the loss: Definition F.1's ordering, S2/S3 = 1.05
S0 = np.array([[1.0, 0.2, 0.3], [0.4, 1.0, 0.5], [0.6, 0.7, 1.0]])
V0 = np.array([[1.0, 0.1, 0.2], [0.1, 1.0, 0.3], [0.2, 0.3, 1.0]])
#: Signs of the rates of Theorem 3.2: scores s12, s21 up and s31, s32 down; W_V's v12, v11, v22 up, v13, v23 down.
P_SCORES = np.array([[0, 1, 0], [1, 0, 0], [-1, -1, 0]], float)
P_VALUES = np.array([[1, 1, -1], [1, 1, -1], [-1, -1, 0]], float)
SCORE_RATE = 0.05  # d s12/dt = SCORE_RATE Lhat(t) / T1 (Lemma 4.7)


def times(T1: float = 1.0) -> np.ndarray:
    """The saved times of a run whose T1 is (about) ``T1``."""
    return save_times(T_END * T1, SAVES, "log", T_FIRST * T1)


def sigma1_of(T1: float, m: float, m1: float, C_T1: float = MarkerOptions.C_T1) -> float:
    """The sigma1 for which Definition E.2's cap C_T1 / (sigma1^2 m m1) is T1 (Theorem E.26)."""
    return math.sqrt(C_T1 / (m * m1 * T1))


def start_facts(T1: float = 1.0, **sizes) -> dict:
    """The facts of a start (``FlowResult.start_facts``) for :func:`ideal`'s curves: the rates at
    t = 0 in units of 1/T1, and the scales that make T1 Definition E.2's cap."""
    s = SIZES | sizes
    n, L, d, m, m1 = (s[k] for k in ("n", "L", "d", "m", "m1"))
    return {"softmax_dev": 1e-6,
            "G_rate": [1 / T1, 1 / T1, 0.0] + [1e-3 / T1] * (d - 3),
            "neuron_rate_target": [0.5 / (m1 * T1), 1.5 / (m1 * T1)],
            "neuron_rate_common": 0.0, "neuron_rate_irrelevant": 1e-3 / (m1 * T1),
            "dF_dt_min": [0.2 / T1, 0.1 / T1, 0.1 / T1, -0.3 / T1],
            "dF_dt_max": [0.4 / T1, 0.3 / T1, 0.3 / T1, -0.1 / T1],
            "n": n, "L": L, "d": d, "m": m, "m1": m1, "sigma0": C0 / math.sqrt(L * m),
            "sigma1": sigma1_of(T1, m, m1),
            "group_counts": [n // 2, n // 6, n // 6, n // 6], "irrelevant_max_uses": 1}


def curves(ts: np.ndarray, T1: float, d: int, law: float = 1.0) -> dict[str, np.ndarray]:
    """Every observable of :data:`flowsim.models.cooccurrence.observables.DESCRIPTIONS` in closed form, with
    ``tau = t / T1``:

    - loss ``1 / (2 (1 + tau))`` to T1; after it ``1 / (4 + 2 (tau - 1)^law)`` (Theorem F.8 for
      ``law = 1``); the one-target groups' loss rises 4% and falls back by T_correct (Fig. 1(b));
    - min_i y_i F_i ``F0 (tau - T_c) / (tau + T_c)``: negative at the start, zero at T_correct;
    - G(mu_1) = G(mu_2) = tau to T1, then ``1 + log tau``; -dG3/dt = r(tau) dG1/dt with
      r = R_PHASE2 tau^P in Phase 1 (1.2 at T0.5) and R_PHASE2 after;
    - the scores and W_V correlations move with rates of the signs of Theorem 3.2, the scores'
      proportional to the loss (Lemma 4.7);
    - S_k = S_SHAPE_k Lhat: Definition F.1's ordering, S2/S3 = 1.05."""
    tau = ts / T1
    one = np.ones_like(tau)
    early = tau <= 1
    late = np.maximum(tau - 1, 0.0)
    loss = np.where(early, 0.5 / (1 + tau), 1 / (4 + 2 * late**law))
    T_c = tau[AT["all_correct"]]
    one_target = 0.5 * (1 + 4 * tau * np.exp(-10 * tau)) / (1 + tau)
    G12 = np.where(early, tau, 1 + np.log(np.maximum(tau, 1.0)))
    G3 = np.where(early, -R_PHASE2 * tau ** (P + 1) / (P + 1), -R_PHASE2 * G12 + R_PHASE2 * P / (P + 1))
    dG12 = np.where(early, 1.0, 1 / np.maximum(tau, 1.0)) / T1
    dG3 = -np.where(early, R_PHASE2 * tau**P, R_PHASE2) * dG12
    G = np.concatenate([np.stack([G12, G12, G3], 1), np.full((len(ts), d - 3), 1e-4)], 1)
    score_rate = SCORE_RATE * loss / T1
    drift = 0.025 * np.log1p(tau)
    S = loss[:, None] * S_SHAPE
    total = S.sum(1)
    near = tau / (1 + tau)
    return dict(
        loss=loss, loss_groups=np.stack([loss, one_target, one_target, loss], 1),
        min_margin=F0 * (tau - T_c) / (tau + T_c), F_abs_max=F0 + near, test_loss=1.2 * loss,
        grad_norm2=0.5 / (T1 * (1 + tau) ** 2), G=G, G_special=G[:, :3], G_rate=np.stack([dG12, dG12, dG3], 1),
        u_norm2=(1 + near) * 10 / T1,  # ||u(0)||^2 = sigma1^2 m m1 = C_T1 / T1
        scores=S0 + drift[:, None, None] * P_SCORES, scores_rate=score_rate[:, None, None] * P_SCORES,
        score_rate_per_count=2 * score_rate,
        value_corr=V0 + 0.4 * drift[:, None, None] * P_VALUES,
        value_corr_rate=(0.01 / (T1 * (1 + tau)))[:, None, None] * P_VALUES,
        key_corr=np.broadcast_to(V0, (len(ts), 3, 3)), query_corr=np.broadcast_to(V0, (len(ts), 3, 3)),
        neuron_gram_change=0.01 * near, neuron_corr_change=1e-3 * near,
        neuron_value_change=np.stack([1e-3 * near, 1e-5 * near], 1), value_corr_change=1e-3 * near,
        score_change=1e-4 * near, KQ_change=1e-6 * near,
        S=S, balance_S2_S3=np.abs(S[:, 1] - S[:, 2]) / np.minimum(S[:, 1], S[:, 2]),
        balance_all_S234_S1=total / (S[:, 1] + S[:, 2] + S[:, 3] - S[:, 0]),
        balance_all_S1_S2=total / (S[:, 0] - S[:, 1]), balance_all_S1_S3=total / (S[:, 0] - S[:, 2]),
        drift_KQ=1e-12 * one, drift_WV=1e-12 * one,
        C=drift[:, None, None] * P_SCORES, C_irrelevant_max=1e-3 * drift,
    )


def ideal(change=None, *, T1: float = 1.0, law: float = 1.0, engine: str = "auto", status: str = "complete",
          stop: int | None = None, **sizes) -> flowsim.FlowResult:
    """The :func:`curves` as a FlowResult (events on their saves, :func:`start_facts`), altered by
    ``change(ts, observables, events, facts)`` if given; ``stop``: keep saves ``0..stop`` only
    (a run that stopped there, with ``status``), and the markers it reached."""
    s = SIZES | sizes
    grid = ts = times(T1)
    T1 = ts[AT["phase1_end"]]  # on the grid exactly
    obs = curves(ts, T1, s["d"], law)
    events = {name: float(ts[k]) for name, k in AT.items()}
    facts = start_facts(T1, **s)
    if change is not None:
        change(ts, obs, events, facts)
    t_end = float(ts[-1])
    if stop is not None:
        ts, obs = ts[:stop + 1], {k: v[:stop + 1] for k, v in obs.items()}
        events = {k: (t if t is not None and t <= ts[-1] else None) for k, t in events.items()}
    rng = np.random.default_rng(0)
    m, m1, d = s["m"], s["m1"], s["d"]
    p = flowsim.Params(W=rng.normal(size=(m1, m)), W_V=rng.normal(size=(m, d)), W_K=rng.normal(size=(m, d)),
                       W_Q=rng.normal(size=(m, d)), a=np.ones(m1))
    options = flowsim.FlowOptions.make(engine=engine, t_end=t_end, saves=SAVES, t_first=float(grid[1]))
    return flowsim.FlowResult(ts=ts, observables=obs, events=events, stats={}, params_init=p, params_final=p,
                              t_reached=float(ts[-1]), status=status, message="", grid=grid, chunks_done=1,
                              state=None, options=options, start_facts=facts)


def config_of(result: flowsim.FlowResult, values: dict) -> flowsim.RunConfig:
    """The configuration a synthetic ``result`` would have been run with: the theory preset at its
    sizes and save grid, with the grid ``values``."""
    f = result.start_facts
    return flowsim.RunConfig.preset("theory").merge(
        {k: f[k] for k in SIZES} | dict(t_end=result.options.t_end, saves=SAVES, t_first=result.options.save.t_first,
                                        engine=result.options.engine) | values)


def save_point(path, result: flowsim.FlowResult, values: dict) -> None:
    """``result`` saved as a result directory at ``path`` (with the grid ``values`` in its configuration)."""
    f = result.start_facts
    n, L, d = f["n"], f["L"], f["d"]
    groups = np.repeat([1, 2, 3, 4], f["group_counts"])
    data = flowsim.Dataset(tokens=np.zeros((n, L), int), labels=np.where(groups == 1, 1.0, -1.0), groups=groups,
                           embedding=np.eye(d))
    path.mkdir(parents=True)
    results.save(path, config_of(result, values), data, result.params_init, result, 0.0)


def write_sweep(root, grid: dict, point) -> None:
    """A sweep directory over ``grid`` (keys of RunConfig): the point of grid values ``v`` is
    ``point(v)`` (a FlowResult) saved under ``points/``, or not run yet where that is ``None``.
    The index holds stale verdicts ("does not hold" everywhere), which a report must not read."""
    import itertools

    names = []
    for combo in itertools.product(*grid.values()):
        values = dict(zip(grid, combo))
        name = "_".join(f"{k}={v}" for k, v in values.items())
        names.append(name)
        result = point(values)
        if result is not None:
            save_point(root / "points" / name, result, values)
    (root / "sweep.json").write_text(json.dumps({
        "format": "flowsim-sweep", "definition": {"base": {}, "grid": grid},
        "points": [{"name": n, "path": f"points/{n}", "verdicts": dict.fromkeys(flowsim.CLAIMS, "does not hold")}
                   for n in names]}))
