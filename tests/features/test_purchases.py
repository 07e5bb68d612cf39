"""Purchase inputs of the models by hand: survival snapshots, repurchase gaps, RFM summary."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from cadence.features import purchases as P


def snapshots(orders: pd.DataFrame, as_of: Any, **follow_up: Any) -> pd.DataFrame:
    con, t = P.duckdb_tables({"orders": orders})
    return P.fetch_frame(con, P.purchase_snapshots(t, as_of, **follow_up), ["customer_id"])


def stacked(orders: pd.DataFrame, cutoffs: list[Any], until: Any) -> pd.DataFrame:
    con, t = P.duckdb_tables({"orders": orders})
    return P.fetch_frame(con, P.stacked_snapshots(t, cutoffs, until), ["as_of", "customer_id"])


#: a: Jan 1 twice (one purchase of 15), Jan 21, and exactly at as_of (the next purchase, not history);
#: b: Jan 10, then after the follow-up ends (censored); c: first purchase after as_of (no row); d: three.
TOY = pd.DataFrame({
    "order_id": [f"o{i}" for i in range(10)],
    "customer_id": ["a", "a", "a", "a", "b", "b", "c", "d", "d", "d"],
    "ts": pd.to_datetime(["2024-01-01 09:00", "2024-01-01 18:00", "2024-01-21 12:00", "2024-02-01 00:00",
                          "2024-01-10", "2024-03-15", "2024-02-10", "2024-01-05", "2024-01-25", "2024-02-20"],
                         utc=True, format="ISO8601"),
    "revenue": [10.0, 5.0, 25.0, 7.0, 8.0, 8.0, 3.0, 4.0, 6.0, 6.0],
})
AS_OF = "2024-02-01"


def test_snapshot_target_and_censoring_by_hand() -> None:
    snap = snapshots(TOY, AS_OF, until="2024-03-01").set_index("customer_id")
    assert list(snap.index) == ["a", "b", "d"]
    assert list(snap.columns) == list(P.SNAPSHOT_COLUMNS[1:])
    # a: purchases on Jan 1 and Jan 21 (+ midday convention), next on Feb 1.
    assert snap.loc["a", "frequency"] == 1
    assert snap.loc["a", "elapsed_days"] == 11 - 0.5
    assert snap.loc["a", "purchase_tenure_days"] == 31 - 0.5
    assert snap.loc["a", "mean_gap_days"] == 20.0
    assert snap.loc["a", "monetary"] == 20.0  # (15 + 25) / 2 purchase days
    assert (snap.loc["a", "duration_days"], snap.loc["a", "event"]) == (11.0, 1)
    assert snap.loc["a", "last_purchase_at"] == pd.Timestamp("2024-01-21", tz="UTC")
    # b: no purchase in [Feb 1, Mar 1): censored at Mar 1, from Jan 10 midday.
    assert (snap.loc["b", "duration_days"], snap.loc["b", "event"]) == (51 - 0.5, 0)
    assert snap.loc["b", "mean_gap_days"] == 0.0
    # d: next purchase Feb 20, 26 days after Jan 25.
    assert (snap.loc["d", "duration_days"], snap.loc["d", "event"]) == (26.0, 1)
    assert (snap["duration_days"] > snap["elapsed_days"]).all()
    # A 10-day horizon censors d (and b) at Feb 11.
    short = snapshots(TOY, AS_OF, horizon_days=10).set_index("customer_id")
    assert short["event"].to_dict() == {"a": 1, "b": 0, "d": 0}
    assert short.loc["d", "duration_days"] == (pd.Timestamp("2024-02-11") - pd.Timestamp("2024-01-25")).days - 0.5


def test_snapshot_reads_no_covariate_at_or_after_as_of() -> None:
    covariates = ["customer_id", "frequency", "elapsed_days", "purchase_tenure_days", "mean_gap_days", "monetary"]
    base = snapshots(TOY, AS_OF, until="2024-03-01")
    later = pd.DataFrame({"order_id": ["x1", "x2", "x3"], "customer_id": ["a", "b", "zz"], "revenue": [999.0, 999.0, 1.0],
                          "ts": pd.to_datetime(["2024-02-01", "2024-02-02", "2024-02-01"], utc=True)})
    more = snapshots(pd.concat([TOY, later], ignore_index=True), AS_OF, until="2024-03-01")
    pd.testing.assert_frame_equal(base[covariates], more[covariates])
    # The target does see the follow-up: b now buys on Feb 2.
    assert more.set_index("customer_id").loc["b", "event"] == 1


def test_stacked_snapshots_never_read_past_until() -> None:
    until = pd.Timestamp("2024-02-15", tz="UTC")
    before = stacked(TOY, ["2024-01-15", "2024-02-01"], until)
    extra = TOY.iloc[[4, 7]].assign(order_id=["x1", "x2"], ts=pd.to_datetime(["2024-02-16", "2024-02-15"], utc=True))
    again = stacked(pd.concat([TOY, extra], ignore_index=True), ["2024-01-15", "2024-02-01"], until)
    pd.testing.assert_frame_equal(before, again)
    assert before["as_of"].nunique() == 2


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: snapshots(TOY, AS_OF), r"until= or horizon_days="),
        (lambda: snapshots(TOY, AS_OF, until="2024-01-01"), "must end after as_of"),
        (lambda: snapshots(TOY, AS_OF, horizon_days=-1), "horizon_days must be > 0"),
        (lambda: snapshots(TOY.drop(columns="revenue"), AS_OF, horizon_days=1), "orders: missing column 'revenue'"),
        (lambda: P.stacked_snapshots({}, [], AS_OF), "no cutoffs"),
        (lambda: P.rfm_summary(P.duckdb_tables({"orders": TOY})[1], AS_OF, time_unit="M"),  # type: ignore[arg-type]
         "time_unit must be one of"),
        (lambda: P.purchase_gaps(P.duckdb_tables({"orders": TOY})[1], AS_OF), "order_items: missing table"),
    ],
)
def test_bad_inputs(call, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=message):
        call()


def test_snapshot_before_any_order_is_empty() -> None:
    assert snapshots(TOY, "2023-01-01", until="2024-01-01").empty


# ---------------------------------------------------------------- gaps
#: Products of TOY's orders: p in every order, q beside p in a's Jan 21 order.
ITEMS = pd.DataFrame({"order_id": [*TOY["order_id"], "o2"], "product_id": ["p"] * 10 + ["q"]})


def gaps(orders: pd.DataFrame, as_of: Any) -> pd.DataFrame:
    con, t = P.duckdb_tables({"orders": orders, "order_items": ITEMS})
    return P.fetch_frame(con, P.purchase_gaps(t, as_of), ["customer_id", "product_id", "day"])


def test_purchase_gaps_merge_days_and_stop_at_as_of() -> None:
    got = gaps(TOY, AS_OF)
    # a buys p on Jan 1 (twice, one purchase) and Jan 21, q once; b once before as_of; d on Jan 5 and 25.
    assert got[["customer_id", "product_id", "gap_days"]].values.tolist() == [["a", "p", 20.0], ["d", "p", 20.0]]
    assert got["day"].tolist() == [19743, 19747]  # 2024-01-21 and 2024-01-25, in epoch days
    # Orders at or after as_of (a's Feb 1, d's Feb 20, ...) are not read.
    pd.testing.assert_frame_equal(gaps(TOY[TOY["ts"] < pd.Timestamp(AS_OF, tz="UTC")], AS_OF), got)


# ---------------------------------------------------------------- RFM summary
def test_rfm_summary_definitions_by_hand() -> None:
    con, t = P.duckdb_tables({"orders": TOY})
    got = P.fetch_frame(con, P.rfm_summary(t, AS_OF, time_unit="D"), ["customer_id"]).set_index("customer_id")
    # a: Jan 1 (15) and Jan 21 (25); last observed day Jan 31.
    assert got.loc["a"].tolist() == [1, 20.0, 30.0, 25.0]
    assert got.loc["b"].tolist() == [0, 0.0, 21.0, 0.0]
    unmerged = P.fetch_frame(con, P.rfm_summary(t, AS_OF, time_unit="D", merge_same_day=False), ["customer_id"])
    # Every order counts: a's second order on Jan 1 (5) is a repeat at recency 0.
    assert unmerged.set_index("customer_id").loc["a"].tolist() == [2, 20.0, 30.0, 15.0]
    cohort = P.fetch_frame(con, P.rfm_summary(t, AS_OF, start="2024-01-04"), ["customer_id"])
    assert cohort["customer_id"].tolist() == ["b", "d"]


#: The BTYD summary's cases: a buys twice on Jan 1 (one purchase of 15), then Jan 15 and Jan 29;
#: c first buys before the cohort start of the tests below.
SHOP = pd.DataFrame({
    "order_id": [f"o{i}" for i in range(7)],
    "customer_id": ["a", "a", "a", "a", "b", "c", "c"],
    "ts": pd.to_datetime(["2024-01-01 09:00", "2024-01-01 17:00", "2024-01-15 12:00", "2024-01-29 08:00",
                          "2024-01-08", "2023-12-20", "2024-01-10"], utc=True, format="ISO8601"),
    "revenue": [10.0, 5.0, 20.0, 40.0, 7.0, 3.0, 4.0],
})


QUIET = pytest.mark.filterwarnings("ignore::cadence.features.purchases.DataQualityWarning")


@QUIET
def test_rfm_summary_frame_by_hand() -> None:
    with pytest.warns(P.DataQualityWarning, match="merged 1 same-day orders"):
        got = P.rfm_summary_frame(SHOP, as_of="2024-02-01", time_unit="D")
    expected = pd.DataFrame(
        {
            "frequency": [2, 0, 1],
            "recency": [28.0, 0.0, 21.0],
            "T": [30.0, 23.0, 42.0],  # to 2024-01-31, the last observed day
            "monetary_value": [30.0, 0.0, 4.0],  # mean of repeat purchases only
        },
        index=pd.Index(["a", "b", "c"], name="customer_id"),
    )
    pd.testing.assert_frame_equal(got, expected)
    weeks = P.rfm_summary_frame(SHOP, as_of="2024-02-01", time_unit="W")
    pd.testing.assert_frame_equal(weeks[["recency", "T"]] * 7, got[["recency", "T"]])


@QUIET
def test_rfm_summary_frame_options_and_warnings() -> None:
    unmerged = P.rfm_summary_frame(SHOP, as_of="2024-02-01", time_unit="D", merge_same_day=False)
    assert unmerged.loc["a", "frequency"] == 3
    assert unmerged.loc["a", "monetary_value"] == pytest.approx((5 + 20 + 40) / 3)
    with pytest.warns(P.DataQualityWarning) as record:
        cohort = P.rfm_summary_frame(SHOP.assign(customer_id="ID-" + SHOP["customer_id"]), as_of="2024-02-01",
                                     start="2024-01-01")
    messages = [str(w.message) for w in record]
    assert list(cohort.index) == ["ID-a", "ID-b"]
    assert any("left out 1 customers (2 orders)" in m for m in messages), messages
    assert any("merged 1 same-day orders" in m for m in messages), messages
    assert "ID-" not in " ".join(messages)  # counts only, never ids
    # Naive cutoffs are UTC; other zones are converted.
    aware = P.rfm_summary_frame(SHOP, as_of=pd.Timestamp("2024-02-01 01:00", tz="Europe/Paris"))
    pd.testing.assert_frame_equal(aware, P.rfm_summary_frame(SHOP, as_of="2024-02-01"))


def holdout(orders: pd.DataFrame, as_of: Any, until: Any) -> dict[str, int]:
    con, t = P.duckdb_tables({"orders": orders})
    got = P.fetch_frame(con, P.holdout_frequency(t, as_of, until), ["customer_id"])
    assert list(got.columns) == list(P.HOLDOUT_COLUMNS) and str(got["holdout_frequency"].dtype) == "int64"
    return dict(zip(got["customer_id"], got["holdout_frequency"].tolist(), strict=True))


def test_holdout_frequency_by_hand() -> None:
    extra = pd.DataFrame({
        "order_id": [f"x{i}" for i in range(7)],
        "customer_id": ["b", "b", "b", "d", "d", "a", "e"],
        "ts": pd.to_datetime(["2024-02-03 10:00", "2024-02-03 18:00", "2024-02-10", "2024-02-05", "2024-02-06",
                              "2024-03-01", "2024-03-02"], utc=True, format="ISO8601"),
        "revenue": [1.0] * 7,
    })
    data = pd.concat([SHOP, extra], ignore_index=True)
    # b: Feb 3 (twice, one purchase) and Feb 10; d: first seen Feb 5, so only Feb 6 repeats;
    # a's Mar 1 order is at `until`, e's after it: not read.
    assert holdout(data, "2024-02-01", "2024-03-01") == {"a": 0, "b": 2, "c": 0, "d": 1}
    # A cutoff inside a day: a purchase day already seen before it is not counted again.
    assert holdout(data, "2024-02-03 12:00", "2024-03-01")["b"] == 1
    assert holdout(data, "2024-02-01", "2024-03-01") == holdout(data[data["ts"] < pd.Timestamp("2024-03-01",
                                                                                              tz="UTC")],
                                                                "2024-02-01", "2024-03-01")


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: P.rfm_summary_frame(SHOP, as_of="2024-02-01", time_unit="M"),  # type: ignore[arg-type]
         "time_unit must be one of"),
        (lambda: P.rfm_summary_frame(SHOP.assign(ts=SHOP["ts"].dt.tz_localize(None)), as_of="2024-02-01"),
         "orders: column 'ts' must be timezone-aware"),
        (lambda: P.rfm_summary_frame(SHOP.drop(columns="revenue"), as_of="2024-02-01"),
         "orders: missing column 'revenue'"),
        (lambda: P.holdout_frequency(P.duckdb_tables({"orders": SHOP})[1], "2024-02-01", "2024-01-01"),
         "must be after as_of"),
    ],
)
def test_summary_bad_inputs(call, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=message):
        call()
