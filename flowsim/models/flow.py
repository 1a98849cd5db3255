"""Any model's gradient flow through the core: draw a problem, integrate it into a FlowResult, judge the model's claims on it."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..core import loop
from ..core.cache import enable_compilation_cache
from ..core.contract import OWN_DATA, SHARED_DATA, SINGLE
from ..core.controller import make_solver
from ..core.descent import descend, saved_steps
from ..core.loop import Prepared, as_dtype
from ..core.options import DescentOptions, FlowOptions
from ..core.resources import STATE_COPIES, check_fits
from ..core.errors import FlowFailure
from ..core.trajectory import FlowResult
from ..core.verdicts import FAILS, HOLDS, Row
from .contract import AbstractModel, as_trajectory, check_names
from .generic import GenericEngine, ModelArgs

__all__ = ["check", "check_claims", "draw", "gradient_descent", "integrate"]


def draw(model: AbstractModel, seed: int = 0, scheme: str | None = None):
    """``(params, data)`` of one seed: ``jax.random.key(seed)`` split into the data's key and the
    initialization's (scheme default: the model's first).  Call inside ``jax.enable_x64`` for
    float64 draws."""
    scheme = model.SCHEMES[0] if scheme is None else scheme
    if scheme not in model.SCHEMES:
        raise ValueError(f"model {model.name!r}: scheme must be one of {', '.join(model.SCHEMES)}, got {scheme!r}")
    k_data, k_init = jax.random.split(jax.random.key(seed))
    model = _in_dtype(model, jnp.result_type(float))
    return model.init(k_init, scheme), model.sample_data(k_data)


def integrate(model: AbstractModel, params, data=None, t_end: float | None = None, *,
              options: FlowOptions | None = None, progress: bool = False,
              callback: Callable[[FlowResult], None] | None = None, resume: FlowResult | None = None,
              **keywords) -> FlowResult:
    """Integrate ``d theta/dt = -grad L(theta)`` of ``model`` (an :class:`AbstractModel`) from
    ``params`` on ``data`` to ``t_end``, with the core every flowsim run uses: the adaptive
    solver and its step control, the model's events located by root finding, every observable
    at the saved times, checkpoints (``callback`` after each chunk; ``resume=`` a running result
    continues to the same result an uninterrupted run gives) and progress.

    Takes :func:`flowsim.integrate`'s solver and save options (``t_end``, ``solver``, ``rtol``,
    ``atol``, ``max_steps``, ``saves``, ``grid``, ``t_first``, ``ts``, ``chunk``, ``precision``:
    64 by default, inside ``jax.enable_x64`` without touching JAX's global flag); ``engine``
    must be ``"auto"`` or ``"generic"`` (the model's parameters are the state).  Raises
    :class:`~flowsim.FlowFailure` (with the partial result) if the solver fails.
    """
    if resume is not None:
        params = resume.params_init
        if resume.status != "running":
            raise ValueError(f"resume: only a running (checkpointed) result can be resumed, not a {resume.status} one")
    options = check(model, params, data, t_end, options=options, **keywords)
    enable_compilation_cache()
    grid = options.times()
    if resume is not None and not np.array_equal(resume.grid, grid):
        raise ValueError("resume: the saved times differ from the run being resumed")
    with jax.enable_x64(options.precision == 64):
        problem = _problem(model, [params], [data], options, SINGLE, None)
        state = loop.begin(problem) if resume is None else loop.from_checkpoint(problem, resume)
        [result] = loop.run(problem, state, progress=progress, callback=callback)
    if result.status == "failed":
        raise FlowFailure(result.message, result)
    return result


def integrate_batch(model: AbstractModel, params, data=None, t_end: float | None = None, *,
                    options: FlowOptions | None = None, devices=None, progress: bool = False,
                    **keywords) -> list[FlowResult]:
    """Integrate a batch of starts of ``model`` in one solve, as :func:`flowsim.integrate_batch`
    does the transformer's: ``params`` is a list of starts, or one pytree whose every leaf has a
    leading member axis; ``data`` is one training set for every member, or a list with one per
    member (all of the same shapes).

    The members' flows are stacked into one ODE whose vector field, observables and events are
    vmapped; the step size is shared and controlled by the worst member's error (so each member's
    trajectory is its single solve's to the tolerances, not bit for bit), and each member has its
    own events.  ``devices`` (default: one device) splits the members over several JAX devices
    (the batch must be a multiple of their number).  Takes :func:`integrate`'s options; returns
    one :class:`FlowResult` per member; if the solve fails, every member's has
    ``status == "failed"``.
    """
    if isinstance(params, list):
        members = params
    else:
        sizes = {np.shape(x)[0] if np.ndim(x) else None for x in jax.tree.leaves(params)}
        if len(sizes) != 1 or None in sizes:
            raise ValueError("integrate_batch: params must be a list of starts or a pytree whose every leaf has the "
                             f"same leading member axis, got leading sizes {sorted(map(str, sizes))}")
        members = [jax.tree.map(lambda x: x[b], params) for b in range(sizes.pop())]
    own = isinstance(data, list)
    datas = data if own else [data]
    if not members or own and len(datas) != len(members):
        raise ValueError(f"integrate_batch: give one data set per member ({len(members)}), or one for all")
    for what, trees in (("params", members), ("data", datas)):
        shapes = {str(jax.tree.map(np.shape, t)) for t in trees}
        if len(shapes) > 1:
            raise ValueError(f"integrate_batch: the members' {what} must share their structure and shapes")
    if devices is not None and len(members) % len(devices):
        raise ValueError(f"integrate_batch: {len(members)} members do not split evenly over {len(devices)} devices")
    options = check(model, members[0], datas[0], t_end, options=options, members=len(members), **keywords)
    enable_compilation_cache()
    with jax.enable_x64(options.precision == 64):
        problem = _problem(model, members, datas, options, OWN_DATA if own else SHARED_DATA, devices)
        return loop.run(problem, loop.begin(problem), progress=progress)


def _problem(model: AbstractModel, members: list, datas: list, options: FlowOptions, batched, devices) -> loop.Problem:
    """The core loop's problem of these starts (data cycled over them), as the transformer's
    (:func:`flowsim.core.loop.problem`: a batch stacked on a leading member axis over ``devices``);
    inside the precision's ``jax.enable_x64``."""
    solver, controller = make_solver(options.solver)
    prepared = []
    for params, data in zip(members, itertools.cycle(datas)):
        dtype, params, data, engine = _cast(model, params, data, options.precision)
        prepared.append(Prepared(engine=engine, start=params, args=_args(model, engine, params, data),
                                 y0=jax.device_put(params)))
    return loop.problem(prepared, options.updated(options, engine="generic"), options.times(), solver, controller,
                         dtype, batched, devices)


def check(model: AbstractModel, params, data=None, t_end: float | None = None, *,
          options: FlowOptions | None = None, members: int = 1, **keywords) -> FlowOptions:
    """Refuse, before anything is computed, what :func:`integrate` would refuse: a model that is
    not an :class:`AbstractModel` or whose names collide, unknown or invalid options, parameters
    that are not floating arrays, and a run whose solver state or saved trajectory cannot fit in
    memory (from shapes alone), for ``members`` such runs at once.  Returns the options
    :func:`integrate` runs with (:func:`gradient_descent`'s for :class:`~flowsim.DescentOptions`)."""
    if not isinstance(model, AbstractModel):
        raise TypeError(f"model must be a flowsim.models.AbstractModel, got {type(model).__name__}")
    check_names(model)
    if t_end is not None:
        keywords["t_end"] = t_end
    if isinstance(options, DescentOptions):
        options = DescentOptions.updated(options, **keywords)
        _check_problem(model, params, data, options.precision, len(saved_steps(options)), members)
        return options
    options = FlowOptions.updated(options, **keywords)
    if options.engine not in ("auto", "generic"):
        raise ValueError(f"engine must be 'auto' or 'generic' for a model of flowsim.models, got {options.engine!r}")
    _check_problem(model, params, data, options.precision, len(options.times()), members)
    return options


def _check_problem(model: AbstractModel, params, data, precision: int, saves: int, members: int = 1) -> None:
    """:func:`check`'s checks of the parameters and the memory a run of ``saves`` saves needs."""
    _check_params(params)
    with jax.enable_x64(precision == 64):
        dtype, params, data, engine = _cast(model, params, data, precision)
        args = ModelArgs(data=data, ref=jax.eval_shape(engine.model.reference, params, data),
                         watching=np.ones(len(engine.event_names), bool))
        _check_fits(engine, params, args, saves, np.dtype(dtype).itemsize, members)


def gradient_descent(model: AbstractModel, params, data=None, lr: float | None = None, steps: int | None = None, *,
                     options: DescentOptions | None = None, progress: bool = False, **keywords) -> FlowResult:
    """Gradient descent ``theta <- theta - lr grad L(theta)`` on ``model`` from ``params``: the
    baseline of its flow, with :func:`flowsim.gradient_descent`'s loop (:func:`flowsim.core.descent.descend`).

    Takes :class:`~flowsim.DescentOptions` as an object or keywords: ``lr`` (0.01), ``steps``
    (default ``round(t_end / lr)``, the flow's horizon ``t_end`` whatever the learning rate),
    ``t_end``, ``save_every`` or ``saves``/``grid`` (default log-spaced from step 1),
    ``precision``.  Step ``k`` is saved at flow time ``k lr`` with every observable of the model
    (``loss``, ``grad_norm2`` and its own); each event is reported at the first saved step where
    its condition holds (``0.0`` at the start, ``None`` if never), so its resolution is the save
    grid's.  Raises :class:`~flowsim.FlowFailure` (with the saves up to the last finite one) if
    the iterates become non-finite.
    """
    keywords |= {k: v for k, v in (("lr", lr), ("steps", steps)) if v is not None}
    options = check(model, params, data, options=DescentOptions.updated(options, **keywords))
    with jax.enable_x64(options.precision == 64):
        _, params, data, engine = _cast(model, params, data, options.precision)
        args = _args(model, engine, params, data)
        return descend(engine, params, jax.device_put(params), args, options, progress=progress)


def _cast(model: AbstractModel, params, data, precision: int):
    """The dtype of ``precision``, the parameters and data cast to it and the engine of the
    parameters' structure (inside the precision's ``jax.enable_x64``)."""
    dtype = jnp.float64 if precision == 64 else jnp.float32
    params, data = as_dtype(params, dtype), as_dtype(data, dtype)
    model = _in_dtype(model, dtype)
    return dtype, params, data, GenericEngine(model=model, structure=jax.tree.structure(params))


def _in_dtype(model: AbstractModel, dtype) -> AbstractModel:
    """``model`` with its floating arrays (a task's matrices, say, made in float64) in ``dtype``,
    so that a float32 flow computes in float32 instead of asking JAX for float64 at every use;
    the model itself when they already are."""
    def cast(x):
        return np.asarray(x, dtype) if eqx.is_inexact_array(x) and x.dtype != dtype else x
    return jax.tree.map(cast, model)


def _args(model: AbstractModel, engine: GenericEngine, params, data) -> ModelArgs:
    """The run's arguments: the data, the model's reference of the start, every event watched."""
    return ModelArgs(data=data, ref=engine.model.reference(params, data), watching=np.ones(len(engine.event_names), bool))


def _check_params(params) -> None:
    leaves = jax.tree.leaves(params)
    if not leaves:
        raise ValueError("params must hold at least one array")
    for x in leaves:
        if not jnp.issubdtype(getattr(x, "dtype", np.asarray(x).dtype), jnp.floating):
            raise TypeError(f"every leaf of params is trained, so must be a floating array, got dtype "
                            f"{np.asarray(x).dtype}")


def _check_fits(engine: GenericEngine, params, args: ModelArgs, saves: int, itemsize: int, members: int) -> None:
    """Refuse (one line) a run (of ``members`` starts at once) whose solver state or saved
    trajectory does not fit, from shapes alone."""
    size = sum(math.prod(np.shape(x)) for x in jax.tree.leaves(params))
    one = jax.eval_shape(engine.observe, params, args)
    per_save = sum(math.prod(x.shape) for x in jax.tree.leaves(one))
    batch = f", {members} members" if members > 1 else ""
    check_fits(members * (itemsize * STATE_COPIES * size + 8 * saves * per_save),
               f"the flow of model {engine.model.name!r} ({size} parameters, {per_save} observed numbers per save{batch})",
               "save fewer times or choose smaller sizes")


def check_claims(result: FlowResult, model: AbstractModel) -> list[Row]:
    """Each of ``model.claims()`` judged on ``result``'s saved trajectory and event times, as the
    rows :func:`flowsim.reporting.format_table` prints."""
    rtol = result.options.solver.rtol if isinstance(result.options, FlowOptions) else math.nan
    trajectory = as_trajectory(result.ts, result.observables, result.events, rtol)
    rows = []
    for c in model.claims():
        holds, margin = c.check(trajectory, model)
        rows.append(Row(id=c.id, claim=c.text, reference=c.reference, window="whole run", verdict=HOLDS if holds else FAILS,
                        margin=float(margin), measured={}, criterion=c.measured))
    return rows
