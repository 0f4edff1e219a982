"""The S3 endpoint goes away in the middle of an `aeflow score` run and comes back (moto's S3
server on loopback, stopped and restarted on its port with its data): the run rides it out with
its retries. Then an outage longer than the retries: the run fails in one line naming the
storage, judging nothing; the next run completes. Invariants checked on the bucket."""

from __future__ import annotations

import logging
import random
import time

import pytest
from model_support import register_tiny_champion
from reliability_support import (
    DATASET,
    FsspecStore,
    check_invariants,
    deliver,
    ignored_in_output,
    staged_uploads,
    start_score,
    write_config,
)
from subprocess_support import free_port

from flows.errors import EXIT_STORAGE
from tasks.io import Storage, filesystem

pytestmark = pytest.mark.slow

SEED = 3
VALID_DAYS = 6
BUCKET = "aeflow-reliability"


class Endpoint:
    """moto's threaded S3 server on a fixed loopback port; its data lives in this process, so a
    stopped and restarted server serves the same buckets."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = None

    def start(self) -> None:
        from moto.server import ThreadedMotoServer

        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()

    def stop(self) -> None:
        self.server.stop()
        self.server = None


@pytest.fixture
def endpoint():
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    endpoint = Endpoint()
    endpoint.start()
    yield endpoint
    if endpoint.server is not None:
        endpoint.stop()


def test_the_endpoint_going_away_and_coming_back_loses_nothing(prefect_api_url, tmp_path, endpoint):
    rng = random.Random(SEED)
    runs_tmp = tmp_path / "runs-tmp"
    runs_tmp.mkdir()
    options = {
        "key": "testing",
        "secret": "testing",
        "client_kwargs": {"endpoint_url": endpoint.url, "region_name": "us-east-1"},
        # one quick attempt per call: aeflow's own retries ride out the outage
        "config_kwargs": {"retries": {"max_attempts": 1}, "connect_timeout": 2, "read_timeout": 10},
    }
    import boto3

    boto3.client(
        "s3",
        endpoint_url=endpoint.url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    ).create_bucket(Bucket=BUCKET)
    local = tmp_path / "local"
    deliveries = deliver(local / "incoming" / DATASET, tmp_path / "outside", SEED, VALID_DAYS)
    # object stores have no links: those deliveries stay behind
    deliveries = [d for d in deliveries if not (local / "incoming" / DATASET / d.name).is_symlink()]
    fs, _ = filesystem(f"s3://{BUCKET}", options)
    for path in sorted((local / "incoming" / DATASET).rglob("*")):
        if path.is_file() and not path.is_symlink():
            key = path.relative_to(local).as_posix()
            fs.put_file(str(path), f"{BUCKET}/root/{key}")
    layout = Storage(f"s3://{BUCKET}/root", DATASET)
    register_tiny_champion(
        layout, str(local / "incoming" / DATASET / "2026-01-01.parquet"), tmp_path,
        epochs=1, options=options,
    )  # fmt: skip
    config = write_config(tmp_path, f"s3://{BUCKET}/root", options, retries=6, retry_delay_s=0.5)

    # 1. the endpoint goes away once scoring has begun, and comes back a few seconds later
    run = start_score(config, prefect_api_url, runs_tmp)
    markers = f"{BUCKET}/root/scored/{DATASET}/_success"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and run.poll() is None:
        fs.invalidate_cache()
        if fs.exists(markers) and len(fs.ls(markers)) >= 2:
            break
        time.sleep(0.2)
    assert run.poll() is None, "the run ended before the outage: " + run.stdout.read()
    endpoint.stop()
    outage = rng.uniform(2.0, 5.0)
    time.sleep(outage)
    endpoint.start()
    output, _ = run.communicate(timeout=900)
    assert run.returncode == 0, output
    store = FsspecStore(fs, f"{BUCKET}/root")
    counts = check_invariants(store, deliveries, ignored_in_output(output))
    assert counts["scored"] == VALID_DAYS and counts["quarantined"] == 3, counts

    # 2. down for longer than the retries: one error line naming the storage, nothing judged
    fast_fail = write_config(tmp_path, f"s3://{BUCKET}/root", options, retries=1, retry_delay_s=0.2)
    fs.put_file(
        str(local / "incoming" / DATASET / "2026-01-01.parquet"),
        f"{BUCKET}/root/incoming/{DATASET}/late.parquet",
    )
    endpoint.stop()
    down = start_score(fast_fail, prefect_api_url, runs_tmp)
    output, _ = down.communicate(timeout=900)
    assert down.returncode == EXIT_STORAGE, output
    [error] = [line for line in output.splitlines() if line.startswith("aeflow: error:")]
    assert f"s3://{BUCKET}/root" in error and "Traceback" not in output
    endpoint.start()
    fs.invalidate_cache()
    assert not fs.exists(f"{BUCKET}/root/quarantine/{DATASET}/late")
    assert not fs.exists(f"{markers}/late.json")

    # 3. back: the next run scores the late batch; every invariant still holds
    again = start_score(config, prefect_api_url, runs_tmp)
    output, _ = again.communicate(timeout=900)
    assert again.returncode == 0, output
    counts = check_invariants(store, deliveries, ignored_in_output(output))
    fs.invalidate_cache()
    assert fs.exists(f"{markers}/late.json")
    assert not staged_uploads(runs_tmp)
    print(f"\noutage of {outage:.1f}s ridden out; invariants hold: {counts}")
