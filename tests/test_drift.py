"""Drift statistics on real all-MiniLM-L6-v2 embeddings of the demo corpus (no database, no dagster)."""

from __future__ import annotations

import html
import itertools
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from ragline.monitoring.mmd import (
    DriftResult,
    MMDResult,
    centroid_cosine_distance,
    drift_test,
    mmd_permutation_test,
    sample_rows,
)

CORPUS = Path(__file__).resolve().parent.parent / "examples" / "corpus"
CALIBRATION_SPLITS = 100

# --- the demo corpus as passages of roughly 40-150 words (PDFs skipped) ---


def _strip_html(raw: str) -> str:
    raw = re.sub(r"(?is)<(script|style|head|nav|header|footer)\b.*?</\1>", " ", raw)
    raw = re.sub(r'(?is)<div class="cookie-banner".*?</div>', " ", raw)
    raw = re.sub(r"(?i)</(p|h[1-6]|li|pre|tr|table|div|section|ul|ol)>|<br\s*/?>", "\n\n", raw)
    return html.unescape(re.sub(r"<[^>]+>", " ", raw))


def _strip_markdown(raw: str) -> str:
    raw = re.sub(r"(?m)^\s{0,3}#{1,6}\s*", "", raw)
    raw = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", raw)
    return re.sub(r"[*_`|>]+", " ", raw)


def _document_texts() -> list[str]:
    texts: list[str] = []
    for path in sorted(CORPUS.rglob("*")):
        if path.suffix == ".md":
            texts.append(_strip_markdown(path.read_text(encoding="utf-8")))
        elif path.suffix == ".txt":
            texts.append(path.read_text(encoding="utf-8"))
        elif path.suffix == ".html":
            texts.append(_strip_html(path.read_text(encoding="utf-8")))
        elif path.suffix == ".jsonl":
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    ticket = json.loads(line)
                    texts.append(f"{ticket.get('subject', '')}\n\n{ticket.get('body', '')}")
    return texts


def _passages(text: str, low: int = 40, high: int = 150) -> list[str]:
    """Paragraphs merged until they reach `low` words; longer ones cut into 100-word pieces."""
    out: list[str] = []
    current: list[str] = []
    for paragraph in re.split(r"\n\s*\n", text):
        words = paragraph.split()
        while len(words) > high:
            out.append(" ".join(words[:100]))
            words = words[100:]
        if current and len(current) + len(words) > high:
            out.append(" ".join(current))
            current = []
        current += words
        if len(current) >= low:
            out.append(" ".join(current))
            current = []
    if len(current) >= low // 2:
        out.append(" ".join(current))
    return out


def demo_passages() -> list[str]:
    return [p for text in _document_texts() for p in _passages(text)]


# --- a foreign corpus: cooking, nothing to do with a data-observability product ---

DISHES = [
    "lentil soup",
    "banana bread",
    "mushroom risotto",
    "chicken curry",
    "apple pie",
    "vegetable stir-fry",
    "tomato sauce",
    "pancakes",
    "beef stew",
    "lemon tart",
    "potato gratin",
    "chocolate cake",
]
INGREDIENTS = [
    "onions",
    "garlic",
    "carrots",
    "butter",
    "olive oil",
    "fresh basil",
    "brown sugar",
    "cinnamon",
    "ginger",
    "cream",
    "parmesan",
    "thyme",
]
METHODS = [
    "simmer gently",
    "bake in a hot oven",
    "fry until golden",
    "stir constantly",
    "roast on a tray",
    "whisk until smooth",
]
TEMPLATES = [
    "To make {dish}, {method} the {ing1} for about {mins} minutes, then add the {ing2} and season to "
    "taste. Serve warm with crusty bread.",
    "Grandmother's {dish} starts with chopped {ing1}. {Method} until fragrant, fold in the {ing2}, and let "
    "it rest for {mins} minutes before serving.",
    "For a richer {dish}, use more {ing1} and a spoonful of {ing2}. {Method} and taste again after {mins} "
    "minutes; a pinch of salt brightens the flavour.",
    "Leftover {dish} keeps for three days in the fridge. Reheat it slowly, {method}, and finish with "
    "{ing1} and a little {ing2} so it tastes freshly cooked.",
]


def foreign_passages() -> list[str]:
    """96 short recipe passages: 12 dishes x 4 templates x 2 method/ingredient variants."""
    out = []
    for d, t, v in itertools.product(range(len(DISHES)), range(len(TEMPLATES)), range(2)):
        method = METHODS[(d + t + 3 * v) % len(METHODS)]
        out.append(
            TEMPLATES[t].format(
                dish=DISHES[d],
                method=method,
                Method=method.capitalize(),
                ing1=INGREDIENTS[(d + 2 * t + 5 * v) % len(INGREDIENTS)],
                ing2=INGREDIENTS[(3 * d + t + 7 * v + 5) % len(INGREDIENTS)],
                mins=10 + 5 * ((d + t + v) % 6),
            )
        )
    return out


# --- fixtures: the local model, run once per module ---


@pytest.fixture(scope="module")
def model():
    from ragline.index.embedding import LocalMiniLM

    return LocalMiniLM(batch_size=8)


@pytest.fixture(scope="module")
def demo(model) -> np.ndarray:
    passages = demo_passages()
    assert 250 <= len(passages) <= 450, len(passages)
    vectors = model.embed(passages)
    assert vectors.shape == (len(passages), 384)
    return vectors


@pytest.fixture(scope="module")
def foreign(model) -> np.ndarray:
    passages = foreign_passages()
    assert len(set(passages)) == len(passages) >= 60
    return model.embed(passages)


def halves(vectors: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(len(vectors))
    half = len(vectors) // 2
    return vectors[order[:half]], vectors[order[half:]]


# --- calibration and power on real embeddings ---


def test_random_splits_of_one_corpus_rarely_alarm(demo: np.ndarray) -> None:
    results = [drift_test(*halves(demo, seed), seed=seed) for seed in range(CALIBRATION_SPLITS)]
    p_values = np.array([r.p_value for r in results])
    effects = np.array([r.effect for r in results])
    alarms = sum(r.alarm for r in results)
    significant = sum(r.significant for r in results)
    q = [0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0]

    def quantiles(values: np.ndarray, digits: int) -> dict[float, float]:
        return dict(zip(q, np.round(np.quantile(values, q), digits).tolist(), strict=True))

    print(
        f"\ncalibration: {len(demo)} passages, {CALIBRATION_SPLITS} half/half splits: "
        f"{alarms} alarms, {significant} significant at alpha 0.01"
        f"\n  p-value quantiles {quantiles(p_values, 3)}"
        f"\n  p <= 0.05: {np.mean(p_values <= 0.05):.2f}, p <= 0.1: {np.mean(p_values <= 0.1):.2f}"
        f"\n  null effect quantiles {quantiles(effects, 4)}"
    )
    assert alarms <= 0.10 * CALIBRATION_SPLITS
    assert np.median(p_values) > 0.1  # not passing only because min_effect vetoes significant results
    assert np.mean(p_values <= 0.1) <= 0.25  # roughly uniform under the null, not piled up near 0


def test_foreign_corpus_alarms(demo: np.ndarray, foreign: np.ndarray) -> None:
    baseline, _ = halves(demo, 0)
    result = drift_test(baseline, foreign)
    print(f"\nforeign corpus: p={result.p_value:.4f} effect={result.effect:.3f} mmd2={result.mmd2:.4f}")
    assert result.alarm
    assert result.p_value <= 0.01
    assert result.effect > result.min_effect
    assert result.reason == ""


def test_thirty_percent_foreign_rows_alarm(demo: np.ndarray, foreign: np.ndarray) -> None:
    baseline, rest = halves(demo, 0)
    n_foreign = round(len(rest) * 3 / 7)  # current = 70% demo + 30% foreign
    assert n_foreign <= len(foreign)
    current = np.vstack([rest, foreign[:n_foreign]])
    result = drift_test(baseline, current)
    print(
        f"\nmixed 70/30 ({len(rest)} demo + {n_foreign} foreign): "
        f"p={result.p_value:.4f} effect={result.effect:.3f} mmd2={result.mmd2:.4f}"
    )
    assert result.alarm
    assert result.p_value <= 0.01
    assert result.effect > result.min_effect


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
    assert drift.effect == pytest.approx(0.0, abs=1e-9)


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


# --- centroid distance and sampling ---


def test_centroid_distance(demo: np.ndarray) -> None:
    assert centroid_cosine_distance(demo, demo) == pytest.approx(0.0, abs=1e-9)
    eye = np.eye(6)
    assert centroid_cosine_distance(eye[:3], eye[3:]) == pytest.approx(1.0)
    assert centroid_cosine_distance(eye[:2], -eye[:2]) == pytest.approx(2.0)
    assert math.isnan(centroid_cosine_distance(np.vstack([eye[:1], -eye[:1]]), eye[:2]))


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
    assert result.alarm == (result.significant and result.effect > result.min_effect)


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
        "mmd2",
        "effect",
        "n_baseline",
        "n_current",
        "significant",
        "alarm",
        "alpha",
        "min_effect",
        "reason",
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
