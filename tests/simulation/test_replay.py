"""Replay: the counterfactual send log, its partitioning, and its lift against the world's truth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cadence.features.send_history import SendHistory
from cadence.policies.orchestrator import OrchestratedPolicy, OrchestratorConfig
from cadence.policies.rules import RulesPolicy
from cadence.simulation.replay import TABLE_METRICS, replay_decisions, simulate
from cadence.studies.ope_coverage import replay_coverage
from cadence.synthetic import ShopConfig, generate_shop
from cadence.workflows.logs import load_log, replay_log


def capped() -> OrchestratedPolicy:
    return OrchestratedPolicy(RulesPolicy(), OrchestratorConfig(max_per_7d=3))


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    return generate_shop(ShopConfig(customers=1500, days=150, seed=4), tmp_path_factory.mktemp("r") / "s")


@pytest.fixture(scope="module")
def log(shop):  # type: ignore[no-untyped-def]
    return load_log(shop)


def test_replayed_fatigue_is_the_replayed_policys(log) -> None:  # type: ignore[no-untyped-def]
    d = replay_decisions(log, capped(), workers=1)
    assert len(d) == log.n and d.index.equals(log.candidates.index)
    # Each trigger saw the replayed policy's own sends of the 7 days before, not the logged ones.
    send = (d["action"] == "send").to_numpy()
    t = log.candidates["triggered_at"].astype("int64").to_numpy() // 10**9
    when = d["send_at"].astype("int64").to_numpy() // 10**9
    history = SendHistory(memory=int(send.sum()) or 1)  # remembers every send: a batch recount
    history.record(log.groups[send], when[send])
    recount = history.sends_before(log.groups, t, 7 * 86_400)
    np.testing.assert_array_equal(d["sends_7d"].to_numpy(), recount)
    assert not np.array_equal(recount, log.candidates["sends_7d"].to_numpy())
    assert (d.loc[d["reason"].str.startswith("frequency cap"), "action"] == "hold").all()
    assert d["reason"].str.startswith("frequency cap").any()


def test_partitions_do_not_change_decisions(log) -> None:  # type: ignore[no-untyped-def]
    one = replay_decisions(log, capped(), workers=1)
    two = replay_decisions(log, capped(), workers=2)
    pd.testing.assert_frame_equal(one, two)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_data_directory_is_replayed_partition_by_partition_with_the_same_decisions(
        shop, log, workers, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from cadence.simulation import replay

    whole = replay_decisions(log, capped(), workers=workers)
    monkeypatch.setattr(replay, "PART_ROWS", log.n // 5)  # several partitions per worker
    parts = replay_log(shop, capped(), workers=workers)
    pd.testing.assert_frame_equal(parts, whole)


def test_a_data_directory_is_replayed_by_the_workflow_not_the_library(shop) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(TypeError, match="LoggedBandit.*cadence.workflows.logs.replay_log"):
        replay_decisions(shop, capped())


def test_before_after_table(log) -> None:  # type: ignore[no-untyped-def]
    res = simulate(log, capped(), None, workers=1)
    t = res["table"]
    assert t["metric"].tolist() == list(TABLE_METRICS)
    assert (t["lift_lower"] <= t["lift"] + 1e-12).all() and (t["lift"] <= t["lift_upper"] + 1e-12).all()
    est = res["estimates"]
    assert set(est["estimator"]) == {"replay", "model", "doubly robust"}
    assert set(res["by_stage"]["stage"]) == set(log.candidates["stage"])
    # A baseline other than the logged policy is replayed too.
    res2 = simulate(log, capped(), RulesPolicy(), workers=1, metrics=("conversion",), by_stage=False)
    assert res2["table"]["metric"].tolist() == ["conversion rate", "messages per customer"]
    assert res2["table"].iloc[-1]["lift"] < 0  # the cap sends fewer messages than the uncapped rules


def test_lifts_get_clustered_normal_intervals_unless_the_bootstrap_is_asked_for(log) -> None:  # type: ignore[no-untyped-def]
    kw = dict(workers=1, metrics=("net_revenue",), by_stage=False)
    normal = simulate(log, capped(), RulesPolicy(), **kw)["estimates"]
    boot = simulate(log, capped(), RulesPolicy(), interval="bootstrap", **kw)["estimates"]
    assert set(normal["interval"]) == {"normal", "normal-delta"} and set(boot["interval"]) == {"bootstrap-percentile"}
    np.testing.assert_array_equal(normal["lift"], boot["lift"])  # the same estimates, other intervals
    cand = normal[normal["policy"] == "candidate"]
    np.testing.assert_allclose(cand["lift"] - cand["lift_lower"], cand["lift_upper"] - cand["lift"])
    assert (cand["lift_upper"] > cand["lift_lower"]).all()


@pytest.mark.slow
def test_replay_lift_covers_the_true_lift_over_20_seeds() -> None:
    runs = replay_coverage(range(20), lambda log: capped(), customers=3000, days=180)
    err = runs["lift"] - runs["true_lift"]
    summary = runs.assign(err=err).groupby(["metric", "estimator"]).agg(
        coverage=("covered", "mean"), bias=("err", "mean"), rmse=("err", lambda e: float(np.sqrt((e**2).mean()))),
        true_lift=("true_lift", "mean"))
    print("\nreplay lift of rules capped at 3/7 days over the logged policy, 20 seeds:\n" + summary.to_string())
    # The doubly-robust lift is the estimate of record; replay matching alone is reported beside it.
    for metric in ("conversion", "net_revenue"):
        assert summary.loc[(metric, "doubly robust"), "coverage"] >= 0.9, metric


@pytest.fixture(scope="module")
def demo_log(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    return load_log(generate_shop(ShopConfig(), tmp_path_factory.mktemp("demo") / "shop"))  # the demo's shop


def test_spark_and_in_process_replays_are_identical_on_the_demo_shop(demo_log) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("pyspark")
    cols = ["action", "channel", "delay_minutes", "incentive", "propensity", "sends_7d"]
    local = replay_decisions(demo_log, capped(), workers=2)[cols]
    spark = replay_decisions(demo_log, capped(), engine="spark")[cols]
    assert len(local) > 300_000
    pd.testing.assert_frame_equal(local.astype(object), spark.astype(object), check_dtype=False)


def test_capped_orchestration_beats_uncapped_sending_on_true_net_revenue() -> None:
    from cadence.studies.ope_coverage import true_values

    cfg = ShopConfig(customers=8000, days=365, seed=31)
    capped_value = true_values(capped(), cfg)["net_revenue"]
    uncapped_value = true_values(RulesPolicy(), cfg)["net_revenue"]
    print(f"\ntrue net revenue per trigger: rules capped at 3/7 days {capped_value:.3f}, uncapped {uncapped_value:.3f}")
    assert capped_value > uncapped_value
