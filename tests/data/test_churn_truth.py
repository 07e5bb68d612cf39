"""The synthetic shop's true churn risk: calibrated against what the world then did."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cadence.data.io import read_tables
from cadence.synthetic import ShopConfig, generate_shop, load_truth, true_churn_risk

CFG = ShopConfig(customers=3_000, days=200, seed=21)
AS_OF = pd.Timestamp("2025-05-01", tz="UTC")  # day 120 of 200
HORIZONS = (30, 60)


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_shop(CFG, tmp_path_factory.mktemp("truth") / "shop")


@pytest.fixture(scope="module")
def outcomes(shop: Path) -> pd.DataFrame:
    """Per customer and horizon: no order at all / no organic-or-replenishment order in the window."""
    orders = read_tables(shop, ["orders"])["orders"]
    source = load_truth(shop)["orders"].set_index("order_id")["source"]
    organic = source.reindex(orders["order_id"]).isin(["regular", "replenishment"]).to_numpy()
    customers = read_tables(shop, ["customers"])["customers"]["customer_id"].sort_values()
    out = pd.DataFrame(index=pd.Index(customers, name="customer_id"))
    for h in HORIZONS:
        window = (orders["ts"] >= AS_OF) & (orders["ts"] < AS_OF + pd.Timedelta(h, "D"))
        out[f"quiet_{h}d"] = ~out.index.isin(orders.loc[window, "customer_id"])
        out[f"organic_quiet_{h}d"] = ~out.index.isin(orders.loc[window & organic, "customer_id"])
    return out


@pytest.fixture(scope="module")
def truth() -> pd.DataFrame:
    return true_churn_risk(CFG, AS_OF, HORIZONS, draws=32, seed=0)


@pytest.fixture(scope="module")
def organic_truth() -> pd.DataFrame:
    return true_churn_risk(CFG, AS_OF, HORIZONS, messages=False)


def _z_scores(p: np.ndarray, happened: np.ndarray, bins: int = 10) -> tuple[float, np.ndarray]:
    """z of (observed - expected) quiet customers overall and per equal-count bin of p."""
    order = np.argsort(p, kind="stable")
    groups = np.array_split(order, bins)

    def z(rows: np.ndarray) -> float:
        var = float((p[rows] * (1 - p[rows])).sum())
        diff = float(happened[rows].sum() - p[rows].sum())
        return diff / np.sqrt(var) if var > 1e-9 else (0.0 if abs(diff) < 1e-9 else np.inf)

    return z(order), np.array([z(g) for g in groups])


@pytest.mark.parametrize("h", HORIZONS)
def test_truth_is_calibrated_against_every_order(truth: pd.DataFrame, outcomes: pd.DataFrame, h: int) -> None:
    # Stated tolerance: |z| < 3 overall and < 3.5 in each tenth of the truth
    # (3,000 customers; the Monte Carlo error of the truth is ~0.01 each).
    p = truth[f"churn_{h}d"].reindex(outcomes.index).to_numpy()
    overall, per_bin = _z_scores(p, outcomes[f"quiet_{h}d"].to_numpy(float))
    assert abs(overall) < 3, overall
    assert (np.abs(per_bin) < 3.5).all(), per_bin.round(2)


@pytest.mark.parametrize("h", HORIZONS)
def test_organic_truth_is_calibrated_against_organic_orders(
    organic_truth: pd.DataFrame, outcomes: pd.DataFrame, h: int
) -> None:
    p = organic_truth[f"churn_{h}d"].reindex(outcomes.index).to_numpy()
    overall, per_bin = _z_scores(p, outcomes[f"organic_quiet_{h}d"].to_numpy(float))
    assert abs(overall) < 3, overall
    assert (np.abs(per_bin) < 3.5).all(), per_bin.round(2)


def test_truth_structure(truth: pd.DataFrame, organic_truth: pd.DataFrame) -> None:
    assert list(truth.columns) == ["alive", "purchase_rate_per_day", "replenishment_due_at", "churn_30d",
                                   "churn_60d", "mc_se_30d", "mc_se_60d"]
    assert truth.index.is_monotonic_increasing and len(truth) == CFG.customers
    assert ((truth["churn_60d"] >= 0) & (truth["churn_60d"] <= truth["churn_30d"]) & (truth["churn_30d"] <= 1)).all()
    # Messages only add orders; the lapsed never buy on their own again.
    assert (truth["churn_30d"] <= organic_truth["churn_30d"] + 1e-12).all()
    assert (organic_truth.loc[~organic_truth["alive"], "churn_60d"] == 1).all()
    # A replenishment due in the window is an order for sure.
    due = organic_truth["replenishment_due_at"] < AS_OF + pd.Timedelta(30, "D")
    assert due.sum() > 20 and (organic_truth.loc[due & organic_truth["alive"], "churn_30d"] == 0).all()
    assert truth["mc_se_30d"].max() < 0.1 and organic_truth.filter(like="mc_se").empty


def test_truth_is_reproducible_and_monte_carlo_only_touches_messages() -> None:
    small = ShopConfig(customers=300, days=90, seed=4)
    a = true_churn_risk(small, "2025-02-15", [20], draws=4, seed=1)
    b = true_churn_risk(small, "2025-02-15", [20], draws=4, seed=1)
    c = true_churn_risk(small, "2025-02-15", [20], draws=4, seed=2)
    pd.testing.assert_frame_equal(a, b)
    assert not np.allclose(a["churn_20d"], c["churn_20d"])
    organic = [true_churn_risk(small, "2025-02-15", [20], messages=False, seed=s) for s in (1, 2)]
    pd.testing.assert_frame_equal(*organic)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"as_of": "2025-05-01", "horizons": [0]}, "horizons must be > 0"),
        ({"as_of": "2025-05-01", "horizons": []}, "horizons must be > 0"),
        ({"as_of": "2024-12-31", "horizons": [10]}, "must lie in the shop's window"),
        ({"as_of": "2025-07-01", "horizons": [30]}, "must lie in the shop's window"),
        ({"as_of": "2025-05-01", "horizons": [10], "draws": 0}, "draws must be >= 1"),
    ],
)
def test_bad_inputs(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        true_churn_risk(CFG, **kwargs)  # type: ignore[arg-type]
