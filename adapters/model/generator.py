"""The generator: stepwise greedy decoding with a KV cache that yields every token with its uncertainty signals.

Signals come from the forward passes decoding needs anyway. The final hidden state and the
logit-lens rows (intermediate layers through the final norm) go through the LM head in one
matmul: on CPU that matmul is bound by reading the head's weights, so extra rows are close
to free, and no extra forward pass is ever run.
"""

from __future__ import annotations

import collections.abc
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from setpoint.adapters.domain.signals import StepSignals, token_entropy, top2_probs
from setpoint.errors import ConfigError, ModelError

if TYPE_CHECKING:
    import torch

__all__ = ["DEFAULT_SYSTEM_PROMPT", "GeneratedToken", "Generator", "Passage"]

DEFAULT_SYSTEM_PROMPT = (
    "You are a precise assistant. Answer the question with a short answer only: "
    "a name, number, date or short phrase, not a sentence."
)
READER_SYSTEM_PROMPT = (
    "You are a precise assistant. Answer the question with a short phrase copied from the "
    "context passages. Do not write a sentence."
)

# Chat template used when a model directory ships none (the GGUF conversion loses it).
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


#: What ``Generator.stream`` returns: iterate it; ``close()`` ends decoding early.
TokenStream = collections.abc.Generator["GeneratedToken", None, None]


@dataclass(frozen=True)
class Passage:
    """A retrieved passage as the generator sees it."""

    id: str
    title: str
    text: str


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


class Generator:
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
    ) -> None:

        self.model = model.eval()
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
        self._peft: Any = None
        self.adapters: dict[str, str] = {}
        self.active_adapter: str | None = None
        self._stop_ids = self._find_stop_ids()
        # Keyed by (active adapter, prompt): probing several adapters on one prompt keeps each
        # one's prefill, so the adapter finally chosen decodes without prefilling again.
        self._prefix_cache: OrderedDict[
            tuple[str | None, tuple[int, ...]], tuple[Any, torch.Tensor]
        ] = OrderedDict()
        self._prefix_cache_size = prefix_cache_size
        # One decode at a time: the KV cache and adapter switch are per model, not per thread.
        self.lock = threading.RLock()
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
        lens_layers: Sequence[int] | None = None,
    ) -> Generator:
        """Load a local Hugging Face model directory (safetensors + tokenizer) in fp32."""
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
            model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32)
        except (OSError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelError(f"could not load the model at {directory}: {first}") from exc
        return cls(model, tokenizer, name=directory.name, lens_layers=lens_layers)

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

    # ------------------------------------------------------------------ adapters
    def load_adapter(self, path: str | Path, name: str | None = None) -> str:
        """Load a PEFT LoRA adapter from a directory; the base model is not reloaded."""
        directory = Path(path).expanduser()
        if not (directory / "adapter_config.json").is_file():
            raise ModelError(f"no LoRA adapter at {directory} (adapter_config.json missing)")
        adapter = name or directory.name
        with self.lock:
            if adapter in self.adapters:
                return adapter
            from peft import PeftModel

            if self._peft is None:
                self._peft = PeftModel.from_pretrained(
                    self.model, str(directory), adapter_name=adapter
                )
                self._peft.eval()
            else:
                self._peft.load_adapter(str(directory), adapter_name=adapter)
            self.adapters[adapter] = str(directory)
            # ``set_adapter(None)`` disabled the adapter layers; the new adapter must be live.
            self._peft.base_model.enable_adapter_layers()
            self._peft.set_adapter(adapter)
            self.active_adapter = adapter
            self._prefix_cache.clear()
        return adapter

    def set_adapter(self, name: str | None) -> None:
        """Switch to a loaded adapter, or to the bare base model with ``None``."""
        with self.lock:
            if name == self.active_adapter:
                return
            if name is not None and name not in self.adapters:
                known = ", ".join(sorted(self.adapters)) or "none loaded"
                raise ConfigError(f"unknown adapter {name!r} (loaded: {known}); load it first")
            if self._peft is not None:
                if name is None:
                    self._peft.base_model.disable_adapter_layers()
                else:
                    self._peft.base_model.enable_adapter_layers()
                    self._peft.set_adapter(name)
            self.active_adapter = name

    # ------------------------------------------------------------------ prompts
    def messages(self, question: str, passages: Sequence[Passage] = ()) -> list[dict[str, str]]:
        """The chat messages for a question, closed-book or with numbered context passages."""
        if not passages:
            return [
                {"role": "system", "content": DEFAULT_SYSTEM_PROMPT},
                {"role": "user", "content": question},
            ]
        context = "\n\n".join(f"[{i}] {p.title}: {p.text}" for i, p in enumerate(passages, start=1))
        return [
            {"role": "system", "content": READER_SYSTEM_PROMPT},
            {"role": "user", "content": f"Context:\n{context}\n\nQuestion: {question}"},
        ]

    def prompt_ids(self, question: str, passages: Sequence[Passage] = ()) -> list[int]:
        """Token ids of the chat-templated prompt, ending with the assistant turn's header."""
        return self.chat_ids(self.messages(question, passages))

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
        import torch

        causal_lm = self._peft.get_base_model() if self._peft is not None else self.model
        decoder = causal_lm.get_decoder()
        out = decoder(
            input_ids=input_ids,
            cache=cache,
            use_cache=True,
            output_hidden_states=bool(self.lens_layers) or bool(self._capture_layers),
        )
        self._captured = {
            layer: out.hidden_states[layer][0, -1].detach().clone()
            for layer in self._capture_layers
        }
        rows = [out.last_hidden_state[:, -1]]
        if self.lens_layers:
            norm = getattr(decoder, "norm", None)
            for layer in self.lens_layers:
                hidden = out.hidden_states[layer][:, -1]
                rows.append(norm(hidden) if norm is not None else hidden)
        return self._head(causal_lm, torch.cat(rows, dim=0)), out.cache

    def _signals(self, logits: torch.Tensor) -> StepSignals:
        entropies = token_entropy(logits).tolist()
        first, second = top2_probs(logits[0]).tolist()
        return StepSignals(
            entropy=entropies[0],
            margin=first - second,
            lens_entropy=dict(zip(self.lens_layers, entropies[1:], strict=True)),
            top_prob=first,
        )

    def _prefill(self, prompt_ids: Sequence[int]) -> tuple[Any, torch.Tensor]:
        import torch
        from transformers import DynamicCache

        key = (self.active_adapter, tuple(prompt_ids))
        cached = self._prefix_cache.pop(key, None)
        # A kept pass did not keep hidden states: a capturing caller gets a fresh prefill.
        if cached is not None and not self._capture_layers:
            return cached
        ids = torch.tensor([list(prompt_ids)], dtype=torch.long)
        logits, cache = self._forward(ids, DynamicCache())
        return cache, logits

    def probe(self, prompt_ids: Sequence[int]) -> StepSignals:
        """Prefill the prompt once and return the signals of the first answer token.

        The KV cache is kept, so a ``stream`` of the same prompt right after does not
        prefill again.
        """
        import torch

        if not prompt_ids:
            raise ModelError("empty prompt: nothing to prefill")
        with self.lock, torch.inference_mode():
            cache, logits = self._prefill(prompt_ids)
            self._keep_prefill(prompt_ids, cache, logits)
            return self._signals(logits)

    def probe_features(
        self, prompt_ids: Sequence[int], layer: int
    ) -> tuple[StepSignals, list[float]]:
        """Like ``probe``, and also the prompt's last-position hidden state at ``layer``.

        The hidden state comes from the same prefill pass (a trained probe reads it); the KV
        cache is kept for ``stream`` exactly as ``probe`` keeps it.
        """
        import torch

        self._check_layers((layer,))
        with self.lock, torch.inference_mode():
            self._capture_layers = (layer,)
            try:
                signals = self.probe(prompt_ids)
            finally:
                self._capture_layers = ()
            captured, self._captured = self._captured, {}
            return signals, captured[layer].float().tolist()

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
        logits_processor: Callable[[Sequence[int], torch.Tensor], torch.Tensor] | None = None,
        keep_prompt: bool = False,
        capture_layers: Sequence[int] = (),
    ) -> TokenStream:
        """Decode greedily (or sample with ``temperature > 0``), yielding each token with its signals.

        The stop token is yielded too (its ``text`` is empty) so callers see why decoding ended.
        Stopping iteration early leaves the model ready for the next call.

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
        import torch

        if not prompt_ids:
            raise ModelError("empty prompt: nothing to decode")
        self._check_layers(capture_layers)
        with self.lock, torch.inference_mode():
            self._capture_layers = tuple(capture_layers)
            try:
                cache, logits = self._prefill(prompt_ids)
            except BaseException:
                self._capture_layers = ()
                raise
            prompt_logits = logits
            rng = torch.Generator().manual_seed(seed) if temperature > 0 else None
            generated: list[int] = []
            shown = ""
            try:
                for index in range(max_new_tokens):
                    signals = self._signals(logits)
                    hidden = self._captured if capture_layers else None
                    scores = logits[0]
                    if logits_processor is not None:
                        scores = logits_processor(generated, logits[:1])[0]
                    if rng is not None:
                        probs = torch.softmax(scores / temperature, dim=-1)
                        token = int(torch.multinomial(probs, 1, generator=rng))
                    else:
                        token = int(torch.argmax(scores))
                    logprob = float(torch.log_softmax(logits[0].float(), dim=-1)[token])
                    if token in self._stop_ids:
                        yield GeneratedToken(index, token, "", signals, logprob, hidden)
                        return
                    generated.append(token)
                    text = self.tokenizer.decode(generated, skip_special_tokens=True)
                    piece, shown = text[len(shown) :], text
                    yield GeneratedToken(index, token, piece, signals, logprob, hidden)
                    if index + 1 < max_new_tokens:
                        logits, cache = self._forward(
                            torch.tensor([[token]], dtype=torch.long), cache
                        )
            finally:
                self._capture_layers, self._captured = (), {}
                if keep_prompt:
                    extra = cache.get_seq_length() - len(prompt_ids)
                    if extra > 0:
                        cache.crop(-extra)
                    self._keep_prefill(prompt_ids, cache, prompt_logits)

    def _keep_prefill(self, prompt_ids: Sequence[int], cache: Any, logits: torch.Tensor) -> None:
        self._prefix_cache[(self.active_adapter, tuple(prompt_ids))] = (cache, logits)
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
        logits_processors: Sequence[Callable[[Sequence[int], torch.Tensor], torch.Tensor]] = (),
    ) -> list[list[int]]:
        """``n`` answers sampled at ``temperature`` in one batch, as token ids (stop token left out).

        The prompt is prefilled once (or taken from a ``stream(..., keep_prompt=True)`` just
        before) and its KV cache repeated ``n`` times, so the samples cost decode steps only.
        ``logits_processors`` holds one processor per sample (they may keep state, as
        ``grounding.SpanConstraint`` does); decoding ends when every sample has stopped.

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
        with self.lock, torch.inference_mode():
            cache, logits = self._prefill(prompt_ids)
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
                    token = int(torch.multinomial(probs, 1, generator=rng))
                    chosen.append(token)
                    if token in self._stop_ids:
                        finished[i] = True
                    else:
                        samples[i].append(token)
                if all(finished) or index + 1 == max_new_tokens:
                    break
                scores = self._batch_logits(torch.tensor(chosen, dtype=torch.long)[:, None], cache)
            return samples

    def _batch_logits(self, input_ids: torch.Tensor, cache: Any) -> torch.Tensor:
        """Final-layer logits at the last position of every row of a batch (no logit-lens rows)."""
        causal_lm = self._peft.get_base_model() if self._peft is not None else self.model
        out = causal_lm.get_decoder()(input_ids=input_ids, cache=cache, use_cache=True)
        return self._head(causal_lm, out.last_hidden_state[:, -1])

    @staticmethod
    def _head(causal_lm: Any, rows: torch.Tensor) -> torch.Tensor:
        """LM-head logits of ``rows`` ([n, hidden])."""
        import torch

        head = causal_lm.get_output_embeddings()
        if type(head) is torch.nn.Linear:
            # weight @ rows.T instead of linear(rows): on CPU (MKL, fp32) this layout costs
            # ~5 ms for 2-4 rows of SmolLM2's 49k x 576 head where linear() costs 25-40 ms
            # (benchmarks/overhead.py), so the logit-lens rows ride along almost free.
            logits = torch.matmul(head.weight, rows.T).T
            if head.bias is not None:
                logits = logits + head.bias
            return logits
        logits_: torch.Tensor = head(rows)  # e.g. a LoRA-wrapped head applies its own delta
        return logits_

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False))
