"""flowsim's errors: bad input, a directory in use, a damaged result, a size that cannot fit, a failed solve (no JAX here).

Each message is one line that names the option, file or directory and what is allowed.  The
command line maps each class to its exit status in one table (``flowsim.cli.EXIT_STATUS``,
docs/cli.md).  Faults of the input (a directory another process writes, a file that was
damaged or edited, a size that cannot fit) are bad input too: each is a :class:`UsageError`,
so that catching it catches them all, and nothing has been written when one is raised.
"""

from __future__ import annotations

import contextlib
from typing import Any


class FlowsimError(Exception):
    """Every error flowsim raises on purpose."""


class UsageError(FlowsimError, ValueError):
    """Bad input: an invalid value, option, file or directory, refused before anything is written."""


#: The name :class:`UsageError` had, kept: ``flowsim.ConfigError`` is the same class.
ConfigError = UsageError


class DirectoryInUse(UsageError):
    """Another process holds the directory's lock (:mod:`flowsim.core.lock`): two writers on one directory."""


class DamagedResult(UsageError):
    """A result or sweep directory that cannot be trusted: a file damaged, edited, replaced, or not
    belonging with the others."""


class ResourceError(UsageError):
    """A size that cannot fit in memory, refused before anything is allocated; the message has the
    estimate and the limit."""


class FlowFailure(FlowsimError, RuntimeError):
    """The solver failed (step limit, non-finite state); ``result`` (a :class:`~flowsim.FlowResult`)
    holds everything computed."""

    def __init__(self, message: str, result: Any):
        super().__init__(message)
        self.result = result


@contextlib.contextmanager
def as_usage(prefix: str = ""):
    """Raise a ``ValueError`` of the library (a value it refuses) from the block as a
    :class:`UsageError` with ``prefix`` before its words; a :class:`UsageError` keeps its class."""
    try:
        yield
    except UsageError as e:
        if not prefix:
            raise
        raise type(e)(f"{prefix}{e}") from None
    except ValueError as e:
        raise UsageError(f"{prefix}{e}") from None
