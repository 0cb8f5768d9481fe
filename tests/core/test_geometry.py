"""Geometry metrics on constructed matrices whose answers are known exactly."""

from __future__ import annotations

import math

import numpy as np
import pytest

from core import geometry


def _isoscore_by_formula(variances: np.ndarray) -> float:
    # IsoScore written out step by step from Rudman et al. 2022, as an independent reference.
    n = len(variances)
    normalized = np.sqrt(n) * variances / np.linalg.norm(variances)
    defect = np.linalg.norm(normalized - np.ones(n)) / np.sqrt(2 * (n - np.sqrt(n)))
    return ((n - defect**2 * (n - np.sqrt(n))) ** 2 - n) / (n * (n - 1))


def _brute_force_cosine(X: np.ndarray) -> float:
    n = len(X)
    total = 0.0
    for i in range(n):
        for j in range(n):
            if i != j:
                total += X[i] @ X[j] / (np.linalg.norm(X[i]) * np.linalg.norm(X[j]))
    return total / (n * (n - 1))


def _orthogonal_cloud(scales: list[float], n: int = 40, seed: int = 0) -> np.ndarray:
    """Return an (n, len(scales)) centered matrix whose singular values are exactly `scales`."""
    rng = np.random.default_rng(seed)
    raw = rng.standard_normal((n, len(scales)))
    raw -= raw.mean(axis=0)
    q, _ = np.linalg.qr(raw)  # orthonormal columns that still sum to zero
    return q * np.asarray(scales)


# Identity matrix: N = D points on the axes; centering leaves N - 1 equal directions.

def test_identity_spectral_metrics():
    n = 10
    metrics = geometry.compute_metrics(np.eye(n))
    assert metrics["erank"] == pytest.approx(n - 1)
    assert metrics["participation_ratio"] == pytest.approx(n - 1)
    assert metrics["top1_share"] == pytest.approx(1 / (n - 1))
    assert metrics["n90"] == math.ceil(0.9 * (n - 1))


def test_identity_isoscore():
    n = 10
    variances = np.array([1.0] * (n - 1) + [0.0])
    assert geometry.isoscore(np.eye(n)) == pytest.approx(_isoscore_by_formula(variances))


def test_identity_cosines():
    n = 10
    assert geometry.mean_pairwise_cosine(np.eye(n)) == pytest.approx(0.0)
    # rows e_i - 1/n: dot -1/n, squared norm (n - 1)/n, so cosine -1/(n - 1)
    assert geometry.mean_pairwise_cosine(np.eye(n), center=True) == pytest.approx(-1 / (n - 1))


# Rank-one matrix: every point lies on one line.

def test_rank_one_is_fully_collapsed():
    a = np.array([1.0, 2.0, 3.0, 5.0, 8.0])
    b = np.array([0.5, -1.0, 2.0, 0.0])
    metrics = geometry.compute_metrics(np.outer(a, b))
    assert metrics["erank"] == pytest.approx(1.0)
    assert metrics["participation_ratio"] == pytest.approx(1.0)
    assert metrics["top1_share"] == pytest.approx(1.0)
    assert metrics["n90"] == 1
    assert metrics["isoscore"] == pytest.approx(0.0, abs=1e-12)


def test_rank_one_cosines():
    a = np.array([1.0, 2.0, 3.0, 5.0, 8.0])
    X = np.outer(a, [0.5, -1.0, 2.0, 0.0])
    assert geometry.mean_pairwise_cosine(X) == pytest.approx(1.0)
    # after centering the points sit on both sides of the mean: cosine is the sign product
    signs = np.sign(a - a.mean())
    expected = (signs.sum() ** 2 - len(a)) / (len(a) * (len(a) - 1))
    assert geometry.mean_pairwise_cosine(X, center=True) == pytest.approx(expected)


# Isotropic Gaussian: with N much larger than D, every direction is used evenly.

def test_isotropic_gaussian_is_round():
    d = 8
    X = geometry.gaussian_null(20000, d, seed=1)
    metrics = geometry.compute_metrics(X)
    assert metrics["isoscore"] > 0.99
    assert metrics["erank"] > d - 0.05
    assert metrics["participation_ratio"] > d - 0.1
    assert metrics["top1_share"] == pytest.approx(1 / d, abs=0.01)
    assert abs(metrics["cosine_raw"]) < 0.01
    assert abs(metrics["cosine_centered"]) < 0.01


def test_gaussian_with_fewer_points_than_dimensions():
    # 50 points reach at most 49 of 200 dimensions, so IsoScore is capped near 48/199.
    X = geometry.gaussian_null(50, 200, seed=2)
    metrics = geometry.compute_metrics(X)
    assert metrics["erank"] <= 49 + 1e-9
    assert metrics["isoscore"] < 49 / 199


# Duplicated rows: the same cloud, each point twice.

def test_duplicated_rows_keep_spectrum():
    X = geometry.gaussian_null(30, 6, seed=3)
    doubled = np.vstack([X, X])
    original, repeated = geometry.compute_metrics(X), geometry.compute_metrics(doubled)
    for name in ("erank", "participation_ratio", "top1_share", "n90", "isoscore"):
        assert repeated[name] == pytest.approx(original[name]), name


def test_duplicated_rows_raise_cosine():
    X = geometry.gaussian_null(30, 6, seed=3)
    doubled = np.vstack([X, X])
    assert geometry.mean_pairwise_cosine(doubled) == pytest.approx(_brute_force_cosine(doubled))
    assert geometry.mean_pairwise_cosine(doubled) > geometry.mean_pairwise_cosine(X)


def test_all_rows_equal_gives_nan():
    X = np.tile([0.1, 0.7, -0.3], (5, 1))
    metrics = geometry.compute_metrics(X)
    assert math.isnan(metrics["erank"])
    assert math.isnan(metrics["isoscore"])
    assert metrics["cosine_raw"] == pytest.approx(1.0)


# One dominant direction: singular values set exactly.

def test_dominant_direction_exact_values():
    scales = [100.0, 1.0, 1.0, 1.0]
    metrics = geometry.compute_metrics(_orthogonal_cloud(scales))
    s = np.array(scales)
    p = s / s.sum()
    variances = s**2
    assert metrics["erank"] == pytest.approx(np.exp(-(p * np.log(p)).sum()))
    assert metrics["participation_ratio"] == pytest.approx(
        variances.sum() ** 2 / (variances**2).sum()
    )
    assert metrics["top1_share"] == pytest.approx(variances[0] / variances.sum())
    assert metrics["n90"] == 1
    assert metrics["isoscore"] == pytest.approx(_isoscore_by_formula(variances))


def test_dominant_direction_is_more_collapsed_than_round():
    round_cloud = geometry.compute_metrics(_orthogonal_cloud([1.0, 1.0, 1.0, 1.0]))
    skewed = geometry.compute_metrics(_orthogonal_cloud([100.0, 1.0, 1.0, 1.0]))
    assert round_cloud["isoscore"] == pytest.approx(1.0)
    assert round_cloud["erank"] == pytest.approx(4.0)
    assert skewed["erank"] < round_cloud["erank"]
    assert skewed["isoscore"] < round_cloud["isoscore"]
    assert skewed["top1_share"] > round_cloud["top1_share"]


# Shifted cloud: an offset makes raw cosines high while centered cosines stay put.

def test_shifted_cloud_raw_and_centered_cosine():
    d = 5
    axes = np.vstack([np.eye(d), -np.eye(d)])  # 2d points, mean zero
    shifted = axes + 3.0
    assert geometry.mean_pairwise_cosine(axes) == pytest.approx(-1 / (2 * d - 1))
    assert geometry.mean_pairwise_cosine(shifted) == pytest.approx(_brute_force_cosine(shifted))
    assert geometry.mean_pairwise_cosine(shifted) > 0.9
    assert geometry.mean_pairwise_cosine(shifted, center=True) == pytest.approx(-1 / (2 * d - 1))


def test_shift_leaves_spectral_metrics_unchanged():
    X = geometry.gaussian_null(40, 6, seed=4)
    plain, shifted = geometry.compute_metrics(X), geometry.compute_metrics(X + 10.0)
    for name in ("erank", "participation_ratio", "top1_share", "n90", "isoscore"):
        assert shifted[name] == pytest.approx(plain[name]), name


# The Gram route (N < D) and the covariance route (N >= D) agree.

def test_gram_and_covariance_routes_agree():
    X = geometry.gaussian_null(12, 30, seed=5)
    wide = geometry.covariance_eigenvalues(X)  # Gram route, 12 values
    tall = np.linalg.eigvalsh((X - X.mean(0)).T @ (X - X.mean(0)))[::-1][:12]
    np.testing.assert_allclose(wide, np.clip(tall, 0, None), atol=1e-9)


def test_weights_equal_repeated_rows():
    X = geometry.gaussian_null(10, 4, seed=6)
    counts = np.array([0, 1, 2, 0, 3, 1, 0, 1, 1, 1], dtype=float)
    repeated = np.repeat(X, counts.astype(int), axis=0)
    weighted = geometry.compute_metrics(X, weights=counts)
    literal = geometry.compute_metrics(repeated)
    for name, value in literal.items():
        assert weighted[name] == pytest.approx(value), name


# Bootstrap and seeds

def test_bootstrap_same_seed_same_result():
    X = geometry.gaussian_null(40, 8, seed=7)
    first = geometry.bootstrap_metrics(X, n_boot=20, seed=3)
    second = geometry.bootstrap_metrics(X, n_boot=20, seed=3)
    assert first.equals(second)


def test_bootstrap_other_seed_other_interval():
    X = geometry.gaussian_null(40, 8, seed=7)
    first = geometry.bootstrap_metrics(X, n_boot=20, seed=3)
    other = geometry.bootstrap_metrics(X, n_boot=20, seed=4)
    assert not np.allclose(first["low"], other["low"])


def test_bootstrap_interval_contains_value():
    X = geometry.gaussian_null(60, 8, seed=8)
    table = geometry.bootstrap_metrics(X, n_boot=50, seed=0)
    assert list(table["metric"]) == list(geometry.METRICS)
    for row in table.itertuples():
        assert row.low <= row.high, row.metric
    erank = table.set_index("metric").loc["erank"]
    assert erank.low <= erank.value <= erank.high


def test_gaussian_null_same_seed_same_matrix():
    np.testing.assert_array_equal(geometry.gaussian_null(5, 3, seed=9),
                                  geometry.gaussian_null(5, 3, seed=9))


# Inputs and helpers

@pytest.mark.parametrize("bad", [np.zeros(5), np.zeros((1, 4)), np.array([[1.0, np.nan]] * 3)])
def test_invalid_matrix_raises(bad):
    with pytest.raises(ValueError):
        geometry.compute_metrics(bad)


def test_invalid_n_boot_raises():
    with pytest.raises(ValueError, match="n_boot"):
        geometry.bootstrap_metrics(np.eye(4), n_boot=1)


def test_normalized_singular_values_sum_to_one():
    spectrum = geometry.normalized_singular_values(_orthogonal_cloud([3.0, 2.0, 1.0]))
    np.testing.assert_allclose(spectrum, [0.5, 1 / 3, 1 / 6])


def test_pca_recovers_dominant_axis():
    X = _orthogonal_cloud([10.0, 1.0, 0.5])
    coords, share = geometry.pca_fit_transform(X, n_components=2)
    assert coords.shape == (len(X), 2)
    assert share[0] == pytest.approx(100 / 101.25)
    np.testing.assert_allclose(np.abs(coords[:, 0]), np.abs(X[:, 0]), atol=1e-9)


def test_every_metric_states_its_direction():
    for name, info in geometry.METRICS.items():
        assert info.collapsed_when in ("lower", "higher"), name
        assert info.value_range, name


def _blas_threads() -> list[int]:
    from threadpoolctl import threadpool_info

    counts = [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]
    assert counts, "threadpoolctl found no BLAS library"
    return counts


def test_one_blas_thread_stays_set(lab_home):
    import threading

    from core import collapse

    # Several users scoring at once, from threads that then exit.
    workers = [threading.Thread(target=collapse.null_geometry, args=(64 + 16 * k, 24),
                                kwargs={"settings": collapse.CollapseSettings(n_boot=20)})
               for k in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert set(_blas_threads()) == {1}
    geometry.use_one_blas_thread()  # a second call changes nothing
    assert set(_blas_threads()) == {1}
