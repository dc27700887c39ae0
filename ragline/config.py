"""ragline settings: one YAML file declares the database, the embedder, the index and the sources."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

CONFIG_ENV = "RAGLINE_CONFIG"
DEFAULT_CONFIG_NAME = "ragline.yaml"
CHUNK_STRATEGIES = ("sentence", "token", "markdown")
EMBEDDING_PROVIDERS = ("local", "openai")
_SOURCE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


class ConfigError(ValueError):
    """The configuration file is missing, malformed, or names something that does not exist."""


@dataclass(frozen=True)
class ChunkingSettings:
    strategy: str = "sentence"
    chunk_size: int = 200  # in the embedding model's own tokens
    chunk_overlap: int = 20
    min_tokens: int = 8  # smaller pieces are merged into a neighbour

    def fingerprint(self) -> str:
        return f"{self.strategy}:{self.chunk_size}:{self.chunk_overlap}:{self.min_tokens}"


@dataclass(frozen=True)
class JsonlSettings:
    id_field: str = "id"
    text_fields: tuple[str, ...] = ("text",)
    metadata_fields: tuple[str, ...] = ()


@dataclass(frozen=True)
class SourceSettings:
    name: str
    root: Path
    glob: str = "**/*"
    chunking: ChunkingSettings = field(default_factory=ChunkingSettings)
    jsonl: JsonlSettings = field(default_factory=JsonlSettings)
    max_file_bytes: int = 10_000_000


@dataclass(frozen=True)
class EmbeddingSettings:
    provider: str = "local"
    model: str = "all-MiniLM-L6-v2"
    batch_size: int = 64  # texts per request to an OpenAI-compatible endpoint
    # Texts per ONNX call for the local model. Measured on 2 cores, 1,500 chunks of ~140 tokens:
    # 8 gave 34 texts/s at 0.44 GB peak RSS, 64 gave 23 texts/s at 2.3 GB (more padding, more arena).
    model_batch_size: int = 8
    # OpenAI-compatible provider only
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    dimensions: int | None = None
    max_retries: int = 5
    timeout_seconds: float = 60.0


@dataclass(frozen=True)
class IndexSettings:
    hnsw_m: int = 16
    hnsw_ef_construction: int = 64
    ef_search: int = 40
    recall_sample: int = 200
    min_recall: float = 0.95
    # An embeddings load that adds more than this share of a model's rows drops the HNSW
    # index first, so that the bulk COPY does not update it row by row; search_index rebuilds it.
    rebuild_fraction: float = 0.2


@dataclass(frozen=True)
class Settings:
    path: Path
    data_dir: Path
    embedding: EmbeddingSettings
    index: IndexSettings
    sources: tuple[SourceSettings, ...]

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
    _reject_unknown(raw, {"data_dir", "embedding", "index", "sources", "defaults"}, str(file))
    defaults = raw.get("defaults") or {}
    _reject_unknown(defaults, {"max_file_bytes", "chunking"}, "defaults")
    embedding = _build(EmbeddingSettings, raw.get("embedding") or {}, "embedding")
    if embedding.provider not in EMBEDDING_PROVIDERS:
        raise ConfigError(
            f"embedding.provider must be one of {EMBEDDING_PROVIDERS}, got {embedding.provider!r}"
        )
    if embedding.batch_size < 1 or embedding.model_batch_size < 1:
        raise ConfigError("embedding.batch_size and embedding.model_batch_size must be at least 1")
    index = _build(IndexSettings, raw.get("index") or {}, "index")
    if not 0 < index.min_recall <= 1:
        raise ConfigError("index.min_recall must be in (0, 1]")

    raw_sources = raw.get("sources")
    if not raw_sources or not isinstance(raw_sources, list):
        raise ConfigError(f"{file}: 'sources' must be a non-empty list")
    sources = []
    for i, item in enumerate(raw_sources):
        where = f"sources[{i}]"
        if not isinstance(item, dict):
            raise ConfigError(f"{where} must be a mapping")
        _reject_unknown(item, {"name", "root", "glob", "chunking", "jsonl", "max_file_bytes"}, where)
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
        jsonl_raw = dict(item.get("jsonl") or {})
        for key in ("text_fields", "metadata_fields"):
            if key in jsonl_raw:
                jsonl_raw[key] = tuple(jsonl_raw[key])
        sources.append(
            SourceSettings(
                name=name,
                root=(base / str(item["root"])).resolve(),
                glob=str(item.get("glob", "**/*")),
                chunking=chunking,
                jsonl=_build(JsonlSettings, jsonl_raw, f"{where}.jsonl"),
                max_file_bytes=int(item.get("max_file_bytes", defaults.get("max_file_bytes", 10_000_000))),
            )
        )
    names = [s.name for s in sources]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ConfigError(f"source names must be unique; repeated: {duplicated}")
    data_dir = (base / str(raw.get("data_dir", ".ragline"))).resolve()
    return Settings(file, data_dir, embedding, index, tuple(sources))


def _validate_chunking(c: ChunkingSettings, where: str) -> None:
    if c.strategy not in CHUNK_STRATEGIES:
        raise ConfigError(f"{where}.strategy must be one of {CHUNK_STRATEGIES}, got {c.strategy!r}")
    if c.chunk_size < 16:
        raise ConfigError(f"{where}.chunk_size must be at least 16 tokens")
    if not 0 <= c.chunk_overlap < c.chunk_size:
        raise ConfigError(f"{where}.chunk_overlap must be in [0, chunk_size)")
    if not 0 <= c.min_tokens < c.chunk_size:
        raise ConfigError(f"{where}.min_tokens must be in [0, chunk_size)")


def _reject_unknown(raw: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown keys {unknown}; allowed: {sorted(allowed)}")


def _build(cls: type, raw: dict[str, Any], where: str):
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a mapping")
    allowed = set(cls.__dataclass_fields__)
    _reject_unknown(raw, allowed, where)
    try:
        return cls(**raw)
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from exc
