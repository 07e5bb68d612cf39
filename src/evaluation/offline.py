"""Compare send policies on a shop's messages log: values, lifts, intervals, diagnostics.

This is the shop-specific layer over the generic estimators of
:mod:`cadence.evaluation.estimators`: it reads ``messages`` and ``customers``,
rebuilds each logged decision's candidate (:func:`~cadence.features.logged.logged_candidates`),
asks every target policy what it would have decided there, and runs the
estimators for every metric (open, click, conversion, net revenue per
trigger) with the logging policy itself as the reference for lifts.

The direct method and the doubly-robust family need a reward model
``q(x, a)``: :class:`ResponseModel`, one gradient-boosted regressor per
metric on ``[context features, action features]``, cross-fitted over two
folds of customers so no row is scored by a model that saw it. It is only
evaluated at the actions that matter (the logged one and each target
policy's), which keeps the ``(n, n_actions)`` matrix cheap to fill.

The direct method's error is mostly the reward model's own, so its interval
refits :class:`ResponseModel` on ``n_refit`` customer-clustered Poisson
resamples (``interval == "refit-bootstrap"``, see
:class:`~cadence.evaluation.estimators.DirectMethod`); the other estimators resample
their per-row vectors.

Examples
--------
>>> import tempfile
>>> from cadence.synthetic import ShopConfig, generate_shop
>>> from cadence.workflows.logs import load_log
>>> from cadence.policies.rules import RulesPolicy
>>> shop = generate_shop(ShopConfig(customers=300, days=60, seed=1), tempfile.mkdtemp() + "/s")
>>> log = load_log(shop)
>>> df = evaluate(log, {"rules": RulesPolicy()}, metrics=("conversion",), reward_model=False)
>>> sorted(df["policy"].unique())
['logging', 'rules']
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from cadence.contract.actions import LOGGING, Policy, check_decisions, encode_actions
from cadence.data.bandit import LoggedBandit
from cadence.evaluation.compare import compare
from cadence.evaluation.estimators import (
    IPS,
    ON_POLICY,
    SNIPS,
    DirectMethod,
    DoublyRobust,
    OffPolicyEstimator,
    SwitchDR,
)
from cadence.features.logged import METRICS, one_hot
from cadence.models.response import ResponseModel

#: Estimators run by default: the four the issue names and a switch variant.
DEFAULT_ESTIMATORS: tuple[OffPolicyEstimator, ...] = (IPS(), SNIPS(), DirectMethod(), DoublyRobust(),
                                                      SwitchDR(tau=50.0))
#: The default estimators whose intervals need no refits of the reward model (all but DM): what the
#: demo and the report show, where DM's honest interval would cost ~20 model fits per metric.
NO_REFIT_ESTIMATORS: tuple[OffPolicyEstimator, ...] = tuple(e for e in DEFAULT_ESTIMATORS if not e.refit_interval)












def target_codes(policy: Policy, candidates: pd.DataFrame, seed: int = 0) -> np.ndarray:
    """The action codes a deterministic policy picks for each candidate.

    Raises a ``ValueError`` for a stochastic policy (propensities below 1):
    its full distribution cannot be read from one draw.
    """
    decisions = policy.decide(candidates, np.random.default_rng(seed))
    check_decisions(decisions, len(candidates), policy.policy_id)
    if (decisions["propensity"].to_numpy(float) < 1).any():
        raise ValueError(f"policy {policy.policy_id!r}: stochastic decisions (propensity < 1); "
                         "offline evaluation needs a deterministic policy or its full distribution")
    return encode_actions(candidates["stage"], decisions.reset_index(drop=True))




def evaluate(
    log: LoggedBandit,
    policies: Mapping[str, Policy],
    *,
    metrics: Sequence[str] = METRICS,
    estimators: Sequence[OffPolicyEstimator] | None = None,
    reward_model: bool = True,
    alpha: float = 0.05,
    min_ess: float = 100.0,
    seed: int = 0,
    n_refit: int | None = 20,
) -> pd.DataFrame:
    """Every policy's estimated value per metric and estimator, with lifts over the logging policy.

    Parameters
    ----------
    log
        From :func:`cadence.workflows.logs.load_log`.
    policies
        Name → deterministic :class:`~cadence.contract.actions.Policy`. The
        logging policy is always added first, as ``"logging"``.
    metrics
        Subset of :data:`~cadence.features.logged.METRICS`.
    estimators
        Default :data:`DEFAULT_ESTIMATORS` (IPS, SNIPS, DM, DR, Switch-DR);
        without a reward model only the model-free ones run.
    reward_model
        Fit :class:`ResponseModel` per metric (needed by DM and DR).
    alpha
        1 - confidence of the intervals (normal above 100,000 rows, seeded
        bootstrap below; the ``interval`` column says which). Both treat
        each customer's rows as one cluster: a customer's outcomes share
        their unobserved traits, so rows are not independent.
    n_refit
        The direct method's interval refits the reward model on this many
        customer-clustered Poisson resamples (``value +- 1.96 sd`` of the
        refitted estimates; ``interval == "refit-bootstrap"``), so it carries
        the model's own variance; each refit costs one model fit per metric.
        ``None`` keeps the context-only interval (too narrow; fast).

    Returns
    -------
    DataFrame
        One row per (metric, policy, estimator): ``value, lower, upper,
        lift, lift_lower, lift_upper`` (per trigger), the overlap
        diagnostics ``ess, max_weight, unsupported_mass, supported`` and a
        plain-language ``reason``.
    """
    if LOGGING in policies:
        raise ValueError(f"policies: {LOGGING!r} is reserved for the policy that wrote the log")
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"metrics: unknown {unknown}; choose from {METRICS}")
    codes = {name: target_codes(p, log.candidates, seed) for name, p in policies.items()}
    est = list(estimators) if estimators is not None else [
        e for e in DEFAULT_ESTIMATORS if reward_model or not isinstance(e, (DirectMethod, DoublyRobust, SwitchDR))
    ]
    frames = []
    for metric in metrics:
        q = None
        refit = None
        code_sets = [log.action, *codes.values()]
        if reward_model:
            model = ResponseModel(random_state=seed).fit(log, metric)
            q = model.matrix(code_sets)
            if n_refit is not None:
                refit = _refit(log, metric, code_sets, seed)
        dists: dict[str, Any] = {LOGGING: ON_POLICY, **{k: _LazyOneHot(v) for k, v in codes.items()}}
        refit_args = {} if refit is None else {"refit": refit, "n_refit": n_refit}
        df = compare(log.for_metric(metric), dists, est, q, reference=LOGGING, alpha=alpha,
                     min_ess=min_ess, random_state=seed, groups=log.groups, **refit_args)
        frames.append(df.assign(metric=metric))
    out = pd.concat(frames, ignore_index=True)
    cols = ["metric", "policy", "estimator"]
    return out[cols + [c for c in out.columns if c not in cols]]


def _refit(log: LoggedBandit, metric: str, code_sets: Sequence[np.ndarray], seed: int) -> Any:
    """A :data:`~cadence.evaluation.reward_models.RewardRefit` of :class:`ResponseModel` on this log."""

    def refit(multiplicity: np.ndarray) -> np.ndarray:
        return ResponseModel(random_state=seed).fit(log, metric, resample=multiplicity).matrix(code_sets)

    return refit


class _LazyOneHot:
    """A deterministic policy's codes, expanded to ``action_dist`` only when :func:`compare` reads it."""

    def __init__(self, codes: np.ndarray) -> None:
        self.codes = codes

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        dist = one_hot(self.codes)
        return dist if dtype is None else dist.astype(dtype)


def summary_table(df: pd.DataFrame, estimator: str = "DR") -> pd.DataFrame:
    """One row per (metric, policy) for one estimator: value and lift with their intervals, formatted."""
    d = df[df["estimator"] == estimator]
    if d.empty:
        raise ValueError(f"estimator: {estimator!r} not in the results ({sorted(df['estimator'].unique())})")
    scale = d["metric"].map(lambda m: 1.0 if m == "net_revenue" else 100.0)
    fmt = d["metric"].map(lambda m: "{:.3f}" if m == "net_revenue" else "{:.2f}%")

    def cell(v: float, lo: float, hi: float, f: str, s: float, sign: bool = False) -> str:
        f2 = f.replace("{:", "{:+") if sign else f
        return f"{f2.format(v * s)} [{f2.format(lo * s)}, {f2.format(hi * s)}]"

    return pd.DataFrame({
        "metric": d["metric"].to_numpy(),
        "policy": d["policy"].to_numpy(),
        "value": [cell(v, lo, hi, f, s) for v, lo, hi, f, s in
                  zip(d["value"], d["lower"], d["upper"], fmt, scale, strict=True)],
        "lift vs logging": [cell(v, lo, hi, f, s, True) if p != LOGGING else "" for v, lo, hi, f, s, p in
                            zip(d["lift"], d["lift_lower"], d["lift_upper"], fmt, scale, d["policy"], strict=True)],
        "supported": d["supported"].to_numpy(),
    })
