"""The generator behind LangChain's chat-model interface."""

from __future__ import annotations

from langchain_core.messages import HumanMessage, SystemMessage

from setpoint.adapters.model.chat_model import SetpointChatModel
from setpoint.adapters.model.generator import Generator


def test_invoke_and_stream_agree_with_usage(tiny_generator: Generator) -> None:
    chat = SetpointChatModel(generator=tiny_generator, max_new_tokens=6)
    messages = [SystemMessage("you are precise"), HumanMessage("who won the super bowl ?")]
    whole = chat.invoke(messages)
    chunks = list(chat.stream(messages))
    streamed = "".join(c.text for c in chunks).strip()
    assert streamed == whole.text
    assert whole.usage_metadata is not None
    assert whole.usage_metadata["input_tokens"] == len(
        tiny_generator.chat_ids(
            [
                {"role": "system", "content": "you are precise"},
                {"role": "user", "content": "who won the super bowl ?"},
            ]
        )
    )
    assert whole.usage_metadata["output_tokens"] == len(whole.response_metadata["token_entropy"])
    token_chunks = [c for c in chunks if c.text]
    assert all(len(c.response_metadata["token_entropy"]) == 1 for c in token_chunks)
    merged = chunks[0]
    for c in chunks[1:]:
        merged = merged + c
    assert merged.usage_metadata is not None and merged.usage_metadata["output_tokens"] == len(
        token_chunks
    )
    assert merged.response_metadata["token_entropy"] == whole.response_metadata["token_entropy"]


def test_stop_strings_end_generation(tiny_generator: Generator) -> None:
    chat = SetpointChatModel(generator=tiny_generator, max_new_tokens=12)
    full = chat.invoke("what is the capital of france ?").text
    words = full.split()
    assert len(words) >= 3
    # generation ends before the token that completes the stop string
    stopped = chat.invoke("what is the capital of france ?", stop=[f"{words[0]} {words[1]}"]).text
    assert stopped.split() == words[:1]
