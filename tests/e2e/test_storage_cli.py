"""`aeflow` against an S3 endpoint that refuses the credentials (issue 12, defect 6): one
`aeflow: error:` line naming the storage URL, no traceback.

The endpoint is moto's S3 server in a subprocess with authentication on
(INITIAL_NO_AUTH_ACTION_COUNT=0): it answers unknown access keys with 403 InvalidAccessKeyId, as AWS
does.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from subprocess_support import free_port, stop_process_group

from flows.errors import EXIT_STORAGE

REPO_ROOT = Path(__file__).resolve().parents[2]
BIN = os.path.dirname(sys.executable)
AEFLOW = shutil.which("aeflow", path=BIN) or shutil.which("aeflow")
MOTO = shutil.which("moto_server", path=BIN) or shutil.which("moto_server")


@pytest.fixture(scope="module")
def authenticating_s3():
    if MOTO is None:
        pytest.skip("moto_server is not installed (pip install 'moto[server]')")
    port = free_port()
    server = subprocess.Popen(
        [MOTO, "-H", "127.0.0.1", "-p", str(port)],
        env={**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "0"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.2)
    yield f"http://127.0.0.1:{port}"
    stop_process_group(server)


@pytest.mark.parametrize("command", [["score"], ["quarantine", "list"], ["models", "list"]])
def test_wrong_credentials_are_one_error_line_naming_the_storage(
    authenticating_s3, tmp_path, command
):
    text = (REPO_ROOT / "configs" / "demo.toml").read_text()
    text = text.replace(
        'root = "../data"',
        'root = "s3://aeflow-auth/root"\n'
        'options = { key = "AKIAWRONGWRONGWRONG0", secret = "wrong", client_kwargs = { '
        f'endpoint_url = "{authenticating_s3}", region_name = "us-east-1" }}, '
        "config_kwargs = { retries = { max_attempts = 1 } } }",
    )
    text = text.replace("../expectations/demo.json", str(REPO_ROOT / "expectations" / "demo.json"))
    config = tmp_path / "s3.toml"
    config.write_text(text)
    result = subprocess.run(
        [AEFLOW, *command, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=300,
        env={
            **os.environ,
            "PREFECT_HOME": tempfile.mkdtemp(dir=tmp_path),
            # `score` starts Prefect's temporary server: give it time on a busy machine
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
        },
    )
    assert result.returncode == EXIT_STORAGE, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("aeflow: error:")]
    assert len(errors) == 1, result.stderr
    assert "s3://aeflow-auth/root" in errors[0] and "refused access" in errors[0]
    assert "credentials" in errors[0]
