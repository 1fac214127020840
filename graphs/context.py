"""Run-time settings of one graph run (``context_schema``): thresholds, budgets, retrieval and generation knobs.

The one place each run-time default is written; ``Context(...)`` raises ``ConfigError`` at
construction for a value no run could use (the PEFT ``LoraConfig`` pattern), so a bad
setting never reaches a node.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from setpoint.errors import ConfigError

__all__ = ["DEFAULT_READER_SETPOINT", "DEFAULT_SETPOINT", "TRIGGERS", "Context"]

#: Smoothed per-token entropy (nats) above which generation is uncertain; ``Settings``
#: (``SETPOINT_SETPOINT``) starts from this value too.
DEFAULT_SETPOINT = 1.6
#: The reader probe's P(wrong) above which a read answer is "unsure" (and earns a second
#: hop while the budget lasts), when ``Context.reader_setpoint`` is left at None. Chosen for
#: the shipped probe on a named dev part of SQuAD v2 (``benchmarks/reader_setpoint.py``: the
#: titles Geology, Immune_system, French_and_Indian_War; the lowest setpoint that marks at
#: most 15 % of its answerable questions unsure), reported on the reader's evaluation
#: titles (BENCHMARKS.md). A probe refitted elsewhere needs its own value.
DEFAULT_READER_SETPOINT = 0.82
#: What the per-token thermostat can watch.
TRIGGERS = ("entropy", "surprisal")
_MAX_READER_SAMPLES = 32


@dataclass(frozen=True)
class Context:
    """Reaches every node as ``runtime.context``; every field is validated on construction.

    The defaults were chosen on 12 general-knowledge and 40 SQuAD questions with the base
    SmolLM2-135M-Instruct (see BENCHMARKS.md): 7 of 12 general questions answer from the
    weights, 38 of 40 SQuAD questions trigger retrieval.

    Raises:
        ConfigError: a value no run could use (NaN threshold, ``ema_alpha`` outside (0, 1],
            negative hysteresis or budget, unknown trigger...); the message names the field.

    Example:
        >>> Context(setpoint=2.0).hysteresis
        0.4
        >>> Context(ema_alpha=0)
        Traceback (most recent call last):
        ...
        setpoint.errors.ConfigError: ema_alpha must be in (0, 1], got 0
    """

    #: Smoothed per-token signal (nats) above which generation is uncertain; inf never retrieves.
    setpoint: float = DEFAULT_SETPOINT
    #: Probe signal (nats, or P(wrong) with ``probe_path``) above which the question goes to
    #: retrieval before any token is generated; inf never does.
    probe_setpoint: float = math.inf
    #: The per-token trigger re-arms only below ``setpoint - hysteresis`` (>= 0).
    hysteresis: float = 0.4
    #: Weight of the newest step in the exponential moving average, in (0, 1].
    ema_alpha: float = 0.5
    #: Steps the smoothed signal must stay above the setpoint to fire (>= 1).
    consecutive_steps: int = 2
    #: First answer tokens the per-step trigger ignores (the first token is the probe's
    #: business, and its entropy is high for any phrasing choice); >= 0.
    warmup_steps: int = 1
    #: Retrieval budget per question (>= 0): the first retrieval and, when the reader is not
    #: sure of its answer (or the closed-book answer echoed the question), one more hop.
    max_retrievals: int = 2
    #: Probe signal above which the question is escalated outright; inf never does.
    escalate_above: float = math.inf
    #: Mean answer entropy above which a retrieved answer is still too unsure to give once
    #: the budget is spent; inf never abstains.
    abstain_above: float = math.inf
    #: Passages per retrieval (>= 1).
    top_k: int = 3
    #: Hybrid search weight: 0 is keyword (BM25) only, 1 is embedding only.
    alpha: float = 0.5
    #: Tokens the generator may produce per pass (>= 1).
    max_new_tokens: int = 32
    #: LoRA adapter of the answer route (a loaded name or a PEFT folder); None: base model
    #: or the registry in ``adapters``.
    adapter: str | None = None
    #: Knowledge adapters (PEFT folders) to pick from per question when ``adapter`` is None;
    #: empty: ``SETPOINT_ADAPTERS``. The probe takes the one whose declared topic or learned
    #: title the question names, else the one with the lowest first-token entropy. A
    #: comma-separated string is accepted.
    adapters: tuple[str, ...] = ()
    #: A policy YAML replacing ``SETPOINT_POLICY_FILE`` / the packaged policy for this run.
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
    #: LoRA adapter of the retrieve route: "auto" (the shipped reader adapter that fits the
    #: generator, one per model family, else the base model), a loaded adapter's name or directory, or None.
    #: ``adapter`` stays the one of the answer route (a knowledge adapter).
    reader_adapter: str | None = "auto"
    #: Constrain answers on the retrieve route to quotes of the passages (exact citations).
    grounded: bool = True
    #: Selective answering: a read answer whose uncertainty is above this is "unsure": a
    #: second hop while the budget lasts, then given with status ``unsure`` (the best guess
    #: and its citations; a chat app says "I'm not certain, but the passage says ...").
    #: The uncertainty is the reader probe's P(wrong) when the reader adapter has one
    #: (``reader_probe``), else the answer's total surprisal in nats
    #: (``quoting.reader_uncertainty``). None: ``DEFAULT_READER_SETPOINT`` for the probe,
    #: inf (never unsure) for the other scales; inf: never unsure.
    reader_setpoint: float | None = None
    #: The second hop's own trigger, on the reader-uncertainty scale: a read answer above it
    #: earns a second hop while the budget lasts (whether it is then "unsure" is still
    #: ``reader_setpoint``'s call). None: the same as ``reader_setpoint``; -inf: always a
    #: second hop (two calls a question, the fixed IRCoT budget, which doubled F1 on
    #: 2WikiMultihopQA and retrieved all supporting passages for 72 % of its questions;
    #: BENCHMARKS.md, "Is the second hop's trigger or its query the limit?").
    hop_setpoint: float | None = None
    #: Echo trap: a closed-book answer of 3+ content words of which at least this share is
    #: already in the question restates it (``hops.echo_overlap``); it goes to retrieval
    #: while the budget lasts, else is given as ``unsure``. In (0, 1]; inf never checks.
    echo_overlap: float = 0.75
    #: Nested questions ("Where was the director of film X born?", ``decompose.py``): the
    #: probe sends them to retrieval (two facts the weights rarely hold: on the 2Wiki train
    #: split closed-book F1 was 0.01 on them) unless both setpoints are inf, and the reader
    #: reads them in two hops, the bridge first. False reads them whole, like any question.
    nested_hops: bool = True
    #: Date comparisons ("Who was born first, X or Y?", "Which film has the director who
    #: died first, X or Y?", ``compare.py``): the dates are read from the options' passages
    #: (or their directors', looked up by a second hop) and compared; the comparison, not
    #: the reader's pick, answers. False leaves every choice to the reader.
    compare_dates: bool = True
    #: A read answer that only repeats words of the question ("Calpurnia" to "What is
    #: Calpurnia's son's name?", ``hops.restates_question``) is read once more, the answer
    #: not allowed to start as it did; the second read answers. Questions that name their
    #: answers ("X or Y?") are left alone. False keeps the first read.
    reread_echo: bool = True
    #: Score reader answers with the probe stored next to the reader adapter (``probe.json``,
    #: ``setpoint calibrate --reader``; the shipped reader has one): P(wrong) from the
    #: reader's hidden states and signals and from how well the passages around the answer
    #: match the question, in [0, 1]. Its file lists the setpoints that keep
    #: 90/80/70/50 % of answers. False (or an adapter without a probe) reads the surprisal.
    reader_probe: bool = True
    #: With > 0 (at most 32), the reader's uncertainty is sampled instead (no probe): this
    #: many answers are drawn (temperature 1, one batch on the kept prompt cache; quotes too
    #: when ``grounded``) and the uncertainty is their disagreement with the answer, ties
    #: broken by its surprisal (``quoting.sampled_uncertainty``, in [0, 1.01));
    #: ``reader_setpoint`` is then on that scale. It flags wrong answers better than
    #: surprisal alone (BENCHMARKS.md, "Reader adapter") for a few extra decode steps.
    reader_samples: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.adapters, str):
            object.__setattr__(self, "adapters", tuple(a for a in self.adapters.split(",") if a))
        elif not isinstance(self.adapters, tuple):
            object.__setattr__(self, "adapters", tuple(self.adapters))
        for name in ("setpoint", "probe_setpoint", "escalate_above", "abstain_above"):
            if math.isnan(getattr(self, name)):
                raise ConfigError(f"{name} cannot be NaN; use inf to disable it")
        if self.reader_setpoint is not None and math.isnan(self.reader_setpoint):
            raise ConfigError("reader_setpoint cannot be NaN; use inf to never be unsure")
        if self.hop_setpoint is not None and math.isnan(self.hop_setpoint):
            raise ConfigError("hop_setpoint cannot be NaN; use inf for no second hop on doubt")
        if not self.echo_overlap > 0:
            raise ConfigError(
                f"echo_overlap must be in (0, 1] (inf: never check), got {self.echo_overlap}"
            )
        if not self.hysteresis >= 0:
            raise ConfigError(f"hysteresis must be >= 0, got {self.hysteresis}")
        if not 0 < self.ema_alpha <= 1:
            raise ConfigError(f"ema_alpha must be in (0, 1], got {self.ema_alpha}")
        _at_least(self, "consecutive_steps", 1)
        _at_least(self, "warmup_steps", 0)
        _at_least(self, "max_retrievals", 0)
        _at_least(self, "top_k", 1)
        _at_least(self, "max_new_tokens", 1)
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(
                f"alpha must be between 0 (BM25 only) and 1 (vectors only), got {self.alpha}"
            )
        if self.trigger not in TRIGGERS:
            raise ConfigError(f"trigger must be 'entropy' or 'surprisal', got {self.trigger!r}")
        if not 0 <= self.reader_samples <= _MAX_READER_SAMPLES:
            raise ConfigError(
                f"reader_samples must be between 0 and {_MAX_READER_SAMPLES}, got "
                f"{self.reader_samples}; 0 reads the greedy answer's surprisal"
            )


def _at_least(ctx: Context, name: str, low: int) -> None:
    value = getattr(ctx, name)
    if value < low:
        raise ConfigError(f"{name} must be >= {low}, got {value}")
