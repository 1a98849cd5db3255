"""JAX's persistent compilation cache for flowsim's entry points, with an opt-out; a cache that cannot serve is skipped, never fatal."""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import jax

#: Default cache directory; ``FLOWSIM_CACHE_DIR`` overrides it.
DEFAULT_DIR = Path.home() / ".cache" / "flowsim" / "jax"
#: Free space below which a cache directory counts as full: a run's programs take a few megabytes.
MIN_FREE_BYTES = 2**26


class CacheWarning(UserWarning):
    """The compilation cache could not serve (unusable directory, damaged entry): flowsim
    compiled in memory instead.  Issued once per process."""


_warned = False


def warn(path, problem: str, action: str = "compiling in memory instead") -> None:
    """Say once per process, in one line, that the cache at ``path`` has ``problem``, what flowsim
    does instead (``action``) and how to clear it."""
    global _warned
    if _warned:
        return
    _warned = True
    warnings.warn(f"the compilation cache {path} {problem}; {action} (clear it with rm -rf {path}, point "
                  "FLOWSIM_CACHE_DIR elsewhere, or set FLOWSIM_NO_CACHE=1)", CacheWarning, stacklevel=3)


def disabled() -> bool:
    """Whether the user turned the cache off (``FLOWSIM_NO_CACHE`` set to anything but 0)."""
    return os.environ.get("FLOWSIM_NO_CACHE", "").strip() not in ("", "0")


def enable_compilation_cache(path: str | os.PathLike | None = None) -> str | None:
    """Let JAX keep compiled programs on disk, so that a new process running a configuration
    it has seen compiles nothing.  Returns the directory, or ``None`` when off.

    The directory is ``path``, else ``$FLOWSIM_CACHE_DIR``, else ``~/.cache/flowsim/jax``.
    ``FLOWSIM_NO_CACHE=1`` turns it off.  A cache directory the user configured in JAX already
    is left alone.  A directory that cannot serve (it cannot be created, is a file, is not
    writable, or its disk is full) is skipped with one :class:`CacheWarning`: everything is
    compiled in memory, as with the cache off.  :func:`flowsim.integrate`, ``flowsim bench``
    and the CLI call this; importing flowsim does not.
    """
    if disabled():
        return None
    configured = jax.config.jax_compilation_cache_dir
    if configured:
        return configured
    path = Path(path or os.environ.get("FLOWSIM_CACHE_DIR") or DEFAULT_DIR).expanduser()
    problem = unusable(path)
    if problem:
        warn(path, problem)
        return None
    jax.config.update("jax_compilation_cache_dir", str(path))
    # flowsim's programs mostly compile in under JAX's default 1 s threshold; cache them all.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    # A write that fails later (the disk filled up meanwhile) costs a recompilation in a later
    # process, nothing now; flowsim's own warning (:func:`warn`) says so once, not JAX per entry.
    warnings.filterwarnings("ignore", "Error writing persistent compilation cache entry", UserWarning)
    return str(path)


def unusable(path: Path) -> str | None:
    """Why the directory ``path`` cannot hold the cache (created if missing), or ``None``: it is
    a directory in which a file can be written, on a disk with :data:`MIN_FREE_BYTES` free."""
    if path.exists() and not path.is_dir():
        return "is not a directory"
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path) as probe:  # a block's write fails on a full disk too
            probe.write(b"\0" * 4096)
            probe.flush()
        free = shutil.disk_usage(path).free
    except OSError as e:
        return "is not usable (" + (e.strerror or str(e)) + ")"
    if free < MIN_FREE_BYTES:
        return f"is not usable ({os.strerror(errno.ENOSPC)}: {free // 2**20} MB free)"
    return None
