"""The batching scheduler: concurrent rows decoded together give each caller what it gets alone."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch
from transformers import LlamaForCausalLM

from setpoint.adapters.model.generator import BatchLimits, GeneratedToken, Generator
from setpoint.errors import BusyError
from tests.unit.conftest import make_tiny_generator

QUESTIONS = [
    "who won the super bowl ?",
    "what is the capital of france ?",
    "where is the city of paris in france ?",
    "which team won the nfl game in denver , the broncos or a team from the afc ?",
]


def sharp_generator(batching: BatchLimits | None = None, architecture: str = "llama") -> Generator:
    """A tiny Llama (or Qwen2) with large enough weights that its greedy tokens vary (same weights per call)."""
    return make_tiny_generator(
        7, initializer_range=0.4, name="sharp", batching=batching, architecture=architecture
    )


#: Small chunks, so prompts prefill over several steps while other rows decode.
LIMITS = BatchLimits(max_batch=8, max_queue=8, prefill_chunk=8)


def trace(tokens: Sequence[GeneratedToken]) -> list[tuple[int, str]]:
    return [(t.token_id, t.text) for t in tokens]


def assert_same_signals(got: Sequence[GeneratedToken], want: Sequence[GeneratedToken]) -> None:
    assert trace(got) == trace(want)
    for a, b in zip(got, want, strict=True):
        assert a.signals.entropy == pytest.approx(b.signals.entropy, abs=1e-4)
        assert a.signals.margin == pytest.approx(b.signals.margin, abs=1e-4)
        assert a.signals.top_prob == pytest.approx(b.signals.top_prob, abs=1e-4)
        assert a.logprob == pytest.approx(b.logprob, abs=1e-4)
        assert a.signals.lens_entropy.keys() == b.signals.lens_entropy.keys()
        for layer, value in a.signals.lens_entropy.items():
            assert value == pytest.approx(b.signals.lens_entropy[layer], abs=1e-4)
        assert (a.hidden is None) == (b.hidden is None)
        for layer, state in (a.hidden or {}).items():
            assert torch.allclose(state, (b.hidden or {})[layer], rtol=1e-4, atol=1e-3)


def run_concurrently(jobs: Sequence[object]) -> list[object]:
    results: list[object] = [None] * len(jobs)
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            results[i] = jobs[i]()  # type: ignore[operator]
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    if errors:
        raise errors[0]
    return results


@pytest.mark.parametrize("architecture", ["llama", "qwen2"])
def test_concurrent_rows_equal_rows_decoded_alone(architecture: str) -> None:
    serial = sharp_generator(architecture=architecture)
    batched = sharp_generator(LIMITS, architecture=architecture)
    prompts = [serial.prompt_ids(q) for q in QUESTIONS]
    alone = [list(serial.stream(p, max_new_tokens=10, capture_layers=(2,))) for p in prompts]
    assert len({tuple(trace(a)) for a in alone}) > 1, "the test model must answer differently"
    together = run_concurrently(
        [
            lambda p=p: list(batched.stream(p, max_new_tokens=10, capture_layers=(2,)))
            for p in prompts
        ]
    )
    for got, want in zip(together, alone, strict=True):
        assert_same_signals(got, want)  # type: ignore[arg-type]
    assert batched.scheduler is not None and batched.scheduler.stats()["max_rows"] > 1


def test_rows_join_and_leave_a_running_batch() -> None:
    serial, batched = sharp_generator(), sharp_generator(LIMITS)
    short, long_ = (serial.prompt_ids(q) for q in (QUESTIONS[0], QUESTIONS[3]))
    want_long = list(serial.stream(long_, max_new_tokens=12))
    want_short = list(serial.stream(short, max_new_tokens=3))
    first = batched.stream(long_, max_new_tokens=12)
    got_long = [next(first) for _ in range(4)]  # decoding before the others arrive
    got_short = list(batched.stream(short, max_new_tokens=3))  # joins, finishes, leaves
    got_long += list(first)
    assert_same_signals(got_long, want_long)
    assert_same_signals(got_short, want_short)
    # Probes join the batch as prefill-only rows and keep their prompt for the next call.
    assert batched.probe(short).entropy == pytest.approx(serial.probe(short).entropy, abs=1e-5)
    signals, hidden = batched.probe_features(long_, 3)
    ref_signals, ref_hidden = serial.probe_features(long_, 3)
    assert signals.entropy == pytest.approx(ref_signals.entropy, abs=1e-5)
    assert hidden == pytest.approx(ref_hidden, abs=1e-4)


def _save_adapter(model: LlamaForCausalLM, path: Path, seed: int) -> None:
    from peft import LoraConfig, get_peft_model

    from setpoint.adapters.model.peft_init import quiet_peft_init

    torch.manual_seed(seed)
    with quiet_peft_init():
        peft_model = get_peft_model(
            model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
        )
    for name, param in peft_model.named_parameters():
        if "lora_" in name:
            param.data.mul_(8.0)  # strong enough to change the greedy answer
    peft_model.save_pretrained(str(path))
    peft_model.unload()


def test_rows_with_different_adapters_share_one_batch(tmp_path: Path) -> None:
    _save_adapter(sharp_generator().model, tmp_path / "a1", seed=1)
    _save_adapter(sharp_generator().model, tmp_path / "a2", seed=2)
    serial, batched = sharp_generator(), sharp_generator(LIMITS)
    for gen in (serial, batched):
        gen.load_adapter(tmp_path / "a1")
        gen.load_adapter(tmp_path / "a2")
    prompt = serial.prompt_ids(QUESTIONS[1])
    choices = [None, "a1", "a2", "a1"]
    alone = []
    for name in choices:
        serial.set_adapter(name)
        alone.append(list(serial.stream(prompt, max_new_tokens=8)))
    assert len({tuple(trace(a)) for a in alone}) == 3, "each adapter must answer differently"

    def decode(name: str | None) -> list[GeneratedToken]:
        batched.set_adapter(name)  # this thread's choice only
        return list(batched.stream(prompt, max_new_tokens=8))

    together = run_concurrently([lambda n=n: decode(n) for n in choices])
    for got, want in zip(together, alone, strict=True):
        assert_same_signals(got, want)  # type: ignore[arg-type]


def test_closing_a_stream_mid_decode_frees_its_row() -> None:
    serial, batched = sharp_generator(), sharp_generator(LIMITS)
    a, b = (serial.prompt_ids(q) for q in QUESTIONS[:2])
    want_b = list(serial.stream(b, max_new_tokens=10))
    stopped = batched.stream(a, max_new_tokens=200)
    other = batched.stream(b, max_new_tokens=10)
    got_b = [next(other)]
    next(stopped)
    stopped.close()  # the thermostat fired: this row leaves, the other decodes on
    got_b += list(other)
    assert_same_signals(got_b, want_b)
    assert batched.scheduler is not None
    # The closed row is gone: a one-row batch and a one-row queue still take two new rows.
    tight = sharp_generator(BatchLimits(max_batch=1, max_queue=1))
    closing = tight.stream(a, max_new_tokens=200)
    next(closing)
    closing.close()
    assert len(tight.sample(a, 2, max_new_tokens=3, temperature=1e-4)) == 2


def test_a_full_queue_answers_busy_retry_after() -> None:
    gen = sharp_generator(BatchLimits(max_batch=1, max_queue=1))
    prompt = gen.prompt_ids(QUESTIONS[0])
    release = threading.Event()

    def hold(generated: Sequence[int], logits: torch.Tensor) -> torch.Tensor:
        if generated:  # the row is decoding: keep the only batch place taken
            release.wait(timeout=60)
        return logits

    held = gen.stream(prompt, max_new_tokens=4, logits_processor=hold)
    next(held)
    try:
        with pytest.raises(BusyError, match=r"busy.*retry after \d+ s"):
            gen.sample(prompt, 2, max_new_tokens=2)
    finally:
        release.set()
    assert len(list(held)) >= 1


def test_constraints_and_samples_stay_per_row() -> None:
    serial, batched = sharp_generator(), sharp_generator(LIMITS)
    prompt = serial.prompt_ids(QUESTIONS[2])
    allowed = serial.tokenizer.convert_tokens_to_ids(["paris", "france"])

    def only_allowed(generated: Sequence[int], logits: torch.Tensor) -> torch.Tensor:
        mask = torch.full_like(logits, float("-inf"))
        mask[:, allowed] = 0.0
        return logits + mask

    free_alone = list(serial.stream(prompt, max_new_tokens=6))
    constrained, free = run_concurrently(
        [
            lambda: list(batched.stream(prompt, max_new_tokens=6, logits_processor=only_allowed)),
            lambda: list(batched.stream(prompt, max_new_tokens=6)),
        ]
    )
    assert {t.token_id for t in constrained} <= set(allowed)  # type: ignore[attr-defined]
    assert_same_signals(free, free_alone)  # type: ignore[arg-type]
    greedy = [t.token_id for t in free_alone if t.token_id not in serial.stop_ids]
    assert batched.sample(prompt, 3, max_new_tokens=6, temperature=1e-4) == [greedy] * 3
    assert batched.sample(prompt, 3, max_new_tokens=6, seed=5) == batched.sample(
        prompt, 3, max_new_tokens=6, seed=5
    )
