"""Numeric context features of trigger candidates, shared by reward and uplift models.

A candidate frame (what a policy receives, see :mod:`cadence.contract.actions`)
becomes a float matrix: the stage (one-hot), the local hour of the trigger
(as a point on the clock, sine and cosine) and whether it is a weekend in
the customer's time zone, channel opt-ins, messages in the last 7 days,
orders in the last 90 days and the days since the last order;
plus any numeric customer-feature columns the caller names. (Whether the
logged message carried items is *not* a feature: items are written only when
a message is sent, so it would leak the decision into the context.) Actions become their own columns (send, channel,
delay slot, incentive), so one model can score every action.

Examples
--------
>>> import pandas as pd
>>> c = pd.DataFrame({"stage": ["birthday"], "triggered_at": pd.to_datetime(["2025-03-01 08:00"], utc=True),
...                   "timezone": ["Europe/Berlin"], "opt_in_email": [True], "sends_7d": [2]})
>>> x = context_features(c)
>>> float(x.loc[0, "stage=birthday"]), float(x.loc[0, "weekend"]), float(x.loc[0, "sends_7d"])
(1.0, 1.0, 2.0)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from cadence.contract.actions import N_ACTIONS, decode_action
from cadence.contract.clock import local_time
from cadence.contract.tables import CHANNELS, INCENTIVES, STAGES


def context_features(candidates: pd.DataFrame, extra: Sequence[str] = ()) -> pd.DataFrame:
    """Float features of each candidate (index 0..n-1); ``extra`` numeric columns appended (NaN → 0).

    Missing optional columns (opt-ins, ``sends_7d``, orders) count as 0 / never.
    """
    n = len(candidates)
    stage = candidates["stage"].astype(str).to_numpy()
    out = {f"stage={s}": (stage == s).astype(float) for s in STAGES}
    hour, weekday = local_time(candidates)
    out["hour_sin"] = np.sin(2 * np.pi * hour / 24)
    out["hour_cos"] = np.cos(2 * np.pi * hour / 24)
    out["weekend"] = (weekday >= 5).astype(float)
    for ch in CHANNELS:
        col = f"opt_in_{ch}"
        out[col] = candidates[col].fillna(False).to_numpy(float) if col in candidates else np.zeros(n)
    out["sends_7d"] = (candidates["sends_7d"].fillna(0).to_numpy(float) if "sends_7d" in candidates
                       else np.zeros(n))
    out["orders_90d"] = (candidates["orders_90d"].fillna(0).to_numpy(float) if "orders_90d" in candidates
                         else np.zeros(n))
    # Recency on a log scale, "never ordered" as a flag rather than a made-up number of days.
    since = (pd.to_numeric(candidates["days_since_order"], errors="coerce").to_numpy(float)
             if "days_since_order" in candidates else np.full(n, np.nan))
    out["has_ordered"] = np.isfinite(since).astype(float)
    out["log_days_since_order"] = np.log1p(np.nan_to_num(np.clip(since, 0, None), nan=0.0))
    for col in extra:
        if col not in candidates:
            raise ValueError(f"candidates.{col}: missing feature column")
        out[col] = pd.to_numeric(candidates[col], errors="coerce").fillna(0).to_numpy(float)
    return pd.DataFrame(out)


def _action_table() -> np.ndarray:
    """(N_ACTIONS, 12) action features: send, channel (4), delay slot (3), incentive (4)."""
    rows = np.zeros((N_ACTIONS, 1 + len(CHANNELS) + 3 + len(INCENTIVES)))
    for code in range(1, N_ACTIONS):
        ch, slot, inc = decode_action(code)  # type: ignore[misc]
        rows[code, 0] = 1
        rows[code, 1 + CHANNELS.index(ch)] = 1
        rows[code, 1 + len(CHANNELS) + slot] = 1
        rows[code, 1 + len(CHANNELS) + 3 + INCENTIVES.index(inc)] = 1
    return rows


ACTION_FEATURES = _action_table()
ACTION_FEATURE_NAMES: tuple[str, ...] = (
    ("send",) + tuple(f"channel={c}" for c in CHANNELS) + tuple(f"delay_slot={k}" for k in range(3))
    + tuple(f"incentive={i}" for i in INCENTIVES)
)


def with_actions(x: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """``[x, action features of codes]`` row by row.

    >>> with_actions(np.zeros((1, 2)), np.array([1])).shape
    (1, 14)
    """
    return np.hstack([x, ACTION_FEATURES[np.asarray(codes, dtype=np.int64)]])
