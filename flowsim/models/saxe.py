"""Two-layer linear network on whitened inputs, Saxe, McClelland and Ganguli (ICLR 2014, arXiv:1312.6120v3), section 1.

Equation numbers are those of arXiv:1312.6120v3.  The network is ``y = W32 W21 x`` with
``N1`` inputs, ``N2`` hidden and ``N3`` output units.  Its training set has input correlation
``Sigma11 = sum_mu x^mu x^mu^T = I`` (whitened, section 1.1) and input-output correlation
``Sigma31 = sum_mu y^mu x^mu^T = U S V^T`` (Eq. 3); gradient descent on the squared error with
learning rate ``1/tau`` becomes the flow of Eq. (2),
``tau dW21/dt = W32^T (Sigma31 - W32 W21 Sigma11)``, ``tau dW32/dt = (Sigma31 - W32 W21 Sigma11) W21^T``,
which is ``dtheta/dt = -grad E(theta)`` for the energy :func:`loss`.  From the decoupled, balanced
start of section 1.3 each mode strength ``u_a = u_a^T W32 W21 v_a`` follows the sigmoid of Eq. (12).

Draws use JAX's default dtype: call them inside ``jax.enable_x64`` for float64.
"""

from __future__ import annotations

import functools
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from .contract import AbstractModel, ModelClaim, Trajectory, at_most, in_float64, within_solver


class SaxeTask(eqx.Module):
    """The input-output correlation ``Sigma31 = U S V^T`` (Eq. 3) and the time unit ``tau = 1/lambda`` (Eq. 2).

    ``s`` holds the ``r`` nonzero singular values, in decreasing order; the columns of ``U``
    (``N3 x N3``) and ``V`` (``N1 x N1``) are the output and input singular vectors ``u_a``, ``v_a``."""

    U: Float[Array, "N3 N3"]
    s: Float[Array, " r"]
    V: Float[Array, "N1 N1"]
    tau: float = eqx.field(static=True)

    @property
    def Sigma31(self) -> Float[Array, "N3 N1"]:
        """``sum_a s_a u_a v_a^T`` (Eq. 3)."""
        r = self.s.shape[0]
        return (self.U[:, :r] * self.s) @ self.V[:, :r].T


class SaxeData(eqx.Module):
    """A training set as columns, ``x^mu = X[:, mu]`` and ``y^mu = Y[:, mu]``."""

    X: Float[Array, "N1 P"]
    Y: Float[Array, "N3 P"]


class SaxeParams(eqx.Module):
    """The two weight matrices of the three-layer network of section 1 (Fig. 1)."""

    W21: Float[Array, "N2 N1"]
    W32: Float[Array, "N3 N2"]


@functools.partial(jax.jit, static_argnums=(1, 2))
def _haar(key: PRNGKeyArray, n: int, k: int | None = None) -> Float[Array, "n k"]:
    """``k`` orthonormal columns of a Haar-distributed ``n x n`` orthogonal matrix (QR with the signs fixed)."""
    Q, R = jnp.linalg.qr(jax.random.normal(key, (n, n if k is None else k)))
    return Q * jnp.sign(jnp.diagonal(R))


def _floats(x: np.ndarray) -> Array:
    """A float64 NumPy array as a JAX array of JAX's default float dtype (float32 unless in
    ``jax.enable_x64``): converting it as it is would ask for float64 and warn outside x64."""
    return jnp.asarray(x, dtype=jnp.result_type(float))


def make_task(key: PRNGKeyArray, s: ArrayLike, *, N1: int, N3: int, tau: float = 1.0) -> SaxeTask:
    """A task with singular values ``s`` (positive, decreasing) and Haar-random singular vectors."""
    s = np.asarray(s, dtype=float)
    r = s.shape[0]
    if not 1 <= r <= min(N1, N3):
        raise ValueError(f"the number of singular values must be in [1, min(N1, N3)] = [1, {min(N1, N3)}], got {r}")
    if not (np.all(s > 0) and np.all(np.diff(s) <= 0)):
        raise ValueError(f"singular values must be positive and decreasing, got {s}")
    if not tau > 0:
        raise ValueError(f"tau must be positive, got {tau}")
    kU, kV = jax.random.split(key)
    return SaxeTask(U=_haar(kU, N3), s=_floats(s), V=_haar(kV, N1), tau=float(tau))


def whitened_dataset(key: PRNGKeyArray, task: SaxeTask, P: int) -> SaxeData:
    """``P >= N1`` examples whose correlations are exactly those of section 1.1: ``Sigma11 = X X^T = I``
    (the rows of ``X`` orthonormal) and ``Sigma31 = Y X^T = U S V^T`` (``Y = Sigma31 X``)."""
    N1 = task.V.shape[0]
    if P < N1:
        raise ValueError(f"whitened inputs need P >= N1 = {N1} examples, got P = {P}")
    X = _haar(key, P, N1).T
    return SaxeData(X=X, Y=task.Sigma31 @ X)


def init_decoupled(key: PRNGKeyArray, task: SaxeTask, N2: int, u0: ArrayLike) -> SaxeParams:
    """The decoupled, balanced start of section 1.3: ``W32 = U D R^T``, ``W21 = R D V^T`` with ``R`` a
    Haar-random ``N2 x N2`` orthogonal matrix and ``D = diag(sqrt(u0))`` on the first ``min(r, N2)``
    modes, zero elsewhere.  So ``a^a = b^a = sqrt(u0_a) r^a`` (``a = b``, the case of Eq. 10) and the
    initial mode strengths are ``u0`` (a scalar or one value per active mode; Eq. 12's sigmoid
    rise is from ``u0 < s_a``)."""
    m = min(task.s.shape[0], N2)
    u0 = np.broadcast_to(np.asarray(u0, dtype=float), (m,))
    if not np.all(u0 > 0):
        raise ValueError(f"initial mode strengths must be positive (a = b = sqrt(u0)), got {u0}")
    R = _haar(key, N2)[:, :m] * _floats(np.sqrt(u0))
    return SaxeParams(W21=R @ task.V[:, :m].T, W32=task.U[:, :m] @ R.T)


def init_random(key: PRNGKeyArray, task: SaxeTask, N2: int, std: float = 0.01) -> SaxeParams:
    """Small random weights, i.i.d. ``N(0, std^2)`` (Fig. 5 uses ``std = 0.01``): off the decoupled
    manifold, so Eq. (12) is only an approximation there (Fig. 3)."""
    k21, k32 = jax.random.split(key)
    N1, N3 = task.V.shape[0], task.U.shape[0]
    return SaxeParams(W21=std * jax.random.normal(k21, (N2, N1)), W32=std * jax.random.normal(k32, (N3, N2)))


def loss(params: SaxeParams, data: SaxeData, tau: float) -> Float[Array, ""]:
    """``E = (1/2 tau) sum_mu ||y^mu - W32 W21 x^mu||^2``: the squared error of section 1 over ``tau``,
    whose gradient flow ``dtheta/dt = -grad E`` is exactly Eq. (2) (and, in mode coordinates,
    Eq. 6 plus the constant ``(tr Sigma33 - sum_a s_a^2) / 2 tau``)."""
    residual = data.Y - params.W32 @ (params.W21 @ data.X)
    return 0.5 * jnp.sum(residual**2) / tau


def mode_matrix(params: SaxeParams, task: SaxeTask) -> Float[Array, "r r"]:
    """``U_r^T W32 W21 V_r``: the network's map in the task's singular frame (first ``r`` modes).
    Its diagonal holds the mode strengths ``a^a . b^a``, its off-diagonal the cross-talk ``a^a . b^b``
    (Eq. 6)."""
    r = task.s.shape[0]
    return task.U[:, :r].T @ params.W32 @ params.W21 @ task.V[:, :r]


def mode_strengths(params: SaxeParams, task: SaxeTask) -> Float[Array, " r"]:
    """``u_a = a^a . b^a = u_a^T W32 W21 v_a``, the quantity of Eqs. (10)-(12) and of Fig. 3."""
    return jnp.diagonal(mode_matrix(params, task))


def cross_talk(params: SaxeParams, task: SaxeTask) -> Float[Array, ""]:
    """``max_{a != b} |a^a . b^b|``: zero on the decoupled invariant manifold of section 1.3."""
    M = mode_matrix(params, task)
    return jnp.max(jnp.abs(M - jnp.diag(jnp.diagonal(M))), initial=0.0)


def balance(params: SaxeParams) -> Float[Array, "N2 N2"]:
    """``W21 W21^T - W32^T W32``, a constant of motion of Eq. (2) for any start: the matrix form of
    the conserved ``a^2 - b^2`` of section 1.3 (Noether, from ``W32 -> W32 G^-1``, ``W21 -> G W21``)."""
    return params.W21 @ params.W21.T - params.W32.T @ params.W32


def mode_curve(t: ArrayLike, s: ArrayLike, u0: ArrayLike, tau: float) -> Array:
    """Eq. (12): ``u(t) = s e^{2st/tau} / (e^{2st/tau} - 1 + s/u0)``, the solution of Eq. (10)
    ``tau du/dt = 2u(s - u)`` from ``u(0) = u0``; written with ``e^{-2st/tau}`` so it never overflows."""
    decay = jnp.exp(-2.0 * jnp.asarray(s) * jnp.asarray(t) / tau)
    return s / (1.0 - decay + decay * s / u0)


def travel_time(u0: ArrayLike, uf: ArrayLike, s: ArrayLike, tau: float) -> Array:
    """Eq. (11): ``t = tau/(2s) ln[u_f (s - u_0) / (u_0 (s - u_f))]``, the time for ``u`` to go from ``u0`` to ``uf``."""
    return tau / (2.0 * s) * jnp.log(uf * (s - u0) / (u0 * (s - uf)))


def half_learned_time(s: ArrayLike, u0: ArrayLike, tau: float) -> Array:
    """The analytical time of half learning (Fig. 3, right): Eq. (11) with ``u_f = s/2``,
    ``tau/(2s) ln(s/u0 - 1)``."""
    return travel_time(u0, 0.5 * jnp.asarray(s), s, tau)


def final_map(task: SaxeTask, N2: int) -> Float[Array, "N3 N1"]:
    """Eq. (7): the globally stable fixed points have ``W32 W21 = sum_{a <= N2} s_a u_a v_a^T``,
    the best rank-``N2`` approximation of ``Sigma31``."""
    m = min(task.s.shape[0], N2)
    return (task.U[:, :m] * task.s[:m]) @ task.V[:, :m].T


def learned_condition(params: SaxeParams, task: SaxeTask, k: int) -> Float[Array, ""]:
    """The event "mode ``k`` learned" (0-based, ``k < N2``): its strength reaches half its final value
    ``s_k`` (Eq. 7), ``c = u_k - s_k/2``, negative before and crossing zero upward at the event."""
    return mode_strengths(params, task)[k] - 0.5 * task.s[k]


def fixed_point_distance(params: SaxeParams, task: SaxeTask) -> Float[Array, ""]:
    """``||W32 W21 - Eq. (7)||_F / ||Eq. (7)||_F``, the relative distance to the global minimum."""
    target = final_map(task, params.W21.shape[0])
    return jnp.linalg.norm(params.W32 @ params.W21 - target) / jnp.linalg.norm(target)


def observables(params: SaxeParams, task: SaxeTask, data: SaxeData) -> dict[str, Array]:
    """What a run records: the mode strengths (Fig. 3), the cross-talk, the conserved balance
    matrix, the distance to Eq. (7) and the energy :func:`loss`."""
    return dict(mode_strengths=mode_strengths(params, task), cross_talk=cross_talk(params, task),
                balance=balance(params), fixed_point_distance=fixed_point_distance(params, task),
                loss=loss(params, data, task.tau))


# --- Claims of the paper, checked on a trajectory of observables() with the event times
# "half_learned" (one per mode whose start is positive, in mode order) ---------------------------


def _active(traj: Trajectory) -> np.ndarray:
    """The modes Eq. (12) describes: the first min(r, N2), those with an event "mode k learned"
    (the start gives each a positive strength; the others start at zero, which a float32 run
    holds only to its rounding)."""
    return np.arange(len(traj["half_learned"]))


@in_float64
def check_mode_curves(traj: Trajectory, task: SaxeTask, tol: float = 1e-8) -> tuple[bool, float]:
    """Max over saves and active modes of ``|u_a(t) / Eq. (12) - 1|`` at most ``within_solver(tol)``."""
    u = np.asarray(traj["mode_strengths"])[:, _active(traj)]
    s = np.asarray(task.s)[_active(traj)]
    curve = np.asarray(mode_curve(np.asarray(traj["t"])[:, None], s, u[0], task.tau))
    return at_most(np.max(np.abs(u / curve - 1.0)), within_solver(tol, traj))


@in_float64
def check_half_learning(traj: Trajectory, task: SaxeTask, tol: float = 1e-8) -> tuple[bool, float]:
    """Max over active modes of ``|t_half / Eq. (11) - 1|`` at most ``within_solver(tol)``, ``t_half`` the event
    "mode learned" (strength ``s_a / 2``)."""
    active = _active(traj)
    u0, s = np.asarray(traj["mode_strengths"])[0, active], np.asarray(task.s)[active]
    closed = np.asarray(half_learned_time(s, u0, task.tau))
    return at_most(np.max(np.abs(np.asarray(traj["half_learned"]) / closed - 1.0)), within_solver(tol, traj))


@in_float64
def check_stronger_first(traj: Trajectory, task: SaxeTask) -> tuple[bool, float]:
    """Modes are half learned in decreasing order of ``s_a``: margin the smallest relative gap
    ``(t_{a+1} - t_a) / t_{a+1}`` between consecutive modes (strict: a tie does not hold)."""
    t = np.asarray(traj["half_learned"])
    gaps = np.diff(t) / t[1:] if t.size > 1 else np.array([np.inf])
    margin = float(np.min(gaps))
    return margin > 0, margin


@in_float64
def check_decoupled(traj: Trajectory, task: SaxeTask, tol: float = 1e-10) -> tuple[bool, float]:
    """Max over saves of the cross-talk ``max |a^a . b^b|`` over ``s_1`` at most ``within_solver(tol)``."""
    return at_most(np.max(np.asarray(traj["cross_talk"])) / float(task.s[0]), within_solver(tol, traj))


@in_float64
def check_balance(traj: Trajectory, task: SaxeTask, tol: float = 1e-10) -> tuple[bool, float]:
    """Max over saves of ``||B(t) - B(0)||_F / s_1``, ``B = W21 W21^T - W32^T W32``, at most ``within_solver(tol)``."""
    B = np.asarray(traj["balance"])
    drift = np.sqrt(np.sum((B - B[0]) ** 2, axis=(1, 2)))
    return at_most(np.max(drift) / float(task.s[0]), within_solver(tol, traj))


@in_float64
def check_fixed_point(traj: Trajectory, task: SaxeTask, tol: float = 1e-6) -> tuple[bool, float]:
    """At the last save, ``||W32 W21 - Eq. (7)||_F / ||Eq. (7)||_F`` at most ``tol``."""
    return at_most(np.asarray(traj["fixed_point_distance"])[-1], tol)


def _claim(id: str, text: str, reference: str, measured: str, check) -> ModelClaim:
    """A claim whose ``check(trajectory, task)`` reads the model's task, and the event times
    "mode k learned" as one array ``half_learned`` (in mode order)."""
    def on_model(traj: Trajectory, model: SaxeModel) -> tuple[bool, float]:
        if "half_learned" not in traj:
            traj = dict(traj, half_learned=np.array([traj[name] for name in model.event_names]))
        return check(traj, model.task)
    return ModelClaim(id, text, reference, measured, on_model)


CLAIMS = (
    _claim("saxe.sigmoid", "From decoupled initial conditions with a = b, each mode strength follows "
                    "u(t) = s e^{2st/tau} / (e^{2st/tau} - 1 + s/u0).", "Eq. (12), section 1.3",
                    "max relative deviation of u_a(t) from Eq. (12) over the saves", check_mode_curves),
    _claim("saxe.half_learning", "u travels from u0 to u_f in t = tau/(2s) ln[u_f (s - u0) / (u0 (s - u_f))]; "
                    "at u_f = s/2 this is the analytical time of half learning.", "Eq. (11); Fig. 3 right",
                    "relative error of each mode's half-learned event time", check_half_learning),
    _claim("saxe.stronger_first", "The timescale of learning of each mode is inversely proportional to its "
                    "strength s_a: the stronger an input-output relationship, the quicker it is learned.",
                    "section 1.3, after Eq. (11)", "order of the half-learned times", check_stronger_first),
    _claim("saxe.decoupled", "From these initial conditions a^a and b^a remain parallel to r^a; the modes "
                    "do not interact (an invariant manifold).", "section 1.3",
                    "max cross-talk a^a . b^b (a != b) over s_1", check_decoupled),
    _claim("saxe.conserved", "a^2 - b^2 is a constant of motion (Noether, from the scaling symmetry), here "
                    "in its matrix form W21 W21^T - W32^T W32.", "section 1.3, after Eq. (9)",
                    "max drift of the balance matrix over s_1", check_balance),
    _claim("saxe.fixed_point", "All globally stable fixed points satisfy W32 W21 = sum_{a <= N2} s_a u_a v_a^T.",
                    "Eq. (7), section 1.2", "relative distance to Eq. (7) at the end", check_fixed_point),
)


class SaxeModel(AbstractModel):
    """The two-layer linear network of section 1 as a flowsim model: parameters
    :class:`SaxeParams`, data :class:`SaxeData` (``P`` whitened examples of the task), schemes
    ``decoupled`` (section 1.3, initial strengths ``u0``) and ``random`` (i.i.d. ``N(0, std^2)``),
    loss :func:`loss`, the observables of :func:`observables`, the events "mode k learned"
    (:func:`learned_condition`, k = 1..min(r, N2)) and the claims :data:`CLAIMS`."""

    task: SaxeTask
    N2: int = eqx.field(static=True)
    P: int = eqx.field(static=True)
    u0: tuple[float, ...] = eqx.field(static=True)
    std: float = eqx.field(static=True)

    name: ClassVar[str] = "saxe"
    SCHEMES: ClassVar[tuple[str, ...]] = ("decoupled", "random")
    OBSERVABLES: ClassVar[dict[str, str]] = {
        "mode_strengths": "u_a = u_a^T W32 W21 v_a for every mode a (Eqs. 10-12, Fig. 3)",
        "cross_talk": "max_{a != b} |a^a . b^b|: zero on the decoupled manifold (section 1.3)",
        "balance": "W21 W21^T - W32^T W32, a constant of motion (section 1.3)",
        "fixed_point_distance": "||W32 W21 - Eq. (7)||_F / ||Eq. (7)||_F",
    }

    @property
    def event_names(self) -> tuple[str, ...]:
        return tuple(f"mode{k + 1}_learned" for k in range(min(self.task.s.shape[0], self.N2)))

    def sample_data(self, key: PRNGKeyArray) -> SaxeData:
        return whitened_dataset(key, self.task, self.P)

    def init(self, key: PRNGKeyArray, scheme: str) -> SaxeParams:
        if scheme == "decoupled":
            return init_decoupled(key, self.task, self.N2, self.u0)
        return init_random(key, self.task, self.N2, self.std)

    def loss(self, params: SaxeParams, data: SaxeData) -> Float[Array, ""]:
        return loss(params, data, self.task.tau)

    def observables(self, params: SaxeParams, data: SaxeData, ref) -> dict[str, Array]:
        return {k: v for k, v in observables(params, self.task, data).items() if k != "loss"}

    def event_values(self, t, params: SaxeParams, data: SaxeData, ref) -> tuple[Array, ...]:
        return tuple(learned_condition(params, self.task, k) for k in range(len(self.event_names)))

    def claims(self) -> tuple[ModelClaim, ...]:
        return CLAIMS


def make_model(s: ArrayLike = (3.0, 2.0, 1.0, 0.2), *, N1: int = 6, N2: int = 3, N3: int = 5, P: int = 9,
               tau: float = 2.0, u0: ArrayLike = (1e-4, 3e-4, 1e-3), std: float = 0.01, seed: int = 0) -> SaxeModel:
    """The model for singular values ``s`` (the task's singular vectors drawn from ``seed``, in
    float64), ``N1`` inputs, ``N2`` hidden, ``N3`` outputs, ``P`` whitened examples, time unit
    ``tau``; ``u0`` the decoupled start's initial strengths (one per active mode, or one for all)."""
    for name, value in (("N2", N2), ("P", P), ("seed", seed)):
        if isinstance(value, bool) or not isinstance(value, int) or value < (0 if name == "seed" else 1):
            raise ValueError(f"{name} must be an integer >= {0 if name == 'seed' else 1}, got {value!r}")
    if not std > 0:
        raise ValueError(f"std must be positive, got {std}")
    with jax.enable_x64(True):
        task = make_task(jax.random.key(seed), s, N1=N1, N3=N3, tau=tau)
    active = min(task.s.shape[0], N2)
    u0 = np.broadcast_to(np.asarray(u0, dtype=float), (active,))
    if not np.all(u0 > 0):
        raise ValueError(f"initial mode strengths must be positive (a = b = sqrt(u0)), got {u0}")
    if P < N1:
        raise ValueError(f"whitened inputs need P >= N1 = {N1} examples, got P = {P}")
    return SaxeModel(task=task, N2=N2, P=P, u0=tuple(float(x) for x in u0), std=float(std))
