"""Send-vs-hold readout from a randomised holdout in the messages log.

When the logging policy holds out triggers at random, the difference in
conversion between sent and held triggers of a stage estimates the average
effect of sending (the stage's uplift), no model needed. Within a stage the
hold probability may vary between rows (e.g. customers with no reachable
channel are always held), so rows are weighted by inverse propensity of
their arm (Hajek estimator) and rows whose logged action was certain
(propensity 1) are left out: they carry no randomisation.

Interval: normal approximation with the delta-method variance of each Hajek
mean, ``sum(w_i^2 (y_i - mean)^2) / (sum w_i)^2``, the two arms independent
(:func:`~cadence.evaluation.intervals.hajek_mean` and
:func:`~cadence.evaluation.intervals.z_interval`, the interval engine's).

Examples
--------
>>> import pandas as pd
>>> m = pd.DataFrame({"stage": ["cart_abandon"] * 4, "action": ["send", "send", "hold", "hold"],
...                   "propensity": [0.5] * 4, "converted_order_id": ["o1", "o2", None, "o3"]})
>>> holdout_lift(m)[["stage", "sent", "held"]].to_dict("records")
[{'stage': 'cart_abandon', 'sent': 2, 'held': 2}, {'stage': 'all', 'sent': 2, 'held': 2}]
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cadence.evaluation.intervals import hajek_mean, z_interval
from cadence.features.logged import first_steps


def holdout_lift(messages: pd.DataFrame, *, outcome: str = "converted_order_id", alpha: float = 0.05) -> pd.DataFrame:
    """Per-stage conversion with and without a send, and the lift with its interval.

    Parameters
    ----------
    messages
        A messages table (columns ``stage``, ``action``, ``propensity`` and
        ``outcome``); an outcome counts as 1 when not null (a timestamp or
        an order id) or when true/positive for numeric columns.
    outcome
        The column that marks success, e.g. ``converted_order_id``,
        ``opened_at`` or ``clicked_at``.
    alpha
        1 - confidence level of the interval.

    Returns
    -------
    DataFrame with one row per stage plus ``all``: ``sent``, ``held``,
    ``rate_send``, ``rate_hold``, ``lift`` (absolute difference) and
    ``lift_lower``/``lift_upper``. Stages without randomised rows in both
    arms get NaN and ``note`` says why.
    """
    for col in ("stage", "action", "propensity", outcome):
        if col not in messages.columns:
            raise ValueError(f"messages: missing column {col!r}")
    messages = first_steps(messages)  # the holdout is on each trigger's first message
    df = messages.loc[messages["propensity"] < 1, ["stage", "action", "propensity", outcome]]
    y_raw = df[outcome]
    y = (y_raw.notna() if y_raw.dtype == object or str(y_raw.dtype).startswith("datetime") else y_raw.fillna(0) > 0)
    df = df.assign(_y=y.to_numpy(dtype=float), _w=1.0 / df["propensity"].to_numpy(dtype=float))
    rows = []
    groups = [(str(s), g) for s, g in df.groupby("stage", observed=True)] + [("all", df)]
    for stage, g in groups:
        send = g["action"].to_numpy() == "send"
        m1, v1 = hajek_mean(g["_y"].to_numpy()[send], g["_w"].to_numpy()[send])
        m0, v0 = hajek_mean(g["_y"].to_numpy()[~send], g["_w"].to_numpy()[~send])
        lift = m1 - m0
        lower, upper, _ = z_interval(lift, float(np.sqrt(v1 + v0)), alpha)
        note = "" if send.any() and (~send).any() else "no randomised rows in one arm"
        rows.append({"stage": stage, "sent": int(send.sum()), "held": int((~send).sum()),
                     "rate_send": m1, "rate_hold": m0, "lift": lift,
                     "lift_lower": lower, "lift_upper": upper, "note": note})
    return pd.DataFrame(rows)
