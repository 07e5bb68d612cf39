"""Point-in-time (customer, product) interactions: what the recommenders are fitted on.

:func:`interactions` is an Ibis expression (DuckDB or Spark) over the shop's
``events``, ``orders`` and ``order_items`` strictly before ``as_of``: one row
per customer and product with the count of each kind of interaction and a
weighted total. :func:`load_interactions` fetches it, together with the item
co-occurrence of :mod:`cadence.features.affinity` (sessions and orders) and
the "bought together" co-occurrence (orders only), into one frozen
:class:`InteractionData` that every recommender's ``fit`` reads.
:func:`purchases_between` is the judging side: the order lines of a window
``[start, end)``, for offline evaluation.

Kinds of interaction
--------------------
* ``views``: ``product_view`` events;
* ``carts``: ``add_to_cart`` events;
* ``purchases``: orders holding the product (``orders`` + ``order_items``);
  ``purchase`` events count only when the order tables are absent, so an
  order is never counted twice;
* ``searches``: product views in a session at or after a ``search`` event of
  that session (search events carry a query, not a product; the product the
  customer went to from a search is the signal).

``weight = sum(kind count x weights[kind])`` with :data:`DEFAULT_WEIGHTS`
(a purchase says more than a cart, a cart more than a view; a search-led view
adds to the view's own weight).

Examples
--------
>>> import pandas as pd
>>> from cadence.features.purchases import duckdb_tables
>>> con, t = duckdb_tables({"events": pd.DataFrame({
...     "event_id": ["e1", "e2", "e3"], "customer_id": ["a", "a", "a"], "product_id": ["x", "x", "y"],
...     "event_type": ["product_view", "add_to_cart", "product_view"], "session_id": ["s", "s", "s"],
...     "ts": pd.to_datetime(["2025-01-01 00:00", "2025-01-01 00:05", "2025-02-01 00:00"], utc=True)})})
>>> d = load_interactions(con, t, "2025-01-15")
>>> d.interactions[["customer_id", "product_id", "views", "carts", "weight"]].to_dict("records")
[{'customer_id': 'a', 'product_id': 'x', 'views': 1, 'carts': 1, 'weight': 4.0}]
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import ibis
import pandas as pd

from cadence.contract.clock import utc
from cadence.contract.triggers import TriggerRules
from cadence.features.affinity import cooccurrence
from cadence.features.customer import DEFAULT_RULES, AsOf, require_columns, sessionised_events
from cadence.features.engine import as_of_literal
from cadence.features.purchases import fetch_frame

Tables = Mapping[str, ibis.Table]
#: Kinds of interaction, in column order.
KINDS: tuple[str, ...] = ("views", "carts", "purchases", "searches")
#: Default weight of one interaction of each kind.
DEFAULT_WEIGHTS: Mapping[str, float] = {"views": 1.0, "carts": 3.0, "purchases": 5.0, "searches": 2.0}
#: Columns of :func:`interactions`, in order.
INTERACTION_COLUMNS: tuple[str, ...] = ("customer_id", "product_id", *KINDS, "weight", "last_at", "last_viewed_at")
#: Columns of :func:`interaction_events`, in order.
EVENT_COLUMNS: tuple[str, ...] = ("customer_id", "product_id", "kind", "ts")
#: Columns of :func:`purchases_between`, in order.
PURCHASE_COLUMNS: tuple[str, ...] = ("customer_id", "order_id", "product_id", "ts")
_EVENT_KIND = {"product_view": "views", "add_to_cart": "carts"}


def _check_weights(weights: Mapping[str, float]) -> dict[str, float]:
    unknown = sorted(set(weights) - set(KINDS))
    if unknown:
        raise ValueError(f"weights: unknown kind {', '.join(map(repr, unknown))}; kinds are {', '.join(KINDS)}")
    out = {**DEFAULT_WEIGHTS, **weights}
    bad = {k: v for k, v in out.items() if not isinstance(v, int | float) or v < 0}
    if bad:
        raise ValueError(f"weights: must be numbers >= 0, got {bad}")
    return {k: float(v) for k, v in out.items()}


def _order_lines(tables: Tables) -> tuple[ibis.Table, ibis.Table] | None:
    orders = require_columns(tables, "orders")
    items = require_columns(tables, "order_items")
    if orders is None or items is None:
        return None
    if "order_id" not in orders.columns:
        raise ValueError("orders: missing column 'order_id' (needed to join order_items)")
    return orders, items


def _interaction_rows(tables: Tables, cutoff: Any, rules: TriggerRules) -> ibis.Table:
    """Every interaction strictly before ``cutoff``: ``customer_id``, ``product_id``, ``ts``, ``kind`` (of :data:`KINDS`)."""
    events = require_columns(tables, "events")
    lines = _order_lines(tables)
    parts: list[ibis.Table] = []
    if events is not None:
        ev = events.filter((events.ts < cutoff) & events.product_id.notnull())
        kinds = dict(_EVENT_KIND)
        if lines is None:
            kinds["purchase"] = "purchases"
        ev = ev.filter(ev.event_type.isin(list(kinds)))
        kind = ev.event_type.cases(*kinds.items())
        parts.append(ev.select("customer_id", "product_id", "ts", kind=kind))
        # Search-led views: views of a session at or after its first search.
        se = sessionised_events(events, cutoff, rules)
        first = (se.filter(se.event_type == "search").group_by(["customer_id", "sess"])
                 .aggregate(first_search=se.ts.min()))
        first = first.select(f_cust=first.customer_id, f_sess=first.sess, first_search=first.first_search)
        views = se.filter((se.event_type == "product_view") & se.product_id.notnull())
        led = views.join(first, (views.customer_id == first.f_cust) & (views.sess == first.f_sess)
                         & (views.ts >= first.first_search))
        parts.append(led.select("customer_id", "product_id", "ts", kind=ibis.literal("searches")))
    if lines is not None:
        orders, items = lines
        o = orders.filter(orders.ts < cutoff).select(o_id=orders.order_id, customer_id=orders.customer_id,
                                                     ts=orders.ts)
        # Distinct lines: an order counts once per product whatever its quantity or repeated lines.
        it = items.select(i_oid=items.order_id, product_id=items.product_id).distinct()
        j = it.join(o, it.i_oid == o.o_id)
        parts.append(j.select("customer_id", "product_id", "ts", kind=ibis.literal("purchases")))
    if not parts:
        raise ValueError("interactions need an events table, or orders and order_items")
    return ibis.union(*parts, distinct=False) if len(parts) > 1 else parts[0]


def interaction_events(tables: Tables, as_of: AsOf, since: AsOf | None = None, *,
                       rules: TriggerRules = DEFAULT_RULES) -> ibis.Table:
    """Each interaction in ``[since, as_of)`` as one row: :data:`EVENT_COLUMNS` (``kind`` one of :data:`KINDS`).

    The time-stamped rows :func:`interactions` aggregates: what a model
    needs to know what a customer did *up to a decision time* (the last view
    of a product, the latest purchases), not only before ``as_of``.

    Examples
    --------
    >>> import pandas as pd
    >>> from cadence.features.purchases import duckdb_tables, fetch_frame
    >>> con, t = duckdb_tables({"events": pd.DataFrame({
    ...     "event_id": ["e1", "e2"], "customer_id": ["a", "a"], "product_id": ["x", "y"],
    ...     "event_type": ["product_view", "add_to_cart"], "session_id": ["s", "s"],
    ...     "ts": pd.to_datetime(["2025-01-01", "2025-01-03"], utc=True)})})
    >>> fetch_frame(con, interaction_events(t, "2025-01-02"), ["ts"])[["product_id", "kind"]].values.tolist()
    [['x', 'views']]
    """
    u = _interaction_rows(tables, as_of_literal(utc(as_of, "as_of")), rules)
    if since is not None:
        u = u.filter(u.ts >= as_of_literal(utc(since, "since")))
    return u.select(*EVENT_COLUMNS)


def interactions(tables: Tables, as_of: AsOf, *, weights: Mapping[str, float] = DEFAULT_WEIGHTS,
                 rules: TriggerRules = DEFAULT_RULES) -> ibis.Table:
    """One row per (customer, product) with any interaction strictly before ``as_of``.

    Parameters
    ----------
    tables
        ``events`` and/or ``orders`` + ``order_items`` as Ibis tables.
    as_of
        Exclusive cutoff, required; rows at or after it are not read.
    weights
        Weight of one interaction of each kind (missing kinds keep
        :data:`DEFAULT_WEIGHTS`).
    rules
        Sessionisation of events without ``session_id`` (search-led views).

    Returns
    -------
    ibis.Table
        :data:`INTERACTION_COLUMNS`: the counts ``views``, ``carts``,
        ``purchases``, ``searches`` (int64), ``weight`` (float64),
        ``last_at`` (the last interaction of any kind) and
        ``last_viewed_at`` (the last view, null if never viewed).

    Examples
    --------
    >>> import pandas as pd
    >>> from cadence.features.purchases import duckdb_tables, fetch_frame
    >>> con, t = duckdb_tables({
    ...     "orders": pd.DataFrame({"order_id": ["o1"], "customer_id": ["a"], "revenue": [1.0],
    ...                             "ts": pd.to_datetime(["2025-01-02"], utc=True)}),
    ...     "order_items": pd.DataFrame({"order_id": ["o1"], "product_id": ["x"]})})
    >>> fetch_frame(con, interactions(t, "2025-02-01"), ["product_id"])[["purchases", "weight"]].to_dict("records")
    [{'purchases': 1, 'weight': 5.0}]
    """
    w = _check_weights(weights)
    u = _interaction_rows(tables, as_of_literal(utc(as_of, "as_of")), rules)
    counts = {k: u.count(where=u.kind == k).cast("int64") for k in KINDS}
    agg = u.group_by(["customer_id", "product_id"]).aggregate(
        **counts, last_at=u.ts.max(), last_viewed_at=u.ts.max(where=u.kind == "views"))
    weight = sum((agg[k].cast("float64") * w[k] for k in KINDS), ibis.literal(0.0))
    return agg.select("customer_id", "product_id", *KINDS, weight=weight, last_at=agg.last_at,
                      last_viewed_at=agg.last_viewed_at)


def purchases_between(tables: Tables, start: AsOf, end: AsOf) -> ibis.Table:
    """The order lines of orders in ``[start, end)``: :data:`PURCHASE_COLUMNS`, one row per order and product.

    The judging side of an offline evaluation (fit before ``start``, judge on
    what was bought from ``start`` on); nothing before ``start`` or at or
    after ``end`` is read.

    Examples
    --------
    >>> import pandas as pd
    >>> from cadence.features.purchases import duckdb_tables, fetch_frame
    >>> con, t = duckdb_tables({
    ...     "orders": pd.DataFrame({"order_id": ["o1", "o2"], "customer_id": ["a", "a"], "revenue": [1.0, 1.0],
    ...                             "ts": pd.to_datetime(["2025-01-02", "2025-03-01"], utc=True)}),
    ...     "order_items": pd.DataFrame({"order_id": ["o1", "o2"], "product_id": ["x", "y"]})})
    >>> fetch_frame(con, purchases_between(t, "2025-02-01", "2025-04-01"), ["order_id"])["product_id"].tolist()
    ['y']
    """
    lo, hi = utc(start, "start"), utc(end, "end")
    if hi <= lo:
        raise ValueError(f"end must be after start, got start={lo} and end={hi}")
    lines = _order_lines(tables)
    if lines is None:
        raise ValueError("purchases_between needs orders and order_items")
    orders, items = lines
    o = orders.filter((orders.ts >= as_of_literal(lo)) & (orders.ts < as_of_literal(hi)))
    o = o.select(o_id=o.order_id, customer_id=o.customer_id, ts=o.ts)
    it = items.select(order_id=items.order_id, product_id=items.product_id).distinct()
    j = it.join(o, it.order_id == o.o_id)
    return j.select("customer_id", "order_id", "product_id", "ts")


@dataclass(frozen=True, eq=False)
class InteractionData:
    """Everything a recommender is fitted on, as of one cutoff (built by :func:`load_interactions`).

    Attributes
    ----------
    as_of : pandas.Timestamp
        The exclusive cutoff (UTC) every table was computed at.
    interactions : pandas.DataFrame
        :data:`INTERACTION_COLUMNS`, sorted by customer and product.
    cooccurrence : pandas.DataFrame
        ``product_id``, ``other_product_id``, ``score``: co-occurrence in
        sessions and orders (:func:`cadence.features.affinity.cooccurrence`).
    bought_together : pandas.DataFrame
        The same, over order baskets only (complementary products).
    earlier : InteractionData or None
        The same tables as of ``label_start`` (before ``as_of``), for a model
        that learns from what happened next (the learned blend); None unless
        :func:`load_interactions` was given ``label_days``.
    labels : pandas.DataFrame or None
        ``customer_id``, ``product_id``: the products each customer bought in
        ``[earlier.as_of, as_of)`` (distinct pairs), or None.
    events : pandas.DataFrame or None
        :data:`EVENT_COLUMNS`: each interaction of the last ``events_days``
        before ``as_of`` (:func:`interaction_events`), sorted by customer and
        time, for a model of what happened up to a decision time
        (:class:`~cadence.models.recommenders.LiveBlendRecommender`); None
        unless :func:`load_interactions` was given ``events_days``.
    events_since : pandas.Timestamp or None
        The start of the window ``events`` covers (``as_of - events_days``).
    """

    as_of: pd.Timestamp
    interactions: pd.DataFrame
    cooccurrence: pd.DataFrame
    bought_together: pd.DataFrame
    earlier: InteractionData | None = None
    labels: pd.DataFrame | None = None
    events: pd.DataFrame | None = None
    events_since: pd.Timestamp | None = None

    def __post_init__(self) -> None:
        missing = [c for c in INTERACTION_COLUMNS if c not in self.interactions.columns]
        if missing:
            raise ValueError(f"interactions: missing column {', '.join(map(repr, missing))}")
        for name in ("cooccurrence", "bought_together"):
            frame = getattr(self, name)
            gone = [c for c in ("product_id", "other_product_id", "score") if c not in frame.columns]
            if gone:
                raise ValueError(f"{name}: missing column {', '.join(map(repr, gone))}")
        if (self.earlier is None) != (self.labels is None):
            raise ValueError("earlier and labels come together: give both or neither")
        if self.earlier is not None and self.labels is not None:
            if not self.earlier.as_of < self.as_of:
                raise ValueError(f"earlier: as_of {self.earlier.as_of} must be before {self.as_of}")
            gone = [c for c in ("customer_id", "product_id") if c not in self.labels.columns]
            if gone:
                raise ValueError(f"labels: missing column {', '.join(map(repr, gone))}")
        if (self.events is None) != (self.events_since is None):
            raise ValueError("events and events_since come together: give both or neither")
        if self.events is not None:
            gone = [c for c in EVENT_COLUMNS if c not in self.events.columns]
            if gone:
                raise ValueError(f"events: missing column {', '.join(map(repr, gone))}")


def load_interactions(con: Any, tables: Tables, as_of: AsOf, *, weights: Mapping[str, float] = DEFAULT_WEIGHTS,
                      neighbours: int = 50, rules: TriggerRules = DEFAULT_RULES,
                      label_days: float | None = None, events_days: float | None = None) -> InteractionData:
    """Fetch :func:`interactions` and the two co-occurrence tables before ``as_of`` into an :class:`InteractionData`.

    ``neighbours`` is the number of co-occurring products kept per product.
    Without order tables ``bought_together`` is empty; without events,
    ``cooccurrence`` is over orders alone. With ``label_days``, also the same
    tables as of ``label_start = as_of - label_days`` (``earlier``) and the
    products bought in ``[label_start, as_of)`` (``labels``): a time split
    inside the history, for a model fitted on what followed (nothing at or
    after ``as_of`` is read either way). With ``events_days``, also each
    interaction of ``[as_of - events_days, as_of)`` (``events``, time-stamped).

    Examples
    --------
    >>> import pandas as pd
    >>> from cadence.features.purchases import duckdb_tables
    >>> con, t = duckdb_tables({
    ...     "orders": pd.DataFrame({"order_id": ["o1"], "customer_id": ["a"], "revenue": [1.0],
    ...                             "ts": pd.to_datetime(["2025-01-02"], utc=True)}),
    ...     "order_items": pd.DataFrame({"order_id": ["o1", "o1"], "product_id": ["x", "y"]})})
    >>> load_interactions(con, t, "2025-02-01").bought_together["other_product_id"].tolist()
    ['y', 'x']
    """
    cutoff = utc(as_of, "as_of")
    inter = fetch_frame(con, interactions(tables, cutoff, weights=weights, rules=rules), ["customer_id", "product_id"])
    co = fetch_frame(con, cooccurrence(tables, cutoff, top_k=neighbours, rules=rules),
                     ["product_id", "other_product_id"])
    lines = _order_lines(tables)
    if lines is None:
        bt = co.iloc[:0].copy()
    else:
        order_tables = {"orders": lines[0], "order_items": lines[1]}
        bt = fetch_frame(con, cooccurrence(order_tables, cutoff, top_k=neighbours, rules=rules),
                         ["product_id", "other_product_id"])
    for name, days in (("label_days", label_days), ("events_days", events_days)):
        if days is not None and (not isinstance(days, int | float) or isinstance(days, bool) or days <= 0):
            raise ValueError(f"{name} must be a positive number of days, got {days!r}")
    events = since = None
    if events_days is not None:
        since = cutoff - pd.Timedelta(days=float(events_days))
        events = fetch_frame(con, interaction_events(tables, cutoff, since, rules=rules),
                             ["customer_id", "ts", "product_id", "kind"])
    if label_days is None:
        return InteractionData(cutoff, inter, co, bt, events=events, events_since=since)
    start = cutoff - pd.Timedelta(days=float(label_days))
    earlier = load_interactions(con, tables, start, weights=weights, neighbours=neighbours, rules=rules)
    labels = fetch_frame(con, purchases_between(tables, start, cutoff), ["customer_id", "product_id", "order_id"])
    labels = labels[["customer_id", "product_id"]].drop_duplicates().reset_index(drop=True)
    return InteractionData(cutoff, inter, co, bt, earlier, labels, events, since)


__all__ = ["interactions", "interaction_events", "purchases_between", "load_interactions", "InteractionData", "KINDS", "DEFAULT_WEIGHTS",
           "INTERACTION_COLUMNS", "EVENT_COLUMNS", "PURCHASE_COLUMNS"]
