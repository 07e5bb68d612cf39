"""The Policy protocol: what every send policy answers for a batch of trigger candidates.

A policy receives one row per trigger candidate (``customer_id``, ``stage``,
``triggered_at``, context columns ``products``/``query``/``order_id``, the
customer's current channel opt-ins ``opt_in_<channel>`` and ``timezone``,
plus any customer features the caller joins in) and returns one decision per
row: ``action`` (send or hold), ``channel``, ``delay_minutes``,
``incentive``, and the ``propensity`` with which it chose that decision.
Stochastic policies draw with the generator they are given, so the caller
controls reproducibility.

Examples
--------
>>> import numpy as np, pandas as pd
>>> class AlwaysEmail:
...     policy_id = "always-email"
...     def decide(self, candidates, rng):
...         n = len(candidates)
...         return pd.DataFrame({"action": ["send"] * n, "channel": ["email"] * n,
...                              "delay_minutes": [0] * n, "incentive": ["none"] * n,
...                              "propensity": [1.0] * n})
>>> isinstance(AlwaysEmail(), Policy)
True
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd

from cadence.triggers import ABANDON_STAGES

DECISION_COLUMNS: tuple[str, ...] = ("action", "channel", "delay_minutes", "incentive", "propensity")
#: Optional decision columns planning one follow-up message after a send (a two-step
#: sequence, :mod:`cadence.policies.sequences`): ``followup_action`` is ``"send"``,
#: ``"hold"`` (a decided no, logged) or None (nothing planned); its delay counts from the
#: trigger; its propensity is the follow-up decision's, given the first message.
FOLLOWUP_COLUMNS: tuple[str, ...] = (
    "followup_action", "followup_channel", "followup_delay_minutes", "followup_incentive", "followup_propensity",
)

#: Delay choices (minutes after the trigger) that policies pick from.
ABANDON_DELAYS: tuple[int, ...] = (20, 60, 720)
OTHER_DELAYS: tuple[int, ...] = (0, 240, 600)


def delay_choices(stage: str) -> tuple[int, ...]:
    """The delays (minutes) a policy may choose for ``stage``.

    >>> delay_choices("cart_abandon")
    (20, 60, 720)
    """
    return ABANDON_DELAYS if stage in ABANDON_STAGES else OTHER_DELAYS


@runtime_checkable
class Policy(Protocol):
    """A send policy: decisions and their probabilities for trigger candidates."""

    @property
    def policy_id(self) -> str:
        """A stable name, recorded in the messages log."""
        ...

    def decide(self, candidates: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
        """Return one decision row per candidate, columns :data:`DECISION_COLUMNS`."""
        ...


def check_decisions(decisions: pd.DataFrame, n: int, policy_id: str) -> None:
    """Raise a clear ``ValueError`` when a policy's output breaks the protocol."""
    missing = [c for c in DECISION_COLUMNS if c not in decisions.columns]
    if missing:
        raise ValueError(f"policy {policy_id!r}: decisions lack column(s) {', '.join(missing)}")
    if len(decisions) != n:
        raise ValueError(f"policy {policy_id!r}: {len(decisions)} decisions for {n} candidates")
    p = decisions["propensity"].to_numpy(dtype=float)
    bad = int(((p <= 0) | (p > 1) | np.isnan(p)).sum())
    if bad:
        raise ValueError(f"policy {policy_id!r}: propensity outside (0, 1] in {bad} rows")
    bad = int((~decisions["action"].isin(["send", "hold"])).sum())
    if bad:
        raise ValueError(f"policy {policy_id!r}: action not 'send' or 'hold' in {bad} rows")
