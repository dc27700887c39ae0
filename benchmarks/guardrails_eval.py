"""Precision and recall of ragline's guardrail recognizers per kind on the labelled snippets
(examples/guardrails/snippets.jsonl), and of Presidio's pattern recognizers on the same set in the
same run, plus the injection flags on attack and benign passages.

Presidio runs offline here only with three changes to its defaults: its AnalyzerEngine loads the
spaCy model en_core_web_lg and downloads it when missing (it fails with no network), so it gets a
blank spaCy pipeline (no NER: its PERSON/LOCATION recognizers find nothing, its pattern recognizers
work); its e-mail recognizer checks domains with tldextract, which fetches the public suffix list
on first use, so tldextract is pointed at its bundled snapshot; and the UK NINO and Spanish NIF
recognizers, not loaded for English by default, are added. Presidio has no recognizers of API keys,
tokens or private keys: those rows show it at recall 0.

Results: benchmarks/results/guardrails.{json,md}.

    uv run --frozen --group bench python benchmarks/guardrails_eval.py
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import json
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
SNIPPETS = REPO / "examples" / "guardrails" / "snippets.jsonl"
sys.path.insert(0, str(REPO))

from ragline.config import PII_KINDS, SECRET_KINDS  # noqa: E402
from ragline.guardrails.injection import injection_flags  # noqa: E402
from ragline.guardrails.labelled import Counts, load_snippets, score_flags, score_spans  # noqa: E402
from ragline.guardrails.recognizers import find  # noqa: E402

KINDS = PII_KINDS + SECRET_KINDS
PRESIDIO_KINDS = {
    "EMAIL_ADDRESS": "email",
    "PHONE_NUMBER": "phone",
    "CREDIT_CARD": "card",
    "IBAN_CODE": "iban",
    "US_SSN": "ssn",
    "UK_NINO": "nino",
    "ES_NIF": "dni",
    "ES_NIE": "dni",
}
Detector = Callable[[str], list[tuple[str, int, int]]]


def ragline_detector(text: str) -> list[tuple[str, int, int]]:
    return [(f.kind, f.start, f.end) for f in find(text, KINDS)]


def presidio_detector(threshold: float) -> tuple[Detector, str] | tuple[None, str]:
    """Presidio's analyzer with a blank spaCy pipeline, or None and why it cannot run."""
    try:
        import spacy
        import tldextract
        from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
        from presidio_analyzer.nlp_engine import SpacyNlpEngine
        from presidio_analyzer.predefined_recognizers import (
            EsNieRecognizer,
            EsNifRecognizer,
            UkNinoRecognizer,
        )
    except ImportError as exc:
        return None, f"not installed ({exc}); run with --group bench"
    import presidio_analyzer.predefined_recognizers.generic.email_recognizer as email_module

    offline = tldextract.TLDExtract(suffix_list_urls=())
    email_module.tldextract.extract = offline  # the recognizer calls tldextract.extract(domain)
    engine = SpacyNlpEngine(models=[{"lang_code": "en", "model_name": "blank:en"}])
    engine.nlp = {"en": spacy.blank("en")}  # load() would download en_core_web_lg
    registry = RecognizerRegistry()
    registry.load_predefined_recognizers(nlp_engine=engine, languages=["en"])
    for recognizer in (UkNinoRecognizer, EsNifRecognizer, EsNieRecognizer):
        registry.add_recognizer(recognizer(supported_language="en"))
    analyzer = AnalyzerEngine(nlp_engine=engine, registry=registry, supported_languages=["en"])
    entities = list(PRESIDIO_KINDS)

    def detect(text: str) -> list[tuple[str, int, int]]:
        results = analyzer.analyze(text, language="en", entities=entities, score_threshold=threshold)
        return [(PRESIDIO_KINDS[r.entity_type], r.start, r.end) for r in results]

    return detect, f"presidio-analyzer {importlib.metadata.version('presidio-analyzer')}, blank spaCy"


def run(detector: Detector, snippets: list[dict[str, Any]]) -> dict[str, Any]:
    started = time.perf_counter()
    per_kind, covered = score_spans(snippets, detector, KINDS)
    seconds = time.perf_counter() - started
    return {
        "seconds": round(seconds, 3),
        "snippets_per_second": round(len(snippets) / seconds, 1),
        "kinds": {k: _row(c) for k, c in per_kind.items()},
        "micro": _row(_sum(per_kind.values())),
        "micro_pii": _row(_sum(c for k, c in per_kind.items() if k in PII_KINDS)),
        "covered": _row(covered),
        "holdout": _holdout(detector, snippets),
    }


def _holdout(detector: Detector, snippets: list[dict[str, Any]]) -> dict[str, Any]:
    """Micro figures on the snippets written after the recognizers were tuned (category holdout)."""
    held = [s for s in snippets if s["category"] == "holdout"]
    per_kind, covered = score_spans(held, detector, KINDS)
    return {"snippets": len(held), "micro": _row(_sum(per_kind.values())), "covered": _row(covered)}


def _sum(counts: Any) -> Counts:
    total = Counts()
    for c in counts:
        total.tp, total.fp, total.fn = total.tp + c.tp, total.fp + c.fp, total.fn + c.fn
    return total


def _row(c: Counts) -> dict[str, Any]:
    return {
        "tp": c.tp,
        "fp": c.fp,
        "fn": c.fn,
        "precision": round(c.precision, 3),
        "recall": round(c.recall, 3),
    }


def main() -> None:
    snippets = load_snippets(SNIPPETS)
    results: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "snippets": len(snippets),
        "expected_spans": sum(len(s["spans"]) for s in snippets),
        "snippets_without_spans": sum(not s["spans"] for s in snippets),
        "ragline": run(ragline_detector, snippets),
    }
    for threshold in (0.0, 0.5):
        detect, note = presidio_detector(threshold)
        results[f"presidio_threshold_{threshold}"] = (
            {"note": note, **run(detect, snippets)} if detect else {"note": note}
        )
    passages, per_flag = score_flags(snippets, injection_flags)
    held, _ = score_flags([s for s in snippets if s["category"].startswith("holdout")], injection_flags)
    results["injection"] = {
        "passages": _row(passages),
        "holdout_passages": _row(held),
        "attack_passages": passages.tp + passages.fn,
        "benign_passages": sum(1 for s in snippets if s.get("injection") == []),
        "flags": {name: _row(c) for name, c in sorted(per_flag.items())},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "guardrails.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / "guardrails.md").write_text(markdown(results))
    print(markdown(results))


def markdown(r: dict[str, Any]) -> str:
    systems = [("ragline", r["ragline"])] + [
        (f"Presidio (score >= {key.rsplit('_', 1)[1]})", r[key]) for key in r if key.startswith("presidio_")
    ]
    lines = [
        "# Guardrail recognizers: precision and recall on the labelled snippets",
        "",
        f"{r['snippets']} hand-written snippets (examples/guardrails/snippets.jsonl): "
        f"{r['expected_spans']} expected spans, {r['snippets_without_spans']} snippets with none (hard "
        "negatives: Luhn-failing order numbers, ISBNs, versions, UUIDs, hashes, dates, prices, "
        "placeholders, injection passages). A hit is a found span of the expected kind overlapping the "
        "expected span. `covered`: expected spans whose every character was replaced by some finding "
        "of any kind (nothing of the value reaches a model). Measured "
        f"{r['date']}, Python {r['python']}, in one run.",
        "",
    ]
    for name, s in systems:
        if "kinds" not in s:
            lines += [f"{name}: could not run: {s['note']}", ""]
    ran = [(n, s) for n, s in systems if "kinds" in s]
    header = "| kind | " + " | ".join(f"{n} P | {n} R" for n, _ in ran) + " |"
    lines += [header, "|---" * (1 + 2 * len(ran)) + "|"]
    for kind in [*KINDS, "micro", "micro_pii", "covered"]:
        cells = []
        for _, s in ran:
            row = s["kinds"].get(kind) or s[kind]
            cells += [f"{row['precision']:.3f} ({row['tp']}/{row['tp'] + row['fp']})", f"{row['recall']:.3f}"]
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    held = ran[0][1]["holdout"]["snippets"]
    lines += [
        "",
        f"Held out: {held} of the snippets (category `holdout`) were written after the recognizers were "
        "tuned on the others and are scored alone here (the figures above include them). Their first "
        "run found two faults, fixed since (a quoted secret cut at its first bracket, so 10 of its 50 "
        "characters were replaced; an injection addressed to 'the AI summarizing this'): ragline then "
        "scored micro P 0.962, R 0.962, covered R 0.962, and 5 of 6 held-out injection passages.",
        "",
        "| system | micro P | micro R | covered R |",
        "|---|---|---|---|",
    ]
    for n, s in ran:
        h = s["holdout"]
        micro, covered = h["micro"], h["covered"]
        lines.append(f"| {n} | {micro['precision']:.3f} | {micro['recall']:.3f} | {covered['recall']:.3f} |")
    lines += ["", "| system | seconds for the set | snippets/s |", "|---|---|---|"]
    lines += [f"| {n} | {s['seconds']} | {s['snippets_per_second']} |" for n, s in ran]
    inj = r["injection"]
    p = inj["passages"]
    lines += [
        "",
        f"## Injection flags ({inj['attack_passages']} attack passages, "
        f"{inj['benign_passages']} benign look-alikes)",
        "",
        f"Passages flagged: recall {p['recall']:.3f} ({p['tp']}/{p['tp'] + p['fn']}), precision "
        f"{p['precision']:.3f} ({p['fp']} benign passages flagged). Held-out passages only: recall "
        f"{inj['holdout_passages']['recall']:.3f}, precision {inj['holdout_passages']['precision']:.3f}.",
        "",
        "| flag | precision | recall |",
        "|---|---|---|",
    ]
    lines += [f"| {n} | {c['precision']:.3f} | {c['recall']:.3f} |" for n, c in inj["flags"].items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
