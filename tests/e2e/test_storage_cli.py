"""`aeflow` against storage it cannot use: an S3 endpoint that refuses the credentials (issue 12,
defect 6), a bucket that does not exist, an output folder that is read-only. Each command stops
in one `aeflow: error:` line naming the location and the fix, exit code 4, no traceback; the
last two before Prefect starts or a batch is touched, creating, moving and half-writing nothing.

The endpoint is moto's S3 server in a subprocess: with authentication on
(INITIAL_NO_AUTH_ACTION_COUNT=0) it answers unknown access keys with 403 InvalidAccessKeyId, as AWS
does; without, it takes any key.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from demo_config_support import private_demo_config
from model_support import register_tiny_champion
from subprocess_support import moto_s3_server

from flows.errors import EXIT_STORAGE
from tasks.demo_data import generate_demo_data
from tasks.io import Storage, read_table

REPO_ROOT = Path(__file__).resolve().parents[2]
BIN = os.path.dirname(sys.executable)
AEFLOW = shutil.which("aeflow", path=BIN) or shutil.which("aeflow")


def _aeflow(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    # `score` may start Prefect's temporary server: give it time on a busy machine
    return subprocess.run(
        [AEFLOW, *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={
            **os.environ,
            "PREFECT_HOME": tempfile.mkdtemp(dir=tmp_path),
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
        },
    )


def _one_error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == EXIT_STORAGE, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("aeflow: error:")]
    assert len(errors) == 1, result.stderr
    return errors[0]


@pytest.fixture(scope="module")
def authenticating_s3():
    with moto_s3_server(INITIAL_NO_AUTH_ACTION_COUNT="0") as endpoint:
        yield endpoint


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
    line = _one_error_line(_aeflow([*command, "--config", str(config)], tmp_path))
    assert "s3://aeflow-auth/root" in line and "refused access" in line
    assert "credentials" in line


@pytest.fixture(scope="module")
def open_s3():
    """moto's S3 server on loopback, any credentials accepted, no bucket."""
    with moto_s3_server() as endpoint:
        yield endpoint


@pytest.mark.parametrize(
    "command", [["ingest", "--csv", "rows.csv"], ["score"], ["models", "list"]]
)
def test_a_bucket_that_does_not_exist_is_named_not_created_nor_read_as_empty(
    open_s3, tmp_path, command
):
    endpoint = open_s3
    config = private_demo_config(
        tmp_path,
        lambda text: text.replace(
            'root = "data"',
            'root = "s3://no-such-bucket/aeflow"\n'
            'options = { key = "k", secret = "s", client_kwargs = { '
            f'endpoint_url = "{endpoint}", region_name = "us-east-1" }} }}',
        ),
    )
    manifest = generate_demo_data(
        tmp_path / "demo", days=1, rows_per_day=200, seed=3, drift_day=None, malformed_day=None
    )
    read_table(str(tmp_path / "demo" / f"{manifest.batch_ids[0]}.parquet")).to_pandas().to_csv(
        tmp_path / "rows.csv", index=False
    )
    command = [str(tmp_path / part) if part == "rows.csv" else part for part in command]
    line = _one_error_line(_aeflow([*command, "--config", str(config)], tmp_path))
    assert "s3://no-such-bucket/aeflow" in line and "'no-such-bucket' does not exist" in line
    assert "create it" in line and str(config) in line
    import boto3

    s3 = boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id="k", aws_secret_access_key="s",
        region_name="us-east-1",
    )  # fmt: skip
    assert s3.list_buckets()["Buckets"] == []  # aeflow never creates the bucket


@pytest.fixture
def read_only_scored(tmp_path):
    """A demo root whose scored/ folder is read-only: a read-only mount when the tests run as root
    (permission bits do not stop root), the folder's permission bits otherwise."""
    folder = tmp_path / "data" / "scored"
    folder.mkdir(parents=True)
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(folder)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"running as root without mount: {mounted.stderr.decode().strip()}")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


def test_a_read_only_output_folder_stops_the_run_before_any_batch(tmp_path, read_only_scored):
    config = private_demo_config(tmp_path)
    layout = Storage(str(tmp_path / "data"), "demo")
    incoming = Path(layout.incoming)
    manifest = generate_demo_data(
        incoming, days=2, rows_per_day=200, seed=3, drift_day=None, malformed_day=None
    )
    register_tiny_champion(
        layout, str(incoming / f"{manifest.batch_ids[0]}.parquet"), tmp_path, epochs=1
    )
    before = sorted(p.name for p in incoming.iterdir())
    line = _one_error_line(_aeflow(["score", "--config", str(config)], tmp_path))
    assert str(read_only_scored) in line and "cannot be written" in line
    assert "Read-only file system" in line or "Permission denied" in line
    assert "storage.root" in line
    assert sorted(p.name for p in incoming.iterdir()) == before  # every batch still waiting
    assert not (tmp_path / "data" / "quarantine").exists()
