"""Model registry: versioned bundles on the storage root and an atomically switched champion alias.

The registry does not choose where its files are: it is handed a :class:`RegistryLayout`, the
pipeline's :class:`tasks.io.Storage` (``Storage(root, dataset).registry()``), whose layout is
(any fsspec location)::

    <root>/models/<dataset>/<version>/     the bundle written by AutoencoderDetector.save, plus
                                           its registry entry (registry.json)
    <root>/models/<dataset>/champion.json  {"version": ..., "history": [...]}, one atomic write

Promotion and rollback rewrite the champion alias only, so readers see either the old or the new
champion, never a mix. Bundles are never modified after registration.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import posixpath
import re
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

from fsspec.implementations.local import LocalFileSystem

from models.bundle_identity import content_digest
from models.storage import (
    StorageOptions,
    copy_tree,
    filesystem,
    read_json,
    write_json_atomic,
)


class RegistryLayout(Protocol):
    """Where a registry's files are (:class:`tasks.io.Storage` is the pipeline's layout)."""

    @property
    def options(self) -> StorageOptions: ...  # fsspec options of the storage

    @property
    def models(self) -> str: ...  # the folder holding one folder per version

    @property
    def champion_file(self) -> str: ...  # the champion alias

    # Names of the files written into a version's folder after registration (its entry, the
    # pipeline's drift reference): not part of the bundle's hash.
    files_beside_bundle: frozenset[str]

    def model_version(self, version: str) -> str: ...  # the version's folder

    def model_entry(self, version: str) -> str: ...  # the version's registry entry


class RegistryError(RuntimeError):
    """A registry operation that cannot be done as asked; the message says why and what to do."""


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _version_stamp() -> str:
    """The UTC second a version is registered in, as its name's sortable prefix."""
    return dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")


# A version name is one folder name: what register() makes (``<UTC time>-<8 hex>[-n]``) or any
# plain name of letters, digits, '.', '_' and '-'; never a path ('/', '..').
VERSION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


class BundleMismatchError(RegistryError):
    """A registered bundle no longer matches the whole-bundle sha256 of its registry entry."""


def check_version_name(version: Any) -> str:
    """``version`` when it can name a registry entry; RegistryError otherwise (a path such as
    ``../../x`` would load a bundle from outside the registry)."""
    if not isinstance(version, str) or not VERSION_NAME.fullmatch(version) or ".." in version:
        raise RegistryError(
            f"{version!r} is not a model version name (letters, digits, '.', '_' and '-', no "
            "paths); pass a version listed by `aeflow models list`, or 'champion'"
        )
    return version


def _ordered(relative_paths: Iterable[str]) -> list[str]:
    """Bundle files in digest order (by path parts, as registration always hashed them)."""
    return sorted(relative_paths, key=lambda rel: tuple(rel.split("/")))


def _digest_files(files: dict[str, Any]) -> tuple[str, dict[str, str]]:
    """(whole-bundle sha256, {relative path: file sha256}) over ``{relative path: opener}``; the
    whole digest covers each file's relative path and bytes, in :func:`_ordered` order."""
    whole, each = hashlib.sha256(), {}
    for rel in _ordered(files):
        one = hashlib.sha256()
        whole.update(rel.encode())
        with files[rel]() as handle:
            for block in iter(lambda h=handle: h.read(1 << 20), b""):
                whole.update(block)
                one.update(block)
        each[rel] = one.hexdigest()
    return whole.hexdigest(), each


def _local_files(bundle_dir: Path) -> dict[str, Any]:
    return {
        p.relative_to(bundle_dir).as_posix(): (lambda p=p: p.open("rb"))
        for p in bundle_dir.rglob("*")
        if p.is_file()
    }


class ModelRegistry:
    """Versioned model bundles of one dataset, where ``layout`` says (a local folder or an fsspec
    URL); remote bundles are cached locally under ``cache_dir`` (the temporary folder's
    ``aeflow-model-cache`` by default)."""

    def __init__(self, layout: RegistryLayout, cache_dir: str | None = None):
        self.layout = layout
        self.cache_dir = cache_dir

    @property
    def models_root(self) -> str:
        """The folder holding the versions (for messages)."""
        return self.layout.models

    @property
    def options(self) -> StorageOptions:
        return self.layout.options

    # ------------------------------------------------------------------------------- versions
    def register(self, bundle_dir: str | Path, entry: dict[str, Any] | None = None) -> str:
        """Copy a saved bundle into the registry as a new version and return the version name.

        The version is ``<UTC time>-<first 8 hex of the bundle digest>``: sortable by time and tied to
        the bundle's content (``-2``, ``-3``, ... when that name is taken).
        """
        bundle_dir = Path(bundle_dir)
        if not (bundle_dir / "manifest.json").is_file() and not any(bundle_dir.iterdir()):
            raise RegistryError(
                f"{bundle_dir} holds no model bundle; save the detector there first"
            )
        digest, file_digests = _digest_files(_local_files(bundle_dir))
        base = f"{_version_stamp()}-{digest[:8]}"
        version, copies = base, 1
        # The same bundle registered twice within a second gets a numbered name, not the first
        # version's folder (whose entry holds its evaluation and gate decision).
        fs, _ = filesystem(self.models_root, self.options)
        while fs.exists(filesystem(self.layout.model_entry(version), self.options)[1]):
            copies += 1
            version = f"{base}-{copies}"
        destination = self.layout.model_version(version)
        copy_tree(str(bundle_dir), destination, self.options)
        record = {
            **(entry or {}),
            "version": version,
            "registered_at": _now(),
            "bundle_sha256": digest,
            "bundle_files": file_digests,
            "content_sha256": content_digest(bundle_dir),
        }
        write_json_atomic(record, self.layout.model_entry(version), self.options)
        return version

    def find_identical(self, bundle_dir: str | Path) -> str | None:
        """The registered version holding the same model as ``bundle_dir`` (equal
        :func:`models.bundle_identity.content_digest`: a retrain that reproduced a bundle), or
        None. Versions registered before content digests were recorded are not compared."""
        wanted = content_digest(bundle_dir)
        for entry in reversed(self.versions()):
            if entry.get("content_sha256") == wanted:
                return entry["version"]
        return None

    def versions(self) -> list[dict[str, Any]]:
        """Registry entries of every version, oldest first."""
        fs, path = filesystem(self.models_root, self.options)
        if not fs.exists(path):
            return []
        entries = []
        # Only version folders hold an entry; champion.json sits beside them.
        children = [c["name"] for c in fs.ls(path, detail=True) if c["type"] == "directory"]
        for child in sorted(children):
            name = posixpath.basename(child.rstrip("/"))
            entry = read_json(self.layout.model_entry(name), self.options)
            if entry is not None:
                entries.append(entry)
        return entries

    def entry(self, version: str) -> dict[str, Any]:
        """The registry entry of ``version``; RegistryError for a name that is not an entry."""
        check_version_name(version)
        record = read_json(self.layout.model_entry(version), self.options)
        if record is None:
            known = [e["version"] for e in self.versions()]
            raise RegistryError(f"model version {version!r} is not registered; known: {known}")
        return record

    def update_entry(self, version: str, **fields: Any) -> dict[str, Any]:
        """Add fields (e.g. evaluation results, gate decision) to a version's registry entry."""
        record = {**self.entry(version), **fields}
        write_json_atomic(record, self.layout.model_entry(version), self.options)
        return record

    # ------------------------------------------------------------------------------- champion
    def champion_state(self) -> dict[str, Any]:
        return read_json(self.layout.champion_file, self.options) or {
            "version": None,
            "history": [],
        }

    def champion(self) -> str | None:
        """The current champion's version, or None before the first promotion."""
        version = self.champion_state()["version"]
        return None if version is None else check_version_name(version)

    def promote(
        self, version: str, reason: str, details: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Make ``version`` the champion (one atomic write of champion.json).

        ``details`` (JSON-able, e.g. the promotion gate's comparisons) is kept in the history event.
        """
        self.entry(version)  # raises when unknown
        state = self.champion_state()
        return self._record(state, "promote", version, reason, details, champion=version)

    def refuse(
        self, version: str, reason: str, details: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Record in champion.json's history that ``version`` was not promoted (the promotion
        gate refused it); the champion stays as it is."""
        self.entry(version)  # raises when unknown
        state = self.champion_state()
        return self._record(state, "refuse", version, reason, details, champion=state["version"])

    def rollback(self, reason: str = "manual rollback") -> dict[str, Any]:
        """Make the champion before the current one champion again."""
        state = self.champion_state()
        current = state["version"]
        previous = next(
            (
                e["previous"]
                for e in reversed(state["history"])
                if e["version"] == current and e["action"] == "promote"
            ),
            None,
        )
        if previous is None:
            raise RegistryError(
                f"no earlier champion to roll back to (champion is {current!r}); "
                "promote a specific version with `aeflow models promote VERSION` instead"
            )
        return self._record(state, "rollback", previous, reason, None, champion=previous)

    def _record(
        self,
        state: dict[str, Any],
        action: str,
        version: str,
        reason: str,
        details: dict[str, Any] | None,
        champion: str | None,
    ) -> dict[str, Any]:
        """Append an ``action`` event about ``version`` to ``state``'s history, make ``champion``
        the champion, and write champion.json in one atomic write; returns the new state."""
        event = {
            "action": action,
            "version": version,
            "previous": state["version"],
            "at": _now(),
            "reason": reason,
            **({"details": details} if details else {}),
        }
        new_state = {"version": champion, "history": [*state["history"], event]}
        write_json_atomic(new_state, self.layout.champion_file, self.options)
        return new_state

    # -------------------------------------------------------------------------------- loading
    def resolve(self, version: str | None = None) -> str:
        """``version`` itself, or the champion's when None (error when there is none)."""
        if version not in (None, "champion"):
            self.entry(version)
            return version
        champion = self.champion()
        if champion is None:
            raise RegistryError(
                f"no champion model under {self.models_root}; run `aeflow train --config FILE` first"
            )
        return champion

    def local_bundle(self, version: str) -> str:
        """A local directory holding the bundle of ``version`` (downloaded once when remote)."""
        source = self.layout.model_version(version)
        fs, path = filesystem(source, self.options)
        if isinstance(fs, LocalFileSystem):
            return path
        cache_root = self.cache_dir or os.path.join(tempfile.gettempdir(), "aeflow-model-cache")
        digest = self.entry(version)["bundle_sha256"]
        target = os.path.join(cache_root, f"{version}-{digest[:8]}")
        if not os.path.isdir(target):
            staging = tempfile.mkdtemp(prefix=".staging-", dir=_ensure_dir(cache_root))
            copy_tree(source, staging, self.options)
            try:
                os.replace(staging, target)
            except OSError:  # another process cached it first: theirs is identical
                shutil.rmtree(staging, ignore_errors=True)
        return target

    def _bundle_files(self, version: str) -> dict[str, Any]:
        """{relative path: opener} of the files in a version's folder on the registry's storage."""
        fs, inner = filesystem(self.layout.model_version(version), self.options)
        inner = inner.rstrip("/")
        return {
            file[len(inner) + 1 :]: (lambda f=file: fs.open(f, "rb")) for file in fs.find(inner)
        }

    def _check_bundle(self, version: str, files: dict[str, Any]) -> None:
        """Raise BundleMismatchError unless the bundle's files in ``files`` hash to the entry's
        ``bundle_sha256``. The bundle's files are those registered (the entry's ``bundle_files``);
        files the registry and the pipeline keep beside them (registry.json, the drift reference)
        are not part of it. An entry from before ``bundle_files`` covers every file but those."""
        entry = self.entry(version)
        expected = entry.get("bundle_sha256")
        if not expected:
            raise BundleMismatchError(
                f"model version {version} has no bundle_sha256 in its registry entry, so its bundle "
                "cannot be verified; register the bundle again"
            )
        known = entry.get("bundle_files") or {}
        if known:
            missing = sorted(set(known) - set(files))
            bundle = {rel: opener for rel, opener in files.items() if rel in known}
        else:
            missing = []
            beside = self.layout.files_beside_bundle
            bundle = {rel: o for rel, o in files.items() if rel not in beside}
        digest, each = _digest_files(bundle)
        if digest == expected and not missing:
            return
        changed = sorted({rel for rel in each if known.get(rel) != each[rel]} | set(missing))
        which = f": {changed} changed or removed" if known else ""
        raise BundleMismatchError(
            f"model version {version} does not match its registry entry (bundle_sha256){which}; "
            "its files were modified after registration. Refusing to load it: restore the bundle "
            "or register a new version"
        )

    def verify(self, version: str) -> dict[str, Any]:
        """Check a version's bundle against its entry's whole-bundle sha256, without loading it.

        Returns ``{"version", "ok", "problem"}`` (problem None when ok)."""
        try:
            self._check_bundle(version, self._bundle_files(version))
        except RegistryError as exc:
            return {"version": version, "ok": False, "problem": str(exc)}
        return {"version": version, "ok": True, "problem": None}

    def load(self, version: str | None = None):
        """Load a registered detector (the champion when ``version`` is None).

        The bundle must match its registry entry's whole-bundle sha256 (``bundle_sha256``, from
        registration), then the bundle's own manifest checksums and trusted types are checked by
        ``AutoencoderDetector.load``: an edited file with an updated manifest is still refused."""
        from models.detector import AutoencoderDetector

        resolved = self.resolve(version)
        bundle = Path(self.local_bundle(resolved))
        self._check_bundle(resolved, _local_files(bundle))
        return AutoencoderDetector.load(str(bundle)), resolved


def _ensure_dir(path: str) -> str:
    os.makedirs(path, exist_ok=True)
    return path
