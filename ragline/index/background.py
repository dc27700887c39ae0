"""An embedder loaded on a thread of its own, so that a short-lived process (`ragline search`)
loads the model while it connects to the database and runs the lexical side of a search."""

from __future__ import annotations

import atexit
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, wait
from typing import TYPE_CHECKING

from ragline.types import Embedder, ModelTokenizer

if TYPE_CHECKING:
    import numpy as np


LOAD_WAIT_AT_EXIT_SECONDS = 60.0
_loading: set[Future] = set()  # builds still running (a finished one holds no reference here)


@atexit.register
def _finish_loads() -> None:
    """A process that ends (say, on a clear error) while a model is still loading lets the load end
    first: interpreter shutdown under a running ONNX Runtime session build aborted the process once
    ("terminate called without an active exception", exit 134 instead of 2)."""
    wait(list(_loading), timeout=LOAD_WAIT_AT_EXIT_SECONDS)


class BackgroundEmbedder:
    """The embedder `build` returns, built on a daemon thread started at once. Every use waits for
    the build to finish and re-raises its error, if any. ONNX Runtime releases the GIL while it
    loads a graph, so the caller's own work goes on in the meantime."""

    def __init__(self, build: Callable[[], Embedder]) -> None:
        self._built: Future[Embedder] = Future()
        _loading.add(self._built)
        self._built.add_done_callback(_loading.discard)
        threading.Thread(target=self._build, args=(build,), name="ragline-embedder-load", daemon=True).start()

    def _build(self, build: Callable[[], Embedder]) -> None:
        try:
            self._built.set_result(build())
        except BaseException as exc:  # re-raised in the thread that uses the embedder
            self._built.set_exception(exc)

    @property
    def loaded(self) -> Embedder:
        return self._built.result()

    @property
    def model_id(self) -> str:  # type: ignore[override]
        return self.loaded.model_id

    @property
    def max_tokens(self) -> int:  # type: ignore[override]
        return self.loaded.max_tokens

    @property
    def tokenizer(self) -> ModelTokenizer:  # type: ignore[override]
        return self.loaded.tokenizer

    @property
    def dim(self) -> int:
        return self.loaded.dim

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self.loaded.embed(texts)
