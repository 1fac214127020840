"""The generator: stepwise greedy decoding with a KV cache that yields every token with its uncertainty signals.

Signals come from the forward passes decoding needs anyway. The final hidden state and the
logit-lens rows (intermediate layers through the final norm) go through the LM head in one
matmul: on CPU that matmul is bound by reading the head's weights, so extra rows are close
to free, and no extra forward pass is ever run.

Two modes: serialised (one call at a time under ``lock``, the baseline) and batched, where a
``scheduler.GenerationScheduler`` decodes every concurrent caller's row in one batch. The
adapter a call uses is the calling thread's last ``set_adapter`` choice, so concurrent runs
with different adapters never switch each other's weights.
"""

from __future__ import annotations

import collections.abc
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from setpoint.adapters.domain.signals import StepSignals
from setpoint.adapters.model.attention import use_packed_decode_attention
from setpoint.adapters.model.forward import lm_head, run_pass, step_signals
from setpoint.adapters.model.lora_switch import LoraSwitch
from setpoint.adapters.model.prompts import (
    CHATML_TEMPLATE,
    DEFAULT_SYSTEM_PROMPT,
    Passage,
    chat_messages,
)
from setpoint.adapters.model.scheduler import (
    BatchLimits,
    GenerationScheduler,
    Row,
    RowRequest,
    RowStep,
)
from setpoint.errors import ConfigError, ModelError

if TYPE_CHECKING:
    import torch

__all__ = ["DEFAULT_SYSTEM_PROMPT", "BatchLimits", "GeneratedToken", "Generator", "Passage"]

#: ``processor(generated_ids, logits[1, vocab]) -> scores[1, vocab]``.
LogitsProcessor = Callable[[Sequence[int], "torch.Tensor"], "torch.Tensor"]

#: What ``Generator.stream`` returns: iterate it; ``close()`` ends decoding early.
TokenStream = collections.abc.Generator["GeneratedToken", None, None]


@dataclass(frozen=True)
class GeneratedToken:
    """One decoded token and the signals of the distribution it was chosen from."""

    index: int
    token_id: int
    text: str
    signals: StepSignals
    #: ln p of this token under the model's own (unconstrained) distribution.
    logprob: float = 0.0
    #: Hidden states (layer -> [hidden_size]) at the position whose logits chose this token,
    #: for the layers ``stream(capture_layers=...)`` asked for; None otherwise. Token 0's come
    #: from the prompt's last position, the stop token's from the answer's last token.
    hidden: Mapping[int, torch.Tensor] | None = None


class Generator(LoraSwitch):
    """A causal LM (optionally with PEFT LoRA adapters) decoded one token at a time.

    Example:
        >>> gen = Generator.from_pretrained("~/.cache/setpoint/models/SmolLM2-135M-Instruct")  # doctest: +SKIP
        >>> ids = gen.prompt_ids("What is the capital of France?")  # doctest: +SKIP
        >>> [t.text for t in gen.stream(ids, max_new_tokens=4)]  # doctest: +SKIP
        ['Paris', '<|im_end|>']
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        name: str = "model",
        lens_layers: Sequence[int] | None = None,
        prefix_cache_size: int = 4,
        batching: BatchLimits | None = None,
        packed_decode: bool = True,
    ) -> None:

        self.model = model.eval()
        if packed_decode:  # grouped-query decode steps on packed heads (attention.py)
            use_packed_decode_attention(self.model)
        self.tokenizer = tokenizer
        self.name = name
        if getattr(tokenizer, "chat_template", None) is None:
            tokenizer.chat_template = CHATML_TEMPLATE
        n_layers = int(model.config.num_hidden_layers)
        if lens_layers is None:
            lens_layers = sorted({max(1, n_layers // 2), max(1, (3 * n_layers) // 4)} - {n_layers})
        for layer in lens_layers:
            if not 1 <= layer < n_layers:
                raise ConfigError(
                    f"logit-lens layer {layer} is outside 1..{n_layers - 1} for {name}; "
                    "pick intermediate decoder layers"
                )
        self.lens_layers: tuple[int, ...] = tuple(lens_layers)
        LoraSwitch.__init__(self)
        self._stop_ids = self._find_stop_ids()
        # Keyed by (active adapter, prompt): probing several adapters on one prompt keeps each
        # one's prefill, so the adapter finally chosen decodes without prefilling again.
        self._prefix_cache: OrderedDict[
            tuple[str | None, tuple[int, ...]], tuple[Any, torch.Tensor]
        ] = OrderedDict()
        self._prefix_cache_size = prefix_cache_size
        # Serialised mode: one decode at a time (the KV cache and adapter switch are per model).
        # Batched mode: the scheduler's worker holds it for one step at a time.
        self.lock = threading.RLock()
        self.scheduler = (
            GenerationScheduler(self, batching, self.lock) if batching is not None else None
        )
        # Set only inside probe_features and a capturing stream: which hidden states (layer
        # indices as in ``hidden_states``) each forward pass keeps for its last position.
        self._capture_layers: tuple[int, ...] = ()
        self._captured: dict[int, torch.Tensor] = {}

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        *,
        threads: int | None = None,
        precision: str = "float32",
        **options: Any,
    ) -> Generator:
        """Load a local Hugging Face model directory (safetensors + tokenizer).

        ``options`` go to ``Generator`` (``lens_layers``, ``batching``: the scheduler that
        decodes concurrent calls together, ``packed_decode``). ``precision``
        (``adapters.model.precision``): the weights' float type. Training
        keeps float32; serving takes ``Settings.precision`` (``auto``: bfloat16 on CPUs
        that compute it natively). Signals and hidden states are returned in float32.
        """
        from setpoint.adapters.model.precision import use_bfloat16

        bfloat16 = use_bfloat16(precision, what="generator")
        directory = Path(path).expanduser()
        if not (directory / "config.json").is_file():
            raise ModelError(
                f"no model at {directory} (config.json missing); run `setpoint setup` "
                "or point SETPOINT_MODEL_DIR at a Hugging Face model directory"
            )
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
        if threads:
            torch.set_num_threads(threads)
        try:
            tokenizer = AutoTokenizer.from_pretrained(directory)
            model = AutoModelForCausalLM.from_pretrained(
                directory, dtype=torch.bfloat16 if bfloat16 else torch.float32
            )
        except (OSError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelError(f"could not load the model at {directory}: {first}") from exc
        return cls(model, tokenizer, name=directory.name, **options)

    def _find_stop_ids(self) -> frozenset[int]:
        ids: set[int] = set()
        eos = self.tokenizer.eos_token_id
        if isinstance(eos, int):
            ids.add(eos)
        gen_eos = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        if isinstance(gen_eos, int):
            ids.add(gen_eos)
        elif isinstance(gen_eos, list):
            ids.update(int(i) for i in gen_eos)
        im_end = self.tokenizer.convert_tokens_to_ids("<|im_end|>")
        if isinstance(im_end, int) and im_end != self.tokenizer.unk_token_id:
            ids.add(im_end)
        return frozenset(ids)

    @property
    def stop_ids(self) -> frozenset[int]:
        return self._stop_ids

    # ------------------------------------------------------------------ prompts
    def messages(
        self, question: str, passages: Sequence[Passage] = (), *, tuned_reader: bool = True
    ) -> list[dict[str, str]]:
        """The chat messages for a question, closed-book or with numbered context passages.

        ``tuned_reader=False`` when no reader adapter reads them (``prompts.chat_messages``).
        """
        return chat_messages(question, passages, tuned_reader=tuned_reader)

    def prompt_ids(
        self, question: str, passages: Sequence[Passage] = (), *, tuned_reader: bool = True
    ) -> list[int]:
        """Token ids of the chat-templated prompt, ending with the assistant turn's header."""
        return self.chat_ids(self.messages(question, passages, tuned_reader=tuned_reader))

    def chat_ids(self, messages: Sequence[dict[str, str]]) -> list[int]:
        """Token ids of any chat (``[{"role", "content"}]``) with the assistant header appended."""
        ids = self.tokenizer.apply_chat_template(
            list(messages), add_generation_prompt=True, tokenize=True
        )
        if isinstance(ids, dict) or hasattr(ids, "keys"):
            ids = ids["input_ids"]
        return [int(i) for i in ids]

    # ------------------------------------------------------------------ decoding
    def _forward(self, input_ids: torch.Tensor, cache: Any) -> tuple[torch.Tensor, Any]:
        """One decoder pass; returns LM-head logits for [final, *lens layers] at the last position."""
        out = run_pass(
            self.causal_lm, self.lens_layers, input_ids, cache, capture=self._capture_layers
        )
        self._captured = {layer: state[0] for layer, state in out.hidden.items()}
        return out.logits[0], out.cache

    def _signals(self, logits: torch.Tensor) -> StepSignals:
        return step_signals(logits[None], self.lens_layers)[0]

    def _prefill(self, prompt_ids: Sequence[int], adapter: str | None) -> tuple[Any, torch.Tensor]:
        import torch
        from transformers import DynamicCache

        self._apply_adapter(adapter)
        key = (adapter, tuple(prompt_ids))
        cached = self._prefix_cache.pop(key, None)
        # A kept pass did not keep hidden states: a capturing caller gets a fresh prefill.
        if cached is not None and not self._capture_layers:
            return cached
        ids = torch.tensor([list(prompt_ids)], dtype=torch.long, device=self.model.device)
        logits, cache = self._forward(ids, DynamicCache())
        return cache, logits

    def probe(self, prompt_ids: Sequence[int]) -> StepSignals:
        """Prefill the prompt once and return the signals of the first answer token.

        The KV cache is kept, so a ``stream`` of the same prompt right after does not
        prefill again.
        """
        return self._probe(prompt_ids, ())[0]

    def probe_features(
        self, prompt_ids: Sequence[int], layer: int
    ) -> tuple[StepSignals, list[float]]:
        """Like ``probe``, and also the prompt's last-position hidden state at ``layer``.

        The hidden state comes from the same prefill pass (a trained probe reads it); the KV
        cache is kept for ``stream`` exactly as ``probe`` keeps it.
        """
        self._check_layers((layer,))
        signals, captured = self._probe(prompt_ids, (layer,))
        return signals, captured[layer].float().tolist()

    def _probe(
        self, prompt_ids: Sequence[int], layers: tuple[int, ...]
    ) -> tuple[StepSignals, Mapping[int, torch.Tensor]]:
        import torch

        if not prompt_ids:
            raise ModelError("empty prompt: nothing to prefill")
        adapter = self.active_adapter
        if self.scheduler is not None:
            request = RowRequest(tuple(prompt_ids), adapter, 0, capture_layers=layers)
            (row,) = self.scheduler.submit([request])
            step = row.next()
            assert step is not None  # a prefill-only row always answers once
            return step.signals, step.hidden or {}
        with self.lock, torch.inference_mode():
            self._capture_layers = layers
            try:
                cache, logits = self._prefill(prompt_ids, adapter)
            finally:
                self._capture_layers = ()
            captured, self._captured = self._captured, {}
            self._keep_prefill(prompt_ids, adapter, cache, logits)
            return self._signals(logits), captured

    def _forget_prefixes(self) -> None:
        super()._forget_prefixes()
        if self.scheduler is not None:
            self.scheduler.forget_prefixes()

    def _check_layers(self, layers: Sequence[int]) -> None:
        n_layers = int(self.model.config.num_hidden_layers)
        for layer in layers:
            if not 0 <= layer <= n_layers:
                raise ConfigError(f"probe layer {layer} is outside 0..{n_layers} for {self.name}")

    def stream(
        self,
        prompt_ids: Sequence[int],
        *,
        max_new_tokens: int = 48,
        temperature: float = 0.0,
        seed: int = 0,
        logits_processor: LogitsProcessor | None = None,
        keep_prompt: bool = False,
        capture_layers: Sequence[int] = (),
    ) -> TokenStream:
        """Decode greedily (or sample with ``temperature > 0``), yielding each token with its signals.

        The stop token is yielded too (its ``text`` is empty) so callers see why decoding ended.
        Stopping iteration early (``close()``) leaves the model ready for the next call; in
        batched mode the row leaves the batch at the next step.

        ``logits_processor(generated_ids, logits[1, vocab])`` may mask or reweight the scores
        the token is chosen from (e.g. ``grounding.SpanConstraint``); the signals and
        ``logprob`` stay those of the model's own distribution, so the thermostat and
        selective answering still read the model's uncertainty.

        ``keep_prompt`` keeps the prompt's KV cache when decoding ends (the answer's entries
        cut off again), so a ``sample`` of the same prompt right after does not prefill again.

        ``capture_layers`` fills each token's ``hidden`` with those layers' hidden states
        (a trained probe such as ``reader_probe.ReaderProbe`` reads them); the prompt is then
        prefilled afresh even when its KV cache was kept.
        """
        if not prompt_ids:
            raise ModelError("empty prompt: nothing to decode")
        self._check_layers(capture_layers)
        request = RowRequest(
            tuple(prompt_ids),
            self.active_adapter,  # chosen now, by the calling thread
            max_new_tokens,
            temperature,
            seed,
            logits_processor,
            keep_prompt,
            tuple(capture_layers),
        )
        steps = self._row_steps(request) if self.scheduler else self._serial_steps(request)
        return self._tokens(steps)

    def _tokens(self, steps: collections.abc.Generator[RowStep, None, None]) -> TokenStream:
        """The caller's tokens with their text; closing it ends ``steps`` now, not at collection."""
        generated: list[int] = []
        shown = ""
        try:
            for step in steps:
                token, signals, logprob = step.token_id, step.signals, step.logprob
                if token in self._stop_ids:
                    yield GeneratedToken(step.index, token, "", signals, logprob, step.hidden)
                    return
                generated.append(token)
                text = self.tokenizer.decode(generated, skip_special_tokens=True)
                piece, shown = text[len(shown) :], text
                yield GeneratedToken(step.index, token, piece, signals, logprob, step.hidden)
        finally:
            steps.close()

    def _row_steps(self, request: RowRequest) -> collections.abc.Generator[RowStep, None, None]:
        assert self.scheduler is not None
        (row,) = self.scheduler.submit([request])
        try:
            while (step := row.next()) is not None:
                yield step
        finally:
            self.scheduler.cancel(row)

    def _serial_steps(self, request: RowRequest) -> collections.abc.Generator[RowStep, None, None]:
        import torch

        prompt_ids, device = request.prompt, self.model.device
        with self.lock, torch.inference_mode():
            self._capture_layers = request.capture_layers
            try:
                cache, logits = self._prefill(prompt_ids, request.adapter)
            except BaseException:
                self._capture_layers = ()
                raise
            prompt_logits = logits
            row = Row(request)
            try:
                for index in range(request.max_new_tokens):
                    hidden = self._captured if request.capture_layers else None
                    token = row.choose(logits[:1])
                    logprob = float(torch.log_softmax(logits[0].float(), dim=-1)[token])
                    yield RowStep(index, token, self._signals(logits), logprob, hidden)
                    if token in self._stop_ids:
                        return
                    row.generated.append(token)
                    if index + 1 < request.max_new_tokens:
                        ids = torch.tensor([[token]], dtype=torch.long, device=device)
                        logits, cache = self._forward(ids, cache)
            finally:
                self._capture_layers, self._captured = (), {}
                if request.keep_prompt:
                    extra = cache.get_seq_length() - len(prompt_ids)
                    if extra > 0:
                        cache.crop(-extra)
                    self._keep_prefill(prompt_ids, request.adapter, cache, prompt_logits)

    def _keep_prefill(
        self, prompt_ids: Sequence[int], adapter: str | None, cache: Any, logits: torch.Tensor
    ) -> None:
        self._prefix_cache[(adapter, tuple(prompt_ids))] = (cache, logits)
        while len(self._prefix_cache) > self._prefix_cache_size:
            self._prefix_cache.popitem(last=False)

    def sample(
        self,
        prompt_ids: Sequence[int],
        n: int,
        *,
        max_new_tokens: int = 24,
        temperature: float = 1.0,
        seed: int = 0,
        logits_processors: Sequence[LogitsProcessor] = (),
    ) -> list[list[int]]:
        """``n`` answers sampled at ``temperature`` in one batch, as token ids (stop token left out).

        The prompt is prefilled once (or taken from a ``stream(..., keep_prompt=True)`` just
        before) and its KV cache repeated ``n`` times, so the samples cost decode steps only.
        ``logits_processors`` holds one processor per sample (they may keep state, as
        ``grounding.SpanConstraint`` does); decoding ends when every sample has stopped.
        In batched mode the samples are ``n`` rows of the shared batch, sample ``i`` drawn
        with its own generator seeded ``seed + i``.

        Example:
            >>> ids = gen.prompt_ids("Who won Super Bowl 50?", [passage])  # doctest: +SKIP
            >>> [gen.tokenizer.decode(s) for s in gen.sample(ids, 4, seed=1)]  # doctest: +SKIP
            ['Denver Broncos', 'Denver Broncos', 'The Denver Broncos', 'Denver Broncos']
        """
        import torch

        if not prompt_ids:
            raise ModelError("empty prompt: nothing to decode")
        if n < 1:
            raise ConfigError(f"sample count must be at least 1, got {n}")
        if temperature <= 0:
            raise ConfigError(f"sampling temperature must be > 0, got {temperature:g}")
        if logits_processors and len(logits_processors) != n:
            raise ConfigError(f"{len(logits_processors)} logits processors for {n} samples")
        adapter = self.active_adapter
        if self.scheduler is not None:
            requests = [
                RowRequest(
                    tuple(prompt_ids),
                    adapter,
                    max_new_tokens,
                    temperature,
                    seed + i,
                    logits_processors[i] if logits_processors else None,
                )
                for i in range(n)
            ]
            rows = self.scheduler.submit(requests)
            steps = [list(iter(row.next, None)) for row in rows]
            return [[s.token_id for s in row if s.token_id not in self._stop_ids] for row in steps]
        with self.lock, torch.inference_mode():
            cache, logits = self._prefill(prompt_ids, adapter)
            if n > 1:
                cache.batch_repeat_interleave(n)
            scores = logits[:1].expand(n, -1)
            rng = torch.Generator().manual_seed(seed)
            samples: list[list[int]] = [[] for _ in range(n)]
            finished = [False] * n
            stop = min(self._stop_ids)
            for index in range(max_new_tokens):
                chosen: list[int] = []
                for i in range(n):
                    if finished[i]:
                        chosen.append(stop)  # keeps the batch aligned; never read
                        continue
                    row = scores[i : i + 1]
                    if logits_processors:
                        row = logits_processors[i](samples[i], row)
                    probs = torch.softmax(row[0].float() / temperature, dim=-1)
                    token = int(torch.multinomial(probs.cpu(), 1, generator=rng))
                    chosen.append(token)
                    if token in self._stop_ids:
                        finished[i] = True
                    else:
                        samples[i].append(token)
                if all(finished) or index + 1 == max_new_tokens:
                    break
                ids = torch.tensor(chosen, dtype=torch.long, device=self.model.device)[:, None]
                scores = self._batch_logits(ids, cache)
            return samples

    def _batch_logits(self, input_ids: torch.Tensor, cache: Any) -> torch.Tensor:
        """Final-layer logits at the last position of every row of a batch (no logit-lens rows)."""
        causal_lm = self.causal_lm
        out = causal_lm.get_decoder()(input_ids=input_ids, cache=cache, use_cache=True)
        return lm_head(causal_lm, out.last_hidden_state[:, -1])

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False))
