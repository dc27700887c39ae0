"""Retrieval-evaluation metrics: tie-aware ranking scores, latency percentiles, paired bootstrap."""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

Ranked = Sequence[tuple[str, float]]
"""One query's results as (id, score), best first."""

Relevance = Mapping[str, float] | Collection[str]
"""One query's judgements: id -> graded gain (<= 0 means not relevant), or a plain set of relevant ids."""

# Per-query metric differences this close to zero are floating-point noise (the same ranking scored
# along a different arithmetic path), not a real change; left in, they could flag a "significant" drop.
_DIFF_NOISE = 1e-12


@dataclass(frozen=True)
class _Group:
    """A run of results sharing one score: positions start+1 .. start+size (1-based)."""

    start: int
    size: int
    relevant: int
    gain: float


@dataclass(frozen=True)
class _Judged:
    """A ranked list reduced to what the metrics need: tied groups and the ideal gains."""

    groups: tuple[_Group, ...]
    n_relevant: int
    ideal_gains: tuple[float, ...]


@dataclass(frozen=True)
class QueryScores:
    """All retrieval metrics for one evaluation question (each in [0, 1])."""

    recall: float
    precision: float
    mrr: float
    ndcg: float
    hit: float


@dataclass(frozen=True)
class BootstrapResult:
    """Whether a candidate configuration scores differently from a baseline on the same questions."""

    mean_baseline: float
    mean_candidate: float
    mean_diff: float
    low: float
    high: float
    confidence: float
    samples: int
    n: int

    @property
    def significant_drop(self) -> bool:
        """The whole confidence interval of (candidate - baseline) lies below zero."""
        return self.high < 0

    @property
    def significant_gain(self) -> bool:
        """The whole confidence interval of (candidate - baseline) lies above zero."""
        return self.low > 0


def _gains(relevant: Relevance) -> dict[str, float]:
    """Positive gain per relevant id; raises if the question has nothing relevant."""
    if isinstance(relevant, str):
        # A bare string is a Collection[str] of characters: almost certainly a caller bug.
        raise TypeError("relevant must be a mapping or a collection of ids, not a single string")
    if isinstance(relevant, Mapping):
        gains = {doc_id: float(gain) for doc_id, gain in relevant.items() if gain > 0}
    else:
        gains = dict.fromkeys(relevant, 1.0)
    if not gains:
        raise ValueError(
            "no relevant ids for this query (empty relevance or all gains <= 0): "
            "an evaluation question needs at least one relevant id"
        )
    return gains


def _judge(ranked: Ranked, relevant: Relevance, ties: bool) -> _Judged:
    """Drop duplicate ids, split the list into tied groups and attach gains."""
    gains = _gains(relevant)
    seen: set[str] = set()
    starts: list[int] = []
    sizes: list[int] = []
    rel_counts: list[int] = []
    gain_sums: list[float] = []
    last_score: float | None = None
    position = 0
    for doc_id, score in ranked:
        if doc_id in seen:
            continue
        seen.add(doc_id)
        gain = gains.get(doc_id, 0.0)
        if ties and sizes and score == last_score:
            sizes[-1] += 1
            rel_counts[-1] += gain > 0
            gain_sums[-1] += gain
        else:
            starts.append(position)
            sizes.append(1)
            rel_counts.append(int(gain > 0))
            gain_sums.append(gain)
        last_score = score
        position += 1
    groups = tuple(
        _Group(s, n, r, g) for s, n, r, g in zip(starts, sizes, rel_counts, gain_sums, strict=True)
    )
    return _Judged(groups, len(gains), tuple(sorted(gains.values(), reverse=True)))


def _check_k(k: int) -> None:
    if k < 1:
        raise ValueError(f"cutoff k must be >= 1, got {k}")


def _inside(group: _Group, k: int) -> int:
    """How many of the group's positions fall within the top k."""
    return max(0, min(k, group.start + group.size) - group.start)


def _expected_relevant(judged: _Judged, k: int) -> float:
    # Each position of a tied group is equally likely to hold any of its items, so the expected
    # number of relevant items in m of its n positions is r * m / n.
    return sum(g.relevant * _inside(g, k) / g.size for g in judged.groups if g.relevant)


def _recall(judged: _Judged, k: int) -> float:
    return _expected_relevant(judged, k) / judged.n_relevant


def _precision(judged: _Judged, k: int) -> float:
    return _expected_relevant(judged, k) / k


def _hit(judged: _Judged, k: int) -> float:
    for g in judged.groups:
        m = _inside(g, k)
        if m == 0:
            break
        if g.relevant == 0:
            continue
        if m == g.size:
            return 1.0
        # Hypergeometric: probability that none of the r relevant items lands in the m slots inside k.
        return 1.0 - math.comb(g.size - g.relevant, m) / math.comb(g.size, m)
    return 0.0


def _reciprocal_rank(judged: _Judged, k: int | None) -> float:
    for g in judged.groups:
        if k is not None and g.start >= k:
            return 0.0
        if g.relevant == 0:
            continue
        n, r = g.size, g.relevant
        last = n - r + 1 if k is None else min(n - r + 1, k - g.start)
        total = math.comb(n, r)
        # P(first relevant at group slot j) = C(n - j, r - 1) / C(n, r): the other r - 1 relevant
        # items must all sit after slot j.
        return sum(math.comb(n - j, r - 1) / total / (g.start + j) for j in range(1, last + 1))
    return 0.0


def _discount(rank: int) -> float:
    return 1.0 / math.log2(rank + 1)


def _ndcg(judged: _Judged, k: int) -> float:
    dcg = 0.0
    for g in judged.groups:
        if g.start >= k:
            break
        if g.gain:
            # Expected gain at every slot of a tied group is the group's average gain.
            end = min(k, g.start + g.size)
            dcg += g.gain / g.size * sum(_discount(rank) for rank in range(g.start + 1, end + 1))
    ideal = sum(gain * _discount(rank) for rank, gain in enumerate(judged.ideal_gains[:k], start=1))
    return dcg / ideal


def recall_at_k(ranked: Ranked, relevant: Relevance, k: int = 10, *, ties: bool = True) -> float:
    """Share of the question's relevant ids that came back in the top k."""
    _check_k(k)
    return _recall(_judge(ranked, relevant, ties), k)


def precision_at_k(ranked: Ranked, relevant: Relevance, k: int = 10, *, ties: bool = True) -> float:
    """Share of the k result slots holding a relevant id (short result lists still divide by k)."""
    _check_k(k)
    return _precision(_judge(ranked, relevant, ties), k)


def reciprocal_rank(ranked: Ranked, relevant: Relevance, k: int | None = None, *, ties: bool = True) -> float:
    """1 / rank of the first relevant result (0 if none within the cutoff); averaged over queries: MRR."""
    if k is not None:
        _check_k(k)
    return _reciprocal_rank(_judge(ranked, relevant, ties), k)


def ndcg_at_k(ranked: Ranked, relevant: Relevance, k: int = 10, *, ties: bool = True) -> float:
    """Graded ranking quality in the top k relative to the best possible ordering (1.0 = ideal)."""
    _check_k(k)
    return _ndcg(_judge(ranked, relevant, ties), k)


def hit_rate_at_k(ranked: Ranked, relevant: Relevance, k: int = 10, *, ties: bool = True) -> float:
    """Probability that at least one relevant id is in the top k (1/0 without ties)."""
    _check_k(k)
    return _hit(_judge(ranked, relevant, ties), k)


def score_query(
    ranked: Ranked, relevant: Relevance, k: int = 10, ndcg_k: int = 10, *, ties: bool = True
) -> QueryScores:
    """Every metric for one question: recall/precision/MRR/hit at k, nDCG at ndcg_k."""
    _check_k(k)
    _check_k(ndcg_k)
    judged = _judge(ranked, relevant, ties)
    return QueryScores(
        recall=_recall(judged, k),
        precision=_precision(judged, k),
        mrr=_reciprocal_rank(judged, k),
        ndcg=_ndcg(judged, ndcg_k),
        hit=_hit(judged, k),
    )


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100, linear interpolation) of e.g. query latencies; NaN when empty."""
    if len(values) == 0:
        return float("nan")
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def _check_resampling(samples: int, confidence: float) -> None:
    """Reject a bootstrap sample count below one or a confidence level outside (0, 1)."""
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def _check_paired(n_baseline: int, n_candidate: int, mismatch: str, empty: str) -> None:
    """Reject paired sides of different lengths (`paired <mismatch>: ...`) or no pairs at all (`empty`)."""
    if n_baseline != n_candidate:
        raise ValueError(f"paired {mismatch}: baseline {n_baseline}, candidate {n_candidate}")
    if n_baseline == 0:
        raise ValueError(empty)


def _percentile_interval(resampled: np.ndarray, confidence: float) -> tuple[float, float]:
    """The central `confidence` share of the resampled statistics, as (low, high) percentiles."""
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = (float(x) for x in np.percentile(resampled, [tail, 100.0 - tail]))
    return low, high


def _paired_result(
    base: np.ndarray,
    cand: np.ndarray,
    mean_diff: float,
    low: float,
    high: float,
    confidence: float,
    samples: int,
) -> BootstrapResult:
    """A BootstrapResult from each side's per-question scores (or means) and the interval found."""
    return BootstrapResult(
        mean_baseline=float(base.mean()),
        mean_candidate=float(cand.mean()),
        mean_diff=mean_diff,
        low=low,
        high=high,
        confidence=confidence,
        samples=samples,
        n=len(base),
    )


def paired_bootstrap(
    baseline: Sequence[float],
    candidate: Sequence[float],
    *,
    samples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> BootstrapResult:
    """Confidence interval of the mean per-question change from baseline to candidate (same questions)."""
    base = np.asarray(baseline, dtype=np.float64)
    cand = np.asarray(candidate, dtype=np.float64)
    if base.ndim != 1 or cand.ndim != 1:
        raise ValueError("baseline and candidate must be flat sequences of per-query scores")
    _check_paired(
        len(base), len(cand), "scores differ in length", "paired_bootstrap needs at least one query"
    )
    if not (np.isfinite(base).all() and np.isfinite(cand).all()):
        raise ValueError("per-query scores must be finite")
    _check_resampling(samples, confidence)

    n = len(base)
    diffs = cand - base
    diffs[np.abs(diffs) < _DIFF_NOISE] = 0.0
    if np.all(diffs == diffs[0]):
        # Every resample has the same mean; computing it would only add rounding error.
        mean_diff = low = high = float(diffs[0])
    else:
        rng = np.random.default_rng(seed)
        indices = rng.integers(0, n, size=(samples, n))
        resampled = diffs[indices].mean(axis=1)
        low, high = _percentile_interval(resampled, confidence)
        mean_diff = float(diffs.mean())
    return _paired_result(base, cand, mean_diff, low, high, confidence, samples)


@dataclass(frozen=True)
class MeanInterval:
    """A mean with its bootstrap confidence interval and the spread (sample standard deviation)."""

    mean: float
    low: float
    high: float
    spread: float  # standard deviation, ddof=1; 0.0 for a single value
    n: int


def bootstrap_ci(
    values: Sequence[float], *, samples: int = 2000, confidence: float = 0.95, seed: int = 0
) -> MeanInterval:
    """Percentile-bootstrap interval of the mean of independent values (a judge's k samples, or the
    per-question scores of one variant); seeded, so the same values give the same interval."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1 or len(arr) == 0:
        raise ValueError("bootstrap_ci needs a flat, non-empty sequence of values")
    if not np.isfinite(arr).all():
        raise ValueError("bootstrap_ci: values must be finite (leave unmeasured values out and count them)")
    _check_resampling(samples, confidence)
    spread = float(arr.std(ddof=1)) if len(arr) > 1 else 0.0
    if np.all(arr == arr[0]):
        v = float(arr[0])
        return MeanInterval(v, v, v, spread, len(arr))
    rng = np.random.default_rng(seed)
    means = arr[rng.integers(0, len(arr), size=(samples, len(arr)))].mean(axis=1)
    low, high = _percentile_interval(means, confidence)
    return MeanInterval(float(arr.mean()), low, high, spread, len(arr))


def paired_bootstrap_nested(
    baseline: Sequence[Sequence[float]],
    candidate: Sequence[Sequence[float]],
    *,
    samples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> BootstrapResult:
    """Two-level paired bootstrap of the mean per-question change: resample the questions, and within
    each question its measured samples on each side (a judge's per-question mean is itself an
    estimate from k samples), so judge noise widens the interval instead of reading as a change."""
    _check_paired(
        len(baseline),
        len(candidate),
        "questions differ in number",
        "paired_bootstrap_nested needs at least one question",
    )
    sides = [[np.asarray(q, dtype=np.float64) for q in side] for side in (baseline, candidate)]
    for side in sides:
        for q in side:
            if q.ndim != 1 or len(q) == 0 or not np.isfinite(q).all():
                raise ValueError("every question needs at least one finite measured sample per side")
    _check_resampling(samples, confidence)
    base_means = np.array([q.mean() for q in sides[0]])
    cand_means = np.array([q.mean() for q in sides[1]])
    n = len(base_means)
    diffs = cand_means - base_means
    diffs[np.abs(diffs) < _DIFF_NOISE] = 0.0
    rng = np.random.default_rng(seed)
    # Per question, `samples` resampled means of its samples on each side: shape (samples, n).
    inner = [
        np.stack([q[rng.integers(0, len(q), size=(samples, len(q)))].mean(axis=1) for q in side], axis=1)
        for side in sides
    ]
    within = inner[1] - inner[0]
    picked = rng.integers(0, n, size=(samples, n))
    resampled = np.take_along_axis(within, picked, axis=1).mean(axis=1)
    low, high = _percentile_interval(resampled, confidence)
    mean_diff = float(diffs.mean())
    if np.all(np.abs(within - diffs) < _DIFF_NOISE) and np.all(diffs == diffs[0]):
        low = high = mean_diff  # nothing varies: every resample has the same mean
    return _paired_result(base_means, cand_means, mean_diff, low, high, confidence, samples)
