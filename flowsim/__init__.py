"""flowsim: the exact gradient flow of a one-layer transformer learning word co-occurrence.

Yang, Kailkhura, Wang, Liang (NeurIPS 2024): three attention matrices and a linear MLP, trained
together by gradient flow from random initialization, learn in two phases.  flowsim integrates
that flow with diffrax and records what the paper's theorems talk about.
"""

from .cache import enable_compilation_cache
from .data import Dataset, make_dataset, make_embedding, sample_test_set
from .events import EVENT_NAMES
from .flow import FlowFailure, FlowResult, integrate, integrate_batch, save_times
from .init import init_params, init_scales
from .model import G, Params, attention_scores, forward, loss, margins, value_correlations
from .observables import DESCRIPTIONS as OBSERVABLES

__version__ = "0.1.0"

__all__ = [
    "enable_compilation_cache",
    "Dataset", "make_dataset", "make_embedding", "sample_test_set",
    "EVENT_NAMES", "FlowFailure", "FlowResult", "integrate", "integrate_batch", "save_times",
    "init_params", "init_scales",
    "G", "Params", "attention_scores", "forward", "loss", "margins", "value_correlations",
    "OBSERVABLES",
]
