"""Random draws fixed by their key alone: the same key gives the same arrays whatever JAX's x64 flag."""

from __future__ import annotations

from collections.abc import Callable

import jax
import numpy as np


def draw(sampler: Callable, *args, **kwargs):
    """``sampler(*args, **kwargs)`` run in JAX's 64-bit mode, whatever the caller's, with its
    concrete outputs returned as numpy arrays.

    JAX's default dtypes follow the x64 flag, and so do the bits behind a draw
    (``jax.random.uniform`` in float32 and float64 consumes different bits, ``randint`` in
    int32 and int64 too), so the same key drew different data inside and outside
    ``jax.enable_x64``, and under the CLI's float32 and float64 runs.  Every sampler of flowsim
    runs through here, in one fixed mode; numpy outputs keep their float64 values outside x64
    mode, and ``integrate`` casts to the flow's precision.  Traced outputs (under ``jax.vmap``
    or ``jax.jit``) are passed through.
    """
    with jax.enable_x64(True):
        out = sampler(*args, **kwargs)
    return jax.tree.map(_host, out)


def _host(x):
    if isinstance(x, jax.core.Tracer) or jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        return x
    return np.asarray(x)
