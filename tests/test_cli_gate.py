"""Every command that takes a data directory stops at the contract gate (issue 25).

One tiny shop is generated once; each row of :data:`ROWS` mutates a copy of
it with ONE violation. Every command then runs in-process through typer's
``CliRunner`` on that copy and must exit non-zero with a one-line message
naming table, column and problem, print no traceback, write nothing (the shop
folder and the working folder are compared before and after) and leave the
MLflow store untouched (a per-test ``sqlite:///`` store must not gain a run or
a registered model). Rows whose data is valid but unusual are accepted with a
warning by ``validate`` and by the gate of every command.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cadence.cli import app
from cadence.data.gate import open_gate
from cadence.data.validate import ContractError
from cadence.synthetic import ShopConfig
from cadence.workflows.generate import write_shop

AS_OF = "2025-01-21"  # inside the base shop (2025-01-01 + 30 days)
COMMANDS = ("validate", "features", "fit", "evaluate", "simulate", "export", "tune", "report", "promote")
#: Tables each command needs non-empty (as cadence.cli passes to the gate).
NEEDS = {"validate": (), "features": ("customers",), "fit": ("orders",), "report": (),
         **{c: ("customers", "messages") for c in ("evaluate", "simulate", "export", "tune", "promote")}}


def _argv(command: str, shop: Path, work: Path, uri: str) -> list[str]:
    return {
        "validate": ["validate", str(shop)],
        "features": ["features", str(shop), "--as-of", AS_OF, "--out", str(work / "feat"), "--quiet"],
        "fit": ["fit", "churn", str(shop), "--as-of", AS_OF, "--tracking-uri", uri],
        "evaluate": ["evaluate", str(shop), "--policy", "rules", "--refits", "0"],
        "simulate": ["simulate", str(shop), "--policy", "rules"],
        "export": ["export", str(shop), "--policy", "rules", "--model-name", "gate-test", "--tracking-uri", uri],
        "tune": ["tune", str(shop), "--family", "rules", "--trials", "1"],
        "report": ["report", "summary", "-p", "data_dir", str(shop), "--out-dir", str(work / "reports")],
        "promote": ["promote", "gate-test", "--data", str(shop), "--tracking-uri", uri],
    }[command]


# --------------------------------------------------------------------------- mutations


def _read(d: Path, t: str) -> pd.DataFrame:
    return pd.read_parquet(d / f"{t}.parquet")


def _write(d: Path, t: str, df: pd.DataFrame) -> None:
    df.to_parquet(d / f"{t}.parquet", index=False)


def edit(table: str, fn: Callable[[pd.DataFrame], pd.DataFrame | None]) -> Callable[[Path], None]:
    """A mutation that rewrites one table through ``fn`` (which may edit in place and return None)."""
    def mutate(d: Path) -> None:
        df = _read(d, table)
        out = fn(df)
        _write(d, table, df if out is None else out)
    return mutate


def setcol(table: str, column: str, value: object, rows: int = 1, where: str | None = None) -> Callable[[Path], None]:
    """Set ``column`` to ``value`` in the first ``rows`` rows (of those where ``where`` is not null)."""
    def fn(df: pd.DataFrame) -> pd.DataFrame:
        idx = df.index[df[where].notna()] if where else df.index
        col = df[column].astype(object)
        col.loc[idx[:rows]] = value
        df[column] = col
        return df
    return edit(table, fn)


def setcol_typed(table: str, column: str, value: object, rows: int = 1,
                 where: str | None = None) -> Callable[[Path], None]:
    """Like :func:`setcol` but keeps the column's dtype (timestamps, floats)."""
    def fn(df: pd.DataFrame) -> None:
        idx = df.index[df[where].notna()] if where else df.index
        df.loc[idx[:rows], column] = value
    return edit(table, fn)


def settext(table: str, column: str, value: str) -> Callable[[Path], None]:
    """Store ``column`` as text (Parquet cannot mix types in a column) with ``value`` in the first row."""
    def fn(df: pd.DataFrame) -> None:
        text = df[column].map(lambda v: None if pd.isna(v) else str(v), na_action="ignore").astype(object)
        text.iloc[0] = value
        df[column] = text
    return edit(table, fn)


def retype(table: str, column: str, convert: Callable[[pd.Series], pd.Series]) -> Callable[[Path], None]:
    def fn(df: pd.DataFrame) -> None:
        df[column] = convert(df[column])
    return edit(table, fn)


def drop_col(table: str, column: str) -> Callable[[Path], None]:
    return edit(table, lambda df: df.drop(columns=[column]))


def dup_row(table: str) -> Callable[[Path], None]:
    return edit(table, lambda df: pd.concat([df, df.iloc[:1]], ignore_index=True))


def empty(table: str, *, pandas_untyped: bool = False) -> Callable[[Path], None]:
    def mutate(d: Path) -> None:
        df = _read(d, table)
        _write(d, table, pd.DataFrame(columns=list(df.columns)) if pandas_untyped else df.iloc[:0])
    return mutate


def no_orders(d: Path) -> None:
    """An empty orders table, and nothing that points into it (else every command refuses the links)."""
    for table in ("orders", "order_items", "order_status"):
        empty(table)(d)
    setcol("messages", "converted_order_id", None, rows=10**9)(d)


def as_csv(table: str, sep: str = ",", keep_parquet: bool = False) -> Callable[[Path], None]:
    def mutate(d: Path) -> None:
        _read(d, table).to_csv(d / f"{table}.csv", index=False, sep=sep)
        if not keep_parquet:
            (d / f"{table}.parquet").unlink()
    return mutate


def touch(name: str, content: bytes = b"x") -> Callable[[Path], None]:
    return lambda d: (d / name).write_bytes(content)


def remove(table: str) -> Callable[[Path], None]:
    return lambda d: (d / f"{table}.parquet").unlink()


def other_customers_order(d: Path) -> None:
    m, o = _read(d, "messages"), _read(d, "orders")
    i = m.index[m["customer_id"].ne(o["customer_id"].iloc[0])][0]
    m.loc[i, "converted_order_id"] = o["order_id"].iloc[0]
    _write(d, "messages", m)


def _ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def _hour_earlier(col: str) -> Callable[[pd.DataFrame], None]:
    def fn(df: pd.DataFrame) -> None:
        i = df.index[df[col].notna()][:1]
        df.loc[i, col] = df.loc[i, "sent_at"] - pd.Timedelta(hours=1)
    return fn


def before_signup(table: str) -> Callable[[Path], None]:
    """The first row of ``table`` dated a day before its customer signed up."""
    def mutate(d: Path) -> None:
        df, customers = _read(d, table), _read(d, "customers")
        signup = customers.set_index("customer_id")["signup_at"]
        df.loc[df.index[0], "ts"] = signup[df["customer_id"].iloc[0]] - pd.Timedelta(days=1)
        _write(d, table, df)
    return mutate


def _sent_before_trigger(df: pd.DataFrame) -> None:
    i = df.index[df["sent_at"].notna()][:1]
    df.loc[i, "sent_at"] = df.loc[i, "triggered_at"] - pd.Timedelta(hours=1)


@dataclass(frozen=True)
class Row:
    """One single-violation shop: what to change and the line every command must print.

    ``expect`` is a fragment of the one-line message (``table.column: problem``).
    ``warn`` marks valid-but-unusual data: accepted, with ``expect`` as a warning.
    ``conformed`` marks data stored unlike the contract: the engines read a conformed copy.
    ``refused_by`` narrows which commands refuse (the others accept with a warning).
    """

    id: str
    mutate: Callable[[Path], None]
    expect: str
    warn: bool = False
    refused_by: tuple[str, ...] = field(default=COMMANDS)
    conformed: bool = False


ROWS: tuple[Row, ...] = (
    # the directory
    Row("no-customers", remove("customers"), "customers: missing required table"),
    Row("csv-and-parquet", as_csv("orders", keep_parquet=True), "orders: ignored orders.csv"),
    Row("stray-file", touch("notes.txt"), "notes.txt: unknown file"),
    Row("semicolon-csv", as_csv("customers", sep=";"), "customers.csv is semicolon-separated"),
    Row("tab-csv", as_csv("orders", sep="\t"), "orders.csv is tab-separated"),
    Row("corrupt-parquet", touch("orders.parquet", b"not parquet"), "orders: unreadable file orders.parquet"),
    # columns
    Row("no-revenue", drop_col("orders", "revenue"), "orders.revenue: missing required column"),
    Row("no-propensity", drop_col("messages", "propensity"), "messages.propensity: missing required column"),
    Row("no-signup", drop_col("customers", "signup_at"), "customers.signup_at: missing required column"),
    Row("no-event-ts", drop_col("events", "ts"), "events.ts: missing required column"),
    # keys
    Row("dup-order", dup_row("orders"), "orders.order_id: duplicate key"),
    Row("dup-message", dup_row("messages"), "messages.message_id: duplicate key"),
    Row("dup-customer", dup_row("customers"), "customers.customer_id: duplicate key"),
    Row("dup-event", dup_row("events"), "events.event_id: duplicate key"),
    Row("dup-product", dup_row("products"), "products.product_id: duplicate key"),
    Row("dup-order-item", dup_row("order_items"), "order_items: duplicate key (order_id, product_id)"),
    # nulls
    Row("null-order-customer", setcol("orders", "customer_id", None), "orders.customer_id: null in a non-nullable"),
    Row("null-message-id", setcol("messages", "message_id", None), "messages.message_id: null in a non-nullable"),
    Row("null-event-customer", setcol("events", "customer_id", None), "events.customer_id: null in a non-nullable"),
    Row("null-order-ts", setcol_typed("orders", "ts", pd.NaT), "orders.ts: null in a non-nullable"),
    Row("null-propensity", setcol_typed("messages", "propensity", np.nan), "messages.propensity: null"),
    # types
    Row("int-order-ids", retype("orders", "order_id", lambda s: pd.Series(range(len(s)))),
        "orders.order_id: wrong type, expected text"),
    Row("int-customer-ids", retype("customers", "customer_id", lambda s: pd.Series(range(len(s)))),
        "customers.customer_id: wrong type, expected text"),
    Row("naive-order-ts", retype("orders", "ts", lambda s: s.dt.tz_localize(None)),
        "orders.ts: timestamp without time zone"),
    Row("naive-event-ts", retype("events", "ts", lambda s: s.dt.tz_localize(None)),
        "events.ts: timestamp without time zone"),
    Row("naive-triggered", retype("messages", "triggered_at", lambda s: s.dt.tz_localize(None)),
        "messages.triggered_at: timestamp without time zone"),
    Row("text-revenue", settext("orders", "revenue", "lots"), "orders.revenue: wrong type, expected float"),
    Row("text-propensity", settext("messages", "propensity", "high"), "messages.propensity: wrong type"),
    Row("epoch-order-ts", retype("orders", "ts", lambda s: s.astype("int64")), "orders.ts: wrong type, expected timestamp"),
    Row("bad-bool", settext("customers", "opt_in_email", "maybe"), "customers.opt_in_email: wrong type, expected bool"),
    Row("fractional-quantity", retype("order_items", "quantity", lambda s: s.astype(float).where(s.index > 0, 1.5)), "order_items.quantity: wrong type, expected int"),
    # ranges and vocabularies
    Row("negative-revenue", setcol_typed("orders", "revenue", -5.0), "orders.revenue: value out of range"),
    Row("propensity-above-1", setcol_typed("messages", "propensity", 1.5), "messages.propensity: value out of range"),
    Row("propensity-zero", setcol_typed("messages", "propensity", 0.0), "messages.propensity: value out of range"),
    Row("zero-quantity", setcol_typed("order_items", "quantity", 0), "order_items.quantity: value out of range"),
    Row("negative-price", setcol_typed("products", "price", -1.0), "products.price: value out of range"),
    Row("unknown-event-type", setcol("events", "event_type", "teleport"), "events.event_type: unknown value"),
    Row("unknown-stage", setcol("messages", "stage", "moonrise"), "messages.stage: unknown value"),
    Row("unknown-channel", setcol("messages", "channel", "pigeon", where="channel"), "messages.channel: unknown value"),
    Row("unknown-action", setcol("messages", "action", "maybe"), "messages.action: unknown value"),
    Row("unknown-status", setcol("order_status", "status", "lost"), "order_status.status: unknown value"),
    # links
    Row("orphan-order", setcol("orders", "customer_id", "nobody"), "orders.customer_id: references an unknown"),
    Row("orphan-message", setcol("messages", "customer_id", "nobody"), "messages.customer_id: references an unknown"),
    Row("orphan-item", setcol("order_items", "order_id", "nothing"), "order_items.order_id: references an unknown"),
    Row("orphan-event-product", setcol("events", "product_id", "nothing", where="product_id"),
        "events.product_id: references an unknown"),
    Row("orphan-conversion", setcol("messages", "converted_order_id", "nothing"),
        "messages.converted_order_id: references an unknown"),
    Row("send-without-sent-at", setcol_typed("messages", "sent_at", pd.NaT, where="sent_at"),
        "messages.sent_at: null although action is 'send'"),
    Row("send-without-channel", setcol("messages", "channel", None, where="sent_at"),
        "messages.channel: null although action is 'send'"),
    # plausibility
    Row("orders-in-2200", setcol_typed("orders", "ts", _ts("2200-01-01"), rows=5), "orders.ts: timestamp in the future"),
    Row("events-in-future", setcol_typed("events", "ts", _ts("2100-06-01")), "events.ts: timestamp in the future"),
    Row("triggered-1900", setcol_typed("messages", "triggered_at", _ts("1900-01-01")),
        "messages.triggered_at: timestamp before 1970-01-02"),
    Row("order-1960", setcol_typed("orders", "ts", _ts("1960-01-01")), "orders.ts: timestamp before 1970-01-02"),
    Row("signup-in-future", setcol_typed("customers", "signup_at", _ts("2150-01-01")),
        "customers.signup_at: timestamp in the future"),
    Row("open-before-send", edit("messages", _hour_earlier("opened_at")), "messages.opened_at: before sent_at"),
    Row("click-before-send", edit("messages", _hour_earlier("clicked_at")), "messages.clicked_at: before sent_at"),
    Row("send-before-trigger", edit("messages", _sent_before_trigger), "messages.sent_at: before triggered_at"),
    Row("conversion-other-customer", other_customers_order, "messages.converted_order_id: an order of another customer"),
    Row("born-2090", setcol("customers", "birth_date", pd.Timestamp("2090-05-01").date()),
        "customers.birth_date: date in the future"),
    Row("born-1850", setcol("customers", "birth_date", pd.Timestamp("1850-05-01").date()),
        "customers.birth_date: date before 1900"),
    Row("unknown-timezone", setcol("customers", "timezone", "Mars/Olympus_Mons"), "customers.timezone: unknown IANA"),
    Row("inf-revenue", setcol_typed("orders", "revenue", np.inf), "orders.revenue: value not finite"),
    Row("inf-message-revenue", setcol_typed("messages", "revenue", np.inf, where="converted_order_id"),
        "messages.revenue: value not finite"),
    Row("inf-item-price", setcol_typed("order_items", "price", np.inf), "order_items.price: value not finite"),
    Row("tiny-propensity", setcol_typed("messages", "propensity", 1e-12, rows=5),
        "messages.propensity: propensity below 1e-06"),
    # empty tables: refused by the commands that need rows, a warning elsewhere
    Row("empty-orders", no_orders, "orders: empty table", refused_by=("fit",)),
    Row("empty-messages-pandas", empty("messages", pandas_untyped=True), "messages: empty table",
        refused_by=("evaluate", "simulate", "export", "tune", "promote")),
    # valid but unusual: accepted with a warning, conformed for the engines
    Row("text-booleans", retype("customers", "opt_in_email", lambda s: s.map({True: "true", False: "false"})),
        "customers.opt_in_email: booleans stored as text", warn=True, refused_by=(), conformed=True),
    Row("text-revenue-numbers", retype("orders", "revenue", lambda s: s.map(repr)),
        "orders.revenue: numbers stored as text", warn=True, refused_by=(), conformed=True),
    Row("text-timestamps", retype("orders", "ts", lambda s: s.map(lambda t: t.isoformat())),
        "orders.ts: timestamps stored as text", warn=True, refused_by=(), conformed=True),
    Row("berlin-time", retype("orders", "ts", lambda s: s.dt.tz_convert("Europe/Berlin")),
        "orders.ts: time zone Europe/Berlin, converted to UTC", warn=True, refused_by=(), conformed=True),
    # Possible (a guest checkout, anonymous browsing linked to the account later) but unusual: a warning.
    Row("order-before-signup", before_signup("orders"), "orders.ts: before the customer's signup_at",
        warn=True, refused_by=()),
    Row("event-before-signup", before_signup("events"), "events.ts: before the customer's signup_at",
        warn=True, refused_by=()),
)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def base_shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_shop(ShopConfig(customers=60, days=30, seed=3), tmp_path_factory.mktemp("gate") / "shop")


_SHOPS: dict[str, Path] = {}


@pytest.fixture
def shop_for(base_shop: Path, tmp_path_factory: pytest.TempPathFactory) -> Callable[[Row], Path]:
    """The mutated copy of the base shop for a row, built once per worker."""
    def build(row: Row) -> Path:
        if row.id not in _SHOPS:
            d = tmp_path_factory.mktemp(row.id) / "shop"
            shutil.copytree(base_shop, d, ignore=shutil.ignore_patterns("_truth"))
            row.mutate(d)
            _SHOPS[row.id] = d
        return _SHOPS[row.id]
    return build


def _snapshot(*folders: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns)
            for f in folders for p in sorted(f.rglob("*")) if p.is_file()} | {
        str(p): (0, 0) for f in folders for p in f.rglob("*") if p.is_dir()}


def _mlflow_counts(db: Path) -> tuple[int, int]:
    if not db.exists():
        return 0, 0
    with sqlite3.connect(db) as con:
        names = {r[0] for r in con.execute("select name from sqlite_master where type='table'")}
        runs = con.execute("select count(*) from runs").fetchone()[0] if "runs" in names else 0
        models = con.execute("select count(*) from registered_models").fetchone()[0] if "registered_models" in names else 0
    return runs, models


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)  # tune saves policies and mlflow defaults under the current folder
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    return work


# --------------------------------------------------------------------------- the table


def test_table_is_large_enough() -> None:
    assert len(ROWS) >= 60
    assert len({r.id for r in ROWS}) == len(ROWS)


def test_base_shop_is_clean(base_shop: Path) -> None:
    # Without this the table could pass on a shop that every command refuses anyway.
    result = CliRunner().invoke(app, ["validate", str(base_shop)])
    assert result.exit_code == 0, result.output
    assert "warning" not in result.output


REFUSALS = [(r, c) for r in ROWS for c in r.refused_by]


@pytest.mark.parametrize(("row", "command"), REFUSALS, ids=[f"{r.id}-{c}" for r, c in REFUSALS])
def test_command_refuses_violation(row: Row, command: str, shop_for: Callable[[Row], Path], workdir: Path) -> None:
    shop = shop_for(row)
    db = workdir.parent / "mlflow.db"
    before = _snapshot(shop, workdir)
    result = CliRunner().invoke(app, _argv(command, shop, workdir, f"sqlite:///{db}"))
    out = result.output
    assert result.exit_code == 1, out
    assert row.expect in out, out
    assert "Traceback" not in out and result.exception is None or isinstance(result.exception, SystemExit), out
    problem_lines = [line for line in out.splitlines() if row.expect in line]
    assert len(problem_lines) == 1, out  # one line per problem, not a dump
    assert _snapshot(shop, workdir) == before
    assert _mlflow_counts(db) == (0, 0)


ACCEPTED = [(r, c) for r in ROWS for c in COMMANDS if c not in r.refused_by]


@pytest.mark.parametrize(("row", "command"), ACCEPTED, ids=[f"{r.id}-{c}" for r, c in ACCEPTED])
def test_gate_accepts_unusual_data_with_a_warning(row: Row, command: str, shop_for: Callable[[Row], Path]) -> None:
    # The gate each command runs (same needs as cadence.cli); running the
    # commands to the end on accepted data is the job of their own tests.
    with open_gate(shop_for(row), needs=NEEDS[command]) as gate:
        assert any(row.expect in str(w) for w in gate.warnings), gate.warnings
        if row.conformed:  # stored unlike the contract: the engines read a conformed copy
            assert gate.conformed_copy, gate
        for name, frame in gate.tables.items():
            assert pd.read_parquet(gate.data_dir / f"{name}.parquet").shape[0] == len(frame)


@pytest.mark.parametrize("row", [r for r in ROWS if r.warn], ids=lambda r: r.id)
def test_validate_accepts_unusual_data_with_a_warning(row: Row, shop_for: Callable[[Row], Path]) -> None:
    result = CliRunner().invoke(app, ["validate", str(shop_for(row))])
    assert result.exit_code == 0, result.output
    assert f"warning: {row.expect}" in result.output


def test_text_booleans_reach_the_engines_as_booleans(shop_for: Callable[[Row], Path]) -> None:
    # Issue 25: "false" stored as text was read as true and the replay sent to opted-out customers.
    row = next(r for r in ROWS if r.id == "text-booleans")
    raw = pd.read_parquet(shop_for(row) / "customers.parquet")["opt_in_email"]
    assert raw.eq("false").any()
    with open_gate(shop_for(row)) as gate:
        read = pd.read_parquet(gate.data_dir / "customers.parquet")["opt_in_email"]
        assert pd.api.types.is_bool_dtype(read)
        assert (read == raw.eq("true")).all()
    assert not gate.data_dir.exists()  # the conformed copy is private and removed


# --------------------------------------------------------------------------- as-of, options, names


@pytest.mark.parametrize(("argv", "expect"), [
    (["fit", "churn", "{shop}", "--as-of", "2010-01-01"], "--as-of: 2010-01-01 00:00:00+00:00 is before the data starts"),
    (["fit", "churn", "{shop}", "--as-of", "2205-01-01"], "is more than a year after the data ends"),
    (["features", "{shop}", "--as-of", "2010-01-01", "--out", "{work}/f"], "is before the data starts"),
    (["features", "{shop}", "--as-of", "garbage", "--out", "{work}/f"], "--as-of 'garbage' is not a timestamp"),
    (["features", "{shop}", "--as-of", AS_OF, "--since", "garbage", "--out", "{work}/f"],
     "--since 'garbage' is not a timestamp"),
    (["fit", "churn", "{shop}", "--as-of", "yesterday-ish"], "--as-of 'yesterday-ish' is not a timestamp"),
    (["export", "{shop}", "--policy", "rules", "--model-name", "x' OR name LIKE '%"], "--model-name must be"),
    (["promote", "x' OR '1'='1"], "--model-name must be"),
    (["fit", "churn", "{shop}", "--as-of", AS_OF, "--tracking-uri", "http://127.0.0.1:9"],
     "cannot reach the MLflow tracking server at http://127.0.0.1:9"),
])
def test_options_are_refused_in_one_line(argv: list[str], expect: str, base_shop: Path, workdir: Path) -> None:
    before = _snapshot(base_shop, workdir)
    args = [a.format(shop=base_shop, work=workdir) for a in argv]
    result = CliRunner().invoke(app, args)
    assert result.exit_code != 0, result.output
    assert expect in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert _snapshot(base_shop, workdir) == before
    assert _mlflow_counts(workdir.parent / "mlflow.db") == (0, 0)


def test_as_of_after_the_data_is_a_warning(base_shop: Path) -> None:
    with open_gate(base_shop, as_of=pd.Timestamp("2025-03-01", tz="UTC")) as gate:
        assert [w.problem for w in gate.warnings if w.table == "--as-of"], gate.warnings
    with pytest.raises(ContractError, match="--as-of"):
        with open_gate(base_shop, as_of=pd.Timestamp("2024-01-01", tz="UTC")):
            pass


def test_unexpected_error_is_one_line_unless_debug(base_shop: Path, workdir: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import cadence.workflows.policies as policies

    customer = str(pd.read_parquet(base_shop / "customers.parquet")["customer_id"].iloc[0])

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError(f"engine exploded on row {customer}")  # an exception text quoting the data

    monkeypatch.setattr(policies, "evaluate_named", boom)
    result = CliRunner().invoke(app, ["evaluate", str(base_shop), "--policy", "rules"])
    assert result.exit_code == 1
    line = result.output.strip()
    assert len(line.splitlines()) == 1, line
    # The type and where it was raised (and the cadence frame that called it), never the message.
    assert line.startswith("evaluate: unexpected RuntimeError at tests/test_cli_gate.py:"), line
    assert " in boom (from cadence/cli.py:" in line and " in evaluate)" in line, line
    assert line.endswith("run with --debug for the message and traceback"), line
    assert customer not in line and "exploded" not in line
    assert "Traceback" not in result.output
    debug = CliRunner().invoke(app, ["--debug", "evaluate", str(base_shop), "--policy", "rules"])
    assert isinstance(debug.exception, RuntimeError)


# --------------------------------------------------------------------------- real processes

CADENCE = Path(sys.executable).with_name("cadence")
SUBPROCESS_ROWS = ("dup-order", "semicolon-csv", "orders-in-2200", "inf-revenue", "empty-orders")


@pytest.mark.skipif(not CADENCE.exists(), reason="the cadence script is not installed next to python")
@pytest.mark.parametrize("row_id", SUBPROCESS_ROWS)
def test_real_process_refuses(row_id: str, shop_for: Callable[[Row], Path], workdir: Path) -> None:
    row = next(r for r in ROWS if r.id == row_id)
    shop = shop_for(row)
    db = workdir.parent / "mlflow.db"
    command = "fit" if "fit" in row.refused_by else row.refused_by[0]
    before = _snapshot(shop, workdir)
    proc = subprocess.run([str(CADENCE), *_argv(command, shop, workdir, f"sqlite:///{db}")],
                          capture_output=True, text=True, timeout=300, env=os.environ.copy())
    assert proc.returncode == 1, proc.stderr
    assert row.expect in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert _snapshot(shop, workdir) == before
    assert _mlflow_counts(db) == (0, 0)
