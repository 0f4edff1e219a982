"""The HTML report and metrics.json: schema, embedded figures, registry record, artifact text."""

from __future__ import annotations

import base64
import copy
import io
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import jsonschema
import matplotlib.image
import numpy as np
import pytest
from report_support import run_and_report

from tasks.demo_data import (
    CATEGORICAL_COLUMNS,
    LABEL_COLUMN,
    NUMERIC_COLUMNS,
)
from tasks.report import METRICS_SCHEMA, validate_metrics

REPO_ROOT = Path(__file__).resolve().parents[2]
NUMERIC, CATEGORICAL = list(NUMERIC_COLUMNS), list(CATEGORICAL_COLUMNS)


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    return run_and_report(tmp_path_factory.mktemp("labelled"), LABEL_COLUMN)


@pytest.fixture(scope="module")
def unlabelled(tmp_path_factory):
    return run_and_report(tmp_path_factory.mktemp("unlabelled"), None)


class ImageCollector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images: list[dict[str, str]] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "img":
            self.images.append(dict(attrs))


def decode_images(html_path: str) -> dict[str, np.ndarray]:
    parser = ImageCollector()
    parser.feed(Path(html_path).read_text(encoding="utf-8"))
    decoded = {}
    for image in parser.images:
        prefix = "data:image/png;base64,"
        assert image["src"].startswith(prefix), "every image is embedded"
        png = base64.b64decode(image["src"][len(prefix) :], validate=True)
        decoded[image["data-figure"]] = matplotlib.image.imread(io.BytesIO(png), format="png")
    return decoded


@pytest.mark.parametrize("case", ["labelled", "unlabelled"])
def test_metrics_json_validates_against_its_schema(case, request):
    written = request.getfixturevalue(case)["written"]
    metrics = json.loads(Path(written["metrics"]).read_text())
    validate_metrics(metrics)
    assert (metrics["labels"] is None) is (case == "unlabelled")
    assert metrics["files"] == {
        "report": "report.html",
        "metrics": "metrics.json",
        "holdout_scores": "holdout_scores.parquet",
    }
    assert metrics["figures"] == written["figures"]


def test_the_documented_schema_is_the_one_the_code_uses():
    documented = json.loads((REPO_ROOT / "docs" / "metrics.schema.json").read_text())
    assert documented == METRICS_SCHEMA, (
        "regenerate: python -m tasks.report > docs/metrics.schema.json"
    )
    jsonschema.Draft202012Validator.check_schema(documented)


def test_the_schema_rejects_missing_renamed_and_out_of_range_fields(labelled):
    metrics = json.loads(Path(labelled["written"]["metrics"]).read_text())
    broken = []
    missing = copy.deepcopy(metrics)
    del missing["scores"]
    broken.append(missing)
    renamed = copy.deepcopy(metrics)
    renamed["reconstruction"]["mean_squared_error"] = renamed["reconstruction"].pop("mse")
    broken.append(renamed)
    out_of_range = copy.deepcopy(metrics)
    out_of_range["labels"]["auroc"] = 1.2
    broken.append(out_of_range)
    unknown_decision = copy.deepcopy(metrics)
    unknown_decision["gate"]["decision"] = "maybe"
    broken.append(unknown_decision)
    for document in broken:
        with pytest.raises(jsonschema.ValidationError):
            validate_metrics(document)


def test_labelled_report_embeds_every_plot_including_roc_and_pr(labelled):
    images = decode_images(labelled["written"]["html"])
    assert list(images) == [
        "loss_curves",
        "score_histogram",
        "column_errors",
        "latent_projection",
        "roc_curve",
        "pr_curve",
    ]
    for name, pixels in images.items():
        assert pixels.shape[0] > 200 and pixels.shape[1] > 300, name
        assert pixels[..., :3].std() > 0.05, f"{name} is blank"


def test_unlabelled_report_has_no_label_plots(unlabelled):
    images = decode_images(unlabelled["written"]["html"])
    assert list(images) == ["loss_curves", "score_histogram", "column_errors", "latent_projection"]
    assert all(pixels[..., :3].std() > 0.05 for pixels in images.values())
    text = Path(unlabelled["written"]["html"]).read_text()
    text = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", text)  # the words, not the pixels
    assert "Confusion matrix" not in text and "AUROC" not in text and "F1" not in text


def test_the_report_is_one_self_contained_file(labelled):
    text = Path(labelled["written"]["html"]).read_text()
    parser = ImageCollector()
    parser.feed(text)
    assert "script" not in parser.tags and "link" not in parser.tags
    assert "http://" not in text and "https://" not in text
    assert "Promoted: this model is now the champion." in text


def test_the_report_location_and_gate_are_in_the_registry_entry(labelled):
    entry = labelled["storage"].registry().entry(labelled["version"])
    assert entry["report"]["html"] == labelled["written"]["html"]
    assert entry["report"]["run"] == "run-1"
    assert entry["gate"]["decision"] == "promote"
    assert entry["evaluation"]["auroc"] is not None


def test_the_artifact_markdown_carries_headline_numbers_and_the_link(labelled):
    markdown = labelled["written"]["markdown"]
    metrics = json.loads(Path(labelled["written"]["metrics"]).read_text())
    assert Path(labelled["written"]["html"]).as_uri() in markdown
    assert f"| AUROC | {metrics['labels']['auroc']:.4g} |" in markdown
    assert f"| reconstruction MSE | {metrics['reconstruction']['mse']:.4g} |" in markdown
    assert "**Gate: promote**" in markdown
    table = labelled["written"]["table"]
    assert [row["model"] for row in table][1:6] == ["IForest", "ECOD", "HBOS", "KNN", "PCA"]
    assert table[0]["auroc"] == metrics["labels"]["auroc"]
