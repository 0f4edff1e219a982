"""The score flow with everything on S3: incoming, models, scored and quarantine.

S3 is moto's server, started by the test on loopback: a real HTTP S3 API that s3fs talks to
exactly as it talks to AWS (exclusive PUTs with If-None-Match included).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pyarrow.dataset as ds
import pytest
from model_support import register_tiny_champion
from subprocess_support import free_port

from flows.config import load_config
from flows.score import run_score
from tasks.demo_data import generate_demo_data
from tasks.io import Storage, filesystem, list_batches, read_json

REPO_ROOT = Path(__file__).resolve().parents[2]
BUCKET = "aeflow-test"
DAYS, ROWS_PER_DAY = 3, 800


@pytest.fixture(scope="module")
def s3_options():
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    options = {
        "key": "testing",
        "secret": "testing",
        "client_kwargs": {"endpoint_url": f"http://127.0.0.1:{port}", "region_name": "us-east-1"},
    }
    import boto3

    boto3.client(
        "s3",
        endpoint_url=options["client_kwargs"]["endpoint_url"],
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    ).create_bucket(Bucket=BUCKET)
    yield options
    server.stop()


@pytest.fixture(scope="module")
def s3_pipeline(s3_options, tmp_path_factory):
    """Demo batches uploaded to S3 (the last one malformed), a champion registered on S3, a config
    whose storage root is the bucket, and one score run."""
    workdir = tmp_path_factory.mktemp("s3")
    root = f"s3://{BUCKET}/aeflow"
    layout = Storage(root, "demo")
    local_incoming = workdir / "incoming"
    manifest = generate_demo_data(
        local_incoming, days=DAYS, rows_per_day=ROWS_PER_DAY, seed=11, drift_day=None
    )
    fs, _ = filesystem(root, s3_options)
    for file in sorted(local_incoming.glob("*.parquet")):
        fs.put_file(str(file), f"{BUCKET}/aeflow/incoming/demo/{file.name}")

    version = register_tiny_champion(
        layout,
        str(local_incoming / f"{manifest.batch_ids[0]}.parquet"),
        workdir,
        options=s3_options,
        reason="s3 test",
    )

    text = (REPO_ROOT / "configs" / "demo.toml").read_text()
    options = s3_options["client_kwargs"]
    text = text.replace(
        'root = "../data"',
        f'root = "{root}"\n'
        f'options = {{ key = "testing", secret = "testing", client_kwargs = {{ '
        f'endpoint_url = "{options["endpoint_url"]}", region_name = "us-east-1" }} }}',
    )
    text = text.replace("../expectations/demo.json", str(REPO_ROOT / "expectations" / "demo.json"))
    config = workdir / "s3.toml"
    config.write_text(text)
    assert load_config(config).storage_root == root
    summary = run_score(str(config), workers=2)
    return {
        "config": config,
        "layout": layout,
        "manifest": manifest,
        "version": version,
        "summary": summary,
        "fs": fs,
    }


def test_scoring_and_quarantine_write_only_to_s3(s3_pipeline, s3_options):
    summary, layout, manifest, fs = (
        s3_pipeline["summary"],
        s3_pipeline["layout"],
        s3_pipeline["manifest"],
        s3_pipeline["fs"],
    )
    malformed = manifest.malformed_batch_id
    valid = [b for b in manifest.batch_ids if b != malformed]
    assert summary["model_version"] == s3_pipeline["version"]
    assert [m["batch_id"] for m in summary["scored"]] == valid
    assert [q["batch_id"] for q in summary["quarantined"]] == [malformed]
    assert summary["rows_scored"] == ROWS_PER_DAY * len(valid)

    files = sorted(fs.find(f"{BUCKET}/aeflow"))
    prefix = f"{BUCKET}/aeflow/"
    relative = [f[len(prefix) :] for f in files]
    for batch_id in valid:
        assert f"scored/demo/date={batch_id}/{batch_id}.parquet" in relative
        assert f"scored/demo/_success/{batch_id}.json" in relative
    assert f"quarantine/demo/{malformed}/report.json" in relative
    assert any(r.startswith(f"quarantine/demo/{malformed}/input/") for r in relative)
    assert f"incoming/demo/{malformed}.parquet" not in relative
    # leases are removed on release; nothing temporary is ever written to the bucket
    assert not [r for r in relative if "/_locks/" in r or r.rsplit("/", 1)[-1].startswith(".")]

    marker = read_json(layout.success_marker(valid[0]), s3_options)
    # paths relative to the root: a copy of the prefix reads its own files
    assert marker["output"] == f"scored/demo/date={valid[0]}/{valid[0]}.parquet"
    scored = {m["batch_id"]: m for m in summary["scored"]}
    assert (
        scored[valid[0]]["output"]
        == f"s3://{BUCKET}/aeflow/scored/demo/date={valid[0]}/{valid[0]}.parquet"
    )
    assert marker["rows_in"] == marker["rows_out"] == ROWS_PER_DAY


def test_scored_outputs_read_back_from_s3_as_one_dataset(s3_pipeline):
    fs, layout = s3_pipeline["fs"], s3_pipeline["layout"]
    dataset = ds.dataset(
        layout.scored.removeprefix("s3://"), filesystem=fs, format="parquet", partitioning="hive"
    )
    table = dataset.to_table(columns=["transaction_id", "date", "model_version"])
    scored = s3_pipeline["summary"]["rows_scored"]
    assert table.num_rows == scored
    assert len(set(table.column("transaction_id").to_pylist())) == scored
    assert set(table.column("model_version").to_pylist()) == {s3_pipeline["version"]}


def test_a_second_run_on_s3_skips_every_scored_batch(s3_pipeline):
    fs, layout = s3_pipeline["fs"], s3_pipeline["layout"]
    before = {path: fs.info(path)["ETag"] for path in fs.find(layout.scored.removeprefix("s3://"))}
    again = run_score(str(s3_pipeline["config"]))
    assert again["batches_scored"] == 0 and again["batches_quarantined"] == 0
    assert again["batches_skipped"] == DAYS - 1
    after = {path: fs.info(path)["ETag"] for path in fs.find(layout.scored.removeprefix("s3://"))}
    assert after == before
    manifest = s3_pipeline["manifest"]
    assert again["skipped"] == [b for b in manifest.batch_ids if b != manifest.malformed_batch_id]


def test_force_rescoring_a_copied_prefix_leaves_the_original_prefix_alone(s3_pipeline, s3_options):
    """Issue 12, defect 1: an S3 prefix copy (a staging copy of the root) re-scored with --force
    must not delete the original root's scored files."""
    from tasks.scoring import score_batch

    fs = s3_pipeline["fs"]
    original = f"{BUCKET}/aeflow"
    fs.copy(original, f"{BUCKET}/aeflow-copy", recursive=True)
    before = {path: fs.info(path)["ETag"] for path in fs.find(original)}
    copy = Storage(f"s3://{BUCKET}/aeflow-copy", "demo", s3_options)
    cfg = load_config(s3_pipeline["config"])
    for batch in list_batches(copy.incoming, s3_options):
        marker = score_batch(
            batch=batch, storage=copy, columns=cfg.columns, scoring=cfg.scoring, force=True
        )
        assert marker.status == "scored" and marker.output.startswith(copy.root)
        assert fs.exists(marker.output)
    fs.invalidate_cache()
    assert {path: fs.info(path)["ETag"] for path in fs.find(original)} == before


def test_verdicts_on_s3_are_stored_once_and_read_back(s3_pipeline, s3_options):
    from tasks.feedback import latest_verdicts, record_feedback
    from tasks.records import VerdictSubmission

    fs, manifest = s3_pipeline["fs"], s3_pipeline["manifest"]
    storage = Storage(f"s3://{BUCKET}/aeflow", "demo", options=s3_options)
    columns = load_config(s3_pipeline["config"]).columns
    batch = manifest.batch_ids[0]
    scored = read_json(storage.success_marker(batch), s3_options)["output"]
    ids = ds.dataset(f"{BUCKET}/aeflow/{scored}", filesystem=fs).to_table(columns=[columns.id])[
        columns.id
    ][:3]
    submission = VerdictSubmission(
        verdict="confirmed", rows=[[batch, str(i)] for i in ids.to_pylist()]
    )
    first = record_feedback(submission, storage=storage, columns=columns)
    again = record_feedback(submission, storage=storage, columns=columns)
    assert (first.status, again.status) == ("recorded", "already_recorded")
    assert first.path == f"s3://{BUCKET}/aeflow/feedback/demo/{first.submission_id}.parquet"
    assert fs.find(f"{BUCKET}/aeflow/feedback") == [first.path.removeprefix("s3://")]
    latest = latest_verdicts(storage)
    assert latest["row_id"].tolist() == sorted(str(i) for i in ids.to_pylist())
    assert set(latest["verdict"]) == {"confirmed"}
