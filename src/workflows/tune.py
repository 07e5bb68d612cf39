"""``cadence tune``: Optuna over a policy family's parameters, judged offline by doubly-robust net revenue.

Customers are split in two: learned policies fit on one half, every trial is
judged on the other half's log by the doubly-robust estimate of net revenue
per trigger (one reward model, fitted once, shared by all trials). A trial
whose policy sends more than ``max_weekly`` messages per customer per week
is infeasible (Optuna's constraint interface): the send volume of a
deterministic policy on the logged triggers is known exactly, no estimate
needed. Every trial is a nested MLflow run; the best feasible parameters
are saved with :func:`cadence.deployment.registry.save_policy` for
``cadence evaluate`` and ``cadence export``.

The search spaces are :data:`cadence.deployment.tuning.SPACES`; the learned
family's includes which context families the policy learner decides with,
so its log carries the customer's features and the models' scores as of
each trigger (:func:`cadence.workflows.logs.load_context`, once per study).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cadence.data.bandit import split_customers
from cadence.data.io import PathLike
from cadence.deployment.registry import FAMILIES, save_policy
from cadence.deployment.tuning import SPACES, weekly_sends
from cadence.evaluation.compare import compare
from cadence.evaluation.estimators import DoublyRobust
from cadence.evaluation.offline import target_codes
from cadence.models.response import ResponseModel
from cadence.workflows.logs import load_context, load_log
from cadence.workflows.policies import POLICIES_DIR


def tune_policy(
    data_dir: PathLike,
    family: str,
    n_trials: int = 20,
    *,
    name: str | None = None,
    max_weekly: float = 3.0,
    policies_dir: PathLike = POLICIES_DIR,
    tracking_uri: str | None = None,
    experiment: str = "cadence-policies",
    seed: int = 0,
    progress: bool = False,
) -> dict[str, Any]:
    """Search ``family``'s parameters; save and return the best feasible ones.

    Returns
    -------
    dict
        ``name``, ``family``, ``best_params``, ``best_dr_net_revenue`` (with
        ``lower``/``upper``), ``weekly_sends``, ``trials``, ``feasible_trials``,
        ``run_id`` and the saved ``path``.
    """
    import mlflow
    import optuna

    from cadence.data.io import fingerprint
    from cadence.workflows.tracking import experiment_id
    from cadence.workflows.tracking import tracking_uri as resolve_uri

    if family not in SPACES:
        raise ValueError(f"family: {family!r} is not one of {sorted(SPACES)}")
    if n_trials < 1:
        raise ValueError(f"trials: expected at least 1, got {n_trials}")
    name = name or f"tuned-{family}"
    # The learned space searches the policy learner's context families: the log carries them all, computed
    # once for every trial (the rules' search reads the trigger's columns only and computes none).
    log = load_log(data_dir, context=load_context(data_dir, families=("customer", "scores")) if family == "learned"
                   else None)
    fit_rows, eval_rows = split_customers(log, 0.5, seed)
    train, test = log.subset(fit_rows), log.subset(eval_rows)
    feedback = test.for_metric("net_revenue")
    model = ResponseModel(random_state=seed).fit(test, "net_revenue")
    uri = resolve_uri(tracking_uri)
    mlflow.set_tracking_uri(uri)
    exp = experiment_id(experiment, uri)

    def objective(trial: optuna.Trial) -> float:
        params = SPACES[family](trial)
        policy = FAMILIES[family](**params)
        if family == "learned":
            policy = policy.fit(train)
        codes = target_codes(policy, test.candidates, seed)
        volume = weekly_sends(test, codes)
        q = model.matrix([test.action, codes])
        dist = np.zeros((test.n, q.shape[1]), np.float32)
        dist[np.arange(test.n), codes] = 1.0
        row = compare(feedback, {"trial": dist}, [DoublyRobust()], q, groups=test.groups,
                      random_state=seed).iloc[0]
        trial.set_constraint("weekly_sends_over_limit", volume - max_weekly)
        trial.set_user_attr("constraint", (volume - max_weekly,))
        trial.set_user_attr("weekly_sends", volume)
        trial.set_user_attr("lower", float(row["lower"]))
        trial.set_user_attr("upper", float(row["upper"]))
        with mlflow.start_run(experiment_id=exp, run_name=f"trial-{trial.number}", nested=True):
            mlflow.log_params({"family": family, **{k: str(v) for k, v in params.items()}})
            mlflow.log_metrics({"dr_net_revenue": float(row["value"]), "dr_lower": float(row["lower"]),
                                "dr_upper": float(row["upper"]), "weekly_sends": volume,
                                "ess": float(row["ess"])})
        return float(row["value"])

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=seed)
    with mlflow.start_run(experiment_id=exp, run_name=f"tune-{family}") as parent:
        mlflow.set_tags({"cadence.kind": "tune-policy", "cadence.family": family,
                         "cadence.data_sha256": fingerprint(data_dir, ["messages", "customers"])})
        mlflow.log_params({"family": family, "n_trials": n_trials, "max_weekly": max_weekly, "seed": seed})
        study = optuna.create_study(direction="maximize", sampler=sampler)
        study.optimize(objective, n_trials=n_trials, show_progress_bar=progress)
        feasible = [t for t in study.trials if t.value is not None and t.user_attrs["constraint"][0] <= 0]
        if not feasible:
            raise ValueError(f"no trial met the constraint of {max_weekly:g} messages per customer per week; "
                             "raise --max-weekly or run more trials")
        best = max(feasible, key=lambda t: float(t.value))  # type: ignore[arg-type]
        params = SPACES[family](optuna.trial.FixedTrial(best.params))
        mlflow.log_params({f"best_{k}": str(v) for k, v in params.items()})
        mlflow.log_metric("best_dr_net_revenue", float(best.value))  # type: ignore[arg-type]
    result = {
        "name": name, "family": family, "best_params": params,
        "best_dr_net_revenue": float(best.value),  # type: ignore[arg-type]
        "lower": best.user_attrs["lower"], "upper": best.user_attrs["upper"],
        "weekly_sends": best.user_attrs["weekly_sends"], "trials": len(study.trials),
        "feasible_trials": len(feasible), "run_id": parent.info.run_id,
    }
    result["path"] = str(save_policy(name, family, params, policies_dir=policies_dir,
                                     meta={k: v for k, v in result.items() if k != "best_params"}))
    return result
