"""Helpers for tests that run aeflow or Prefect as real subprocesses (importable from any test:
pytest puts this folder on sys.path for tests/conftest.py)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess


def stop_process_group(process: subprocess.Popen, timeout_s: float = 15) -> None:
    """Stop a process started with ``start_new_session=True`` and all its children: SIGTERM, then
    SIGKILL when it has not exited within ``timeout_s`` seconds."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=timeout_s)
