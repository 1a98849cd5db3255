"""Observables recorded along a trajectory: losses, G, attention scores and their exact rates, balancing, the phase-1 bounds, conservation (spec 6-8)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .events import near_init_items
from .model import logistic_g, logistic_loss

#: Every observable key with its shape (per saved time) and meaning; the result-file schema.
DESCRIPTIONS: dict[str, tuple[str, str]] = {
    "loss": ("()", "training loss Lhat (Eq. 2)"),
    "loss_groups": ("(4,)", "training loss averaged over each group I1..I4 (NaN for an empty group)"),
    "min_margin": ("()", "min_i y_i F(X_i); positive once every sample is classified correctly"),
    "F_abs_max": ("()", "max_i |F(X_i)|: at t = 0 the F of Lemmas D.8, E.16 and Proposition E.21"),
    "test_loss": ("()", "loss on the fresh i.i.d. test set (generalization loss estimate)"),
    "grad_norm2": ("()", "||grad Lhat||^2 = -dLhat/dt (spec 7.4)"),
    "G": ("(d,)", "G(mu_k) = a^T W W_V mu_k for every word k = 1..d"),
    "G_special": ("(3,)", "G(mu_1), G(mu_2), G(mu_3)"),
    "G_rate": ("(3,)", "dG(mu_k)/dt, k = 1..3, exact (a Jacobian-vector product along the flow; Lemmas 4.3, 4.5)"),
    "u_norm2": ("()", "||u||^2 = ||W^T a||^2 = sum_{j1,j2} <a_j1 w_j1, a_j2 w_j2> (Eq. 5, Theorem E.27, Lemma F.10)"),
    "scores": ("(3, 3)", "attention score s(mu_i, mu_j) = mu_i^T W_K^T W_Q mu_j, i, j in 1..3"),
    "scores_rate": ("(3, 3)", "d s(mu_i, mu_j)/dt, exact (Theorem 3.2, Lemma 4.7)"),
    "score_rate_per_count": ("()", "max over word pairs (mu, nu) of |d s(nu, mu)/dt| / ((N_mu + N_nu) / n), N_mu the "
                                   "samples that hold mu (Lemma E.23)"),
    "value_corr": ("(3, 3)", "value correlation mu_i^T W_V^T W_V mu_j, i, j in 1..3"),
    "value_corr_rate": ("(3, 3)", "d (mu_i^T W_V^T W_V mu_j)/dt, exact (Corollary 4.6 = F.13)"),
    "key_corr": ("(3, 3)", "mu_i^T W_K^T W_K mu_j, i, j in 1..3"),
    "query_corr": ("(3, 3)", "mu_i^T W_Q^T W_Q mu_j, i, j in 1..3"),
    "neuron_gram_change": ("()", "||W W^T - W(0) W(0)^T||_F / ||W(0) W(0)^T||_F: change of the <w_j1, w_j2>"),
    "neuron_corr_change": ("()", "max_{j1,j2} |<w_j1, w_j2>(t) - <w_j1, w_j2>(0)| (Theorem E.28; NaN without neurons)"),
    "neuron_value_change": ("(2,)", "Definition E.2 (1), (2): max over neurons j of |w_j^T W_V mu (t) - (0)| for mu in "
                                    "mu_1..mu_3, and for the irrelevant words (NaN without neurons)"),
    "value_corr_change": ("()", "max over every pair of words of |mu^T W_V^T W_V nu (t) - (0)| (Theorem E.28)"),
    "score_change": ("()", "max over every pair of words of |mu^T W_K^T W_Q nu (t) - (0)| (Definition E.2 (3), "
                           "Theorem E.28)"),
    "KQ_change": ("()", "max over every pair of words of the change of mu^T W_K^T W_K nu and mu^T W_Q^T W_Q nu "
                        "(Definition E.2 (4), Theorem E.28)"),
    "S": ("(4,)", "group sums S_k = sum over I_k of g(y_i F_i), g(x) = 1/(1+e^x)"),
    "balance_S2_S3": ("()", "|S2 - S3| / min(S2, S3) (automatic balancing, Lemma 4.4 = F.5)"),
    "balance_all_S234_S1": ("()", "sum_i g_i / (S2 + S3 + S4 - S1) (Lemma 4.5 = F.6)"),
    "balance_all_S1_S2": ("()", "sum_i g_i / (S1 - S2) (Lemma 4.5 = F.6)"),
    "balance_all_S1_S3": ("()", "sum_i g_i / (S1 - S3) (Lemma F.6)"),
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
    from ...core.resources import check_fits

    check_fits(saves_bytes(saves, d, members), f"{saves} saved times of every observable (d={d})",
               "save fewer times (saves, or save_every for gradient descent)")


def word_counts(dataset) -> jax.Array:
    """``N_k``: how many training samples hold word k (at least once)."""
    d = dataset.d
    holds = (dataset.tokens[:, :, None] == jnp.arange(d)[None, None, :]).any(axis=1)
    return holds.sum(axis=0)


def observables(engine, y, args) -> dict:
    """Every observable of :data:`DESCRIPTIONS` at state ``y``."""
    field = engine.vector_field(None, y, args)
    q = engine.quantities(y, args, field)
    grams, grams0 = q.grams, args.ref.grams0
    # The rates of the inner products along the flow: one Jacobian-vector product.
    rates = jax.jvp(lambda y: engine.grams(y, args.dataset), (y,), (field,))[1]
    groups = args.dataset.groups
    onehot = (groups[:, None] == jnp.arange(1, 5)[None, :]).astype(q.margins.dtype)
    counts = onehot.sum(0)
    losses = logistic_loss(q.margins)
    g = logistic_g(q.margins)
    S = g @ onehot
    total = g.sum()
    C = grams.M - grams0.M
    d = C.shape[0]
    irrelevant = (jnp.arange(d)[:, None] >= 3) | (jnp.arange(d)[None, :] >= 3)
    N = word_counts(args.dataset).astype(C.dtype)
    pair_share = (N[:, None] + N[None, :]) / args.dataset.n
    per_count = jnp.where(pair_share > 0, jnp.abs(rates.M) / jnp.where(pair_share > 0, pair_share, 1.0), 0.0)
    items = near_init_items(engine, y, args)
    return {
        "loss": losses.mean(),
        "loss_groups": jnp.where(counts > 0, (losses @ onehot) / jnp.maximum(counts, 1), jnp.nan),
        "min_margin": q.margins.min(),
        "F_abs_max": jnp.abs(q.margins).max(),
        "test_loss": logistic_loss(q.test_margins).mean(),
        "grad_norm2": q.grad_norm2,
        "G": grams.G,
        "G_special": grams.G[:3],
        "G_rate": rates.G[:3],
        "u_norm2": grams.s,
        "scores": grams.M[:3, :3],
        "scores_rate": rates.M[:3, :3],
        "score_rate_per_count": per_count.max(),
        "value_corr": grams.C_V[:3, :3],
        "value_corr_rate": rates.C_V[:3, :3],
        "key_corr": grams.A[:3, :3],
        "query_corr": grams.B[:3, :3],
        "neuron_gram_change": q.neuron_gram_change,
        "neuron_corr_change": q.neuron_corr_change,
        "neuron_value_change": items[:2],
        "value_corr_change": jnp.abs(grams.C_V - grams0.C_V).max(),
        "score_change": items[2],
        "KQ_change": items[3],
        "S": S,
        "balance_S2_S3": jnp.abs(S[1] - S[2]) / jnp.minimum(S[1], S[2]),
        "balance_all_S234_S1": total / (S[1] + S[2] + S[3] - S[0]),
        "balance_all_S1_S2": total / (S[0] - S[1]),
        "balance_all_S1_S3": total / (S[0] - S[2]),
        "drift_KQ": q.drift_KQ,
        "drift_WV": q.drift_WV,
        "C": C[:3, :3],
        "C_irrelevant_max": jnp.max(jnp.where(irrelevant, jnp.abs(C), 0.0)),
    }


#: What :func:`start_facts` measures at t = 0, with its meaning (run.json's ``start`` section).
START_FACTS: dict[str, str] = {
    "softmax_dev": "max over samples, query and key positions of |p^(0,i)_{l,k} - 1/L| (Corollary D.2)",
    "G_rate": "dG(mu_k)/dt at t = 0 for every word (Lemmas 4.1, E.6 summed over the neurons)",
    "neuron_rate_target": "min and max over neurons j and mu in {mu_1, mu_2} of d(a_j w_j^T W_V mu)/dt at t = 0 "
                          "(Lemma 4.1 = E.4; NaN without neurons)",
    "neuron_rate_common": "max over neurons of |d(a_j w_j^T W_V mu_3)/dt| at t = 0 (Lemma 4.2 = E.16)",
    "neuron_rate_irrelevant": "max over neurons and irrelevant words of |d(a_j w_j^T W_V mu)/dt| at t = 0 (Lemma E.6)",
    "dF_dt_min": "min over each group I1..I4 of dF(X_i)/dt at t = 0 (Theorem E.19's proof; NaN for an empty group)",
    "dF_dt_max": "max over each group I1..I4 of dF(X_i)/dt at t = 0",
    # Measured on the host from the start and the training set (start_record):
    "n": "training samples", "L": "sequence length", "d": "vocabulary size",
    "m": "attention width", "m1": "MLP width",
    "sigma0": "std of the entries of W_V, W_K, W_Q of the start (drawn with, or measured: flowsim.models.cooccurrence.init.start_scales)",
    "sigma1": "std of the entries of W of the start",
    "group_counts": "sizes of I1..I4 in the training set",
    "irrelevant_max_uses": "the most times one irrelevant word occurs in the whole training set (Assumption 2.3: 1)",
}


def start_facts(engine, y, args) -> dict:
    """:data:`START_FACTS` at the state ``y`` (the start): what the theorems say about t = 0 that the
    saved observables do not hold."""
    data = args.dataset
    field = engine.vector_field(None, y, args)
    along = lambda f: jax.jvp(f, (y,), (field,))[1]
    grams = engine.grams(y, data)
    # Corollary D.2: the softmax of sample i over its key positions k for each query position l.
    S = grams.M / jnp.sqrt(engine.attention_width(y))
    logits = S[data.tokens[:, :, None], data.tokens[:, None, :]]  # (n, key k, query l)
    L = data.tokens.shape[1]
    softmax_dev = jnp.abs(jax.nn.softmax(logits, axis=1) - 1 / L).max()
    nan = jnp.array(jnp.nan, grams.M.dtype)
    if engine.neuron_values(y, data) is None:
        target, common, irrelevant = jnp.stack([nan, nan]), nan, nan
    else:
        rates = along(lambda y: engine.neuron_values(y, data))
        target = jnp.stack([rates[:, :2].min(), rates[:, :2].max()])
        common, irrelevant = jnp.abs(rates[:, 2]).max(), jnp.abs(rates[:, 3:]).max(initial=0.0)
    dF = data.labels * along(lambda y: engine.margins(y, args))
    member = data.groups[:, None] == jnp.arange(1, 5)[None, :]
    present = member.any(0)
    return {
        "softmax_dev": softmax_dev,
        "G_rate": along(lambda y: engine.grams(y, data).G),
        "neuron_rate_target": target,
        "neuron_rate_common": common,
        "neuron_rate_irrelevant": irrelevant,
        "dF_dt_min": jnp.where(present, jnp.where(member, dF[:, None], jnp.inf).min(0), jnp.nan),
        "dF_dt_max": jnp.where(present, jnp.where(member, dF[:, None], -jnp.inf).max(0), jnp.nan),
    }


def start_record(facts: dict, start, dataset) -> dict:
    """The start's facts as plain numbers (for results and run.json): :func:`start_facts` measured
    on the device, with the scales and the training set's facts measured here."""
    import numpy as np

    from .init import start_scales

    tokens, groups = np.asarray(dataset.tokens), np.asarray(dataset.groups)
    uses = np.bincount(tokens.ravel(), minlength=dataset.d)[3:]
    record = {k: np.asarray(v, float).tolist() for k, v in facts.items()}
    sigma0, sigma1 = start_scales(start)
    return record | {"n": int(dataset.n), "L": int(dataset.L), "d": int(dataset.d), "m": int(start.m),
                     "m1": int(start.m1), "sigma0": sigma0, "sigma1": sigma1,
                     "group_counts": [int(np.sum(groups == k)) for k in range(1, 5)],
                     "irrelevant_max_uses": int(uses.max(initial=0))}
