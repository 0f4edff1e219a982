"""What makes two model bundles the same model, whatever day they were saved.

A bundle's bytes differ between two fits of the same data and config: metrics.json records the fit
time, the manifest hashes it, and skops names the arrays inside preprocessor.skops after Python
object ids and records those ids. The content digest leaves out the run records (fit times,
library versions, checksums) and reads a skops file by what it holds: its arrays by content and
its object tree without the ids. Equal digests mean equal weights, preprocessing, parameters,
schema and calibration: the same model.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path
from typing import Any

# Run records, not the model: two fits of one model differ here.
VOLATILE_FILES = frozenset(
    {"metrics.json", "versions.json", "manifest.json", "registry.json", "drift_reference.json"}
)


def _without_ids(node: Any, names: dict[str, str]) -> Any:
    """A skops schema tree without object ids, its array files named by their content hash."""
    if isinstance(node, dict):
        return {
            key: names.get(value, value) if key == "file" else _without_ids(value, names)
            for key, value in node.items()
            if key != "__id__"
        }
    if isinstance(node, list):
        return [_without_ids(value, names) for value in node]
    return node


def _skops_digest(path: Path) -> str:
    with zipfile.ZipFile(path) as archive:
        names = {
            name: hashlib.sha256(archive.read(name)).hexdigest()
            for name in archive.namelist()
            if name != "schema.json"
        }
        schema = json.loads(archive.read("schema.json"))
    tree = json.dumps(_without_ids(schema, names), sort_keys=True)
    return hashlib.sha256((tree + "".join(sorted(names.values()))).encode()).hexdigest()


def content_digest(bundle_dir: str | Path) -> str:
    """sha256 over what defines the model in a saved bundle (see the module docstring)."""
    bundle_dir = Path(bundle_dir)
    digest = hashlib.sha256()
    for file in sorted(p for p in bundle_dir.rglob("*") if p.is_file()):
        relative = file.relative_to(bundle_dir).as_posix()
        if relative in VOLATILE_FILES:
            continue
        digest.update(relative.encode())
        if zipfile.is_zipfile(file) and file.suffix == ".skops":
            digest.update(_skops_digest(file).encode())
        else:
            digest.update(hashlib.sha256(file.read_bytes()).hexdigest().encode())
    return digest.hexdigest()
