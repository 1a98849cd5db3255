"""The gradient flow d theta/dt = -grad Lhat(theta) (Eq. 2): integrate one start, or a batch of them, into a FlowResult."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import PyTree

from . import aot, loop, programs
from .cache import enable_compilation_cache
from .controller import evaluations_per_step, make_solver
from .data import Dataset, sample_test_set
from .engines import AbstractEngine, FlowArgs, Reference, Sizes, check_memory, make_engine, resolve_engine
from .events import EVENT_NAMES
from .observables import check_saves_fit
from .loop import as_dtype
from .options import FlowOptions
from .trajectory import FlowFailure, FlowResult

__all__ = ["FlowFailure", "FlowResult", "Prepared", "integrate", "integrate_batch", "plan", "prepare"]


def integrate(
    params,
    dataset: Dataset,
    t_end: float | None = None,
    *,
    options: FlowOptions | None = None,
    test_set: Dataset | None = None,
    test_key=None,
    progress: bool = False,
    callback: Callable[[FlowResult], None] | None = None,
    resume: FlowResult | None = None,
    **keywords,
) -> FlowResult:
    """Integrate the gradient flow ``d theta/dt = -grad Lhat(theta)`` (Eq. 2) from ``params`` to ``t_end``.

    ``params`` is the start: :class:`~flowsim.Params` (the four matrices), or a width-free
    :class:`~flowsim.SubspaceStart`.  The options are :class:`~flowsim.FlowOptions`, given as an
    object (``options=``) or as keywords, which override it:

    - ``t_end`` (default 300, or the last of ``ts``);
    - the solver: ``solver`` (``tsit5``, ``dopri5``, ``dopri8``, ``bosh3`` or the implicit
      ``kvaerno5``), the PID controller's ``rtol``/``atol`` (default 1e-8/1e-10 in float64,
      1e-5/1e-7 in float32), ``max_steps`` (a bound on the total number of steps, 100000);
    - the saves: ``saves`` times (201) on a ``grid`` (``log`` or ``linear``, see
      :func:`flowsim.options.save_times`) or explicit times ``ts``, integrated ``chunk`` (25) saves
      per solve;
    - ``precision``: 64 (default) integrates in float64 inside ``jax.enable_x64`` without
      changing JAX's global setting; 32 in float32;
    - ``engine``, the state that is integrated (:mod:`flowsim.engines`): ``"params"`` (the four
      matrices), ``"reduced"`` (spec 7.1-7.2), ``"subspace"`` (spec 7.6: width-free), ``"gram"``
      (spec 7.5: no conservation drifts, no final parameters) or ``"auto"`` (the cheapest for
      these sizes that gives the final matrices back when the start has them);
    - ``band``, the relative half-width of the ``scores_leave_band`` event (0.1);
    - ``n_test``: the test set, unless ``test_set`` is given, is that many fresh i.i.d. samples
      drawn from ``test_key`` (default ``jax.random.key(0)``).

    Every observable is saved at the saved times; the phase-boundary events of
    :mod:`flowsim.events` are located by root finding and the integration carries on past them.
    ``callback(partial_result)`` is called after each chunk (for checkpoints), and
    ``resume=partial_result`` continues a partial run to the same result an uninterrupted run
    gives.  Raises :class:`FlowFailure` (with the partial result) if the solver fails.

    Turns on JAX's persistent compilation cache (:func:`flowsim.enable_compilation_cache`;
    ``FLOWSIM_NO_CACHE=1`` opts out).
    """
    options = _options(options, t_end, keywords)
    [result] = _integrate([params], [dataset], options, programs.SINGLE, test_set=test_set, test_key=test_key,
                          progress=progress, callback=callback, resume=resume)
    if result.status == "failed":
        raise FlowFailure(result.message, result)
    return result


def integrate_batch(params, dataset: Dataset | Sequence[Dataset], t_end: float | None = None, *,
                    options: FlowOptions | None = None, test_sets: Sequence[Dataset] | None = None,
                    test_set: Dataset | None = None, test_key=None, devices=None,
                    progress: bool = False, **keywords) -> list[FlowResult]:
    """Integrate from a batch of starts in one diffrax solve: ``params`` has a leading member
    axis on every field (e.g. ``jax.vmap(lambda k: init_params(k, ...))(keys)``).

    ``dataset`` is one training set for every member, or a list with one per member (all of the
    same n, L, d; then each member may have its own ``test_sets`` too, and the engines whose
    state is shaped by the words present are not available).  The members' flows are
    stacked into one ODE whose vector field and observables are vmapped; the step size is
    shared and controlled by the worst member's error, and each member has its own events
    (every event of any member is located by root finding, then all carry on).

    ``devices`` (default: one device) spreads the members over several JAX devices with
    ``jax.sharding`` (the batch size must be a multiple of their number): XLA partitions the
    one solve along the member axis.  Takes :func:`integrate`'s options.  Returns one
    :class:`FlowResult` per member (``stats`` are the shared solve's); if the solve fails,
    every member's result has ``status == "failed"``.
    """
    options = _options(options, t_end, keywords)
    leaves = jax.tree.leaves(params)
    if params.W_V.ndim != 3:
        raise ValueError(f"integrate_batch needs params with a leading member axis, got W_V {params.W_V.shape}")
    B = leaves[0].shape[0]
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
    return _integrate(members, datasets, options, programs.OWN_DATA if own else programs.SHARED_DATA,
                      test_sets=test_sets, test_set=test_set, test_key=test_key, devices=devices,
                      progress=progress)


def _options(options: FlowOptions | None, t_end, keywords) -> FlowOptions:
    """The run's :class:`FlowOptions`: ``options`` (default: all defaults) updated by the
    keywords and ``t_end``; with explicit ``ts`` and no ``t_end``, the last saved time."""
    if t_end is None and keywords.get("ts") is not None and "t_end" not in keywords:
        t_end = float(np.asarray(keywords["ts"])[-1])
    if t_end is not None:
        keywords["t_end"] = t_end
    return FlowOptions.updated(options, **keywords)


def plan(start, dataset: Dataset, options: FlowOptions, *, test_set: Dataset | None = None,
         shared_words: bool = True) -> FlowOptions:
    """``options`` with the engine resolved for this start and data, after checking (before
    allocating anything) that the integration fits in memory: a one-line
    :class:`~flowsim.resources.ResourceError` names the estimate and an engine that would fit."""
    sizes = Sizes.of(start, dataset, options.n_test if test_set is None else test_set.n)
    name = resolve_engine(options.engine, sizes, shared_words=shared_words)
    check_memory(name, sizes, 8 if options.precision == 64 else 4)
    check_saves_fit(len(options.save.ts) if options.save.ts is not None else options.save.saves, sizes.d)
    return dataclasses.replace(options, engine=name)


@dataclasses.dataclass(frozen=True)
class Prepared:
    """A start made ready to integrate: its engine, the start and the arguments in the flow's
    dtype, and the initial state."""

    engine: AbstractEngine
    start: object
    args: FlowArgs
    y0: PyTree


def prepare(start, dataset: Dataset, *, dtype, engine: str = "params", band: float = FlowOptions.band,
            test_set: Dataset | None = None, n_test: int = FlowOptions.n_test, test_key=None) -> Prepared:
    """Cast a start and its data to ``dtype``, build the engine, the :class:`FlowArgs` that its
    vector field, the events and the observables read, and the initial state.

    Call inside ``jax.enable_x64(dtype == float64)``.  The test set defaults to ``n_test`` fresh
    i.i.d. samples drawn from ``test_key`` (default ``jax.random.key(0)``).
    """
    start, dataset = as_dtype(start, dtype), as_dtype(dataset, dtype)
    if test_set is None:
        test_set = _default_test_set(dataset, n_test, test_key)
    eng = make_engine(engine, start, dataset, n_test=test_set.n)
    y0, ref = aot.call("start", programs.start, eng, start, dataset)
    args = FlowArgs(dataset=dataset, test_set=as_dtype(test_set, dtype), ref=Reference(*ref),
                    band=np.asarray(band, dtype), watching=np.ones(len(EVENT_NAMES), bool))
    return Prepared(engine=eng, start=start, args=args, y0=y0)


def _default_test_set(dataset: Dataset, n_test: int, test_key) -> Dataset:
    """``n_test`` i.i.d. samples like ``dataset``'s, drawn from ``test_key`` (default ``jax.random.key(0)``)."""
    return sample_test_set(jax.random.key(0) if test_key is None else test_key, n_test, dataset)


def _integrate(members, datasets, options: FlowOptions, batched, *, test_sets=None, test_set=None,
               test_key=None, devices=None, progress=False, callback=None, resume=None) -> list[FlowResult]:
    enable_compilation_cache()
    if members[0].d != datasets[0].d:
        raise ValueError(f"params have d={members[0].d} but the dataset has d={datasets[0].d}")
    if resume is not None:
        members = [resume.params_init]
    # What the run will allocate is checked first: the saved times, the engine.
    options = plan(members[0], datasets[0], options, test_set=test_set, shared_words=batched != programs.OWN_DATA)
    grid = options.times(m=members[0].m)
    if resume is not None and resume.status != "running":
        # Only the partial results handed to ``callback`` are resume points: a failed result's
        # state and saved rows are not those of a chunk boundary.
        raise ValueError(f"resume: only a running (checkpointed) result can be resumed, not a {resume.status} one")
    if resume is not None and not np.array_equal(resume.grid, grid):
        raise ValueError("resume: the saved times differ from the run being resumed")
    if resume is not None and not all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(resume.state)):
        # A non-finite state would have every step rejected until max_steps.
        raise ValueError("resume: the partial result's state is not finite; it cannot be resumed")
    solver, controller = make_solver(options.solver)
    with jax.enable_x64(options.precision == 64):
        dtype = jnp.float64 if options.precision == 64 else jnp.float32
        # One test set for every member unless each has its own: drawn once, not per member.
        tests = test_sets or [test_set or _default_test_set(as_dtype(datasets[0], dtype), options.n_test, test_key)]
        prepared = [prepare(p, data, dtype=dtype, engine=options.engine, band=options.band, test_set=test)
                    for p, data, test in zip(members, itertools.cycle(datasets), itertools.cycle(tests))]
        problem = _problem(prepared, options, grid, solver, controller, dtype, batched, devices)
        state = loop.begin(problem) if resume is None else loop.from_checkpoint(problem, resume)
        return loop.run(problem, state, progress=progress, callback=callback)


def _problem(prepared: list[Prepared], options, grid, solver, controller, dtype, batched, devices) -> loop.Problem:
    """The loop's fixed inputs; a batch's engines, initial states and per-member arguments
    stacked along a leading member axis (placed over ``devices``)."""
    engines = [p.engine for p in prepared]
    args = [p.args for p in prepared]
    engine, flow_args, y0 = engines[0], args[0], prepared[0].y0
    if batched:
        place = programs.member_sharding(devices)
        stack = lambda trees: place(jax.tree.map(lambda *xs: jnp.stack(xs), *trees))
        axes = programs.member_axes(batched)
        per_member = [f.name for f in dataclasses.fields(FlowArgs) if getattr(axes, f.name) == 0]
        engine, y0 = stack(engines), stack([p.y0 for p in prepared])
        flow_args = eqx.tree_at(lambda a: tuple(getattr(a, f) for f in per_member), flow_args,
                                tuple(stack([getattr(a, f) for a in args]) for f in per_member))
    return loop.Problem(engines=engines, starts=[p.start for p in prepared], args=args, engine=engine,
                        flow_args=flow_args, y0=y0, solver=solver, controller=controller, grid=grid,
                        options=options, per_step=evaluations_per_step(solver), dtype=dtype, batched=batched)
