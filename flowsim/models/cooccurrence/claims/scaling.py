"""Statements of order judged across a sweep: each OrderClaim's quantity fitted as a power of m, n or the initial output F, and the exponent held against the theory's.

An :class:`~flowsim.models.cooccurrence.claims.base.OrderClaim` says a positive quantity Q (made dimensionless by the
theory's own expression, so its exponent is 0 unless stated) is Theta, O or Omega of
``x^exponent`` for a sweep variable x, up to log factors.  Over the points of a sweep that
differ only in x (and the seed), :func:`fit_exponent` fits ``log Q = alpha log x + c`` by least
squares with a Student-t confidence interval, and :func:`judge` compares alpha with the
exponent: Theta holds when ``|alpha - exponent| <= TOL``, O when ``alpha <= exponent + TOL``,
Omega when ``alpha >= exponent - TOL``.  ``TOL`` admits the log factors the statements hide:
``log^k x`` has a local slope ``k / ln x``, about 0.1 per power of the log at the widths swept.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence

import numpy as np

from .base import CLAIMS, FAILS, HOLDS, NA, ORDER, OrderClaim, Row, plain

__all__ = ["LEVEL", "TOL", "VARIABLES", "Exponent", "OrderVerdict", "fit_exponent", "judge", "order_verdicts"]

LEVEL = 0.95  # of the exponent's confidence interval
TOL = 0.2  # log factors: an exponent within this of the theory's is consistent with it
#: The sweep variables an order statement can be about, and the grid keys that move each: F is the
#: measured initial output max_i |F(X_i)|, moved by the initialization's scale.
VARIABLES = {"m": ("m",), "n": ("n",), "F": ("c0", "c1", "sigma0", "sigma1", "init", "delta")}
#: The sweep variables whose limit of interest is 0 rather than infinity: the theorems take F small
#: (Condition 1: F <= 0.01), so an O bound in F fails when the quantity grows as F shrinks (a
#: negative exponent), not when it grows with F, and Omega the other way round.
TOWARD_ZERO = ("F",)


@dataclasses.dataclass(frozen=True)
class Exponent:
    """``Q ~ prefactor x^alpha``, fitted by least squares of log Q on log x over ``points`` points;
    ``[lo, hi]`` is alpha's two-sided ``level`` confidence interval (the slope's standard error
    times Student's t with ``points - 2`` degrees of freedom)."""

    alpha: float
    lo: float
    hi: float
    prefactor: float
    points: int
    level: float = LEVEL

    def __call__(self, x):
        return self.prefactor * np.asarray(x, float) ** self.alpha

    def text(self) -> str:
        return f"alpha = {self.alpha:.3f}, {self.level:.0%} CI [{self.lo:.3f}, {self.hi:.3f}]"


def fit_exponent(x, Q, level: float = LEVEL) -> Exponent | None:
    """The power law through the points with a finite positive Q (see :class:`Exponent`);
    ``None`` for fewer than 3 such points or a single x, where the slope or its error is undefined."""
    from scipy import stats

    x, Q = np.asarray(x, float), np.asarray(Q, float)
    keep = np.isfinite(Q) & (Q > 0) & np.isfinite(x) & (x > 0)
    lx, lq = np.log(x[keep]), np.log(Q[keep])
    if len(lx) < 3 or np.ptp(lx) == 0:
        return None
    fit = stats.linregress(lx, lq)
    # A constant Q fits exactly, but scipy leaves its correlation, and so the slope's error, 0/0.
    stderr = fit.stderr if np.ptp(lq) > 0 else 0.0
    half = stats.t.ppf(0.5 + level / 2, len(lx) - 2) * stderr
    return Exponent(alpha=fit.slope, lo=fit.slope - half, hi=fit.slope + half, prefactor=math.exp(fit.intercept),
                    points=len(lx), level=level)


@dataclasses.dataclass(frozen=True)
class OrderVerdict:
    """One order claim judged against one sweep variable on one group of points (``group``: the
    values of the other grid keys they share): the fit, the verdict and its margin (the distance
    of alpha to the edge of the allowed range, in units of :data:`TOL`), and what was left out."""

    id: str
    variable: str
    group: dict
    fit: Exponent | None
    verdict: str
    margin: float
    criterion: str
    left_out: int

    def to_dict(self) -> dict:
        fit = None if self.fit is None else plain(dataclasses.asdict(self.fit), 4)
        return {"id": self.id, "variable": self.variable, "group": self.group, "fit": fit, "verdict": self.verdict,
                "margin": None if math.isnan(self.margin) else plain(self.margin, 4), "criterion": self.criterion,
                "left_out": self.left_out}


def judge(claim: OrderClaim, variable: str, x, Q, group: dict | None = None) -> OrderVerdict:
    """``claim`` judged on points with sweep variable ``x`` and measured quantity ``Q``.

    Points where Q is not a positive number (or was not measured: NaN) are left out of the fit and
    counted in ``left_out``; for Theta and
    Omega a non-positive Q at the largest x (a sign the statement's size presumes, failed where
    it matters most) makes the claim fail outright."""
    x, Q = np.asarray(x, float), np.asarray(Q, float)
    group = group or {}
    usable = np.isfinite(x) & (x > 0) & ~np.isnan(Q)
    unmeasured = int(np.sum(~usable))  # NaN: the quantity could not be measured on the point
    x, Q = x[usable], Q[usable]
    left_out = unmeasured + int(np.sum(~(Q > 0) | ~np.isfinite(Q)))
    e = claim.exponent
    small = variable in TOWARD_ZERO
    limit = f"as {variable} -> 0" if small else f"as {variable} grows"
    law = f"{claim.quantity} = {claim.relation}({variable}^{e:g}) up to logs, {limit}"
    # Toward 0 a bound from above allows a larger exponent, not a smaller one.
    bound = {"O": "Omega", "Omega": "O"}.get(claim.relation, claim.relation) if small else claim.relation
    allowed = {"Theta": f"|alpha - {e:g}| <= {TOL}", "O": f"alpha <= {e:g} + {TOL}",
               "Omega": f"alpha >= {e:g} - {TOL}"}[bound]
    head = dict(id=claim.id, variable=variable, group=group, left_out=left_out)
    edge = x.min() if small else x.max()
    if claim.relation != "O" and x.size and np.any(~(Q[x == edge] > 0)):
        return OrderVerdict(**head, fit=fit_exponent(x, Q), verdict=FAILS, margin=-math.inf,
                            criterion=f"{law}: the quantity is not positive at the {'smallest' if small else 'largest'} "
                                      f"{variable} = {edge:g}")
    fit = fit_exponent(x, Q)
    if fit is None:
        return OrderVerdict(**head, fit=None, verdict=NA, margin=math.nan,
                            criterion=f"{law}: needs 3 points with Q > 0 over 2 values of {variable}")
    margin = {"Theta": TOL - abs(fit.alpha - e), "O": e + TOL - fit.alpha, "Omega": fit.alpha - (e - TOL)}[bound] / TOL
    return OrderVerdict(**head, fit=fit, verdict=HOLDS if margin >= 0 else FAILS, margin=margin,
                        criterion=f"{law}: fitted {fit.text()} over {fit.points} points; allowed {allowed}")


def _x(variable: str, values: dict, result) -> float:
    """A point's value of the sweep variable: its grid value, or for F its measured initial output."""
    if variable == "F":
        return float(np.asarray(result.observables["F_abs_max"])[0])
    return float(values[variable])


def order_verdicts(grid: Sequence[str], points: Sequence[tuple[dict, list[Row], object]]) -> list[OrderVerdict]:
    """Every order claim judged against every sweep variable it speaks of that the sweep varies.

    ``points`` are the complete points as ``(grid values, rows of check_claims, result)``.  For a
    variable x the points are grouped by the grid keys other than x's and the seed, and each
    group is fitted on its own."""
    out = []
    for claim in CLAIMS.values():
        if not isinstance(claim, OrderClaim):
            continue
        for variable in claim.over:
            moving = [k for k in grid if k in VARIABLES[variable]]
            if not moving:
                continue
            others = [k for k in grid if k not in moving and k != "seed"]
            groups: dict[str, tuple[dict, list, list]] = {}
            for values, rows, result in points:
                row = next(r for r in rows if r.id == claim.id)
                Q = next(iter(row.measured.values())) if row.verdict == ORDER and row.measured else math.nan
                key = {k: values[k] for k in others}
                _, xs, Qs = groups.setdefault(json.dumps(key, sort_keys=True), (key, [], []))
                xs.append(_x(variable, values, result))
                Qs.append(Q)
            for key, xs, Qs in groups.values():
                out.append(judge(claim, variable, xs, Qs, plain(key)))
    return out
