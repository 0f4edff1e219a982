"""A real fsspec file system that fails on purpose: ``faulty://`` over a local folder.

It behaves like an object store to aeflow (it is not a LocalFileSystem: writes are committed with
one ``put_file``, locks are lease objects) and raises the errors an object store's client raises,
when and where a *fault plan* says. The plan is a JSON file so that every process using the storage
(concurrent `aeflow score` runs, Prefect task threads) shares it; each rule counts the calls it
matches in a state file next to the plan (under an flock), so "fail the 3rd to 5th read" holds
across processes.

A plan: ``{"rules": [{"ops": ["open_read"], "match": "incoming/", "skip": 0, "times": 2,
"error": "connection"}, {"ops": ["*"], "between": [t0, t1], "error": "connection"}]}``. ``ops``:
open_read, open_write, put_file, pipe_file, ls, info, rm, cat_file, or "*"; ``error``:
"connection" (ConnectionRefusedError, as s3fs reports a dead endpoint), "timeout", "503"
(an OSError caused by a 503 ClientError-like error), "forbidden" (PermissionError).

Use ``config_storage(base, plan)`` for a config's ``[storage]`` options, and run aeflow in a
subprocess with ``python tests/faulty_storage.py score --config FILE`` (the protocol is registered
first).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import fsspec
from fsspec.implementations.dirfs import DirFileSystem
from fsspec.implementations.local import LocalFileSystem

PROTOCOL = "faulty"


class ServiceUnavailableError(Exception):
    """Shaped like botocore's ClientError for a 503 (``.response`` with the code and status)."""

    def __init__(self, operation: str):
        super().__init__(f"An error occurred (ServiceUnavailable) when calling {operation}")
        self.response = {
            "Error": {"Code": "ServiceUnavailable", "Message": "Please reduce your request rate"},
            "ResponseMetadata": {"HTTPStatusCode": 503},
        }


def _error(kind: str, op: str, path: str) -> BaseException:
    where = f"{op} {path}"
    if kind == "connection":
        return ConnectionRefusedError(errno.ECONNREFUSED, f"Connection refused ({where})")
    if kind == "timeout":
        return TimeoutError(f"Read timed out ({where})")
    if kind == "503":
        error = OSError(errno.EIO, f"Service unavailable ({where})")
        error.__cause__ = ServiceUnavailableError(op)
        return error
    if kind == "forbidden":
        return PermissionError(f"Forbidden ({where})")
    raise ValueError(f"unknown fault kind {kind!r}")


@contextlib.contextmanager
def _locked(path: Path):
    with open(path.with_suffix(".lock"), "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _check(plan_path: str | None, op: str, path: str) -> None:
    """Raise the planned error when a rule of the plan matches this call (and count the call)."""
    if not plan_path:
        return
    plan_file = Path(plan_path)
    if not plan_file.is_file():
        return
    plan = json.loads(plan_file.read_text())
    state_file = plan_file.with_suffix(".state")
    with _locked(plan_file):
        state = json.loads(state_file.read_text()) if state_file.is_file() else {}
        raise_it = None
        for index, rule in enumerate(plan.get("rules", [])):
            ops = rule.get("ops", ["*"])
            if "*" not in ops and op not in ops:
                continue
            if rule.get("match") and rule["match"] not in path:
                continue
            if "between" in rule:
                start, end = rule["between"]
                if start <= time.time() < end and raise_it is None:
                    raise_it = rule
                continue
            seen = state.get(str(index), 0) + 1
            state[str(index)] = seen
            skip, times = rule.get("skip", 0), rule.get("times", 1)
            if skip < seen <= skip + times and raise_it is None:
                raise_it = rule
        state_file.write_text(json.dumps(state))
    if raise_it is not None:
        with open(plan_file.with_suffix(".log"), "a") as log:
            log.write(f"{time.time():.3f} {os.getpid()} {op} {path} {raise_it['error']}\n")
        raise _error(raise_it["error"], op, path)


class FaultyFileSystem(DirFileSystem):
    """``faulty://<path>`` = ``<base>/<path>`` on the local disk, failing as the plan says."""

    protocol = PROTOCOL

    def __init__(self, base: str, plan: str | None = None, **storage_options: Any):
        super().__init__(path=base, fs=LocalFileSystem(auto_mkdir=True), **storage_options)
        self.plan = plan

    def _fault(self, op: str, path: Any) -> None:
        _check(self.plan, op, str(path))

    def open(self, path, mode="rb", *args, **kwargs):
        self._fault("open_read" if "r" in mode else "open_write", path)
        return super().open(path, mode, *args, **kwargs)

    def put_file(self, lpath, rpath, *args, **kwargs):
        self._fault("put_file", rpath)
        return super().put_file(lpath, rpath, *args, **kwargs)

    def pipe_file(self, path, *args, **kwargs):
        self._fault("pipe_file", path)
        return super().pipe_file(path, *args, **kwargs)

    def cat_file(self, path, *args, **kwargs):
        self._fault("cat_file", path)
        return super().cat_file(path, *args, **kwargs)

    def ls(self, path, *args, **kwargs):
        self._fault("ls", path)
        return super().ls(path, *args, **kwargs)

    def info(self, path, *args, **kwargs):
        self._fault("info", path)
        return super().info(path, *args, **kwargs)

    def rm(self, path, *args, **kwargs):
        self._fault("rm", path)
        return super().rm(path, *args, **kwargs)


def register() -> None:
    fsspec.register_implementation(PROTOCOL, FaultyFileSystem, clobber=True)


def storage_options(base: Path | str, plan: Path | str | None = None) -> dict[str, Any]:
    """fsspec options for ``faulty://`` URLs over ``base`` (with the fault ``plan`` file)."""
    options: dict[str, Any] = {"base": str(base)}
    if plan is not None:
        options["plan"] = str(plan)
    return options


def write_plan(plan_file: Path, rules: list[dict[str, Any]]) -> Path:
    """Write a fault plan and reset its call counters."""
    for suffix in (".state", ".log"):
        plan_file.with_suffix(suffix).unlink(missing_ok=True)
    plan_file.write_text(json.dumps({"rules": rules}))
    return plan_file


def injected(plan_file: Path) -> list[str]:
    """The faults raised so far (one line each: time, pid, op, path, kind)."""
    log = plan_file.with_suffix(".log")
    return log.read_text().splitlines() if log.is_file() else []


register()

if __name__ == "__main__":  # `python tests/faulty_storage.py ARGS`: the aeflow CLI with faulty://
    from flows.cli import main

    sys.exit(main(sys.argv[1:]))
