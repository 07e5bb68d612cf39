"""DuckDB and Spark write identical feature tables for the default demo shop (issue: one engine for features)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from cadence.features.customer import feature_columns
from cadence.synthetic import ShopConfig, generate_shop
from cadence.workflows.features import build_features


@pytest.fixture(scope="module")
def demo_shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_shop(ShopConfig(), tmp_path_factory.mktemp("demo") / "shop")  # the demo's default shop


def test_duckdb_and_spark_write_identical_tables(demo_shop: Path, tmp_path: Path) -> None:
    runs = {e: build_features(demo_shop, "2025-10-01", tmp_path / e, engine=e, validate=(e == "duckdb"))
            for e in ("duckdb", "spark")}
    assert runs["duckdb"].rows == runs["spark"].rows
    assert runs["duckdb"].rows["trigger_candidates"] > 100_000
    for name in ("customer_features", "trigger_candidates"):
        a = pd.read_parquet(tmp_path / "duckdb" / f"{name}.parquet")
        b = pd.read_parquet(tmp_path / "spark" / f"{name}.parquet")
        # The writer rounds floats to 6 decimals, so a last-bit difference before rounding (e.g. in
        # days_since_order, seconds / 86400 on each engine) can move the 6th decimal by one unit.
        pd.testing.assert_frame_equal(a, b, rtol=1e-6, atol=1.01e-6, obj=name)
        schemas = [pq.read_schema(tmp_path / e / f"{name}.parquet").remove_metadata() for e in ("duckdb", "spark")]
        assert schemas[0] == schemas[1], name
    # The counts are the integers feature_columns promises (DuckDB's 128-bit sums once came out as doubles).
    types = pq.read_schema(tmp_path / "duckdb" / "customer_features.parquet")
    assert {c: str(types.field(c).type) for c in types.names if feature_columns()[c] == "int64"} == {
        c: "int64" for c, t in feature_columns().items() if t == "int64"}


def test_customer_buckets_give_the_same_files_as_one_pass(demo_shop: Path, tmp_path: Path) -> None:
    runs = {n: build_features(demo_shop, "2025-10-01", tmp_path / str(n), validate=False, buckets=n) for n in (1, 3)}
    assert (runs[1].buckets, runs[3].buckets) == (1, 3)
    for name in ("customer_features", "trigger_candidates"):
        one, three = (pq.read_table(tmp_path / str(n) / f"{name}.parquet") for n in (1, 3))
        assert one.schema.remove_metadata() == three.schema.remove_metadata(), name
        assert one.equals(three), name
