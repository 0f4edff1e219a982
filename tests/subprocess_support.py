"""Helpers for tests that run aeflow or Prefect as real subprocesses (importable from any test:
pytest puts this folder on sys.path for tests/conftest.py)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

BIN = Path(sys.executable).parent
AEFLOW = shutil.which("aeflow", path=str(BIN)) or shutil.which("aeflow")
PREFECT = shutil.which("prefect", path=str(BIN)) or "prefect"


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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def prefect_server(home: Path, timeout_s: float = 90) -> Iterator[str]:
    """`prefect server start` on loopback with its own SQLite database under ``home``; yields
    its API URL and stops it (and its children) on the way out. Raises RuntimeError with the
    server's log when it does not become healthy within ``timeout_s``."""
    import httpx

    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{home / 'prefect.db'}",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_UI_ENABLED": "false",
    }
    env.pop("PREFECT_API_URL", None)
    log = home / "server.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{api}/health", timeout=2).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        "the Prefect server did not start:\n" + log.read_text()[-3000:]
                    )
                time.sleep(1)
            yield api
        finally:
            stop_process_group(server)
