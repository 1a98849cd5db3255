"""JAX's persistent compilation cache for flowsim's entry points, with an opt-out."""

from __future__ import annotations

import os
from pathlib import Path

import jax

#: Default cache directory; ``FLOWSIM_CACHE_DIR`` overrides it.
DEFAULT_DIR = Path.home() / ".cache" / "flowsim" / "jax"


def enable_compilation_cache(path: str | os.PathLike | None = None) -> str | None:
    """Let JAX keep compiled programs on disk, so that a new process running a configuration
    it has seen compiles nothing.  Returns the directory, or ``None`` when off.

    The directory is ``path``, else ``$FLOWSIM_CACHE_DIR``, else ``~/.cache/flowsim/jax``.
    ``FLOWSIM_NO_CACHE=1`` turns it off.  A cache directory the user configured in JAX already
    is left alone.  :func:`flowsim.integrate`, ``flowsim bench`` and the CLI call this;
    importing flowsim does not.
    """
    if os.environ.get("FLOWSIM_NO_CACHE", "").strip() not in ("", "0"):
        return None
    configured = jax.config.jax_compilation_cache_dir
    if configured:
        return configured
    path = Path(path or os.environ.get("FLOWSIM_CACHE_DIR") or DEFAULT_DIR).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(path))
    # flowsim's programs mostly compile in under JAX's default 1 s threshold; cache them all.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return str(path)
