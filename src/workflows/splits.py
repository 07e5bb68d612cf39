"""One time-split rule: hold out the last N days of a history, at most a third of it.

``cadence fit``'s default cutoff, the send-time judgement and the demo all
pick a holdout this way; they call :func:`holdout_cutoff` so the rule is
written once. It lives in the workflow layer, the lowest layer that picks a
cutoff from data: the features, models and policies below always receive
their ``as_of``.

Examples
--------
>>> import pandas as pd
>>> start, end = pd.Timestamp("2024-01-01", tz="UTC"), pd.Timestamp("2024-12-31", tz="UTC")
>>> str(holdout_cutoff(start, end, 90).date())
'2024-10-02'
"""

from __future__ import annotations

import pandas as pd

_DAY = pd.Timedelta(1, "D")


def holdout_cutoff(start: pd.Timestamp, end: pd.Timestamp, holdout_days: float, *,
                   whole_days: bool = False) -> pd.Timestamp:
    """The cutoff that leaves the last ``holdout_days`` of ``[start, end)``, at most a third of it, as a holdout.

    Parameters
    ----------
    start, end : Timestamp
        The history: its first instant and its (exclusive) end.
    holdout_days : float
        The holdout wanted, in days.
    whole_days : bool
        Count the history in whole days and hold out a whole number of days,
        at least one (``cadence fit``'s and the demo's calendar splits);
        otherwise the third is a fraction of a day (the send-time judgement's
        split of trigger times).

    Returns
    -------
    Timestamp
        ``end - min(holdout_days, span / 3)``; with ``whole_days`` the span
        is counted in whole days and the third rounded down, at least 1 day.

    Examples
    --------
    >>> import pandas as pd
    >>> s = pd.Timestamp("2024-01-01", tz="UTC")
    >>> str(holdout_cutoff(s, s + pd.Timedelta(100, "D"), 90, whole_days=True).date())
    '2024-03-08'
    >>> str(holdout_cutoff(s, s + pd.Timedelta(100, "D"), 90))
    '2024-03-07 16:00:00+00:00'
    """
    if whole_days:
        days: float = min(holdout_days, max((end - start).days // 3, 1))
    else:
        days = min(holdout_days, (end - start) / _DAY / 3)
    return end - pd.Timedelta(days=days)


__all__ = ["holdout_cutoff"]
