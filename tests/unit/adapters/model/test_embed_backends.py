"""The ONNX embedding backends: same vectors as torch, exported once per embedder folder, bad names refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from setpoint.adapters.model.embed_backends import folder_key
from setpoint.adapters.model.embedder import Embedder
from setpoint.errors import ConfigError, ModelError
from setpoint.settings import Settings

pytest.importorskip("onnxruntime")

TEXTS = [
    "Super_Bowl_50\nSuper Bowl 50 was an American football game to determine the champion.",
    "Which NFL team represented the AFC at Super Bowl 50?",
    "Oxygen is a chemical element with symbol O and atomic number 8. " * 6,
    "short",
]


@pytest.fixture(scope="module")
def model_dir() -> Path:
    from setpoint.adapters.model.provisioning import embedder_dir
    from setpoint.errors import ProvisioningError

    try:
        return embedder_dir(Settings.from_env())
    except ProvisioningError as exc:
        pytest.skip(f"no packaged embedder: {exc}")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.fixture(scope="module")
def reference(model_dir: Path) -> np.ndarray:
    return np.array(
        Embedder(model_dir, backend="torch", precision="float32").embed_documents(TEXTS)
    )


@pytest.mark.parametrize(
    ("backend", "floor"), [("onnx", 0.9999), ("onnx-int8", 0.98), ("openvino", 0.999)]
)
def test_onnx_vectors_match_torch(
    model_dir: Path, cache_dir: Path, reference: np.ndarray, backend: str, floor: float
) -> None:
    if backend == "openvino":
        pytest.importorskip("openvino")
    vectors = np.array(
        Embedder(model_dir, backend=backend, cache_dir=cache_dir).embed_documents(TEXTS)
    )
    cosine = (vectors * reference).sum(axis=1)
    assert vectors.shape == reference.shape
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    assert cosine.min() >= floor
    assert cosine.mean() >= 0.99


@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_concurrent_queries_share_one_embedder(
    model_dir: Path, cache_dir: Path, reference: np.ndarray, backend: str
) -> None:
    """Concurrent graph runs embed their queries at once through the store's one embedder."""
    if backend == "openvino":
        pytest.importorskip("openvino")
    from concurrent.futures import ThreadPoolExecutor

    embedder = Embedder(model_dir, backend=backend, cache_dir=cache_dir)
    with ThreadPoolExecutor(max_workers=4) as pool:
        rows = list(pool.map(embedder.embed_query, TEXTS * 4))
    for i, row in enumerate(rows):
        assert float(np.dot(row, reference[i % len(TEXTS)])) >= 0.999


def test_the_export_is_made_once_and_reused(model_dir: Path, cache_dir: Path) -> None:
    Embedder(model_dir, backend="onnx-int8", cache_dir=cache_dir).embed_query("first")
    exports = sorted((cache_dir / "embedders-onnx").rglob("*.onnx"))
    stamps = [p.stat().st_mtime_ns for p in exports]
    again = Embedder(model_dir, backend="onnx-int8", cache_dir=cache_dir)
    assert len(again.embed_query("second")) == 384
    assert sorted((cache_dir / "embedders-onnx").rglob("*.onnx")) == exports
    assert [p.stat().st_mtime_ns for p in exports] == stamps
    # Keyed on the folder's content (a tuned copy gets its own); no temp file left behind.
    assert {p.parent.name for p in exports} == {f"{model_dir.name}-{folder_key(model_dir)}"}
    assert {p.name for p in exports} == {"model.onnx", "model-int8.onnx"}


def test_the_folder_key_is_remembered_until_a_file_changes(tmp_path: Path) -> None:
    folder, memo = tmp_path / "embedder", tmp_path / "keys"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"weights-1")
    (folder / "config.json").write_text("{}")
    first = folder_key(folder, memo)
    assert first == folder_key(folder) and len(list(memo.glob("*.key"))) == 1
    assert folder_key(folder, memo) == first  # answered from the memo
    (folder / "model.safetensors").write_bytes(b"weights-22")  # a retrained folder
    second = folder_key(folder, memo)
    assert second != first and second == folder_key(folder)
    assert len(list(memo.glob("*.key"))) == 2


def test_a_bad_backend_is_one_clear_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SETPOINT_EMBED_BACKEND", "onnx-int4")
    with pytest.raises(ConfigError) as caught:
        Settings.from_env()
    assert str(caught.value) == (
        "SETPOINT_EMBED_BACKEND='onnx-int4' is not one of auto, torch, onnx, onnx-int8, openvino"
    )
    with pytest.raises(ModelError, match="backend 'fast' is not one of"):
        Embedder(tmp_path, backend="fast")


def test_auto_is_resolved_and_an_explicit_backend_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SETPOINT_EMBED_BACKEND", "ONNX")
    settings = Settings.from_env()
    assert Embedder.from_settings(settings).backend == "onnx"
    assert Embedder(Path("unused"), backend="auto").backend in {"torch", "onnx-int8", "openvino"}


@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_a_text_gets_the_same_vector_alone_and_padded_in_a_batch(
    model_dir: Path, cache_dir: Path, backend: str
) -> None:
    """Batches are tokenized once and padded to a multiple of 32; padding must not leak in."""
    if backend == "openvino":
        pytest.importorskip("openvino")
    embedder = Embedder(model_dir, backend=backend, cache_dir=cache_dir, batch_size=3)
    assert repr(embedder).endswith("not loaded)")
    embedder.load()  # what an ingest does while the server starts
    assert repr(embedder).endswith(" loaded)") and not repr(embedder).endswith("not loaded)")
    together = np.array(embedder.embed_documents(TEXTS + [TEXTS[0]] * 3))
    for i, text in enumerate(TEXTS):
        alone = np.array(embedder.embed_query(text))
        assert float(np.dot(alone, together[i])) >= 0.9999
    assert np.allclose(together[len(TEXTS) :], together[0], atol=1e-5)


def test_auto_on_a_machine_without_a_gpu_driver_does_not_import_torch() -> None:
    import subprocess
    import sys

    from setpoint.adapters.model.embed_backends import gpu_driver_present

    if gpu_driver_present():
        pytest.skip("a GPU driver is installed here: auto asks torch")
    code = (
        "import sys\n"
        "from setpoint.adapters.model.embed_backends import resolve_backend\n"
        "chosen = resolve_backend('auto', native_bfloat16=True, device=None)\n"
        "print(chosen, 'torch' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    backend, imported = out.stdout.split()
    assert backend in {"openvino", "torch", "onnx-int8"}
    assert imported == "False"
