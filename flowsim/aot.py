"""Traced programs kept on disk with ``jax.export``, so that a new process skips Python tracing.

JAX's persistent compilation cache (:mod:`flowsim.cache`) spares a new process XLA's
compilation, but not the tracing and lowering that produce the program it looks up: for a
diffrax solve with events and observables that is several seconds, most of a short run.  An
exported program is the lowered module itself; calling it traces nothing of the solve.

A program is kept per structure of the arguments (engine, solver, controller and their static
settings), their shapes and dtypes, the JAX version and flowsim's own source, so an edit to
flowsim or an upgrade of JAX never reuses a stale one.  Programs that contain host callbacks
cannot be exported (nor kept by the persistent cache): diffrax's run-time argument checks are
``eqx.error_if`` callbacks unless equinox reports errors as NaN.  flowsim checks those arguments
on the host before every solve, so :func:`call` traces flowsim's own programs with equinox's
errors as NaN (:func:`errors_as_nan`), whatever ``EQX_ON_ERROR`` the user's code runs with;
a user who sets ``EQX_ON_ERROR`` explicitly keeps it for flowsim too (then only ``nan`` and
``off`` export).  With the compilation cache off, or for arguments spread over several devices,
:func:`call` simply calls the function.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import re
from collections.abc import Callable
from pathlib import Path

import equinox as eqx
import jax

from .cache import enable_compilation_cache

_LOADED: dict[str, Callable] = {}


def source_files() -> list[Path]:
    """Every Python file of flowsim, subpackages included: an edit to any of them must retire
    the programs exported before it."""
    return sorted(Path(__file__).parent.rglob("*.py"))


@functools.cache
def _source_digest() -> str:
    h = hashlib.sha256(jax.__version__.encode())
    for path in source_files():
        h.update(path.read_bytes())
    return h.hexdigest()


@contextlib.contextmanager
def errors_as_nan():
    """Trace and run inside this with ``eqx.error_if`` producing NaN instead of a host callback.

    equinox reads its error mode from a module global when a check is traced; this sets it for
    the duration and gives the checks a jit cache of their own, so that nothing traced here
    is reused by code outside (which keeps equinox's mode, ``raise`` by default).  Without those
    internals (another equinox), or with ``EQX_ON_ERROR`` set by the user, it changes nothing.
    """
    try:
        from equinox import _errors
        saved = _errors.EQX_ON_ERROR, _errors.branched_error_if_impl_jit
    except (ImportError, AttributeError):
        yield
        return
    if "EQX_ON_ERROR" in os.environ or saved[0] in ("nan", "off"):
        yield
        return
    _errors.EQX_ON_ERROR, _errors.branched_error_if_impl_jit = "nan", _own_checks()
    try:
        yield
    finally:
        _errors.EQX_ON_ERROR, _errors.branched_error_if_impl_jit = saved


@functools.cache
def _own_checks():
    from equinox import _errors

    return eqx.filter_jit(_errors.branched_error_if_impl)


def _exportable() -> bool:
    """Whether flowsim's programs trace without host callbacks (see :func:`errors_as_nan`): yes,
    unless the user chose an error mode other than ``nan`` or ``off``."""
    return os.environ.get("EQX_ON_ERROR", "nan") in ("nan", "off")


def _key(name: str, static, leaves, treedef) -> str:
    # Function objects print with their address; the rest of the static structure prints stably.
    described = re.sub(r" at 0x[0-9a-fA-F]+", "", repr((jax.tree.structure(static), jax.tree.leaves(static), treedef)))
    shapes = [(x.shape, str(x.dtype)) for x in leaves]
    text = repr((name, described, shapes, jax.config.jax_enable_x64, _source_digest()))
    return f"{name}-{hashlib.sha256(text.encode()).hexdigest()[:32]}"


def call(name: str, fn: Callable, *args):
    """``fn(*args)`` through an exported program (``fn`` as for ``eqx.filter_jit``: arrays are
    its inputs, everything else is static), exported on the first call of this structure and
    shape and read back from the cache directory in later processes."""
    with errors_as_nan():
        return _call(name, fn, *args)


def _call(name: str, fn: Callable, *args):
    cache = enable_compilation_cache() if _exportable() else None
    if cache is None:
        return fn(*args)
    dynamic, static = eqx.partition(args, eqx.is_array)
    leaves, treedef = jax.tree.flatten(dynamic)
    if any(len(x.sharding.device_set) > 1 for x in leaves if isinstance(x, jax.Array)):
        return fn(*args)
    key = _key(name, static, leaves, treedef)
    if key not in _LOADED:
        _LOADED[key] = _load_or_export(Path(cache) / "exported" / f"{key}.bin", fn, static, leaves, treedef)
    program = _LOADED[key]
    return fn(*args) if program is None else program(leaves)


def _load_or_export(path: Path, fn: Callable, static, leaves, treedef) -> Callable | None:
    try:
        return jax.jit(jax.export.deserialize(bytearray(path.read_bytes())).call)
    except (OSError, ValueError):
        pass
    pure = jax.jit(lambda leaves: fn(*eqx.combine(jax.tree.unflatten(treedef, leaves), static)))
    try:
        program = jax.export.export(pure)([jax.ShapeDtypeStruct(x.shape, x.dtype) for x in leaves])
        blob = program.serialize()
    except Exception:  # host callbacks remain (an error mode set by the user): not exportable
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_bytes(blob)
    os.replace(tmp, path)  # atomic: a concurrent process reads a whole program or none
    return jax.jit(program.call)
