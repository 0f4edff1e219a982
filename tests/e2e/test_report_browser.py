"""The evaluation report opens in headless Chromium and shows every plot.

A copy of each report gets a small probe script that, once the page has loaded, records for every
<img> whether the browser decoded it, its size, and the spread of its pixel values (drawn on a
canvas), and writes that into the DOM, which `chromium --dump-dom` prints. The embedded PNGs are
also decoded independently with matplotlib. Skips, saying why, when no Chromium is installed
(Debian: `apt-get install -y chromium`; CI installs it, see .ci/run).
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import matplotlib.image
import pytest
from report_support import run_and_report

from tasks.demo_data import (
    CATEGORICAL_COLUMNS,
    LABEL_COLUMN,
    NUMERIC_COLUMNS,
)

pytestmark = pytest.mark.slow

NUMERIC, CATEGORICAL = list(NUMERIC_COLUMNS), list(CATEGORICAL_COLUMNS)
LABEL_FIGURES = ["roc_curve", "pr_curve"]
COMMON_FIGURES = ["loss_curves", "score_histogram", "column_errors", "latent_projection"]

PROBE = """
<script>
window.addEventListener("load", () => {
  const found = [...document.images].map((img) => {
    const canvas = document.createElement("canvas");
    canvas.width = img.naturalWidth;
    canvas.height = img.naturalHeight;
    let spread = 0;
    if (img.naturalWidth > 0) {
      const context = canvas.getContext("2d");
      context.drawImage(img, 0, 0);
      const pixels = context.getImageData(0, 0, canvas.width, canvas.height).data;
      let sum = 0, squares = 0, n = 0;
      for (let i = 0; i < pixels.length; i += 4) {
        const grey = (pixels[i] + pixels[i + 1] + pixels[i + 2]) / 3;
        sum += grey; squares += grey * grey; n += 1;
      }
      spread = Math.sqrt(squares / n - (sum / n) ** 2);
    }
    return {figure: img.dataset.figure, complete: img.complete, width: img.naturalWidth,
            height: img.naturalHeight, spread: spread};
  });
  const out = document.createElement("pre");
  out.id = "aeflow-probe";
  out.textContent = JSON.stringify(found);
  document.body.appendChild(out);
});
</script>
"""


def chromium_binary() -> str | None:
    candidates = [os.environ.get("AEFLOW_CHROMIUM"), "chromium", "chromium-browser"]
    return next((shutil.which(c) for c in candidates if c and shutil.which(c)), None)


@pytest.fixture(scope="module")
def chromium() -> str:
    binary = chromium_binary()
    if binary is None:
        pytest.skip(
            "no Chromium found (looked for $AEFLOW_CHROMIUM, chromium, chromium-browser); "
            "install Debian's package with `apt-get install -y chromium` (CI does, see .ci/run)"
        )
    return binary


def open_in_chromium(binary: str, report: Path, workdir: Path) -> list[dict]:
    probe = workdir / "probe.html"
    probe.write_text(
        report.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"), encoding="utf-8"
    )
    command = [
        binary,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={workdir / 'profile'}",
        "--virtual-time-budget=10000",
        "--dump-dom",
        probe.as_uri(),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    found = re.search(r'<pre id="aeflow-probe">(.*?)</pre>', result.stdout, re.DOTALL)
    assert found, f"the page did not finish loading; DOM starts {result.stdout[:300]!r}"
    return json.loads(html.unescape(found.group(1)))


def embedded_pngs(report: Path) -> dict[str, bytes]:
    text = report.read_text(encoding="utf-8")
    pattern = r"data-figure='([a-z_]+)' src='data:image/png;base64,([A-Za-z0-9+/=]+)'"
    return {name: base64.b64decode(data) for name, data in re.findall(pattern, text)}


@pytest.mark.parametrize(
    ("label_column", "expected"),
    [(LABEL_COLUMN, COMMON_FIGURES + LABEL_FIGURES), (None, COMMON_FIGURES)],
    ids=["labelled", "unlabelled"],
)
def test_report_shows_every_plot_in_headless_chromium(chromium, tmp_path, label_column, expected):
    report = Path(run_and_report(tmp_path / "pipeline", label_column, seed=5)["written"]["html"])
    images = open_in_chromium(chromium, report, tmp_path)
    assert [image["figure"] for image in images] == expected
    for image in images:
        assert image["complete"] and image["width"] > 300 and image["height"] > 200, image
        assert image["spread"] > 5, f"{image['figure']} rendered blank in Chromium: {image}"
    pngs = embedded_pngs(report)
    assert list(pngs) == expected
    for name, png in pngs.items():
        pixels = matplotlib.image.imread(io.BytesIO(png), format="png")
        assert pixels[..., :3].std() > 0.05, f"{name} decodes to a blank image"
