"""The score flow on what real storage and real names bring (issue 12): refused batch ids are
quarantined with every input kept, ignored inputs are listed in the summary and its artifact,
storage outages are retried and then fail the run naming the storage (never quarantining good
data), unknown row counts are reported as unknown.

Storage is a local folder or ``faulty://`` (tests/faulty_storage.py: a real fsspec file system that
fails where its plan says); Prefect is the session's test server.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from faulty_storage import injected, storage_options, write_plan
from model_support import register_tiny_champion

from flows.cli import format_score_summary
from flows.config import load_config
from flows.score import run_score
from tasks.demo_data import generate_demo_data
from tasks.io import Storage

REPO_ROOT = Path(__file__).resolve().parents[2]
DATASET = "edges"  # its own artifact keys on the shared Prefect server
ROWS = 1200


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_config(
    folder: Path, root: str, options: dict | None = None, retries: int | None = None
) -> Path:
    text = (REPO_ROOT / "configs" / "demo.toml").read_text()
    text = text.replace('dataset = "demo"', f'dataset = "{DATASET}"')
    storage = f'root = "{root}"'
    if retries is not None:  # quick retries: tests wait 0.2 s, 0.4 s, ... not 2 s, 4 s, ...
        storage += f"\nretries = {retries}\nretry_delay_s = 0.2"
    if options:
        pairs = ", ".join(f'{k} = "{v}"' for k, v in options.items())
        storage += f"\noptions = {{ {pairs} }}"
    text = text.replace('root = "../data"', storage)
    text = text.replace("../expectations/demo.json", str(REPO_ROOT / "expectations" / "demo.json"))
    config = folder / "edges.toml"
    config.write_text(text)
    assert load_config(config).dataset == DATASET
    return config


@pytest.fixture(scope="module")
def days(tmp_path_factory):
    """Three clean demo days and a registered tiny model (in a local registry to copy)."""
    base = tmp_path_factory.mktemp("edges")
    layout = Storage(str(base / "root"), DATASET)
    manifest = generate_demo_data(
        layout.incoming, days=3, rows_per_day=ROWS, seed=9, drift_day=None, malformed_day=None
    )
    register_tiny_champion(layout, manifest.paths[0], base, epochs=1)
    return base / "root"


@pytest.fixture
def local_project(days, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(days, root)
    return write_config(tmp_path, str(root)), root


@pytest.fixture
def faulty_project(days, tmp_path):
    """The same days on faulty://root over tmp_path, with an empty fault plan."""
    shutil.copytree(days, tmp_path / "root")
    plan = write_plan(tmp_path / "plan.json", [])
    config = write_config(tmp_path, "faulty://root", storage_options(tmp_path, plan), retries=2)
    return config, tmp_path / "root", plan


def latest_artifact(key: str) -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    async def read() -> str:
        async with get_client() as client:
            found = await client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])),
                sort=ArtifactSort.CREATED_DESC,
                limit=1,
            )
        return found[0].data if found else ""

    return asyncio.run(read())


def test_a_file_and_a_folder_with_one_stem_are_quarantined_together(local_project):
    config, root = local_project
    incoming = root / "incoming" / DATASET
    day = incoming / "2026-01-03.parquet"
    folder = incoming / "2026-01-03"
    folder.mkdir()
    shutil.copy(day, folder / "part-0.parquet")
    digests = {"file": sha256(day), "part": sha256(folder / "part-0.parquet")}

    summary = run_score(str(config), workers=2)
    assert [m["batch_id"] for m in summary["scored"]] == ["2026-01-01", "2026-01-02"]
    [refused] = summary["quarantined"]
    assert refused["batch_id"] == "2026-01-03" and "ambiguous batch id" in refused["reason"]
    assert summary["rows_in"] == summary["rows_scored"] + summary["rows_quarantined"] == 4 * ROWS
    kept = root / "quarantine" / DATASET / "2026-01-03" / "input"
    assert sha256(kept / "2026-01-03.parquet") == digests["file"]
    assert sha256(kept / "2026-01-03" / "part-0.parquet") == digests["part"]
    assert not day.exists() and not folder.exists()
    assert not list((root / "scored" / DATASET).glob("date=*/2026-01-03.parquet"))


def test_ignored_inputs_are_listed_in_the_summary_the_artifact_and_the_cli(local_project):
    config, root = local_project
    incoming = root / "incoming" / DATASET
    (incoming / "notes.txt").write_text("delivery notes")
    shutil.copy(incoming / "2026-01-01.parquet", incoming / "_staging.parquet")
    summary = run_score(str(config))
    ignored = {Path(i["path"]).name: i["reason"] for i in summary["ignored"]}
    assert set(ignored) == {"notes.txt", "_staging.parquet"}
    assert "not a Parquet file" in ignored["notes.txt"]
    artifact = latest_artifact(f"{DATASET}-score-summary")
    assert "Ignored (not batches)" in artifact and "notes.txt" in artifact
    printed = format_score_summary(summary, "scored", "quarantine")
    assert "ignored" in printed and "_staging.parquet" in printed


def test_an_unreadable_file_has_an_unknown_row_count_never_zero(local_project):
    config, root = local_project
    broken = root / "incoming" / DATASET / "2026-01-02.parquet"
    broken.write_bytes(broken.read_bytes()[: broken.stat().st_size // 2])
    summary = run_score(str(config))
    assert summary["rows_in"] is None and summary["rows_quarantined"] is None
    assert summary["rows_unknown"] == ["2026-01-02"]
    assert summary["rows_in_known"] == summary["rows_scored"] == 2 * ROWS
    printed = format_score_summary(summary, "scored", "quarantine")
    assert "unknown (>= 2400; row count unreadable for 2026-01-02)" in printed
    assert "unknown" in latest_artifact(f"{DATASET}-score-summary")


def test_a_storage_blip_is_retried_and_every_batch_is_scored(faulty_project):
    config, root, plan = faulty_project
    # each batch's first reads fail with a refused connection, as a restarting endpoint does
    write_plan(
        plan,
        [
            {
                "ops": ["open_read"],
                "match": f"incoming/{DATASET}/",
                "times": 6,
                "error": "connection",
            }
        ],
    )
    summary = run_score(str(config), workers=2)
    assert summary["batches_scored"] == 3 and summary["batches_quarantined"] == 0
    assert len(injected(plan)) == 6
    assert not (root / "quarantine").exists()


def test_a_storage_outage_fails_the_run_naming_the_storage_and_quarantines_nothing(
    faulty_project,
):
    from models.storage_errors import StorageUnavailable

    config, root, plan = faulty_project
    write_plan(
        plan, [{"ops": ["open_read"], "match": "incoming/", "times": 10_000, "error": "503"}]
    )
    with pytest.raises(StorageUnavailable, match=r"storage faulty://root/incoming/edges/2026-01-0"):
        run_score(str(config), workers=2)
    assert not (root / "quarantine").exists()
    assert not (root / "scored" / DATASET / "_success").exists()
    assert len(list((root / "incoming" / DATASET).iterdir())) == 3

    write_plan(plan, [])  # the storage is back: the next run scores everything
    assert run_score(str(config), workers=2)["batches_scored"] == 3


def rendered(markdown: str) -> str:
    """HTML as a CommonMark renderer with tables and raw HTML enabled (as in Prefect's UI) makes it."""
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": True}).enable("table").render(markdown)


def test_user_values_are_escaped_in_the_quarantine_report_and_artifacts(local_project):
    config, root = local_project
    incoming = root / "incoming" / DATASET
    name = "2026-01-02 [x](javascript:alert(1)) `x` <b>|"
    table = pq.read_table(incoming / "2026-01-02.parquet")
    table = table.append_column("<img src=x onerror=alert(1)>", pa.array(["v"] * table.num_rows))
    pq.write_table(table, incoming / f"{name}.parquet")
    (incoming / "2026-01-02.parquet").unlink()
    summary = run_score(str(config))
    assert [q["batch_id"] for q in summary["quarantined"]] == [name]
    report = (root / "quarantine" / DATASET / name / "report.md").read_text()
    artifact = latest_artifact(f"{DATASET}-score-summary")
    for markdown in (report, artifact):
        html = rendered(markdown)
        assert "<a " not in html and "<img" not in html and "<b>" not in html
        assert "&lt;img src=x onerror=alert(1)&gt;" in html or "onerror" not in markdown
        assert "&lt;b&gt;|" in html  # the id shows as written, its '|' did not split a cell
    rows = re.findall(r"<tr>(.*?)</tr>", rendered(artifact), flags=re.S)
    [row] = [r for r in rows if "2026-01-02 [x]" in r]
    assert row.count("<td") == 4  # batch, rows, reason, folder: the id's '|' split no cell


def test_refused_credentials_fail_the_run_at_once_naming_the_storage(faulty_project):
    from models.storage_errors import StorageAccessDenied

    config, root, plan = faulty_project
    # the listing is allowed, reading a batch is refused: denied is never retried
    write_plan(
        plan, [{"ops": ["open_read"], "match": "incoming/", "times": 10_000, "error": "forbidden"}]
    )
    with pytest.raises(
        StorageAccessDenied, match=r"storage faulty://root/incoming/edges/.*refused"
    ):
        run_score(str(config), workers=2)
    assert len(injected(plan)) <= 3 * 3  # no retries: at most the few reads of each batch once
    assert not (root / "quarantine").exists()
