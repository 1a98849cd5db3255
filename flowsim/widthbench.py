"""``flowsim bench --preset width``: the cost of a run against the width m = m1, each width in a process of its own.

The width-free start and engine (spec 7.6-7.7) make a run's cost a function of d alone; this
measures it on the theory preset from m = 10^2 to 10^8, and against the matrices and the engine
that ``auto`` chose before the width-free engine existed (``start="matrices"``,
``engine="reduced"``) at one width where both run.  Each width runs in a fresh process so that
its peak memory (the kernel's ``ru_maxrss`` of that process) is its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

WIDTHS = (10**2, 10**4, 10**6, 10**8)
#: The width of the comparison with the m-wide matrices and the reduced engine.
EXPLICIT = 16384


def measure(m: int, *, start: str, engine: str, t_end: float, repeats: int, seed: int) -> dict:
    """One width, in this process: draw the theory preset's problem at m = m1, integrate it to
    ``t_end`` with every event located and the observables at the start and the end (the first
    call compiles or loads the programs; then the best of ``repeats`` more)."""
    from .config import RunConfig
    from .models.cooccurrence.flow import integrate

    config = RunConfig.preset("theory").merge(dict(m=m, m1=m, start=start, engine=engine, t_end=t_end, seed=seed,
                                                   saves=2))
    began = time.perf_counter()
    data, params, key = config.build()
    drawn = time.perf_counter() - began
    options = config.resolved().flow_options()
    times, result = [], None
    for _ in range(1 + repeats):
        t = time.perf_counter()
        result = integrate(params, data, options=options, test_key=key)
        times.append(time.perf_counter() - t)
    return dict(m=m, start=config.resolved().start, engine=result.options.engine, draw_s=drawn, first_s=times[0],
                solve_s=min(times[1:]) if repeats else times[0], steps=result.stats["steps"],
                T1=result.events["phase1_end"], loss=float(result.observables["loss"][-1]))


def _worker(argument: str) -> None:
    print(json.dumps(measure(**json.loads(argument))))


def _in_process(**kwargs) -> dict:
    """:func:`measure` in a fresh Python process, with that process's peak resident memory."""
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", "import sys; from flowsim.widthbench import _worker; "
                             "_worker(sys.argv[1])", json.dumps(kwargs)], stdout=subprocess.PIPE)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise RuntimeError(f"the width {kwargs['m']} run failed (exit status {proc.returncode})")
    return json.loads(out) | dict(process_s=time.perf_counter() - started, peak_mb=usage.ru_maxrss / 1024)


def width_bench(widths=WIDTHS, *, explicit: int | None = EXPLICIT, t_end: float = 1e4, repeats: int = 3,
                seed: int = 0, printer=print) -> dict:
    """Time the theory preset at each of ``widths`` (m = m1, width-free start, ``subspace`` engine),
    and at ``explicit`` both that way and with the m-wide matrices on the ``reduced`` engine (one
    call: it takes minutes).  Uncounted processes at the smallest and the largest width first
    compile the programs (or load them from the caches), as a later run of any width would find
    them: below m = 3d + 1 the start is drawn as a Gaussian matrix, above it by its R factor
    alone, two programs.  Their time and memory are reported apart.  Prints a table with the
    ratios to the first width; returns the records."""
    cold = [_in_process(m=m, start="subspace", engine="subspace", t_end=t_end, repeats=0, seed=seed)
            for m in dict.fromkeys((widths[0], widths[-1]))]
    printer("warm-up processes (compile or load the programs): "
            + ", ".join(f"{c['process_s']:.3g} s, peak {c['peak_mb']:.0f} MB" for c in cold))
    records = [_in_process(m=m, start="subspace", engine="subspace", t_end=t_end, repeats=repeats, seed=seed)
               for m in widths]
    if explicit:
        records.append(_in_process(m=explicit, start="subspace", engine="subspace", t_end=t_end, repeats=repeats,
                                   seed=seed))
        records.append(_in_process(m=explicit, start="matrices", engine="reduced", t_end=t_end, repeats=0,
                                   seed=seed))
    _print(records, t_end, printer)
    return dict(t_end=t_end, seed=seed, warm_up=cold, records=records)


def _print(records: list[dict], t_end: float, printer) -> None:
    from .config import RunConfig

    base, theory = records[0], RunConfig.preset("theory")
    printer(f"flowsim bench --preset width: theory preset (n={theory.n}, L={theory.L}, d={theory.d}), m = m1, "
            f"flow time {t_end:g}, each width in its own process")
    printer(f"{'m = m1':>12} {'start':>9} {'engine':>9} {'solve [s]':>10} {'x first':>8} {'first call':>11} "
            f"{'process':>8} {'peak MB':>8} {'steps':>6} {'T1 m':>8}")
    for r in records:
        T1m = f"{r['T1'] * r['m']:.4g}" if r["T1"] is not None else "-"
        printer(f"{r['m']:>12.4g} {r['start']:>9} {r['engine']:>9} {r['solve_s']:>10.3g} "
                f"{r['solve_s'] / base['solve_s']:>8.3g} {r['first_s']:>10.3g}s {r['process_s']:>7.3g}s "
                f"{r['peak_mb']:>8.0f} {r['steps']:>6} {T1m:>8}")
    wide = [r for r in records if r["start"] == "subspace"]
    printer(f"slowest / fastest width-free solve: {max(r['solve_s'] for r in wide) / min(r['solve_s'] for r in wide):.3g}; "
            f"largest peak memory {max(r['peak_mb'] for r in wide):.0f} MB")
    pair = [r for r in records if r["m"] == records[-1]["m"]]
    if len(pair) == 2 and pair[1]["start"] == "matrices":
        fast, slow = pair
        printer(f"at m = m1 = {fast['m']}: matrices + reduced engine / width-free: solve "
                f"{slow['solve_s'] / fast['solve_s']:.3g}x, whole process {slow['process_s'] / fast['process_s']:.3g}x, "
                f"peak memory {slow['peak_mb'] / fast['peak_mb']:.3g}x")
