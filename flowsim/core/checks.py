"""Checks of the values flowsim takes, each defined once: the value as it is meant, or a one-line ValueError saying what is allowed (no JAX here).

The options objects (:mod:`flowsim.core.options`), the initialization and the configuration
(:mod:`flowsim.config`, and so the command line) check with the same :class:`Check`: a Python
value is taken as it is (``"5"`` is not a number, ``True`` is not an integer), and a
command-line value, which is text, is read first (:meth:`Check.text`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from .messages import shown

#: What :attr:`Check.accept` returns for a value it refuses.
REFUSED = object()


def is_number(value, kinds: str = "iuf") -> bool:
    """Whether ``value`` is one real number (a Python or numpy scalar, or a 0-d array) whose dtype
    kind is among ``kinds``: not text, not a boolean, not a sequence."""
    if isinstance(value, (str, bytes, bool, np.bool_)):
        return False
    try:
        return np.ndim(value) == 0 and np.asarray(value).dtype.kind in kinds
    except (TypeError, ValueError):
        return False


@dataclasses.dataclass(frozen=True)
class Check:
    """One kind of value: ``allowed`` says which, for messages and ``--help``; ``accept`` gives a
    value as it is meant (``1e5`` -> ``100000`` for an integer) or :data:`REFUSED`; ``read``
    turns command-line text into a value (it may raise ``ValueError``: the text is refused)."""

    allowed: str
    accept: Callable[[Any], Any]
    read: Callable[[str], Any]

    def __call__(self, value, name: str | None = None):
        """``value`` as it is meant, or ``ValueError("{name} must be {allowed}, got {value}")``."""
        return self._checked(value, value, name)

    def text(self, value, name: str | None = None):
        """As a call, but text (a command-line or TOML string) is read first."""
        parsed = value
        if isinstance(value, str):
            try:
                parsed = self.read(value.strip())
            except (ValueError, OverflowError):
                pass
        return self._checked(parsed, value, name)

    def _checked(self, value, given, name):
        out = self.accept(value)
        if out is REFUSED:
            raise ValueError(f"{name + ' ' if name else ''}must be {self.allowed}, got {shown(given)}")
        return out


def _positive(value):
    return float(value) if is_number(value) and math.isfinite(float(value)) and float(value) > 0 else REFUSED


def _probability(value):
    return float(value) if is_number(value) and 0 < float(value) < 1 else REFUSED


#: A positive finite number, as a float.
POSITIVE = Check("a positive finite number", _positive, float)
#: A number strictly between 0 and 1 (a failure probability), as a float.
PROBABILITY = Check("a number in (0, 1)", _probability, float)


def _integral(value):
    """``value`` as an int if it is an integer or an integral float (``1e8``), else ``None``."""
    if is_number(value, "iu"):
        return int(value)
    if is_number(value, "f") and math.isfinite(float(value)) and float(value).is_integer():
        return int(float(value))
    return None


def _read_integer(text: str):
    try:
        return int(text)
    except ValueError:
        return float(text)  # 1e8


def integer(low: int = 1, high: int | None = None) -> Check:
    """An integer in ``[low, high]`` (no upper bound for ``high=None``), as an int; an integral
    float such as ``1e8`` counts, a boolean does not."""
    allowed = f"an integer >= {low}" if high is None else f"an integer in [{low}, {high}]"

    def accept(value):
        v = _integral(value)
        return v if v is not None and v >= low and (high is None or v <= high) else REFUSED

    return Check(allowed, accept, _read_integer)


def one_of(options: tuple) -> Check:
    """One of ``options``, returned as the option itself: a name for names, a number equal to it
    for numbers (``64.0`` is 64; in Python ``"64"`` and ``True`` are not, on the command line
    ``64`` is)."""

    def accept(value):
        for option in options:
            same_kind = isinstance(value, str) if isinstance(option, str) else is_number(value)
            if same_kind and value == option:
                return option
        return REFUSED

    def read(text: str):
        return next((option for option in options if str(option) == text), text)

    return Check("one of " + ", ".join(map(str, options)), accept, read)
