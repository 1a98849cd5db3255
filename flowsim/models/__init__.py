"""Models beside the paper's transformer, through one contract: the registry of shipped models, and a user's own by ``module:factory``.

A model is an :class:`AbstractModel` (parameters, data law, initializations, loss, observables,
events, claims); :func:`integrate` runs its exact gradient flow through the core and
:func:`check_claims` judges its claims.  Adding a shipped model is one module (or folder) here
and one line in :data:`MODELS`; a user's own model needs neither: ``load("my_module:make")``
(``flowsim integrate --model my_module:make``) imports the factory that builds it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .contract import AbstractModel

# Public names and the submodule that defines each, imported on first use (PEP 562) so that the
# command line (flowsim.model_cli, read by ``flowsim --help``) does not pay for importing JAX.
_EXPORTS = {
    "contract": ("AbstractModel", "ModelClaim", "Trajectory", "at_most", "in_float64", "within_solver"),
    "flow": ("check", "check_claims", "draw", "gradient_descent", "integrate", "integrate_batch"),
    "generic": ("GenericEngine", "ModelArgs"),
    "runs": ("ModelConfig", "ModelRun"),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = ["MODELS", "load", *_WHERE]


def __getattr__(name):
    if name not in _WHERE:
        raise AttributeError(f"module 'flowsim.models' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + __all__)


#: The shipped models by name: the factory (``module:function``) that builds each from its sizes.
#: The paper's co-occurrence transformer is flowsim's own (``flowsim.integrate``), not listed here.
MODELS = {
    "saxe": "flowsim.models.saxe:make_model",  # Saxe, McClelland and Ganguli (2014): two-layer linear network
    "zfb": "flowsim.models.zfb:make_model",  # Zhang, Frei and Bartlett (2024): linear self-attention, in-context regression
}


def load(spec: str, **sizes) -> AbstractModel:
    """The model ``spec`` names (a key of :data:`MODELS`, or ``module:factory`` for a user's own,
    the module importable from the working directory or ``sys.path``), built by its factory
    from ``sizes``.  Raises ``ValueError`` naming what is wrong with the spec."""
    target = MODELS.get(spec, spec)
    module_name, sep, factory_name = target.partition(":")
    if not sep or not module_name or not factory_name:
        raise ValueError(f"model must be one of {', '.join(MODELS)} or module:factory, got {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ValueError(f"model {spec!r}: cannot import module {module_name!r} ({e})") from None
    factory = getattr(module, factory_name, None)
    if not callable(factory):
        raise ValueError(f"model {spec!r}: module {module_name!r} has no function {factory_name!r}")
    try:
        model = factory(**sizes)
    except TypeError as e:
        raise ValueError(f"model {spec!r}: its factory does not take these sizes ({e})") from None
    from .contract import AbstractModel

    if not isinstance(model, AbstractModel):
        raise ValueError(f"model {spec!r}: the factory returned a {type(model).__name__}, not a "
                         "flowsim.models.AbstractModel")
    return model
