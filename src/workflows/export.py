"""Export a send policy as a versioned MLflow model that serving teams load by alias.

:func:`export_policy` fits what the named policy needs on a data
directory's messages log, estimates it offline, and logs **one** MLflow
pyfunc model (:class:`~cadence.deployment.serving.PolicyModel`) with

* an output signature (no input schema: the model checks its inputs, listed
  in the metadata's ``inputs``) and a synthetic input example (no customer
  ids, no real rows);
* pinned requirements: the exact installed version of every distribution
  the served model needs to load and decide, measured by loading it in a
  fresh process (:func:`~cadence.deployment.export.served_packages`);
* the ``cadence`` code itself (``code_paths``), so the serving process needs
  no install of this project;
* metadata, as run tags/params/metrics, model-version tags and the model's
  own ``metadata``: the data fingerprint (SHA-256 of ``messages``,
  ``customers`` and ``orders``), ``as_of`` (the latest trigger in the log), the git commit,
  the policy's family and parameters, its off-policy estimates with
  intervals (``ope_estimates.json`` and ``dr_*`` metrics), and the
  orchestrator's settings (``orchestrator.json``) when
  :mod:`cadence.policies.orchestrator` is installed.

It registers a new version under ``model_name`` (versions are never
overwritten) and points the alias ``challenger`` at it;
:func:`cadence.workflows.promote.promote` moves ``champion``.

A policy that decides with the customer's features and the models' scores
(the built-in ``learned``) is fitted and estimated on the messages log with
that context as of each trigger (:func:`cadence.workflows.policies.named_context`):
the served model is judged on rows shaped as the pipeline's decision rows
(the trigger's columns, the customer's features, the scores), which is what
it takes in serving (:func:`cadence.deployment.serving.input_example`). The
families are recorded (tag ``context``), so the gate judges on the same rows.

Learned policies are fitted on a share of the customers and estimated on
the others (:func:`~cadence.data.bandit.split_customers`); the split
is recorded, so the promotion gate can judge on the same held-out rows.
The estimates are those of the model *as served*: its full action
distribution, exploration (``epsilon``) and rules fallbacks included
(:func:`cadence.deployment.promotion.estimate_served`), so what is recorded
is what the promotion gate judges. When the overlap diagnostics call that
estimate unsupported (the log never explored what the model would do), the
export is refused unless ``force`` (``--force``), and a forced version is
tagged ``estimate_supported = false`` with the reason.

The data directory and fingerprint recorded are those of the user's data:
pass ``source`` when ``data_dir`` is the contract gate's conformed copy
(:class:`cadence.data.gate.Gate`), so a later ``promote`` finds the data and
compares fingerprints with the same files.

Examples
--------
>>> import tempfile
>>> from cadence.synthetic import ShopConfig, generate_shop
>>> d = tempfile.mkdtemp()
>>> shop = generate_shop(ShopConfig(customers=300, days=60, seed=1), d + "/shop")
>>> uri = f"sqlite:///{d}/mlflow.db"
>>> export_policy(shop, "rules", "doc-policy", tracking_uri=uri)  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
ValueError: policy 'rules' served with epsilon 0.05: the log does not support its estimate (unsupported: effective sample size ...
>>> res = export_policy(shop, "rules", "doc-policy", tracking_uri=uri, force=True)  # 300 customers are too few
>>> res["version"], res["alias"], res["supported"]
('1', 'challenger', False)
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cadence.data.bandit import split_customers
from cadence.data.io import PathLike
from cadence.deployment.export import (
    CHALLENGER,
    EXPERIMENT,
    TABLES,
    TAG,
    copy_package,
    git_commit,
    orchestrator_settings,
    pinned_requirements,
    policy_family,
    policy_params,
    served_packages,
)
from cadence.deployment.registry import build_policy, needs_fit
from cadence.features.policy_context import PolicyContext
from cadence.policies.sequences import DEFAULT_SEQUENCES, Sequence
from cadence.workflows import tracking
from cadence.workflows.policies import POLICIES_DIR, named_context
from cadence.workflows.recommendations import DEFAULT_RECOMMENDER, export_items
from cadence.workflows.tracking import using_tracking


def _estimates_summary(df: pd.DataFrame, name: str) -> dict[str, dict[str, float]]:
    """``{metric: {value, lower, upper, lift, lift_lower, lift_upper, logging}}`` of the DR rows."""
    out: dict[str, dict[str, float]] = {}
    dr = df[df["estimator"] == "DR"]
    for metric, g in dr.groupby("metric", sort=False):
        row = g[g["policy"] == name].iloc[0]
        ref = g[g["policy"] == "logging"].iloc[0]
        out[str(metric)] = {k: float(row[k]) for k in ("value", "lower", "upper", "lift", "lift_lower",
                                                        "lift_upper")}
        out[str(metric)]["logging"] = float(ref["value"])
    return out


def _scalar(v: Any) -> str:
    return "None" if v is None else (json.dumps(v) if isinstance(v, (dict, list, tuple)) else str(v))


def export_policy(
    data_dir: PathLike,
    policy_name: str,
    model_name: str,
    *,
    tracking_uri: str | None = None,
    epsilon: float = 0.05,
    seed: int = 0,
    fit_share: float = 0.5,
    policies_dir: PathLike = POLICIES_DIR,
    experiment: str = EXPERIMENT,
    replay: bool = False,
    sequences: Mapping[str, Sequence] | None = None,
    send_time: Any = None,
    source: PathLike | None = None,
    force: bool = False,
    recommender: str | None = DEFAULT_RECOMMENDER,
    n_items: int = 3,
    context: PolicyContext | None = None,
) -> dict[str, Any]:
    """Fit, estimate and log ``policy_name`` as a new version of registered model ``model_name``.

    Parameters
    ----------
    data_dir
        A shop's data directory with ``messages`` and ``customers``.
    policy_name
        ``rules``, ``learned`` or a policy saved by ``cadence tune``.
    model_name
        Registered model name; the new version gets alias ``challenger``.
    tracking_uri
        Default :func:`cadence.workflows.tracking.tracking_uri` (``$MLFLOW_TRACKING_URI``
        or ``sqlite:///mlflow.db`` in the current directory).
    epsilon
        Exploration probability of the served policy, in ``[0, 1)``.
    seed
        Seed of the customer split, the bootstrap and the served model's
        exploration hash.
    fit_share
        Share of customers a learned policy is fitted on (the rest are
        used for its estimates).
    replay
        Also replay history under the policy (behind the default
        orchestrator) against the logged policy and record the lift table
        (``replay_lift.json``, ``replay_*`` metrics, model metadata). Off by
        default: the replay takes longer than the export.
    sequences
        The message sequences the sending system runs per stage (default
        :data:`cadence.policies.sequences.DEFAULT_SEQUENCES`), exported as
        ``sequences.json`` and in the model metadata, like the orchestrator
        settings: the pyfunc decides the first message of a trigger; the
        sending system runs the later steps.
    send_time
        A fitted :class:`~cadence.models.send_time.SendTimeModel`: its
        shop-level settings and curve (peak-hour prior, lift, bandwidth,
        channel rates, weekday factors; no customer) are exported as
        ``send_time.json`` and in the metadata, for the sending system to
        time the sends. Per-customer profiles are keyed by customer id and
        stay out of the registry.
    source
        The user's data directory when ``data_dir`` is the contract gate's
        conformed copy of it (:attr:`cadence.data.gate.Gate.source`): its
        path and fingerprint are recorded (default: ``data_dir``'s).
    force
        Register even when the estimate is unsupported (tagged so).
    recommender
        The recommender (:data:`cadence.workflows.recommendations.RECOMMENDERS`)
        whose per-stage item selection the served model fills ``items`` with,
        fitted on the shop's events and orders before ``as_of`` with
        pseudonymised customer ids (:func:`cadence.workflows.recommendations.export_items`);
        None, or a data directory without ``orders`` and ``order_items``:
        the trigger's products. Recorded in the metadata (``items``).
    n_items
        Products per message at most.
    context
        The policy's :class:`~cadence.features.policy_context.PolicyContext`
        when the caller already computed it (the demo); computed here when
        the policy needs one (:func:`~cadence.workflows.policies.named_context`).

    Returns
    -------
    dict
        ``model_name, version, alias, model_uri, run_id, data_sha256,
        as_of, git_commit, estimates`` (DR per metric with intervals, and
        the logging policy's value, of the model as served), ``supported``
        and ``support_reason`` (the overlap diagnostics), ``requirements``,
        ``items`` (what the served model fills ``items`` with).
    """
    import mlflow

    from cadence.contract.actions import LOGGING
    from cadence.data.io import fingerprint
    from cadence.deployment.items import item_packages
    from cadence.deployment.promotion import estimate_served
    from cadence.deployment.serving import (
        INPUT_COLUMNS,
        OUTPUT_COLUMNS,
        PolicyModel,
        input_example,
        model_signature,
        needed_families,
    )
    from cadence.workflows.logs import load_log

    if not 0.0 <= epsilon < 1.0:
        raise ValueError(f"epsilon: expected a probability in [0, 1), got {epsilon}")
    if policy_name == LOGGING:
        raise ValueError("policy 'logging' is the policy that wrote the log; export rules, learned or a tuned one")
    if not model_name or any(c in model_name for c in "/\\@:"):
        raise ValueError(f"model_name {model_name!r}: use letters, digits, '-', '_' and '.'")
    ctx = named_context(data_dir, [policy_name], policies_dir=policies_dir, context=context)
    log = load_log(data_dir, context=ctx)
    if log.n == 0:
        raise ValueError(f"{data_dir}: the messages log is empty")
    learns = needs_fit(policy_name, policies_dir)
    train, test, share = None, log, 0.0
    if learns:
        fit_rows, eval_rows = split_customers(log, fit_share, seed)
        train, test, share = log.subset(fit_rows), log.subset(eval_rows), fit_share
    policy = build_policy(policy_name, train, policies_dir=policies_dir)
    assert policy is not None  # only 'logging' builds to None
    if getattr(policy, "row_wise", True) is False:
        raise ValueError(f"policy {policy_name!r} decides rows jointly; the served model decides (and "
                         "falls back) row by row, so it needs a row-wise policy")
    assert log.candidates is not None  # a log of the messages table always has its candidates
    as_of = pd.Timestamp(log.candidates["triggered_at"].max()).isoformat()
    served_items, items_note = export_items(data_dir, as_of, recommender, n_items=n_items, seed=seed)
    model = PolicyModel(policy, epsilon=epsilon, seed=seed, items=served_items)
    example = input_example()
    model.predict(None, example)  # fail here, not in the registry, if the policy cannot serve
    # What is recorded is what the gate judges: the served distribution, exploration included.
    assert test.candidates is not None  # a log of the messages table always has its candidates
    estimates = estimate_served(test, model.action_distribution(test.candidates), policy_name, seed=seed)
    summary = _estimates_summary(estimates, policy_name)
    mine = estimates[estimates["policy"] == policy_name]
    supported = bool(mine["supported"].all())
    support_reason = str(mine.loc[~mine["supported"], "reason"].iloc[0] if not supported else mine["reason"].iloc[0])
    if not supported and not force:
        raise ValueError(f"policy {policy_name!r} served with epsilon {epsilon:g}: the log does not support its "
                         f"estimate ({support_reason}); nothing registered. Pass --force to register it anyway, "
                         "tagged estimate_supported = false")
    replay_table = None
    if replay:
        from cadence.workflows.policies import simulate_named

        replay_table = simulate_named(data_dir, policy_name, LOGGING, seed=seed,
                                      policies_dir=policies_dir, context=ctx)["table"]

    # What the model needs to load and decide, measured in a fresh process (not what the policy needs to fit),
    # and what unpickling its item selector needs (some stages load more than the input example reaches).
    requirements = pinned_requirements(served_packages(model)
                                       | (set() if served_items is None else item_packages(served_items)))
    commit, dirty = git_commit()
    family = policy_family(policy)
    params = policy_params(policy)
    orchestrator = orchestrator_settings()
    seqs = [q.to_dict() for q in (DEFAULT_SEQUENCES if sequences is None else sequences).values()]
    st_summary = None if send_time is None else send_time.summary()
    theirs = Path(data_dir if source is None else source)
    digest = fingerprint(theirs, list(TABLES))
    tags = {
        "kind": "export-policy", "policy": policy_name, "policy_family": family, "policy_id": policy.policy_id,
        "data_sha256": digest, "as_of": as_of, "git_commit": commit, "git_dirty": str(dirty).lower(),
        "epsilon": f"{epsilon:g}", "seed": str(seed), "fit_share": f"{share:g}",
        "data_dir": str(theirs.resolve()), "rows_fitted": str(0 if train is None else train.n),
        "rows_evaluated": str(test.n),
        "context": ",".join(("trigger", *needed_families(policy))),
        "orchestrator": "orchestrator.json" if orchestrator is not None else "unavailable",
        "items": "trigger products" if served_items is None else served_items.recommender,
        "dr_net_revenue": "{value:.4f} [{lower:.4f}, {upper:.4f}]".format(**summary["net_revenue"]),
        "estimate_of": "served", "estimate_supported": str(supported).lower(),
        **({} if supported else {"estimate_warning": support_reason, "forced": "true"}),
    }
    tags = {TAG + k: v for k, v in tags.items()}
    metadata = {
        "cadence": {
            "policy": policy_name, "family": family, "params": {k: _scalar(v) for k, v in params.items()},
            "data_sha256": digest, "as_of": as_of, "git_commit": commit, "git_dirty": dirty,
            "epsilon": epsilon, "seed": seed, "fit_share": share, "estimates": summary,
            "estimates_of": f"the model as served (epsilon = {epsilon:g}, exploration and rules fallbacks "
                            "included), doubly robust, per trigger, 95% intervals clustered by customer",
            "estimate_supported": supported, "estimate_support": support_reason,
            "orchestrator": orchestrator,
            "sequences": seqs,
            "send_time": st_summary,
            "items": {"source": items_note, **({} if served_items is None else served_items.describe())},
            "replay_lift": None if replay_table is None else json.loads(replay_table.to_json(orient="records")),
            "inputs": {c.name: c.doc for c in INPUT_COLUMNS},
            "outputs": {c.name: c.doc for c in OUTPUT_COLUMNS},
        }
    }
    metrics: dict[str, float] = {}
    for metric, s in summary.items():
        for k, v in s.items():
            name = f"dr_{metric}" if k == "value" else f"dr_{metric}_{k}"
            if np.isfinite(v):
                metrics[name] = v

    uri = tracking.tracking_uri(tracking_uri)
    with using_tracking(uri), tempfile.TemporaryDirectory(prefix="cadence-export-") as tmp:
        code = copy_package(tmp)
        exp = tracking.experiment_id(experiment, uri)
        with mlflow.start_run(experiment_id=exp, run_name=f"export-{policy_name}") as run:
            mlflow.set_tags(tags)
            mlflow.log_params({"policy": policy_name, "family": family, "epsilon": epsilon, "seed": seed,
                               "fit_share": share, **{f"policy.{k}": _scalar(v) for k, v in params.items()}})
            mlflow.log_metrics(metrics)
            mlflow.log_dict({"rows_evaluated": test.n, "rows_fitted": 0 if train is None else train.n,
                             "fit_share": share, "seed": seed, "epsilon": epsilon, "estimates_of": "served",
                             "supported": supported, "estimates": json.loads(estimates.to_json(orient="records"))},
                            "ope_estimates.json")
            if orchestrator is not None:
                mlflow.log_dict({"applied_by_model": False, "settings": orchestrator}, "orchestrator.json")
            mlflow.log_dict({"applied_by_model": False, "sequences": seqs}, "sequences.json")
            if st_summary is not None:
                mlflow.log_dict({"applied_by_model": False, **st_summary}, "send_time.json")
            if replay_table is not None:
                mlflow.log_dict({"baseline": LOGGING, "estimator": "doubly robust, 95% intervals",
                                 "table": json.loads(replay_table.to_json(orient="records"))}, "replay_lift.json")
                mlflow.log_metrics({f"replay_{r.metric.replace(' ', '_')}_lift": float(r.lift)
                                    for r in replay_table.itertuples() if np.isfinite(r.lift)})
            info = mlflow.pyfunc.log_model(
                name="policy", python_model=model, code_paths=[str(code)], signature=model_signature(),
                input_example=example, pip_requirements=requirements, metadata=metadata,
            )
        # A new version every time (never overwritten), tagged in the same call.
        registered = mlflow.register_model(info.model_uri, model_name, tags=tags)
        ver = str(registered.version)
        client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
        client.set_registered_model_alias(model_name, CHALLENGER, ver)
    return {
        "model_name": model_name, "version": ver, "alias": CHALLENGER,
        "model_uri": f"models:/{model_name}/{ver}", "run_id": run.info.run_id, "tracking_uri": uri,
        "data_sha256": digest, "as_of": as_of, "git_commit": commit, "estimates": summary,
        "supported": supported, "support_reason": support_reason, "requirements": requirements,
        "replay": None if replay_table is None else replay_table.to_dict("records"),
        "items": items_note,
    }
