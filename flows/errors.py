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
4      the storage was unreachable (after the retries) or refused the credentials, named with its
       URL; what it stopped was neither scored nor quarantined: run again once it answers
5      the Prefect API does not answer: at the start of a command that runs flows, during a run
       for longer than AEFLOW_PREFECT_API_GRACE_S, or when `aeflow serve` stops
       (flows/prefect_api.py)
130    interrupted (Ctrl-C)
=====  ========================================================================================
"""

from __future__ import annotations

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
  4    storage unreachable or refusing the credentials (named with its URL); nothing judged
  5    the Prefect API does not answer (at the start, for AEFLOW_PREFECT_API_GRACE_S during a
       run, or when `aeflow serve` stops)
  130  interrupted
"""


class BatchesFailed(RuntimeError):
    """Some batches of a run could not be scored (the others are committed); the message lists
    each failure."""
