"""The Prefect API watch of flow runs and the bounded stop of `aeflow serve` (issue 12, defect 10);
the end-to-end behaviour against a real server is in tests/e2e/test_prefect_api_loss.py."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from subprocess_support import free_port

from flows import prefect_api
from flows.cli import main
from flows.errors import EXIT_PREFECT_API_LOST
from flows.prefect_api import GRACE_ENV, ApiWatch, api_problem, grace_seconds

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_an_api_nobody_listens_on_is_named_as_refused():
    assert api_problem(f"http://127.0.0.1:{free_port()}/api", timeout_s=1) == "connection refused"


def test_the_watch_reports_a_silent_api_once_its_grace_has_passed():
    lost: list[tuple[str, float]] = []
    reported = threading.Event()

    def on_lost(problem: str, silent_s: float) -> None:
        lost.append((problem, silent_s))
        reported.set()

    started = time.monotonic()
    ApiWatch(f"http://127.0.0.1:{free_port()}/api", 0.6, on_lost, poll_s=0.1).start()
    assert reported.wait(10)
    assert time.monotonic() - started >= 0.6
    assert len(lost) == 1 and lost[0][0] == "connection refused" and lost[0][1] >= 0.6


def test_a_stopped_watch_reports_nothing():
    lost = []
    watch = ApiWatch(f"http://127.0.0.1:{free_port()}/api", 0.3, lambda *a: lost.append(a), 0.1)
    watch.start().stop()
    time.sleep(0.8)
    assert lost == []


def test_only_a_process_that_exists_for_the_run_is_stopped(monkeypatch, caplog):
    exits = []
    monkeypatch.setattr(prefect_api, "exit_now", lambda message, code: exits.append(code))
    monkeypatch.delenv("PREFECT__FLOW_RUN_ID", raising=False)
    lost = prefect_api._run_lost_its_api("http://127.0.0.1:9/api", 30.0)
    lost("connection refused", 31.0)  # pytest's process: logged, never stopped
    assert exits == []
    assert "the Prefect API at http://127.0.0.1:9/api has not answered for 31 s" in caplog.text
    with prefect_api.command_owns_process():
        lost("connection refused", 31.0)
    assert exits == [EXIT_PREFECT_API_LOST]
    assert not prefect_api.process_exists_for_the_run()


@pytest.mark.parametrize("bad", ["0", "-5", "soon", "inf"])
def test_a_bad_grace_is_named_before_any_flow_starts(monkeypatch, capsys, bad):
    monkeypatch.setenv(GRACE_ENV, bad)
    with pytest.raises(ValueError, match=rf"{GRACE_ENV} must be a positive number of seconds"):
        grace_seconds()
    assert main(["score", "--config", "no-such-config.toml"]) == 2
    assert f"aeflow: error: {GRACE_ENV} must be a positive number" in capsys.readouterr().err


def test_a_bad_thread_count_is_named_before_any_flow_starts(monkeypatch, capsys):
    monkeypatch.setenv("AEFLOW_TORCH_THREADS", "many")
    assert main(["score", "--config", "no-such-config.toml"]) == 2
    assert "aeflow: error: AEFLOW_TORCH_THREADS must be a positive whole number" in (
        capsys.readouterr().err
    )


def test_grace_defaults_to_thirty_seconds(monkeypatch):
    monkeypatch.delenv(GRACE_ENV, raising=False)
    assert grace_seconds() == 30.0
    monkeypatch.setenv(GRACE_ENV, "2.5")
    assert grace_seconds() == 2.5


def test_a_command_that_runs_flows_fails_at_once_when_its_prefect_api_does_not_answer(
    monkeypatch, capsys
):
    api = f"http://127.0.0.1:{free_port()}/api"
    monkeypatch.setenv("PREFECT_API_URL", api)
    # Prefect's own client would retry for half a minute and end in a traceback.
    code = main(["score", "--config", str(REPO_ROOT / "configs" / "demo.toml")])
    assert code == EXIT_PREFECT_API_LOST
    err = capsys.readouterr().err
    assert f"aeflow: error: the Prefect API at {api} (PREFECT_API_URL) does not answer" in err
    assert "connection refused" in err


@pytest.mark.parametrize("api_answers", [False, True])
def test_sigterm_while_serve_is_still_starting_names_a_lost_api(monkeypatch, api_answers):
    """A SIGTERM that arrives after the deployments exist but before the runner has started (a
    busy machine stretches that window) used to leave as 'interrupted' (130) even with the
    Prefect API gone; it must say the API is lost (5), as it does once serving."""
    from flows.deployments import bounded_runner
    from flows.prefect_api import ShutdownGuard

    monkeypatch.setenv("PREFECT_API_URL", f"http://127.0.0.1:{free_port()}/api")
    if api_answers:
        monkeypatch.setattr("flows.prefect_api.api_problem", lambda *a, **k: None)
    guard = ShutdownGuard(timeout_s=1e9)  # its exit timer must never fire inside pytest
    runner = bounded_runner(guard)
    assert not runner.started
    with pytest.raises(KeyboardInterrupt):
        runner.stop_serving("SIGTERM")
    assert guard.exit_code == (0 if api_answers else EXIT_PREFECT_API_LOST)
