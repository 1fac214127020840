"""Switching LoRA adapters on the one base model, per calling thread: ``Generator``'s adapter half.

A thread's ``set_adapter`` choice is what that thread's decoding calls use, so concurrent
graph runs with different adapters never switch each other's weights: the serialised
decoder switches the PEFT model under its lock per call, the batching scheduler passes
each row's adapter to PEFT's mixed-adapter hooks.
"""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from setpoint.adapters.model.forward import adapter_rows
from setpoint.adapters.model.peft_init import quiet_peft_init
from setpoint.errors import ConfigError, ModelError

__all__ = ["LoraSwitch", "adapter_name"]


def adapter_name(directory: Path) -> str:
    """The name an adapter loaded from ``directory`` gets: its folder name, dots as ``_``.

    PEFT registers adapters as torch submodules, whose names cannot hold a dot.

    Example:
        >>> adapter_name(Path("weights/reader-qwen2.5-coder-0.5b"))
        'reader-qwen2_5-coder-0_5b'
    """
    return directory.name.replace(".", "_")


class LoraSwitch:
    """Loaded adapters, each thread's choice, and what the model has switched on."""

    model: Any
    lock: threading.RLock
    _prefix_cache: OrderedDict[Any, Any]

    def __init__(self) -> None:
        self._peft: Any = None
        self.adapters: dict[str, str] = {}
        # Each thread's adapter choice; threads that never chose see the last choice made.
        self._choice = threading.local()
        self._default_adapter: str | None = None
        self._model_adapter: str | None = None  # what the PEFT model has switched on now

    def _forget_prefixes(self) -> None:
        """Drop kept prefills (their adapter name may now mean other weights)."""
        self._prefix_cache.clear()

    @property
    def causal_lm(self) -> Any:
        """The causal LM the passes run (the PEFT-wrapped one once an adapter is loaded)."""
        return self._peft.get_base_model() if self._peft is not None else self.model

    @property
    def peft(self) -> Any:
        """The ``PeftModel`` once an adapter is loaded, else None."""
        return self._peft

    @property
    def active_adapter(self) -> str | None:
        """The adapter this thread's calls use: its last ``set_adapter``, else the last anyone made."""
        return getattr(self._choice, "adapter", self._default_adapter)

    def load_adapter(self, path: str | Path, name: str | None = None) -> str:
        """Load a PEFT LoRA adapter from a directory; the base model is not reloaded."""
        directory = Path(path).expanduser()
        if not (directory / "adapter_config.json").is_file():
            raise ModelError(f"no LoRA adapter at {directory} (adapter_config.json missing)")
        adapter = name or adapter_name(directory)
        if "." in adapter:
            raise ModelError(f"adapter name {adapter!r} has a dot; PEFT names cannot")
        if adapter in self.adapters:
            # Every reader pass names its adapter by folder: once loaded, the answer needs
            # no lock (taking it stalled concurrent runs behind the scheduler's steps).
            return adapter
        with self.lock:
            if adapter in self.adapters:
                return adapter
            from peft import PeftModel

            if self._peft is None:
                with quiet_peft_init():  # peft reads a deprecated transformers property
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
            self._model_adapter = adapter
            self._choose_adapter(adapter)
            self._forget_prefixes()
        return adapter

    def set_adapter(self, name: str | None) -> None:
        """Switch to a loaded adapter, or to the bare base model with ``None``."""
        if name is not None and name not in self.adapters:
            known = ", ".join(sorted(self.adapters)) or "none loaded"
            raise ConfigError(f"unknown adapter {name!r} (loaded: {known}); load it first")
        self._choose_adapter(name)
        # Also switched on the model now, for callers that run ``model`` themselves
        # (training, tests), unless a decoding holds it: every decoding call switches to its
        # own thread's choice anyway, so waiting for the lock here would only stall this
        # run behind another's answer (or, batched, behind every scheduler step).
        if self.lock.acquire(blocking=False):
            try:
                self._apply_adapter(name)
            finally:
                self.lock.release()

    def _choose_adapter(self, name: str | None) -> None:
        self._choice.adapter = name
        self._default_adapter = name

    def _apply_adapter(self, name: str | None) -> None:
        """Switch the PEFT model to ``name`` (held: ``lock``)."""
        if self._peft is None or name == self._model_adapter:
            return
        if name is None:
            self._peft.base_model.disable_adapter_layers()
        else:
            self._peft.base_model.enable_adapter_layers()
            self._peft.set_adapter(name)
        self._model_adapter = name

    def adapter_scope(self, adapters: Sequence[str | None]) -> AbstractContextManager[None]:
        """Run one pass for rows with these adapters (held: ``lock``).

        One adapter for every row switches the model to it (nothing per pass once it is on);
        a mix sets PEFT's per-row hooks, which cost a walk over the model's modules per pass.
        """
        if self._peft is None or len(set(adapters)) == 1:
            self._apply_adapter(adapters[0] if adapters else None)
            return contextlib.nullcontext()
        if self._model_adapter is None:  # mixed rows need the adapter layers switched on
            self._apply_adapter(next(iter(self.adapters)))
        return adapter_rows(self._peft, adapters)
