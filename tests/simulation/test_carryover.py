"""Fatigue-matched weights: the logging policy's probability of a fatigue state, checked against its frequency."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cadence.contract.actions import N_ACTIONS, action_code, delay_choices
from cadence.contract.tables import INCENTIVES
from cadence.data.bandit import LoggedBandit
from cadence.evaluation.compare import compare
from cadence.evaluation.estimators import ON_POLICY, SNIPS, PolicyInputs
from cadence.features.logged import one_hot
from cadence.policies.rules import RulesPolicy
from cadence.simulation.carryover import fatigue_weights, state_probability
from cadence.simulation.replay import MATCHED_ESTIMATORS, replay_decisions, simulate
from cadence.synthetic import ShopConfig, generate_shop
from cadence.workflows.logs import load_log

DAY = 86_400
#: One customer's triggers (stage, day): the delays of the first three straddle the last one's 7-day window.
PATTERN = (("cart_abandon", 0.0), ("birthday", 6.9), ("cart_abandon", 7.01), ("browse_abandon", 7.3))


def sends_in_window(customers: int, send: np.ndarray, slot: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each trigger's action code and ``sends_7d`` (sends landing in [t - 7 days, t), as the feature layer counts)."""
    k = len(PATTERN)
    stage = np.tile([s for s, _ in PATTERN], customers)
    t = (np.tile([d for _, d in PATTERN], customers) * DAY).astype(np.int64)
    delay = np.array([delay_choices(s)[j] for s, j in zip(stage, slot, strict=True)]) * 60
    lands = np.where(send, t + delay, np.iinfo(np.int64).max).reshape(customers, k)
    tt = t.reshape(customers, k)
    sends_7d = ((lands[:, None, :] >= tt[:, :, None] - 7 * DAY) & (lands[:, None, :] < tt[:, :, None])).sum(axis=2)
    return action_code(np.zeros(len(t), np.int64), slot, np.zeros(len(t), np.int64), send), sends_7d.ravel()


def randomised_log(customers: int, p_send: float, seed: int, fatigue: float = 0.0) -> LoggedBandit:
    """Every customer triggers :data:`PATTERN`; each trigger is sent with ``p_send`` at a uniform delay.

    The reward is a conversion with probability ``0.3 + 0.2 * sent - fatigue * sends_7d``.
    """
    rng = np.random.default_rng(seed)
    n = customers * len(PATTERN)
    send = rng.random(n) < p_send
    action, sends_7d = sends_in_window(customers, send, rng.integers(0, 3, n))
    t = np.tile([d for _, d in PATTERN], customers) * DAY + 1_735_689_600
    cands = pd.DataFrame({"customer_id": np.repeat([f"c{i}" for i in range(customers)], len(PATTERN)),
                          "stage": np.tile([s for s, _ in PATTERN], customers),
                          "triggered_at": pd.to_datetime(t, unit="s", utc=True), "opt_in_email": True,
                          "sends_7d": sends_7d})
    reward = (rng.random(n) < 0.3 + 0.2 * send - fatigue * sends_7d).astype(float)
    return LoggedBandit(action=action, reward=reward, pscore=np.where(send, p_send / 3, 1 - p_send),
                        n_actions=N_ACTIONS, candidates=cands, groups=np.repeat(np.arange(customers), len(PATTERN)))


def test_the_state_probability_is_the_logged_frequency_of_that_fatigue() -> None:
    log = randomised_log(6000, 0.7, seed=1)
    logged = log.candidates["sends_7d"].to_numpy().reshape(-1, len(PATTERN))
    for s in range(len(PATTERN)):
        prob = state_probability(log, np.full(log.n, s)).reshape(-1, len(PATTERN))
        # Every customer has the same pattern: the probability is the frequency across customers.
        np.testing.assert_allclose(prob.mean(axis=0), (logged == s).mean(axis=0), atol=0.025)
        np.testing.assert_allclose(prob.std(axis=0), 0.0, atol=1e-12)
    # The last trigger's window catches the first send only at 720 minutes, the birthday's at 0 or 240,
    # the second cart's at 20 or 60: one of three, two of three, two of three delays.
    q = 0.7 * np.array([1, 2, 2]) / 3
    p0 = state_probability(log, np.zeros(log.n)).reshape(-1, len(PATTERN))[0, 3]
    assert p0 == pytest.approx(np.prod(1 - q), abs=0.02)


def test_matched_weights_average_one() -> None:
    log = randomised_log(4000, 0.6, seed=2)
    for s in (0, 1, 2):
        w = fatigue_weights(log, np.full(log.n, s))
        assert ((w == 0) == (log.candidates["sends_7d"].to_numpy() != s)).all()
        per_trigger = w.reshape(-1, len(PATTERN)).mean(axis=0)
        reachable = state_probability(log, np.full(log.n, s)).reshape(-1, len(PATTERN))[0] > 0
        np.testing.assert_allclose(per_trigger[reachable], 1.0, atol=0.12)


def test_matching_the_fatigue_removes_the_carryover_a_one_step_estimate_misses() -> None:
    # Sending every trigger at the first delay: more fatigue than the logging policy ever carried.
    customers = 5000
    log = randomised_log(customers, 0.5, seed=4, fatigue=0.1)
    action, sends_7d = sends_in_window(customers, np.ones(log.n, bool), np.zeros(log.n, np.int64))
    truth = float(np.mean(0.5 - 0.1 * sends_7d))
    dist = one_hot(action)
    plain = compare(log, {"all": dist}, [SNIPS()], n_bootstrap=300, groups=log.groups).iloc[0]
    matched = compare(log, {"all": dist}, [SNIPS()], n_bootstrap=300, groups=log.groups,
                      state_weights={"all": fatigue_weights(log, sends_7d)}).iloc[0]
    assert not plain["lower"] <= truth <= plain["upper"] and plain["value"] > truth + 0.03
    assert matched["lower"] <= truth <= matched["upper"]
    assert matched["upper"] - matched["lower"] > plain["upper"] - plain["lower"]  # the price: width


@pytest.fixture(scope="module")
def shop_log(tmp_path_factory: pytest.TempPathFactory) -> LoggedBandit:
    return load_log(generate_shop(ShopConfig(customers=800, days=90, seed=3), tmp_path_factory.mktemp("c") / "s"))


def test_on_a_shop_the_expected_logged_fatigue_is_the_logged_one(shop_log: LoggedBandit) -> None:
    logged = shop_log.candidates["sends_7d"].to_numpy()
    expected = sum(s * state_probability(shop_log, np.full(shop_log.n, s)) for s in range(int(logged.max()) + 1))
    assert expected.mean() == pytest.approx(logged.mean(), rel=0.05)
    rules = replay_decisions(shop_log, RulesPolicy(), workers=1)
    w = fatigue_weights(shop_log, rules["sends_7d"].to_numpy())
    assert 0.8 < w.mean() < 1.2 and (w >= 0).all()


def test_simulate_adds_the_fatigue_matched_estimators(shop_log: LoggedBandit) -> None:
    out = simulate(shop_log, RulesPolicy(), workers=1, metrics=("net_revenue",), by_stage=False,
                   fatigue_matched=True)["estimates"]
    got = out[out["policy"] == "candidate"].set_index("estimator")
    assert set(MATCHED_ESTIMATORS) <= set(got.index)
    for name in MATCHED_ESTIMATORS:
        row = got.loc[name]
        assert row["lift_lower"] < row["lift"] < row["lift_upper"]
        # Fewer rows match the fatigue as well as the action: the effective sample shrinks.
        assert row["ess"] < got.loc["replay", "ess"]
    plain = simulate(shop_log, RulesPolicy(), workers=1, metrics=("net_revenue",), by_stage=False)["estimates"]
    assert not set(MATCHED_ESTIMATORS) & set(plain["estimator"])


def test_bad_state_weights_are_named() -> None:
    fb = LoggedBandit(action=np.array([0, 1]), reward=np.array([1.0, 0.0]), pscore=np.full(2, 0.5), n_actions=2)
    dist = np.array([[1.0, 0.0], [1.0, 0.0]])
    with pytest.raises(ValueError, match="state_weight: expected"):
        PolicyInputs(fb, dist, state_weight=np.array([1.0, -1.0]))
    with pytest.raises(ValueError, match=r"state_weights: \['b'\] are not policy names"):
        compare(fb, {"a": dist}, state_weights={"b": np.ones(2)})
    with pytest.raises(ValueError, match="ON_POLICY"):
        compare(fb, {"log": ON_POLICY, "a": dist}, state_weights={"log": np.ones(2)})
    # A state factor of one everywhere changes nothing.
    a = compare(fb, {"a": dist}, n_bootstrap=50)
    b = compare(fb, {"a": dist}, n_bootstrap=50, state_weights={"a": np.ones(2)})
    pd.testing.assert_frame_equal(a, b)
    with pytest.raises(ValueError, match="log: fatigue weights need the candidates"):
        fatigue_weights(fb, np.zeros(2))
    with pytest.raises(ValueError, match=r"sends_7d: expected shape \(2,\)"):
        fatigue_weights(fb, np.zeros(3))


def test_incentives_are_not_needed_for_the_weights() -> None:
    # The action codes carry the delay slot whatever the incentive: the weights read only the delay.
    log = randomised_log(50, 0.5, seed=3)
    with_incentive = LoggedBandit(action=np.where(log.action > 0, log.action + len(INCENTIVES) - 1, 0),
                                  reward=log.reward, pscore=log.pscore, n_actions=N_ACTIONS,
                                  candidates=log.candidates, groups=log.groups)
    np.testing.assert_array_equal(state_probability(log, np.ones(log.n)),
                                  state_probability(with_incentive, np.ones(log.n)))
