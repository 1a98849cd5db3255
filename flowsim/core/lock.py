"""One writer per result directory: a lock file created atomically, held for a whole run, released on every exit."""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import socket
import threading
from pathlib import Path

from . import files
from .errors import DirectoryInUse, UsageError

NAME = "flowsim.core.lock"
MAX_BYTES = 2**16  # a lock holds a pid, a host name and a time


def is_lock_file(name: str) -> bool:
    """Whether a file name is the lock or the private file a claim writes before linking it
    into place (``.flowsim.lock.<pid>.<thread>.tmp``, present while a claim is being tried)."""
    return name == NAME or name.startswith(f".{NAME}.") and name.endswith(".tmp")


@contextlib.contextmanager
def claim(path):
    """Hold ``path/flowsim.core.lock`` (pid, host, start time) while the block runs, or raise a one-line
    :class:`~flowsim.core.errors.DirectoryInUse` naming the process that holds it.  A lock left by a dead process of this
    host is taken over; one from another host cannot be judged from here and is refused."""
    lock = Path(path) / NAME
    mine = json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                       "started": datetime.datetime.now().isoformat(timespec="seconds"),
                       "thread": threading.get_ident()}).encode()
    _acquire(lock, mine)
    try:
        yield
    finally:
        with contextlib.suppress(OSError, UsageError):
            if files.read_bytes(lock, "lock file", MAX_BYTES) == mine:
                lock.unlink()


def _acquire(lock: Path, mine: bytes) -> None:
    # The record is written to a private file first and hard-linked into place: link() fails if
    # the name exists, so the lock appears atomically and never half-written.
    tmp = lock.with_name(f".{NAME}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        tmp.write_bytes(mine)
        for _ in range(3):  # a stale lock is removed, then the link is tried again
            try:
                os.link(tmp, lock)
                return
            except FileExistsError:
                holder = _read(lock)
                if not _remove_if_stale(lock, holder):
                    raise DirectoryInUse(_held(lock, holder)) from None
        raise DirectoryInUse(_held(lock, _read(lock)))
    except OSError as e:
        raise UsageError(f"cannot lock {str(lock.parent)!r}: {e.strerror}") from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def _read(lock: Path) -> dict | None:
    """The holder's record, or ``None`` for a lock that cannot be read or is not one (refused by
    :func:`flowsim.core.files.read_json`: not a regular file, too large, too deeply nested)."""
    try:
        holder = files.read_json(lock, "lock file", MAX_BYTES)
    except (OSError, ValueError):  # UsageError among them
        return None
    return holder if isinstance(holder, dict) else None


def _dead(holder: dict | None) -> bool:
    """Whether the holder is provably gone: a process of this host that no longer exists."""
    if holder is None or holder.get("host") != socket.gethostname() or not isinstance(holder.get("pid"), int):
        return False
    try:
        os.kill(holder["pid"], 0)
    except ProcessLookupError:
        return True
    except OSError:  # it exists but belongs to someone else
        return False
    return False


def _remove_if_stale(lock: Path, holder: dict | None) -> bool:
    """Remove the lock if ``holder`` is dead and still the one in it.  Take-overs on this host
    are serialized by flock on the directory, so two of them never remove each other's new lock."""
    if not _dead(holder):
        return False
    fd = os.open(lock.parent, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:  # no flock on this file system: leave the stale lock to the user
            return False
        if _read(lock) == holder:
            lock.unlink()
        return True
    finally:
        os.close(fd)


def _held(lock: Path, holder: dict | None) -> str:
    who = ("an unreadable lock" if holder is None else
           f"pid {holder.get('pid')} on host {holder.get('host')} (since {holder.get('started')})")
    return (f"{str(lock.parent)!r} is in use by {who}; wait for it to finish, or remove {lock} "
            "if that process is gone")
