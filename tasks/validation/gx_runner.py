"""The Great Expectations run: a suite's checks on one batch's frame, in ephemeral GX contexts.

GX contexts are not thread-safe, so each validation builds its own (in-memory stores, no docs site,
analytics off). GX copies the whole frame it is given for every row-level metric, so each column's
checks run on a frame of that column alone, which keeps a 1M-row, 30-column batch within seconds;
big batches spread their column groups over two threads, each with a context of its own.
"""

from __future__ import annotations

import json
import os
import queue
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pandas as pd

from tasks.io import StorageOptions, write_text_atomic
from tasks.validation.outcome import SAMPLE_SIZE, jsonable
from tasks.validation.suite import INDEX_META_KEY, Check, Suite, gx_environment

# Row-level checks whose verdict on a row depends on that row's value alone, so the rows holding
# a sample unexpected value are the unexpected rows.
VALUE_DETERMINED = frozenset(
    {
        "expect_column_values_to_be_between",
        "expect_column_values_to_be_in_set",
        "expect_column_values_to_not_be_in_set",
        "expect_column_values_to_not_be_null",
        "expect_column_values_to_be_unique",
        "expect_column_values_to_be_of_type",
        "expect_column_values_to_be_in_type_list",
        "expect_column_values_to_match_regex",
        "expect_column_values_to_not_match_regex",
        "expect_column_values_to_match_strftime_format",
        "expect_column_value_lengths_to_be_between",
        "expect_column_value_lengths_to_equal",
    }
)

# Below this many rows GX's bookkeeping (about 0.45 s for a 150-expectation suite, Python that
# holds the GIL) outweighs the row-level work a second thread could share, and the second context
# costs more than it saves (measured: 10k rows 0.47 s on one thread, 0.49 s on two).
PARALLEL_VALIDATION_ROWS = 100_000


def gx_threads(rows: int) -> int:
    """Threads (each with its own GX context) that validate the column groups of a batch of
    ``rows`` rows: two where there are two cores and the batch is big enough to share.
    ``AEFLOW_VALIDATION_THREADS`` overrides it (1 = one group at a time)."""
    configured = os.environ.get("AEFLOW_VALIDATION_THREADS", "").strip()
    if not configured:
        return min(2, os.cpu_count() or 1) if rows >= PARALLEL_VALIDATION_ROWS else 1
    if not configured.isdigit() or int(configured) < 1:
        raise ValueError(
            f"AEFLOW_VALIDATION_THREADS must be a whole number >= 1, got {configured!r}; "
            "unset it for the default (2 where there are two cores)"
        )
    return int(configured)


def _gx_context() -> Any:
    """An ephemeral GX context: in-memory stores, no docs site, analytics and progress bars off."""
    gx_environment()
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )
    from great_expectations.execution_engine import pandas_execution_engine

    # GX hashes every row of a batch under 1 GB just to label it (a third of the validation time
    # at 1M rows); the label is unused here, so the threshold is set below any batch.
    pandas_execution_engine.HASH_THRESHOLD = 0
    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
    )
    return gx.get_context(project_config=config, mode="ephemeral")


class GxRunner:
    """One ephemeral context with one in-memory dataframe asset, for one batch's validation.

    Every data source added to a context re-serialises the context's config, so the asset is
    built once and each run passes its own frame as a batch parameter.
    """

    def __init__(self) -> None:
        self.context = _gx_context()
        asset = self.context.data_sources.add_pandas("aeflow").add_dataframe_asset("batch")
        self.definition = asset.add_batch_definition_whole_dataframe("whole")

    def __enter__(self) -> GxRunner:
        return self

    def __exit__(self, *exc_info: object) -> None:
        # The execution engine caches every frame it validated, and GX keeps the last context it
        # built in a module-level slot; the validators form reference cycles with the engine, so
        # without this the batch's memory would wait for a full garbage collection.
        # (Private GX 1.24 attributes, read defensively: at worst memory waits for the collector.)
        engine = getattr(self.context.data_sources.get("aeflow"), "_execution_engine", None)
        manager = getattr(engine, "batch_manager", None)
        for name in ("_batch_data_cache", "_batch_cache"):
            cache = getattr(manager, name, None)
            if isinstance(cache, dict):
                cache.clear()
        self.context.data_sources.delete("aeflow")

    def run(self, frame: pd.DataFrame, checks: Sequence[Check], result_format: Any) -> Any:
        from great_expectations import ExpectationSuite
        from great_expectations.validator.v1_validator import Validator

        suite = ExpectationSuite(
            name="aeflow", expectations=[c.gx_configuration().to_domain_obj() for c in checks]
        )
        # One Validator reads the batch once; Batch.validate would build it a second time.
        validator = Validator(
            batch_definition=self.definition,
            batch_parameters={"dataframe": frame},
            result_format=result_format,
        )
        return validator.validate_expectation_suite(suite)


def _exception_message(info: Any) -> str | None:
    if not isinstance(info, dict):
        return None
    if info.get("raised_exception"):
        return " ".join(str(info.get("exception_message") or "").split())
    for value in info.values():
        message = _exception_message(value)
        if message:
            return message
    return None


def _expected_of(check: Check) -> dict[str, Any]:
    return jsonable({k: v for k, v in check.kwargs.items() if k != "column"})


def failure_of(check: Check, result: Any, rows: int) -> dict[str, Any]:
    payload = result.result or {}
    unexpected = payload.get("unexpected_count")
    element_count = payload.get("element_count") or rows
    failure: dict[str, Any] = {
        "type": check.type,
        "column": check.column,
        "severity": check.severity,
        "expected": _expected_of(check),
        "observed": jsonable(payload.get("observed_value")),
        "unexpected_count": None if unexpected is None else int(unexpected),
        "unexpected_share": (
            None if unexpected is None or not element_count else float(unexpected) / element_count
        ),
        # A null check's unexpected values are all null: only the ids say something.
        "sample_values": []
        if "null" in check.type
        else jsonable(list(payload.get("partial_unexpected_list") or [])[:SAMPLE_SIZE]),
        "sample_ids": [],
        "why": check.meta.get("why", ""),
    }
    if unexpected is not None and failure["observed"] is None:
        failure["observed"] = (
            f"{unexpected} of {element_count} values unexpected "
            f"({payload.get('unexpected_percent_nonmissing', 0.0):.3g}% of non-null values)"
        )
    details = payload.get("details")
    if details and len(json.dumps(jsonable(details))) <= 2000:
        failure["details"] = jsonable(details)
    error = _exception_message(result.exception_info)
    if error:
        failure["error"] = error
        failure["observed"] = failure["observed"] or "the check raised an error"
    return failure


def _by_column(checks: Iterable[Check]) -> dict[str | None, list[Check]]:
    """Checks grouped by the one column they read (None: table-level or several columns)."""
    groups: dict[str | None, list[Check]] = {}
    for check in checks:
        single = check.column if check.columns() == [check.column] else None
        groups.setdefault(single, []).append(check)
    return groups


def run_checks(
    runners: Sequence[GxRunner],
    frame: pd.DataFrame,
    checks: Sequence[Check],
    first_pass: str = "BOOLEAN_ONLY",
) -> dict[int, Any]:
    """Every check's GX result, by check index.

    GX filters the whole frame it is given for every row-level metric, so each column's checks
    run on a frame of that column alone (30x less copying on a 30-column batch). A first pass
    asks only for success; the checks that failed run again for their observed values, counts
    and sample values. ``first_pass`` "BASIC" keeps the observed values of passing checks too
    (for Data Docs). The column groups are spread over ``runners``, one thread each.
    """
    results: dict[int, Any] = {}
    detailed = {"result_format": "SUMMARY", "partial_unexpected_count": SAMPLE_SIZE}
    for result_format, todo in ((first_pass, checks), (detailed, None)):
        todo = todo if todo is not None else [c for c in checks if not results[c.index].success]
        jobs = [
            (frame if column is None else frame[[column]], group, result_format)
            for column, group in _by_column(todo).items()
        ]
        for validation in _run_jobs(runners, jobs):
            for item in validation.results:
                results[item.expectation_config.meta[INDEX_META_KEY]] = item
    return results


def _run_jobs(
    runners: Sequence[GxRunner], jobs: Sequence[tuple[pd.DataFrame, Sequence[Check], Any]]
) -> list[Any]:
    """``runner.run(*job)`` for every job, on one thread per runner; results in job order.

    A GX context is not thread-safe, so each thread borrows a runner of its own. The row-level
    work (comparisons, null masks, quantiles over a million values) runs in numpy and pandas,
    which release the GIL, so the column groups of one batch validate in parallel.
    """
    if len(runners) == 1 or len(jobs) < 2:
        return [runners[0].run(*job) for job in jobs]
    idle: queue.SimpleQueue[GxRunner] = queue.SimpleQueue()
    for runner in runners:
        idle.put(runner)

    def run(job: tuple[pd.DataFrame, Sequence[Check], Any]) -> Any:
        runner = idle.get()
        try:
            return runner.run(*job)
        finally:
            idle.put(runner)

    # Widest frames and biggest groups first, so no thread is left with a long job at the end.
    order = sorted(range(len(jobs)), key=lambda i: (-jobs[i][0].shape[1], -len(jobs[i][1])))
    with ThreadPoolExecutor(len(runners), thread_name_prefix="aeflow-gx") as pool:
        done = dict(zip(order, pool.map(run, [jobs[i] for i in order]), strict=True))
    return [done[i] for i in range(len(jobs))]


def sample_ids(
    runner: GxRunner, frame: pd.DataFrame, check: Check, result: Any, id_column: str | None
) -> list[Any]:
    """Ids of up to SAMPLE_SIZE rows that failed a row-level check.

    For checks whose verdict depends on the value alone, the rows holding GX's sample unexpected
    values are looked up directly; GX's own id lists cost more than the whole validation on a
    million rows with many unexpected values. Other checks ask GX for the ids.
    """
    payload = result.result or {}
    if not payload.get("unexpected_count") or id_column is None or id_column not in frame:
        return []
    column = check.column
    if check.type in VALUE_DETERMINED and column in frame.columns:
        series = frame[column]
        if check.type == "expect_column_values_to_not_be_null":
            mask = series.isna()
        else:
            mask = series.isin(list(payload.get("partial_unexpected_list") or []))
        return jsonable(frame.loc[mask.to_numpy(), id_column].head(SAMPLE_SIZE).tolist())
    names = list(dict.fromkeys([*check.columns(), id_column]))
    part = frame[names] if check.columns() else frame
    fmt = {
        "result_format": "SUMMARY",
        "partial_unexpected_count": SAMPLE_SIZE,
        "unexpected_index_column_names": [id_column],
    }
    [item] = runner.run(part, [check], fmt).results
    rows = (item.result or {}).get("partial_unexpected_index_list") or []
    return jsonable([row.get(id_column) for row in rows if isinstance(row, dict)][:SAMPLE_SIZE])


def render_data_docs(
    suite: Suite, results: dict[int, Any], out_file: str, options: StorageOptions
) -> None:
    from great_expectations.core.expectation_validation_result import (
        ExpectationSuiteValidationResult,
    )
    from great_expectations.render.renderer import ValidationResultsPageRenderer
    from great_expectations.render.view import DefaultJinjaPageView

    ordered = [results[i] for i in sorted(results)]
    passed = sum(1 for r in ordered if r.success)
    combined = ExpectationSuiteValidationResult(
        success=passed == len(ordered),
        results=ordered,
        suite_name=suite.name,
        statistics={
            "evaluated_expectations": len(ordered),
            "successful_expectations": passed,
            "unsuccessful_expectations": len(ordered) - passed,
            "success_percent": 100.0 * passed / max(1, len(ordered)),
        },
    )
    document = ValidationResultsPageRenderer().render(combined)
    write_text_atomic(DefaultJinjaPageView().render(document), out_file, options)
