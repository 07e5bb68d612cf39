"""Point-in-time interactions: counts by kind, weights, search-led views, the cutoff, the judging window."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from cadence.features.interactions import (
    EVENT_COLUMNS,
    INTERACTION_COLUMNS,
    InteractionData,
    interactions,
    load_interactions,
    purchases_between,
)
from cadence.features.purchases import duckdb_tables, fetch_frame

AS_OF = pd.Timestamp("2025-02-01", tz="UTC")


def _ts(*values: str) -> pd.Series:
    return pd.Series(pd.to_datetime(list(values), utc=True))


def _shop() -> dict[str, pd.DataFrame]:
    events = pd.DataFrame({
        "event_id": [f"e{i}" for i in range(8)],
        "customer_id": ["a", "a", "a", "a", "a", "b", "b", "a"],
        "event_type": ["product_view", "search", "product_view", "add_to_cart", "purchase", "product_view",
                       "product_view", "product_view"],
        "product_id": ["x", None, "y", "y", "y", "x", "z", "z"],
        "query": [None, "mug", None, None, None, None, None, None],
        "session_id": ["s1", "s1", "s1", "s1", "s1", "s2", "s3", "s4"],
        # The last two are exactly at and after the cutoff: never read.
        "ts": _ts("2025-01-10 10:00", "2025-01-10 10:01", "2025-01-10 10:02", "2025-01-10 10:03",
                  "2025-01-10 10:04", "2025-01-20 09:00", "2025-02-01 00:00", "2025-02-03 00:00"),
    })
    orders = pd.DataFrame({"order_id": ["o1", "o2"], "customer_id": ["a", "a"], "revenue": [5.0, 7.0],
                           "ts": _ts("2025-01-10 10:04", "2025-02-01 00:00")})
    items = pd.DataFrame({"order_id": ["o1", "o2"], "product_id": ["y", "x"], "quantity": [3, 1],
                          "price": [1.0, 1.0]})
    return {"events": events, "orders": orders, "order_items": items}


def _frame(frames: dict[str, pd.DataFrame], **kw: Any) -> pd.DataFrame:
    con, t = duckdb_tables(frames)
    return fetch_frame(con, interactions(t, AS_OF, **kw), ["customer_id", "product_id"])


def test_counts_weights_and_last_view_before_the_cutoff() -> None:
    got = _frame(_shop())
    assert list(got.columns) == list(INTERACTION_COLUMNS)
    rows = {(r.customer_id, r.product_id): r for r in got.itertuples()}
    # Nothing at or after as_of: b's view of z (at as_of), a's view of z and order o2 are not read.
    assert set(rows) == {("a", "x"), ("a", "y"), ("b", "x")}
    ay = rows["a", "y"]
    # y: viewed after the session's search (search-led), carted, in order o1 once (quantity 3 is one order);
    # the purchase event is not counted again because the order tables are there.
    assert (ay.views, ay.carts, ay.purchases, ay.searches) == (1, 1, 1, 1)
    assert ay.weight == 1.0 + 3.0 + 5.0 + 2.0
    assert ay.last_at == pd.Timestamp("2025-01-10 10:04", tz="UTC")
    assert ay.last_viewed_at == pd.Timestamp("2025-01-10 10:02", tz="UTC")
    ax = rows["a", "x"]
    # x was viewed before the search: not search-led.
    assert (ax.views, ax.searches, ax.purchases, ax.weight) == (1, 0, 0, 1.0)


def test_purchase_events_count_when_there_are_no_order_tables() -> None:
    got = _frame({"events": _shop()["events"]}, weights={"purchases": 10.0})
    ay = got[(got.customer_id == "a") & (got.product_id == "y")].iloc[0]
    assert ay["purchases"] == 1
    assert ay["weight"] == 1.0 + 3.0 + 10.0 + 2.0


@pytest.mark.parametrize(("weights", "message"), [
    ({"clicks": 1.0}, "weights: unknown kind 'clicks'"),
    ({"views": -1.0}, "weights: must be numbers >= 0"),
])
def test_bad_weights_are_named(weights: dict[str, float], message: str) -> None:
    con, t = duckdb_tables(_shop())
    with pytest.raises(ValueError, match=message):
        interactions(t, AS_OF, weights=weights)


def test_no_interaction_tables_is_refused() -> None:
    con, t = duckdb_tables({"customers": pd.DataFrame({"customer_id": ["a"]})})
    with pytest.raises(ValueError, match="interactions need an events table"):
        interactions(t, AS_OF)


def test_purchases_between_reads_only_the_window() -> None:
    con, t = duckdb_tables(_shop())
    got = fetch_frame(con, purchases_between(t, AS_OF, "2025-03-01"), ["order_id"])
    assert got[["customer_id", "order_id", "product_id"]].values.tolist() == [["a", "o2", "x"]]
    with pytest.raises(ValueError, match="end must be after start"):
        purchases_between(t, AS_OF, AS_OF)


def test_load_interactions_bundles_both_cooccurrences() -> None:
    con, t = duckdb_tables(_shop())
    data = load_interactions(con, t, AS_OF)
    assert isinstance(data, InteractionData) and data.as_of == AS_OF
    # Session s1 holds x and y together; order o1 holds y alone, so nothing is bought together.
    assert sorted(map(tuple, data.cooccurrence[["product_id", "other_product_id"]].values)) == [("x", "y"), ("y", "x")]
    assert data.bought_together.empty
    with pytest.raises(ValueError, match="interactions: missing column 'weight'"):
        InteractionData(AS_OF, data.interactions.drop(columns="weight"), data.cooccurrence, data.bought_together)


def test_events_days_keeps_each_interaction_of_the_window_before_the_cutoff() -> None:
    con, t = duckdb_tables(_shop())
    data = load_interactions(con, t, AS_OF, events_days=15)
    assert data.events_since == AS_OF - pd.Timedelta(days=15)
    ev = data.events
    assert list(ev.columns) == list(EVENT_COLUMNS)
    # Only b's view of x on 20 January is in [17 January, 1 February); at or after the cutoff nothing.
    assert ev[["customer_id", "product_id", "kind"]].values.tolist() == [["b", "x", "views"]]
    everything = load_interactions(con, t, AS_OF, events_days=365).events
    assert sorted(everything["kind"]) == ["carts", "purchases", "searches", "views", "views", "views"]
    assert (everything["ts"] < AS_OF).all()
    assert load_interactions(con, t, AS_OF).events is None
    with pytest.raises(ValueError, match="events_days must be a positive number of days"):
        load_interactions(con, t, AS_OF, events_days=0)
