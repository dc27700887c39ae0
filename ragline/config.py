"""ragline settings: one YAML file declares the database, the embedder, the index and the sources."""

from __future__ import annotations

import functools
import ipaddress
import os
import re
import types
import typing
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from ragline.types import JUDGE_METRICS, SIMILARITY_METRICS

CONFIG_ENV = "RAGLINE_CONFIG"
DEFAULT_CONFIG_NAME = "ragline.yaml"
CHUNK_STRATEGIES = ("sentence", "token", "markdown")
EMBEDDING_PROVIDERS = ("local", "openai")
RETRIEVAL_STRATEGIES = ("dense", "lexical", "hybrid")
# Where lexical search scores BM25: one SQL statement per query, or a copy of the postings held in
# memory by a long-lived process (ragline.retrieval.memory_bm25).
LEXICAL_INDEXES = ("sql", "memory")
RERANKERS = ("maxsim", "llm")
EVAL_SET_KINDS = ("golden", "beir", "synthetic")
SEVERITIES = ("error", "warn")
DEFAULT_CHUNK_SET = "default"
SOURCE_FORMATS = ("files", "beir")
BEIR_MAX_FILE_BYTES = 4_000_000_000
_SOURCE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
OPENAI_API_URL = "https://api.openai.com/v1"
OPENAI_API_KEY_ENV = "OPENAI_API_KEY"
# Query parameters that carry credentials: a whole name, or one ending in _key, -token, ...
# (`api-key`, `access_token`, `sig`), not any name that merely contains the letters (`design`).
_SECRET_QUERY_PARAMETER = re.compile(
    r"(?i)(?:^|&)(?:[^=&]*[_.-])?(?:key|apikey|token|password|passwd|secret|sig|signature|code)="
)


class ConfigError(ValueError):
    """The configuration file is missing, malformed, or names something that does not exist."""


@dataclass(frozen=True)
class ChunkingSettings:
    strategy: str = "sentence"
    chunk_size: int = 200  # in the embedding model's own tokens
    chunk_overlap: int = 20
    min_tokens: int = 8  # smaller pieces are merged into a neighbour
    # The duplicate_chunk_share_within_limit check: the most a source's current chunks may be
    # chunks whose text another of its chunks repeats. The demo measures 0.0 in every source, and
    # splitting it into 4-token chunks 0.22 at most; a folder exported twice measures 1.0. A check
    # threshold, not a way of chunking: it is not in the fingerprint, so changing it rechunks nothing.
    max_duplicate_share: float = 0.5

    def fingerprint(self) -> str:
        return f"{self.strategy}:{self.chunk_size}:{self.chunk_overlap}:{self.min_tokens}"


@dataclass(frozen=True)
class MassChangeSettings:
    """A run that would delete or replace more than max_fraction of a source's published documents
    (and at least min_documents of them) is refused until accepted: an unmounted share or a glob
    typo must not empty a source's search."""

    max_fraction: float = 0.2
    min_documents: int = 5


@dataclass(frozen=True)
class JsonlSettings:
    id_field: str = "id"
    text_fields: tuple[str, ...] = ("text",)
    metadata_fields: tuple[str, ...] = ()


@dataclass(frozen=True)
class PdfSettings:
    """Limits of the separate process that parses a source's PDFs; a PDF over one is quarantined."""

    timeout_seconds: float = 30.0
    max_memory_mb: int = 1024  # RLIMIT_AS of the parser process
    max_pages: int = 2000


@dataclass(frozen=True)
class SourceSettings:
    name: str
    root: Path
    glob: str = "**/*"
    chunking: ChunkingSettings = field(default_factory=ChunkingSettings)
    jsonl: JsonlSettings = field(default_factory=JsonlSettings)
    max_file_bytes: int = 10_000_000
    format: str = "files"  # files: any supported file under root; beir: a BEIR dataset folder
    mass_change: MassChangeSettings = field(default_factory=MassChangeSettings)
    # Symbolic links are quarantined unless this is on; even then a link is read only when its
    # target lies inside the root.
    follow_symlinks: bool = False
    pdf: PdfSettings = field(default_factory=PdfSettings)


def is_loopback_url(url: str) -> bool:
    """True when the URL's host is this machine: localhost, 127.0.0.0/8 or ::1."""
    host = urlsplit(url).hostname
    if host is None:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_openai_api(base_url: str | None) -> bool:
    """True for OpenAI's own API: no base_url, or its URL spelled out."""
    return base_url is None or base_url.rstrip("/") == OPENAI_API_URL


class EndpointSettings:
    """What an OpenAI-compatible endpoint block shares: which key goes to which base_url."""

    base_url: str | None
    api_key_env: str | None

    @property
    def key_variable(self) -> str | None:
        """The environment variable whose key is sent to this endpoint: api_key_env when set in
        ragline.yaml, else OPENAI_API_KEY for OpenAI's own API only. None: no key is sent."""
        if self.api_key_env:
            return self.api_key_env
        return OPENAI_API_KEY_ENV if is_openai_api(self.base_url) else None

    def api_key(self) -> str | None:
        """The key for this endpoint from the environment, or None (no key is sent)."""
        variable = self.key_variable
        return (os.environ.get(variable) or None) if variable else None


@dataclass(frozen=True)
class EmbeddingSettings(EndpointSettings):
    provider: str = "local"
    model: str = "all-MiniLM-L6-v2"
    batch_size: int = 64  # texts per request to an OpenAI-compatible endpoint
    # At most this many texts per model batch of the local model, whose batches are cut by a token
    # budget (1,024 word pieces, padding included) after sorting by length: short texts go many to a
    # batch, long ones few.
    model_batch_size: int = 128
    # OpenAI-compatible provider only
    base_url: str | None = None
    # None: OPENAI_API_KEY for OpenAI's own API, and no key at all for any other base_url.
    api_key_env: str | None = None
    dimensions: int | None = None
    # The weights revision behind the endpoint (a model tag, a checkpoint hash), part of the ledger
    # key: a server that swaps the weights under the same model name must set a new one.
    revision: str | None = None
    max_retries: int = 5
    timeout_seconds: float = 60.0
    # OpenAI-compatible provider: requests in flight at once (each of up to batch_size texts).
    max_in_flight: int = 4
    # The model's own limits, in its tokens (counted with cl100k_base): a longer input is an error
    # before any request; a batch is cut so that no request exceeds the per-request budget. None:
    # 8,191 per input (OpenAI's text-embedding-3 models) and no per-request budget but batch_size.
    max_tokens_per_input: int | None = None
    max_tokens_per_request: int | None = None


@dataclass(frozen=True)
class IndexSettings:
    hnsw_m: int = 16
    hnsw_ef_construction: int = 64
    ef_search: int = 40
    recall_sample: int = 200
    min_recall: float = 0.95
    # The recall check uses real queries (logged ones, else eval questions) once this many exist;
    # stored vectors as queries overstate recall (0.99 where real queries gave 0.91 at 104k chunks).
    min_real_queries: int = 20
    # The most maintenance_work_mem an HNSW build may ask the server for (it asks for its graph's
    # estimated size, never less than the server's own setting): a graph that does not fit is built
    # on disk, alone, at about half the speed.
    build_memory_mb: int = 1024


@dataclass(frozen=True)
class RetrievalSettings:
    strategy: str = "hybrid"
    k: int = 10
    candidates: int = 50  # rows each strategy contributes before fusion, reranking or MMR
    rrf_k: int = 60  # reciprocal rank fusion: score = sum of weight / (rrf_k + rank)
    dense_weight: float = 1.0
    lexical_weight: float = 1.0
    mmr_lambda: float | None = None  # None: no MMR; 1.0 is pure relevance, 0.0 pure diversity
    rerank: str | None = None  # None, "maxsim" (local, offline) or "llm" (needs the llm block)
    rerank_candidates: int = 20
    bm25_k1: float = 1.2
    bm25_b: float = 0.75
    log_queries: bool = True
    lexical_index: str = "sql"  # "memory": keep the BM25 postings in this process (servers)


@dataclass(frozen=True)
class LLMSettings(EndpointSettings):
    """An OpenAI-compatible chat endpoint, for LLM reranking and synthetic questions."""

    model: str = ""
    base_url: str | None = None
    api_key_env: str | None = None  # as for the embedder: OPENAI_API_KEY for OpenAI's API only
    timeout_seconds: float = 60.0
    max_retries: int = 3
    context_window: int = 8192  # tokens the model reads and writes in one request (prompt + output)

    @property
    def configured(self) -> bool:
        return bool(self.model)


TOKENIZERS = ("cl100k_base", "o200k_base", "minilm")  # the tokenizers of `ragline context` and answer budgets
_PROMPT_REF = re.compile(r"^[a-z][a-z0-9_-]{0,62}@[1-9][0-9]{0,5}$")


@dataclass(frozen=True)
class AnswerSettings:
    """How `ragline answer` and answer() answer a question from the published documents."""

    prompt: str = "answer@1"  # name@version of a prompt file, prompt_dir's first, then ragline's own
    prompt_dir: Path | None = None  # the project's own prompt files (<name>@<version>.md)
    max_tokens: int = 512  # of the answer
    temperature: float = 0.0
    # Abstain ("not in the documents") when the best retrieved passage's cosine similarity to the
    # question (the embedding model's vectors) is below this; measured on the demo golden set.
    min_support: float = 0.35
    context_tokens: int = 3000  # at most this many tokens of passages (less if the model's window is smaller)
    tokenizer: str = "cl100k_base"  # counts the chat model's tokens for the budget
    max_retries: int = 2  # structured output: new attempts after a reply that fails validation
    json_schema: bool = True  # send response_format json_schema (OpenAI, vLLM, llama.cpp); else prompt only


JUDGE_PROMPT_ROLES = (
    "claims",  # faithfulness, first call: the answer's claims
    "faithfulness",  # faithfulness, second call: a verdict per claim against the passages
    "relevance",
    "context_precision",
    "context_recall",
    "correctness",
    "pairwise",
)


@dataclass(frozen=True)
class JudgeSettings:
    """The LLM judge of answer quality: which model, how many samples per judgement, and its cache."""

    model: str | None = None  # a name of the models: block; None: the llm: block's model
    samples: int = 3  # k: separate calls per judgement, each with its own seed
    temperature: float = 0.7  # > 0, or the k samples cannot vary
    max_tokens: int = 384  # of one judge reply
    prompt_dir: Path | None = None  # the project's own judge prompt files (<name>@<version>.md)
    bootstrap_samples: int = 2000
    confidence: float = 0.95
    # Keep each sample's verdict in ragline.judgements: the same judgement is not asked twice.
    cache: bool = True
    json_schema: bool = True  # send response_format json_schema (OpenAI, vLLM, llama.cpp); else prompt only
    # A role (JUDGE_PROMPT_ROLES) -> the prompt version it uses, e.g. {correctness: correctness@2};
    # a role not given uses <role>@1.
    prompts: dict[str, str] = field(default_factory=dict)

    def prompt_ref(self, role: str) -> str:
        """name@version of the prompt file a judge role uses."""
        return self.prompts.get(role, f"{role}@1")


@dataclass(frozen=True)
class EvalSetSettings:
    name: str
    kind: str  # golden: a JSONL file; beir: a BEIR folder; synthetic: generated from chunks
    path: Path | None = None
    source: str | None = None  # beir: the source that loads corpus.jsonl; synthetic: where to sample
    split: str = "test"  # beir: qrels/<split>.tsv
    count: int = 30  # synthetic: questions to generate
    seed: int = 0


@dataclass(frozen=True)
class VariantSettings:
    """One retrieval configuration under evaluation: chunker x embedding model x strategy."""

    name: str
    retrieval: RetrievalSettings
    chunking: ChunkingSettings | None = None  # None: each source's own chunker
    embedding: EmbeddingSettings | None = None  # None: the pipeline's embedder

    @property
    def chunk_set(self) -> str:
        return self.name if self.chunking is not None else DEFAULT_CHUNK_SET


@dataclass(frozen=True)
class EvaluationSettings:
    # The first daily partition of the quality assets; None: the first day this project stored a
    # document (in the database), or today if there is none yet.
    start_date: str | None = None
    k: int = 10
    control: str | None = None  # the A/B control variant; default: the first variant
    baseline: str | None = None  # a pinned partition date (YYYY-MM-DD); default: the previous one
    bootstrap_samples: int = 2000
    confidence: float = 0.95
    # A drop must also be at least this large in mean nDCG@10 to fail the gate: a significant but
    # tiny change (4 of 36 questions down 0.1) is reported, not acted on.
    min_effect: float = 0.02
    severity: str = "error"  # of the regression check: error blocks downstream, warn does not


@dataclass(frozen=True)
class AnnotationSettings:
    """The annotation queue (annotation: block): which answers people are asked to label each day."""

    queue_size: int = 20  # items queued per day at most
    # A judge metric whose interval is wider than this (or with an unmeasured sample) is low confidence.
    max_interval_width: float = 0.3
    # |correctness - token_f1| or |correctness - embedding_cosine| above this: the judge and the
    # similarity metrics disagree.
    disagreement: float = 0.4
    random_share: float | None = None  # the random control sample: a share of the day's answers,
    random_count: int | None = None  # or a count (neither given: 3 answers)
    seed: int = 0
    golden_path: Path | None = None  # where promoted pairs go; default <project>/golden/human.jsonl


@dataclass(frozen=True)
class DriftSettings:
    alpha: float = 0.01  # significance of the permutation test
    # Estimated share of current rows unlike the baseline that must also be reached (0-1). Calibrated in
    # benchmarks/drift_calibration.py: 10% foreign rows at 500 per side estimate 0.07-0.13.
    min_new_share: float = 0.05
    permutations: int = 200
    sample_size: int = 500
    query_window_days: int = 7  # queries of the partition's day against the days before it
    min_queries: int = 20
    severity: str = "error"


QUALITY_ON_CHANGE = "on_change"


@dataclass(frozen=True)
class AutomationSettings:
    """When automation runs the heavy quality assets (retrieval_scores, variant_comparison,
    drift_metrics): on_change (whenever an upstream data version changes) or a cron expression
    such as "0 4 * * *" (at most once per tick, and only if upstream data changed since)."""

    quality: str = QUALITY_ON_CHANGE

    @property
    def quality_cron(self) -> str | None:
        return None if self.quality == QUALITY_ON_CHANGE else self.quality


@dataclass(frozen=True)
class FreshnessSettings:
    """How stale an asset may get before asset health turns yellow (warn) and red (fail)."""

    warn_hours: float = 26.0
    fail_hours: float = 50.0


ALERT_SECURITY = ("starttls", "ssl", "none")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class WebhookAlertSettings:
    """A webhook that receives alerts; its URL (whose path is often the token) is read from the
    environment variable url_env, never from ragline.yaml."""

    url_env: str

    def url(self) -> str | None:
        return os.environ.get(self.url_env) or None


@dataclass(frozen=True)
class SmtpAlertSettings:
    host: str
    sender: str
    recipients: tuple[str, ...]
    port: int = 587
    security: str = "starttls"  # starttls | ssl | none (none only to this machine when a password is sent)
    username: str | None = None
    password_env: str | None = None  # the SMTP password's environment variable

    def password(self) -> str | None:
        return (os.environ.get(self.password_env) or None) if self.password_env else None


@dataclass(frozen=True)
class AlertSettings:
    """Where alerts about failed runs, failed checks and stale assets go, and how often an open
    problem is repeated. No destination configured: nothing is sent (problems are still recorded)."""

    reminder_hours: float = 24.0  # an open problem is sent again at most this often
    timeout_seconds: float = 10.0  # per send
    ui_url: str | None = None  # the Dagster UI, for links in messages (e.g. http://localhost:3000)
    slack: WebhookAlertSettings | None = None  # Slack-compatible: {"text": ..., "blocks": [...]}
    webhook: WebhookAlertSettings | None = None  # generic JSON: one object per message
    smtp: SmtpAlertSettings | None = None

    @property
    def destinations(self) -> tuple[str, ...]:
        return tuple(name for name in ("slack", "webhook", "smtp") if getattr(self, name) is not None)


# What the guardrails find (ragline.guardrails): personal data, which a policy may restore in an
# answer, and credentials, which are never restored.
PII_KINDS = ("email", "phone", "card", "iban", "ssn", "nino", "dni")
SECRET_KINDS = ("api_key", "jwt", "bearer_token", "private_key")
GUARDRAIL_ACTIONS = ("repair", "refuse", "flag")
INJECTION_MODES = ("flag", "off")


@dataclass(frozen=True)
class GuardrailActionSettings:
    """What an answer that breaks a rule gets: repair (drop the bad citation, redact again, cut to
    length), refuse (a fixed refusal text instead) or flag (returned as it is, the violation recorded)."""

    citation: str = "repair"  # a [n] that is not in the context
    pii: str = "repair"  # personal data in the answer that the policy did not restore
    secret: str = "refuse"  # a credential in the answer
    blocklist: str = "refuse"
    length: str = "repair"  # longer than max_answer_chars


@dataclass(frozen=True)
class GuardrailSettings:
    """What is redacted before a model call, restored in its answer, flagged in passages and
    checked in answers."""

    enabled: bool = True
    redact: tuple[str, ...] = PII_KINDS + SECRET_KINDS
    restore: tuple[str, ...] = ()  # personal data kinds put back into the answer, e.g. [email, phone]
    injection: str = "flag"  # flag: instructions found in passages are flagged and recorded | off
    blocklist: tuple[str, ...] = ()  # words or phrases an answer must not contain (case-insensitive)
    max_answer_chars: int | None = 8000
    actions: GuardrailActionSettings = field(default_factory=GuardrailActionSettings)


@dataclass(frozen=True)
class CacheSettings:
    """The answer cache: exact hits by default; semantic hits (a paraphrase of a cached question over
    the same retrieved context) only when switched on."""

    enabled: bool = True
    ttl_seconds: float = 86_400.0  # an entry older than this never hits and is purged
    semantic: bool = False
    # Cosine similarity of the query vectors at or above which a paraphrase hits. Measured on 100
    # paraphrase and 100 non-paraphrase pairs (benchmarks/results/semantic_cache.md): from 0.97 up no
    # non-paraphrase hit; the closest one ("allowed" vs "forbidden") measured 0.966.
    semantic_threshold: float = 0.98
    max_entries: int | None = None  # None: no limit; else the least recently used go first


@dataclass(frozen=True)
class ServeSettings:
    """The HTTP API (`ragline serve`): where it listens and the limits every request must keep."""

    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    max_body_bytes: int = 65_536  # a larger request body answers 413
    max_query_chars: int = 2_000
    max_k: int = 100
    max_budget: int = 32_000  # tokens of /v1/context
    max_filter_keys: int = 16
    pool_size: int = 8  # database connections per worker process
    # Answers in progress at once per worker (their own threads, apart from the server's shared
    # pool that /healthz, search and auth use); one more answers 503 with Retry-After.
    max_concurrent_answers: int = 8
    # The server's lexical search: "memory" keeps each chunk set's BM25 postings in the process
    # (exact; README "Lexical search from memory"), "sql" scores in one statement per query.
    lexical_index: str = "memory"


# --- models:, routing:, prices:, costs: (the router and the cost ledger) ----------------------------

ROUTE_OUTPUTS = ("text", "json")
LLM_MODEL_NAME = "llm"  # the name the llm: block's model gets when there is no models: block


@dataclass(frozen=True)
class ModelSettings(EndpointSettings):
    """One named chat endpoint of the models: block (the router picks among them by name)."""

    name: str
    model: str
    base_url: str | None = None
    api_key_env: str | None = None  # as for the llm block: OPENAI_API_KEY for OpenAI's API only
    timeout_seconds: float = 60.0
    max_retries: int = 2  # per model; the router's fallback chain takes over after the last one
    context_tokens: int = 4096  # the model's context window, for the answer's context budget


@dataclass(frozen=True)
class EscalationRule:
    """Escalate to `model` when every condition given holds (at least one is required)."""

    model: str
    retrieval_margin_below: float | None = None  # top score minus the runner-up's
    question_tokens_above: int | None = None
    output: str | None = None  # "json": structured output


@dataclass(frozen=True)
class CircuitSettings:
    """Per endpoint: open after `failures` failed calls in a row; try again after the cooldown."""

    failures: int = 3
    cooldown_seconds: float = 30.0


@dataclass(frozen=True)
class RoutingSettings:
    default: str | None = None  # None: the first model of the models: block (or the llm block's)
    escalate: tuple[EscalationRule, ...] = ()
    # A caller with fewer tokens left in its budget than this is not escalated (None: no floor).
    min_budget_tokens: int | None = None
    fallback: tuple[str, ...] = ()  # tried in order after the chosen model fails
    circuit: CircuitSettings = field(default_factory=CircuitSettings)


@dataclass(frozen=True)
class ModelPrice:
    """USD per million tokens of one model (prices: block), as the provider bills them."""

    model: str
    input_per_1m: float
    output_per_1m: float = 0.0


@dataclass(frozen=True)
class DailyBudget:
    """USD per UTC day over every model call: llm_costs warns past `warn` and fails past `fail`."""

    warn: float | None = None
    fail: float | None = None


@dataclass(frozen=True)
class CostSettings:
    daily_budget: DailyBudget = field(default_factory=DailyBudget)


# Answer quality (issue 12): metric names (ragline.types) as stored in ragline.answer_metric_results
# and answer_scores.
ANSWER_METRICS = JUDGE_METRICS + SIMILARITY_METRICS
ANSWER_CONTEXTS = ("retrieved", "other_question")


@dataclass(frozen=True)
class AnswerVariantSettings:
    """One answer configuration under evaluation: retrieval variant x generation model x prompt."""

    name: str
    retrieval: str | None = None  # a variants: name; None: the first (or only) one
    model: str | None = None  # a models: name ("llm" for the llm: block); None: the default model
    prompt: str | None = None  # name@version; None: answer.prompt
    # other_question: a NEGATIVE CONTROL that answers each question from the context retrieved for
    # another question of the set (a seeded pairing): answers with the wrong context fed in.
    context: str = "retrieved"


@dataclass(frozen=True)
class AnswerEvaluationSettings:
    """The answer_scores asset: which answer variants answer which eval sets, scored how, gated how."""

    variants: tuple[AnswerVariantSettings, ...] = (AnswerVariantSettings("default"),)
    eval_sets: tuple[str, ...] = ()  # (): every eval set whose questions carry reference answers
    metrics: tuple[str, ...] = ANSWER_METRICS
    gate_metrics: tuple[str, ...] = ("faithfulness", "correctness", "token_f1", "embedding_cosine")
    control: str | None = None  # the A/B control answer variant; default: the first
    pairwise: bool = True  # also ask the judge which of two answers is better (both orders)
    min_effect: float = 0.05  # a significant drop smaller than this is reported, not acted on
    severity: str = "error"  # of answer_scores_have_not_regressed: error blocks downstream, warn does not
    max_questions: int | None = None  # per eval set, the first N by question id (judging is slow)
    baseline: str | None = None  # a pinned partition date (YYYY-MM-DD); default: evaluation.baseline
    seed: int = 0  # of the other_question pairing
    min_questions: int = 5  # paired questions a metric needs to be compared (gate and A/B)


@dataclass(frozen=True)
class Settings:
    path: Path
    data_dir: Path
    embedding: EmbeddingSettings
    index: IndexSettings
    sources: tuple[SourceSettings, ...]
    retrieval: RetrievalSettings = field(default_factory=RetrievalSettings)
    llm: LLMSettings = field(default_factory=LLMSettings)
    eval_sets: tuple[EvalSetSettings, ...] = ()
    variants: tuple[VariantSettings, ...] = ()
    evaluation: EvaluationSettings = field(default_factory=EvaluationSettings)
    drift: DriftSettings = field(default_factory=DriftSettings)
    freshness: FreshnessSettings = field(default_factory=FreshnessSettings)
    alerts: AlertSettings = field(default_factory=AlertSettings)
    automation: AutomationSettings = field(default_factory=AutomationSettings)
    cache: CacheSettings = field(default_factory=CacheSettings)
    guardrails: GuardrailSettings = field(default_factory=GuardrailSettings)
    answer: AnswerSettings = field(default_factory=AnswerSettings)
    serve: ServeSettings = field(default_factory=ServeSettings)
    models: tuple[ModelSettings, ...] = ()
    routing: RoutingSettings = field(default_factory=RoutingSettings)
    prices: tuple[ModelPrice, ...] = ()
    costs: CostSettings = field(default_factory=CostSettings)
    answer_evaluation: AnswerEvaluationSettings = field(default_factory=AnswerEvaluationSettings)
    judge: JudgeSettings = field(default_factory=JudgeSettings)
    annotation: AnnotationSettings = field(default_factory=AnnotationSettings)

    @property
    def project_dir(self) -> Path:
        return self.path.parent

    def source(self, name: str) -> SourceSettings:
        for source in self.sources:
            if source.name == name:
                return source
        known = ", ".join(s.name for s in self.sources)
        raise ConfigError(f"unknown source {name!r}; configured sources: {known}")


def config_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The config file: the explicit path, else $RAGLINE_CONFIG, else ./ragline.yaml."""
    raw = explicit or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_NAME
    return Path(raw).expanduser().resolve()


def load_settings(path: str | os.PathLike[str] | None = None) -> Settings:
    """Read and validate the config file; relative paths resolve against its folder."""
    file = config_path(path)
    if not file.is_file():
        raise ConfigError(f"config file not found: {file} (set {CONFIG_ENV} or run from the project folder)")
    try:
        raw = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{file}: the top level must be a mapping")
    return parse_settings(raw, file)


def parse_settings(raw: dict[str, Any], file: Path) -> Settings:
    base = file.parent
    _reject_unknown(
        raw,
        {
            "data_dir",
            "embedding",
            "index",
            "sources",
            "defaults",
            "retrieval",
            "llm",
            "eval_sets",
            "variants",
            "evaluation",
            "drift",
            "freshness",
            "alerts",
            "automation",
            "cache",
            "guardrails",
            "answer",
            "serve",
            "models",
            "routing",
            "prices",
            "costs",
            "answer_evaluation",
            "judge",
            "annotation",
        },
        str(file),
    )
    defaults = raw.get("defaults") or {}
    _reject_unknown(defaults, {"max_file_bytes", "chunking", "mass_change"}, "defaults")
    embedding = _build(EmbeddingSettings, raw.get("embedding") or {}, "embedding")
    if embedding.provider not in EMBEDDING_PROVIDERS:
        raise ConfigError(
            f"embedding.provider must be one of {EMBEDDING_PROVIDERS}, got {embedding.provider!r}"
        )
    if embedding.batch_size < 1 or embedding.model_batch_size < 1:
        raise ConfigError("embedding.batch_size and embedding.model_batch_size must be at least 1")
    _check_endpoint_limits(embedding, "embedding")
    if embedding.provider == "openai":
        _check_endpoint(embedding, "embedding")
    index = _build(IndexSettings, raw.get("index") or {}, "index")
    if not 0 < index.min_recall <= 1:
        raise ConfigError("index.min_recall must be in (0, 1]")
    _check_index_bounds(index)
    memory_mb = index.build_memory_mb
    if not 1 <= memory_mb <= 2_000_000:
        raise ConfigError(
            f"index.build_memory_mb must be a whole number of MB from 1 to 2000000, got {memory_mb!r}"
        )

    # Merged into each source below: a bad default is named as the default, not as sources[0]'s.
    if "max_file_bytes" in defaults:
        _check_scalar_types(SourceSettings, {"max_file_bytes": defaults["max_file_bytes"]}, "defaults")
    for key, cls in (("chunking", ChunkingSettings), ("mass_change", MassChangeSettings)):
        if isinstance(defaults.get(key), dict):
            _check_scalar_types(cls, defaults[key], f"defaults.{key}")
    raw_sources = raw.get("sources")
    if not raw_sources or not isinstance(raw_sources, list):
        raise ConfigError(f"{file}: 'sources' must be a non-empty list")
    sources = []
    for i, item in enumerate(raw_sources):
        where = f"sources[{i}]"
        if not isinstance(item, dict):
            raise ConfigError(f"{where} must be a mapping")
        _reject_unknown(
            item,
            {
                "name",
                "root",
                "glob",
                "chunking",
                "jsonl",
                "max_file_bytes",
                "format",
                "mass_change",
                "follow_symlinks",
                "pdf",
            },
            where,
        )
        # Built by hand below (root, chunking and the rest are merged first): the scalars are checked
        # here, so that `follow_symlinks: "no"` is an error and not bool("no"), which is True.
        scalars = ("name", "glob", "max_file_bytes", "format", "follow_symlinks")
        _check_scalar_types(SourceSettings, {k: item[k] for k in scalars if k in item}, where)
        source_format = item.get("format", "files")
        if source_format not in SOURCE_FORMATS:
            raise ConfigError(f"{where}.format must be one of {SOURCE_FORMATS}, got {source_format!r}")
        name = item.get("name")
        if not isinstance(name, str) or not _SOURCE_NAME.match(name):
            raise ConfigError(
                f"{where}.name must match {_SOURCE_NAME.pattern} (it becomes a partition key), got {name!r}"
            )
        if "root" not in item:
            raise ConfigError(f"{where} ({name}) needs a 'root' folder")
        chunking = _build(
            ChunkingSettings,
            {**(defaults.get("chunking") or {}), **(item.get("chunking") or {})},
            f"{where}.chunking",
        )
        _validate_chunking(chunking, f"{where}.chunking")
        mass_change = _build(
            MassChangeSettings,
            {**(defaults.get("mass_change") or {}), **(item.get("mass_change") or {})},
            f"{where}.mass_change",
        )
        if not 0 <= mass_change.max_fraction <= 1 or mass_change.min_documents < 1:
            raise ConfigError(f"{where}.mass_change: max_fraction in [0, 1] and min_documents >= 1")
        jsonl_raw = dict(item.get("jsonl") or {})
        if source_format == "beir":
            # BEIR's corpus.jsonl: {"_id", "title", "text", "metadata"}; queries and qrels are read by
            # an eval set of kind beir.
            jsonl_raw = {"id_field": "_id", "text_fields": ["title", "text"], **jsonl_raw}
        for key in ("text_fields", "metadata_fields"):
            if key in jsonl_raw:
                jsonl_raw[key] = tuple(jsonl_raw[key])
        sources.append(
            SourceSettings(
                name=name,
                root=(base / str(item["root"])).resolve(),
                glob=str(item.get("glob", "corpus.jsonl" if source_format == "beir" else "**/*")),
                chunking=chunking,
                jsonl=_build(JsonlSettings, jsonl_raw, f"{where}.jsonl"),
                max_file_bytes=int(
                    item.get(
                        "max_file_bytes",
                        # A BEIR corpus.jsonl is one file holding the whole corpus.
                        BEIR_MAX_FILE_BYTES
                        if source_format == "beir"
                        else defaults.get("max_file_bytes", 10_000_000),
                    )
                ),
                format=source_format,
                mass_change=mass_change,
                follow_symlinks=bool(item.get("follow_symlinks", False)),
                pdf=_build(PdfSettings, item.get("pdf") or {}, f"{where}.pdf"),
            )
        )
    names = [s.name for s in sources]
    _require_unique("source", names)
    data_dir = (base / str(raw.get("data_dir", ".ragline"))).resolve()
    retrieval = _retrieval(raw.get("retrieval") or {}, "retrieval")
    llm = _build(LLMSettings, raw.get("llm") or {}, "llm")
    if llm.configured:
        _check_endpoint(llm, "llm")
    window = llm.context_window
    if window < 16:
        raise ConfigError("llm.context_window must be a whole number of tokens, at least 16")
    if retrieval.rerank == "llm" and not llm.configured:
        raise ConfigError("retrieval.rerank is 'llm' but no llm.model is configured")
    eval_sets = _eval_sets(raw.get("eval_sets") or [], base, {s.name: s for s in sources})
    variants = _variants(raw.get("variants"), retrieval, embedding, llm)
    raw_evaluation = dict(raw.get("evaluation") or {})
    for key in ("start_date", "baseline"):
        # YAML reads an unquoted 2026-11-20 as a date; settings keep ISO strings.
        if isinstance(raw_evaluation.get(key), date):
            raw_evaluation[key] = raw_evaluation[key].isoformat()
    evaluation = _build(EvaluationSettings, raw_evaluation, "evaluation")
    if evaluation.k < 1 or evaluation.bootstrap_samples < 100 or evaluation.min_effect < 0:
        raise ConfigError("evaluation: k >= 1, bootstrap_samples >= 100 and min_effect >= 0 are required")
    if evaluation.severity not in SEVERITIES:
        raise ConfigError(f"evaluation.severity must be one of {SEVERITIES}")
    if evaluation.control and evaluation.control not in {v.name for v in variants}:
        raise ConfigError(f"evaluation.control {evaluation.control!r} is not a configured variant")
    for day in (evaluation.start_date, evaluation.baseline):
        try:
            if day is not None:
                date.fromisoformat(str(day))
        except ValueError as exc:
            raise ConfigError(f"evaluation: {day!r} is not a YYYY-MM-DD date") from exc
    if not 0.5 <= evaluation.confidence < 1:
        raise ConfigError("evaluation.confidence must be in [0.5, 1)")
    raw_drift = raw.get("drift") or {}
    if isinstance(raw_drift, dict) and "min_effect" in raw_drift:
        raise ConfigError(
            "drift.min_effect (a centroid distance) is replaced by drift.min_new_share: the share of "
            "current rows unlike the baseline that alarms, e.g. 0.05 for 5% new content"
        )
    drift = _build(DriftSettings, raw_drift, "drift")
    if drift.severity not in SEVERITIES:
        raise ConfigError(f"drift.severity must be one of {SEVERITIES}")
    if not 0 < drift.alpha < 1:
        raise ConfigError("drift.alpha must be in (0, 1)")
    if not 0 <= drift.min_new_share <= 1:
        raise ConfigError("drift.min_new_share must be a share in [0, 1]")
    if 1 / (drift.permutations + 1) >= drift.alpha:
        raise ConfigError(
            f"drift.permutations must exceed 1/alpha - 1 = {1 / drift.alpha - 1:.0f}: the smallest "
            "p-value a permutation test can give is 1/(permutations + 1), so it could never alarm"
        )
    if drift.sample_size < max(drift.min_queries, 10):
        raise ConfigError("drift.sample_size must be at least drift.min_queries (and 10)")
    freshness = _build(FreshnessSettings, raw.get("freshness") or {}, "freshness")
    if not 0 < freshness.warn_hours < freshness.fail_hours:
        raise ConfigError("freshness: need 0 < warn_hours < fail_hours")
    alerts = _alerts(raw.get("alerts") or {})
    automation = _build(AutomationSettings, raw.get("automation") or {}, "automation")
    if automation.quality_cron is not None and len(str(automation.quality).split()) != 5:
        raise ConfigError(
            f"automation.quality must be {QUALITY_ON_CHANGE} or a cron expression of 5 fields "
            f"such as '0 4 * * *', got {str(automation.quality)[:60]!r}"
        )
    serve = _serve(raw.get("serve") or {})
    models_and_costs = _models_and_costs(raw, llm)
    answer_evaluation = parse_answer_evaluation(
        raw.get("answer_evaluation"),
        variants=[v.name for v in variants],
        models=[m.name for m in models_and_costs["models"] or _llm_as_model(llm)],
        eval_sets=[e.name for e in eval_sets],
    )
    return Settings(
        file,
        data_dir,
        embedding,
        index,
        tuple(sources),
        retrieval=retrieval,
        llm=llm,
        eval_sets=eval_sets,
        variants=variants,
        evaluation=evaluation,
        drift=drift,
        freshness=freshness,
        alerts=alerts,
        automation=automation,
        cache=_cache(raw.get("cache") or {}),
        guardrails=parse_guardrails(raw.get("guardrails")),
        answer=_answer(raw.get("answer") or {}, base, llm),
        serve=serve,
        **models_and_costs,
        answer_evaluation=answer_evaluation,
        judge=parse_judge(raw.get("judge"), base, models_and_costs["models"] or _llm_as_model(llm)),
        annotation=_annotation(raw.get("annotation") or {}, base),
    )


def _annotation(raw: dict[str, Any], base: Path) -> AnnotationSettings:
    if not isinstance(raw, dict):
        raise ConfigError("annotation must be a mapping")
    item = dict(raw)
    item["golden_path"] = (base / str(item.get("golden_path") or "golden/human.jsonl")).resolve()
    a = _build(AnnotationSettings, item, "annotation")  # types are checked there
    if a.queue_size < 1:
        raise ConfigError("annotation.queue_size must be a whole number of at least 1")
    for name in ("max_interval_width", "disagreement"):
        if not 0 <= getattr(a, name) <= 1:
            raise ConfigError(f"annotation.{name} must be a number from 0 to 1")
    if a.random_share is not None and a.random_count is not None:
        raise ConfigError("annotation: give random_share or random_count, not both")
    if a.random_share is not None and not 0 <= a.random_share <= 1:
        raise ConfigError("annotation.random_share must be a number from 0 to 1")
    if a.random_count is not None and a.random_count < 0:
        raise ConfigError("annotation.random_count must be a whole number of at least 0")
    return a


def parse_answer_evaluation(
    raw: Any, *, variants: list[str], models: list[str], eval_sets: list[str]
) -> AnswerEvaluationSettings:
    """The answer_evaluation: block, checked against the configured variants, models and eval sets."""
    where = "answer_evaluation"
    if raw is None:
        return AnswerEvaluationSettings()
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a mapping")
    item = dict(raw)
    if isinstance(item.get("baseline"), date):
        item["baseline"] = item["baseline"].isoformat()
    raw_variants = item.pop("variants", None)
    out = []
    for i, v in enumerate(raw_variants if raw_variants is not None else [{"name": "default"}]):
        at = f"{where}.variants[{i}]"
        variant = _build(AnswerVariantSettings, v, at)
        if not isinstance(variant.name, str) or not _SOURCE_NAME.match(variant.name):
            raise ConfigError(f"{at}.name must match {_SOURCE_NAME.pattern}, got {_shown(variant.name)!r}")
        if variant.retrieval is not None and variant.retrieval not in variants:
            raise ConfigError(
                f"{at} ({variant.name}): retrieval {_shown(variant.retrieval)!r} is not a configured "
                f"variant; variants: {variants}"
            )
        if variant.model is not None and variant.model not in models:
            raise ConfigError(
                f"{at} ({variant.name}): model {_shown(variant.model)!r} is not a configured chat model; "
                f"models: {models or 'none (add a models: or llm: block)'}"
            )
        if variant.prompt is not None and (
            not isinstance(variant.prompt, str) or not _PROMPT_REF.match(variant.prompt)
        ):
            raise ConfigError(f"{at}.prompt must be <name>@<version> such as answer@1")
        if variant.context not in ANSWER_CONTEXTS:
            raise ConfigError(
                f"{at}.context must be one of {ANSWER_CONTEXTS}, got {_shown(variant.context)!r}"
            )
        out.append(variant)
    if not out:
        raise ConfigError(f"{where}.variants must not be empty")
    _require_unique("answer variant", [v.name for v in out])
    for key, allowed in (("metrics", ANSWER_METRICS), ("gate_metrics", ANSWER_METRICS), ("eval_sets", None)):
        if key in item:
            item[key] = _names(item[key], f"{where}.{key}", tuple(allowed or eval_sets))
    s = _build(AnswerEvaluationSettings, {**item, "variants": tuple(out)}, where)
    if not s.metrics:
        raise ConfigError(f"{where}.metrics must name at least one metric")
    if s.min_questions < 1:
        raise ConfigError(f"{where}.min_questions must be an integer >= 1, got {_shown(s.min_questions)!r}")
    ungated = sorted(set(s.gate_metrics) - set(s.metrics))
    if ungated:
        raise ConfigError(f"{where}.gate_metrics {ungated} are not in {where}.metrics")
    if s.control is not None and s.control not in [v.name for v in out]:
        raise ConfigError(f"{where}.control {_shown(s.control)!r} is not an answer variant")
    if s.severity not in SEVERITIES:
        raise ConfigError(f"{where}.severity must be one of {SEVERITIES}")
    if not 0 <= s.min_effect <= 1:
        raise ConfigError(f"{where}.min_effect must be a number from 0 to 1")
    if s.max_questions is not None and s.max_questions < 1:
        raise ConfigError(f"{where}.max_questions must be a whole number of at least 1")
    if s.baseline is not None:
        try:
            date.fromisoformat(str(s.baseline))
        except ValueError as exc:
            raise ConfigError(f"{where}.baseline: {_shown(s.baseline)!r} is not a YYYY-MM-DD date") from exc
    return s


def _serve(raw: dict[str, Any]) -> ServeSettings:
    serve = _build(ServeSettings, raw, "serve")  # types are checked there
    if not serve.host:
        raise ConfigError("serve.host must be a host name or address")
    if serve.lexical_index not in LEXICAL_INDEXES:
        raise ConfigError(f"serve.lexical_index must be one of {LEXICAL_INDEXES}")
    numbers = {k: v for k, v in serve.__dict__.items() if k not in ("host", "lexical_index")}
    if any(v < 1 for v in numbers.values()):
        raise ConfigError(f"serve: {', '.join(numbers)} must be whole numbers of at least 1")
    if serve.port > 65535:
        raise ConfigError("serve.port must be from 1 to 65535")
    return serve


def chat_models(settings: Settings) -> tuple[ModelSettings, ...]:
    """The named chat models: the models: block, else the llm: block as the one model "llm"."""
    if settings.models:
        return settings.models
    return _llm_as_model(settings.llm)


def _llm_as_model(llm: LLMSettings) -> tuple[ModelSettings, ...]:
    if not llm.configured:
        return ()
    return (
        ModelSettings(
            name=LLM_MODEL_NAME,
            model=llm.model,
            base_url=llm.base_url,
            api_key_env=llm.api_key_env,
            timeout_seconds=llm.timeout_seconds,
            max_retries=llm.max_retries,
        ),
    )


def _models_and_costs(raw: dict[str, Any], llm: LLMSettings) -> dict[str, Any]:
    """The models:, routing:, prices: and costs: blocks, checked against each other."""
    models = _models(raw.get("models") or {})
    names = [m.name for m in models or _llm_as_model(llm)]
    routing = _routing(raw.get("routing") or {}, names)
    prices = _prices(raw.get("prices") or {})
    return {"models": models, "routing": routing, "prices": prices, "costs": _costs(raw)}


def _models(raw: Any) -> tuple[ModelSettings, ...]:
    if not isinstance(raw, dict):
        raise ConfigError("models must be a mapping of names to chat endpoints")
    out = []
    for name, item in raw.items():
        where = f"models.{_shown(name)}"
        if not isinstance(name, str) or not _SOURCE_NAME.match(name):
            raise ConfigError(f"{where}: a model's name must match {_SOURCE_NAME.pattern}")
        if not isinstance(item, dict) or not isinstance(item.get("model"), str) or not item["model"]:
            raise ConfigError(f"{where} needs a model (the name the endpoint serves)")
        model = _build(ModelSettings, {**item, "name": name}, where)
        if not model.timeout_seconds > 0 or model.max_retries < 0 or model.context_tokens < 1:
            raise ConfigError(f"{where}: timeout_seconds > 0, max_retries >= 0 and context_tokens >= 1")
        if model.api_key_env is not None:
            _check_env_name(model.api_key_env, f"{where}.api_key_env")
        _check_endpoint(model, where)
        out.append(model)
    return tuple(out)


def _shown(name: Any) -> str:
    """A config key as an error message may show it: short, no control characters."""
    return "".join(ch if ch.isprintable() else "?" for ch in str(name))[:40]


def _routing(raw: Any, names: list[str]) -> RoutingSettings:
    if not isinstance(raw, dict):
        raise ConfigError("routing must be a mapping")
    _reject_unknown(raw, set(RoutingSettings.__dataclass_fields__), "routing")
    if raw and not names:
        raise ConfigError("routing needs chat models: a models: block, or an llm: block")

    def known(name: Any, where: str) -> str:
        if name not in names:
            raise ConfigError(f"{where}: {_shown(name)!r} is not a configured model; models: {names}")
        return name

    rules = []
    raw_rules = raw.get("escalate") or []
    if not isinstance(raw_rules, list):
        raise ConfigError("routing.escalate must be a list of rules")
    for i, item in enumerate(raw_rules):
        where = f"routing.escalate[{i}]"
        rule = _build(EscalationRule, item, where)
        known(rule.model, f"{where}.model")
        conditions = (rule.retrieval_margin_below, rule.question_tokens_above, rule.output)
        if all(c is None for c in conditions):
            raise ConfigError(
                f"{where}: give at least one of retrieval_margin_below, question_tokens_above, output"
            )
        if rule.output is not None and rule.output not in ROUTE_OUTPUTS:
            raise ConfigError(f"{where}.output must be one of {ROUTE_OUTPUTS}")
        rules.append(rule)
    fallback = raw.get("fallback") or []
    if not isinstance(fallback, list):
        raise ConfigError("routing.fallback must be a list of model names")
    circuit = _build(CircuitSettings, raw.get("circuit") or {}, "routing.circuit")
    if circuit.failures < 1 or circuit.cooldown_seconds < 0:
        raise ConfigError("routing.circuit: failures >= 1 and cooldown_seconds >= 0")
    routing = RoutingSettings(
        default=known(raw["default"], "routing.default") if raw.get("default") is not None else None,
        escalate=tuple(rules),
        min_budget_tokens=raw.get("min_budget_tokens"),
        fallback=tuple(known(n, "routing.fallback") for n in fallback),
        circuit=circuit,
    )
    if routing.min_budget_tokens is not None and (
        not _whole(routing.min_budget_tokens) or routing.min_budget_tokens < 0
    ):
        raise ConfigError("routing.min_budget_tokens must be a whole number >= 0")
    return routing


def _prices(raw: Any) -> tuple[ModelPrice, ...]:
    if not isinstance(raw, dict):
        raise ConfigError("prices must be a mapping: {model: {input_per_1m: USD, output_per_1m: USD}}")
    out = []
    for model, item in raw.items():
        where = f"prices.{_shown(model)}"
        if not isinstance(item, dict) or "model" in item:
            raise ConfigError(f"{where} must be a mapping with input_per_1m and output_per_1m")
        price = _build(ModelPrice, {**item, "model": str(model)}, where)
        values = (price.input_per_1m, price.output_per_1m)
        if not all(isinstance(v, int | float) and not isinstance(v, bool) and 0 <= v < 1e6 for v in values):
            raise ConfigError(f"{where}: input_per_1m and output_per_1m must be USD amounts >= 0")
        out.append(price)
    return tuple(out)


def _costs(raw: dict[str, Any]) -> CostSettings:
    block = raw.get("costs") or {}
    if not isinstance(block, dict):
        raise ConfigError("costs must be a mapping")
    _reject_unknown(block, set(CostSettings.__dataclass_fields__), "costs")
    budget = _build(DailyBudget, block.get("daily_budget") or {}, "costs.daily_budget")
    for value in (budget.warn, budget.fail):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float) or value < 0):
            raise ConfigError("costs.daily_budget: warn and fail are USD amounts >= 0")
    if budget.warn is not None and budget.fail is not None and budget.warn > budget.fail:
        raise ConfigError("costs.daily_budget: warn must not exceed fail")
    return CostSettings(daily_budget=budget)


def parse_judge(raw: Any, base: Path, models: tuple[ModelSettings, ...]) -> JudgeSettings:
    """The judge: block, validated: its model is one of the configured chat models."""
    if raw is None:
        return JudgeSettings()
    if not isinstance(raw, dict):
        raise ConfigError("judge must be a mapping, e.g. {samples: 5}")
    item = dict(raw)
    if item.get("prompt_dir") is not None:
        item["prompt_dir"] = (base / str(item["prompt_dir"])).resolve()
    prompts = item.get("prompts") or {}
    if not isinstance(prompts, dict):
        raise ConfigError(f"judge.prompts must map roles {list(JUDGE_PROMPT_ROLES)} to name@version")
    for role, ref in prompts.items():
        if role not in JUDGE_PROMPT_ROLES:
            raise ConfigError(
                f"judge.prompts: unknown role {_shown(role)!r}; roles: {list(JUDGE_PROMPT_ROLES)}"
            )
        if not isinstance(ref, str) or not _PROMPT_REF.match(ref):
            raise ConfigError(f"judge.prompts.{role} must be <name>@<version> such as {role}@2")
    item["prompts"] = dict(prompts)
    judge = _build(JudgeSettings, item, "judge")  # types are checked there
    names = [m.name for m in models]
    if judge.model is not None and judge.model not in names:
        raise ConfigError(
            f"judge.model: {_shown(judge.model)!r} is not a configured chat model; models: {names}"
        )
    if not 1 <= judge.samples <= 100 or judge.max_tokens < 1 or judge.bootstrap_samples < 100:
        raise ConfigError("judge: samples from 1 to 100, max_tokens >= 1 and bootstrap_samples >= 100")
    if not 0 <= judge.temperature <= 2:
        raise ConfigError("judge.temperature must be from 0 to 2")
    if not 0.5 <= judge.confidence < 1:
        raise ConfigError("judge.confidence must be in [0.5, 1)")
    return judge


def _retrieval(raw: dict[str, Any], where: str, base: RetrievalSettings | None = None) -> RetrievalSettings:
    merged = {**(base.__dict__ if base else {}), **raw}
    r = _build(RetrievalSettings, merged, where)
    if r.strategy not in RETRIEVAL_STRATEGIES:
        raise ConfigError(f"{where}.strategy must be one of {RETRIEVAL_STRATEGIES}, got {r.strategy!r}")
    if r.lexical_index not in LEXICAL_INDEXES:
        raise ConfigError(f"{where}.lexical_index must be one of {LEXICAL_INDEXES}, got {r.lexical_index!r}")
    if r.rerank is not None and r.rerank not in RERANKERS:
        raise ConfigError(f"{where}.rerank must be one of {RERANKERS} or null, got {r.rerank!r}")
    if r.mmr_lambda is not None and not 0 <= r.mmr_lambda <= 1:
        raise ConfigError(f"{where}.mmr_lambda must be in [0, 1]")
    if r.k < 1 or r.candidates < 1 or r.rrf_k < 1 or r.rerank_candidates < 1:
        raise ConfigError(f"{where}: k, candidates, rrf_k and rerank_candidates must be at least 1")
    if r.dense_weight < 0 or r.lexical_weight < 0 or r.dense_weight + r.lexical_weight == 0:
        raise ConfigError(f"{where}: fusion weights must be >= 0 and not both 0")
    return r


def _answer(raw: dict[str, Any], base: Path, llm: LLMSettings) -> AnswerSettings:
    if not isinstance(raw, dict):
        raise ConfigError("answer must be a mapping")
    item = dict(raw)
    if item.get("prompt_dir") is not None:
        item["prompt_dir"] = (base / str(item["prompt_dir"])).resolve()
    a = _build(AnswerSettings, item, "answer")  # types are checked there
    if not _PROMPT_REF.match(a.prompt):
        raise ConfigError(f"answer.prompt must be <name>@<version> such as answer@1, got {a.prompt!r}")
    if a.max_tokens < 1 or a.context_tokens < 1 or a.max_retries < 0:
        raise ConfigError("answer: max_tokens and context_tokens must be at least 1, max_retries at least 0")
    if not 0 <= a.temperature <= 2:
        raise ConfigError("answer.temperature must be a number from 0 to 2")
    if not -1 <= a.min_support <= 1:
        raise ConfigError("answer.min_support must be a cosine similarity from -1 to 1")
    if a.tokenizer not in TOKENIZERS:
        raise ConfigError(f"answer.tokenizer must be one of {TOKENIZERS}, got {a.tokenizer!r}")
    if llm.configured and a.max_tokens >= llm.context_window:
        raise ConfigError(
            f"answer.max_tokens ({a.max_tokens}) leaves no room for the question in the model's "
            f"llm.context_window ({llm.context_window})"
        )
    return a


def _eval_sets(raw: list[Any], base: Path, sources: dict[str, SourceSettings]) -> tuple[EvalSetSettings, ...]:
    if not isinstance(raw, list):
        raise ConfigError("eval_sets must be a list")
    out = []
    for i, item in enumerate(raw):
        where = f"eval_sets[{i}]"
        if not isinstance(item, dict):
            raise ConfigError(f"{where} must be a mapping")
        item = dict(item)
        if "path" in item:
            item["path"] = (base / str(item["path"])).resolve()
        elif item.get("kind") == "beir" and item.get("source") in sources:
            item["path"] = sources[item["source"]].root
        e = _build(EvalSetSettings, item, where)
        if not isinstance(e.name, str) or not _SOURCE_NAME.match(e.name):
            raise ConfigError(f"{where}.name must match {_SOURCE_NAME.pattern}, got {e.name!r}")
        if e.kind not in EVAL_SET_KINDS:
            raise ConfigError(f"{where}.kind must be one of {EVAL_SET_KINDS}, got {e.kind!r}")
        if e.source is not None and e.source not in sources:
            raise ConfigError(f"{where} ({e.name}): unknown source {e.source!r}")
        if e.kind == "beir" and e.source is None:
            raise ConfigError(f"{where} ({e.name}): kind beir needs the source that loads its corpus.jsonl")
        if e.kind in ("golden", "beir") and e.path is None:
            raise ConfigError(f"{where} ({e.name}): kind {e.kind} needs a path")
        out.append(e)
    _require_unique("eval set", [e.name for e in out])
    return tuple(out)


def _variants(
    raw: Any, retrieval: RetrievalSettings, embedding: EmbeddingSettings, llm: LLMSettings
) -> tuple[VariantSettings, ...]:
    if raw is None:
        # Without a variants block, every strategy is scored with the pipeline's own chunks and model.
        return tuple(
            VariantSettings(name=s, retrieval=_retrieval({"strategy": s}, "variants", retrieval))
            for s in RETRIEVAL_STRATEGIES
        )
    if not isinstance(raw, list) or not raw:
        raise ConfigError("variants must be a non-empty list")
    out = []
    for i, item in enumerate(raw):
        where = f"variants[{i}]"
        if not isinstance(item, dict):
            raise ConfigError(f"{where} must be a mapping")
        _reject_unknown(
            item, {"name", "chunking", "embedding", *RetrievalSettings.__dataclass_fields__}, where
        )
        name = item.get("name")
        if not isinstance(name, str) or not _SOURCE_NAME.match(name) or name == DEFAULT_CHUNK_SET:
            raise ConfigError(f"{where}.name must match {_SOURCE_NAME.pattern} and not be 'default'")
        fields = {k: v for k, v in item.items() if k not in ("name", "chunking", "embedding")}
        r = _retrieval(fields, where, retrieval)
        if r.rerank == "llm" and not llm.configured:
            raise ConfigError(f"{where} ({name}): rerank 'llm' needs an llm block")
        chunking = None
        if item.get("chunking") is not None:
            chunking = _build(ChunkingSettings, item["chunking"], f"{where}.chunking")
            _validate_chunking(chunking, f"{where}.chunking")
        variant_embedding = None
        if item.get("embedding") is not None:
            own = dict(item["embedding"])
            if own.get("base_url", embedding.base_url) != embedding.base_url:
                # The pipeline's key was configured for the pipeline's endpoint, not this one.
                own.setdefault("api_key_env", None)
            variant_embedding = _build(EmbeddingSettings, {**embedding.__dict__, **own}, f"{where}.embedding")
            if variant_embedding.provider == "openai":
                _check_endpoint(variant_embedding, f"{where}.embedding")
            _check_endpoint_limits(variant_embedding, f"{where}.embedding")
            if variant_embedding == embedding:
                variant_embedding = None
        out.append(VariantSettings(name, r, chunking, variant_embedding))
    _require_unique("variant", [v.name for v in out])
    return tuple(out)


def _cache(raw: dict[str, Any]) -> CacheSettings:
    cache = _build(CacheSettings, raw, "cache")  # types are checked there
    if not cache.ttl_seconds > 0:
        raise ConfigError("cache.ttl_seconds must be greater than 0")
    if not 0 < cache.semantic_threshold <= 1:
        raise ConfigError("cache.semantic_threshold must be a cosine similarity in (0, 1]")
    if cache.max_entries is not None and cache.max_entries < 1:
        raise ConfigError("cache.max_entries must be a whole number of at least 1 (or null: no limit)")
    return cache


def parse_guardrails(raw: Any) -> GuardrailSettings:
    """The guardrails: block, validated: known kinds only, and no credential restored."""
    if raw is None:
        return GuardrailSettings()
    if not isinstance(raw, dict):
        raise ConfigError("guardrails must be a mapping, e.g. {enabled: false}")
    item = dict(raw)
    kinds = PII_KINDS + SECRET_KINDS
    secrets_restored = sorted(set(item.get("restore") or []) & set(SECRET_KINDS))
    if secrets_restored:
        raise ConfigError(f"guardrails.restore: credentials are never restored: {secrets_restored}")
    for key, allowed in (("redact", kinds), ("restore", PII_KINDS)):
        if key in item:
            item[key] = _names(item[key], f"guardrails.{key}", allowed)
    if "blocklist" in item:
        terms = item["blocklist"] or []
        if not isinstance(terms, list) or not all(isinstance(t, str) and t.strip() for t in terms):
            raise ConfigError("guardrails.blocklist must be a list of non-empty strings")
        item["blocklist"] = tuple(t.strip() for t in terms)
    if "actions" in item:
        item["actions"] = _build(GuardrailActionSettings, item["actions"] or {}, "guardrails.actions")
    guardrails = _build(GuardrailSettings, item, "guardrails")  # types are checked there
    if guardrails.injection not in INJECTION_MODES:
        raise ConfigError(f"guardrails.injection must be one of {INJECTION_MODES}")
    for name, action in guardrails.actions.__dict__.items():
        if action not in GUARDRAIL_ACTIONS:
            raise ConfigError(f"guardrails.actions.{name} must be one of {GUARDRAIL_ACTIONS}")
    limit = guardrails.max_answer_chars
    if limit is not None and limit < 100:
        raise ConfigError("guardrails.max_answer_chars must be a whole number of at least 100, or null")
    unredacted = sorted(set(guardrails.restore) - set(guardrails.redact))
    if unredacted:
        raise ConfigError(f"guardrails.restore names kinds that are not redacted: {unredacted}")
    return guardrails


def _names(raw: Any, where: str, allowed: tuple[str, ...]) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(n, str) for n in raw):
        raise ConfigError(f"{where} must be a list of names from {list(allowed)}")
    unknown = sorted(set(raw) - set(allowed))
    if unknown:
        raise ConfigError(f"{where}: unknown or not allowed {unknown}; allowed: {list(allowed)}")
    return tuple(dict.fromkeys(raw))


def _alerts(raw: dict[str, Any]) -> AlertSettings:
    if not isinstance(raw, dict):
        raise ConfigError("alerts must be a mapping")
    _reject_unknown(raw, set(AlertSettings.__dataclass_fields__), "alerts")
    hooks = {}
    for name in ("slack", "webhook"):
        if raw.get(name) is not None:
            hook = _build(WebhookAlertSettings, raw[name], f"alerts.{name}")
            _check_env_name(hook.url_env, f"alerts.{name}.url_env")
            hooks[name] = hook
    smtp = None
    if raw.get("smtp") is not None:
        if not isinstance(raw["smtp"], dict):
            raise ConfigError("alerts.smtp must be a mapping")
        item = dict(raw["smtp"])
        recipients = item.get("recipients")
        if isinstance(recipients, str):
            recipients = [recipients]
        if (
            not isinstance(recipients, list)
            or not recipients
            or not all(isinstance(r, str) for r in recipients)
        ):
            raise ConfigError("alerts.smtp.recipients must be a non-empty list of addresses")
        item["recipients"] = tuple(recipients)
        for key in ("host", "sender"):
            if not isinstance(item.get(key), str) or not item[key]:
                raise ConfigError(f"alerts.smtp.{key} is required")
        smtp = _build(SmtpAlertSettings, item, "alerts.smtp")
        if smtp.security not in ALERT_SECURITY:
            raise ConfigError(f"alerts.smtp.security must be one of {ALERT_SECURITY}, got {smtp.security!r}")
        if not 0 < smtp.port < 65536:
            raise ConfigError("alerts.smtp.port must be a whole number from 1 to 65535")
        if smtp.password_env is not None:
            _check_env_name(smtp.password_env, "alerts.smtp.password_env")
            if smtp.security == "none" and not is_loopback_url(f"smtp://{smtp.host}"):
                raise ConfigError(
                    f"alerts.smtp: password_env {smtp.password_env} would send that password in clear "
                    f"text to {smtp.host}. Use security: starttls or ssl, or a server on localhost."
                )
    alerts = _build(AlertSettings, {**raw, **hooks, "smtp": smtp}, "alerts")
    if not alerts.reminder_hours > 0 or not alerts.timeout_seconds > 0:
        raise ConfigError("alerts: reminder_hours and timeout_seconds must be greater than 0")
    if alerts.ui_url is not None:
        parts = urlsplit(alerts.ui_url) if isinstance(alerts.ui_url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError("alerts.ui_url must be an http(s) URL with a host")
        if parts.username is not None or parts.password is not None:
            # It goes into the link of every message sent to chat rooms and mailboxes.
            raise ConfigError("alerts.ui_url must not carry credentials (user:password@)")
    return alerts


def _check_env_name(name: Any, where: str) -> None:
    if not isinstance(name, str) or not _ENV_NAME.match(name):
        # Never echo the value: it may be the webhook URL or the password pasted in by mistake.
        shape = f"a {len(name)}-character string" if isinstance(name, str) else type(name).__name__
        raise ConfigError(
            f"{where} must name an environment variable (letters, digits, _), got {shape}: "
            "secrets (webhook URLs, passwords) are read from the environment, not from ragline.yaml"
        )


def _check_endpoint_limits(embedding: EmbeddingSettings, where: str) -> None:
    limits = (embedding.max_in_flight, embedding.max_tokens_per_input, embedding.max_tokens_per_request)
    if any(v is not None and v < 1 for v in limits):
        raise ConfigError(
            f"{where}: max_in_flight, max_tokens_per_input and max_tokens_per_request must be whole "
            "numbers of at least 1"
        )


def _check_endpoint(endpoint: EndpointSettings, where: str) -> None:
    """A key goes only where it can be read by its server alone: over https, or to this machine."""
    if endpoint.base_url is None:
        return
    parts = urlsplit(endpoint.base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{where}.base_url must be an http(s) URL with a host, got {endpoint.base_url!r}")
    if (
        parts.username is not None
        or parts.password is not None
        or _SECRET_QUERY_PARAMETER.search(parts.query)
    ):
        raise ConfigError(
            f"{where}.base_url must not carry credentials (user:password@ or ?api-key=): URLs are "
            "logged and stored. Put the key in an environment variable named by api_key_env."
        )
    variable = endpoint.key_variable
    if variable and parts.scheme == "http" and not is_loopback_url(endpoint.base_url):
        raise ConfigError(
            f"{where}: api_key_env {variable} would send that key in clear text over plain http to "
            f"{parts.hostname}. Use an https:// base_url, or a server on localhost, or drop "
            "api_key_env if the server needs no key."
        )


def _validate_chunking(c: ChunkingSettings, where: str) -> None:
    if c.strategy not in CHUNK_STRATEGIES:
        raise ConfigError(f"{where}.strategy must be one of {CHUNK_STRATEGIES}, got {c.strategy!r}")
    if c.chunk_size < 16:
        raise ConfigError(f"{where}.chunk_size must be at least 16 tokens")
    if not 0 <= c.chunk_overlap < c.chunk_size:
        raise ConfigError(f"{where}.chunk_overlap must be in [0, chunk_size)")
    if not 0 <= c.min_tokens < c.chunk_size:
        raise ConfigError(f"{where}.min_tokens must be in [0, chunk_size)")
    if not 0 <= c.max_duplicate_share <= 1:
        raise ConfigError(f"{where}.max_duplicate_share must be in [0, 1]")


def _require_unique(what: str, names: list[str]) -> None:
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ConfigError(f"{what} names must be unique; repeated: {duplicated}")


def _reject_unknown(raw: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown keys {unknown}; allowed: {sorted(allowed)}")


def _build(cls: type, raw: dict[str, Any], where: str):
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a mapping")
    allowed = set(cls.__dataclass_fields__)
    _reject_unknown(raw, allowed, where)
    _check_scalar_types(cls, raw, where)
    try:
        return cls(**raw)
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from exc


def _whole(value: Any) -> bool:
    """An int that is not a bool (YAML's true/false parse as bool, a subclass of int)."""
    return isinstance(value, int) and not isinstance(value, bool)


# What a YAML value of each scalar field type must be, and how an error names it. YAML reads
# `true` as a bool (a subclass of int), `"16"` as text, and `1e-3` or `1.0e5` as text (PyYAML's
# floats need a dot and a signed exponent: 1.0e-3, 1.0e+5).
_DECIMAL = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)")
_EXPONENT = re.compile(_DECIMAL.pattern + r"[eE][-+]?\d+")
_SCALAR_KINDS: dict[type, tuple[str, typing.Callable[[Any], bool]]] = {
    int: ("a whole number", _whole),
    float: ("a number", lambda v: isinstance(v, int | float) and not isinstance(v, bool)),
    bool: ("true or false", lambda v: isinstance(v, bool)),
    str: ("text", lambda v: isinstance(v, str)),
}


@functools.cache
def _scalar_fields(cls: type) -> dict[str, tuple[type, bool]]:
    """The settings class's fields of type int, float, bool or str (or one of them | None): the
    type and whether None is allowed. Fields of other types are checked where they are built."""
    out = {}
    for name, hint in typing.get_type_hints(cls).items():
        union = isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union
        members = typing.get_args(hint) if union else (hint,)
        kinds = [m for m in members if m is not type(None)]
        if name in cls.__dataclass_fields__ and len(kinds) == 1 and kinds[0] in _SCALAR_KINDS:
            out[name] = (kinds[0], len(kinds) < len(members))
    return out


def _check_scalar_types(cls: type, raw: dict[str, Any], where: str) -> None:
    """A value of the wrong type is named when the file loads, not when a run first uses it: an
    `index.hnsw_m: "16"` was a TypeError in the HNSW build's memory estimate, after the whole
    embedding run; `follow_symlinks: "no"` read as true."""
    fields = _scalar_fields(cls)
    for name, value in raw.items():
        if name not in fields or (value is None and fields[name][1]):
            continue
        kind, optional = fields[name]
        wanted, fits = _SCALAR_KINDS[kind]
        if fits(value):
            continue
        must = f"{where}.{_shown(name)} must be {wanted}{' or null' if optional else ''}"
        if value is None:
            raise ConfigError(f"{must}, but it is empty")
        # An *_env key names a variable; what was put there by mistake may be the secret itself.
        got = type(value).__name__ if name.endswith("_env") else _shown(repr(value))
        hint = ""
        if kind in (int, float) and isinstance(value, str) and _EXPONENT.fullmatch(value.strip()):
            hint = " (YAML reads an exponent as a number only with a dot and a sign: write 1.0e-3, not 1e-3)"
        elif kind in (int, float) and isinstance(value, str) and _DECIMAL.fullmatch(value.strip()):
            hint = " (remove the quotes)"
        elif kind is str and not isinstance(value, dict | list):
            hint = f" (YAML read it as {type(value).__name__}: put it in quotes)"
        raise ConfigError(f"{must}, got {got}{hint}")


# pgvector's own bounds for an HNSW index (hnsw.h), checked when the file loads: out of them, the
# CREATE INDEX (or SET hnsw.ef_search) fails only after the embeddings it waits for were computed.
_HNSW_BOUNDS = {"hnsw_m": (2, 100), "hnsw_ef_construction": (4, 1000), "ef_search": (1, 1000)}


def _check_index_bounds(index: IndexSettings) -> None:
    for name, (low, high) in _HNSW_BOUNDS.items():
        value = getattr(index, name)
        if not low <= value <= high:
            raise ConfigError(f"index.{name} must be from {low} to {high} (pgvector's range), got {value}")
    if index.hnsw_ef_construction < 2 * index.hnsw_m:
        raise ConfigError(
            f"index.hnsw_ef_construction must be at least twice index.hnsw_m (pgvector refuses the build), "
            f"got {index.hnsw_ef_construction} with hnsw_m {index.hnsw_m}"
        )
    # With no query to measure, the recall check would pass having tested nothing.
    for name in ("recall_sample", "min_real_queries"):
        if getattr(index, name) < 1:
            raise ConfigError(f"index.{name} must be at least 1, got {getattr(index, name)}")
