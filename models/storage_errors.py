"""Storage failures told apart from bad data.

A batch that cannot be read may be damaged (quarantine it) or the storage may be out of reach for a
while (retry, then fail the run; never quarantine good data). :func:`storage_problem` sorts an
exception into one of those, looking through its causes, because fsspec back ends wrap the
transport's error (s3fs turns a botocore error into an ``OSError`` whose cause is the original).
:func:`storage_errors` turns the storage kinds into :class:`StorageError` subclasses whose message
names the URL, so a run that stops says which storage it could not use.
"""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Iterator

_OWN_PACKAGES = frozenset({"flows", "tasks", "models"})
TRANSIENT = "transient"
DENIED = "denied"
FULL = "full"

# Transport errors of the HTTP stacks under fsspec back ends, by class name (so this module
# imports none of them): botocore (s3fs), aiohttp (s3fs, gcsfs, adlfs), requests, fsspec itself.
_TRANSIENT_CLASSES = frozenset(
    {
        "EndpointConnectionError",
        "ConnectTimeoutError",
        "ReadTimeoutError",
        "ConnectionClosedError",
        "HTTPClientError",
        "ProxyConnectionError",
        "ResponseStreamingError",
        "ClientConnectionError",
        "ClientConnectorError",
        "ClientOSError",
        "ServerDisconnectedError",
        "ServerTimeoutError",
        "ClientPayloadError",
        "FSTimeoutError",
        "IncompleteRead",
        "ChunkedEncodingError",
        "RemoteDisconnected",
    }
)
_TRANSIENT_ERRNOS = frozenset(
    {
        errno.ECONNREFUSED,
        errno.ECONNRESET,
        errno.ECONNABORTED,
        errno.ETIMEDOUT,
        errno.EHOSTUNREACH,
        errno.ENETUNREACH,
        errno.ENETDOWN,
        errno.EPIPE,
        errno.EAGAIN,
        errno.EBUSY,
        getattr(errno, "EREMOTEIO", errno.EIO),  # s3fs: InternalError (a 500)
    }
)
# No room or no writing: a full disk, a quota, a read-only file system. Waiting does not clear them.
_FULL_ERRNOS = frozenset({errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EROFS})
# Object-store error codes (S3, GCS, Azure) that mean "try again later" or "not allowed".
_TRANSIENT_CODES = frozenset(
    {
        "SlowDown",
        "ServiceUnavailable",
        "InternalError",
        "RequestTimeout",
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "ServerBusy",
        "OperationTimedOut",
        "503",
        "500",
        "502",
        "504",
    }
)
_DENIED_CODES = frozenset(
    {
        "AccessDenied",
        "AllAccessDisabled",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "InvalidToken",
        "TokenRefreshRequired",
        "AuthorizationHeaderMalformed",
        "AuthenticationFailed",
        "AuthorizationFailure",
        "403",
        "401",
    }
)


class StorageError(RuntimeError):
    """The storage could not be used; the message names the URL, what was being done and why."""

    def __init__(self, message: str, url: str = ""):
        super().__init__(message)
        self.url = url

    def __reduce__(self):  # picklable (Dask workers, Prefect results) with its URL
        return (type(self), (str(self), self.url))


class StorageUnavailable(StorageError):
    """A transient failure (connection refused or reset, timeout, 5xx, throttling) that retries
    did not get past."""


class StorageAccessDenied(StorageError):
    """The storage refused the credentials or the permission (403, bad key, expired token)."""


class StorageFull(StorageError):
    """The storage has no room left (a full disk, a quota) or cannot be written (read-only)."""


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    stack: list[BaseException] = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        stack += [e for e in (current.__cause__, current.__context__) if e is not None]


def _response_code(exc: BaseException) -> tuple[str, int | None]:
    """(error code, HTTP status) of a botocore ClientError-like exception, else ("", None)."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return "", None
    code = str((response.get("Error") or {}).get("Code") or "")
    status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
    return code, status if isinstance(status, int) else None


def storage_problem(exc: BaseException) -> str | None:
    """:data:`TRANSIENT`, :data:`DENIED`, :data:`FULL`, or None when ``exc`` is not a storage
    failure (bad data, a missing file, a bug).

    Denied and full win over transient: a refused credential or a full disk does not get better
    by waiting.
    """
    found = None
    for error in _chain(exc):
        if isinstance(error, StorageAccessDenied):
            return DENIED
        if isinstance(error, StorageFull):
            return FULL
        if isinstance(error, StorageUnavailable):
            found = TRANSIENT
            continue
        if type(error).__module__.split(".")[0] in _OWN_PACKAGES:
            continue  # aeflow's own errors (a lock timeout is a TimeoutError) are not transport
        code, status = _response_code(error)
        if code in _DENIED_CODES or status in (401, 403):
            return DENIED
        if isinstance(error, PermissionError):
            return DENIED
        if isinstance(error, OSError) and error.errno in _FULL_ERRNOS:
            return FULL
        if (
            code in _TRANSIENT_CODES
            or (status is not None and status >= 500)
            or status == 429
            or isinstance(error, ConnectionError | TimeoutError)
            or any(cls.__name__ in _TRANSIENT_CLASSES for cls in type(error).__mro__)
            or isinstance(error, OSError)
            and error.errno in _TRANSIENT_ERRNOS
        ):
            found = TRANSIENT
    return found


def as_storage_error(exc: BaseException, url: str, action: str) -> StorageError | None:
    """``exc`` as a :class:`StorageError` naming ``url`` and ``action`` ("reading batch X"), or
    None when it is not a storage failure. An exception that already is one is returned as is."""
    if isinstance(exc, StorageError):
        return exc
    kind = storage_problem(exc)
    detail = f"{type(exc).__name__}: {' '.join(str(exc).split()) or 'no message'}"
    if kind == DENIED:
        return StorageAccessDenied(
            f"storage {url} refused access while {action} ({detail}); check the credentials in "
            "the config's storage.options (or the environment) and the permissions on that location",
            url,
        )
    if kind == FULL:
        return StorageFull(
            f"storage {url} has no room or cannot be written while {action} ({detail}); free "
            "space (or raise the quota, or make the location writable) and run again: batches "
            "without a success marker are scored again, nothing is lost",
            url,
        )
    if kind == TRANSIENT:
        return StorageUnavailable(
            f"storage {url} is unreachable or failing while {action} ({detail}); the data was not "
            "judged and nothing was quarantined: run again once the storage answers",
            url,
        )
    return None


@contextlib.contextmanager
def storage_errors(url: str, action: str) -> Iterator[None]:
    """Re-raise storage failures inside the block as :class:`StorageError` naming ``url``; any
    other exception passes unchanged."""
    try:
        yield
    except StorageError:
        raise
    except Exception as exc:
        converted = as_storage_error(exc, url, action)
        if converted is None:
            raise
        raise converted from exc
