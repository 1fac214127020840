"""Training and extending closed-book knowledge adapters on explicit question/answer pairs, old pairs replayed."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from setpoint.adapters.lora.config import TuningConfig
from setpoint.adapters.lora.examples import pair_groups
from setpoint.adapters.lora.qa_data import QARecord
from setpoint.adapters.lora.record import base_model_card, earlier_stage, training_record
from setpoint.adapters.lora.training import TrainingReport, save_adapter, train_lora
from setpoint.errors import ConfigError

if TYPE_CHECKING:
    from setpoint.adapters.model.generator import Generator

__all__ = ["KnowledgeResult", "replay_mix", "train_knowledge", "update_config"]


def update_config(config: TuningConfig, adapter_dir: Path) -> TuningConfig:
    """``config`` continuing the adapter in ``adapter_dir``: its rank, alpha and target modules, qa task."""
    from dataclasses import replace

    from peft import LoraConfig

    directory = Path(adapter_dir).expanduser()
    if not (directory / "adapter_config.json").is_file():
        raise ConfigError(f"no adapter to update at {directory} (adapter_config.json missing)")
    saved = LoraConfig.from_pretrained(str(directory))
    return replace(
        config,
        task="qa",
        rank=int(saved.r),
        alpha=int(saved.lora_alpha),
        target_modules=tuple(sorted(saved.target_modules or ())),
        init_adapter=str(directory),
    )


def replay_mix(
    new: Sequence[QARecord], previous: dict[str, Any], fraction: float, *, seed: int = 0
) -> tuple[list[QARecord], list[QARecord]]:
    """``(new pairs not learned before, replayed old pairs)`` for an update of an adapter.

    The old pairs come from the previous record's ``learned`` section, so an update needs
    no access to the data the adapter was first trained on.
    """
    from setpoint.adapters.lora.knowledge import learned_questions, replay_sample

    old = learned_questions(previous.get("learned") or {})
    known = {q.id for q in old}
    fresh = [q for q in new if q.id not in known]
    return fresh, replay_sample(old, fraction, exclude={q.id for q in fresh}, seed=seed)


def _history(previous: dict[str, Any], stage: dict[str, Any]) -> list[dict[str, Any]]:
    earlier = list(previous.get("history") or [])
    if previous and not earlier:
        # A record from before histories were kept: its own run is the first stage.
        training = previous.get("training") or {}
        earlier = [
            {
                "kind": "tune",
                "created": previous.get("created"),
                "command": previous.get("command"),
                "new_questions": (previous.get("data") or {}).get("training_questions"),
                "steps": training.get("steps"),
            }
        ]
    return [*earlier, stage]


@dataclass
class KnowledgeResult:
    """What ``train_knowledge`` saved and trained on."""

    directory: Path
    report: TrainingReport
    new_questions: list[QARecord]
    replayed_questions: list[QARecord]
    record: dict[str, Any]


def train_knowledge(
    generator: Generator,
    questions: Sequence[QARecord],
    passages: dict[str, Any],
    config: TuningConfig,
    out_dir: Path,
    *,
    update: Path | None = None,
    replay_fraction: float = 0.5,
    topics: Sequence[str] = (),
    kind: str = "tune",
    indexed: bool = False,
    command: str = "",
    extra: dict[str, Any] | None = None,
    progress: bool = True,
    max_seconds: float | None = None,
) -> KnowledgeResult:
    """Train (or, with ``update``, extend) a closed-book knowledge adapter on explicit pairs.

    The record's ``learned`` section lists every pair and source passage (with its content
    hash and time), merged over updates, and ``history`` one entry per stage. With
    ``update``, the adapter there is continued on the new pairs plus a ``replay_fraction``
    sample of the pairs it learned before (seeded by ``config.seed``), so old knowledge is
    rehearsed rather than overwritten. ``indexed``: the pairs' passages were read from the
    index (distillation). ``generator`` must carry no loaded adapter; it is left bare again
    afterwards.

    Example:
        >>> result = train_knowledge(gen, pairs, passages, TuningConfig(task="qa"), Path("kb"))  # doctest: +SKIP
        >>> result.record["learned"]["titles"]  # doctest: +SKIP
        ['Super_Bowl_50']
    """
    from setpoint.adapters.lora.knowledge import learned_section

    started = time.time()
    previous: dict[str, Any] = {}
    replayed: list[QARecord] = []
    new = [q for q in questions if q.target]
    # Read before training: ``out_dir`` may be the adapter being updated.
    continued = earlier_stage(update) if update is not None else None
    if update is not None:
        previous = training_record(update)
        config = update_config(config, update)
        new, replayed = replay_mix(new, previous, replay_fraction, seed=config.seed)
    if not new:
        raise ConfigError("no new question/answer pairs to train on (all were learned before)")
    groups = pair_groups([*new, *replayed], config)
    model, report = train_lora(
        generator, groups, config, progress=progress, max_seconds=max_seconds
    )
    trained_ids = {q.id for i in dict.fromkeys(report.trained_groups) for q in groups[i].items}
    learned_new = [q for q in new if q.id in trained_ids]
    stage = {
        "kind": kind,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "command": command,
        "new_questions": len(learned_new),
        "replayed_questions": len([q for q in replayed if q.id in trained_ids]),
        "replay_fraction": replay_fraction if update is not None else None,
        "steps": report.steps,
        "seconds": round(report.seconds, 1),
    }
    record: dict[str, Any] = {
        "task": "qa",
        "command": command,
        "created": stage["created"],
        "base_model": base_model_card(generator),
        "training": report.to_dict(),
        "learned": learned_section(
            learned_new,
            passages,
            topics=topics,
            at=started,
            previous=previous.get("learned"),
            indexed=indexed,
        ),
        "history": _history(previous, stage),
        "continued_from": continued,
        **(extra or {}),
    }
    directory = save_adapter(model, out_dir, config=config, record=record)
    generator.model = model.unload()
    return KnowledgeResult(directory, report, learned_new, replayed, record)
