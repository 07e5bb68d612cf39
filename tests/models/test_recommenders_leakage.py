"""Leakage: events and orders at or after ``as_of`` change no recommendation (property test)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cadence.features.interactions import interaction_events, load_interactions
from cadence.features.purchases import duckdb_tables, fetch_frame
from cadence.models.recommenders import (
    BlendRecommender,
    CooccurrenceRecommender,
    ImplicitRecommender,
    LearnedBlendRecommender,
    LiveBlendRecommender,
    PopularityRecommender,
    RecentlyViewedRecommender,
)
from cadence.synthetic import ShopConfig, generate_shop

AS_OF = pd.Timestamp("2025-03-01", tz="UTC")
TABLES = ("events", "orders", "order_items")


def _recommenders() -> dict[str, Any]:
    return {
        "popular": PopularityRecommender(), "recent": RecentlyViewedRecommender(),
        "cooccurrence": CooccurrenceRecommender(), "bought_together": CooccurrenceRecommender(source="orders"),
        "als": ImplicitRecommender("als", factors=8, iterations=5, random_state=0),
        "bpr": ImplicitRecommender("bpr", factors=8, iterations=5, random_state=0),
        "bm25": ImplicitRecommender("bm25"),
        "blend": BlendRecommender([("p", PopularityRecommender()), ("r", RecentlyViewedRecommender())]),
        "learned": LearnedBlendRecommender([("p", PopularityRecommender()), ("r", RecentlyViewedRecommender()),
                                            ("c", CooccurrenceRecommender())], random_state=0),
        "live": _live(),
    }


def _live() -> LiveBlendRecommender:
    return LiveBlendRecommender([("p", PopularityRecommender()), ("c", CooccurrenceRecommender())], random_state=0,
                                lookback_days=30, horizon_days=7)


@pytest.fixture(scope="module")
def shop() -> dict[str, pd.DataFrame]:
    """A 300-customer, 90-day shop (1 January to 31 March 2025), as pandas frames."""
    out = Path(tempfile.mkdtemp()) / "shop"
    generate_shop(ShopConfig(customers=300, days=90, seed=5), out)
    return {name: pd.read_parquet(out / f"{name}.parquet") for name in TABLES}


def _recommend_all(frames: dict[str, pd.DataFrame], customers: list[str]) -> dict[str, pd.DataFrame]:
    con, tables = duckdb_tables(frames)
    # With a time split inside the history and time-stamped events for the learned blends (the others ignore them).
    data = load_interactions(con, tables, AS_OF, label_days=30, events_days=60)
    return {name: est.fit(data).recommend(customers, k=10) for name, est in _recommenders().items()}


@pytest.fixture(scope="module")
def reference(shop: dict[str, pd.DataFrame]) -> tuple[list[str], dict[str, pd.DataFrame]]:
    # Customers with and without history, and one never seen.
    customers = sorted(shop["events"]["customer_id"].unique())[:40] + ["nobody"]
    # The shop's own rows at or after as_of are part of the "later" data: the reference is the history alone.
    past = _cut(shop)
    return customers, _recommend_all(past, customers)


def _cut(frames: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    ev = frames["events"][frames["events"]["ts"] < AS_OF]
    orders = frames["orders"][frames["orders"]["ts"] < AS_OF]
    items = frames["order_items"][frames["order_items"]["order_id"].isin(orders["order_id"])]
    return {"events": ev, "orders": orders, "order_items": items}


@st.composite
def later_rows(draw: st.DrawFn, customers: list[str], products: list[str], sessions: list[str]) -> dict[str, Any]:
    """Events and orders at or after AS_OF (offsets from 0 s), by known or new customers, of known or new products."""
    n = draw(st.integers(1, 25))
    who = st.sampled_from([*customers[:50], "new-customer"])
    what = st.sampled_from([*products[:50], "new-product"])
    offset = st.one_of(st.just(0), st.integers(0, 40 * 86_400))
    ev = [{"event_id": f"later-e{i}", "customer_id": draw(who), "product_id": draw(what),
           "event_type": draw(st.sampled_from(["product_view", "add_to_cart", "search", "purchase"])),
           "session_id": draw(st.sampled_from([*sessions[:50], "later-session"])),
           "ts": AS_OF + pd.Timedelta(seconds=draw(offset))} for i in range(n)]
    m = draw(st.integers(0, 5))
    orders = [{"order_id": f"later-o{i}", "customer_id": draw(who), "revenue": 10.0,
               "ts": AS_OF + pd.Timedelta(seconds=draw(offset))} for i in range(m)]
    items = [{"order_id": f"later-o{i}", "product_id": p, "quantity": 1, "price": 1.0}
             for i in range(m) for p in draw(st.sets(what, min_size=1, max_size=3))]
    return {"events": ev, "orders": orders, "order_items": items}


def _append(frames: dict[str, pd.DataFrame], rows: dict[str, list[dict[str, Any]]]) -> dict[str, pd.DataFrame]:
    out = {}
    for name, df in frames.items():
        extra = pd.DataFrame(rows[name], columns=df.columns) if rows[name] else df.iloc[:0]
        if "ts" in extra.columns:
            extra["ts"] = pd.to_datetime(extra["ts"], utc=True).astype(df["ts"].dtype)
        out[name] = pd.concat([df, extra.astype(df.dtypes.to_dict())], ignore_index=True)
    return out


def test_the_shops_own_later_rows_change_nothing(shop: dict[str, pd.DataFrame], reference: Any) -> None:
    customers, expected = reference
    assert (shop["events"]["ts"] >= AS_OF).sum() > 1000  # the cut matters: a month of later events
    got = _recommend_all(shop, customers)
    for name, frame in expected.items():
        pd.testing.assert_frame_equal(got[name], frame, obj=name)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_appending_rows_at_or_after_as_of_changes_no_recommendation(shop: dict[str, pd.DataFrame], reference: Any,
                                                                    data: st.DataObject) -> None:
    customers, expected = reference
    past = _cut(shop)
    products = sorted(past["events"]["product_id"].dropna().unique())
    sessions = sorted(past["events"]["session_id"].dropna().unique())
    rows = data.draw(later_rows(sorted(past["events"]["customer_id"].unique()), products, sessions))
    got = _recommend_all(_append(past, rows), customers)
    for name, frame in expected.items():
        pd.testing.assert_frame_equal(got[name], frame, obj=name)


AT = AS_OF + pd.Timedelta(days=10)


@pytest.fixture(scope="module")
def live(shop: dict[str, pd.DataFrame]) -> tuple[LiveBlendRecommender, pd.DataFrame, list[str], list[str]]:
    """The live blend fitted before AS_OF, the shop's interactions from AS_OF on, and pairs to score at AT."""
    past = _cut(shop)
    con, tables = duckdb_tables(past)
    rec = _live().fit(load_interactions(con, tables, AS_OF, label_days=30, events_days=60))
    con, tables = duckdb_tables(shop)
    later = fetch_frame(con, interaction_events(tables, AS_OF + pd.Timedelta(days=60), AS_OF),
                        ["customer_id", "ts", "product_id", "kind"])
    customers = sorted(later.loc[later["ts"] < AT, "customer_id"].unique())[:30] + ["nobody"]
    products = sorted(past["events"]["product_id"].dropna().unique())[:20] + ["new-product"]
    return rec, later, [c for c in customers for _ in products], products * len(customers)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_interactions_at_or_after_the_decision_time_change_no_live_score(live: Any, data: st.DataObject) -> None:
    rec, later, cust, prod = live
    before = later[later["ts"] < AT]
    expected = rec.score_pairs_at(cust, prod, AT, recent=before)
    assert not np.allclose(expected, rec.score_pairs_at(cust, prod, AT))  # what happened since the fit matters
    n = data.draw(st.integers(1, 25))
    extra = pd.DataFrame({
        "customer_id": data.draw(st.lists(st.sampled_from([*cust[::21], "new-customer"]), min_size=n, max_size=n)),
        "product_id": data.draw(st.lists(st.sampled_from([*prod[:21], "other-product"]), min_size=n, max_size=n)),
        "kind": data.draw(st.lists(st.sampled_from(["views", "carts", "purchases", "searches"]), min_size=n,
                                   max_size=n)),
        "ts": [AT + pd.Timedelta(seconds=s) for s in data.draw(st.lists(st.integers(0, 30 * 86_400), min_size=n,
                                                                          max_size=n))]})
    got = rec.score_pairs_at(cust, prod, AT, recent=pd.concat([later, extra], ignore_index=True))
    np.testing.assert_array_equal(got, expected)
