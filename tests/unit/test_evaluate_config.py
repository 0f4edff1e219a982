"""The `[evaluation]` section of the pipeline config: defaults and clear errors."""

from __future__ import annotations

import pytest

from flows.config import ConfigError, load_config

MINIMAL = """
dataset = "shop"
[columns]
id = "order_id"
numeric = ["amount"]
[validation]
suite = "suite.json"
"""


def test_evaluation_defaults(tmp_path):
    path = tmp_path / "pipeline.toml"
    path.write_text(MINIMAL)
    evaluation = load_config(path).evaluation
    assert evaluation.holdout_fraction == 0.2 and evaluation.holdout_max_rows == 100_000
    assert evaluation.baselines and evaluation.report
    assert evaluation.reconstruction_margin == 0.05 and evaluation.auroc_margin == 0.01
    assert evaluation.leakage_auroc == 0.98


def test_evaluation_settings_are_read(tmp_path):
    path = tmp_path / "pipeline.toml"
    path.write_text(
        MINIMAL
        + "[evaluation]\nholdout_fraction = 0.3\nbaselines = false\nreconstruction_margin = 0\n"
    )
    evaluation = load_config(path).evaluation
    assert evaluation.holdout_fraction == 0.3 and not evaluation.baselines
    assert evaluation.reconstruction_margin == 0


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("holdout_fraction = 0.95", "evaluation.holdout_fraction"),
        ("auroc_margin = -0.1", "evaluation.auroc_margin"),
        ("reconstruction_margn = 0.1", "unknown key 'evaluation.reconstruction_margn'"),
    ],
)
def test_bad_evaluation_settings_name_the_key(tmp_path, line, message):
    path = tmp_path / "pipeline.toml"
    path.write_text(MINIMAL + f"[evaluation]\n{line}\n")
    with pytest.raises(ConfigError, match=message) as error:
        load_config(path)
    assert str(path) in str(error.value)
