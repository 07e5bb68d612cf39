"""Customer features: hand-computed families, the strict cutoff, no leakage, DuckDB == Spark."""

from __future__ import annotations

from typing import Any

import ibis
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cadence.contract.triggers import TriggerRules
from cadence.features.customer import customer_features, feature_columns
from cadence.features.engine import execute, register
from cadence.workflows.features import load_tables

AS_OF = pd.Timestamp("2025-03-01T00:00Z")
FEATURE_TABLES = ("customers", "orders", "order_items", "events", "messages", "products")


def ts(*values: str) -> list[pd.Timestamp]:
    return [pd.Timestamp(v, tz="UTC") if v is not None else pd.NaT for v in values]


def hand_shop() -> dict[str, pd.DataFrame]:
    """Customer ``a`` has every kind of history; ``b`` none; ``c`` one order; two sign up too late."""
    customers = pd.DataFrame({
        "customer_id": ["a", "b", "c", "late", "edge"],
        "signup_at": ts("2025-01-01", "2025-02-01", "2025-01-01", "2025-03-02", "2025-03-01"),
    })
    orders = pd.DataFrame({
        "order_id": ["o1", "o2", "o3", "o4", "oc"],
        "customer_id": ["a", "a", "a", "a", "c"],
        # o4 is exactly at as_of and must not count.
        "ts": ts("2025-01-01", "2025-02-10", "2025-02-20", "2025-03-01", "2025-02-27T12:00"),
        "revenue": [10.0, 20.0, 60.0, 1000.0, 5.0],
    })
    order_items = pd.DataFrame({
        "order_id": ["o1", "o2", "o3", "o4", "o4", "o4"],
        "product_id": ["p3", "p1", "p1", "p2", "p3", "p3"],
        "quantity": [1, 1, 1, 1, 1, 2],
        "price": [10.0, 20.0, 60.0, 500.0, 250.0, 250.0],
    }).drop_duplicates(["order_id", "product_id"])
    products = pd.DataFrame({
        "product_id": ["p1", "p2", "p3"],
        "title": ["mug", "rake", "hose"],
        "category": ["kitchen", "garden", "garden"],
        "price": [1.0, 1.0, 1.0],
        "created_at": ts("2024-01-01", "2024-01-01", "2024-01-01"),
    })
    ev = [  # (event_id, ts, type, product, query, results, session)
        ("e1", "2025-02-20T10:00", "search", None, "teapot", 0, "S1"),
        ("e2", "2025-02-20T10:01", "search", None, "mug", 5, "S1"),
        ("e3", "2025-02-20T10:02", "product_view", "p1", None, None, "S1"),
        ("e4", "2025-02-20T10:03", "add_to_cart", "p1", None, None, "S1"),
        ("e5", "2025-01-10T09:00", "search", None, "spoon", 3, "S2"),
        ("e6", "2025-01-10T09:02", "product_view", "p2", None, None, "S2"),
        ("e7", "2025-01-10T09:05", "add_to_cart", "p2", None, None, "S2"),
        ("e8", "2025-01-10T09:06", "checkout_start", None, None, None, "S2"),
        ("e9", "2025-01-10T09:07", "purchase", None, None, None, "S2"),
        ("e10", "2025-01-10T09:10", "search", None, "fork", 2, "S2"),
        ("e11", "2025-03-01T00:00", "search", None, "leak", 0, "S3"),
        ("e12", "2025-03-01T00:00", "product_view", "p3", None, None, "S3"),
    ]
    events = pd.DataFrame(ev, columns=["event_id", "ts", "event_type", "product_id", "query", "results_count",
                                       "session_id"])
    events["ts"] = pd.to_datetime(events["ts"], utc=True, format="ISO8601")
    events["customer_id"] = "a"
    events["results_count"] = events["results_count"].astype("Int64")
    msg = [  # (id, action, triggered/sent, channel, opened, clicked, unsubscribed)
        ("m1", "send", "2025-02-25", "email", "2025-02-26", "2025-02-26T01:00", None),
        ("m2", "send", "2025-02-28T23:00", "push", "2025-03-01T01:00", None, None),
        ("m3", "hold", "2025-02-20", None, None, None, None),
        ("m4", "send", "2024-12-01", "sms", None, None, "2024-12-02"),
        ("m5", "send", "2025-03-01", "whatsapp", None, None, "2025-03-02"),
    ]
    messages = pd.DataFrame(msg, columns=["message_id", "action", "triggered_at", "channel", "opened_at",
                                          "clicked_at", "unsubscribed_at"])
    for col in ("triggered_at", "opened_at", "clicked_at", "unsubscribed_at"):
        messages[col] = pd.to_datetime(messages[col], utc=True, format="ISO8601")
    messages["sent_at"] = messages["triggered_at"].where(messages["action"] == "send")
    messages["customer_id"] = "a"
    messages["stage"] = "win_back"
    messages["policy_id"] = "p"
    messages["propensity"] = 0.5
    return {"customers": customers, "orders": orders, "order_items": order_items, "products": products,
            "events": events, "messages": messages}


def features(con: Any, frames: dict[str, pd.DataFrame], as_of: Any = AS_OF, **kw: Any) -> pd.DataFrame:
    return execute(con, customer_features(register(con, frames), as_of, **kw), sort_by=["customer_id"])


def row(df: pd.DataFrame, customer: str) -> dict[str, Any]:
    return {str(k): v for k, v in df.set_index("customer_id").loc[customer].items()}


@pytest.fixture()
def hand(duck: Any) -> pd.DataFrame:
    return features(duck, hand_shop(), windows=(30, 90))


def test_population_is_signed_up_strictly_before_as_of(hand: pd.DataFrame) -> None:
    assert hand["customer_id"].tolist() == ["a", "b", "c"]


def test_schema_is_feature_columns(hand: pd.DataFrame) -> None:
    assert list(hand.columns) == list(feature_columns((30, 90)))


def test_rfm(hand: pd.DataFrame) -> None:
    a = row(hand, "a")
    expected = {"orders_30d": 2, "orders_90d": 3, "orders_all": 3, "revenue_30d": 80.0, "revenue_all": 90.0,
                "aov_30d": 40.0, "aov_all": 30.0, "recency_days": 9.0, "first_order_days_ago": 59.0,
                "tenure_days": 59.0, "gap_mean_days": 25.0, "gap_std_days": 15.0, "gap_last_days": 10.0,
                "recency_gap_ratio": 0.36}
    assert {k: a[k] for k in expected} == pytest.approx(expected)


def test_rfm_single_order(hand: pd.DataFrame) -> None:
    c = row(hand, "c")
    assert (c["orders_all"], c["aov_all"], c["recency_days"], c["first_order_days_ago"]) == (1, 5.0, 1.5, 1.5)
    assert all(pd.isna(c[k]) for k in ("gap_mean_days", "gap_std_days", "gap_last_days", "recency_gap_ratio"))


def test_empty_history_is_zero_counts_and_null_rest(hand: pd.DataFrame) -> None:
    b = row(hand, "b")
    defaults = feature_columns((30, 90))
    assert b["tenure_days"] == 28.0
    for name, dtype in defaults.items():
        if name in ("customer_id", "tenure_days"):
            continue
        if dtype == "int64" or name.startswith("revenue_"):
            assert b[name] == 0, name
        else:
            assert pd.isna(b[name]), name


def test_sessions(hand: pd.DataFrame) -> None:
    a = row(hand, "a")
    expected = {"sessions_30d": 1, "sessions_90d": 2, "product_views_30d": 1, "product_views_90d": 2,
                "cart_adds_30d": 1, "cart_adds_90d": 2, "checkout_starts_30d": 0, "checkout_starts_90d": 1,
                "cart_abandons_30d": 1, "cart_abandons_90d": 1, "checkout_abandons_90d": 0,
                "avg_session_depth": 5.0, "last_session_days_ago": 8 + 837 / 1440}
    assert {k: a[k] for k in expected} == pytest.approx(expected)


def test_search(hand: pd.DataFrame) -> None:
    a = row(hand, "a")
    expected = {"searches_30d": 2, "searches_90d": 4, "zero_result_rate": 0.25, "search_click_rate": 0.75,
                "search_purchase_rate": 0.25}
    assert {k: a[k] for k in expected} == pytest.approx(expected)
    # teapot (zero results, Feb 20) is later than fork (no click, Jan 10); "leak" is at as_of.
    assert a["last_unresolved_query"] == "teapot"


def test_last_unresolved_query_without_later_one(duck: Any) -> None:
    frames = hand_shop()
    frames["events"] = frames["events"][frames["events"]["session_id"] != "S1"]
    assert row(features(duck, frames), "a")["last_unresolved_query"] == "fork"


def test_messages(hand: pd.DataFrame) -> None:
    a = row(hand, "a")
    expected = {"sends_email_30d": 1, "sends_push_30d": 1, "sends_sms_30d": 0,
                # m4 is exactly 90 days before as_of: the window start is inclusive.
                "sends_sms_90d": 1, "sends_whatsapp_90d": 0,
                "opens_email": 1, "clicks_email": 1, "opens_push": 0, "clicks_push": 0, "opens_sms": 0,
                "last_open_days_ago": 3.0, "unsubscribed_channels": 1}
    assert {k: a[k] for k in expected} == pytest.approx(expected)


def test_category_affinity(hand: pd.DataFrame) -> None:
    a = row(hand, "a")
    # kitchen: view p1 + orders o2, o3; garden: view p2 + order o1 (o4 and e12 are at as_of).
    assert (a["top_category"], a["top_category_share"]) == ("kitchen", pytest.approx(0.6))


def test_category_tie_goes_to_first_name(duck: Any) -> None:
    frames = hand_shop()
    frames["order_items"] = frames["order_items"][frames["order_items"]["order_id"] != "o3"]
    a = row(features(duck, frames), "a")
    assert (a["top_category"], a["top_category_share"]) == ("garden", 0.5)


def test_single_event(duck: Any) -> None:
    frames = hand_shop()
    frames["events"] = frames["events"][frames["events"]["event_id"] == "e3"]
    a = row(features(duck, frames, windows=(30,)), "a")
    assert (a["sessions_30d"], a["product_views_30d"], a["avg_session_depth"], a["searches_30d"]) == (1, 1, 1.0, 0)
    assert a["last_session_days_ago"] == pytest.approx(8 + 838 / 1440)
    assert pd.isna(a["zero_result_rate"]) and a["last_unresolved_query"] is None


def test_event_exactly_at_as_of_is_excluded(duck: Any) -> None:
    frames = hand_shop()
    frames["events"] = frames["events"][frames["events"]["event_id"].isin(["e11", "e12"])]
    a = row(features(duck, frames, windows=(30,)), "a")
    assert (a["sessions_30d"], a["searches_30d"], a["product_views_30d"]) == (0, 0, 0)
    assert pd.isna(a["last_session_days_ago"])


def test_one_second_earlier_counts(duck: Any) -> None:
    later = features(duck, hand_shop(), as_of=AS_OF + pd.Timedelta(seconds=1), windows=(30,))
    a = row(later, "a")
    assert (a["orders_all"], a["searches_30d"], a["sends_whatsapp_30d"]) == (4, 3, 1)
    assert "edge" in set(later["customer_id"])


def loose_events(gaps_min: list[float], session_ids: list[str | None] | None = None) -> dict[str, pd.DataFrame]:
    t0 = pd.Timestamp("2025-02-01T12:00Z")
    times = [t0]
    for g in gaps_min:
        times.append(times[-1] + pd.Timedelta(minutes=g))
    n = len(times)
    events = pd.DataFrame({"event_id": [f"e{i}" for i in range(n)], "customer_id": "a", "ts": times,
                           "event_type": "page_view",
                           "session_id": pd.Series(session_ids or [None] * n, dtype=object)})
    customers = pd.DataFrame({"customer_id": ["a"], "signup_at": ts("2025-01-01")})
    return {"customers": customers, "events": events}


@pytest.mark.parametrize(("gap", "timeout", "sessions"), [(29, 30, 1), (30, 30, 1), (31, 30, 2), (29, 10, 2)])
def test_sessionisation_without_session_id(duck: Any, gap: float, timeout: float, sessions: int) -> None:
    df = features(duck, loose_events([gap]), windows=(30,), rules=TriggerRules(session_timeout_minutes=timeout))
    a = row(df, "a")
    assert (a["sessions_30d"], a["avg_session_depth"]) == (sessions, 2 / sessions)


def test_sessionisation_chains_and_mixes_with_session_ids(duck: Any) -> None:
    # e0 has a session id; e1..e3 do not: e1-e2 (20 min) one session, e3 (45 min later) another.
    frames = loose_events([1, 20, 45], session_ids=["X", None, None, None])
    a = row(features(duck, frames, windows=(30,)), "a")
    assert (a["sessions_30d"], a["avg_session_depth"]) == (3, pytest.approx(4 / 3))


def test_sessionisation_is_per_customer(duck: Any) -> None:
    frames = loose_events([10, 10])
    frames["events"].loc[1, "customer_id"] = "b"
    frames["customers"] = pd.DataFrame({"customer_id": ["a", "b"], "signup_at": ts("2025-01-01", "2025-01-01")})
    df = features(duck, frames, windows=(30,))
    assert df["sessions_30d"].tolist() == [1, 1]
    assert df["avg_session_depth"].tolist() == [2.0, 1.0]


def test_only_customers_gives_stable_schema(duck: Any) -> None:
    frames = {"customers": hand_shop()["customers"]}
    df = features(duck, frames, windows=(7, 14))
    assert list(df.columns) == list(feature_columns((7, 14)))
    assert df["orders_all"].tolist() == [0, 0, 0] and df["top_category"].isna().all()


def test_missing_optional_columns_are_read_as_null(duck: Any) -> None:
    frames = hand_shop()
    frames["events"] = frames["events"].drop(columns=["session_id", "query", "results_count"])
    frames["messages"] = frames["messages"].drop(columns=["opened_at", "clicked_at", "unsubscribed_at"])
    a = row(features(duck, frames, windows=(30,)), "a")
    # Without session ids S1 (Feb 20) and S2 (Jan 10) are still two sessions by inactivity.
    assert (a["sessions_30d"], a["searches_30d"], a["zero_result_rate"], a["opens_email"]) == (1, 2, 0.0, 0)


@pytest.mark.parametrize(("table", "column"), [
    ("customers", "signup_at"), ("orders", "revenue"), ("orders", "ts"), ("events", "event_type"),
    ("events", "event_id"), ("messages", "action"), ("messages", "sent_at"), ("products", "category"),
])
def test_missing_needed_column_names_table_and_column(duck: Any, table: str, column: str) -> None:
    frames = hand_shop()
    frames[table] = frames[table].drop(columns=[column])
    with pytest.raises(ValueError, match=f"^{table}: missing column '{column}'"):
        customer_features(register(duck, frames), AS_OF)


@pytest.mark.parametrize("windows", [(), (0,), (30, 30), (7.5,), (-1,)])
def test_bad_windows(duck: Any, windows: tuple[Any, ...]) -> None:
    with pytest.raises(ValueError, match="windows must be distinct positive integers"):
        customer_features(register(duck, {"customers": hand_shop()["customers"]}), AS_OF, windows=windows)


@pytest.mark.parametrize("families", [["rfm"], ["sessions", "rfm"], ["search"], ["messages", "category"]])
def test_families_give_their_columns_of_the_full_table(duck: Any, hand: pd.DataFrame, families: list[str]) -> None:
    part = features(duck, hand_shop(), windows=(30, 90), families=families)
    assert list(part.columns) == list(feature_columns((30, 90), families))
    pd.testing.assert_frame_equal(part, hand[part.columns])


@pytest.mark.parametrize("families", [[], ["rfm", "sesions"]])
def test_unknown_family(duck: Any, families: list[str]) -> None:
    with pytest.raises(ValueError, match="families must be some of rfm, sessions, search, messages, category"):
        customer_features(register(duck, {"customers": hand_shop()["customers"]}), AS_OF, families=families)


def test_as_of_is_required(duck: Any) -> None:
    t = register(duck, {"customers": hand_shop()["customers"]})
    with pytest.raises(TypeError):
        customer_features(t)  # type: ignore[call-arg]


def test_customers_table_is_required(duck: Any) -> None:
    with pytest.raises(ValueError, match="customers: missing table"):
        customer_features({"orders": ibis.memtable(hand_shop()["orders"])}, AS_OF)


# ---------------------------------------------------------------- no leakage
DAY_MIN = 24 * 60
EVENT_TYPES = ["page_view", "product_view", "add_to_cart", "checkout_start", "search", "purchase"]


@st.composite
def history(draw: st.DrawFn, future: bool) -> dict[str, pd.DataFrame]:
    """Small random events/orders/messages; ``future`` rows are at or after AS_OF (offset >= 0 min)."""
    def when(offset: st.SearchStrategy[int]) -> pd.Timestamp:
        return AS_OF + pd.Timedelta(minutes=draw(offset))

    # Offsets crowd the boundary: exactly at AS_OF, a minute before, and spread out.
    if future:
        offset = st.one_of(st.just(0), st.integers(0, 60), st.integers(0, 40 * DAY_MIN))
    else:
        offset = st.one_of(st.just(-1), st.integers(-120 * DAY_MIN, -1))
    cust = st.sampled_from(["a", "b"])
    tag = "f" if future else "h"
    n_ev = draw(st.integers(0 if future else 1, 8))
    events = pd.DataFrame({
        "event_id": [f"{tag}e{i}" for i in range(n_ev)],
        "customer_id": [draw(cust) for _ in range(n_ev)],
        "ts": [when(offset) for _ in range(n_ev)],
        "event_type": [draw(st.sampled_from(EVENT_TYPES)) for _ in range(n_ev)],
        "product_id": [draw(st.sampled_from(["p1", "p2", "p3"])) for _ in range(n_ev)],
        "query": [draw(st.sampled_from(["mug", "rake"])) for _ in range(n_ev)],
        "results_count": pd.array([draw(st.integers(0, 2)) for _ in range(n_ev)], dtype="Int64"),
        "session_id": pd.Series([draw(st.sampled_from([None, "S1", "S2"])) for _ in range(n_ev)], dtype=object),
    })
    n_o = draw(st.integers(0, 4))
    orders = pd.DataFrame({
        "order_id": [f"{tag}o{i}" for i in range(n_o)],
        "customer_id": [draw(cust) for _ in range(n_o)],
        "ts": [when(offset) for _ in range(n_o)],
        "revenue": [float(draw(st.integers(1, 100))) for _ in range(n_o)],
    })
    items = pd.DataFrame({"order_id": orders["order_id"], "product_id": "p1", "quantity": 1, "price": 1.0},
                         index=orders.index)
    n_m = draw(st.integers(0, 4))
    sent = [when(offset) for _ in range(n_m)]
    # A message sent in history may be opened/clicked/unsubscribed later, even after AS_OF.
    lag = st.one_of(st.none(), st.integers(0, 60 * DAY_MIN))
    def after(t: pd.Timestamp) -> Any:
        m = draw(lag)
        return pd.NaT if m is None else t + pd.Timedelta(minutes=m)
    messages = pd.DataFrame({
        "message_id": [f"{tag}m{i}" for i in range(n_m)],
        "customer_id": [draw(cust) for _ in range(n_m)],
        "triggered_at": sent, "sent_at": sent, "action": "send",
        "channel": [draw(st.sampled_from(["email", "push", "sms", "whatsapp"])) for _ in range(n_m)],
        "opened_at": [after(t) for t in sent], "clicked_at": [after(t) for t in sent],
        "unsubscribed_at": [after(t) for t in sent],
    })
    # Explicit dtypes: an empty or all-null pandas column has no type of its own.
    for df in (events, orders, items, messages):
        for col in df.columns:
            if col in ("ts", "triggered_at", "sent_at", "opened_at", "clicked_at", "unsubscribed_at"):
                df[col] = pd.to_datetime(df[col], utc=True)
            elif col in ("revenue", "price"):
                df[col] = df[col].astype("float64")
            elif col not in ("results_count", "quantity"):
                df[col] = df[col].astype("string")
    return {"events": events, "orders": orders, "order_items": items, "messages": messages}


def with_base(h: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    base = hand_shop()
    return {"customers": base["customers"], "products": base["products"], **h}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(past=history(future=False), future=history(future=True))
def test_appending_rows_at_or_after_as_of_changes_nothing(duck: Any, past: dict[str, pd.DataFrame],
                                                          future: dict[str, pd.DataFrame]) -> None:
    before = features(duck, with_base(past), windows=(7, 30))
    both = {k: pd.concat([past[k], future[k]], ignore_index=True) for k in past}
    after = features(duck, with_base(both), windows=(7, 30))
    pd.testing.assert_frame_equal(before, after)


# ---------------------------------------------------------------- engines
def test_duckdb_and_spark_agree_on_synthetic_shop(small_shop: Any, duck: Any, spark_con: Any) -> None:
    frames = {}
    for name, con in (("duckdb", duck), ("spark", spark_con)):
        t = load_tables(con, small_shop, FEATURE_TABLES)
        frames[name] = execute(con, customer_features(t, "2025-04-15"), sort_by=["customer_id"])
    duck_df, spark_df = frames["duckdb"], frames["spark"]
    # A meaningful comparison: the shop exercises every family.
    assert len(duck_df) > 400
    for col in ("orders_all", "sessions_90d", "searches_90d", "sends_email_90d", "opens_email"):
        assert duck_df[col].sum() > 0, col
    assert duck_df["top_category"].notna().any() and duck_df["last_unresolved_query"].notna().any()
    pd.testing.assert_frame_equal(duck_df, spark_df, check_dtype=False, rtol=1e-6)
