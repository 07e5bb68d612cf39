"""The contract gate's pieces on hand-built tables: plausibility, --as-of, separators, conforming."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cadence.data.gate import check_as_of, open_gate, parse_timestamp
from cadence.data.validate import ContractError, inspect_dir, plausibility_problems

NOW = pd.Timestamp("2026-01-01", tz="UTC")


def _utc(*days: str) -> pd.Series:
    return pd.Series(pd.to_datetime(list(days), utc=True))


@pytest.mark.parametrize(("tables", "expected"), [
    ({"orders": pd.DataFrame({"ts": _utc("2200-01-01", "2025-01-01"), "revenue": [1.0, np.inf]})},
     ["orders.ts: timestamp in the future (1 row)", "orders.revenue: value not finite (1 row)"]),
    ({"messages": pd.DataFrame({"triggered_at": _utc("1900-01-01"), "propensity": [1e-12]})},
     ["messages.triggered_at: timestamp before 1970-01-02, implausible (1 row)",
      "messages.propensity: propensity below 1e-06, too small to weight by (1 row)"]),
    ({"customers": pd.DataFrame({"birth_date": [pd.Timestamp("2090-01-01").date()], "timezone": ["Mars/Base"]})},
     ["customers.birth_date: date in the future (1 row)", "customers.timezone: unknown IANA time zone (1 row)"]),
    ({"messages": pd.DataFrame({"sent_at": _utc("2025-01-02"), "opened_at": _utc("2025-01-01"),
                                "triggered_at": _utc("2025-01-01")})},
     ["messages.opened_at: before sent_at (1 row)"]),
    ({"messages": pd.DataFrame({"customer_id": ["c1"], "converted_order_id": ["o1"]}),
      "orders": pd.DataFrame({"order_id": ["o1"], "customer_id": ["c2"]})},
     ["messages.converted_order_id: an order of another customer (1 row)"]),
])
def test_plausibility(tables: dict[str, pd.DataFrame], expected: list[str]) -> None:
    problems, _ = plausibility_problems(tables, now=NOW)
    assert [str(p) for p in problems] == expected
    assert not any("c1" in str(p) or "c2" in str(p) for p in problems)  # no ids in messages


def test_as_of_refused_or_warned() -> None:
    span = (pd.Timestamp("2025-01-01", tz="UTC"), pd.Timestamp("2025-12-31", tz="UTC"))
    assert check_as_of(pd.Timestamp("2025-06-01", tz="UTC"), span) == ([], [])
    refused, _ = check_as_of(pd.Timestamp("2024-06-01", tz="UTC"), span)
    assert "before the data starts" in str(refused[0])
    refused, _ = check_as_of(pd.Timestamp("2205-01-01", tz="UTC"), span)
    assert "more than a year after" in str(refused[0])
    refused, warned = check_as_of(pd.Timestamp("2026-02-01", tz="UTC"), span)
    assert not refused and "after the data ends" in str(warned[0])


@pytest.mark.parametrize("text", ["garbage", "", "2025-13-45"])
def test_parse_timestamp_one_line(text: str) -> None:
    with pytest.raises(ValueError, match="is not a timestamp") as err:
        parse_timestamp(text, "--since")
    assert "\n" not in str(err.value)


def _customers(tmp_path: Path, sep: str) -> Path:
    pd.DataFrame({"customer_id": ["c1"], "signup_at": ["2024-01-01T00:00:00Z"]}).to_csv(
        tmp_path / "customers.csv", index=False, sep=sep)
    return tmp_path


@pytest.mark.parametrize(("sep", "called"), [(";", "semicolon"), ("\t", "tab"), ("|", "pipe")])
def test_other_separators_get_a_hint(tmp_path: Path, sep: str, called: str) -> None:
    problems = [str(p) for p in inspect_dir(_customers(tmp_path, sep)).problems]
    assert len(problems) == 1 and f"customers.csv is {called}-separated" in problems[0], problems
    assert "missing required column" not in problems[0]


def test_comma_csv_is_read_and_conformed(tmp_path: Path) -> None:
    with open_gate(_customers(tmp_path, ",")) as gate:
        assert gate.conformed_copy  # a CSV is never what the engines read
        frame = pd.read_parquet(gate.data_dir / "customers.parquet")
        assert str(frame["signup_at"].dtype).endswith("UTC]")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["customers.csv"]  # nothing written beside it


def test_needs_refuses_missing_and_empty(tmp_path: Path) -> None:
    _customers(tmp_path, ",")
    with pytest.raises(ContractError, match="messages: missing table this command needs"):
        with open_gate(tmp_path, needs=("messages",)):
            pass
