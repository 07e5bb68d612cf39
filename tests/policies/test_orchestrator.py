"""Each orchestration rule on a hand-built history."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cadence.policies.orchestrator import (
    OrchestratedPolicy,
    Orchestrator,
    OrchestratorConfig,
    in_holdout,
)
from cadence.policies.rules import RulesPolicy


def cands(rows: list[tuple[str, str, str]], **extra: list[object]) -> pd.DataFrame:
    """(customer, stage, UTC time) rows, opted in to email only unless overridden."""
    n = len(rows)
    df = pd.DataFrame(rows, columns=["customer_id", "stage", "triggered_at"])
    df["triggered_at"] = pd.to_datetime(df["triggered_at"], utc=True)
    df["timezone"] = "UTC"
    for ch, default in (("email", True), ("push", False), ("sms", False), ("whatsapp", False)):
        df[f"opt_in_{ch}"] = extra.pop(f"opt_in_{ch}", [default] * n)
    for k, v in extra.items():
        df[k] = v
    return df


def run(cfg: OrchestratorConfig, *batches: pd.DataFrame, orders: pd.DataFrame | None = None) -> list[pd.DataFrame]:
    pol = OrchestratedPolicy(RulesPolicy(), cfg, orders=orders)
    return [pol.decide(b, np.random.default_rng(0)) for b in batches]


def test_a_cap_that_blocks_then_frees_up() -> None:
    c = cands([("a", "browse_abandon", f"2025-01-0{d} 10:00") for d in (1, 2, 3)] + [("a", "browse_abandon", "2025-01-09 10:00")])
    (d,) = run(OrchestratorConfig(max_per_7d=2, reentry_days={}), c)
    assert d["action"].tolist() == ["send", "send", "hold", "send"]
    assert d.loc[2, "reason"] == "frequency cap: 2 in 7 days"
    # The cap counts sends across calls too (the world and the replay decide in rounds).
    a, b = run(OrchestratorConfig(max_per_7d=1, reentry_days={}), c.iloc[:1], c.iloc[1:2])
    assert a["action"].tolist() == ["send"] and b["action"].tolist() == ["hold"]


def test_channel_cap() -> None:
    c = cands([("a", "birthday", "2025-01-01 10:00"), ("a", "new_arrivals", "2025-01-02 10:00")],
              opt_in_sms=[True, True], opt_in_email=[False, False])
    (d,) = run(OrchestratorConfig(max_per_7d=None, channel_caps={"sms": 1}), c)
    assert d["action"].tolist() == ["send", "hold"] and d.loc[1, "reason"] == "sms cap: 1 in 7 days"


def test_a_quiet_hour_delays_and_business_hours_move_sms() -> None:
    c = cands([("a", "birthday", "2025-01-01 22:30"), ("b", "birthday", "2025-01-01 12:00"),
               ("c", "birthday", "2025-01-01 06:00")],
              opt_in_email=[True, True, False], opt_in_sms=[False, False, True])
    (d,) = run(OrchestratorConfig(quiet_hours=(21, 8), business_hours=(9, 18)), c)
    assert d["send_at"].dt.strftime("%m-%d %H:%M").tolist() == ["01-02 08:00", "01-01 12:00", "01-01 09:00"]
    assert d["action"].eq("send").all()
    # In the customer's own time zone: 22:30 UTC is 07:30 in Tokyo, still quiet until 08:00 local.
    (t,) = run(OrchestratorConfig(quiet_hours=(21, 8)), c.iloc[:1].assign(timezone="Asia/Tokyo"))
    assert t.loc[0, "send_at"] == pd.Timestamp("2025-01-01 23:00", tz="UTC")


def test_an_expired_reminder_is_dropped() -> None:
    c = cands([("a", "cart_abandon", "2025-01-01 10:00")])
    (d,) = run(OrchestratorConfig(reminder_expiry_days=0.25), c)  # email at 12 hours > 6 hours
    assert d.loc[0, "action"] == "hold" and d.loc[0, "reason"] == "reminder expired"
    (ok,) = run(OrchestratorConfig(reminder_expiry_days=14), c)
    assert ok.loc[0, "action"] == "send"


def test_a_cart_reminder_is_suppressed_after_the_purchase() -> None:
    c = cands([("a", "cart_abandon", "2025-01-01 10:00"), ("b", "cart_abandon", "2025-01-01 10:00")])
    orders = pd.DataFrame({"customer_id": ["a", "b"], "ts": pd.to_datetime(["2025-01-01 15:00", "2025-01-02 15:00"], utc=True)})
    (d,) = run(OrchestratorConfig(), c, orders=orders)
    assert d["action"].tolist() == ["hold", "send"]  # a bought before the 12-hour email; b after it
    assert d.loc[0, "reason"] == "goal reached before the send"


def test_reentry_refused_then_allowed_and_once_only() -> None:
    c = cands([("a", "cart_abandon", "2025-01-01 10:00"), ("a", "cart_abandon", "2025-01-02 09:00"),
               ("a", "cart_abandon", "2025-01-04 10:00"), ("a", "birthday", "2025-01-05 10:00"),
               ("a", "birthday", "2026-01-05 10:00")])
    (d,) = run(OrchestratorConfig(max_per_7d=None, reentry_days={"cart_abandon": 2.0}), c)
    assert d["action"].tolist() == ["send", "hold", "send", "send", "hold"]
    assert d.loc[1, "reason"] == "re-entry to cart_abandon within 2 days"
    assert d.loc[4, "reason"] == "birthday is sent once only"


def test_opt_ins_and_transactional_messages() -> None:
    c = cands([("a", "order_status", "2025-01-01 10:00")] * 4 + [("a", "birthday", "2025-01-01 11:00")])
    (d,) = run(OrchestratorConfig(max_per_7d=1), c)
    # Transactional messages bypass the caps but count against them: they tire the customer too.
    assert d["action"].tolist()[:4] == ["send"] * 4
    assert d.loc[4, "reason"] == "frequency cap: 1 in 7 days"
    orch = Orchestrator()
    bad = pd.DataFrame({"action": ["send"], "channel": ["sms"], "delay_minutes": [0], "incentive": ["none"],
                        "propensity": [1.0]})
    got = orch.apply(cands([("z", "birthday", "2025-01-01 10:00")]), bad)
    assert got.loc[0, "action"] == "hold" and got.loc[0, "reason"] == "not opted in to sms"


def test_priority_when_triggers_compete() -> None:
    c = cands([("a", "new_arrivals", "2025-01-01 10:00"), ("a", "checkout_abandon", "2025-01-01 10:30")])
    (d,) = run(OrchestratorConfig(max_per_7d=1), c)
    # Within the hour, the checkout reminder outranks the digest although it came later.
    assert d["action"].tolist() == ["hold", "send"]


def test_global_holdout_is_stable_and_sized() -> None:
    ids = pd.Series([f"C{i:07d}" for i in range(20_000)])
    h = in_holdout(ids, 0.1)
    assert 0.09 < h.mean() < 0.11 and (h == in_holdout(ids, 0.1)).all()
    c = cands([(i, "birthday", "2025-01-01 10:00") for i in ids[:200]])
    (d,) = run(OrchestratorConfig(holdout_share=0.1), c)
    held = d["reason"] == "global holdout"
    assert held.sum() == in_holdout(ids[:200], 0.1).sum() > 0


def test_config_is_checked_and_exportable() -> None:
    with pytest.raises(ValueError, match="channel_caps: 'fax'"):
        OrchestratorConfig(channel_caps={"fax": 1})
    with pytest.raises(ValueError, match="quiet_hours"):
        OrchestratorConfig(quiet_hours=(25, 3))
    d = OrchestratorConfig().to_dict()
    assert d["max_per_7d"] == 3 and d["reentry_days"]["cart_abandon"] == 1.0
