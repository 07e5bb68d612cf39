"""DuckDB and Spark write identical feature tables for the default demo shop (issue: one engine for features)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from cadence.data.synthetic import ShopConfig, generate_shop
from cadence.features.pipeline import build_features


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
        pd.testing.assert_frame_equal(a, b, check_dtype=False, rtol=1e-6, obj=name)
