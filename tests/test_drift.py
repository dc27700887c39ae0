"""Drift statistics on real all-MiniLM-L6-v2 embeddings of the demo corpus's chunks and of the
installed packages' descriptions (no database, no dagster).

A fair null: baseline and current drawn from one pool of chunks, so they are exchangeable (as for a
corpus that did not change). At 50 rows per side they are disjoint random splits of the demo chunks;
at 500 and 5,000 the demo has too few chunks, so both sides are drawn with replacement from them (still
exchangeable). benchmarks/drift_calibration.py adds disjoint splits of 3,000 package chunks.
"""

from __future__ import annotations

import datetime as dt
import json
import math

import numpy as np
import pytest

from benchmarks.drift_calibration import demo_chunks, mixed, package_chunks, resampled, shipped_drift_test
from ragline.config import DriftSettings
from ragline.monitoring.drift import SCOPE_CORPUS, SCOPE_QUERIES_HISTORY, DriftRow, drift_outcomes
from ragline.monitoring.mmd import (
    DriftResult,
    MMDResult,
    drift_test,
    mmd_permutation_test,
    new_content_test,
    sample_rows,
)
from tests.conftest import local_embedder

SHIPPED = DriftSettings()
PACKAGE_ROWS = 170  # 150 are drawn for the 30% mix

# --- fixtures: the local model, run once per module ---


@pytest.fixture(scope="module")
def model():
    return local_embedder()


@pytest.fixture(scope="module")
def demo(model) -> np.ndarray:
    texts, _documents = demo_chunks(model)
    assert 300 <= len(texts) <= 600, len(texts)
    vectors = model.embed(texts)
    assert vectors.shape == (len(texts), 384)
    return vectors.astype(np.float64)


@pytest.fixture(scope="module")
def foreign(model) -> np.ndarray:
    texts, _packages = package_chunks(model, PACKAGE_ROWS, per_package=1)
    assert len(set(texts)) == len(texts) == PACKAGE_ROWS
    return model.embed(texts).astype(np.float64)


def halves(vectors: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(len(vectors))
    half = len(vectors) // 2
    return vectors[order[:half]], vectors[order[half:]]


def shipped_test(baseline: np.ndarray, current: np.ndarray, seed: int) -> DriftResult:
    return shipped_drift_test(baseline, current, SHIPPED, seed)


def disjoint_pairs(vectors: np.ndarray, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(len(vectors))
    return vectors[order[:n]], vectors[order[n : 2 * n]]


# --- calibration and power of the shipped defaults on real embeddings ---


def test_shipped_defaults_false_alarms_at_most_five_percent_at_50_500_and_5000_rows(demo: np.ndarray) -> None:
    rates = {}
    for n, splits in ((50, 100), (500, 30), (5000, 30)):
        draw = resampled(demo, n)
        pairs = [
            disjoint_pairs(demo, n, s) if n == 50 else draw(np.random.default_rng(s)) for s in range(splits)
        ]
        results = [shipped_test(b, c, seed) for seed, (b, c) in enumerate(pairs)]
        rates[n] = sum(r.alarm for r in results) / splits
        shares = np.array([r.new_share for r in results])
        print(
            f"\nnull n={n}: {splits} splits, alarms {rates[n]:.1%}, significant "
            f"{np.mean([r.significant for r in results]):.1%}, new share median {np.median(shares):.3f} "
            f"p90 {np.quantile(shares, 0.9):.3f}"
        )
        assert np.median(shares) <= 0.02  # "no new content" reads as about 0%, at every size
    assert all(rate <= 0.05 for rate in rates.values()), rates


def test_ten_percent_new_content_alarms_at_500_rows_and_reads_as_about_ten_percent(
    demo: np.ndarray, foreign: np.ndarray
) -> None:
    for share, splits in ((0.1, 30), (0.3, 8)):
        draw = mixed(demo, foreign, 500, share, replace=True)
        results = [shipped_test(*draw(np.random.default_rng(seed)), seed) for seed in range(splits)]
        power = sum(r.alarm for r in results) / splits
        estimates = np.array([r.new_share for r in results])
        print(
            f"\n{share:.0%} package rows among demo rows, n=500: alarms {power:.0%}, new share "
            f"median {np.median(estimates):.3f} [{estimates.min():.3f}, {estimates.max():.3f}]"
        )
        assert power >= 0.95
        assert share * 0.5 <= np.median(estimates) <= share * 1.3


def test_the_rows_unlike_the_baseline_are_the_new_ones(demo: np.ndarray, foreign: np.ndarray) -> None:
    baseline, rest = halves(demo, 0)
    current = np.vstack([rest[:150], foreign[:50]])  # 25% new
    result = shipped_test(baseline, current, seed=0)
    assert result.alarm and 0.15 <= result.new_share <= 0.35
    top = result.unlike_rows[:30]
    assert sum(i >= 150 for i in top) >= 27, top  # the farthest rows are the package rows
    assert len(result.unlike_rows) == len(set(result.unlike_rows))


def test_new_content_test_p_value_bounds_and_input_checks(demo: np.ndarray, foreign: np.ndarray) -> None:
    for x, y in ((demo[:60], demo[60:120]), (demo[:60], foreign[:40])):
        result = new_content_test(x, y, permutations=19)
        assert 1 / 20 <= result.p_value <= 1 and 0.0 <= result.share <= 1.0
    assert new_content_test(demo[:60], foreign[:40], permutations=99).p_value == pytest.approx(1 / 100)
    unbalanced = new_content_test(demo[:12], demo[12:300], permutations=20)  # few baseline rows
    assert unbalanced.n_x == 12 and math.isfinite(unbalanced.threshold)
    with pytest.raises(ValueError, match="permutations"):
        new_content_test(demo, demo, permutations=0)
    with pytest.raises(ValueError, match="different dimensions"):
        new_content_test(demo, demo[:, :10])


def test_foreign_corpus_alarms(demo: np.ndarray, foreign: np.ndarray) -> None:
    result = shipped_test(halves(demo, 0)[0], foreign, seed=0)
    assert result.alarm and result.new_share > 0.8 and result.reason == ""


def test_drift_outcomes_say_untested_when_every_row_was_skipped(demo: np.ndarray) -> None:
    skipped = drift_test(demo, demo[:3])
    tested = drift_test(*halves(demo, 2), permutations=50)
    day = dt.date(2026, 11, 20)
    outcomes = drift_outcomes(
        [DriftRow(SCOPE_CORPUS, "a", tested), DriftRow(SCOPE_CORPUS, "b", skipped)]
        + [DriftRow(SCOPE_QUERIES_HISTORY, "all", skipped)],
        SHIPPED,
        day,
    )
    corpus, queries = outcomes
    assert corpus.passed and corpus.untested is None and "b: too few rows" in corpus.metadata["skipped"]
    assert queries.untested == "all: too few rows: 3 current < 10"
    assert drift_outcomes([], SHIPPED, day)[0].untested


# --- the MMD test ---


def _naive_unbiased_mmd2(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    pooled = np.vstack([x, y]).astype(np.float64)
    sq = ((pooled[:, None, :] - pooled[None, :, :]) ** 2).sum(axis=-1)
    sigma2 = float(np.median(sq[np.triu_indices(len(pooled), k=1)]))
    k = np.exp(-sq / (2 * sigma2))
    m, n = len(x), len(y)
    kxx, kyy, kxy = k[:m, :m], k[m:, m:], k[:m, m:]
    mmd2 = (
        (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
        + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
        - 2 * kxy.mean()
    )
    return float(mmd2), math.sqrt(sigma2)


def test_mmd2_and_bandwidth_match_a_direct_computation(demo: np.ndarray) -> None:
    x, y = demo[:12], demo[200:209]
    result = mmd_permutation_test(x, y, permutations=20)
    expected_mmd2, expected_sigma = _naive_unbiased_mmd2(x, y)
    assert result.mmd2 == pytest.approx(expected_mmd2, abs=1e-9)
    assert result.bandwidth == pytest.approx(expected_sigma, rel=1e-9)
    assert (result.n_x, result.n_y, result.permutations) == (12, 9, 20)


def test_p_value_bounds(demo: np.ndarray, foreign: np.ndarray) -> None:
    for permutations in (1, 19, 200):
        for x, y in ((demo[:60], demo[60:120]), (demo[:60], foreign[:40])):
            p = mmd_permutation_test(x, y, permutations=permutations).p_value
            assert 1 / (1 + permutations) <= p <= 1
    # a clear difference hits the floor exactly
    floor = mmd_permutation_test(demo[:60], foreign[:40], permutations=99)
    assert floor.p_value == pytest.approx(1 / 100)


def test_deterministic_for_a_seed(demo: np.ndarray) -> None:
    x, y = halves(demo, 7)
    assert mmd_permutation_test(x, y, seed=3) == mmd_permutation_test(x, y, seed=3)
    assert drift_test(demo, y, sample_size=100, seed=5) == drift_test(demo, y, sample_size=100, seed=5)
    assert drift_test(demo, y, sample_size=100, seed=5) != drift_test(demo, y, sample_size=100, seed=6)


def test_identical_inputs_are_not_significant(demo: np.ndarray) -> None:
    x = demo[:150]
    result = mmd_permutation_test(x, x.copy())
    assert result.p_value > 0.5
    drift = drift_test(x, x.copy())
    assert not drift.significant and not drift.alarm
    assert drift.new_share == 0.0


def test_mmd_validates_input() -> None:
    good = np.ones((5, 4)) + np.arange(4)
    with pytest.raises(ValueError, match="at least 2 rows"):
        mmd_permutation_test(good[:1], good)
    with pytest.raises(ValueError, match="at least 2 rows"):
        mmd_permutation_test(good, np.empty((0, 4)))
    with pytest.raises(ValueError, match="different dimensions"):
        mmd_permutation_test(good, np.ones((5, 3)))
    with pytest.raises(ValueError, match="2-D"):
        mmd_permutation_test(good[0], good)
    bad = good.copy()
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        mmd_permutation_test(good, bad)
    bad[2, 1] = np.inf
    with pytest.raises(ValueError, match="non-finite"):
        mmd_permutation_test(bad, good)
    with pytest.raises(ValueError, match="permutations"):
        mmd_permutation_test(good, good, permutations=0)


def test_all_identical_rows_do_not_break_the_bandwidth() -> None:
    rows = np.ones((6, 3))
    result = mmd_permutation_test(rows, rows, permutations=10)
    assert math.isfinite(result.bandwidth) and result.bandwidth > 0
    assert result.mmd2 == pytest.approx(0.0, abs=1e-12)
    assert result.p_value == 1.0
    assert isinstance(result, MMDResult)


# --- sampling ---


def test_sample_rows() -> None:
    x = np.arange(40).reshape(20, 2)
    picked = sample_rows(x, 5, seed=1)
    assert picked.shape == (5, 2)
    assert np.array_equal(picked, sample_rows(x, 5, seed=1))
    assert len({tuple(row) for row in picked}) == 5
    assert np.all(np.diff(picked[:, 0]) > 0)  # original order kept
    assert set(picked[:, 0]) <= set(x[:, 0])
    assert np.array_equal(sample_rows(x, 20, seed=1), x)
    assert np.array_equal(sample_rows(x, 100, seed=1), x)
    with pytest.raises(ValueError):
        sample_rows(x, -1, seed=1)


# --- drift_test plumbing ---


def test_drift_test_subsamples_each_side(demo: np.ndarray) -> None:
    result = drift_test(demo, demo[:30], sample_size=50)
    assert (result.n_baseline, result.n_current) == (50, 30)
    assert result.significant == (result.p_value < result.alpha)
    assert result.alarm == (result.significant and result.new_share >= result.min_share)


def test_too_few_rows_is_a_result_not_an_error(demo: np.ndarray) -> None:
    result = drift_test(demo, demo[:3])
    assert isinstance(result, DriftResult)
    assert math.isnan(result.p_value) and not result.alarm and not result.significant
    assert result.reason == "too few rows: 3 current < 10"
    assert (result.n_baseline, result.n_current) == (len(demo), 3)

    both = drift_test(demo[:2], np.empty((0, 384)), min_rows=5)
    assert both.reason == "too few rows: 2 baseline < 5, 0 current < 5"
    assert not drift_test([], demo).alarm

    payload = result.as_dict()
    assert payload["p_value"] is None and payload["alarm"] is False
    json.dumps(payload, allow_nan=False)


def test_as_dict_is_json_ready(demo: np.ndarray) -> None:
    result = drift_test(*halves(demo, 1), permutations=50)
    payload = result.as_dict()
    assert set(payload) == {
        "p_value",
        "new_share",
        "n_baseline",
        "n_current",
        "significant",
        "alarm",
        "alpha",
        "min_share",
        "reason",
        "unlike_rows",
    }
    assert payload["reason"] == ""
    assert type(payload["alarm"]) is bool and type(payload["n_current"]) is int
    assert json.loads(json.dumps(payload, allow_nan=False)) == payload


def test_drift_test_rejects_malformed_input(demo: np.ndarray) -> None:
    with pytest.raises(ValueError, match="different dimensions"):
        drift_test(demo, demo[:, :100])
    bad = demo[:40].copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="current contains non-finite"):
        drift_test(demo, bad)
    with pytest.raises(ValueError, match="alpha"):
        drift_test(demo, demo, alpha=0.0)
    with pytest.raises(ValueError, match="min_rows"):
        drift_test(demo, demo, min_rows=1)
