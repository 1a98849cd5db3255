"""The claim report: the rows of :func:`flowsim.models.cooccurrence.claims.check_claims` as tables and files, for one run and over a sweep.

Every name of :mod:`flowsim.models.cooccurrence.claims` (the claims, their registry and contract, the assumptions)
is importable from here too.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .models.cooccurrence import claims
from .models.cooccurrence.claims import *  # noqa: F403  every name of flowsim.models.cooccurrence.claims stays importable from flowsim.reporting
from .models.cooccurrence.claims import (ASSUMPTIONS, CLAIMS, FAILS, HOLDS, NA, NOT_REACHED, ORDER, Assumption, RunContext, Row,
                     assess, check_claims)
from .models.cooccurrence.claims.scaling import OrderVerdict, order_verdicts
from .models.cooccurrence.claims.base import plain
from .core.errors import UsageError
from .sweepdir import SweepDir

if TYPE_CHECKING:
    from .models.cooccurrence.flow import FlowResult

__all__ = [*claims.__all__, "SWEEP_REPORT", "SweepReport", "format_order_table", "format_sweep_table", "format_table",
           "markdown_table", "report", "sweep_report", "unfinished"]


# --- One run -------------------------------------------------------------------------------------


def _short(v) -> str:
    v = plain(v, 4)
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}={_short(x)}" for k, x in v.items()) + "}"
    return json.dumps(v)


def _margin(r: Row) -> str:
    return "" if math.isnan(r.margin) else f", margin {r.margin:+.3g}"


def _assumptions_met(assumptions: list[Assumption]) -> str:
    return "assumptions met: " + ", ".join(map(str, assumptions))


VERDICTS = (HOLDS, FAILS, ORDER, NA, NOT_REACHED)


def unfinished(result: FlowResult) -> str:
    """A first line for the report of a run that did not finish, else ``""``."""
    if result.status == "complete":
        return ""
    return (f"UNFINISHED RUN ({result.status}): it stopped at t = {result.t_reached:.4g} of t_end = "
            f"{result.options.t_end:.4g}; claims whose window it did not reach are marked \"{NOT_REACHED}\"")


def format_table(rows: list[Row], result: FlowResult | None = None) -> str:
    """The rows as a plain-text table: first (given the ``result``) whether the run is unfinished,
    then whether it meets the theory's assumptions, then per claim the verdict and margin,
    reference, claim, measured numbers, criterion (or why the claim is not decided here) and,
    where it does not hold, the assumptions it rests on.  Statements of order are "judged on
    a sweep": this run only measures their quantity."""
    seen = {a.name: a for r in rows for a in r.assumptions}
    head = unfinished(result) if result is not None else ""
    lines = [head] if head else []
    lines += ["the theory's assumptions, met by this run?"] if seen else []
    lines += [f"  {a.name}: {a.answer} -- {a.detail}" for a in seen.values()]
    for i, r in enumerate(rows, 1):
        measured = ", ".join(f"{k}={_short(v)}" for k, v in r.measured.items()) or "-"
        label = "why" if r.verdict in (NA, NOT_REACHED) else "statement" if r.verdict == ORDER else "criterion"
        lines.append(f"{i:>2}. [{r.verdict.upper()}{_margin(r)}] {r.reference}: {r.claim}  ({r.id}; {r.window})\n"
                     f"    measured: {measured}\n    {label}: {r.criterion}")
        if r.verdict == FAILS and r.assumptions:
            lines.append(f"    {_assumptions_met(r.assumptions)}")
    counts = {v: sum(r.verdict == v for r in rows) for v in VERDICTS}
    lines.append(", ".join(f"{n} {v}" for v, n in counts.items() if n or v in (HOLDS, FAILS)))
    return "\n".join(lines)


def markdown_table(rows: list[Row]) -> str:
    """The rows as a Markdown table (for the docs)."""
    out = ["| # | reference | claim | measured | margin | verdict |", "|---|---|---|---|---|---|"]
    for i, r in enumerate(rows, 1):
        measured = ", ".join(f"{k}={_short(v)}" for k, v in r.measured.items()) or "-"
        cells = (r.reference, r.claim, measured, "-" if math.isnan(r.margin) else f"{r.margin:+.3g}")
        out.append(f"| {i} | " + " | ".join(c.replace("|", "\\|") for c in cells) + f" | **{r.verdict}** |")
    return "\n".join(out)


def report(result: FlowResult, out_dir: str | Path | None = None, *, context: RunContext | None = None,
           echo: bool = True) -> list[Row]:
    """Check every claim (:func:`check_claims` with ``context``), print the table (``echo``) and,
    given ``out_dir``, write ``report.json`` there: a list of the rows as dicts (``id``,
    ``claim``, ``reference``, ``window``, ``verdict``, ``margin``, ``measured``, ``criterion``,
    ``assumptions``: a list of ``{name, met, why, detail}``)."""
    rows = check_claims(result, context)
    if echo:
        print(format_table(rows, result))
    if out_dir is not None:
        write_report(rows, out_dir)
    return rows


def write_report(rows: list[Row], out_dir: str | Path) -> Path:
    """``out_dir/report.json``: the rows as dicts (the claims of any model)."""
    path = Path(out_dir) / "report.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([plain(dataclasses.asdict(r), 4) for r in rows], indent=1) + "\n")
    return path


# --- Over a sweep --------------------------------------------------------------------------------

SWEEP_REPORT = "sweep_report.json"


@dataclasses.dataclass(frozen=True)
class SweepReport:
    """How often each claim holds over the points of a sweep, grouped by grid values: tables with
    one row per claim (paper order) and one column per group.

    ``holds[c, g]`` counts the points of group ``g`` on which claim ``claims[c]`` holds and
    ``applicable[c, g]`` those on which it holds or does not hold; :attr:`fraction` is their
    ratio, the heat map to draw.  ``met[a, g]`` counts the points of group ``g`` that meet
    assumption ``assumptions[a]``.  ``groups[g]`` are the values of the grid keys ``by`` that
    its points share (the keys ``pooled`` vary inside it), ``points[g]`` how many it has;
    ``skipped`` lists the points not checked (not complete) with their status.  ``orders`` are
    the statements of order judged across the sweep by fitted exponents
    (:func:`flowsim.models.cooccurrence.claims.scaling.order_verdicts`)."""

    by: tuple[str, ...]
    pooled: tuple[str, ...]
    groups: tuple[dict, ...]
    claims: tuple[str, ...]
    texts: tuple[str, ...]
    holds: np.ndarray
    applicable: np.ndarray
    points: np.ndarray
    assumptions: tuple[str, ...]
    met: np.ndarray
    skipped: tuple[str, ...]
    orders: tuple[OrderVerdict, ...] = ()

    @property
    def fraction(self) -> np.ndarray:
        """Points holding / points applicable; NaN where the claim applies to none."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.applicable > 0, self.holds / self.applicable, np.nan)

    @property
    def labels(self) -> list[str]:
        """One label per group, e.g. ``m=16``."""
        return [", ".join(f"{k}={v}" for k, v in g.items()) or "all points" for g in self.groups]

    def to_dict(self) -> dict:
        """Plain lists and dicts, for JSON (a fraction of no applicable point is ``None``)."""
        fraction = [[None if math.isnan(x) else x for x in row] for row in plain(self.fraction, 4)]
        return {
            "format": "flowsim-sweep-report", "by": list(self.by), "pooled": list(self.pooled),
            "groups": [{"label": label, "values": values, "points": int(n),
                        "assumptions_met": {a: int(k) for a, k in zip(self.assumptions, met)}}
                       for label, values, n, met in zip(self.labels, self.groups, self.points, self.met.T)],
            "claims": [{"id": i, "claim": text, "holds": h.tolist(), "applicable": a.tolist(), "fraction": f}
                       for i, text, h, a, f in zip(self.claims, self.texts, self.holds, self.applicable, fraction)],
            "skipped": list(self.skipped),
            "orders": [v.to_dict() for v in self.orders],
        }

    def write(self, out_dir: str | Path) -> Path:
        """Write :meth:`to_dict` to ``out_dir/sweep_report.json``; returns the path."""
        path = Path(out_dir) / SWEEP_REPORT
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1) + "\n")
        return path


def sweep_report(sweep: str | Path | SweepDir, by: Iterable[str] | None = None) -> SweepReport:
    """Every claim checked on every complete point of the sweep directory ``sweep`` (written by
    :func:`flowsim.sweep`; a path, or one read already by :meth:`flowsim.sweepdir.SweepDir.read`),
    counted per group of points that share the values of the grid keys ``by`` (default: every
    grid key but ``seed``, so that seeds are pooled).

    Verdicts are recomputed from the points' result directories, each with the context of its
    own configuration: the verdicts in ``sweep.json`` may come from an older flowsim."""
    if not isinstance(sweep, SweepDir):
        sweep = SweepDir.read(sweep)
    grid = sweep.grid
    by = tuple(k for k in grid if k != "seed") if by is None else tuple(by)
    unknown = [k for k in by if k not in grid]
    if unknown:
        raise UsageError(f"--by: {unknown[0]!r} is not a grid key of the sweep in {sweep.path}; "
                         f"its grid keys: {', '.join(grid)}")
    groups: dict[str, tuple[dict, list]] = {}  # by JSON of the grid values: the values, the points' rows
    skipped, points = [], []
    for name, status, run in sweep.points:
        if run is None:
            skipped.append(f"{name} ({status})")
            continue
        values = plain({k: getattr(run.config, k) for k in by})
        context = RunContext.from_config(run.config)
        rows = check_claims(run.result, context)
        groups.setdefault(json.dumps(values), (values, []))[1].append((rows, assess(run.result, context)))
        points.append((plain({k: getattr(run.config, k) for k in grid}), rows, run.result))
    shape = (len(CLAIMS), len(groups))
    holds, applicable, met = np.zeros(shape, int), np.zeros(shape, int), np.zeros((len(ASSUMPTIONS), len(groups)), int)
    for g, (_, members) in enumerate(groups.values()):
        for rows, assumptions in members:
            holds[:, g] += [r.verdict == HOLDS for r in rows]
            applicable[:, g] += [r.verdict in (HOLDS, FAILS) for r in rows]
            met[:, g] += [assumptions[a].met is True for a in ASSUMPTIONS]
    return SweepReport(by=by, pooled=tuple(k for k in grid if k not in by),
                       groups=tuple(v for v, _ in groups.values()), claims=tuple(CLAIMS),
                       texts=tuple(c.text for c in CLAIMS.values()), holds=holds, applicable=applicable,
                       points=np.array([len(p) for _, p in groups.values()], int), assumptions=tuple(ASSUMPTIONS),
                       met=met, skipped=tuple(skipped), orders=tuple(order_verdicts(grid, points)))


def format_sweep_table(rep: SweepReport) -> str:
    """The hold rates as a plain-text table: one row per claim id, one column per group, each
    cell "fraction (holding/applicable)"; then the points and assumptions met per group, the
    points skipped and what each claim id says."""
    cells = [[f"{h / a:.2f} ({h}/{a})" if a else "- (0/0)" for h, a in zip(hs, As)]
             for hs, As in zip(rep.holds, rep.applicable)]
    counts = [[f"{k}/{n}" for k, n in zip(met, rep.points)] for met in rep.met]
    names = [*rep.claims, "points checked", *(f"{a} met" for a in rep.assumptions)]
    body = [*cells, [str(n) for n in rep.points], *counts]
    first = max(map(len, names)) + 2
    widths = [max(len(label), *(len(row[g]) for row in body)) + 2 for g, label in enumerate(rep.labels)]
    pooled = f"; pooled over {', '.join(rep.pooled)}" if rep.pooled else ""
    lines = [f"claims holding by {', '.join(rep.by) or 'sweep'}: points where it holds / points where it applies{pooled}",
             ("claim".ljust(first) + "".join(label.ljust(w) for label, w in zip(rep.labels, widths))).rstrip()]
    lines += [name.ljust(first) + "".join(c.ljust(w) for c, w in zip(row, widths)).rstrip()
              for name, row in zip(names, body)]
    if rep.skipped:
        lines.append(f"not checked (not complete): {', '.join(rep.skipped)}")
    lines += ["", format_order_table(rep.orders)]
    lines += ["", "claims:"] + [f"  {i}: {text} ({CLAIMS[i].reference})" for i, text in zip(rep.claims, rep.texts)]
    return "\n".join(lines)


def format_order_table(orders: Sequence[OrderVerdict]) -> str:
    """The statements of order judged across the sweep: per claim, sweep variable and group of
    points, the fitted exponent with its confidence interval and the verdict."""
    if not orders:
        return "statements of order: none judged (the sweep varies none of m, n, the init scale)"
    lines = ["statements of order, judged by the exponent of a power law fitted across the sweep "
             "(log factors: within 0.2 of the theory's):"]
    for v in orders:
        group = ", ".join(f"{k}={x}" for k, x in v.group.items())
        fit = "no fit" if v.fit is None else f"alpha = {v.fit.alpha:+.3f} [{v.fit.lo:+.3f}, {v.fit.hi:+.3f}]"
        left = f", {v.left_out} left out" if v.left_out else ""
        lines.append(f"  [{v.verdict.upper()}] {v.id} vs {v.variable}{f' ({group})' if group else ''}: {fit}{left}"
                     f"\n      {CLAIMS[v.id].text} ({CLAIMS[v.id].reference}); {v.criterion}")
    return "\n".join(lines)
