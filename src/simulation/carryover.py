"""Importance weights that match the fatigue a replayed policy carries, for replay and DR estimates.

A one-step off-policy estimator (replay matching, doubly robust) reads each
logged reward at the *logged* history: the customer's messages in the 7 days
before the trigger are the logging policy's. A policy that sends more (or
less) than the logging one changes that history, and the reward with it
(fatigue), so its one-step estimate is off by a carryover that varies from
shop to shop: the intervals cover the re-run truth less often than they say
(``benchmarks/RESULTS.md``, "Where the offline estimates miss").

:func:`fatigue_weights` matches the carried state as well as the action
(marginalised importance sampling over the state, as in Liu et al. 2018,
"Breaking the curse of horizon", for the one state that carries over here):
a logged row counts for a replayed policy only where its logged ``sends_7d``
equals the policy's replayed one, weighted by the inverse of the logging
policy's probability of that count. That probability is a Poisson-binomial:
each earlier trigger ``j`` of the customer adds a send to the window
``[t - 7 days, t)`` with probability ``q_j = P(send | stage_j, opted in) *
P(delay_j lands in the window | stage_j)``. Both factors are estimated from
the log itself (the share of the stage's triggers the logging policy sent,
and the empirical delays it chose): no knowledge of the logging design is
needed, only that its send rate and delay mix depend on the stage and
opt-ins (true of the randomised logging policy). Given the history's
triggers, ``E[1[S = s] / P(S = s)] = 1``: the weights average 1.

The price is variance: fewer rows match, so the intervals are wider and the
error larger. In the policy-context truth study (``benchmarks/RESULTS.md``,
"Normal intervals in ``simulate``": 60 fresh seeds, pre-registered) it
covered the true differences in 92-100% of seeds (the one-step estimators:
93-97%), at about twice their RMSE where the policies send alike (0.60
against 0.31). Hence opt-in (``simulate(fatigue_matched=True)``).
Written by hand: no maintained off-policy library (OBP and its forks,
scikit-uplift) weights a carried state.

Examples
--------
>>> from cadence.contract.actions import N_ACTIONS
>>> ts = pd.to_datetime(["2025-01-01", "2025-01-02", "2025-01-03"], utc=True)
>>> c = pd.DataFrame({"customer_id": "a", "stage": "birthday", "triggered_at": ts, "opt_in_email": True,
...                   "sends_7d": [0, 1, 1]})
>>> log = LoggedBandit(action=np.array([1, 0, 1]), reward=np.zeros(3), pscore=np.full(3, 0.5),
...                    n_actions=N_ACTIONS, candidates=c)
>>> state_probability(log, np.array([0, 1, 2])).round(3).tolist()  # sends 2 of 3; delays all 0 minutes
[1.0, 0.667, 0.444]
>>> fatigue_weights(log, np.array([0, 1, 1])).round(2).tolist()  # row 3: P(S=1) = 2 * 2/3 * 1/3
[1.0, 1.5, 2.25]
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from cadence.contract.actions import code_delays
from cadence.contract.clock import epoch_seconds
from cadence.data.bandit import FloatArray, LoggedBandit
from cadence.features.decision_context import OPT_IN_COLUMNS, SENDS_WINDOW_DAYS

_DAY = 86_400

__all__ = ["fatigue_weights", "state_probability", "window_send_probabilities"]


def window_send_probabilities(log: LoggedBandit, window_days: int = SENDS_WINDOW_DAYS) -> Iterator[FloatArray]:
    """The logging policy's chance that each earlier trigger of the customer sends into each row's window.

    Yields, for ``k = 1, 2, ...``, an (n,) array in log order: the probability
    that the customer's trigger ``k`` places before the row put a send in
    ``[t - window, t)`` (0 where there is no such trigger, or it is too early
    to reach the window): the stage's logged send rate among triggers with
    the same opt-in state, times the share of the stage's logged delays that
    land there. One array at a time, so memory stays at a few rows of ``n``.
    """
    c = log.candidates
    if c is None:
        raise ValueError("log: fatigue weights need the candidates (customer_id, stage, triggered_at, opt-ins)")
    missing = [k for k in ("customer_id", "stage", "triggered_at", "sends_7d") if k not in c]
    if missing:
        raise ValueError(f"log.candidates: missing column(s) {', '.join(missing)} (needed for fatigue weights)")
    stage = c["stage"].astype(str).to_numpy()
    opt = c[[k for k in OPT_IN_COLUMNS if k in c]].fillna(False).to_numpy(bool).any(axis=1)
    sent = log.action > 0
    cell = pd.Series(sent).groupby([stage, opt]).transform("mean").to_numpy()
    delay = code_delays(stage, log.action).astype(np.int64) * 60
    lags = {s: np.sort(delay[(stage == s) & sent]) for s in np.unique(stage)}
    cust = pd.Categorical(c["customer_id"].astype(str)).codes
    t = epoch_seconds(c["triggered_at"]).astype(np.int64)
    order = np.lexsort((t, cust))
    cust, t, stage, cell = cust[order], t[order], stage[order], cell[order]
    reach = window_days * _DAY + max((int(v[-1]) for v in lags.values() if len(v)), default=0)
    for k in range(1, len(order)):
        j = np.arange(k, len(order))  # sorted row j; its trigger k places earlier is j - k
        same = (cust[j] == cust[j - k]) & (t[j] - t[j - k] <= reach)
        if not same.any():
            return
        qk = np.zeros(len(order))
        for s in np.unique(stage[j[same] - k]):
            pick = j[same & (stage[j - k] == s)]
            v = lags[s]
            if not len(v):
                continue
            before = t[pick] - t[pick - k]  # the send lands in the window when lag in [before - window, before)
            share = (np.searchsorted(v, before, "left") - np.searchsorted(v, before - window_days * _DAY, "left"))
            qk[pick] = cell[pick - k] * share / len(v)
        out = np.empty(len(order))
        out[order] = qk
        yield out


def state_probability(log: LoggedBandit, sends_7d: ArrayLike, window_days: int = SENDS_WINDOW_DAYS) -> FloatArray:
    """Per row, the logging policy's probability that the customer had ``sends_7d`` sends in the window.

    The Poisson-binomial of :func:`window_send_probabilities` at ``sends_7d``
    (0 beyond the triggers that could have sent).
    """
    s = np.asarray(sends_7d, np.int64)
    if s.shape != (log.n,):
        raise ValueError(f"sends_7d: expected shape ({log.n},), got {s.shape}")
    top = int(s.max(initial=0))
    p = np.zeros((len(s), top + 1))  # p[:, m] = P(m sends so far); counts above top are never asked for
    p[:, 0] = 1.0
    for qk in window_send_probabilities(log, window_days):
        p[:, 1:] = p[:, 1:] * (1 - qk)[:, None] + p[:, :-1] * qk[:, None]
        p[:, 0] *= 1 - qk
    return p[np.arange(len(s)), s]


def fatigue_weights(log: LoggedBandit, sends_7d: ArrayLike, window_days: int = SENDS_WINDOW_DAYS) -> FloatArray:
    """Per row, ``1[logged sends_7d == sends_7d] / P_logging(sends_7d)``: the state factor of the importance weight.

    ``sends_7d`` is a replayed policy's own count
    (:func:`~cadence.simulation.replay.replay_decisions`). Multiplied into the
    action weight ``pi(a | x) / p`` it makes replay matching and DR read only
    rows whose logged fatigue is the policy's
    (:class:`~cadence.evaluation.estimators.PolicyInputs` ``state_weight``).
    """
    s = np.asarray(sends_7d, np.int64)
    prob = state_probability(log, s, window_days)
    assert log.candidates is not None  # state_probability raised otherwise
    match = (log.candidates["sends_7d"].to_numpy(np.int64) == s) & (prob > 0)
    return np.where(match, 1.0 / np.where(match, prob, 1.0), 0.0)
