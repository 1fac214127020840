"""Run-time settings of one graph run (``context_schema``): setpoints, budgets, retrieval and generation knobs."""

from __future__ import annotations

import math
from dataclasses import dataclass

from setpoint.agents.thermostat import Thresholds
from setpoint.errors import ConfigError

__all__ = ["Context"]


@dataclass(frozen=True)
class Context:
    """Reaches every node as ``runtime.context``.

    The defaults were chosen on 12 general-knowledge and 40 SQuAD questions with the base
    SmolLM2-135M-Instruct (see BENCHMARKS.md): 7 of 12 general questions answer from the
    weights, 38 of 40 SQuAD questions trigger retrieval.

    Example:
        >>> graph.invoke({"question": "Who wrote Hamlet?"}, context=Context(setpoint=math.inf))  # doctest: +SKIP
    """

    setpoint: float = 1.6
    probe_setpoint: float = math.inf
    hysteresis: float = 0.4
    ema_alpha: float = 0.5
    consecutive_steps: int = 2
    warmup_steps: int = 1
    max_retrievals: int = 1
    escalate_above: float = math.inf
    abstain_above: float = math.inf
    top_k: int = 3
    alpha: float = 0.5
    max_new_tokens: int = 32
    adapter: str | None = None
    #: Knowledge adapters (PEFT folders) to pick from per question when ``adapter`` is None;
    #: empty: ``SETPOINT_ADAPTERS``. The probe takes the one whose declared topic or learned
    #: title the question names, else the one with the lowest first-token entropy.
    adapters: tuple[str, ...] = ()
    policy_file: str | None = None
    #: What the per-token thermostat watches: "entropy" (nats) or "surprisal" (-ln p of the
    #: greedy token; with ema_alpha=1, consecutive_steps=1 and setpoint=-ln θ this is FLARE's
    #: "retrieve when a token's probability falls below θ").
    trigger: str = "entropy"
    #: A probe JSON from `setpoint calibrate`; when set, the probe node routes on its
    #: P(closed-book wrong) against ``probe_setpoint`` instead of the first-token entropy.
    probe_path: str | None = None
    #: Pause escalated runs with ``interrupt()`` for a human reviewer instead of abstaining
    #: (needs a checkpointer; ``Setpoint`` opens SQLite by default, see SETPOINT_REVIEW).
    review: bool = False
    #: Escalate when the thermostat wanted another retrieval after the budget was spent
    #: (reason ``uncertain_after_budget``). Off by default: with the base SmolLM2 the reader
    #: pass trips the thermostat on most answers, right or wrong (BENCHMARKS.md, "Policy").
    escalate_after_budget: bool = False
    #: LoRA adapter of the retrieve route: "auto" (the shipped reader adapter when it fits
    #: the generator, else the base model), a loaded adapter's name or directory, or None.
    #: ``adapter`` stays the one of the answer route (a knowledge adapter).
    reader_adapter: str | None = "auto"
    #: Constrain answers on the retrieve route to quotes of the passages (exact citations).
    grounded: bool = True
    #: Selective answering: when the reader's uncertainty is above this, the question is
    #: escalated instead of answered; inf never abstains. The uncertainty is the reader
    #: probe's P(wrong) when the reader adapter has one (``reader_probe``), else the answer's
    #: total surprisal in nats (``grounding.reader_uncertainty``).
    reader_setpoint: float = math.inf
    #: Score reader answers with the probe stored next to the reader adapter (``probe.json``,
    #: ``setpoint calibrate --reader``; the shipped reader has one): P(wrong) from the
    #: reader's hidden states and signals and from how well the passages around the answer
    #: match the question, in [0, 1]. Its file lists the setpoints that keep
    #: 90/80/70/50 % of answers. False (or an adapter without a probe) reads the surprisal.
    reader_probe: bool = True
    #: With > 0, the reader's uncertainty is sampled instead (no probe): this many answers are drawn
    #: (temperature 1, one batch on the kept prompt cache; quotes too when ``grounded``) and
    #: the uncertainty is their disagreement with the answer, ties broken by its surprisal
    #: (``grounding.sampled_uncertainty``, in [0, 1.01)); ``reader_setpoint`` is then on that
    #: scale. It flags wrong answers better than surprisal alone (BENCHMARKS.md, "Reader
    #: adapter") for a few extra decode steps.
    reader_samples: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.adapters, str):
            object.__setattr__(self, "adapters", tuple(a for a in self.adapters.split(",") if a))
        elif not isinstance(self.adapters, tuple):
            object.__setattr__(self, "adapters", tuple(self.adapters))
        if self.trigger not in {"entropy", "surprisal"}:
            raise ConfigError(f"trigger must be 'entropy' or 'surprisal', got {self.trigger!r}")
        if math.isnan(self.reader_setpoint):
            raise ConfigError("reader_setpoint cannot be NaN; use inf to never abstain")
        if not 0 <= self.reader_samples <= 32:
            raise ConfigError(
                f"reader_samples must be between 0 and 32, got {self.reader_samples}; "
                "0 reads the greedy answer's surprisal"
            )

    def thresholds(self) -> Thresholds:
        """The thermostat's view of this context (validated there)."""
        return Thresholds(
            probe_setpoint=self.probe_setpoint,
            setpoint=self.setpoint,
            hysteresis=self.hysteresis,
            ema_alpha=self.ema_alpha,
            consecutive_steps=self.consecutive_steps,
            warmup_steps=self.warmup_steps,
            max_retrievals=self.max_retrievals,
            escalate_above=self.escalate_above,
            abstain_above=self.abstain_above,
        )
