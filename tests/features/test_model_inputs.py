"""The models fit on exactly what the feature layer writes, on DuckDB and Spark, point in time.

Issue 21's check: the inputs used to fit the churn model and the BG/NBD
summary are the feature layer's for the same cutoff (same values, same
dtypes), whichever engine computes them; adding rows at or after ``as_of``
changes none of them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from cadence.data.io import read_tables
from cadence.features import purchases as P
from cadence.features.customer import customer_features
from cadence.features.engagement import send_time_frames
from cadence.models.btyd import rfm_summary as pandas_rfm_summary
from cadence.workflows import fitting
from cadence.workflows.features import load_tables

AS_OF = pd.Timestamp("2025-04-01", tz="UTC")  # the small shop runs to 2025-04-30
TABLES = ["orders", "order_items", "messages", "customers", "events"]


class _Captured(Exception):
    """Stops a fit once its input is captured (the fit itself is not under test here)."""


def _capture_churn_training(monkeypatch: pytest.MonkeyPatch, shop: Path) -> pd.DataFrame:
    seen: dict[str, pd.DataFrame] = {}

    def capture(train: pd.DataFrame, *args: Any, **kwargs: Any) -> Any:
        seen["train"] = train
        raise _Captured

    monkeypatch.setattr(fitting, "_churn_model", capture)
    with pytest.raises(_Captured):
        fitting.fit_model("churn", shop, AS_OF, tracking_uri="sqlite:///:memory:")
    return seen["train"]


def _capture_bgnbd_summary(monkeypatch: pytest.MonkeyPatch, shop: Path) -> pd.DataFrame:
    seen: dict[str, pd.DataFrame] = {}

    def capture(self: Any, rfm: pd.DataFrame, *args: Any, **kwargs: Any) -> Any:
        seen["rfm"] = rfm
        raise _Captured

    monkeypatch.setattr(fitting.BetaGeoModel, "fit", capture)
    with pytest.raises(_Captured):
        fitting.fit_model("btyd", shop, AS_OF, tracking_uri="sqlite:///:memory:")
    return seen["rfm"]


def _assert_rfm_equal(got: pd.DataFrame, want: pd.DataFrame) -> None:
    """Equal values and dtypes; the monetary mean may differ in its last bit (summation order)."""
    got = got.set_index("customer_id")
    pd.testing.assert_frame_equal(got.drop(columns="monetary_value"), want.drop(columns="monetary_value"),
                                  check_exact=True)
    pd.testing.assert_series_equal(got["monetary_value"], want["monetary_value"], check_exact=False,
                                   rtol=1e-14, atol=0.0)


@pytest.mark.parametrize("engine", ["duckdb", "spark"])
def test_churn_and_bgnbd_fit_on_the_feature_layer(engine: str, small_shop: Path, duck: Any,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  request: pytest.FixtureRequest) -> None:
    con = duck if engine == "duckdb" else request.getfixturevalue("spark_con")
    t = load_tables(con, small_shop, ["orders"])
    orders = read_tables(small_shop, ["orders"])["orders"]
    train = _capture_churn_training(monkeypatch, small_shop)
    written = P.fetch_frame(con, P.stacked_snapshots(t, fitting.training_cutoffs(orders, AS_OF), AS_OF),
                            ["as_of", "customer_id"])
    assert len(written) > 500
    pd.testing.assert_frame_equal(train, written, check_exact=True)

    rfm = _capture_bgnbd_summary(monkeypatch, small_shop)
    start = orders["ts"].min().floor("D")
    _assert_rfm_equal(P.fetch_frame(con, P.rfm_summary(t, AS_OF, start=start, time_unit="W"), ["customer_id"]), rfm)


@pytest.mark.parametrize("time_unit", ["W", "D"])
def test_rfm_summary_is_btyds_on_a_generated_shop(small_shop: Path, duck: Any, time_unit: str) -> None:
    orders = read_tables(small_shop, ["orders"])["orders"]
    t = load_tables(duck, small_shop, ["orders"])
    for merge in (True, False):
        got = P.fetch_frame(duck, P.rfm_summary(t, AS_OF, time_unit=time_unit, merge_same_day=merge),
                            ["customer_id"])
        _assert_rfm_equal(got, pandas_rfm_summary(orders, AS_OF, time_unit=time_unit, merge_same_day=merge))


def test_rfm_summary_is_btyds_on_cdnow(pytestconfig: pytest.Config, duck: Any) -> None:
    cdnow = pytestconfig.rootpath / "data/external/cdnow/sample"
    orders = read_tables(cdnow, ["orders"])["orders"]
    t = load_tables(duck, cdnow, ["orders"])
    got = P.fetch_frame(duck, P.rfm_summary(t, "1997-10-01", start="1997-01-01", time_unit="W"), ["customer_id"])
    assert len(got) == 2357
    _assert_rfm_equal(got, pandas_rfm_summary(orders, "1997-10-01", start="1997-01-01", time_unit="W"))


def test_snapshot_recency_against_the_customer_features(small_shop: Path, duck: Any) -> None:
    """Two definitions, one relation: the snapshot's truncation time is on the purchase-day grid.

    ``customer_features``' ``recency_days`` is the exact time since the last
    order; the snapshot's counts the last purchase day at its midpoint, so
    with a midnight cutoff it is that time plus the order's time of day, less
    half a day.
    """
    t = load_tables(duck, small_shop, ["customers", "orders"])
    snap = P.fetch_frame(duck, P.purchase_snapshots(t, AS_OF, horizon_days=30), ["customer_id"])
    feats = P.fetch_frame(duck, customer_features(t, AS_OF, families=["rfm"]), ["customer_id"])
    both = snap.merge(feats[["customer_id", "recency_days"]], on="customer_id", suffixes=("", "_features"))
    assert len(both) == len(snap) > 100
    last = read_tables(small_shop, ["orders"])["orders"].query("ts < @AS_OF").groupby("customer_id")["ts"].max()
    into_day = (last - last.dt.floor("D")).dt.total_seconds().reindex(both["customer_id"]).to_numpy() // 1 / 86_400
    np.testing.assert_allclose(both["recency_days"], both["recency_days_features"] + into_day - 0.5, atol=1e-9)


def _with_future(frames: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Every order, item, message and event copied to at or after AS_OF (new ids)."""
    out = dict(frames)
    shift = {"orders": "ts", "events": "ts", "messages": "sent_at"}
    for name, col in shift.items():
        df = frames[name]
        late = df.assign(**{col: AS_OF + (df[col] - df[col].min())})
        for c in ("opened_at", "clicked_at"):
            if c in late:
                late[c] = AS_OF + pd.Timedelta(1, "h")
        for key in ("order_id", "event_id", "message_id"):
            if key in late:
                late[key] = "late-" + late[key].astype(str)
        out[name] = pd.concat([df, late], ignore_index=True)
    items = frames["order_items"]
    out["order_items"] = pd.concat([items, items.assign(order_id="late-" + items["order_id"].astype(str))],
                                   ignore_index=True)
    return out


def test_rows_at_or_after_as_of_change_no_input(small_shop: Path) -> None:
    frames = read_tables(small_shop, TABLES)

    def inputs(tables: dict[str, pd.DataFrame]) -> dict[str, Any]:
        con, t = P.duckdb_tables(tables)
        cov = ["customer_id", "as_of", "last_purchase_at", "frequency", "recency_days", "tenure_days",
               "mean_gap_days", "monetary"]
        return {
            "rfm": P.fetch_frame(con, P.rfm_summary(t, AS_OF), ["customer_id"]),
            "snapshot covariates": P.fetch_frame(con, P.purchase_snapshots(t, AS_OF, horizon_days=10),
                                                 ["customer_id"])[cov],
            "stacked up to as_of": P.fetch_frame(con, P.stacked_snapshots(t, [AS_OF - pd.Timedelta(30, "D")], AS_OF),
                                                 ["customer_id"]),
            "gaps": P.fetch_frame(con, P.purchase_gaps(t, AS_OF), ["customer_id", "product_id", "day"]),
            "send time": send_time_frames(con, t, AS_OF),
        }

    before, after = inputs(frames), inputs(_with_future(frames))
    assert len(read_tables(small_shop, ["orders"])["orders"].query("ts >= @AS_OF")) > 0  # the shop has a future
    for name in ("rfm", "snapshot covariates", "stacked up to as_of", "gaps"):
        assert len(before[name]) > 0, name
        pd.testing.assert_frame_equal(before[name], after[name], check_exact=True, obj=name)
    for b, a in zip(before["send time"], after["send time"], strict=True):
        assert len(b) > 0
        pd.testing.assert_frame_equal(b, a, check_exact=True)
