"""What the nodes run on: the generator, the search tool, the policy and the tracer, built lazily.

A ``Resources`` is created once per process (or per test) and handed to ``build_graph``;
nothing heavy is loaded until a node first needs it, so importing and compiling the graph
stays cheap (``langgraph dev`` imports it at start-up).
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from setpoint.errors import SetpointError
from setpoint.settings import Settings
from setpoint.tracing import tracer_from

if TYPE_CHECKING:
    from langchain_core.embeddings import Embeddings
    from langchain_core.tools import BaseTool
    from langgraph.cache.memory import InMemoryCache
    from opentelemetry.trace import Tracer, TracerProvider

    from setpoint.adapters.domain.linear_probe import LinearProbe
    from setpoint.adapters.domain.reader_probe import ReaderProbe
    from setpoint.adapters.lora.knowledge import AdapterCard
    from setpoint.adapters.model.generator import Generator
    from setpoint.tools.freshness import StaleKnowledge
    from setpoint.tools.policy import Policy

__all__ = ["Resources"]


@lru_cache(maxsize=4)
def _shared_embedder(embedder_dir: Path | None, cache_dir: Path) -> Embeddings:
    # Keyed by the settings that choose the model: tests build many Resources per process and
    # must not load all-MiniLM-L6-v2 once each.
    from setpoint.adapters.model.embedder import Embedder

    return Embedder.from_settings(Settings(cache_dir=cache_dir, embedder_dir=embedder_dir))


@dataclass
class Resources:
    """Lazily built dependencies of the graph's nodes.

    Heavy parts are methods, not properties: LangGraph inspects node closures attribute by
    attribute when compiling, and a property would load the model at import time.

    Pass ready objects to replace the defaults (tests pass a tiny generator and an in-memory
    store); leave them None to build them from ``settings`` on first use.

    Example:
        >>> res = Resources(settings=Settings.from_env())
        >>> res.generator()  # loads the model now  # doctest: +SKIP
    """

    settings: Settings = field(default_factory=Settings.from_env)
    tracer_provider: TracerProvider | None = None
    _generator: Generator | None = None
    _store: Any = None
    _search_tool: BaseTool | None = None
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    _warmup: Future[bool] | None = field(default=None, repr=False)
    _available: bool = field(default=False, repr=False)
    _available_at: float | None = field(default=None, repr=False)
    #: Seconds a ``retrieval_available`` answer is reused before the store is asked again.
    AVAILABILITY_TTL_S: ClassVar[float] = 2.0
    UNAVAILABLE_TTL_S: ClassVar[float] = 30.0
    _probes: dict[str, LinearProbe] = field(default_factory=dict, repr=False)
    _reader_probes: dict[str, ReaderProbe | None] = field(default_factory=dict, repr=False)
    _cards: dict[str, AdapterCard | None] = field(default_factory=dict, repr=False)
    _stale: StaleKnowledge | None = field(default=None, repr=False)
    _retrievals: InMemoryCache[Any] | None = field(default=None, repr=False)

    @property
    def tracer(self) -> Tracer:
        return tracer_from(self.tracer_provider)

    def generator(self) -> Generator:
        with self._lock:
            if self._generator is None:
                from setpoint.adapters.model.generator import BatchLimits, Generator

                settings = self.settings
                self._generator = Generator.from_pretrained(
                    settings.generator_dir,
                    threads=settings.threads,
                    precision=settings.precision,
                    packed_decode=settings.packed_decode,
                    batching=BatchLimits(settings.max_batch, settings.max_queue)
                    if settings.batching
                    else None,
                )
            return self._generator

    def store(self) -> Any:
        """The passage store (``WeaviateStore`` unless one was injected); not yet connected."""
        with self._lock:
            if self._store is None:
                from setpoint.adapters.model.embedder import Embedder
                from setpoint.adapters.weaviate.store import WeaviateStore

                self._store = WeaviateStore.from_settings(
                    self.settings, Embedder.from_settings(self.settings)
                )
            return self._store

    def embedder(self) -> Embeddings:
        """Sentence embeddings for the policy checks: the store's own embedder when it has one
        (one model in memory), otherwise the configured one, loaded once per process."""
        store_embedder = getattr(self.store(), "embedder", None)
        if store_embedder is not None:
            return store_embedder  # type: ignore[no-any-return]
        return _shared_embedder(self.settings.embedder_dir, self.settings.cache_dir)

    def search_tool(self) -> BaseTool:
        with self._lock:
            if self._search_tool is None:
                from setpoint.tools.search import make_search_tool

                self._search_tool = make_search_tool(self.store())
            return self._search_tool

    def adapter_card(self, adapter: str | None) -> AdapterCard | None:
        """What a loaded adapter learned (its record's ``learned`` section), read once; None if unknown."""
        from setpoint.adapters.lora.knowledge import read_card

        if adapter is None:
            return None
        directory = self.generator().adapters.get(adapter)
        if directory is None:
            return None
        with self._lock:
            if directory not in self._cards:
                self._cards[directory] = read_card(directory, adapter)
            return self._cards[directory]

    def knowledge_adapters(self, folders: tuple[str, ...]) -> list[AdapterCard]:
        """The registry: each folder's adapter loaded once on the one base model, with its card.

        Names are the folder names (``-2``, ``-3``… when two folders share one); an adapter
        without a ``learned`` record gets an empty card (chosen by signal only).
        """
        from setpoint.adapters.lora.knowledge import AdapterCard

        generator = self.generator()
        cards: list[AdapterCard] = []
        with self._lock:
            for folder in folders:
                directory = str(Path(folder).expanduser())
                loaded = {d: n for n, d in generator.adapters.items()}
                name = loaded.get(directory)
                if name is None:
                    base, n = Path(directory).name, 1
                    name = base
                    while name in generator.adapters:
                        n += 1
                        name = f"{base}-{n}"
                    generator.load_adapter(directory, name)
                card = self.adapter_card(name) or AdapterCard(name, directory)
                cards.append(card)
        return cards

    def stale_knowledge(self) -> StaleKnowledge:
        """The per-process cache of adapters' stale learned passages."""
        from setpoint.tools.freshness import StaleKnowledge

        with self._lock:
            if self._stale is None:
                self._stale = StaleKnowledge()
            return self._stale

    def retrieval_cache(self) -> InMemoryCache[Any]:
        """LangGraph's cache of this process's search results (see ``agents.retrieve``)."""
        from langgraph.cache.memory import InMemoryCache

        with self._lock:
            if self._retrievals is None:
                self._retrievals = InMemoryCache()
            return self._retrievals

    def forget_retrievals(self) -> None:
        """Drop cached search results; call after the index changed (an ingest, a deletion)."""
        self.retrieval_cache().clear()

    def linear_probe(self, path: str) -> LinearProbe:
        """The calibrated probe at ``path``, loaded once."""
        from setpoint.adapters.domain.linear_probe import LinearProbe

        with self._lock:
            if path not in self._probes:
                self._probes[path] = LinearProbe.load(Path(path).expanduser())
            return self._probes[path]

    def reader_probe(self, adapter: str | None) -> ReaderProbe | None:
        """The uncertainty probe stored with the loaded reader ``adapter`` (loaded once), or None."""
        from setpoint.adapters.domain.reader_probe import load_reader_probe

        directory = self.generator().adapters.get(adapter) if adapter is not None else None
        if directory is None:
            return None
        with self._lock:
            if directory not in self._reader_probes:
                self._reader_probes[directory] = load_reader_probe(directory)
            return self._reader_probes[directory]

    def set_reader_probe(self, directory: str, probe: ReaderProbe | None) -> None:
        """Score the reader adapter loaded from ``directory`` with ``probe`` from now on.

        None forgets the override: the next read loads the adapter's own ``probe.json``.
        ``setpoint calibrate --reader --data`` records features this way.
        """
        with self._lock:
            if probe is None:
                self._reader_probes.pop(directory, None)
            else:
                self._reader_probes[directory] = probe

    def policy(self, path: str | None = None) -> Policy:
        from setpoint.tools.policy import load_policy

        return load_policy(
            path or (str(self.settings.policy_file) if self.settings.policy_file else None)
        )

    def warm_up_retrieval(self) -> None:
        """Start connecting to Weaviate in the background (overlaps model loading)."""
        with self._lock:
            if self._warmup is None:
                pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="setpoint-warmup")
                self._warmup = pool.submit(self._connect)
                pool.shutdown(wait=False)

    def _connect(self) -> bool:
        try:
            self.store().connect()
        except SetpointError:
            return False
        return True

    def retrieval_available(self) -> bool:
        """Whether the store answers now.

        The first call waits for the background warm-up. Later calls ask the store again
        (``is_available``: a loopback liveness probe, about a millisecond) once the last
        answer is ``AVAILABILITY_TTL_S`` old (``UNAVAILABLE_TTL_S`` while it is down: a
        reconnect can mean starting the embedded server), so an index that went down, or
        came back, after the warm-up is seen; a store without ``is_available`` is asked to
        ``connect``.
        """
        self.warm_up_retrieval()
        assert self._warmup is not None
        first = self._warmup.result()
        now = time.monotonic()
        with self._lock:
            if self._available_at is None:
                self._available, self._available_at = first, now
                return first
            ttl = self.AVAILABILITY_TTL_S if self._available else self.UNAVAILABLE_TTL_S
            if now - self._available_at < ttl:
                return self._available
            self._available_at = now  # one re-check per interval, even while it runs
        available = self._probe_store()
        with self._lock:
            self._available = available
        return available

    def _probe_store(self) -> bool:
        try:
            store = self.store()
            check = getattr(store, "is_available", None)
            if check is not None:
                return bool(check())
            store.connect()
        except Exception:  # any failure to reach the store means: not available now
            return False
        return True

    def close(self) -> None:
        """Close the store (and stop an embedded server this process started)."""
        # Wait for a warm-up outside the lock: the warm-up thread takes the lock to build the
        # store, so waiting while holding it deadlocks a run that fails before the warm-up starts.
        warmup = self._warmup
        if warmup is not None:
            warmup.result()
        with self._lock:
            if self._store is not None and hasattr(self._store, "close"):
                self._store.close()
