"""Memory bounds: estimate what a job allocates before allocating it, and refuse what cannot fit."""

from __future__ import annotations

import os
import re

from .errors import ResourceError

#: Environment variable that caps the memory flowsim plans for (bytes, or e.g. ``8G``, ``512M``).
LIMIT_ENV = "FLOWSIM_MEMORY_LIMIT"
#: Copies of the state that an adaptive Runge-Kutta solve keeps (stages, error estimate, dense
#: output, the controller's proposal), for the memory estimate of any engine.
STATE_COPIES = 12

_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def parse_bytes(text: str) -> int:
    """``"8G"`` -> 8 * 2**30; plain integers are bytes."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*", str(text), re.IGNORECASE)
    if not match:
        raise ValueError(f"{LIMIT_ENV} must be a size such as 8G, 512M or 1000000, got {text!r}")
    return int(float(match[1]) * _UNITS[match[2].upper()])


def available_bytes() -> int:
    """What a job may plan to allocate: ``$FLOWSIM_MEMORY_LIMIT`` if set, else the kernel's
    ``MemAvailable`` (Linux), else the physical memory."""
    if os.environ.get(LIMIT_ENV, "").strip():
        return parse_bytes(os.environ[LIMIT_ENV])
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def format_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.3g} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    raise AssertionError


def check_fits(nbytes: float, what: str, hint: str = "") -> None:
    """Raise :class:`ResourceError` if ``nbytes`` exceeds :func:`available_bytes`; ``hint`` says
    what would fit (another engine, a smaller size)."""
    limit = available_bytes()
    if nbytes > limit:
        raise ResourceError(f"{what} needs about {format_bytes(nbytes)} of memory but {format_bytes(limit)} "
                            f"is available{'; ' + hint if hint else ''}")
