"""Run configuration: defaults, presets, TOML files and overrides, checked before anything is written."""

from __future__ import annotations

import dataclasses
import difflib
import math
import tomllib
from collections.abc import Callable, Mapping
from typing import Any

from .core.checks import POSITIVE, PROBABILITY, REFUSED, Check, integer, one_of
from .core.errors import ConfigError, UsageError, as_usage  # noqa: F401  ConfigError: importable from here, as it was
from .core.files import read_bytes
from .core.messages import shown
from .core.names import (DATA_MODES, DEFAULT_PRESET, EMBEDDINGS, ENGINE_CHOICES, GRIDS, INITS, METHODS, PAPER, PRECISIONS,
                    SOLVERS, STARTS, table)
from .core.names import PRESETS as PRESET_NAMES
from .core.options import TOLERANCES, DescentOptions, FlowOptions, MarkerOptions, SaveOptions, SolverOptions

MAX_WIDTH = 10**12  # m, m1: numbers, not array sizes, with the subspace start
#: The keys of RunConfig that a run of a model of flowsim.models takes (flowsim.model_runs): its
#: seed, the flow's solver and save options and gradient descent's (method gd); the others
#: describe the paper's transformer.
MODEL_KEYS = ("seed", "t_end", "saves", "grid", "t_first", "chunk", "solver", "rtol", "atol", "max_steps", "precision",
              "method", "lr", "steps")
#: The keys that only one method reads: the flow's solver, and gradient descent's step.  (``chunk``,
#: saves per solve, is accepted by both: a descent saves in compiled pieces of its own.)
METHOD_KEYS = {"flow": ("solver", "rtol", "atol", "max_steps"), "gd": ("lr", "steps")}


def check_method_keys(method: str, given, label: Callable[[str], str] = str) -> None:
    """Refuse a key of ``given`` that ``method`` does not read (``--rtol`` with ``--method gd``,
    ``--lr`` with the flow), which would otherwise be ignored without a word."""
    for key in given:
        for other, keys in METHOD_KEYS.items():
            if other != method and key in keys:
                takes = ", ".join(label(k) for k in METHOD_KEYS[method])
                raise UsageError(f"{label(key)}: only --method {other} reads it; --method {method} takes {takes}")


#: Largest configuration or sweep file read (bytes): real ones are a few hundred.
MAX_FILE_BYTES = 2**20


def _counts(value):
    """Four group sizes, from a TOML array or a comma-separated string."""
    if not isinstance(value, (list, tuple)) or len(value) != 4:
        return REFUSED
    try:
        return tuple(_COUNT.text(c) for c in value)
    except ValueError:
        return REFUSED


_COUNT = integer(0)
_COUNTS = Check("4 non-negative integers, the sizes of I1..I4 (e.g. 30,10,10,10)", _counts,
                lambda text: text.split(","))


def read_toml(path, what: str) -> dict:
    """A TOML file as a dict, or a one-line :class:`~flowsim.core.errors.UsageError` naming ``what`` could not be read.

    Only a regular file of at most :data:`MAX_FILE_BYTES` is read (not a device, a pipe or a
    huge file: :mod:`flowsim.core.files`); a UTF-8 byte-order mark, which some editors write, is accepted."""
    try:
        data = read_bytes(path, what, MAX_FILE_BYTES, "and a configuration is a few lines")
    except OSError as e:
        raise UsageError(f"cannot read {what} {str(path)!r}: {e.strerror}") from None
    try:
        return tomllib.loads(data.decode("utf-8-sig"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise UsageError(f"{what} {str(path)!r} is not valid TOML: {e}") from None


def _tolerance_text(which: int) -> str:
    """What an unset rtol (``which`` 0) or atol (1) stands for: the precision's default."""
    return ", ".join(f"{TOLERANCES[bits][which]:g} in float{bits}" for bits in PRECISIONS)


def _field(default, check: Check, help: str, optional: bool = False, default_text: str | None = None):
    """A configuration field whose values ``check`` takes (:mod:`flowsim.core.checks`, text read first);
    ``default_text`` says what a ``None`` default stands for (it depends on other fields), for
    the command line's help."""
    return dataclasses.field(default=default, metadata=dict(check=check, help=help, optional=optional,
                                                            default_text=default_text))


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything that determines a run; the defaults are the paper's experiment (spec 5).

    Build one from a preset (:meth:`preset`), a TOML file (:meth:`from_toml`) and overrides
    (:meth:`merge`); every value is checked as it comes in, and :meth:`build` checks the
    combination by drawing the data and the initialization.  ``counts=None`` means the balanced
    group sizes n/2, n/6, n/6, n/6 (30/10/10/10 for n = 60); ``sigma0``/``sigma1`` ``None``
    mean the init scheme's scales.
    """

    n: int = _field(PAPER.n, integer(1), "number of training samples")
    L: int = _field(PAPER.L, integer(3), "sequence length (mu_1, mu_2 and mu_3 must fit)")
    d: int = _field(PAPER.d, integer(4), "vocabulary size = embedding dimension (3 special words + irrelevant ones)")
    m: int = _field(PAPER.m, integer(1, MAX_WIDTH), "attention width (rows of W_V, W_K, W_Q); 1e8 style accepted")
    m1: int = _field(PAPER.m1, integer(1, MAX_WIDTH), "MLP width (rows of W); 1e8 style accepted")
    seed: int = _field(0, integer(0, 2**31 - 1), "PRNG seed of the data, the initialization and the test set")
    data_mode: str = _field(PAPER.data_mode, one_of(DATA_MODES), "how the training set is drawn (spec 1)")
    counts: tuple | None = _field(None, _COUNTS, "training-set group sizes I1..I4", optional=True,
                                  default_text="n/2, n/6, n/6, n/6; in iid mode drawn at random")
    embedding: str = _field(PAPER.embedding, one_of(EMBEDDINGS),
                            "word embeddings: one-hot or a random orthonormal basis")
    init: str = _field(PAPER.init, one_of(INITS), "initialization scheme (spec 4): kaiming (the paper's "
                       "experiment), theory (Condition 1 as the appendix sets it: c0 = c1 chosen so that Lemma D.8's "
                       "bound on every initial output is 0.01), theory-unit (the same width scaling with c0 = c1 = 1)")
    delta: float = _field(PAPER.delta, PROBABILITY, "failure probability delta of Condition 1's bounds (theory init, "
                          "Lemma D.8, and the report's checks of the start)")
    c0: float | None = _field(None, POSITIVE, "theory inits: sigma0 = c0 / sqrt(L m)", optional=True,
                              default_text="theory: sqrt(0.005 / sqrt(2 log(2 L n / delta))); theory-unit: 1")
    c1: float | None = _field(None, POSITIVE, "theory inits: sigma1 = c1 / sqrt(m1)", optional=True,
                              default_text="as c0")
    start: str = _field(STARTS[0], one_of(STARTS), "how the start is drawn: matrices (the four m-wide arrays; final "
                        "matrices available), subspace (width-free: its coordinates drawn from their exact "
                        "distribution, spec 7.7; no final matrices), auto (matrices while they hold at most "
                        "1e7 numbers, else subspace)")
    sigma0: float | None = _field(None, POSITIVE, "std of the entries of W_V, W_K, W_Q", optional=True,
                                  default_text="the --init scheme's: sqrt(2/d) for kaiming, c0/sqrt(L m) for the theory inits")
    sigma1: float | None = _field(None, POSITIVE, "std of the entries of W", optional=True,
                                  default_text="the --init scheme's: sqrt(2/m) for kaiming, c1/sqrt(m1) for the theory inits")
    t_end: float = _field(FlowOptions.t_end, POSITIVE, "flow time to integrate to (= GD steps x learning rate)")
    solver: str = _field(SolverOptions.solver, one_of(SOLVERS), "diffrax solver")
    rtol: float | None = _field(SolverOptions.rtol, POSITIVE, "relative tolerance of the step-size controller",
                                optional=True, default_text=_tolerance_text(0))
    atol: float | None = _field(SolverOptions.atol, POSITIVE, "absolute tolerance of the step-size controller",
                                optional=True, default_text=_tolerance_text(1))
    saves: int = _field(SaveOptions.saves, integer(2), "number of saved times, t = 0 included")
    grid: str = _field(SaveOptions.grid, one_of(GRIDS), "spacing of the saved times")
    t_first: float | None = _field(SaveOptions.t_first, POSITIVE, "first saved time after 0 of the log grid",
                                   optional=True, default_text="min(1e-3, t_end / saves, 1/m)")
    precision: int = _field(FlowOptions.precision, one_of(PRECISIONS), "floating-point bits")
    max_steps: int = _field(SolverOptions.max_steps, integer(1), "limit on the total number of solver steps")
    chunk: int = _field(SaveOptions.chunk, integer(1), "saved times per chunk (a checkpoint is written after each)")
    n_test: int = _field(FlowOptions.n_test, integer(1), "size of the i.i.d. test set")
    C_T1: float = _field(MarkerOptions.C_T1, POSITIVE, "T1 (phase1_end, Definition E.2) is at most "
                         "C_T1 / (sigma1^2 m m1)")
    R_neuron: float = _field(MarkerOptions.R_neuron, POSITIVE, "Definition E.2 (1): every neuron value "
                             "w_j^T W_V mu (mu_1..mu_3) within R = R_neuron / m1 of its start")
    R_irrelevant: float = _field(MarkerOptions.R_irrelevant, POSITIVE, "Definition E.2 (2): irrelevant words' "
                                 "neuron values within R_irrelevant (R / n + R / sqrt(m))")
    R_scores: float = _field(MarkerOptions.R_scores, POSITIVE, "Definition E.2 (3): every score within "
                             "R_scores / (m sqrt(m)) of its start")
    R_KQ: float = _field(MarkerOptions.R_KQ, POSITIVE, "Definition E.2 (4): key and query self-correlations "
                         "within R_KQ sigma0^2 sqrt(m)")
    C_rates: float = _field(MarkerOptions.C_rates, POSITIVE, "T0.5 (rates_ordered, Theorem E.19): first "
                            "-dG3/dt >= (1 + C_rates) max(dG1/dt, dG2/dt)")
    C_margin: float = _field(MarkerOptions.C_margin, POSITIVE, "T' (one_target_margin, Corollary E.20): first "
                             "min over I2, I3 of y_i F_i >= C_margin")
    band: float = _field(MarkerOptions.band, POSITIVE, "relative half-width of the scores_leave_band event")
    engine: str = _field(FlowOptions.engine, one_of(ENGINE_CHOICES), "state representation of the flow: auto (the cheapest "
                         "that keeps every observable), params (four matrices), reduced (spec 7.1-7.2), subspace "
                         "(spec 7.6: width-free), gram (spec 7.5: no final matrices, no conservation drifts)")
    method: str = _field(METHODS[0], one_of(METHODS), "integrate the gradient flow, or run the paper's gradient descent")
    lr: float = _field(DescentOptions.lr, POSITIVE, "gradient-descent learning rate (method gd)")
    steps: int | None = _field(None, integer(1), "gradient-descent steps (method gd)", optional=True,
                               default_text="round(t_end / lr)")

    @classmethod
    def preset(cls, name: str) -> RunConfig:
        if name not in PRESETS:
            raise UsageError(f"unknown preset {shown(name)}; allowed: {', '.join(PRESETS)}")
        return cls().merge(PRESETS[name])

    @classmethod
    def from_toml(cls, path, preset: str | None = None) -> RunConfig:
        """The preset (``preset``, else the file's ``preset`` key, else ``paper``) updated by the
        file's other keys, which are the field names of :class:`RunConfig`."""
        table = read_toml(path, "config file")
        named = table.pop("preset", None)
        if named is not None and not isinstance(named, str):
            raise UsageError(f"{path}: preset must be one of {', '.join(PRESETS)}, got {shown(named)}")
        return cls.preset(preset or named or DEFAULT_PRESET).merge(table, label=lambda k: f"{path}: {k}")

    def merge(self, values: Mapping[str, Any], label: Callable[[str], str] = str) -> RunConfig:
        """A copy with ``values`` (native or string values) parsed and checked one by one;
        ``label(key)`` names the key in error messages (a flag, a file and key, ...)."""
        fields = {f.name: f for f in dataclasses.fields(self)}
        changes = {}
        for key, value in values.items():
            if key not in fields:
                near = difflib.get_close_matches(str(key), fields, n=3)
                hint = f"did you mean {' or '.join(near)}? " if near else ""
                raise UsageError(f"{label(shown(key, bare=True))}: unknown key; {hint}the {len(fields)} keys are "
                                  "flowsim integrate's options (flowsim integrate --help lists them)")
            meta = fields[key].metadata
            if value is None and meta["optional"]:
                changes[key] = None
                continue
            with as_usage(f"{label(key)}: "):
                changes[key] = meta["check"].text(value)
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["counts"] = None if self.counts is None else list(self.counts)
        return out

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> RunConfig:
        return cls().merge(values)

    def resolved(self) -> RunConfig:
        """The same run with the defaults that depend on other fields written out (group
        counts, init scales, tolerances, how the start is drawn), as recorded in ``run.json``."""
        from .models.cooccurrence.data import balanced_counts
        from .models.cooccurrence.init import draws_matrices, init_scales

        counts = self.counts
        if counts is None and self.data_mode != "iid":
            counts = balanced_counts(self.n)
        s0, s1 = init_scales(self.init, d=self.d, m=self.m, m1=self.m1, L=self.L, n=self.n, delta=self.delta,
                             c0=self.c0, c1=self.c1, sigma0=self.sigma0, sigma1=self.sigma1)
        tolerances = SolverOptions(rtol=self.rtol, atol=self.atol).for_precision(self.precision)
        start = "matrices" if draws_matrices(self.start, self.d, self.m, self.m1) else "subspace"
        # The theory schemes' constants as they came out (c0 = sigma0 sqrt(L m), c1 = sigma1 sqrt(m1)).
        c0, c1 = (s0 * math.sqrt(self.L * self.m), s1 * math.sqrt(self.m1)) if self.init != "kaiming" else (None, None)
        resolved = dataclasses.replace(self, counts=counts, sigma0=s0, sigma1=s1, c0=c0, c1=c1, rtol=tolerances.rtol,
                                       atol=tolerances.atol, start=start)
        if self.method == "gd":
            # DescentOptions' rule for the steps; record the horizon they really reach, steps x lr.
            descent = DescentOptions(lr=self.lr, steps=self.steps, t_end=self.t_end)
            resolved = dataclasses.replace(resolved, steps=descent.steps, t_end=descent.t_end)
        return resolved

    def build(self):
        """Draw ``(dataset, params, test_key)`` from ``seed``: ``jax.random.key(seed)`` is split
        into the data, init and test-set keys.  The draws depend on the seed alone, not on the
        precision (float64 numpy arrays; the flow casts).  Raises :class:`~flowsim.core.errors.UsageError` for any
        combination the library refuses.  Turns on JAX's persistent compilation cache first, as
        :func:`~flowsim.integrate` does, so that a later process finds the draws' programs too."""
        from .core.cache import enable_compilation_cache
        from .models.cooccurrence.data import check_fits_data, make_dataset
        from .models.cooccurrence.init import init_params, init_subspace

        enable_compilation_cache()
        with as_usage():
            resolved = self.resolved()
            resolved.options()
            check_fits_data(self.n_test, self.L, self.d, "n_test")  # drawn by the run, refused before it
            k_data, k_init, k_test = self.keys()
            dataset = make_dataset(k_data, self.n, self.L, self.d, mode=self.data_mode,
                                   counts=self.counts, embedding=self.embedding)
            init = init_params if resolved.start == "matrices" else init_subspace
            params = init(k_init, self.d, self.m, self.m1, scheme=self.init, L=self.L, n=self.n, delta=self.delta,
                          c0=self.c0, c1=self.c1, sigma0=self.sigma0, sigma1=self.sigma1)
        return dataset, params, k_test

    def keys(self):
        """``jax.random.key(seed)`` split into the data, init and test-set keys."""
        import jax

        return tuple(jax.random.split(jax.random.key(self.seed), 3))

    def flow_options(self) -> FlowOptions:
        """The :class:`~flowsim.FlowOptions` of this run."""
        return FlowOptions.make({k: getattr(self, k) for k in FlowOptions.keywords() if k in _FIELDS})

    def descent_options(self) -> DescentOptions:
        """The :class:`~flowsim.DescentOptions` of a resolved ``method="gd"`` run."""
        return DescentOptions.make({k: getattr(self, k) for k in DescentOptions.keywords() if k in _FIELDS})

    def options(self) -> FlowOptions | DescentOptions:
        """The options of this run's method."""
        return self.descent_options() if self.method == "gd" else self.flow_options()


_FIELDS = {f.name for f in dataclasses.fields(RunConfig)}


#: Named starting points; ``paper`` is the defaults (spec 5: n = 60 as 30/10/10/10, L = 5,
#: d = 64, m = 128, m1 = 256, Kaiming init, flow time 300).  ``theory`` meets Assumption 2.3 and
#: Condition 1 (its start, and its sizes m >= max(m1, L^2), n >= L^2) at a small size: n = 18,
#: L = 4 use 30 irrelevant slots, so d = 33 is the smallest vocabulary; with c0 = c1 ~ 0.036
#: Phase 1 lasts T1 = 10 / (sigma1^2 m m1) ~ 120, and the loss falls below 1/m by t ~ 10^3.
PRESETS: dict[str, dict[str, Any]] = table(PRESET_NAMES, {
    "paper": {},
    "theory": dict(data_mode="theory", init="theory", n=18, L=4, d=33, m=64, m1=64, t_end=10_000.0),
}, "flowsim.config.PRESETS")
