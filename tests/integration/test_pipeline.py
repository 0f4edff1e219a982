"""The whole path through Prefect: demo data -> train flow -> score flow -> outputs on disk."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from demo_config_support import private_demo_config
from sklearn.metrics import roc_auc_score

from flows.config import load_config
from flows.score import run_score
from flows.train import train_flow
from tasks.demo_data import LABEL_COLUMN, generate_demo_data
from tasks.io import Storage

DAYS, ROWS_PER_DAY, TRAIN_DAYS = 6, 2500, 3


@pytest.fixture(scope="module")
def demo_pipeline(tmp_path_factory):
    """A demo config on a private storage root, with generated data, trained and scored once."""
    # Small and quick: a few epochs are enough for the planted anomalies.
    config = private_demo_config(
        tmp_path_factory.mktemp("pipeline"),
        lambda text: text.replace("[threshold]", "[model]\nepochs = 15\n\n[threshold]"),
    )
    cfg = load_config(config)
    layout = Storage(cfg.storage_root, cfg.dataset)
    manifest = generate_demo_data(
        layout.incoming,
        days=DAYS,
        rows_per_day=ROWS_PER_DAY,
        seed=7,
        drift_day=-2,
        malformed_day=-1,
    )
    trained = train_flow(config=str(config), until=manifest.batch_ids[TRAIN_DAYS - 1])
    summary = run_score(str(config))
    return {
        "config": config,
        "cfg": cfg,
        "layout": layout,
        "manifest": manifest,
        "trained": trained,
        "summary": summary,
    }


def test_train_registers_and_promotes_a_champion(demo_pipeline):
    trained, layout = demo_pipeline["trained"], demo_pipeline["layout"]
    registry = layout.registry()
    assert registry.champion() == trained["version"]
    assert trained["training_batches"] == demo_pipeline["manifest"].batch_ids[:TRAIN_DAYS]
    bundle = Path(layout.models, trained["version"])
    assert (bundle / "weights.safetensors").is_file() and (bundle / "preprocessor.skops").is_file()
    assert not list(bundle.rglob("*.pkl")) and not list(bundle.rglob("*.pickle"))


def test_score_writes_every_valid_batch_once_and_quarantines_the_malformed_one(demo_pipeline):
    summary, layout, manifest = (
        demo_pipeline["summary"],
        demo_pipeline["layout"],
        demo_pipeline["manifest"],
    )
    malformed = manifest.malformed_batch_id
    assert summary["batches_scored"] == DAYS - 1
    assert [q["batch_id"] for q in summary["quarantined"]] == [malformed]
    # rows in = rows scored + rows quarantined, and every generated row is accounted for
    assert summary["rows_in"] == summary["rows_scored"] + summary["rows_quarantined"]
    assert summary["rows_in"] == sum(manifest.rows_per_file)
    quarantine = Path(layout.quarantine(malformed))
    assert (quarantine / "input" / f"{malformed}.parquet").is_file()
    report = json.loads((quarantine / "report.json").read_text())
    assert report["status"] == "quarantined"
    assert "merchant_risk_score" in (quarantine / "report.md").read_text()
    assert not Path(layout.incoming, f"{malformed}.parquet").exists()

    outputs = sorted(Path(layout.scored).glob("date=*/*.parquet"))
    assert len(outputs) == DAYS - 1
    expected_dates = sorted(f"date={b}" for b in manifest.batch_ids if b != malformed)
    assert sorted(p.parent.name for p in outputs) == expected_dates
    for path in outputs:
        batch_id = path.stem
        table = pq.read_table(path)
        source = pq.read_table(Path(layout.incoming, f"{batch_id}.parquet"))
        assert table.num_rows == source.num_rows
        assert (
            table.column("transaction_id").to_pylist()
            == source.column("transaction_id").to_pylist()
        )
        names = table.column_names
        for column in (
            "anomaly_score",
            "anomaly_percentile",
            "is_anomaly",
            "threshold",
            "top_features",
            "model_version",
            "batch_id",
            "scored_at",
            "z_0",
        ):
            assert column in names
        assert set(table.column("batch_id").to_pylist()) == {batch_id}
        assert set(table.column("model_version").to_pylist()) == {summary["model_version"]}


def test_anomaly_scores_find_the_injected_anomalies(demo_pipeline):
    layout = demo_pipeline["layout"]
    scores, labels = [], []
    for path in sorted(Path(layout.scored).glob("date=*/*.parquet")):
        scored = pq.read_table(path, columns=["transaction_id", "anomaly_score"]).to_pandas()
        source = pq.read_table(
            Path(layout.incoming, f"{path.stem}.parquet"), columns=["transaction_id", LABEL_COLUMN]
        ).to_pandas()
        merged = scored.merge(source, on="transaction_id", validate="one_to_one")
        scores.extend(merged["anomaly_score"])
        labels.extend(merged[LABEL_COLUMN])
    auroc = roc_auc_score(labels, scores)
    assert auroc > 0.8, f"AUROC {auroc:.3f} of anomaly_score against the injected labels"


def test_a_second_score_run_skips_what_is_already_scored(demo_pipeline):
    again = run_score(str(demo_pipeline["config"]))
    assert again["batches_scored"] == 0 and again["batches_quarantined"] == 0
    assert again["batches_skipped"] == DAYS - 1
    assert again["rows_in"] == again["rows_scored"] + again["rows_quarantined"] == 0


def test_training_again_on_the_same_data_reuses_the_champion(demo_pipeline):
    """Same data, config and seed give the same model: nothing new is registered or promoted."""
    layout, manifest = demo_pipeline["layout"], demo_pipeline["manifest"]
    first = demo_pipeline["trained"]["version"]
    again = train_flow(
        config=str(demo_pipeline["config"]), until=manifest.batch_ids[TRAIN_DAYS - 1]
    )
    assert again["reused"] is True and again["version"] == first
    assert again["promoted"] is False
    assert again["gate"]["reasons"][0].startswith(f"identical to the champion {first}")
    registry = layout.registry()
    assert [v["version"] for v in registry.versions()] == [first]
    assert registry.champion() == first
