"""Customer-feature snapshots on a grid and the as-of join that gives each decision its context."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cadence.data.io import read_tables
from cadence.features.customer import customer_features, feature_columns
from cadence.features.engine import connect, fetch_arrow, register
from cadence.features.policy_context import (
    CUSTOMER_COLUMNS,
    SNAPSHOT_AT,
    PolicyContext,
    as_of_join,
    customer_snapshots,
    snapshot_times,
)

TABLES = ("customers", "orders", "order_items", "events", "messages", "products")


def test_snapshots_are_the_feature_table_at_each_cutoff(small_shop: Path) -> None:
    con = connect()
    t = register(con, {k: v for k, v in read_tables(small_shop).items() if k in TABLES})
    times = snapshot_times("2025-02-01", "2025-03-01", "14D")
    snaps = customer_snapshots(con, t, times)
    assert list(snaps.columns) == ["customer_id", SNAPSHOT_AT, *feature_columns()][:2] + [c for c in feature_columns() if c != "customer_id"]
    assert len(CUSTOMER_COLUMNS) == 69
    for cut in times:
        got = snaps[snaps[SNAPSHOT_AT] == cut].drop(columns=SNAPSHOT_AT).reset_index(drop=True)
        # The same query compiled for this cutoff (the snapshots compile it once and swap the times).
        want = fetch_arrow(con, customer_features(t, cut)).to_pandas().sort_values("customer_id")
        pd.testing.assert_frame_equal(got, want.reset_index(drop=True))


def test_the_join_takes_the_latest_snapshot_at_or_before_each_time() -> None:
    rng = np.random.default_rng(0)
    ids = np.array(["a", "b", "c"])
    snap_t = pd.to_datetime("2025-01-01", utc=True) + pd.to_timedelta(rng.integers(0, 60 * 86400, 40), unit="s")
    snaps = pd.DataFrame({"customer_id": rng.choice(ids[:2], 40), SNAPSHOT_AT: snap_t, "x": np.arange(40)})
    snaps = snaps.drop_duplicates(["customer_id", SNAPSHOT_AT])
    rows = pd.DataFrame({"customer_id": rng.choice(ids, 200),
                         "triggered_at": pd.to_datetime("2024-12-25", utc=True)
                         + pd.to_timedelta(rng.integers(0, 80 * 86400, 200), unit="s")}, index=np.arange(200)[::-1])
    got = as_of_join(rows, snaps, time=SNAPSHOT_AT)
    assert got.index.equals(rows.index)
    for i, r in rows.iterrows():
        before = snaps[(snaps["customer_id"] == r["customer_id"]) & (snaps[SNAPSHOT_AT] <= r["triggered_at"])]
        if before.empty:
            assert np.isnan(got.loc[i, "x"]) and pd.isna(got.loc[i, SNAPSHOT_AT])
        else:
            assert got.loc[i, "x"] == before.loc[before[SNAPSHOT_AT].idxmax(), "x"]


def test_a_snapshot_at_the_decision_time_counts_and_one_a_second_later_does_not() -> None:
    t = pd.Timestamp("2025-01-08", tz="UTC")
    snaps = pd.DataFrame({"customer_id": ["a", "a"], SNAPSHOT_AT: [t, t + pd.Timedelta(seconds=1)], "x": [1, 2]})
    rows = pd.DataFrame({"customer_id": ["a", "a"], "triggered_at": [t, t + pd.Timedelta(milliseconds=999)]})
    assert as_of_join(rows, snaps, time=SNAPSHOT_AT)["x"].tolist() == [1.0, 1.0]


def test_context_attach_adds_both_families_and_keeps_the_rows() -> None:
    ts = pd.to_datetime(["2025-01-01", "2025-01-08"], utc=True)
    ctx = PolicyContext(customer=pd.DataFrame({"customer_id": ["a", "a"], SNAPSHOT_AT: ts, "orders_all": [0, 3]}),
                        scores=pd.DataFrame({"customer_id": ["a"], "scored_at": ts[1:], "p_alive": [0.7]}))
    rows = pd.DataFrame({"customer_id": ["a", "a", "z"], "triggered_at": ts.append(ts[1:]), "orders_all": [9, 9, 9]},
                        index=[5, 6, 7])
    out = ctx.attach(rows)
    assert out.index.tolist() == [5, 6, 7]
    assert out["orders_all"].tolist()[:2] == [0.0, 3.0] and np.isnan(out.loc[7, "orders_all"])
    assert np.isnan(out.loc[5, "p_alive"]) and out.loc[6, "p_alive"] == 0.7


@pytest.mark.parametrize(("call", "message"), [
    (lambda: snapshot_times("2025-02-01", "2025-01-01"), "end .* is before start"),
    (lambda: snapshot_times("2025-01-01", "2025-02-01", "-7D"), "every must be positive"),
    (lambda: as_of_join(pd.DataFrame({"customer_id": ["a"]}), pd.DataFrame({"customer_id": ["a"], SNAPSHOT_AT: [
        pd.Timestamp("2025-01-01", tz="UTC")]}), time=SNAPSHOT_AT), "rows: missing column 'triggered_at'"),
    (lambda: as_of_join(pd.DataFrame({"customer_id": ["a"], "triggered_at": [pd.Timestamp("2025-01-01", tz="UTC")]}),
                        pd.DataFrame({"customer_id": ["a"]}), time=SNAPSHOT_AT), "snapshots: missing column 'snapshot_at'"),
    (lambda: customer_snapshots(connect(), {}, []), "no cutoffs"),
])
def test_bad_input_is_named(call, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=message):
        call()
