"""The shop's action space as one configuration of the policy learner (``UpliftPolicy(learner="dr")``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cadence.contract.actions import N_ACTIONS, check_decisions, encode_actions
from cadence.contract.triggers import INCENTIVE_STAGES, TRANSACTIONAL_STAGES
from cadence.policies.learned import UpliftPolicy, allowed_actions, shop_context
from cadence.policies.learner import PolicyLearner
from cadence.policies.rules import RulesPolicy, opt_in_matrix
from cadence.synthetic import ShopConfig, generate_shop
from cadence.workflows.logs import load_log


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    return load_log(generate_shop(ShopConfig(customers=2000, days=120, seed=2), tmp_path_factory.mktemp("s") / "shop"))


@pytest.fixture(scope="module")
def policy(log) -> UpliftPolicy:  # type: ignore[no-untyped-def]
    return UpliftPolicy(learner="dr", min_rows=100, context=("trigger",)).fit(log)


def test_the_shop_is_a_policy_learner_with_a_mask(policy: UpliftPolicy, log) -> None:  # type: ignore[no-untyped-def]
    learner = policy.learner_
    assert isinstance(learner, PolicyLearner) and learner.n_actions_ == N_ACTIONS
    assert learner.coef_.shape[1] == N_ACTIONS
    cands = log.candidates
    allowed = allowed_actions(cands["stage"].to_numpy(), opt_in_matrix(cands))
    dist = learner.action_dist(shop_context(cands), allowed=allowed)
    assert (dist[~allowed] == 0).all() and np.allclose(dist.sum(axis=1), 1)
    # Every logged action was allowed: the mask is what the logging policy randomises over.
    assert allowed[np.arange(log.n), log.action].all()


def test_decisions_respect_opt_ins_stages_and_the_protocol(policy: UpliftPolicy, log) -> None:  # type: ignore[no-untyped-def]
    cands = log.candidates
    d = policy.decide(cands, np.random.default_rng(0))
    check_decisions(d, len(cands), policy.policy_id)
    assert (d["propensity"] == 1).all()
    codes = encode_actions(cands["stage"], d.reset_index(drop=True))
    allowed = allowed_actions(cands["stage"].to_numpy(), opt_in_matrix(cands))
    assert allowed[np.arange(len(cands)), codes].all()
    stage = cands["stage"].astype(str)
    sends = d["action"] == "send"
    assert (d.loc[sends & ~stage.isin(list(INCENTIVE_STAGES)), "incentive"] == "none").all()
    # Transactional messages follow the rules; modelled marketing stages are learned (some held, some sent).
    status = stage.isin(list(TRANSACTIONAL_STAGES)).to_numpy()
    rules = RulesPolicy().decide(cands, np.random.default_rng(0))
    pd.testing.assert_frame_equal(d[status], rules[status])
    modelled = stage.isin(list(policy.stages_)).to_numpy()
    assert set(d.loc[modelled, "action"]) == {"send", "hold"}
    assert d.loc[modelled & sends.to_numpy(), "incentive"].nunique() > 1


def test_constructor_switches_become_the_mask_and_costs(policy: UpliftPolicy, log) -> None:  # type: ignore[no-untyped-def]
    cands = log.candidates
    modelled = cands["stage"].astype(str).isin(list(policy.stages_)).to_numpy()
    plain = UpliftPolicy(learner="dr", min_rows=100, context=("trigger",), incentives=False).fit(log).decide(cands, np.random.default_rng(0))
    assert (plain.loc[modelled & (plain["action"] == "send").to_numpy(), "incentive"] == "none").all()
    capped = UpliftPolicy(learner="dr", min_rows=100, context=("trigger",), max_sends_7d=0).fit(log).decide(cands, np.random.default_rng(0))
    assert (capped.loc[modelled, "action"] == "hold").all()
    # A send must beat holding by the threshold: a high one holds more.
    base = policy.decide(cands, np.random.default_rng(0))
    strict = UpliftPolicy(learner="dr", min_rows=100, context=("trigger",), threshold=2.0).fit(log).decide(cands, np.random.default_rng(0))
    assert (strict.loc[modelled, "action"] == "send").mean() < (base.loc[modelled, "action"] == "send").mean()


def test_log_without_candidates_is_refused() -> None:
    from cadence.data.bandit import LoggedBandit

    bare = LoggedBandit(action=np.array([0, 1]), reward=np.array([0.0, 1.0]), pscore=np.array([0.5, 0.5]),
                        n_actions=N_ACTIONS)
    with pytest.raises(ValueError, match="log: UpliftPolicy needs a messages log"):
        UpliftPolicy(learner="dr").fit(bare)
    with pytest.raises(ValueError, match="log: UpliftPolicy needs a messages log"):
        UpliftPolicy(learner="t").fit(bare)


def test_shop_context_keeps_never_ordered_missing(tmp_path: Path) -> None:
    c = pd.DataFrame({"stage": ["birthday", "win_back"], "triggered_at": pd.to_datetime(["2025-03-01 08:00"] * 2, utc=True),
                      "timezone": ["Europe/Berlin", "UTC"], "opt_in_email": pd.array([True, None], dtype="boolean"), "days_since_order": [None, 9.0]})
    x = shop_context(c)
    assert np.isnan(x.loc[0, "log_days_since_order"]) and x.loc[1, "log_days_since_order"] == pytest.approx(np.log(10))
    assert x["stage"].tolist() == ["birthday", "win_back"] and x["opt_in_email"].tolist() == [1.0, 0.0]
