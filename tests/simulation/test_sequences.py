"""Follow-ups in the synthetic world, and a sequence judged offline against the world's truth."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cadence.data.io import read_tables
from cadence.policies.sequences import CART_ABANDON
from cadence.simulation.sequences import sequence_lift
from cadence.studies.sequences import coverage_table, sequence_coverage
from cadence.synthetic import ShopConfig, generate_shop
from cadence.workflows.logs import log_tables


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_shop(ShopConfig(customers=3000, days=150, seed=11, logging_followup=0.5),
                         tmp_path_factory.mktemp("fu") / "shop")


def test_follow_ups_go_out_only_while_the_goal_has_not_happened(shop: Path) -> None:
    t = read_tables(shop, ["messages", "orders"])
    m, orders = t["messages"], t["orders"]
    fu = m[m["step"] == 2]
    first = m[m["step"] == 1].set_index(["customer_id", "stage", "triggered_at"])
    assert len(fu) > 500 and set(fu["action"]) == {"send", "hold"}
    # Every follow-up belongs to a sent abandonment message.
    parents = first.loc[list(zip(fu["customer_id"], fu["stage"], fu["triggered_at"], strict=True))].reset_index()
    assert (parents["action"] == "send").all() and fu["stage"].str.endswith("_abandon").all()
    # No order of the customer between the trigger and the follow-up time (12 or 24 hours later) among
    # those the world knows then: organic orders and conversions of this or earlier triggers (a later
    # trigger's conversion is drawn in a later round; see cadence.synthetic.messages).
    caused = m.dropna(subset=["converted_order_id"]).set_index("converted_order_id")
    orders = orders.assign(cause_t=orders["order_id"].map(caused["triggered_at"]),
                           cause=orders["order_id"].map(caused["message_id"]))
    due = fu["triggered_at"].reset_index(drop=True) + pd.to_timedelta(np.where(
        (parents["sent_at"] - parents["triggered_at"]).dt.total_seconds().to_numpy() < 720 * 60, 720, 1440), unit="min")
    fu = fu.reset_index(drop=True).assign(due=due, first=parents["message_id"])
    o = orders.merge(fu[["customer_id", "triggered_at", "due", "first"]], on="customer_id")
    known = o["cause_t"].isna() | (o["cause_t"] < o["triggered_at"]) | (o["cause"] == o["first"])
    assert not (known & (o["ts"] > o["triggered_at"]) & (o["ts"] <= o["due"])).any()
    sent = fu[fu["action"] == "send"]
    assert (sent["sent_at"] == sent["due"]).all()
    # A trigger converts once: never on both of its messages.
    conv = m[m["converted_order_id"].notna()]
    assert not conv.duplicated(["customer_id", "stage", "triggered_at"]).any()
    assert conv["converted_order_id"].is_unique


def test_follow_up_opens_match_the_true_probabilities(shop: Path) -> None:
    m = read_tables(shop, ["messages"])["messages"]
    truth = pd.read_parquet(shop / "_truth" / "messages.parquet").set_index("message_id")
    fu = m[(m["step"] == 2) & (m["action"] == "send")].set_index("message_id")
    p = truth.loc[fu.index, "p_open"]
    opened = fu["opened_at"].notna().sum()
    assert abs(opened - p.sum()) < 4 * np.sqrt((p * (1 - p)).sum())


def test_a_log_without_follow_ups_is_refused_plainly(tmp_path: Path) -> None:
    plain = generate_shop(ShopConfig(customers=300, days=40, seed=1), tmp_path / "plain")
    with pytest.raises(ValueError, match=r"messages: no follow-up rows \(step 2\); .* randomised it"):
        sequence_lift(log_tables(plain), CART_ABANDON)
    with pytest.raises(ValueError, match="tables: no customers table"):
        sequence_lift({"messages": log_tables(plain)["messages"]}, CART_ABANDON)


@pytest.mark.slow
def test_sequence_step_lifts_cover_the_truth_over_20_seeds() -> None:
    runs = sequence_coverage(CART_ABANDON, range(101, 121), customers=2500, days=120, n_boot=300)
    table = coverage_table(runs)
    print(table.to_string())
    assert (table["seeds"] == 20).all()
    assert (table["coverage"] >= 0.9).all(), table
