"""Phase-boundary events: continuous conditions whose zero crossings diffrax locates by root finding.

Each event is a scalar function ``c(y)`` that is negative before the event and crosses zero
upward at it, so it "holds" once ``c >= 0``:

- ``phase1_end`` (Theorem 3.1, second item): ``c = min_i y_i F(X_i)``; T1 is the first time
  every training sample is classified correctly;
- ``G3_negative``: ``c = -G(mu_3)``; the common word's MLP value turns negative (Theorem 3.1,
  first item);
- ``scores_leave_band``: ``c = max_{i,j<=3} |s(mu_i, mu_j)(t) - s(mu_i, mu_j)(0)| - band * max_{i,j<=3}
  |s(mu_i, mu_j)(0)|``; the attention scores leave a band of relative half-width ``band`` around
  their initial values (the end of "attention barely moves"); relative, so one default serves
  every initialization scale.

Each event time is reported as a float, ``0.0`` if the event holds at the start, or ``None``
if it is not reached by ``t_end``.
"""

from __future__ import annotations

from collections.abc import Callable

import diffrax
import equinox as eqx
import jax.numpy as jnp
import optimistix as optx

EVENT_NAMES = ("phase1_end", "G3_negative", "scores_leave_band")


def _min_margin(engine, y, args):
    return engine.margins(y, args).min()


def _minus_G3(engine, y, args):
    # Evaluated at every step: G of mu_3 alone, not of the whole vocabulary.
    return -engine.G(y, args, words=slice(2, 3))[0]


def _score_excursion(engine, y, args):
    s0 = args.ref.M0[:3, :3]
    return jnp.max(jnp.abs(engine.scores3(y, args) - s0)) - args.band * jnp.max(jnp.abs(s0))


#: Condition functions ``c(engine, y, args)``, in the order of :data:`EVENT_NAMES`.
CONDITIONS = (_min_margin, _minus_G3, _score_excursion)


def event_values(engine, y, args):
    """The condition values ``c``, in the order of :data:`EVENT_NAMES`."""
    return tuple(c(engine, y, args) for c in CONDITIONS)


class _FirstCrossing(eqx.Module):
    values: Callable  # (y, args) -> condition values, shaped like args.watching

    def __call__(self, t, y, args, **kwargs):
        return jnp.max(jnp.where(args.watching, self.values(y, args), -jnp.inf))


def make_event(values: Callable, precision: int) -> diffrax.Event:
    """A diffrax ``Event`` for the first upward zero crossing among the still-watched conditions
    ``values(y, args)`` (:func:`event_values` stacked, per member for a batch).

    The condition is the maximum of the watched ``c`` (it crosses zero exactly when the first of
    them does), so one compiled solve serves every segment and the crossing can be refined by
    bisection on the solver's dense interpolant; which event fired is read off afterwards with
    :func:`fired`.
    """
    tol = (1e-12, 1e-10) if precision == 64 else (1e-6, 1e-5)
    # An upward crossing fixes the bracket's orientation; "detect" would cost two more evaluations.
    root_finder = optx.Bisection(rtol=tol[0], atol=tol[1], flip=False)
    return diffrax.Event(cond_fn=_FirstCrossing(values), root_finder=root_finder, direction=True)


def fired(values, watching):
    """Flat index of the watched condition that is largest (the one that just crossed zero)."""
    return jnp.argmax(jnp.where(watching, values, -jnp.inf).reshape(-1))
