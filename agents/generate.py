"""Node ``generate``: decode the answer token by token under the thermostat.

Closed-book (no passages yet) or with the retrieved passages. When the smoothed entropy
stays above the setpoint for N steps and the retrieval budget allows, decoding stops and the
graph goes back to retrieval with the question plus the partial answer as the query.
"""

from __future__ import annotations

import math
from typing import Any

from langgraph.config import get_stream_writer
from langgraph.runtime import Runtime

from setpoint.agents.probe import select_adapter
from setpoint.agents.resources import Resources, RunContext
from setpoint.agents.thermostat import Thermostat
from setpoint.tracing import ATTR, node_span, set_attributes

__all__ = ["make_generate"]


def _stream_writer() -> Any:
    try:
        return get_stream_writer()
    except RuntimeError:  # called outside a graph run (unit tests of the node alone)
        return lambda _chunk: None


def _reader_options(ctx: Any) -> tuple[str | None, bool, float]:
    """Reader adapter, grounded decoding and reader setpoint of a run.

    ``graphs.context.Context`` has all three; a leaner ``RunContext`` gets the plain reader
    (base model, free decoding, never abstains).
    """
    return (
        getattr(ctx, "reader_adapter", None),
        bool(getattr(ctx, "grounded", False)),
        float(getattr(ctx, "reader_setpoint", math.inf)),
    )


def make_generate(res: Resources) -> Any:
    def generate(state: dict[str, Any], runtime: Runtime[RunContext]) -> dict[str, Any]:
        from setpoint.adapters.model.generator import Passage

        ctx = runtime.context
        thresholds = ctx.thresholds()
        question = state["question"]
        passages = [
            Passage(p["id"], p.get("title", ""), p["text"]) for p in state.get("passages") or []
        ]
        retrievals = int(state.get("retrieval_calls", 0))
        phase = "reader" if passages else "closed_book"
        write = _stream_writer()
        reader_adapter, grounded, reader_setpoint = _reader_options(ctx)
        with node_span(res.tracer, "generate", **{"setpoint.phase": phase}) as node:
            generator = res.generator()
            if passages:
                from setpoint.adapters.lora.reader import resolve_reader
                from setpoint.adapters.model.quoting import SpanConstraint

                # The retrieve route reads with the reader adapter; the answer route keeps
                # the knowledge adapter. PEFT switches them on the one loaded base model.
                adapter = select_adapter(
                    res, resolve_reader(generator.model.config, reader_adapter)
                )
                constraint = SpanConstraint.for_generator(generator, passages) if grounded else None
            else:
                # With a registry, the probe picked this question's knowledge adapter.
                folders: tuple[str, ...] = getattr(ctx, "adapters", None) or ()
                registry = ctx.adapter is None and bool(folders or res.settings.adapters)
                adapter = select_adapter(res, state.get("adapter") if registry else ctx.adapter)
                constraint = None
            prompt = generator.prompt_ids(question, passages)
            thermostat = Thermostat(thresholds, retrievals_used=retrievals)
            trace: list[dict[str, Any]] = list(state.get("signal_trace") or [])
            pieces: list[str] = []
            entropies: list[float] = []
            tokens: list[Any] = []
            fired_at: int | None = None
            finish = "length"
            with res.tracer.start_as_current_span(f"chat {generator.name}") as chat:
                set_attributes(
                    chat,
                    {
                        ATTR.OPERATION: "chat",
                        ATTR.PROVIDER: "transformers",
                        ATTR.REQUEST_MODEL: generator.name,
                        ATTR.REQUEST_MAX_TOKENS: ctx.max_new_tokens,
                        ATTR.REQUEST_TEMPERATURE: 0.0,
                        ATTR.INPUT_TOKENS: len(prompt),
                        ATTR.ADAPTER: adapter,
                    },
                )
                samples = int(getattr(ctx, "reader_samples", 0)) if passages else 0
                # The reader adapter's own probe scores the answer (unless sampling is asked
                # for); it reads hidden states of the decoding passes, kept as they run.
                probe = (
                    res.reader_probe(adapter)
                    if passages and samples == 0 and getattr(ctx, "reader_probe", False)
                    else None
                )
                token_stream = generator.stream(
                    prompt,
                    max_new_tokens=ctx.max_new_tokens,
                    logits_processor=constraint,
                    keep_prompt=samples > 0,
                    capture_layers=probe.layers if probe is not None else (),
                )
                for token in token_stream:
                    tokens.append(token)
                    watched = (
                        token.signals.surprisal
                        if ctx.trigger == "surprisal"
                        else token.signals.entropy
                    )
                    event = thermostat.update(watched)
                    record = {
                        "phase": phase,
                        "step": token.index,
                        "token": token.text,
                        "entropy": round(token.signals.entropy, 4),
                        "ema": round(event.ema, 4),
                        "margin": round(token.signals.margin, 4),
                        "top_prob": round(token.signals.top_prob, 6),
                        "lens": {
                            str(k): round(v, 4) for k, v in token.signals.lens_entropy.items()
                        },
                        "fired": event.fired,
                    }
                    trace.append(record)
                    write({"type": "token", **record})
                    if token.token_id in generator.stop_ids:
                        finish = "stop"
                        break
                    pieces.append(token.text)
                    entropies.append(token.signals.entropy)
                    if event.fired:
                        fired_at = token.index
                        finish = "thermostat"
                        write(
                            {
                                "type": "thermostat",
                                "step": token.index,
                                "ema": event.ema,
                                "setpoint": thresholds.setpoint,
                            }
                        )
                        break
                # Closed now, not whenever it is collected: with keep_prompt, closing puts
                # the prompt's KV cache back for the samples below.
                token_stream.close()
                text = "".join(pieces).strip()
                set_attributes(
                    chat,
                    {
                        ATTR.OUTPUT_TOKENS: len(pieces),
                        ATTR.FINISH_REASONS: [finish],
                        ATTR.THERMOSTAT_FIRED_AT: fired_at,
                        # Numbers only (no text): what `setpoint trace` draws.
                        ATTR.TOKEN_ENTROPY: [
                            r["entropy"] for r in trace[len(state.get("signal_trace") or []) :]
                        ],
                        ATTR.TOKEN_EMA: [
                            r["ema"] for r in trace[len(state.get("signal_trace") or []) :]
                        ],
                        ATTR.SETPOINT: thresholds.setpoint,
                        ATTR.HYSTERESIS: thresholds.hysteresis,
                        ATTR.TRIGGER: ctx.trigger,
                    },
                )
                if res.settings.trace_content:
                    set_attributes(
                        chat,
                        {
                            ATTR.INPUT_MESSAGES: generator.messages(question, passages),
                            ATTR.OUTPUT_MESSAGES: [{"role": "assistant", "content": text}],
                        },
                    )
            mean_entropy = sum(entropies) / len(entropies) if entropies else 0.0
            update: dict[str, Any] = {
                "signal_trace": trace,
                "adapter": adapter,
                "answer_entropy": mean_entropy,
                "pending_retrieval": fired_at is not None,
            }
            uncertainty = math.nan
            if passages and fired_at is None:
                from setpoint.adapters.model.quoting import (
                    answer_disagreement,
                    locate_quote,
                    reader_uncertainty,
                    sample_answers,
                    sampled_uncertainty,
                )

                disagreement = None
                if probe is not None:
                    uncertainty = probe.score(
                        tokens, question=question, passages=passages, answer=text
                    )
                    signal = "probe"
                elif samples > 0:
                    drawn = sample_answers(
                        generator,
                        prompt,
                        passages,
                        samples,
                        grounded=grounded,
                        max_new_tokens=ctx.max_new_tokens,
                    )
                    disagreement = answer_disagreement(text, drawn)
                    uncertainty = sampled_uncertainty(disagreement, reader_uncertainty(tokens))
                    signal = "sampled"
                else:
                    uncertainty, signal = reader_uncertainty(tokens), "surprisal"
                quote = locate_quote(text, passages)
                set_attributes(
                    node,
                    {
                        "setpoint.grounded": constraint is not None,
                        "setpoint.reader_signal": signal,
                        "setpoint.reader_samples": samples,
                        "setpoint.reader_disagreement": disagreement,
                        "setpoint.reader_uncertainty": uncertainty,
                        "setpoint.reader_setpoint": reader_setpoint,
                        "setpoint.quote_passage_id": quote.passage_id if quote else None,
                    },
                )
            if fired_at is not None:
                update.update(
                    route="retrieve",
                    reason=(
                        f"entropy EMA {thermostat.ema:.2f} above setpoint {thresholds.setpoint:g} "
                        f"for {thresholds.consecutive_steps} steps at token {fired_at}"
                    ),
                    partial_answer=text,
                    query=f"{question} {text}".strip(),
                )
            else:
                update.update(
                    answer=text,
                    route="retrieve" if passages else "answer",
                    uncertain_after_budget=thermostat.fired_after_budget,
                )
                if passages and uncertainty > reader_setpoint:
                    # Selective answering: check_output passes the route on to escalate.
                    update.update(
                        route="escalate",
                        reason=(
                            f"uncertain_after_retrieval:reader uncertainty {uncertainty:.2f} "
                            f"> reader setpoint {reader_setpoint:g}"
                        ),
                    )
                elif not passages:
                    update["reason"] = (
                        f"entropy EMA stayed under setpoint {thresholds.setpoint:g} "
                        f"(mean {mean_entropy:.2f} over {len(entropies)} tokens)"
                    )
            set_attributes(
                node,
                {
                    ATTR.ROUTE: update["route"],
                    ATTR.REASON: update.get("reason", state.get("reason")),
                    ATTR.ENTROPY: thermostat.ema if thermostat.ema is not None else mean_entropy,
                    ATTR.SETPOINT: thresholds.setpoint,
                    ATTR.RETRIEVAL_CALLS: retrievals,
                    ATTR.ADAPTER: adapter,
                },
            )
            return update

    return generate
