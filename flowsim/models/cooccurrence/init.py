"""Random initializations: the theory's Condition 1, Kaiming (the paper's experiment) and custom ones (spec 4)."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import PRNGKeyArray

from ...core.checks import POSITIVE, PROBABILITY, integer
from ...core.draws import draw
from .model import Params
from ...core.names import INITS, PAPER, STARTS
from ...core.resources import check_fits
from .subspace import SubspaceStart, sample_start

#: Lemma D.8's target for the initial outputs: Condition 1 makes |F(0)(X_i)| <= 0.01 for every i.
D8_BOUND = 0.01
#: The failure probability delta of Condition 1's high-probability bounds (1/delta <= poly(m)).
DELTA = PAPER.delta


def condition1_constant(n: int, L: int, delta: float = DELTA) -> float:
    """``c`` with Lemma D.8's bound at ``c0 = c1 = c`` equal to :data:`D8_BOUND`.

    With ``sigma0 = c0 / sqrt(L m)``, ``sigma1 = c1 / sqrt(m1)`` the bound
    ``2 sigma0 sigma1 sqrt(2 L m1 m log(2 L n / delta))`` is ``2 c0 c1 sqrt(2 log(2 L n / delta))``,
    whatever the widths: the log factor that Condition 1's Theta~ leaves unwritten is this one."""
    return math.sqrt(D8_BOUND / (2 * math.sqrt(2 * math.log(2 * L * n / delta))))


def d8_bound(sigma0: float, sigma1: float, *, n: int, L: int, m: float, m1: float, delta: float = DELTA) -> float:
    """Lemma D.8's bound on the initial outputs, ``2 sigma0 sigma1 sqrt(2 L m1 m log(2 L n / delta))``."""
    return 2 * sigma0 * sigma1 * math.sqrt(2 * L * m1 * m * math.log(2 * L * n / delta))


def init_scales(scheme: str, *, d: int, m: int, m1: int, L: int | None = None, n: int | None = None,
                delta: float = DELTA, c0: float | None = None, c1: float | None = None,
                sigma0: float | None = None, sigma1: float | None = None) -> tuple[float, float]:
    """Standard deviations ``(sigma0, sigma1)`` of the attention matrices and of W.

    - ``"theory"`` (Condition 1 as the paper's appendix sets it): ``sigma0 = c0 / sqrt(L m)``,
      ``sigma1 = c1 / sqrt(m1)`` with ``c0 = c1 =`` :func:`condition1_constant` ``(n, L, delta)``, so
      that Lemma D.8's bound on every initial output is ``0.01`` (about ``0.036`` for n = 18, L = 4);
    - ``"theory-unit"``: the same widths' scaling with unit constants ``c0 = c1 = 1``; its initial
      outputs are of order 1, outside the theorems' regime;
    - ``"kaiming"`` (He-normal, std ``sqrt(2 / fan_in)``): ``sigma0 = sqrt(2/d)``, ``sigma1 = sqrt(2/m)``.

    ``c0``, ``c1`` set the constants of the theory schemes; an explicit ``sigma0`` or ``sigma1``
    overrides any scheme's value.
    """
    if scheme in ("theory", "theory-unit"):
        if L is None or (scheme == "theory" and n is None):
            raise ValueError(f"the {scheme} initialization needs the sequence length L"
                             + (" and the training-set size n" if scheme == "theory" else ""))
        c = condition1_constant(n, L, check_delta(delta)) if scheme == "theory" else 1.0
        c0, c1 = (c if x is None else POSITIVE(x, name) for name, x in (("c0", c0), ("c1", c1)))
        default0, default1 = c0 / math.sqrt(L * m), c1 / math.sqrt(m1)
    elif scheme == "kaiming":
        if c0 is not None or c1 is not None:
            raise ValueError("c0 and c1 are the constants of the theory schemes; for kaiming set sigma0, sigma1")
        default0, default1 = math.sqrt(2 / d), math.sqrt(2 / m)
    else:
        raise ValueError(f"init scheme must be one of {', '.join(INITS)} or a function, got {scheme!r}")
    s0 = default0 if sigma0 is None else float(sigma0)
    s1 = default1 if sigma1 is None else float(sigma1)
    for name, s in (("sigma0", s0), ("sigma1", s1)):
        POSITIVE(s, name)
    return s0, s1


def check_delta(delta) -> float:
    """The failure probability delta, a number in (0, 1)."""
    return PROBABILITY(delta, "delta (the failure probability of Condition 1)")


def start_scales(start) -> tuple[float, float]:
    """``(sigma0, sigma1)`` of a start as the theorems read them: those a width-free start was
    drawn with, else measured from the matrices (root mean square of the entries of W_V, W_K,
    W_Q and of W), so that a custom initialization has them too."""
    if isinstance(start, SubspaceStart):
        return float(start.sigma0), float(start.sigma1)
    rms = lambda *xs: math.sqrt(sum(float(np.sum(np.square(np.asarray(x, np.float64)))) for x in xs)
                                / sum(np.size(x) for x in xs))
    return rms(start.W_V, start.W_K, start.W_Q), rms(start.W)


def init_params(
    key: PRNGKeyArray,
    d: int = PAPER.d,
    m: int = PAPER.m,
    m1: int = PAPER.m1,
    *,
    scheme: str | Callable[[PRNGKeyArray], Params | Mapping] = PAPER.init,
    L: int | None = None,
    n: int | None = None,
    delta: float = DELTA,
    c0: float | None = None,
    c1: float | None = None,
    sigma0: float | None = None,
    sigma1: float | None = None,
) -> Params:
    """Draw ``Params`` with ``a_j ~ Uniform{+1,-1}``, ``W_ij ~ N(0, sigma1^2)`` and the entries of
    ``W_V, W_K, W_Q ~ N(0, sigma0^2)``, the scales from :func:`init_scales`.

    ``scheme`` may also be a function ``key -> Params`` (or a mapping with the five fields),
    for a custom initialization; its output is checked like any ``Params``.
    Draws are made in float64 and returned as numpy arrays whatever JAX's x64 setting, so a
    seed gives the same start for a float64 and a float32 flow (``integrate`` casts).
    """
    _check_widths(d, m, m1)
    if callable(scheme):
        made = scheme(key)
        params = made if isinstance(made, Params) else Params(**dict(made))
        if params.W_V.shape != (m, d) or params.W.shape != (m1, m):
            raise ValueError(
                f"custom init made W_V {params.W_V.shape} and W {params.W.shape}, "
                f"expected ({m}, {d}) and ({m1}, {m})"
            )
        return params
    s0, s1 = init_scales(scheme, d=d, m=m, m1=m1, L=L, n=n, delta=delta, c0=c0, c1=c1, sigma0=sigma0, sigma1=sigma1)
    # The jitted draw, its float64 numpy copy and Params' own: three of each array at once.
    check_fits(3 * 8 * matrix_numbers(d, m, m1), f"the four matrices at m={m}, m1={m1}, d={d}",
               "draw the start width-free instead (start='subspace': init_subspace)")
    return Params(*draw(_draw, key, s0, s1, d=d, m=m, m1=m1))


def matrix_numbers(d: int, m: int, m1: int) -> int:
    """Numbers in an explicit start: ``W`` (m1 x m), ``W_V, W_K, W_Q`` (m x d) and ``a``."""
    return m1 * m + 3 * m * d + m1


#: How a start is drawn (:data:`flowsim.core.names.STARTS`): ``matrices`` (:func:`init_params`), ``subspace``
#: (:func:`init_subspace`), or ``auto``: the matrices while they hold at most :data:`AUTO_MATRICES` numbers.
AUTO_MATRICES = 10**7


def draws_matrices(start: str, d: int, m: int, m1: int) -> bool:
    """Whether ``start`` (one of :data:`STARTS`) draws the four matrices at these sizes.  ``auto``
    is a rule of the sizes alone, never of the machine, so a seed is one problem everywhere."""
    if start not in STARTS:
        raise ValueError(f"start must be one of {', '.join(STARTS)}, got {start!r}")
    return start == "matrices" or start == "auto" and matrix_numbers(d, m, m1) <= AUTO_MATRICES


def _check_widths(d, m, m1) -> None:
    for name, v in (("d", d), ("m", m), ("m1", m1)):
        integer(1)(v, name)


def init_subspace(key: PRNGKeyArray, d: int = PAPER.d, m: int = PAPER.m, m1: int = PAPER.m1, *,
                  scheme: str = PAPER.init,
                  L: int | None = None, n: int | None = None, delta: float = DELTA, c0: float | None = None,
                  c1: float | None = None, sigma0: float | None = None, sigma1: float | None = None) -> SubspaceStart:
    """Draw the Gaussian start of :func:`init_params` (scheme ``"kaiming"`` or ``"theory"``) at any
    widths m, m1 (up to 10^9 and beyond) as subspace coordinates, without an m-sized array
    (:func:`flowsim.models.cooccurrence.subspace.sample_start`, spec 7.7): exactly distributed as the coordinates of
    an m-wide draw.  Its flow runs on the ``subspace`` or ``gram`` engine and has no final matrices.
    A key draws a different start here than in :func:`init_params` (the draws differ in kind)."""
    _check_widths(d, m, m1)
    if callable(scheme):
        raise ValueError("a custom init gives matrices: use init_params, then flowsim.compress for the subspace engine")
    s0, s1 = init_scales(scheme, d=d, m=m, m1=m1, L=L, n=n, delta=delta, c0=c0, c1=c1, sigma0=sigma0, sigma1=sigma1)
    return sample_start(key, d, int(m), int(m1), s0, s1)


@functools.partial(jax.jit, static_argnames=("d", "m", "m1"))
def _draw(key, s0, s1, *, d, m, m1):
    """One compiled program for every draw, rather than one per eager random call: a new
    process fetches one program from the compilation cache instead of a dozen."""
    k_a, k_w, k_v, k_k, k_q = jax.random.split(key, 5)
    normal = lambda k, shape, scale: scale * jax.random.normal(k, shape, jnp.float64)
    return (normal(k_w, (m1, m), s1), normal(k_v, (m, d), s0), normal(k_k, (m, d), s0),
            normal(k_q, (m, d), s0), jnp.where(jax.random.bernoulli(k_a, 0.5, (m1,)), 1.0, -1.0))
