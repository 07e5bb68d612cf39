"""The rule-based policy: the seed defaults every shop starts from.

Per stage (ARCHITECTURE.md's seed defaults):

* abandonment (cart, checkout, browse, search): push 20 minutes after the
  trigger when the customer takes push, else email at 12 hours; the cart
  and checkout triggers themselves fire 1 hour after the last visit
  (:class:`cadence.contract.triggers.TriggerRules`);
* every other marketing stage: the first channel of ``channel_order`` the
  customer is opted in to, right away (``follow_up`` fires 10 days after
  the purchase by its trigger rule);
* incentives only where the stage's flag says so
  (:data:`cadence.contract.triggers.INCENTIVE_STAGES`: search abandon, birthday,
  anniversary, back in stock, buy again, new arrivals, follow-up, win-back),
  the cheapest by default (free shipping); cart abandon, browse abandon and
  price drop carry none;
* ``order_status`` (transactional): the first reachable channel, always;
* a customer opted in to nothing is held.

Once-only stages, sequence expiry after 14 days and frequency caps are the
orchestrator's job (they need memory across decisions); this policy decides
one candidate at a time and is deterministic (propensity 1).

Examples
--------
>>> import numpy as np, pandas as pd
>>> c = pd.DataFrame({"stage": ["cart_abandon", "cart_abandon", "birthday"],
...                   "opt_in_email": [True, True, True], "opt_in_push": [True, False, False],
...                   "opt_in_sms": [False] * 3, "opt_in_whatsapp": [False] * 3})
>>> RulesPolicy().decide(c, np.random.default_rng(0))[["channel", "delay_minutes", "incentive"]].values.tolist()
[['push', 20, 'none'], ['email', 720, 'none'], ['email', 0, 'free_shipping']]
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from cadence.contract.actions import ABANDON_DELAYS, OTHER_DELAYS
from cadence.contract.tables import CHANNELS, INCENTIVES
from cadence.contract.triggers import ABANDON_STAGES, INCENTIVE_STAGES, TRANSACTIONAL_STAGES

_NULL = np.array(None, dtype=object)


def opt_in_matrix(candidates: pd.DataFrame) -> np.ndarray:
    """(n, 4) bool: the candidates' current opt-ins in :data:`CHANNELS` order (missing = False)."""
    n = len(candidates)
    cols = [candidates[f"opt_in_{c}"].fillna(False).to_numpy(bool) if f"opt_in_{c}" in candidates
            else np.zeros(n, bool) for c in CHANNELS]
    return np.stack(cols, axis=1) if n else np.zeros((0, len(CHANNELS)), bool)


def decisions_frame(send: np.ndarray, channel: np.ndarray, delay: np.ndarray, incentive: np.ndarray,
                    propensity: np.ndarray, index: pd.Index) -> pd.DataFrame:
    """Policy output from code arrays (channel/incentive as indices into CHANNELS/INCENTIVES)."""
    return pd.DataFrame({
        "action": np.where(send, "send", "hold"),
        "channel": np.where(send, np.asarray(CHANNELS, dtype=object)[np.maximum(channel, 0)], _NULL),
        "delay_minutes": np.where(send, delay, 0).astype(np.int64),
        "incentive": np.where(send, np.asarray(INCENTIVES, dtype=object)[np.maximum(incentive, 0)], _NULL),
        "propensity": np.asarray(propensity, dtype=float),
    }, index=index)


@dataclass(frozen=True)
class RulesPolicy:
    """Seed-default rules, deterministic; see the module docstring."""

    #: Each row's decision depends on that row alone (the replay may batch decisions).
    row_wise = True

    abandon_push_delay: int = 20
    abandon_email_delay: int = 720
    other_delay: int = 0
    incentive: str = "free_shipping"
    channel_order: tuple[str, ...] = ("email", "push", "sms", "whatsapp")
    policy_id: str = field(default="rules-v1")

    def __post_init__(self) -> None:
        if self.incentive not in INCENTIVES:
            raise ValueError(f"incentive: {self.incentive!r} is not one of {INCENTIVES}")
        if sorted(self.channel_order) != sorted(CHANNELS):
            raise ValueError(f"channel_order: expected a permutation of {CHANNELS}, got {self.channel_order}")
        for name, value, allowed in (("abandon_push_delay", self.abandon_push_delay, ABANDON_DELAYS),
                                     ("abandon_email_delay", self.abandon_email_delay, ABANDON_DELAYS),
                                     ("other_delay", self.other_delay, OTHER_DELAYS)):
            if value not in allowed:
                raise ValueError(f"{name}: {value} is not one of the offered delays {allowed}")

    def decide(self, candidates: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
        """One deterministic decision per candidate (``rng`` is not used)."""
        stage = candidates["stage"].astype(str).to_numpy()
        opt = opt_in_matrix(candidates)
        order = [CHANNELS.index(c) for c in self.channel_order]
        ranked = opt[:, order]
        first = np.asarray(order)[np.argmax(ranked, axis=1)]
        reachable = opt.any(axis=1)
        abandon = np.isin(stage, list(ABANDON_STAGES))
        push, email = CHANNELS.index("push"), CHANNELS.index("email")
        channel = np.where(abandon, np.where(opt[:, push], push, np.where(opt[:, email], email, -1)), first)
        delay = np.where(abandon, np.where(opt[:, push], self.abandon_push_delay, self.abandon_email_delay),
                         self.other_delay)
        transactional = np.isin(stage, list(TRANSACTIONAL_STAGES))
        # Transactional messages go out like the logging policy sends them: first reachable channel, now.
        channel = np.where(transactional, np.argmax(opt, axis=1), channel)
        delay = np.where(transactional, 0, delay)
        send = reachable & (channel >= 0)
        incentive = np.where(np.isin(stage, list(INCENTIVE_STAGES)), INCENTIVES.index(self.incentive), 0)
        return decisions_frame(send, channel, delay, incentive, np.ones(len(stage)), candidates.index)
