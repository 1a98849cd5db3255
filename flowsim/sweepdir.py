"""A sweep directory read back: its index, its grid and each point's status and run; the one reader that the sweep, the report and the figures share.

A sweep directory (written by :func:`flowsim.sweep`) holds ``sweep.json`` (the definition: base
configuration, grid, tie; and an entry per point), ``sweep.npz`` (a flat table) and the points'
result directories under ``points/``.  The points' directories are the truth: the index is
written after them and may lag behind, so a point's status is read from its own directory.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from .core.errors import DamagedResult, UsageError

if TYPE_CHECKING:
    from .results import Run

INDEX_JSON, INDEX_NPZ, POINTS = "sweep.json", "sweep.npz", "points"
FAILURE = "failure.txt"  # in a point's directory: why its batch raised
#: Largest sweep.json and failure.txt read back (bytes): a few kilobytes per point at most.
INDEX_BYTES, FAILURE_BYTES = 2**27, 2**20


def is_sweep(path) -> bool:
    """Whether ``path`` is a sweep directory rather than a result directory: it has an index."""
    return (Path(path) / INDEX_JSON).exists()


def read_index(path) -> dict:
    """``sweep.json`` of the sweep directory ``path``: a one-line :class:`~flowsim.core.errors.UsageError`
    if there is none, a :class:`~flowsim.core.errors.DamagedResult` if it cannot be trusted (not JSON,
    not an index, refused by :mod:`flowsim.core.files`)."""
    from .core.files import read_json

    path = Path(path)
    try:
        index = read_json(path / INDEX_JSON, "sweep index", INDEX_BYTES)
    except UsageError as e:
        raise DamagedResult(str(e)) from None
    except (OSError, ValueError) as e:
        error = UsageError if isinstance(e, OSError) else DamagedResult
        raise error(f"{path} is not a flowsim sweep directory (cannot read {INDEX_JSON}: "
                    f"{getattr(e, 'strerror', None) or e})") from None
    if not isinstance(index, dict):
        raise DamagedResult(f"{path} is not a flowsim sweep directory ({INDEX_JSON} is not an index)")
    return index


def failure_note(point: Path) -> str:
    """Why the batch of the point in directory ``point`` raised (its :data:`FAILURE` note), or ``""``."""
    from .core.files import read_bytes

    if not (point / FAILURE).exists():
        return ""
    return read_bytes(point / FAILURE, "failure note", FAILURE_BYTES).decode(errors="replace").strip()


def read_point(point: Path) -> tuple[str, Run | None]:
    """The status of the point in directory ``point`` and its :class:`~flowsim.Run`: ``pending``
    and ``None`` before its run is written, ``failed`` where its batch raised (a :data:`FAILURE`
    note), else its run's status (``complete``, ``running``, ``interrupted``, ``failed``).
    A directory that cannot be read raises (:func:`flowsim.load`)."""
    from .results import RUN_JSON, load

    if not (point / RUN_JSON).exists():
        return "pending", None
    run = load(point)
    return ("failed" if (point / FAILURE).exists() else run.status), run


class SweepPoint(NamedTuple):
    """One point of a sweep directory: its name, its status (:func:`read_point`, or
    ``unreadable``) and its run if it is complete (else ``None``)."""

    name: str
    status: str
    run: Run | None


@dataclasses.dataclass(frozen=True)
class SweepDir:
    """A sweep directory read back (:meth:`read`): its ``definition`` (``base``, ``grid``, maybe
    ``tie``), the ``grid`` keys, and ``points`` in index order, each read from its own directory."""

    path: Path
    definition: dict
    grid: tuple[str, ...]
    points: tuple[SweepPoint, ...]

    @classmethod
    def read(cls, path) -> SweepDir:
        """Read the sweep directory ``path``: its index (:func:`read_index`), then every point's
        directory; a point that cannot be read is ``unreadable``, not an error."""
        path = Path(path)
        index = read_index(path)
        try:
            definition = index["definition"]
            grid, entries = tuple(definition["grid"]), [(e["name"], e["path"]) for e in index["points"]]
        except (ValueError, KeyError, TypeError) as e:
            raise DamagedResult(f"{path} is not a flowsim sweep directory (cannot read {INDEX_JSON}: {e})") from None
        points = []
        for name, where in entries:
            try:
                status, run = read_point(path / where)
            except UsageError:
                status, run = "unreadable", None
            points.append(SweepPoint(name, status, run if status == "complete" else None))
        return cls(path=path, definition=definition, grid=grid, points=tuple(points))

