"""A config typo is a config error before any batch is touched: the config's columns against the
suite's column set and the champion's feature schema."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
from model_support import register_tiny_champion

from flows.config import ConfigError, load_config
from flows.preflight import check_config_columns
from tasks.contract import model_column_problems, suite_column_problems
from tasks.demo_data import generate_demo_data
from tasks.io import Storage
from tasks.validation import draft_suite, suite_json

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_suite_problems_name_the_columns_and_a_near_match():
    roles = {"columns.id": ["row_id"], "columns.numeric": ["age", "credit_amnt"]}
    column_set = ["row_id", "age", "credit_amount", "default"]
    [problem] = suite_column_problems(roles, column_set, "german.json", optional=["default"])
    assert "columns.numeric names ['credit_amnt']" in problem
    assert "german.json" in problem and "did you mean 'credit_amount'?" in problem
    assert suite_column_problems(roles | {"columns.numeric": ["age"]}, column_set, "g.json") == []
    assert suite_column_problems(roles, None, "g.json") == []  # no column-set check: nothing to say
    # the label is optional: it need not be in the column set
    assert suite_column_problems({"columns.id": ["row_id"]}, ["row_id"], "g", ["default"]) == []


def test_model_problems_name_both_sides():
    schema = {"numeric_columns": ["age", "credit_amount"], "categorical_columns": ["purpose"]}
    problems = model_column_problems(["age", "credit_amnt"], ["purpose"], schema, "v1")
    assert problems == [
        "columns.numeric names ['credit_amnt'], which model v1 was not trained on (it has "
        "['age', 'credit_amount']) (did you mean 'credit_amount'?)",
        "model v1 was trained on numeric column(s) ['credit_amount'], missing from columns.numeric",
    ]
    assert model_column_problems(["age", "credit_amount"], ["purpose"], schema, "v1") == []


@pytest.fixture
def demo(tmp_path: Path) -> dict:
    """The demo config on a temporary root with a suite, two batches and a tiny champion."""
    text = (REPO_ROOT / "configs" / "demo.toml").read_text()
    config = tmp_path / "demo.toml"
    config.write_text(
        text.replace('root = "../data"', 'root = "data"').replace(
            'suite = "../expectations/demo.json"', 'suite = "demo.json"'
        )
    )
    cfg = load_config(config)
    layout = Storage(cfg.storage_root, cfg.dataset)
    manifest = generate_demo_data(
        layout.incoming, days=2, rows_per_day=300, seed=1, drift_day=None, malformed_day=None
    )
    cols = cfg.columns
    suite = draft_suite(
        pq.read_table(manifest.paths[0]),
        name=cfg.dataset,
        columns=cols.model_copy(update={"missing_values": []}),
    )
    Path(cfg.suite_path).write_text(suite_json(suite))
    version = register_tiny_champion(layout, manifest.paths[0], tmp_path)
    return {"config": config, "text": config.read_text(), "layout": layout, "version": version}


def test_a_typo_in_the_config_is_a_config_error_naming_the_fix(demo):
    check_config_columns(load_config(demo["config"]))  # the right config passes both checks
    demo["config"].write_text(demo["text"].replace('"merchant_risk_score"', '"merchant_risk_scor"'))
    cfg = load_config(demo["config"])
    with pytest.raises(ConfigError) as raised:
        check_config_columns(cfg)
    message = str(raised.value)
    assert "no batch was read or moved" in message
    assert "columns.numeric names ['merchant_risk_scor'], not in the suite's column set" in message
    assert "did you mean 'merchant_risk_score'?" in message
    assert f"which model {demo['version']} was not trained on" in message
    assert "redraft the suite" in message and "aeflow train" in message
    # train checks the suite only: there is no model of these columns yet
    with pytest.raises(ConfigError, match="not in the suite's column set") as raised:
        check_config_columns(cfg, against_model=False)
    assert "model" not in str(raised.value).split("to fix:")[0]


def test_a_config_that_drops_a_model_column_is_named(demo):
    demo["config"].write_text(demo["text"].replace('    "balance_ratio",\n', ""))
    with pytest.raises(ConfigError, match=r"trained on numeric column\(s\) \['balance_ratio'\]"):
        check_config_columns(load_config(demo["config"]))


def test_a_text_label_without_its_anomaly_values_is_a_config_error_before_training(tmp_path):
    # Training found out only after reading and validating every batch of the window, with a
    # Prefect traceback per task; the suite already knows the label is text.
    import pyarrow as pa

    table = pa.table({"id": ["a", "b", "c"], "x": [1.0, 2.0, 3.0], "lab": ["ok", "fraud", "ok"]})
    config = tmp_path / "lbl.toml"
    text = (
        'dataset = "lbl"\n[columns]\nid = "id"\nlabel = "lab"\nnumeric = ["x"]\n'
        '[validation]\nsuite = "lbl.json"\n'
    )
    config.write_text(text)
    cfg = load_config(config)
    suite = draft_suite(table, name="lbl", columns=cfg.columns)
    Path(cfg.suite_path).write_text(suite_json(suite))
    with pytest.raises(ConfigError) as raised:
        check_config_columns(cfg, against_model=False)
    message = str(raised.value)
    assert "columns.label 'lab' is text" in message and "'fraud', 'ok'" in message
    assert "columns.label_positive" in message and "no batch was read or moved" in message
    config.write_text(text.replace('label = "lab"', 'label = "lab"\nlabel_positive = ["fraud"]'))
    check_config_columns(load_config(config), against_model=False)


def test_a_suite_check_on_a_column_outside_its_set_stops_a_run_before_any_batch(tmp_path):
    import json

    import pyarrow as pa

    config = tmp_path / "shop.toml"
    config.write_text(
        'dataset = "shop"\n[columns]\nid = "id"\nnumeric = ["x"]\n[validation]\nsuite = "s.json"\n'
    )
    cfg = load_config(config)
    suite = draft_suite(
        pa.table({"id": ["a", "b"], "x": [1.0, 2.0]}), name="shop", columns=cfg.columns
    )
    suite["expectations"].append(
        {"type": "expect_column_values_to_be_between", "kwargs": {"column": "xx", "min_value": 0}}
    )
    Path(cfg.suite_path).write_text(json.dumps(suite))
    with pytest.raises(
        ConfigError, match=r"column 'xx' is not in the suite's column set"
    ) as raised:
        check_config_columns(cfg)
    assert "no batch was read or moved" in str(raised.value)
    assert "fix the suite" in str(raised.value)
