"""The generator as a LangChain chat model: streaming tokens with their entropy, and usage metadata."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import ConfigDict, Field

__all__ = ["SetpointChatModel"]

_ROLES = {"human": "user", "ai": "assistant", "system": "system", "tool": "user"}


class SetpointChatModel(BaseChatModel):
    """A ``BaseChatModel`` over setpoint's ``Generator`` (any local causal LM, optional LoRA adapter).

    Each streamed chunk carries the token's entropy in ``response_metadata["token_entropy"]``
    and its top-1/top-2 margin in ``response_metadata["token_margin"]`` (one-element lists,
    so adding chunks yields the whole trace); the last chunk carries ``usage_metadata``.

    Example:
        >>> from setpoint.adapters.model.generator import Generator
        >>> chat = SetpointChatModel(generator=Generator.from_pretrained(path))  # doctest: +SKIP
        >>> for chunk in chat.stream("What is the capital of France?"):  # doctest: +SKIP
        ...     print(chunk.content, chunk.response_metadata.get("token_entropy"))
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    generator: Any = Field(exclude=True)
    max_new_tokens: int = 64
    temperature: float = 0.0
    adapter: str | None = None

    @property
    def _llm_type(self) -> str:
        return "setpoint-transformers"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "model": self.generator.name,
            "adapter": self.adapter,
            "temperature": self.temperature,
        }

    def _prompt(self, messages: list[BaseMessage]) -> list[int]:
        chat = [{"role": _ROLES.get(m.type, "user"), "content": m.text} for m in messages]
        ids: list[int] = self.generator.chat_ids(chat)
        return ids

    def _tokens(
        self, messages: list[BaseMessage], stop: list[str] | None
    ) -> Iterator[tuple[str, dict[str, Any], int]]:
        """(text piece, signals, prompt length) per token; honours ``stop`` strings."""
        generator = self.generator
        prompt = self._prompt(messages)
        # The choice is this thread's: concurrent chats with other adapters keep theirs, and
        # a batching generator decodes them together instead of one after another.
        generator.set_adapter(self.adapter)
        tokens = generator.stream(
            prompt, max_new_tokens=self.max_new_tokens, temperature=self.temperature
        )
        text = ""
        try:
            for token in tokens:
                if token.token_id in generator.stop_ids:
                    return
                text += token.text
                if stop and any(s in text for s in stop):
                    return
                yield token.text, token.signals.to_dict(), len(prompt)
        finally:
            tokens.close()  # a stop string ends the row now, not when it is collected

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        prompt_tokens = 0
        count = 0
        for piece, signals, prompt_tokens in self._tokens(messages, stop):  # noqa: B007 (read after the loop)
            count += 1
            # One-element lists: adding chunks concatenates them into the whole trace.
            chunk = ChatGenerationChunk(
                message=AIMessageChunk(
                    content=piece,
                    response_metadata={
                        "token_entropy": [signals["entropy"]],
                        "token_margin": [signals["margin"]],
                    },
                )
            )
            if run_manager is not None:
                run_manager.on_llm_new_token(piece, chunk=chunk)
            yield chunk
        usage = UsageMetadata(
            input_tokens=prompt_tokens, output_tokens=count, total_tokens=prompt_tokens + count
        )
        yield ChatGenerationChunk(
            message=AIMessageChunk(
                content="",
                usage_metadata=usage,
                response_metadata={"model_name": self.generator.name, "finish_reason": "stop"},
                chunk_position="last",
            )
        )

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        pieces: list[str] = []
        entropies: list[float] = []
        prompt_tokens = len(self._prompt(messages))
        for piece, signals, _ in self._tokens(messages, stop):
            pieces.append(piece)
            entropies.append(float(signals["entropy"]))
        message = AIMessage(
            content="".join(pieces).strip(),
            usage_metadata=UsageMetadata(
                input_tokens=prompt_tokens,
                output_tokens=len(pieces),
                total_tokens=prompt_tokens + len(pieces),
            ),
            response_metadata={
                "model_name": self.generator.name,
                "mean_entropy": sum(entropies) / len(entropies) if entropies else 0.0,
                "token_entropy": entropies,
            },
        )
        return ChatResult(generations=[ChatGeneration(message=message)])
