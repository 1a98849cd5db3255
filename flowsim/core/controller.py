"""diffrax's solvers by name and the PID controller extended to carry its proposed step across solves."""

from __future__ import annotations

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp

from .names import SOLVERS, table
from .options import SolverOptions

#: The diffrax solver of each name of :data:`flowsim.core.names.SOLVERS`.
SOLVER_CLASSES = table(SOLVERS, {
    "tsit5": diffrax.Tsit5,
    "dopri5": diffrax.Dopri5,
    "dopri8": diffrax.Dopri8,
    "bosh3": diffrax.Bosh3,
    "kvaerno5": diffrax.Kvaerno5,
}, "flowsim.core.controller.SOLVER_CLASSES")


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


def make_solver(options: SolverOptions):
    """The diffrax solver of ``options`` and the PID controller (:class:`CarriedStep`) that adapts its steps."""
    # Tolerances as arrays, so that changing them does not recompile the solve.
    pid = diffrax.PIDController(rtol=jnp.asarray(options.rtol), atol=jnp.asarray(options.atol))
    return SOLVER_CLASSES[options.solver](), CarriedStep(pid)


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
