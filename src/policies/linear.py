"""Per-stage linear models of net revenue, one per action group: the ``learner="linear"`` design.

The shop's configuration of the generic learner
(:class:`~cadence.policies.learner.PolicyLearner` with ``scores="reward"``):
for each marketing stage with enough randomised rows, one learner whose
actions are the stage's action groups (hold, and a send with each incentive
the stage carries; channels and delays pooled) regresses the logged **net
revenue** per trigger on the context
(:func:`cadence.policies.context.encode_context`: the families the policy
reads; the learner median-fills missing values with an indicator and
standardises) with one ridge regression per group. Channel and delay enter
as per-stage shifts of net revenue among sends (randomised among the
customer's opt-ins, and uniformly), as in the uplift design. A candidate is
sent with the incentive, reachable channel and delay of the largest
predicted net revenue when that beats holding by ``threshold +
fatigue_cost``.

Why this form: it is a T-learner (one outcome model per arm), a few dozen
coefficients per (stage, group), so it fits in milliseconds and decides
with one matrix product per stage. In the policy-context truth study
(``benchmarks/RESULTS.md``, realised world) the policy learner's shop
configuration (``learner="dr"``: one boosting reward model over 49
actions, then a pooled linear decision model) gained nothing from the
customer's features, while this form, regressing each group's revenue per
stage, did: per stage, so a column's effect may differ by stage; per group,
so the send-versus-hold contrast is the difference of two regressions
fitted on their own rows rather than a coefficient shared with 48 other
actions. Only randomised rows are read, so the regressions need no
propensities.

Examples
--------
>>> import tempfile
>>> from cadence.synthetic import ShopConfig, generate_shop
>>> from cadence.workflows.logs import load_log
>>> shop = generate_shop(ShopConfig(customers=1500, days=120, seed=2), tempfile.mkdtemp() + "/s")
>>> log = load_log(shop)
>>> model = fit_linear_stages(log, ("trigger",), "core", min_rows=100)
>>> "cart_abandon" in model.stages and "order_status" not in model.stages
True
>>> d = model.decide(log.candidates.head(50))
>>> sorted(d) == ["channel", "incentive", "send", "slot", "stage_modelled"]
True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from cadence.contract.actions import decode_action
from cadence.contract.tables import CHANNELS, INCENTIVES
from cadence.contract.triggers import INCENTIVE_STAGES, TRANSACTIONAL_STAGES
from cadence.data.bandit import LoggedBandit
from cadence.policies.context import encode_context
from cadence.policies.learner import PolicyLearner
from cadence.policies.rules import opt_in_matrix

#: Rows a (stage, group) regression needs; fewer and the group is not offered in that stage.
MIN_GROUP_ROWS = 30


@dataclass
class _Stage:
    learner: PolicyLearner  # actions_: the action groups fitted (0 hold, 1 + incentive index)
    channel_shift: np.ndarray  # (4,) net revenue per send through each channel, minus the mean; -inf unseen
    slot_shift: np.ndarray  # (3,) per delay slot


@dataclass
class LinearStages:
    """The fitted design: the context's columns, and per stage the group regressions and shifts."""

    context: tuple[str, ...]
    customer_columns: str | tuple[str, ...]
    columns: list[str]
    stages: dict[str, _Stage]

    def encode(self, candidates: pd.DataFrame) -> np.ndarray:
        """The numeric context columns of each candidate (missing values stay NaN: each stage's learner imputes)."""
        e = encode_context(candidates.reset_index(drop=True), self.context, self.customer_columns)
        if not self.columns:
            return np.zeros((len(e), 0))
        return np.column_stack([pd.to_numeric(e[c], errors="coerce").to_numpy(float) if c in e else
                                np.full(len(e), np.nan) for c in self.columns])

    def decide(self, candidates: pd.DataFrame, threshold: float = 0.0, fatigue_cost: float = 0.0,
               incentives: bool = True) -> dict[str, np.ndarray]:
        """Per candidate: ``stage_modelled``, ``send``, ``channel`` (index, -1), ``slot``, ``incentive`` (index)."""
        n = len(candidates)
        stage = candidates["stage"].astype(str).to_numpy()
        opt = opt_in_matrix(candidates)
        out = {"stage_modelled": np.isin(stage, list(self.stages)), "send": np.zeros(n, bool),
               "channel": np.full(n, -1), "slot": np.zeros(n, np.int64), "incentive": np.zeros(n, np.int64)}
        if not out["stage_modelled"].any():
            return out
        x = self.encode(candidates)
        for s, m in self.stages.items():
            rows = np.flatnonzero(stage == s)
            if rows.size == 0:
                continue
            pred = np.full((rows.size, 1 + len(INCENTIVES)), -np.inf)
            groups = m.learner.actions_.astype(np.int64)
            pred[:, groups] = m.learner.predict_reward(x[rows])
            if not incentives:
                pred[:, 2:] = -np.inf
            ch_score = np.where(opt[rows], m.channel_shift[None, :], -np.inf)
            reachable = np.isfinite(ch_score.max(axis=1))
            slot = int(np.argmax(m.slot_shift))
            send_value = pred[:, 1:] + np.where(reachable, ch_score.max(axis=1), 0.0)[:, None] + m.slot_shift[slot]
            best = np.argmax(send_value, axis=1)
            go = reachable & (send_value[np.arange(rows.size), best] - fatigue_cost > pred[:, 0] + threshold)
            out["send"][rows] = go
            out["channel"][rows] = np.where(go, np.argmax(ch_score, axis=1), -1)
            out["slot"][rows] = slot
            out["incentive"][rows] = np.where(go, best, 0)
        return out


def fit_linear_stages(log: LoggedBandit, context: Sequence[str], customer_columns: str | tuple[str, ...],
                      min_rows: int = 300, alpha: float = 10.0, incentives: bool = True) -> LinearStages:
    """Fit the design on the randomised rows of a messages log (``load_log``); see the module docstring.

    A stage is modelled when it is not transactional and has ``min_rows``
    randomised sends and 50 randomised holds; ``alpha`` is the ridge
    penalty on the standardised columns.
    """
    if log.candidates is None or log.rewards is None or "net_revenue" not in log.rewards:
        raise ValueError("log: the linear design needs a messages log (candidates and a net_revenue reward, load_log)")
    cands = log.candidates.reset_index(drop=True)
    enc = encode_context(cands, tuple(context), customer_columns)
    columns = [c for c in enc.columns if pd.api.types.is_numeric_dtype(enc[c]) and enc[c].notna().any()]
    model = LinearStages(tuple(context), customer_columns, columns, {})
    x = model.encode(cands)
    net = log.rewards["net_revenue"].to_numpy(float)
    stage = cands["stage"].astype(str).to_numpy()
    decoded = [decode_action(int(a)) for a in log.action]
    send = log.action > 0
    channel = np.array([CHANNELS.index(d[0]) if d else -1 for d in decoded])
    slot = np.array([d[1] if d else -1 for d in decoded])
    group = np.array([INCENTIVES.index(d[2]) + 1 if d else 0 for d in decoded])  # 0 hold, 1 + incentive index
    randomised = log.pscore < 1
    for s in np.unique(stage):
        rows = (stage == s) & randomised
        if s in TRANSACTIONAL_STAGES or (rows & send).sum() < min_rows or (rows & ~send).sum() < 50:
            continue
        offered = [g for g in range(1 + len(INCENTIVES)) if (g <= 1 or s in INCENTIVE_STAGES)
                   and (rows & (group == g)).sum() >= MIN_GROUP_ROWS]
        sent = rows & send
        base = net[sent].mean()
        ch_shift = np.array([net[sent & (channel == c)].mean() - base if (sent & (channel == c)).sum() >= MIN_GROUP_ROWS
                             else -np.inf for c in range(len(CHANNELS))])
        slot_shift = np.array([net[sent & (slot == d)].mean() - base if (sent & (slot == d)).sum() >= MIN_GROUP_ROWS
                               else -np.inf for d in range(3)])
        if 0 not in offered or len(offered) < 2 or not np.isfinite(slot_shift).any():
            continue
        fit = np.flatnonzero(rows & np.isin(group, offered))
        # The generic learner, configured: one ridge regression of the observed net revenue per action group.
        learner = PolicyLearner(actions=offered, scores="reward", alpha=alpha).fit(
            x[fit], net[fit], action=group[fit], pscore=log.pscore[fit])
        model.stages[str(s)] = _Stage(learner, ch_shift, slot_shift)
    return model


__all__ = ["LinearStages", "fit_linear_stages"]
