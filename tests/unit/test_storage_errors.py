"""A storage outage is not corrupt data (issue 12, defect 6): transient storage errors raise a
StorageError naming the URL instead of quarantining a valid batch; refused credentials are told
apart; damaged data is still judged as damaged.

The storage here is ``faulty://`` (tests/faulty_storage.py): a real fsspec file system over a local
folder that raises what object-store clients raise, where its fault plan says.
"""

from __future__ import annotations

import errno
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from faulty_storage import storage_options, write_plan
from model_support import validate_demo_batch as validate

from tasks.demo_data import generate_demo_data
from tasks.io import Storage, list_batches


@pytest.fixture(scope="module")
def demo_day(tmp_path_factory):
    folder = tmp_path_factory.mktemp("day")
    generate_demo_data(
        folder, days=1, rows_per_day=1200, seed=8, drift_day=None, malformed_day=None
    )
    return next(folder.glob("*.parquet"))


@pytest.fixture
def faulty(tmp_path, demo_day):
    """A faulty:// root over tmp_path holding one valid demo batch; returns (layout, options,
    plan file)."""
    incoming = tmp_path / "root" / "incoming" / "demo"
    incoming.mkdir(parents=True)
    shutil.copy(demo_day, incoming / demo_day.name)
    plan = write_plan(tmp_path / "plan.json", [])
    return Storage("faulty://root", "demo"), storage_options(tmp_path, plan), plan


@pytest.mark.parametrize("kind", ["connection", "timeout", "503"])
def test_a_valid_batch_whose_storage_fails_is_not_judged_corrupt(faulty, kind):
    layout, options, plan = faulty
    [batch] = list_batches(layout.incoming, options)
    write_plan(plan, [{"ops": ["open_read"], "match": "incoming/", "times": 50, "error": kind}])
    try:
        outcome = validate(batch, options)
    except Exception as exc:
        from models.storage_errors import StorageUnavailable

        assert isinstance(exc, StorageUnavailable), exc
        assert batch.path in str(exc) and "nothing was quarantined" in str(exc)
        return
    pytest.fail(f"a storage outage was judged as the data's fault: {outcome.reason}")


def test_refused_credentials_are_a_storage_error_naming_the_url(faulty):
    layout, options, plan = faulty
    [batch] = list_batches(layout.incoming, options)
    write_plan(plan, [{"ops": ["open_read"], "times": 50, "error": "forbidden"}])
    from models.storage_errors import StorageAccessDenied

    with pytest.raises(StorageAccessDenied, match="refused access.*credentials"):
        validate(batch, options)


def test_a_blip_the_reader_gets_past_is_no_error_at_all(faulty):
    layout, options, plan = faulty
    [batch] = list_batches(layout.incoming, options)
    write_plan(plan, [{"ops": ["open_read"], "match": "incoming/", "times": 1, "error": "503"}])
    assert validate(batch, options).accepted


def test_damaged_data_on_a_working_store_is_still_quarantined(faulty, tmp_path):
    layout, options, _ = faulty
    path = tmp_path / "root" / "incoming" / "demo" / "damaged.parquet"
    pq.write_table(pa.table({"x": [1, 2, 3]}), path)
    path.write_bytes(path.read_bytes()[:-20])
    damaged = [b for b in list_batches(layout.incoming, options) if b.batch_id == "damaged"][0]
    outcome = validate(damaged, options)
    assert not outcome.accepted and "cannot be read" in outcome.reason


def test_errors_are_sorted_by_what_they_say_about_the_storage():
    import botocore.exceptions
    from pyarrow.lib import ArrowInvalid

    from models.storage_errors import DENIED, TRANSIENT, storage_problem
    from tasks.locks import BatchLockTimeout

    def caused(outer: BaseException, cause: BaseException) -> BaseException:
        outer.__cause__ = cause
        return outer

    server_error = botocore.exceptions.ClientError(
        {"Error": {"Code": "InternalError"}, "ResponseMetadata": {"HTTPStatusCode": 500}}, "Get"
    )
    denied = botocore.exceptions.ClientError(
        {"Error": {"Code": "InvalidAccessKeyId"}, "ResponseMetadata": {"HTTPStatusCode": 403}},
        "ListObjectsV2",
    )
    assert storage_problem(ConnectionRefusedError(errno.ECONNREFUSED, "refused")) == TRANSIENT
    assert (
        storage_problem(botocore.exceptions.EndpointConnectionError(endpoint_url="x")) == TRANSIENT
    )
    assert storage_problem(caused(OSError(errno.EIO, "Internal"), server_error)) == TRANSIENT
    assert storage_problem(caused(PermissionError("no such key id"), denied)) == DENIED
    assert storage_problem(ArrowInvalid("Parquet magic bytes not found")) is None
    assert storage_problem(OSError("Couldn't deserialize thrift: invalid data")) is None
    assert storage_problem(FileNotFoundError("gone")) is None
    assert storage_problem(BatchLockTimeout("held by another run")) is None


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT, errno.EROFS])
def test_a_full_or_read_only_file_system_is_a_storage_error_naming_the_url(code):
    import os

    from models.storage_errors import TRANSIENT, StorageError, as_storage_error, storage_problem

    error = OSError(code, os.strerror(code))
    assert storage_problem(error) not in (None, TRANSIENT)  # a full disk does not clear by waiting
    converted = as_storage_error(error, "/data/scored/demo", "scoring batch 'b'")
    assert isinstance(converted, StorageError)
    assert "/data/scored/demo" in str(converted) and os.strerror(code) in str(converted)
