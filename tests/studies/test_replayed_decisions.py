"""The truth of the decisions an offline replay made (issue 22): how the study tells an estimator's miss apart."""

from __future__ import annotations

from pathlib import Path

import pytest

from cadence.policies.rules import RulesPolicy
from cadence.simulation.replay import replay_decisions
from cadence.studies.policy_context import ReplayedDecisions, true_net_revenue, world
from cadence.synthetic.world import generate_shop
from cadence.workflows.logs import load_log


def test_a_policys_replay_on_its_own_log_re_runs_to_its_own_truth(tmp_path: Path) -> None:
    # Logged under the rules, the replay of the rules meets the logged states exactly (their own sends, opt-ins
    # and orders), so re-running the world under the replayed decisions must give the rules' own truth: any
    # trigger matched to the wrong decision, or missed and held, moves the value.
    cfg = world(3, 500, 60)
    log = load_log(generate_shop(cfg, tmp_path / "shop", policy=RulesPolicy()))
    made = replay_decisions(log, RulesPolicy(), workers=1)
    assert (made["action"] == "send").mean() > 0.5
    customers = log.candidates["customer_id"].astype(str).unique()
    rules, n = true_net_revenue(RulesPolicy(), cfg, customers)
    replayed, n_replayed = true_net_revenue(ReplayedDecisions(log.candidates, made), cfg, customers)
    assert n_replayed == n == log.n
    assert replayed == pytest.approx(rules, rel=1e-12)
    held, _ = true_net_revenue(ReplayedDecisions(log.candidates.iloc[:0], made.iloc[:0]), cfg, customers)
    assert abs(held - rules) > 0.05 * abs(rules)
