"""Benchmark: the churn model's training snapshots, feature layer against the former pandas code.

``cadence fit churn`` trains on :func:`cadence.features.purchases.stacked_snapshots`
at the six cutoffs of :func:`cadence.workflows.fitting.training_cutoffs`,
followed up to ``as_of`` (``workflows.fitting._snapshots``: the orders are
uploaded to an embedded DuckDB once, the snapshots fetched exactly). The
baseline is the pandas code that computed them before the feature layer
(``models/survival.py`` at commit 71fbaf8, copied below unchanged but for its
column names); the script checks both give the same rows (values exact; the
mean revenue per day to 1e-15 relative, where the baseline's float sums and
the feature layer's exact sums may differ in the last bit).

Timed, in one process, alternating the two sides ``--repeats`` times:

* ``pandas``: the baseline's ``stacked_snapshots(orders, cutoffs, as_of)``;
* ``feature layer``: ``duckdb_tables`` (upload) + ``fetch_frame(stacked_snapshots(...))``,
  a fresh DuckDB each time, as one ``cadence fit churn`` does;

plus the feature layer's first call in the process (Ibis and DuckDB warm-up)
on its own line. Run::

    cadence generate --out /tmp/cadence-demo-shop --quiet   # the demo's shop: 20,000 customers, seed 0
    .venv/bin/python benchmarks/bench_snapshots.py --shop /tmp/cadence-demo-shop

To time another commit's feature layer against the same baseline, export its
package and put it first on the path::

    mkdir -p /tmp/old && git archive 2dec8b7 src | tar -x -C /tmp/old && mv /tmp/old/src /tmp/old/cadence
    PYTHONPATH=/tmp/old .venv/bin/python benchmarks/bench_snapshots.py --shop /tmp/cadence-demo-shop
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cadence.data.io import read_tables
from cadence.features import purchases
from cadence.workflows.fitting import training_cutoffs

# ---------------------------------------------------------------------------
# Baseline: the pandas snapshots of models/survival.py at 71fbaf8
# ---------------------------------------------------------------------------


def _utc(ts: Any, name: str) -> pd.Timestamp:
    out = pd.Timestamp(ts)
    if out is pd.NaT:
        raise ValueError(f"{name} must be a timestamp, got {ts!r}")
    return out.tz_localize("UTC") if out.tzinfo is None else out.tz_convert("UTC")


def _order_days(orders: pd.DataFrame) -> pd.DataFrame:
    ts = orders["ts"].dt.tz_convert("UTC")
    return pd.DataFrame({"customer_id": orders["customer_id"], "ts": ts, "day": ts.dt.floor("D"),
                         "revenue": orders["revenue"].astype("float64")})


def _days(delta: Any) -> Any:
    if isinstance(delta, pd.Series):
        return delta.dt.total_seconds() / 86_400.0
    return pd.to_timedelta(delta).total_seconds() / 86_400.0


def pandas_snapshots(orders: pd.DataFrame, as_of: Any, *, until: Any) -> pd.DataFrame:
    """The baseline's ``purchase_snapshots(orders, as_of, until=until)``."""
    cutoff = _utc(as_of, "as_of")
    days = _order_days(orders)
    end = _utc(until, "until")
    past = days[days["ts"] < cutoff]
    per_day = past.groupby(["customer_id", "day"], sort=True)["revenue"].sum().reset_index()
    g = per_day.groupby("customer_id", sort=True)
    first, last = g["day"].min(), g["day"].max()
    n_days = g.size()
    frequency = (n_days - 1).astype("int64")
    span = _days(last - first)
    recency = (_days(cutoff - last) - 0.5).clip(lower=0.0)
    future = days[(days["ts"] >= cutoff) & (days["ts"] < end)]
    future = future[future["customer_id"].isin(last.index)]
    future = future[future["day"] > last.reindex(future["customer_id"]).to_numpy()]
    next_day = future.groupby("customer_id")["day"].min().reindex(last.index)
    event = next_day.notna()
    duration = np.where(event, _days(next_day - last), _days(end - last) - 0.5).astype("float64")
    recency = np.minimum(recency.to_numpy(), duration - 0.5 * event.to_numpy())
    return pd.DataFrame({
        "customer_id": last.index.to_numpy(),
        "as_of": cutoff,
        "last_purchase_at": last.to_numpy(),
        "frequency": frequency.to_numpy(),
        "elapsed_days": recency,
        "purchase_tenure_days": (_days(cutoff - first) - 0.5).clip(lower=0.0).to_numpy(),
        "mean_gap_days": np.where(frequency > 0, span / frequency.clip(lower=1), 0.0),
        "monetary": (g["revenue"].sum() / n_days).to_numpy(),
        "duration_days": duration,
        "event": event.to_numpy().astype("int64"),
    })


def pandas_stacked(orders: pd.DataFrame, cutoffs: list[Any], until: Any) -> pd.DataFrame:
    """The baseline's ``stacked_snapshots``."""
    return pd.concat([pandas_snapshots(orders, c, until=until) for c in cutoffs], ignore_index=True)


# ---------------------------------------------------------------------------
# The feature layer, as ``cadence fit churn`` calls it
# ---------------------------------------------------------------------------


def feature_layer_stacked(orders: pd.DataFrame, cutoffs: list[Any], until: Any) -> pd.DataFrame:
    con, t = purchases.duckdb_tables({"orders": orders})
    return purchases.fetch_frame(con, purchases.stacked_snapshots(t, cutoffs, until), ["as_of", "customer_id"])


def _check_same(base: pd.DataFrame, layer: pd.DataFrame) -> None:
    # Up to 2dec8b7 the snapshot's two times had the customer features' names; renamed here so the
    # script also times that code (see the module docstring).
    layer = layer.rename(columns={"recency_days": "elapsed_days", "tenure_days": "purchase_tenure_days"})
    base = base.sort_values(["as_of", "customer_id"], kind="stable").reset_index(drop=True)
    base["last_purchase_at"] = base["last_purchase_at"].astype("datetime64[ns, UTC]")
    base["as_of"] = base["as_of"].astype("datetime64[ns, UTC]")
    exact = [c for c in base.columns if c != "monetary"]
    pd.testing.assert_frame_equal(layer[exact], base[exact], check_exact=True, check_dtype=False)
    np.testing.assert_allclose(layer["monetary"], base["monetary"], rtol=1e-15, atol=0.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shop", type=Path, default=Path("/tmp/cadence-demo-shop"))
    ap.add_argument("--as-of", default=None, help="cutoff (default: the demo's, the last 90 days held out)")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    if not (args.shop / "orders.parquet").exists():
        raise SystemExit(f"{args.shop}: no orders.parquet; run `cadence generate --out {args.shop} --quiet` first")

    orders = read_tables(args.shop, ["orders"])["orders"]
    if args.as_of is None:
        first, end = orders["ts"].min().floor("D"), orders["ts"].max().floor("D") + pd.Timedelta(1, "D")
        from cadence.workflows.splits import holdout_cutoff

        as_of = holdout_cutoff(first, end, 90, whole_days=True)
    else:
        as_of = pd.Timestamp(args.as_of, tz="UTC")
    cutoffs = training_cutoffs(orders, as_of)

    t0 = time.perf_counter()
    layer = feature_layer_stacked(orders, cutoffs, as_of)
    first_call = time.perf_counter() - t0
    _check_same(pandas_stacked(orders, cutoffs, as_of), layer)

    times: dict[str, list[float]] = {"pandas": [], "feature layer": []}
    sides = {"pandas": pandas_stacked, "feature layer": feature_layer_stacked}
    for i in range(args.repeats):
        for name in (list(sides) if i % 2 == 0 else list(sides)[::-1]):
            t0 = time.perf_counter()
            sides[name](orders, cutoffs, as_of)
            times[name].append(time.perf_counter() - t0)

    load = os.getloadavg()
    print(f"shop {args.shop}: {len(orders):,} orders; as_of {as_of.date()}; "
          f"{len(cutoffs)} cutoffs {cutoffs[0].date()}..{cutoffs[-1].date()}; {len(layer):,} training rows (same on both sides)")
    print(f"machine: {os.cpu_count()} cores, {platform.python_version()}, load average {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}")
    print(f"feature layer, first call in the process: {first_call:.2f} s")
    print(f"{'side':<14} {'min':>7} {'median':>7}   runs ({args.repeats}, alternating)")
    for name, ts in times.items():
        print(f"{name:<14} {min(ts):6.3f}s {statistics.median(ts):6.3f}s   " + " ".join(f"{t:.3f}" for t in ts))
    ratio = statistics.median(times["feature layer"]) / statistics.median(times["pandas"])
    print(f"feature layer / pandas (medians): {ratio:.2f}x")


if __name__ == "__main__":
    main()
