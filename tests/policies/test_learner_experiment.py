"""The policy learner on a plain randomised three-arm e-mail experiment, judged by the project's estimators.

A user's experiment table: one row per customer with covariates of every
kind (numbers, categories, missing values), the arm the customer was
randomised to (uniformly), the probability of that arm and the net revenue
over the next 30 days. :func:`email_experiment` simulates one with known
per-customer expected outcomes under each arm, so the test can say which arm
was truly best for whom and what the learned policy is truly worth.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from cadence.data.bandit import LoggedBandit
from cadence.evaluation.compare import estimate
from cadence.evaluation.estimators import IPS, DoublyRobust
from cadence.policies.learner import PolicyLearner

ARMS = ("control", "discount_15", "free_shipping")
COVARIATES = ["days_since_order", "orders_12m", "avg_order_value", "open_rate", "tenure_days",
              "segment", "device", "region"]
#: Shipping the free-shipping arm absorbs per order, and the discount's share of the order.
SHIPPING_COST = 6.0
DISCOUNT = 0.15


def email_experiment(customers: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """A randomised e-mail experiment and its truth.

    Returns the table (``customer_id``, the covariates, ``arm``,
    ``propensity``, ``net_revenue``) and the ``(customers, 3)`` expected net
    revenue of every customer under each arm of :data:`ARMS`.

    The world: a customer converts within 30 days with a probability driven
    by purchase history, recency and e-mail engagement; an order is worth
    about the customer's average order value. The discount (15% off) lifts
    conversion most for lapsed customers and new ones, and is pure margin
    loss for VIPs; free shipping lifts conversion for engaged readers and on
    mobile, and costs the shop its shipping. Never-ordered customers have no
    recency or order value, new subscribers no open rate (missing values).
    """
    rng = np.random.default_rng(seed)
    n = customers
    never = rng.random(n) < 0.2
    recency = np.where(never, np.nan, np.minimum(rng.exponential(90.0, n), 720.0).round())
    orders = np.where(never, 0, rng.poisson(rng.lognormal(0.6, 0.8, n)))
    aov = np.where(never, np.nan, rng.lognormal(np.log(55.0), 0.4, n).round(2))
    fresh = rng.random(n) < 0.15
    open_rate = np.where(fresh, np.nan, rng.beta(2.0, 5.0, n).round(3))
    tenure = rng.integers(30, 2000, n).astype(float)
    segment = np.where(never | (orders == 0), "new", np.where(orders >= 6, "vip", "regular")).astype(object)
    segment[rng.random(n) < 0.05] = None  # not yet scored by the CRM
    device = rng.choice(["mobile", "desktop", "tablet"], n, p=[0.55, 0.35, 0.10])
    region = pd.Categorical(rng.choice(["north", "south", "east", "west"], n))

    value = np.where(never, 45.0, aov)
    lapsed = never | (np.nan_to_num(recency, nan=999.0) > 90)
    engaged = np.nan_to_num(open_rate, nan=0.0) > 0.3
    logit = (-2.0 + 0.5 * np.log1p(orders) - 0.004 * np.nan_to_num(recency, nan=365.0)
             + 2.0 * np.nan_to_num(open_rate, nan=0.2))
    p0 = 1.0 / (1.0 + np.exp(-logit))
    lift_discount = np.where(segment == "vip", 0.0, 0.10 * lapsed + 0.06 * (segment == "new") + 0.02)
    lift_shipping = 0.07 * engaged + 0.05 * (device == "mobile") + 0.01
    p = np.column_stack([p0, np.minimum(p0 + lift_discount, 0.95), np.minimum(p0 + lift_shipping, 0.95)])
    per_order = np.column_stack([value, (1 - DISCOUNT) * value, value - SHIPPING_COST])
    truth = p * per_order

    arm = rng.integers(0, 3, n)
    converted = rng.random(n) < p[np.arange(n), arm]
    basket = rng.gamma(4.0, 0.25, n)  # mean 1: the order's value around the customer's usual
    net = np.where(converted, per_order[np.arange(n), arm] * basket, 0.0).round(2)
    table = pd.DataFrame({
        "customer_id": [f"c{seed}-{i:06d}" for i in range(n)],
        "days_since_order": recency, "orders_12m": orders, "avg_order_value": aov, "open_rate": open_rate,
        "tenure_days": tenure, "segment": segment, "device": device, "region": region,
        "arm": np.asarray(ARMS, dtype=object)[arm], "propensity": np.full(n, 1 / 3), "net_revenue": net,
    })
    return table, truth


SEEDS = (0, 1, 2, 3, 4)


@pytest.fixture(scope="module")
def runs() -> dict[int, dict[str, Any]]:
    """Each seed's experiment: fitted on 70% of customers, judged on the other 30%."""
    return {seed: fit_and_judge(seed) for seed in SEEDS}


def fit_and_judge(seed: int, customers: int = 30_000) -> dict[str, Any]:
    table, truth = email_experiment(customers, seed)
    in_fit = np.random.default_rng(seed + 100).random(len(table)) < 0.7  # one row per customer: a customer split
    train, test = table[in_fit], table[~in_fit]

    # The user's whole job: name the columns.
    learner = PolicyLearner(actions=ARMS).fit(
        train[COVARIATES], train["net_revenue"], action=train["arm"], pscore=train["propensity"],
        groups=train["customer_id"])
    log = LoggedBandit.from_frame(test, action="arm", reward="net_revenue", pscore="propensity", actions=ARMS,
                                  groups="customer_id")
    dist = learner.action_dist(test[COVARIATES])
    dr = estimate(DoublyRobust(), log, dist, learner.predict_reward(test[COVARIATES]), groups=log.groups)
    ips = estimate(IPS(), log, dist, groups=log.groups)

    mu = truth[~in_fit]
    chosen = pd.Categorical(learner.predict(test[COVARIATES]), categories=ARMS).codes
    # "The noise": the standard error of a difference of two arms' mean outcomes on the fitted
    # customers, the smallest difference this experiment resolves. Clear cases: best arm ahead by 2 SE.
    by_arm = train.groupby("arm")["net_revenue"]
    noise = float(np.sqrt((by_arm.var() / by_arm.size()).nlargest(2).sum()))
    ranked = np.sort(mu, axis=1)
    clear = ranked[:, -1] - ranked[:, -2] > 2 * noise
    run = {
        "clear": float(clear.mean()), "gap": 2 * noise,
        "agree": float((chosen == mu.argmax(axis=1))[clear].mean()),
        "best_single": max(float((mu.argmax(axis=1) == a)[clear].mean()) for a in range(3)),
        "true_value": float(mu[np.arange(len(mu)), chosen].mean()),
        "best_arm": float(mu.mean(axis=0).max()), "oracle": float(mu.max(axis=1).mean()),
        "DR": dr, "IPS": ips,
    }
    print(f"\nseed {seed}: clear cases {run['clear']:.0%} (gap > {run['gap']:.2f}), agreement {run['agree']:.3f} "
          f"(best single arm {run['best_single']:.3f}); true value {run['true_value']:.3f} (best arm "
          f"{run['best_arm']:.3f}, oracle {run['oracle']:.3f}); DR {dr.value:.3f} [{dr.lower:.3f}, {dr.upper:.3f}], "
          f"IPS {ips.value:.3f} [{ips.lower:.3f}, {ips.upper:.3f}]")
    return run


@pytest.mark.parametrize("seed", SEEDS)
def test_learner_picks_the_true_best_arm_where_the_effects_differ(runs: dict[int, dict[str, Any]], seed: int) -> None:
    r = runs[seed]
    # Measured: 74-76% of customers are clear cases; agreement 0.77-0.83 there, against 0.58-0.60
    # for the best single arm.
    assert r["clear"] > 0.5 and r["agree"] >= 0.7 and r["agree"] >= r["best_single"] + 0.15, r
    # Better than sending everyone the best arm, by at least 40% of what the oracle would add.
    assert r["true_value"] - r["best_arm"] >= 0.4 * (r["oracle"] - r["best_arm"]), r


def test_estimated_value_intervals_cover_the_true_value_of_its_decisions(runs: dict[int, dict[str, Any]]) -> None:
    intervals = [(seed, e) for seed in SEEDS for e in (runs[seed]["DR"], runs[seed]["IPS"])]
    covered = [e.lower <= runs[seed]["true_value"] <= e.upper for seed, e in intervals]
    # Ten 95% intervals: fewer than nine cover with probability ~1.2% (binomial tail).
    assert sum(covered) >= 9, [(seed, e.estimator, round(e.value, 3)) for (seed, e), ok in
                               zip(intervals, covered, strict=True) if not ok]
    assert all(runs[seed]["DR"].interval == "bootstrap-percentile" for seed in SEEDS)
