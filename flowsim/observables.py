"""Observables recorded along a trajectory: losses, G, attention scores, balancing, conservation (spec 6-7)."""

from __future__ import annotations

import jax.numpy as jnp

from .model import logistic_g, logistic_loss

#: Every observable key with its shape (per saved time) and meaning; the result-file schema.
DESCRIPTIONS: dict[str, tuple[str, str]] = {
    "loss": ("()", "training loss Lhat (Eq. 2)"),
    "loss_groups": ("(4,)", "training loss averaged over each group I1..I4 (NaN for an empty group)"),
    "min_margin": ("()", "min_i y_i F(X_i); positive once every sample is classified correctly"),
    "test_loss": ("()", "loss on the fresh i.i.d. test set (generalization loss estimate)"),
    "grad_norm2": ("()", "||grad Lhat||^2 = -dLhat/dt (spec 7.4)"),
    "G": ("(d,)", "G(mu_k) = a^T W W_V mu_k for every word k = 1..d"),
    "G_special": ("(3,)", "G(mu_1), G(mu_2), G(mu_3)"),
    "scores": ("(3, 3)", "attention score s(mu_i, mu_j) = mu_i^T W_K^T W_Q mu_j, i, j in 1..3"),
    "value_corr": ("(3, 3)", "value correlation mu_i^T W_V^T W_V mu_j, i, j in 1..3"),
    "key_corr": ("(3, 3)", "mu_i^T W_K^T W_K mu_j, i, j in 1..3"),
    "query_corr": ("(3, 3)", "mu_i^T W_Q^T W_Q mu_j, i, j in 1..3"),
    "neuron_gram_change": ("()", "||W W^T - W(0) W(0)^T||_F / ||W(0) W(0)^T||_F: change of the <w_j1, w_j2>"),
    "S": ("(4,)", "group sums S_k = sum over I_k of g(y_i F_i), g(x) = 1/(1+e^x)"),
    "balance_S2_S3": ("()", "|S2 - S3| / min(S2, S3) (automatic balancing, Lemma 4.5)"),
    "balance_all_S234_S1": ("()", "sum_i g_i / (S2 + S3 + S4 - S1) (Lemma 4.5)"),
    "balance_all_S1_S2": ("()", "sum_i g_i / (S1 - S2) (Lemma 4.5)"),
    "drift_KQ": ("()", "||D_KQ(t) - D_KQ(0)||_F / (||W_K W_K^T||_F + ||W_Q W_Q^T||_F)(0), D_KQ = W_K W_K^T - W_Q W_Q^T"),
    "drift_WV": ("()", "||D_WV(t) - D_WV(0)||_F / (||u u^T||_F / m1 + ||W_V W_V^T||_F)(0), D_WV = W^T W - W_V W_V^T, "
                       "u = W^T a: relative to the parts that move (W^T W - W(0)^T W(0) = (u u^T - u(0) u(0)^T) / m1)"),
    "C": ("(3, 3)", "Theorem 3.3's C_ij, i, j in 1..3: W_K^T W_Q - W_K(0)^T W_Q(0) = sum C_ij mu_i mu_j^T"),
    "C_irrelevant_max": ("()", "max |C_ij| over pairs that involve an irrelevant word (i or j >= 4)"),
}


def saves_bytes(saves: int, d: int, members: int = 1) -> int:
    """Bytes of ``saves`` saved times of every observable of :data:`DESCRIPTIONS` in float64, per member."""
    import math

    per_save = sum(math.prod(eval(shape, {"d": d})) for shape, _ in DESCRIPTIONS.values())
    return 8 * (per_save + 1) * saves * members


def check_saves_fit(saves: int, d: int, members: int = 1) -> None:
    """Refuse (one line, before allocating) a trajectory of ``saves`` saved times that would not
    fit in memory (:func:`saves_bytes`)."""
    from .resources import check_fits

    check_fits(saves_bytes(saves, d, members), f"{saves} saved times of every observable (d={d})",
               "save fewer times (saves, or save_every for gradient descent)")


def observables(engine, y, args) -> dict:
    """Every observable of :data:`DESCRIPTIONS` at state ``y``."""
    q = engine.quantities(y, args)
    groups = args.dataset.groups
    onehot = (groups[:, None] == jnp.arange(1, 5)[None, :]).astype(q.margins.dtype)
    counts = onehot.sum(0)
    losses = logistic_loss(q.margins)
    g = logistic_g(q.margins)
    S = g @ onehot
    total = g.sum()
    C = q.M - args.ref.M0
    d = C.shape[0]
    irrelevant = (jnp.arange(d)[:, None] >= 3) | (jnp.arange(d)[None, :] >= 3)
    return {
        "loss": losses.mean(),
        "loss_groups": jnp.where(counts > 0, (losses @ onehot) / jnp.maximum(counts, 1), jnp.nan),
        "min_margin": q.margins.min(),
        "test_loss": logistic_loss(q.test_margins).mean(),
        "grad_norm2": q.grad_norm2,
        "G": q.G,
        "G_special": q.G[:3],
        "scores": q.M[:3, :3],
        "value_corr": q.value_corr,
        "key_corr": q.key_corr,
        "query_corr": q.query_corr,
        "neuron_gram_change": q.neuron_gram_change,
        "S": S,
        "balance_S2_S3": jnp.abs(S[1] - S[2]) / jnp.minimum(S[1], S[2]),
        "balance_all_S234_S1": total / (S[1] + S[2] + S[3] - S[0]),
        "balance_all_S1_S2": total / (S[0] - S[1]),
        "drift_KQ": q.drift_KQ,
        "drift_WV": q.drift_WV,
        "C": C[:3, :3],
        "C_irrelevant_max": jnp.max(jnp.where(irrelevant, jnp.abs(C), 0.0)),
    }
