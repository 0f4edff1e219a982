"""Per-batch locks: one run at a time scores or quarantines a batch, across threads, processes and
machines (see :class:`BatchLock`)."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid

from models.storage import StorageOptions, filesystem, is_local, read_json, remove


class BatchLockTimeout(TimeoutError):
    """Another run held a batch's lock for longer than the caller was willing to wait."""


class BatchLock:
    """Mutual exclusion for scoring or quarantining one batch, across threads, processes and machines.

    - Local storage: ``fcntl.flock`` on ``<scored>/_locks/<batch_id>.lock``. The kernel releases
      the lock when its holder exits, even by SIGKILL, so a crash never leaves a stale lock.
    - Object stores: a lease object created with an exclusive PUT (``If-None-Match: *`` on S3),
      renewed every ``lease_s / 3`` by a heartbeat thread. A holder that died stops renewing; once
      its lease has expired the next run breaks it. If two runs break the same stale lease at the
      same moment both may proceed; :meth:`check` (called before each commit) makes the one whose
      lease was replaced fail instead of committing, and even without it the commits are atomic
      replacements of the same name, so a batch still has exactly one output.

    Waits up to ``timeout_s`` for a holder, then raises :class:`BatchLockTimeout`.
    """

    def __init__(
        self,
        url: str,
        options: StorageOptions = None,
        timeout_s: float = 3600.0,
        lease_s: float = 60.0,
        poll_s: float = 0.2,
    ):
        self.url = url
        self.options = options
        self.timeout_s = timeout_s
        self.lease_s = lease_s
        self.poll_s = poll_s
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        self._fd: int | None = None
        self._heartbeat: threading.Thread | None = None
        self._released = threading.Event()
        self._lost = False

    # -- local: flock
    def _acquire_flock(self, path: str, deadline: float) -> None:
        import fcntl

        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self._fd = fd
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise self._timeout() from None
                time.sleep(self.poll_s)

    # -- object stores: lease
    def _lease_record(self) -> bytes:
        record = {"owner": self.owner, "expires_at": time.time() + self.lease_s}
        return json.dumps(record).encode("utf-8")

    def _acquire_lease(self, deadline: float) -> None:
        fs, path = filesystem(self.url, self.options)
        while True:
            try:
                fs.pipe_file(path, self._lease_record(), mode="create")
                break
            except FileExistsError:
                pass
            current = read_json(self.url, self.options)
            if current is not None and float(current.get("expires_at", 0)) < time.time():
                remove(self.url, self.options)  # its holder stopped renewing it: it died
                continue
            if time.monotonic() > deadline:
                raise self._timeout()
            time.sleep(self.poll_s)
        self._heartbeat = threading.Thread(target=self._renew, name="aeflow-lease", daemon=True)
        self._heartbeat.start()

    def _renew(self) -> None:
        fs, path = filesystem(self.url, self.options)
        while not self._released.wait(self.lease_s / 3):
            try:
                current = read_json(self.url, self.options)
                if current is None or current.get("owner") != self.owner:
                    self._lost = True
                    return
                fs.pipe_file(path, self._lease_record())
            except Exception:  # a storage hiccup: try again; check() tells if the lease was lost
                continue

    def _timeout(self) -> BatchLockTimeout:
        return BatchLockTimeout(
            f"batch lock {self.url} is held by another scoring run; waited {self.timeout_s:.0f} s. "
            "Let that run finish, or raise the timeout"
        )

    # -- protocol
    def acquire(self) -> BatchLock:
        deadline = time.monotonic() + self.timeout_s
        if is_local(self.url):
            self._acquire_flock(filesystem(self.url, self.options)[1], deadline)
        else:
            self._acquire_lease(deadline)
        return self

    def check(self) -> None:
        """Raise when this holder's lease was broken by another run (object stores only)."""
        if self._lost or (
            self._heartbeat is not None
            and (read_json(self.url, self.options) or {}).get("owner") != self.owner
        ):
            self._lost = True
            raise RuntimeError(
                f"lost the batch lock {self.url} to another run (this run stalled for longer than "
                f"the {self.lease_s:.0f} s lease); not committing: the other run scores the batch"
            )

    def release(self) -> None:
        self._released.set()
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None
        if self._heartbeat is not None:
            self._heartbeat.join()
            self._heartbeat = None
            current = read_json(self.url, self.options)
            if current is not None and current.get("owner") == self.owner:
                remove(self.url, self.options)

    def __enter__(self) -> BatchLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
