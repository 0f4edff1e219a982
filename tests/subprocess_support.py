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
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def api_healthy(api: str) -> bool:
    """Whether the Prefect API at ``api`` answers its health check."""
    import httpx

    try:
        return httpx.get(f"{api}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@contextlib.contextmanager
def started(args: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen]:
    """A subprocess in its own process group, its output in ``log``, stopped (group and all) on
    the way out."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            args, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            yield process
        finally:
            stop_process_group(process)


def wait_until(check, timeout: float, what: str, log: Path | None = None):
    """``check()``'s first truthy result, polled every second; fails after ``timeout`` seconds
    with the tail of ``log``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(1)
    tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{tail}")


@contextlib.contextmanager
def prefect_server_process(
    home: Path, timeout_s: float = 90, **settings: str
) -> Iterator[tuple[str, subprocess.Popen]]:
    """`prefect server start` on a free loopback port with its own SQLite database under
    ``home`` (extra ``settings`` in its environment); yields ``(api_url, process)`` once healthy
    and stops it (and its children) on the way out. Raises RuntimeError with the server's log
    when it does not become healthy within ``timeout_s``."""
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{home / 'prefect.db'}",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_UI_ENABLED": "false",
        **settings,
    }
    env.pop("PREFECT_API_URL", None)
    log = home / "server.log"
    args = [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    with started(args, env, log) as server:
        deadline = time.monotonic() + timeout_s
        while not api_healthy(api):
            if time.monotonic() > deadline:
                raise RuntimeError("the Prefect server did not start:\n" + log.read_text()[-3000:])
            time.sleep(1)
        yield api, server


@contextlib.contextmanager
def prefect_server(home: Path, timeout_s: float = 90, **settings: str) -> Iterator[str]:
    """:func:`prefect_server_process`, yielding only the API URL."""
    with prefect_server_process(home, timeout_s, **settings) as (api, _):
        yield api


@contextlib.contextmanager
def moto_s3_server(**env: str) -> Iterator[str]:
    """moto's S3 server in a subprocess on loopback (``env``: its settings, e.g.
    INITIAL_NO_AUTH_ACTION_COUNT="0" to check credentials); yields its endpoint URL. Skips the
    test when moto_server is not installed."""
    import pytest

    moto = shutil.which("moto_server", path=str(BIN)) or shutil.which("moto_server")
    if moto is None:
        pytest.skip("moto_server is not installed (pip install 'moto[server]')")
    port = free_port()
    server = subprocess.Popen(
        [moto, "-H", "127.0.0.1", "-p", str(port)],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process_group(server)
