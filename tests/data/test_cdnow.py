"""The CDNOW adapter and the committed CDNOW data directories."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from cadence.contract.tables import TABLES
from cadence.data.cdnow import build, cdnow_tables, transactions_to_tables
from cadence.data.io import read_tables

COHORTS = ("master", "sample")
EXPECTED = {
    # customers, transaction lines (one order each)
    "master": (23_570, 69_659),
    "sample": (2_357, 6_919),
}


@pytest.fixture(scope="module")
def cdnow_root(pytestconfig: pytest.Config) -> Path:
    return pytestconfig.rootpath / "data" / "external" / "cdnow"


@pytest.fixture(scope="module")
def fresh(cdnow_root: Path) -> dict[str, dict[str, pd.DataFrame]]:
    return {c: cdnow_tables(cdnow_root / "raw", c) for c in COHORTS}  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def committed(cdnow_root: Path) -> dict[str, dict[str, pd.DataFrame]]:
    return {c: read_tables(cdnow_root / c) for c in COHORTS}


def _kind_ok(kind: str, s: pd.Series) -> bool:
    if kind == "str":
        return s.dtype == object and bool(s.map(lambda v: isinstance(v, str)).all())
    if kind == "int":
        return s.dtype == "int64"
    if kind == "float":
        return s.dtype == "float64"
    if kind == "timestamp":
        return isinstance(s.dtype, pd.DatetimeTZDtype) and str(s.dtype) == "datetime64[ns, UTC]"
    raise AssertionError(f"CDNOW tables should not hold {kind} columns")


@pytest.mark.parametrize("cohort", COHORTS)
def test_counts(fresh: dict[str, dict[str, pd.DataFrame]], cohort: str) -> None:
    tables = fresh[cohort]
    n_customers, n_lines = EXPECTED[cohort]
    assert len(tables["customers"]) == n_customers
    assert len(tables["orders"]) == n_lines
    assert len(tables["order_items"]) == n_lines
    assert len(tables["products"]) == 1


@pytest.mark.parametrize("cohort", COHORTS)
def test_columns_and_dtypes_follow_the_contract(
    fresh: dict[str, dict[str, pd.DataFrame]], cohort: str
) -> None:
    for name, df in fresh[cohort].items():
        spec = TABLES[name]
        assert set(spec.required_columns) <= set(df.columns) <= set(spec.column_names), name
        for col in df.columns:
            assert _kind_ok(spec.column(col).kind, df[col]), (name, col, df[col].dtype)
            assert df[col].notna().all(), (name, col)


@pytest.mark.parametrize("cohort", COHORTS)
def test_keys_unique_and_references_resolve(
    fresh: dict[str, dict[str, pd.DataFrame]], cohort: str
) -> None:
    t = fresh[cohort]
    for name, df in t.items():
        assert not df.duplicated(list(TABLES[name].key)).any(), name
    assert t["orders"]["customer_id"].isin(t["customers"]["customer_id"]).all()
    assert t["customers"]["customer_id"].isin(t["orders"]["customer_id"]).all()
    assert t["order_items"]["order_id"].isin(t["orders"]["order_id"]).all()
    assert t["order_items"]["product_id"].isin(t["products"]["product_id"]).all()
    assert t["customers"]["customer_id"].str.fullmatch(r"\d{5}").all()


@pytest.mark.parametrize("cohort", COHORTS)
def test_values(fresh: dict[str, dict[str, pd.DataFrame]], cohort: str) -> None:
    t = fresh[cohort]
    orders, items = t["orders"], t["order_items"]
    first = orders.groupby("customer_id")["ts"].min()
    signup = t["customers"].set_index("customer_id")["signup_at"]
    pd.testing.assert_series_equal(signup, first.reindex(signup.index), check_names=False)
    assert (orders["ts"] == orders["ts"].dt.normalize()).all()
    assert orders["ts"].min() == pd.Timestamp("1997-01-01", tz="UTC")
    assert orders["ts"].max() == pd.Timestamp("1998-06-30", tz="UTC")
    assert signup.max() < pd.Timestamp("1997-04-01", tz="UTC")  # a Q1 1997 cohort
    merged = items.merge(orders, on="order_id")
    assert (merged["quantity"] >= 1).all()
    pd.testing.assert_series_equal(
        merged["price"] * merged["quantity"], merged["revenue"], check_names=False
    )
    assert t["products"]["price"].iloc[0] == items["price"].median()


def test_sample_lines_are_master_lines_with_the_same_ids(
    fresh: dict[str, dict[str, pd.DataFrame]],
) -> None:
    master = fresh["master"]["orders"].set_index("order_id")
    sample = fresh["sample"]["orders"].set_index("order_id")
    pd.testing.assert_frame_equal(master.loc[sample.index], sample)


def test_known_first_lines(fresh: dict[str, dict[str, pd.DataFrame]]) -> None:
    orders = fresh["master"]["orders"]
    assert orders.iloc[:3].to_dict("list") == {
        "order_id": ["00001-001", "00002-001", "00002-002"],
        "customer_id": ["00001", "00002", "00002"],
        "ts": [pd.Timestamp("1997-01-01", tz="UTC"), *[pd.Timestamp("1997-01-12", tz="UTC")] * 2],
        "revenue": [11.77, 12.00, 77.00],
    }


@pytest.mark.parametrize("cohort", COHORTS)
def test_committed_parquet_equals_a_fresh_build(
    fresh: dict[str, dict[str, pd.DataFrame]],
    committed: dict[str, dict[str, pd.DataFrame]],
    cohort: str,
) -> None:
    assert set(committed[cohort]) == set(fresh[cohort])
    for name, df in fresh[cohort].items():
        pd.testing.assert_frame_equal(committed[cohort][name], df, check_exact=True, obj=name)


def test_build_writes_both_cohorts(cdnow_root: Path, tmp_path: Path) -> None:
    written = build(cdnow_root / "raw", tmp_path)
    assert set(written) == set(COHORTS)
    for cohort, folder in written.items():
        assert sorted(p.name for p in folder.iterdir()) == [
            "customers.parquet",
            "order_items.parquet",
            "orders.parquet",
            "products.parquet",
        ]
        # Byte equality holds for the locked pyarrow/pandas; a writer upgrade that
        # changes bytes fails here: rerun `python -m cadence.data.cdnow` and commit.
        for p in folder.iterdir():
            assert p.read_bytes() == (cdnow_root / cohort / p.name).read_bytes(), p.name


@pytest.mark.parametrize(
    ("cds", "value", "message"),
    [
        ("0", "12.00", "fewer than one CD"),
        ("1", "-1.00", "negative value"),
    ],
)
def test_bad_lines_are_refused(cds: str, value: str, message: str) -> None:
    raw = pd.DataFrame(
        {"customer_id": ["00001"], "date": ["19970101"], "cds": [cds], "value": [value]}
    )
    with pytest.raises(ValueError, match=message):
        transactions_to_tables(raw)


def test_unknown_cohort_is_refused(cdnow_root: Path) -> None:
    with pytest.raises(ValueError, match="cohort must be one of"):
        cdnow_tables(cdnow_root / "raw", "all")  # type: ignore[arg-type]
