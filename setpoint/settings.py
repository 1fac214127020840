"""Process-wide settings, read once from ``SETPOINT_*`` environment variables (CLI flags override them)."""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from setpoint.errors import ConfigError
from setpoint.graphs.context import DEFAULT_SETPOINT

__all__ = [
    "CONSISTENCY_LEVELS",
    "EMBED_BACKENDS",
    "INGEST_BATCH",
    "WEAVIATE_VERSION",
    "Settings",
    "default_cache_dir",
]

#: Replica agreement a read or write waits for (Weaviate's consistency levels).
CONSISTENCY_LEVELS = ("ONE", "QUORUM", "ALL")

#: How texts are embedded; ``auto`` picks one of the others per machine.
EMBED_BACKENDS = ("auto", "torch", "onnx", "onnx-int8", "openvino")

#: Passages per embedding call and write request of an ingest or re-embed. Texts are
#: length-sorted within a call, so a larger one pads less: on SQuAD's 2,067 passages
#: (2 cores, OpenVINO) 256 ingested 1.09-1.13x faster than 64, and 512 no faster than 256.
INGEST_BATCH = 256

#: The Weaviate server version ``setpoint setup`` builds and the embedded server runs.
WEAVIATE_VERSION = "v1.39.0"


def default_cache_dir() -> Path:
    """Where built and converted artifacts live (``SETPOINT_CACHE_DIR`` or the user cache dir)."""
    explicit = os.environ.get("SETPOINT_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("setpoint", appauthor=False))


def _env(name: str) -> str | None:
    value = os.environ.get(f"SETPOINT_{name}")
    return value if value not in (None, "") else None


def _env_float(name: str, default: float) -> float:
    raw = _env(name)
    if raw is None:
        return default
    try:
        return math.inf if raw.lower() in {"inf", "infinity"} else float(raw)
    except ValueError:
        raise ConfigError(f"SETPOINT_{name}={raw!r} is not a number; set it to e.g. 2.5") from None


def _env_int(name: str, default: int) -> int:
    raw = _env(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"SETPOINT_{name}={raw!r} is not an integer") from None


def _env_bool(name: str, default: bool) -> bool:
    raw = _env(name)
    if raw is None:
        return default
    if raw.lower() in {"1", "true", "yes", "on"}:
        return True
    if raw.lower() in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"SETPOINT_{name}={raw!r} is not a boolean; use true or false")


@dataclass(frozen=True)
class Settings:
    """Everything setpoint reads from the environment.

    Example:
        >>> s = Settings.from_env()
        >>> s.weaviate_binary.name
        'weaviate-server-v1.39.0'
    """

    cache_dir: Path = field(default_factory=default_cache_dir)
    #: Which packaged generator to provision and load (``SETPOINT_MODEL``; a key of
    #: ``adapters.model.catalog.MODELS``).
    model: str = "smollm2-135m"
    #: A local Hugging Face model directory that replaces the packaged generator.
    model_dir: Path | None = None
    #: A local sentence-transformers directory that replaces the packaged all-MiniLM-L6-v2.
    embedder_dir: Path | None = None
    #: How passages and queries are embedded (``SETPOINT_EMBED_BACKEND``): auto, torch,
    #: onnx, onnx-int8 or openvino (see ``adapters.model.embedder.Embedder``).
    embed_backend: str = "auto"
    #: An external Weaviate (``http://host:port``); unset means the embedded local server.
    weaviate_url: str | None = None
    weaviate_grpc_port: int | None = None
    #: Kept out of ``repr()``: settings end up in debug logs and error reports.
    weaviate_api_key: str | None = field(default=None, repr=False)
    #: Require an API key on the Weaviate that setpoint starts itself (the key is
    #: ``weaviate_api_key``, else a random one per start). None: on for the served graph
    #: (``setpoint serve``, ``langgraph dev``; see ``for_server``), off for in-process use.
    weaviate_auth: bool | None = None
    weaviate_binary_override: Path | None = None
    weaviate_data_override: Path | None = None
    weaviate_timeout_s: float = 10.0
    collection: str = "SetpointPassages"
    #: Copies of every object a new collection keeps (3 on a 3-node cluster; 1 on one node).
    replication_factor: int = 1
    #: How many replicas must answer a read or acknowledge a write: ONE, QUORUM or ALL.
    consistency_level: str = "QUORUM"
    trace_file_override: Path | None = None
    #: Put prompt and answer text into spans (off by default: traces may leave the machine).
    trace_content: bool = False
    trace_console: bool = False
    policy_file: Path | None = None
    max_question_chars: int = 2000
    #: The thermostat's entropy setpoint (``SETPOINT_SETPOINT``); None: the generator's own
    #: calibrated default (``thermostat_setpoint``).
    setpoint: float | None = None
    threads: int | None = None
    #: The generator's float type when serving (``SETPOINT_PRECISION``): ``auto`` (bfloat16
    #: on CPUs that compute it natively, else float32), ``float32`` or ``bfloat16``.
    #: Training (``setpoint tune``, ``distill``) always runs in float32.
    precision: str = "auto"
    #: Knowledge adapters (PEFT folders) the graph picks from per question
    #: (``SETPOINT_ADAPTERS``, comma-separated); see ``agents.probe.select_knowledge``.
    adapters: tuple[str, ...] = ()
    #: ``calibration.json`` from ``setpoint calibrate``: its probe and probe setpoint become
    #: the default run context.
    calibration_file: Path | None = None
    #: Pause escalated runs for a human reviewer (``setpoint review``) instead of abstaining.
    review: bool = False
    #: Where paused runs are kept: a SQLite file path or ``sqlite:///path``, or a
    #: ``postgresql://`` URL (needs ``pip install 'setpoint[postgres]'``). Default: SQLite
    #: ``<cache>/checkpoints.sqlite``.
    checkpoint_url: str | None = field(default=None, repr=False)  # may hold a password
    #: Decode concurrent runs' tokens together in one batch (``SETPOINT_BATCHING``); off
    #: serialises every generation behind one lock (the baseline of benchmarks/load.py).
    #: None: on where runs arrive concurrently (the served graph and the chat app; see
    #: ``for_server``), off for in-process use, where one caller asks at a time.
    batching: bool | None = None
    #: Decode steps of grouped-query models on packed key/value heads
    #: (``SETPOINT_PACKED_DECODE``, ``adapters.model.attention``); false keeps transformers'
    #: own SDPA rule, which runs a lone row's steps through the slower ``enable_gqa`` kernel.
    packed_decode: bool = True
    #: Rows decoded together at most (``SETPOINT_MAX_BATCH``).
    max_batch: int = 16
    #: Rows waiting for a batch place at most (``SETPOINT_MAX_QUEUE``); beyond it a call
    #: fails at once with ``BusyError`` ("busy, retry after N s").
    max_queue: int = 64

    @classmethod
    def from_env(cls) -> Settings:
        """Read ``SETPOINT_*`` variables; unset ones keep their defaults."""

        def path(name: str) -> Path | None:
            raw = _env(name)
            return Path(raw).expanduser() if raw else None

        threads = _env_int("THREADS", 0)
        grpc = _env_int("WEAVIATE_GRPC_PORT", 0)
        settings = cls(
            model=(_env("MODEL") or "smollm2-135m").strip().lower(),
            model_dir=path("MODEL_DIR"),
            embedder_dir=path("EMBEDDER_DIR"),
            embed_backend=(_env("EMBED_BACKEND") or "auto").lower(),
            weaviate_url=_env("WEAVIATE_URL"),
            weaviate_grpc_port=grpc or None,
            weaviate_api_key=_env("WEAVIATE_API_KEY"),
            weaviate_auth=None
            if _env("WEAVIATE_AUTH") is None
            else _env_bool("WEAVIATE_AUTH", True),
            weaviate_binary_override=path("WEAVIATE_BINARY"),
            weaviate_data_override=path("WEAVIATE_DATA"),
            weaviate_timeout_s=_env_float("WEAVIATE_TIMEOUT", 10.0),
            collection=_env("COLLECTION") or "SetpointPassages",
            replication_factor=_env_int("REPLICATION_FACTOR", 1),
            consistency_level=(_env("CONSISTENCY_LEVEL") or "QUORUM").upper(),
            trace_file_override=path("TRACE_FILE"),
            trace_content=_env_bool("TRACE_CONTENT", False),
            trace_console=_env_bool("TRACE_CONSOLE", False),
            policy_file=path("POLICY_FILE"),
            max_question_chars=_env_int("MAX_QUESTION_CHARS", 2000),
            setpoint=None if _env("SETPOINT") is None else _env_float("SETPOINT", DEFAULT_SETPOINT),
            threads=threads or None,
            precision=(_env("PRECISION") or "auto").strip().lower(),
            adapters=tuple(a.strip() for a in (_env("ADAPTERS") or "").split(",") if a.strip()),
            calibration_file=path("CALIBRATION"),
            review=_env_bool("REVIEW", False),
            checkpoint_url=_env("CHECKPOINT_URL"),
            batching=None if _env("BATCHING") is None else _env_bool("BATCHING", False),
            packed_decode=_env_bool("PACKED_DECODE", True),
            max_batch=_env_int("MAX_BATCH", 16),
            max_queue=_env_int("MAX_QUEUE", 64),
        )
        settings.validate()
        return settings

    def validate(self) -> None:
        """Reject values no run could use."""
        if not self.collection[:1].isupper() or not self.collection.isidentifier():
            raise ConfigError(
                f"collection name {self.collection!r} must start with a capital letter and "
                "contain only letters, digits and underscores (Weaviate's rule)"
            )
        from setpoint.adapters.model.catalog import model_spec

        model_spec(self.model)
        if self.max_question_chars < 1:
            raise ConfigError("SETPOINT_MAX_QUESTION_CHARS must be at least 1")
        if self.replication_factor < 1:
            raise ConfigError("SETPOINT_REPLICATION_FACTOR must be at least 1")
        if self.consistency_level not in CONSISTENCY_LEVELS:
            raise ConfigError(
                f"SETPOINT_CONSISTENCY_LEVEL={self.consistency_level!r} is not one of "
                f"{', '.join(CONSISTENCY_LEVELS)}"
            )
        if self.max_batch < 1 or self.max_queue < 0:
            raise ConfigError(
                "SETPOINT_MAX_BATCH must be at least 1 and SETPOINT_MAX_QUEUE at least 0"
            )
        if self.embed_backend not in EMBED_BACKENDS:
            raise ConfigError(
                f"SETPOINT_EMBED_BACKEND={self.embed_backend!r} is not one of "
                f"{', '.join(EMBED_BACKENDS)}"
            )
        from setpoint.adapters.model.precision import PRECISIONS

        if self.precision not in PRECISIONS:
            raise ConfigError(
                f"SETPOINT_PRECISION={self.precision!r} is not one of {', '.join(PRECISIONS)}"
            )
        if self.weaviate_timeout_s <= 0:
            raise ConfigError("SETPOINT_WEAVIATE_TIMEOUT must be a positive number of seconds")

    def for_server(self) -> Settings:
        """These settings for a long-running server: API-key auth on the embedded Weaviate, batching.

        Weaviate's gRPC port listens on every interface, so a server deployment does not
        leave it open to anonymous clients; ``SETPOINT_WEAVIATE_AUTH=false`` opts out.
        Batching is on (``for_concurrent_runs``).

        Example:
            >>> s = Settings().for_server()
            >>> s.weaviate_auth, s.batching
            (True, True)
            >>> Settings(batching=False, weaviate_auth=False).for_server().batching
            False
        """
        concurrent = self.for_concurrent_runs()
        if concurrent.weaviate_auth is not None:
            return concurrent
        return concurrent.replace(weaviate_auth=True)

    def for_concurrent_runs(self) -> Settings:
        """These settings where several runs arrive at once: batching on unless set.

        Through ``setpoint serve`` with 16 conversations, batched decoding answered
        1.19-1.37x the requests of serialised generation (p50 19.2 s against 26.1 s at
        1.37x), and 0.96-1.07x with one (BENCHMARKS.md "Many conversations at once");
        ``SETPOINT_BATCHING=off`` keeps the serialised mode.

        Example:
            >>> Settings().batching, Settings().for_concurrent_runs().batching
            (None, True)
        """
        return self if self.batching is not None else self.replace(batching=True)

    def replace(self, **changes: object) -> Settings:
        """A copy with some fields changed (validated)."""
        new = dataclasses.replace(self, **changes)  # type: ignore[arg-type]
        new.validate()
        return new

    @property
    def model_cache_dir(self) -> Path:
        """The fp32 safetensors conversion of the packaged GGUF generator (``model``)."""
        from setpoint.adapters.model.catalog import model_spec

        return self.cache_dir / "models" / model_spec(self.model).name

    @property
    def thermostat(self) -> dict[str, float | int]:
        """The thermostat fields runs start from: the model's calibrated ones, the configured setpoint over them.

        Example:
            >>> Settings().thermostat, Settings(setpoint=2.5).thermostat
            ({'setpoint': 1.6}, {'setpoint': 2.5})
            >>> Settings(model="qwen2.5-coder-0.5b").thermostat
            {'setpoint': 2.0, 'warmup_steps': 0, 'consecutive_steps': 1}
        """
        fields: dict[str, float | int] = {"setpoint": DEFAULT_SETPOINT}
        if self.model_dir is None:
            from setpoint.adapters.model.catalog import model_spec

            fields = model_spec(self.model).thermostat
        if self.setpoint is not None:
            fields = {**fields, "setpoint": self.setpoint}
        return fields

    @property
    def thermostat_setpoint(self) -> float:
        """The entropy setpoint runs start from (``thermostat``'s)."""
        return float(self.thermostat["setpoint"])

    @property
    def generator_dir(self) -> Path:
        """The generator to load: the configured directory or the converted default."""
        return self.model_dir if self.model_dir is not None else self.model_cache_dir

    @property
    def weaviate_binary(self) -> Path:
        if self.weaviate_binary_override is not None:
            return self.weaviate_binary_override
        return self.cache_dir / "bin" / f"weaviate-server-{WEAVIATE_VERSION}"

    @property
    def weaviate_data_dir(self) -> Path:
        if self.weaviate_data_override is not None:
            return self.weaviate_data_override
        return self.cache_dir / "weaviate-data"

    @property
    def trace_file(self) -> Path:
        if self.trace_file_override is not None:
            return self.trace_file_override
        return self.cache_dir / "traces" / "spans.jsonl"

    @property
    def checkpoints(self) -> str:
        """The checkpointer target: ``checkpoint_url`` or the default SQLite file."""
        return self.checkpoint_url or str(self.cache_dir / "checkpoints.sqlite")
