"""Geometry of a point cloud of hidden states: how many directions the prompts spread over.

Every metric takes a matrix `X` of shape (N, D), one row per prompt, and most work on the
centered matrix (the mean row subtracted), so a shared offset does not count as structure.
The spectral metrics come from the eigenvalues of the scatter matrix Xc^T Xc, computed from
the smaller of the two Gram matrices (Xc Xc^T when N < D), so a cloud of 256 prompts in 576
dimensions costs one 256 x 256 eigendecomposition.

All of these numbers depend on N: a cloud of N points spans at most N - 1 centered
directions, so the effective rank and IsoScore of the same model grow with the number of
prompts. Compare models only on the same prompts, and read them against `gaussian_null`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

EPS = 1e-12  # norms below this count as zero vectors
T = TypeVar("T")
R = TypeVar("R")
# Threads shared by every caller in the process, so several users cannot multiply them.
_POOL = ThreadPoolExecutor(min(4, os.cpu_count() or 1), thread_name_prefix="lab-geometry")
_BLAS_LOCK = threading.Lock()
_BLAS_LIMITED = False


@dataclass(frozen=True)
class MetricInfo:
    """Reader-facing description of a metric: label, range and the "more collapsed" direction."""

    label: str
    value_range: str
    collapsed_when: str  # "lower" or "higher"
    description: str


METRICS: dict[str, MetricInfo] = {
    "erank": MetricInfo(
        "effective rank", "1 to min(N - 1, D)", "lower",
        "how many directions the prompts really use (exp of the entropy of the singular values)",
    ),
    "participation_ratio": MetricInfo(
        "participation ratio", "1 to min(N - 1, D)", "lower",
        "how many directions carry the variance, counted by (sum of variances)^2 / sum of squares",
    ),
    "top1_share": MetricInfo(
        "share of variance in the first component", "1 / rank to 1", "higher",
        "the part of all variance that lies along the single largest direction",
    ),
    "n90": MetricInfo(
        "components for 90% of variance", "1 to min(N - 1, D)", "lower",
        "how many principal directions are needed to explain 90% of the variance",
    ),
    "cosine_raw": MetricInfo(
        "mean pairwise cosine (raw)", "-1 / (N - 1) to 1", "higher",
        "how much all hidden states point the same way, offset included",
    ),
    "cosine_centered": MetricInfo(
        "mean pairwise cosine (centered)", "-1 / (N - 1) to 1", "higher",
        "the same after subtracting the mean hidden state; near 0 for a round cloud",
    ),
    "isoscore": MetricInfo(
        "IsoScore", "0 to 1", "lower",
        "how evenly the variance is spread over all D dimensions (1 = perfectly round)",
    ),
}


def _as_matrix(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] < 2 or X.shape[1] < 1:
        raise ValueError(
            f"Expected a matrix of shape (N, D) with N >= 2 rows, got shape {X.shape}. "
            "Pass one row per prompt and at least two prompts."
        )
    if not np.isfinite(X).all():
        raise ValueError("The matrix contains NaN or infinite values; check the model's outputs.")
    return X


def _row_counts(n: int, weights: np.ndarray | None) -> np.ndarray:
    if weights is None:
        return np.ones(n)
    weights = np.asarray(weights, dtype=np.float64)
    if weights.shape != (n,) or (weights < 0).any() or weights.sum() < 2:
        raise ValueError(f"Row weights must be {n} non-negative counts that sum to at least 2.")
    return weights


def covariance_eigenvalues(X: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Return the eigenvalues of the centered scatter matrix Xc^T Xc, largest first.

    X: (N, D). `weights` (N,) are row counts: the result equals that of the matrix in which
    row i is repeated weights[i] times, which is how a bootstrap resample is scored without
    building it. The output has min(rows kept, D) entries and is clipped at 0 against
    rounding. Scaling by 1 / (N - 1) is left out because every metric here is scale-free.
    """
    X = _as_matrix(X)
    return _covariance_eigenvalues(X, _row_counts(X.shape[0], weights))


def _covariance_eigenvalues(X: np.ndarray, counts: np.ndarray) -> np.ndarray:
    keep = counts > 0
    mean = counts @ X / counts.sum()  # (D,)
    Xw = X[keep] if not keep.all() else X.copy()  # a copy either way, changed in place below
    Xw -= mean
    Xw *= np.sqrt(counts[keep])[:, None]  # (N', D), Xw^T Xw = resampled scatter
    n, d = Xw.shape
    gram = Xw @ Xw.T if n < d else Xw.T @ Xw  # the smaller of (N', N') and (D, D)
    eigvals = np.linalg.eigvalsh(gram)[::-1]
    return np.clip(eigvals, 0.0, None)


def _spectral_metrics(eigvals: np.ndarray, X: np.ndarray, sum_sq: float | None = None
                      ) -> dict[str, float]:
    """Score the spectrum of X. `sum_sq` is sum(X**2), passed in when already known."""
    total = eigvals.sum()
    sum_sq = float(np.einsum("ij,ij->", X, X)) if sum_sq is None else sum_sq
    # Identical rows leave only rounding noise after centering. That noise is below 1e-24
    # of the size of X, so a smaller total means the cloud has no direction to measure.
    if total <= 1e-24 * sum_sq or total == 0.0:
        nan = float("nan")
        return {"erank": nan, "participation_ratio": nan, "top1_share": nan, "n90": nan,
                "isoscore": nan}
    return {
        "erank": _effective_rank(eigvals),
        "participation_ratio": float(total**2 / np.sum(eigvals**2)),
        "top1_share": float(eigvals[0] / total),
        "n90": _n_components(eigvals, 0.9),
        "isoscore": _isoscore(eigvals, X.shape[1]),
    }


def _effective_rank(eigvals: np.ndarray) -> float:
    singular = np.sqrt(eigvals)
    p = singular / singular.sum()
    p = p[p > 0]
    return float(np.exp(-np.sum(p * np.log(p))))


def _n_components(eigvals: np.ndarray, share: float) -> float:
    cumulative = np.cumsum(eigvals) / eigvals.sum()
    return float(np.searchsorted(cumulative, share - 1e-12) + 1)


def _isoscore(eigvals: np.ndarray, dim: int) -> float:
    # Rudman et al. 2022, "IsoScore: Measuring the Uniformity of Embedding Space Utilization":
    # after rotating to the principal axes, the variance vector (one entry per dimension,
    # zeros for the directions a cloud of N <= D points cannot reach) is scaled to norm sqrt(n),
    # its distance from the all-ones vector is the isotropy defect, and the defect is mapped
    # to the share of dimensions used uniformly.
    variances = np.zeros(dim)
    variances[: min(len(eigvals), dim)] = eigvals[:dim]
    n = float(dim)
    if dim == 1:
        return 1.0
    normalized = variances * np.sqrt(n) / np.linalg.norm(variances)
    defect = np.linalg.norm(normalized - 1.0) / np.sqrt(2.0 * (n - np.sqrt(n)))
    k = (n - defect**2 * (n - np.sqrt(n))) ** 2 / n  # dimensions used uniformly, 1..n
    return float((k - 1.0) / (n - 1.0))


def effective_rank(X: np.ndarray) -> float:
    """Return the effective rank of the centered X (Roy and Vetterli 2007).

    exp of the Shannon entropy of the singular values divided by their sum. Range 1 (all
    variance along one direction) to min(N - 1, D) (all singular values equal); lower means
    more collapsed. NaN when all rows are equal.
    """
    X = _as_matrix(X)
    return _spectral_metrics(covariance_eigenvalues(X), X)["erank"]


def participation_ratio(X: np.ndarray) -> float:
    """Return (sum of variances)^2 / (sum of squared variances) of the principal components.

    Range 1 to min(N - 1, D); lower means more collapsed. NaN when all rows are equal.
    """
    X = _as_matrix(X)
    return _spectral_metrics(covariance_eigenvalues(X), X)["participation_ratio"]


def top1_share(X: np.ndarray) -> float:
    """Return the share of the total variance along the first principal component.

    Range 1 / rank to 1; higher means more collapsed. NaN when all rows are equal.
    """
    X = _as_matrix(X)
    return _spectral_metrics(covariance_eigenvalues(X), X)["top1_share"]


def n_components_90(X: np.ndarray) -> float:
    """Return the smallest number of principal components that explain 90% of the variance.

    Range 1 to min(N - 1, D); lower means more collapsed. NaN when all rows are equal.
    """
    X = _as_matrix(X)
    return _spectral_metrics(covariance_eigenvalues(X), X)["n90"]


def isoscore(X: np.ndarray) -> float:
    """Return the IsoScore of X (Rudman et al. 2022), with n = D dimensions.

    Range 0 (all variance in one direction) to 1 (equal variance in every dimension); lower
    means more collapsed. When N <= D the cloud cannot reach all dimensions, so the score
    stays well below 1 even for Gaussian noise: compare with the null of the same shape.
    """
    X = _as_matrix(X)
    return _spectral_metrics(covariance_eigenvalues(X), X)["isoscore"]


def mean_pairwise_cosine(
    X: np.ndarray, center: bool = False, weights: np.ndarray | None = None
) -> float:
    """Return the mean cosine similarity over all pairs of distinct rows of X.

    With `center`, the mean row is subtracted first. Computed in O(N D) as
    (|sum of unit rows|^2 - N) / (N (N - 1)), so a bootstrap with row counts `weights` is
    scored as if rows were repeated. Range -1 / (N - 1) to 1; higher means more collapsed
    (all vectors point the same way). Zero rows count as cosine 0 with everything.
    """
    X = _as_matrix(X)
    counts = _row_counts(X.shape[0], weights)
    if center:
        X = X - counts @ X / counts.sum()
    return _mean_cosine(X, counts)


def _inverse_norms(X: np.ndarray) -> np.ndarray:
    """Return 1 / |row| for each row of X, and 0 for rows shorter than EPS."""
    norms = np.sqrt(np.einsum("ij,ij->i", X, X))
    return np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > EPS)


def _mean_cosine(X: np.ndarray, counts: np.ndarray, inverse_norms: np.ndarray | None = None
                 ) -> float:
    inverse_norms = _inverse_norms(X) if inverse_norms is None else inverse_norms
    n = counts.sum()
    summed = (counts * inverse_norms) @ X  # (D,), the sum of the unit rows
    self_pairs = counts[inverse_norms > 0].sum()  # N, less any zero rows
    return float((summed @ summed - self_pairs) / (n * (n - 1)))


def compute_metrics(X: np.ndarray, weights: np.ndarray | None = None) -> dict[str, float]:
    """Return every metric in METRICS for X (N, D), from one eigendecomposition.

    `weights` are optional row counts, as in `covariance_eigenvalues`.
    """
    X = _as_matrix(X)
    return _Cloud(X).metrics(_row_counts(X.shape[0], weights))


class _Cloud:
    """A validated float64 matrix and the parts of its metrics that resampling leaves alone."""

    def __init__(self, X: np.ndarray):
        self.X = X
        self.sum_sq = float(np.einsum("ij,ij->", X, X))
        self.raw_inverse_norms = _inverse_norms(X)

    def metrics(self, counts: np.ndarray) -> dict[str, float]:
        X = self.X
        metrics = _spectral_metrics(_covariance_eigenvalues(X, counts), X, self.sum_sq)
        metrics["cosine_raw"] = _mean_cosine(X, counts, self.raw_inverse_norms)
        metrics["cosine_centered"] = _mean_cosine(X - counts @ X / counts.sum(), counts)
        return {name: metrics[name] for name in METRICS}


def map_clouds(fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """Call `fn` on every item on the shared worker threads; return the results in order.

    NumPy releases the GIL inside its linear algebra, so scoring several resamples or
    layers at once uses every core while each BLAS call stays on one thread (see
    `use_one_blas_thread`, which this calls).
    """
    use_one_blas_thread()
    return list(_POOL.map(fn, items))


def use_one_blas_thread() -> None:
    """Set NumPy's BLAS to one thread for the rest of the process; later calls do nothing.

    `map_clouds` runs several BLAS calls at once, and on a busy 2-core machine a second
    OpenBLAS thread per call, spin-waiting, made the bootstrap ten times slower. The count
    is one setting for the whole process. A block that limits it and restores it afterwards
    is unsafe with several users at once, because threadpoolctl (3.8) lets only one thread
    change OpenBLAS and ignores the others. Overlapping blocks left the count wrong.
    Setting it once, for good, has no such race. Torch does not use this BLAS.
    """
    global _BLAS_LIMITED
    with _BLAS_LOCK:
        if not _BLAS_LIMITED:
            threadpool_limits(limits=1, user_api="blas")
            _BLAS_LIMITED = True


def bootstrap_metrics(
    X: np.ndarray, n_boot: int = 200, seed: int = 0, confidence: float = 0.95
) -> pd.DataFrame:
    """Score X and give bootstrap intervals over its rows (prompts).

    Each resample draws N rows with replacement from a `numpy.random.default_rng(seed)`, so
    the same seed gives the same intervals. Returns one row per metric with columns
    `metric`, `value` (on X itself), `low`, `high`.

    A resample holds only about 63% distinct prompts, and repeated rows by themselves lower
    the rank-like metrics, so plain percentile intervals can miss the measured value
    entirely. The interval therefore takes the spread of the resampled values around their
    median and places it around the measured value: it shows how much a metric moves with
    the choice of prompts, at the same N.
    """
    X = _as_matrix(X)
    if n_boot < 2:
        raise ValueError(f"n_boot must be at least 2, got {n_boot}; 200 is a usual choice.")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}.")
    n = X.shape[0]
    rng = np.random.default_rng(seed)
    cloud = _Cloud(X)
    point = cloud.metrics(np.ones(n))
    # Draw every resample first, in order, so the threads below cannot change the results.
    resamples = [np.bincount(rng.integers(0, n, size=n), minlength=n).astype(np.float64)
                 for _ in range(n_boot)]
    scored = map_clouds(lambda counts: list(cloud.metrics(counts).values()), resamples)
    draws = np.array(scored)  # (n_boot, number of metrics)
    tail = (1 - confidence) / 2 * 100
    low, median, high = np.nanpercentile(draws, [tail, 50, 100 - tail], axis=0)
    value = np.array(list(point.values()))
    return pd.DataFrame({
        "metric": list(METRICS), "value": value,
        "low": value - (median - low), "high": value + (high - median),
    })


def gaussian_null(n: int, d: int, seed: int = 0) -> np.ndarray:
    """Return an isotropic standard Gaussian matrix of shape (n, d), the no-structure baseline.

    Its metrics show what N random points in D dimensions score, which is far from the
    theoretical maximum whenever N is not much larger than D.
    """
    if n < 2 or d < 1:
        raise ValueError(f"The null needs n >= 2 rows and d >= 1 columns, got ({n}, {d}).")
    return np.random.default_rng(seed).standard_normal((n, d))


def normalized_singular_values(X: np.ndarray) -> np.ndarray:
    """Return the singular values of the centered X divided by their sum, largest first.

    The shape of this curve is the spectrum a page plots: a collapsed cloud has one or a
    few large values and a fast drop.
    """
    singular = np.sqrt(covariance_eigenvalues(X))
    total = singular.sum()
    return singular / total if total > 0 else singular


def pca_fit_transform(X: np.ndarray, n_components: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Project X (N, D) onto its first principal components.

    Returns the coordinates (N, n_components) and the share of variance each component
    explains. Signs are fixed so that the largest loading of each component is positive,
    which keeps plots stable between runs.
    """
    X = _as_matrix(X)
    Xc = X - X.mean(axis=0)
    _, singular, vt = np.linalg.svd(Xc, full_matrices=False)
    k = min(n_components, vt.shape[0])
    components = vt[:k]  # (k, D)
    flip = np.sign(components[np.arange(k), np.abs(components).argmax(axis=1)])
    components = components * flip[:, None]
    variance = singular**2
    share = variance[:k] / variance.sum() if variance.sum() > 0 else np.zeros(k)
    return Xc @ components.T, share
