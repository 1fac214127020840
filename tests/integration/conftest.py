"""Integration fixtures: the real embedder, a fresh embedded Weaviate, the SQuAD passages."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from langchain_core.embeddings import Embeddings

from setpoint.adapters.model.embedder import Embedder
from setpoint.adapters.weaviate.corpus import PassageRecord, read_jsonl
from setpoint.adapters.weaviate.store import WeaviateStore
from setpoint.settings import Settings


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    """The packaged all-MiniLM-L6-v2, loaded once for the whole session."""
    model = Embedder.from_settings(Settings.from_env())
    model.dimension  # noqa: B018 -- load now so the first test does not pay for it
    return model


@pytest.fixture(scope="session")
def weaviate_store(
    tmp_path_factory: pytest.TempPathFactory, embedder: Embedder
) -> Iterator[WeaviateStore]:
    """A store on a freshly started weaviate-server with an empty data dir."""
    settings = Settings.from_env().replace(
        weaviate_data_override=tmp_path_factory.mktemp("weaviate-data"),
        collection="TestPassages",
        # Always the embedded server, even when the environment points at another one.
        weaviate_url=None,
        weaviate_api_key=None,
    )
    if not settings.weaviate_binary.is_file():
        pytest.fail(
            f"weaviate-server binary not found at {settings.weaviate_binary}; run `setpoint setup`"
        )
    store = WeaviateStore.from_settings(settings, embedder)
    store.connect()
    yield store
    store.close()


@pytest.fixture(scope="session")
def squad_dir() -> Path:
    """SETPOINT_SQUAD_DIR, or shared/data/squad beside the repository (../shared)."""
    explicit = os.environ.get("SETPOINT_SQUAD_DIR")
    squad = (
        Path(explicit).expanduser()
        if explicit
        else Path(__file__).resolve().parents[3] / "shared" / "data" / "squad"
    )
    if not (squad / "questions.jsonl").is_file():
        pytest.fail(f"SQuAD data not found at {squad}; set SETPOINT_SQUAD_DIR")
    return squad


@pytest.fixture(scope="session")
def squad_passages(squad_dir: Path) -> list[PassageRecord]:
    """The first 50 SQuAD passages."""
    path = squad_dir / "passages.jsonl"
    if not path.is_file():
        pytest.fail(f"SQuAD passages not found at {path}; set SETPOINT_SQUAD_DIR")
    records, bad = read_jsonl(path)
    assert not bad, f"unexpected bad lines in {path}: {bad[:3]}"
    first: list[PassageRecord] = records[:50]
    return first


class HashEmbeddings(Embeddings):
    """A distinct 32-dim vector per text from its SHA-256: vectors without a model's CPU cost.

    For tests of Weaviate's own behaviour (replication, full disks), where the vectors'
    meaning does not matter; the real embedder is used wherever search quality does.
    """

    def _vector(self, text: str) -> list[float]:
        digest = hashlib.sha256(text.encode("utf-8")).digest()
        return [b / 255.0 - 0.5 for b in digest]

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self._vector(t) for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self._vector(text)


@pytest.fixture(scope="session")
def hash_embedder() -> Embeddings:
    """Cheap deterministic embeddings (see ``HashEmbeddings``)."""
    return HashEmbeddings()
