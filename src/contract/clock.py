"""Time, one helper each: UTC coercion, epoch seconds, local clock time, day constants.

Every layer (and the synthetic world) reads time through this module, so a
cutoff is coerced one way and a timestamp turns into seconds one way. It
imports only numpy and pandas, so light modules (the policy context, the
exported policy's code) read local hours without importing scikit-learn.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: Seconds in a day and in an hour.
DAY_S = 86_400
HOUR_S = 3_600


def utc(ts: object, name: str) -> pd.Timestamp:
    """``ts`` as a UTC :class:`pandas.Timestamp`; a naive value is read as UTC (the contract stores UTC).

    Raises a ``ValueError`` naming ``name`` when ``ts`` is not a timestamp.

    >>> utc("2024-03-01 10:00", "as_of")
    Timestamp('2024-03-01 10:00:00+0000', tz='UTC')
    >>> utc("2024-03-01 10:00+01:00", "as_of").hour
    9
    """
    try:
        out = pd.Timestamp(ts)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a timestamp, got {ts!r}") from None
    if out is pd.NaT:
        raise ValueError(f"{name} must be a timestamp, got {ts!r}")
    return out.tz_localize("UTC") if out.tzinfo is None else out.tz_convert("UTC")


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

    Missing or unknown zones read as UTC rather than failing; a missing
    timestamp gets hour NaN and weekday 0.

    >>> ts = pd.Series(pd.to_datetime(["2024-01-01 12:30"], utc=True))
    >>> local_clock(ts, pd.Series(["Asia/Tokyo"]))
    (array([21.5]), array([0]))
    """
    # One time-zone conversion per distinct zone, then integer arithmetic on the local wall-clock
    # nanoseconds: the served model calls this on every request, and the .dt accessors per zone
    # (and pd.to_datetime on a column that is already datetime) cost more than the decision itself.
    if isinstance(getattr(ts, "dtype", None), pd.DatetimeTZDtype):
        stamps = pd.DatetimeIndex(ts).tz_convert("UTC")
    else:
        stamps = pd.DatetimeIndex(pd.to_datetime(ts, utc=True))
    utc_ns = stamps.as_unit("ns").asi8
    missing = stamps.isna()
    local_ns = utc_ns.copy()
    if tz is not None and len(stamps):
        codes, zones = pd.factorize(tz.astype(object).to_numpy(), use_na_sentinel=True)
        for k, zone in enumerate(zones):
            if zone == "UTC":
                continue
            rows = codes == k
            try:
                local = stamps[rows].tz_convert(str(zone))
            except Exception:  # an unknown zone name falls back to UTC
                continue
            local_ns[rows] = local.tz_localize(None).as_unit("ns").asi8
    secs = np.where(missing, 0, local_ns) // 1_000_000_000
    of_day = secs % DAY_S
    hour = (of_day // HOUR_S + (of_day % HOUR_S) // 60 / 60).astype(float)
    weekday = ((secs // DAY_S + 3) % 7).astype(np.int64)  # 1970-01-01 was a Thursday
    hour[missing] = np.nan
    weekday[missing] = 0
    return hour, weekday


def local_time(candidates: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(hour of day as float, weekday) of each candidate's ``triggered_at`` in its ``timezone`` (UTC when unknown).

    Precomputed ``local_hour``/``local_weekday`` columns are used when present
    (the replay adds them once instead of converting time zones every round).

    >>> c = pd.DataFrame({"triggered_at": pd.to_datetime(["2024-03-01 10:30"], utc=True), "timezone": ["Europe/Paris"]})
    >>> h, wd = local_time(c)
    >>> float(h[0]), int(wd[0])
    (11.5, 4)
    """
    if "local_hour" in candidates and "local_weekday" in candidates:
        return candidates["local_hour"].to_numpy(float), candidates["local_weekday"].to_numpy(np.int64)
    return local_clock(candidates["triggered_at"], candidates["timezone"] if "timezone" in candidates else None)
