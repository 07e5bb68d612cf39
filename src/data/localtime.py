"""Local clock time of UTC timestamps in each row's own time zone.

Kept apart from the send-time model so light modules (the policy context,
the exported policy's code) read local hours without importing scikit-learn.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def local_clock(ts: pd.Series, tz: pd.Series | None) -> tuple[np.ndarray, np.ndarray]:
    """(hour of day as float, weekday 0=Monday) of UTC timestamps in each row's time zone.

    Missing or unknown zones read as UTC rather than failing.

    >>> ts = pd.Series(pd.to_datetime(["2024-01-01 12:30"], utc=True))
    >>> local_clock(ts, pd.Series(["Asia/Tokyo"]))
    (array([21.5]), array([0]))
    """
    ts = pd.to_datetime(ts, utc=True).reset_index(drop=True)
    zones = (tz.astype(object).fillna("UTC").reset_index(drop=True) if tz is not None
             else pd.Series("UTC", index=ts.index))
    hour = np.zeros(len(ts))
    weekday = np.zeros(len(ts), np.int64)
    for zone, rows in zones.groupby(zones, observed=True).groups.items():
        try:
            local = ts[rows].dt.tz_convert(str(zone))
        except Exception:  # an unknown zone name falls back to UTC
            local = ts[rows]
        hour[rows] = (local.dt.hour + local.dt.minute / 60).to_numpy()
        weekday[rows] = local.dt.weekday.to_numpy()
    return hour, weekday
