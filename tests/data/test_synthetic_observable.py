"""The opt-in world where response types and deal sensitivity depend on what a shop observes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cadence.data.io import OUTPUT_MARKER, read_tables
from cadence.synthetic import ObservableResponse, ShopConfig, generate_shop, load_config, load_truth

BASE = dict(customers=3_000, days=180, seed=13, chunk_size=1_000)


def _digest(folder: Path, name: str) -> str:
    return hashlib.sha256((folder / name).read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def shops(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("observable")
    return {
        "default": generate_shop(ShopConfig(**BASE), root / "default"),
        "observable": generate_shop(ShopConfig(**BASE, observable_response=ObservableResponse()), root / "observable"),
    }


def test_default_config_records_no_new_field() -> None:
    # A default shop's shop.json (its config) is what earlier versions wrote, byte for byte.
    assert "observable_response" not in ShopConfig().to_dict()
    assert "observable_response" in ShopConfig(observable_response=ObservableResponse()).to_dict()


def test_only_response_types_move_and_the_same_seed_gives_the_same_bytes(shops: dict[str, Path],
                                                                         tmp_path: Path) -> None:
    again = generate_shop(ShopConfig(**BASE, observable_response=ObservableResponse()), tmp_path / "again")
    files = sorted(str(p.relative_to(again)) for p in again.rglob("*") if p.is_file() and p.name != OUTPUT_MARKER)
    assert all(_digest(again, f) == _digest(shops["observable"], f) for f in files)
    # People, their browsing and what they see are the default world's; messages' outcomes are not.
    for table in ("customers.parquet", "events.parquet", "products.parquet"):
        assert _digest(shops["observable"], table) == _digest(shops["default"], table), table
    assert _digest(shops["observable"], "messages.parquet") != _digest(shops["default"], "messages.parquet")
    assert load_config(shops["observable"]).observable_response == ObservableResponse()
    assert load_config(shops["default"]).observable_response is None


def _by_segment(shop: Path) -> pd.DataFrame:
    truth = load_truth(shop)["customers"]
    events = read_tables(shop, ["events"])["events"]
    sessions = events.groupby("customer_id")["session_id"].nunique()
    truth = truth.assign(sessions=truth["customer_id"].map(sessions).fillna(0),
                         log_rate=np.log(truth["purchase_rate_per_day"]))
    return truth.groupby("segment")[["log_rate", "open_affinity", "sessions", "deal_sensitivity"]].mean()


def test_response_types_follow_the_observable_traits(shops: dict[str, Path]) -> None:
    obs, default = _by_segment(shops["observable"]), _by_segment(shops["default"])
    print("\nmeans by segment, observable world:\n" + obs.round(3).to_string()
          + "\ndefault world:\n" + default.round(3).to_string())
    # As configured: sure things buy more often, persuadables read and browse more, the annoyed read less.
    assert obs.loc["sure_thing", "log_rate"] > obs.loc["lost_cause", "log_rate"] + 0.5
    assert obs.loc["persuadable", "open_affinity"] > obs.loc["lost_cause", "open_affinity"] + 0.2
    assert obs.loc["annoyed", "open_affinity"] < obs.loc["lost_cause", "open_affinity"] - 0.2
    assert obs.loc["persuadable", "sessions"] > obs.loc["lost_cause", "sessions"]
    # In the default world the types are drawn independently of all of it.
    assert abs(default.loc["sure_thing", "log_rate"] - default.loc["lost_cause", "log_rate"]) < 0.15
    assert abs(default.loc["persuadable", "open_affinity"] - default.loc["lost_cause", "open_affinity"]) < 0.1


def test_deal_sensitivity_follows_recency_and_frequency(shops: dict[str, Path]) -> None:
    truth = load_truth(shops["observable"])["customers"]
    lapsing = truth["dropout_probability"] > truth["dropout_probability"].median()
    assert truth.loc[lapsing, "deal_sensitivity"].mean() > truth.loc[~lapsing, "deal_sensitivity"].mean() + 0.03
    plain = load_truth(shops["default"])["customers"]
    lapsing = plain["dropout_probability"] > plain["dropout_probability"].median()
    assert abs(plain.loc[lapsing, "deal_sensitivity"].mean() - plain.loc[~lapsing, "deal_sensitivity"].mean()) < 0.02


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"segment_weights": {"loyal": {"frequency": 1.0}}}, r"unknown segments \['loyal'\]"),
        ({"deal_weights": {"income": 1.0}}, r"unknown traits \['income'\]"),
    ],
)
def test_bad_observable_response(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ObservableResponse(**kwargs)  # type: ignore[arg-type]
