"""Shared fixtures of the feature tests: one synthetic shop and one SparkSession per run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cadence.features.engine import connect
from cadence.synthetic import ShopConfig, generate_shop


@pytest.fixture(scope="session")
def small_shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 500-customer, 120-day synthetic shop (data ends 2025-04-30)."""
    out = tmp_path_factory.mktemp("features") / "shop"
    generate_shop(ShopConfig(customers=500, days=120, seed=3), out)
    return out


@pytest.fixture(scope="session")
def spark_con() -> Any:
    """One local SparkSession for the whole run (startup takes ~10 s)."""
    return connect("spark")


@pytest.fixture()
def duck() -> Any:
    return connect("duckdb")
