"""Purchase-history inputs of the models, point in time: RFM summary, survival snapshots, repurchase gaps.

Ibis expressions that run unchanged on DuckDB and Spark
(:mod:`cadence.features.engine`), defined once here so a model fitted on them
reads exactly what the feature layer writes:

* :func:`rfm_summary` -- BG/NBD and Gamma-Gamma inputs (frequency, recency,
  T, monetary value) before ``as_of``; :func:`rfm_summary_frame` is the same
  for a pandas ``orders`` table, with its :class:`DataQualityWarning`;
* :func:`holdout_frequency` -- each customer's repeat purchases in
  ``[as_of, until)``, what the BTYD forecasts are judged against;
* :func:`purchase_days` -- one row per customer and purchase day;
* :func:`purchase_snapshots` / :func:`stacked_snapshots` -- one row per
  customer at a cutoff: covariates from the past, time to the next purchase
  from an explicit follow-up window ``[as_of, until)``;
* :func:`purchase_gaps` -- days between consecutive purchase days of one
  product by one customer.

Time grid
---------
A purchase happens on its UTC day: orders of one customer on the same day
are one purchase whose value is their sum. Days are whole epoch days
(``epoch seconds // 86400``), so both engines compare the same integers,
and every "days" value is computed from integers with the same floating
operations the models' former pandas inputs used, so they are bit for bit
the same. Revenue totals are summed exactly (in millionths of the currency
unit), so they are the same on every engine and in every row order; the
former pandas means could differ from them in the last bit (a relative
4e-16, for about one customer in ten), which moves Gamma-Gamma's estimates
in their fifth or sixth digit (its likelihood is flat there) and nothing
else (``tests/features/test_model_inputs.py``).

The survival snapshot's clock is this day grid, the customer features'
(:func:`cadence.features.customer.customer_features`) is the exact order
time, so the snapshot's two times carry their own names: ``elapsed_days``
(not ``recency_days``) and ``purchase_tenure_days`` (not ``tenure_days``,
which there counts from signup); see :func:`purchase_snapshots`.

Only orders strictly before ``as_of`` feed a covariate; a target reads
``[as_of, until)`` and nothing at or after ``until``.

Examples
--------
>>> import pandas as pd
>>> from cadence.features.engine import connect, register
>>> con = connect()
>>> t = register(con, {"orders": pd.DataFrame({
...     "customer_id": ["a", "a", "a", "b"],
...     "ts": pd.to_datetime(["2024-01-01", "2024-01-01", "2024-01-15", "2024-01-08"], utc=True),
...     "revenue": [10.0, 5.0, 20.0, 7.0]})})
>>> fetch_frame(con, rfm_summary(t, "2024-01-29", time_unit="D"), ["customer_id"]).values.tolist()
[['a', 1, 14.0, 27.0, 20.0], ['b', 0, 0.0, 20.0, 0.0]]
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import ibis
import pandas as pd
from ibis import _

from cadence.contract.clock import DAY_S, utc
from cadence.features.customer import require_columns, secs
from cadence.features.engine import as_of_literal, connect, fetch_arrow, register

TimeUnit = Literal["D", "W"]
#: Days in each time unit of :func:`rfm_summary`.
DAYS_PER_UNIT: dict[str, float] = {"D": 1.0, "W": 7.0}
#: Columns of :func:`rfm_summary`, in order.
RFM_COLUMNS: tuple[str, ...] = ("customer_id", "frequency", "recency", "T", "monetary_value")
#: Columns of :func:`purchase_snapshots`, in order.
SNAPSHOT_COLUMNS: tuple[str, ...] = ("customer_id", "as_of", "last_purchase_at", "frequency", "elapsed_days",
                                     "purchase_tenure_days", "mean_gap_days", "monetary", "duration_days", "event")
#: Columns of :func:`holdout_frequency`, in order.
HOLDOUT_COLUMNS: tuple[str, ...] = ("customer_id", "holdout_frequency")
#: Columns of :func:`purchase_gaps`, in order (``day``: the purchase day that closes the gap).
GAP_COLUMNS: tuple[str, ...] = ("customer_id", "product_id", "day", "gap_days")
#: Columns of :func:`last_product_purchases`, in order.
LAST_PURCHASE_COLUMNS: tuple[str, ...] = ("customer_id", "product_id", "as_of", "last_purchase_at")
Tables = Mapping[str, ibis.Table]


class DataQualityWarning(UserWarning):
    """Rows or customers that a summary or a fit set aside or merged, with their count.

    Raised (as a warning, never an error) where real data departs from a
    model's assumptions and the literature's remedy was applied: same-day
    orders merged and customers first seen before the calibration start left
    out of the cohort (:func:`rfm_summary_frame`), repeat buyers with zero or
    negative spend set aside by Gamma-Gamma, a cohort without repeat buyers
    (:mod:`cadence.models.btyd`, which re-exports it). The message gives
    counts only, never customer ids.
    """

    # Doctests import this file under another module name; the public path lets
    # pytest-xdist's controller rebuild the warning a worker reports.
    __module__ = "cadence.features.purchases"


def _orders(tables: Tables) -> ibis.Table:
    orders = require_columns(tables, "orders")
    if orders is None:
        raise ValueError("orders: missing table (purchase features need it)")
    return orders


def _day(ts: ibis.Value) -> ibis.Value:
    """The whole UTC epoch day of a timestamp."""
    return secs(ts) // DAY_S


#: Revenue is summed in whole millionths of the currency unit: integer sums are exact, so a total
#: does not depend on the order the engine (or its threads) adds the rows in.
_MICRO = 1_000_000


def _exact_sum(revenue: ibis.Value, where: ibis.Value | None = None) -> ibis.Value:
    """The sum of ``revenue`` (float), the same whatever the order of the rows or the engine."""
    micro = (revenue.cast("float64") * _MICRO).round().cast("int64")
    return micro.sum(where=where).cast("float64") / _MICRO


def _epoch_day(ts: pd.Timestamp) -> int:
    return int(ts.value // (DAY_S * 10**9))


def _epoch_s(ts: pd.Timestamp) -> float:
    """A cutoff in epoch seconds (fractions kept, as the pandas code's timedeltas did)."""
    return ts.value / 10**9


def purchase_days(tables: Tables, as_of: Any, *, since: Any = None) -> ibis.Table:
    """One row per customer and UTC purchase day in ``[since, as_of)``: ``customer_id``, ``day``, ``revenue``.

    ``day`` is the whole epoch day (int64), ``revenue`` the day's total
    (summed exactly in millionths, so it does not depend on the row order).

    Examples
    --------
    >>> import pandas as pd
    >>> con, t = duckdb_tables({"orders": pd.DataFrame({"customer_id": ["a", "a"], "revenue": [1.0, 2.0],
    ...     "ts": pd.to_datetime(["2024-01-01 08:00", "2024-01-01 20:00"], utc=True)})})
    >>> fetch_frame(con, purchase_days(t, "2024-02-01"), ["day"]).values.tolist()
    [['a', 19723, 3.0]]
    """
    o = _orders(tables)
    keep = o.ts < as_of_literal(utc(as_of, "as_of"))
    if since is not None:
        keep &= o.ts >= as_of_literal(utc(since, "since"))
    o = o.filter(keep)
    o = o.mutate(day=_day(o.ts))
    return o.group_by(["customer_id", "day"]).aggregate(revenue=_exact_sum(o.revenue))


def rfm_summary(tables: Tables, as_of: Any, *, start: Any = None, time_unit: TimeUnit = "W",
                merge_same_day: bool = True) -> ibis.Table:
    """BG/NBD and Gamma-Gamma inputs from the orders before ``as_of``, one row per customer.

    Only orders with ``ts < as_of`` are read, so adding orders at or after
    ``as_of`` never changes the result. Time is measured in whole UTC days: a
    purchase happens on its day, and the last observed day is the day of the
    last instant before ``as_of``. With ``as_of = 1997-10-01`` a customer who
    first bought on 1997-01-01 has ``T = 272 / 7 = 38.86`` weeks, as in the
    data of Fader, Hardie & Lee (2005) [1].

    Parameters
    ----------
    tables : mapping of str to ibis.Table
        Needs ``orders`` (``customer_id``, ``ts``, ``revenue``).
    as_of : timestamp-like
        Exclusive cutoff; naive values are UTC. Required on purpose:
        defaulting to the latest order would leak the future into features.
    start : timestamp-like, optional
        Keep only customers whose first order before ``as_of`` is at or after
        ``start``: the cohort of the calibration period. The models start each
        customer's clock at the first purchase; for a customer first seen
        before ``start`` that clock is unknown (left truncation), so, as in
        the cohort analyses of [1], they are left out
        (:func:`rfm_summary_frame` warns with their number).
    time_unit : {'W', 'D'}
        Unit of ``recency`` and ``T``.
    merge_same_day : bool
        One purchase per customer and day, valued at the day's total (the
        convention of Fader, Hardie & Lee). If False every order counts, and
        the first purchase is the earliest order (ties: the smallest
        ``order_id``).

    Returns
    -------
    ibis.Table
        :data:`RFM_COLUMNS`: ``customer_id``; ``frequency`` (int64, repeat
        purchases); ``recency`` (first to last purchase) and ``T`` (first
        purchase to the last observed day), floats in ``time_unit``;
        ``monetary_value``, the mean value of the repeat purchases (the first
        is excluded, as in [2]), 0 when ``frequency == 0``.

    References
    ----------
    .. [1] Fader, P. S., Hardie, B. G. S. & Lee, K. L. (2005). "Counting your
       customers" the easy way. *Marketing Science* 24(2), 275-284.
    .. [2] Fader, P. S., Hardie, B. G. S. & Lee, K. L. (2005). RFM and CLV:
       using iso-value curves for customer base analysis. *Journal of
       Marketing Research* 42(4), 415-430.

    Examples
    --------
    >>> from pandas import DataFrame, to_datetime
    >>> orders = DataFrame({"customer_id": ["a", "a"], "revenue": [4.0, 6.0],
    ...                     "ts": to_datetime(["2024-01-01", "2024-01-15"], utc=True)})
    >>> con, t = duckdb_tables({"orders": orders})
    >>> fetch_frame(con, rfm_summary(t, "2024-01-30"), ["customer_id"]).values.tolist()
    [['a', 1, 2.0, 4.0, 6.0]]
    """
    if time_unit not in DAYS_PER_UNIT:
        raise ValueError(f"time_unit must be one of {sorted(DAYS_PER_UNIT)}, got {time_unit!r}")
    cutoff = utc(as_of, "as_of")
    o = _orders(tables)
    o = o.filter(o.ts < as_of_literal(cutoff))
    if start is not None:
        first_ts = o.ts.min().over(group_by=o.customer_id)
        o = o.filter(first_ts >= as_of_literal(utc(start, "start")))
    o = o.mutate(day=_day(o.ts), revenue=o.revenue.cast("float64"))
    if merge_same_day:
        p = o.group_by(["customer_id", "day"]).aggregate(revenue=_exact_sum(o.revenue))
        is_repeat = p.day > p.day.min().over(group_by=p.customer_id)
    else:
        p = o
        rank = ibis.row_number().over(group_by=p.customer_id, order_by=[p.ts, p.order_id])
        is_repeat = rank > 0
    p = p.mutate(repeat=is_repeat)
    # The day of the last instant before as_of (as_of itself when it is not midnight).
    end_day = _epoch_day(cutoff - pd.Timedelta(1, "ns"))
    unit = DAYS_PER_UNIT[time_unit]
    agg = p.group_by("customer_id").aggregate(
        frequency=p.count() - 1, first=p.day.min(), last=p.day.max(),
        repeat_revenue=_exact_sum(p.revenue, where=p.repeat))
    return agg.select(
        "customer_id",
        frequency=agg.frequency.cast("int64"),
        recency=(agg["last"] - agg["first"]).cast("float64") / unit,
        T=(ibis.literal(end_day, "int64") - agg["first"]).cast("float64") / unit,
        monetary_value=ibis.ifelse(agg.frequency > 0, agg.repeat_revenue / agg.frequency.cast("float64"), 0.0),
    )


def holdout_frequency(tables: Tables, as_of: Any, until: Any) -> ibis.Table:
    """Each customer's repeat purchases in ``[as_of, until)``: what a BTYD forecast is judged against.

    Purchases are counted on the grid of :func:`rfm_summary`: orders of one
    UTC day are one purchase, a day that already holds a purchase before
    ``as_of`` is not counted again (only possible when ``as_of`` is not
    midnight), and for a customer without a purchase before ``as_of`` the
    first purchase in the window is not a repeat.

    Parameters
    ----------
    tables : mapping of str to ibis.Table
        Needs ``orders`` (``customer_id``, ``ts``).
    as_of, until : timestamp-like
        The holdout window, ``as_of`` included and ``until`` excluded; naive
        values are UTC.

    Returns
    -------
    ibis.Table
        :data:`HOLDOUT_COLUMNS`: one row per customer with an order before
        ``until``; ``holdout_frequency`` (int64, 0 without a repeat purchase
        in the window). Line it up with a calibration summary by
        ``customer_id``.

    Examples
    --------
    >>> import pandas as pd
    >>> con, t = duckdb_tables({"orders": pd.DataFrame({"customer_id": ["a", "a", "a", "a", "b", "b"],
    ...     "ts": pd.to_datetime(["2024-01-01", "2024-02-01", "2024-02-01", "2024-03-01",
    ...                           "2024-02-02", "2024-02-09"], utc=True), "revenue": [1.0] * 6})})
    >>> fetch_frame(con, holdout_frequency(t, "2024-01-15", "2024-03-01"), ["customer_id"]).values.tolist()
    [['a', 1], ['b', 1]]
    """
    lo, hi = utc(as_of, "as_of"), utc(until, "until")
    if hi <= lo:
        raise ValueError(f"until ({hi}) must be after as_of ({lo})")
    o = _orders(tables)
    o = o.filter(o.ts < as_of_literal(hi))
    o = o.mutate(day=_day(o.ts), before=o.ts < as_of_literal(lo))
    d = o.group_by(["customer_id", "day"]).aggregate(seen=o.before.any(), new=(~o.before).any())
    c = d.group_by("customer_id").aggregate(n_new=d.count(where=d.new & ~d.seen), known=d.seen.any())
    # A customer first seen in the window: that first purchase starts the clock, it is not a repeat.
    return c.select("customer_id", holdout_frequency=(c.n_new - ibis.ifelse(c.known, 0, 1)).cast("int64"))


def purchase_snapshots(tables: Tables, as_of: Any, *, until: Any = None,
                       horizon_days: float | None = None) -> ibis.Table:
    """One row per customer with a purchase before ``as_of``: covariates and time to the next purchase.

    Covariates read orders with ``ts < as_of``; the target reads the
    follow-up ``[as_of, end)`` with ``end = min(until, as_of + horizon_days)``
    (at least one is required: the follow-up is explicit, never "the rest of
    the data"). A purchase day counts at its midpoint, so with a midnight
    cutoff ``elapsed_days = as_of - L - 0.5`` for a last purchase on day
    ``L``, and an event on day ``N`` has ``duration_days = N - L``.

    ``elapsed_days`` is the survival model's left-truncation (entry) time:
    the part of ``duration_days`` already spent without a purchase at the
    cutoff, on the purchase-day grid, which is what
    ``conditional_after`` needs. It is not the customer feature
    ``recency_days`` of :func:`cadence.features.customer.customer_features`,
    the exact time since the last order: with a midnight cutoff
    ``elapsed_days = recency_days + (seconds into the last order's day) / 86400 - 0.5``,
    so they keep two names. Likewise
    ``purchase_tenure_days`` counts from the first purchase day's midpoint
    (the customer features' ``first_order_days_ago`` on this grid), not from
    signup as their ``tenure_days`` does.

    Parameters
    ----------
    tables : mapping of str to ibis.Table
        Needs ``orders`` (``customer_id``, ``ts``, ``revenue``).
    as_of : timestamp-like
        Exclusive cutoff of the history; naive values are UTC.
    until : timestamp-like, optional
        Exclusive end of the observed follow-up.
    horizon_days : float, optional
        Length of the follow-up in days.

    Returns
    -------
    ibis.Table
        :data:`SNAPSHOT_COLUMNS`: ``customer_id``, ``as_of``,
        ``last_purchase_at`` (midnight UTC of the last purchase day),
        ``frequency`` (repeat purchase days), ``elapsed_days`` (since the
        last purchase day's midpoint, at least 0 and before the event),
        ``purchase_tenure_days`` (since the first purchase day's midpoint),
        ``mean_gap_days`` ((last - first day) / frequency, 0 for one-time
        buyers), ``monetary`` (mean revenue per purchase day),
        ``duration_days`` (last purchase to the next one, ``event = 1``, or
        to the end of the follow-up, ``event = 0``).

    Examples
    --------
    >>> import pandas as pd
    >>> from cadence.features.engine import connect, register
    >>> con = connect()
    >>> t = register(con, {"orders": pd.DataFrame({"customer_id": ["a", "a"], "revenue": [1.0, 3.0],
    ...     "ts": pd.to_datetime(["2024-01-01", "2024-01-21"], utc=True)})})
    >>> s = fetch_frame(con, purchase_snapshots(t, "2024-01-11", horizon_days=30), ["customer_id"])
    >>> s[["elapsed_days", "purchase_tenure_days", "duration_days", "event"]].iloc[0].tolist()
    [9.5, 9.5, 20.0, 1.0]
    """
    return _snapshots(tables, [_follow_up(as_of, until, horizon_days)])


def _follow_up(as_of: Any, until: Any, horizon_days: float | None) -> tuple[pd.Timestamp, pd.Timestamp]:
    """``(as_of, end)`` of a snapshot, the follow-up ``[as_of, end)`` checked."""
    cutoff = utc(as_of, "as_of")
    if until is None and horizon_days is None:
        raise ValueError("pass until= or horizon_days=: the follow-up window [as_of, until) must be explicit")
    if horizon_days is not None and horizon_days <= 0:
        raise ValueError(f"horizon_days must be > 0, got {horizon_days}")
    ends = [] if until is None else [utc(until, "until")]
    if horizon_days is not None:
        ends.append(cutoff + pd.Timedelta(float(horizon_days), "D"))
    end = min(ends)
    if end <= cutoff:
        raise ValueError(f"the follow-up must end after as_of ({cutoff}), got {end}")
    return cutoff, end


def _spans(orders: ibis.Table, spans: Sequence[tuple[pd.Timestamp, pd.Timestamp]]) -> ibis.Table:
    """The follow-ups as a table, one row each: ``span``, ``cut_at``, ``end_at`` and both in epoch seconds.

    Built from one-row selects of ``orders`` (``limit(1)``), so it needs no
    upload and runs on every engine; without orders it is empty, as is every
    snapshot then.
    """
    one = orders.limit(1)
    rows = [one.select(span=ibis.literal(i, "int64"), cut_at=as_of_literal(cut), end_at=as_of_literal(end),
                       c_s=ibis.literal(_epoch_s(cut), "float64"), e_s=ibis.literal(_epoch_s(end), "float64"))
            for i, (cut, end) in enumerate(spans)]
    return rows[0] if len(rows) == 1 else ibis.union(*rows, distinct=False)


def _snapshots(tables: Tables, spans: Sequence[tuple[pd.Timestamp, pd.Timestamp]]) -> ibis.Table:
    """:func:`purchase_snapshots` at every ``(as_of, end)`` of ``spans`` in one query.

    One pass over the orders whatever the number of cutoffs: each order is
    paired with every follow-up it falls before the end of, then grouped by
    follow-up. The query's size does not grow with the cutoffs, so neither
    does the time Ibis takes to build and compile it (with one query per
    cutoff that was most of the time of a churn fit's training snapshots).
    """
    o = _orders(tables)
    cuts = _spans(o, spans)
    # Covariates: the purchase days before each cutoff (orders of one day are one purchase). The
    # revenue is summed per order in millionths: the same integer as summing the days' totals.
    before = o.inner_join(cuts, o.ts < cuts.cut_at)
    before = before.select("span", "customer_id", "revenue", day=_day(before.ts))
    g = before.group_by(["span", "customer_id"]).aggregate(
        n_days=before.day.nunique(), first=before.day.min(), last=before.day.max(),
        revenue=_exact_sum(before.revenue))
    # Target: the next purchase day after the last one before the cutoff, within the follow-up.
    after = o.inner_join(cuts, (o.ts >= cuts.cut_at) & (o.ts < cuts.end_at))
    after = after.select("span", "customer_id", day=_day(after.ts))
    lasts = g.select(l_span=g.span, l_customer=g.customer_id, last_before=g["last"])
    later = after.inner_join(lasts, (after.span == lasts.l_span) & (after.customer_id == lasts.l_customer))
    later = later.filter(later.day > later.last_before)
    later = later.group_by(["l_span", "l_customer"]).aggregate(next_day=later.day.min())
    s = g.left_join(later, (g.span == later.l_span) & (g.customer_id == later.l_customer))
    c = cuts.select(c_span=cuts.span, cut_at=cuts.cut_at, c_s=cuts.c_s, e_s=cuts.e_s)
    s = s.inner_join(c, s.span == c.c_span)

    # The former pandas code's arithmetic, step for step: days from integer seconds, float division.
    c_s, e_s = s.c_s, s.e_s
    last_s = (s["last"] * DAY_S).cast("float64")
    first_s = (s["first"] * DAY_S).cast("float64")
    frequency = (s.n_days - 1).cast("int64")
    event = s.next_day.notnull()
    duration = ibis.ifelse(event, ((s.next_day - s["last"]) * DAY_S).cast("float64") / DAY_S,
                           (e_s - last_s) / DAY_S - 0.5)
    elapsed = ibis.greatest((c_s - last_s) / DAY_S - 0.5, 0.0)
    # Only reachable with a cutoff inside a day: keep the entry strictly before the event.
    elapsed = ibis.least(elapsed, duration - ibis.ifelse(event, 0.5, 0.0))
    span = ((s["last"] - s["first"]) * DAY_S).cast("float64") / DAY_S
    return s.select(
        customer_id=s.customer_id,
        as_of=s.cut_at,
        last_purchase_at=(s["last"] * DAY_S).as_timestamp("s").cast("timestamp('UTC')"),
        frequency=frequency,
        elapsed_days=elapsed,
        purchase_tenure_days=ibis.greatest((c_s - first_s) / DAY_S - 0.5, 0.0),
        mean_gap_days=ibis.ifelse(frequency > 0, span / ibis.greatest(frequency, 1).cast("float64"), 0.0),
        monetary=s.revenue / s.n_days.cast("float64"),
        duration_days=duration.cast("float64"),
        event=event.cast("int64"),
    )


def stacked_snapshots(tables: Tables, cutoffs: Sequence[Any], until: Any) -> ibis.Table:
    """:func:`purchase_snapshots` at several cutoffs, all followed up to ``until``, stacked.

    The training set for a model used at ``until``: every cutoff sees only
    its past, every follow-up stops at ``until``, so nothing at or after
    ``until`` is read. One query whatever the number of cutoffs (each order
    is read once, paired with the cutoffs it precedes); rows come in no
    particular order: sort by ``as_of``, ``customer_id``.

    Examples
    --------
    >>> import pandas as pd
    >>> from cadence.features.engine import connect, register
    >>> con = connect()
    >>> t = register(con, {"orders": pd.DataFrame({"customer_id": ["a"] * 3, "revenue": [1.0] * 3,
    ...     "ts": pd.to_datetime(["2024-01-01", "2024-02-01", "2024-03-01"], utc=True)})})
    >>> s = stacked_snapshots(t, ["2024-01-15", "2024-02-15"], "2024-03-10")
    >>> fetch_frame(con, s, ["as_of", "customer_id"])["event"].tolist()
    [1, 1]
    """
    if not cutoffs:
        raise ValueError("stacked_snapshots: no cutoffs")
    return _snapshots(tables, [_follow_up(c, until, None) for c in cutoffs])


def purchase_gaps(tables: Tables, as_of: Any) -> ibis.Table:
    """Days between consecutive purchase days of one product by one customer, before ``as_of``.

    Several orders of a product on one UTC day are one purchase.

    Parameters
    ----------
    tables : mapping of str to ibis.Table
        Needs ``orders`` (with ``order_id``) and ``order_items``
        (``order_id``, ``product_id``).
    as_of : timestamp-like
        Exclusive cutoff.

    Returns
    -------
    ibis.Table
        :data:`GAP_COLUMNS`: ``customer_id``, ``product_id``, ``day`` (the
        epoch day of the purchase that closes the gap; sort by customer,
        product and day for the order of the purchases), ``gap_days``
        (float, >= 1).

    Examples
    --------
    >>> import pandas as pd
    >>> from cadence.features.engine import connect, register
    >>> con = connect()
    >>> t = register(con, {"orders": pd.DataFrame({"order_id": ["1", "2", "3"], "customer_id": ["a"] * 3,
    ...     "ts": pd.to_datetime(["2024-01-01", "2024-01-31", "2024-03-01"], utc=True), "revenue": [1.0] * 3}),
    ...     "order_items": pd.DataFrame({"order_id": ["1", "2", "3"], "product_id": ["p"] * 3})})
    >>> fetch_frame(con, purchase_gaps(t, "2024-03-01"), ["day"])["gap_days"].tolist()
    [30.0]
    """
    o = _orders(tables)
    items = require_columns(tables, "order_items")
    if items is None:
        raise ValueError("order_items: missing table (repurchase gaps need it)")
    o = o.filter(o.ts < as_of_literal(utc(as_of, "as_of")))
    o = o.select(o_id=o.order_id, customer_id=o.customer_id, day=_day(o.ts))
    lines = items.select("order_id", "product_id").join(o, items.order_id == o.o_id)
    lines = lines.select("customer_id", "product_id", "day").distinct()
    prev = lines.day.lag().over(group_by=[lines.customer_id, lines.product_id], order_by=lines.day)
    lines = lines.mutate(gap_days=((lines.day - prev) * DAY_S).cast("float64") / DAY_S)
    return lines.filter(lines.gap_days.notnull()).select(*GAP_COLUMNS)


def last_product_purchases(tables: Tables, cutoffs: Sequence[Any], *,
                           products: Sequence[str] | None = None) -> ibis.Table:
    """Each customer's last order of each product before each cutoff, at every cutoff in one query.

    What a repurchase forecast starts from: the product is due again one
    interval after ``last_purchase_at`` (the exact order time, as the
    ``buy_again`` trigger counts it). At a cutoff only orders with
    ``ts < as_of`` are read, so orders at or after it change nothing there.

    Parameters
    ----------
    tables : mapping of str to ibis.Table
        Needs ``orders`` (``order_id``, ``customer_id``, ``ts``) and
        ``order_items`` (``order_id``, ``product_id``).
    cutoffs : sequence of timestamp-like
        Exclusive cutoffs; naive values are UTC.
    products : sequence of str, optional
        Only these products (e.g. those with a repurchase interval).

    Returns
    -------
    ibis.Table
        :data:`LAST_PURCHASE_COLUMNS`, one row per cutoff, customer and
        product bought before it; rows in no particular order.

    Examples
    --------
    >>> import pandas as pd
    >>> con, t = duckdb_tables({"orders": pd.DataFrame({"order_id": ["1", "2"], "customer_id": ["a", "a"],
    ...     "ts": pd.to_datetime(["2024-01-01", "2024-01-31"], utc=True), "revenue": [1.0, 1.0]}),
    ...     "order_items": pd.DataFrame({"order_id": ["1", "2"], "product_id": ["p", "p"]})})
    >>> s = fetch_frame(con, last_product_purchases(t, ["2024-01-15", "2024-02-15"]), ["as_of"])
    >>> s["last_purchase_at"].dt.day.tolist()
    [1, 31]
    """
    if not cutoffs:
        raise ValueError("last_product_purchases: no cutoffs")
    o = _orders(tables)
    items = require_columns(tables, "order_items")
    if items is None:
        raise ValueError("order_items: missing table (last purchases of products need it)")
    cuts = [utc(c, "cutoff") for c in cutoffs]
    spans = _spans(o, [(c, c) for c in cuts])
    o = o.filter(o.ts < as_of_literal(max(cuts))).select(o_id=o.order_id, customer_id=o.customer_id, ts=o.ts)
    lines = items.select("order_id", "product_id")
    if products is not None:
        lines = lines.filter(lines.product_id.isin([str(p) for p in products]))
    lines = lines.join(o, lines.order_id == o.o_id).select("customer_id", "product_id", "ts")
    paired = lines.inner_join(spans, lines.ts < spans.cut_at)
    return paired.group_by(["cut_at", "customer_id", "product_id"]).aggregate(
        last_purchase_at=paired.ts.max()).select(*LAST_PURCHASE_COLUMNS[:2], as_of=_.cut_at,
                                                 last_purchase_at=_.last_purchase_at)


def duckdb_tables(frames: Mapping[str, pd.DataFrame]) -> tuple[Any, dict[str, ibis.Table]]:
    """In-memory tables on a new embedded DuckDB: ``(backend, tables)`` for the functions above.

    For tables already in pandas (a fit, a test); data directories are read
    in place with :func:`cadence.workflows.features.load_tables`.

    Examples
    --------
    >>> import pandas as pd
    >>> con, t = duckdb_tables({"orders": pd.DataFrame({"customer_id": ["a"], "revenue": [2.0],
    ...     "ts": pd.to_datetime(["2024-01-01"], utc=True)})})
    >>> fetch_frame(con, rfm_summary(t, "2024-01-08", time_unit="D"), ["customer_id"])["T"].tolist()
    [6.0]
    """
    con = connect("duckdb")
    return con, register(con, frames)


def fetch_frame(con: Any, expr: ibis.Table, sort_by: Sequence[str]) -> pd.DataFrame:
    """``expr`` as a pandas frame sorted by ``sort_by``, values exactly as computed.

    Unlike :func:`cadence.features.engine.execute`, floats are not rounded:
    a model fits on the very numbers the feature layer computed. Timestamps
    are nanosecond UTC (pandas' default, what the models were fitted on), strings Python objects, whatever the engine.

    Examples
    --------
    >>> import pandas as pd
    >>> from cadence.features.engine import connect
    >>> con = connect()
    >>> t = con.create_table("t", pd.DataFrame({"k": ["b", "a"], "v": [1 / 3, 2.0]}))
    >>> fetch_frame(con, t, ["k"])["v"].tolist()
    [2.0, 0.3333333333333333]
    """
    df = fetch_arrow(con, expr.order_by(list(sort_by))).to_pandas()
    for col in df.columns:
        s = df[col]
        if pd.api.types.is_datetime64_any_dtype(s):
            s = s.dt.tz_localize("UTC") if s.dt.tz is None else s.dt.tz_convert("UTC")
            df[col] = s.astype("datetime64[ns, UTC]")
    # Spark does not promise the order of a sorted result once it reaches pandas; sort again (stable).
    return df.sort_values(list(sort_by), kind="stable").reset_index(drop=True)


def rfm_summary_frame(orders: pd.DataFrame, as_of: Any, *, start: Any = None, time_unit: TimeUnit = "W",
                      merge_same_day: bool = True) -> pd.DataFrame:
    """:func:`rfm_summary` of a pandas ``orders`` table, indexed by ``customer_id``: what a BTYD model fits on.

    The one pandas convenience of this module, for orders already in memory
    (notebooks, examples, a fit): the orders go to an embedded DuckDB
    (:func:`duckdb_tables`) and the summary comes back exactly as computed
    (:func:`fetch_frame`). It also warns what the summary did to the data,
    with counts, never ids: a :class:`DataQualityWarning` for the customers
    left out because they first bought before ``start``, and one for the
    same-day orders merged into one purchase.

    Parameters
    ----------
    orders : DataFrame
        Contract ``orders``: ``customer_id``, ``ts`` (timezone-aware), ``revenue``.
    as_of, start, time_unit, merge_same_day
        As for :func:`rfm_summary`.

    Returns
    -------
    DataFrame
        Index ``customer_id`` (sorted); columns ``frequency`` (int64),
        ``recency``, ``T``, ``monetary_value`` (float64).

    Examples
    --------
    >>> import pandas as pd, warnings
    >>> orders = pd.DataFrame({
    ...     "customer_id": ["a", "a", "a", "b"],
    ...     "ts": pd.to_datetime(["2024-01-01", "2024-01-01", "2024-01-15", "2024-01-08"], utc=True),
    ...     "revenue": [10.0, 5.0, 20.0, 7.0],
    ... })
    >>> with warnings.catch_warnings(record=True) as seen:
    ...     warnings.simplefilter("always")
    ...     rfm = rfm_summary_frame(orders, as_of="2024-01-29", time_unit="D")
    >>> rfm.reset_index()
      customer_id  frequency  recency     T  monetary_value
    0           a          1     14.0  27.0            20.0
    1           b          0      0.0  20.0             0.0
    >>> [str(w.message)[:40] for w in seen]
    ['rfm_summary: merged 1 same-day orders in']
    """
    if "ts" in orders.columns and not isinstance(orders["ts"].dtype, pd.DatetimeTZDtype):
        raise ValueError("orders: column 'ts' must be timezone-aware (the contract stores UTC)")
    con, t = duckdb_tables({"orders": orders})
    summary = rfm_summary(t, as_of, start=start, time_unit=time_unit, merge_same_day=merge_same_day)
    o = _orders(t)
    o = o.filter(o.ts < as_of_literal(utc(as_of, "as_of")))
    early = (o.ts.min().over(group_by=o.customer_id) < as_of_literal(utc(start, "start"))
             if start is not None else ibis.literal(False))
    o = o.mutate(day=_day(o.ts), early=early)
    d = o.group_by(["customer_id", "day"]).aggregate(n=o.count(), early=o.early.any())
    counts = fetch_arrow(con, d.aggregate(
        early_customers=d.customer_id.nunique(where=d.early), early_orders=d.n.sum(where=d.early),
        orders=d.n.sum(where=~d.early), days=d.count(where=~d.early))).to_pylist()[0]
    counts = {k: int(v or 0) for k, v in counts.items()}
    if counts["early_customers"]:
        warnings.warn(f"rfm_summary: left out {counts['early_customers']} customers ({counts['early_orders']} "
                      f"orders) whose first purchase is before start={start}: their clock cannot start at the "
                      "first purchase", DataQualityWarning, stacklevel=2)
    if merge_same_day and counts["orders"] > counts["days"]:
        warnings.warn(f"rfm_summary: merged {counts['orders'] - counts['days']} same-day orders into other orders "
                      "of the same customer and day (one purchase per day, as in Fader, Hardie & Lee 2005)",
                      DataQualityWarning, stacklevel=2)
    return fetch_frame(con, summary, ["customer_id"]).set_index("customer_id")


__all__ = ["rfm_summary", "rfm_summary_frame", "holdout_frequency", "purchase_snapshots", "stacked_snapshots",
           "purchase_gaps", "last_product_purchases", "LAST_PURCHASE_COLUMNS", "purchase_days", "fetch_frame", "duckdb_tables", "DataQualityWarning", "DAYS_PER_UNIT",
           "RFM_COLUMNS", "HOLDOUT_COLUMNS", "SNAPSHOT_COLUMNS", "GAP_COLUMNS", "TimeUnit"]
