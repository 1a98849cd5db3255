"""Any model's gradient flow through the core: draw a problem, integrate it into a FlowResult, judge the model's claims on it."""

from __future__ import annotations

import math
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..core import loop
from ..core.cache import enable_compilation_cache
from ..core.contract import SINGLE
from ..core.controller import evaluations_per_step, make_solver
from ..core.loop import as_dtype
from ..core.options import FlowOptions
from ..core.resources import STATE_COPIES, check_fits
from ..core.errors import FlowFailure
from ..core.trajectory import FlowResult
from ..core.verdicts import FAILS, HOLDS, Row
from .contract import AbstractModel, as_trajectory, check_names
from .generic import GenericEngine, ModelArgs

__all__ = ["check", "check_claims", "draw", "integrate"]


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
    solver, controller = make_solver(options.solver)
    with jax.enable_x64(options.precision == 64):
        dtype, params, data, engine = _cast(model, params, data, options.precision)
        args = ModelArgs(data=data, ref=engine.model.reference(params, data),
                         watching=np.ones(len(engine.event_names), bool))
        problem = loop.Problem(engines=[engine], starts=[params], args=[args], engine=engine, flow_args=args,
                               y0=jax.device_put(params), solver=solver, controller=controller, grid=grid,
                               options=options.updated(options, engine="generic"),
                               per_step=evaluations_per_step(solver), dtype=dtype, batched=SINGLE)
        state = loop.begin(problem) if resume is None else loop.from_checkpoint(problem, resume)
        [result] = loop.run(problem, state, progress=progress, callback=callback)
    if result.status == "failed":
        raise FlowFailure(result.message, result)
    return result


def check(model: AbstractModel, params, data=None, t_end: float | None = None, *,
          options: FlowOptions | None = None, **keywords) -> FlowOptions:
    """Refuse, before anything is computed, what :func:`integrate` would refuse: a model that is
    not an :class:`AbstractModel` or whose names collide, unknown or invalid options, parameters
    that are not floating arrays, and a run whose solver state or saved trajectory cannot fit in
    memory (from shapes alone).  Returns the options :func:`integrate` runs with."""
    if not isinstance(model, AbstractModel):
        raise TypeError(f"model must be a flowsim.models.AbstractModel, got {type(model).__name__}")
    check_names(model)
    if t_end is not None:
        keywords["t_end"] = t_end
    options = FlowOptions.updated(options, **keywords)
    if options.engine not in ("auto", "generic"):
        raise ValueError(f"engine must be 'auto' or 'generic' for a model of flowsim.models, got {options.engine!r}")
    _check_params(params)
    with jax.enable_x64(options.precision == 64):
        dtype, params, data, engine = _cast(model, params, data, options.precision)
        args = ModelArgs(data=data, ref=jax.eval_shape(engine.model.reference, params, data),
                         watching=np.ones(len(engine.event_names), bool))
        _check_fits(engine, params, args, len(options.times()), np.dtype(dtype).itemsize)
    return options


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


def _check_params(params) -> None:
    leaves = jax.tree.leaves(params)
    if not leaves:
        raise ValueError("params must hold at least one array")
    for x in leaves:
        if not jnp.issubdtype(getattr(x, "dtype", np.asarray(x).dtype), jnp.floating):
            raise TypeError(f"every leaf of params is trained, so must be a floating array, got dtype "
                            f"{np.asarray(x).dtype}")


def _check_fits(engine: GenericEngine, params, args: ModelArgs, saves: int, itemsize: int) -> None:
    """Refuse (one line) a run whose solver state or saved trajectory does not fit, from shapes alone."""
    size = sum(math.prod(np.shape(x)) for x in jax.tree.leaves(params))
    one = jax.eval_shape(engine.observe, params, args)
    per_save = sum(math.prod(x.shape) for x in jax.tree.leaves(one))
    check_fits(itemsize * STATE_COPIES * size + 8 * saves * per_save,
               f"the flow of model {engine.model.name!r} ({size} parameters, {per_save} observed numbers per save)",
               "save fewer times or choose smaller sizes")


def check_claims(result: FlowResult, model: AbstractModel) -> list[Row]:
    """Each of ``model.claims()`` judged on ``result``'s saved trajectory and event times, as the
    rows :func:`flowsim.reporting.format_table` prints."""
    trajectory = as_trajectory(result.ts, result.observables, result.events)
    rows = []
    for c in model.claims():
        holds, margin = c.check(trajectory, model)
        rows.append(Row(id=c.id, claim=c.text, reference=c.reference, window="whole run", verdict=HOLDS if holds else FAILS,
                        margin=float(margin), measured={}, criterion=c.measured))
    return rows
