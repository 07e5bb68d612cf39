"""Policies by name: ``logging``, ``rules``, ``learned``, and the ones ``cadence tune`` saved.

The built-in ``learned`` policy is :class:`~cadence.policies.learned.UpliftPolicy`
with :data:`LEARNED_PARAMS`: the per-stage linear design deciding with every context
family (the trigger's columns, the customer's features and the models'
scores as of the trigger). :func:`context_families` says which families a
named policy reads beyond the trigger's own, so a command computes that
context (:func:`cadence.workflows.logs.load_context`) only when some policy
needs it, once.

A saved policy is a small JSON file ``<policies_dir>/<name>.json`` holding
its family (``rules`` or ``learned``) and constructor parameters, plus what
it was tuned on; policies that learn from data are fitted on the log given.
The folder is always the caller's: these functions have no default folder
(the commands' default, ``data/processed/policies`` under the current
directory, is :data:`cadence.workflows.policies.POLICIES_DIR`).

Examples
--------
>>> import tempfile
>>> d = tempfile.mkdtemp()
>>> _ = save_policy("rules-pct", "rules", {"incentive": "percent_code"}, policies_dir=d)
>>> build_policy("rules-pct", None, policies_dir=d).incentive
'percent_code'
>>> context_families(["rules", "rules-pct"], d), context_families(["learned"], d)
((), ('customer', 'scores'))
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cadence.contract.actions import LOGGING, Policy
from cadence.data.bandit import LoggedBandit
from cadence.data.io import PathLike, atomic_path
from cadence.policies.context import CONTEXT_DESIGNS, CONTEXT_FAMILIES, check_families
from cadence.policies.learned import UpliftPolicy
from cadence.policies.rules import RulesPolicy

FAMILIES: dict[str, type] = {"rules": RulesPolicy, "learned": UpliftPolicy}
BUILTIN: tuple[str, ...] = (LOGGING, "rules", "learned")
#: The built-in ``learned`` policy's constructor arguments (:class:`~cadence.policies.learned.UpliftPolicy`):
#: the per-stage linear design (:mod:`cadence.policies.linear`) on every context family, ridge penalty 10,
#: a stage modelled from 100 randomised sends. In ``benchmarks/RESULTS.md``'s truth studies it is ahead of
#: the policy learner (``"dr"``) where the customer's columns decide the response (+0.04 net revenue per
#: trigger, and it gains from them: full context - seven columns +0.015 [+0.005, +0.024] over 20 seeds) and
#: level with it in the default world (+0.027 [-0.023, +0.077] over 10 seeds).
LEARNED_PARAMS: dict[str, Any] = {"learner": "linear", "context": CONTEXT_FAMILIES, "alpha": 10.0, "min_rows": 100}


def _path(name: str, policies_dir: PathLike) -> Path:
    if not name or any(c in name for c in "/\\") or name.startswith("."):
        raise ValueError(f"policy name {name!r}: use letters, digits, '-' and '_'")
    return Path(policies_dir) / f"{name}.json"


def save_policy(name: str, family: str, params: dict[str, Any], *, policies_dir: PathLike,
                meta: dict[str, Any] | None = None) -> Path:
    """Save a tuned policy's family and parameters (atomically) as ``<policies_dir>/<name>.json``; return the file."""
    if name in BUILTIN:
        raise ValueError(f"policy name {name!r} is built in; choose another")
    if family not in FAMILIES:
        raise ValueError(f"family: {family!r} is not one of {sorted(FAMILIES)}")
    FAMILIES[family](**params)  # refuse parameters the family does not take, now rather than at load
    path = _path(name, policies_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps({"family": family, "params": params, "meta": meta or {}}, indent=2,
                                        sort_keys=True, default=str))
    return path


def load_policy_spec(name: str, policies_dir: PathLike | None) -> dict[str, Any]:
    """The saved ``{"family", "params", "meta"}`` of a tuned policy in ``policies_dir`` (``None``: no saved ones)."""
    path = None if policies_dir is None else _path(name, policies_dir)
    if path is None or not path.exists():
        saved = (sorted(p.stem for p in Path(policies_dir).glob("*.json"))
                 if policies_dir is not None and Path(policies_dir).exists() else [])
        raise ValueError(f"unknown policy {name!r}: built in are {', '.join(BUILTIN)}"
                         + (f"; saved are {', '.join(saved)}" if saved else "; none saved yet (cadence tune)"))
    spec: dict[str, Any] = json.loads(path.read_text())
    return spec


def needs_fit(name: str, policies_dir: PathLike | None = None) -> bool:
    """Whether the named policy learns from the log (saved policies are looked up in ``policies_dir``)."""
    if name in BUILTIN:
        return name == "learned"
    return bool(load_policy_spec(name, policies_dir)["family"] == "learned")


def policy_spec(name: str, policies_dir: PathLike | None = None) -> tuple[str, dict[str, Any]]:
    """``(family, constructor parameters)`` of a named policy other than ``logging``."""
    if name == "rules":
        return "rules", {}
    if name == "learned":
        return "learned", dict(LEARNED_PARAMS)
    spec = load_policy_spec(name, policies_dir)
    return spec["family"], dict(spec["params"])


def context_families(names: list[str] | tuple[str, ...], policies_dir: PathLike | None = None) -> tuple[str, ...]:
    """The context families beyond the trigger's (``customer``, ``scores``) that any of the named policies reads.

    What :func:`cadence.workflows.logs.load_context` must compute for them;
    ``()`` when none does (the rules, the logging policy, the uplift designs
    of :class:`~cadence.policies.learned.UpliftPolicy`, which decide from the
    trigger's columns; its ``"dr"`` and ``"linear"`` designs read ``context``).
    """
    wanted: set[str] = set()
    for name in names:
        if name == LOGGING:
            continue
        family, params = policy_spec(name, policies_dir)
        if family == "learned":
            policy = UpliftPolicy(**params)
            if policy.learner in CONTEXT_DESIGNS:
                wanted.update(check_families(policy.context))
    return tuple(f for f in CONTEXT_FAMILIES if f in wanted and f != "trigger")


def build_policy(name: str, train: LoggedBandit | None, *, policies_dir: PathLike | None = None) -> Policy | None:
    """The policy called ``name``, fitted on ``train`` if it learns; ``None`` for ``logging``.

    A name that is not built in (:data:`BUILTIN`) is a policy saved in
    ``policies_dir``; without a folder only the built-in names exist.
    """
    if name == LOGGING:
        return None
    family, params = policy_spec(name, policies_dir)
    policy = FAMILIES[family](**params)
    if family == "learned":
        if train is None:
            raise ValueError(f"policy {name!r} learns from data: give it a log to fit on")
        policy = policy.fit(train)
    return policy
