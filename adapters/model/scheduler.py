"""The generation scheduler: concurrent callers' rows decoded together, joining and leaving the batch at step boundaries.

One worker thread owns the model while rows are in flight. Each iteration it drops rows
whose consumer went away, prefills waiting prompts (at most ``prefill_chunk`` tokens while
other rows are decoding, so a 500-token reader prompt never stalls them for a whole pass),
then runs one decode step for every decoding row with a left-padded batched KV cache
(``batch_cache.BatchCache``) and one LoRA adapter per row (PEFT's mixed-adapter batches).
A decode step on CPU is bound by reading the weights, so sixteen rows cost little more
than one. Each row gets exactly the numbers a lone decode gives it: its token, the signals
of its distribution, the logprob and any hidden states it asked for.
"""

from __future__ import annotations

import collections
import queue
import sys
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from setpoint.adapters.domain.signals import StepSignals
from setpoint.adapters.model.batch_cache import BatchCache
from setpoint.adapters.model.forward import run_pass, step_signals
from setpoint.errors import BusyError

if TYPE_CHECKING:
    import torch

__all__ = ["BatchLimits", "GenerationScheduler", "ModelHost", "Row", "RowRequest", "RowStep"]

#: ``processor(generated_ids, logits[1, vocab]) -> scores[1, vocab]`` (e.g. ``SpanConstraint``).
Processor = Callable[[Sequence[int], "torch.Tensor"], "torch.Tensor"]
PrefixKey = tuple[str | None, tuple[int, ...]]


@dataclass(frozen=True)
class BatchLimits:
    """How many rows decode together and how many may wait (``SETPOINT_MAX_BATCH``, ``SETPOINT_MAX_QUEUE``)."""

    max_batch: int = 16
    max_queue: int = 64
    #: Prompt tokens prefilled per step while other rows decode.
    prefill_chunk: int = 128
    #: Prompts (with their first-token logits) kept for a probe/stream/sample of the same prompt.
    prefix_cache_size: int = 8


@dataclass(frozen=True)
class RowRequest:
    """One caller's decode (``max_new_tokens == 0``: prefill only, as ``probe`` needs)."""

    prompt: tuple[int, ...]
    adapter: str | None
    max_new_tokens: int
    temperature: float = 0.0
    seed: int = 0
    logits_processor: Processor | None = None
    keep_prompt: bool = False
    capture_layers: tuple[int, ...] = ()

    @property
    def key(self) -> PrefixKey:
        return (self.adapter, self.prompt)


@dataclass(frozen=True)
class RowStep:
    """One decoded token as the worker hands it to its caller (``token_id`` -1: a probe's prefill)."""

    index: int
    token_id: int
    signals: StepSignals
    logprob: float
    hidden: dict[int, torch.Tensor] | None


class Row:
    """A request in flight: the worker's decoding state and the caller's mailbox."""

    def __init__(self, request: RowRequest) -> None:
        self.request = request
        self.outbox: queue.SimpleQueue[RowStep | BaseException | None] = queue.SimpleQueue()
        self.cancelled = False
        self.counted = False  # holds one of the scheduler's ``max_batch`` places
        self.generated: list[int] = []
        self.index = 0
        self.prefilled = 0
        self.cache: Any = None
        self.kept: tuple[Any, torch.Tensor] | None = None
        self.next_input = 0
        self.rng: torch.Generator | None = None
        self.started = time.monotonic()

    def next(self) -> RowStep | None:
        """The next token (None: the row ended); raises what failed the row."""
        item = self.outbox.get()
        if isinstance(item, BaseException):
            raise item
        return item

    def choose(self, final: torch.Tensor) -> int:
        """The token chosen from ``final`` ([1, vocab]): constrained, then greedy or sampled."""
        import torch

        request = self.request
        scores = final[0]
        if request.logits_processor is not None:
            scores = request.logits_processor(self.generated, final)[0]
        if request.temperature <= 0:
            return int(torch.argmax(scores))
        if self.rng is None:
            self.rng = torch.Generator().manual_seed(request.seed)
        probs = torch.softmax(scores.float() / request.temperature, dim=-1)
        return int(torch.multinomial(probs.cpu(), 1, generator=self.rng))


class ModelHost(Protocol):
    """What the scheduler reads off its generator."""

    @property
    def lens_layers(self) -> tuple[int, ...]: ...

    @property
    def stop_ids(self) -> frozenset[int]: ...

    @property
    def causal_lm(self) -> Any: ...

    def adapter_scope(self, adapters: Sequence[str | None]) -> AbstractContextManager[None]: ...


class GenerationScheduler:
    """Batches every caller's rows at step boundaries; owned by one ``Generator``.

    ``lock`` is the generator's model lock: the worker holds it for one step at a time, so
    loading an adapter waits for a step boundary, never for a whole answer.
    """

    def __init__(self, host: ModelHost, limits: BatchLimits, lock: threading.RLock) -> None:
        self.host = host
        self.limits = limits
        self._lock = lock
        self._cond = threading.Condition()
        self._waiting: collections.deque[Row] = collections.deque()
        self._prefilling: list[Row] = []
        self._decoding: list[Row] = []
        self._batch = BatchCache()
        self._prefixes: collections.OrderedDict[PrefixKey, tuple[Any, torch.Tensor]] = (
            collections.OrderedDict()
        )
        self._worker: threading.Thread | None = None
        self._admitted = 0  # rows taken from the queue and not finished (held: _cond)
        self._live: set[Row] = set()  # the worker's rows, whatever step they are in
        self._row_seconds = 1.0
        self._stats = {"decode_steps": 0, "row_steps": 0, "max_rows": 0, "rows": 0, "busy": 0}

    # ------------------------------------------------------------------ callers' side
    def submit(self, requests: Sequence[RowRequest]) -> list[Row]:
        """Queue rows (all or none); raises ``BusyError`` when batch and queue are full."""
        rows = [Row(r) for r in requests]
        with self._cond:
            load = len(self._waiting) + self._admitted
            if load + len(rows) > self.limits.max_batch + self.limits.max_queue:
                self._stats["busy"] += 1
                raise BusyError(
                    f"generator busy: {load} rows decoding or queued (SETPOINT_MAX_BATCH="
                    f"{self.limits.max_batch}, SETPOINT_MAX_QUEUE={self.limits.max_queue}); "
                    f"retry after {max(1, round(self._row_seconds))} s",
                    retry_after_s=max(1.0, self._row_seconds),
                )
            self._waiting.extend(rows)
            if self._worker is None:
                self._worker = threading.Thread(
                    target=self._run, name="setpoint-scheduler", daemon=True
                )
                self._worker.start()
            self._cond.notify()
        return rows

    def cancel(self, row: Row) -> None:
        """The caller stopped reading: the row leaves the batch at the next step boundary."""
        with self._cond:
            row.cancelled = True
            if row in self._waiting:
                self._waiting.remove(row)
            self._release(row)  # its place is free now; the worker drops it at the next step

    def forget_prefixes(self) -> None:
        """Drop kept prompts (an adapter was loaded: its name may now mean other weights)."""
        with self._lock:
            self._prefixes.clear()

    def stats(self) -> dict[str, float]:
        """Decode steps so far, mean and max rows per step (batch occupancy), rows served."""
        s: dict[str, float] = dict(self._stats)
        s["mean_rows"] = s["row_steps"] / s["decode_steps"] if s["decode_steps"] else 0.0
        return s

    # ------------------------------------------------------------------ worker
    def _run(self) -> None:
        import torch

        while True:
            with self._cond:
                while self._waiting and self._admitted < self.limits.max_batch:
                    row = self._waiting.popleft()
                    row.counted = True
                    self._prefilling.append(row)
                    self._live.add(row)
                    self._admitted += 1
                if not (self._prefilling or self._decoding):
                    self._worker = None
                    return
            try:
                with self._lock, torch.inference_mode():
                    self._reap()
                    if self._prefilling:
                        self._prefill_step()
                    if self._decoding:
                        self._decode_step()
            except Exception as exc:  # a failed pass fails the rows it carried, not the server
                for row in list(self._live):
                    row.outbox.put(exc)
                    self._finish(row)
                self._prefilling, self._decoding, self._batch = [], [], BatchCache()

    def _reap(self) -> None:
        gone = {i for i, row in enumerate(self._decoding) if row.cancelled}
        if gone:
            self._leave(gone)
        for row in [row for row in self._prefilling if row.cancelled]:
            self._prefilling.remove(row)
            self._finish(row)

    def _prefill_step(self) -> None:
        import torch
        from transformers import DynamicCache

        host = self.host
        budget = self.limits.prefill_chunk if self._decoding else sys.maxsize
        for row in list(self._prefilling):
            if budget <= 0:
                break
            if row not in self._prefilling or (row.prefilled == 0 and self._reuse(row)):
                continue
            prompt = row.request.prompt
            take = min(budget, len(prompt) - row.prefilled)
            last = row.prefilled + take == len(prompt)
            ids = torch.tensor([prompt[row.prefilled : row.prefilled + take]], device=self._device)
            row.cache = row.cache if row.cache is not None else DynamicCache()
            with host.adapter_scope([row.request.adapter]):
                out = run_pass(
                    host.causal_lm,
                    host.lens_layers if last else (),
                    ids,
                    row.cache,
                    capture=row.request.capture_layers if last else (),
                )
            row.prefilled += take
            budget -= take
            if last:
                self._prefilled(row, out.cache, out.logits[0], out.hidden)

    def _reuse(self, row: Row) -> bool:
        """A prompt prefilled before (not for a caller that wants its hidden states)."""
        hit = None if row.request.capture_layers else self._prefixes.get(row.request.key)
        if hit is None:
            return False
        self._prefixes.move_to_end(row.request.key)
        self._prefilled(row, hit[0], hit[1], {})
        return True

    def _prefilled(
        self, row: Row, cache: Any, logits: torch.Tensor, hidden: dict[int, torch.Tensor]
    ) -> None:
        """``row``'s prompt is in ``cache``: choose its first token, then join the batch."""
        self._prefilling.remove(row)
        key = row.request.key
        self._prefixes[key] = (cache, logits)
        self._prefixes.move_to_end(key)
        while len(self._prefixes) > self.limits.prefix_cache_size:
            self._prefixes.popitem(last=False)
        row.cache = None
        row.kept = (cache, logits) if row.request.keep_prompt else None
        # Rows with the same prompt that have not started (``sample``'s n rows) share it.
        for other in list(self._prefilling):
            if other in self._prefilling and other.prefilled == 0 and other.request.key == key:
                self._reuse(other)
        if row.request.max_new_tokens == 0:
            signals = step_signals(logits[None], self.host.lens_layers)[0]
            row.outbox.put(RowStep(0, -1, signals, 0.0, {k: v[0] for k, v in hidden.items()}))
            self._finish(row)
        elif self._choose([row], logits[None], hidden)[0]:
            self._batch.add(cache, len(row.request.prompt))
            self._decoding.append(row)
        else:
            self._finish(row)

    def _decode_step(self) -> None:
        import torch

        rows, host = self._decoding, self.host
        ids = torch.tensor([[row.next_input] for row in rows], device=self._device)
        mask, positions = self._batch.step_inputs(self._device)
        capture = sorted({layer for row in rows for layer in row.request.capture_layers})
        with host.adapter_scope([row.request.adapter for row in rows]):
            out = run_pass(
                host.causal_lm,
                host.lens_layers,
                ids,
                self._batch.cache,
                capture=capture,
                attention_mask=mask,
                position_ids=positions,
            )
        self._batch.advance()
        stats = self._stats
        stats["decode_steps"] += 1
        stats["row_steps"] += len(rows)
        stats["max_rows"] = max(stats["max_rows"], len(rows))
        alive = self._choose(rows, out.logits, out.hidden)
        gone = {i for i, keep in enumerate(alive) if not keep}
        if gone:
            self._leave(gone)

    def _choose(
        self, rows: list[Row], logits: torch.Tensor, hidden: dict[int, torch.Tensor]
    ) -> list[bool]:
        """Each row's next token handed over; whether the row goes on decoding."""
        import torch

        signals = step_signals(logits, self.host.lens_layers)
        logprobs = torch.log_softmax(logits[:, 0].float(), dim=-1)
        alive: list[bool] = []
        for i, row in enumerate(rows):
            request = row.request
            try:
                token = row.choose(logits[i, :1])
            except Exception as exc:  # the row's own constraint failed: only that row ends
                row.outbox.put(exc)
                alive.append(False)
                continue
            kept = {layer: hidden[layer][i] for layer in request.capture_layers} or None
            row.outbox.put(RowStep(row.index, token, signals[i], float(logprobs[i, token]), kept))
            row.index += 1
            stop = token in self.host.stop_ids or row.index >= request.max_new_tokens
            if not stop:
                row.generated.append(token)
                row.next_input = token
            alive.append(not stop)
        return alive

    def _leave(self, gone: set[int]) -> None:
        for i in sorted(gone):
            self._finish(self._decoding[i])
        keep = [i for i in range(len(self._decoding)) if i not in gone]
        self._batch.keep(keep)
        self._decoding = [self._decoding[i] for i in keep]

    def _finish(self, row: Row) -> None:
        if row not in self._live:
            return
        self._live.discard(row)
        if row.kept is not None:  # keep_prompt: the prompt survives the LRU for a sample next
            self._prefixes[row.request.key] = row.kept
            self._prefixes.move_to_end(row.request.key)
        row.outbox.put(None)
        self._stats["rows"] += 1
        self._row_seconds = 0.8 * self._row_seconds + 0.2 * (time.monotonic() - row.started)
        with self._cond:
            self._release(row)

    def _release(self, row: Row) -> None:
        if row.counted:
            row.counted = False
            self._admitted -= 1

    @property
    def _device(self) -> Any:
        return self.host.causal_lm.device
