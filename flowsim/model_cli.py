"""The command line for a model of flowsim.models: ``flowsim integrate --model``, and report, plot and sweep on its result directories (docs/cli.md)."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from .config import MODEL_KEYS, RunConfig, check_method_keys, read_toml
from .core.errors import UsageError

if TYPE_CHECKING:  # runs and sweeps import JAX, which --help must not
    from . import model_runs as runs


def add_integrate_options(parser: argparse.ArgumentParser) -> None:
    """``flowsim integrate``'s options for a model (its seed and flow options are the flags it shares)."""
    group = parser.add_argument_group(
        "a model of flowsim.models or your own (docs/models.md); it takes --seed, --config, the solver and save "
        f"flags and gradient descent's ({', '.join('--' + k.replace('_', '-') for k in MODEL_KEYS[1:])}: --method gd "
        "--lr X runs its gradient descent, saved at flow times k lr), no other configuration flag")
    group.add_argument("--model", metavar="SPEC",
                       help="integrate this model instead of the paper's transformer: saxe, zfb or module:factory "
                            "(the module importable from the current directory)")
    group.add_argument("--model-option", dest="model_options", action="append", metavar="KEY=VALUE",
                       help="a keyword of the model's factory (its sizes), the value read as TOML (8, 0.1, [3.0, 2.0], "
                            "\"text\"; else text); repeatable; over the config file's [model] table")
    group.add_argument("--scheme", metavar="NAME", help="the model's initialization scheme (default: its first)")


def wants_integrate(args) -> bool:
    """Whether ``flowsim integrate``'s arguments are a model's run: --model (or its options), a
    config file with a [model] table, or --resume of a model's directory."""
    from . import model_runs as runs

    if args.model is not None or args.model_options or args.scheme is not None:
        return True
    if args.resume is not None:
        return runs.is_model_run(args.resume)
    return args.config is not None and names_model(args.config)


def is_model_dir(path) -> bool:
    """Whether ``path`` is a model's result directory or a model's sweep directory."""
    from . import model_runs as runs, model_sweeps as sweeps

    return runs.is_model_run(path) or sweeps.is_model_sweep(path)


def names_model(path) -> bool:
    """Whether the config or sweep file ``path`` has a [model] table (an unreadable one is left to
    the transformer's commands, which word the error)."""
    try:
        return isinstance(read_toml(path, "config file").get("model"), dict)
    except UsageError:
        return False


def _importable_here() -> None:
    """The current directory on ``sys.path``, as ``python -m`` puts it, for ``--model module:factory``."""
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())


def _configuration(args) -> runs.ModelConfig | None:
    from . import model_runs as runs

    from . import cli as shell

    transformer = [shell.flag(f.name) for f in dataclasses.fields(RunConfig)
                   if f.name not in MODEL_KEYS and getattr(args, f.name) is not None]
    transformer += ["--preset"] if args.preset else []
    if transformer:
        raise UsageError(f"{transformer[0]}: describes the paper's transformer, not a model's run; a model's sizes "
                          "are --model-option KEY=VALUE or the config file's [model] table")
    given = {k: getattr(args, k) for k in MODEL_KEYS if getattr(args, k) is not None}
    if args.resume is not None:
        clash = [shell.flag(k) for k in given] + [o for o, v in (
            ("--model", args.model), ("--model-option", args.model_options), ("--scheme", args.scheme),
            ("--config", args.config), ("--out", args.out), ("--force", args.force)) if v]
        if clash:
            raise UsageError(f"--resume cannot be combined with {clash[0]}: the configuration is in "
                              f"{args.resume}/run.json")
        return None
    parsed = RunConfig().merge(given, label=shell.flag)  # the flags' own errors name the flag
    check_method_keys(parsed.method, given, label=shell.flag)
    sizes = dict(runs.parse_option(o) for o in args.model_options or ())
    values = given | ({"scheme": args.scheme} if args.scheme is not None else {})
    if args.config is not None:
        return runs.ModelConfig.from_toml(args.config, args.model, sizes, values)
    if args.model is None:
        raise UsageError("--model-option and --scheme need --model SPEC (or a config file with a [model] table)")
    return runs.ModelConfig.make(args.model, sizes, values)


def integrate(args) -> int:
    """``flowsim integrate --model``: run (or resume) a model into a result directory; the exit
    status as for the transformer (docs/cli.md)."""
    from . import model_runs as runs

    from . import cli as shell

    _importable_here()
    return shell.execute(args, _configuration(args), runs.run, runs.resume, summary)


def summary(run: runs.ModelRun) -> str:
    """A few lines on a finished run: its model, events, loss, solver work, wall time, files."""
    r, meta = run.result, run.meta
    events = ", ".join(f"{k} at t = {v:.6g}" if v is not None else f"{k} not reached" for k, v in r.events.items())
    loss = r.observables["loss"]
    s = r.stats
    if run.config.options.get("method") == "gd":
        work = f"gradient descent: {s['steps']} steps at lr {run.config.options['lr']:g}"
    else:
        work = f"solver steps: {s['steps']} ({s['rejected_steps']} rejected)" + (
            "" if s["nfev"] is None else f", {s['nfev']} evaluations")
    return "\n".join([
        f"model:        {meta['model_name']} ({run.config.model}), seed {run.config.seed}, scheme {run.config.scheme}",
        f"events:       {events or 'none'} (t_end = {meta['t_end']:g})",
        f"loss:         {loss[0]:.4e} at t = 0 -> {loss[-1]:.4e}",
        work,
        f"wall time:    {meta['wall_time_s']:.1f} s",
        f"files:        {run.path}/ (run.json, trajectory.npz, state.npz)",
    ])


def _loaded(dirs) -> list[runs.ModelRun]:
    """The model runs in ``dirs`` (a model sweep's directory: its points that hold a trajectory)."""
    from . import model_runs as runs, model_sweeps as sweeps

    out = []
    for d in dirs:
        if sweeps.is_model_sweep(d):
            index = sweeps.read_index(d)
            out += [runs.load(Path(d) / p["path"]) for p in index.get("points", []) if p.get("status") == "complete"]
            continue
        if not runs.is_model_run(d):
            raise UsageError(f"{d} is not a model's result directory: a model's runs are plotted or reported "
                              "on their own, not with the transformer's")
        out.append(runs.load(d))
    empty = [r for r in out if r.result is None]
    if empty:
        raise UsageError(f"{empty[0].path} holds no saved trajectory yet (status {empty[0].status})")
    if not out:
        raise UsageError(f"{dirs[0]} holds no complete point yet")
    return out


def labels(loaded: list[runs.ModelRun]) -> list[str]:
    """Legend labels: the configuration values in which the runs differ (``seed=1``), else the
    directory names."""
    flat = [{"model": r.config.model, **r.config.sizes, "seed": r.config.seed, "scheme": r.config.scheme,
             **r.config.options} for r in loaded]
    differ = [k for k in flat[0] if len({repr(f.get(k)) for f in flat}) > 1]
    out = [", ".join(f"{k}={f.get(k)}" for k in differ) for f in flat]
    return out if all(out) and len(set(out)) == len(out) else [r.path.name for r in loaded]


def plot(args) -> int:
    """``flowsim plot DIR...`` on model runs (or one model sweep): every observable against time."""
    from . import cli as shell
    from . import model_plotting as plotting

    prog = "flowsim plot"
    if args.kinds:
        raise UsageError("--kinds: names the transformer's figures; a model's runs are drawn as every observable "
                         "against time")
    loaded = _loaded(args.dirs)
    if args.labels is not None and len(args.labels) != len(loaded):
        raise UsageError(f"--labels: give one label per run ({len(loaded)}), got {len(args.labels)}")
    names = sorted({r.meta["model_name"] for r in loaded})
    title = f"{', '.join(names)}: observables against training time"
    if len(loaded) == 1:
        config = loaded[0].config
        title += f"\n{config.model}, seed {config.seed}, scheme {config.scheme}"
        if config.options.get("method") == "gd":
            title += f", gradient descent at lr {config.options['lr']:g}"
    out = args.out or shell._writable(Path(args.dirs[0]) / "plots", prog, "the figures")
    written = plotting.plot([r.result for r in loaded], out, title=title, labels=args.labels or labels(loaded),
                            logx=not args.linear_time, formats=args.formats, dpi=args.dpi)
    for path in written:
        print(path)
    return 0


def report(args) -> int:
    """``flowsim report DIR`` on a model run: its model's claims judged, printed and written as
    report.json; on a model sweep, how many points each claim holds on."""
    from . import model_runs as runs

    from . import cli as shell
    from .reporting import format_table, write_report
    from .models.flow import check_claims

    prog = "flowsim report"
    _importable_here()
    if args.by is not None:
        raise UsageError("--by: groups a transformer sweep's points; a model's sweep reports every point together")
    loaded = _loaded([args.dir])
    model = loaded[0].config.build()
    if not model.claims():
        print(f"model {model.name!r} states no claims (flowsim.models.AbstractModel.claims)")
    if runs.is_model_run(args.dir):
        rows = check_claims(loaded[0].result, model)
        print(format_table(rows, loaded[0].result))
        write_report(rows, args.out or shell._writable(Path(args.dir), prog, "report.json"))
        return 0
    counts = {}
    for run in loaded:
        for row in check_claims(run.result, run.config.build()):
            counts.setdefault((row.id, row.reference), []).append(row.verdict == "holds")
    print(f"claims over the {len(loaded)} complete points of {args.dir}: points where each holds")
    for (cid, ref), held in counts.items():
        print(f"  {cid:32} {sum(held)}/{len(held)}  ({ref})")
    return 0


def sweep(args) -> int:
    """``flowsim sweep --config FILE`` whose file has a [model] table: every grid point a model run."""
    from . import model_sweeps as sweeps

    from . import cli as shell

    prog = "flowsim sweep"
    _importable_here()
    given = [o for o, v in (("--preset", args.preset), ("--distributed", args.distributed)) if v]
    if given:
        raise UsageError(f"{given[0]}: belongs to the transformer's sweeps; a model's sweep runs in this process, "
                         "its batches split over this process's devices")
    plan = sweeps.ModelSweep.from_toml(args.config)
    out = args.out
    try:
        with shell._claimed(out, "sweep-") as out:
            index = sweeps.sweep(plan, out, force=args.force, progress=not args.quiet, batch=args.batch)
    except (OSError, KeyboardInterrupt) as e:
        return shell._exit(e, prog, f"; the finished points are in {out} (run again to continue)")
    done = [p for p in index["points"] if p["status"] == "complete"]
    if not args.quiet:
        print(f"{len(done)} of {len(index['points'])} points complete; index: {out}/sweep.json; "
              f"flowsim plot {out} overlays them, flowsim report {out} counts their claims")
    return 0 if len(done) == len(index["points"]) else shell.EXIT_FAILED
