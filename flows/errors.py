"""The `aeflow` command's exit codes, and the error that ends a run with some batches unscored.

=====  ========================================================================================
code   meaning
=====  ========================================================================================
0      done (a skipped retraining, nothing new to score, batches quarantined without
       ``--fail-on-quarantine``: all normal outcomes)
1      a run finished but some batches failed to score (the others are committed; run it again
       after fixing the cause), or `aeflow expectations check` found problems
2      the command could not run as asked: a config, suite, date or argument error, named with
       its fix; no batch was touched
3      ``--fail-on-quarantine``: the run quarantined at least one batch (the rest are scored)
4      the storage was unreachable (after the retries), refused the credentials, has no such
       bucket, or cannot take a file in a folder the command writes (read-only), named with its
       URL; what it stopped was neither scored nor quarantined: run again once it answers
5      the Prefect API does not answer: at the start of a command that runs flows, during a run
       for longer than AEFLOW_PREFECT_API_GRACE_S, or when `aeflow serve` stops
       (flows/prefect_api.py)
130    interrupted (Ctrl-C)
=====  ========================================================================================
"""

from __future__ import annotations

from collections.abc import Sequence

from models.registry import RegistryError
from models.storage_errors import StorageError

EXIT_OK = 0
EXIT_BATCHES_FAILED = 1
EXIT_USAGE = 2
EXIT_QUARANTINED = 3
EXIT_STORAGE = 4
EXIT_PREFECT_API_LOST = 5
EXIT_INTERRUPTED = 130

EXIT_CODES_HELP = """exit codes:
  0    done (also: retraining skipped, nothing new, batches quarantined)
  1    some batches failed to score (the others are committed); expectations check problems
  2    config, suite, date or argument error (named with its fix; no batch touched)
  3    --fail-on-quarantine and at least one batch was quarantined
  4    storage unreachable, refusing the credentials, without its bucket or read-only (named
       with its URL); nothing judged
  5    the Prefect API does not answer (at the start, for AEFLOW_PREFECT_API_GRACE_S during a
       run, or when `aeflow serve` stops)
  130  interrupted
"""


class BatchesFailed(RuntimeError):
    """Some batches of a run could not be scored (the others are committed); the message lists
    each failure."""


def run_failure(
    failures: Sequence[str], errors: Sequence[BaseException], committed: int
) -> BaseException | None:
    """The error that ends a run whose batches ``failures`` (messages) failed with ``errors``
    while ``committed`` others were scored or quarantined, or None when none failed.

    A storage failure is that :class:`StorageError` (its message names the storage URL; exit code
    4). Errors that explain themselves (a bad suite, an unknown model version: ValueError,
    RegistryError) are the first of them (exit 2, "no batch touched") only when the run committed
    no batch; with batches committed they are a :class:`BatchesFailed` like anything else (exit 1,
    listing every failed batch), because exit 2 would say nothing was touched."""
    if not failures:
        return None
    more = len(failures) - 1
    suffix = f" ({more} more batch(es) failed too; see the run's log)" if more else ""
    storage = [e for e in errors if isinstance(e, StorageError)]
    if storage:
        return type(storage[0])(f"{storage[0]}{suffix}", storage[0].url)
    explained = errors and all(isinstance(e, ValueError | RegistryError) for e in errors)
    if explained and not committed:
        return errors[0]
    return BatchesFailed(f"{len(failures)} batch(es) failed to score: " + "; ".join(failures))


def raise_failures(
    failures: Sequence[str], errors: Sequence[BaseException], committed: int = 0
) -> None:
    """Fail a run after its summary when a batch could not be processed (nothing that failed was
    quarantined or marked) with :func:`run_failure`'s error, after logging every failure;
    ``committed``: the batches the run scored or quarantined."""
    error = run_failure(failures, errors, committed)
    if error is None:
        return
    from prefect import get_run_logger

    get_run_logger().error("%d batch(es) failed: %s", len(failures), "; ".join(failures))
    raise error
