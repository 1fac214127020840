"""Opening an embedder folder (one clear line when it is not one) and scoring it: R@k and MRR@10 of gold passages."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from setpoint.errors import ConfigError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

    from setpoint.adapters.lora.qa_data import QARecord

__all__ = [
    "RECALL_AT",
    "load_sentence_transformer",
    "passage_text",
    "rank_scores",
    "retrieval_scores",
]

#: The cut-offs every retrieval score in this project reports.
RECALL_AT = (1, 5, 10)


def load_sentence_transformer(directory: Path, *, device: str | None = None) -> SentenceTransformer:
    """The sentence-transformers model saved in ``directory`` (never downloads).

    Raises:
        ConfigError: ``directory`` is missing, holds no sentence-transformers model, or
            its files do not load; one line that names the folder.
    """
    path = Path(directory).expanduser()
    if not (path / "modules.json").is_file() and not (path / "config.json").is_file():
        raise ConfigError(
            f"{path} is not a sentence-transformers embedder folder (no modules.json or "
            "config.json); give the folder `setpoint tune --task embed` wrote"
        )
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    try:
        return SentenceTransformer(str(path), device=device, local_files_only=True)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ConfigError(
            f"the embedder folder {path} does not load ({type(exc).__name__}: {first}); "
            "write it again with `setpoint tune --task embed`"
        ) from None


def passage_text(passage: Any) -> str:
    """What the store embeds for a passage: title, newline, text (as ingestion does)."""
    from setpoint.adapters.weaviate.ingestion import embedding_text

    return embedding_text(str(passage.title), str(passage.text))


def rank_scores(ranks: Sequence[int | None]) -> dict[str, float]:
    """R@1/5/10 and MRR@10 from the 1-based rank of each gold passage (None: not found).

    Example:
        >>> rank_scores([1, 3, None, 12])
        {'R@1': 0.25, 'R@5': 0.5, 'R@10': 0.5, 'MRR@10': 0.3333}
    """
    n = max(len(ranks), 1)
    scores = {
        f"R@{k}": round(sum(r is not None and r <= k for r in ranks) / n, 4) for k in RECALL_AT
    }
    mrr = sum(1.0 / r for r in ranks if r is not None and r <= 10) / n
    return {**scores, "MRR@10": round(mrr, 4)}


def retrieval_scores(
    model: SentenceTransformer, questions: Sequence[QARecord], passages: Sequence[Any]
) -> dict[str, float]:
    """Vector-only retrieval of each question's gold passage among ``passages`` (cosine, exact)."""
    import numpy as np

    def encode(texts: list[str]) -> Any:
        return model.encode(texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)

    ids = [p.id for p in passages]
    vectors = encode([passage_text(p) for p in passages])
    scores = encode([q.question for q in questions]) @ vectors.T
    order = np.argsort(-scores, axis=1)[:, :10]
    ranks: list[int | None] = []
    for q, row in zip(questions, order, strict=True):
        top = [ids[int(i)] for i in row]
        ranks.append(top.index(q.passage_id) + 1 if q.passage_id in top else None)
    scored = rank_scores(ranks)
    return {**scored, "questions": len(questions)}
