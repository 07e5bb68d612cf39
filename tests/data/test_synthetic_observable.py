"""The opt-in world where response types and deal sensitivity depend on what a shop observes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cadence.contract.tables import STAGES
from cadence.data.io import OUTPUT_MARKER, read_tables
from cadence.synthetic import (
    REALISED_RESPONSE,
    ObservableResponse,
    ShopConfig,
    generate_shop,
    load_config,
    load_truth,
)

BASE = dict(customers=3_000, days=180, seed=13, chunk_size=1_000)


def _digest(folder: Path, name: str) -> str:
    return hashlib.sha256((folder / name).read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def shops(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("observable")
    return {
        "default": generate_shop(ShopConfig(**BASE), root / "default"),
        "observable": generate_shop(ShopConfig(**BASE, observable_response=ObservableResponse()), root / "observable"),
        "realised": generate_shop(ShopConfig(**BASE, observable_response=REALISED_RESPONSE), root / "realised"),
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


def test_realised_world_moves_only_the_response_and_records_it_per_message(shops: dict[str, Path]) -> None:
    for table in ("customers.parquet", "events.parquet", "products.parquet"):
        assert _digest(shops["realised"], table) == _digest(shops["default"], table), table
    truth = load_truth(shops["realised"])
    # The response is per trigger: the customer-level columns are null, each message carries its own.
    assert truth["customers"][["segment", "intent", "deal_sensitivity"]].isna().all().all()
    per_message = truth["messages"]
    assert per_message[["segment", "intent", "deal_sensitivity"]].notna().all().all()
    messages = read_tables(shops["realised"], ["messages"])["messages"].merge(per_message, on="message_id")
    first = messages[messages["step"] == 1]
    # A customer's type moves as their history does: many customers with several triggers show more than one.
    types = first.groupby("customer_id")["segment"].agg(["nunique", "size"])
    assert (types.loc[types["size"] >= 3, "nunique"] > 1).mean() > 0.2
    assert load_config(shops["realised"]).observable_response == REALISED_RESPONSE


def _history_before(shop: Path, messages: pd.DataFrame) -> pd.DataFrame:
    """Per first message, the sessions started and organic orders placed in the 90 days before its trigger,
    counted from the shop's own tables (the world's count must agree, and must not look at or after the trigger)."""
    tables = read_tables(shop, ["events", "orders"])
    sources = load_truth(shop)["orders"]
    starts = tables["events"].groupby(["customer_id", "session_id"], observed=True)["ts"].min().reset_index()
    organic = tables["orders"][tables["orders"]["order_id"].isin(
        sources.loc[sources["source"].isin(["regular", "replenishment"]), "order_id"])]
    out = messages[["message_id", "customer_id", "triggered_at"]].copy()
    for name, frame in (("sessions", starts), ("orders", organic)):
        joined = out.merge(frame[["customer_id", "ts"]], on="customer_id")
        inside = (joined["ts"] < joined["triggered_at"]) & (joined["ts"] >= joined["triggered_at"] - pd.Timedelta(days=90))
        out[name] = out["message_id"].map(joined[inside].groupby("message_id").size()).fillna(0).astype(int)
    return out


def test_realised_traits_are_what_the_shop_tables_show_before_each_trigger(shops: dict[str, Path]) -> None:
    from cadence.synthetic.backbone import REALISED_SCALE, build_backbone, realised_traits
    from cadence.synthetic.catalog import make_catalog
    from cadence.synthetic.world import customer_ids

    cfg = ShopConfig(**BASE, observable_response=REALISED_RESPONSE)
    bb = build_backbone(cfg, make_catalog(cfg), 0)
    z = realised_traits(cfg, bb)
    world = pd.DataFrame({
        "customer_id": np.asarray(customer_ids(bb.people.idx[bb.trig_cust]).to_pylist(), dtype=object),
        "triggered_at": pd.to_datetime(bb.trig_s, unit="s", utc=True),
        "stage": np.asarray(STAGES, dtype=object)[bb.trig_stage],
        "sessions_world": np.expm1(z["browsing"] * REALISED_SCALE["browsing"][1] + REALISED_SCALE["browsing"][0]),
        "orders_world": np.expm1(z["frequency"] * REALISED_SCALE["frequency"][1] + REALISED_SCALE["frequency"][0]),
    })
    messages = read_tables(shops["realised"], ["messages"])["messages"]
    messages = messages[messages["step"] == 1].assign(customer_id=lambda m: m["customer_id"].astype(str),
                                                      stage=lambda m: m["stage"].astype(str))
    counted = (_history_before(shops["realised"], messages).assign(stage=messages["stage"].to_numpy())
               .merge(world, on=["customer_id", "triggered_at", "stage"]))
    assert len(counted) == len(world) > 1000
    np.testing.assert_allclose(counted["sessions_world"], counted["sessions"], atol=1e-6)
    np.testing.assert_allclose(counted["orders_world"], counted["orders"], atol=1e-6)


def test_realised_response_types_follow_the_history_a_shop_sees(shops: dict[str, Path]) -> None:
    messages = read_tables(shops["realised"], ["messages"])["messages"]
    messages = messages[messages["step"] == 1].merge(load_truth(shops["realised"])["messages"], on="message_id")
    history = _history_before(shops["realised"], messages).assign(segment=messages["segment"].to_numpy())
    means = history.groupby("segment")[["sessions", "orders"]].mean()
    print("\nmean history before the trigger, by the trigger's response type:\n" + means.round(2).to_string())
    # As configured (REALISED_RESPONSE): persuadables browse, lost causes do not, sure things buy.
    assert means.loc["persuadable", "sessions"] > 1.5 * means.loc["lost_cause", "sessions"]
    assert means.loc["sure_thing", "orders"] > 1.5 * means.loc["lost_cause", "orders"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"basis": "daily"}, r"unknown basis 'daily'"),
        ({"segment_weights": {"loyal": {"frequency": 1.0}}}, r"unknown segments \['loyal'\]"),
        ({"deal_weights": {"income": 1.0}}, r"unknown traits \['income'\]"),
    ],
)
def test_bad_observable_response(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ObservableResponse(**kwargs)  # type: ignore[arg-type]
