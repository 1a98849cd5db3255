"""The memory model against measured peaks: what ``flowsim.plan`` predicts a run holds, and what it holds.

Runs a short flow (the first steps, every event watched, three saved times of every observable)
for each size of a grid over L, n, n_test, d and m, each in a fresh process, and prints the
peak resident memory the kernel measured for that process (``ru_maxrss``, with the compiled
programs read from the cache) above the peak of the paper preset's run (the interpreter, JAX and
the programs), next to the model's estimate
(:func:`flowsim.models.cooccurrence.flow.memory_terms`: the data and test set, the engine's solve, the evaluations'
per-sample attention arrays, the saved trajectory).  The model is meant to bound the growth from
above within a small factor; a ratio below 1 is an underestimate.  Prints the figures; asserts
nothing.

    python examples/memory_model.py              # the grid of docs/performance.md (~10 min on 2 cores)
    python examples/memory_model.py --quick      # three sizes
"""

import argparse
import json
import os
import subprocess
import sys
import time

#: Sizes over the paper preset (n=60, L=5, d=64, m=128, m1=256, n_test=2000): each row changes
#: what grows with L (the n L^2 and n_test L^2 attention arrays), n, n_test, d (d^2 words pairs,
#: d x d saved matrices) or the width.
GRID = [
    dict(),
    dict(L=40), dict(L=80), dict(L=160), dict(L=240),
    dict(L=80, n_test=500), dict(L=80, n=600, n_test=200),
    dict(n=6000), dict(n_test=100000),
    dict(d=512), dict(d=1024),
    dict(m=4096, m1=4096), dict(m=2048, m1=2048, L=80),
]
QUICK = [dict(), dict(L=160), dict(d=1024)]


def _worker(argument: str) -> None:
    import jax

    import flowsim
    from flowsim.models.cooccurrence.flow import memory_terms, plan

    sizes = json.loads(argument)
    config = flowsim.RunConfig.preset("paper").merge(sizes | dict(t_end=1e-2, saves=3))
    data, params, key = config.build()
    options = plan(params, data, config.resolved().flow_options())
    terms = memory_terms(params, data, options)
    started = time.perf_counter()
    result = flowsim.integrate(params, data, test_key=key, options=options)
    jax.effects_barrier()
    print(json.dumps(dict(engine=options.engine, terms=terms, steps=result.stats["steps"],
                          seconds=time.perf_counter() - started)))


def measure(sizes: dict) -> dict:
    """One run of ``sizes`` in a fresh process, with that process's peak resident memory.  A first
    process fills the compilation cache; the second, measured, compiles nothing (XLA's compiler
    takes a few hundred megabytes of its own, which no size of the run changes)."""
    for _ in range(2):
        proc = subprocess.Popen([sys.executable, __file__, "--worker", json.dumps(sizes)], stdout=subprocess.PIPE)
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        if os.waitstatus_to_exitcode(status):
            raise SystemExit(f"the run {sizes} failed")
    return json.loads(out) | dict(peak=usage.ru_maxrss * 1024)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="three sizes instead of the whole grid")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return _worker(args.worker)
    rows = [(sizes, measure(sizes)) for sizes in (QUICK if args.quick else GRID)]
    base_peak, base_model = rows[0][1]["peak"], sum(rows[0][1]["terms"].values())
    mb = 2.0**20
    print(f"baseline (paper preset): peak {base_peak / mb:.0f} MB, model {base_model / mb:.1f} MB\n")
    print("| sizes over the paper preset | engine | measured peak - baseline [MB] | model - baseline [MB] "
          "| model / measured | largest term |")
    print("|---|---|---|---|---|---|")
    for sizes, row in rows[1:]:
        grown, model = (row["peak"] - base_peak) / mb, (sum(row["terms"].values()) - base_model) / mb
        largest = max(row["terms"], key=row["terms"].get)
        ratio = f"{model / grown:.2f}" if grown > 20 else "(< 20 MB grown)"
        label = ", ".join(f"{k}={v}" for k, v in sizes.items())
        print(f"| {label} | {row['engine']} | {grown:.0f} | {model:.0f} | {ratio} | {largest} |")


if __name__ == "__main__":
    main()
