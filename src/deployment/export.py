"""Export a send policy as a versioned MLflow model that serving teams load by alias.

:func:`export_policy` fits what the named policy needs on a data
directory's messages log, estimates it offline, and logs **one** MLflow
pyfunc model (:class:`~cadence.policies.serving.PolicyModel`) with

* an input and output signature and a synthetic input example (no customer
  ids, no real rows);
* pinned requirements: the exact installed version of every distribution
  the shipped code and the pickled policy import (:func:`pinned_requirements`);
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
:func:`cadence.policies.promote.promote` moves ``champion``.

Learned policies are fitted on a share of the customers and estimated on
the others (:func:`~cadence.policies.registry.split_customers`); the split
is recorded, so the promotion gate can judge on the same held-out rows.
The estimates are those of the greedy policy (``epsilon = 0``).

Examples
--------
>>> import tempfile
>>> from cadence.data.synthetic import ShopConfig, generate_shop
>>> d = tempfile.mkdtemp()
>>> shop = generate_shop(ShopConfig(customers=300, days=60, seed=1), d + "/shop")
>>> res = export_policy(shop, "rules", "doc-policy", tracking_uri=f"sqlite:///{d}/mlflow.db")
>>> res["version"], res["alias"]
('1', 'challenger')
"""

from __future__ import annotations

import ast
import contextlib
import importlib.util
import json
import pickle
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, is_dataclass
from importlib.metadata import PackageNotFoundError, packages_distributions, version
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import cadence
from cadence.data.io import PathLike
from cadence.models import tracking
from cadence.policies.base import Policy
from cadence.policies.ope import DoublyRobust
from cadence.policies.registry import (
    FAMILIES,
    POLICIES_DIR,
    build_policy,
    needs_fit,
    split_customers,
)
from cadence.policies.sequences import DEFAULT_SEQUENCES, Sequence

#: The tables an export reads (:func:`~cadence.policies.evaluation.load_log`) and fingerprints.
TABLES: tuple[str, ...] = ("messages", "customers", "orders")
EXPERIMENT = "cadence-export"
CHALLENGER = "challenger"
CHAMPION = "champion"
TAG = "cadence."


# --------------------------------------------------------------------------- #
# What the model ships
# --------------------------------------------------------------------------- #


def package_dir() -> Path:
    """The importable ``cadence`` package folder (its files may be links into ``src/``)."""
    return Path(next(iter(cadence.__path__)))


def copy_package(dest: PathLike) -> Path:
    """Copy the ``cadence`` source into ``dest/cadence`` (links followed, caches skipped) and return it.

    Whatever folder the package lives in (``src/`` here), the copy imports as
    ``cadence`` once its parent is on ``sys.path``: what MLflow does with
    ``code_paths``.
    """
    target = Path(dest) / "cadence"
    shutil.copytree(package_dir(), target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return target


def _module_imports(name: str) -> tuple[set[str], set[str]]:
    """(cadence modules, other top-level packages) that module ``name`` imports, anywhere in its source."""
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        return set(), set()
    tree = ast.parse(Path(spec.origin).read_text(), spec.origin)
    own: set[str] = set()
    other: set[str] = set()

    def add(module: str) -> None:
        if module == "cadence" or module.startswith("cadence."):
            own.add(module)
        else:
            other.add(module.split(".")[0])

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            add(node.module)
            if node.module.startswith("cadence"):
                for alias in node.names:  # `from cadence.models import uplift` imports a module
                    sub = f"{node.module}.{alias.name}"
                    if importlib.util.find_spec(node.module) and _is_module(sub):
                        own.add(sub)
    return own, other


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def imported_packages(modules: Iterable[str]) -> set[str]:
    """Top-level third-party packages that ``modules`` and every ``cadence`` module they import use.

    Imports are read from the source (also those inside functions), so
    lazily imported packages count.

    >>> sorted(imported_packages(["cadence.policies.rules"]))
    ['numpy', 'pandas']
    """
    seen: set[str] = set()
    todo = list(modules)
    packages: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        parts = name.split(".")
        todo.extend(".".join(parts[:k]) for k in range(1, len(parts)))  # parent packages run too
        own, other = _module_imports(name)
        todo.extend(own - seen)
        packages |= other
    return {p for p in packages if p not in sys.stdlib_module_names and p != "__future__"}


def pickled_packages(obj: Any) -> set[str]:
    """Top-level packages whose classes or functions a pickle of ``obj`` refers to.

    >>> sorted(pickled_packages(np.arange(2)))
    ['numpy']
    """
    found: set[str] = set()

    class Recorder(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            found.add(module.split(".")[0])
            return super().find_class(module, name)

    import io

    Recorder(io.BytesIO(pickle.dumps(obj))).load()
    return {p for p in found if p not in sys.stdlib_module_names and p not in ("builtins", "copyreg")}


def pinned_requirements(packages: Iterable[str]) -> list[str]:
    """``dist==version`` of the installed distributions providing ``packages`` (``cadence`` excluded).

    ``mlflow`` and ``cloudpickle`` (which loads the pyfunc) are always
    included.

    >>> [r.split("==")[0] for r in pinned_requirements(["sklearn"])]
    ['cloudpickle', 'mlflow', 'scikit-learn']
    """
    provides = packages_distributions()
    dists: set[str] = {"mlflow", "cloudpickle"}
    for p in packages:
        if p in ("cadence", "mlflow"):
            continue
        dists.update(provides.get(p, []))
    pins = []
    for d in sorted(dists, key=str.lower):
        try:
            pins.append(f"{d}=={version(d)}")
        except PackageNotFoundError:
            continue
    return pins


def orchestrator_settings() -> dict[str, Any]:
    """The orchestrator's default settings, exported with the policy for the serving side.

    The pyfunc decides one trigger at a time and applies no caps (they need
    memory across requests); the settings travel with it so the sending
    system applies the same rules the replay assumed.
    """
    from cadence.policies.orchestrator import OrchestratorConfig

    settings: dict[str, Any] = OrchestratorConfig().to_dict()
    return settings


def git_commit() -> tuple[str, bool]:
    """``(commit, dirty)`` of the repository holding the package source; ``("unknown", False)`` outside git."""
    src = Path(next(iter(cadence.__path__))) / "__init__.py"
    where = src.resolve().parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain"], cwd=where, capture_output=True, text=True,
                                timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown", False
    return head or "unknown", bool(status.strip())


def policy_family(policy: Policy) -> str:
    """The registry family name of a policy object (``rules`` or ``learned``)."""
    for name, cls in FAMILIES.items():
        if isinstance(policy, cls):
            return name
    return type(policy).__name__


def policy_params(policy: Policy) -> dict[str, Any]:
    """A policy's constructor parameters (scikit-learn ``get_params`` or dataclass fields)."""
    if hasattr(policy, "get_params"):
        params: dict[str, Any] = policy.get_params()
        return params
    if is_dataclass(policy) and not isinstance(policy, type):
        return asdict(policy)
    return {}


@contextlib.contextmanager
def using_tracking(uri: str) -> Iterator[None]:
    """Point MLflow's fluent API (tracking and registry) at ``uri`` for the block."""
    import mlflow

    before = (mlflow.get_tracking_uri(), mlflow.get_registry_uri())
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(before[0])
        mlflow.set_registry_uri(before[1])


# --------------------------------------------------------------------------- #
# Export
# --------------------------------------------------------------------------- #


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
        Default :func:`cadence.models.tracking.tracking_uri` (``$MLFLOW_TRACKING_URI``
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

    Returns
    -------
    dict
        ``model_name, version, alias, model_uri, run_id, data_sha256,
        as_of, git_commit, estimates`` (DR per metric with intervals, and
        the logging policy's value), ``requirements``.
    """
    import mlflow

    from cadence.models.fitting import fingerprint
    from cadence.policies.evaluation import LOGGING, evaluate, load_log
    from cadence.policies.serving import (
        INPUT_COLUMNS,
        OUTPUT_COLUMNS,
        PolicyModel,
        input_example,
        model_signature,
    )

    if not 0.0 <= epsilon < 1.0:
        raise ValueError(f"epsilon: expected a probability in [0, 1), got {epsilon}")
    if policy_name == LOGGING:
        raise ValueError("policy 'logging' is the policy that wrote the log; export rules, learned or a tuned one")
    if not model_name or any(c in model_name for c in "/\\@:"):
        raise ValueError(f"model_name {model_name!r}: use letters, digits, '-', '_' and '.'")
    log = load_log(data_dir)
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
    # The gate reads the doubly-robust rows only.
    estimates = evaluate(test, {policy_name: policy}, estimators=[DoublyRobust()], seed=seed)
    summary = _estimates_summary(estimates, policy_name)
    replay_table = None
    if replay:
        from cadence.simulation.replay import simulate_named

        replay_table = simulate_named(data_dir, policy_name, LOGGING, seed=seed,
                                      policies_dir=policies_dir)["table"]

    model = PolicyModel(policy, epsilon=epsilon, seed=seed)
    example = input_example()
    model.predict(None, example)  # fail here, not in the registry, if the policy cannot serve
    requirements = pinned_requirements(
        imported_packages(["cadence.policies.serving", type(policy).__module__]) | pickled_packages(model))
    as_of = pd.Timestamp(log.candidates["triggered_at"].max()).isoformat()
    commit, dirty = git_commit()
    family = policy_family(policy)
    params = policy_params(policy)
    orchestrator = orchestrator_settings()
    seqs = [q.to_dict() for q in (DEFAULT_SEQUENCES if sequences is None else sequences).values()]
    st_summary = None if send_time is None else send_time.summary()
    digest = fingerprint(data_dir, list(TABLES))
    tags = {
        "kind": "export-policy", "policy": policy_name, "policy_family": family, "policy_id": policy.policy_id,
        "data_sha256": digest, "as_of": as_of, "git_commit": commit, "git_dirty": str(dirty).lower(),
        "epsilon": f"{epsilon:g}", "seed": str(seed), "fit_share": f"{share:g}",
        "data_dir": str(Path(data_dir).resolve()), "rows_fitted": str(0 if train is None else train.n),
        "rows_evaluated": str(test.n),
        "orchestrator": "orchestrator.json" if orchestrator is not None else "unavailable",
        "dr_net_revenue": "{value:.4f} [{lower:.4f}, {upper:.4f}]".format(**summary["net_revenue"]),
    }
    tags = {TAG + k: v for k, v in tags.items()}
    metadata = {
        "cadence": {
            "policy": policy_name, "family": family, "params": {k: _scalar(v) for k, v in params.items()},
            "data_sha256": digest, "as_of": as_of, "git_commit": commit, "git_dirty": dirty,
            "epsilon": epsilon, "seed": seed, "fit_share": share, "estimates": summary,
            "estimates_of": "the greedy policy (epsilon = 0), doubly robust, per trigger, "
                            "95% intervals clustered by customer",
            "orchestrator": orchestrator,
            "sequences": seqs,
            "send_time": st_summary,
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
                             "fit_share": share, "seed": seed,
                             "estimates": json.loads(estimates.to_json(orient="records"))},
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
        "requirements": requirements,
        "replay": None if replay_table is None else replay_table.to_dict("records"),
    }

