"""The host loop of a flow, as named phases over one state record: begin or resume, advance a chunk (with its events), finish.

A run's saved times are split into chunks; each chunk is one compiled solve (:func:`flowsim.core.programs.solve`),
restarted after every event it stops at, and a checkpoint (a ``"running"`` :class:`FlowResult`)
can be taken between chunks.  The phases follow optimistix's init / step / terminate /
postprocess: :func:`begin` (or :func:`from_checkpoint`), :func:`advance`, :func:`finished`,
:func:`results`; :func:`run` strings them together.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import PyTree

from . import aot, programs
from .contract import AbstractFlowEngine
from .controller import evaluations_per_step
from .options import FlowOptions
from .trajectory import FlowResult


@dataclasses.dataclass(frozen=True)
class Prepared:
    """A start made ready to integrate: its engine, the start and the run's arguments in the
    flow's dtype, and the initial state."""

    engine: AbstractFlowEngine
    start: object
    args: object  # the engine's run arguments (an equinox module: the transformer's FlowArgs, a model's ModelArgs)
    y0: PyTree


@dataclasses.dataclass(frozen=True)
class Problem:
    """What stays fixed while the loop runs: the engines, starts and arguments of the members,
    their stacked form for a batch, the solver and the save grid."""

    engines: list  # one per member
    starts: list  # the members' starts (host arrays), for the results
    args: list  # one engine's run arguments per member
    engine: object  # the engine the solve runs: engines[0], or all stacked for a batch
    flow_args: object  # likewise for the run arguments
    y0: PyTree  # the initial state, stacked for a batch
    solver: object
    controller: object
    grid: np.ndarray
    options: FlowOptions  # with the engine resolved
    per_step: tuple[int, int] | None  # vector-field evaluations per step and per solve
    dtype: object
    batched: object  # programs.SINGLE, SHARED_DATA or OWN_DATA

    @property
    def event_names(self) -> tuple[str, ...]:
        return self.engines[0].event_names

    @property
    def members(self) -> int:
        return len(self.engines)

    @property
    def chunk(self) -> int:
        """Saved times per chunk (no padding past the last saved time)."""
        return min(self.options.save.chunk, len(self.grid) - 1)

    @property
    def n_chunks(self) -> int:
        return math.ceil((len(self.grid) - 1) / self.chunk)

    def chunk_indices(self, c: int) -> np.ndarray:
        """Indices into :attr:`grid` of the saved times of chunk ``c``."""
        return np.arange(1 + c * self.chunk, min(1 + (c + 1) * self.chunk, len(self.grid)))

    def watching(self, events: list[dict]):
        """The arguments with ``watching`` set to the events each member has not located yet."""
        watching = np.asarray([[ev[k] is None for k in self.event_names] for ev in events], bool)
        return eqx.tree_at(lambda a: a.watching, self.flow_args, watching if self.batched else watching[0])


def problem(prepared: list[Prepared], options: FlowOptions, grid, solver, controller, dtype, batched,
            devices=None) -> Problem:
    """The loop's fixed inputs for ``prepared`` members; a batch's engines, initial states and the
    per-member fields of their arguments (those :meth:`~AbstractFlowEngine.args_axes` maps over)
    stacked along a leading member axis, placed over ``devices``."""
    engines = [p.engine for p in prepared]
    args = [p.args for p in prepared]
    engine, flow_args, y0 = engines[0], args[0], prepared[0].y0
    if batched:
        place = programs.member_sharding(devices)
        stack = lambda trees: place(jax.tree.map(lambda *xs: jnp.stack(xs), *trees))
        axes = engine.args_axes(batched)
        per_member = [f.name for f in dataclasses.fields(flow_args) if getattr(axes, f.name) == 0]
        engine, y0 = stack(engines), stack([p.y0 for p in prepared])
        flow_args = eqx.tree_at(lambda a: tuple(getattr(a, f) for f in per_member), flow_args,
                                tuple(stack([getattr(a, f) for a in args]) for f in per_member))
    return Problem(engines=engines, starts=[p.start for p in prepared], args=args, engine=engine,
                   flow_args=flow_args, y0=y0, solver=solver, controller=controller, grid=grid,
                   options=options, per_step=evaluations_per_step(solver), dtype=dtype, batched=batched)


@dataclasses.dataclass(frozen=True)
class Failure:
    """Why and where a run stopped short: a short reason, the full message, and how far it got."""

    why: str
    message: str
    t_reached: float
    chunks_done: int


@dataclasses.dataclass
class LoopState:
    """Everything that changes while the loop runs."""

    y: PyTree  # the state at t (stacked for a batch), on the device
    t: float  # time reached
    dt: float  # the step the controller proposed next (<= 0: let diffrax guess the first)
    chunks_done: int
    saved: list[dict]  # per member, observable -> rows for every saved time, filled up to `rows`
    rows: int  # saved times recorded so far
    events: list[dict]  # per member, event name -> time or None
    stats: dict
    facts: list[dict]  # per member, the start's facts (flowsim.models.cooccurrence.observables.start_record)
    failure: Failure | None = None

    def record(self, b: int, block: dict) -> None:
        """Member ``b``'s observables at the next saved times: written in place, so that a run's
        cost in copies is proportional to its saves, not to their square."""
        n = len(next(iter(block.values())))
        for k, v in block.items():
            self.saved[b][k][self.rows:self.rows + n] = v

    def observables(self, b: int) -> dict:
        return {k: v[:self.rows] for k, v in self.saved[b].items()}


@dataclasses.dataclass(frozen=True)
class SolveOutput:
    """One solve's outputs on the host (the state stays on the device)."""

    ts: np.ndarray  # the chunk's save slots; NaN where the solve stopped before them
    observables: dict  # observable -> (slots, members, ...)
    t: float  # time reached
    y: PyTree
    finite: bool
    code: int  # programs.SUCCESS, EVENT, ...
    fired: np.ndarray  # bool, per (member,) event: those that fired where the solve stopped
    steps: np.ndarray  # attempted, accepted, rejected
    dt_next: float

    @classmethod
    def fetch(cls, raw) -> SolveOutput:
        ts, obs, t, y, finite, code, which, steps, dt = raw
        ts, obs, t, finite, code, which, steps, dt = jax.device_get((ts, obs, t, finite, code, which, steps, dt))
        return cls(ts=ts, observables=obs, t=float(t), y=y, finite=bool(finite), code=int(code),
                   fired=np.asarray(which, bool), steps=steps, dt_next=float(dt))


# -- phases -------------------------------------------------------------------------------------


def begin(problem: Problem) -> LoopState:
    """The loop at t = 0: the first observation saved, and the events that hold at the start."""
    obs0, values0, facts0 = jax.device_get(aot.call("observe", programs.observe, problem.engine, problem.y0,
                                                    problem.flow_args, problem.batched))
    B = problem.members
    state = LoopState(
        y=problem.y0, t=0.0, dt=0.0, chunks_done=0, saved=[_buffers(problem, {k: v[b] for k, v in obs0.items()}) for b in range(B)], rows=0,
        events=[{k: (0.0 if v >= 0 else None) for k, v in zip(problem.event_names, values0[b])} for b in range(B)],
        stats=dict(steps=0, accepted_steps=0, rejected_steps=0, nfev=0 if problem.per_step else None, solves=0),
        facts=[problem.engines[b].start_record({k: v[b] for k, v in facts0.items()}, problem.starts[b], problem.args[b])
               for b in range(B)])
    for b in range(B):
        state.record(b, {k: v[b][None] for k, v in obs0.items()})
    state.rows = 1
    return state


def from_checkpoint(problem: Problem, result: FlowResult) -> LoopState:
    """The loop where the running ``result`` (handed to a callback between chunks) stopped.

    The state is placed on the device as a fresh run's initial state is: host arrays there
    would make the solve a different program (uncommitted inputs), compiled a second time in a
    process that has already run this configuration."""
    y = jax.tree.map(lambda x, like: jax.device_put(x, like.sharding), as_dtype(result.state, problem.dtype), problem.y0)
    state = LoopState(y=y,
                      t=float(problem.grid[problem.chunk_indices(result.chunks_done - 1)[-1]]),
                      dt=result.dt_next, chunks_done=result.chunks_done,
                      saved=[_buffers(problem, {k: np.asarray(v)[0] for k, v in result.observables.items()})],
                      rows=0, events=[dict(result.events)], stats=dict(result.stats), facts=[dict(result.start_facts)])
    state.record(0, {k: np.asarray(v) for k, v in result.observables.items()})
    state.rows = len(result.ts)
    return state


def finished(problem: Problem, state: LoopState) -> bool:
    return state.failure is not None or state.chunks_done == problem.n_chunks


#: Most steps of one solve: a chunk that needs more is solved in pieces of this many, each going
#: on from where the last stopped (its state and proposed step, as after an event), so that a long
#: chunk reports its progress between pieces.  A piece of 512 cheap steps takes milliseconds;
#: one of the costliest runs (a width-free run at m = m1 = 1e11, ~5 ms a step) a few seconds.
SEGMENT_STEPS = 512


def advance(problem: Problem, state: LoopState,
            progress: Callable[[LoopState, float, float], None] | None = None) -> LoopState:
    """Integrate the next chunk: solve to its last saved time, restarting after each event the
    solve stops at and after every :data:`SEGMENT_STEPS` steps (``progress(state, t, dt)`` is
    told the time reached and the step proposed there each time); save what it reached; record
    a failure (solver, non-finite state, step limit)."""
    c = state.chunks_done
    idx = problem.chunk_indices(c)
    t_a, t_b = problem.grid[idx[0] - 1], problem.grid[idx[-1]]
    # At least two save slots: diffrax evaluates a lone slot's observables on every step.
    slots = np.full(max(problem.chunk, 2), t_b)
    slots[: len(idx)] = problem.grid[idx]
    rows = [None] * len(slots)
    y, dt = state.y, state.dt
    limit = problem.options.solver.max_steps
    while True:
        out = _solve(problem, y, t_a, t_b, dt, np.maximum(slots, t_a), state.events)
        _count(state.stats, out.steps, problem.per_step)
        for i in np.flatnonzero(np.isfinite(out.ts)):
            if rows[i] is None:
                rows[i] = {k: v[i] for k, v in out.observables.items()}  # (members, ...)
        if out.code == programs.EVENT:
            for b, k in zip(*np.nonzero(out.fired.reshape(problem.members, -1))):
                state.events[b][problem.event_names[k]] = out.t
        elif not (out.code == programs.MAX_STEPS and out.finite and state.stats["steps"] < limit):
            break  # done, or failed: a piece that ran out of steps goes on while the run's limit allows
        y, t_a, dt = out.y, out.t, out.dt_next
        if progress is not None:
            progress(state, t_a, dt)
    done = [r for r in rows[: len(idx)] if r is not None]
    if done:
        for b in range(problem.members):
            state.record(b, {k: np.stack([r[k][b] for r in done]) for k in done[0]})
        state.rows += len(done)
    if out.code != programs.SUCCESS or not out.finite:
        why = programs.describe(out.code) if out.code != programs.SUCCESS else "non-finite state"
        if out.finite:
            y, t_a = out.y, out.t
        state.y, state.t = y, float(t_a)
        state.failure = Failure(why, f"solver failed at t={out.t:.6g}: {why}", float(t_a), c)
        return state
    state.y, state.t, state.dt, state.chunks_done = out.y, float(t_b), out.dt_next, c + 1
    if state.stats["steps"] > limit:
        why = "step limit exceeded"
        state.failure = Failure(why, f"step limit max_steps={limit} exceeded at t={t_b:.6g}", float(t_b), c + 1)
    return state


def results(problem: Problem, state: LoopState, status: str | None = None) -> list[FlowResult]:
    """One :class:`FlowResult` per member: ``"failed"`` after a failure, else ``"complete"``,
    or the given ``status`` (``"running"`` for a checkpoint between chunks)."""
    if status is None:
        status = "failed" if state.failure is not None else "complete"
    failure = state.failure if status == "failed" else None
    running = status == "running"
    return [_result(problem, state, b, status, failure, state.dt if running else 0.0)
            for b in range(1 if running else problem.members)]


def run(problem: Problem, state: LoopState, *, progress: bool = False,
        callback: Callable[[FlowResult], None] | None = None) -> list[FlowResult]:
    """Advance chunk by chunk until :func:`finished`, handing each intermediate checkpoint
    (member 0's running result) to ``callback``; with ``progress``, a :class:`Progress` bar."""
    bar = Progress(problem, state) if progress else None
    try:
        while not finished(problem, state):
            state = advance(problem, state, None if bar is None else bar.piece)
            if state.failure is not None:
                break
            if bar is not None:
                bar.chunk(state)
            if callback is not None and not finished(problem, state):
                callback(results(problem, state, "running")[0])
    finally:
        if bar is not None:
            bar.close()
    return results(problem, state)


#: Wall time past which a run says, once, that it may be long and why (seconds).
LONG_RUN_S = 60.0


class Progress:
    """A run's progress on stderr (tqdm): saved times done, and after every chunk and every piece
    of a solve (:data:`SEGMENT_STEPS`) the flow time reached, the solver steps and their rate.

    Once the pace has been measured for a sixth of :data:`LONG_RUN_S` (steps per second after
    the first solve, which compiles), a run that may take longer than :data:`LONG_RUN_S` says so
    in one line: the time at the pace of its current step size to ``t_end``, or to the step limit
    if that comes first.  A gradient flow's steps lengthen by orders of magnitude once Phase 1
    ends, so a pace read in its first second foretold hours for runs that take seconds."""

    def __init__(self, problem: Problem, state: LoopState):
        from tqdm.auto import tqdm

        self.problem, self.write = problem, tqdm.write
        self.bar = tqdm(total=len(problem.grid) - 1, initial=state.chunks_done * problem.chunk, unit="save",
                        desc="flow", leave=False)
        self.since: tuple[float, int] | None = None  # (wall time, steps) where the pace is measured from
        self.warned = False

    def piece(self, state: LoopState, t: float, dt: float) -> None:
        """After a piece of a chunk's solve: the status, and the warning of a long run."""
        rate = self._rate(state)
        self.bar.set_postfix_str(self._status(t, state, rate), refresh=False)
        self.bar.update(0)  # redraws at most every tqdm mininterval
        if rate and not self.warned and time.perf_counter() - self.since[0] >= LONG_RUN_S / 6:
            self._warn_if_long(t, dt, state.stats["steps"], rate)

    def chunk(self, state: LoopState) -> None:
        rate = self._rate(state)
        loss = state.saved[0]["loss"][state.rows - 1]
        self.bar.set_postfix_str(f"{self._status(state.t, state, rate)} loss={loss:.3e}", refresh=False)
        self.bar.update(len(self.problem.chunk_indices(state.chunks_done - 1)))

    def close(self) -> None:
        self.bar.close()

    def _rate(self, state: LoopState) -> float | None:
        now, steps = time.perf_counter(), state.stats["steps"]
        if self.since is None:
            self.since = (now, steps)
            return None
        return (steps - self.since[1]) / (now - self.since[0]) if now > self.since[0] else None

    def _status(self, t: float, state: LoopState, rate: float | None) -> str:
        pace = f" ({rate:.3g}/s)" if rate else ""
        return f"t={t:.4g} steps={state.stats['steps']}{pace}"

    def _warn_if_long(self, t: float, dt: float, steps: int, rate: float) -> None:
        options = self.problem.options
        t_end, limit = float(self.problem.grid[-1]), options.solver.max_steps
        to_end = (t_end - t) / dt if dt > 0 else math.inf
        ahead = min(to_end, limit - steps)
        if ahead / rate < LONG_RUN_S:
            return
        self.warned = True
        if to_end > limit - steps:
            outlook = (f"at this step size t_end={t_end:g} is {to_end:.2g} steps away, so the step limit "
                       f"max_steps={limit} will stop it in about {_duration((limit - steps) / rate)} unless the "
                       "steps lengthen")
        else:
            outlook = f"at this step size t_end={t_end:g} is {to_end:.2g} steps, about {_duration(to_end / rate)}, away"
        self.write(f"flowsim: a long run: its steps are {dt:.2g} long at t={t:.3g} ({rate:.3g} steps/s); {outlook}",
                   file=sys.stderr)


def _duration(seconds: float) -> str:
    for unit, size in (("days", 86400), ("h", 3600), ("min", 60)):
        if seconds >= 2 * size:
            return f"{seconds / size:.3g} {unit}"
    return f"{seconds:.0f} s"


# -- pieces -------------------------------------------------------------------------------------


def _solve(problem: Problem, y, t_a, t_b, dt, slots, events) -> SolveOutput:
    times = (np.asarray(t, problem.dtype) for t in (t_a, t_b, dt, slots))
    return SolveOutput.fetch(aot.call(
        "solve", programs.solve, problem.engine, problem.solver, problem.controller, y, *times,
        problem.watching(events), min(SEGMENT_STEPS, problem.options.solver.max_steps), problem.options.precision,
        problem.batched))


def _count(stats: dict, steps, per_step) -> None:
    stats["solves"] += 1
    for key, v in zip(("steps", "accepted_steps", "rejected_steps"), steps):
        stats[key] += int(v)
    if per_step is not None:
        stats["nfev"] += per_step[0] * int(steps[0]) + per_step[1]


def _result(problem: Problem, state: LoopState, b: int, status: str, failure: Failure | None,
            dt: float) -> FlowResult:
    # A running result (a checkpoint) shares the loop's buffers: it is read before the loop moves on.
    obs = state.observables(b) if status == "running" else {k: v.copy() for k, v in state.observables(b).items()}
    n = state.rows
    y = jax.tree.map(lambda x: x[b], state.y) if problem.batched else state.y
    t_reached = failure.t_reached if failure else (problem.grid[-1] if status == "complete" else state.t)
    chunks = failure.chunks_done if failure else state.chunks_done
    return FlowResult(
        ts=problem.grid[:n].copy(), observables=obs, events=dict(state.events[b]), stats=dict(state.stats),
        params_init=_host(problem.starts[b]), params_final=_host(_final_params(problem, b, y)),
        t_reached=float(t_reached), status=status, message=failure.message if failure else "",
        grid=problem.grid, chunks_done=chunks, state=y, options=problem.options, dt_next=dt,
        start_facts=dict(state.facts[b]))


def _final_params(problem: Problem, b: int, y):
    """The model's parameters at ``y``; ``None`` where the engine has none, or where they are not
    finite (a failed run's last state), which a parameters' class may refuse."""
    leaves = aot.call("to_params", programs.final_params, problem.engines[b], y, problem.args[b])
    if leaves is None or not all(np.all(np.isfinite(np.asarray(x))) for x in leaves):
        return None
    return problem.engines[b].params_of(leaves)


def _buffers(problem: Problem, one: dict) -> dict:
    """Observable arrays for every saved time, shaped and typed like ``one`` observation."""
    return {k: np.empty((len(problem.grid), *np.shape(v)), np.asarray(v).dtype) for k, v in one.items()}


def as_dtype(tree, dtype):
    """Floating leaves cast to ``dtype`` on the host: an eager cast on the device would be one
    more program to compile (or fetch from the cache) per leaf shape in a new process."""
    def cast(x):
        kind = x.dtype if hasattr(x, "dtype") else np.asarray(x).dtype
        return np.asarray(x, dtype) if jnp.issubdtype(kind, jnp.floating) else x
    return jax.tree.map(cast, tree)


def _host(tree):
    """Arrays as numpy, so that their float64 values survive outside ``jax.enable_x64``."""
    return None if tree is None else jax.tree.map(np.asarray, tree)
