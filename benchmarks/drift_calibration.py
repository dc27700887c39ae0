"""Calibration of the drift alarm on real embeddings: false alarms and power of the shipped defaults.

The corpus is the demo corpus (examples/corpus) cut by ragline's own chunker with ragline.yaml's
settings; the foreign text is the installed packages' own docstrings, READMEs and METADATA
descriptions (benchmarks/real_corpus.py; software documentation, not an HR handbook or a product's
help pages), at most 3 chunks per document. Both are embedded with the local all-MiniLM-L6-v2 and
cached under benchmarks/.work.

Nulls (what "no drift" means here): the baseline and the current sample are drawn from one pool of
chunks, so they are exchangeable, which is what a corpus that did not change gives. At n = 50 the two
sides are disjoint random splits of the demo chunks; at n = 500 and 5,000 per side there are not
enough demo chunks, so both sides are drawn with replacement from them (still exchangeable), and
also disjoint random splits of the package chunks. A split by *document* is reported too: it is not
a null (each package's text is new content relative to the others), it shows what the share means.

Power: the current side holds 10% or 30% package chunks among demo chunks (demo corpus as the
baseline), and the reverse (package chunks as the corpus, demo chunks as the new content).

The named alternative in the same run is the test this replaced: the MMD² permutation test with the
centroid cosine distance above 0.05 (the previous shipped defaults).

Results: benchmarks/results/drift_calibration.{json,md}.

    uv run --frozen python benchmarks/drift_calibration.py [--splits 200] [--package-rows 3000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import importlib.metadata
import json
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
WORK = REPO / "benchmarks" / ".work"
RESULTS = REPO / "benchmarks" / "results"
MIN_DESCRIPTION_CHARS = 400

Split = Callable[[np.random.Generator], tuple[np.ndarray, np.ndarray]]


def demo_chunks(model: Any) -> tuple[list[str], list[str]]:
    """The demo corpus's chunks as ragline.yaml cuts them, and each chunk's "source/path"."""
    from ragline.config import load_settings
    from ragline.ingest.chunking import Chunker
    from ragline.ingest.sources import scan_source

    settings = load_settings(REPO / "ragline.yaml")
    texts, documents = [], []
    for source in settings.sources:
        chunker = Chunker(source.chunking, model.tokenizer)
        for doc in scan_source(source).documents:
            for chunk in chunker.split(doc.text):
                texts.append(chunk.text)
                documents.append(f"{source.name}/{doc.path}")
    return texts, documents


def package_chunks(
    model: Any, limit: int, per_package: int = 2, *, docstrings: bool = False
) -> tuple[list[str], list[str]]:
    """Up to `limit` chunks of text from the installed packages (at most `per_package` per document),
    and each chunk's document: text on this machine from another domain than the demo corpus.

    Their METADATA descriptions by default (quick: a few hundred chunks, in package-name order); with
    docstrings=True also their docstrings and READMEs (benchmarks/real_corpus.py: thousands of
    documents, about 100 s to read), in a seeded order of document names."""
    from ragline.config import ChunkingSettings
    from ragline.ingest.chunking import Chunker

    settings = ChunkingSettings(strategy="sentence", chunk_size=200, chunk_overlap=20)
    chunker = Chunker(settings, model.tokenizer)
    if docstrings:
        from benchmarks.real_corpus import collect, site_packages

        docs = sorted(collect(site_packages()), key=lambda d: hashlib.sha1(d.name.encode()).hexdigest())
        documents = [(d.name, d.text) for d in docs]
    else:
        described: dict[str, str] = {}
        for dist in importlib.metadata.distributions():
            meta = dist.metadata
            body = meta.get_payload() or meta.get("Description") or ""  # type: ignore[attr-defined]
            if isinstance(body, str) and len(body.strip()) >= MIN_DESCRIPTION_CHARS:
                described.setdefault(meta["Name"].lower(), body.strip())
        # Only the first chunks are kept: a README's head is enough (and splitting all of it is slow).
        documents = [(name, text[: 2000 * per_package]) for name, text in sorted(described.items())]
    texts, names = [], []
    for name, text in documents:
        for chunk in chunker.split(text)[:per_package]:
            texts.append(chunk.text)
            names.append(name)
            if len(texts) >= limit:
                return texts, names
    return texts, names


def disjoint(pool: np.ndarray, n: int) -> Split:
    n = min(n, len(pool) // 2)

    def split(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        order = rng.permutation(len(pool))
        return pool[order[:n]], pool[order[n : 2 * n]]

    return split


def resampled(pool: np.ndarray, n: int) -> Split:
    def split(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        return pool[rng.integers(0, len(pool), n)], pool[rng.integers(0, len(pool), n)]

    return split


def by_document(pool: np.ndarray, documents: list[str], n: int) -> Split:
    names = sorted(set(documents))
    doc_of = np.array([names.index(d) for d in documents])

    def split(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        half = rng.permutation(len(names))[: len(names) // 2]
        left = np.isin(doc_of, half)
        sides = [np.flatnonzero(left), np.flatnonzero(~left)]
        a, b = (pool[rng.choice(side, min(n, len(side)), replace=False)] for side in sides)
        return a, b

    return split


def mixed(corpus: np.ndarray, foreign: np.ndarray, n: int, share: float, *, replace: bool) -> Split:
    """Baseline: n corpus rows; current: n rows of which `share` are foreign (drawn without replacement)."""
    k = round(n * share)

    def split(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        if replace:
            base, cur = corpus[rng.integers(0, len(corpus), n)], corpus[rng.integers(0, len(corpus), n - k)]
        else:
            order = rng.permutation(len(corpus))
            base, cur = corpus[order[:n]], corpus[order[n : 2 * n - k]]
        return base, np.vstack([cur, foreign[rng.choice(len(foreign), k, replace=False)]])

    return split


def shipped_drift_test(base: np.ndarray, cur: np.ndarray, settings: Any, seed: int) -> Any:
    """drift_test with the settings' alpha, min_new_share, permutations and sample_size."""
    from ragline.monitoring.mmd import drift_test

    return drift_test(
        base,
        cur,
        alpha=settings.alpha,
        min_share=settings.min_new_share,
        permutations=settings.permutations,
        sample_size=settings.sample_size,
        seed=seed,
    )


def run_scenario(split: Split, splits: int, settings: Any, *, alternative: bool) -> dict[str, Any]:
    from ragline.monitoring.mmd import mmd_permutation_test, sample_rows

    alarms, significant, shares, alt_alarms, seconds = 0, 0, [], 0, 0.0
    for seed in range(splits):
        base, cur = split(np.random.default_rng(seed))
        started = time.perf_counter()
        result = shipped_drift_test(base, cur, settings, seed)
        seconds += time.perf_counter() - started
        alarms += result.alarm
        significant += result.significant
        shares.append(result.new_share)
        if alternative:  # the previous alarm: MMD² p < alpha and centroid distance > 0.05
            b, c = (
                sample_rows(base, settings.sample_size, seed),
                sample_rows(cur, settings.sample_size, seed + 1),
            )
            p = mmd_permutation_test(b, c, permutations=settings.permutations, seed=seed).p_value
            cb, cc = b.mean(axis=0), c.mean(axis=0)
            centroid = 1.0 - float(cb @ cc / (np.linalg.norm(cb) * np.linalg.norm(cc)))
            alt_alarms += p < settings.alpha and centroid > 0.05
    q = np.quantile(shares, [0.05, 0.5, 0.95])
    return {
        "splits": splits,
        "alarm_rate": alarms / splits,
        "significant_rate": significant / splits,
        "new_share_p5_p50_p95": [round(float(v), 4) for v in q],
        "seconds_per_test": round(seconds / splits, 4),
        **({"previous_alarm_rate": alt_alarms / splits} if alternative else {}),
    }


def embedded(package_rows: int) -> dict[str, Any]:
    """Vectors of the demo chunks and package chunks, cached per package_rows in benchmarks/.work."""
    cache = WORK / f"drift_vectors_{package_rows}.npz"
    if cache.exists():
        z = np.load(cache)
        return {k: z[k] for k in z.files}
    from ragline.index.embedding import LocalMiniLM

    model = LocalMiniLM()
    demo, demo_docs = demo_chunks(model)
    pkg, pkg_docs = package_chunks(model, package_rows, per_package=3, docstrings=True)
    out = {
        "demo": model.embed(demo),
        "demo_docs": np.array(demo_docs),
        "pkg": model.embed(pkg),
        "pkg_docs": np.array(pkg_docs),
    }
    WORK.mkdir(parents=True, exist_ok=True)
    np.savez(cache, **out)
    return out


def main() -> int:
    sys.path.insert(0, str(REPO))
    from ragline.config import DriftSettings

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--splits", type=int, default=200)
    ap.add_argument("--package-rows", type=int, default=3000)
    ap.add_argument("--per-package", type=int, default=2)
    ap.add_argument("--results-dir", type=Path, default=RESULTS)
    args = ap.parse_args()

    v = embedded(args.package_rows)
    demo, pkg = v["demo"].astype(np.float64), v["pkg"].astype(np.float64)
    settings = DriftSettings()
    s = args.splits
    docs = {"pkg": list(v["pkg_docs"]), "demo": list(v["demo_docs"])}
    # name, split, splits, with the previous alarm alongside
    scenarios: list[tuple[str, Split, int, bool]] = [
        ("null n=50: disjoint demo splits", disjoint(demo, 50), s, True),
        ("null n=500: demo resampled", resampled(demo, 500), s, True),
        ("null n=500: disjoint package splits", disjoint(pkg, 500), s, True),
        ("null n=5000: demo resampled", resampled(demo, 5000), s, True),
        ("null n=5000: package resampled", resampled(pkg, 5000), s, True),
    ]
    for n, share, with_previous in ((500, 0.1, True), (500, 0.3, True), (50, 0.1, False), (180, 0.1, False)):
        how = "resampled" if n > 180 else "disjoint"
        name = f"{share:.0%} new, n={n}: package rows into demo ({how})"
        scenarios.append((name, mixed(demo, pkg, n, share, replace=n > 180), s, True))
        if n == 500:
            name = f"{share:.0%} new, n={n}: demo rows into packages (disjoint)"
            scenarios.append((name, mixed(pkg, demo, n, share, replace=False), s, with_previous))
    scenarios += [
        (
            "not a null: package chunks split by document, n=500",
            by_document(pkg, docs["pkg"], 500),
            50,
            False,
        ),
        ("not a null: demo chunks split by document, n=150", by_document(demo, docs["demo"], 150), 50, False),
    ]
    results = {}
    for name, split, splits, alternative in scenarios:
        results[name] = run_scenario(split, splits, settings, alternative=alternative)
        print(name, results[name], flush=True)
    report = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {len(__import__('os').sched_getaffinity(0))} cores (shared)",
        "settings": {
            "alpha": settings.alpha,
            "min_new_share": settings.min_new_share,
            "permutations": settings.permutations,
            "sample_size": settings.sample_size,
        },
        "rows": {"demo_chunks": len(demo), "package_chunks": len(pkg)},
        "previous_alarm": "MMD² permutation p < alpha and centroid cosine distance > 0.05",
        "scenarios": results,
    }
    args.results_dir.mkdir(parents=True, exist_ok=True)
    (args.results_dir / "drift_calibration.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        "# Drift alarm calibration",
        "",
        f"{report['date']}; {report['machine']}; {len(demo)} demo chunks, {len(pkg)} chunks of package "
        f"docstrings, READMEs and descriptions (all-MiniLM-L6-v2); shipped defaults {report['settings']}. "
        "Previous alarm: MMD² p < alpha and centroid cosine distance > 0.05, on the same splits.",
        "",
        "| scenario | splits | alarms | significant | new share p5 / p50 / p95 | previous alarm | s/test |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        prev = f"{r['previous_alarm_rate']:.0%}" if "previous_alarm_rate" in r else "-"
        q = " / ".join(f"{x:.3f}" for x in r["new_share_p5_p50_p95"])
        lines.append(
            f"| {name} | {r['splits']} | {r['alarm_rate']:.1%} | {r['significant_rate']:.1%} | {q} | {prev} "
            f"| {r['seconds_per_test']:.3f} |"
        )
    (args.results_dir / "drift_calibration.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
