"""Promote a registered policy version to ``champion``, behind an off-policy gate.

:func:`promote` takes a version of a registered policy model (the newest
by default) and judges it, on the evaluation data recorded at its export,
against the current champion, or against the logging policy when the name
has no champion yet: a first version must beat what wrote the log, exactly
as a challenger must beat the champion. Both sides are the models *as
served*: each version's pyfunc model is loaded and its full action
distribution (:meth:`~cadence.deployment.serving.PolicyModel.action_distribution`,
exploration included) is scored with the doubly-robust estimator of net
revenue per trigger; the candidate's lift is a paired difference with a
customer-clustered interval (:func:`cadence.deployment.promotion.gate`).
A version that decides with the customer's features or the models' scores
is judged on logged triggers that carry them as of each trigger
(:func:`cadence.workflows.logs.load_context`), as at its export.
``champion`` moves only when the candidate's estimate is supported by the
log and that interval lies above zero; otherwise the promotion is refused
with both estimates. Either way the gate's result is recorded as tags on the
candidate version.

The evaluation data must be what the version was exported with: its
fingerprint (:func:`cadence.data.io.fingerprint` of the user's data
directory) is compared with the one recorded at export, and other data is
refused unless ``allow_other_data`` (``--allow-other-data``) says so; the
tags then record both fingerprints. ``no_gate`` (``--no-gate``) promotes
without judging, and tags the version ``gate = skipped``.

When either version learned from the log, only the customers held out by
the candidate's recorded split (else the champion's) are used, so the gate does not judge a policy on the
rows it was fitted on. (A champion fitted on another data directory may have
seen some of them; the tags record both fingerprints.)

Examples
--------
``promote("shop-policy")`` moves ``champion`` or refuses with both estimates;
the gate itself is :func:`cadence.deployment.promotion.gate`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cadence.data.io import PathLike
from cadence.deployment.export import CHAMPION, TABLES, TAG
from cadence.deployment.promotion import LOGGING_CHAMPION, METRIC, gate
from cadence.workflows import tracking
from cadence.workflows.tracking import using_tracking

if TYPE_CHECKING:
    from cadence.features.policy_context import PolicyContext


def _tags(mv: Any) -> dict[str, str]:
    return dict(mv.tags or {})


def _policy_model(model_uri: str) -> Any:
    """A registered version's :class:`~cadence.deployment.serving.PolicyModel`."""
    import mlflow

    model = mlflow.pyfunc.load_model(model_uri).unwrap_python_model()
    if not hasattr(model, "action_distribution"):
        raise ValueError(f"{model_uri}: not a cadence policy model (no action_distribution)")
    return model


def _versions(client: Any, model_name: str, version: str | int | None, uri: str) -> tuple[str, Any]:
    """(version number, model version) of ``version`` (default: the newest)."""
    versions = client.search_model_versions(f"name = '{model_name}'")
    if not versions:
        raise ValueError(f"no registered model {model_name!r} at {uri} (export one first)")
    by_number = {str(v.version): v for v in versions}
    ver = str(version) if version is not None else max(by_number, key=int)
    if ver not in by_number:
        raise ValueError(f"{model_name} has no version {ver}; versions are {', '.join(sorted(by_number, key=int))}")
    return ver, by_number[ver]


def recorded_data_dir(model_name: str, version: str | int | None = None, *,
                      tracking_uri: str | None = None) -> Path | None:
    """The data directory recorded on a version at export, or None (no such model, version or tag).

    What :func:`promote` judges on without ``data_dir``; the CLI runs the
    contract gate on it first.
    """
    import mlflow

    uri = tracking.tracking_uri(tracking_uri)
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    try:
        _, mv = _versions(client, model_name, version, uri)
    except ValueError:
        return None
    where = _tags(mv).get(TAG + "data_dir")
    return None if where is None else Path(where)


def promote(
    model_name: str,
    version: str | int | None = None,
    *,
    data_dir: PathLike | None = None,
    source: PathLike | None = None,
    tracking_uri: str | None = None,
    alpha: float = 0.05,
    seed: int = 0,
    no_gate: bool = False,
    allow_other_data: bool = False,
    context: PolicyContext | None = None,
) -> dict[str, Any]:
    """Move alias ``champion`` of ``model_name`` to ``version`` if it passes the gate; see the module docstring.

    Parameters
    ----------
    model_name
        A registered model written by :func:`~cadence.workflows.export.export_policy`.
    version
        Default: the newest version.
    data_dir
        Evaluation data to read; default the data directory recorded on the
        candidate version.
    source
        The user's data directory when ``data_dir`` is the contract gate's
        conformed copy of it (:attr:`cadence.data.gate.Gate.source`): the
        fingerprint is taken of ``source``, as at export.
    tracking_uri
        As in :func:`~cadence.workflows.export.export_policy`.
    alpha
        1 - confidence of the difference's interval.
    no_gate
        Promote without judging (tagged ``gate = skipped``).
    allow_other_data
        Judge on evaluation data whose fingerprint differs from the one
        recorded at export (both are tagged).
    context
        The evaluation data's :class:`~cadence.features.policy_context.PolicyContext`
        when the caller already computed it; computed here when a version
        decides with the customer's features or scores.

    Returns
    -------
    dict
        ``promoted`` (bool), ``model_name, version, champion_before`` (a
        version or None), ``message``, and for gated promotions the gate's
        estimates (:class:`~cadence.deployment.promotion.GateResult`),
        ``supported``, ``support_reason`` and ``rows``.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    from cadence.data.bandit import split_customers
    from cadence.data.io import fingerprint
    from cadence.deployment.serving import needed_families
    from cadence.evaluation.estimators import ON_POLICY
    from cadence.workflows.logs import load_context, load_log

    uri = tracking.tracking_uri(tracking_uri)
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    ver, cand = _versions(client, model_name, version, uri)
    try:
        champ = client.get_model_version_by_alias(model_name, CHAMPION)
    except MlflowException:
        champ = None
    result: dict[str, Any] = {"model_name": model_name, "version": ver,
                              "champion_before": None if champ is None else str(champ.version)}
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if champ is not None and str(champ.version) == ver:
        # Nothing moves; the tags of the gate that made it champion stay as they are.
        return {**result, "promoted": True, "message": f"{model_name} version {ver} is already champion"}
    against = "the logging policy (no champion yet)" if champ is None else f"champion version {champ.version}"

    def tag(values: dict[str, str]) -> None:
        for k, v in values.items():
            client.set_model_version_tag(model_name, ver, TAG + k, v)

    if no_gate:
        client.set_registered_model_alias(model_name, CHAMPION, ver)
        tag({"gate": "skipped", "gate_reason": "promoted without a gate (--no-gate)", "gate_at": stamp,
             "gate_champion_version": LOGGING_CHAMPION if champ is None else str(champ.version)})
        return {**result, "promoted": True,
                "message": f"{model_name} version {ver} is champion WITHOUT a gate (--no-gate; replaces "
                           f"{against}); tagged gate = skipped"}

    cand_tags = _tags(cand)
    recorded_dir = cand_tags.get(TAG + "data_dir")
    where = data_dir if data_dir is not None else recorded_dir
    if where is None:
        raise ValueError(f"{model_name} version {ver} records no data directory; pass --data DIR")
    if not Path(where).exists():
        raise FileNotFoundError(f"evaluation data {where} not found; pass --data DIR")
    theirs = Path(source) if source is not None else Path(where)
    digest = fingerprint(theirs, list(TABLES))
    recorded = cand_tags.get(TAG + "data_sha256")
    if digest != recorded and not allow_other_data:
        why = ("records no data fingerprint" if recorded is None
               else f"was exported on data with fingerprint {recorded[:12]}")
        raise ValueError(f"{model_name} version {ver} {why}; the evaluation data {theirs} has fingerprint "
                         f"{digest[:12]}: the gate judges a version on the data it was exported with. Pass "
                         f"--allow-other-data to judge it on this data anyway (both fingerprints are tagged)")
    with using_tracking(uri):
        champion_model = None if champ is None else _policy_model(f"models:/{model_name}/{champ.version}")
        candidate_model = _policy_model(f"models:/{model_name}/{ver}")
    # A version that decides with the customer's features or scores is judged on rows that carry them, as
    # at export (the same context, computed from the same data).
    families = sorted({f for m in (champion_model, candidate_model) if m is not None
                       for f in needed_families(m.policy)})
    ctx = None
    if families:
        ctx = context if context is not None else load_context(where, families=families)
    log = load_log(where, context=ctx)
    # A learned version was fitted on part of its customers: judge both on those it held out.
    for t in (cand_tags, {} if champ is None else _tags(champ)):
        share = float(t.get(TAG + "fit_share") or 0)
        if share > 0:
            _, held_out = split_customers(log, share, int(t.get(TAG + "seed") or 0))
            log = log.subset(held_out)
            break
    champion = ON_POLICY if champion_model is None else champion_model.action_distribution(log.candidates)
    candidate = candidate_model.action_distribution(log.candidates)
    res = gate(log, champion, candidate, alpha=alpha, seed=seed)
    pct = f"{1 - alpha:.0%}"
    if res.passed:
        verdict = "promoted to champion"
    elif not res.supported:
        verdict = f"refused: the log does not support the candidate's estimate ({res.reason})"
    else:
        verdict = "refused: the difference's interval is not above zero"
    message = (f"{model_name} version {ver}: DR net revenue per trigger {res.candidate:.4f} "
               f"[{res.candidate_lower:.4f}, {res.candidate_upper:.4f}] vs {against} {res.champion:.4f} "
               f"[{res.champion_lower:.4f}, {res.champion_upper:.4f}]; difference {res.diff:+.4f} "
               f"[{res.diff_lower:+.4f}, {res.diff_upper:+.4f}] ({pct}) on {log.n:,} logged triggers"
               + ("" if digest == recorded else " (other data than at export, allowed)") + f": {verdict}")
    est = res.estimates()
    tag({
        "gate": "passed" if res.passed else "refused", "gate_at": stamp,
        "gate_champion_version": LOGGING_CHAMPION if champ is None else str(champ.version),
        "gate_metric": f"DR {METRIC} per trigger", "gate_rows": str(log.n), "gate_alpha": f"{alpha:g}",
        "gate_supported": str(res.supported).lower(), "gate_support_reason": res.reason,
        "gate_data_sha256": digest,
        "gate_data_matches_export": "true" if digest == recorded else "false (allowed: --allow-other-data)",
        "gate_champion_data_sha256": ("n/a (logging policy)" if champ is None
                                      else _tags(champ).get(TAG + "data_sha256", "unknown")),
        **{f"gate_{k}": f"{v:.6g}" for k, v in est.items()},
    })
    if res.passed:
        client.set_registered_model_alias(model_name, CHAMPION, ver)
    return {**result, "promoted": res.passed, "message": message, "rows": log.n, "supported": res.supported,
            "support_reason": res.reason, **est}
