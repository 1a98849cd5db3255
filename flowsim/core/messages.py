"""One-line messages: user input echoed cut to a readable length, exceptions on one line (no JAX here)."""

from __future__ import annotations

import reprlib

_SHOWN = reprlib.Repr()  # keyword arguments only from Python 3.12
_SHOWN.maxlevel, _SHOWN.maxtuple, _SHOWN.maxlist, _SHOWN.maxdict, _SHOWN.maxset = 2, 6, 6, 4, 4
_SHOWN.maxstring, _SHOWN.maxlong, _SHOWN.maxother = 60, 40, 60


def shown(value, *, bare: bool = False) -> str:
    """``value`` as an error message echoes it: its repr (the text itself if ``bare``), cut to a
    readable length, so that a huge input never makes a huge message."""
    if bare and isinstance(value, str):
        return value if len(value) <= _SHOWN.maxstring else f"{value[:_SHOWN.maxstring]}...({len(value)} characters)"
    return _SHOWN.repr(value)


def failure(e: BaseException) -> str:
    """An exception as one line for a result's status message: its type and its words."""
    return f"{type(e).__name__}: {' '.join(str(e).split())}"
