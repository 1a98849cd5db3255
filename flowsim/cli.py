"""The ``flowsim`` command line; each subcommand is a thin shell over the Python API (docs/cli.md)."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import signal
import sys
import tempfile
import warnings
from pathlib import Path

from . import __version__
from .config import PRESETS, RunConfig, check_method_keys
from .core.errors import DamagedResult, DirectoryInUse, FlowFailure, ResourceError, UsageError
from .core.names import DEFAULT_FORMATS, DEFAULT_PRESET, DPI, DPI_RANGE, FORMATS, PLOT_KINDS, SWEEP_PLOT_KINDS
from .sweepdir import INDEX_JSON, is_sweep
from . import model_cli

#: The exit status of each outcome (docs/cli.md, "Exit status"): an error exits with the status of
#: the first of its classes (its method resolution order) listed here.  Bad input of every kind
#: exits 2, with nothing written.
EXIT_STATUS: dict[type[BaseException], int] = {
    UsageError: 2,  # an invalid value, option, file or directory
    DirectoryInUse: 2,  # another process is writing the directory (its lock names it)
    DamagedResult: 2,  # a result or sweep directory damaged, edited, or not belonging together
    ResourceError: 2,  # a size that cannot fit in memory, refused before anything is allocated
    FlowFailure: 1,  # the solver failed; the files say how far it got
    OSError: 74,  # sysexits' EX_IOERR: files could not be written (a full disk); a run keeps its last checkpoint
    KeyboardInterrupt: 128 + signal.SIGINT,  # Ctrl-C, 130 (SIGTERM stops a run as Ctrl-C does: 128 + 15)
}
EXIT_FAILED, EXIT_USAGE = EXIT_STATUS[FlowFailure], EXIT_STATUS[UsageError]
PROG = "flowsim integrate"


def exit_status(e: BaseException) -> int:
    """The exit status of the error ``e`` (:data:`EXIT_STATUS`)."""
    return next(EXIT_STATUS[c] for c in type(e).__mro__ if c in EXIT_STATUS)


def _exit(e: BaseException, prog: str, advice: str = "") -> int:
    """Say ``e`` in one line on stderr, ``advice`` after it, and return its exit status."""
    if isinstance(e, OSError):
        said = f"error: cannot write {e.filename or 'the output'}: {e.strerror or _one_line(e)}"
    elif isinstance(e, KeyboardInterrupt):
        said = _one_line(e) or "interrupted"
    else:
        said = f"error: {_one_line(e)}"
    print(f"{prog}: {said}{advice}", file=sys.stderr)
    return exit_status(e)


class _Parser(argparse.ArgumentParser):
    """Errors are one line on stderr (naming the option), exit status 2."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def flag(key: str) -> str:
    """The command-line flag of a :class:`RunConfig` field: ``t_end`` -> ``--t-end``."""
    return "--" + key.replace("_", "-")


def _presets_help() -> str:
    lines = [f"  {name:7} {', '.join(f'{k}={v}' for k, v in values.items()) or 'the defaults'}"
             for name, values in PRESETS.items()]
    return "\n".join(lines)


INTEGRATE_EPILOG = f"""\
presets (the values they set over the defaults):
{_presets_help()}
  paper is the paper's experiment (spec 5): sampled data n=60 as 30/10/10/10, L=5, d=64, m=128,
  m1=256, Kaiming init, t_end=300; it is used when no preset is named.  theory is theory-mode
  data (Assumption 2.3) with the theory init (Condition 1) at a small size: with n=12, L=5 the
  training set has 32 irrelevant slots, each needing its own word, so d >= 3 + 32 = 35.

Precedence: flags > --config file > preset.  The config file is TOML with the keys of the
flags written with underscores (t_end, data_mode, ...) and an optional `preset = "theory"`.

exit status: 0 complete, 1 solver failure (files written, status failed), 2 bad input (nothing
written; also a directory in use by another run, or a damaged or edited one), 74 the files could
not be written, e.g. a full disk (the last checkpoint is kept; free space and finish with
--resume DIR), 130 stopped by Ctrl-C, 143 by SIGTERM (files written, status interrupted;
finish with --resume DIR).
"""


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="flowsim", allow_abbrev=False,
                     description="Exact gradient-flow simulation of a one-layer transformer "
                                 "(Yang, Kailkhura, Wang, Liang, NeurIPS 2024).")
    parser.add_argument("--version", action="version", version=f"flowsim {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_integrate(commands)
    _add_plot(commands)
    _add_report(commands)
    _add_sweep(commands)
    # Listed here for --help; main() hands its arguments to flowsim.bench's own parser.
    commands.add_parser("bench", add_help=False, help="time flowsim against gradient descent, SciPy and PyTorch")
    return parser


def _add_integrate(commands) -> None:
    p = commands.add_parser(
        "integrate", allow_abbrev=False, help="integrate one run into a result directory",
        description="Integrate the gradient flow for one configuration and write a result "
                    "directory (run.json, trajectory.npz, state.npz; see docs/results.md).",
        epilog=INTEGRATE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=list(PRESETS), help=f"starting configuration (default {DEFAULT_PRESET})")
    p.add_argument("--config", metavar="FILE", help="TOML file with configuration keys")
    values = p.add_argument_group("configuration (defaults: the paper preset)")
    for f in dataclasses.fields(RunConfig):
        allowed = f.metadata["check"].allowed
        default = f.metadata["default_text"] or f.default
        values.add_argument(flag(f.name), dest=f.name, metavar=f.name.upper(),
                            help=f"{f.metadata['help']}; {allowed} (default {default})")
    output = p.add_argument_group("output")
    output.add_argument("--out", metavar="DIR", help="result directory (default: a new runs/YYYYmmdd-HHMMSS)")
    output.add_argument("--force", action="store_true", help="write into --out even if it holds files")
    output.add_argument("--quiet", action="store_true", help="no progress bar and no summary")
    output.add_argument("--resume", metavar="DIR",
                        help="finish the interrupted run in DIR (takes no configuration options)")
    model_cli.add_integrate_options(p)
    p.set_defaults(handler=integrate)


def _add_plot(commands) -> None:
    p = commands.add_parser(
        "plot", allow_abbrev=False, help="draw Figure 1 and the other observables of result directories, "
                                         "or the claims-against-width figures of a sweep",
        description="Plot one or several result directories together: scores is Figure 1(a) with the change "
                    "since t = 0 under it, loss is Figure 1(b); G (the MLP output per word), balance (Lemma "
                    "4.5's ratios, drawn in Phase 2), C (Theorem 3.3's coefficients) and conservation (drift "
                    "of the conserved matrices).  Time is on a log axis; Phase 1 is shaded up to each run's "
                    "T1, drawn dashed.  Up to 4 runs are told apart by line style, more by colour (one panel "
                    "per curve, a colour bar, and scores as two figures, scores and scores_change).  Given a "
                    "sweep directory (flowsim sweep --out) instead, draw against one of its grid keys (--x; "
                    "default the width m): claims (the fraction of seeds on which each claim holds, as "
                    "claims_phase1 and claims_phase2), T1 (T1 m with a fitted power law, T1 m ~ x^alpha against "
                    "the grid key x; its table is written as T1_scaling.md and printed), loss (final training and test loss "
                    "with 1/m) and C_ratio (Theorem 3.3's irrelevant over target coefficients); other grid keys "
                    "but seed make one line per value (docs/sweeps.md).")
    p.add_argument("dirs", nargs="+", metavar="DIR",
                   help="result directories (flowsim integrate --out), any number; or one sweep directory")
    p.add_argument("--out", metavar="DIR", help="where to write the figures (default: DIR/plots of the first DIR)")
    p.add_argument("--kinds", nargs="+", choices=dict.fromkeys(PLOT_KINDS + SWEEP_PLOT_KINDS), metavar="KIND",
                   help=f"which figures, among {', '.join(PLOT_KINDS)} for result directories, "
                        f"{', '.join(SWEEP_PLOT_KINDS)} for a sweep directory (default: all)")
    p.add_argument("--linear-time", action="store_true",
                   help="linear time axis, as the paper draws it (default: log, where Phase 1 is visible)")
    p.add_argument("--labels", nargs="+", metavar="LABEL",
                   help="one legend label per DIR (default: the method, and the settings in which the runs differ)")
    p.add_argument("--formats", nargs="+", choices=FORMATS, default=list(DEFAULT_FORMATS), metavar="FMT",
                   help=f"file formats among {', '.join(FORMATS)} (default: {' '.join(DEFAULT_FORMATS)})")
    p.add_argument("--dpi", type=int, default=DPI,
                   help=f"resolution of raster formats, an integer in [{DPI_RANGE[0]}, {DPI_RANGE[1]}] (default {DPI})")
    p.add_argument("--x", metavar="KEY", help="a sweep directory's grid key on the x axis (default m if the grid has "
                                              "it, else its first key but seed): e.g. c0, n; numbers on a log axis, "
                                              "anything else as categories")
    p.set_defaults(handler=plot)


def _add_report(commands) -> None:
    p = commands.add_parser(
        "report", allow_abbrev=False, help="check every claim of the paper on a result or sweep directory",
        description="Check each claim of the paper (Theorems 3.1-3.3, Lemmas 4.2-4.7) on the trajectory "
                    "in DIR: print whether the run meets the theory's assumptions, then one row per claim "
                    "with what was measured, a verdict (holds, does not hold, not applicable) and its margin "
                    "to the threshold, and write report.json.  On a sweep directory (flowsim sweep --out), "
                    "check every complete point and print, per claim, the fraction of points where it "
                    "holds among those where it applies, one column per group of points (--by); write "
                    "sweep_report.json.")
    p.add_argument("dir", metavar="DIR", help="a result directory (flowsim integrate --out) or a sweep directory")
    p.add_argument("--out", metavar="DIR", help="where to write report.json or sweep_report.json (default: DIR)")
    p.add_argument("--by", nargs="*", metavar="KEY",
                   help="sweep only: the grid keys whose values make the groups (default: every grid key "
                        "but seed; none: all points together)")
    p.set_defaults(handler=report)


def _add_sweep(commands) -> None:
    p = commands.add_parser(
        "sweep", allow_abbrev=False, help="integrate a grid of configurations (seeds, widths, ...)",
        description="Integrate every point of a sweep file: a TOML file with an optional preset, base "
                    "configuration keys, and a [grid] table of lists (e.g. seed = [0, 1, 2], m = [16, 32]). "
                    "Points that differ only in seed, sigma0 or sigma1 are integrated together in one "
                    "batched solve, split over all JAX devices; each point gets the usual result directory "
                    "under DIR/points/, and DIR/sweep.json and DIR/sweep.npz index them all.  Running it "
                    "again on the same DIR skips the points already complete (docs/sweeps.md).  A file "
                    "with a [model] table sweeps a model of flowsim.models: its flow points that differ "
                    "only in seed are batched likewise (--batch), each point a model result directory "
                    "(docs/models.md).",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", metavar="FILE", required=True, help="the sweep file (TOML)")
    p.add_argument("--preset", choices=list(PRESETS), help=f"preset under the file's keys (default: the file's, else {DEFAULT_PRESET})")
    p.add_argument("--out", metavar="DIR", help="sweep directory (default: a new runs/sweep-YYYYmmdd-HHMMSS)")
    p.add_argument("--force", action="store_true", help="write into --out even if it holds something else")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no summary")
    p.add_argument("--batch", type=int, metavar="N",
                   help="points per batched solve (default: 1 on CPU, where batching measured slower; "
                        "the whole group on accelerators)")
    p.add_argument("--distributed", action="store_true",
                   help="one of several processes sharing the sweep: call jax.distributed.initialize() first "
                        "(multi-host; see docs/sweeps.md)")
    p.add_argument("--coordinator", metavar="HOST:PORT",
                   help="with --distributed: address of process 0 (default: $JAX_COORDINATOR_ADDRESS or the "
                        "cluster manager's, e.g. SLURM)")
    p.add_argument("--num-processes", type=int, metavar="P",
                   help="with --distributed: number of processes (default: the cluster manager's)")
    p.add_argument("--process-id", type=int, metavar="I",
                   help="with --distributed: this process's number, 0..P-1 (default: the cluster manager's)")
    p.set_defaults(handler=sweep)


def sweep(args) -> int:
    """``flowsim sweep``: every point of a grid, batched and sharded, into one sweep directory."""
    from .sweeps import Sweep

    if model_cli.names_model(args.config):
        return model_cli.sweep(args)
    plan = Sweep.from_toml(args.config, preset=args.preset)
    plan.points()
    processes = _processes(args)
    from .sweeps import sweep as run_sweep

    if args.distributed:
        import jax

        jax.distributed.initialize(**processes)
    out = args.out
    try:
        with _claimed(out, "sweep-") as out:
            index = run_sweep(plan, out, batch=args.batch, progress=not args.quiet, force=args.force)
    except (OSError, KeyboardInterrupt) as e:
        return _exit(e, "flowsim sweep", f"; the finished points are in {out} (run again to continue)")
    done = [p for p in index["points"] if p["status"] == "complete"]
    if not args.quiet:
        print(f"{len(done)} of {len(index['points'])} points complete; index: {out}/sweep.json, {out}/sweep.npz")
    return 0 if len(done) == len(index["points"]) else EXIT_FAILED


def _processes(args) -> dict:
    """The arguments of ``jax.distributed.initialize`` given on the command line (the rest it
    finds itself: $JAX_COORDINATOR_ADDRESS, or a cluster manager such as SLURM)."""
    given = {"coordinator_address": args.coordinator, "num_processes": args.num_processes,
             "process_id": args.process_id}
    given = {k: v for k, v in given.items() if v is not None}
    if given and not args.distributed:
        raise UsageError("--coordinator, --num-processes and --process-id need --distributed")
    if given.get("num_processes", 1) < 1:
        raise UsageError(f"--num-processes: must be an integer >= 1, got {args.num_processes}")
    if "process_id" in given and not 0 <= args.process_id < given.get("num_processes", args.process_id + 1):
        raise UsageError(f"--process-id: must be an integer in [0, P - 1] for --num-processes P, got {args.process_id}")
    return given


def _load_runs(dirs) -> list:
    """The result directories ``dirs`` read back, each with a saved trajectory (else a UsageError)."""
    from .results import load

    runs = [load(d) for d in dirs]
    empty = [r for r in runs if r.result is None]
    if empty:
        raise UsageError(f"{empty[0].path} holds no saved trajectory yet (status {empty[0].status})")
    return runs


def plot(args) -> int:
    """``flowsim plot DIR...``: the figures of one or several runs, overlaid, or of one sweep."""
    if not DPI_RANGE[0] <= args.dpi <= DPI_RANGE[1]:
        raise UsageError(f"--dpi: must be an integer in [{DPI_RANGE[0]}, {DPI_RANGE[1]}], got {args.dpi}")
    if any(model_cli.is_model_dir(d) for d in args.dirs):
        return model_cli.plot(args)
    if any(is_sweep(d) for d in args.dirs):
        return _plot_sweep(args)
    if args.x is not None:
        raise UsageError("--x: names a grid key of a sweep directory; result directories are drawn against time")
    if args.labels is not None and len(args.labels) != len(args.dirs):
        raise UsageError(f"--labels: give one label per DIR ({len(args.dirs)}), got {len(args.labels)}")
    wrong = [k for k in args.kinds or () if k not in PLOT_KINDS]
    if wrong:
        raise UsageError(f"--kinds: {wrong[0]} is a sweep figure; result directories draw {', '.join(PLOT_KINDS)}")
    runs = _load_runs(args.dirs)
    from .plotting import plot as draw

    out = args.out or _writable(Path(args.dirs[0]) / "plots", "flowsim plot", "the figures")
    written = draw([r.result for r in runs], out, kinds=args.kinds or PLOT_KINDS, logx=not args.linear_time,
                   labels=args.labels or run_labels(runs), formats=args.formats, dpi=args.dpi)
    for path in written:
        print(path)
    return 0


def _plot_sweep(args) -> int:
    """``flowsim plot SWEEP_DIR``: the claims-against-width figures; prints their paths, then the T1 table."""
    sweep_dir = args.dirs[0]
    wrong = [k for k in args.kinds or () if k not in SWEEP_PLOT_KINDS]
    problem = (f"a sweep directory is plotted on its own, got {len(args.dirs)} directories" if len(args.dirs) > 1
               else "--labels: labels result directories; a sweep's figures name their series" if args.labels
               else "--linear-time: the sweep figures have no time axis" if args.linear_time
               else f"--kinds: {wrong[0]} is a figure of result directories; a sweep directory draws "
                    f"{', '.join(SWEEP_PLOT_KINDS)}" if wrong else None)
    if problem:
        raise UsageError(problem)
    from .atlas import TABLE, plot_sweep

    out = args.out or f"{sweep_dir}/plots"
    written = plot_sweep(sweep_dir, out, kinds=args.kinds or SWEEP_PLOT_KINDS, formats=args.formats, dpi=args.dpi, x=args.x)
    for path in written:
        print(path)
    tables = [p for p in written if p.name == TABLE]
    if tables:
        print("\n" + tables[0].read_text(), end="")
    return 0


#: Settings that a run's method label (flowsim.plotting.label) already names, or that follow from it.
_NAMED_BY_METHOD = ("method", "solver", "lr", "steps")


def run_labels(runs) -> list[str]:
    """Legend labels for result directories: the method (``flow (tsit5)``, ``GD lr=0.01``) and the
    configuration values in which the runs differ (``seed=3``); the directory name where that
    leaves two runs alike."""
    from .plotting import label

    methods = [label(r.result) for r in runs]
    configs = [r.config.to_dict() for r in runs]
    differ = [k for k in configs[0] if k not in _NAMED_BY_METHOD and len({repr(c[k]) for c in configs}) > 1]
    shown = methods if len(set(methods)) > 1 else [""] * len(runs)
    labels = [", ".join(filter(None, [m, *(f"{k}={c[k]}" for k in differ)])) for m, c in zip(shown, configs)]
    if len(set(labels)) < len(labels) or not all(labels):
        return [f"{m} ({r.path.name})" if len(runs) > 1 else m for m, r in zip(methods, runs)]
    return labels


def report(args) -> int:
    """``flowsim report DIR``: the claim-by-claim table, printed and written as report.json; on a
    sweep directory the hold rates per claim and group, written as sweep_report.json."""
    if model_cli.is_model_dir(args.dir):
        return model_cli.report(args)
    if is_sweep(args.dir):
        return _report_sweep(args)
    if args.by is not None:
        raise UsageError(f"--by: groups the points of a sweep, and {args.dir} is not a sweep directory "
                         f"(no {INDEX_JSON})")
    (run,) = _load_runs([args.dir])
    from .models.cooccurrence.claims import RunContext
    from .reporting import report as check

    check(run.result, args.out or _writable(Path(args.dir), "flowsim report", "report.json"),
          context=RunContext.from_config(run.config))
    return 0


def _report_sweep(args) -> int:
    from .reporting import SWEEP_REPORT, format_sweep_table, sweep_report

    table = sweep_report(args.dir, by=args.by)
    print(format_sweep_table(table))
    table.write(args.out or _writable(Path(args.dir), "flowsim report", SWEEP_REPORT))
    return 0


def _writable(default: Path, prog: str, what: str) -> Path:
    """``default`` if files can be created in it, else a new temporary directory, said in one
    line on stderr: a result directory on a read-only file system still gives its output."""
    try:
        default.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=default):
            pass
        return default
    except OSError as e:
        fallback = Path(tempfile.mkdtemp(prefix=f"flowsim-{prog.split()[-1]}-"))
        print(f"{prog}: {default} is not writable ({e.strerror}); writing {what} to {fallback} instead", file=sys.stderr)
        return fallback


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    """flowsim's own warnings (a skipped compilation cache) as one line on stderr; others as Python writes them."""
    if category.__module__.startswith("flowsim"):
        return f"flowsim: warning: {message}\n"
    return _python_warning(message, category, filename, lineno, line)


_python_warning = warnings.formatwarning


def main(argv=None) -> int:
    warnings.formatwarning = _one_line_warning
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"]:  # its own parser, so that its options (and --help) reach it
        from .bench import main as bench

        return bench(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.error("choose a command: integrate, plot, report, sweep or bench (see flowsim --help)")
    try:
        return args.handler(args)
    except tuple(EXIT_STATUS) as e:
        return _exit(e, f"flowsim {args.command}")


def integrate(args) -> int:
    """``flowsim integrate``: run (or resume) one configuration, report, map the outcome to the exit status."""
    if model_cli.wants_integrate(args):
        return model_cli.integrate(args)
    config = _configuration(args)
    from . import runner  # imports JAX: only once the input is known to be well formed

    return execute(args, config, runner.run, runner.resume, summary)


def execute(args, config, run, resume, summary) -> int:
    """Run ``config`` (``run(config, out, force=, progress=)``) or, for ``None``, resume the
    directory of ``--resume`` (``resume(out, progress=)``) into ``--out`` or a claimed
    ``runs/<timestamp>``; print ``summary(run)``; map an interrupt, a solver failure or a write
    error to its exit status with the advice for what is left on disk.  The transformer's runs
    and any model's (flowsim.model_cli) go through here."""
    out, received = args.resume or args.out, []
    try:
        with _claimed(out) as out, _sigterm_interrupts(received):
            if config is None:
                done = resume(out, progress=not args.quiet)
            else:
                done = run(config, out, force=args.force, progress=not args.quiet)
    except KeyboardInterrupt as e:
        status = _exit(e, PROG)
        return 128 + received[0] if received else status
    except FlowFailure as e:
        return _exit(e, PROG, f"; what was computed is in {out} (status failed)")
    except OSError as e:
        resumable = (Path(out) / "run.json").exists()
        return _exit(e, PROG, f"; {out} keeps its last checkpoint: free space, then finish with "
                              f"flowsim integrate --resume {out}" if resumable else "; nothing was saved")
    if not args.quiet:
        print(summary(done))
    return 0


@contextlib.contextmanager
def _claimed(out, prefix: str = ""):
    """``out``, or a new directory ``runs/<prefix><timestamp>`` claimed for this command (so that
    commands started together never share one), removed again if it is left empty (a refusal)."""
    if out is not None:
        yield Path(out)
        return
    from .runner import RUNS, default_out

    made_root = not RUNS.exists()
    out = default_out(RUNS, prefix)
    try:
        yield out
    finally:
        with contextlib.suppress(OSError):  # rmdir removes only an empty directory
            out.rmdir()
            if made_root:
                RUNS.rmdir()


def _configuration(args) -> RunConfig | None:
    """The run's configuration from --preset, --config and the flags (``None`` with --resume)."""
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(RunConfig)
             if getattr(args, f.name) is not None}
    if args.resume is not None:
        clash = [flag(k) for k in given] + [o for o, v in (("--preset", args.preset), ("--config", args.config),
                                                           ("--out", args.out), ("--force", args.force)) if v]
        if clash:
            raise UsageError(f"--resume cannot be combined with {clash[0]}: the configuration is in "
                              f"{args.resume}/run.json")
        return None
    if args.config is not None:
        config = RunConfig.from_toml(args.config, preset=args.preset).merge(given, label=flag)
    else:
        config = RunConfig.preset(args.preset or DEFAULT_PRESET).merge(given, label=flag)
    check_method_keys(config.method, given, label=flag)
    return config


def summary(run) -> str:
    """A few lines on a finished run: the end of Phase 1 (Definition E.2's T1) and the first time
    every sample is correct, final losses, solver work, wall time, where the files are."""
    r = run.result
    when = lambda name: f"not reached by t_end={run.config.t_end:g}" if r.events[name] is None else f"{r.events[name]:.6g}"
    s = r.stats
    if run.config.method == "gd":
        work = f"gradient descent: {s['steps']} steps at lr {run.config.lr:g}"
    else:
        nfev = "" if s["nfev"] is None else f", {s['nfev']} evaluations"
        work = f"solver steps:    {s['steps']} ({s['rejected_steps']} rejected){nfev}"
    return "\n".join([
        f"T1 (phase1_end): {when('phase1_end')} (Definition E.2)",
        f"all correct:     {when('all_correct')} (every training sample classified correctly)",
        f"final loss:      {r.observables['loss'][-1]:.4e} (test {r.observables['test_loss'][-1]:.4e})",
        work,
        f"wall time:       {run.meta['wall_time_s']:.1f} s",
        f"files:           {run.path}/ (run.json, trajectory.npz, state.npz)",
    ])


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split("\n")).strip()


@contextlib.contextmanager
def _sigterm_interrupts(received: list):
    """Make SIGTERM stop a run the way Ctrl-C does (KeyboardInterrupt), recording it in
    ``received`` for the exit status."""

    def stop(signum, frame):
        received.append(signum)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
