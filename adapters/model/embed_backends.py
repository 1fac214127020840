"""Embedding without torch at run time: the embedder exported once to ONNX, run by onnxruntime or OpenVINO."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import tempfile
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from setpoint.adapters.domain.json_file import hash_file
from setpoint.errors import ModelError
from setpoint.settings import EMBED_BACKENDS

__all__ = [
    "EMBED_BACKENDS",
    "OnnxEncoder",
    "export_onnx",
    "folder_key",
    "gpu_driver_present",
    "resolve_backend",
]

# Bumped when the exported graph changes, so old cached exports are not reused.
_EXPORT_FORMAT = "1"
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_export_lock = threading.Lock()


def resolve_backend(backend: str, *, native_bfloat16: bool, device: str | None) -> str:
    """The backend ``auto`` stands for on this machine; any other name is returned as is.

    Measured (``benchmarks/ingest_speed.py``, results/ingest_speed.json, 2 cores):
    OpenVINO (bfloat16 on AMX, vectors at cosine 0.99999 to float32) embedded fastest,
    so ``auto`` takes it on a CPU when it is installed. Without it: torch in bfloat16 on
    CPUs with native bfloat16; elsewhere torch runs float32, which int8 onnxruntime
    beat with R@10 held, so ``onnx-int8`` when onnxruntime is installed. A GPU
    (``device``, or CUDA seen by torch when ``device`` is None) is torch's.

    Example:
        >>> resolve_backend("auto", native_bfloat16=True, device="cuda")
        'torch'
        >>> resolve_backend("onnx", native_bfloat16=True, device=None)
        'onnx'
    """
    if backend != "auto":
        return backend
    if device is not None and device != "cpu":
        return "torch"
    if device is None and gpu_driver_present() and importlib.util.find_spec("torch") is not None:
        import torch

        if torch.cuda.is_available():
            return "torch"
    if importlib.util.find_spec("openvino") is not None:
        return "openvino"
    if native_bfloat16:
        return "torch"
    return "onnx-int8" if importlib.util.find_spec("onnxruntime") is not None else "torch"


def gpu_driver_present() -> bool:
    """Whether a CUDA or ROCm driver is installed, without importing torch (2.4 s here).

    Only then can ``torch.cuda.is_available()`` be true, so a CPU-only machine resolves
    ``auto`` without paying for torch's import in every ingest and query process.
    """
    import ctypes.util

    if any(Path(p).exists() for p in ("/proc/driver/nvidia/version", "/dev/kfd")):
        return True
    return ctypes.util.find_library("cuda") is not None


def folder_key(model_dir: Path, memo_dir: Path | None = None) -> str:
    """A digest of every file in ``model_dir`` (names and bytes): a tuned folder gets its own.

    With ``memo_dir`` the digest is remembered there under the folder's path and its
    files' names, sizes and modification times (the test ``make`` uses), so a process that
    loads an unchanged embedder does not read its ~90 MB again; rewriting any file changes
    its size or time and so its memo.

    Example:
        >>> import tempfile
        >>> d = Path(tempfile.mkdtemp()); _ = (d / "w.bin").write_bytes(b"1")
        >>> a = folder_key(d); _ = (d / "w.bin").write_bytes(b"2")
        >>> a == folder_key(d)
        False
    """
    files = sorted(p for p in Path(model_dir).rglob("*") if p.is_file())
    memo: Path | None = None
    if memo_dir is not None:
        stamp = hashlib.sha256(f"{_EXPORT_FORMAT}\0{Path(model_dir).resolve()}".encode())
        for path in files:
            stat = path.stat()
            stamp.update(
                f"\0{path.relative_to(model_dir)}\0{stat.st_size}\0{stat.st_mtime_ns}".encode()
            )
        memo = Path(memo_dir) / f"{stamp.hexdigest()[:24]}.key"
        if memo.is_file():
            return memo.read_text(encoding="utf-8").strip()
    digest = hashlib.sha256(_EXPORT_FORMAT.encode())
    for path in files:
        digest.update(str(path.relative_to(model_dir)).encode("utf-8") + b"\0")
        hash_file(digest, path)
    key = digest.hexdigest()[:20]
    if memo is not None:
        memo.parent.mkdir(parents=True, exist_ok=True)
        tmp = memo.with_name(f".{memo.name}.{os.getpid()}.{threading.get_ident()}")
        tmp.write_text(key, encoding="utf-8")
        tmp.replace(memo)
    return key


def export_onnx(model_dir: Path, cache_dir: Path, *, int8: bool) -> Path:
    """The embedder as an ONNX file under ``cache_dir``, exported (and quantised) on first use.

    The graph maps token ids to the model's own sentence embedding (its pooling and
    normalisation inside). ``int8`` adds onnxruntime's dynamic quantisation (int8
    weights per channel, activations quantised per batch). Each file is written to a
    temporary name and renamed, so a crash or a concurrent process never leaves half a
    file under the final name.
    """
    root = Path(cache_dir) / "embedders-onnx"
    folder = root / f"{Path(model_dir).name}-{folder_key(model_dir, root / 'keys')}"
    fp32 = folder / "model.onnx"
    target = folder / "model-int8.onnx" if int8 else fp32
    with _export_lock:
        if target.is_file():
            return target
        folder.mkdir(parents=True, exist_ok=True)
        if not fp32.is_file():
            _atomic(fp32, lambda tmp: _export_fp32(model_dir, tmp))
        if int8 and not target.is_file():
            _atomic(target, lambda tmp: _quantize(fp32, tmp))
    return target


def _atomic(target: Path, write: Any) -> None:
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.stem}-", suffix=".onnx")
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        tmp.chmod(0o644)  # mkstemp makes it private; the cache is the user's, readable like it
        os.replace(tmp, target)
    except Exception as exc:
        tmp.unlink(missing_ok=True)
        raise ModelError(f"cannot export the embedder to {target}: {exc}") from exc


def _export_fp32(model_dir: Path, out: Path) -> None:
    import torch
    from sentence_transformers import SentenceTransformer

    # Eager attention traces to plain ONNX ops; the fused kernels do not export.
    model = SentenceTransformer(
        str(model_dir), device="cpu", model_kwargs={"attn_implementation": "eager"}
    ).eval()

    class _Graph(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = self.model(dict(zip(_INPUTS, tensors, strict=True)))[
                "sentence_embedding"
            ]
            return out

    sample = model.tokenizer(
        ["a short one", "and a longer text"], padding=True, return_tensors="pt"
    )
    if "token_type_ids" not in sample:
        raise ModelError(f"{model_dir}: the ONNX export handles BERT-style tokenizers only")
    axes = {name: {0: "batch", 1: "tokens"} for name in _INPUTS}
    # The tracer warns that two shape tests become constants; both hold for every input
    # here (the mask always spans the tokens, so no extra padding), so the graph is exact.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _Graph(),
            tuple(sample[name] for name in _INPUTS),
            str(out),
            input_names=list(_INPUTS),
            output_names=["embedding"],
            dynamic_axes={**axes, "embedding": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )


def _quantize(fp32: Path, out: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # Per channel: per-tensor int8 weights left MiniLM's vectors at cosine 0.95 to
    # float32 (min 0.92), per channel at 0.994 (min 0.99).
    quantize_dynamic(str(fp32), str(out), weight_type=QuantType.QInt8, per_channel=True)


class OnnxEncoder:
    """Unit vectors from an exported embedder, run by onnxruntime or OpenVINO on the CPU.

    Args:
        model_dir: The sentence-transformers folder (its tokenizer and max length).
        onnx_file: Its export (:func:`export_onnx`).
        runtime: ``"onnxruntime"`` or ``"openvino"``.
        threads: Compute threads (None: every core).
    """

    def __init__(
        self, model_dir: Path, onnx_file: Path, *, runtime: str, threads: int | None = None
    ) -> None:
        from transformers import AutoTokenizer

        self.onnx_file = onnx_file
        self.runtime = runtime
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        self.max_length = _max_seq_length(model_dir, self.tokenizer)
        self.pad_id = int(self.tokenizer.pad_token_id or 0)
        threads = threads or os.cpu_count() or 1
        self._run = (
            _openvino_runner(onnx_file, threads)
            if runtime == "openvino"
            else _onnxruntime_runner(onnx_file, threads)
        )

    def encode(self, texts: Sequence[str], batch_size: int) -> Any:
        """One L2-normalised float32 row per text (numpy), in the order given."""
        import numpy as np

        ids: list[list[int]] = self.tokenizer(
            list(texts), truncation=True, max_length=self.max_length
        )["input_ids"]
        # Shortest first: each batch pads to its longest text, so neighbours should match.
        order = sorted(range(len(texts)), key=lambda i: len(ids[i]))
        out: Any = None
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            vectors = self._run(_padded([ids[i] for i in rows], self.pad_id))
            if out is None:
                out = np.empty((len(texts), vectors.shape[1]), dtype=np.float32)
            out[rows] = vectors
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-12)


#: Batches are padded to a multiple of this many tokens. The runtimes prepare kernels
#: per input shape, and MiniLM's 256 tokens then give 8 lengths instead of 256. Measured
#: alone on SQuAD's 2,315 chunks (OpenVINO, 2 cores) it was within a few per cent of
#: padding to the longest text; with one tokenization per call it is part of the 1.4x
#: whole-command gain in BENCHMARKS.md ("Ingest speed, the whole command").
PAD_MULTIPLE = 32


def _padded(rows: Sequence[Sequence[int]], pad_id: int) -> dict[str, Any]:
    """The model's three inputs for token-id rows, right-padded to a multiple of 32.

    Tokenized once per call and padded here, rather than tokenizing each batch again.

    Example:
        >>> feed = _padded([[101, 7, 102], [101, 102]], pad_id=0)
        >>> feed["input_ids"].shape, feed["attention_mask"][1].sum()
        ((2, 32), np.int64(2))
    """
    import numpy as np

    width = -(-max(len(r) for r in rows) // PAD_MULTIPLE) * PAD_MULTIPLE
    input_ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for n, row in enumerate(rows):
        input_ids[n, : len(row)] = row
        mask[n, : len(row)] = 1
    return {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": np.zeros_like(mask)}


def _max_seq_length(model_dir: Path, tokenizer: Any) -> int:
    config = Path(model_dir) / "sentence_bert_config.json"
    if config.is_file():
        value = json.loads(config.read_text(encoding="utf-8")).get("max_seq_length")
        if value:
            return int(value)
    return int(min(tokenizer.model_max_length, 512))


def _onnxruntime_runner(onnx_file: Path, threads: int) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # Spinning workers steal a shared CPU from the Weaviate server (see embedder.py's
    # OMP_WAIT_POLICY note); passive threads measured as fast when alone.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(onnx_file), options, providers=["CPUExecutionProvider"])
    return lambda feed: session.run(None, feed)[0]


def _openvino_runner(onnx_file: Path, threads: int) -> Any:
    import openvino as ov

    # OpenVINO's CPU plugin picks bfloat16 itself where the CPU has it (AMX), else float32.
    compiled = ov.Core().compile_model(
        str(onnx_file), "CPU", {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads}
    )
    # A compiled model's default infer request serves one call at a time ("Infer Request is
    # busy" when concurrent runs embed their queries at once). Per-thread requests hung in
    # a test of four threads, so calls take turns; a query is a few milliseconds.
    lock = threading.Lock()

    def run(feed: dict[str, Any]) -> Any:
        with lock:
            return compiled(feed)[0]

    return run
