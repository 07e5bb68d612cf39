"""The decision context of a trigger: what a policy knows about the customer at the trigger's own time.

One definition, as Ibis expressions that run on DuckDB or Spark
(:mod:`cadence.features.engine`), for every kind of trigger: the candidates
``cadence features`` writes (:func:`cadence.features.triggers.trigger_candidates`,
timed by ``eligible_at``) and the logged messages
(:func:`cadence.features.logged.logged_candidates`, timed by ``triggered_at``).

Columns (:data:`CONTEXT_COLUMNS`)
---------------------------------
* ``timezone``: the customer's time zone (null when unknown; the local hour
  and weekday follow from it by :func:`cadence.contract.clock.local_time`);
* ``opt_in_<channel>``: opted in at signup and not unsubscribed from that
  channel at or before the trigger (bool);
* ``sends_7d``: messages sent to the customer in ``[t - 7 days, t)`` (int64);
* ``orders_90d``: orders in ``[t - 90 days, t)`` (int64);
* ``days_since_order``: days from the last order before ``t`` to ``t``
  (float64, null when there is none).

A point-in-time join
--------------------
Each trigger gets the customer's history as of its own time ``t``, never
later: the triggers' times and the customer's sends and orders are put in
one stream per customer, ordered by epoch second, and a running count at
each trigger sees exactly what came before it (a send enters the 7-day
count at its time and leaves it 7 days later). No trigger is
joined to rows of other triggers' times, so the cost grows with the rows, not
with triggers times sends per customer. Times are whole epoch seconds
(:func:`cadence.features.customer.secs`), as everywhere in the feature layer.

Examples
--------
>>> import pandas as pd
>>> from cadence.features.engine import connect, register
>>> con = connect()
>>> ts = lambda *s: pd.to_datetime(list(s), utc=True)
>>> t = register(con, {
...     "customers": pd.DataFrame({"customer_id": ["a"], "opt_in_email": [True], "timezone": ["Europe/Berlin"]}),
...     "messages": pd.DataFrame({"customer_id": ["a"], "channel": ["email"], "sent_at": ts("2025-01-05"),
...                               "unsubscribed_at": ts("2025-01-06")}),
...     "orders": pd.DataFrame({"customer_id": ["a"], "ts": ts("2025-01-01")}),
...     "triggers": pd.DataFrame({"customer_id": ["a", "a"], "at": ts("2025-01-06", "2025-01-11")})})
>>> got = fetch_context(con, with_decision_context(t["triggers"], t, at="at").order_by("at"))
>>> got[["opt_in_email", "sends_7d", "orders_90d", "days_since_order"]].values.tolist()
[[False, 1, 1, 5.0], [False, 1, 1, 10.0]]
"""

from __future__ import annotations

from collections.abc import Mapping

import ibis
import pandas as pd
import pyarrow as pa

from cadence.contract.tables import CHANNELS
from cadence.features.customer import secs
from cadence.features.engine import fetch_arrow

#: Look-back of ``sends_7d`` and ``orders_90d``, in days.
SENDS_WINDOW_DAYS = 7
ORDERS_WINDOW_DAYS = 90
_DAY = 86_400
OPT_IN_COLUMNS: tuple[str, ...] = tuple(f"opt_in_{ch}" for ch in CHANNELS)
#: Context columns from customers and messages (every trigger has them).
MESSAGE_CONTEXT: tuple[str, ...] = ("timezone", *OPT_IN_COLUMNS, "sends_7d")
#: Context columns from orders.
ORDER_CONTEXT: tuple[str, ...] = ("orders_90d", "days_since_order")
#: Every context column, in order, with its Ibis type.
CONTEXT_COLUMNS: dict[str, str] = {"timezone": "string", **dict.fromkeys(OPT_IN_COLUMNS, "boolean"),
                                   "sends_7d": "int64", "orders_90d": "int64", "days_since_order": "float64"}


def _stream(points: ibis.Table, messages: ibis.Table | None, orders: ibis.Table | None) -> ibis.Table:
    """Trigger points, sends and orders of every customer as one stream: ``customer_id, s, k, sends, orders, order_s``.

    ``k`` is 0 for a trigger point and 1 otherwise. A send adds 1 to
    ``sends`` at its second and -1 seven days later, when it leaves the
    window; an order likewise to ``orders`` over 90 days, and its entering
    row carries its second in ``order_s``.
    """
    null = ibis.null("int64")

    def marks(t: ibis.Table, s: ibis.Value, k: int, sends: int = 0, orders: int = 0,
              order_s: ibis.Value = null) -> ibis.Table:
        return t.select("customer_id", s=s, k=ibis.literal(k, "int8"), sends=ibis.literal(sends, "int64"),
                        orders=ibis.literal(orders, "int64"), order_s=order_s)

    parts = [marks(points, points.s, 0)]
    if messages is not None:
        m = messages.filter(messages.sent_at.notnull())
        sent = secs(m.sent_at)
        parts += [marks(m, sent, 1, sends=1), marks(m, sent + SENDS_WINDOW_DAYS * _DAY, 1, sends=-1)]
    if orders is not None:
        o = secs(orders.ts)
        parts += [marks(orders, o, 1, orders=1, order_s=o), marks(orders, o + ORDERS_WINDOW_DAYS * _DAY, 1, orders=-1)]
    return ibis.union(*parts, distinct=False)


def context_at(points: ibis.Table, tables: Mapping[str, ibis.Table], *, orders: bool = True) -> ibis.Table:
    """The decision context of each ``(customer_id, s)`` in ``points`` (``s``: int64 epoch seconds).

    Parameters
    ----------
    points
        Distinct ``customer_id, s`` pairs: a customer at a trigger's second.
    tables
        Contract tables on the same backend: ``customers`` (required;
        ``timezone`` and ``opt_in_<channel>`` optional: null and False when
        absent), ``messages`` (optional: ``sent_at``, ``channel``,
        ``unsubscribed_at``) and ``orders`` (optional: ``ts``).
    orders
        Include :data:`ORDER_CONTEXT` (``orders_90d`` 0 and
        ``days_since_order`` null without an ``orders`` table).

    Returns
    -------
    ibis.Table
        ``customer_id, s`` and the context columns (:data:`CONTEXT_COLUMNS`),
        one row per point.
    """
    messages, order_t = tables.get("messages"), tables.get("orders") if orders else None
    if messages is not None:
        # Only the columns the context reads (a table may carry many more).
        unsub = messages.unsubscribed_at if "unsubscribed_at" in messages.columns else ibis.null("timestamp('UTC')")
        messages = messages.select("customer_id", "sent_at", "channel", unsubscribed_at=unsub)
    st = _stream(points, messages, order_t)
    # One running sum per customer in time order, trigger points before anything at the same second:
    # at a point t it has added every mark strictly before t. A send is in [t - 7 days, t) when it
    # entered before t and has not left yet (it leaves at send + 7 days), so the running sum of +1/-1
    # marks is the count; likewise orders over 90 days. (Range frames give the same numbers at about
    # twice the cost on DuckDB; two counts instead of one sum cost a third more.)
    w = ibis.cumulative_window(group_by=st.customer_id, order_by=[st.s, st.k])
    # Summed as floats (exact below 2**53) and cast back: DuckDB sums BIGINTs to a 128-bit HUGEINT, which
    # Ibis still calls int64 (so would not cast) and Parquet stores as a double.
    ctx = st.mutate(sends_7d=st.sends.cast("float64").sum().over(w).cast("int64"),
                    orders_90d=st.orders.cast("float64").sum().over(w).cast("int64"),
                    last_order_s=st.order_s.max().over(w))
    ctx = ctx.filter(ctx.k == 0)
    # Exact: both operands are whole seconds, divided once, as a float (the same IEEE result on every engine).
    ctx = ctx.select("customer_id", "s", "sends_7d", "orders_90d",
                     days_since_order=(ctx.s - ctx.last_order_s).cast("float64") / float(_DAY))
    opt = _opt_ins(tables, messages)
    ctx = ctx.left_join(opt, ctx.customer_id == opt.c_id)
    out: dict[str, ibis.Value] = {"customer_id": ctx.customer_id, "s": ctx.s, "timezone": ctx.timezone}
    for ch, col in zip(CHANNELS, OPT_IN_COLUMNS, strict=True):
        gone = ctx[f"gone_{ch}"]
        # Unsubscribed at or before the trigger: the trigger already sees it.
        out[col] = ibis.coalesce(ctx[col], False) & (gone.isnull() | (gone > ctx.s))
    out["sends_7d"] = ctx.sends_7d
    if orders:
        out["orders_90d"] = ctx.orders_90d
        out["days_since_order"] = ctx.days_since_order
    return ctx.select(**out)


def _opt_ins(tables: Mapping[str, ibis.Table], messages: ibis.Table | None) -> ibis.Table:
    """Per customer: time zone, signup opt-ins and the first unsubscription second per channel (``gone_<ch>``)."""
    cust = tables["customers"]
    cols: dict[str, ibis.Value] = {
        "c_id": cust.customer_id,
        "timezone": cust.timezone.cast("string") if "timezone" in cust.columns else ibis.null("string"),
    }
    for col in OPT_IN_COLUMNS:
        cols[col] = cust[col].cast("boolean") if col in cust.columns else ibis.literal(False)
    base = cust.select(**cols)
    if messages is None:
        return base.mutate(**{f"gone_{ch}": ibis.null("int64") for ch in CHANNELS})
    u = messages.filter(messages.unsubscribed_at.notnull())
    u = u.mutate(u_s=secs(u.unsubscribed_at))
    gone = u.group_by(u_id=u.customer_id).aggregate(
        **{f"gone_{ch}": u.u_s.min(where=u.channel == ch) for ch in CHANNELS})
    return base.left_join(gone, base.c_id == gone.u_id).drop("u_id")


def with_decision_context(triggers: ibis.Table, tables: Mapping[str, ibis.Table], *, at: str,
                          orders: bool = True) -> ibis.Table:
    """``triggers`` with the decision context of each row as of its time ``at`` appended (point in time).

    Parameters
    ----------
    triggers
        One row per trigger with ``customer_id`` and the timestamp column ``at``.
    tables
        As for :func:`context_at`.
    at
        The trigger-time column: ``"eligible_at"`` for trigger candidates,
        ``"triggered_at"`` for logged messages.
    orders
        Include :data:`ORDER_CONTEXT`.

    Returns
    -------
    ibis.Table
        ``triggers``' columns, then the context columns (:data:`CONTEXT_COLUMNS`;
        any of them already in ``triggers`` is replaced). Row order is not kept.
    """
    keep = [c for c in triggers.columns if c not in CONTEXT_COLUMNS]
    t = triggers.select(*keep).mutate(_ctx_s=secs(triggers[at]))
    points = t.select("customer_id", s=t._ctx_s).distinct()
    ctx = context_at(points, tables, orders=orders)
    ctx = ctx.rename(_ctx_c="customer_id", _ctx_p="s")
    j = t.left_join(ctx, (t.customer_id == ctx._ctx_c) & (t._ctx_s == ctx._ctx_p))
    return j.select(*keep, *[c for c in CONTEXT_COLUMNS if c in ctx.columns])


def fetch_context(con: object, expr: ibis.Table) -> pd.DataFrame:
    """Run ``expr`` and return it as pandas with the context's exact values and dtypes (see :func:`context_frame`)."""
    return context_frame(fetch_arrow(con, expr))


def context_frame(table: pa.Table) -> pd.DataFrame:
    """A result with context columns as pandas, exact: counts int64, opt-ins bool, ``days_since_order`` float64
    with NaN, ``timezone`` object with None.

    Unlike :func:`cadence.features.engine.execute`, floats are not rounded
    (``days_since_order`` is exact), so the logged path keeps its numbers.
    """
    df = table.to_pandas(date_as_object=False)
    for col in OPT_IN_COLUMNS:
        if col in df:
            df[col] = df[col].astype(bool)
    if "timezone" in df:
        df["timezone"] = df["timezone"].astype(object).where(df["timezone"].notna(), None)
    for col in ("sends_7d", "orders_90d"):
        if col in df:
            df[col] = df[col].astype("int64")
    if "days_since_order" in df:
        df["days_since_order"] = df["days_since_order"].astype("float64")
    return df


__all__ = ["context_at", "with_decision_context", "fetch_context", "context_frame", "CONTEXT_COLUMNS", "MESSAGE_CONTEXT",
           "ORDER_CONTEXT", "OPT_IN_COLUMNS", "SENDS_WINDOW_DAYS", "ORDERS_WINDOW_DAYS"]
