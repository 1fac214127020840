"""The training record saved next to an adapter: its file names, reading it, and the base-model card it holds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from setpoint.adapters.model.generator import Generator

__all__ = [
    "BASE_MODEL_KEYS",
    "RECORD_FILE",
    "SPLIT_FILE",
    "base_model_card",
    "earlier_stage",
    "questions_trained_on",
    "training_record",
]

RECORD_FILE = "training_record.json"
SPLIT_FILE = "split.json"
#: What an adapter needs its base model to match (``reader.adapter_fits`` compares them).
BASE_MODEL_KEYS = ("model_type", "hidden_size", "num_hidden_layers", "vocab_size")


def training_record(directory: Path) -> dict[str, Any]:
    """The adapter's training record, or ``{}`` when it has none (e.g. trained elsewhere).

    Example:
        >>> training_record(Path("/nonexistent"))
        {}
    """
    try:
        record = json.loads((Path(directory).expanduser() / RECORD_FILE).read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def questions_trained_on(record: dict[str, Any]) -> int:
    """How many training questions an adapter's stages consumed, in the seeded training order.

    The last stage skipped the earlier stages' share (``skip_examples``) and then trained on
    its own ``training_questions``; ``reader_probe.unseen_training_questions`` starts after them.

    Example:
        >>> questions_trained_on({"config": {"skip_examples": 4800}, "data": {"training_questions": 480}})
        5280
    """
    return int(record.get("config", {}).get("skip_examples") or 0) + int(
        record.get("data", {}).get("training_questions") or 0
    )


def base_model_card(generator: Generator) -> dict[str, Any]:
    """What an adapter needs of its base model, saved in its record: name and ``BASE_MODEL_KEYS``."""
    config = generator.model.config
    return {
        "name": generator.name,
        "model_type": getattr(config, "model_type", None),
        "hidden_size": int(config.hidden_size),
        "num_hidden_layers": int(config.num_hidden_layers),
        "vocab_size": int(config.vocab_size),
    }


def earlier_stage(directory: Path) -> dict[str, Any] | None:
    """What a continued adapter went through before (its record, per-step losses left out)."""
    record = training_record(directory)
    if not record:
        return None
    training = {k: v for k, v in record.get("training", {}).items() if k != "losses"}
    return {
        "command": record.get("command"),
        "created": record.get("created"),
        "config": record.get("config"),
        "training": training,
        "evaluation": record.get("evaluation"),
        "continued_from": record.get("continued_from"),
    }
