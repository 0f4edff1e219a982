"""The scoring process's models and torch threads.

A model is loaded from the registry once per process and version (:func:`load_model`), and each
scoring call sizes its torch thread pool from the number of batches being scored in this process at
that moment (:func:`active_scorer`, :func:`default_torch_threads`).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from models.cpu import choose_torch_threads
from models.registry import ModelRegistry
from tasks.io import Storage

_model_cache: dict[tuple[str, str], Any] = {}
_model_cache_lock = threading.Lock()


def load_model(storage: Storage, version: str | None) -> tuple[Any, str]:
    """(detector, version) for ``version`` or the champion, loaded once per process and version."""
    registry = ModelRegistry(storage.models, storage.options)
    resolved = registry.resolve(version)
    key = (storage.models, resolved)
    with _model_cache_lock:
        if key not in _model_cache:
            _model_cache[key] = registry.load(resolved)[0]
        return _model_cache[key], resolved


# Scoring calls running in this process right now; each sizes its torch thread pool from it.
_active_scorers = 0
_active_scorers_lock = threading.Lock()


@contextlib.contextmanager
def active_scorer() -> Iterator[int]:
    """Count one scoring call for as long as it runs; yields the calls running now (with it)."""
    global _active_scorers
    with _active_scorers_lock:
        _active_scorers += 1
        active = _active_scorers
    try:
        yield active
    finally:
        with _active_scorers_lock:
            _active_scorers -= 1


def default_torch_threads(concurrent_batches: int, scoring_threads: int = 1) -> int:
    """Torch intra-op threads for one scoring thread: ``AEFLOW_TORCH_THREADS`` when set, else the
    CPUs this process may use that busy neighbours leave idle (affinity, cgroup quota and load:
    :func:`models.cpu.usable_cpus`) less one for the reading and writing threads, shared by all
    scoring threads of the batches scored at once, at least 1.

    Why not torch's default (all CPUs): more threads than idle CPUs only wait for one another, and
    make the forward pass several times slower beside busy neighbours (4.5x on the 2-core machine
    of docs/benchmarks/score_speed.md; docs/benchmarks/contention.md).
    """
    return choose_torch_threads(reserve=1, share=concurrent_batches * scoring_threads)
