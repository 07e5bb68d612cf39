"""The messages log read back as candidates, actions and rewards."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cadence.contract.actions import ACTION_NAMES, decode_action, encode_actions
from cadence.contract.tables import CHANNELS
from cadence.data.io import read_tables
from cadence.features.logged import (
    logged_actions,
    logged_candidates,
    logged_decisions,
    logged_rewards,
)
from cadence.synthetic import RandomizedLoggingPolicy, ShopConfig, generate_shop


class Recorder:
    """The logging policy, remembering every candidate frame the world showed it."""

    def __init__(self) -> None:
        self.inner = RandomizedLoggingPolicy()
        self.seen: list[pd.DataFrame] = []

    @property
    def policy_id(self) -> str:
        return self.inner.policy_id

    def decide(self, candidates: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
        self.seen.append(candidates.copy())
        return self.inner.decide(candidates, rng)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    rec = Recorder()
    shop = generate_shop(ShopConfig(customers=1500, days=120, seed=5), tmp_path_factory.mktemp("s") / "shop",
                         policy=rec)
    return shop, pd.concat(rec.seen, ignore_index=True)


def test_logged_candidates_equal_what_the_world_showed_the_policy(recorded: tuple[Path, pd.DataFrame]) -> None:
    shop, seen = recorded
    t = read_tables(shop, ["messages", "customers"])
    t = read_tables(shop, ["messages", "customers", "orders"])
    got = logged_candidates(t["messages"], t["customers"], t["orders"])
    key = ["customer_id", "stage", "triggered_at"]
    cols = [f"opt_in_{c}" for c in CHANNELS] + ["sends_7d", "orders_90d", "days_since_order", "timezone"]
    seen = seen.assign(customer_id=seen["customer_id"].astype(str), stage=seen["stage"].astype(str),
                       timezone=seen["timezone"].astype(str))
    # The same (customer, stage, time) may fire twice; compare each row's full context.
    a = got[key + cols].astype({"triggered_at": "datetime64[us, UTC]"}).sort_values(key + cols).reset_index(drop=True)
    b = seen[key + cols].astype({"triggered_at": "datetime64[us, UTC]"}).sort_values(key + cols).reset_index(drop=True)
    assert len(a) == len(b) > 1000
    pd.testing.assert_frame_equal(a, b, check_dtype=False)
    assert a["sends_7d"].max() >= 3 and (~a["opt_in_email"]).any()
    assert a["orders_90d"].max() >= 3 and a["days_since_order"].isna().any() and a["days_since_order"].notna().any()


def test_actions_round_trip(recorded: tuple[Path, pd.DataFrame]) -> None:
    shop, _ = recorded
    m = read_tables(shop, ["messages"])["messages"]
    codes = logged_actions(m)
    assert ((codes == 0) == (m["action"] == "hold").to_numpy()).all()
    sent = m[m["action"] == "send"].reset_index(drop=True)
    for i in range(0, len(sent), max(1, len(sent) // 50)):
        ch, slot, inc = decode_action(int(codes[m.index[m["action"] == "send"][i]]))  # type: ignore[misc]
        assert (ch, inc) == (sent.at[i, "channel"], sent.at[i, "incentive"])
    assert set(np.unique(codes)) <= set(range(len(ACTION_NAMES)))


def test_rewards(recorded: tuple[Path, pd.DataFrame]) -> None:
    shop, _ = recorded
    m = read_tables(shop, ["messages"])["messages"]
    r = logged_rewards(m)
    assert list(r.columns) == ["open", "click", "conversion", "net_revenue"]
    assert (r["click"] <= r["open"]).all()
    assert (r["net_revenue"] <= m["revenue"].fillna(0)).all()
    assert r["net_revenue"][r["conversion"] == 0].eq(0).all()
    plain = (r["conversion"] == 1).to_numpy() & (m["incentive"].fillna("none") == "none").to_numpy()
    np.testing.assert_allclose(r["net_revenue"][plain], m["revenue"][plain])
    # A fixed incentive can cost more than a small order brings: net revenue may be negative.
    paid = (r["conversion"] == 1).to_numpy() & ~plain
    assert (r["net_revenue"].to_numpy()[paid] < m["revenue"].to_numpy()[paid]).all()


def test_bad_actions_are_named() -> None:
    d = pd.DataFrame({"action": ["send"], "channel": ["pigeon"], "delay_minutes": [20], "incentive": ["none"]})
    with pytest.raises(ValueError, match="channel: 1 rows outside"):
        encode_actions(pd.Series(["cart_abandon"]), d)
    d = pd.DataFrame({"action": ["send"], "channel": ["email"], "delay_minutes": [33], "incentive": ["none"]})
    with pytest.raises(ValueError, match="delay_minutes: 1 sends"):
        encode_actions(pd.Series(["cart_abandon"]), d)


def test_logged_decisions_shape() -> None:
    m = pd.DataFrame({"action": ["send"], "channel": ["sms"], "incentive": ["none"], "propensity": [0.5],
                      "triggered_at": pd.to_datetime(["2025-01-01 10:00"], utc=True),
                      "sent_at": pd.to_datetime(["2025-01-01 10:20"], utc=True)})
    assert logged_decisions(m)["delay_minutes"].tolist() == [20]
