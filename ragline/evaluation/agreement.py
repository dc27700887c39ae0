"""Agreement statistics for human labels and judge scores: Cohen's kappa, Krippendorff's alpha
(nominal, ordinal, interval; missing values) and Spearman's rank correlation (average ranks for ties).

Missing values are None (or a float NaN) everywhere. Bad input raises ValueError with the reason.
Degenerate data: when every pairable value is the same (all coders always agree on one value) the
expected disagreement is 0 and so is the observed one; alpha and kappa are then 0/0 by their
formulas, and are returned as 1.0 (perfect agreement), which is what the data show.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Sequence

import numpy as np

LEVELS = ("nominal", "ordinal", "interval")


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float | np.floating) and math.isnan(value))


def _number(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ValueError(f"{where}: {value!r} is not a number")
    if not math.isfinite(value):
        raise ValueError(f"{where}: {value!r} is not a finite number")
    return float(value)


def cohen_kappa(a: Sequence[Hashable], b: Sequence[Hashable]) -> float:
    """Cohen's kappa of two coders' labels of the same items: (p_o - p_e) / (1 - p_e), with p_e from
    each coder's own label shares. Items either coder left unlabelled (None) are left out."""
    if len(a) != len(b):
        raise ValueError(f"the two coders labelled {len(a)} and {len(b)} items: one label per item each")
    pairs = [(x, y) for x, y in zip(a, b, strict=True) if not _missing(x) and not _missing(y)]
    if len(pairs) < 2:
        raise ValueError(f"kappa needs at least 2 items labelled by both coders, got {len(pairs)}")
    n = len(pairs)
    observed = sum(1 for x, y in pairs if x == y) / n
    first, second = Counter(x for x, _ in pairs), Counter(y for _, y in pairs)
    expected = sum(first[c] * second[c] for c in first) / (n * n)
    if expected >= 1.0:  # both coders used one and the same label throughout: observed is 1 too
        return 1.0
    return (observed - expected) / (1 - expected)


def _coincidences(values: list[list[object]]) -> tuple[list[object], np.ndarray]:
    """The values seen (numbers in ascending order) and Krippendorff's coincidence matrix o_ck:
    each unit's ordered pairs of values from different coders, weighted 1 / (m_u - 1)."""
    seen = list(dict.fromkeys(v for unit in values for v in unit))
    if all(isinstance(v, float) for v in seen):
        seen.sort()  # ordinal and interval values are numbers, in ascending order
    index = {v: i for i, v in enumerate(seen)}
    o = np.zeros((len(seen), len(seen)))
    for unit in values:
        counts = np.zeros(len(seen))
        for v in unit:
            counts[index[v]] += 1
        # Pairs (c, k) from different coders: n_c * n_k, less the pairs of a value with itself.
        o += (np.outer(counts, counts) - np.diag(counts)) / (len(unit) - 1)
    return seen, o


def _distances(seen: list[object], totals: np.ndarray, level: str) -> np.ndarray:
    """delta^2_ck of the level of measurement, for the values seen (in ascending order)."""
    if level == "nominal":
        return 1.0 - np.eye(len(seen))
    if level == "interval":
        x = np.array(seen, dtype=float)
        return (x[:, None] - x[None, :]) ** 2
    # Ordinal: the marginals between c and k, the two ends counted half (Krippendorff 2011).
    cumulative = np.concatenate([[0.0], np.cumsum(totals)])
    lo = np.minimum.outer(np.arange(len(seen)), np.arange(len(seen)))
    hi = np.maximum.outer(np.arange(len(seen)), np.arange(len(seen)))
    between = cumulative[hi + 1] - cumulative[lo]
    return (between - (totals[lo] + totals[hi]) / 2) ** 2


def krippendorff_alpha(units: Sequence[Sequence[float | str | None]], level: str = "nominal") -> float:
    """Krippendorff's alpha, 1 - D_o / D_e, over units (one row per item, one value per coder, None
    where a coder did not label it). Units with fewer than 2 values are not pairable and are left
    out. Ordinal and interval levels need numbers; nominal takes any hashable values."""
    if level not in LEVELS:
        raise ValueError(f"unknown level of measurement {level!r}: one of {', '.join(LEVELS)}")
    widths = {len(unit) for unit in units}
    if len(widths) > 1:
        raise ValueError(f"units have {sorted(widths)} values: one value (or None) per coder in every unit")
    values: list[list[object]] = []
    for u, unit in enumerate(units):
        present = [v for v in unit if not _missing(v)]
        if level != "nominal":
            present = [_number(v, f"unit {u} ({level} level)") for v in present]
        if len(present) >= 2:
            values.append(present)
    if len(values) < 2:
        raise ValueError(f"alpha needs at least 2 units with 2 or more values, got {len(values)}")
    seen, o = _coincidences(values)
    totals = o.sum(axis=1)
    n = totals.sum()
    delta = _distances(seen, totals, level)
    observed = float((o * delta).sum() / n)
    expected = float((np.outer(totals, totals) * delta).sum() / (n * (n - 1)))
    if expected == 0.0:  # one value throughout: no disagreement observed or expected
        return 1.0
    return 1.0 - observed / expected


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n, tied values sharing the mean of the ranks they span."""
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x))
    sorted_x = x[order]
    start = 0
    while start < len(x):
        end = start
        while end + 1 < len(x) and sorted_x[end + 1] == sorted_x[start]:
            end += 1
        ranks[order[start : end + 1]] = (start + end) / 2 + 1
        start = end + 1
    return ranks


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rho: Pearson's correlation of the two samples' ranks (ties get average ranks).
    Pairs with a missing value (None or NaN) on either side are left out."""
    if len(x) != len(y):
        raise ValueError(f"the two samples have {len(x)} and {len(y)} values: they must pair up")
    pairs = [
        (_number(a, f"x[{i}]"), _number(b, f"y[{i}]"))
        for i, (a, b) in enumerate(zip(x, y, strict=True))
        if not _missing(a) and not _missing(b)
    ]
    if len(pairs) < 2:
        raise ValueError(f"Spearman's rho needs at least 2 complete pairs, got {len(pairs)}")
    rx = _average_ranks(np.array([a for a, _ in pairs]))
    ry = _average_ranks(np.array([b for _, b in pairs]))
    dx, dy = rx - rx.mean(), ry - ry.mean()
    denominator = math.sqrt(float((dx * dx).sum() * (dy * dy).sum()))
    if denominator == 0.0:
        raise ValueError("Spearman's rho is undefined when one sample has a single value throughout")
    return float((dx * dy).sum()) / denominator
