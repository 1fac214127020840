"""The hyper-parameters of one LoRA tuning run, validated on construction and saved in the adapter's record."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from setpoint.errors import ConfigError

__all__ = ["Task", "TuningConfig"]

Task = Literal["read", "qa"]


@dataclass(frozen=True)
class TuningConfig:
    """Hyper-parameters of one LoRA tuning run; saved in the adapter's training record.

    Attributes:
        task: ``read`` (answer from passages, RAFT distractors) or ``qa`` (closed book).
        rank, alpha, dropout, target_modules: the LoRA adapter (PEFT's names).
        learning_rate, epochs, warmup_steps, weight_decay, max_grad_norm: AdamW schedule
            (linear warm-up, then linear decay to zero).
        max_examples: use at most this many training questions (None: all of them).
        skip_examples: skip this many questions of the (seeded) training order first, so a
            continued run (``init_adapter``) sees new questions.
        init_adapter: continue training this saved adapter instead of a fresh LoRA (its
            rank and target modules must match).
        max_steps: stop after this many optimizer steps (None: all epochs).
        group_size: at most this many questions sharing one context per step.
        distractors: retrieved passages added next to the gold one (RAFT).
        gold_only_fraction: share of contexts that hold the gold passage alone.
        max_context_tokens: contexts longer than this drop distractors, then the group.
        multihop_examples: multi-hop training questions added to the reader's data (their
            supporting passages and ``multihop_distractors`` of their own distractor
            paragraphs, shuffled); None: all of the ``multihop`` folders' questions.
        multihop_distractors: distractor paragraphs per multi-hop context.
        unanswerable_examples: SQuAD v2 unanswerable questions added (target ``NO_ANSWER``);
            None: all of the set-aside titles' ones.
        seed: seeds the data order, distractor placement, LoRA init and dropout.
        save_dtype: dtype of the saved adapter weights.

    Example:
        >>> TuningConfig(rank=8).alpha
        32
        >>> TuningConfig(rank=0)
        Traceback (most recent call last):
        ...
        setpoint.errors.ConfigError: rank must be a positive integer, got 0
    """

    task: Task = "read"
    rank: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    learning_rate: float = 5e-4
    epochs: int = 1
    warmup_steps: int = 10
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    max_examples: int | None = None
    skip_examples: int = 0
    init_adapter: str | None = None
    max_steps: int | None = None
    group_size: int = 8
    distractors: int = 2
    gold_only_fraction: float = 0.3
    max_context_tokens: int = 1024
    multihop_examples: int | None = None
    multihop_distractors: int = 3
    unanswerable_examples: int | None = None
    seed: int = 0
    save_dtype: Literal["float16", "bfloat16", "float32"] = "float16"

    def __post_init__(self) -> None:
        if self.task not in ("read", "qa"):
            raise ConfigError(f"task must be 'read' or 'qa', got {self.task!r}")
        if not isinstance(self.rank, int) or self.rank < 1:
            raise ConfigError(f"rank must be a positive integer, got {self.rank}")
        if not isinstance(self.alpha, int) or self.alpha < 1:
            raise ConfigError(f"alpha must be a positive integer, got {self.alpha}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        if not self.target_modules or not all(
            isinstance(m, str) and m for m in self.target_modules
        ):
            raise ConfigError("target_modules must name at least one module, e.g. q_proj,v_proj")
        if not 0 < self.learning_rate < 1:
            raise ConfigError(f"learning_rate must be in (0, 1), got {self.learning_rate}")
        for name in ("epochs", "group_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("warmup_steps", "distractors", "skip_examples", "multihop_distractors"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("max_examples", "max_steps", "multihop_examples", "unanswerable_examples"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be at least 1 (or None for no limit), got {value}")
        if not 0 <= self.gold_only_fraction <= 1:
            raise ConfigError(
                f"gold_only_fraction must be in [0, 1], got {self.gold_only_fraction}"
            )
        if self.max_context_tokens < 16:
            raise ConfigError(
                f"max_context_tokens must be at least 16, got {self.max_context_tokens}"
            )
        if self.weight_decay < 0 or self.max_grad_norm <= 0:
            raise ConfigError("weight_decay must be >= 0 and max_grad_norm > 0")
        if self.save_dtype not in ("float16", "bfloat16", "float32"):
            raise ConfigError(
                f"save_dtype must be float16, bfloat16 or float32, got {self.save_dtype!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["target_modules"] = list(self.target_modules)
        return data
