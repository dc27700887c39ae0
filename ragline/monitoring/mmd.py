"""Embedding drift statistics (pure numpy): the share of current rows unlike the baseline, with a
permutation p-value, and the MMD² permutation test it replaced as the alarm (kept for comparison).

The alarm's effect size is a share of rows that on-call can read ("about 10% of the corpus is new
content") and that does not shrink with the sample size: a current row is "unlike the baseline" when
its nearest baseline neighbour is farther than the baseline's own nearest-neighbour distances at the
NEIGHBOUR_QUANTILE; the share beyond that, corrected for the 1 - NEIGHBOUR_QUANTILE expected by
chance, estimates the share of new content. The same statistic under label permutations gives an
exact p-value. An alarm needs both: p < alpha and an estimated share of at least min_share.
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
DEFAULT_MIN_SHARE = 0.05
DEFAULT_MIN_ROWS = 10
# The baseline's own nearest-neighbour distances at this quantile mark a current row as "unlike the
# baseline"; by chance 1 - NEIGHBOUR_QUANTILE of the rows of a same-distribution sample lie beyond it.
NEIGHBOUR_QUANTILE = 0.95
# Enough nearest neighbours kept per row that one of them is a baseline row for any labelling with
# near certainty ((1 - n_baseline / n)^k); a row without one falls back to a full scan.
_NEIGHBOURS_PER_BASELINE_SHARE = 40
_MIN_NEIGHBOURS = 64
_FIRST_LOOK = 8

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
class NewContentResult:
    """How much of y is unlike x: the share estimate, its permutation p-value, and which rows."""

    share: float  # estimated share of y's rows unlike x, in [0, 1]; 0 when no more than chance
    beyond: float  # raw share of y's rows beyond the threshold (about 1 - NEIGHBOUR_QUANTILE by chance)
    p_value: float  # (1 + #{permuted beyond >= observed}) / (1 + permutations)
    threshold: float  # x's own nearest-neighbour distance at NEIGHBOUR_QUANTILE (squared euclidean)
    unlike_rows: tuple[int, ...]  # rows of y beyond the threshold, farthest from x first
    n_x: int
    n_y: int
    permutations: int


@dataclass(frozen=True)
class DriftResult:
    """A drift verdict for one source: alarm=True means a share of the current rows unlike anything in
    the baseline, more than chance (p_value < alpha) and at least min_share of the rows."""

    p_value: float  # nan when the test was skipped (see reason)
    new_share: float  # estimated share of current rows unlike the baseline (0-1); nan when skipped
    n_baseline: int  # baseline rows compared (after sampling)
    n_current: int  # current rows compared (after sampling)
    significant: bool  # p_value < alpha
    alarm: bool  # significant and new_share >= min_share
    alpha: float
    min_share: float
    reason: str = ""  # why the test was skipped; "" for a normal result
    # Rows of the current input (as passed in, before sampling) unlike the baseline, farthest first.
    unlike_rows: tuple[int, ...] = ()

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
            elif isinstance(value, tuple):
                out[key] = [int(v) for v in value]
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


def _squared_distances(pooled: np.ndarray) -> np.ndarray:
    centred = pooled - pooled.mean(axis=0)  # distances are shift-invariant; centring limits cancellation
    sq_norms = np.einsum("ij,ij->i", centred, centred)
    sq_dist = sq_norms[:, None] + sq_norms[None, :] - 2.0 * (centred @ centred.T)
    np.maximum(sq_dist, 0.0, out=sq_dist)
    return sq_dist


class _Neighbours:
    """Each pooled row's nearest other rows, sorted, so that any labelling's nearest-baseline distance
    costs O(k) per row instead of O(n)."""

    def __init__(self, pooled: np.ndarray, n_x: int) -> None:
        self.dist = _squared_distances(pooled)
        np.fill_diagonal(self.dist, np.inf)  # a row is not its own neighbour
        n = len(pooled)
        k = min(n - 1, max(_MIN_NEIGHBOURS, math.ceil(_NEIGHBOURS_PER_BASELINE_SHARE * n / n_x)))
        order = (
            np.argpartition(self.dist, k - 1, axis=1)[:, :k] if k < n - 1 else np.argsort(self.dist)[:, :k]
        )
        near = np.take_along_axis(self.dist, order, axis=1)
        by_distance = np.argsort(near, axis=1, kind="stable")
        self.order = np.take_along_axis(order, by_distance, axis=1)
        self.near = np.take_along_axis(near, by_distance, axis=1)

    def to_baseline(self, is_x: np.ndarray) -> np.ndarray:
        """Per labelling (rows of is_x) and pooled row, the distance to its nearest x row (not itself)."""
        # The nearest x row is nearly always among a row's first few neighbours: look there first.
        first_few = min(_FIRST_LOOK, self.order.shape[1])
        hit = is_x[:, self.order[:, :first_few]]  # labellings x rows x first_few
        first = hit.argmax(axis=2)
        nearest = self.near[np.arange(self.near.shape[0])[None, :], first]
        for p, row in zip(*np.nonzero(~hit.any(axis=2)), strict=True):
            found = np.flatnonzero(is_x[p, self.order[row]])
            nearest[p, row] = self.near[row, found[0]] if len(found) else self.dist[row, is_x[p]].min()
        return nearest


def _beyond(nearest: np.ndarray, is_x: np.ndarray, n_x: int, n_y: int) -> tuple[np.ndarray, np.ndarray]:
    """Per labelling: the share of y rows beyond x's own nearest-neighbour quantile, and that quantile."""
    threshold = np.quantile(nearest[is_x].reshape(-1, n_x), NEIGHBOUR_QUANTILE, axis=1)
    y_nearest = nearest[~is_x].reshape(-1, n_y)
    return (y_nearest > threshold[:, None]).mean(axis=1), threshold


def new_content_test(
    x: ArrayLike, y: ArrayLike, *, permutations: int = DEFAULT_PERMUTATIONS, seed: int = 0
) -> NewContentResult:
    """Which share of y is unlike anything in x, and could that share be chance (p_value)?

    A y row is unlike x when its nearest x row is farther than NEIGHBOUR_QUANTILE of x's rows are
    from their own nearest other x row. The share of such rows is compared with the same share under
    random relabellings of the pooled rows: exact under "x and y come from one distribution", at any
    sample size. Memory is O((n_x + n_y)²): subsample large sets first (see drift_test).
    """
    if permutations < 1:
        raise ValueError(f"permutations must be >= 1, got {permutations}")
    xm, ym = _as_matrix(x, "x"), _as_matrix(y, "y")
    _check_pair(xm, ym, min_rows=2)
    n_x, n_y = xm.shape[0], ym.shape[0]
    n = n_x + n_y
    neighbours = _Neighbours(np.vstack([xm, ym]), n_x)

    observed_x = np.zeros((1, n), dtype=bool)
    observed_x[0, :n_x] = True
    nearest = neighbours.to_baseline(observed_x)
    beyond, threshold = _beyond(nearest, observed_x, n_x, n_y)
    observed = float(beyond[0])

    rng = np.random.default_rng(seed)
    exceed = 0
    # Blocks of labellings sized so a block's labellings x rows x k neighbour flags stay near 4 MB.
    per_block = max(1, min(_PERMUTATION_BLOCK, 4_000_000 // neighbours.order.size))
    for start in range(0, permutations, per_block):
        block = min(per_block, permutations - start)
        x_idx = np.argsort(rng.random((block, n)), axis=1)[:, :n_x]  # a uniform random x-subset per row
        is_x = np.zeros((block, n), dtype=bool)
        np.put_along_axis(is_x, x_idx, True, axis=1)
        permuted, _ = _beyond(neighbours.to_baseline(is_x), is_x, n_x, n_y)
        exceed += int(np.count_nonzero(permuted >= observed - _TIE_TOLERANCE))

    y_nearest = nearest[0, n_x:]
    unlike = np.flatnonzero(y_nearest > threshold[0])
    unlike = unlike[np.argsort(-y_nearest[unlike], kind="stable")]
    chance = 1.0 - NEIGHBOUR_QUANTILE
    return NewContentResult(
        share=float(np.clip((observed - chance) / NEIGHBOUR_QUANTILE, 0.0, 1.0)),
        beyond=observed,
        p_value=(1 + exceed) / (1 + permutations),
        threshold=float(threshold[0]),
        unlike_rows=tuple(int(i) for i in unlike),
        n_x=n_x,
        n_y=n_y,
        permutations=permutations,
    )


def sample_index(rows: int, n: int, seed: int) -> np.ndarray:
    """At most n row numbers of `rows`, chosen uniformly without replacement, ascending; the same seed
    always picks the same rows. All of them when there are n rows or fewer."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if rows <= n:
        return np.arange(rows)
    return np.sort(np.random.default_rng(seed).choice(rows, size=n, replace=False))


def sample_rows(x: ArrayLike, n: int, seed: int) -> np.ndarray:
    """At most n rows of x, chosen uniformly without replacement, in their original order; the same seed
    always picks the same rows. All rows (x itself) when x has n rows or fewer."""
    arr = np.asarray(x)
    if arr.ndim == 0:
        raise ValueError("x must have rows, got a scalar")
    picked = sample_index(arr.shape[0], n, seed)
    return arr if len(picked) == arr.shape[0] else arr[picked]


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
    min_share: float = DEFAULT_MIN_SHARE,
    permutations: int = DEFAULT_PERMUTATIONS,
    sample_size: int = DEFAULT_SAMPLE_SIZE,
    seed: int = 0,
    min_rows: int = DEFAULT_MIN_ROWS,
) -> DriftResult:
    """Did a source's current embeddings drift from its baseline? alarm=True means investigate.

    Each side is subsampled to sample_size rows, then new_content_test estimates the share of current
    rows unlike the baseline and its p-value. Too few rows on either side (< min_rows) gives a skipped
    result (p_value nan, alarm False, reason set) instead of an exception, so a new or tiny source never
    breaks monitoring. Malformed input (not 2-D, mismatched dimensions, nan/inf) still raises ValueError.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if not 0.0 <= min_share <= 1.0:
        raise ValueError(f"min_share must be in [0, 1], got {min_share}")
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
            new_share=math.nan,
            n_baseline=n_base,
            n_current=n_cur,
            significant=False,
            alarm=False,
            alpha=alpha,
            min_share=min_share,
            reason="too few rows: " + ", ".join(short),
        )

    base_full, cur_full = _as_matrix(base_arr, "baseline"), _as_matrix(cur_arr, "current")
    _check_pair(base_full, cur_full, min_rows=min_rows, names=("baseline", "current"))
    base_seed, cur_seed, perm_seed = (int(s) for s in np.random.SeedSequence(seed).generate_state(3))
    base = base_full[sample_index(n_base, sample_size, base_seed)]
    cur_idx = sample_index(n_cur, sample_size, cur_seed)
    test = new_content_test(base, cur_full[cur_idx], permutations=permutations, seed=perm_seed)
    significant = test.p_value < alpha
    return DriftResult(
        p_value=test.p_value,
        new_share=test.share,
        n_baseline=test.n_x,
        n_current=test.n_y,
        significant=significant,
        alarm=significant and test.share >= min_share,
        alpha=alpha,
        min_share=min_share,
        reason="",
        unlike_rows=tuple(int(cur_idx[i]) for i in test.unlike_rows),
    )
