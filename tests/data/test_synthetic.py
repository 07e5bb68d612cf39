"""The synthetic shop: reproducible, valid under the contract, and true to its ground truth."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cadence.data.io import OUTPUT_MARKER, read_tables
from cadence.data.validate import validate_dir
from cadence.synthetic import (
    RandomizedLoggingPolicy,
    ShopConfig,
    generate_shop,
    load_config,
    load_truth,
    simulate_truth,
)

CFG = ShopConfig(customers=3_000, days=240, seed=11, chunk_size=1_000)


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_shop(CFG, tmp_path_factory.mktemp("shop") / "shop")


@pytest.fixture(scope="module")
def tables(shop: Path) -> dict[str, pd.DataFrame]:
    return read_tables(shop)


@pytest.fixture(scope="module")
def truth(shop: Path) -> dict[str, pd.DataFrame]:
    return load_truth(shop)


def _digest(folder: Path) -> dict[str, str]:
    # Every table and truth file; not the output marker, which records when it was written.
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != OUTPUT_MARKER}


def test_same_seed_same_bytes_and_other_seed_differs(shop: Path, tmp_path: Path) -> None:
    again = generate_shop(CFG, tmp_path / "again")
    assert _digest(again) == _digest(shop)
    other = generate_shop(ShopConfig(customers=3_000, days=240, seed=12, chunk_size=1_000), tmp_path / "other")
    assert _digest(other)["events.parquet"] != _digest(shop)["events.parquet"]


def test_generated_shop_satisfies_the_contract(shop: Path) -> None:
    assert validate_dir(shop) == []


def test_every_table_and_stage_is_present(tables: dict[str, pd.DataFrame]) -> None:
    from cadence.contract.tables import EVENT_TYPES, STAGES, TABLE_NAMES

    assert set(TABLE_NAMES) <= set(tables)
    assert set(tables["events"]["event_type"]) == set(EVENT_TYPES)
    assert set(tables["messages"]["stage"]) == set(STAGES)
    ev = tables["events"]
    searches = ev[ev["event_type"] == "search"]
    assert (searches["results_count"] == 0).mean() > 0.05  # some zero-result searches
    assert set(tables["order_status"]["status"]) == {"placed", "shipped", "delivered", "delayed", "cancelled"}
    for col in ("triggered_at", "sent_at", "opened_at"):
        assert str(tables["messages"][col].dt.tz) == "UTC"


def test_customers_are_heterogeneous_and_realistic(tables: dict[str, pd.DataFrame]) -> None:
    c = tables["customers"]
    bd = pd.to_datetime(c["birth_date"])
    assert 0.08 < bd.isna().mean() < 0.25
    assert ((bd.dt.month == 2) & (bd.dt.day == 29)).sum() >= 1
    assert c["timezone"].nunique() >= 8
    assert (c["signup_at"] < pd.Timestamp(CFG.start, tz="UTC")).mean() > 0.2  # customers from before the window
    orders_per_customer = tables["orders"].groupby("customer_id").size().reindex(c["customer_id"], fill_value=0)
    assert orders_per_customer.var() > 2 * orders_per_customer.mean()  # over-dispersed, as real shops are


def test_purchases_follow_the_latent_rates(tables: dict[str, pd.DataFrame], truth: dict[str, pd.DataFrame]) -> None:
    """Customers alive through the whole window buy Poisson(rate x days) regular orders."""
    tc = truth["customers"].set_index("customer_id")
    cust = tables["customers"].set_index("customer_id")
    start = pd.Timestamp(CFG.start, tz="UTC")
    alive = tc["dropout_at"].isna() & (cust["signup_at"] < start)
    src = truth["orders"].set_index("order_id")["source"]
    orders = tables["orders"].assign(source=lambda d: d["order_id"].map(src))
    regular = orders[orders["source"] == "regular"].groupby("customer_id").size()
    observed = regular.reindex(tc.index[alive], fill_value=0).sum()
    expected = (tc.loc[alive, "purchase_rate_per_day"] * CFG.days).sum()
    assert abs(observed - expected) < 4 * np.sqrt(expected), (observed, expected)
    # Nobody buys (regular orders) after dropping out.
    died = tc["dropout_at"].dropna()
    reg = orders[orders["source"] == "regular"].join(died.rename("dropout_at"), on="customer_id")
    assert (reg["ts"] > reg["dropout_at"]).sum() == 0


def test_outcomes_follow_the_true_response_model(tables: dict[str, pd.DataFrame], truth: dict[str, pd.DataFrame]) -> None:
    m = tables["messages"].merge(truth["messages"], on="message_id")
    for col, p in (("converted_order_id", "p_convert"), ("opened_at", "p_open"), ("clicked_at", "p_click")):
        observed = m[col].notna().sum()
        expected = m[p].sum()
        sd = np.sqrt((m[p] * (1 - m[p])).sum())
        # Conversions past the window's end are censored, so a few may be missing.
        assert expected - 4 * sd - 0.03 * expected < observed < expected + 4 * sd, (col, observed, expected)
    sends = m[m["action"] == "send"]
    assert sends["sent_at"].notna().all() and sends["channel"].notna().all()
    assert m.loc[m["action"] == "hold", "opened_at"].isna().all()


def test_logging_policy_randomises_with_recorded_propensities(tables: dict[str, pd.DataFrame]) -> None:
    m = tables["messages"]
    marketing = m[(m["stage"] != "order_status") & (m["propensity"] < 1)]
    held = (marketing["action"] == "hold").mean()
    assert abs(held - 0.2) < 0.02
    assert ((m["propensity"] > 0) & (m["propensity"] <= 1)).all()
    # Held rows re-weighted by 1 / P(hold) stand for all randomised candidates.
    weighted = (1 / marketing.loc[marketing["action"] == "hold", "propensity"]).sum()
    assert abs(weighted / len(marketing) - 1) < 0.08
    assert set(marketing.loc[marketing["action"] == "send", "incentive"]) == {"none", "free_shipping", "fixed_amount", "percent_code"}


def test_simulate_truth_reruns_the_same_world(shop: Path, truth: dict[str, pd.DataFrame]) -> None:
    cfg = load_config(shop)
    assert cfg == CFG
    again = simulate_truth(RandomizedLoggingPolicy(hold=cfg.logging_hold), cfg)
    pd.testing.assert_frame_equal(again, truth["policy_value"], check_dtype=False)


class _Hold:
    policy_id = "hold-all"

    def decide(self, candidates: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
        n = len(candidates)
        return pd.DataFrame({"action": ["hold"] * n, "channel": [None] * n, "delay_minutes": [0] * n,
                             "incentive": [None] * n, "propensity": [1.0] * n})


def test_counterfactual_policy_changes_only_what_messages_touch(truth: dict[str, pd.DataFrame]) -> None:
    hold = simulate_truth(_Hold(), CFG).set_index("stage")
    logged = truth["policy_value"].set_index("stage")
    assert hold.loc["all", "sent"] == 0 and hold.loc["all", "open"] == 0
    # Same trigger moments under any policy.
    pd.testing.assert_series_equal(hold["triggers"], logged["triggers"], check_dtype=False)
    # Cart reminders are worth sending in this world: the logged policy converts more.
    assert logged.loc["cart_abandon", "conversion"] > hold.loc["cart_abandon", "conversion"]


def test_config_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="customers must be >= 1"):
        ShopConfig(customers=0)
