"""The gradient-flow ODE d theta/dt = -grad Lhat(theta) (Eq. 2), integrated by diffrax in resumable chunks."""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx
from jax.flatten_util import ravel_pytree
from jaxtyping import PyTree

from . import aot
from .cache import enable_compilation_cache
from .data import Dataset, sample_test_set
from .engines import FlowArgs, Reference, make_engine, reference, resolve_engine
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

    A result whose ``status`` is not ``"complete"`` can be finished with
    ``integrate(..., resume=result)``: ``state``, ``chunks_done`` and ``dt_next`` (the step
    size the controller proposed next) say where it stopped.
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
    dt_next: float = 0.0

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
    if saves == 2:  # geomspace would give t_first alone
        return np.array([0.0, t_end])
    return np.concatenate([[0.0], np.geomspace(t_first, t_end, int(saves) - 1)])


def check_positive(name: str, value) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}") from None
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return v


class CarriedStep(diffrax.AbstractAdaptiveStepSizeController):
    """diffrax's PID control, with the step it proposes next kept in its state.

    The host loop restarts the solve at every chunk boundary and after every event; handing
    the proposed step of one solve to the next as ``dt0`` continues the integration as if it
    had not stopped, where diffrax's initial-step heuristic would guess anew (two extra
    evaluations and a few short steps per restart).  ``dt0 <= 0`` asks for that guess.

    The first step lives here rather than in ``diffeqsolve(dt0=...)``, whose check of its sign
    is a host callback, and programs with host callbacks stay out of JAX's persistent cache.
    """

    pid: diffrax.PIDController
    dt0: jax.Array = eqx.field(default_factory=lambda: jnp.zeros(()))

    @property
    def rtol(self):
        return self.pid.rtol

    @property
    def atol(self):
        return self.pid.atol

    @property
    def norm(self):
        return self.pid.norm

    def wrap(self, direction):
        return CarriedStep(self.pid.wrap(direction), self.dt0)

    def init(self, terms, t0, t1, y0, dt0, args, func, error_order):
        def guess():
            return self.pid.init(terms, t0, t1, y0, None, args, func, error_order)[0]

        dt0 = jnp.asarray(self.dt0, jnp.result_type(t0))
        t_next = jax.lax.cond(dt0 > 0, lambda: t0 + dt0, guess)
        _, pid_state = self.pid.init(terms, t0, t1, y0, dt0, args, func, error_order)
        return t_next, (pid_state, t_next - t0)

    def adapt_step_size(self, t0, t1, y0, y1_candidate, args, y_error, error_order, controller_state):
        keep, next_t0, next_t1, jump, pid_state, result = self.pid.adapt_step_size(
            t0, t1, y0, y1_candidate, args, y_error, error_order, controller_state[0])
        return keep, next_t0, next_t1, jump, (pid_state, next_t1 - next_t0), result


def make_solver(name: str, rtol: float, atol: float):
    """A diffrax solver by name, and the PID controller (:class:`CarriedStep`) that adapts its steps."""
    if name not in SOLVERS:
        raise ValueError(f"solver must be one of {', '.join(SOLVERS)}, got {name!r}")
    check_positive("rtol", rtol)
    check_positive("atol", atol)
    # Tolerances as arrays, so that changing them does not recompile the solve.
    return SOLVERS[name](), CarriedStep(diffrax.PIDController(rtol=jnp.asarray(rtol), atol=jnp.asarray(atol)))


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


# Outcome codes of one solve.
_SUCCESS, _EVENT, _MAX_STEPS, _DT_MIN, _OTHER = range(5)


def _code(result) -> jax.Array:
    R = diffrax.RESULTS
    return jnp.select(
        [result == R.successful, result == R.event_occurred, result == R.max_steps_reached,
         result == R.dt_min_reached], [_SUCCESS, _EVENT, _MAX_STEPS, _DT_MIN], _OTHER)


def _finite_tree(tree) -> jax.Array:
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


def _lead(tree):
    return jax.tree.map(lambda x: jnp.asarray(x)[None], tree)


# How the members of a solve are laid out: one run, a batch of starts on shared data, or a batch
# whose members each have their own training and test sets (e.g. a sweep over data seeds).
SINGLE, SHARED_DATA, OWN_DATA = None, "shared", "own"


def _args_axes(batched) -> FlowArgs:
    """vmap axes of :class:`FlowArgs` in a batch: the band is shared, the data shared or per
    member, the rest per member."""
    data = 0 if batched == OWN_DATA else None
    return FlowArgs(dataset=data, test_set=data, a=0, ref=0, band=None, active=0)


def _member_fns(engine, batched):
    """The vector field, the observables (with a leading member axis) and the event conditions
    (shaped like ``args.active``) of the state; for a batch, every member's at once by vmap."""
    if not batched:
        return (engine.vector_field, lambda t, y, a: _lead(observables(engine, y, a)),
                lambda y, a: jnp.stack(event_values(engine, y, a)))
    over = lambda f: lambda y, a: jax.vmap(f, in_axes=(0, 0, _args_axes(batched)))(engine, y, a)
    return (lambda t, y, a: over(lambda e, y, a: e.vector_field(t, y, a))(y, a),
            lambda t, y, a: over(observables)(y, a),
            over(lambda e, y, a: jnp.stack(event_values(e, y, a))))


def _batch_norm(y) -> jax.Array:
    """Step-size control of a batch: the worst member's RMS error, so each is held to the tolerances."""
    return jnp.max(jax.vmap(optx.rms_norm)(y))


def _flattening(y0, batched):
    """``(ravel, unravel)`` between a state and one flat vector (per member, for a batch).

    The solver's stage arithmetic, error norm and interpolation then run as one array
    operation each instead of one per state matrix: 15-30% of a small solve (docs/performance.md).
    """
    one = jax.tree.map(lambda x: x[0], y0) if batched else y0
    unravel = ravel_pytree(one)[1]
    ravel = lambda y: ravel_pytree(y)[0]
    return (jax.vmap(ravel), jax.vmap(unravel)) if batched else (ravel, unravel)


@eqx.filter_jit
def _solve(engine, solver, controller, y0, t0, t1, dt0, ts, args, max_steps, precision, batched):
    """One diffrax solve from ``t0`` to ``t1`` (first step ``dt0``, or diffrax's guess if
    ``dt0 <= 0``), stopped early by an event, saving the observables at ``ts``.  A batch
    (members stacked on a leading axis of ``engine``, ``y0`` and the per-member parts of
    ``args``) is one ODE with a shared step size.  What the host loop needs comes back in one
    transfer, apart from the state."""
    vector_field, observe, values = _member_fns(engine, batched)
    controller = eqx.tree_at(lambda c: c.dt0, controller, dt0)
    if batched:
        controller = eqx.tree_at(lambda c: c.pid.norm, controller, _batch_norm)
    ravel, unravel = _flattening(y0, batched)
    flat_field = lambda t, y, a: ravel(vector_field(t, unravel(y), a))
    flat_values = lambda y, a: values(unravel(y), a)
    saveat = diffrax.SaveAt(subs=[diffrax.SubSaveAt(ts=ts, fn=lambda t, y, a: observe(t, unravel(y), a)),
                                  diffrax.SubSaveAt(t1=True)], controller_state=True)
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(flat_field), solver, t0, t1, dt0=None, y0=ravel(y0), args=args, saveat=saveat,
        stepsize_controller=controller, event=make_event(flat_values, precision), max_steps=max_steps,
        throw=False)
    y1 = unravel(sol.ys[1][0])
    stats = jnp.stack([sol.stats[k] for k in ("num_steps", "num_accepted_steps", "num_rejected_steps")])
    return (sol.ts[0], sol.ys[0], sol.ts[1][0], y1, _finite_tree(y1), _code(sol.result),
            fired(values(y1, args), args.active), stats, sol.controller_state[1])


@eqx.filter_jit
def _observe(engine, y, args, batched):
    _, observe, values = _member_fns(engine, batched)
    return observe(None, y, args), values(y, args).reshape(-1, len(EVENT_NAMES))


# Programs that flowsim.aot exports return plain tuples: jax.export serializes no custom pytree.
@eqx.filter_jit
def _to_params(engine, y, args):
    params = engine.to_params(y, args)
    return None if params is None else tuple(jax.tree.leaves(params))


@eqx.filter_jit
def _start(engine, params, dataset):
    """The initial state and the reference quantities, as one program rather than a dozen eager
    operations, each of which a new process would fetch from the compilation cache."""
    y0 = engine.init_state(params, dataset)
    ref = reference(engine, y0, params, dataset.embedding)
    return y0, tuple(getattr(ref, f.name) for f in dataclasses.fields(ref))


def _as_dtype(tree, dtype):
    """Floating leaves cast to ``dtype`` on the host: an eager cast on the device would be one
    more program to compile (or fetch from the cache) per leaf shape in a new process."""
    def cast(x):
        kind = x.dtype if hasattr(x, "dtype") else np.asarray(x).dtype
        return np.asarray(x, dtype) if jnp.issubdtype(kind, jnp.floating) else x
    return jax.tree.map(cast, tree)


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
    engine: str = "auto",
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

    ``engine`` chooses the state that is integrated (:mod:`flowsim.engines`): ``"params"`` (the
    four matrices), ``"reduced"`` (spec 7.1-7.2), ``"gram"`` (spec 7.5: no conservation drifts,
    no final parameters) or ``"auto"`` (the cheapest for these sizes).

    ``precision=64`` (default) integrates in float64 inside ``jax.enable_x64`` without
    changing JAX's global setting; ``precision=32`` integrates in float32.  The integration runs
    in chunks of ``chunk`` saved times; ``callback(partial_result)`` is called after each (for
    checkpoints), and ``resume=partial_result`` continues a partial run to the same result an
    uninterrupted run gives.  ``max_steps`` bounds the total number of solver steps.
    Raises :class:`FlowFailure` (with the partial result) if the solver fails.

    Turns on JAX's persistent compilation cache (:func:`flowsim.enable_compilation_cache`;
    ``FLOWSIM_NO_CACHE=1`` opts out).
    """
    [result] = _integrate([params], [dataset], t_end, batched=SINGLE, solver=solver, rtol=rtol,
                          atol=atol, saves=saves, grid=grid, ts=ts, max_steps=max_steps,
                          precision=precision, engine=engine, band=band, test_set=test_set,
                          n_test=n_test, test_key=test_key, chunk=chunk, progress=progress,
                          callback=callback, resume=resume)
    if result.status == "failed":
        raise FlowFailure(result.message, result)
    return result


def integrate_batch(params: Params, dataset: Dataset | Sequence[Dataset], t_end: float = 300.0, *,
                    test_sets: Sequence[Dataset] | None = None, devices=None, **options) -> list[FlowResult]:
    """Integrate from a batch of starts in one diffrax solve: ``params`` has a leading member
    axis on every field (e.g. ``jax.vmap(lambda k: init_params(k, ...))(keys)``).

    ``dataset`` is one training set for every member, or a list with one per member (all of the
    same n, L, d; then each member may have its own ``test_sets`` too, and ``engine="reduced"``,
    whose state depends on the words present, is not available).  The members' flows are
    stacked into one ODE whose vector field and observables are vmapped; the step size is
    shared and controlled by the worst member's error, and each member has its own events
    (every event of any member is located by root finding, then all carry on).

    ``devices`` (default: one device) spreads the members over several JAX devices with
    ``jax.sharding`` (the batch size must be a multiple of their number): XLA partitions the
    one solve along the member axis.  Takes :func:`integrate`'s options except ``callback``
    and ``resume``.  Returns one :class:`FlowResult` per member (``stats`` are the shared
    solve's); if the solve fails, every member's result has ``status == "failed"``.
    """
    for name in ("callback", "resume"):
        if options.get(name) is not None:
            raise ValueError(f"integrate_batch does not support {name}")
    if params.W_V.ndim != 3:
        raise ValueError(f"integrate_batch needs params with a leading member axis, got W_V {params.W_V.shape}")
    B = params.W_V.shape[0]
    members = [jax.tree.map(lambda x: x[b], params) for b in range(B)]
    own = not isinstance(dataset, Dataset)
    datasets = list(dataset) if own else [dataset]
    if own and len(datasets) != B or test_sets is not None and len(test_sets) != B:
        raise ValueError(f"integrate_batch: give one dataset and test set per member ({B}), or one dataset for all")
    if test_sets is not None and not own:
        datasets = datasets * B
        own = True
    if own and len({(d.n, d.L, d.d) for d in datasets}) > 1:
        raise ValueError("integrate_batch: the members' datasets must share n, L and d")
    if devices is not None and B % len(devices):
        raise ValueError(f"integrate_batch: {B} members do not split evenly over {len(devices)} devices")
    return _integrate(members, datasets, t_end, batched=OWN_DATA if own else SHARED_DATA,
                      test_sets=test_sets, devices=devices, **options)


def _integrate(members, datasets, t_end, *, batched, test_sets=None, devices=None, solver="tsit5", rtol=1e-8, atol=1e-10,
               saves=201, grid="log", ts=None, max_steps=100_000, precision=64, engine="auto",
               band=0.1, test_set=None, n_test=2000, test_key=None, chunk=25, progress=False,
               callback=None, resume=None) -> list[FlowResult]:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be 64 or 32, got {precision!r}")
    enable_compilation_cache()
    check_positive("band", band)
    if int(max_steps) != max_steps or max_steps < 1:
        raise ValueError(f"max_steps must be a positive integer, got {max_steps}")
    if int(chunk) != chunk or chunk < 1:
        raise ValueError(f"chunk must be a positive integer, got {chunk}")
    grid_ts = save_times(t_end, saves, grid) if ts is None else _check_ts(ts)
    if resume is not None and resume.status != "running":
        # Only the partial results handed to ``callback`` are resume points: a failed result's
        # state and saved rows are not those of a chunk boundary.
        raise ValueError(f"resume: only a running (checkpointed) result can be resumed, not a {resume.status} one")
    if resume is not None and not np.array_equal(resume.grid, grid_ts):
        raise ValueError("resume: the saved times differ from the run being resumed")
    if members[0].d != datasets[0].d:
        raise ValueError(f"params have d={members[0].d} but the dataset has d={datasets[0].d}")
    diffrax_solver, controller = make_solver(solver, rtol, atol)
    settings = dict(solver=solver, rtol=rtol, atol=atol, precision=precision, engine=engine,
                    band=band, max_steps=int(max_steps), chunk=int(chunk))

    with jax.enable_x64(precision == 64):
        dtype = jnp.float64 if precision == 64 else jnp.float32
        datasets = [_as_dtype(d, dtype) for d in datasets]
        if test_sets is None:
            test_sets = [_test_set(datasets[0], dtype, test_set, n_test, test_key)] * len(datasets)
        starts = [_as_dtype(p if resume is None else resume.params_init, dtype) for p in members]
        name = settings["engine"] = resolve_engine(engine, starts[0], datasets[0],
                                                   allow_reduced=batched != OWN_DATA)
        prepared = [prepare(p, data, dtype=dtype, engine=name, band=band, test_set=test)
                    for p, data, test in zip(starts, itertools.cycle(datasets), itertools.cycle(test_sets))]
        engines, starts, args = (list(x) for x in zip(*prepared))
        run = _Run(engines, args, starts, precision, diffrax_solver, controller, grid_ts, settings,
                   evaluations_per_step(diffrax_solver), dtype, batched, devices)
        return run(progress, callback, resume)


def _test_set(dataset: Dataset, dtype, test_set: Dataset | None, n_test: int, test_key) -> Dataset:
    if test_set is None:
        test_set = sample_test_set(jax.random.key(0) if test_key is None else test_key, n_test, dataset)
    return _as_dtype(test_set, dtype)


def prepare(params: Params, dataset: Dataset, *, dtype, engine: str = "params", band: float = 0.1,
            test_set: Dataset | None = None, n_test: int = 2000, test_key=None):
    """Cast a start and its data to ``dtype`` and build the engine and the :class:`FlowArgs` that
    its vector field, the events and the observables read: ``(engine, params, args)``.

    Call inside ``jax.enable_x64(dtype == float64)``.  The test set defaults to ``n_test`` fresh
    i.i.d. samples drawn from ``test_key`` (default ``jax.random.key(0)``).
    """
    params, dataset = _as_dtype(params, dtype), _as_dtype(dataset, dtype)
    eng = make_engine(engine, params, dataset)
    args = FlowArgs(
        dataset=dataset, test_set=_test_set(dataset, dtype, test_set, n_test, test_key), a=params.a,
        ref=Reference(*aot.call("start", _start, eng, params, dataset)[1]),
        band=np.asarray(band, dtype), active=np.ones(len(EVENT_NAMES), bool))
    return eng, params, args


def _check_ts(ts) -> np.ndarray:
    ts = np.asarray(ts, dtype=float)
    if ts.ndim != 1 or ts.size < 2 or not np.all(np.isfinite(ts)):
        raise ValueError("ts must be a 1-d array of at least 2 finite times")
    if ts[0] != 0 or np.any(np.diff(ts) <= 0):
        raise ValueError("ts must start at 0 and increase strictly")
    return ts


class _Run:
    """The host loop: chunks of saved times, one solve per chunk plus one more after each event.
    The members of a batch share the time and step size; each has its own events."""

    def __init__(self, engines, args, starts, precision, solver, controller, grid, settings,
                 per_step, dtype, batched, devices=None):
        self.engines, self.args_list, self.starts = engines, args, starts
        self.precision, self.solver, self.controller, self.grid = precision, solver, controller, grid
        self.settings, self.per_step, self.dtype, self.batched = settings, per_step, dtype, batched
        self.place = _member_sharding(devices)
        if batched:
            fields = ("a", "ref", "active") + (("dataset", "test_set") if batched == OWN_DATA else ())
            stack = lambda trees: self.place(jax.tree.map(lambda *xs: jnp.stack(xs), *trees))
            self.engine = stack(engines)
            self.args = eqx.tree_at(lambda a: tuple(getattr(a, f) for f in fields), args[0],
                                    tuple(stack([getattr(a, f) for a in args]) for f in fields))
        else:
            self.engine, self.args = engines[0], args[0]

    def _with_active(self, events):
        active = np.asarray([[ev[k] is None for k in EVENT_NAMES] for ev in events])
        return eqx.tree_at(lambda a: a.active, self.args, active if self.batched else active[0])

    def __call__(self, progress, callback, resume) -> list[FlowResult]:
        grid, B = self.grid, len(self.engines)
        chunk = min(self.settings["chunk"], len(grid) - 1)  # no padding past the last saved time
        n_chunks = math.ceil((len(grid) - 1) / chunk)
        if resume is None:
            inits = [aot.call("start", _start, e, p, a.dataset)[0]
                     for e, p, a in zip(self.engines, self.starts, self.args_list)]
            y = self.place(jax.tree.map(lambda *xs: jnp.stack(xs), *inits)) if self.batched else inits[0]
            obs0, values0 = jax.device_get(aot.call("observe", _observe, self.engine, y, self.args, self.batched))
            saved = [[{k: v[b][None] for k, v in obs0.items()}] for b in range(B)]
            events = [{k: (0.0 if v >= 0 else None) for k, v in zip(EVENT_NAMES, values0[b])} for b in range(B)]
            stats = dict(steps=0, accepted_steps=0, rejected_steps=0,
                         nfev=0 if self.per_step else None, solves=0)
            start, dt = 0, 0.0  # dt <= 0: diffrax guesses the first step
        else:
            y = _as_dtype(resume.state, self.dtype)
            saved = [[{k: np.asarray(v) for k, v in resume.observables.items()}]]
            events, stats = [dict(resume.events)], dict(resume.stats)
            start, dt = resume.chunks_done, resume.dt_next
        failure = None  # (message, why, t_reached, chunks_done)
        bar = _progress_bar(len(grid) - 1, start * chunk) if progress else None
        try:
            for c in range(start, n_chunks):
                idx = np.arange(1 + c * chunk, min(1 + (c + 1) * chunk, len(grid)))
                t_a, t_b = grid[idx[0] - 1], grid[idx[-1]]
                # At least two save slots: diffrax evaluates a lone slot's observables on every step.
                ts_chunk = np.full(max(chunk, 2), t_b)
                ts_chunk[: len(idx)] = grid[idx]
                filled = np.zeros(len(ts_chunk), bool)
                rows = [None] * len(ts_chunk)
                while True:
                    times = (np.asarray(t, self.dtype) for t in (t_a, t_b, dt, np.maximum(ts_chunk, t_a)))
                    out = aot.call("solve", _solve, self.engine, self.solver, self.controller, y, *times,
                                   self._with_active(events), self.settings["max_steps"], self.precision,
                                   self.batched)
                    y_new = out[3]
                    sol_ts, obs, t_now, _, finite, code, which, st, dt_new = jax.device_get(
                        out[:3] + (None,) + out[4:])
                    _count(stats, st, self.per_step)
                    got = np.isfinite(sol_ts) & ~filled
                    for i in np.flatnonzero(got):
                        rows[i] = {k: v[i] for k, v in obs.items()}  # (members, ...)
                    filled |= got
                    t_now = float(t_now)
                    if code == _EVENT:
                        b, k = divmod(int(which), len(EVENT_NAMES))
                        events[b][EVENT_NAMES[k]] = t_now
                        y, t_a, dt = y_new, t_now, float(dt_new)
                        continue
                    done = [r for r in rows[: len(idx)] if r is not None]
                    if done:
                        for b in range(B):
                            saved[b].append({k: np.stack([r[k][b] for r in done]) for k in done[0]})
                    if code != _SUCCESS or not finite:
                        why = _describe(code) if code != _SUCCESS else "non-finite state"
                        if finite:
                            y, t_a = y_new, t_now
                        failure = (f"solver failed at t={t_now:.6g}: {why}", why, t_a, c)
                    else:
                        y, dt = y_new, float(dt_new)
                    break
                if failure is None and stats["steps"] > self.settings["max_steps"]:
                    failure = (f"step limit max_steps={self.settings['max_steps']} exceeded at t={t_b:.6g}",
                               "step limit exceeded", t_b, c + 1)
                if failure is not None:
                    break
                if bar is not None:
                    bar.update(len(idx))
                    bar.set_postfix_str(f"t={t_b:.4g} loss={saved[0][-1]['loss'][-1]:.3e}")
                if callback is not None and c + 1 < n_chunks:
                    callback(self._result(0, y, saved, events, stats, "running", "", t_b, c + 1, dt=dt))
        finally:
            if bar is not None:
                bar.close()
        if failure is not None:
            message, why, t_reached, chunks_done = failure
            return [self._result(b, y, saved, events, stats, "failed", why, t_reached, chunks_done, message)
                    for b in range(B)]
        return [self._result(b, y, saved, events, stats, "complete", "", grid[-1], n_chunks) for b in range(B)]

    def _final_params(self, b, state) -> Params | None:
        leaves = aot.call("to_params", _to_params, self.engines[b], state, self.args_list[b])
        return None if leaves is None else Params(*leaves)

    def _result(self, b, y, saved, events, stats, status, why, t_reached, chunks_done, message=None, dt=0.0):
        obs = {k: np.concatenate([s[k] for s in saved[b]]) for k in saved[b][0]}
        n = len(next(iter(obs.values())))
        state = jax.tree.map(lambda x: x[b], y) if self.batched else y
        return FlowResult(
            ts=self.grid[:n].copy(), observables=obs, events=dict(events[b]), stats=dict(stats),
            params_init=_host(self.starts[b]),
            params_final=_host(self._final_params(b, state)),
            t_reached=float(t_reached), status=status, message=why if message is None else message,
            grid=self.grid, chunks_done=chunks_done, state=state, settings=self.settings, dt_next=dt,
        )


def _host(params: Params | None) -> Params | None:
    """Parameters as numpy arrays, so that their float64 values survive outside ``jax.enable_x64``."""
    return None if params is None else jax.tree.map(np.asarray, params)


def _member_sharding(devices):
    """Placement of stacked member arrays: split along the member axis over ``devices`` (a 1-d
    mesh), so that XLA partitions the batched solve; the identity for one device or none."""
    if devices is None or len(devices) < 2:
        return lambda tree: tree
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    sharding = NamedSharding(Mesh(np.asarray(devices), ("members",)), PartitionSpec("members"))
    return lambda tree: jax.tree.map(lambda x: jax.device_put(x, sharding), tree)


def _count(stats, st, per_step) -> None:
    stats["solves"] += 1
    for key, v in zip(("steps", "accepted_steps", "rejected_steps"), st):
        stats[key] += int(v)
    if per_step is not None:
        stats["nfev"] += per_step[0] * int(st[0]) + per_step[1]


def _describe(code) -> str:
    if code == _MAX_STEPS:
        return "the step limit (max_steps) was reached"
    if code == _DT_MIN:
        return "the step size fell to its minimum"
    return "the solver did not converge (non-finite values or an internal failure)"


def _progress_bar(total: int, initial: int):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="save", desc="flow", leave=False)
