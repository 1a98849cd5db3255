"""``flowsim bench``: flowsim against gradient descent and generic ODE loops, timed in one process."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import resource
import sys
import time

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from . import config as run_config
from .models.cooccurrence import model
from .core.cache import enable_compilation_cache
from .cli import exit_status
from .config import RunConfig
from .core.errors import UsageError
from .core.names import DEFAULT_PRESET, ENGINE_CHOICES
from .core.options import DescentOptions
from .models.cooccurrence.engines import Sizes, engine_costs
from .models.cooccurrence.flow import integrate, integrate_batch
from .models.cooccurrence.init import init_params

#: Configurations.  ``paper`` and ``theory`` are the run presets of the same names
#: (:data:`flowsim.config.PRESETS`), so that ``flowsim bench --preset theory --seed 3`` times the
#: problem that ``flowsim integrate --preset theory --seed 3`` solves; ``theory-large`` is
#: theory-mode data and init at a size where the four-matrix flow is expensive (minutes, ~1 GB).
PRESETS: dict[str, RunConfig] = {
    **{name: RunConfig.preset(name) for name in run_config.PRESETS},
    "theory-large": RunConfig.preset("theory").merge(dict(n=120, L=8, d=963, m=1024, m1=1024, t_end=1e4)),
}
METHODS = ("flowsim", "saves", "plain", "gd", "scipy", "torch", "batch")
DEFAULT_METHODS = ("flowsim", "saves", "plain", "gd", "scipy", "torch")
#: On theory-large, gradient descent, SciPy and PyTorch would take hours: only the solves by default.
LARGE_METHODS = ("flowsim", "plain")
SIZES = ("n", "L", "d", "m", "m1")


def _timed(fn):
    t = time.perf_counter()
    out = fn()
    jax.block_until_ready(out)
    return time.perf_counter() - t, out


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _four_matrix_loss(data):
    def loss(theta, a):
        return model.loss(model.Params(*theta, a), data)
    return loss


def bench(preset: str = DEFAULT_PRESET, *, t_end: float | None = None, rtol: float = 1e-6, atol: float = 1e-8,
          engine: str | None = None, lr: float = DescentOptions.lr, seed: int = 0, repeats: int = 3, batch: int = 16,
          methods=DEFAULT_METHODS, printer=print, **sizes) -> dict:
    """Time flowsim (its first call, with compilation, and the best of ``repeats`` later calls)
    and the baselines below on one configuration, in one process, in float64 unless said
    otherwise, and compare their final losses.

    Methods:

    - ``flowsim``: :func:`flowsim.integrate` to ``t_end`` with the events located and every
      observable at the start and the end (``saves=2``): the same product as the baselines,
      an end point and its loss;
    - ``saves``: the same with ``integrate``'s default 201 saved times of every observable;
    - ``plain``: a straightforward diffrax Tsit5 solve of the four-matrix flow (no observables);
    - ``gd``: jitted gradient descent (``jax.lax.scan``) at learning rate ``lr`` to flow time ``t_end``;
    - ``scipy``: ``scipy.integrate.solve_ivp`` (RK45) on the same jitted gradient;
    - ``torch``: PyTorch float32 gradient descent like ``gd`` (a row saying "not installed"
      without torch);
    - ``batch``: ``integrate_batch`` over ``batch`` initializations against one.

    The problem is the run preset's (:data:`PRESETS`) with ``sizes`` (``n``, ``L``, ``d``, ``m``,
    ``m1``) and ``seed`` over it, drawn as ``flowsim integrate`` draws it
    (:meth:`flowsim.RunConfig.build`); :class:`~flowsim.core.errors.UsageError` for sizes the data cannot
    satisfy.  ``engine=None`` takes the cheapest engine for the sizes by
    :func:`flowsim.models.cooccurrence.engines.engine_costs`, the Gram system included (``gram`` for the paper
    preset, ``reduced`` for theory-large).

    Returns a dict of records (time, ratio to flowsim after compilation, evaluations, final
    loss and its relative difference from flowsim's); prints a table through ``printer``.
    Timings only: nothing here fails because a machine is slow.
    """
    if preset not in PRESETS:
        raise UsageError(f"--preset: must be one of {', '.join(PRESETS)}, got {preset!r}")
    overrides = {**sizes, "seed": seed, **({} if t_end is None else {"t_end": t_end})}
    config = PRESETS[preset].merge(overrides, label=lambda k: f"--{k.replace('_', '-')}")
    t_end = config.t_end
    cache = enable_compilation_cache()
    data, params, _ = config.build()
    if engine is None:  # the cheapest, the Gram system included (a benchmark needs no final matrices)
        costs = engine_costs(Sizes.of(params, data, 2))
        engine = min(costs, key=costs.get)
    a = params.a
    theta0 = (params.W, params.W_V, params.W_K, params.W_Q)
    loss = _four_matrix_loss(data)
    records: dict[str, dict] = {}

    def run_flowsim(saves):
        return lambda: integrate(params, data, t_end, rtol=rtol, atol=atol, engine=engine, saves=saves)

    for name, saves in (("flowsim", 2), ("saves", 201)):
        if name in methods or name == "flowsim" and "batch" in methods:
            cold, res = _timed(run_flowsim(saves))
            warm = min(_timed(run_flowsim(saves))[0] for _ in range(repeats))
            records[name] = dict(time_s=warm, cold_s=cold, nfev=res.stats["nfev"], steps=res.stats["steps"],
                                 loss=float(res.observables["loss"][-1]), engine=res.settings["engine"],
                                 saves=saves, peak_rss_mb=_peak_rss_mb())
    with jax.enable_x64(True):
        if "plain" in methods:
            records["plain"] = _plain(loss, theta0, a, t_end, rtol, atol)
        if "gd" in methods:
            records["gd"] = _gd(loss, theta0, a, t_end, lr)
        if "scipy" in methods:
            records["scipy"] = _scipy(loss, theta0, a, t_end, rtol, atol)
    if "torch" in methods:
        records["torch"] = _torch(params, data, t_end, lr)
    if "batch" in methods:
        records["batch"] = _batch(config, data, batch, t_end, rtol, atol, engine, repeats, records["flowsim"])

    base = records.get("flowsim")
    for name, rec in records.items():
        if base is not None and "time_s" in rec:
            rec["ratio"] = rec["time_s"] / base["time_s"]
            if "loss" in rec:
                rec["loss_rel_diff"] = abs(rec["loss"] - base["loss"]) / abs(base["loss"])
    out = dict(preset=preset, config=config.to_dict(), rtol=rtol, atol=atol, lr=lr, seed=seed, cache=cache,
               devices=str(jax.devices()), records=records)
    _print(out, printer)
    return out


def _plain(loss, theta0, a, t_end, rtol, atol):
    grad = jax.grad(loss)

    @jax.jit
    def solve(theta):
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(lambda t, y, a: jax.tree.map(jnp.negative, grad(y, a))), diffrax.Tsit5(),
            0.0, t_end, None, theta, a, stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
            max_steps=100_000)
        return jax.tree.map(lambda x: x[-1], sol.ys), sol.stats["num_steps"]

    cold, _ = _timed(lambda: solve(theta0))
    t, (theta, steps) = _timed(lambda: solve(theta0))
    return dict(time_s=t, cold_s=cold, steps=int(steps), nfev=6 * int(steps) + 3,
                loss=float(loss(theta, a)), peak_rss_mb=_peak_rss_mb())


def _gd(loss, theta0, a, t_end, lr):
    steps = int(round(t_end / lr))

    @jax.jit
    def descend(theta):
        def step(theta, _):
            return jax.tree.map(lambda x, g: x - lr * g, theta, jax.grad(loss)(theta, a)), None
        return jax.lax.scan(step, theta, None, length=steps)[0]

    compiled = descend.lower(theta0).compile()
    t, theta = _timed(lambda: compiled(theta0))
    return dict(time_s=t, steps=steps, nfev=steps, loss=float(loss(theta, a)))


def _scipy(loss, theta0, a, t_end, rtol, atol):
    from scipy.integrate import solve_ivp

    flat0, unravel = ravel_pytree(theta0)
    rhs = jax.jit(lambda y: -ravel_pytree(jax.grad(loss)(unravel(y), a))[0])
    rhs(flat0).block_until_ready()
    t, sol = _timed(lambda: solve_ivp(lambda t, y: np.asarray(rhs(y)), (0.0, t_end), np.asarray(flat0),
                                      method="RK45", rtol=rtol, atol=atol))
    return dict(time_s=t, nfev=int(sol.nfev), loss=float(loss(unravel(jnp.asarray(sol.y[:, -1])), a)))


def _torch(params, data, t_end, lr):
    try:
        import torch
    except ImportError:
        return dict(note="not installed")
    steps = int(round(t_end / lr))
    W, W_V, W_K, W_Q = (torch.tensor(np.asarray(x), dtype=torch.float32, requires_grad=True)
                        for x in (params.W, params.W_V, params.W_K, params.W_Q))
    a = torch.tensor(np.asarray(params.a), dtype=torch.float32)
    E = torch.tensor(np.asarray(data.embedding), dtype=torch.float32)
    tok = torch.tensor(np.asarray(data.tokens), dtype=torch.long)
    y = torch.tensor(np.asarray(data.labels), dtype=torch.float32)
    m = W_V.shape[0]

    def loss():  # Eq. (1)-(2) with word columns gathered, as flowsim.models.cooccurrence.model.outputs
        z = (W_V @ E).T @ (W.T @ a)
        K, Q = (W_K @ E)[:, tok], (W_Q @ E)[:, tok]
        logits = torch.einsum("mnk,mnl->nkl", K, Q) / math.sqrt(m)
        F = torch.einsum("nk,nkl->n", z[tok], torch.softmax(logits, dim=1))
        return torch.nn.functional.softplus(-y * F).mean()

    def descend():
        for _ in range(steps):
            for p in (W, W_V, W_K, W_Q):
                p.grad = None
            loss().backward()
            with torch.no_grad():
                for p in (W, W_V, W_K, W_Q):
                    p -= lr * p.grad
        return loss().item()

    t = time.perf_counter()
    final = descend()
    return dict(time_s=time.perf_counter() - t, steps=steps, nfev=steps, loss=final, precision=32)


def _batch(config, data, size, t_end, rtol, atol, engine, repeats, single):
    with jax.enable_x64(True):
        keys = jax.random.split(config.keys()[1], size)  # members' inits from the run's init key
        params = jax.vmap(lambda k: init_params(k, config.d, config.m, config.m1, scheme=config.init, L=config.L,
                                                n=config.n, delta=config.delta, c0=config.c0, c1=config.c1,
                                                sigma0=config.sigma0, sigma1=config.sigma1))(keys)
    run = lambda: integrate_batch(params, data, t_end, rtol=rtol, atol=atol, engine=engine, saves=2)
    cold, res = _timed(run)
    warm = min(_timed(run)[0] for _ in range(repeats))
    return dict(time_s=warm, cold_s=cold, members=size, per_single=warm / single["time_s"],
                steps=max(r.stats["steps"] for r in res))


def _print(out, printer):
    cfg = out["config"]
    printer(f"flowsim bench: preset {out['preset']} (n={cfg['n']}, L={cfg['L']}, d={cfg['d']}, m={cfg['m']}, "
            f"m1={cfg['m1']}, seed {cfg['seed']}), flow time {cfg['t_end']:g}, rtol {out['rtol']:g}, "
            f"on {out['devices']}")
    printer(f"{'method':<10}{'time [s]':>11}{'x flowsim':>11}{'nfev':>9}{'final loss':>14}{'rel. diff':>11}  notes")
    for name, rec in out["records"].items():
        notes = [rec["note"]] if "note" in rec else []
        if "cold_s" in rec:
            notes.append(f"first call {rec['cold_s']:.3g} s")
        if "engine" in rec:
            notes.append(f"engine {rec['engine']}, {rec['saves']} saves")
        if name == "batch":
            notes.append(f"{rec['members']} members = {rec['per_single']:.2f} x one")
        if "peak_rss_mb" in rec:
            notes.append(f"peak RSS so far {rec['peak_rss_mb']:.0f} MB")
        time_s = f"{rec['time_s']:.4g}" if "time_s" in rec else "-"
        ratio = f"{rec['ratio']:.3g}" if "ratio" in rec else "-"
        loss = f"{rec['loss']:.6e}" if "loss" in rec else "-"
        diff = f"{rec['loss_rel_diff']:.1e}" if "loss_rel_diff" in rec else "-"
        printer(f"{name:<10}{time_s:>11}{ratio:>11}{rec.get('nfev', '-'):>9}{loss:>14}{diff:>11}  {', '.join(notes)}")


def _description() -> str:
    """The first paragraph of :func:`bench`'s docstring, as plain text."""
    paragraph = bench.__doc__.strip().split("\n\n")[0]
    return " ".join(paragraph.replace("``", "").split())


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="flowsim bench", description=_description(),
        epilog="methods: flowsim (integrate, 2 saves), saves (integrate, 201 saves), plain (a plain diffrax "
               "Tsit5 solve), gd (jitted gradient descent), scipy (solve_ivp RK45), torch (PyTorch gradient "
               "descent, float32), batch (integrate_batch over --batch initializations).  See docs/performance.md.")
    p.add_argument("--preset", choices=[*PRESETS, "width"], default=DEFAULT_PRESET,
                   help="the problem: paper and theory are flowsim integrate's presets of the same names (the same "
                        "problem for the same --seed); theory-large is theory-mode data and init at n=120, L=8, "
                        "d=963, m=m1=1024, flow time 1e4 (minutes, about 1 GB); width times the theory preset at "
                        "m = m1 = 1e2, 1e4, 1e6, 1e8 on the width-free engine, each in its own process, and "
                        "against the m-wide matrices at m = m1 = 16384 (minutes; takes --seed, --repeats, "
                        "--t-end, --json) (default paper)")
    fields = {f.name: f for f in dataclasses.fields(RunConfig)}
    for name in SIZES:
        p.add_argument(f"--{name}", type=int, help=f"{fields[name].metadata['help']} (default: the preset's)")
    p.add_argument("--t-end", type=float, help="flow time (default: the preset's, 300; theory-large 1e4)")
    p.add_argument("--rtol", type=float, default=1e-6,
                   help="relative tolerance of the flowsim, plain and scipy solves (default 1e-6)")
    p.add_argument("--atol", type=float, default=1e-8,
                   help="absolute tolerance of the flowsim, plain and scipy solves (default 1e-8)")
    p.add_argument("--engine", choices=ENGINE_CHOICES, default=None,
                   help="flowsim engine (default: the cheapest for the sizes by flowsim.models.cooccurrence.engines.engine_costs, "
                        "the Gram system included)")
    p.add_argument("--lr", type=float, default=DescentOptions.lr,
                   help=f"learning rate of the gd and torch rows (default {DescentOptions.lr:g})")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the data and the initialization, as flowsim integrate --seed (default 0)")
    p.add_argument("--repeats", type=int, default=3,
                   help="timed calls after the first (compiling) one; the best is reported (default 3)")
    p.add_argument("--batch", type=int, default=16, help="initializations in the batch row's solve (default 16)")
    p.add_argument("--only", default=None,
                   help=f"comma-separated subset of {','.join(METHODS)} (default: {','.join(DEFAULT_METHODS)}; "
                        f"{','.join(LARGE_METHODS)} for theory-large)")
    p.add_argument("--json", metavar="PATH", help="also write the records as JSON ('-' for stdout)")
    return p


def main(argv=None) -> int:
    p = build_parser()
    ns = p.parse_args(argv)
    if ns.preset == "width":
        from .widthbench import width_bench

        out = width_bench(t_end=ns.t_end or 1e4, repeats=ns.repeats, seed=ns.seed,
                          printer=(lambda s: print(s, file=sys.stderr)) if ns.json == "-" else print)
        _write_json(out, ns.json)
        return 0
    default = LARGE_METHODS if ns.preset == "theory-large" else DEFAULT_METHODS
    methods = tuple(ns.only.split(",")) if ns.only else default
    unknown = set(methods) - set(METHODS)
    if unknown:
        p.error(f"unknown methods {sorted(unknown)}; choose from {', '.join(METHODS)}")
    sizes = {k: getattr(ns, k) for k in SIZES if getattr(ns, k) is not None}
    to_stdout = ns.json == "-"
    try:
        out = bench(ns.preset, t_end=ns.t_end, rtol=ns.rtol, atol=ns.atol, engine=ns.engine, lr=ns.lr,
                    seed=ns.seed, repeats=ns.repeats, batch=ns.batch, methods=methods,
                    printer=(lambda s: print(s, file=sys.stderr)) if to_stdout else print, **sizes)
    except UsageError as e:
        p.exit(exit_status(e), f"flowsim bench: error: {' '.join(str(e).split())}\n")
    _write_json(out, ns.json)
    return 0


def _write_json(out: dict, where: str | None) -> None:
    if where == "-":
        print(json.dumps(out, indent=2, default=str))
    elif where:
        with open(where, "w") as f:
            f.write(json.dumps(out, indent=2, default=str) + "\n")


if __name__ == "__main__":
    sys.exit(main())
