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

from ...core import aot, loop, programs
from ...core.cache import enable_compilation_cache
from ...core.controller import make_solver
from .data import Dataset, sample_test_set
from .engines import ENGINES, AbstractEngine, FlowArgs, Reference, Sizes, check_memory, make_engine, \
    memory_estimate, resolve_engine
from .events import EVENT_NAMES, markers_of
from .observables import check_saves_fit, saves_bytes
from ...core.resources import check_fits
from ...core.loop import Prepared, as_dtype
from .model import Params
from ...core.options import FlowOptions, MarkerOptions
from .subspace import SubspaceStart, rank_bound
from ...core.errors import FlowFailure
from ...core.trajectory import FlowResult

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
      :func:`flowsim.core.options.save_times`) or explicit times ``ts``, integrated ``chunk`` (25) saves
      per solve;
    - ``precision``: 64 (default) integrates in float64 inside ``jax.enable_x64`` without
      changing JAX's global setting; 32 in float32;
    - ``engine``, the state that is integrated (:mod:`flowsim.models.cooccurrence.engines`): ``"params"`` (the four
      matrices), ``"reduced"`` (spec 7.1-7.2), ``"subspace"`` (spec 7.6: width-free), ``"gram"``
      (spec 7.5: no conservation drifts, no final parameters) or ``"auto"`` (the cheapest for
      these sizes that gives the final matrices back when the start has them);
    - the phase markers' constants (:class:`~flowsim.core.options.MarkerOptions`: ``C_T1``, ``R_neuron``,
      ``R_irrelevant``, ``R_scores``, ``R_KQ``, ``C_rates``, ``C_margin``, ``band``);
    - ``n_test``: the test set, unless ``test_set`` is given, is that many fresh i.i.d. samples
      drawn from ``test_key`` (default ``jax.random.key(0)``).

    Every observable is saved at the saved times; the phase-boundary events of
    :mod:`flowsim.models.cooccurrence.events` are located by root finding and the integration carries on past them.
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
    if not isinstance(params, Params):
        raise TypeError(f"params must be a flowsim.Params with a leading member axis, got {type(params).__name__}")
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
    :class:`~flowsim.core.resources.ResourceError` names the estimate and an engine that would fit."""
    sizes = Sizes.of(start, dataset, options.n_test if test_set is None else test_set.n)
    name = resolve_engine(options.engine, sizes, shared_words=shared_words)
    check_memory(name, sizes, 8 if options.precision == 64 else 4)
    check_saves_fit(_saves(options), sizes.d)
    options = dataclasses.replace(options, engine=name)
    terms = memory_terms(start, dataset, options, test_set=test_set)
    largest = max(terms, key=terms.get)
    check_fits(sum(terms.values()), f"the run at n={sizes.n}, L={sizes.L}, d={sizes.d}, n_test={sizes.n_test}, "
                                    f"m={sizes.m}, m1={sizes.m1} (engine {name!r})", _SMALLER[largest])
    return options


#: Copies of a sample's L x L attention arrays (logits, softmax weights and their gathers) that an
#: evaluation holds: the training set's through the gradient, forward and backward, the test
#: set's in an observation; and of the d x d word matrices of an observation (the scores now and
#: at t = 0, their change, the logits).  Fitted to measured peaks (examples/memory_model.py,
#: docs/performance.md), rounded up.
TRAIN_COPIES, TEST_COPIES, WORD_COPIES = 5, 2, 6
#: What makes each term of :func:`memory_terms` smaller, for the refusal's message.
_SMALLER = {"solve": "choose a smaller m or m1, or another engine",
            "samples": "choose a smaller L, n or n_test (each sample's attention is L x L)",
            "words": "choose a smaller d",
            "data": "choose a smaller n, n_test or L",
            "saves": "save fewer times"}


def memory_terms(start, dataset: Dataset, options: FlowOptions, *, test_set: Dataset | None = None) -> dict[str, float]:
    """Bytes a flow run holds at its peak, by term, from the sizes alone (before anything is
    allocated): ``solve`` (the engine's state copies and what it holds,
    :func:`flowsim.models.cooccurrence.engines.memory_estimate`), ``samples`` (what an evaluation of the margins
    holds per sample: its L x L attention arrays, and its L gathered rows, of width m for the
    engines that need the matrices and 3d + 1 for the others, where the words are gathered per
    sample: always for the training set's gradient, for the test set when d^2 > n_test L^2, as
    :func:`flowsim.models.cooccurrence.model.outputs_words` chooses), ``words`` (an observation's d x d matrices),
    ``data`` (both sets' tokens, labels and groups, and the embedding) and ``saves`` (the saved
    trajectory).  ``options.engine`` may be ``"auto"``.  :func:`plan` refuses a run whose sum
    does not fit; examples/memory_model.py checks the sum against measured peaks."""
    sizes = Sizes.of(start, dataset, options.n_test if test_set is None else test_set.n)
    name = resolve_engine(options.engine, sizes)
    itemsize = 8 if options.precision == 64 else 4
    n, L, d, n_test = sizes.n, sizes.L, sizes.d, sizes.n_test
    rows = sizes.m if ENGINES[name].needs_matrices else rank_bound(d)
    gathered = n_test * L * rows if d * d > n_test * L * L else 0
    return {"solve": memory_estimate(name, sizes, itemsize),
            "samples": itemsize * (n * (TRAIN_COPIES * L * L + L * rows) + n_test * TEST_COPIES * L * L + gathered),
            "words": itemsize * WORD_COPIES * d * d,
            "data": 8 * (n + n_test) * (L + 2) + 8 * d * d,
            "saves": saves_bytes(_saves(options), d)}


def _saves(options: FlowOptions) -> int:
    return len(options.save.ts) if options.save.ts is not None else options.save.saves


def prepare(start, dataset: Dataset, *, dtype, engine: str = "params", markers: MarkerOptions = MarkerOptions(),
            test_set: Dataset | None = None, n_test: int = FlowOptions.n_test, test_key=None) -> Prepared:
    """Cast a start and its data to ``dtype``, build the engine, the :class:`FlowArgs` that its
    vector field, the events and the observables read (with the ``markers``' constants made
    absolute for this start, :func:`flowsim.models.cooccurrence.events.markers_of`), and the initial state.

    Call inside ``jax.enable_x64(dtype == float64)``.  The test set defaults to ``n_test`` fresh
    i.i.d. samples drawn from ``test_key`` (default ``jax.random.key(0)``).
    """
    start, dataset = as_dtype(start, dtype), as_dtype(dataset, dtype)
    if test_set is None:
        test_set = _default_test_set(dataset, n_test, test_key)
    eng = make_engine(engine, start, dataset, n_test=test_set.n)
    y0, ref = aot.call("start", programs.start, eng, start, dataset)
    args = FlowArgs(dataset=dataset, test_set=as_dtype(test_set, dtype), ref=Reference.from_tuple(ref),
                    markers=markers_of(markers, start, dataset, dtype), watching=np.ones(len(EVENT_NAMES), bool))
    return Prepared(engine=eng, start=start, args=args, y0=y0)


def _default_test_set(dataset: Dataset, n_test: int, test_key) -> Dataset:
    """``n_test`` i.i.d. samples like ``dataset``'s, drawn from ``test_key`` (default ``jax.random.key(0)``)."""
    return sample_test_set(jax.random.key(0) if test_key is None else test_key, n_test, dataset)


#: The kinds of start, and the function that makes each.
STARTS = {Params: "init_params", SubspaceStart: "init_subspace"}


def check_problem(params, dataset, test_set=None, *, starts=tuple(STARTS)) -> None:
    """Refuse, naming the argument, a start (one of ``starts``) or a data set of the wrong kind,
    or of another vocabulary size; their values were checked when they were made
    (:class:`~flowsim.Params`, :class:`~flowsim.SubspaceStart`, :class:`~flowsim.Dataset`)."""
    wanted = {"params": (starts, " or ".join(f"flowsim.{k.__name__} ({STARTS[k]})" for k in starts)),
              "dataset": ((Dataset,), "flowsim.Dataset (make_dataset)"),
              "test_set": ((Dataset, type(None)), "flowsim.Dataset or None")}
    for name, value in (("params", params), ("dataset", dataset), ("test_set", test_set)):
        kinds, made_by = wanted[name]
        if not isinstance(value, kinds):
            raise TypeError(f"{name} must be a {made_by}, got {type(value).__name__}")
    if params.d != dataset.d:
        raise ValueError(f"params have d={params.d} but the dataset has d={dataset.d}")


def _integrate(members, datasets, options: FlowOptions, batched, *, test_sets=None, test_set=None,
               test_key=None, devices=None, progress=False, callback=None, resume=None) -> list[FlowResult]:
    enable_compilation_cache()
    check_problem(members[0], datasets[0], test_set)
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
        prepared = [prepare(p, data, dtype=dtype, engine=options.engine, markers=options.markers, test_set=test)
                    for p, data, test in zip(members, itertools.cycle(datasets), itertools.cycle(tests))]
        problem = loop.problem(prepared, options, grid, solver, controller, dtype, batched, devices)
        state = loop.begin(problem) if resume is None else loop.from_checkpoint(problem, resume)
        return loop.run(problem, state, progress=progress, callback=callback)
