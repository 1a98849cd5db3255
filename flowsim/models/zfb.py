"""One-layer linear self-attention trained on in-context linear regression, Zhang, Frei and Bartlett (JMLR 25(49), 2024; arXiv:2306.09927).

A prompt ``(x_1, y_1, ..., x_N, y_N, x_q)`` has a task ``w ~ N(0, I_d)``, inputs
``x_i, x_q ~ N(0, Lambda)`` i.i.d. and labels ``y_i = <w, x_i>``; it is embedded as
``E = [[x_1 ... x_N x_q], [y_1 ... y_N 0]]`` (``(d+1) x (N+1)``).  The network is
``f(E) = E + W_PV E (E^T W_KQ E) / N`` and predicts ``y_q`` by the bottom-right entry of ``f(E)``; it
is trained by gradient flow on the population loss ``L = 1/2 E[(y_hat - <w, x_q>)^2]`` (section 3).
From the structured start of Assumption 3.3 the flow keeps ``w21^PV = 0`` and ``w21^KQ = 0`` (the
bottom rows' first ``d`` entries) and moves only ``u = w22^PV`` and ``U11 = W11^KQ``; on that set
the loss is the closed form :func:`population_loss`, and Theorem 4.1 gives the limit
:func:`minimizer`, a global minimum, with ``Gamma = (1 + 1/N) Lambda + tr(Lambda)/N I_d``.

The paper's full text was not at hand when this was written: Theorems 4.1 and 4.2 are as
confirmed by two secondary sources, the number of Assumption 3.3 is recalled, and the closed forms
of the loss, its minimum and the prediction error are derived here and checked by Monte Carlo
(tests/test_models_math.py).

Draws use JAX's default dtype: call them inside ``jax.enable_x64`` for float64.
"""

from __future__ import annotations

from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from .contract import AbstractModel, ModelClaim, Trajectory, at_most, in_float64, within_solver


class ICLLaw(eqx.Module):
    """The data law of section 3.1: input covariance ``Lambda`` (``d x d``, positive definite) and
    the training prompt length ``N``; tasks ``w ~ N(0, I_d)``, noiseless labels."""

    Lambda: Float[Array, "d d"]
    N: int = eqx.field(static=True)

    @property
    def d(self) -> int:
        return self.Lambda.shape[0]

    @property
    def Gamma(self) -> Float[Array, "d d"]:
        """``Gamma = (1 + 1/N) Lambda + tr(Lambda)/N I_d`` (Theorem 4.1); ``E[Lambda_hat^2] = Gamma Lambda``
        for the prompt's ``Lambda_hat = (1/N) sum_i x_i x_i^T``."""
        return gamma(self.Lambda, self.N)


def gamma(Lambda: Float[Array, "d d"], N: int) -> Float[Array, "d d"]:
    """``(1 + 1/N) Lambda + tr(Lambda)/N I_d``: Theorem 4.1's ``Gamma`` for prompts of length ``N``."""
    return (1.0 + 1.0 / N) * Lambda + jnp.trace(Lambda) / N * jnp.eye(Lambda.shape[0])


def make_law(Lambda: ArrayLike, N: int) -> ICLLaw:
    """The law with covariance ``Lambda`` (symmetric positive definite) and prompt length ``N >= 1``."""
    Lambda = np.asarray(Lambda, dtype=float)
    if Lambda.ndim != 2 or Lambda.shape[0] != Lambda.shape[1] or Lambda.shape[0] < 1:
        raise ValueError(f"Lambda must be a square d x d matrix with d >= 1, got shape {Lambda.shape}")
    if not (np.allclose(Lambda, Lambda.T) and np.all(np.linalg.eigvalsh(Lambda) > 0)):
        raise ValueError("Lambda must be symmetric positive definite")
    if not (isinstance(N, int) and N >= 1):
        raise ValueError(f"the prompt length N must be an integer >= 1, got {N!r}")
    return ICLLaw(Lambda=jnp.asarray(Lambda), N=N)


class LSAParams(eqx.Module):
    """The merged matrices ``W_PV = W^P W^V`` and ``W_KQ = (W^K)^T W^Q`` of section 3.2, each
    ``(d+1) x (d+1)`` with blocks ``[[W11, w12], [w21^T, w22]]``."""

    W_PV: Float[Array, "d+1 d+1"]
    W_KQ: Float[Array, "d+1 d+1"]


class Prompts(eqx.Module):
    """``n`` prompts of length ``M``: inputs, labels, queries and the queries' true labels ``<w, x_q>``."""

    X: Float[Array, "n M d"]
    y: Float[Array, "n M"]
    x_q: Float[Array, "n d"]
    y_q: Float[Array, " n"]


def init_structured(key: PRNGKeyArray, law: ICLLaw, sigma: float) -> LSAParams:
    """Assumption 3.3: ``W_PV(0) = sigma [[0, 0], [0, 1]]``, ``W_KQ(0) = sigma [[Theta Theta^T, 0], [0, 0]]``
    with ``||Theta Theta^T||_F = 1``; here ``Theta = Theta_0 / ||Theta_0 Theta_0^T||_F^(1/2)`` from a
    Gaussian ``Theta_0``.  Theorem 4.1 asks ``sigma^2 ||Gamma||_op sqrt(d) < 2``
    (:func:`theorem41_margin`)."""
    if not sigma > 0:
        raise ValueError(f"the initialization scale sigma must be positive, got {sigma}")
    d = law.d
    Theta0 = jax.random.normal(key, (d, d))
    TT = Theta0 @ Theta0.T
    TT = TT / jnp.linalg.norm(TT)
    W_PV = jnp.zeros((d + 1, d + 1)).at[d, d].set(sigma)
    W_KQ = jnp.zeros((d + 1, d + 1)).at[:d, :d].set(sigma * TT)
    return LSAParams(W_PV=W_PV, W_KQ=W_KQ)


def theorem41_margin(law: ICLLaw, sigma: float) -> Float[Array, ""]:
    """``1 - sigma^2 ||Gamma||_op sqrt(d) / 2``: positive when Theorem 4.1's condition on the
    initialization scale holds."""
    return 1.0 - sigma**2 * jnp.linalg.norm(law.Gamma, 2) * jnp.sqrt(law.d) / 2.0


def sample_prompts(key: PRNGKeyArray, law: ICLLaw, n: int, M: int | None = None) -> Prompts:
    """``n`` i.i.d. prompts of the law (section 3.1), of length ``M`` (default the training length ``N``)."""
    M = law.N if M is None else M
    kw, kx, kq = jax.random.split(key, 3)
    C = jnp.linalg.cholesky(law.Lambda)
    w = jax.random.normal(kw, (n, law.d))
    X = jax.random.normal(kx, (n, M, law.d)) @ C.T
    x_q = jax.random.normal(kq, (n, law.d)) @ C.T
    return Prompts(X=X, y=jnp.einsum("nmd,nd->nm", X, w), x_q=x_q, y_q=jnp.einsum("nd,nd->n", x_q, w))


def embed(X: Float[Array, "M d"], y: Float[Array, " M"], x_q: Float[Array, " d"]) -> Float[Array, "d+1 M+1"]:
    """The embedding of section 3.1: columns ``(x_i; y_i)`` and last column ``(x_q; 0)``."""
    return jnp.concatenate([jnp.concatenate([X, x_q[None]]).T, jnp.append(y, 0.0)[None]])


def predict(params: LSAParams, E: Float[Array, "d+1 M+1"]) -> Float[Array, ""]:
    """``y_hat = [E + W_PV E (E^T W_KQ E) / M]_{d+1, M+1}`` (section 3.2), ``M`` the number of labelled
    examples in ``E``; the sum runs over every column of ``E``, the query's too."""
    M = E.shape[1] - 1
    out = E + params.W_PV @ E @ (E.T @ params.W_KQ @ E) / M
    return out[-1, -1]


def squared_errors(params: LSAParams, prompts: Prompts) -> Float[Array, " n"]:
    """``(y_hat - <w, x_q>)^2`` of the network on each prompt."""
    y_hat = jax.vmap(lambda X, y, x_q: predict(params, embed(X, y, x_q)))(prompts.X, prompts.y, prompts.x_q)
    return (y_hat - prompts.y_q) ** 2


def empirical_loss(params: LSAParams, prompts: Prompts) -> Float[Array, ""]:
    """``1/2`` the mean of :func:`squared_errors` over ``prompts``: a Monte Carlo estimate of the
    population loss (3.5) for any parameters."""
    return 0.5 * jnp.mean(squared_errors(params, prompts))


def reduced(params: LSAParams) -> tuple[Float[Array, ""], Float[Array, "d d"]]:
    """``(u, U11) = (w22^PV, W11^KQ)``, the coordinates that move from Assumption 3.3's start."""
    return params.W_PV[-1, -1], params.W_KQ[:-1, :-1]


def off_blocks(params: LSAParams) -> Float[Array, ""]:
    """``max(|w21^PV|, |w21^KQ|)``: zero on the invariant set the flow keeps from Assumption 3.3
    (proof of Lemma 5.2, appendix A.2, step three)."""
    return jnp.maximum(jnp.max(jnp.abs(params.W_PV[-1, :-1])), jnp.max(jnp.abs(params.W_KQ[-1, :-1])))


def population_loss(params: LSAParams, law: ICLLaw) -> Float[Array, ""]:
    """The population loss (3.5) in closed form on the invariant set ``w21^PV = w21^KQ = 0``:
    ``L = 1/2 u^2 tr(U11 Lambda U11^T Gamma Lambda) - u tr(U11 Lambda^2) + 1/2 tr(Lambda)``,
    a convex quadratic in ``u U11`` (section 5.1).  ``y_hat = u w^T Lambda_hat U11 x_q`` there, and
    ``E[Lambda_hat^2] = Gamma Lambda``; the blocks ``W11^PV``, ``w12^PV``, ``w12^KQ``, ``w22^KQ`` do
    not reach ``y_hat`` at all.  Off the set (a start other than Assumption 3.3's) it is an error:
    use :func:`empirical_loss` there."""
    u, U = reduced(params)
    u = eqx.error_if(u, off_blocks(params) != 0,
                     "population_loss: w21^PV and w21^KQ must be 0 (the invariant set of Assumption 3.3's start)")
    L, G = law.Lambda, law.Gamma
    return 0.5 * u**2 * jnp.trace(U @ L @ U.T @ G @ L) - u * jnp.trace(U @ L @ L) + 0.5 * jnp.trace(L)


def minimizer(law: ICLLaw) -> LSAParams:
    """Theorem 4.1's limit: ``W_PV* = [[0, 0], [0, c]]``, ``W_KQ* = [[Gamma^-1 / c, 0], [0, 0]]`` with
    ``c = tr(Gamma^-2)^(1/4)``: the global minimum with ``u^2 = ||U11||_F^2``, the balance that
    Assumption 3.3's start has and the flow keeps."""
    d = law.d
    Gi = jnp.linalg.inv(law.Gamma)
    c = jnp.trace(Gi @ Gi) ** 0.25
    return LSAParams(W_PV=jnp.zeros((d + 1, d + 1)).at[d, d].set(c),
                     W_KQ=jnp.zeros((d + 1, d + 1)).at[:d, :d].set(Gi / c))


def prediction_error(law: ICLLaw, M: int) -> Float[Array, ""]:
    """``E[(y_hat - <w, x_q>)^2]`` of the trained network (``u U11 = Gamma_N^-1``, Theorem 4.2's
    predictor ``x_q^T Gamma_N^-1 (1/M) sum_i y_i x_i``) on prompts of length ``M`` from the training
    law: ``tr(Gamma_N^-2 Gamma_M Lambda^2) - 2 tr(Gamma_N^-1 Lambda^2) + tr(Lambda)``."""
    L = law.Lambda
    Gi = jnp.linalg.inv(law.Gamma)
    return jnp.trace(Gi @ Gi @ gamma(L, M) @ L @ L) - 2.0 * jnp.trace(Gi @ L @ L) + jnp.trace(L)


def min_loss(law: ICLLaw) -> Float[Array, ""]:
    """The global minimum of the population loss, ``1/2 (tr(Lambda) - tr(Gamma^-1 Lambda^2))``: half the
    prediction error at ``M = N``."""
    return 0.5 * prediction_error(law, law.N)


def balance(params: LSAParams) -> Float[Array, ""]:
    """``u^2 - ||U11||_F^2``, conserved by the flow on the invariant set (the loss depends on ``u U11``
    only, so it is invariant under ``u -> c u``, ``U11 -> U11 / c``); zero from Assumption 3.3."""
    u, U = reduced(params)
    return u**2 - jnp.sum(U**2)


def converged_condition(params: LSAParams, law: ICLLaw, rel: float) -> Float[Array, ""]:
    """The event "loss within a factor ``1 + rel`` of its minimum": ``c = (1 + rel) L* - L``,
    negative before and crossing zero upward once (the loss decreases along the flow)."""
    return (1.0 + rel) * min_loss(law) - population_loss(params, law)


def observables(params: LSAParams, law: ICLLaw) -> dict[str, Array]:
    """What a run records: the loss and its excess over the minimum, the distance of ``u U11`` to
    ``Gamma^-1`` (Theorem 4.2's predictor) and of the parameters to Theorem 4.1's limit (Frobenius,
    relative), the invariant set's off blocks, the balance and ``u``."""
    u, U = reduced(params)
    star = minimizer(law)
    Gi = jnp.linalg.inv(law.Gamma)
    dist = jnp.sqrt(jnp.sum((params.W_PV - star.W_PV) ** 2) + jnp.sum((params.W_KQ - star.W_KQ) ** 2))
    loss = population_loss(params, law)
    return dict(loss=loss, excess_loss=loss - min_loss(law),
                predictor_error=jnp.linalg.norm(u * U - Gi) / jnp.linalg.norm(Gi),
                distance_to_minimizer=dist / jnp.sqrt(jnp.sum(star.W_PV**2) + jnp.sum(star.W_KQ**2)),
                off_blocks=off_blocks(params), balance=balance(params), u=u)


# --- Claims of the paper, checked on a trajectory of observables() ------------------------------


@in_float64
def check_limit(traj: Trajectory, law: ICLLaw, tol: float = 1e-8) -> tuple[bool, float]:
    """At the last save, the relative distance of ``(W_PV, W_KQ)`` to :func:`minimizer` at most ``tol``."""
    return at_most(np.asarray(traj["distance_to_minimizer"])[-1], tol)


@in_float64
def check_global_minimum(traj: Trajectory, law: ICLLaw, tol: float = 1e-10) -> tuple[bool, float]:
    """At the last save, ``|L - L*| / L*`` at most ``tol``."""
    return at_most(abs(float(np.asarray(traj["excess_loss"])[-1])) / float(min_loss(law)), tol)


@in_float64
def check_predictor(traj: Trajectory, law: ICLLaw, tol: float = 1e-8) -> tuple[bool, float]:
    """At the last save, ``||u U11 - Gamma^-1||_F / ||Gamma^-1||_F`` at most ``tol``."""
    return at_most(np.asarray(traj["predictor_error"])[-1], tol)


@in_float64
def check_invariant_set(traj: Trajectory, law: ICLLaw, tol: float = 1e-14) -> tuple[bool, float]:
    """Max over saves of ``max(|w21^PV|, |w21^KQ|) / |u|`` at most ``within_solver(tol)`` (they stay exactly 0)."""
    return at_most(np.max(np.asarray(traj["off_blocks"]) / np.abs(np.asarray(traj["u"]))), within_solver(tol, traj))


@in_float64
def check_balanced(traj: Trajectory, law: ICLLaw, tol: float = 1e-10) -> tuple[bool, float]:
    """Max over saves of ``|b(t) - b(0)| / max u^2``, ``b = u^2 - ||U11||_F^2``, at most ``within_solver(tol)``."""
    b, u = np.asarray(traj["balance"]), np.asarray(traj["u"])
    return at_most(np.max(np.abs(b - b[0])) / np.max(u**2), within_solver(tol, traj))


@in_float64
def check_descent(traj: Trajectory, law: ICLLaw, tol: float = 1e-12) -> tuple[bool, float]:
    """The loss never rises between saves by more than ``tol`` times its initial value."""
    loss = np.asarray(traj["loss"])
    return at_most(max(float(np.max(np.diff(loss), initial=0.0)), 0.0) / loss[0], within_solver(tol, traj))


def _claim(id: str, text: str, reference: str, measured: str, check) -> ModelClaim:
    """A claim whose ``check(trajectory, law)`` reads the model's data law."""
    return ModelClaim(id, text, reference, measured, lambda traj, model: check(traj, model.law))


CLAIMS = (
    _claim("zfb.limit", "From Assumption 3.3's start with sigma^2 ||Gamma||_op sqrt(d) < 2, gradient flow "
                    "converges to W_KQ* = tr(Gamma^-2)^(-1/4) [[Gamma^-1, 0], [0, 0]], "
                    "W_PV* = tr(Gamma^-2)^(1/4) [[0, 0], [0, 1]].", "Theorem 4.1",
                    "relative distance of the parameters to the limit at the end", check_limit),
    _claim("zfb.global_minimum", "The limit is a global minimum of the population loss (3.5).",
                    "Theorem 4.1", "relative excess of the loss over its closed-form minimum at the end",
                    check_global_minimum),
    _claim("zfb.predictor", "The trained network predicts y_hat = x_q^T Gamma^-1 (1/M) sum_i y_i x_i: "
                    "one step of preconditioned gradient descent.", "Theorem 4.2",
                    "relative distance of u U11 to Gamma^-1 at the end", check_predictor),
    _claim("zfb.invariant_set", "From Assumption 3.3's start the blocks w21^PV and w21^KQ stay zero.",
                    "Lemma 5.2 (appendix A.2, step three)", "max of the off blocks over |u|", check_invariant_set),
    _claim("zfb.balanced", "u^2 - ||U11||_F^2 is conserved (zero from Assumption 3.3's start), which fixes "
                    "the scale tr(Gamma^-2)^(1/4) of the limit.", "Theorem 4.1 (the limit's scale); derived",
                    "max drift of u^2 - ||U11||_F^2 over max u^2", check_balanced),
    _claim("zfb.descent", "Gradient flow never increases the loss.", "section 3.3 (gradient flow)",
                    "largest rise of the loss between saves over its initial value", check_descent),
)


class ZFBModel(AbstractModel):
    """Linear self-attention on in-context linear regression as a flowsim model: parameters
    :class:`LSAParams`, no sampled data (the loss is the population loss in closed form,
    :func:`population_loss`), the scheme ``structured`` (Assumption 3.3 with scale ``sigma``), the
    observables of :func:`observables`, the event ``converged`` (the loss within a factor
    ``1 + rel`` of its minimum, :func:`converged_condition`) and the claims :data:`CLAIMS`."""

    law: ICLLaw
    sigma: float = eqx.field(static=True)
    rel: float = eqx.field(static=True)

    name: ClassVar[str] = "zfb"
    SCHEMES: ClassVar[tuple[str, ...]] = ("structured",)
    OBSERVABLES: ClassVar[dict[str, str]] = {
        "excess_loss": "L - L*, L* the closed-form global minimum",
        "predictor_error": "||u U11 - Gamma^-1||_F / ||Gamma^-1||_F (Theorem 4.2's predictor)",
        "distance_to_minimizer": "relative Frobenius distance of (W_PV, W_KQ) to Theorem 4.1's limit",
        "off_blocks": "max(|w21^PV|, |w21^KQ|): zero on the invariant set of Assumption 3.3's start",
        "balance": "u^2 - ||U11||_F^2, conserved",
        "u": "u = w22^PV",
    }

    @property
    def event_names(self) -> tuple[str, ...]:
        return ("converged",)

    def sample_data(self, key: PRNGKeyArray) -> None:
        return None

    def init(self, key: PRNGKeyArray, scheme: str) -> LSAParams:
        return init_structured(key, self.law, self.sigma)

    def loss(self, params: LSAParams, data: None) -> Float[Array, ""]:
        return population_loss(params, self.law)

    def observables(self, params: LSAParams, data: None, ref) -> dict[str, Array]:
        return {k: v for k, v in observables(params, self.law).items() if k != "loss"}

    def event_values(self, t, params: LSAParams, data: None, ref) -> tuple[Array, ...]:
        return (converged_condition(params, self.law, self.rel),)

    def claims(self) -> tuple[ModelClaim, ...]:
        return CLAIMS


def make_model(Lambda: ArrayLike = ((1.0, 0.3, 0.0), (0.3, 0.6, -0.1), (0.0, -0.1, 2.0)), *, N: int = 10,
               sigma: float = 0.3, rel: float = 1e-6) -> ZFBModel:
    """The model for input covariance ``Lambda`` (float64), prompts of length ``N``, Assumption
    3.3's scale ``sigma`` and the event ``converged`` at relative excess loss ``rel``."""
    if not rel > 0:
        raise ValueError(f"rel must be positive, got {rel}")
    if not sigma > 0:
        raise ValueError(f"the initialization scale sigma must be positive, got {sigma}")
    with jax.enable_x64(True):
        law = make_law(Lambda, N)
    return ZFBModel(law=law, sigma=float(sigma), rel=float(rel))
