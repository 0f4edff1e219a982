"""The data contract: drafting suites, checking suite files, severities and the outcome's report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tasks.io import BatchRef, Storage
from tasks.settings import ColumnsSettings, ValidationSettings
from tasks.validation import (
    DraftSettings,
    SuiteError,
    ValidationOutcome,
    draft_suite,
    load_suite,
    suite_json,
    suite_problems,
    validate_batch,
)
from tasks.validation.draft import _round_outward
from tasks.validation.gx_runner import PARALLEL_VALIDATION_ROWS, gx_threads

NUMERIC = ["amount", "visits"]
CATEGORICAL = ["channel", "country"]


def make_table(rows: int = 400, seed: int = 0) -> pa.Table:
    """A small mixed-type batch: id, UTC time, two numeric columns (one with nulls), two text."""
    rng = np.random.default_rng(seed)
    amount = rng.lognormal(3, 0.5, rows)
    return pa.table(
        {
            "tx_id": [f"t{seed}-{i}" for i in range(rows)],
            "event_time": pa.array(
                np.datetime64("2026-01-01", "us") + np.arange(rows).astype("timedelta64[s]"),
                type=pa.timestamp("us", tz="UTC"),
            ),
            "amount": pa.array(amount, mask=rng.random(rows) < 0.02),
            "visits": pa.array(rng.poisson(4, rows), type=pa.int64()),
            "channel": pa.array(rng.choice(["web", "app", "pos"], rows, p=[0.5, 0.3, 0.2])),
            "country": pa.array(rng.choice(["FR", "DE", "ES", "IT"], rows)),
            "label": pa.array((rng.random(rows) < 0.05).astype(np.int8)),
        }
    )


def write(table: pa.Table, path: Path) -> BatchRef:
    pq.write_table(table, path)
    return BatchRef(path.stem, str(path), path.stat().st_size)


def drafted(table: pa.Table) -> dict:
    return draft_suite(table, name="shop", columns=COLUMNS.model_copy(update={"label": "label"}))


@pytest.fixture
def suite_path(tmp_path: Path) -> str:
    path = tmp_path / "shop.json"
    path.write_text(suite_json(drafted(make_table())))
    return str(path)


COLUMNS = ColumnsSettings(
    id="tx_id", timestamp="event_time", numeric=NUMERIC, categorical=CATEGORICAL
)


def check(
    batch: BatchRef,
    suite: str,
    *,
    label: str | None = None,
    data_docs: Storage | None = None,
    **validation,
) -> ValidationOutcome:
    """``validate_batch`` with the shop's columns (``label``: the config names a label column)
    and the validation settings ``validation`` (on_warning, severity)."""
    return validate_batch(
        batch,
        columns=COLUMNS.model_copy(update={"label": label}),
        validation=ValidationSettings(suite=suite, **validation),
        data_docs=data_docs,
    )


def test_drafted_suite_is_stable_sorted_json_that_passes_its_reference(tmp_path, suite_path):
    text = Path(suite_path).read_text()
    assert suite_json(drafted(make_table())) == text  # same reference, same bytes
    assert json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n" == text
    suite = json.loads(text)
    kinds = {(e["type"], e["kwargs"].get("column"), e["severity"]) for e in suite["expectations"]}
    assert ("expect_table_columns_to_match_set", None, "critical") in kinds
    assert ("expect_column_values_to_be_unique", "tx_id", "critical") in kinds
    assert ("expect_column_values_to_not_be_null", "tx_id", "critical") in kinds
    assert ("expect_column_values_to_be_of_type", "event_time", "critical") in kinds
    assert ("expect_column_values_to_be_in_type_list", "amount", "critical") in kinds
    assert ("expect_column_values_to_be_in_set", "channel", "warning") in kinds
    assert ("expect_column_kl_divergence_to_be_less_than", "country", "warning") in kinds
    assert ("expect_column_quantile_values_to_be_between", "visits", "warning") in kinds
    # The reference and a fresh batch of the same distribution both pass.
    assert check(write(make_table(), tmp_path / "ref.parquet"), suite_path).status == "passed"
    fresh = check(write(make_table(seed=1), tmp_path / "fresh.parquet"), suite_path)
    assert fresh.status == "passed", fresh.reason


def test_draft_rejects_a_reference_that_breaks_the_critical_checks():
    table = make_table()
    duplicated = table.set_column(0, "tx_id", pa.array(["same"] * table.num_rows))
    with pytest.raises(ValueError, match="duplicate ids"):
        drafted(duplicated)
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['amount'\]"):
        drafted(table.drop_columns(["amount"]))
    with pytest.raises(ValueError, match="max_levels must be >= 1, got 0"):
        DraftSettings(max_levels=0)


def test_range_bounds_round_outward_and_stay_readable():
    assert _round_outward(23.4, up=False) == 23.4 and _round_outward(-1.0, up=True) == -1.0
    assert _round_outward(1379963888.0, up=False) == 1379960000.0
    assert _round_outward(1379963888.0, up=True) == 1379970000.0
    assert _round_outward(0.1 + 0.2, up=True) >= 0.1 + 0.2
    assert _round_outward(0.1 + 0.2, up=False) == 0.3


def test_suite_check_reports_unknown_types_that_gx_would_drop_silently(tmp_path):
    from great_expectations import ExpectationSuite

    bogus = {"type": "expect_column_values_to_be_sparkly", "kwargs": {"column": "amount"}}
    # GX itself logs and drops an expectation it cannot build: the suite would check nothing.
    assert len(ExpectationSuite(name="s", expectations=[bogus]).expectations) == 0
    problems = suite_problems({"name": "shop", "expectations": [bogus]})
    assert problems == [
        "expectations[0] (expect_column_values_to_be_sparkly): unknown expectation type "
        "(not in great_expectations 1.x)"
    ]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"name": "shop", "expectations": [bogus]}))
    with pytest.raises(SuiteError, match="sparkly"):
        load_suite(str(path))


def test_suite_check_reports_bad_kwargs_severities_and_gx0_layout():
    problems = suite_problems(
        {
            "name": "shop",
            "expectations": [
                {"type": "expect_column_values_to_be_between", "kwargs": {"column": "a", "min": 1}},
                {
                    "type": "expect_column_values_to_not_be_null",
                    "kwargs": {"column": "a"},
                    "severity": "fatal",
                },
                {"expectation_type": "expect_column_to_exist", "kwargs": {"column": "a"}},
            ],
            "data_asset_type": "Dataset",
        }
    )
    text = "\n".join(problems)
    assert "unknown top-level key(s) ['data_asset_type']" in text
    assert "expectations[0] (expect_column_values_to_be_between): " in text and "min" in text
    assert "severity must be one of ['critical', 'warning'], got 'fatal'" in text
    assert "'expectation_type' is GX 0.x; GX 1.x names it 'type'" in text
    assert suite_problems({"name": "shop", "expectations": []}) == [
        "'expectations' is empty: a suite that checks nothing accepts any batch"
    ]


def test_warnings_score_by_default_and_quarantine_when_the_policy_says(tmp_path, suite_path):
    table = make_table(seed=2)
    countries = table.column("country").to_pylist()
    countries[:3] = ["XX", "XX", "YY"]  # levels never seen in the reference
    batch = write(table.set_column(5, "country", pa.array(countries)), tmp_path / "b.parquet")

    scored = check(batch, suite_path)
    assert (scored.status, scored.accepted, scored.critical) == ("warning", True, [])
    [unseen] = [w for w in scored.warnings if w["type"] == "expect_column_values_to_be_in_set"]
    assert unseen["column"] == "country" and unseen["unexpected_count"] == 3
    assert set(unseen["sample_values"]) == {"XX", "YY"}
    assert set(unseen["sample_ids"]) == {"t2-0", "t2-1", "t2-2"}
    assert "scored with" in scored.reason and "country" in scored.reason

    strict = check(batch, suite_path, on_warning="quarantine")
    assert (strict.status, strict.accepted) == ("quarantined", False)
    assert "on_warning = 'quarantine'" in strict.reason

    override = {"expect_column_values_to_be_in_set:country": "critical"}
    escalated = check(batch, suite_path, severity=override)
    assert escalated.status == "quarantined"
    assert [c["type"] for c in escalated.critical] == ["expect_column_values_to_be_in_set"]

    with pytest.raises(SuiteError, match="match no expectation type"):
        check(batch, suite_path, severity={"expect_column_to_exist": "warning"})
    with pytest.raises(ValueError, match="on_warning"):
        check(batch, suite_path, on_warning="ignore")


def test_outcome_is_json_and_its_markdown_names_each_failure(tmp_path, suite_path):
    table = make_table(seed=3)
    ids = table.column("tx_id").to_pylist()
    ids[10] = ids[11] = "dup-1"
    batch = write(table.set_column(0, "tx_id", pa.array(ids)), tmp_path / "dups.parquet")
    outcome = check(batch, suite_path)
    assert (outcome.status, outcome.rows) == ("quarantined", 400)
    [unique] = outcome.critical
    assert unique["type"] == "expect_column_values_to_be_unique"
    assert unique["unexpected_count"] == 2 and unique["unexpected_share"] == pytest.approx(2 / 400)
    assert unique["sample_ids"] == ["dup-1", "dup-1"]
    assert unique["why"].startswith("row ids identify scored rows")

    as_dict = outcome.to_dict()
    assert json.loads(json.dumps(as_dict, allow_nan=False)) == as_dict
    assert ValidationOutcome.from_dict(as_dict) == outcome
    markdown = outcome.report_markdown()
    assert "# Batch `dups`: quarantined" in markdown
    assert "| expect_column_values_to_be_unique | tx_id |" in markdown and "dup-1" in markdown


def test_data_docs_html_is_written_when_asked(tmp_path, suite_path):
    batch = write(make_table(seed=4), tmp_path / "docs.parquet")
    storage = Storage(str(tmp_path), "shop")
    outcome = check(batch, suite_path, data_docs=storage)
    html = Path(storage.data_docs_page("docs")).read_text()
    assert html == (tmp_path / "reports" / "shop" / "data-docs" / "docs.html").read_text()
    assert outcome.status == "passed"
    assert html.lstrip().startswith("<!DOCTYPE html>")
    assert "Expectation Validation Result" in html and "Must have exactly these columns" in html
    assert "Unsuccessful Expectations" in html


def test_outcome_is_the_same_on_one_thread_and_on_several(tmp_path, suite_path, monkeypatch):
    table = make_table(seed=3)
    countries = table.column("country").to_pylist()
    countries[:4] = ["XX"] * 4  # warning: an unseen level
    ids = table.column("tx_id").to_pylist()
    ids[5] = ids[6]  # critical: a duplicate id
    table = table.set_column(5, "country", pa.array(countries))
    batch = write(table.set_column(0, "tx_id", pa.array(ids)), tmp_path / "b.parquet")

    outcomes = {}
    for threads in ("1", "3"):
        monkeypatch.setenv("AEFLOW_VALIDATION_THREADS", threads)
        outcome = check(batch, suite_path).to_dict()
        outcome.pop("validated_at")
        outcomes[threads] = outcome
    assert outcomes["1"]["status"] == "quarantined"
    assert {f["type"] for f in outcomes["1"]["critical"]} == {"expect_column_values_to_be_unique"}
    assert {f["column"] for f in outcomes["1"]["warnings"]} >= {"country"}
    assert outcomes["3"] == outcomes["1"]


@pytest.mark.parametrize("value", ["two", "0", "-1"])
def test_a_bad_validation_thread_count_is_named(tmp_path, suite_path, monkeypatch, value):
    batch = write(make_table(seed=4), tmp_path / "b.parquet")
    monkeypatch.setenv("AEFLOW_VALIDATION_THREADS", value)
    with pytest.raises(ValueError, match=f"AEFLOW_VALIDATION_THREADS must be .* got '{value}'"):
        check(batch, suite_path)


def test_only_big_batches_are_validated_on_two_threads(monkeypatch):
    monkeypatch.delenv("AEFLOW_VALIDATION_THREADS", raising=False)
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert gx_threads(PARALLEL_VALIDATION_ROWS - 1) == 1
    assert gx_threads(PARALLEL_VALIDATION_ROWS) == 2
    monkeypatch.setattr("os.cpu_count", lambda: 1)
    assert gx_threads(10 * PARALLEL_VALIDATION_ROWS) == 1
    monkeypatch.setenv("AEFLOW_VALIDATION_THREADS", "3")
    assert gx_threads(10) == 3


def test_the_label_is_optional_in_every_batch(tmp_path, suite_path):
    """Drafted from a labelled reference, the suite accepts a production batch without the label
    (its label checks are skipped); drafted from an unlabelled one, it accepts a batch with the
    label when the config names it (columns.label: present or absent)."""
    labelled = make_table()
    assert json.loads(Path(suite_path).read_text())["meta"]["aeflow"]["optional_columns"] == [
        "label"
    ]
    with_label = check(write(labelled, tmp_path / "with.parquet"), suite_path)
    without = check(
        write(labelled.drop_columns(["label"]), tmp_path / "without.parquet"), suite_path
    )
    assert (with_label.status, without.status) == ("passed", "passed"), without.reason
    assert without.checks < with_label.checks  # the label's own checks were not run

    unlabelled_suite = tmp_path / "unlabelled.json"
    unlabelled_suite.write_text(
        suite_json(
            draft_suite(labelled.drop_columns(["label"]), name="shop", columns=COLUMNS)
        )
    )  # fmt: skip
    batch = write(labelled, tmp_path / "labelled.parquet")
    assert check(batch, str(unlabelled_suite), label="label").status == "passed"
    # drafting from production data without the label the config names is not an error either
    drafted_without = draft_suite(
        labelled.drop_columns(["label"]),
        name="shop",
        columns=COLUMNS.model_copy(update={"label": "label"}),
    )
    assert drafted_without["meta"]["aeflow"]["optional_columns"] == ["label"]
    strict = check(batch, str(unlabelled_suite))  # the label not declared optional: extra column
    assert strict.status == "quarantined" and "column" in strict.reason
    missing_feature = check(
        write(labelled.drop_columns(["visits"]), tmp_path / "no-visits.parquet"),
        suite_path,
        label="label",
    )
    assert missing_feature.status == "quarantined" and "visits" in missing_feature.reason


def test_parts_that_disagree_name_the_columns_and_types_that_differ(tmp_path):
    # A folder batch of 300 columns whose parts "have a different schema" leaves the user
    # diffing schemas by hand: the reason names each differing column, its types and its part.
    from tasks.validation.prechecks import read_batch

    table = make_table(40)
    folder = tmp_path / "2026-01-05"
    folder.mkdir()
    pq.write_table(table.slice(0, 10), folder / "part-0.parquet")
    pq.write_table(
        table.slice(10, 10).set_column(
            3, "visits", table.column("visits").slice(10, 10).cast("double")
        ),
        folder / "part-1.parquet",
    )
    pq.write_table(table.slice(20, 10).drop_columns(["channel"]), folder / "part-2.parquet")
    pq.write_table(
        table.slice(30, 10).append_column("extra", pa.array([1] * 10)), folder / "part-3.parquet"
    )
    _, failure = read_batch(BatchRef("2026-01-05", str(folder), 0), None)
    assert failure["bad_parts"] == ["part-1.parquet", "part-2.parquet", "part-3.parquet"]
    assert failure["footer_rows"] == 40
    for said in (
        "part-1.parquet: 'visits' is double (int64 in part-0.parquet)",
        "part-2.parquet: 'channel' is absent",
        "part-3.parquet: 'extra' is not in part-0.parquet",
        "re-export the batch with one schema",
    ):
        assert said in failure["why"], failure["why"]


def test_parts_that_differ_only_in_number_width_are_read_as_one_batch(tmp_path):
    # pandas writes an integer column that holds a null as double: a folder of daily parts then
    # has int64 in one part and double in the next. The whole batch used to be quarantined for it;
    # it reads as one table with the wider type, everywhere the batch is read.
    from tasks.io import read_schema, read_table
    from tasks.validation.prechecks import read_batch

    table = make_table(40)
    folder = tmp_path / "2026-01-05"
    folder.mkdir()
    pq.write_table(table.slice(0, 25), folder / "part-0.parquet")
    visits = table.column("visits").slice(25, 15).cast("double")
    pq.write_table(table.slice(25, 15).set_column(3, "visits", visits), folder / "part-1.parquet")
    batch = BatchRef("2026-01-05", str(folder), 0)
    read, failure = read_batch(batch, None)
    assert failure is None
    assert read.num_rows == 40 and read.schema.field("visits").type == pa.float64()
    assert read.column("visits").to_pylist() == [float(v) for v in table["visits"].to_pylist()]
    assert read_schema(str(folder)).field("visits").type == pa.float64()
    assert read_table(str(folder)).equals(read)
    # A column of another kind (text here) still fails the batch, naming the part and the column.
    pq.write_table(
        table.slice(25, 15).set_column(3, "visits", visits.cast("string")),
        folder / "part-1.parquet",
    )
    _, failure = read_batch(batch, None)
    assert failure["bad_parts"] == ["part-1.parquet"]
    assert "part-1.parquet: 'visits' is string (int64 in part-0.parquet)" in failure["why"]


def test_a_boolean_listed_as_numeric_is_told_to_be_categorical():
    # "has type bool, not a number type; fix the export's column type" sent users to re-export a
    # flag; listing it as categorical (a two-level category) is the fix in the config.
    from tasks.validation.prechecks import schema_prechecks

    table = make_table(20).append_column("vip", pa.array([True, False] * 10))
    (failure,) = schema_prechecks(table, [], None, ["amount", "vip"], "tx_id")
    assert failure["type"] == "precheck.numeric_type" and failure["column"] == "vip"
    assert "holds booleans" in failure["why"] and "columns.categorical" in failure["why"]


def test_a_timestamp_without_its_time_zone_is_named_as_such(tmp_path, suite_path):
    # The reason said only "expect_column_values_to_be_of_type on event_time: observed
    # datetime64": what the suite wanted (timestamps with a time zone) was left to the report.
    table = make_table()
    naive = table.column("event_time").cast(pa.timestamp("us"))
    batch = write(table.set_column(1, "event_time", naive), tmp_path / "2026-01-02.parquet")
    outcome = check(batch, suite_path)
    assert outcome.status == "quarantined"
    assert (
        "expect_column_values_to_be_of_type on event_time: observed datetime64, expected "
        "timestamps with a time zone" in outcome.reason
    ), outcome.reason


def test_a_reference_column_without_any_value_is_drafted_without_a_type(tmp_path):
    # pandas writes an all-None object column as Arrow's null type: init stopped with "cannot
    # draft a type check for Arrow type null" without naming the column, and no suite at all.
    table = make_table(50).append_column("promo_code", pa.nulls(50))
    suite = draft_suite(table, name="shop", columns=COLUMNS)
    assert suite["meta"]["aeflow"]["untyped"] == ["promo_code"]
    on_promo = [e for e in suite["expectations"] if e["kwargs"].get("column") == "promo_code"]
    assert "type" not in " ".join(e["type"] for e in on_promo)
    path = tmp_path / "shop.json"
    path.write_text(suite_json(suite))
    later = make_table(50, seed=1).append_column("promo_code", pa.array(["X1"] * 50))
    outcome = check(write(later, tmp_path / "later.parquet"), str(path))
    assert outcome.accepted
    # values where the references had none: the model learnt nothing of them, so say so
    assert outcome.status == "warning" and "expect_column_values_to_be_null on promo_code" in (
        outcome.reason
    ), outcome.reason
    with pytest.raises(ValueError, match=r"column 'when': cannot draft a type check"):
        draft_suite(
            make_table(5).append_column("when", pa.array([1, 2, 3, 4, 5], pa.time32("s"))),
            name="shop", columns=COLUMNS,
        )  # fmt: skip


def test_a_suite_check_on_a_column_outside_its_column_set_is_a_suite_problem(tmp_path):
    # A reviewer's typo ('amout') passed `expectations check`; then every batch was quarantined
    # for a "missing column" that was the suite's own mistake, even for a warning-level check.
    suite = drafted(make_table())
    suite["expectations"].append(
        {"type": "expect_column_values_to_be_between", "kwargs": {"column": "amout", "min_value": 0},
         "severity": "warning"}
    )  # fmt: skip
    assert suite_problems(suite) == [
        f"expectations[{len(suite['expectations']) - 1}] (expect_column_values_to_be_between): "
        "column 'amout' is not in the suite's column set (did you mean 'amount'?): every batch "
        "would be quarantined for lacking it; fix the name, or add the column to "
        "expect_table_columns_to_match_set"
    ]
    path = tmp_path / "shop.json"
    path.write_text(suite_json(suite))
    with pytest.raises(SuiteError, match="'amout' is not in the suite's column set"):
        check(write(make_table(), tmp_path / "2026-01-02.parquet"), str(path))


def test_a_batch_without_any_value_in_a_column_passes_its_level_shares(tmp_path):
    # Bank marketing's `contact` is all `unknown` (missing) in May and June 2008 and filled from
    # July: a suite drafted from those months warned on each empty month with "KL divergence on
    # contact: observed " (GX has no shares of no values), its own references included. The
    # shares of a column without values are not a distribution to compare: the null-share check
    # judges how empty it is.
    tokens = COLUMNS.model_copy(update={"missing_values": ["unknown"]})
    empty, filled = make_table(300, seed=1), make_table(300, seed=2)
    empty = empty.set_column(
        empty.schema.get_field_index("channel"), "channel", pa.array(["unknown"] * 300)
    )
    suite = draft_suite([empty, filled], name="shop", columns=tokens)
    path = tmp_path / "shop.json"
    path.write_text(suite_json(suite))
    assert any(
        e["type"] == "expect_column_kl_divergence_to_be_less_than"
        and e["kwargs"]["column"] == "channel"
        for e in suite["expectations"]
    )
    outcome = validate_batch(
        write(empty, tmp_path / "empty.parquet"),
        columns=tokens,
        validation=ValidationSettings(suite=str(path)),
    )
    assert outcome.accepted and outcome.status == "passed", outcome.reason
