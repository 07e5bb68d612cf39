"""Local clock time of UTC timestamps in each row's own time zone.

Kept apart from the send-time model so light modules (the policy context,
the exported policy's code) read local hours without importing scikit-learn.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def epoch_seconds(ts: pd.Series | np.ndarray) -> np.ndarray:
    """Whole seconds since the epoch of timestamps of any resolution (naive ones read as UTC).

    Contract tables come back from Parquet in microseconds, frames built in
    pandas in nanoseconds: dividing the raw integers by a fixed power of ten
    is right for one and wrong for the other.

    >>> epoch_seconds(pd.Series(pd.to_datetime(["1970-01-02"], utc=True)).astype("datetime64[us, UTC]"))
    array([86400])
    """
    stamps = pd.to_datetime(ts, utc=True)
    return np.asarray(stamps.astype("datetime64[us, UTC]").astype("int64")) // 1_000_000


def circular_hours(a: np.ndarray | float, b: np.ndarray | float) -> np.ndarray:
    """Distance in hours between hours of the day, around the clock (at most 12).

    >>> circular_hours(np.array([23.0, 6.0]), 1.0)
    array([2., 5.])
    """
    d = np.abs(np.asarray(a, float) - np.asarray(b, float)) % 24
    return np.minimum(d, 24 - d)


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
