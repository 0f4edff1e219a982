"""The demo config on a private storage root, for the tests that run the flows on demo data."""

from __future__ import annotations

import shutil
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def private_demo_config(folder: Path, edit=lambda text: text) -> Path:
    """``configs/demo.toml`` written to ``folder/demo.toml`` with its storage root at
    ``folder/data`` and a copy of the demo suite beside it, after ``edit(text)``."""
    shutil.copy(REPO_ROOT / "expectations" / "demo.json", folder / "demo.json")
    text = (REPO_ROOT / "configs" / "demo.toml").read_text()
    text = text.replace('root = "../data"', 'root = "data"')
    text = text.replace('suite = "../expectations/demo.json"', 'suite = "demo.json"')
    config = folder / "demo.toml"
    config.write_text(edit(text))
    return config
