"""Send each message at the customer's best time: a policy component around any base policy.

:class:`SendTimePolicy` keeps the base policy's decision (send or hold,
channel, incentive, items) and replaces the delay of sends on the stages it
times (:data:`SEND_TIME_STAGES`: not the abandon reminders, whose value
decays by the minute, nor transactional messages) by the option with the
highest engagement probability under a fitted
:class:`~cadence.models.send_time.SendTimeModel`, skipping options that fall
in the quiet hours. Options are

* ``grid="slots"`` (default): the stage's delay choices
  (:func:`~cadence.contract.actions.delay_choices`). The logging policy
  randomises among these, so the offline estimators can judge the policy on
  existing logs;
* ``grid="hourly"``: every ``step_minutes`` from the base delay up to
  ``max_wait_hours`` later. Finer, but logs never offered those delays, so
  only a world re-run (or a new randomised log) can judge it.

With probability ``exploration`` the option is drawn uniformly instead
(epsilon-greedy), and the propensity says so, so logs written under this
policy stay evaluable for the next send-time policy. The propensity is the
base policy's times the delay's probability, which assumes the base's own
delay was deterministic (as for the rules and the learned policy).

Examples
--------
>>> import numpy as np, pandas as pd
>>> from cadence.models.send_time import SendTimeModel
>>> from cadence.policies.rules import RulesPolicy
>>> sends = pd.DataFrame({"customer_id": ["a"] * 40, "channel": "email",
...                       "local_hour": np.tile([9.0, 14.0, 20.0, 3.0], 10), "weekday": 0,
...                       "engaged": np.tile([False, False, True, False], 10)})
>>> model = SendTimeModel(bandwidth=1.5).fit(sends)
>>> c = pd.DataFrame({"customer_id": ["a"], "stage": ["birthday"], "timezone": ["UTC"],
...                   "triggered_at": pd.to_datetime(["2024-03-01 10:00"], utc=True), "opt_in_email": [True]})
>>> SendTimePolicy(RulesPolicy(), model, exploration=0.0).decide(c, np.random.default_rng(0))["delay_minutes"].tolist()
[600]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from cadence.contract.actions import Policy, check_decisions, delay_choices
from cadence.contract.clock import local_time
from cadence.contract.tables import STAGES
from cadence.contract.triggers import ABANDON_STAGES, TRANSACTIONAL_STAGES
from cadence.models.send_time import SendTimeModel

#: Stages whose send time is chosen per customer by default.
SEND_TIME_STAGES: tuple[str, ...] = tuple(s for s in STAGES if s not in ABANDON_STAGES | TRANSACTIONAL_STAGES)


@dataclass
class SendTimePolicy:
    """A base policy whose sends on :attr:`stages` go out at each customer's best time (see the module docstring)."""

    base: Policy
    model: SendTimeModel
    grid: Literal["slots", "hourly"] = "slots"
    exploration: float = 0.1
    max_wait_hours: float = 24.0
    step_minutes: int = 30
    quiet_hours: tuple[int, int] | None = None
    stages: tuple[str, ...] = field(default=SEND_TIME_STAGES)

    def __post_init__(self) -> None:
        if self.grid not in ("slots", "hourly"):
            raise ValueError(f"grid: expected 'slots' or 'hourly', got {self.grid!r}")
        if not 0 <= self.exploration <= 1:
            raise ValueError(f"exploration: expected a share in [0, 1], got {self.exploration}")
        if self.max_wait_hours <= 0 or self.step_minutes <= 0:
            raise ValueError("max_wait_hours and step_minutes: expected > 0")
        unknown = [s for s in self.stages if s not in STAGES]
        if unknown:
            raise ValueError(f"stages: {unknown[0]!r} is not one of {STAGES}")
        if self.quiet_hours is not None and (len(self.quiet_hours) != 2
                                             or not all(0 <= h <= 24 for h in self.quiet_hours)):
            raise ValueError(f"quiet_hours: expected (start, end) local hours in 0..24, got {self.quiet_hours}")

    @property
    def policy_id(self) -> str:
        return f"{self.base.policy_id}+send_time-{self.grid}"

    def _options(self, stage: np.ndarray, base_delay: np.ndarray) -> np.ndarray:
        """Candidate delays (minutes) per row, ``(n, k)``; NaN pads rows with fewer options."""
        if self.grid == "hourly":
            steps = np.arange(0, self.max_wait_hours * 60 + 1, self.step_minutes)
            return base_delay[:, None] + steps[None, :]
        slots = [delay_choices(str(s)) for s in stage]
        k = max((len(x) for x in slots), default=1)
        return np.array([list(x) + [np.nan] * (k - len(x)) for x in slots], float)

    def decide(self, candidates: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
        out = self.base.decide(candidates, rng).copy()
        check_decisions(out, len(candidates), self.base.policy_id)
        stage = candidates["stage"].astype(str).to_numpy()
        rows = np.flatnonzero((out["action"] == "send").to_numpy() & np.isin(stage, list(self.stages)))
        if rows.size == 0:
            return out
        sub = candidates.iloc[rows]
        opts = self._options(stage[rows], out["delay_minutes"].to_numpy(float)[rows])
        valid = np.isfinite(opts)
        h0, wd0 = local_time(sub)  # the replay's cached local clock when present
        at = h0[:, None] + np.nan_to_num(opts) / 60
        hour, weekday = at % 24, (wd0[:, None] + (at // 24).astype(np.int64)) % 7
        if self.quiet_hours is not None:
            start, end = self.quiet_hours
            quiet = ((hour >= start) | (hour < end)) if start > end else ((hour >= start) & (hour < end))
            allowed = valid & ~quiet
            valid = np.where(allowed.any(axis=1)[:, None], allowed, valid)  # all quiet: the orchestrator moves it
        score = self.model.engagement_rate(sub["customer_id"].astype(str).to_numpy(),
                                           out["channel"].astype(str).to_numpy()[rows], hour, weekday)
        score = np.where(valid, score, -np.inf)
        best = np.argmax(score, axis=1)
        n_opt = valid.sum(axis=1)
        explore = rng.random(len(rows)) < self.exploration
        # A uniform draw among the valid options: the k-th valid column.
        kth = np.floor(rng.random(len(rows)) * n_opt).astype(np.int64)
        drawn = np.argmax(np.cumsum(valid, axis=1) > kth[:, None], axis=1)
        chosen = np.where(explore, drawn, best)
        p_choice = self.exploration / n_opt + (1 - self.exploration) * (chosen == best)
        delay = opts[np.arange(len(rows)), chosen].astype(np.int64)
        col = out.columns.get_loc("delay_minutes")
        assert isinstance(col, int)  # decision columns are unique (get_loc gives a slice or mask only for duplicates)
        out.iloc[rows, col] = delay
        prop = out["propensity"].to_numpy(float).copy()
        prop[rows] *= p_choice
        out["propensity"] = prop
        return out




