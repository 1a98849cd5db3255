"""The integrated flow against independent computations: SciPy's DOP853 on an independently
written loss, tolerance convergence, conservation laws, monotone loss, events by bisection."""

import dataclasses

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import solve_ivp
from scipy.optimize import brentq

import _reference
import flowsim
from flowsim.core.controller import evaluations_per_step
from flowsim.models.cooccurrence.flow import FlowFailure


def _eq1_loss(flat, shapes, a, X, y):
    """Lhat written straight from Eq. (1)-(2) on the d x L sample matrices (no gathers)."""
    parts, i = [], 0
    for shp in shapes:
        size = int(np.prod(shp))
        parts.append(flat[i : i + size].reshape(shp))
        i += size
    W, WV, WK, WQ = parts
    F = flowsim.forward(flowsim.Params(W=W, W_V=WV, W_K=WK, W_Q=WQ, a=a), X)
    return jnp.mean(jnp.log1p(jnp.exp(-y * F)))


def _scipy_reference(params, data, t_eval):
    """A tight-tolerance SciPy integration of d theta/dt = -grad Lhat, independent of diffrax."""
    with jax.enable_x64(True):
        mats = (params.W, params.W_V, params.W_K, params.W_Q)
        shapes = [m.shape for m in mats]
        flat0 = np.concatenate([np.asarray(m, np.float64).ravel() for m in mats])
        grad = jax.jit(jax.grad(_eq1_loss), static_argnums=1)
        X, y, a = data.X, data.labels, params.a
        sol = solve_ivp(lambda t, th: -np.asarray(grad(jnp.asarray(th), tuple(shapes), a, X, y)),
                        (0.0, t_eval[-1]), flat0, method="DOP853", rtol=1e-12, atol=1e-13, t_eval=t_eval)
        assert sol.success
        out = []
        for th in sol.y.T:
            p, i = [], 0
            for shp in shapes:
                p.append(th[i : i + int(np.prod(shp))].reshape(shp))
                i += int(np.prod(shp))
            P = flowsim.Params(W=p[0], W_V=p[1], W_K=p[2], W_Q=p[3], a=a)
            out.append(dict(loss=float(flowsim.loss(P, data)), G=np.asarray(flowsim.G(P, data.embedding)),
                            scores=np.asarray(flowsim.attention_scores(P, data.embedding))))
        return out


def test_matches_independent_scipy_integration(tiny, tiny_run):
    params, data = tiny
    ref = _scipy_reference(params, data, tiny_run.ts[[10, 25, -1]])
    for k, i in enumerate([10, 25, -1]):
        o = {key: v[i] for key, v in tiny_run.observables.items()}
        np.testing.assert_allclose(o["loss"], ref[k]["loss"], rtol=1e-5)
        np.testing.assert_allclose(o["G"], ref[k]["G"], rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(o["scores"], ref[k]["scores"], rtol=1e-4, atol=1e-4)


def test_random_basis_theory_init_matches_scipy():
    with jax.enable_x64(True):
        data = flowsim.make_dataset(jax.random.key(2), n=12, L=4, d=8, embedding="random")
        params = flowsim.init_params(jax.random.key(3), d=8, m=6, m1=10, scheme="theory-unit", L=4, sigma0=1.0, sigma1=1.0)
    # tiny_run's save slots and test set: the embedding is an input, so the same compiled solve.
    run = flowsim.integrate(params, data, t_end=50.0, saves=41, n_test=64)
    ref = _scipy_reference(params, data, run.ts[-1:])[0]
    np.testing.assert_allclose(run.observables["loss"][-1], ref["loss"], rtol=1e-5)
    np.testing.assert_allclose(run.observables["G"][-1], ref["G"], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(run.observables["scores"][-1], ref["scores"], rtol=1e-4, atol=1e-4)


def test_error_shrinks_with_rtol(tiny):
    params, data = tiny
    # The reference at a 1e4 times tighter tolerance (its error ~1e-11): the same compiled solve as
    # the others and tiny_run's, as the tolerances are inputs of the program, not constants.
    ref = flowsim.integrate(params, data, t_end=20.0, saves=41, n_test=64, rtol=1e-12, atol=1e-14)
    errs = []
    for rtol in (1e-5, 1e-7, 1e-9):
        r = flowsim.integrate(params, data, t_end=20.0, saves=41, n_test=64, rtol=rtol, atol=rtol * 1e-2)
        errs.append(max(np.max(np.abs(r.observables[k] - ref.observables[k])) for k in ("loss", "G", "scores")))
    assert errs[0] > errs[1] > errs[2]
    assert errs[2] < 1e-7


def test_conservation_laws_and_monotone_loss(tiny_run):
    """Spec 7.3-7.4: both Gram differences are constant, and the loss never increases."""
    o = tiny_run.observables
    assert np.max(o["drift_KQ"]) < 1e-8 and np.max(o["drift_WV"]) < 1e-8
    assert np.all(np.diff(o["loss"]) <= 1e-12)
    # dLhat/dt = -||grad Lhat||^2: the saved loss drop over each pair of consecutive save intervals
    # against Simpson's rule for unequal intervals on grad_norm2.  Over the first 8 pairs it errs by
    # 9.3e-8 at most (measured); the trapezoid rule's O(h^2) error is 6.4e-6 there, 7% later on.
    t, g2, loss = tiny_run.ts[:10], o["grad_norm2"][:10], o["loss"][:10]
    h0, h1 = np.diff(t)[:-1], np.diff(t)[1:]
    simpson = (h0 + h1) / 6 * ((2 - h1 / h0) * g2[:-2] + (h0 + h1) ** 2 / (h0 * h1) * g2[1:-1] + (2 - h0 / h1) * g2[2:])
    np.testing.assert_allclose(loss[:-2] - loss[2:], simpson, rtol=1e-6)


def test_conservation_is_exact_to_integration_accuracy(tiny):
    """Conservation drift shrinks with the tolerance: it measures integration error, not model error."""
    params, data = tiny
    loose = flowsim.integrate(params, data, t_end=20.0, saves=41, n_test=64, rtol=1e-5, atol=1e-7)
    tight = flowsim.integrate(params, data, t_end=20.0, saves=41, n_test=64, rtol=1e-10, atol=1e-12)
    assert np.max(tight.observables["drift_WV"]) < 1e-2 * np.max(loose.observables["drift_WV"])


def test_all_correct_equals_bisection_on_dense_solution(tiny, tiny_run):
    """T_correct (all_correct) from the event against brentq on min_i y_i F_i of an independent
    dense diffrax solution."""
    params, data = tiny
    with jax.enable_x64(True):
        y0 = (params.W, params.W_V, params.W_K, params.W_Q)

        def vf(t, y, args):
            grad = jax.grad(lambda yy: flowsim.loss(flowsim.Params(*yy, a=params.a), data))(y)
            return jax.tree.map(jnp.negative, grad)

        sol = diffrax.diffeqsolve(diffrax.ODETerm(vf), diffrax.Tsit5(), 0.0, 2.0, None, y0,
                                  saveat=diffrax.SaveAt(dense=True),
                                  stepsize_controller=diffrax.PIDController(rtol=1e-12, atol=1e-14),
                                  max_steps=100_000)

        # One compiled program for brentq's evaluations (eagerly, each one compiled several);
        # the solution is an argument, not a constant: its dense output holds max_steps rows.
        margin_at = eqx.filter_jit(lambda sol, t: flowsim.margins(flowsim.Params(*sol.evaluate(t), a=params.a),
                                                                  data).min())

        def min_margin(t):
            return float(margin_at(sol, jnp.asarray(t, jnp.float64)))

        t1 = brentq(min_margin, 1e-6, 2.0, xtol=1e-14)
    T1 = tiny_run.events["all_correct"]
    assert T1 is not None
    np.testing.assert_allclose(T1, t1, rtol=1e-6)
    # And the saved minimum margin changes sign there.
    o = tiny_run.observables["min_margin"]
    assert np.all(o[tiny_run.ts < T1] < 0) and o[np.searchsorted(tiny_run.ts, T1)] > 0


def test_events_at_start_and_never(tiny, tiny_run):
    params, data = tiny
    # Starting from a point past T1, the phase boundary holds at once: its time is 0.
    after = flowsim.integrate(tiny_run.params_final, data, t_end=1.0, saves=41, n_test=64)
    assert after.events["all_correct"] == 0.0
    # A horizon shorter than T_correct and T1 reaches neither.
    short = flowsim.integrate(params, data, t_end=0.1, saves=41, n_test=64)
    assert short.events["all_correct"] is None and short.events["phase1_end"] is None
    assert tiny_run.events["G3_negative"] is not None


def test_step_limit_fails_with_partial_result(tiny):
    """diffrax's own step limit, inside one solve (saves=3: one chunk from 0 to t_end, which
    takes some 80 steps); max_steps=20 and 2 save slots as test_cli.py's failing run, so that
    the two share one compiled solve."""
    params, data = tiny
    with pytest.raises(FlowFailure, match=r"failed at t=") as info:
        flowsim.integrate(params, data, t_end=20.0, saves=3, n_test=64, max_steps=20)
    res = info.value.result
    assert res.status == "failed" and 0 < res.t_reached < 20.0
    assert len(res.ts) == len(res.observables["loss"]) >= 1


def test_resume_is_bit_identical(tiny, tiny_run):
    params, data = tiny
    partial = []

    def stop_after_two(result):
        partial.append(result)
        if len(partial) == 2:
            raise KeyboardInterrupt

    # chunk=2: the chunks of test_restarts_continue_with_the_carried_step (one compiled solve).
    with pytest.raises(KeyboardInterrupt):
        flowsim.integrate(params, data, t_end=20.0, saves=41, n_test=64, chunk=2, callback=stop_after_two)
    assert partial[-1].chunks_done == 2 and partial[-1].t_reached == partial[-1].grid[4]
    whole = flowsim.integrate(params, data, t_end=20.0, saves=41, n_test=64, chunk=2)
    resumed = flowsim.integrate(params, data, t_end=20.0, saves=41, n_test=64, chunk=2, resume=partial[-1])
    assert resumed.events == whole.events and resumed.stats == whole.stats
    for k in whole.observables:
        assert np.array_equal(resumed.observables[k], whole.observables[k], equal_nan=True), k
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(resumed.params_final), jax.tree.leaves(whole.params_final)))
    # A damaged state is refused at once (it used to be stepped until max_steps, then a ValueError).
    damaged = dataclasses.replace(partial[-1], state=jax.tree.map(lambda x: np.full(np.shape(x), np.nan), partial[-1].state))
    with pytest.raises(ValueError, match="state is not finite"):
        flowsim.integrate(params, data, t_end=20.0, saves=41, n_test=64, chunk=2, resume=damaged)


def test_float32_on_request(tiny, tiny_run):
    params, data = tiny
    r = flowsim.integrate(params, data, t_end=20.0, saves=41, n_test=64, precision=32, rtol=1e-5, atol=1e-7)
    assert r.observables["loss"].dtype == np.float32
    # Measured against float64: final loss 2.2e-6, T1 5.2e-6 (float32 at the solver's rtol 1e-5).
    np.testing.assert_allclose(r.observables["loss"][-1], tiny_run.observables["loss"][-1], rtol=2e-5)
    np.testing.assert_allclose(r.events["phase1_end"], tiny_run.events["phase1_end"], rtol=5e-5)
    assert tiny_run.observables["loss"].dtype == np.float64
    # The library leaves JAX's global precision as it found it.
    assert jnp.zeros(1).dtype == jnp.float32


def test_function_evaluation_count_is_exact(tiny):
    """nfev from the tableau against a diffrax solve that counts its vector-field calls."""
    params, data = tiny
    calls = []
    with jax.enable_x64(True):
        y0 = (params.W, params.W_V, params.W_K, params.W_Q)

        def vf(t, y, args):
            jax.debug.callback(lambda: calls.append(1))
            grad = jax.grad(lambda yy: flowsim.loss(flowsim.Params(*yy, a=params.a), data))(y)
            return jax.tree.map(jnp.negative, grad)

        for solver in (diffrax.Tsit5(), diffrax.Dopri8(), diffrax.Bosh3()):
            calls.clear()
            sol = diffrax.diffeqsolve(diffrax.ODETerm(vf), solver, 0.0, 3.0, None, y0,
                                      stepsize_controller=diffrax.PIDController(rtol=1e-6, atol=1e-8))
            jax.block_until_ready(sol.ys)
            per, extra = evaluations_per_step(solver)
            # Exact per step; the start-up evaluations of diffrax's step-size guess vary by one.
            assert 0 <= len(calls) - per * int(sol.stats["num_steps"]) - extra <= 1, type(solver).__name__
    assert evaluations_per_step(diffrax.Kvaerno5()) is None


@pytest.mark.parametrize("kwargs, match", [
    (dict(t_end=-1.0), "t_end must be a positive finite number"),
    (dict(t_end=float("nan")), "t_end must be a positive finite number"),
    (dict(rtol=0.0), "rtol must be a positive"),
    (dict(solver="euler"), "solver must be one of"),
    (dict(precision=16), "precision must be one of 64, 32"),
    (dict(saves=1), "saves must be an integer >= 2"),
    (dict(engine="nope"), "engine must be one of"),
    (dict(precision=32, rtol=1e-13), "rtol=1e-13 cannot be met in float32"),
    (dict(ts=(0.0, 0.5, 2.0)), "ts must end at t_end=1"),
])
def test_bad_arguments(tiny, kwargs, match):
    params, data = tiny
    with pytest.raises(ValueError, match=match):
        flowsim.integrate(params, data, **{"t_end": 1.0, **kwargs})


def test_score_band_and_G3_events_match_saved_observables(tiny_run):
    """Each event time sits where its saved observable crosses the threshold."""
    ts, o = tiny_run.ts, tiny_run.observables
    s = o["scores"]
    excursion = np.max(np.abs(s - s[0]), axis=(1, 2)) - 0.1 * np.max(np.abs(s[0]))
    t_band = tiny_run.events["scores_leave_band"]
    assert t_band is not None and t_band > 0
    assert np.all(excursion[ts < t_band] < 0) and excursion[np.searchsorted(ts, t_band)] > 0
    G3 = o["G_special"][:, 2]
    t_g3 = tiny_run.events["G3_negative"]
    if t_g3 == 0.0:
        assert G3[0] <= 0
    else:
        assert np.all(G3[ts < t_g3] > 0) and G3[np.searchsorted(ts, t_g3)] < 0


def test_restarts_continue_with_the_carried_step(tiny, tiny_run):
    """Every chunk boundary and event restarts the solve; it continues with the step the
    controller proposed, so splitting a run costs about one (boundary-clipped) step per extra
    solve.  Guessing the first step anew at each restart costs several."""
    params, data = tiny
    whole = tiny_run  # chunks of 25 saves
    split = flowsim.integrate(params, data, t_end=20.0, saves=41, n_test=64, chunk=2)
    extra_solves = split.stats["solves"] - whole.stats["solves"]
    # Measured: 18 extra solves cost 9 extra steps with the carried step, 22 with fresh guesses.
    assert extra_solves >= 15
    assert split.stats["steps"] - whole.stats["steps"] <= extra_solves
    np.testing.assert_allclose(split.observables["loss"], whole.observables["loss"], rtol=1e-6)


def test_phase1_end_is_where_definition_e2_is_first_left(tiny, tiny_run):
    """T1 of Definition E.2 against the bounds evaluated by the numpy reference on the matrices of
    a run stopped at T1: there the largest of the four quantities over its bound is 1 (or T1 is
    the cap C_T1 / (sigma1^2 m m1), sigma1 measured from W), and just before it all are below."""
    params, data = tiny
    k = flowsim.MarkerOptions()
    T1 = tiny_run.events["phase1_end"]
    W0, V0, K0, Q0 = (np.asarray(x) for x in (params.W, params.W_V, params.W_K, params.W_Q))
    m1, m = W0.shape
    n, d = data.n, data.d
    cap = k.C_T1 / (np.mean(W0**2) * m * m1)
    sigma0 = np.sqrt(np.mean(np.concatenate([V0.ravel(), K0.ravel(), Q0.ravel()]) ** 2))
    R = k.R_neuron / m1
    bounds = np.array([R, k.R_irrelevant * (R / n + R / np.sqrt(m)), k.R_scores / m**1.5, k.R_KQ * sigma0**2 * np.sqrt(m)])
    E = np.asarray(data.embedding)
    net0 = _reference.Net.of(params)

    def ratios(t):
        # tiny_run's settings and engine: one compiled solve serves every t.
        net = _reference.Net.of(flowsim.integrate(params, data, t_end=t, saves=41, n_test=64).params_final)
        values = lambda p: (p.a[:, None] * p.W) @ p.W_V @ E
        dv = np.abs(values(net) - values(net0))
        gram = lambda A, B: (A @ E).T @ (B @ E)
        KQ = max(np.abs(gram(net.W_K, net.W_K) - gram(K0, K0)).max(), np.abs(gram(net.W_Q, net.W_Q) - gram(Q0, Q0)).max())
        items = np.array([dv[:, :3].max(), dv[:, 3:].max(), np.abs(gram(net.W_K, net.W_Q) - gram(K0, Q0)).max(), KQ])
        return items / bounds

    at, before = ratios(T1), ratios(T1 * (1 - 1e-4))
    assert np.all(before < 1) and T1 < cap * (1 + 1e-9)
    assert max(at.max(), T1 / cap) == pytest.approx(1.0, abs=1e-6)


def test_event_root_finder_locates_a_crossing_known_only_to_a_few_digits():
    """A marker's condition formed by cancellation (a score change of 1e-9 on scores of 1e4, a
    difference of two rates of 1e6) carries rounding noise far above 1e-10 at its root; the root
    finder must stop on the bracket around the time, not wait for |c| < 1e-10 (optimistix's
    Bisection did, ran out of steps, and the run failed at the marker).  Here c = 1e6 (t - t*)
    plus noise of 1e-3: the time is located to within noise / slope = 1e-9 of t* = 3e-8."""
    import optimistix as optx

    from flowsim.core.crossing import make_event

    with jax.enable_x64(True):
        noisy = lambda t, _: 1e6 * (t - 3e-8) + 1e-3 * jnp.sin(1e13 * t)
        finder = make_event(lambda t, y, args: jnp.zeros(1), 64).root_finder
        sol = optx.root_find(noisy, finder, y0=jnp.array(1e-7), throw=False,
                             options=dict(lower=jnp.array(0.0), upper=jnp.array(1e-7)))
        assert sol.result == optx.RESULTS.successful
        assert abs(float(sol.value) - 3e-8) <= 1e-9
        # A clean crossing at 1e-17 (a Kaiming start at m = 10^8) is located to 1e-12 of itself.
        sol = optx.root_find(lambda t, _: t - 1e-17, finder, y0=jnp.array(1e-15), throw=False,
                             options=dict(lower=jnp.array(0.0), upper=jnp.array(1e-15)))
        assert sol.result == optx.RESULTS.successful and abs(float(sol.value) / 1e-17 - 1) <= 1e-11
