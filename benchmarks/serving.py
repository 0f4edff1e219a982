"""Online scoring speed: `aeflow api` on loopback against batch scoring of the same model.

Set-up (in a temporary folder): demo data, one model with the demo's architecture fitted on the
first day, registered and promoted; batch scoring (`score_batch`, what `aeflow score` runs for each
batch) times a demo day of ``--batch-rows`` rows; then the real server (`aeflow api`, a subprocess)
is started on a free loopback port and measured from this process:

- latency (p50, p99) of 1-row and 1,000-row requests at concurrency 1 (JSON, and Arrow for bulk);
- rows per second at concurrency 1, 8 and 32 (each concurrent client one connection);
- the server's CPU seconds per request (from /proc), less sensitive to busy neighbours than wall
  time. The client runs on the same machine and takes its share of the CPUs.

The client is lean: one keep-alive ``http.client`` connection per concurrent client, each in its
own thread, so the numbers are the service's and not the client library's. For comparison the
1-row case also runs with ``httpx.AsyncClient`` (about 1-2 ms of client CPU per request of its
own), and against a no-op ASGI app under the same uvicorn settings (the HTTP stack's floor).

Targets (issue 16, this 2-core CPU): 1-row p50 < 5 ms and p99 < 20 ms at concurrency 1; 1,000-row
requests at least 50% of batch scoring's rows per second.

    .venv/bin/python benchmarks/serving.py --write-doc
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import REPO_ROOT, markdown_table, write_report  # noqa: E402

ARROW = "application/vnd.apache.arrow.stream"
TARGET_P50_MS, TARGET_P99_MS, TARGET_SHARE = 5.0, 20.0, 0.5
LEAN, HTTPX = "http.client", "httpx.AsyncClient"


def load_average() -> str:
    return " ".join(f"{v:.1f}" for v in os.getloadavg())


def server_processes(pid: int) -> list[int]:
    """Process ``pid`` and every process in its process group (a server started in its own
    session, with its worker processes; Linux /proc): one scan of /proc, made before a
    measurement starts."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # the process ended meanwhile
        if int(fields[2]) == pid or stat.parent.name == str(pid):
            found.append(int(stat.parent.name))
    return found


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds so far of the processes ``pids`` (Linux /proc)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # the process ended meanwhile
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


class Meter:
    """Wall seconds, the server's CPU seconds (``pids``: :func:`server_processes`) and this
    process's CPU seconds, from its creation to :meth:`summary`."""

    def __init__(self, pids: list[int]):
        self.pids = pids
        self.server, self.client = cpu_seconds(pids), time.process_time()
        self.started = time.perf_counter()

    def summary(self, latencies: list[float], requests: int) -> dict:
        """p50 and p99 of ``latencies`` (ms), wall seconds, CPU ms per request (server, client)."""
        wall = time.perf_counter() - self.started
        client = time.process_time() - self.client
        server = cpu_seconds(self.pids) - self.server
        values = np.asarray(latencies)
        return {
            "p50": float(np.percentile(values, 50)),
            "p99": float(np.percentile(values, 99)),
            "wall": wall,
            "requests": requests,
            "cpu_ms_per_request": server / requests * 1000,
            "client_cpu_ms_per_request": client / requests * 1000,
        }


def prepare(work: Path, train_rows: int, batch_rows: int, epochs: int) -> dict:
    """Demo data, a registered champion and the config; returns paths and the model version."""
    from flows.config import load_config
    from models import AutoencoderDetector
    from tasks.demo_data import generate_demo_data
    from tasks.frames import feature_frame
    from tasks.io import Storage, read_table

    text = (REPO_ROOT / "configs" / "demo.toml").read_text()
    text = text.replace('root = "../data"', f'root = "{work / "data"}"')
    text = text.replace(
        'suite = "../expectations/demo.json"', f'suite = "{REPO_ROOT / "expectations/demo.json"}"'
    )
    config = work / "demo.toml"
    config.write_text(text)
    cfg = load_config(config)
    layout = Storage(cfg.storage_root, cfg.dataset)
    # Scored batches must live under the storage root (markers refuse paths outside it).
    train_dir, batch_dir = work / "train", Path(cfg.storage_root) / "bench-batch"
    generate_demo_data(
        train_dir, days=1, rows_per_day=train_rows, drift_day=None, malformed_day=None
    )
    generate_demo_data(
        batch_dir, days=1, rows_per_day=batch_rows, seed=1, drift_day=None, malformed_day=None
    )
    cols = cfg.columns
    frame = feature_frame(
        read_table(str(next(train_dir.glob("*.parquet")))), cols.numeric, cols.categorical
    )
    detector = AutoencoderDetector(**{**cfg.detector_params(), "epochs": epochs}).fit(frame)
    bundle = work / "bundle"
    detector.save(bundle)
    registry = layout.registry()
    version = registry.register(bundle)
    registry.promote(version, "serving benchmark")
    return {
        "config": config,
        "cfg": cfg,
        "layout": layout,
        "version": version,
        "batch": next(batch_dir.glob("*.parquet")),
        "hidden": detector.hidden_sizes,
        "latent": detector.latent_dim_,
        "features": detector.layout_.n_features,
    }


def batch_rows_per_second(setup: dict, repeats: int) -> tuple[float, list[float]]:
    """Median rows/s of score_batch on the batch file (forced each time), and each run's s."""
    from tasks.io import BatchRef, Storage
    from tasks.scoring import score_batch

    cfg, path = setup["cfg"], setup["batch"]
    storage = Storage.from_settings(cfg.storage, cfg.dataset)
    ref = BatchRef(batch_id=path.stem, path=str(path), size_bytes=path.stat().st_size)
    seconds, rows = [], 0
    for _ in range(repeats):
        started = time.perf_counter()
        marker = score_batch(
            batch=ref, storage=storage, columns=cfg.columns, scoring=cfg.scoring, force=True
        )
        seconds.append(time.perf_counter() - started)
        rows = marker.rows_out
    return rows / float(np.median(seconds)), seconds


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_up(process: subprocess.Popen, url: str, what: str, log: Path | None = None) -> None:
    """Poll ``url`` until it answers 200 (3 minutes at most)."""
    import httpx

    deadline = time.monotonic() + 180
    while True:
        try:
            if httpx.request(
                "GET" if url.endswith("/ready") else "POST", url, timeout=2
            ).is_success:
                return
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            tail = log.read_text()[-3000:] if log is not None and log.exists() else ""
            raise SystemExit(f"the {what} did not start:\n{tail}")
        time.sleep(0.5)


def start_server(config: Path, port: int, log: Path, workers: int = 1) -> subprocess.Popen:
    aeflow = Path(sys.executable).parent / "aeflow"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [str(aeflow), "api", "--config", str(config), "--port", str(port),
             "--workers", str(workers)],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    wait_until_up(server, f"http://127.0.0.1:{port}/ready", "server", log)
    return server


def bodies(batch: Path, rows: int) -> dict[str, tuple[bytes, str]]:
    """The first ``rows`` rows as a JSON body and as an Arrow IPC body."""
    import orjson

    table = pq.read_table(batch).slice(0, rows)
    records = table.to_pylist()
    for record in records:
        for key, value in record.items():
            if hasattr(value, "isoformat"):
                record[key] = value.isoformat()
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    payload = records[0] if rows == 1 else records
    return {"json": (orjson.dumps(payload), "application/json"), "arrow": (sink.getvalue(), ARROW)}


def measure(url: str, body: bytes, media: str, concurrency: int, requests: int, pid: int) -> dict:
    """``requests`` POSTs of ``body`` from ``concurrency`` lean clients at once (one keep-alive
    ``http.client`` connection per thread, after a warm-up); latencies in ms, wall seconds, the
    server's and this process's CPU seconds per request."""
    import http.client
    import threading
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    headers = {"Content-Type": media, "Accept": media}
    latencies: list[float] = []
    failures: list[str] = []
    start_line = threading.Barrier(concurrency + 1)

    def client(count: int) -> None:
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
        mine = []

        def one(record: bool) -> None:
            started = time.perf_counter()
            connection.request("POST", parts.path, body=body, headers=headers)
            answer = connection.getresponse()
            content = answer.read()
            if record:
                mine.append((time.perf_counter() - started) * 1000)
            if answer.status != 200:
                failures.append(f"{url}: {answer.status} {content[:500]!r}")

        for _ in range(3):  # warm-up
            one(False)
        start_line.wait()
        for _ in range(count):
            one(True)
        connection.close()
        latencies.extend(mine)

    shares = [requests // concurrency + (i < requests % concurrency) for i in range(concurrency)]
    threads = [threading.Thread(target=client, args=(n,)) for n in shares]
    pids = server_processes(pid)
    for thread in threads:
        thread.start()
    start_line.wait()
    meter = Meter(pids)
    for thread in threads:
        thread.join()
    summary = meter.summary(latencies, requests)
    if failures:
        raise SystemExit(failures[0])
    return summary


async def measure_httpx(url: str, body: bytes, media: str, requests: int, pid: int) -> dict:
    """:func:`measure` at concurrency 1 with ``httpx.AsyncClient``, what many Python services
    call with: its own CPU per request shows in the latency."""
    import httpx

    headers = {"Content-Type": media, "Accept": media}
    latencies: list[float] = []
    pids = server_processes(pid)
    async with httpx.AsyncClient(timeout=120) as client:
        for _ in range(3):
            await client.post(url, content=body, headers=headers)
        meter = Meter(pids)
        for _ in range(requests):
            begun = time.perf_counter()
            answer = await client.post(url, content=body, headers=headers)
            latencies.append((time.perf_counter() - begun) * 1000)
            if answer.status_code != 200:
                raise SystemExit(f"{url}: {answer.status_code} {answer.text[:500]}")
        return meter.summary(latencies, requests)


NOOP_APP = """
import uvicorn
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b'{"anomaly_score": 0.0}'})
uvicorn.run(app, host="127.0.0.1", port=PORT, log_level="warning", access_log=False)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-rows", type=int, default=20_000)
    parser.add_argument("--batch-rows", type=int, default=200_000)
    parser.add_argument("--epochs", type=int, default=10, help="training epochs (speed does not "
                        "depend on them; the architecture is the demo's)")  # fmt: skip
    parser.add_argument("--one-row-requests", type=int, default=2000)
    parser.add_argument("--bulk-requests", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3, help="batch scoring runs (median)")
    parser.add_argument(
        "--workers",
        type=int,
        default=len(os.sched_getaffinity(0)),
        help="`aeflow api --workers` for the second server, measured at concurrency 8 and 32 "
        "(default: the usable CPUs; 1 skips it)",
    )
    parser.add_argument("--write-doc", action="store_true", help="write docs/benchmarks/serving.md")
    args = parser.parse_args()

    load_start = load_average()
    with tempfile.TemporaryDirectory(prefix="aeflow-serving-bench-") as folder:
        work = Path(folder)
        print("preparing data and model ...", flush=True)
        setup = prepare(work, args.train_rows, args.batch_rows, args.epochs)
        print("batch scoring ...", flush=True)
        batch_rate, batch_seconds = batch_rows_per_second(setup, args.repeats)
        port = free_port()
        server = start_server(setup["config"], port, work / "server.log")
        try:
            results = run_requests(server.pid, port, setup["batch"], args)
        finally:
            server.terminate()
            server.wait(30)
        if args.workers > 1:
            port = free_port()
            server = start_server(setup["config"], port, work / "workers.log", args.workers)
            try:
                results |= run_throughput(server.pid, port, setup["batch"], args)
            finally:
                server.terminate()
                server.wait(30)
    load_end = load_average()
    report = render(setup, batch_rate, batch_seconds, results, load_start, load_end, args)
    print(report)
    if args.write_doc:
        path = write_report("serving", "Online scoring speed (aeflow api)", [report])
        print(f"wrote {path}")


def run_requests(pid: int, port: int, batch: Path, args: argparse.Namespace) -> dict:
    """Every measured case: {(operation, rows, form, concurrency): measure()}."""
    one, bulk = bodies(batch, 1), bodies(batch, 1000)
    cases = [("score", 1, "json", 1, args.one_row_requests)]
    cases += [("score", 1000, form, 1, args.bulk_requests) for form in ("json", "arrow")]
    for concurrency in (8, 32):
        cases.append(("score", 1, "json", concurrency, args.one_row_requests))
        cases += [("score", 1000, f, concurrency, args.bulk_requests) for f in ("json", "arrow")]
    cases.append(("explain", 1, "json", 1, args.one_row_requests // 4))
    results = {}
    for operation, rows, form, concurrency, requests in cases:
        body, media = (one if rows == 1 else bulk)[form]
        url = f"http://127.0.0.1:{port}/{operation}"
        print(f"{operation} {rows} row(s) {form} x{concurrency} ...", flush=True)
        results[(operation, rows, form, concurrency, LEAN, 1)] = measure(
            url, body, media, concurrency, requests, pid
        )
    body, media = one["json"]
    print("score 1 row json x1 with httpx.AsyncClient ...", flush=True)
    results[("score", 1, "json", 1, HTTPX, 1)] = asyncio.run(
        measure_httpx(f"http://127.0.0.1:{port}/score", body, media, args.one_row_requests, pid)
    )
    print("a no-op ASGI app under uvicorn ...", flush=True)
    noop_port = free_port()
    noop = subprocess.Popen(
        [sys.executable, "-c", NOOP_APP.replace("PORT", str(noop_port))],
        start_new_session=True,
    )
    try:
        wait_until_up(noop, f"http://127.0.0.1:{noop_port}/score", "no-op app")
        url = f"http://127.0.0.1:{noop_port}/score"
        results[("no-op ASGI app", 1, "json", 1, LEAN, 1)] = measure(
            url, body, media, 1, args.one_row_requests, noop.pid
        )
        results[("no-op ASGI app", 1, "json", 1, HTTPX, 1)] = asyncio.run(
            measure_httpx(url, body, media, args.one_row_requests, noop.pid)
        )
    finally:
        noop.terminate()
        noop.wait(30)
    return results


def run_throughput(pid: int, port: int, batch: Path, args: argparse.Namespace) -> dict:
    """The concurrent cases again against a server of ``args.workers`` worker processes."""
    one, bulk = bodies(batch, 1), bodies(batch, 1000)
    results = {}
    for concurrency in (8, 32):
        for rows, form, requests in (
            (1, "json", args.one_row_requests),
            (1000, "json", args.bulk_requests),
            (1000, "arrow", args.bulk_requests),
        ):
            body, media = (one if rows == 1 else bulk)[form]
            print(f"score {rows} row(s) {form} x{concurrency}, {args.workers} workers ...")
            results[("score", rows, form, concurrency, LEAN, args.workers)] = measure(
                f"http://127.0.0.1:{port}/score", body, media, concurrency, requests, pid
            )
    return results


def render(
    setup: dict,
    batch_rate: float,
    batch_seconds: list[float],
    results: dict,
    load_start: str,
    load_end: str,
    args: argparse.Namespace,
) -> str:
    rows_out = []
    for (operation, rows, form, concurrency, client, workers), r in results.items():
        rate = rows * r["requests"] / r["wall"]
        endpoint = operation if operation.startswith("no-op") else f"/{operation}"
        share = "" if operation.startswith("no-op") else f"{rate / batch_rate:.2f}"
        rows_out.append(
            [
                endpoint, f"{rows:,}", form, concurrency, workers, client, r["requests"],
                f"{r['p50']:.2f}", f"{r['p99']:.2f}", f"{rate:,.0f}", share,
                f"{r['cpu_ms_per_request']:.2f}", f"{r['client_cpu_ms_per_request']:.2f}",
            ]
        )  # fmt: skip
    table = markdown_table(
        ["endpoint", "rows/request", "body", "concurrency", "server workers", "client",
         "requests", "p50 ms",
         "p99 ms", "rows/s", "share of batch rows/s", "server CPU ms/request",
         "client CPU ms/request"],
        rows_out,
    )  # fmt: skip
    single = results[("score", 1, "json", 1, LEAN, 1)]
    best_bulk = max(
        (1000 * r["requests"] / r["wall"], form, c, workers)
        for (op, rows, form, c, _client, workers), r in results.items()
        if op == "score" and rows == 1000
    )
    checks = [
        f"- 1-row p50 at concurrency 1: {single['p50']:.2f} ms (target < {TARGET_P50_MS:g} ms): "
        f"{'met' if single['p50'] < TARGET_P50_MS else 'NOT met'}",
        f"- 1-row p99 at concurrency 1: {single['p99']:.2f} ms (target < {TARGET_P99_MS:g} ms): "
        f"{'met' if single['p99'] < TARGET_P99_MS else 'NOT met'}",
        f"- 1,000-row requests: best {best_bulk[0]:,.0f} rows/s ({best_bulk[1]}, concurrency "
        f"{best_bulk[2]}, {best_bulk[3]} server worker(s)) = {best_bulk[0] / batch_rate:.2f} of batch scoring's {batch_rate:,.0f} "
        f"rows/s (target >= {TARGET_SHARE:g}): "
        f"{'met' if best_bulk[0] / batch_rate >= TARGET_SHARE else 'NOT met'}",
    ]
    return "\n".join(
        [
            f"- load average (1, 5, 15 min) at start: {load_start}; at end: {load_end} "
            f"(`uptime`). The machine is shared with other engineers' jobs: wall times are "
            "noisy, the server's CPU ms per request less so.",
            f"- model: the demo's architecture (hidden {list(setup['hidden'])}, latent "
            f"{setup['latent']}, {setup['features']} preprocessed features) fitted on "
            f"{args.train_rows:,} rows; server: `aeflow api` defaults (one worker process, "
            "compute threads = CPUs, 1 torch thread each, a log line per request to a file), "
            "uvicorn with httptools and uvloop, then the concurrent cases again with "
            f"`--workers {args.workers}` (the server CPU column sums the worker processes); "
            "client: this process on the same machine, one keep-alive `http.client` "
            "connection per concurrent client, each in its own thread (the targets are read "
            "from these rows); the 1-row case again with httpx.AsyncClient, and both against a "
            "no-op ASGI app under the same uvicorn settings, show what the client and the HTTP "
            "stack cost on their own.",
            f"- batch scoring: `score_batch` (what `aeflow score` runs per batch, validation "
            f"aside) on a {args.batch_rows:,}-row demo day: {batch_rate:,.0f} rows/s (median "
            f"of {len(batch_seconds)} runs: {', '.join(f'{s:.2f}' for s in batch_seconds)} s).",
            "",
            table,
            "",
            "Targets (issue 16):",
            "",
            *checks,
        ]
    )


if __name__ == "__main__":
    main()
