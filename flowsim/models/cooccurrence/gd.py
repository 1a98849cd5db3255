"""Plain gradient descent theta <- theta - lr grad Lhat(theta): the paper's own training procedure (Appendix A)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ...core.descent import descend, saved_steps
from ...core.options import DescentOptions
from ...core.trajectory import FlowResult
from .data import Dataset
from .flow import check_problem, prepare
from .model import Params
from .observables import check_saves_fit


def gradient_descent(
    params: Params,
    dataset: Dataset,
    lr: float | None = None,
    steps: int | None = None,
    *,
    options: DescentOptions | None = None,
    test_set: Dataset | None = None,
    test_key=None,
    progress: bool = False,
    **keywords,
) -> FlowResult:
    """Run ``steps`` steps of gradient descent ``theta <- theta - lr grad Lhat(theta)`` (Eq. 2,
    default ``lr`` 0.01) from ``params`` and record the same observables and phase markers as
    :func:`flowsim.integrate`.  The steps default to ``round(t_end / lr)``, the flow's horizon
    ``t_end`` (default 300) whatever the learning rate: 30000 at the default ``lr``, 15000 at
    ``lr=0.02``, as ``flowsim integrate --method gd --lr 0.02`` takes.

    The options are :class:`~flowsim.DescentOptions`, as an object (``options=``) or keywords
    that override it: ``lr``, ``steps``, ``t_end``, ``save_every``, ``saves``, ``grid``,
    ``precision``, the markers' constants (:class:`~flowsim.core.options.MarkerOptions`),
    ``n_test``.  Step ``k`` is saved at time ``t = k lr``, the flow time it approximates (spec 3).
    Saves are every ``save_every`` steps (plus the last step), or else at
    :func:`flowsim.core.descent.save_steps` (``saves`` points on a ``grid``, default log-spaced
    from step 1).  Each event of :mod:`flowsim.models.cooccurrence.events` is reported at the
    first saved step at which its condition holds (``0.0`` if at the start, ``None`` if never),
    so its resolution is the save grid's.  ``stats`` counts ``steps`` taken and ``nfev``
    (gradient evaluations, one per step).

    The steps run as one compiled loop (:func:`flowsim.core.descent.descend`), called on pieces
    of at most :data:`flowsim.core.descent.PIECE_STEPS` steps; ``progress`` shows a progress bar
    (steps, their rate, the flow time reached) between them.

    Raises :class:`flowsim.FlowFailure`, holding the saves up to the last finite one, if the
    iterates become non-finite (a learning rate too large for the loss landscape).
    """
    keywords |= {k: v for k, v in (("lr", lr), ("steps", steps)) if v is not None}
    options = DescentOptions.updated(options, **keywords)
    check_problem(params, dataset, test_set, starts=(Params,))  # descent steps the four matrices
    check_saves_fit(len(saved_steps(options)), params.d)
    with jax.enable_x64(options.precision == 64):
        dtype = jnp.float64 if options.precision == 64 else jnp.float32
        ready = prepare(params, dataset, dtype=dtype, markers=options.markers, test_set=test_set,
                        n_test=options.n_test, test_key=test_key)
        return descend(ready.engine, ready.start, ready.y0, ready.args, options, progress=progress)
