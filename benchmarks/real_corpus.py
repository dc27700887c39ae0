"""A real-vocabulary corpus for the retrieval benchmark, from text on this machine that no one here
wrote: the docstrings (read with `ast`, nothing imported) and the README / METADATA descriptions of
the packages installed in the running interpreter's site-packages.

Deterministic for a given set of installed packages: a sorted walk, docstrings deduplicated by text,
documents ordered by a seeded hash. Every document is one Markdown file (a module's docstrings, or a
distribution's description). A seeded share of the documents is held out: they are never written
into the corpus, and the benchmark's held-out queries are taken from their sentences.
"""

from __future__ import annotations

import ast
import email
import email.policy
import hashlib
import json
import random
import re
import shutil
import sysconfig
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HELD_OUT_SHARE = 0.05  # documents kept out of the corpus, for held-out queries
MIN_DOCSTRING_CHARS = 40
MIN_DOCUMENT_CHARS = 200
MAX_DOCUMENT_CHARS = 200_000
# Calibrated on this corpus with ragline's sentence chunker at 80/10 model tokens (the benchmark's);
# used only to pick how many documents to write for a chunk target.
CHARS_PER_CHUNK = 220.0

_SENTENCE = re.compile(r"(?<=[.?!])\s+(?=[A-Z])")
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*")
_TOKEN = re.compile(r"\S+")


@dataclass(frozen=True)
class SourceDocument:
    """One document's Markdown text and where it came from (site-packages relative)."""

    name: str  # relative output path without suffix, e.g. "numpy/linalg/_linalg"
    origin: str
    text: str


def site_packages() -> Path:
    return Path(sysconfig.get_paths()["purelib"])


def _docstrings(path: Path) -> list[tuple[str, str]]:
    """(qualified name, docstring) of a module, its classes and functions, in source order."""
    try:
        source = path.read_text(encoding="utf-8")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # invalid escape sequences in third-party sources
            tree = ast.parse(source)
    except (SyntaxError, UnicodeDecodeError, ValueError, RecursionError):
        return []
    out: list[tuple[str, str]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                name = f"{prefix}{child.name}"
                doc = ast.get_docstring(child)
                if doc:
                    out.append((name, doc))
                visit(child, name + ".")

    module_doc = ast.get_docstring(tree)
    if module_doc:
        out.append(("", module_doc))
    visit(tree, "")
    return out


def _description(metadata: Path) -> str:
    msg = email.message_from_bytes(metadata.read_bytes(), policy=email.policy.compat32)
    body = msg.get_payload()
    text = body if isinstance(body, str) and body.strip() else (msg.get("Description") or "")
    return text.strip()


def collect(root: Path) -> list[SourceDocument]:
    """Every document the installed packages give, deduplicated, in a sorted walk of `root`."""
    seen: set[str] = set()
    docs: list[SourceDocument] = []

    def fresh(text: str) -> bool:
        h = hashlib.sha1(" ".join(text.split()).encode()).hexdigest()
        if h in seen:
            return False
        seen.add(h)
        return True

    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if not path.is_file() or any(p.startswith(".") or p == "__pycache__" for p in rel.parts):
            continue
        if path.suffix == ".py":
            parts = []
            for qualname, doc in _docstrings(path):
                if len(doc) >= MIN_DOCSTRING_CHARS and fresh(doc):
                    parts.append(f"## {qualname}\n\n{doc}" if qualname else doc)
            if parts:
                module = ".".join(rel.with_suffix("").parts)
                text = f"# {module}\n\n" + "\n\n".join(parts)
                docs.append(SourceDocument(rel.with_suffix("").as_posix(), rel.as_posix(), text))
        elif rel.parts[0].endswith(".dist-info") and path.name == "METADATA":
            text = _description(path)
            if text and fresh(text):
                name = rel.parts[0].removesuffix(".dist-info")
                docs.append(SourceDocument(f"_descriptions/{name}", rel.as_posix(), text))
        elif path.name.lower().startswith("readme") and path.suffix.lower() in ("", ".md", ".rst", ".txt"):
            try:
                text = path.read_text(encoding="utf-8").strip()
            except UnicodeDecodeError:
                continue
            if text and fresh(text):
                docs.append(SourceDocument(f"_readmes/{rel.as_posix()}", rel.as_posix(), text))
    return [
        SourceDocument(d.name, d.origin, d.text[:MAX_DOCUMENT_CHARS])
        for d in docs
        if len(d.text) >= MIN_DOCUMENT_CHARS
    ]


def _order(doc: SourceDocument, seed: int) -> str:
    return hashlib.sha1(f"{seed}:{doc.name}".encode()).hexdigest()


def held_out_sentences(docs: list[SourceDocument], seed: int, n: int) -> list[str]:
    """Query texts of 5-15 words from the held-out documents' prose sentences (no code)."""
    rng = random.Random(seed * 7 + 3)
    candidates: list[str] = []
    for doc in docs:
        for para in doc.text.split("\n\n"):
            if para.lstrip().startswith(("#", ">>>", "..", "    ", "-", "*", "|", ":")):
                continue
            for s in _SENTENCE.split(" ".join(para.split())):
                tokens = _TOKEN.findall(s)
                words = [t for t in tokens if _WORD.fullmatch(t.strip(".,;:?!()\"'"))]
                if len(tokens) >= 5 and len(words) >= 0.85 * len(tokens):
                    candidates.append(s)
    rng.shuffle(candidates)
    out: list[str] = []
    seen: set[str] = set()
    for s in candidates:
        tokens = _TOKEN.findall(s)
        if len(tokens) > 15:
            start = rng.randrange(0, len(tokens) - 15 + 1)
            tokens = tokens[start : start + rng.randint(8, 15)]
        q = " ".join(tokens)
        if q.lower() not in seen and len(tokens) >= 5:
            seen.add(q.lower())
            out.append(q)
        if len(out) >= n:
            break
    return out


def prepare(
    work: Path,
    chunks: int,
    seed: int,
    major: str,
    minor: str,
    minor_every: int,
    root: Path | None = None,
) -> dict[str, Any]:
    """Write the corpus for about `chunks` chunks under work/corpus/{major,minor}, and the held-out
    query sentences to work/held_out.json. Rewritten only when the inputs changed."""
    root = root or site_packages()
    out = work / "corpus"
    manifest = work / "corpus.json"
    want = {"kind": "real", "chunks": chunks, "seed": seed, "minor_every": minor_every, "root": str(root)}
    if manifest.exists():
        facts = json.loads(manifest.read_text())
        if {k: facts.get(k) for k in want} == want and (out / minor).is_dir():
            return facts
    docs = collect(root)
    docs.sort(key=lambda d: _order(d, seed))
    n_held = max(1, int(len(docs) * HELD_OUT_SHARE))
    held, rest = docs[:n_held], docs[n_held:]
    budget = chunks * 1.03 * CHARS_PER_CHUNK
    chosen: list[SourceDocument] = []
    total = 0
    for d in rest:
        if total >= budget:
            break
        chosen.append(d)
        total += len(d.text)
    if out.exists():
        shutil.rmtree(out)
    per_source = {major: 0, minor: 0}
    for i, d in enumerate(chosen):
        source = minor if i % minor_every == 0 else major
        target = out / source / f"{d.name}.md"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(d.text + "\n", encoding="utf-8")
        per_source[source] += 1
    sentences = held_out_sentences(held, seed, 2000)
    (work / "held_out.json").write_text(json.dumps(sentences, indent=1) + "\n")
    facts = {
        **want,
        "documents": len(chosen),
        "documents_per_source": per_source,
        "characters": total,
        "documents_available": len(rest),
        "characters_available": sum(len(d.text) for d in rest),
        "held_out_documents": len(held),
        "held_out_sentences": len(sentences),
        "documents_by_kind": {
            "module docstrings": sum(1 for d in chosen if not d.name.startswith("_")),
            "package descriptions": sum(1 for d in chosen if d.name.startswith("_descriptions/")),
            "readmes": sum(1 for d in chosen if d.name.startswith("_readmes/")),
        },
        "packages": len({d.origin.split("/")[0] for d in chosen}),
    }
    manifest.write_text(json.dumps(facts, indent=2) + "\n")
    return facts


def held_out(work: Path) -> list[str]:
    return json.loads((work / "held_out.json").read_text())
