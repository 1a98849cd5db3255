"""The gradient-flow ODE d theta/dt = -grad Lhat(theta) (Eq. 2), integrated by diffrax in resumable chunks."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from typing import Any

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import PyTree

from .data import Dataset, sample_test_set
from .engines import FlowArgs, make_engine, reference
from .events import EVENT_NAMES, event_values, fired, make_event
from .model import Params
from .observables import observables

SOLVERS = {
    "tsit5": diffrax.Tsit5,
    "dopri5": diffrax.Dopri5,
    "dopri8": diffrax.Dopri8,
    "bosh3": diffrax.Bosh3,
    "kvaerno5": diffrax.Kvaerno5,
}
GRIDS = ("log", "linear")
PRECISIONS = (64, 32)


class FlowFailure(RuntimeError):
    """The solver failed (step limit, non-finite state); ``result`` holds everything computed."""

    def __init__(self, message: str, result: "FlowResult"):
        super().__init__(message)
        self.result = result


@dataclasses.dataclass
class FlowResult:
    """A trajectory: saved times, observables, event times, solver statistics and end points.

    ``observables[k][i]`` is observable ``k`` (see ``flowsim.observables.DESCRIPTIONS``) at
    ``ts[i]``.  ``events`` maps each name of ``flowsim.events.EVENT_NAMES`` to its time
    (``0.0`` if it holds at t = 0, ``None`` if not reached).  ``stats`` counts solver steps
    (attempted, accepted, rejected), diffeqsolve calls (``solves``: one per chunk plus one per
    event) and vector-field evaluations (``nfev``, from the solver's tableau, see
    :func:`evaluations_per_step`; ``None`` for implicit solvers, whose Newton iterations
    diffrax does not report).

    A ``"running"`` result (the one passed to ``callback``) can be finished with
    ``integrate(..., resume=result)``: ``state`` and ``chunks_done`` say where it stopped.
    A ``"failed"`` one cannot: its state is where the solver stopped, inside a chunk.
    """

    ts: np.ndarray
    observables: dict[str, np.ndarray]
    events: dict[str, float | None]
    stats: dict[str, int | None]
    params_init: Params
    params_final: Params
    t_reached: float
    status: str
    message: str
    grid: np.ndarray
    chunks_done: int
    state: PyTree
    settings: dict[str, Any]

    @property
    def phase1_end(self) -> float | None:
        """T1: the first time every training sample is classified correctly (Theorem 3.1)."""
        return self.events["phase1_end"]


def save_times(t_end: float, saves: int = 201, grid: str = "log", t_first: float | None = None) -> np.ndarray:
    """Saved times: ``0``, then ``saves - 1`` points up to ``t_end``, log-spaced from ``t_first``
    (default ``min(1e-3, t_end / saves)``) or evenly spaced."""
    check_positive("t_end", t_end)
    if int(saves) != saves or saves < 2:
        raise ValueError(f"saves must be an integer >= 2, got {saves}")
    if grid == "linear":
        return np.linspace(0.0, t_end, int(saves))
    if grid != "log":
        raise ValueError(f"grid must be one of {', '.join(GRIDS)}, got {grid!r}")
    t_first = min(1e-3, t_end / saves) if t_first is None else float(t_first)
    if not 0 < t_first < t_end:
        raise ValueError(f"t_first must be in (0, t_end={t_end}), got {t_first}")
    return np.concatenate([[0.0], np.geomspace(t_first, t_end, int(saves) - 1)])


def check_positive(name: str, value) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}") from None
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return v


def make_solver(name: str, rtol: float, atol: float):
    """A diffrax solver by name, and the PID controller that adapts its steps."""
    if name not in SOLVERS:
        raise ValueError(f"solver must be one of {', '.join(SOLVERS)}, got {name!r}")
    check_positive("rtol", rtol)
    check_positive("atol", atol)
    # Tolerances as arrays, so that changing them does not recompile the solve.
    return SOLVERS[name](), diffrax.PIDController(rtol=jnp.asarray(rtol), atol=jnp.asarray(atol))


def evaluations_per_step(solver) -> tuple[int, int] | None:
    """(vector-field evaluations per attempted step, start-up ones per solve) for an explicit
    Runge-Kutta solver, from its Butcher tableau: every stage but the first is evaluated on each
    attempted step, and one more at the start (diffrax's initial step-size guess may take one
    more, which this count leaves out)."""
    tableau = getattr(solver, "tableau", None)
    if tableau is None or not isinstance(tableau, diffrax.ButcherTableau) or tableau.implicit:
        return None
    stages = len(tableau.c) + 1
    return stages - 1, 1


@eqx.filter_jit
def _solve(engine, solver, controller, event, y0, t0, t1, ts, args, max_steps):
    saveat = diffrax.SaveAt(
        subs=[
            diffrax.SubSaveAt(ts=ts, fn=lambda t, y, a: observables(engine, y, a)),
            diffrax.SubSaveAt(t1=True),
        ]
    )
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(engine.vector_field),
        solver,
        t0,
        t1,
        dt0=None,
        y0=y0,
        args=args,
        saveat=saveat,
        stepsize_controller=controller,
        event=event,
        max_steps=max_steps,
        throw=False,
    )
    return sol.ts, sol.ys, sol.result, sol.stats


@eqx.filter_jit
def _observe(engine, y, args):
    return observables(engine, y, args), event_values(engine, y, args)


def _as_dtype(tree, dtype):
    return jax.tree.map(lambda x: jnp.asarray(x, dtype) if jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating) else x, tree)


def integrate(
    params: Params,
    dataset: Dataset,
    t_end: float = 300.0,
    *,
    solver: str = "tsit5",
    rtol: float = 1e-8,
    atol: float = 1e-10,
    saves: int = 201,
    grid: str = "log",
    ts=None,
    max_steps: int = 100_000,
    precision: int = 64,
    engine: str = "params",
    band: float = 0.1,
    test_set: Dataset | None = None,
    n_test: int = 2000,
    test_key=None,
    chunk: int = 25,
    progress: bool = False,
    callback: Callable[[FlowResult], None] | None = None,
    resume: FlowResult | None = None,
) -> FlowResult:
    """Integrate the gradient flow ``d theta/dt = -grad Lhat(theta)`` (Eq. 2) from ``params``.

    diffrax's adaptive ``solver`` (``tsit5``, ``dopri5``, ``dopri8``, ``bosh3`` or the implicit
    ``kvaerno5``) with a PID controller at ``rtol``/``atol`` runs from 0 to ``t_end``, saving
    every observable at ``ts`` (default :func:`save_times` with ``saves`` points on a ``grid``).
    The phase-boundary events of :mod:`flowsim.events` are located by root finding and the
    integration carries on past them.

    ``precision=64`` (default) integrates in float64 inside ``jax.enable_x64`` without
    changing JAX's global setting; ``precision=32`` integrates in float32.  The integration runs
    in chunks of ``chunk`` saved times; ``callback(partial_result)`` is called after each (for
    checkpoints), and ``resume=partial_result`` continues a partial run to the same result an
    uninterrupted run gives.  ``max_steps`` bounds the total number of solver steps.
    Raises :class:`FlowFailure` (with the partial result) if the solver fails.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be 64 or 32, got {precision!r}")
    check_positive("band", band)
    if int(max_steps) != max_steps or max_steps < 1:
        raise ValueError(f"max_steps must be a positive integer, got {max_steps}")
    if int(chunk) != chunk or chunk < 1:
        raise ValueError(f"chunk must be a positive integer, got {chunk}")
    grid_ts = save_times(t_end, saves, grid) if ts is None else _check_ts(ts)
    if resume is not None and resume.status != "running":
        raise ValueError(f"resume: only a running result (from callback) can be resumed, got a {resume.status} one")
    if resume is not None and not np.array_equal(resume.grid, grid_ts):
        raise ValueError("resume: the saved times differ from the run being resumed")
    if params.d != dataset.d:
        raise ValueError(f"params have d={params.d} but the dataset has d={dataset.d}")
    diffrax_solver, controller = make_solver(solver, rtol, atol)
    eng = make_engine(engine)
    settings = dict(solver=solver, rtol=rtol, atol=atol, precision=precision, engine=engine,
                    band=band, max_steps=int(max_steps), chunk=int(chunk))

    with jax.enable_x64(precision == 64):
        dtype = jnp.float64 if precision == 64 else jnp.float32
        params, args = prepare(params, dataset, dtype=dtype, band=band, test_set=test_set,
                               n_test=n_test, test_key=test_key)
        event = make_event(eng, precision)
        per_step = evaluations_per_step(diffrax_solver)
        return _run(eng, diffrax_solver, controller, event, params, args, grid_ts, settings,
                    per_step, dtype, progress, callback, resume)


def prepare(params: Params, dataset: Dataset, *, dtype, band: float = 0.1,
            test_set: Dataset | None = None, n_test: int = 2000, test_key=None) -> tuple[Params, FlowArgs]:
    """Cast a start and its data to ``dtype`` and gather what the flow reads besides the state.

    Call inside ``jax.enable_x64(dtype == float64)``.  The test set defaults to ``n_test``
    fresh i.i.d. samples drawn from ``test_key`` (default ``jax.random.key(0)``).
    """
    params = _as_dtype(params, dtype)
    dataset = _as_dtype(dataset, dtype)
    if test_set is None:
        test_set = sample_test_set(jax.random.key(0) if test_key is None else test_key, n_test, dataset)
    args = FlowArgs(
        dataset=dataset,
        test_set=_as_dtype(test_set, dtype),
        a=params.a,
        ref=reference(params, dataset.embedding),
        band=jnp.asarray(band, dtype),
        active=jnp.ones(len(EVENT_NAMES), bool),
    )
    return params, args


def _check_ts(ts) -> np.ndarray:
    ts = np.asarray(ts, dtype=float)
    if ts.ndim != 1 or ts.size < 2 or not np.all(np.isfinite(ts)):
        raise ValueError("ts must be a 1-d array of at least 2 finite times")
    if ts[0] != 0 or np.any(np.diff(ts) <= 0):
        raise ValueError("ts must start at 0 and increase strictly")
    return ts


def _run(eng, solver, controller, event, params, args, grid, settings, per_step, dtype,
         progress, callback, resume) -> FlowResult:
    chunk = settings["chunk"]
    n_chunks = math.ceil((len(grid) - 1) / chunk)
    if resume is None:
        y = eng.init_state(params)
        obs0, values0 = _observe(eng, y, args)
        saved = [jax.tree.map(lambda x: np.asarray(x)[None], obs0)]
        events = {name: (0.0 if float(v) >= 0 else None) for name, v in zip(EVENT_NAMES, values0)}
        stats = dict(steps=0, accepted_steps=0, rejected_steps=0, nfev=0 if per_step else None,
                     solves=0)
        start = 0
        params_init = params
    else:
        y = _as_dtype(resume.state, dtype)
        saved = [{k: np.asarray(v) for k, v in resume.observables.items()}]
        events, stats = dict(resume.events), dict(resume.stats)
        start = resume.chunks_done
        params_init = resume.params_init
    bar = _progress_bar(len(grid) - 1, start * chunk) if progress else None

    def result(status, message, t_reached, chunks_done):
        obs = {k: np.concatenate([s[k] for s in saved]) for k in saved[0]}
        n = len(next(iter(obs.values())))
        return FlowResult(
            ts=grid[:n].copy(), observables=obs, events=dict(events), stats=dict(stats),
            params_init=params_init, params_final=eng.to_params(y, args),
            t_reached=float(t_reached), status=status, message=message, grid=grid,
            chunks_done=chunks_done, state=y, settings=settings,
        )

    started = time.perf_counter()
    try:
        for c in range(start, n_chunks):
            idx = np.arange(1 + c * chunk, min(1 + (c + 1) * chunk, len(grid)))
            t_a, t_b = grid[idx[0] - 1], grid[idx[-1]]
            ts_chunk = np.full(chunk, t_b)
            ts_chunk[: len(idx)] = grid[idx]
            filled = np.zeros(chunk, bool)
            rows = [None] * chunk
            while True:
                args = eqx.tree_at(lambda a: a.active, args,
                                   jnp.asarray([events[k] is None for k in EVENT_NAMES]))
                sol_ts, sol_ys, res, st = _solve(
                    eng, solver, controller, event, y, jnp.asarray(t_a, dtype),
                    jnp.asarray(t_b, dtype), jnp.asarray(np.maximum(ts_chunk, t_a), dtype),
                    args, settings["max_steps"])
                _count(stats, st, per_step)
                got = np.isfinite(np.asarray(sol_ts[0])) & ~filled
                obs_chunk = jax.tree.map(np.asarray, sol_ys[0])
                for i in np.flatnonzero(got):
                    rows[i] = {k: v[i] for k, v in obs_chunk.items()}
                filled |= got
                t_now = float(sol_ts[1][0])
                y_new = jax.tree.map(lambda x: x[0], sol_ys[1])
                if res == diffrax.RESULTS.event_occurred:
                    _, values = _observe(eng, y_new, args)
                    events[EVENT_NAMES[fired(values, args.active)]] = t_now
                    y, t_a = y_new, t_now
                    continue
                done = [r for r in rows[: len(idx)] if r is not None]
                if done:
                    saved.append({k: np.stack([r[k] for r in done]) for k in done[0]})
                finite = _finite(y_new)
                if res != diffrax.RESULTS.successful or not finite:
                    why = _describe(res) if res != diffrax.RESULTS.successful else "non-finite state"
                    if finite:
                        y, t_a = y_new, t_now
                    raise FlowFailure(f"solver failed at t={t_now:.6g}: {why}",
                                      result("failed", why, t_a, c))
                y = y_new
                break
            if stats["steps"] > settings["max_steps"]:
                raise FlowFailure(
                    f"step limit max_steps={settings['max_steps']} exceeded at t={t_b:.6g}",
                    result("failed", "step limit exceeded", t_b, c + 1))
            if bar is not None:
                bar.update(len(idx))
                bar.set_postfix_str(f"t={t_b:.4g} loss={saved[-1]['loss'][-1]:.3e}")
            if callback is not None and c + 1 < n_chunks:
                callback(result("running", "", t_b, c + 1))
    finally:
        if bar is not None:
            bar.close()
    return result("complete", "", grid[-1], n_chunks)


def _count(stats, st, per_step) -> None:
    stats["solves"] += 1
    for key, name in (("steps", "num_steps"), ("accepted_steps", "num_accepted_steps"),
                      ("rejected_steps", "num_rejected_steps")):
        stats[key] += int(st[name])
    if per_step is not None:
        stats["nfev"] += per_step[0] * int(st["num_steps"]) + per_step[1]


def _finite(tree) -> bool:
    return all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(tree))


def _describe(res) -> str:
    if res == diffrax.RESULTS.max_steps_reached:
        return "the step limit (max_steps) was reached"
    if res == diffrax.RESULTS.dt_min_reached:
        return "the step size fell to its minimum"
    return "the solver did not converge (non-finite values or an internal failure)"


def _progress_bar(total: int, initial: int):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="save", desc="flow", leave=False)
