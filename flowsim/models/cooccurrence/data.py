"""Co-occurrence data (paper: Definition 2.1, Assumption 2.3; spec section 1)."""

from __future__ import annotations

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int, PRNGKeyArray

from ...core.messages import shown
from ...core.draws import draw
from ...core.names import DATA_MODES, EMBEDDINGS, PAPER
from ...core.resources import check_fits

#: Group probabilities of the data distribution: I1 (both targets), I2 (only mu_1),
#: I3 (only mu_2), I4 (neither).
GROUP_PROBS = (1 / 2, 1 / 6, 1 / 6, 1 / 6)

# Word indices (0-based) of the target words mu_1, mu_2 and the common word mu_3.
MU1, MU2, MU3 = 0, 1, 2
N_SPECIAL = 3


class Dataset(eqx.Module):
    """A training (or test) set of co-occurrence sequences.

    Sample ``i`` is ``X_i = embedding[:, tokens[i]]`` (a ``d x L`` matrix whose columns are
    word embeddings) with label ``labels[i]`` in {+1, -1} and group ``groups[i]`` in 1..4
    (I1: both targets, I2: only mu_1, I3: only mu_2, I4: neither).  Word ``k`` (0-based) is
    ``mu_{k+1}``: 0 and 1 are the targets, 2 the common word, the rest irrelevant words.

    ``embedding`` is a finite orthonormal ``d x d`` matrix.  ``basis`` is ``"standard"`` when
    it is the identity (the flow then gathers columns instead of multiplying by the embedding);
    any other name (``"random"`` for :func:`make_embedding`'s draw) means a general orthonormal
    basis.  Left unset it is read from the matrix: ``"standard"`` for the identity, else
    ``"orthonormal"``.  Every field is checked here (shapes, dtypes, values, with the valid
    range in a one-line ``ValueError``), so a dataset that is not one never reaches the flow.
    """

    tokens: Int[Array, "n L"]
    labels: Float[Array, " n"]
    groups: Int[Array, " n"]
    embedding: Float[Array, "d d"]
    basis: str | None = eqx.field(static=True, default=None)

    def __post_init__(self):
        for name in ("tokens", "labels", "groups", "embedding"):
            if not hasattr(getattr(self, name), "dtype"):  # a list: checked as the array it stands for
                setattr(self, name, np.asarray(getattr(self, name)))
        if self.basis is None:
            known = not isinstance(self.embedding, jax.core.Tracer) and np.ndim(self.embedding) == 2
            self.basis = "standard" if known and _is_identity(np.asarray(self.embedding)) else "orthonormal"

    def __check_init__(self):
        _check_shapes(self.tokens, self.labels, self.groups, self.embedding, self.basis)
        if not any(isinstance(x, jax.core.Tracer) for x in (self.tokens, self.labels, self.groups, self.embedding)):
            _check_values(*(np.asarray(x) for x in (self.tokens, self.labels, self.groups, self.embedding)),
                          self.basis)

    @property
    def n(self) -> int:
        return self.tokens.shape[0]

    @property
    def L(self) -> int:
        return self.tokens.shape[1]

    @property
    def d(self) -> int:
        return self.embedding.shape[0]

    @property
    def X(self) -> Float[Array, "n d L"]:
        """The samples as ``d x L`` matrices, ``X[i] = embedding[:, tokens[i]]``."""
        return jnp.moveaxis(self.embedding[:, self.tokens], 0, 1)


def _check_shapes(tokens, labels, groups, embedding, basis) -> None:
    """Shapes and dtypes of a :class:`Dataset`'s fields, with the sizes of :func:`check_sizes`."""
    integer, real = (jnp.integer,), (jnp.integer, jnp.floating)
    kinds = {"tokens": (tokens, integer, "integer word indices"), "labels": (labels, real, "real numbers"),
             "groups": (groups, integer, "integers"), "embedding": (embedding, (jnp.floating,), "floating-point numbers")}
    for name, (x, allowed, what) in kinds.items():
        if not any(jnp.issubdtype(x.dtype, kind) for kind in allowed):
            raise ValueError(f"Dataset.{name} must hold {what}, got dtype {x.dtype}")
    if tokens.ndim != 2 or tokens.shape[0] < 1 or tokens.shape[1] < 3:
        raise ValueError(f"Dataset.tokens must be an n x L matrix with n >= 1 samples of L >= 3 words "
                         f"(mu_1, mu_2 and mu_3 must fit), got shape {tokens.shape}")
    n = tokens.shape[0]
    if embedding.ndim != 2 or embedding.shape[0] != embedding.shape[1] or embedding.shape[0] < 4:
        raise ValueError(f"Dataset.embedding must be a square d x d matrix with d >= 4 (3 special words and an "
                         f"irrelevant one), got shape {embedding.shape}")
    for name, x in (("labels", labels), ("groups", groups)):
        if x.shape != (n,):
            raise ValueError(f"Dataset.{name} must have shape ({n},), one per row of tokens {tokens.shape}, "
                             f"got {x.shape}")
    if not isinstance(basis, str):
        raise ValueError(f"Dataset.basis must be a name (standard for the identity), got {shown(basis)}")


def _check_values(tokens, labels, groups, embedding, basis) -> None:
    """The values of a :class:`Dataset`'s fields: word indices, labels, groups, an orthonormal embedding."""
    d = embedding.shape[0]
    if tokens.min() < 0 or tokens.max() >= d:
        raise ValueError(f"Dataset.tokens must be word indices in [0, {d - 1}], got values in "
                         f"[{tokens.min()}, {tokens.max()}]")
    if not np.all(np.abs(labels) == 1):
        raise ValueError(f"Dataset.labels must be +1 or -1, got {shown(labels[np.abs(labels) != 1][0].item())}")
    if not np.all((groups >= 1) & (groups <= 4)):
        raise ValueError(f"Dataset.groups must be in 1..4 (I1..I4), got {groups[(groups < 1) | (groups > 4)][0]}")
    if not np.all(np.isfinite(embedding)):
        raise ValueError("Dataset.embedding has non-finite entries (NaN or inf)")
    if basis == "standard":
        if not _is_identity(embedding):
            raise ValueError("Dataset.basis is 'standard' (one-hot words) but the embedding is not the identity; "
                             "leave basis unset to have it read from the matrix")
        return
    # Orthonormal to a few rounding errors of the embedding's precision, and never looser than 1e-6.
    tolerance = max(1e-6, 16 * d * float(np.finfo(embedding.dtype).eps))
    error = np.max(np.abs(embedding.T @ embedding - np.eye(d)))
    if not error <= tolerance:
        raise ValueError(f"Dataset.embedding must be orthonormal (E^T E = I): its largest deviation is "
                         f"{error:.3g}, more than {tolerance:.3g}")


def _is_identity(embedding: np.ndarray) -> bool:
    return embedding.shape[0] == embedding.shape[1] and np.array_equal(embedding, np.eye(embedding.shape[0]))


def irrelevant_slots(n: int, L: int) -> int:
    """Number of irrelevant-word positions in a balanced (theory-mode) training set of size n."""
    counts = balanced_counts(n)
    return n * L - n - 2 * counts[0] - counts[1] - counts[2]


def balanced_counts(n: int) -> tuple[int, int, int, int]:
    """Group sizes n/2, n/6, n/6, n/6 (Assumption 2.3); a remainder goes to I2, I3, I4 in turn."""
    n1 = n // 2
    rest = n - n1
    base, extra = divmod(rest, 3)
    return (n1, base + (extra > 0), base + (extra > 1), base)


def make_embedding(d: int, basis: str = PAPER.embedding, key: PRNGKeyArray | None = None):
    """Orthonormal word embeddings as the columns of a ``d x d`` (float64 numpy) matrix.

    ``"standard"`` is the identity (one-hot words); ``"random"`` is a Haar-random orthogonal
    matrix drawn from ``key`` (QR of a Gaussian matrix with the signs of R's diagonal fixed).
    """
    if basis == "standard":
        return np.eye(d)
    if basis == "random":
        if key is None:
            raise ValueError("a random embedding needs a PRNG key")
        gauss = draw(jax.random.normal, key, (d, d), jnp.float64)
        q, r = np.linalg.qr(gauss)
        return q * np.sign(np.diagonal(r))[None, :]
    raise ValueError(f"embedding must be one of {', '.join(EMBEDDINGS)}, got {shown(basis)}")


def check_sizes(n: int, L: int, d: int, mode: str) -> None:
    """Refuse sizes for which the data distribution or the chosen mode cannot be built."""
    if mode not in DATA_MODES:
        raise ValueError(f"data mode must be one of {', '.join(DATA_MODES)}, got {shown(mode)}")
    if n < 1:
        raise ValueError(f"n must be a positive integer, got {n}")
    if L < 3:
        raise ValueError(f"L must be >= 3 (a sequence holds mu_1, mu_2 and mu_3), got {L}")
    if d < 4:
        raise ValueError(f"d must be >= 4 (3 special words and at least one irrelevant), got {d}")
    if mode == "theory":
        if n % 6:
            raise ValueError(f"theory mode needs n divisible by 6 (groups n/2, n/6, n/6, n/6), got {n}")
        need = N_SPECIAL + irrelevant_slots(n, L)
        if d < need:
            raise ValueError(
                f"theory mode with n={n}, L={L} uses every irrelevant word once and needs "
                f"d >= {need}, got {d}"
            )


def dataset_bytes(n: int, L: int, d: int) -> int:
    """Peak memory of drawing ``n`` sequences of length ``L`` over ``d`` words: about 40 bytes
    per token (positions drawn as float64 and argsorted, the tokens, the words of the open
    slots), the per-sample arrays, and the d x d embedding with its QR for a random basis."""
    return 40 * n * L + 24 * n + 32 * d * d


def check_fits_data(n: int, L: int, d: int, option: str = "n") -> None:
    """Refuse, before anything is allocated, ``n`` sequences that cannot fit in memory
    (:class:`flowsim.core.resources.ResourceError`); ``option`` names the size in the message."""
    check_fits(dataset_bytes(n, L, d), f"a data set of {option}={n} sequences of length L={L} over d={d} words",
               f"choose a smaller {option}")


def make_dataset(
    key: PRNGKeyArray,
    n: int = PAPER.n,
    L: int = PAPER.L,
    d: int = PAPER.d,
    *,
    mode: str = PAPER.data_mode,
    counts: tuple[int, int, int, int] | None = None,
    embedding: str = PAPER.embedding,
) -> Dataset:
    """Draw a training set (spec section 1).

    - ``mode="theory"`` (Assumption 2.3): exactly n/2, n/6, n/6, n/6 samples in I1..I4 and
      every irrelevant word used at most once in the whole set (needs
      ``d >= 3 + irrelevant_slots(n, L)``);
    - ``mode="sampled"``: fixed group counts (``counts``, default balanced as above),
      irrelevant words drawn uniformly with repetition; the paper's experiment is
      ``n=60, counts=(30, 10, 10, 10), L=5, d=64``;
    - ``mode="iid"``: groups drawn i.i.d. with probabilities 1/2, 1/6, 1/6, 1/6, as for a test set.

    In every sample mu_3 sits at a uniformly random position and the targets at distinct
    other random positions.  The same key gives the same data, inside or outside
    ``jax.enable_x64`` (:func:`flowsim.core.draws.draw`).
    """
    check_sizes(n, L, d, mode)
    check_fits_data(n, L, d)
    if mode == "iid":
        if counts is not None:
            raise ValueError("counts cannot be given in iid mode")
    else:
        counts = balanced_counts(n) if counts is None else tuple(int(c) for c in counts)
        if len(counts) != 4 or min(counts) < 0 or sum(counts) != n:
            raise ValueError(f"counts must be 4 non-negative group sizes summing to n={n}, got {counts}")
        if mode == "theory" and counts != balanced_counts(n):
            raise ValueError(f"theory mode needs the balanced counts {balanced_counts(n)}, got {counts}")
    k_irr, k_emb, groups, pos = draw(_draw_layout, key, n=n, L=L, counts=counts)
    groups = groups.astype(np.int32)
    rows = np.arange(n)
    tokens = np.full((n, L), -1, dtype=np.int32)
    tokens[rows, pos[:, 0]] = MU3
    first = np.where(groups == 3, MU2, MU1)
    has_first = groups <= 3
    tokens[rows[has_first], pos[has_first, 1]] = first[has_first]
    both = groups == 1
    tokens[rows[both], pos[both, 2]] = MU2

    free = tokens < 0
    n_free = int(free.sum())
    # Words drawn for every slot, the open ones taking the first n_free (a draw's first words are
    # those of a shorter draw): one program for every draw of these sizes, however many are open.
    words = draw(_draw_words, k_irr, slots=n * L, d=d, distinct=mode == "theory")
    tokens[free] = words[:n_free].astype(np.int32)

    labels = np.where(groups == 1, 1.0, -1.0)
    return Dataset(
        tokens=tokens,
        labels=labels,
        groups=groups,
        embedding=make_embedding(d, embedding, k_emb),
        basis=embedding,
    )


# The draws run as two compiled programs rather than one per eager random call: a new process
# then fetches two programs from the compilation cache instead of a dozen.
@functools.partial(jax.jit, static_argnames=("n", "L", "counts"))
def _draw_layout(key, *, n, L, counts):
    """Groups (i.i.d. if ``counts`` is None, else a permutation of fixed counts) and, per sample,
    a random permutation of positions: slot 0 gets mu_3, slots 1 and 2 the targets."""
    k_group, k_pos, k_irr, k_emb = jax.random.split(key, 4)
    if counts is None:
        groups = 1 + jax.random.choice(k_group, 4, (n,), p=jnp.asarray(GROUP_PROBS))
    else:
        groups = jnp.repeat(jnp.arange(1, 5), jnp.asarray(counts), total_repeat_length=n)
        groups = jax.random.permutation(k_group, groups)
    return k_irr, k_emb, groups, jnp.argsort(jax.random.uniform(k_pos, (n, L)), axis=1)


@functools.partial(jax.jit, static_argnames=("slots", "d", "distinct"))
def _draw_words(key, *, slots, d, distinct):
    """Irrelevant words in order for up to ``slots`` open slots: distinct ones (theory mode: every
    irrelevant word once) or uniform."""
    if distinct:
        return N_SPECIAL + jax.random.permutation(key, d - N_SPECIAL)
    return jax.random.randint(key, (slots,), N_SPECIAL, d)


def sample_test_set(key: PRNGKeyArray, n: int, like: Dataset) -> Dataset:
    """``n`` fresh i.i.d. draws from the data distribution (the test set of size ``n_test``),
    with ``like``'s L, d and embedding."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"the test set size n_test must be a positive integer, got {shown(n)}")
    check_fits_data(n, like.L, like.d, "n_test")
    fresh = make_dataset(key, n, like.L, like.d, mode="iid")
    return Dataset(
        tokens=fresh.tokens,
        labels=fresh.labels,
        groups=fresh.groups,
        embedding=like.embedding,
        basis=like.basis,
    )
