"""How fast a sweep of seeds runs: one solve per seed, one batched solve, and on several devices.

Times ``flowsim.sweep`` over SEEDS seeds of the paper configuration to flow time 300 (each seed
its own data, initialization and test set), after a first call that compiles: one seed alone,
the seeds one solve each (``batch=1``), the seeds in one batched solve, and, in a child process
that forces the CPU to show DEVICES XLA host devices, the batched solve split over them with
jax.sharding.  Prints the figures; it asserts nothing.

    python examples/sweep_speed.py                         # 64 seeds, engine gram, 2 devices
    python examples/sweep_speed.py --seeds 16 --engine params --no-batched
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import flowsim


def timed_sweep(seeds: int, engine: str, saves: int, batch: int) -> float:
    base = flowsim.RunConfig.preset("paper").merge({"engine": engine, "saves": saves, "n_test": 500})
    plan = flowsim.Sweep.make(base, {"seed": list(range(seeds))})
    with tempfile.TemporaryDirectory() as tmp:
        flowsim.sweep(plan, Path(tmp) / "warm", batch=batch, verdicts=False)  # compiles this batch shape
        start = time.perf_counter()
        index = flowsim.sweep(plan, Path(tmp) / "timed", batch=batch, verdicts=False)
        took = time.perf_counter() - start
    failed = [p["name"] for p in index["points"] if p["status"] != "complete"]
    if failed:
        raise SystemExit(f"points failed: {failed}")
    return took


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=64)
    ap.add_argument("--engine", default="gram")
    ap.add_argument("--saves", type=int, default=51)
    ap.add_argument("--devices", type=int, default=2)
    ap.add_argument("--no-batched", action="store_true", help="skip the batched solves (minutes on 2 CPU cores)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ns = ap.parse_args()
    if ns.child:
        import jax

        took = timed_sweep(ns.seeds, ns.engine, ns.saves, ns.seeds)
        print(json.dumps({"devices": len(jax.devices()), "time_s": took}))
        return
    one = timed_sweep(1, ns.engine, ns.saves, 1)
    looped = timed_sweep(ns.seeds, ns.engine, ns.saves, 1)
    print(f"engine {ns.engine}, paper configuration, t_end 300, {ns.saves} saves, after compilation")
    print(f"  1 seed:                               {one:8.2f} s")
    print(f"  {ns.seeds} seeds, one solve each (batch 1):   {looped:8.2f} s  ({looped / one:.1f}x one seed)")
    if ns.no_batched:
        return
    batched = timed_sweep(ns.seeds, ns.engine, ns.saves, ns.seeds)
    print(f"  {ns.seeds} seeds, one batched solve:         {batched:8.2f} s  ({batched / one:.1f}x one seed)")
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={ns.devices}")
    child = subprocess.run([sys.executable, __file__, "--child", "--seeds", str(ns.seeds), "--engine", ns.engine,
                            "--saves", str(ns.saves)], env=env, capture_output=True, text=True)
    if child.returncode:
        raise SystemExit(child.stderr[-2000:])
    sharded = json.loads(child.stdout.strip().splitlines()[-1])
    print(f"  {ns.seeds} seeds batched over {sharded['devices']} host devices: {sharded['time_s']:8.2f} s  "
          f"(speed-up {batched / sharded['time_s']:.2f}x over one device)")


if __name__ == "__main__":
    main()
