"""Phase markers: continuous conditions whose zero crossings the core locates by root finding (flowsim.core.crossing).

Each marker is a scalar function ``c(t, y)`` that is negative before it and crosses zero upward at
it, so it "holds" once ``c >= 0``.  The paper's own markers first, then two of ours:

- ``all_correct`` (Theorem 3.1, second item): ``c = min_i y_i F(X_i)``; the first time every
  training sample is classified correctly;
- ``phase1_end``, T1 of Definition E.2: ``T1 = min(t', C_T1 / (sigma1^2 m m1))``, t' the first
  time one of the near-initialization bounds (1)-(4) of :class:`~flowsim.core.options.MarkerOptions`
  is left, so ``c = max(t / cap - 1, max_k item_k / bound_k - 1)``; a width-free start, which
  has no neurons, watches bounds (3)-(4) and the cap only;
- ``rates_ordered``, T0.5 of Theorem E.19 (Lemma 4.3): the first time
  ``-dG(mu_3)/dt >= (1 + C_rates) max(dG(mu_1)/dt, dG(mu_2)/dt)`` (the rates exact, by a
  Jacobian-vector product along the flow);
- ``one_target_margin``, T' of Corollary E.20: the first time ``min over I2, I3 of y_i F(X_i) >=
  C_margin`` (the corollary writes F_i; Theorem E.27's proof uses it for the margins y_i F_i);
- ``G3_negative``: ``c = -G(mu_3)``; the common word's MLP value turns negative;
- ``scores_leave_band``: the scores ``s(mu_i, mu_j)``, i, j <= 3, leave a band of relative
  half-width ``band`` around their initial values (the end of "attention barely moves").

Each event time is reported as a float, ``0.0`` if the event holds at the start, or ``None``
if it is not reached by ``t_end``.  The constants are :class:`~flowsim.core.options.MarkerOptions`,
made absolute for a start by :func:`markers_of`.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from .engines import Markers
from ...core.options import MarkerOptions

EVENT_NAMES = ("all_correct", "phase1_end", "rates_ordered", "one_target_margin", "G3_negative", "scores_leave_band")

#: The paper's symbol for each marker it defines.
SYMBOLS = {"phase1_end": "T1", "rates_ordered": "T0.5", "one_target_margin": "T'"}


def markers_of(options: MarkerOptions, start, dataset, dtype) -> Markers:
    """The marker constants of :class:`~flowsim.core.options.MarkerOptions` in the flow's units for
    ``start`` (its widths and its ``(sigma0, sigma1)``, :func:`flowsim.models.cooccurrence.init.start_scales`)."""
    from .init import start_scales

    sigma0, sigma1 = start_scales(start)
    m, m1, n = float(start.m), float(start.m1), dataset.n
    R = options.R_neuron / m1
    values = dict(t1_cap=options.C_T1 / (sigma1**2 * m * m1), R_neuron=R,
                  R_irrelevant=options.R_irrelevant * (R / n + R / math.sqrt(m)),
                  R_scores=options.R_scores / (m * math.sqrt(m)), R_KQ=options.R_KQ * sigma0**2 * math.sqrt(m),
                  C_rates=options.C_rates, C_margin=options.C_margin, band=options.band)
    return Markers(**{k: np.asarray(v, dtype) for k, v in values.items()})


def near_init_items(engine, y, args) -> jax.Array:
    """Definition E.2's four near-initialization quantities at ``y``: (1) ``max_{j, mu <= 3}`` and
    (2) ``max_{j, mu irrelevant}`` of ``|w_j^T W_V mu (t) - (0)|`` (NaN where the state has no
    neurons), (3) ``max_{mu, nu} |mu^T W_K^T W_Q nu (t) - (0)|``, (4) the largest change of a key or
    query self-correlation ``mu^T W_K^T W_K nu`` or ``mu^T W_Q^T W_Q nu``, over every word."""
    grams, grams0 = engine.grams(y, args.dataset), args.ref.grams0
    nv = engine.neuron_values(y, args.dataset)
    if nv is None:
        special = irrelevant = jnp.array(jnp.nan, grams.M.dtype)
    else:
        change = jnp.abs(nv - args.ref.neuron_values0)
        special, irrelevant = change[:, :3].max(), change[:, 3:].max(initial=0.0)
    KQ = jnp.maximum(jnp.abs(grams.A - grams0.A).max(), jnp.abs(grams.B - grams0.B).max())
    return jnp.stack([special, irrelevant, jnp.abs(grams.M - grams0.M).max(), KQ])


def G_rates(engine, t, y, args) -> jax.Array:
    """``dG(mu_k)/dt`` for k = 1, 2, 3, exactly: G along the vector field (a Jacobian-vector product)."""
    G3 = lambda y: engine.G(y, args, words=slice(0, 3))
    return jax.jvp(G3, (y,), (engine.vector_field(t, y, args),))[1]


def _min_margin(engine, t, y, args):
    return engine.margins(y, args).min()


def _phase1_end(engine, t, y, args):
    k = args.markers
    bounds = jnp.stack([k.R_neuron, k.R_irrelevant, k.R_scores, k.R_KQ])
    # A bound the state cannot form (NaN: no neurons) is not watched.
    ratio = jnp.max(jnp.nan_to_num(near_init_items(engine, y, args) / bounds, nan=-jnp.inf))
    return jnp.maximum(t / k.t1_cap, ratio) - 1


def _rates_ordered(engine, t, y, args):
    dG = G_rates(engine, t, y, args)
    return -dG[2] - (1 + args.markers.C_rates) * jnp.maximum(dG[0], dG[1])


def _one_target_margin(engine, t, y, args):
    groups = args.dataset.groups
    one_target = (groups == 2) | (groups == 3)
    worst = jnp.min(jnp.where(one_target, engine.margins(y, args), jnp.inf))
    # Without one-target samples there is no T'.
    return jnp.where(one_target.any(), worst - args.markers.C_margin, -jnp.inf)


def _minus_G3(engine, t, y, args):
    # Evaluated at every step: G of mu_3 alone, not of the whole vocabulary.
    return -engine.G(y, args, words=slice(2, 3))[0]


def _score_excursion(engine, t, y, args):
    s0 = args.ref.M0[:3, :3]
    return jnp.max(jnp.abs(engine.scores3(y, args) - s0)) - args.markers.band * jnp.max(jnp.abs(s0))


#: Condition functions ``c(engine, t, y, args)``, in the order of :data:`EVENT_NAMES`.
CONDITIONS = (_min_margin, _phase1_end, _rates_ordered, _one_target_margin, _minus_G3, _score_excursion)


#: The conditions that cost a vector field or the m1 neurons at every step: once located, they are
#: not evaluated again (their value is then -inf).  The others are cheaper than a branch.
COSTLY = (_phase1_end, _rates_ordered)


def event_values(engine, t, y, args):
    """The condition values ``c``, in the order of :data:`EVENT_NAMES`."""
    dtype = jax.tree.leaves(y)[0].dtype
    value = lambda c, y: jnp.asarray(c(engine, t, y, args), dtype)
    skip = lambda y: jnp.array(-jnp.inf, dtype)
    return tuple(jax.lax.cond(args.watching[k], lambda y, c=c: value(c, y), skip, y) if c in COSTLY else value(c, y)
                 for k, c in enumerate(CONDITIONS))
