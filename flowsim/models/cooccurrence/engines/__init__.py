"""State representations of the gradient flow (spec 3 and 7): the engine contract, the engines, and how one is chosen.

Each engine is one module; :class:`AbstractEngine` is the contract they implement and
:data:`ENGINES` the registry they join by being defined.
"""

from __future__ import annotations

from ....core import names
from ..data import Dataset
from ....core.resources import STATE_COPIES, check_fits, format_bytes
from .base import ENGINES, AbstractEngine, FlowArgs, Grams, Markers, Quantities, Reference, Sizes

# Defining an engine registers it; the registry then holds exactly flowsim.core.names.ENGINES, in
# that order (the order of --help, and of auto's choice between equal costs).
from .params import ParamEngine  # noqa: E402  isort: skip
from .reduced import AbstractWordRows, ReducedEngine  # noqa: E402  isort: skip
from .subspace import SubspaceEngine  # noqa: E402  isort: skip
from .gram import GramEngine  # noqa: E402  isort: skip

_REGISTERED = names.table(names.ENGINES, ENGINES, "the engine registry flowsim.models.cooccurrence.engines.ENGINES")
ENGINES.clear()
ENGINES.update(_REGISTERED)

__all__ = ["ENGINES", "AbstractEngine", "AbstractWordRows", "FlowArgs", "GramEngine", "Grams", "Markers", "ParamEngine",
           "Quantities", "ReducedEngine", "Reference", "Sizes", "SubspaceEngine", "engine_costs", "make_engine", "resolve_engine"]

def engine_costs(sizes: Sizes, candidates=None) -> dict[str, float]:
    """Each candidate engine's :meth:`~AbstractEngine.step_cost` for these sizes."""
    return {name: ENGINES[name].step_cost(sizes) for name in (candidates or ENGINES)}


def memory_estimate(name: str, sizes: Sizes, itemsize: int = 8) -> float:
    """Bytes an integration with engine ``name`` holds at its peak: :data:`STATE_COPIES` copies of
    the state and what the engine and one observation hold (:meth:`~AbstractEngine.footprint`)."""
    state, held = ENGINES[name].footprint(sizes)
    return itemsize * (STATE_COPIES * state + held)


def resolve_engine(name: str, sizes: Sizes, *, shared_words: bool = True) -> str:
    """``name`` itself, or for ``"auto"`` the cheapest by :func:`engine_costs` of the engines
    that can run here and drop no observable (:attr:`~AbstractEngine.auto_eligible`); a
    width-free start (``sizes.explicit`` false) needs an engine that needs no matrices.

    ``shared_words=False`` (a batch whose members have different training sets, so different
    present words) leaves out the engines whose state is shaped by those words."""
    if name == "auto":
        candidates = [n for n, cls in ENGINES.items() if cls.auto_eligible and _can_run(cls, sizes, shared_words)]
        costs = engine_costs(sizes, candidates)
        return min(costs, key=costs.get)
    if name not in ENGINES:
        raise ValueError(f"engine must be one of auto, {', '.join(ENGINES)}, got {name!r}")
    cls = ENGINES[name]
    if cls.needs_matrices and not sizes.explicit:
        raise ValueError(f"engine {name!r} needs the four matrices, but this start is width-free "
                         f"(drawn as subspace coordinates); use one of "
                         f"{', '.join(n for n, c in ENGINES.items() if not c.needs_matrices)}")
    if not _can_run(cls, sizes, shared_words):
        raise ValueError(f"engine {name!r} needs every member to share one training set")
    return name


def _can_run(cls, sizes: Sizes, shared_words: bool) -> bool:
    return (sizes.explicit or not cls.needs_matrices) and (shared_words or not cls.shaped_by_words)


def check_memory(name: str, sizes: Sizes, itemsize: int = 8) -> None:
    """Refuse (one line, :class:`~flowsim.core.resources.ResourceError`) an integration whose
    :func:`memory_estimate` does not fit, naming the engines that would."""
    need = memory_estimate(name, sizes, itemsize)
    fits = [n for n in ENGINES if n != name and memory_estimate(n, sizes, itemsize) < need]
    hint = f"engine {' or '.join(fits)} would need {format_bytes(min(memory_estimate(n, sizes, itemsize) for n in fits))}" \
        if fits else "choose a smaller m or m1"
    check_fits(need, f"engine {name!r} at m={sizes.m}, m1={sizes.m1}, d={sizes.d}", hint)


def make_engine(name: str, start, dataset: Dataset, n_test: int = 0) -> AbstractEngine:
    """The engine ``name`` (or ``"auto"``) for this start and training set."""
    return ENGINES[resolve_engine(name, Sizes.of(start, dataset, n_test))].build(start, dataset)
