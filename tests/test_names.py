"""One source for every name and check (flowsim.core.names, flowsim.core.checks), the errors and their exit
statuses (flowsim.core.errors, flowsim.cli.EXIT_STATUS), and the one reader of sweep directories."""

import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import _synthetic as syn
import flowsim
from flowsim.core import checks, lock, names
from flowsim import cli
from flowsim.core.errors import DamagedResult, DirectoryInUse, FlowFailure, ResourceError, UsageError
from flowsim.core.options import DescentOptions, FlowOptions
from flowsim.sweepdir import SweepDir, read_index


def test_names_checks_errors_and_the_command_line_import_without_jax():
    """With JAX, equinox, diffrax and matplotlib made unimportable, the modules that hold the names,
    checks and errors import, and the command line builds its parser and checks a configuration;
    files.py reads without config.py (no import circle between them)."""
    blocked = ("jax", "jaxlib", "equinox", "diffrax", "matplotlib")
    code = (f"import sys\nfor name in {blocked!r}: sys.modules[name] = None\n"
            "import flowsim.core.files\nassert 'flowsim.config' not in sys.modules, 'files imports config'\n"
            "import flowsim.core.names, flowsim.core.checks, flowsim.core.errors, flowsim.core.options, flowsim.config, flowsim.sweepdir\n"
            "import flowsim.cli\nflowsim.cli.build_parser().format_help()\n"
            "flowsim.RunConfig.preset('theory').merge({'engine': 'gram', 'm': '1e8'})\nprint('ok')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout == "ok\n", done.stderr


def _actions(parser) -> dict:
    """``{(command, dest): action}`` of flowsim's parser and its subcommands."""
    import argparse

    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return {(name, a.dest): a for name, sub in commands.choices.items() for a in sub._actions}


def test_the_command_lines_choices_are_the_names():
    """Every list the command line offers is flowsim.core.names' list, in its order: argparse's choices,
    and the "one of ..." of the configuration flags (checked by RunConfig, no argparse choices)."""
    from flowsim import bench

    actions = _actions(cli.build_parser())
    assert list(actions["integrate", "preset"].choices) == list(actions["sweep", "preset"].choices) == \
        list(names.PRESETS)
    assert list(actions["plot", "kinds"].choices) == list(dict.fromkeys(names.PLOT_KINDS + names.SWEEP_PLOT_KINDS))
    assert list(actions["plot", "formats"].choices) == list(names.FORMATS)
    assert actions["plot", "formats"].default == list(names.DEFAULT_FORMATS) and actions["plot", "dpi"].default == names.DPI
    listed = {"data_mode": names.DATA_MODES, "embedding": names.EMBEDDINGS, "init": names.INITS,
              "start": names.STARTS, "engine": names.ENGINE_CHOICES, "solver": names.SOLVERS, "grid": names.GRIDS,
              "precision": names.PRECISIONS, "method": names.METHODS}
    for dest, values in listed.items():
        assert f"; one of {', '.join(map(str, values))} (default " in actions["integrate", dest].help, dest
        for value in values:  # each accepted as the command line gives it, as text
            assert getattr(flowsim.RunConfig().merge({dest: str(value)}), dest) == value
    bench_actions = {a.dest: a for a in bench.build_parser()._actions}
    assert list(bench_actions["engine"].choices) == list(names.ENGINE_CHOICES)
    assert list(bench_actions["preset"].choices)[:len(names.PRESETS)] == list(names.PRESETS)
    assert bench_actions["preset"].default == names.DEFAULT_PRESET == "paper"


def test_the_library_tables_hold_exactly_the_names():
    from flowsim import atlas, plotting
    from flowsim.core import controller
    from flowsim.models.cooccurrence import engines

    assert tuple(engines.ENGINES) == names.ENGINES and tuple(controller.SOLVER_CLASSES) == names.SOLVERS
    assert tuple(plotting.KINDS) == names.PLOT_KINDS and tuple(atlas.KINDS) == names.SWEEP_PLOT_KINDS
    assert tuple(flowsim.PRESETS) == names.PRESETS


def test_a_table_holds_exactly_the_names_in_their_order():
    entries = {"b": 2, "a": 1}
    assert list(names.table(("a", "b"), entries, "t").items()) == [("a", 1), ("b", 2)]
    with pytest.raises(TypeError, match=r"^t must have one entry per name .*; missing \['c'\], not named there \[\]$"):
        names.table(("a", "b", "c"), entries, "t")
    with pytest.raises(TypeError, match=r"missing \[\], not named there \['b'\]$"):
        names.table(("a",), entries, "t")


# --- One set of checks --------------------------------------------------------------------------


@pytest.mark.parametrize("value, expected", [(5, 5), (5.0, 5), (1e8, 10**8), (np.int64(7), 7), (np.float32(3.0), 3),
                                             (np.array(9), 9)])
def test_an_integer_is_any_integral_number(value, expected):
    got = checks.integer(1)(value, "n")
    assert got == expected and type(got) is int


@pytest.mark.parametrize("value", [0, -3, True, 2.5, "5", float("inf"), float("nan"), None, [5], 2**70])
def test_anything_else_is_refused_as_an_integer_in_one_line_naming_it(value):
    with pytest.raises(ValueError) as e:
        checks.integer(1, 10**12)(value, "m")
    assert str(e.value) == f"m must be an integer in [1, 1000000000000], got {flowsim.core.messages.shown(value)}"


def test_text_is_read_on_the_command_line_only():
    n, positive, precision = checks.integer(1), checks.POSITIVE, checks.one_of((64, 32))
    assert n.text(" 1e8 ") == 10**8 and positive.text("2.5") == 2.5 and precision.text("32") == 32
    for check, text in ((n, "5"), (positive, "5"), (precision, "64")):
        with pytest.raises(ValueError, match=f"must be .*, got '{text}'$"):
            check(text)
    for check, text in ((n, "abc"), (n, "2.5"), (n, "9" * 5000), (positive, "soon"), (positive, "nan"),
                        (precision, "16")):
        with pytest.raises(ValueError, match="^must be "):
            check.text(text)
    assert precision(64.0) == 64 and type(precision(64.0)) is int
    with pytest.raises(ValueError, match=r"^flag must be one of 1, 2, got True$"):
        checks.one_of((1, 2))(True, "flag")
    assert checks.PROBABILITY(0.5) == 0.5
    for value in (0, 1, 1.5, float("nan"), "0.5"):
        with pytest.raises(ValueError, match=r"must be a number in \(0, 1\)"):
            checks.PROBABILITY(value)


@pytest.mark.parametrize("key, value", [
    ("saves", 201.0), ("saves", np.int64(11)), ("precision", 32.0), ("t_end", np.float32(2.5)), ("max_steps", 1e5),
    ("saves", 1), ("saves", 2.5), ("precision", True), ("solver", "euler"), ("t_end", float("inf")), ("lr", 0),
    ("steps", 0)])
def test_the_configuration_and_the_options_take_the_same_values(key, value):
    """One check for both: a value the options object takes, RunConfig takes as the same value; one
    it refuses, RunConfig refuses in the same words (after naming the key)."""
    make = DescentOptions.make if key in ("lr", "steps") else FlowOptions.make
    try:
        wanted = make({key: value}).flat()[key]
    except ValueError as e:
        with pytest.raises(UsageError) as refused:
            flowsim.RunConfig().merge({key: value})
        assert str(refused.value) == f"{key}: {str(e).removeprefix(key + ' ')}"
    else:
        got = getattr(flowsim.RunConfig().merge({key: value}), key)
        assert got == wanted and type(got) is type(wanted)


# --- Errors and exit statuses -------------------------------------------------------------------


def test_each_error_class_has_the_exit_status_docs_cli_md_gives_it():
    assert flowsim.ConfigError is flowsim.UsageError and issubclass(UsageError, ValueError)
    assert all(issubclass(c, UsageError) for c in (DirectoryInUse, DamagedResult, ResourceError))
    usage = [UsageError("x"), DirectoryInUse("x"), DamagedResult("x"), ResourceError("x")]
    assert [cli.exit_status(e) for e in usage] == [2, 2, 2, 2]
    assert cli.exit_status(FlowFailure("x", None)) == 1
    assert cli.exit_status(OSError(28, "No space left on device")) == cli.exit_status(PermissionError()) == 74
    assert cli.exit_status(KeyboardInterrupt()) == 130 == 128 + signal.SIGINT
    docs = (Path(__file__).parents[1] / "docs" / "cli.md").read_text()
    table = docs[docs.index("## Exit status"):]
    documented = {int(s) for s in re.findall(r"^\| (\d+) \|", table, re.M)}
    assert documented == {0, *cli.EXIT_STATUS.values(), 128 + signal.SIGTERM}


def _result_dir(path: Path) -> Path:
    syn.save_point(path, syn.ideal(), {})
    return path


def test_a_directory_in_use_is_refused_by_the_command_line_with_exit_2(tmp_path, capsys):
    run = _result_dir(tmp_path / "run")
    with lock.claim(run):
        with pytest.raises(DirectoryInUse):
            with lock.claim(run):
                pass
        assert cli.main(["integrate", "--resume", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("flowsim integrate: error: ") and err.count("\n") == 1 and "is in use by pid" in err


def test_a_damaged_result_and_a_missing_one_are_told_apart(tmp_path, capsys):
    run = _result_dir(tmp_path / "run")
    meta = json.loads((run / "run.json").read_text())
    meta["config"]["seed"] = 7  # edited after the run: its digest no longer matches
    (run / "run.json").write_text(json.dumps(meta))
    with pytest.raises(DamagedResult, match="the configuration differs"):
        flowsim.load(run)
    (tmp_path / "run2").mkdir()
    (tmp_path / "run2" / "run.json").write_text("{")
    with pytest.raises(DamagedResult, match="cannot read run.json"):
        flowsim.load(tmp_path / "run2")
    with pytest.raises(UsageError, match="is not a flowsim result directory") as missing:
        flowsim.load(tmp_path / "nothing")
    assert not isinstance(missing.value, DamagedResult)
    for target in (run, tmp_path / "nothing"):
        assert cli.main(["report", str(target)]) == 2
    assert capsys.readouterr().err.count("flowsim report: error: ") == 2


def test_a_sweep_plot_whose_out_cannot_be_written_exits_74(tmp_path, capsys):
    syn.write_sweep(tmp_path / "sweep", {"m": [64]}, lambda values: syn.ideal())
    (tmp_path / "file").write_text("x")
    assert cli.main(["plot", str(tmp_path / "sweep"), "--out", str(tmp_path / "file" / "plots")]) == 74
    err = capsys.readouterr().err
    assert err.startswith("flowsim plot: error: cannot write ") and err.count("\n") == 1


# --- The sweep directory reader -----------------------------------------------------------------


def test_a_sweep_directory_is_read_from_its_points_not_its_index(tmp_path):
    syn.write_sweep(tmp_path, {"seed": [0, 1, 2, 3]}, lambda values: None if values["seed"] == 1 else syn.ideal())
    (tmp_path / "points" / "seed=2" / "failure.txt").write_text("the batch raised")
    meta = json.loads((tmp_path / "points" / "seed=3" / "run.json").read_text())
    (tmp_path / "points" / "seed=3" / "run.json").write_text(json.dumps(meta | {"saves_done": 3}))
    sweep = SweepDir.read(tmp_path)
    assert sweep.grid == ("seed",) and sweep.definition["grid"] == {"seed": [0, 1, 2, 3]}
    assert [(p.name, p.status) for p in sweep.points] == [
        ("seed=0", "complete"), ("seed=1", "pending"), ("seed=2", "failed"), ("seed=3", "unreadable")]
    assert sweep.points[0].run.config.seed == 0 and [p.run for p in sweep.points[1:]] == [None] * 3


def test_a_missing_index_is_usage_and_a_damaged_one_is_damaged(tmp_path):
    with pytest.raises(UsageError, match="is not a flowsim sweep directory") as missing:
        SweepDir.read(tmp_path)
    assert not isinstance(missing.value, DamagedResult)
    for text in ("{", "[1, 2]", '{"points": []}', '{"definition": {"grid": {}}, "points": [{"name": "x"}]}'):
        (tmp_path / "sweep.json").write_text(text)
        with pytest.raises(DamagedResult, match="is not a flowsim sweep directory"):
            SweepDir.read(tmp_path)
    assert read_index(tmp_path) == json.loads(text)  # the index alone, as a sweep re-run reads it
