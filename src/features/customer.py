"""Point-in-time customer features: RFM, sessions, search, messages, category affinity.

One Ibis expression, one row per customer who signed up before ``as_of``,
that runs unchanged on DuckDB and Spark (:mod:`cadence.features.engine`).

The cutoff is strict
--------------------
Only rows whose time is **strictly before** ``as_of`` are read: an order,
event or send at exactly ``as_of`` is excluded, and so is a customer who
signed up at exactly ``as_of``. Each message time is cut separately: a
message sent before ``as_of`` but opened at or after it counts as a send
without an open. Appending rows at or after ``as_of`` therefore changes no
feature, which the tests check property-based.

Time and units
--------------
Cutoffs, windows and "followed by" compare timestamps at full precision.
"Days" are floats, ``(as_of - t) / 86400 s``, from whole epoch seconds (so
both engines see the same integers), and sessionisation gaps are measured in
whole seconds too. A window of ``w`` days covers ``[as_of - w days, as_of)``.

Missing tables
--------------
``customers`` is required; ``orders``, ``events``, ``messages``,
``products`` and ``order_items`` are optional. The schema never depends on
which tables are present (:func:`feature_columns`): counts and revenue of an
absent family, or of a customer without history, are 0; rates, averages,
"days ago" values and strings are null.

Examples
--------
>>> import pandas as pd
>>> from cadence.features.engine import connect, execute, register
>>> con = connect("duckdb")
>>> t = register(con, {
...     "customers": pd.DataFrame({"customer_id": ["a"],
...                                "signup_at": pd.to_datetime(["2025-01-01"], utc=True)}),
...     "orders": pd.DataFrame({"order_id": ["o1", "o2"], "customer_id": ["a", "a"],
...                             "ts": pd.to_datetime(["2025-01-10", "2025-01-20"], utc=True),
...                             "revenue": [10.0, 30.0]})})
>>> row = execute(con, customer_features(t, "2025-01-31")).iloc[0]
>>> [float(row[c]) for c in ("orders_30d", "aov_all", "recency_days", "gap_mean_days")]
[2.0, 20.0, 11.0, 10.0]
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence

import ibis
import pandas as pd
from ibis import _

from cadence.contract.tables import CHANNELS
from cadence.contract.triggers import TriggerRules
from cadence.features.engine import as_of_literal

AsOf = pd.Timestamp | dt.datetime | str
_DAY = 86_400.0
#: Columns each input table must have for the features that read it.
REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "customers": ("customer_id", "signup_at"),
    "orders": ("customer_id", "ts", "revenue"),
    "events": ("event_id", "customer_id", "ts", "event_type"),
    "messages": ("customer_id", "triggered_at", "action", "sent_at", "channel"),
    "products": ("product_id", "category"),
    "order_items": ("order_id", "product_id"),
}
#: Optional columns, read as typed nulls when a table lacks them.
OPTIONAL_COLUMNS: dict[str, dict[str, str]] = {
    "events": {"product_id": "string", "query": "string", "results_count": "int64", "session_id": "string"},
    "messages": {"opened_at": "timestamp('UTC')", "clicked_at": "timestamp('UTC')",
                 "unsubscribed_at": "timestamp('UTC')"},
    "orders": {"order_id": "string"},
}
#: The seed-default rules (frozen, so one shared instance is a safe default argument).
DEFAULT_RULES = TriggerRules()
#: Feature families, in column order; :func:`customer_features` computes the ones it is given.
FAMILIES: tuple[str, ...] = ("rfm", "sessions", "search", "messages", "category")
#: Prefix of generated session keys (events without ``session_id``).
AUTO_SESSION_PREFIX = "~auto:"


# ---------------------------------------------------------------- helpers
def require_columns(tables: Mapping[str, ibis.Table], name: str) -> ibis.Table | None:
    """``tables[name]`` with its optional columns filled in, or None when absent.

    Raises ``ValueError`` naming the table and column when a column the
    features need is missing.
    """
    t = tables.get(name)
    if t is None:
        return None
    missing = [c for c in REQUIRED_COLUMNS.get(name, ()) if c not in t.columns]
    if missing:
        raise ValueError(f"{name}: missing column {', '.join(repr(c) for c in missing)}"
                         f" (needed for customer features; columns: {', '.join(t.columns)})")
    optional = OPTIONAL_COLUMNS.get(name, {})
    fill = {c: ibis.null(dtype) for c, dtype in optional.items() if c not in t.columns}
    # An all-null column uploaded from pandas has Ibis type null; give it its contract type.
    fill |= {c: t[c].cast(dtype) for c, dtype in optional.items() if c in t.columns and t[c].type().is_null()}
    return t.mutate(**fill) if fill else t


def secs(x: ibis.Value) -> ibis.Value:
    """Whole epoch seconds; flooring first makes DuckDB agree with Spark's truncation."""
    return x.epoch_seconds().floor().cast("int64")


def _days_before(as_of_s: ibis.Value, s: ibis.Value) -> ibis.Value:
    return (as_of_s - s).cast("float64") / _DAY


def _check_windows(windows: Sequence[int]) -> tuple[int, ...]:
    ws = tuple(windows)
    if not ws or any(not isinstance(w, int) or isinstance(w, bool) or w <= 0 for w in ws) or len(set(ws)) != len(ws):
        raise ValueError(f"windows must be distinct positive integers (days), got {windows!r}")
    return ws


def _check_families(families: Sequence[str] | None) -> tuple[str, ...]:
    if families is None:
        return FAMILIES
    unknown = [f for f in families if f not in FAMILIES]
    if unknown or not families:
        raise ValueError(f"families must be some of {', '.join(FAMILIES)}; got {list(families)!r}")
    return tuple(f for f in FAMILIES if f in families)


def feature_columns(windows: Sequence[int] = (30, 90, 365), families: Sequence[str] | None = None) -> dict[str, str]:
    """The output schema of :func:`customer_features`: column name -> Ibis type.

    >>> list(feature_columns((7,)))[:4]
    ['customer_id', 'orders_7d', 'orders_all', 'revenue_7d']
    >>> list(feature_columns((7,), families=["search"]))
    ['customer_id', 'searches_7d', 'zero_result_rate', 'search_click_rate', 'search_purchase_rate', 'last_unresolved_query']
    """
    cols = _columns(_check_windows(windows), _check_families(families))
    return {name: dtype for name, (dtype, _fill) in cols.items()}


def _columns(ws: tuple[int, ...], families: tuple[str, ...] = FAMILIES) -> dict[str, tuple[str, object]]:
    """name -> (type, value for customers without rows: 0 for counts, None otherwise)."""
    cols: dict[str, tuple[str, object]] = {"customer_id": ("string", None)}
    for family in families:
        cols |= _FAMILY_COLUMNS[family](ws)
    return cols


def _rfm_columns(ws: tuple[int, ...]) -> dict[str, tuple[str, object]]:
    cols: dict[str, tuple[str, object]] = {}
    i, f = "int64", "float64"
    for w in ws:
        cols[f"orders_{w}d"] = (i, 0)
    cols["orders_all"] = (i, 0)
    for w in ws:
        cols[f"revenue_{w}d"] = (f, 0.0)
    cols["revenue_all"] = (f, 0.0)
    for w in ws:
        cols[f"aov_{w}d"] = (f, None)
    cols["aov_all"] = (f, None)
    for name in ("recency_days", "first_order_days_ago", "tenure_days", "gap_mean_days", "gap_std_days",
                 "gap_last_days", "recency_gap_ratio"):
        cols[name] = (f, None)
    return cols


def _session_columns(ws: tuple[int, ...]) -> dict[str, tuple[str, object]]:
    cols: dict[str, tuple[str, object]] = {}
    i, f = "int64", "float64"
    for stem in ("sessions", "product_views", "cart_adds", "checkout_starts", "cart_abandons", "checkout_abandons"):
        for w in ws:
            cols[f"{stem}_{w}d"] = (i, 0)
    cols["avg_session_depth"] = (f, None)
    cols["last_session_days_ago"] = (f, None)
    return cols


def _search_columns(ws: tuple[int, ...]) -> dict[str, tuple[str, object]]:
    cols: dict[str, tuple[str, object]] = {}
    i, f, s = "int64", "float64", "string"
    for w in ws:
        cols[f"searches_{w}d"] = (i, 0)
    for name in ("zero_result_rate", "search_click_rate", "search_purchase_rate"):
        cols[name] = (f, None)
    cols["last_unresolved_query"] = (s, None)
    return cols


def _message_columns(ws: tuple[int, ...]) -> dict[str, tuple[str, object]]:
    cols: dict[str, tuple[str, object]] = {}
    i, f = "int64", "float64"
    for ch in CHANNELS:
        for w in ws:
            cols[f"sends_{ch}_{w}d"] = (i, 0)
    for ch in CHANNELS:
        cols[f"opens_{ch}"] = (i, 0)
    for ch in CHANNELS:
        cols[f"clicks_{ch}"] = (i, 0)
    cols["last_open_days_ago"] = (f, None)
    cols["unsubscribed_channels"] = (i, 0)
    return cols


def _category_columns(ws: tuple[int, ...]) -> dict[str, tuple[str, object]]:
    return {"top_category": ("string", None), "top_category_share": ("float64", None)}


_FAMILY_COLUMNS = {"rfm": _rfm_columns, "sessions": _session_columns, "search": _search_columns,
                   "messages": _message_columns, "category": _category_columns}


# ---------------------------------------------------------------- sessions
def sessionised_events(events: ibis.Table, cutoff: ibis.Scalar, rules: TriggerRules = DEFAULT_RULES) -> ibis.Table:
    """Events before ``cutoff`` with a session key ``sess``.

    ``sess`` is the event's ``session_id``; events without one are grouped,
    per customer, into sessions that end after more than
    ``rules.session_timeout_minutes`` of inactivity (a gap of exactly the
    timeout stays in the session), keyed ``~auto:<n>``. Session keys are
    unique per customer, so group by ``(customer_id, sess)``.
    """
    ev = events.filter(events.ts < cutoff)
    cols = [c for c in ev.columns if c != "sess"]
    keyed = ev.filter(ev.session_id.notnull()).mutate(sess=ev.session_id)
    # Epoch seconds only for the rows being sessionised: the conversion is the costliest per-row step.
    loose = ev.filter(ev.session_id.isnull())
    loose = loose.mutate(_s=secs(loose.ts))
    order = [loose._s, loose.event_id]
    gap = loose._s - loose._s.lag().over(group_by=loose.customer_id, order_by=order)
    loose = loose.mutate(_new=ibis.coalesce(gap > rules.session_timeout_minutes * 60, True).cast("int64"))
    n = loose._new.cumsum(group_by=loose.customer_id, order_by=[loose._s, loose.event_id])
    loose = loose.mutate(sess=ibis.literal(AUTO_SESSION_PREFIX).concat(n.cast("string")))
    return ibis.union(keyed.select(*cols, "sess"), loose.select(*cols, "sess"), distinct=False)


def _session_table(ev: ibis.Table, lows: dict[int, ibis.Value]) -> ibis.Table:
    """One row per session; per-window event counts are summed here so events are scanned once."""
    et = ev.event_type
    aggs: dict[str, ibis.Value] = {
        "start_ts": ev.ts.min(),
        "end_ts": ev.ts.max(),
        "n_events": ev.count(),
        "adds": ev.count(where=et == "add_to_cart"),
        "checkouts": ev.count(where=et == "checkout_start"),
        "purchases": ev.count(where=et == "purchase"),
        "last_view_ts": ev.ts.max(where=et == "product_view"),
        "last_purchase_ts": ev.ts.max(where=et == "purchase"),
    }
    for w, lo in lows.items():
        aggs[f"product_views_{w}d"] = ev.count(where=(et == "product_view") & (ev.ts >= lo))
        aggs[f"cart_adds_{w}d"] = ev.count(where=(et == "add_to_cart") & (ev.ts >= lo))
        aggs[f"checkout_starts_{w}d"] = ev.count(where=(et == "checkout_start") & (ev.ts >= lo))
    return ev.group_by(["customer_id", "sess"]).aggregate(**aggs)


def _session_features(sess: ibis.Table, lows: dict[int, ibis.Value], as_of_s: ibis.Value) -> ibis.Table:
    no_purchase = sess.purchases == 0
    aggs: dict[str, ibis.Value] = {}
    for w, lo in lows.items():
        recent = sess.start_ts >= lo
        aggs[f"sessions_{w}d"] = sess.count(where=recent)
        for stem in ("product_views", "cart_adds", "checkout_starts"):
            # Summed as floats (exact below 2**53) and cast back: DuckDB sums BIGINTs to a
            # 128-bit HUGEINT, which Ibis still calls int64 (so would not cast) and Parquet stores as a double.
            aggs[f"{stem}_{w}d"] = sess[f"{stem}_{w}d"].cast("float64").sum().cast("int64")
        aggs[f"cart_abandons_{w}d"] = sess.count(where=recent & (sess.adds > 0) & no_purchase)
        aggs[f"checkout_abandons_{w}d"] = sess.count(where=recent & (sess.checkouts > 0) & no_purchase)
    aggs["avg_session_depth"] = sess.n_events.cast("float64").mean()
    aggs["last_session_days_ago"] = _days_before(as_of_s, secs(sess.end_ts.max()))
    return sess.group_by("customer_id").aggregate(**aggs)


# ---------------------------------------------------------------- search
def _search_features(ev: ibis.Table, sess: ibis.Table, lows: dict[int, ibis.Value]) -> ibis.Table:
    sr = ev.filter(ev.event_type == "search")
    sx = sess.select(x_cust=sess.customer_id, x_sess=sess.sess, last_view_ts=sess.last_view_ts,
                     last_purchase_ts=sess.last_purchase_ts)
    sr = sr.left_join(sx, (sr.customer_id == sx.x_cust) & (sr.sess == sx.x_sess))
    sr = sr.select("customer_id", "ts", "event_id", "query", "results_count", "last_view_ts", "last_purchase_ts")
    # "Followed by" includes the same instant: exports often stamp a search and its click alike.
    sr = sr.mutate(
        zero=ibis.coalesce(sr.results_count == 0, False),
        clicked=ibis.coalesce(sr.last_view_ts >= sr.ts, False),
        bought=ibis.coalesce(sr.last_purchase_ts >= sr.ts, False),
    )
    sr = sr.mutate(unresolved=sr.zero | ~sr.clicked)
    rank = ibis.row_number().over(group_by=[sr.customer_id, sr.unresolved],
                                  order_by=[ibis.desc(sr.ts), ibis.desc(sr.event_id)])
    sr = sr.mutate(rk=rank)
    aggs: dict[str, ibis.Value] = {f"searches_{w}d": sr.count(where=sr.ts >= lo) for w, lo in lows.items()}
    aggs["zero_result_rate"] = sr.zero.cast("float64").mean()
    aggs["search_click_rate"] = sr.clicked.cast("float64").mean()
    aggs["search_purchase_rate"] = sr.bought.cast("float64").mean()
    aggs["last_unresolved_query"] = sr.query.max(where=sr.unresolved & (sr.rk == 0))
    return sr.group_by("customer_id").aggregate(**aggs)


# ---------------------------------------------------------------- orders
def _order_features(orders: ibis.Table, cutoff: ibis.Scalar, as_of_s: ibis.Value,
                    lows: dict[int, ibis.Value]) -> ibis.Table:
    o = orders.filter(orders.ts < cutoff).mutate(s=secs(orders.ts))
    # One window spec for lag and lead, so each engine sorts once.
    w = ibis.window(group_by=o.customer_id, order_by=[o.s, o.order_id])
    o = o.mutate(gap_d=(o.s - o.s.lag().over(w)).cast("float64") / _DAY, is_last=o.s.lead().over(w).isnull())
    aggs: dict[str, ibis.Value] = {}
    for wd, lo in lows.items():
        aggs[f"orders_{wd}d"] = o.count(where=o.ts >= lo)
        aggs[f"revenue_{wd}d"] = o.revenue.sum(where=o.ts >= lo)
    aggs |= {"orders_all": o.count(), "revenue_all": o.revenue.sum(), "first_s": o.s.min(), "last_s": o.s.max(),
             "gap_mean_days": o.gap_d.mean(), "gap_std_days": o.gap_d.std(how="pop"),
             "gap_last_days": o.gap_d.max(where=o.is_last)}
    agg = o.group_by("customer_id").aggregate(**aggs)
    recency = _days_before(as_of_s, agg.last_s)
    derived: dict[str, ibis.Value] = {
        f"aov_{wd}d": agg[f"revenue_{wd}d"] / agg[f"orders_{wd}d"].cast("float64").nullif(0.0) for wd in lows
    }
    derived["aov_all"] = agg.revenue_all / agg.orders_all.cast("float64").nullif(0.0)
    derived["recency_days"] = recency
    derived["first_order_days_ago"] = _days_before(as_of_s, agg.first_s)
    derived["recency_gap_ratio"] = recency / agg.gap_mean_days.nullif(0.0)
    return agg.mutate(**derived).drop("first_s", "last_s")


# ---------------------------------------------------------------- messages
def _message_features(messages: ibis.Table, cutoff: ibis.Scalar, as_of_s: ibis.Value,
                      lows: dict[int, ibis.Value]) -> ibis.Table:
    m = messages.filter((messages.action == "send") & (messages.triggered_at < cutoff) & (messages.sent_at < cutoff))
    opened = m.opened_at < cutoff
    aggs: dict[str, ibis.Value] = {}
    for ch in CHANNELS:
        on = m.channel == ch
        for w, lo in lows.items():
            aggs[f"sends_{ch}_{w}d"] = m.count(where=on & (m.sent_at >= lo))
        aggs[f"opens_{ch}"] = m.count(where=on & opened)
        aggs[f"clicks_{ch}"] = m.count(where=on & (m.clicked_at < cutoff))
    aggs["last_open_days_ago"] = _days_before(as_of_s, secs(m.opened_at.max(where=opened)))
    aggs["unsubscribed_channels"] = m.channel.nunique(where=m.unsubscribed_at < cutoff)
    return m.group_by("customer_id").aggregate(**aggs)


# ---------------------------------------------------------------- affinity
def _category_features(ev: ibis.Table | None, orders: ibis.Table | None, items: ibis.Table | None,
                       products: ibis.Table, cutoff: ibis.Scalar) -> ibis.Table | None:
    parts = []
    if ev is not None:
        views = ev.filter((ev.event_type == "product_view") & ev.product_id.notnull())
        parts.append(views.select("customer_id", "product_id"))
    if orders is not None and items is not None:
        o = orders.filter(orders.ts < cutoff).select(o_id=_.order_id, customer_id=_.customer_id)
        bought = items.join(o, items.order_id == o.o_id)
        parts.append(bought.select(bought.customer_id, bought.product_id))
    if not parts:
        return None
    touched = ibis.union(*parts, distinct=False)
    cat = products.select(c_pid=products.product_id, category=products.category)
    touched = touched.join(cat, touched.product_id == cat.c_pid)
    per_cat = touched.group_by(["customer_id", "category"]).aggregate(n=touched.count())
    total = per_cat.n.sum().over(group_by=per_cat.customer_id)
    # Ties go to the alphabetically first category, the same on every engine.
    rank = ibis.row_number().over(group_by=per_cat.customer_id, order_by=[ibis.desc(per_cat.n), per_cat.category])
    per_cat = per_cat.mutate(total=total, rk=rank)
    top = per_cat.filter(per_cat.rk == 0)
    return top.select("customer_id", top_category=top.category,
                      top_category_share=top.n.cast("float64") / top.total.cast("float64"))


# ---------------------------------------------------------------- public
def customer_features(
    tables: Mapping[str, ibis.Table],
    as_of: AsOf,
    *,
    windows: Sequence[int] = (30, 90, 365),
    rules: TriggerRules = DEFAULT_RULES,
    families: Sequence[str] | None = None,
) -> ibis.Table:
    """Point-in-time features, one row per customer with ``signup_at < as_of``.

    Parameters
    ----------
    tables
        Contract tables as Ibis tables on one backend. ``customers`` is
        required; ``orders``, ``events``, ``messages``, ``products`` and
        ``order_items`` are optional (see the module notes for what missing
        tables give).
    as_of
        The cutoff, required: only rows strictly before it are read. Naive
        values are read as UTC.
    windows
        Look-back windows in days; window ``w`` is ``[as_of - w days, as_of)``.
    rules
        ``session_timeout_minutes`` sessionises events without ``session_id``.
    families
        The feature families to compute, some of :data:`FAMILIES` (all by
        default): ``"rfm"``, ``"sessions"``, ``"search"``, ``"messages"``,
        ``"category"``. The others' columns are left out and not computed
        (tables that are given are still checked against the contract).

    Returns
    -------
    ibis.Table
        Columns in the order of :func:`feature_columns` (``{w}`` is each
        window; days are floats; a count is 0 and anything else null for a
        customer without the history it needs):

        * RFM (``"rfm"``), over ``orders``: ``orders_{w}d``, ``orders_all``;
          ``revenue_{w}d``, ``revenue_all`` (currency); ``aov_{w}d``,
          ``aov_all`` = revenue / orders (null without orders);
          ``recency_days`` since the last order; ``first_order_days_ago``;
          ``tenure_days`` since signup; ``gap_mean_days``, ``gap_std_days``
          (population std) and ``gap_last_days`` of the gaps between
          consecutive orders over all history (null with < 2 orders);
          ``recency_gap_ratio`` = recency_days / gap_mean_days (null when
          the mean gap is null or 0).
        * Sessions (``"sessions"``), over ``events`` (``session_id``, or inactivity
          sessionisation, see :func:`sessionised_events`): ``sessions_{w}d``
          (sessions that started in the window); ``product_views_{w}d``,
          ``cart_adds_{w}d``, ``checkout_starts_{w}d`` (events in the
          window); ``cart_abandons_{w}d`` / ``checkout_abandons_{w}d``
          (sessions started in the window with an add_to_cart /
          checkout_start and no purchase event); ``avg_session_depth``
          (events per session, all history); ``last_session_days_ago``
          (since the last event of the latest session).
        * Search (``"search"``), over search events: ``searches_{w}d``; over all history
          ``zero_result_rate`` (share with ``results_count == 0``; unknown
          counts are not zero), ``search_click_rate`` (share followed, at or
          after the search's timestamp, by a product_view in the same session),
          ``search_purchase_rate`` (likewise by a purchase event);
          ``last_unresolved_query``, the query of the latest search with
          zero results or no click.
        * Messages (``"messages"``), over ``action == 'send'`` rows with ``triggered_at`` and
          ``sent_at`` before the cutoff: ``sends_{channel}_{w}d`` by sent_at;
          ``opens_{channel}`` / ``clicks_{channel}`` over all history with
          ``opened_at`` / ``clicked_at`` before the cutoff;
          ``last_open_days_ago``; ``unsubscribed_channels``, the number of
          channels with an ``unsubscribed_at`` before the cutoff. Channels
          are email, push, sms, whatsapp.
        * Category affinity (``"category"``), needs ``products``: ``top_category``, the
          category with most product views + purchased order lines (each
          counts 1; ties to the alphabetically first) and
          ``top_category_share``, its share of those touches.

    Raises
    ------
    ValueError
        A table lacks a column the features need (the message names both),
        ``customers`` is missing, ``windows`` is not distinct positive
        integers, or ``families`` names an unknown family.

    Examples
    --------
    >>> import pandas as pd
    >>> from cadence.features.engine import connect, execute, register
    >>> con = connect("duckdb")
    >>> t = register(con, {"customers": pd.DataFrame(
    ...     {"customer_id": ["a", "b"], "signup_at": pd.to_datetime(["2025-01-01", "2025-03-01"], utc=True)})})
    >>> df = execute(con, customer_features(t, "2025-02-01", windows=(7,)))
    >>> df[["customer_id", "tenure_days", "orders_7d", "recency_days"]].values.tolist()
    [['a', 31.0, 0, nan]]
    """
    ws = _check_windows(windows)
    fams = _check_families(families)
    if "customers" not in tables:
        raise ValueError("customers: missing table (customer features need it)")
    customers = require_columns(tables, "customers")
    orders = require_columns(tables, "orders")
    events = require_columns(tables, "events")
    messages = require_columns(tables, "messages")
    products = require_columns(tables, "products")
    items = require_columns(tables, "order_items")
    assert customers is not None
    cutoff = as_of_literal(as_of)
    as_of_s = secs(cutoff)
    # Window starts are literals, so per-row filters compare timestamps, not converted seconds.
    start = pd.Timestamp(as_of)
    lows = {w: as_of_literal(start - pd.Timedelta(days=w)) for w in ws}

    base = customers.filter(customers.signup_at < cutoff)
    base = base.select("customer_id", tenure_days=_days_before(as_of_s, secs(base.signup_at)))
    parts: list[ibis.Table] = []
    ev = sessionised_events(events, cutoff, rules) if events is not None else None
    if orders is not None and "rfm" in fams:
        parts.append(_order_features(orders, cutoff, as_of_s, lows))
    if ev is not None and ("sessions" in fams or "search" in fams):
        sess = _session_table(ev, lows)
        if "sessions" in fams:
            parts.append(_session_features(sess, lows, as_of_s))
        if "search" in fams:
            parts.append(_search_features(ev, sess, lows))
    if messages is not None and "messages" in fams:
        parts.append(_message_features(messages, cutoff, as_of_s, lows))
    if products is not None and "category" in fams:
        cat = _category_features(ev, orders, items, products, cutoff)
        if cat is not None:
            parts.append(cat)
    return _assemble(base, parts, _columns(ws, fams))


def _assemble(base: ibis.Table, families: list[ibis.Table], columns: dict[str, tuple[str, object]]) -> ibis.Table:
    """Left-join every family onto the customers and fix the schema and fill values."""
    wide = base
    for i, fam in enumerate(families):
        fam = fam.rename({f"_k{i}": "customer_id"})
        wide = wide.left_join(fam, wide.customer_id == fam[f"_k{i}"])
    have = set(wide.columns)
    out: dict[str, ibis.Value] = {}
    for name, (dtype, fill) in columns.items():
        if name not in have:
            out[name] = ibis.literal(fill, type=dtype) if fill is not None else ibis.null(dtype)
        elif fill is not None:
            out[name] = ibis.coalesce(wide[name], ibis.literal(fill, type=dtype)).cast(dtype)
        else:
            out[name] = wide[name].cast(dtype)
    return wide.select(**out)


__all__ = ["customer_features", "feature_columns", "FAMILIES", "DEFAULT_RULES", "sessionised_events", "require_columns", "secs",
           "REQUIRED_COLUMNS", "OPTIONAL_COLUMNS", "AUTO_SESSION_PREFIX"]
