"""Policies by name on a data directory: the offline comparison, the replay and the send-time check that ``cadence evaluate``, ``simulate`` and the demo run.

A policy that decides with the customer's features or the models' scores
(the built-in ``learned``, :data:`cadence.deployment.registry.LEARNED_PARAMS`)
gets them as of each trigger: the log is loaded with the context its
families need (:func:`named_context`, computed once per call and only when
some named policy reads it), so fitting, the offline estimates and the
replay (which walks the log's candidates, context columns included) all see
the same rows. A caller judging several things on one data directory (the
demo, the report) computes the context once and passes it as ``context``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypedDict

import numpy as np
import pandas as pd

from cadence.contract.actions import LOGGING, Policy
from cadence.data.bandit import LoggedBandit, split_customers
from cadence.data.io import PathLike
from cadence.deployment.registry import build_policy, context_families, needs_fit
from cadence.evaluation.estimators import OffPolicyEstimator
from cadence.features.policy_context import PolicyContext
from cadence.models.send_time import SendTimeModel
from cadence.policies.orchestrator import OrchestratedPolicy, OrchestratorConfig
from cadence.policies.send_time import SendTimePolicy
from cadence.simulation.replay import Engine, simulate
from cadence.workflows.logs import load_context, load_log
from cadence.workflows.send_time import fit_send_time
from cadence.workflows.splits import holdout_cutoff

#: Where ``cadence tune`` saves policies and the commands look them up by default: ``data/processed/policies``
#: under the current directory (ignored by git, like other derived data). Library functions take the folder
#: explicitly (:mod:`cadence.deployment.registry`); the workflows default to this one.
POLICIES_DIR = Path("data/processed/policies")


def named_context(data_dir: PathLike, names: Sequence[str], *, policies_dir: PathLike | None = POLICIES_DIR,
                  context: PolicyContext | None = None) -> PolicyContext | None:
    """The context beyond the trigger's columns that the named policies decide with; ``None`` when none reads any.

    ``context`` when given (computed once by the caller), else
    :func:`~cadence.workflows.logs.load_context` of the families the policies
    read (:func:`~cadence.deployment.registry.context_families`). Nothing is
    computed for the rules, the logging policy or the uplift designs.
    """
    families = context_families(list(names), policies_dir)
    if not families:
        return None
    return context if context is not None else load_context(data_dir, families=families)


def evaluate_named(data_dir: PathLike, names: list[str], *, metrics: tuple[str, ...] | None = None,
                   policies_dir: PathLike = POLICIES_DIR, seed: int = 0, fit_share: float = 0.5,
                   n_refit: int | None = 20, estimators: Sequence[OffPolicyEstimator] | None = None,
                   context: PolicyContext | None = None) -> pd.DataFrame:
    """``cadence evaluate``: estimate named policies on a data directory's messages log.

    When a named policy learns from the log, customers are split (``fit_share``
    to fit) and every policy is judged on the other customers' rows only;
    ``df.attrs`` records the split. ``n_refit`` refits of the reward model
    give the direct method its interval; ``estimators`` defaults to
    :data:`~cadence.evaluation.offline.DEFAULT_ESTIMATORS` (see
    :func:`~cadence.evaluation.offline.evaluate`). ``context``: the
    policies' context, when the caller computed it (:func:`named_context`).
    """
    from cadence.evaluation.offline import evaluate
    from cadence.features.logged import METRICS

    names = [n for n in dict.fromkeys(names) if n != LOGGING]
    log = load_log(data_dir, context=named_context(data_dir, names, policies_dir=policies_dir, context=context))
    train, test = None, log
    if any(needs_fit(n, policies_dir) for n in names):
        fit_rows, eval_rows = split_customers(log, fit_share, seed)
        train, test = log.subset(fit_rows), log.subset(eval_rows)
    policies = {n: build_policy(n, train, policies_dir=policies_dir) for n in names}
    df = evaluate(test, {k: v for k, v in policies.items() if v is not None}, metrics=metrics or METRICS, seed=seed,
                  n_refit=n_refit, estimators=estimators)
    df.attrs.update({"rows_evaluated": test.n, "rows_fitted": 0 if train is None else train.n})
    return df


def fitted_named(data_dir: PathLike, name: str, *, policies_dir: PathLike = POLICIES_DIR, seed: int = 0,
                 fit_share: float = 0.5, context: PolicyContext | None = None) -> tuple[Policy | None, LoggedBandit]:
    """A named policy fitted as ``cadence evaluate`` fits it, and the log it is judged on.

    A policy that learns is fitted on the ``fit_share`` of customers
    :func:`~cadence.data.bandit.split_customers` draws with ``seed`` (the
    same split as :func:`evaluate_named`'s) and returned with the other
    customers' rows; any other policy with the whole log. ``None`` for
    ``logging``. The log carries the policy's context (:func:`named_context`).
    """
    log = load_log(data_dir, context=named_context(data_dir, [name], policies_dir=policies_dir, context=context))
    if not needs_fit(name, policies_dir):
        return build_policy(name, None, policies_dir=policies_dir), log
    fit_rows, eval_rows = split_customers(log, fit_share, seed)
    return build_policy(name, log.subset(fit_rows), policies_dir=policies_dir), log.subset(eval_rows)


def simulate_named(data_dir: Any, policy: str, baseline: str = LOGGING, *,
                   config: OrchestratorConfig | None = None, engine: Engine = "process", workers: int | None = None,
                   seed: int = 0, progress: bool = False, policies_dir: PathLike | None = None,
                   context: PolicyContext | None = None, fatigue_matched: bool = False) -> dict[str, Any]:
    """``cadence simulate``: replay named policies (each behind the orchestrator) on a data directory.

    Policies that learn are fitted on half of the customers and every
    replay runs on the other half, as in ``cadence evaluate``. The
    orchestrator gets the shop's orders, for goal suppression. A policy
    that reads the customer's features or scores finds them on the
    replayed candidates: the log is loaded with them (:func:`named_context`).
    ``fatigue_matched`` adds the estimators matched on the replayed fatigue
    (:func:`~cadence.simulation.replay.simulate`) and shows their DR in the table.
    """
    from cadence.data.io import read_tables

    where = POLICIES_DIR if policies_dir is None else policies_dir
    log = load_log(data_dir, context=named_context(data_dir, [policy, baseline], policies_dir=where, context=context))
    orders = read_tables(data_dir, ["orders"]).get("orders")
    train, test = None, log
    if any(needs_fit(n, where) for n in (policy, baseline)):
        fit_rows, eval_rows = split_customers(log, 0.5, seed)
        train, test = log.subset(fit_rows), log.subset(eval_rows)
    cfg = config or OrchestratorConfig()

    def orchestrated(name: str) -> Policy | None:
        p = build_policy(name, train, policies_dir=where)
        return None if p is None else OrchestratedPolicy(p, cfg, orders=orders)

    cand = orchestrated(policy)
    if cand is None:
        raise ValueError("policy: 'logging' is what the log already shows; replay another policy against it")
    out: dict[str, Any] = simulate(test, cand, orchestrated(baseline), engine=engine, workers=workers, seed=seed,
                                   progress=progress, fatigue_matched=fatigue_matched)
    out["meta"] = {"policy": policy, "baseline": baseline, "rows": test.n,
                   "rows_fitted": 0 if train is None else train.n, "orchestrator": cfg.to_dict(),
                   "fatigue_matched": fatigue_matched}
    return out


class SendTimeJudgement(TypedDict):
    """What :func:`judge_send_time` returns."""

    #: The send-time model, fitted before ``as_of``.
    model: SendTimeModel
    #: :func:`~cadence.evaluation.offline.evaluate`'s table for the rules with and without learned send times.
    estimates: pd.DataFrame
    #: The cutoff: the model learns before it, the policies are judged on the triggers from it on.
    as_of: pd.Timestamp


def judge_send_time(data_dir: PathLike, *, holdout_days: float = 90.0, seed: int = 0,
                    metrics: tuple[str, ...] = ("open", "conversion", "net_revenue"),
                    n_refit: int | None = 20, **model_params: object) -> SendTimeJudgement:
    """Learn send times before the last ``holdout_days`` and judge them offline on those days.

    A history shorter than three times ``holdout_days`` is split at two thirds instead.

    Fits :class:`~cadence.models.send_time.SendTimeModel` on the sends (and
    opens and clicks) before the cutoff, then estimates the fixed-delay rules
    and the same rules with learned send times (``grid="slots"``, the delays
    the logs randomise) on the triggers after it, with every estimator and
    its 95% interval (:func:`~cadence.evaluation.offline.evaluate`, with
    ``n_refit`` refits behind the direct method's interval). The
    model never sees the outcomes it is judged on. Returns ``model``,
    ``estimates`` and ``as_of``.
    """
    from cadence.evaluation.offline import evaluate
    from cadence.policies.rules import RulesPolicy

    log = load_log(data_dir)
    t = pd.to_datetime(log.candidates["triggered_at"], utc=True)
    # A short history keeps two thirds for learning.
    as_of = holdout_cutoff(t.min(), t.max(), holdout_days)
    later = np.flatnonzero((t >= as_of).to_numpy())
    if len(later) == 0:
        raise ValueError(f"{data_dir}: no triggers in the last {holdout_days:g} days to judge send times on")
    model = fit_send_time(data_dir, as_of, **model_params)
    # The greedy policy is judged (offline evaluation takes deterministic targets); exploration is for deployment.
    policies: dict[str, Policy] = {"rules": RulesPolicy(),
                                   "rules + send time": SendTimePolicy(RulesPolicy(), model, exploration=0.0)}
    estimates = evaluate(log.subset(later), policies, metrics=metrics, seed=seed, n_refit=n_refit)
    return {"model": model, "estimates": estimates, "as_of": as_of}
