"""Request bodies that are valid bytes but odd JSON: each is a 4xx naming the problem, never a
500 (serving.codecs.parse_body and serving.rules, without a server)."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from serving.codecs import BodyError, parse_body
from serving.rules import ColumnRule, InputContract, InputError

RULES = [
    ColumnRule("id", "passthrough"),
    ColumnRule("amount", "numeric"),
    ColumnRule("channel", "categorical", levels=frozenset({"web", "shop"})),
]
LATENT = tuple(
    ColumnRule(f"z_{i}", "latent", "a code to decode needs every z value") for i in (0, 1)
)
CONTRACT = InputContract(tuple(RULES[1:]), (RULES[0],), LATENT)


def _problems(raw: bytes, latent: bool = False) -> list:
    rules = [*CONTRACT.passthrough, *(CONTRACT.latent if latent else CONTRACT.features)]
    body = parse_body(raw, "json", rules, max_rows=100)
    with pytest.raises(InputError) as caught:
        CONTRACT.check(body.table, latent=latent, found=body.problems)
    return caught.value.problems


@pytest.mark.parametrize("column", ["channel", "id"])
def test_text_with_a_lone_surrogate_is_a_problem_of_its_column(column):
    # JSON may escape half of a surrogate pair ("\ud83d"): not Unicode text, Arrow cannot hold it.
    row = {"id": "a", "amount": 1.0, "channel": "web"}
    raw = json.dumps([row, {**row, column: "X"}]).replace('"X"', '"\\ud83d"').encode()
    (problem,) = _problems(raw)
    assert problem.column == column
    assert "surrogate" in problem.rule and "\\ud83d" in problem.rule
    assert problem.rows == (1,) and problem.n_rows == 1
    assert "UTF-8" in problem.fix


def test_a_body_nested_too_deep_is_a_400():
    with pytest.raises(BodyError, match="nested"):
        parse_body(b"[" * 100_000 + b"]" * 100_000, "json", RULES, max_rows=100)


@pytest.mark.parametrize("value", [1e39, -1e308])
def test_a_code_beyond_float32_is_a_problem_of_its_column(value):
    # /decode runs the network in float32: 1e39 would become infinity there.
    raw = json.dumps([{"z_0": 0.5, "z_1": 0.0}, {"z_0": value, "z_1": 0.0}]).encode()
    (problem,) = _problems(raw, latent=True)
    assert problem.column == "z_0"
    assert "float32" in problem.rule and problem.rows == (1,)


def test_codes_within_float32_pass():
    raw = json.dumps([{"z_0": 3.0e38, "z_1": -1.5}]).encode()
    body = parse_body(raw, "json", [*CONTRACT.passthrough, *CONTRACT.latent], max_rows=100)
    batch = CONTRACT.check(body.table, latent=True)
    assert batch.num_rows == 1 and batch.column("z_0").type == pa.float64()


def _arrow(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _arrow_problems(table: pa.Table) -> list:
    body = parse_body(_arrow(table), "arrow", RULES, max_rows=100)
    with pytest.raises(InputError) as caught:
        CONTRACT.check(body.table, found=body.problems)
    return caught.value.problems


def test_arrow_text_that_is_not_utf8_is_a_problem_of_its_column():
    # Arrow IPC does not check that string bytes are UTF-8; a writer that cast bytes may send any.
    channel = pa.array([b"web", b"sh\xffp"], pa.binary()).view(pa.string())
    table = pa.table({"id": ["a", "b"], "amount": [1.0, 2.0], "channel": channel})
    (problem,) = _arrow_problems(table)
    assert problem.column == "channel" and "UTF-8" in problem.rule and problem.fix


def test_an_arrow_body_with_a_column_twice_is_a_problem_of_that_column():
    table = pa.Table.from_arrays(
        [pa.array([1.0]), pa.array([2.0]), pa.array(["web"])], names=["amount", "amount", "channel"]
    )
    (problem,) = _arrow_problems(table)
    assert problem.column == "amount" and "2 columns" in problem.rule
