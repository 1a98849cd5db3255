"""Gradient descent against hand computations and against the flow it discretizes."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flowsim


def _eq2_loss(mats, a, X, y):
    """Lhat written from Eq. (1)-(2) on the d x L sample matrices, independently of the engines."""
    F = flowsim.forward(flowsim.Params(*mats, a=a), X)
    return jnp.mean(jnp.log1p(jnp.exp(-y * F)))


_value_and_grad = jax.jit(jax.value_and_grad(_eq2_loss))


def _hand_grad(params, data):
    with jax.enable_x64(True):
        mats = tuple(jnp.asarray(m, jnp.float64) for m in (params.W, params.W_V, params.W_K, params.W_Q))
        value, grads = _value_and_grad(mats, jnp.asarray(params.a), jnp.asarray(data.X), jnp.asarray(data.labels))
        return [np.asarray(g) for g in grads], float(value)


def _step(params, lr):
    grads, _ = _hand_grad(*params)
    p = params[0]
    new = [np.asarray(m) - lr * g for m, g in zip((p.W, p.W_V, p.W_K, p.W_Q), grads)]
    return flowsim.Params(*new, a=p.a), grads


# Every run below saves 11 times, so that one compilation of the descent loop serves them all.


def test_ten_steps_by_hand(tiny):
    params, data = tiny
    lr = 0.05
    run = flowsim.gradient_descent(params, data, lr=lr, steps=10, save_every=1, n_test=64)
    path = [params]
    for _ in range(10):
        path.append(_step((path[-1], data), lr)[0])
    final = run.params_final
    for got, want in zip((final.W, final.W_V, final.W_K, final.W_Q), (path[-1].W, path[-1].W_V, path[-1].W_K, path[-1].W_Q)):
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(run.observables["loss"], [_hand_grad(p, data)[1] for p in path], rtol=1e-10)
    np.testing.assert_allclose(run.ts, lr * np.arange(11))
    assert run.stats == dict(steps=10, nfev=10) and run.settings["method"] == "gd"


def test_one_step_breaks_conservation_by_exactly_lr_squared(tiny):
    """Spec 7.3: the first-order terms of W_K W_K^T - W_Q W_Q^T (and W^T W - W_V W_V^T) cancel,
    so one step changes them by lr^2 (g_K g_K^T - g_Q g_Q^T) (and lr^2 (g_W^T g_W - g_V g_V^T))."""
    params, data = tiny
    lr = 0.05
    run = flowsim.gradient_descent(params, data, lr=lr, steps=10, save_every=1, n_test=64)
    p1, (gW, gV, gK, gQ) = _step((params, data), lr)
    W, V, K, Q = (np.asarray(m) for m in (params.W, params.W_V, params.W_K, params.W_Q))
    d_KQ = (p1.W_K @ p1.W_K.T - p1.W_Q @ p1.W_Q.T) - (K @ K.T - Q @ Q.T)
    d_WV = (p1.W.T @ p1.W - p1.W_V @ p1.W_V.T) - (W.T @ W - V @ V.T)
    np.testing.assert_allclose(d_KQ, lr**2 * (gK @ gK.T - gQ @ gQ.T), atol=1e-14)
    np.testing.assert_allclose(d_WV, lr**2 * (gW.T @ gW - gV @ gV.T), atol=1e-14)
    fro = np.linalg.norm
    np.testing.assert_allclose(run.observables["drift_KQ"][1], fro(d_KQ) / (fro(K @ K.T) + fro(Q @ Q.T)), rtol=1e-8)
    # W_V's drift is relative to the parts of W^T W - W_V W_V^T that move: (u u^T - u0 u0^T) / m1 and W_V W_V^T.
    u0 = W.T @ np.asarray(params.a)
    np.testing.assert_allclose(run.observables["drift_WV"][1], fro(d_WV) / (u0 @ u0 / W.shape[0] + fro(V @ V.T)),
                               rtol=1e-8)


def test_drift_grows_like_lr_squared_while_the_flow_conserves(tiny, tiny_run):
    params, data = tiny
    drift = [flowsim.gradient_descent(params, data, lr=lr, steps=10, save_every=1, n_test=64).observables["drift_WV"][-1]
             for lr in (0.002, 0.001)]
    assert 3.5 < drift[0] / drift[1] < 4.5
    gd = flowsim.gradient_descent(params, data, lr=0.01, steps=2000, save_every=200, n_test=64)
    assert gd.observables["drift_WV"][-1] > 1e4 * tiny_run.observables["drift_WV"].max()


def test_converges_to_the_flow_as_lr_shrinks(tiny):
    """First order in lr: halving lr halves the distance to the flow at the same times."""
    params, data = tiny
    errors = []
    for lr in (0.04, 0.02, 0.01):
        gd = flowsim.gradient_descent(params, data, lr=lr, steps=round(2 / lr), save_every=round(0.2 / lr), n_test=64)
        # chunk=2: 2 save slots per solve, as test_flow.py's chunked runs (one compiled solve).
        flow = flowsim.integrate(params, data, ts=gd.ts, rtol=1e-10, atol=1e-12, n_test=64, chunk=2)
        errors.append(max(np.max(np.abs(gd.observables[k] - flow.observables[k])) for k in ("loss", "G", "scores")))
    assert all(1.7 < errors[i] / errors[i + 1] < 2.3 for i in range(2)), errors


def test_phase_marker_is_the_first_saved_step_and_tracks_the_flow(tiny, tiny_run):
    params, data = tiny
    lr = 0.05
    gd = flowsim.gradient_descent(params, data, lr=lr, steps=10, save_every=1, n_test=64)
    T = gd.events["all_correct"]
    k = int(round(T / lr))
    assert gd.observables["min_margin"][k] >= 0 > gd.observables["min_margin"][k - 1]
    for name in ("all_correct", "phase1_end"):  # within a step of the flow's marker
        assert abs(gd.events[name] - tiny_run.events[name]) < lr, name


def test_divergence_raises_with_the_finite_part(tiny):
    params, data = tiny
    with pytest.raises(flowsim.FlowFailure, match="diverged") as info:
        flowsim.gradient_descent(params, data, lr=1e4, steps=40, save_every=1, n_test=64)
    res = info.value.result
    assert res.status == "failed" and np.all(np.isfinite(res.observables["loss"]))


@pytest.mark.parametrize("kwargs, match", [
    (dict(lr=0.0), "lr must be a positive"),
    (dict(steps=0), "steps must be an integer >= 1"),
    (dict(save_every=0), "save_every must be an integer >= 1"),
    (dict(precision=16), "precision must be one of 64, 32"),
])
def test_bad_arguments(tiny, kwargs, match):
    params, data = tiny
    with pytest.raises(ValueError, match=match):
        flowsim.gradient_descent(params, data, **kwargs)


def test_the_steps_default_to_the_flow_horizon_over_the_learning_rate():
    """steps = round(t_end / lr), t_end defaulting to the flow's 300: the paper's 30000 at lr 0.01,
    from DescentOptions as from a configuration (the command line), which record t_end = steps lr."""
    for lr, t_end, steps in ((0.01, None, 30000), (0.02, None, 15000), (0.03, None, 10000), (0.02, 1.0, 50),
                             (7.0, 1.0, 1)):
        options = flowsim.DescentOptions(lr=lr, **({} if t_end is None else {"t_end": t_end}))
        config = flowsim.RunConfig().merge({"method": "gd", "lr": lr} | ({} if t_end is None else {"t_end": t_end}))
        assert options.steps == config.resolved().steps == steps
        assert options.t_end == config.resolved().t_end == steps * lr
    given = flowsim.DescentOptions(lr=0.01, steps=100, t_end=50.0)  # given steps win; t_end is what they reach
    assert given.steps == 100 and given.t_end == pytest.approx(1.0)


def test_gradient_descent_and_the_command_line_take_the_same_steps(tiny, tmp_path):
    from test_cli_analysis import TINY, run_cli

    params, data = tiny
    run = flowsim.gradient_descent(params, data, lr=0.5, saves=11, n_test=64)
    assert run_cli(["integrate", *TINY, "--method", "gd", "--lr", "0.5", "--out", str(tmp_path), "--quiet"])[0] == 0
    meta = json.loads((tmp_path / "run.json").read_text())
    assert run.stats["steps"] == meta["stats"]["steps"] == meta["config"]["steps"] == round(300 / 0.5)
    assert run.ts[-1] == meta["t_reached"] == pytest.approx(300.0)
