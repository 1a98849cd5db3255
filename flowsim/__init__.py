"""flowsim: the exact gradient flow of a one-layer transformer learning word co-occurrence.

Yang, Kailkhura, Wang, Liang (NeurIPS 2024): three attention matrices and a linear MLP, trained
together by gradient flow from random initialization, learn in two phases.  flowsim integrates
that flow with diffrax (or runs the paper's gradient descent), records what the paper's theorems
talk about, draws Figure 1 and checks every claim on the trajectory.
"""

import importlib

__version__ = "0.1.0"

# Public names and the submodule that defines each.  They are imported on first use (PEP 562)
# so that ``import flowsim.cli`` (and ``flowsim --help``) does not pay for importing JAX.
_EXPORTS = {
    "core.errors": ("ConfigError", "DamagedResult", "DirectoryInUse", "FlowFailure", "FlowsimError", "ResourceError",
               "UsageError"),
    "config": ("PRESETS", "RunConfig"),
    "results": ("Run", "load"),
    "runner": ("RunInterrupted", "resume", "run"),
    "models.cooccurrence.data": ("Dataset", "make_dataset", "make_embedding", "sample_test_set"),
    "models.cooccurrence.events": ("EVENT_NAMES",),
    "core.cache": ("CacheWarning", "enable_compilation_cache"),
    "models.cooccurrence.flow": ("FlowResult", "integrate", "integrate_batch", "plan"),
    "core.options": ("DescentOptions", "FlowOptions", "MarkerOptions", "SaveOptions", "SolverOptions", "save_times"),
    "models.cooccurrence.gd": ("gradient_descent",),
    "plotting": ("plot",),
    "atlas": ("plot_sweep",),
    "models.cooccurrence.claims": ("CLAIMS", "RunContext", "check_claims"),
    "reporting": ("report", "sweep_report"),
    "sweeps": ("Sweep", "sweep"),
    "models.cooccurrence.init": ("init_params", "init_scales", "init_subspace"),
    "models.cooccurrence.subspace": ("SubspaceStart", "compress"),
    "models.cooccurrence.model": ("G", "Params", "attention_scores", "forward", "loss", "margins", "value_correlations"),
    "models.cooccurrence.observables": ("OBSERVABLES",),
}
_ALIASES = {"OBSERVABLES": "DESCRIPTIONS"}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = list(_WHERE)


def __getattr__(name):
    if name not in _WHERE:
        raise AttributeError(f"module 'flowsim' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), _ALIASES.get(name, name))
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + __all__)
