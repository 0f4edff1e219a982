"""`aeflow api` as a user runs it: a real uvicorn server on loopback, spoken to with httpx.

One server for the module (started once, with a bearer token, small limits and a fast champion
poll), on a demo dataset scored once by `aeflow score` run as a user runs it (the console script in
a subprocess, reporting to the session's Prefect test server). The swap tests run last: they move
the champion and put it back.
"""

from __future__ import annotations

import concurrent.futures
import io
import json
import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from model_support import register_tiny_champion
from subprocess_support import AEFLOW, free_port, stop_process_group

from flows.config import load_config
from tasks.demo_data import generate_demo_data
from tasks.frames import feature_frame
from tasks.io import Storage
from tasks.markers import read_marker
from tasks.records import SCORED

REPO_ROOT = Path(__file__).resolve().parents[2]
TOKEN = "test-token-4f1c"
MAX_ROWS, MAX_BODY_MB = 2000, 0.5
SCORE_FIELDS = ("anomaly_score", "anomaly_percentile", "is_anomaly", "threshold", "top_features")
ARROW = "application/vnd.apache.arrow.stream"
PARQUET = "application/vnd.apache.parquet"


def _strict_amount_suite(source: Path, target: Path) -> None:
    """The demo suite with `amount` declared never null, for the NaN-where-not-allowed case."""
    suite = json.loads(source.read_text())
    for entry in suite["expectations"]:
        if (
            entry["type"] == "expect_column_values_to_not_be_null"
            and entry["kwargs"].get("column") == "amount"
        ):
            entry["kwargs"]["mostly"] = 1.0
            entry["meta"] = {"why": "every transaction has an amount"}
            break
    target.write_text(json.dumps(suite))


def _json_rows(table: pa.Table) -> list[dict]:
    rows = table.to_pylist()
    for row in rows:
        for key, value in row.items():
            if hasattr(value, "isoformat"):
                row[key] = value.isoformat()
    return rows


@pytest.fixture(scope="module")
def api(tmp_path_factory, prefect_server):
    work = tmp_path_factory.mktemp("api")
    _strict_amount_suite(REPO_ROOT / "expectations" / "demo.json", work / "demo.json")
    text = (REPO_ROOT / "configs" / "demo.toml").read_text()
    text = text.replace('root = "../data"', 'root = "data"')
    text = text.replace('suite = "../expectations/demo.json"', 'suite = "demo.json"')
    config = work / "demo.toml"
    config.write_text(text)
    cfg = load_config(config)
    layout = Storage(cfg.storage_root, cfg.dataset)
    manifest = generate_demo_data(
        layout.incoming, days=2, rows_per_day=2500, seed=11, drift_day=None, malformed_day=None
    )
    first = str(Path(layout.incoming) / f"{manifest.batch_ids[0]}.parquet")
    # v2 is registered first and v1 promoted after it, so a rollback from v2 returns to v1.
    v2 = register_tiny_champion(layout, first, work, seed=1)
    v1 = register_tiny_champion(layout, first, work, seed=0)
    port = free_port()
    log_path = work / "server.log"
    env = {**os.environ, "AEFLOW_API_TOKEN": TOKEN}
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            [AEFLOW, "api", "--config", str(config), "--port", str(port),
             "--max-rows", str(MAX_ROWS), "--max-body-mb", str(MAX_BODY_MB), "--poll-s", "0.2"],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        # `aeflow score` scores the batches while the server starts.
        scoring = subprocess.run(
            [AEFLOW, "score", "--config", str(config)],
            env={**os.environ, "PREFECT_API_URL": prefect_server},
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert scoring.returncode == 0, scoring.stdout[-3000:] + scoring.stderr[-3000:]
        markers = {batch: read_marker(layout, batch) for batch in manifest.batch_ids}
        assert {m.status for m in markers.values()} == {SCORED}
        assert {m.model_version for m in markers.values()} == {v1}
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base}/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert server.poll() is None, log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, "the server did not get ready in 120 s"
            time.sleep(0.5)
        batch_id = manifest.batch_ids[1]
        incoming = pq.read_table(Path(layout.incoming) / f"{batch_id}.parquet")
        scored = pq.read_table(markers[batch_id].output)  # the CLI's scored Parquet file
        with httpx.Client(
            base_url=base, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30
        ) as client:
            yield {
                "client": client, "base": base, "config": config, "cfg": cfg, "layout": layout,
                "v1": v1, "v2": v2, "incoming": incoming, "scored": scored, "log": log_path,
            }  # fmt: skip
    finally:
        stop_process_group(server)


def _assert_no_trace(response: httpx.Response) -> None:
    assert "Traceback" not in response.text and 'File "' not in response.text


# ---------------------------------------------------------------------------------- endpoints
def test_health_ready_model_and_docs(api):
    client, v1 = api["client"], api["v1"]
    assert httpx.get(f"{api['base']}/health").json() == {"status": "ok"}  # no token needed
    assert httpx.get(f"{api['base']}/ready").json() == {"status": "ready", "model_version": v1}
    model = client.get("/model").json()
    registry = api["layout"].registry()
    detector, _ = registry.load(v1)
    assert model["version"] == v1 and model["follows"] == "champion"
    assert model["threshold"] == detector.threshold_
    assert model["trained_at"] == detector.metadata_["fitted_at"]
    assert [c["name"] for c in model["columns"]] == list(detector.feature_names_in_)
    channel = next(c for c in model["columns"] if c["name"] == "channel")
    assert channel["kind"] == "categorical" and "atm" in channel["levels"]
    assert model["limits"] == {"max_rows": MAX_ROWS, "max_body_bytes": int(MAX_BODY_MB * 2**20)}
    paths = client.get("/openapi.json").json()["paths"]
    for operation in ("score", "encode", "explain", "reconstruct", "decode"):
        assert "post" in paths[f"/{operation}"]
    assert client.get("/docs").status_code == 200


def test_score_and_encode_are_bit_identical_to_aeflow_score(api):
    client, incoming, scored = api["client"], api["incoming"], api["scored"]
    rows = slice(0, 1000)
    sent = incoming.slice(rows.start, rows.stop)
    expected = scored.slice(rows.start, rows.stop)
    answer = client.post("/score", json=_json_rows(sent))
    assert answer.status_code == 200 and answer.headers["x-model-version"] == api["v1"]
    got = answer.json()
    for field in SCORE_FIELDS:
        assert [r[field] for r in got] == expected.column(field).to_pylist(), field
    assert {r["model_version"] for r in got} == {api["v1"]}
    assert [r["transaction_id"] for r in got] == expected.column("transaction_id").to_pylist()
    # One row alone (a JSON object) gets the same bits as inside its batch.
    single = client.post("/score", json=_json_rows(sent.slice(7, 1))[0]).json()
    assert {f: single[f] for f in SCORE_FIELDS} == {f: got[7][f] for f in SCORE_FIELDS}
    encoded = client.post("/encode", json=_json_rows(sent)).json()
    latent = [name for name in expected.column_names if name.startswith("z_")]
    for name in latent:
        # float32 in the file; JSON carries the float32's exact value.
        assert np.array_equal(
            np.array([r[name] for r in encoded], dtype=np.float32),
            expected.column(name).to_numpy(),
        )


def test_arrow_and_parquet_bodies_are_answered_in_kind(api):
    client, incoming, scored = api["client"], api["incoming"], api["scored"]
    sent, expected = incoming.slice(0, 500), scored.slice(0, 500)
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, sent.schema) as writer:
        writer.write_table(sent)
    answer = client.post("/score", content=sink.getvalue(), headers={"Content-Type": ARROW})
    assert answer.status_code == 200 and answer.headers["content-type"] == ARROW
    table = pa.ipc.open_stream(answer.content).read_all()
    for field in SCORE_FIELDS:
        assert table.column(field).equals(expected.column(field)), field
    assert table.column("event_time").equals(expected.column("event_time"))  # passthrough kept

    sink = io.BytesIO()
    pq.write_table(sent, sink)
    answer = client.post("/encode", content=sink.getvalue(), headers={"Content-Type": PARQUET})
    assert answer.status_code == 200 and answer.headers["content-type"] == PARQUET
    table = pq.read_table(io.BytesIO(answer.content))
    assert table.column("z_0").equals(expected.column("z_0"))

    as_json = client.post(
        "/score", content=sink.getvalue(),
        headers={"Content-Type": PARQUET, "Accept": "application/json"},
    )  # fmt: skip
    assert as_json.json()[0]["anomaly_score"] == expected.column("anomaly_score")[0].as_py()

    # No rows in, no rows out (with the answer's columns, for Arrow).
    assert client.post("/score", json=[]).json() == []
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, sent.schema) as writer:
        writer.write_table(sent.slice(0, 0))
    empty = client.post("/explain", content=sink.getvalue(), headers={"Content-Type": ARROW})
    table = pa.ipc.open_stream(empty.content).read_all()
    assert table.num_rows == 0 and "contributions" in table.column_names


def test_explain_reconstruct_and_decode(api):
    client, incoming = api["client"], api["incoming"]
    rows = _json_rows(incoming.slice(0, 50))
    rows[0]["amount"] = 20_000.0  # far above anything seen (the suite's range ends near 1,850)
    explained = client.post("/explain", json=rows, params={"top_k": 2}).json()
    scored = client.post("/score", json=rows, params={"top_k": 2}).json()
    registry = api["layout"].registry()
    detector, _ = registry.load(api["v1"])
    for row, score in zip(explained, scored, strict=True):
        assert row["anomaly_score"] == score["anomaly_score"]
        assert row["top_features"] == score["top_features"]
        assert sum(row["contributions"].values()) == pytest.approx(row["anomaly_score"], 1e-6)
        assert list(row["contributions"]) == list(detector.feature_names_in_)
    first = explained[0]
    assert first["top_features"].split(",")[0] == "amount"
    assert first["directions"]["amount"] == "above"
    assert first["expected"]["amount"] < 20_000.0
    assert set(first["directions"].values()) <= {
        "above",
        "below",
        "unexpected level",
        "as expected",
    }

    reconstructed = client.post("/reconstruct", json=rows).json()
    levels = detector.preprocessor_.named_transformers_["categorical"].categories_
    for row in reconstructed:
        assert row["model_version"] == api["v1"]
        assert row["channel"] in {str(v) for v in levels[1]}
    assert [r["amount"] for r in reconstructed] == pytest.approx(
        [r["expected"]["amount"] for r in explained], rel=1e-5
    )

    codes = client.post("/encode", json=rows).json()
    z = [{k: v for k, v in row.items() if k.startswith("z_")} for row in codes]
    decoded = client.post("/decode", json=z).json()
    # decode(encode(x)) is the reconstruction of x, to the float32 rounding of the encoded features.
    assert [r["amount"] for r in decoded] == pytest.approx(
        [r["amount"] for r in reconstructed], rel=1e-3, abs=1e-3
    )
    same_level = [d["channel"] == r["channel"] for d, r in zip(decoded, reconstructed, strict=True)]
    assert sum(same_level) >= 0.9 * len(same_level)
    # A z column missing is a 422 like any other column.
    broken = client.post("/decode", json=[{k: v for k, v in z[0].items() if k != "z_0"}])
    assert broken.status_code == 422 and broken.json()["detail"][0]["column"] == "z_0"


# ----------------------------------------------------------------------------------- bad input
def _one_row(api) -> dict:
    return _json_rows(api["incoming"].slice(3, 1))[0]


def _bad_cases(row: dict) -> dict[str, tuple[object, str, str]]:
    """name -> (body, column named, words of the rule)."""
    missing = {k: v for k, v in row.items() if k != "customer_age"}
    return {
        "missing column": (missing, "customer_age", "required"),
        "text in a numeric column": ({**row, "amount": "12.50"}, "amount", "numbers or null"),
        "boolean in a numeric column": ({**row, "tx_count_24h": True}, "tx_count_24h", "numbers"),
        "mixed types": ([row, {**row, "credit_limit": "high"}], "credit_limit", "a mix of"),
        "unseen category": ({**row, "channel": "carrier_pigeon"}, "channel", "known levels"),
        "null where not allowed": ({**row, "amount": None}, "amount", "not null"),
        "null id": ({**row, "transaction_id": None}, "transaction_id", "not null"),
        "object as a level": ({**row, "country": {"code": "FR"}}, "country", "text levels"),
    }


def test_each_bad_input_is_a_422_naming_column_rule_and_fix(api):
    client, row = api["client"], _one_row(api)
    for name, (body, column, words) in _bad_cases(row).items():
        answer = client.post("/score", json=body)
        assert answer.status_code == 422, name
        _assert_no_trace(answer)
        problem = answer.json()["detail"][0]
        assert problem["column"] == column, name
        assert words in problem["rule"], (name, problem)
        assert problem["fix"], name
    # NaN (as Python's json writes it) counts as null, as in batch scoring.
    nan_body = json.dumps({**row, "amount": float("nan")}).encode()
    answer = client.post("/score", content=nan_body, headers={"Content-Type": "application/json"})
    assert answer.status_code == 422 and answer.json()["detail"][0]["column"] == "amount"
    # Several problems are reported together, each with its rows.
    rows = [row, {**row, "channel": "pigeon"}, {**row, "amount": "x"}]
    problems = client.post("/score", json=rows).json()["detail"]
    assert {p["column"]: p["rows"] for p in problems} == {"amount": [2], "channel": [1]}
    # An unseen level is scored as batch scoring scores it when the request asks for that.
    allowed = client.post("/score", json={**row, "channel": "pigeon"}, params={"unseen": "score"})
    assert allowed.status_code == 200 and allowed.json()["anomaly_score"] > 0


def test_unreadable_bodies_are_4xx_without_traces(api):
    client = api["client"]
    cases = [
        (b"{not json", "application/json", 400),
        (b"[1, 2]", "application/json", 422),
        (b"\x00\x01garbage", ARROW, 400),
        (b"garbage", PARQUET, 400),
        (b"a,b\n1,2", "text/csv", 415),
    ]
    for body, media, status in cases:
        answer = client.post("/score", content=body, headers={"Content-Type": media})
        assert answer.status_code == status, (media, answer.text)
        assert answer.json()["detail"]
        _assert_no_trace(answer)
    assert client.post("/score", json={}, params={"top_k": 0}).status_code == 422


def test_limits_on_rows_and_bytes_are_413(api):
    client, incoming = api["client"], api["incoming"]
    too_many = incoming.slice(0, MAX_ROWS + 1).select(["amount"])
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, too_many.schema) as writer:
        writer.write_table(too_many)
    answer = client.post("/score", content=sink.getvalue(), headers={"Content-Type": ARROW})
    assert answer.status_code == 413 and f"at most {MAX_ROWS:,} rows" in answer.json()["detail"]
    big = b"[" + b",".join([b'{"amount": 1.0}'] * 40_000) + b"]"  # ~600 KB > 0.5 MiB
    answer = client.post("/score", content=big, headers={"Content-Type": "application/json"})
    assert answer.status_code == 413 and "bytes" in answer.json()["detail"]
    # Without Content-Length (chunked), the limit holds while reading.
    chunked = client.post(
        "/score", content=iter([big[:300_000], big[300_000:]]),
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    assert chunked.status_code == 413
    assert client.get("/ready").status_code == 200  # and the server is fine


def test_the_bearer_token_is_required(api):
    base, row = api["base"], _one_row(api)
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        answer = httpx.post(f"{base}/score", json=row, headers=headers)
        assert answer.status_code == 401 and answer.headers["www-authenticate"].startswith("Bearer")
        assert "AEFLOW_API_TOKEN" in answer.json()["detail"]
    assert httpx.get(f"{base}/model").status_code == 401
    ok = httpx.post(f"{base}/score", json=row, headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200


def test_request_logs_name_no_row_values(api):
    row = {**_one_row(api), "amount": 987654.321, "transaction_id": "tx-marker-5150"}
    api["client"].post("/score", json=row)
    api["client"].post("/score", json={**row, "channel": "pigeon-7727"})  # a 422 names it
    log = api["log"].read_text()
    assert '"POST /score" 200 rows=1' in log and '"POST /score" 422 rows=-' in log
    for value in ("987654", "tx-marker-5150", "pigeon-7727", TOKEN):
        assert value not in log


# --------------------------------------------------------------------------------- hot swap
def _expected_scores(api, version: str, rows: pa.Table) -> list[float]:
    detector, _ = api["layout"].registry().load(version)
    cols = api["cfg"].columns
    return detector.score(feature_frame(rows, cols.numeric, cols.categorical)).scores.tolist()


def test_promotion_and_rollback_during_a_stream_fail_no_request(api):
    client, v1, v2 = api["client"], api["v1"], api["v2"]
    sent = api["incoming"].slice(100, 20)
    expected = {v: _expected_scores(api, v, sent) for v in (v1, v2)}
    body = _json_rows(sent)
    stop = threading.Event()

    def stream() -> list[tuple[int, str | None, list[str], list[float]]]:
        seen = []
        with httpx.Client(base_url=api["base"], headers=client.headers, timeout=30) as own:
            while not stop.is_set():
                answer = own.post("/score", json=body)
                rows = answer.json() if answer.status_code == 200 else []
                seen.append(
                    (
                        answer.status_code,
                        answer.headers.get("x-model-version"),
                        [r["model_version"] for r in rows],
                        [r["anomaly_score"] for r in rows],
                    )
                )
        return seen

    def wait_for(version: str) -> None:
        deadline = time.monotonic() + 60
        while client.get("/model").json()["version"] != version:
            assert time.monotonic() < deadline, f"the server never served {version}"
            time.sleep(0.05)

    registry = api["layout"].registry()
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        streams = [pool.submit(stream) for _ in range(3)]
        time.sleep(0.5)
        registry.promote(v2, "test: promotion under load")
        wait_for(v2)
        time.sleep(0.3)
        registry.rollback("test: rollback under load")
        wait_for(v1)
        time.sleep(0.3)
        stop.set()
        results = [s.result() for s in streams]
    for seen in results:
        assert seen and all(status == 200 for status, *_ in seen)
        versions = []
        for _, header, row_versions, scores in seen:
            assert set(row_versions) == {header}  # one version per response, named in both
            assert scores == expected[header]  # and the numbers are that version's
            if not versions or versions[-1] != header:
                versions.append(header)
        # Each client sees v1, then v2, then v1 again: never a flip back and forth.
        assert versions[0] == v1 and versions[-1] == v1 and versions in ([v1], [v1, v2, v1])
    assert any(len({h for _, h, *_ in seen}) == 2 for seen in results)
    swaps = client.get("/model").json()["swaps"]
    assert [(s["from"], s["to"]) for s in swaps[-2:]] == [(v1, v2), (v2, v1)]


def test_a_bundle_that_fails_verification_is_not_served(api, tmp_path):
    client, v1 = api["client"], api["v1"]
    registry = api["layout"].registry()
    bundle = tmp_path / "tampered"
    shutil.copytree(Path(api["layout"].models) / v1, bundle)
    (bundle / "registry.json").unlink()
    broken = registry.register(bundle)
    calibration = Path(api["layout"].models) / broken / "calibration.json"
    tampered = json.loads(calibration.read_text())
    tampered["threshold"] = 0.0  # would flag every row
    calibration.write_text(json.dumps(tampered))
    registry.promote(broken, "test: a tampered bundle")
    try:
        deadline = time.monotonic() + 30
        while (client.get("/model").json().get("pending") or {}).get("version") != broken:
            assert time.monotonic() < deadline, "the failed load was never reported"
            time.sleep(0.1)
        model = client.get("/model").json()
        assert model["version"] == v1 and "sha256" in model["pending"]["error"]
        assert client.post("/score", json=_one_row(api)).json()["model_version"] == v1
    finally:
        registry.promote(v1, "test: restore")


def test_several_worker_processes_serve_and_all_follow_a_promotion(api):
    v1, v2 = api["v1"], api["v2"]
    port = free_port()
    log_path = api["log"].with_name("workers.log")
    env = {**os.environ, "AEFLOW_API_TOKEN": TOKEN}
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            [AEFLOW, "api", "--config", str(api["config"]), "--port", str(port),
             "--workers", "2", "--poll-s", "0.2"],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    base, headers = f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {TOKEN}"}
    row = _one_row(api)

    def versions(count: int) -> set[str]:
        # A fresh connection each time, so the requests spread over the worker processes.
        seen = set()
        for _ in range(count):
            answer = httpx.post(f"{base}/score", json=row, headers=headers, timeout=30)
            assert answer.status_code == 200, answer.text
            seen.add(answer.json()["model_version"])
        return seen

    registry = api["layout"].registry()
    try:
        deadline = time.monotonic() + 180
        ready = re.compile(r"aeflow\.api\[(\d+)\]: worker process ready: model (\S+) loaded")
        while len({pid for pid, _ in ready.findall(log_path.read_text())}) < 2:
            assert server.poll() is None, log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, "two workers did not get ready in 180 s"
            time.sleep(0.5)
        assert {version for _, version in ready.findall(log_path.read_text())} == {v1}
        assert versions(20) == {v1}
        registry.promote(v2, "test: promotion seen by every worker")
        time.sleep(2.0)  # each worker reads the alias every 0.2 s and swaps once loaded
        assert versions(30) == {v2}
    finally:
        registry.promote(v1, "test: restore")
        stop_process_group(server)
