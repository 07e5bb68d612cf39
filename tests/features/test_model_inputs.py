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
from cadence.models.btyd import BetaGeoModel
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
    """Equal values and dtypes; the monetary mean may differ in its last bits (summation order)."""
    got = got.set_index("customer_id")
    pd.testing.assert_frame_equal(got.drop(columns="monetary_value"), want.drop(columns="monetary_value"),
                                  check_exact=True)
    pd.testing.assert_series_equal(got["monetary_value"], want["monetary_value"], check_exact=False,
                                   rtol=1e-12, atol=0.0)


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


def _reference_rfm(orders: pd.DataFrame, as_of: pd.Timestamp, time_unit: str, merge_same_day: bool) -> pd.DataFrame:
    """The BTYD summary written out customer by customer in plain Python, to check the Ibis one against.

    Fader, Hardie & Lee's definitions: a purchase per UTC day (or per order),
    clock from the first purchase day, ``T`` to the day of the last instant
    before ``as_of``, monetary value the mean of the repeat purchases.
    """
    unit = {"D": 1, "W": 7}[time_unit]
    end_day = (as_of - pd.Timedelta(1, "ns")).floor("D")
    rows = {}
    past = orders[orders["ts"] < as_of].sort_values(["ts", "order_id"])
    for cid, own in past.groupby("customer_id", sort=True):
        if merge_same_day:
            by_day: dict[pd.Timestamp, float] = {}
            for ts, revenue in zip(own["ts"], own["revenue"], strict=True):
                by_day[ts.floor("D")] = by_day.get(ts.floor("D"), 0.0) + revenue
            days, values = sorted(by_day), [by_day[d] for d in sorted(by_day)]
        else:
            days, values = [ts.floor("D") for ts in own["ts"]], list(own["revenue"])
        repeats = values[1:]
        rows[cid] = {"frequency": len(days) - 1, "recency": (days[-1] - days[0]).days / unit,
                     "T": (end_day - days[0]).days / unit,
                     "monetary_value": sum(repeats) / len(repeats) if repeats else 0.0}
    out = pd.DataFrame.from_dict(rows, orient="index").astype({"frequency": "int64"})
    out.index.name = "customer_id"
    return out


@pytest.mark.parametrize("time_unit", ["W", "D"])
def test_rfm_summary_against_a_reference_on_a_generated_shop(small_shop: Path, duck: Any, time_unit: str) -> None:
    orders = read_tables(small_shop, ["orders"])["orders"]
    t = load_tables(duck, small_shop, ["orders"])
    wants = {merge: _reference_rfm(orders, AS_OF, time_unit, merge) for merge in (True, False)}
    # The shop has repeat buyers and same-day orders, so both conventions are exercised.
    assert len(wants[True]) > 150 and (wants[True]["frequency"] > 0).sum() > 30
    assert (wants[False]["frequency"] > wants[True]["frequency"]).any()
    for merge, want in wants.items():
        got = P.fetch_frame(duck, P.rfm_summary(t, AS_OF, time_unit=time_unit, merge_same_day=merge),
                            ["customer_id"])
        _assert_rfm_equal(got, want.astype({"recency": "float64", "T": "float64"}))


def test_rfm_summary_reproduces_the_published_cdnow_summary(pytestconfig: pytest.Config, duck: Any) -> None:
    """Fader, Hardie & Lee's CDNOW sample summary and their BG/NBD fit on it (r, alpha, a, b to 4 digits)."""
    cdnow = pytestconfig.rootpath / "data/external/cdnow"
    t = load_tables(duck, cdnow / "sample", ["orders"])
    got = P.fetch_frame(duck, P.rfm_summary(t, "1997-10-01", start="1997-01-01", time_unit="W"), ["customer_id"])
    got = got.set_index("customer_id")
    published = pd.read_csv(cdnow / "raw" / "cdnow_customers_summary.csv")
    # The summary is keyed by the sample's own id; the raw sample maps it to the master id.
    raw = pd.read_csv(cdnow / "raw" / "CDNOW_sample.txt", sep=r"\s+", header=None, dtype=str)
    master_id = raw.drop_duplicates(1).set_index(1)[0]
    published.index = pd.Index(master_id.loc[published["ID"].map("{:04d}".format)].to_numpy())
    assert len(got) == len(published) == 2357
    published = published.loc[got.index]
    np.testing.assert_array_equal(got["frequency"], published["frequency"])
    # The published values are rounded to two decimals.
    np.testing.assert_allclose(got["recency"], published["recency"], atol=0.005)
    np.testing.assert_allclose(got["T"], published["T"], atol=0.005)
    params = BetaGeoModel().fit(got).params_
    for name, value in {"r": 0.2426, "alpha": 4.4135, "a": 0.7930, "b": 2.4262}.items():
        assert params[name] == pytest.approx(value, abs=6e-4), name


def test_snapshot_times_against_the_customer_features(small_shop: Path, duck: Any) -> None:
    """Two clocks, two names, one relation: the snapshot's times are on the purchase-day grid.

    ``customer_features``' ``recency_days`` and ``first_order_days_ago`` are
    exact times since the last and first order; the snapshot's
    ``elapsed_days`` and ``purchase_tenure_days`` count those orders' days at
    their midpoints, so with a midnight cutoff each is the exact time plus
    the order's time of day, less half a day. Different numbers for almost
    every customer: that is why they do not share a name.
    """
    t = load_tables(duck, small_shop, ["customers", "orders"])
    snap = P.fetch_frame(duck, P.purchase_snapshots(t, AS_OF, horizon_days=30), ["customer_id"])
    feats = P.fetch_frame(duck, customer_features(t, AS_OF, families=["rfm"]), ["customer_id"])
    assert not {"elapsed_days", "purchase_tenure_days"} & set(feats.columns)
    assert not {"recency_days", "tenure_days", "first_order_days_ago"} & set(snap.columns)
    both = snap.merge(feats[["customer_id", "recency_days", "first_order_days_ago"]], on="customer_id")
    assert len(both) == len(snap) > 100
    ts = read_tables(small_shop, ["orders"])["orders"].query("ts < @AS_OF").groupby("customer_id")["ts"]

    def into_day(at: pd.Series) -> np.ndarray:
        """Whole seconds into the UTC day, in days (the customer features count whole seconds)."""
        return (at - at.dt.floor("D")).dt.total_seconds().reindex(both["customer_id"]).to_numpy() // 1 / 86_400

    np.testing.assert_allclose(both["elapsed_days"], both["recency_days"] + into_day(ts.max()) - 0.5, atol=1e-9)
    np.testing.assert_allclose(both["purchase_tenure_days"],
                               both["first_order_days_ago"] + into_day(ts.min()) - 0.5, atol=1e-9)
    assert (np.abs(both["elapsed_days"] - both["recency_days"]) > 1e-6).mean() > 0.9


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
        cov = ["customer_id", "as_of", "last_purchase_at", "frequency", "elapsed_days", "purchase_tenure_days",
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
