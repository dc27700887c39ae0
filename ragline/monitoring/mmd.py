"""Embedding drift statistics: an MMD² permutation test plus a centroid effect size (pure numpy).

The test answers "could these two sets of embeddings come from the same distribution?" with a calibrated
p-value; the centroid cosine distance says how far the average meaning moved. An alarm needs both: a
significant test (p < alpha) and an effect larger than min_effect, so tiny but real shifts on big samples
do not page anyone.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

DEFAULT_PERMUTATIONS = 200
DEFAULT_SAMPLE_SIZE = 500
DEFAULT_ALPHA = 0.01
DEFAULT_MIN_EFFECT = 0.02
DEFAULT_MIN_ROWS = 10

# Permuted statistics this close to the observed one count as ties (>=): conservative p-values even when
# float summation order differs between the observed labelling and an equivalent permuted one.
_TIE_TOLERANCE = 1e-12
# Permutations are scored in blocks so memory stays at block x (n_x + n_y) floats.
_PERMUTATION_BLOCK = 256


@dataclass(frozen=True)
class MMDResult:
    """One two-sample test: a small p_value means the two embedding sets differ in distribution."""

    mmd2: float  # unbiased MMD² (can be slightly negative when the sets are alike)
    p_value: float  # (1 + #{permuted MMD² >= mmd2}) / (1 + permutations)
    bandwidth: float  # RBF kernel sigma from the median heuristic
    n_x: int
    n_y: int
    permutations: int


@dataclass(frozen=True)
class DriftResult:
    """A drift verdict for one source: alarm=True means the current embeddings moved away from the baseline
    by more than chance (p_value < alpha) and by a meaningful amount (effect > min_effect)."""

    p_value: float  # nan when the test was skipped (see reason)
    mmd2: float  # nan when skipped
    effect: float  # centroid cosine distance, 0 = same average meaning; nan when skipped
    n_baseline: int  # baseline rows compared (after sampling)
    n_current: int  # current rows compared (after sampling)
    significant: bool  # p_value < alpha
    alarm: bool  # significant and effect > min_effect
    alpha: float
    min_effect: float
    reason: str = ""  # why the test was skipped; "" for a normal result

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-safe values for run metadata; nan (a skipped test) becomes None."""
        out: dict[str, Any] = {}
        for key, value in asdict(self).items():
            if isinstance(value, float | np.floating):
                value = float(value)
                out[key] = None if math.isnan(value) else value
            elif isinstance(value, bool | np.bool_):
                out[key] = bool(value)
            elif isinstance(value, int | np.integer):
                out[key] = int(value)
            else:
                out[key] = value
        return out


def _as_matrix(a: ArrayLike, name: str) -> np.ndarray:
    arr = np.asarray(a, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array of embeddings (rows x dims), got shape {arr.shape}")
    return arr


def _check_pair(x: np.ndarray, y: np.ndarray, min_rows: int, names: tuple[str, str] = ("x", "y")) -> None:
    for name, arr in zip(names, (x, y), strict=True):
        if arr.shape[0] < min_rows:
            raise ValueError(f"{name} needs at least {min_rows} rows, got {arr.shape[0]}")
        if arr.shape[1] == 0:
            raise ValueError(f"{name} has zero columns")
        if not np.isfinite(arr).all():
            raise ValueError(f"{name} contains non-finite values (nan or inf)")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"{names[0]} and {names[1]} have different dimensions: {x.shape[1]} != {y.shape[1]}")


def _unbiased_mmd2(k0: np.ndarray, labels: np.ndarray, n_x: int, n_y: int) -> np.ndarray:
    """Unbiased MMD² for each row of labels (1.0 = x, 0.0 = y); k0 is the kernel with a zeroed diagonal."""
    row_sums = k0.sum(axis=1)
    total = row_sums.sum()
    s_xx = np.einsum("pi,pi->p", labels @ k0, labels)  # sum over i != j, both in x
    s_x_all = labels @ row_sums  # sum over i in x, any j
    s_xy = s_x_all - s_xx
    s_yy = total - 2.0 * s_x_all + s_xx
    return s_xx / (n_x * (n_x - 1)) + s_yy / (n_y * (n_y - 1)) - 2.0 * s_xy / (n_x * n_y)


def mmd_permutation_test(
    x: ArrayLike, y: ArrayLike, *, permutations: int = DEFAULT_PERMUTATIONS, seed: int = 0
) -> MMDResult:
    """Test whether embedding sets x and y come from the same distribution; p_value < alpha says they don't.

    Unbiased MMD² with an RBF kernel exp(-||a-b||² / (2 sigma²)), sigma² = median pooled pairwise squared
    distance (diagonal excluded). The pooled kernel matrix is built once, so memory is O((n_x + n_y)²):
    subsample large sets first (see drift_test).
    """
    if permutations < 1:
        raise ValueError(f"permutations must be >= 1, got {permutations}")
    xm, ym = _as_matrix(x, "x"), _as_matrix(y, "y")
    _check_pair(xm, ym, min_rows=2)
    n_x, n_y = xm.shape[0], ym.shape[0]
    n = n_x + n_y

    pooled = np.vstack([xm, ym])
    pooled = pooled - pooled.mean(axis=0)  # distances are shift-invariant; centring limits cancellation
    sq_norms = np.einsum("ij,ij->i", pooled, pooled)
    sq_dist = sq_norms[:, None] + sq_norms[None, :] - 2.0 * (pooled @ pooled.T)
    np.maximum(sq_dist, 0.0, out=sq_dist)
    np.fill_diagonal(sq_dist, 0.0)

    sigma2 = float(np.median(sq_dist[np.triu_indices(n, k=1)]))
    if not sigma2 > 0.0:  # more than half the pairs are duplicates: fall back to the mean distance
        sigma2 = float(sq_dist.sum() / (n * (n - 1)))
    if not sigma2 > 0.0:  # every row identical: any bandwidth gives MMD² = 0
        sigma2 = 1.0

    k0 = np.exp(-sq_dist / (2.0 * sigma2))
    np.fill_diagonal(k0, 0.0)

    observed_labels = np.zeros((1, n))
    observed_labels[0, :n_x] = 1.0
    observed = float(_unbiased_mmd2(k0, observed_labels, n_x, n_y)[0])

    rng = np.random.default_rng(seed)
    exceed = 0
    for start in range(0, permutations, _PERMUTATION_BLOCK):
        block = min(_PERMUTATION_BLOCK, permutations - start)
        x_idx = np.argsort(rng.random((block, n)), axis=1)[:, :n_x]  # a uniform random x-subset per row
        labels = np.zeros((block, n))
        np.put_along_axis(labels, x_idx, 1.0, axis=1)
        permuted = _unbiased_mmd2(k0, labels, n_x, n_y)
        exceed += int(np.count_nonzero(permuted >= observed - _TIE_TOLERANCE))

    return MMDResult(
        mmd2=observed,
        p_value=(1 + exceed) / (1 + permutations),
        bandwidth=math.sqrt(sigma2),
        n_x=n_x,
        n_y=n_y,
        permutations=permutations,
    )


def centroid_cosine_distance(x: ArrayLike, y: ArrayLike) -> float:
    """How far the average meaning moved: 1 - cosine(mean(x), mean(y)); 0 = same direction, 1 = orthogonal.

    nan when either centroid is the zero vector (no direction to compare).
    """
    xm, ym = _as_matrix(x, "x"), _as_matrix(y, "y")
    _check_pair(xm, ym, min_rows=1)
    cx, cy = xm.mean(axis=0), ym.mean(axis=0)
    norm = float(np.linalg.norm(cx) * np.linalg.norm(cy))
    if norm == 0.0:
        return math.nan
    cosine = float(np.clip(cx @ cy / norm, -1.0, 1.0))
    return 1.0 - cosine


def sample_rows(x: ArrayLike, n: int, seed: int) -> np.ndarray:
    """At most n rows of x, chosen uniformly without replacement, in their original order; the same seed
    always picks the same rows. All rows (x itself) when x has n rows or fewer."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    arr = np.asarray(x)
    if arr.ndim == 0:
        raise ValueError("x must have rows, got a scalar")
    if arr.shape[0] <= n:
        return arr
    picked = np.random.default_rng(seed).choice(arr.shape[0], size=n, replace=False)
    return arr[np.sort(picked)]


def _row_count(a: np.ndarray, name: str) -> int:
    if a.ndim == 2:
        return int(a.shape[0])
    if a.size == 0:  # [] or an empty 1-D array: a source with no rows yet
        return 0
    raise ValueError(f"{name} must be a 2-D array of embeddings (rows x dims), got shape {a.shape}")


def drift_test(
    baseline: ArrayLike,
    current: ArrayLike,
    *,
    alpha: float = DEFAULT_ALPHA,
    min_effect: float = DEFAULT_MIN_EFFECT,
    permutations: int = DEFAULT_PERMUTATIONS,
    sample_size: int = DEFAULT_SAMPLE_SIZE,
    seed: int = 0,
    min_rows: int = DEFAULT_MIN_ROWS,
) -> DriftResult:
    """Did a source's current embeddings drift from its baseline? alarm=True means investigate.

    Each side is subsampled to sample_size rows, then the MMD² permutation test and the centroid cosine
    distance are computed. Too few rows on either side (< min_rows) gives a skipped result (p_value nan,
    alarm False, reason set) instead of an exception, so a new or tiny source never breaks monitoring.
    Malformed input (not 2-D, mismatched dimensions, nan/inf) still raises ValueError.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if not min_effect >= 0.0:
        raise ValueError(f"min_effect must be >= 0, got {min_effect}")
    if min_rows < 2:
        raise ValueError(f"min_rows must be >= 2 (the test needs two rows per side), got {min_rows}")
    if sample_size < min_rows:
        raise ValueError(f"sample_size ({sample_size}) must be >= min_rows ({min_rows})")

    base_arr, cur_arr = np.asarray(baseline), np.asarray(current)
    n_base, n_cur = _row_count(base_arr, "baseline"), _row_count(cur_arr, "current")
    rows = {"baseline": n_base, "current": n_cur}
    short = [f"{count} {side} < {min_rows}" for side, count in rows.items() if count < min_rows]
    if short:
        return DriftResult(
            p_value=math.nan,
            mmd2=math.nan,
            effect=math.nan,
            n_baseline=n_base,
            n_current=n_cur,
            significant=False,
            alarm=False,
            alpha=alpha,
            min_effect=min_effect,
            reason="too few rows: " + ", ".join(short),
        )

    base_full, cur_full = _as_matrix(base_arr, "baseline"), _as_matrix(cur_arr, "current")
    _check_pair(base_full, cur_full, min_rows=min_rows, names=("baseline", "current"))
    base_seed, cur_seed, perm_seed = (int(s) for s in np.random.SeedSequence(seed).generate_state(3))
    base = sample_rows(base_full, sample_size, base_seed)
    cur = sample_rows(cur_full, sample_size, cur_seed)
    mmd = mmd_permutation_test(base, cur, permutations=permutations, seed=perm_seed)
    effect = centroid_cosine_distance(base, cur)
    significant = mmd.p_value < alpha
    return DriftResult(
        p_value=mmd.p_value,
        mmd2=mmd.mmd2,
        effect=effect,
        n_baseline=mmd.n_x,
        n_current=mmd.n_y,
        significant=significant,
        alarm=significant and effect > min_effect,  # nan effect (zero centroid) never alarms
        alpha=alpha,
        min_effect=min_effect,
        reason="",
    )
