"""Churn-risk calibration against the synthetic shop's truth, over seeds (issue 4).

The issue asks that the survival model be at least as well calibrated as
BG/NBD against the true churn probability. The CI test checks one seed
(``tests/models/test_survival.py``); this script repeats the comparison over
several seeds and prints the expected calibration error (ECE, 10 bins) of
``TimeToNextPurchase(family="auto")`` and of BG/NBD at 30/60/90 days, per seed
and on average, with the share of seeds where the survival model is at least
as well calibrated.

Usage: ``python benchmarks/calibration_churn.py [--seeds 10] [--customers 4000]``
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from cadence.data.io import read_tables
from cadence.features import purchases
from cadence.models import evaluation as ev
from cadence.models.btyd import BetaGeoModel
from cadence.models.survival import TimeToNextPurchase
from cadence.synthetic import ShopConfig, generate_shop, load_config, true_churn_risk
from cadence.workflows.fitting import training_cutoffs

HORIZONS = (30, 60, 90)


def churn_ece(shop: Path, as_of: pd.Timestamp) -> dict[tuple[str, int], float]:
    """ECE against the truth of the survival model ('auto') and BG/NBD at each horizon."""
    orders = read_tables(shop, ["orders"])["orders"]
    con, t = purchases.duckdb_tables({"orders": orders})
    train = purchases.fetch_frame(con, purchases.stacked_snapshots(t, training_cutoffs(orders, as_of), as_of),
                                  ["as_of", "customer_id"])
    now = purchases.fetch_frame(con, purchases.purchase_snapshots(t, as_of, horizon_days=90), ["customer_id"])
    truth = true_churn_risk(load_config(shop), as_of).reindex(now["customer_id"])
    rfm = purchases.fetch_frame(con, purchases.rfm_summary(t, as_of, time_unit="D"), ["customer_id"])
    rfm = rfm.set_index("customer_id").reindex(now["customer_id"])
    bg = BetaGeoModel().fit(rfm)
    surv = TimeToNextPurchase(family="auto").fit(train, train)
    out = {}
    for h in HORIZONS:
        actual = truth[f"churn_{h}d"].to_numpy()
        for name, risk in (("survival", surv.churn_risk(now, h)), ("bgnbd", ev.bgnbd_churn_risk(bg, rfm, h))):
            out[(name, h)] = ev.expected_calibration_error(ev.calibration_table(risk, actual))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--customers", type=int, default=4000)
    ap.add_argument("--days", type=int, default=365)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in tqdm(range(1, args.seeds + 1), desc="seeds"):
            shop = generate_shop(ShopConfig(customers=args.customers, days=args.days, seed=seed),
                                 Path(tmp) / f"s{seed}", progress=False)
            as_of = pd.Timestamp(load_config(shop).start, tz="UTC") + pd.Timedelta(days=args.days - 90)
            for (model, h), ece in churn_ece(shop, as_of).items():
                rows.append({"seed": seed, "model": model, "horizon": h, "ece": ece})
    t = pd.DataFrame(rows).pivot_table(index=["seed", "horizon"], columns="model", values="ece").reset_index()
    t["survival <= bgnbd"] = t["survival"] <= t["bgnbd"]
    t["difference"] = t["survival"] - t["bgnbd"]
    print(t.round(4).to_string(index=False))
    g = t.groupby("horizon")
    summary = pd.DataFrame({
        "survival ECE (mean)": g["survival"].mean(), "BG/NBD ECE (mean)": g["bgnbd"].mean(),
        "mean difference": g["difference"].mean(),
        "95% interval": g["difference"].agg(_interval),
        "share of seeds survival <= BG/NBD": g["survival <= bgnbd"].mean(),
    })
    print(summary.round(4).to_string())


def _interval(diff: pd.Series) -> str:
    se = diff.std(ddof=1) / np.sqrt(len(diff))
    return f"[{diff.mean() - 1.96 * se:+.4f}, {diff.mean() + 1.96 * se:+.4f}]"


if __name__ == "__main__":
    main()
