"""The compiled programs of a flow: one diffrax solve with events and saved observables, the start, an observation, the final matrices."""

from __future__ import annotations


import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from .contract import OWN_DATA, SHARED_DATA, SINGLE  # noqa: F401  (the layouts of a solve's members)
from .crossing import fired, make_event

# Outcome codes of one solve.
SUCCESS, EVENT, MAX_STEPS, DT_MIN, OTHER = range(5)


def _code(result) -> jax.Array:
    R = diffrax.RESULTS
    return jnp.select(
        [result == R.successful, result == R.event_occurred, result == R.max_steps_reached,
         result == R.dt_min_reached], [SUCCESS, EVENT, MAX_STEPS, DT_MIN], OTHER)


def describe(code) -> str:
    """A solve's outcome code in words."""
    if code == MAX_STEPS:
        return "the step limit (max_steps) was reached"
    if code == DT_MIN:
        return "the step size fell to its minimum"
    return "the solver did not converge (non-finite values or an internal failure)"


def _finite_tree(tree) -> jax.Array:
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


def stack_values(values: tuple, y) -> jax.Array:
    """The event conditions as one array (shape ``(0,)`` for a model without events)."""
    return jnp.stack(values) if values else jnp.zeros((0,), jax.tree.leaves(y)[0].dtype)


def _n_events(args) -> int:
    """How many events the run has: ``args.watching``'s last axis, not ``len(engine.event_names)``,
    which a batch's stacked engine may count from its stacked arrays' shapes."""
    return args.watching.shape[-1]


def _lead(tree):
    return jax.tree.map(lambda x: jnp.asarray(x)[None], tree)


def _member_fns(engine, batched):
    """The vector field, the observables (with a leading member axis), the event conditions
    (shaped like ``args.watching``) and the start's facts of the state; for a batch, every
    member's at once by vmap."""
    if not batched:
        return (engine.vector_field, lambda t, y, a: _lead(engine.observe(y, a)),
                lambda t, y, a: stack_values(engine.event_values(t, y, a), y),
                lambda y, a: _lead(engine.start_facts(y, a)))
    axes = engine.args_axes(batched)
    over = lambda f: lambda y, a: jax.vmap(f, in_axes=(0, 0, axes))(engine, y, a)
    return (lambda t, y, a: over(lambda e, y, a: e.vector_field(t, y, a))(y, a),
            lambda t, y, a: over(lambda e, y, a: e.observe(y, a))(y, a),
            lambda t, y, a: over(lambda e, y, a: stack_values(e.event_values(t, y, a), y))(y, a),
            over(lambda e, y, a: e.start_facts(y, a)))


def _error_norm(engine, batched):
    """The step-size control's norm of a scaled error: the engine's (:meth:`error_norm`); for a
    batch, the worst member's, so each is held to the tolerances."""
    if not batched:
        return engine.error_norm
    return eqx.Partial(lambda engine, y: jnp.max(jax.vmap(lambda e, y: e.error_norm(y))(engine, y)), engine)


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
def solve(engine, solver, controller, y0, t0, t1, dt0, ts, args, max_steps, precision, batched):
    """One diffrax solve from ``t0`` to ``t1`` (first step ``dt0``, or diffrax's guess if
    ``dt0 <= 0``), stopped early by an event, saving the observables at ``ts``.  A batch
    (members stacked on a leading axis of ``engine``, ``y0`` and the per-member parts of
    ``args``) is one ODE with a shared step size.  Returns, for :class:`flowsim.core.loop.SolveOutput`:
    the saved times and observables, the time reached, the state there, whether it is finite,
    the outcome code, the events that fired (:func:`flowsim.crossing.fired`), step counts and the next step."""
    vector_field, observe, values, _ = _member_fns(engine, batched)
    controller = eqx.tree_at(lambda c: (c.dt0, c.pid.norm), controller, (dt0, _error_norm(engine, batched)))
    ravel, unravel = _flattening(y0, batched)
    flat_field = lambda t, y, a: ravel(vector_field(t, unravel(y), a))
    flat_values = lambda t, y, a: values(t, unravel(y), a)
    saveat = diffrax.SaveAt(subs=[diffrax.SubSaveAt(ts=ts, fn=lambda t, y, a: observe(t, unravel(y), a)),
                                  diffrax.SubSaveAt(t1=True)], controller_state=True)
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(flat_field), solver, t0, t1, dt0=None, y0=ravel(y0), args=args, saveat=saveat,
        stepsize_controller=controller, event=make_event(flat_values, precision) if _n_events(args) else None,
        max_steps=max_steps, throw=False)
    y1 = unravel(sol.ys[1][0])
    stats = jnp.stack([sol.stats[k] for k in ("num_steps", "num_accepted_steps", "num_rejected_steps")])
    return (sol.ts[0], sol.ys[0], sol.ts[1][0], y1, _finite_tree(y1), _code(sol.result),
            fired(values(sol.ts[1][0], y1, args), args.watching) if _n_events(args) else jnp.zeros((0,), bool), stats,
            sol.controller_state[1])


@eqx.filter_jit
def observe(engine, y, args, batched):
    """The first observation, at t = 0: every observable at ``y`` (with a leading member axis),
    the event conditions and the start's facts (:func:`flowsim.models.cooccurrence.observables.start_facts`)."""
    _, observe_fn, values, facts = _member_fns(engine, batched)
    t0 = jnp.zeros((), jax.tree.leaves(y)[0].dtype)
    return observe_fn(None, y, args), jnp.atleast_2d(values(t0, y, args)), facts(y, args)


# Programs that flowsim.core.aot exports return plain tuples: jax.export serializes no custom pytree.
@eqx.filter_jit
def final_params(engine, y, args):
    """The leaves of the model's parameters at ``y`` as a tuple, or ``None``."""
    return engine.final_leaves(y, args)


@eqx.filter_jit
def start(engine, params, dataset):
    """The initial state and the reference quantities (as :meth:`Reference.as_tuple`), as one
    program rather than a dozen eager operations, each of which a new process would fetch from
    the compilation cache."""
    y0 = engine.init_state(params, dataset)
    return y0, engine.reference(y0, params, dataset).as_tuple()


def member_sharding(devices):
    """Placement of stacked member arrays: split along the member axis over ``devices`` (a 1-d
    mesh), so that XLA partitions the batched solve; the identity for one device or none."""
    if devices is None or len(devices) < 2:
        return lambda tree: tree
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    sharding = NamedSharding(Mesh(np.asarray(devices), ("members",)), PartitionSpec("members"))
    return lambda tree: jax.tree.map(lambda x: jax.device_put(x, sharding), tree)
