"""Reading a file flowsim did not necessarily write: a regular file only, bounded in size, JSON bounded in depth.

Every file flowsim reads back (a result directory's files, a sweep index, a lock, a
configuration, an exported program) may have been damaged, edited or replaced: by a device such
as ``/dev/zero`` (endless), a named pipe (a read that never returns), a file far larger than its
kind ever is, or JSON nested deeper than Python's parser recurses.  Each is refused here in one
line (:class:`~flowsim.core.errors.UsageError`) before anything large is read.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from typing import Any, BinaryIO

from .errors import UsageError
from .resources import format_bytes

#: Deepest nesting of a JSON file flowsim reads (its own nest four levels at most).
MAX_JSON_DEPTH = 32


@contextlib.contextmanager
def open_regular(path, what: str, limit: int, bound: str = "the most such a file holds") -> BinaryIO:
    """``path`` opened for binary reading, or a one-line :class:`UsageError` if it is not a
    regular file or holds more than ``limit`` bytes (``bound`` says what the limit is, for the
    message).  An ``OSError`` (a missing file, no permission) is the caller's to word.

    The file is opened without blocking (opening a named pipe would otherwise wait for a
    writer) and checked through its descriptor, so what is checked is what is read."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UsageError(f"{what} {str(path)!r} is not a regular file (a device, a pipe or a socket); refused")
        if info.st_size > limit:
            raise UsageError(f"{what} {str(path)!r} is larger than {format_bytes(limit)}, {bound} "
                              f"({format_bytes(info.st_size)}); refused")
        yield f


def read_bytes(path, what: str, limit: int, bound: str = "the most such a file holds") -> bytes:
    """The bytes of the regular file ``path`` of at most ``limit`` bytes (see :func:`open_regular`);
    a file that grows past ``limit`` while it is read is refused too."""
    with open_regular(path, what, limit, bound) as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise UsageError(f"{what} {str(path)!r} grew past {format_bytes(limit)} while it was read; refused")
    return data


def read_json(path, what: str, limit: int) -> Any:
    """The JSON value in ``path`` (:func:`read_bytes`), nested at most :data:`MAX_JSON_DEPTH` deep.

    Raises :class:`UsageError` for a file that is refused, ``ValueError`` for one that is not
    JSON and ``OSError`` for one that cannot be read (which callers word in their own terms)."""
    data = read_bytes(path, what, limit)
    try:
        value = json.loads(data)
    except RecursionError:  # Python's parser recurses once per level: far too deep
        too_deep = True
    else:
        too_deep = depth(value) > MAX_JSON_DEPTH
    if too_deep:
        raise UsageError(f"{what} {str(path)!r} is nested more than {MAX_JSON_DEPTH} levels deep; refused")
    return value


def depth(value: Any) -> int:
    """Nesting depth of a JSON value (a scalar is 0), found without recursion."""
    deepest, todo = 0, [(value, 0)]
    while todo:
        item, level = todo.pop()
        if isinstance(item, (dict, list)):
            level += 1
            deepest = max(deepest, level)
            if level > MAX_JSON_DEPTH:
                break
            todo.extend((v, level) for v in (item.values() if isinstance(item, dict) else item))
    return deepest

