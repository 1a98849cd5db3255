"""An independent float64 numpy reference of the model, the loss and the observables (PAPER_SPEC 1-3, 6; Theorem 3.3), for tests.

Written from the spec alone: nothing here imports flowsim's model or observables, so a test
that compares flowsim against these functions compares two separate derivations.  The sizes
tests use are tiny, so clarity wins over speed (Eq. (1) is an explicit loop).  Words are 0-based:
word k is mu_{k+1}, so 0, 1 are the targets, 2 the common word, 3.. the irrelevant words.
"""

from __future__ import annotations

import dataclasses

import numpy as np

#: The matrices of Eq. (1) that the flow trains (a is fixed), in the order of flat parameter vectors.
TRAINED = ("W", "W_V", "W_K", "W_Q")


@dataclasses.dataclass(frozen=True)
class Net:
    """The parameters of Eq. (1) as float64 numpy arrays: ``W`` (m1 x m, rows w_j^T), ``W_V``,
    ``W_K``, ``W_Q`` (m x d) and ``a`` (m1, entries +-1)."""

    W: np.ndarray
    W_V: np.ndarray
    W_K: np.ndarray
    W_Q: np.ndarray
    a: np.ndarray

    @classmethod
    def of(cls, p) -> Net:
        """From any object with attributes ``W, W_V, W_K, W_Q, a`` (e.g. ``flowsim.Params``)."""
        return cls(*(np.asarray(getattr(p, f), np.float64) for f in ("W", "W_V", "W_K", "W_Q", "a")))

    @property
    def m(self) -> int:
        return self.W_V.shape[0]


@dataclasses.dataclass(frozen=True)
class Data:
    """A sample set (spec 1): ``X[i]`` the d x L matrix of sample i, ``y`` the labels in {+1, -1},
    ``groups`` in 1..4 (I1 both targets, I2 only mu_1, I3 only mu_2, I4 neither), ``E`` the
    embedding (column k is mu_{k+1})."""

    X: np.ndarray
    y: np.ndarray
    groups: np.ndarray
    E: np.ndarray

    @classmethod
    def of(cls, dataset) -> Data:
        """From any object with ``tokens`` (n x L word indices), ``labels``, ``groups`` and
        ``embedding`` (e.g. ``flowsim.Dataset``): ``X_i = [mu_{t_i1} .. mu_{t_iL}]``."""
        E = np.asarray(dataset.embedding, np.float64)
        tokens = np.asarray(dataset.tokens)
        X = np.stack([E[:, t] for t in tokens])
        return cls(X=X, y=np.asarray(dataset.labels, np.float64), groups=np.asarray(dataset.groups), E=E)


# -- Eq. (1) and Eq. (2) ---------------------------------------------------------------------


def F(net: Net, X: np.ndarray, m: float | None = None) -> float:
    """Eq. (1) for one d x L sample, by loops over query positions l and neurons j:
    ``sum_l sum_j a_j w_j^T W_V X softmax(X^T W_K^T W_Q x_l / sqrt(m))``, the softmax over keys.
    ``m`` is the attention width (default: the rows of W_V); give it for matrices whose rows are
    coordinates in a subspace of R^m (spec 7.6): a one-neuron net with W = u^T, a = (1)."""
    L = X.shape[1]
    m = net.m if m is None else m
    total = 0.0
    for l in range(L):
        logits = np.array([X[:, k] @ net.W_K.T @ net.W_Q @ X[:, l] for k in range(L)]) / np.sqrt(m)
        att = np.exp(logits - logits.max())
        att /= att.sum()
        for j in range(net.W.shape[0]):
            total += net.a[j] * net.W[j] @ net.W_V @ X @ att
    return total


def outputs(net: Net, data: Data, m: float | None = None) -> np.ndarray:
    """F(X_i) for every sample (``m``: as for :func:`F`)."""
    return np.array([F(net, X, m) for X in data.X])


def margins(net: Net, data: Data) -> np.ndarray:
    """y_i F(X_i): positive when sample i is classified correctly."""
    return data.y * outputs(net, data)


def l(x):
    """The logistic loss l(x) = log(1 + exp(-x)) (spec 3), without overflow."""
    return np.logaddexp(0.0, -np.asarray(x, np.float64))


def g(x):
    """g(x) = -l'(x) = 1 / (1 + exp(x)) (spec 3), written as exp(-log(1 + e^x)) to avoid overflow."""
    return np.exp(-np.logaddexp(0.0, np.asarray(x, np.float64)))


def loss(net: Net, data: Data) -> float:
    """Lhat = (1/n) sum_i l(y_i F(X_i)) (Eq. 2); on a test set, the test loss."""
    return float(np.mean(l(margins(net, data))))


def loss_groups(net: Net, data: Data) -> np.ndarray:
    """The mean loss over each group I1..I4, NaN for an empty group."""
    losses = l(margins(net, data))
    return np.array([losses[data.groups == k].mean() if np.any(data.groups == k) else np.nan for k in (1, 2, 3, 4)])


def group_sums(net: Net, data: Data) -> np.ndarray:
    """S_k = sum over I_k of g(y_i F_i), k = 1..4 (spec 6, automatic balancing)."""
    gi = g(margins(net, data))
    return np.array([gi[data.groups == k].sum() for k in (1, 2, 3, 4)])


def balance(S: np.ndarray) -> dict[str, float]:
    """Lemmas 4.4-4.5's ratios from S = (S1, S2, S3, S4): |S2 - S3| / min(S2, S3),
    sum_i g_i / (S2 + S3 + S4 - S1) and sum_i g_i / (S1 - S2)."""
    S1, S2, S3, S4 = S
    total = S1 + S2 + S3 + S4
    return {"balance_S2_S3": abs(S2 - S3) / min(S2, S3),
            "balance_all_S234_S1": total / (S2 + S3 + S4 - S1),
            "balance_all_S1_S2": total / (S1 - S2)}


# -- the paper's quantities of the parameters ---------------------------------------------------


def G(net: Net, E: np.ndarray) -> np.ndarray:
    """G(mu_k) = a^T W W_V mu_k for every word k (spec 2)."""
    return np.array([net.a @ net.W @ net.W_V @ E[:, k] for k in range(E.shape[1])])


def scores(net: Net, E: np.ndarray) -> np.ndarray:
    """s(mu_i, mu_j) = mu_i^T W_K^T W_Q mu_j for every pair of words (spec 2)."""
    d = E.shape[1]
    return np.array([[E[:, i] @ net.W_K.T @ net.W_Q @ E[:, j] for j in range(d)] for i in range(d)])


def correlation(M: np.ndarray, E: np.ndarray, words=(0, 1, 2)) -> np.ndarray:
    """mu_i^T M^T M mu_j for the given words (M = W_V: value, W_K: key, W_Q: query correlations)."""
    return np.array([[(M @ E[:, i]) @ (M @ E[:, j]) for j in words] for i in words])


def C(net: Net, net0: Net, E: np.ndarray) -> np.ndarray:
    """Theorem 3.3's coefficients: W_K^T W_Q - W_K(0)^T W_Q(0) = sum_ij C_ij mu_i mu_j^T, so
    (the mu orthonormal) C_ij = mu_i^T (W_K^T W_Q - W_K(0)^T W_Q(0)) mu_j = s_ij(t) - s_ij(0)."""
    return scores(net, E) - scores(net0, E)


def C_irrelevant_max(Cm: np.ndarray) -> float:
    """max |C_ij| over the pairs (i, j) where i or j is an irrelevant word (0-based index >= 3)."""
    d = Cm.shape[0]
    return max(abs(Cm[i, j]) for i in range(d) for j in range(d) if i >= 3 or j >= 3)


def neuron_gram_change(net: Net, net0: Net) -> float:
    """||W W^T - W(0) W(0)^T||_F / ||W(0) W(0)^T||_F: how far the inner products <w_j1, w_j2> moved."""
    return float(np.linalg.norm(net.W @ net.W.T - net0.W @ net0.W.T) / np.linalg.norm(net0.W @ net0.W.T))


def observables(net: Net, net0: Net, data: Data, test: Data | None = None) -> dict[str, np.ndarray]:
    """The observables flowsim records (same keys), at parameters ``net`` of a flow started at
    ``net0``; ``test_loss`` only with a ``test`` set."""
    E = data.E
    S = group_sums(net, data)
    Gk, Cm = G(net, E), C(net, net0, E)
    out = {
        "loss": loss(net, data),
        "loss_groups": loss_groups(net, data),
        "min_margin": margins(net, data).min(),
        "G": Gk,
        "G_special": Gk[:3],
        "scores": scores(net, E)[:3, :3],
        "value_corr": correlation(net.W_V, E),
        "key_corr": correlation(net.W_K, E),
        "query_corr": correlation(net.W_Q, E),
        "neuron_gram_change": neuron_gram_change(net, net0),
        "S": S,
        **balance(S),
        "C": Cm[:3, :3],
        "C_irrelevant_max": C_irrelevant_max(Cm),
    }
    if test is not None:
        out["test_loss"] = loss(net, test)
    return out


# -- the loss as a function of one flat vector, for finite differences ---------------------------


def flatten(net: Net) -> np.ndarray:
    """The trained matrices (W, W_V, W_K, W_Q), raveled and concatenated."""
    return np.concatenate([getattr(net, f).ravel() for f in TRAINED])


def unflatten(theta: np.ndarray, like: Net) -> Net:
    """The :class:`Net` with trained matrices read from ``theta`` (shapes and ``a`` from ``like``)."""
    parts, i = {}, 0
    for f in TRAINED:
        shape = getattr(like, f).shape
        size = int(np.prod(shape))
        parts[f] = np.asarray(theta[i:i + size], np.float64).reshape(shape)
        i += size
    return Net(**parts, a=like.a)


def loss_flat(theta: np.ndarray, like: Net, data: Data) -> float:
    """Lhat (Eq. 2) at the trained matrices ``theta`` (:func:`flatten`'s layout), ``a`` from ``like``."""
    return loss(unflatten(theta, like), data)


def directional_derivative(f, x: np.ndarray, v: np.ndarray, h: float = 3e-3) -> float:
    """d/ds f(x + s v) at s = 0 by Richardson-extrapolated central differences (error O(h^4)),
    with steps of length h along v / |v|."""
    norm = np.linalg.norm(v)
    central = lambda h: (f(x + h * v / norm) - f(x - h * v / norm)) / (2 * h)
    return norm * (4 * central(h / 2) - central(h)) / 3
