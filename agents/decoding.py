"""One decoding pass of the generator under the thermostat, and the reader's re-read.

``generate`` runs a pass per visit: closed book or reading passages. What a pass produced
and measured is a :class:`Pass`; its tokens stream to the caller as they come.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from langgraph.config import get_stream_writer

from setpoint.adapters.lora.reader import is_no_answer
from setpoint.agents.thermostat import Thermostat

if TYPE_CHECKING:
    from collections.abc import Callable

    from setpoint.adapters.domain.reader_probe import ReaderProbe
    from setpoint.adapters.model.generator import GeneratedToken, Generator
    from setpoint.adapters.model.quoting import SpanConstraint
    from setpoint.graphs.context import Context

__all__ = ["Pass", "decode", "reread", "stream_writer"]


def stream_writer() -> Any:
    try:
        return get_stream_writer()
    except RuntimeError:  # called outside a graph run (unit tests of the node alone)
        return lambda _chunk: None


@dataclass
class Pass:
    """What one decoding pass produced and measured."""

    phase: str
    trace: list[dict[str, Any]]
    pieces: list[str] = field(default_factory=list)
    entropies: list[float] = field(default_factory=list)
    tokens: list[GeneratedToken] = field(default_factory=list)
    fired_at: int | None = None
    finish: str = "length"

    @property
    def text(self) -> str:
        return "".join(self.pieces).strip()

    @property
    def mean_entropy(self) -> float:
        return sum(self.entropies) / len(self.entropies) if self.entropies else 0.0


def decode(
    generator: Generator,
    prompt: list[int],
    ctx: Context,
    thermostat: Thermostat,
    out: Pass,
    *,
    constraint: Any,
    keep_prompt: bool,
    probe: ReaderProbe | None,
) -> None:
    """Stream tokens into ``out`` until a stop token, the length limit or the thermostat fires."""
    write = stream_writer()
    token_stream = generator.stream(
        prompt,
        max_new_tokens=ctx.max_new_tokens,
        logits_processor=constraint,
        keep_prompt=keep_prompt,
        capture_layers=probe.layers if probe is not None else (),
    )
    for token in token_stream:
        out.tokens.append(token)
        signals = token.signals
        event = thermostat.update(
            signals.surprisal if ctx.trigger == "surprisal" else signals.entropy
        )
        record = {
            "phase": out.phase,
            "step": token.index,
            "token": token.text,
            "entropy": round(signals.entropy, 4),
            "ema": round(event.ema, 4),
            "margin": round(signals.margin, 4),
            "top_prob": round(signals.top_prob, 6),
            "lens": {str(k): round(v, 4) for k, v in signals.lens_entropy.items()},
            "fired": event.fired,
        }
        out.trace.append(record)
        write({"type": "token", **record})
        if token.token_id in generator.stop_ids:
            out.finish = "stop"
            break
        out.pieces.append(token.text)
        out.entropies.append(signals.entropy)
        if event.fired:
            out.fired_at, out.finish = token.index, "thermostat"
            write(
                {
                    "type": "thermostat",
                    "step": token.index,
                    "ema": event.ema,
                    "setpoint": ctx.setpoint,
                }
            )
            break
    # Closed now, not whenever it is collected: with keep_prompt, closing puts the
    # prompt's KV cache back for the samples drawn after it.
    token_stream.close()


def reread(
    generator: Generator,
    prompt: list[int],
    ctx: Context,
    first: Pass,
    constrain: Callable[..., SpanConstraint],
    probe: ReaderProbe | None,
) -> Pass:
    """Read again, the answer not allowed to start as ``first`` did; ``first`` if that fails.

    For a read answer that only repeats the question's words (``hops.restates_question``).
    Greedy decoding cannot back out of a start it took, so ``constrain(first.text)`` bars
    every quote that begins with the first answer and the reader picks its next-best one.
    The second pass streams as phase ``reread`` (a chat app shows it replacing the first)
    and keeps the first pass's tokens in the trace.
    """
    again = Pass("reread", trace=list(first.trace))
    barred = constrain(first.text)
    # A reader pass never fires: the thermostat is given a spent budget, as for the first.
    decode(
        generator,
        prompt,
        ctx,
        Thermostat(ctx, retrievals_used=ctx.max_retrievals),
        again,
        constraint=barred,
        keep_prompt=ctx.reader_samples > 0,
        probe=probe,
    )
    return again if again.text and not is_no_answer(again.text) else first
