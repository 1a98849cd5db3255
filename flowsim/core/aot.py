"""Traced programs kept on disk with ``jax.export``, so that a new process skips Python tracing.

JAX's persistent compilation cache (:mod:`flowsim.core.cache`) spares a new process XLA's
compilation, but not the tracing and lowering that produce the program it looks up: for a
diffrax solve with events and observables that is several seconds, most of a short run.  An
exported program is the lowered module itself; calling it traces nothing of the solve.

A program is kept per structure of the arguments (engine, solver, controller and their static
settings), their shapes and dtypes, and everything whose code is traced into it: flowsim's own
source, and the versions of JAX, jaxlib, diffrax, equinox, optimistix and lineax with a digest of
their files (their source for a package installed in development mode, else the files' sizes
and modification times), so that an edit to flowsim or to a dependency, or an upgrade, never
reuses a stale program.  Each file starts with its key and the digest of the program, so a
damaged, truncated or foreign file is recognised before it is deserialized; it is skipped (the
program is traced in memory, with one :class:`~flowsim.core.cache.CacheWarning`) and replaced.  A
cache directory that cannot be written only costs the tracing: the program is used from memory.

Programs that contain host callbacks cannot be exported (nor kept by the persistent cache):
diffrax's run-time argument checks are ``eqx.error_if`` callbacks unless equinox reports errors
as NaN.  flowsim checks those arguments on the host before every solve, so :func:`call` traces
flowsim's own programs with equinox's errors as NaN (:func:`errors_as_nan`), whatever
``EQX_ON_ERROR`` the user's code runs with; a user who sets ``EQX_ON_ERROR`` explicitly keeps
it for flowsim too (then only ``nan`` and ``off`` export).  With the cache turned off
(``FLOWSIM_NO_CACHE``), or for arguments spread over several devices, :func:`call` simply
calls the function.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import re
from collections.abc import Callable
from pathlib import Path

import equinox as eqx
import jax

from . import cache, files

_LOADED: dict[str, Callable] = {}
#: The packages whose code is traced into flowsim's programs, besides flowsim itself.
TRACED = ("jax", "jaxlib", "diffrax", "equinox", "optimistix", "lineax")
#: First line of an exported program's file; its key and the program's digest follow.
MAGIC = b"flowsim-exported-program 1\n"
MAX_PROGRAM_BYTES = 2**28  # a solve is a few hundred kilobytes


def source_files() -> list[Path]:
    """Every Python file of flowsim, subpackages included: an edit to any of them must retire
    the programs exported before it."""
    return sorted(Path(__file__).parent.parent.rglob("*.py"))  # this file lies in flowsim/core/


@functools.cache
def _source_digest() -> str:
    h = hashlib.sha256()
    for name in TRACED:
        h.update(f"{name}={package_stamp(name)}\n".encode())
    for path in source_files():
        h.update(path.read_bytes())
    return h.hexdigest()


def package_stamp(name: str) -> str:
    """The installed distribution ``name`` as far as a traced program can depend on it: its
    version and a digest of its files, which changes with any edit within the same version.

    A package installed in development mode (``pip install -e``) is digested by the contents of
    its source; any other by the size and modification time of every file its installer
    recorded, which an edit in place changes too and which costs a stat per file, not a read."""
    try:
        dist = importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        return "absent"
    h = hashlib.sha256()
    if _editable(dist):
        spec = importlib.util.find_spec(name)
        for root in (spec.submodule_search_locations or []) if spec else []:
            for path in sorted(Path(root).rglob("*.py")):
                h.update(f"{path.relative_to(root)}\n".encode())
                h.update(path.read_bytes())
    else:
        for record in dist.files or []:
            if "__pycache__" in record.parts:
                continue
            with contextlib.suppress(OSError):
                info = os.stat(dist.locate_file(record))
                h.update(f"{record}:{info.st_size}:{info.st_mtime_ns}\n".encode())
    return f"{dist.version}:{h.hexdigest()[:16]}"


def _editable(dist) -> bool:
    """Whether ``dist`` was installed in development mode (PEP 660's direct_url.json says so)."""
    try:
        return bool(json.loads(dist.read_text("direct_url.json") or "{}").get("dir_info", {}).get("editable"))
    except ValueError:
        return False


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
    # An engine that runs a user's code (flowsim.core.contract.AbstractFlowEngine.exportable) is compiled
    # in memory: the cache's key covers flowsim's source, not theirs.
    if not _exportable() or cache.disabled() or not getattr(args[0], "exportable", True):
        return fn(*args)
    directory = cache.enable_compilation_cache()  # None: the directory cannot serve; programs stay in memory
    dynamic, static = eqx.partition(args, eqx.is_array)
    leaves, treedef = jax.tree.flatten(dynamic)
    if any(len(x.sharding.device_set) > 1 for x in leaves if isinstance(x, jax.Array)):
        return fn(*args)
    key = _key(name, static, leaves, treedef)
    if key not in _LOADED:
        path = None if directory is None else Path(directory) / "exported" / f"{key}.bin"
        _LOADED[key] = _load_or_export(path, key, fn, static, leaves, treedef)
    program = _LOADED[key]
    return fn(*args) if program is None else program(leaves)


def _load_or_export(path: Path | None, key: str, fn: Callable, static, leaves, treedef) -> Callable | None:
    """The program of ``key``: read from ``path`` if a whole one is there, else exported (and
    written to ``path`` if it can be); ``None`` if it cannot be exported."""
    if path is not None:
        program = _read(path, key)
        if program is not None:
            return jax.jit(program.call)
    pure = jax.jit(lambda leaves: fn(*eqx.combine(jax.tree.unflatten(treedef, leaves), static)))
    try:
        program = jax.export.export(pure)([jax.ShapeDtypeStruct(x.shape, x.dtype) for x in leaves])
        blob = program.serialize()
    except Exception:  # host callbacks remain (an error mode set by the user): not exportable
        return None
    if path is not None:
        _write(path, key, bytes(blob))
    return jax.jit(program.call)


def _read(path: Path, key: str):
    """The exported program in ``path``, or ``None`` if there is none or it is damaged, truncated
    or another key's (said once, as a :class:`~flowsim.core.cache.CacheWarning`)."""
    try:
        data = files.read_bytes(path, "exported program", MAX_PROGRAM_BYTES)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:  # UsageError (not a regular file, too large) among them
        return _skip(path, getattr(e, "strerror", None) or str(e))
    head, digest, payload = _split(data)
    if head != MAGIC + key.encode() or digest != hashlib.sha256(payload).hexdigest().encode():
        return _skip(path, "damaged or not this program")
    try:
        return jax.export.deserialize(bytearray(payload))
    except Exception as e:  # a whole file that still does not deserialize: another JAX wrote it
        return _skip(path, f"{type(e).__name__}")


def _split(data: bytes) -> tuple[bytes, bytes, bytes]:
    """``(MAGIC and key, digest, program)`` of an exported program's file (empty if it has no such parts)."""
    parts = data.split(b"\n", 3)
    if len(parts) < 4:
        return b"", b"", b""
    return parts[0] + b"\n" + parts[1], parts[2], parts[3]


def _skip(path: Path, why: str) -> None:
    cache.warn(path.parent.parent, f"holds an unusable exported program {path.parent.name}/{path.name} ({why})",
               "tracing it again and replacing it")
    return None


def _write(path: Path, key: str, blob: bytes) -> None:
    """Write the program atomically (a concurrent process reads a whole one or none); a directory
    that cannot take it (read-only, full) is said once and costs only this process's tracing."""
    data = MAGIC + key.encode() + b"\n" + hashlib.sha256(blob).hexdigest().encode() + b"\n" + blob
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        cache.warn(path.parent.parent, f"cannot keep exported programs ({e.strerror or e})",
                   "using them from memory")
