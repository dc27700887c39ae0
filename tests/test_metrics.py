"""Retrieval metrics against hand-computed values; tie-aware forms against brute force over permutations."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from ragline.evaluation.metrics import (
    BootstrapResult,
    QueryScores,
    hit_rate_at_k,
    ndcg_at_k,
    paired_bootstrap,
    percentile,
    precision_at_k,
    recall_at_k,
    reciprocal_rank,
    score_query,
)

# Distinct scores: no ties, so the textbook definitions apply directly.
RANKED = [("a", 0.9), ("b", 0.8), ("c", 0.7), ("d", 0.6), ("e", 0.5)]
RELEVANT = {"b", "d", "x"}  # "x" was never retrieved

# One tied group at ranks 2..5 holding two of the three relevant ids (c, e); f is relevant but at rank 6.
TIED = [("a", 0.9), ("b", 0.5), ("c", 0.5), ("d", 0.5), ("e", 0.5), ("f", 0.1)]
TIED_RELEVANT = {"c", "e", "f"}

METRICS = [recall_at_k, precision_at_k, reciprocal_rank, ndcg_at_k, hit_rate_at_k]


def brute_force(metric, ranked, relevant, group: slice, k: int) -> float:
    """Average of the metric (ties=False) over every ordering of the tied slice."""
    head, tied, tail = ranked[: group.start], ranked[group], ranked[group.stop :]
    values = [metric(head + list(p) + tail, relevant, k, ties=False) for p in itertools.permutations(tied)]
    return sum(values) / len(values)


def test_hand_example_at_3():
    # Top 3 = a, b, c: only b is relevant, at rank 2; there are 3 relevant ids in total.
    assert recall_at_k(RANKED, RELEVANT, 3) == pytest.approx(1 / 3)
    assert precision_at_k(RANKED, RELEVANT, 3) == pytest.approx(1 / 3)
    assert reciprocal_rank(RANKED, RELEVANT) == pytest.approx(1 / 2)
    assert hit_rate_at_k(RANKED, RELEVANT, 3) == 1.0
    # DCG = 1/log2(3) = 0.63093; IDCG@3 = 1/log2(2) + 1/log2(3) + 1/log2(4) = 1 + 0.63093 + 0.5 = 2.13093
    assert ndcg_at_k(RANKED, RELEVANT, 3) == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3) + 0.5))
    assert ndcg_at_k(RANKED, RELEVANT, 3) == pytest.approx(0.29608, abs=1e-5)


def test_hand_example_at_5_and_at_1():
    # Top 5 holds b (rank 2) and d (rank 4): recall 2/3, precision 2/5.
    assert recall_at_k(RANKED, RELEVANT, 5) == pytest.approx(2 / 3)
    assert precision_at_k(RANKED, RELEVANT, 5) == pytest.approx(2 / 5)
    # DCG = 1/log2(3) + 1/log2(5) = 0.63093 + 0.43068 = 1.06161; / 2.13093 = 0.49819
    assert ndcg_at_k(RANKED, RELEVANT, 5) == pytest.approx(0.49819, abs=1e-5)
    # Rank 1 is "a": nothing relevant within the cutoff.
    assert recall_at_k(RANKED, RELEVANT, 1) == 0.0
    assert hit_rate_at_k(RANKED, RELEVANT, 1) == 0.0
    assert reciprocal_rank(RANKED, RELEVANT, 1) == 0.0
    assert ndcg_at_k(RANKED, RELEVANT, 1) == 0.0


def test_score_query_bundles_the_metrics():
    scores = score_query(RANKED, RELEVANT, k=3, ndcg_k=5)
    assert isinstance(scores, QueryScores)
    assert scores.recall == pytest.approx(1 / 3)
    assert scores.precision == pytest.approx(1 / 3)
    assert scores.mrr == pytest.approx(1 / 2)
    assert scores.hit == 1.0
    assert scores.ndcg == pytest.approx(0.49819, abs=1e-5)  # nDCG@5, not @3
    # MRR in score_query is cut at k: the first relevant id (rank 2) is outside k=1.
    assert score_query(RANKED, RELEVANT, k=1).mrr == 0.0


def test_precision_divides_by_k_even_for_short_lists():
    # One result, relevant, k=10: 1/10.
    assert precision_at_k([("a", 1.0)], {"a"}, 10) == pytest.approx(0.1)
    assert recall_at_k([("a", 1.0)], {"a"}, 10) == 1.0


def test_graded_relevance_ndcg():
    ranked = [("a", 0.9), ("b", 0.8), ("c", 0.7)]
    relevance = {"a": 1.0, "b": 0.0, "c": 3.0, "z": 2.0}
    # DCG = 1/log2(2) + 0/log2(3) + 3/log2(4) = 1 + 0 + 1.5 = 2.5
    # IDCG@3 from gains [3, 2, 1]: 3/1 + 2/log2(3) + 1/log2(4) = 3 + 1.26186 + 0.5 = 4.76186
    # nDCG = 2.5 / 4.76186 = 0.52500
    assert ndcg_at_k(ranked, relevance, 3) == pytest.approx(2.5 / (3 + 2 / math.log2(3) + 0.5))
    assert ndcg_at_k(ranked, relevance, 3) == pytest.approx(0.52500, abs=1e-5)
    # Gain 0 means not relevant: the relevant ids are a, c, z; a and c came back.
    assert recall_at_k(ranked, relevance, 3) == pytest.approx(2 / 3)
    assert reciprocal_rank(ranked, relevance) == 1.0
    # The ideal order scores 1.0.
    ideal = [("c", 0.9), ("z", 0.8), ("a", 0.7)]
    assert ndcg_at_k(ideal, relevance, 3) == pytest.approx(1.0)


def test_duplicates_only_first_occurrence_counts():
    ranked = [("a", 0.9), ("a", 0.85), ("b", 0.8), ("a", 0.1)]
    # After dropping duplicates: a (rank 1), b (rank 2).
    assert reciprocal_rank(ranked, {"b"}) == pytest.approx(1 / 2)
    assert precision_at_k(ranked, {"b"}, 2) == pytest.approx(1 / 2)
    assert recall_at_k(ranked, {"b"}, 2) == 1.0
    # A relevant duplicate is counted once: 1 relevant in top 2 → precision 1/2, not 2/2.
    assert precision_at_k(ranked, {"a"}, 2) == pytest.approx(1 / 2)
    assert ndcg_at_k(ranked, {"a", "b"}, 2) == pytest.approx(1.0)


def test_empty_results_score_zero():
    for metric in METRICS:
        assert metric([], RELEVANT, 10) == 0.0
    assert reciprocal_rank([], RELEVANT) == 0.0
    assert score_query([], RELEVANT) == QueryScores(recall=0.0, precision=0.0, mrr=0.0, ndcg=0.0, hit=0.0)


@pytest.mark.parametrize("relevance", [{}, set(), [], {"a": 0.0, "b": -1.0}])
def test_empty_relevance_raises(relevance):
    for metric in METRICS:
        with pytest.raises(ValueError, match="no relevant ids"):
            metric(RANKED, relevance, 10)
    with pytest.raises(ValueError, match="no relevant ids"):
        score_query([], relevance)


def test_bare_string_relevance_and_bad_cutoff_are_rejected():
    with pytest.raises(TypeError):
        recall_at_k(RANKED, "b", 3)
    with pytest.raises(ValueError, match="k must be >= 1"):
        recall_at_k(RANKED, RELEVANT, 0)


def test_plain_collection_equals_unit_gains():
    as_mapping = {"b": 1.0, "d": 1.0, "x": 1.0}
    assert score_query(RANKED, as_mapping, k=3) == score_query(RANKED, ["b", "d", "x"], k=3)


def test_tied_group_straddling_the_cutoff_by_hand():
    k = 3  # the group occupies ranks 2..5; 2 of its 4 slots are inside k
    # Expected relevant in top 3 = r * m / n = 2 * 2 / 4 = 1
    assert recall_at_k(TIED, TIED_RELEVANT, k) == pytest.approx(1 / 3)
    assert precision_at_k(TIED, TIED_RELEVANT, k) == pytest.approx(1 / 3)
    # P(no relevant in the 2 inside slots) = C(2, 2) / C(4, 2) = 1/6 → hit = 5/6
    assert hit_rate_at_k(TIED, TIED_RELEVANT, k) == pytest.approx(5 / 6)
    # Average gain per group slot = 2/4 = 0.5; DCG = 0.5 * (1/log2(3) + 1/log2(4)) = 0.5 * 1.13093 = 0.56546
    # IDCG@3 = 1 + 0.63093 + 0.5 = 2.13093 → 0.26536
    assert ndcg_at_k(TIED, TIED_RELEVANT, k) == pytest.approx(0.26536, abs=1e-5)


def test_tied_group_holding_the_first_relevant_by_hand():
    # Group of n=4 at ranks 2..5 with r=2 relevant. P(first relevant at slot j) = C(4 - j, 1) / C(4, 2):
    # j=1: 3/6 (rank 2), j=2: 2/6 (rank 3), j=3: 1/6 (rank 4).
    # E[1/rank] = 3/6 * 1/2 + 2/6 * 1/3 + 1/6 * 1/4 = 18/72 + 8/72 + 3/72 = 29/72
    assert reciprocal_rank(TIED, TIED_RELEVANT) == pytest.approx(29 / 72)
    # Cut at k=2, only j=1 counts: 3/6 * 1/2 = 1/4
    assert reciprocal_rank(TIED, TIED_RELEVANT, 2) == pytest.approx(1 / 4)
    # Everything tied, one relevant among 3: (1 + 1/2 + 1/3) / 3 = 11/18
    all_tied = [("a", 0.0), ("b", 0.0), ("c", 0.0)]
    assert reciprocal_rank(all_tied, {"c"}) == pytest.approx(11 / 18)


@pytest.mark.parametrize("metric", METRICS, ids=lambda m: m.__name__)
@pytest.mark.parametrize("k", [1, 2, 3, 4, 5, 6, 8])
def test_tie_aware_equals_average_over_permutations(metric, k):
    assert metric(TIED, TIED_RELEVANT, k) == pytest.approx(
        brute_force(metric, TIED, TIED_RELEVANT, slice(1, 5), k)
    )


@pytest.mark.parametrize("metric", METRICS, ids=lambda m: m.__name__)
@pytest.mark.parametrize("k", [1, 2, 3, 5, 7])
def test_tie_aware_graded_group_equals_brute_force(metric, k):
    # Two tied groups; the second (ranks 4..7) mixes grades and a non-relevant id.
    ranked = [("a", 3.0), ("b", 2.0), ("c", 2.0), ("d", 1.0), ("e", 1.0), ("f", 1.0), ("g", 1.0)]
    relevance = {"c": 1.0, "d": 3.0, "f": 2.0, "g": 0.0, "z": 1.0}
    # Averaging over both groups' orderings: average over the second group for each order of the first.
    orders = list(itertools.permutations(ranked[1:3]))
    expected = sum(
        brute_force(metric, ranked[:1] + list(order) + ranked[3:], relevance, slice(3, 7), k)
        for order in orders
    ) / len(orders)
    assert metric(ranked, relevance, k) == pytest.approx(expected)


def test_tie_aware_ignores_order_inside_a_group():
    shuffled = [TIED[0], TIED[4], TIED[2], TIED[1], TIED[3], TIED[5]]
    assert score_query(shuffled, TIED_RELEVANT, k=3) == score_query(TIED, TIED_RELEVANT, k=3)


def test_ties_false_honours_list_order():
    # As listed: a, b, c, d, e, f → c at rank 3 is the first relevant; top 3 holds only c.
    assert reciprocal_rank(TIED, TIED_RELEVANT, ties=False) == pytest.approx(1 / 3)
    assert recall_at_k(TIED, TIED_RELEVANT, 3, ties=False) == pytest.approx(1 / 3)
    assert hit_rate_at_k(TIED, TIED_RELEVANT, 3, ties=False) == 1.0  # tie-aware: 5/6
    # DCG@3 = 1/log2(4) = 0.5; IDCG@3 = 2.13093
    assert ndcg_at_k(TIED, TIED_RELEVANT, 3, ties=False) == pytest.approx(0.5 / (1 + 1 / math.log2(3) + 0.5))
    # Swapping c behind d moves the first relevant to rank 4 only when ties are ignored.
    swapped = [TIED[0], TIED[1], TIED[3], TIED[2], TIED[4], TIED[5]]
    assert reciprocal_rank(swapped, TIED_RELEVANT, ties=False) == pytest.approx(1 / 4)
    assert reciprocal_rank(swapped, TIED_RELEVANT) == pytest.approx(29 / 72)


def test_percentile_linear_interpolation():
    values = [4.0, 1.0, 3.0, 2.0]
    # Sorted 1, 2, 3, 4; position = q/100 * (n - 1).
    assert percentile(values, 50) == pytest.approx(2.5)  # position 1.5 → 2 + 0.5 * (3 - 2)
    assert percentile(values, 95) == pytest.approx(3.85)  # position 2.85 → 3 + 0.85 * (4 - 3)
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 4.0
    assert percentile([7.0], 95) == 7.0
    assert percentile(values, 37) == pytest.approx(float(np.percentile(values, 37)))
    assert math.isnan(percentile([], 50))


def test_bootstrap_identical_scores_collapse_to_zero():
    scores = [0.1 * i for i in range(30)]
    result = paired_bootstrap(scores, list(scores))
    assert isinstance(result, BootstrapResult)
    assert (result.low, result.high, result.mean_diff) == (0.0, 0.0, 0.0)
    assert not result.significant_drop
    assert not result.significant_gain
    assert result.mean_baseline == pytest.approx(np.mean(scores))
    assert (result.n, result.samples, result.confidence) == (30, 2000, 0.95)


def test_bootstrap_constant_difference_collapses_to_it():
    baseline = [i / 8 for i in range(16)]
    candidate = [b + 0.25 for b in baseline]  # exact in binary floating point
    result = paired_bootstrap(baseline, candidate)
    assert (result.low, result.high, result.mean_diff) == (0.25, 0.25, 0.25)
    assert result.significant_gain and not result.significant_drop


def test_bootstrap_float_noise_is_not_a_drop():
    baseline = [0.3, 0.7, 0.1, 0.9]
    # The same scores along another arithmetic path: differences of ~1e-17.
    candidate = [(b * 3) / 3 - 1e-16 * (i % 2) for i, b in enumerate(baseline)]
    result = paired_bootstrap(baseline, candidate)
    assert (result.low, result.high) == (0.0, 0.0)
    assert not result.significant_drop


def test_bootstrap_detects_a_clear_drop():
    rng = np.random.default_rng(7)
    baseline = rng.uniform(0.5, 1.0, 40)
    candidate = baseline - 0.3 + rng.normal(0.0, 0.05, 40)
    result = paired_bootstrap(baseline.tolist(), candidate.tolist(), seed=1)
    assert result.mean_diff == pytest.approx(-0.3, abs=0.03)
    assert result.low < result.mean_diff < result.high < 0
    assert result.significant_drop
    assert not result.significant_gain


def test_bootstrap_pure_noise_is_not_significant():
    rng = np.random.default_rng(3)
    baseline = rng.uniform(0.3, 0.9, 40)
    noise = rng.normal(0.0, 0.1, 20)
    # Mirrored noise: mean difference exactly 0, spread ~0.1 per query.
    candidate = baseline + np.concatenate([noise, -noise])
    result = paired_bootstrap(baseline.tolist(), candidate.tolist(), seed=5)
    assert result.mean_diff == pytest.approx(0.0, abs=1e-12)
    assert result.low < 0 < result.high
    assert not result.significant_drop
    assert not result.significant_gain


def test_bootstrap_is_deterministic_for_a_seed():
    rng = np.random.default_rng(11)
    baseline = rng.uniform(0, 1, 25).tolist()
    candidate = rng.uniform(0, 1, 25).tolist()
    first = paired_bootstrap(baseline, candidate, samples=500, seed=42)
    assert paired_bootstrap(baseline, candidate, samples=500, seed=42) == first
    assert paired_bootstrap(baseline, candidate, samples=500, seed=43) != first
    # A wider confidence level gives a wider interval on the same resamples.
    wide = paired_bootstrap(baseline, candidate, samples=500, seed=42, confidence=0.99)
    assert wide.low <= first.low and wide.high >= first.high


def test_bootstrap_rejects_bad_input():
    with pytest.raises(ValueError, match="differ in length"):
        paired_bootstrap([0.1, 0.2], [0.1])
    with pytest.raises(ValueError, match="at least one"):
        paired_bootstrap([], [])
    with pytest.raises(ValueError, match="finite"):
        paired_bootstrap([0.1, float("nan")], [0.1, 0.2])
    with pytest.raises(ValueError, match="confidence"):
        paired_bootstrap([0.1, 0.2], [0.2, 0.1], confidence=1.0)


def test_bootstrap_ci_of_a_mean():
    from ragline.evaluation.metrics import bootstrap_ci

    r = bootstrap_ci([1.0, 0.0, 1.0, 1.0, 0.5], samples=4000)
    assert r.mean == pytest.approx(0.7) and r.n == 5
    assert r.spread == pytest.approx(math.sqrt(0.2))  # sample variance (ddof=1) of the five values
    assert 0.0 <= r.low < 0.7 < r.high <= 1.0
    assert bootstrap_ci([1.0, 0.0, 1.0, 1.0, 0.5], samples=4000) == r  # seeded: reproducible
    one = bootstrap_ci([0.25])
    assert (one.mean, one.low, one.high, one.spread) == (0.25, 0.25, 0.25, 0.0)
    with pytest.raises(ValueError, match="unmeasured"):
        bootstrap_ci([0.5, float("nan")])
    with pytest.raises(ValueError, match="non-empty"):
        bootstrap_ci([])
