from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from flows.config import ConfigError, load_config

REPO_ROOT = Path(__file__).resolve().parents[2]

MINIMAL = """
dataset = "shop"
[columns]
id = "order_id"
numeric = ["amount"]
categorical = ["country"]
[validation]
suite = "suite.json"
"""


def write(tmp_path: Path, text: str, name: str = "pipeline.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_minimal_config_gets_defaults_and_resolves_paths_against_its_folder(tmp_path):
    cfg = load_config(write(tmp_path, MINIMAL))
    assert cfg.dataset == "shop"
    assert cfg.threshold.method == "fpr" and cfg.threshold.value == 0.01
    assert cfg.suite_path == str(tmp_path / "suite.json")
    assert cfg.storage_root == str(tmp_path / "data")
    params = cfg.detector_params()
    assert params["numeric_columns"] == ["amount"]
    assert params["categorical_columns"] == ["country"]
    assert params["threshold_method"] == "fpr"


def test_url_storage_root_is_kept_as_is(tmp_path):
    cfg = load_config(write(tmp_path, MINIMAL + '[storage]\nroot = "s3://bucket/aeflow"\n'))
    assert cfg.storage_root == "s3://bucket/aeflow"


def test_unknown_key_names_the_key_the_file_and_the_allowed_keys(tmp_path):
    path = write(tmp_path, MINIMAL.replace('id = "order_id"', 'id = "order_id"\nnumerics = ["x"]'))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert "columns.numerics" in message
    assert str(path) in message
    assert "numeric" in message and "categorical" in message  # what is allowed


def test_unknown_top_level_section_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown key 'modle'.*allowed here: .*model"):
        load_config(write(tmp_path, MINIMAL + "[modle]\nepochs = 3\n"))


def test_wrong_type_names_the_key_and_the_value(tmp_path):
    text = MINIMAL + '[scoring]\nworkers = "many"\n'
    with pytest.raises(ConfigError, match=r"scoring\.workers.*'many'"):
        load_config(write(tmp_path, text))


def test_missing_required_key_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"missing required key 'columns\.id'"):
        load_config(write(tmp_path, MINIMAL.replace('id = "order_id"\n', "")))


def test_threshold_value_outside_its_method_range_states_the_rule(tmp_path):
    text = MINIMAL + '[threshold]\nmethod = "contamination"\nvalue = 0.7\n'
    with pytest.raises(ConfigError, match=r"must be in \(0, 0\.5\], got 0\.7"):
        load_config(write(tmp_path, text))


def test_unknown_model_parameter_lists_the_allowed_ones(tmp_path):
    with pytest.raises(
        ConfigError, match=r"unknown model parameter\(s\) \['hiden_sizes'\]; allowed"
    ):
        load_config(write(tmp_path, MINIMAL + "[model]\nhiden_sizes = [8]\n"))


def test_model_parameters_are_checked_against_the_detector_without_importing_torch(tmp_path):
    from models import AutoencoderDetector
    from models.param_names import detector_parameter_names

    assert detector_parameter_names() == set(AutoencoderDetector().get_params())
    # every CLI command loads its config: that alone must not pay for torch or scikit-learn
    config = write(tmp_path, MINIMAL + "[model]\nhidden_sizes = [8]\nepochs = 2\n")
    probe = (
        "import sys; from flows.config import load_config; "
        f"load_config({str(config)!r}); print(sorted({{'torch', 'sklearn'}} & set(sys.modules)))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO_ROOT, timeout=120
    )
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip() == "[]"


def test_column_roles_must_not_overlap(tmp_path):
    text = MINIMAL.replace('categorical = ["country"]', 'categorical = ["country", "order_id"]')
    with pytest.raises(ConfigError, match="must not also be a feature column"):
        load_config(write(tmp_path, text))


def test_yaml_configs_are_read_the_same_way(tmp_path):
    text = """
dataset: shop
columns: {id: order_id, numeric: [amount], categorical: [country]}
validation: {suite: suite.json}
"""
    assert load_config(write(tmp_path, text, "pipeline.yaml")).columns.numeric == ["amount"]


def test_invalid_syntax_and_missing_file_are_clear(tmp_path):
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "dataset = \n"))
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match=r"end in \.toml, \.yaml or \.yml"):
        load_config(write(tmp_path, MINIMAL, "pipeline.ini"))


def test_every_shipped_config_loads():
    configs = sorted((REPO_ROOT / "configs").glob("*.toml"))
    assert configs, "configs/ must hold at least the demo config"
    for path in configs:
        cfg = load_config(path)
        assert cfg.columns.features


def test_unknown_key_in_an_optional_nested_section_lists_that_sections_keys(tmp_path):
    text = MINIMAL + "[ingest]\nheader = true\n[ingest.date_from_parts]\nmonht = 'm'\n"
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text))
    line = next(x for x in str(err.value).splitlines() if "monht" in x)
    assert "allowed here: day, first_year, month" in line


@pytest.mark.parametrize(
    ("role", "name"),
    [("id", "batch_id"), ("timestamp", "scored_at"), ("id", "z_3"), ("timestamp", "date")],
)
def test_an_id_or_timestamp_named_like_an_output_column_is_refused(tmp_path, role, name):
    # The id and timestamp are copied into every scored file beside aeflow's own columns: one of
    # the same name made a file with two `batch_id` columns, which pandas and pyarrow refuse to
    # read, and a `date` column breaks every reader of the date=... partitions.
    roles = {"id": "order_id", "timestamp": "event_time", role: name}
    text = MINIMAL.replace(
        'id = "order_id"', f'id = "{roles["id"]}"\ntimestamp = "{roles["timestamp"]}"'
    )
    with pytest.raises(
        ConfigError, match=rf"columns.{role} '{name}'.*aeflow writes.*Rename the column"
    ):
        load_config(write(tmp_path, text))


def test_the_reserved_names_are_the_scored_files_columns():
    import pyarrow as pa

    from tasks.output_names import reserved_output_name
    from tasks.scored_output import output_schema

    schema = output_schema(pa.schema([("my_id", pa.string())]), ["my_id"], latent_dim=12)
    assert all(reserved_output_name(name) for name in [*schema.names[1:], "date"])
    assert not any(reserved_output_name(n) for n in ["my_id", "z", "z_", "z_1a", "dates"])


def test_a_feature_name_with_a_comma_is_refused(tmp_path):
    # top_features joins the names of the columns that explain a row with ',': a column called
    # "amount, eur" made "amount, eur,country" unsplittable for every alerting job.
    text = MINIMAL.replace('numeric = ["amount"]', 'numeric = ["amount, eur"]')
    with pytest.raises(ConfigError, match=r"'amount, eur'.*top_features.*Rename the column"):
        load_config(write(tmp_path, text))
