"""Contract validation: every problem is named with its table, column and row count."""

from __future__ import annotations

import doctest
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cadence.contract.tables import TABLES
from cadence.data import schemas, validate
from cadence.data.io import write_tables
from cadence.data.validate import (
    MAX_UNKNOWN_VALUES,
    ContractError,
    Problem,
    check_dir,
    check_tables,
    format_problems,
    validate_dir,
    validate_tables,
)

Tables = dict[str, pd.DataFrame]
Shop = Callable[[], Tables]


def _set(table: str, column: str, rows: list[int], value: object) -> Callable[[Tables], None]:
    """A mutation that writes ``value`` into ``rows`` of one column (as object if needed)."""

    def mutate(t: Tables) -> None:
        df = t[table]
        col = df[column].astype(object)
        col.iloc[rows] = value
        df[column] = col

    return mutate


def _drop(table: str, column: str) -> Callable[[Tables], None]:
    return lambda t: t[table].drop(columns=column, inplace=True)


def _repeat_row(table: str, row: int) -> Callable[[Tables], None]:
    def mutate(t: Tables) -> None:
        t[table] = pd.concat([t[table], t[table].iloc[[row]]], ignore_index=True)

    return mutate


def _convert(table: str, column: str, fn: Callable[[pd.Series], pd.Series]) -> Callable[[Tables], None]:
    def mutate(t: Tables) -> None:
        t[table][column] = fn(t[table][column])

    return mutate


# (id, mutation, the one problem it must produce). Each line is a whole
# message, so the row count is checked with it.
CASES: list[tuple[str, Callable[[Tables], None], str]] = [
    ("missing column", _drop("orders", "revenue"), "orders.revenue: missing required column (2 rows)"),
    ("missing key column", _drop("order_items", "product_id"),
     "order_items.product_id: missing required column (3 rows)"),
    ("text in float", _set("orders", "revenue", [1], "abc"),
     "orders.revenue: wrong type, expected float, got 'abc' (1 row)"),
    ("text in int", _set("order_items", "quantity", [0, 2], "two"),
     "order_items.quantity: wrong type, expected int, got 'two' (2 rows)"),
    ("fraction in int", _set("order_items", "quantity", [0], 1.5),
     "order_items.quantity: wrong type, expected int, got 1.5 (1 row)"),
    ("number in timestamp", _convert("orders", "ts", lambda s: s.astype("int64")),
     "orders.ts: wrong type, expected timestamp, got int64 values (2 rows)"),
    ("text in timestamp", _set("events", "ts", [0], "yesterday"),
     "events.ts: wrong type, expected timestamp, got 'yesterday' (1 row)"),
    ("number in text", _convert("products", "title", lambda s: pd.Series([1, 2, 3])),
     "products.title: wrong type, expected text, got int64 values (3 rows)"),
    ("number in a referenced key", _convert("customers", "customer_id", lambda s: pd.Series([1, 2, 3])),
     "customers.customer_id: wrong type, expected text, got int64 values (3 rows)"),
    ("text in bool", _set("product_changes", "in_stock", [2], "maybe"),
     "product_changes.in_stock: wrong type, expected bool, got 'maybe' (1 row)"),
    ("text in date", _set("customers", "birth_date", [0], "05/01/1990"),
     "customers.birth_date: wrong type, expected date, got '05/01/1990' (1 row)"),
    ("naive timestamps", _convert("events", "ts", lambda s: s.dt.tz_localize(None)),
     "events.ts: timestamp without time zone (6 rows)"),
    ("naive mixed with aware", _set("messages", "triggered_at", [1], pd.Timestamp("2024-03-02 09:00")),
     "messages.triggered_at: timestamp without time zone (1 row)"),
    ("string without offset", _set("orders", "ts", [0], "2024-03-01T10:10:00"),
     "orders.ts: timestamp without time zone (1 row)"),
    ("null in required", _set("products", "title", [0], None),
     "products.title: null in a non-nullable column (1 row)"),
    ("null keys are not duplicates", _set("events", "event_id", [0, 1], None),
     "events.event_id: null in a non-nullable column (2 rows)"),
    ("duplicate key", _repeat_row("events", 2), "events.event_id: duplicate key (2 rows)"),
    ("duplicate multi-column key", _repeat_row("order_items", 0),
     "order_items: duplicate key (order_id, product_id) (2 rows)"),
    ("duplicate three-column key", _repeat_row("order_status", 1),
     "order_status: duplicate key (order_id, ts, status) (2 rows)"),
    ("unknown event_type", _set("events", "event_type", [0, 5], "foo"),
     "events.event_type: unknown value 'foo' (2 rows)"),
    ("unknown stage", _set("messages", "stage", [1], "abandon_all"),
     "messages.stage: unknown value 'abandon_all' (1 row)"),
    ("unknown channel", _set("messages", "channel", [0], "pigeon"),
     "messages.channel: unknown value 'pigeon' (1 row)"),
    ("unknown incentive", _set("messages", "incentive", [2], "50%"),
     "messages.incentive: unknown value '50%' (1 row)"),
    ("unknown action", _set("messages", "action", [1], "maybe"),
     "messages.action: unknown value 'maybe' (1 row)"),
    ("unknown status", _set("order_status", "status", [1], "lost"),
     "order_status.status: unknown value 'lost' (1 row)"),
    ("negative product price", _set("products", "price", [0], -1.0),
     "products.price: value out of range, must be >= 0 (1 row)"),
    ("negative change price", _set("product_changes", "price", [0, 1], -0.5),
     "product_changes.price: value out of range, must be >= 0 (2 rows)"),
    ("negative revenue", _set("orders", "revenue", [0], -38.0),
     "orders.revenue: value out of range, must be >= 0 (1 row)"),
    ("negative item price", _set("order_items", "price", [2], -5.0),
     "order_items.price: value out of range, must be >= 0 (1 row)"),
    ("negative message revenue", _set("messages", "revenue", [0], -1.0),
     "messages.revenue: value out of range, must be >= 0 (1 row)"),
    ("negative results_count", _set("events", "results_count", [3], -1),
     "events.results_count: value out of range, must be >= 0 (1 row)"),
    ("message step 0", _set("messages", "step", [1], 0),
     "messages.step: value out of range, must be >= 1 (1 row)"),
    ("quantity zero", _set("order_items", "quantity", [1], 0),
     "order_items.quantity: value out of range, must be >= 1 (1 row)"),
    ("propensity zero", _set("messages", "propensity", [1], 0.0),
     "messages.propensity: value out of range, must be in (0, 1] (1 row)"),
    ("propensity above one", _set("messages", "propensity", [0, 2], 1.5),
     "messages.propensity: value out of range, must be in (0, 1] (2 rows)"),
    ("unknown customer in events", _set("events", "customer_id", [0, 1], "c99"),
     "events.customer_id: references an unknown customers.customer_id, e.g. 'c99' (2 rows)"),
    ("unknown product in events", _set("events", "product_id", [1], "p99"),
     "events.product_id: references an unknown products.product_id, e.g. 'p99' (1 row)"),
    ("unknown customer in orders", _set("orders", "customer_id", [1], "c99"),
     "orders.customer_id: references an unknown customers.customer_id, e.g. 'c99' (1 row)"),
    ("unknown order in items", _set("order_items", "order_id", [2], "o99"),
     "order_items.order_id: references an unknown orders.order_id, e.g. 'o99' (1 row)"),
    ("unknown product in items", _set("order_items", "product_id", [2], "p99"),
     "order_items.product_id: references an unknown products.product_id, e.g. 'p99' (1 row)"),
    ("unknown order in status", _set("order_status", "order_id", [2], "o99"),
     "order_status.order_id: references an unknown orders.order_id, e.g. 'o99' (1 row)"),
    ("unknown product in changes", _set("product_changes", "product_id", [2], "p99"),
     "product_changes.product_id: references an unknown products.product_id, e.g. 'p99' (1 row)"),
    ("unknown customer in messages", _set("messages", "customer_id", [0], "c99"),
     "messages.customer_id: references an unknown customers.customer_id, e.g. 'c99' (1 row)"),
    ("unknown converted order", _set("messages", "converted_order_id", [0], "o99"),
     "messages.converted_order_id: references an unknown orders.order_id, e.g. 'o99' (1 row)"),
    ("send without sent_at", _set("messages", "sent_at", [0], None),
     "messages.sent_at: null although action is 'send' (1 row)"),
    ("send without channel", _set("messages", "channel", [0, 2], None),
     "messages.channel: null although action is 'send' (2 rows)"),
    ("send without optional sent_at column", _drop("messages", "sent_at"),
     "messages.sent_at: null although action is 'send' (2 rows)"),
]


@pytest.mark.parametrize(("mutate", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_each_problem_is_reported_once_with_its_row_count(tables: Tables, mutate, expected: str) -> None:
    mutate(tables)
    assert [str(p) for p in validate_tables(tables)] == [expected]


def test_clean_shop_has_no_problems(tables: Tables) -> None:
    assert validate_tables(tables) == []
    check_tables(tables)  # does not raise


def test_fixture_covers_every_contract_table_and_column(tables: Tables) -> None:
    # The clean-shop test means little if a column were never exercised.
    assert set(tables) == set(TABLES)
    for name, table in TABLES.items():
        assert set(table.column_names) <= set(tables[name].columns), name


def test_several_problems_are_reported_at_once(tables: Tables) -> None:
    for mutate, _ in (
        (_set("events", "event_type", [0], "foo"), None),
        (_set("orders", "revenue", [0], -1.0), None),
        (_drop("products", "title"), None),
        (_set("messages", "propensity", [1], 0.0), None),
    ):
        mutate(tables)
    tables["orders"]["ts"] = tables["orders"]["ts"].dt.tz_localize(None)
    assert [str(p) for p in validate_tables(tables)] == [
        "products.title: missing required column (3 rows)",
        "events.event_type: unknown value 'foo' (1 row)",
        "orders.ts: timestamp without time zone (2 rows)",
        "orders.revenue: value out of range, must be >= 0 (1 row)",
        "messages.propensity: value out of range, must be in (0, 1] (1 row)",
    ]


def test_several_problems_in_one_column_are_all_reported(tables: Tables) -> None:
    _set("orders", "revenue", [0], "n/a")(tables)
    _set("orders", "revenue", [1], -3.0)(tables)
    assert [str(p) for p in validate_tables(tables)] == [
        "orders.revenue: wrong type, expected float, got 'n/a' (1 row)",
        "orders.revenue: value out of range, must be >= 0 (1 row)",
    ]


def test_unknown_values_are_counted_per_value_and_capped(tables: Tables) -> None:
    n = MAX_UNKNOWN_VALUES + 3
    events = pd.concat([tables["events"].iloc[[0]]] * n, ignore_index=True)
    events["event_id"] = [f"x{i}" for i in range(n)]
    events["event_type"] = ["bogus"] * 2 + [f"kind{i}" for i in range(n - 2)]
    tables["events"] = events
    lines = [str(p) for p in validate_tables(tables)]
    assert lines[0] == "events.event_type: unknown value 'bogus' (2 rows)"
    assert len(lines) == MAX_UNKNOWN_VALUES + 1
    assert lines[-1].startswith("events.event_type: 2 more unknown values (allowed: page_view,")
    assert lines[-1].endswith("(2 rows)")


def test_aware_timestamps_in_other_zones_are_accepted(tables: Tables) -> None:
    tables["events"]["ts"] = tables["events"]["ts"].dt.tz_convert("Europe/Berlin")
    mixed = tables["orders"]["ts"].astype(object)
    mixed.iloc[0] = mixed.iloc[0].tz_convert("America/New_York")
    tables["orders"]["ts"] = mixed  # an object column of differently zoned instants
    assert validate_tables(tables) == []


def test_foreign_keys_into_absent_tables_are_skipped(tables: Tables) -> None:
    _set("events", "product_id", [1], "p99")(tables)
    _set("order_items", "product_id", [0], "p99")(tables)
    del tables["products"], tables["product_changes"]
    assert validate_tables(tables) == []


def test_null_optional_references_are_fine(tables: Tables) -> None:
    assert tables["events"]["product_id"].isna().any()
    assert tables["messages"]["converted_order_id"].isna().any()
    _set("events", "product_id", [0, 1, 2], None)(tables)
    assert validate_tables(tables) == []


def test_empty_tables_are_fine(tables: Tables) -> None:
    empty = {name: df.iloc[:0] for name, df in tables.items()}
    assert validate_tables(empty) == []
    # As a header-only CSV reads: every column text, no rows.
    assert validate_tables({n: df.astype(object) for n, df in empty.items()}) == []


def test_unknown_table_and_non_frame_are_problems(tables: Tables) -> None:
    problems = validate_tables({"customers": tables["customers"], "visits": tables["events"], "orders": [1]})  # type: ignore[dict-item]
    assert [str(p) for p in problems] == [
        "visits: unknown table, not in the contract",
        "orders: not a DataFrame but list",
    ]


def test_validation_does_not_mutate_its_input(tables: Tables) -> None:
    # A dirty input exercises every conversion: naive and zoned timestamps,
    # text in number columns, a non-default index, object booleans.
    tables["events"]["ts"] = tables["events"]["ts"].dt.tz_localize(None)
    tables["orders"]["ts"] = tables["orders"]["ts"].dt.tz_convert("Asia/Tokyo")
    _set("orders", "revenue", [0], "abc")(tables)
    _set("customers", "opt_in_email", [0], "yes")(tables)
    tables["products"].index = [10, 20, 30]
    before = {name: df.copy(deep=True) for name, df in tables.items()}
    assert validate_tables(tables)
    for name, df in tables.items():
        pd.testing.assert_frame_equal(df, before[name])


def test_problem_str_and_format() -> None:
    problems = [
        Problem("events", "event_type", "unknown value 'foo'", 12),
        Problem("orders", "revenue", "value out of range, must be >= 0", 1),
        Problem("customers", None, "missing required table", 0),
    ]
    assert format_problems(problems) == (
        "events.event_type: unknown value 'foo' (12 rows)\n"
        "orders.revenue: value out of range, must be >= 0 (1 row)\n"
        "customers: missing required table"
    )
    assert format_problems([]) == "no problems found"


def test_check_tables_raises_with_every_problem(tables: Tables) -> None:
    _set("events", "event_type", [0], "foo")(tables)
    _set("orders", "revenue", [0], -1.0)(tables)
    with pytest.raises(ContractError) as info:
        check_tables(tables)
    assert len(info.value.problems) == 2
    assert str(info.value).splitlines() == [
        "data does not meet the contract (2 problems):",
        "  events.event_type: unknown value 'foo' (1 row)",
        "  orders.revenue: value out of range, must be >= 0 (1 row)",
    ]
    assert isinstance(info.value, ValueError)


# --------------------------------------------------------------------------- directories


def _write_csv_dir(tables: Tables, d: Path) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    for name, df in tables.items():
        df.to_csv(d / f"{name}.csv", index=False)
    return d


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_clean_dir_has_no_problems(make_shop: Shop, tmp_path: Path, fmt: str) -> None:
    if fmt == "parquet":
        write_tables(make_shop(), tmp_path / "shop")
    else:
        _write_csv_dir(make_shop(), tmp_path / "shop")
    assert validate_dir(tmp_path / "shop") == []
    check_dir(tmp_path / "shop")  # does not raise


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_dir_problems_are_found_in_both_formats(make_shop: Shop, tmp_path: Path, fmt: str) -> None:
    tables = make_shop()
    _set("events", "event_type", [0], "foo")(tables)
    _set("orders", "customer_id", [1], "c99")(tables)
    _set("order_items", "quantity", [0], 0)(tables)
    tables["order_status"]["ts"] = tables["order_status"]["ts"].dt.tz_localize(None)
    if fmt == "parquet":
        write_tables(tables, tmp_path / "shop")
    else:
        _write_csv_dir(tables, tmp_path / "shop")
    assert [str(p) for p in validate_dir(tmp_path / "shop")] == [
        "events.event_type: unknown value 'foo' (1 row)",
        "orders.customer_id: references an unknown customers.customer_id, e.g. 'c99' (1 row)",
        "order_items.quantity: value out of range, must be >= 1 (1 row)",
        "order_status.ts: timestamp without time zone (3 rows)",
    ]


def test_csv_type_problems_name_the_rows(make_shop: Shop, tmp_path: Path) -> None:
    d = _write_csv_dir(make_shop(), tmp_path / "shop")
    orders = pd.read_csv(d / "orders.csv", dtype=str)
    orders.loc[0, "revenue"] = "12,50"  # a decimal comma
    orders.loc[1, "ts"] = "1709287800"  # epoch seconds
    orders.to_csv(d / "orders.csv", index=False)
    assert [str(p) for p in validate_dir(d)] == [
        "orders.ts: wrong type, expected timestamp, got '1709287800' (1 row)",
        "orders.revenue: wrong type, expected float, got '12,50' (1 row)",
    ]


def test_csv_with_mixed_offsets_is_accepted(make_shop: Shop, tmp_path: Path) -> None:
    d = _write_csv_dir(make_shop(), tmp_path / "shop")
    orders = pd.read_csv(d / "orders.csv", dtype=str)
    orders["ts"] = ["2024-03-01T11:10:00+01:00", "2024-03-02T08:05:00Z"]
    orders.to_csv(d / "orders.csv", index=False)
    assert validate_dir(d) == []


def test_parquet_folder_of_parts_is_read(make_shop: Shop, tmp_path: Path) -> None:
    tables = make_shop()
    # One Arrow schema for all parts: an all-null part would otherwise get a
    # null-typed column that pyarrow cannot unify with the other parts.
    events = pa.Table.from_pandas(tables.pop("events"), preserve_index=False)
    write_tables(tables, tmp_path / "shop")
    parts = tmp_path / "shop" / "events"
    write_tables({"part-0": events.slice(0, 3), "part-1": events.slice(3)}, parts)
    assert validate_dir(tmp_path / "shop") == []
    pq.write_table(events.slice(0, 1), parts / "part-2.parquet")  # a repeated event
    assert [str(p) for p in validate_dir(tmp_path / "shop")] == ["events.event_id: duplicate key (2 rows)"]


def test_dir_level_problems(make_shop: Shop, tmp_path: Path) -> None:
    d = tmp_path / "shop"
    tables = make_shop()
    del tables["customers"]
    write_tables(tables, d)
    (d / "events.parquet").write_bytes(b"not parquet at all")
    (d / "notes.txt").write_text("hello")
    _write_csv_dir({"orders": make_shop()["orders"]}, d)  # shadowed by orders.parquet
    (d / ".DS_Store").write_text("")  # hidden files are ignored
    problems = validate_dir(d)
    lines = [str(p) for p in problems]
    assert lines[:3] == [
        "customers: missing required table (looked for customers.parquet, customers/ and customers.csv)",
        "notes.txt: unknown file, not a contract table",
        "orders: ignored orders.csv: the table is read from orders.parquet",
    ]
    assert lines[3].startswith("events: unreadable file events.parquet: ")
    # Customers are absent, so no customer references are checked; the rest is clean.
    assert len(lines) == 4
    assert all(p.rows == 0 for p in problems)


def test_folder_without_parquet_parts_is_a_problem(make_shop: Shop, tmp_path: Path) -> None:
    tables = make_shop()
    events = tables.pop("events")
    write_tables(tables, tmp_path / "shop")
    _write_csv_dir({"part-0": events}, tmp_path / "shop" / "events")
    assert [str(p) for p in validate_dir(tmp_path / "shop")] == [
        "events: cannot read events (expected events.parquet, a folder of .parquet parts or events.csv)"
    ]


def test_missing_dir_is_a_problem(tmp_path: Path) -> None:
    problems = validate_dir(tmp_path / "nope")
    assert len(problems) == 1 and "does not exist" in problems[0].problem


def test_check_dir_raises_contract_error(make_shop: Shop, tmp_path: Path) -> None:
    tables = make_shop()
    _set("messages", "propensity", [0], np.nan)(tables)
    write_tables(tables, tmp_path / "shop")
    with pytest.raises(ContractError, match=r"messages\.propensity: null in a non-nullable column \(1 row\)") as info:
        check_dir(tmp_path / "shop")
    assert info.value.problems == (Problem("messages", "propensity", "null in a non-nullable column", 1),)


@pytest.mark.parametrize("module", [schemas, validate], ids=lambda m: m.__name__)
def test_docstring_examples_run(module: ModuleType) -> None:
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0
