"""Gradient descent on any engine of the core's contract: y <- y + lr vector_field(y), saved at chosen steps, in compiled pieces."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .checks import integer
from .errors import FlowFailure
from .options import DescentOptions, SaveOptions, save_times
from .programs import stack_values
from .trajectory import FlowResult


def save_steps(steps: int, saves: int = SaveOptions.saves, grid: str = SaveOptions.grid) -> np.ndarray:
    """The step numbers at which gradient descent saves: ``0``, then up to ``saves - 1`` distinct
    steps up to ``steps``, log-spaced from step 1 (so Phase 1 is resolved step by step) or evenly
    spaced."""
    integer(1)(steps, "steps")
    if steps == 1:
        return np.array([0, 1])
    t = save_times(float(steps), saves, grid, t_first=1.0 if grid == "log" else None)
    return np.unique(np.round(t).astype(np.int64))


#: Most gradient steps in one call of the compiled descent: a longer descent goes in pieces, with its
#: progress shown between them (a piece of the paper preset takes about a second on 2 cores).
PIECE_STEPS = 2048
#: Entries (a save, or a stretch of steps before one) per call: the compiled loop's one shape.
PIECE_ENTRIES = 16


@eqx.filter_jit
def _descend(engine, y0, ok0, args, counts, times, lr):
    """An outer ``lax.scan`` over entries; each an inner loop of ``counts[k]`` steps, then the
    observables and event values there, at flow time ``times[k]``: any engine of the core's
    contract (:class:`flowsim.core.contract.AbstractFlowEngine`), the transformer's or a model's.

    Once an iterate or its loss is non-finite the carry keeps the last finite state and stops
    stepping, so that a diverging run still returns where it was last finite.
    """

    def step(_, y):
        return jax.tree.map(lambda x, v: x + lr * v, y, engine.vector_field(None, y, args))

    def between_saves(carry, xs):
        (y, ok), (count, t) = carry, xs
        y_new = jax.lax.fori_loop(0, jnp.where(ok, count, 0), step, y)
        obs = engine.observe(y_new, args)
        finite = [jnp.all(jnp.isfinite(x)) for x in (*jax.tree.leaves(y_new), obs["loss"])]
        ok = ok & jnp.all(jnp.stack(finite))
        y = jax.tree.map(lambda a, b: jnp.where(ok, a, b), y_new, y)
        return (y, ok), (obs, stack_values(engine.event_values(t, y_new, args), y_new), ok)

    return jax.lax.scan(between_saves, (y0, ok0), (counts, times))


@eqx.filter_jit
def _start_facts(engine, y, args):
    """The start's facts (:meth:`~flowsim.core.contract.AbstractFlowEngine.start_facts`), one small compiled program."""
    return engine.start_facts(y, args)


def pieces(at: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """The calls of :func:`_descend` that save at steps ``at``: per call, :data:`PIECE_ENTRIES`
    step counts (at most :data:`PIECE_STEPS` in all, a long stretch between two saves split over
    several entries, zeros as padding) and which entries are saves."""
    entries = []
    for gap in np.diff(at, prepend=0):
        while gap > PIECE_STEPS:
            entries.append((PIECE_STEPS, False))
            gap -= PIECE_STEPS
        entries.append((int(gap), True))
    calls, current = [], []
    for entry in entries:
        if current and (len(current) == PIECE_ENTRIES or sum(c for c, _ in current) + entry[0] > PIECE_STEPS):
            calls.append(current)
            current = []
        current.append(entry)
    calls.append(current)
    padded = [call + [(0, False)] * (PIECE_ENTRIES - len(call)) for call in calls]
    return [(np.array([c for c, _ in call]), np.array([s for _, s in call])) for call in padded]


def saved_steps(options: DescentOptions) -> np.ndarray:
    """The step numbers a descent saves at: every ``save_every`` steps (and the last), or else
    :func:`save_steps` (``saves`` points on the save ``grid``)."""
    if options.save_every is None:
        return save_steps(options.steps, options.save.saves, options.save.grid)
    return np.unique(np.append(np.arange(0, options.steps + 1, options.save_every), options.steps))


def descend(engine, start, y0, args, options: DescentOptions, *, progress: bool = False) -> FlowResult:
    """Gradient descent on any engine of the core's contract
    (:class:`flowsim.core.contract.AbstractFlowEngine`): ``y <- y + lr vector_field(y)`` from ``y0``
    (the state of ``start``, both in the run's dtype) for ``options.steps`` steps, saved at
    :func:`saved_steps` as :func:`flowsim.gradient_descent` describes.  Call inside the precision's
    ``jax.enable_x64``.  Raises :class:`flowsim.FlowFailure` if the iterates become non-finite."""
    dtype = jax.tree.leaves(y0)[0].dtype
    at = saved_steps(options)
    bar = _progress_bar(options) if progress else None
    carry, kept = (y0, jnp.asarray(True)), []
    try:
        # A first "save after 0 steps" records the start inside the same compiled loop.
        done = 0
        for counts, saved in pieces(at):
            times = (done + np.cumsum(counts)) * options.lr
            done += int(counts.sum())
            carry, out = _descend(engine, *carry, args, jnp.asarray(counts), jnp.asarray(times, dtype),
                                  jnp.asarray(options.lr, dtype))
            kept.append(jax.tree.map(lambda x: np.asarray(x)[saved], out))
            if bar is not None:
                bar.update(int(counts.sum()))
                bar.set_postfix_str(f"t={bar.n * options.lr:.4g} loss={kept[-1][0]['loss'][-1]:.3e}"
                                    if saved.any() else f"t={bar.n * options.lr:.4g}")
    finally:
        if bar is not None:
            bar.close()
    y = carry[0]
    obs, values, ok = jax.tree.map(lambda *xs: np.concatenate(xs), *kept)
    facts = jax.tree.map(np.asarray, _start_facts(engine, y0, args))
    leaves = engine.final_leaves(y, args)
    params_final = None if leaves is None else engine.params_of(leaves)

    ts = at * options.lr
    n_ok = len(ts) if ok.all() else int(np.argmin(ok))
    # Gradients evaluated: up to the last step, or up to the save at which the iterates blew up.
    nfev = int(at[min(n_ok, len(at) - 1)])
    events = {}
    for j, name in enumerate(engine.event_names):
        held = np.flatnonzero(values[:n_ok, j] >= 0)
        events[name] = float(ts[held[0]]) if held.size else None
    result = FlowResult(
        ts=ts[:n_ok], observables={k: v[:n_ok] for k, v in obs.items()}, events=events,
        stats=dict(steps=nfev, nfev=nfev), params_init=jax.tree.map(np.asarray, start),
        params_final=jax.tree.map(np.asarray, params_final), t_reached=float(ts[n_ok - 1]),
        status="complete" if n_ok == len(ts) else "failed",
        message="" if n_ok == len(ts) else "non-finite iterates", grid=ts, chunks_done=1,
        state=y, options=options, start_facts=engine.start_record(facts, start, args),
    )
    if n_ok < len(ts):
        raise FlowFailure(f"gradient descent diverged between steps {at[n_ok - 1]} and {at[n_ok]} "
                          f"(lr={options.lr}): non-finite iterates", result)
    return result


def _progress_bar(options: DescentOptions):
    from tqdm.auto import tqdm

    return tqdm(total=options.steps, unit="step", desc="gd", leave=False)
