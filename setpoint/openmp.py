"""How torch's OpenMP threads wait between parallel regions; set when ``setpoint`` is imported, before torch is.

The GNU OpenMP runtime in torch's wheels reads ``OMP_WAIT_POLICY`` and ``GOMP_SPINCOUNT``
once, when torch is first imported, so they are set here, at ``import setpoint``, as
defaults: a value already in the environment wins, and torch imported before setpoint
keeps whatever it started with.

- ``OMP_WAIT_POLICY=PASSIVE``: an idle thread does not spin for long. On a CPU shared with
  the Weaviate server or other jobs, threads that spin without end stole the cores from
  the working ones: one query embedding took 90-120 ms spinning against 10-32 ms passive
  (BENCHMARKS.md, "Why ingestion misses 200 passages/s").
- ``GOMP_SPINCOUNT=20000``: but a fully passive thread sleeps after every parallel region
  and is woken for the next one, and a decode step of the generator is hundreds of small
  regions. Passive alone made a SmolLM2 decode step 1.5x slower and a 128-token prefill
  chunk 1.6x (2 threads); a short spin first (about 20,000 polls, tens of microseconds)
  keeps a thread awake between a pass's regions and still lets it sleep between passes.
  Sixteen conversations through ``setpoint serve`` with batching went from 0.54 to 0.73
  requests/s; one question at a time and ingest are unchanged within noise (BENCHMARKS.md,
  "OpenMP threads: a short spin before sleeping").

The spin count is only set when setpoint chose the wait policy: an explicit
``OMP_WAIT_POLICY`` in the environment is left to mean what it says.
"""

from __future__ import annotations

from collections.abc import MutableMapping

__all__ = ["OPENMP_DEFAULTS", "apply_openmp_defaults"]

#: What ``apply_openmp_defaults`` sets when the environment names no wait policy.
OPENMP_DEFAULTS = {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "20000"}


def apply_openmp_defaults(environ: MutableMapping[str, str]) -> None:
    """Set ``OPENMP_DEFAULTS`` in ``environ`` unless it already names a wait policy.

    Example:
        >>> env = {}
        >>> apply_openmp_defaults(env)
        >>> env
        {'OMP_WAIT_POLICY': 'PASSIVE', 'GOMP_SPINCOUNT': '20000'}
        >>> env = {"OMP_WAIT_POLICY": "ACTIVE"}
        >>> apply_openmp_defaults(env)
        >>> env
        {'OMP_WAIT_POLICY': 'ACTIVE'}
    """
    if "OMP_WAIT_POLICY" in environ:
        return
    for name, value in OPENMP_DEFAULTS.items():
        environ.setdefault(name, value)
