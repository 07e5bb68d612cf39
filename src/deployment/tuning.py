"""What ``cadence tune`` searches: each policy family's Optuna search space, and the send-volume constraint.

:func:`cadence.workflows.tune.tune_policy` runs the study on a data directory.

Examples
--------
>>> sorted(SPACES)
['learned', 'rules']
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from cadence.data.bandit import LoggedBandit
from cadence.policies.context import CONTEXT_DESIGNS


def _rules_space(trial: Any) -> dict[str, Any]:
    return {
        "incentive": trial.suggest_categorical("incentive", ["none", "free_shipping", "fixed_amount", "percent_code"]),
        "abandon_push_delay": trial.suggest_categorical("abandon_push_delay", [20, 60]),
        "abandon_email_delay": trial.suggest_categorical("abandon_email_delay", [20, 60, 720]),
        "other_delay": trial.suggest_categorical("other_delay", [0, 240, 600]),
    }


#: The context-reading designs' (``"dr"``, ``"linear"``) context choices in the learned search space: a name per set of families.
CONTEXTS: dict[str, tuple[str, ...]] = {"trigger": ("trigger",), "trigger+scores": ("trigger", "scores"),
                                        "trigger+customer": ("trigger", "customer"),
                                        "all": ("trigger", "customer", "scores")}


def _learned_space(trial: Any) -> dict[str, Any]:
    cap = trial.suggest_int("max_sends_7d", 0, 12)
    params = {
        "learner": trial.suggest_categorical("learner", ["s", "t", "x", "ct", "dr", "linear"]),
        "threshold": trial.suggest_float("threshold", -1.0, 3.0),
        "fatigue_cost": trial.suggest_float("fatigue_cost", 0.0, 3.0),
        "incentives": trial.suggest_categorical("incentives", [True, False]),
        "max_sends_7d": None if cap == 0 else cap,  # 0 stands for "no cap"
    }
    if params["learner"] in CONTEXT_DESIGNS:
        # The designs' context families, searched (``cadence tune`` loads the log with them all):
        # which ones pay depends on the shop (``benchmarks/RESULTS.md``, the policy-context study).
        params["context"] = CONTEXTS[trial.suggest_categorical("context", list(CONTEXTS))]
        params["alpha"] = trial.suggest_float("alpha", 0.1, 1000.0, log=True)
    if params["learner"] == "dr":
        params["scores"] = trial.suggest_categorical("scores", ["dr", "dm"])
    return params


#: Search space per family: trial -> constructor parameters.
SPACES: dict[str, Callable[[Any], dict[str, Any]]] = {"rules": _rules_space, "learned": _learned_space}


def weekly_sends(log: LoggedBandit, codes: np.ndarray) -> float:
    """Messages per customer per week if the policy decided every logged trigger."""
    ts = pd.to_datetime(log.candidates["triggered_at"], utc=True)
    weeks = max((ts.max() - ts.min()).total_seconds() / (7 * 86_400), 1.0)
    customers = max(len(np.unique(log.groups)), 1)
    return float((codes > 0).sum() / customers / weeks)


