"""Child-process plumbing for the embedded server: one spawner thread, PDEATHSIG, /proc liveness, termination."""

from __future__ import annotations

import contextlib
import ctypes
import os
import queue
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

__all__ = [
    "STOP_GRACE_S",
    "die_with_parent",
    "is_alive",
    "is_weaviate",
    "spawn",
    "start_ticks",
    "terminate_pid",
]

T = TypeVar("T")
_PR_SET_PDEATHSIG = 1
#: How long a server gets to exit after SIGTERM before SIGKILL.
STOP_GRACE_S = 10.0


class _Spawner:
    """One long-lived daemon thread that forks every server child.

    ``PR_SET_PDEATHSIG`` fires when the *thread* that forked the child exits, not the
    process. Forking from a short-lived worker thread (a warm-up pool, a request handler)
    would kill the server the moment that thread finishes, so all spawns go through this
    thread, which lives exactly as long as the process.
    """

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._pid = -1
        self._lock = threading.Lock()

    def run(self, job: Callable[[], Any]) -> Any:
        with self._lock:
            # After os.fork() the child inherits this object but not the thread.
            if self._thread is None or not self._thread.is_alive() or self._pid != os.getpid():
                self._jobs = queue.SimpleQueue()
                self._thread = threading.Thread(
                    target=self._loop, name="setpoint-weaviate-spawner", daemon=True
                )
                self._pid = os.getpid()
                self._thread.start()
        done: Future[Any] = Future()
        self._jobs.put((job, done))
        return done.result()

    def _loop(self) -> None:
        while True:
            job, done = self._jobs.get()
            try:
                done.set_result(job())
            except BaseException as exc:
                done.set_exception(exc)


_spawner = _Spawner()


def spawn(job: Callable[[], T]) -> T:
    """Run ``job`` (one that forks a child) on the process's spawner thread; returns its result."""
    result: T = _spawner.run(job)
    return result


def die_with_parent(parent_pid: int) -> Callable[[], None]:
    """A ``preexec_fn`` for a child that gets SIGTERM when its spawning thread (or parent) dies."""

    def preexec() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        # The parent may have died between fork and prctl; then no signal will ever come.
        if os.getppid() != parent_pid:
            os._exit(1)

    return preexec


def _proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name, or None when there is no such process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may itself contain spaces or ')'.
    return raw[raw.rfind(")") + 2 :].split()


def is_alive(pid: int) -> bool:
    """A process that exists and is not a zombie (an exited child nobody has reaped yet)."""
    fields = _proc_stat(pid)
    if fields is None:
        return False
    if fields[0] not in {"Z", "X"}:
        return True
    # A leader thread that has exited shows "Z" while the process's other threads are
    # still shutting down; only when every thread is gone is the process really dead.
    try:
        tasks = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except (OSError, ValueError):
        return False
    for tid in tasks:
        try:
            raw = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        except OSError:
            continue
        state = raw[raw.rfind(")") + 2 :].split()[:1]
        if state and state[0] not in {"Z", "X"}:
            return True
    return False


def start_ticks(pid: int) -> int | None:
    """Process start time in clock ticks since boot: together with the pid it names one process."""
    fields = _proc_stat(pid)
    return int(fields[19]) if fields is not None and len(fields) > 19 else None


def is_weaviate(pid: int) -> bool:
    """A live process whose program is a ``weaviate-server``."""
    if not is_alive(pid):
        return False
    try:
        argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0", 1)[0]
    except OSError:
        return False
    return os.path.basename(argv0.decode(errors="replace")).startswith("weaviate-server")


def terminate_pid(pid: int, grace_s: float = STOP_GRACE_S) -> None:
    """SIGTERM a process we did not spawn, wait for it to go, SIGKILL if it will not."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if not is_alive(pid):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 2.0
    while is_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
