"""Promote a registered policy version to ``champion``, behind an off-policy gate.

:func:`promote` takes a version of a registered policy model (the newest
by default). When the name has no champion yet, the version becomes
champion without a gate. Otherwise both versions' pyfunc models are loaded
and judged on the same evaluation data, the messages log of the data
directory recorded on the candidate (or the one given): each model's full
action distribution (:meth:`~cadence.deployment.serving.PolicyModel.action_distribution`,
exploration included) is scored with the doubly-robust estimator of net
revenue per trigger, and the candidate's lift over the champion is a paired
difference with a customer-clustered interval
(:func:`cadence.evaluation.compare.compare`). ``champion`` moves only when that
interval lies above zero; otherwise the promotion is refused with both
estimates. Either way the gate's result is recorded as tags on the
candidate version.

When either version learned from the log, only the customers held out by
the candidate's recorded split are used, so the gate does not judge a
policy on the rows it was fitted on. (A champion fitted on another data
directory may have seen some of them; the tags record both fingerprints.)

Examples
--------
``promote("shop-policy")`` moves ``champion`` or refuses with both estimates;
the gate itself is :func:`cadence.deployment.promotion.gate`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from cadence.data.io import PathLike
from cadence.deployment.export import CHAMPION, TABLES, TAG
from cadence.deployment.promotion import METRIC, gate
from cadence.workflows import tracking
from cadence.workflows.tracking import using_tracking


def _tags(mv: Any) -> dict[str, str]:
    return dict(mv.tags or {})


def _distribution(model_uri: str, candidates: Any) -> np.ndarray:
    """A registered version's action distribution on ``candidates``."""
    import mlflow

    model = mlflow.pyfunc.load_model(model_uri).unwrap_python_model()
    if not hasattr(model, "action_distribution"):
        raise ValueError(f"{model_uri}: not a cadence policy model (no action_distribution)")
    dist: np.ndarray = model.action_distribution(candidates)
    return dist


def promote(
    model_name: str,
    version: str | int | None = None,
    *,
    data_dir: PathLike | None = None,
    tracking_uri: str | None = None,
    alpha: float = 0.05,
    seed: int = 0,
) -> dict[str, Any]:
    """Move alias ``champion`` of ``model_name`` to ``version`` if it beats the champion; see the module docstring.

    Parameters
    ----------
    model_name
        A registered model written by :func:`~cadence.workflows.export.export_policy`.
    version
        Default: the newest version.
    data_dir
        Evaluation data; default the data directory recorded on the
        candidate version.
    tracking_uri
        As in :func:`~cadence.workflows.export.export_policy`.
    alpha
        1 - confidence of the difference's interval.

    Returns
    -------
    dict
        ``promoted`` (bool), ``model_name, version, champion_before`` (a
        version or None), ``message``, and for gated promotions the gate's
        estimates (:func:`gate`) and ``rows``.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    from cadence.data.bandit import split_customers
    from cadence.data.io import fingerprint
    from cadence.workflows.logs import load_log

    uri = tracking.tracking_uri(tracking_uri)
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    versions = client.search_model_versions(f"name = '{model_name}'")
    if not versions:
        raise ValueError(f"no registered model {model_name!r} at {uri} (export one first)")
    by_number = {str(v.version): v for v in versions}
    ver = str(version) if version is not None else max(by_number, key=int)
    if ver not in by_number:
        raise ValueError(f"{model_name} has no version {ver}; versions are {', '.join(sorted(by_number, key=int))}")
    cand = by_number[ver]
    try:
        champ = client.get_model_version_by_alias(model_name, CHAMPION)
    except MlflowException:
        champ = None
    result: dict[str, Any] = {"model_name": model_name, "version": ver,
                              "champion_before": None if champ is None else str(champ.version)}
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if champ is None or str(champ.version) == ver:
        why = "first champion of the name: no gate" if champ is None else "already champion"
        client.set_registered_model_alias(model_name, CHAMPION, ver)
        for k, v in {"gate": "not needed", "gate_reason": why, "gate_at": stamp}.items():
            client.set_model_version_tag(model_name, ver, TAG + k, v)
        return {**result, "promoted": True, "message": f"{model_name} version {ver} is champion ({why})"}

    cand_tags, champ_tags = _tags(cand), _tags(champ)
    where = data_dir if data_dir is not None else cand_tags.get(TAG + "data_dir")
    if where is None:
        raise ValueError(f"{model_name} version {ver} records no data directory; pass data_dir")
    if not Path(where).exists():
        raise FileNotFoundError(f"evaluation data {where} not found; pass data_dir")
    log = load_log(where)
    # A learned version was fitted on part of its customers: judge both on those it held out.
    for t in (cand_tags, champ_tags):
        share = float(t.get(TAG + "fit_share") or 0)
        if share > 0:
            _, held_out = split_customers(log, share, int(t.get(TAG + "seed") or 0))
            log = log.subset(held_out)
            break
    with using_tracking(uri):
        champion = _distribution(f"models:/{model_name}/{champ.version}", log.candidates)
        candidate = _distribution(f"models:/{model_name}/{ver}", log.candidates)
    est = gate(log, champion, candidate, alpha=alpha, seed=seed)
    passed = est["diff_lower"] > 0
    pct = f"{1 - alpha:.0%}"
    message = (f"{model_name} version {ver}: DR net revenue per trigger {est['candidate']:.4f} "
               f"[{est['candidate_lower']:.4f}, {est['candidate_upper']:.4f}] vs champion version "
               f"{champ.version} {est['champion']:.4f} [{est['champion_lower']:.4f}, {est['champion_upper']:.4f}]; "
               f"difference {est['diff']:+.4f} [{est['diff_lower']:+.4f}, {est['diff_upper']:+.4f}] ({pct}) on "
               f"{log.n:,} logged triggers: "
               + ("promoted to champion" if passed else "refused: the difference's interval is not above zero"))
    tags = {
        "gate": "passed" if passed else "refused", "gate_at": stamp, "gate_champion_version": str(champ.version),
        "gate_metric": f"DR {METRIC} per trigger", "gate_rows": str(log.n), "gate_alpha": f"{alpha:g}",
        "gate_data_sha256": fingerprint(where, list(TABLES)),
        "gate_champion_data_sha256": champ_tags.get(TAG + "data_sha256", "unknown"),
        **{f"gate_{k}": f"{v:.6g}" for k, v in est.items()},
    }
    for k, v in tags.items():
        client.set_model_version_tag(model_name, ver, TAG + k, v)
    if passed:
        client.set_registered_model_alias(model_name, CHAMPION, ver)
    return {**result, "promoted": passed, "message": message, "rows": log.n, **est}
