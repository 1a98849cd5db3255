"""Every name flowsim accepts and the paper's problem as the default, each defined once (no JAX here).

The configuration, the command line and the library modules that own each concept import
their lists from here, so that ``flowsim --help`` needs no JAX and no list is written twice.
A module that keeps a table by these names (the engines' registry, the figures by kind, the
solvers' classes) builds it with :func:`table`, which refuses a table that does not match.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TypeVar

#: How a training set is drawn (spec 1): Assumption 2.3's layout, fixed group counts with
#: irrelevant words drawn with repetition, or groups drawn i.i.d. (as for a test set).
DATA_MODES = ("theory", "sampled", "iid")
#: Word embeddings: one-hot, or a random orthonormal basis.
EMBEDDINGS = ("standard", "random")
#: Initialization schemes (spec 4): Kaiming (the paper's experiment), Condition 1 with Lemma D.8's
#: constant, Condition 1's width scaling with unit constants.
INITS = ("kaiming", "theory", "theory-unit")
#: How a start is drawn: the four matrices, subspace coordinates (width-free), or by the sizes.
STARTS = ("auto", "matrices", "subspace")
#: The engines, in the order of their registry (:data:`flowsim.models.cooccurrence.engines.ENGINES`) and of ``--help``.
ENGINES = ("params", "reduced", "subspace", "gram")
#: What ``engine=`` takes: an engine, or ``auto`` for the cheapest that keeps every observable.
ENGINE_CHOICES = ("auto", *ENGINES)
#: diffrax's Runge-Kutta solvers by name (:data:`flowsim.core.controller.SOLVER_CLASSES`).
SOLVERS = ("tsit5", "dopri5", "dopri8", "bosh3", "kvaerno5")
#: Spacings of the saved times.
GRIDS = ("log", "linear")
#: Floating-point bits of a flow or a descent.
PRECISIONS = (64, 32)
#: Integrate the gradient flow, or run the paper's gradient descent.
METHODS = ("flow", "gd")
#: Named configurations (:data:`flowsim.config.PRESETS`); the first is the default.
PRESETS = ("paper", "theory")
DEFAULT_PRESET = PRESETS[0]
#: Figures of result directories (:data:`flowsim.plotting.KINDS`).
PLOT_KINDS = ("scores", "loss", "G", "balance", "C", "conservation")
#: Figures of a sweep directory against the width (:data:`flowsim.atlas.KINDS`).
SWEEP_PLOT_KINDS = ("claims", "T1", "loss", "C_ratio")
#: Image formats a figure is saved in, and those saved by default.
FORMATS = ("png", "pdf", "svg")
DEFAULT_FORMATS = ("png", "pdf")
#: Resolution of raster figures by default, and the range allowed: outside it a figure is
#: unreadable or too large for the image formats.
DPI, DPI_RANGE = 150, (10, 600)


@dataclasses.dataclass(frozen=True)
class Problem:
    """A problem's sizes (``n`` samples of length ``L`` over ``d`` words, attention width ``m``,
    MLP width ``m1``), how its data and start are drawn, and the failure probability ``delta``
    of Condition 1's bounds."""

    n: int
    L: int
    d: int
    m: int
    m1: int
    data_mode: str
    embedding: str
    init: str
    delta: float


#: The paper's experiment (spec 5), the default problem of the configuration, the command line
#: and the library's draws: n = 60, L = 5, d = 64, m = 128, m1 = 256, sampled data, one-hot
#: words, Kaiming init; delta = 0.1 for the theory's checks.
PAPER = Problem(n=60, L=5, d=64, m=128, m1=256, data_mode="sampled", embedding="standard", init="kaiming",
                delta=0.1)

V = TypeVar("V")


def table(names: tuple[str, ...], entries: Mapping[str, V], what: str) -> dict[str, V]:
    """``entries`` in the order of ``names``, or a ``TypeError`` naming the names without an
    entry and the entries without a name: a library's table and its list here cannot drift."""
    missing = [n for n in names if n not in entries]
    extra = [k for k in entries if k not in names]
    if missing or extra:
        raise TypeError(f"{what} must have one entry per name of flowsim.core.names ({', '.join(names)}); "
                        f"missing {missing}, not named there {extra}")
    return {n: entries[n] for n in names}

