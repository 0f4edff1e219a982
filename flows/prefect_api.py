"""Living with a Prefect API that goes away: flow runs fail fast, `aeflow serve` stops promptly.

Prefect's client retries an unreachable API for about a minute per call, and at exit it drains its
queued events at several seconds each, so a run whose API died used to stall for minutes, and
`aeflow serve` hung on SIGTERM while pausing its schedules. Here:

- every aeflow flow carries :data:`API_WATCH_HOOKS`: while one runs, a thread asks the API's
  ``/health`` every few seconds; when it has not answered for ``AEFLOW_PREFECT_API_GRACE_S``
  seconds (30 by default) the run is stopped with one message naming the API's URL and exit code
  :data:`EXIT_PREFECT_API_LOST`. Only a process that exists for the run is stopped (the `aeflow`
  command, a served run's subprocess, `python -m prefect.engine`); a flow called from a notebook
  or a service logs the error and leaves its process alone.
- :class:`ShutdownGuard` bounds `aeflow serve`'s shutdown (see flows/deployments.py).

Stopping a run this way is as safe as a kill: a batch's output is committed by rename before its
success marker is written, so a batch cut short is scored again by the next run (docs/outputs.md).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from flows.errors import EXIT_INTERRUPTED, EXIT_PREFECT_API_LOST

GRACE_ENV = "AEFLOW_PREFECT_API_GRACE_S"
DEFAULT_GRACE_S = 30.0

logger = logging.getLogger("aeflow.prefect_api")


# ---------------------------------------------------------------------------------- the API
def api_problem(api_url: str, timeout_s: float = 2.0) -> str | None:
    """Why the Prefect API at ``api_url`` does not answer its health check within ``timeout_s``
    seconds (e.g. "connection refused"), or None when it answers."""
    import httpx

    try:
        response = httpx.get(f"{api_url.rstrip('/')}/health", timeout=timeout_s)
    except httpx.TimeoutException:
        return f"no answer within {timeout_s:g} s"
    except httpx.HTTPError as error:
        cause = error.__cause__ or error
        text = str(cause).split("] ", 1)[-1] or type(cause).__name__
        return text.strip().lower()
    return None if response.status_code == 200 else f"health check answered {response.status_code}"


class PrefectApiUnavailable(RuntimeError):
    """The configured Prefect API does not answer; the `aeflow` command exits with
    :data:`EXIT_PREFECT_API_LOST`."""


def require_prefect_api() -> None:
    """Before a command runs flows (once its arguments and config are checked): when
    PREFECT_API_URL names an API that does not answer, raise :class:`PrefectApiUnavailable` at
    once (Prefect's client would retry for about half a minute, then print a traceback). Without
    PREFECT_API_URL, Prefect starts a temporary local server: nothing to check."""
    api_url = os.environ.get("PREFECT_API_URL", "").strip().rstrip("/")
    if not api_url:
        return
    problem = api_problem(api_url)
    if problem is not None:
        raise PrefectApiUnavailable(
            f"the Prefect API at {api_url} (PREFECT_API_URL) does not answer ({problem}); start "
            "it (`prefect server start`), fix PREFECT_API_URL, or unset it to run on a temporary "
            "local server"
        )


def grace_seconds() -> float:
    """Seconds a run waits for an API that stopped answering: ``AEFLOW_PREFECT_API_GRACE_S``.

    Raises:
        ValueError: the variable is set to something other than a positive number.
    """
    value = os.environ.get(GRACE_ENV, "").strip()
    if not value:
        return DEFAULT_GRACE_S
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds > 0 or seconds == float("inf"):
        raise ValueError(
            f"{GRACE_ENV} must be a positive number of seconds, got {value!r}; e.g. "
            f"{GRACE_ENV}=60, or unset it for {DEFAULT_GRACE_S:g} s"
        )
    return seconds


# ---------------------------------------------------------------------- stopping the process
_owned_by_command = False


@contextlib.contextmanager
def command_owns_process() -> Iterator[None]:
    """Within this block, flow runs of this process may stop it when their API goes away (the
    `aeflow` command wraps its handler in it)."""
    global _owned_by_command
    previous, _owned_by_command = _owned_by_command, True
    try:
        yield
    finally:
        _owned_by_command = previous


def process_exists_for_the_run() -> bool:
    """True in the `aeflow` command, in a served run's subprocess (spawned by `aeflow serve`'s
    runner) and under ``python -m prefect.engine`` (a worker's run): processes that exist only
    to run the flow, so stopping them stops nothing else."""
    return (
        _owned_by_command
        or bool(os.environ.get("PREFECT__FLOW_RUN_ID"))
        or multiprocessing.parent_process() is not None
    )


def _child_pids() -> list[int]:
    """This process's children (Linux /proc; none elsewhere)."""
    children, me = [], os.getpid()
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            with (
                contextlib.suppress(OSError, ValueError, IndexError),
                open(f"/proc/{entry.name}/stat") as stat,
            ):
                # "pid (comm) state ppid ...": the fields after the last ')'
                if int(stat.read().rpartition(")")[2].split()[1]) == me:
                    children.append(int(entry.name))
    return children


def exit_now(message: str, code: int) -> None:
    """Write ``message`` to stderr, ask this process's children (flow-run subprocesses, Dask
    workers, a temporary Prefect server) to stop, and exit with ``code`` at once: no atexit
    handlers, which would wait on the API again."""
    with contextlib.suppress(OSError):
        sys.stdout.flush()
    with contextlib.suppress(OSError):
        os.write(2, (message.rstrip("\n") + "\n").encode(errors="replace"))
    for pid in _child_pids():
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)
    os._exit(code)


# -------------------------------------------------------------------------- watching a run
class ApiWatch:
    """A daemon thread that checks the Prefect API at ``api_url`` every ``poll_s`` seconds and
    calls ``on_lost(reason, silent_s)`` once it has not answered for ``grace_s`` seconds."""

    def __init__(
        self,
        api_url: str,
        grace_s: float,
        on_lost: Callable[[str, float], None],
        poll_s: float | None = None,
    ) -> None:
        self.api_url = api_url
        self.grace_s = grace_s
        self.on_lost = on_lost
        self.poll_s = poll_s if poll_s is not None else min(2.0, grace_s / 4)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="aeflow-api-watch", daemon=True)

    def start(self) -> ApiWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _watch(self) -> None:
        last_answer = time.monotonic()
        while not self._stop.wait(self.poll_s):
            problem = api_problem(self.api_url, timeout_s=max(0.5, min(2.0, self.poll_s)))
            now = time.monotonic()
            if problem is None:
                last_answer = now
            elif now - last_answer >= self.grace_s and not self._stop.is_set():
                self.on_lost(problem, now - last_answer)
                return


_watch_lock = threading.Lock()
_watch: ApiWatch | None = None
_running_flows: dict[str, str] = {}  # flow run id -> "'name' (flow)"


def _api_url_of_the_run() -> str | None:
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    client = getattr(context, "client", None)
    url = getattr(client, "api_url", None)
    if url is None:
        from prefect.settings import PREFECT_API_URL

        url = PREFECT_API_URL.value()
    return str(url).rstrip("/") if url else None


def _run_lost_its_api(api_url: str, grace_s: float) -> Callable[[str, float], None]:
    def lost(problem: str, silent_s: float) -> None:
        runs = ", ".join(_running_flows.values()) or "a flow run"
        message = (
            f"aeflow: error: the Prefect API at {api_url} has not answered for {silent_s:.0f} s "
            f"({problem}) during {runs}; stopping the run now instead of waiting for it. Work "
            "committed before this point is kept (a batch cut short has no success marker and "
            "is scored again by the next run). Bring the API back, or unset PREFECT_API_URL to "
            f"use a temporary local server, and run it again. {GRACE_ENV} sets how long a run "
            f"waits for the API (now {grace_s:g} s)."
        )
        if process_exists_for_the_run():
            exit_now(message, EXIT_PREFECT_API_LOST)
        logger.error(
            "%s (this process is not stopped: it does not exist only for the run)", message
        )

    return lost


def watch_prefect_api(flow: Any, flow_run: Any, state: Any) -> None:
    """on_running hook: watch the API while any aeflow flow runs in this process."""
    global _watch
    api_url = _api_url_of_the_run()
    if api_url is None:
        return
    grace_s = grace_seconds()
    with _watch_lock:
        _running_flows[str(flow_run.id)] = f"flow run '{flow_run.name}' ({flow.name})"
        if _watch is None or _watch.api_url != api_url:
            if _watch is not None:
                _watch.stop()
            _watch = ApiWatch(api_url, grace_s, _run_lost_its_api(api_url, grace_s)).start()


def stop_watching_prefect_api(flow: Any, flow_run: Any, state: Any) -> None:
    """Terminal-state hook: stop watching once no aeflow flow runs in this process."""
    global _watch
    with _watch_lock:
        _running_flows.pop(str(flow_run.id), None)
        if not _running_flows and _watch is not None:
            _watch.stop()
            _watch = None


API_WATCH_HOOKS: dict[str, list] = {
    "on_running": [watch_prefect_api],
    "on_completion": [stop_watching_prefect_api],
    "on_failure": [stop_watching_prefect_api],
    "on_crashed": [stop_watching_prefect_api],
    "on_cancellation": [stop_watching_prefect_api],
}
"""Flow-decorator hooks: ``@flow(name=..., **API_WATCH_HOOKS)``."""


# ------------------------------------------------------------------------ stopping `serve`
class ShutdownGuard:
    """Bounds how long a stopping `aeflow serve` may take.

    :meth:`begin` (on SIGTERM or Ctrl-C): checks the API once (2 s at most); when it does not
    answer, schedules are not paused (Prefect's pause would retry for minutes) and the exit code
    becomes :data:`EXIT_PREFECT_API_LOST`; then arms a timer that exits the process after
    ``timeout_s`` seconds whatever is still waiting. A second signal exits at once.
    """

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.exit_code = 0
        self.api_url: str | None = None
        self._began = False

    def begin(self, signal_name: str, api_url: str | None) -> bool:
        """Start stopping; returns False when stopping had already begun (the process exits)."""
        if self._began:
            exit_now(
                f"aeflow serve: {signal_name} again: exiting now",
                self.exit_code or EXIT_INTERRUPTED,
            )
            return False
        self._began = True
        self.api_url = api_url
        sys.stderr.write(
            f"\naeflow serve: {signal_name} received: stopping (at most {self.timeout_s:g} s; "
            "send it again to exit at once)\n"
        )
        sys.stderr.flush()
        problem = api_problem(api_url) if api_url else None
        if problem is not None:
            self.exit_code = EXIT_PREFECT_API_LOST
            sys.stderr.write(
                f"aeflow: error: the Prefect API at {api_url} does not answer ({problem}): "
                "stopping without pausing the deployments' schedules, which stay active on the "
                "server (runs it schedules meanwhile wait for the next `aeflow serve`)\n"
            )
            sys.stderr.flush()
        timer = threading.Timer(self.timeout_s, self._deadline)
        timer.daemon = True
        timer.start()
        return True

    @property
    def pause_schedules(self) -> bool:
        """Whether the schedules may be paused on the way out (only while the API answers)."""
        return self.exit_code != EXIT_PREFECT_API_LOST

    def _deadline(self) -> None:
        where = f"the Prefect API at {self.api_url}" if self.api_url else "the Prefect API"
        exit_now(
            f"aeflow: error: `aeflow serve` did not stop within {self.timeout_s:g} s (waiting "
            f"on {where} or on runs in flight); exiting now. Runs still in flight were asked "
            "to stop; schedules may not be paused.",
            EXIT_PREFECT_API_LOST,
        )
