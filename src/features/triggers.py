"""Trigger candidates as of a cutoff: which customer became eligible for which stage, when.

One row per (customer, stage, eligible_at) with its context (``products``:
``|``-joined product ids, most relevant first; ``query``; ``order_id``),
for every stage of :data:`cadence.contract.tables.STAGES`, following the rules
of :class:`cadence.contract.triggers.TriggerRules`. Everything reads only rows before
``as_of`` and emits only candidates that became eligible before it, so
adding later data never changes the result.

The session, order and catalogue rules are Ibis expressions and run on DuckDB
or Spark unchanged. Birthdays and anniversaries need each customer's own
time zone, which the two SQL dialects do not convert alike, so those two
stages are computed in pandas from the (small) customers table and handed to
the engine as a table.

Examples
--------
>>> from cadence.features.engine import connect, execute
>>> from cadence.workflows.features import load_tables  # a data directory's tables, read in place
>>> # con = connect(); t = load_tables(con, "data/raw/demo-shop", TABLES_USED)
>>> # execute(con, trigger_candidates(con, t, "2025-07-01"))
"""

from __future__ import annotations

from collections.abc import Mapping

import ibis
import numpy as np
import pandas as pd
from ibis import _

from cadence.contract.triggers import TriggerRules
from cadence.features.customer import secs, sessionised_events
from cadence.features.engine import as_of_literal, cache, register, to_arrow, utc_timestamp

#: Tables the rules read (customers required; the others optional).
TABLES_USED: tuple[str, ...] = ("customers", "events", "orders", "order_items", "order_status", "products", "product_changes")
CANDIDATE_COLUMNS: tuple[str, ...] = ("customer_id", "stage", "eligible_at", "products", "query", "order_id")
_DAY = 86_400
#: A Monday, 1970-01-05T00:00Z, the grid the weekly digest is laid on.
_MONDAY_EPOCH = 4 * _DAY


def _ts(seconds: ibis.Value) -> ibis.Value:
    return seconds.cast("int64").as_timestamp("s").cast("timestamp('UTC')")


def _shape(t: ibis.Table, stage: str) -> ibis.Table:
    """Give every stage's rows the same columns and types."""
    cols = {
        "customer_id": t.customer_id.cast("string"),
        "stage": ibis.literal(stage, type="string"),
        "eligible_s": t.eligible_s.cast("int64"),
        "products": t.products.cast("string") if "products" in t.columns else ibis.null("string"),
        "query": t.query.cast("string") if "query" in t.columns else ibis.null("string"),
        "order_id": t.order_id.cast("string") if "order_id" in t.columns else ibis.null("string"),
    }
    return t.select(**cols)


def _join3(t: ibis.Table, key: str | list[str], value: str, order: ibis.Value, rn_name: str = "rn") -> ibis.Table:
    """First three ``value``s per ``key`` by ``order`` (descending), joined by '|'."""
    keys = [key] if isinstance(key, str) else key
    ranked = t.mutate(**{rn_name: ibis.row_number().over(group_by=keys, order_by=order)})
    top = ranked.filter(ranked[rn_name] < 3)
    agg = top.group_by(keys).aggregate(
        p0=top[value].max(where=top[rn_name] == 0),
        p1=top[value].max(where=top[rn_name] == 1),
        p2=top[value].max(where=top[rn_name] == 2),
    )
    return agg.select(*keys, products=ibis.coalesce(agg.p0, ibis.literal(""))
                      .concat(ibis.ifelse(agg.p1.isnull(), "", "|" + agg.p1))
                      .concat(ibis.ifelse(agg.p2.isnull(), "", "|" + agg.p2)))


# ---------------------------------------------------------------- sessions
def sessionise(events: ibis.Table, as_of: ibis.Scalar, rules: TriggerRules) -> ibis.Table:
    """Events before ``as_of`` with epoch seconds ``s`` and a globally unique session key ``sess``.

    Sessions are :func:`cadence.features.customer.sessionised_events`' (the
    same ones the customer features count); their keys are unique per
    customer only (GA4's ``ga_session_id`` is too), so the customer id is
    prefixed here and every later join can key on ``sess`` alone.
    """
    ev = sessionised_events(events, as_of, rules)
    return ev.select("event_id", "customer_id", s=secs(ev.ts), event_type=ev.event_type,
                     product_id=ev.product_id, query=ev.query, results_count=ev.results_count,
                     sess=ev.customer_id.concat("/").concat(ev.sess))


def session_summary(ev: ibis.Table) -> ibis.Table:
    """One row per session of :func:`sessionise`'s events: customer, last second, counts."""
    et = ev.event_type
    return ev.group_by(["sess", "customer_id"]).aggregate(
        last_s=ev.s.max(),
        views=(et == "product_view").cast("int64").sum(),
        adds=(et == "add_to_cart").cast("int64").sum(),
        checkouts=(et == "checkout_start").cast("int64").sum(),
        purchases=(et == "purchase").cast("int64").sum(),
        searches=(et == "search").cast("int64").sum(),
        zero_results=((et == "search") & (ev.results_count == 0)).cast("int64").sum(),
        first_search_s=ev.s.min(where=et == "search"),
        last_view_s=ev.s.max(where=et == "product_view"),
    )


def _session_stages(sessions: ibis.Table, ev: ibis.Table, orders: ibis.Table | None, as_of_s: ibis.Value,
                    rules: TriggerRules) -> list[ibis.Table]:
    s = sessions.filter(sessions.purchases == 0)
    if orders is not None:
        o = orders.select(o_cust=orders.customer_id, o_s=secs(orders.ts))
    out = []

    def no_order_within(t: ibis.Table, wait: int) -> ibis.Table:
        if orders is None:
            return t
        hit = t.join(o, (t.customer_id == o.o_cust) & (o.o_s > t.last_s) & (o.o_s <= t.last_s + wait))
        hit = hit.select("sess").distinct()
        return t.anti_join(hit, "sess")

    carted = _join3(ev.filter(ev.event_type == "add_to_cart"), "sess", "product_id", [ibis.desc(ev.s), ibis.desc(ev.event_id)])
    wait = int(rules.cart_abandon_wait_hours * 3600)
    cart = no_order_within(s.filter((s.adds > 0) & (s.checkouts == 0)), wait)
    cart = cart.left_join(carted, "sess").select(cart.customer_id, carted.products, eligible_s=cart.last_s + wait)
    out.append(_shape(cart, "cart_abandon"))
    wait = int(rules.checkout_abandon_wait_hours * 3600)
    co = no_order_within(s.filter(s.checkouts > 0), wait)
    co = co.left_join(carted, "sess").select(co.customer_id, carted.products, eligible_s=co.last_s + wait)
    out.append(_shape(co, "checkout_abandon"))
    timeout = int(rules.session_timeout_minutes * 60)
    br = s.filter((s.views >= rules.browse_min_views) & (s.adds == 0))
    # Only browse-abandon sessions need their last views ranked (40% of the sessions with views, 1M shop).
    views = ev.filter(ev.event_type == "product_view").semi_join(br, "sess")
    viewed = _join3(views, "sess", "product_id", [ibis.desc(views.s), ibis.desc(views.event_id)])
    br = br.left_join(viewed, "sess").select(br.customer_id, viewed.products, eligible_s=br.last_s + timeout)
    out.append(_shape(br, "browse_abandon"))
    # Clicked: some product view after the session's first search.
    clicked = s.last_view_s.notnull() & (s.last_view_s > s.first_search_s)
    sr = s.filter((s.searches > 0) & ((s.zero_results > 0) | ~clicked))
    searches = ev.filter(ev.event_type == "search")
    ranked_q = searches.mutate(rk=ibis.row_number().over(group_by=searches.sess,
                                                         order_by=[ibis.desc(searches.s), ibis.desc(searches.event_id)]))
    last_q = ranked_q.filter(ranked_q.rk == 0).select("sess", "query")
    sr = sr.left_join(last_q, "sess").select(sr.customer_id, last_q.query, eligible_s=sr.last_s + timeout)
    out.append(_shape(sr, "search_abandon"))
    return [t.filter(t.eligible_s < as_of_s) for t in out]


# ---------------------------------------------------------------- orders
def _orders_before(orders: ibis.Table, as_of: ibis.Scalar) -> ibis.Table:
    return orders.filter(orders.ts < as_of).mutate(s=secs(_.ts))


def _order_lines(o: ibis.Table, items: ibis.Table) -> ibis.Table:
    return items.join(o.select("order_id", "customer_id", "s"), "order_id")


def _order_stages(orders: ibis.Table, oi: ibis.Table | None, status: ibis.Table | None,
                  as_of: ibis.Scalar, as_of_s: ibis.Value, rules: TriggerRules,
                  repurchase_days: ibis.Table | None, typical: ibis.Table | None) -> list[ibis.Table]:
    """follow_up, order_status, win_back and buy_again; ``oi`` is :func:`_order_lines` (None without order lines)."""
    o = _orders_before(orders, as_of)
    out = []
    if oi is not None:
        ctx = _join3(oi, "order_id", "product_id", ibis.desc(oi.product_id))
    fu = o.mutate(eligible_s=o.s + int(rules.follow_up_days * _DAY))
    if oi is not None:
        fu = fu.left_join(ctx, "order_id").select(fu, ctx.products)
    out.append(_shape(fu, "follow_up"))
    if status is not None:
        st = status.filter((status.ts < as_of) & status.status.isin(["shipped", "delivered", "delayed"]))
        st = st.join(o.select("order_id", "customer_id"), "order_id").mutate(eligible_s=secs(_.ts))
        if oi is not None:
            st = st.left_join(ctx, "order_id").select(st, ctx.products)
        out.append(_shape(st, "order_status"))
    # Win-back: no further order within win_back_days of an order.
    w = ibis.window(group_by=o.customer_id, order_by=[o.s, o.order_id])
    nxt = o.mutate(next_s=o.s.lead().over(w))
    wb_s = nxt.s + int(rules.win_back_days * _DAY)
    wb = nxt.filter(nxt.next_s.isnull() | (nxt.next_s > wb_s)).mutate(eligible_s=wb_s)
    out.append(_shape(wb.select("customer_id", "eligible_s"), "win_back"))
    if oi is not None:
        out.append(_buy_again(oi, rules, repurchase_days, typical))
    return [t.filter(t.eligible_s < as_of_s) for t in out]


def _exact_median(t: ibis.Table, key: str, value: str, *, min_count: int) -> ibis.Table:
    """Exact median of ``value`` (seconds) per ``key``, in days, for keys with ``min_count`` rows.

    Written with window functions because the engines' median aggregates are
    approximate in different ways (DuckDB and Spark would disagree).
    """
    w = ibis.window(group_by=t[key], order_by=[t[value]])
    ranked = t.mutate(_rn=ibis.row_number().over(w), _cnt=t.count().over(ibis.window(group_by=t[key])))
    lo = ((ranked._cnt - 1) / 2).floor().cast("int64")
    hi = ((ranked._cnt - 1) / 2).ceil().cast("int64")
    mid = ranked.filter((ranked._cnt >= min_count) & ((ranked._rn == lo) | (ranked._rn == hi)))
    return mid.group_by(key).aggregate(interval_days=(mid[value].cast("float64").mean() / _DAY))


def _with_next_purchase(oi: ibis.Table) -> ibis.Table:
    """Order lines with ``next_s``, the customer's next purchase of the same product."""
    w = ibis.window(group_by=[oi.customer_id, oi.product_id], order_by=[oi.s, oi.order_id])
    return oi.mutate(next_s=oi.s.lead().over(w))


def _median_repurchase_days(seq: ibis.Table, rules: TriggerRules) -> ibis.Table:
    """The product's typical interval: median gap between consecutive purchases (``product_id, interval_days``)."""
    gaps = seq.filter(seq.next_s.notnull()).mutate(gap_s=_.next_s - _.s)
    return _exact_median(gaps, "product_id", "gap_s", min_count=rules.buy_again_min_repeats)


def typical_repurchase_days(tables: Mapping[str, ibis.Table], as_of: pd.Timestamp | str,
                            rules: TriggerRules | None = None) -> ibis.Table | None:
    """Each product's median repurchase interval over all customers' orders before ``as_of``.

    ``buy_again`` falls back on it; it is the one trigger input that mixes
    customers, so a caller running customers in buckets computes it once over
    all of them and passes it to :func:`trigger_candidates` (``typical_days``).
    None when the shop has no orders or order lines.
    """
    if "orders" not in tables or "order_items" not in tables:
        return None
    oi = _order_lines(_orders_before(tables["orders"], as_of_literal(utc_timestamp(as_of))), tables["order_items"])
    return _median_repurchase_days(_with_next_purchase(oi), rules or TriggerRules())


def _buy_again(oi: ibis.Table, rules: TriggerRules, repurchase_days: ibis.Table | None,
               typical_days: ibis.Table | None) -> ibis.Table:
    seq = _with_next_purchase(oi)
    personal = None
    if repurchase_days is not None and "customer_id" in repurchase_days.columns:
        personal, repurchase_days = repurchase_days, None
    if repurchase_days is None:
        repurchase_days = typical_days if typical_days is not None else _median_repurchase_days(seq, rules)
    typical = repurchase_days.select(t_pid=repurchase_days.product_id, t_days=repurchase_days.interval_days)
    j = seq.left_join(typical, seq.product_id == typical.t_pid)
    days = j.t_days
    if personal is not None:
        # A fitted repurchase model's personal interval, the product's typical one where it has none.
        p = personal.select(p_cid=personal.customer_id, p_pid=personal.product_id, p_days=personal.interval_days)
        j = j.left_join(p, (j.customer_id == p.p_cid) & (j.product_id == p.p_pid))
        days = ibis.coalesce(j.p_days, j.t_days)
    j = j.mutate(interval_days=days)
    due = j.filter(j.interval_days.notnull()).mutate(
        eligible_s=_.s + (_.interval_days * _DAY).floor().cast("int64"), products=_.product_id
    )
    due = due.filter(due.next_s.isnull() | (due.next_s > due.eligible_s))
    return _shape(due, "buy_again")


# ---------------------------------------------------------------- catalogue
def _catalogue_stages(ev: ibis.Table, products: ibis.Table, changes: ibis.Table | None,
                      as_of: ibis.Scalar, as_of_s: ibis.Value, rules: TriggerRules) -> list[ibis.Table]:
    out = []
    look = int(rules.price_drop_lookback_days * _DAY)
    seen = ev.filter(ev.event_type.isin(["product_view", "add_to_cart"])).select(
        "customer_id", "product_id", "s", ev_key=ev.sess.concat("/").concat(ev.event_id))
    if changes is not None:
        ch = changes.filter(changes.ts < as_of).mutate(c_s=secs(_.ts))
        w = ibis.window(group_by=ch.product_id, order_by=[ch.c_s])
        base = products.select(b_pid=products.product_id, base_price=products.price)
        ch = ch.left_join(base, ch.product_id == base.b_pid).select(ch, base.base_price)
        ch = ch.mutate(prev_price=ibis.coalesce(ch.price.lag().over(w), ch.base_price),
                       prev_stock=ibis.coalesce(ch.in_stock.lag().over(w), True))
        dr = ch.filter(ch.price < ch.prev_price)
        drops = dr.select(d_pid=dr.product_id, d_s=dr.c_s)
        rs = ch.filter(ch.in_stock & ~ch.prev_stock)
        restocks = rs.select(d_pid=rs.product_id, d_s=rs.c_s)
        # Out of stock when seen: the view falls in an interval that starts with an
        # out-of-stock state and lasts until the product's next change.
        iv = ch.mutate(next_c_s=ibis.coalesce(ch.c_s.lead().over(w), ibis.literal(2**62, type="int64")))
        oos_iv = iv.filter(~iv.in_stock).select(x_pid=iv.product_id, x_s=iv.c_s, x_end=iv.next_c_s)
        oos = seen.join(oos_iv, (seen.product_id == oos_iv.x_pid) & (oos_iv.x_s <= seen.s) & (seen.s < oos_iv.x_end))
        oos = oos.select("customer_id", "product_id", "s", "ev_key")
        for stage, src, after in (("price_drop", seen, drops), ("back_in_stock", oos, restocks)):
            j = src.join(after, (src.product_id == after.d_pid) & (after.d_s > src.s) & (after.d_s <= src.s + look))
            first = j.group_by(["ev_key", "customer_id", "product_id"]).aggregate(eligible_s=j.d_s.min())
            first = first.select("customer_id", "eligible_s", products=first.product_id).distinct()
            out.append(_shape(first, stage))
    # New arrivals: weekly digest for viewers of categories that got new products.
    lb = int(rules.new_arrivals_lookback_days * _DAY)
    hour = rules.digest_hour_utc * 3600
    week = 7 * _DAY
    cat = products.select(c_pid=products.product_id, category=products.category)
    viewed = seen.join(cat, seen.product_id == cat.c_pid).select(seen.customer_id, cat.category, seen.s)
    # Digests lie on a weekly grid; a view counts for the digests in (s, s + lookback].
    # Views are first counted per (customer, category, grid week): digests up to
    # the lookback's last whole week get them all, the one beyond only the late ones.
    n0 = ((viewed.s - _MONDAY_EPOCH - hour) / week).floor().cast("int64") + 1
    d0 = n0 * week + _MONDAY_EPOCH + hour  # the first digest after the view
    k_full = lb // week  # digests d0 .. d0 + k_full*week - week are within lb of any view in the week
    per_week = viewed.mutate(d0=d0).group_by(["customer_id", "category", "d0"]).aggregate(
        n_all=_.count(), n_late=(_.s >= _.d0 + k_full * week - lb).cast("int64").sum())
    expanded = [per_week.select("customer_id", "category", d_s=per_week.d0 + k * week, n=per_week.n_all)
                for k in range(k_full)]
    late = per_week.filter(per_week.n_late > 0)
    expanded.append(late.select("customer_id", "category", d_s=late.d0 + k_full * week, n=late.n_late))
    # A new product belongs to the first digest after its creation.
    new = products.mutate(p_s=secs(products.created_at))
    new = new.mutate(a_d=(((new.p_s - _MONDAY_EPOCH - hour) / week).floor().cast("int64") + 1) * week + _MONDAY_EPOCH + hour)
    new = new.select(n_pid=new.product_id, n_cat=new.category, p_s=new.p_s, a_d=new.a_d)
    arrived = new.select(a_cat=new.n_cat, a_d=new.a_d).distinct()
    # Only digests whose category got new products matter: drop the others before counting
    # (at scale most (customer, digest, category) cells have no arrivals).
    per = ibis.union(*expanded, distinct=False)
    per = per.semi_join(arrived, (per.category == arrived.a_cat) & (per.d_s == arrived.a_d))
    per = per.group_by(["customer_id", "d_s", "category"]).aggregate(n_views=_.n.sum())
    ranked = per.mutate(rk=ibis.row_number().over(group_by=[per.customer_id, per.d_s],
                                                  order_by=[ibis.desc(per.n_views), per.category]))
    best = ranked.filter(ranked.rk == 0).select("customer_id", "d_s", "category")
    newest = _join3(new, ["n_cat", "a_d"], "n_pid", [ibis.desc(new.p_s), ibis.desc(new.n_pid)])
    na = best.join(newest, (best.category == newest.n_cat) & (best.d_s == newest.a_d))
    na = na.select(best.customer_id, newest.products, eligible_s=best.d_s)
    out.append(_shape(na, "new_arrivals"))
    return [t.filter(t.eligible_s < as_of_s) for t in out]


# ---------------------------------------------------------------- occasions
def occasions(customers: pd.DataFrame, as_of: pd.Timestamp, rules: TriggerRules,
              since: pd.Timestamp | None = None, *, sort: bool = True) -> pd.DataFrame:
    """Birthday and signup-anniversary candidates in [since, as_of), local hour in each time zone.

    Feb 29 dates fall on Feb 28 in other years; a missing time zone means UTC.
    Rows are sorted by time, stage and customer unless ``sort=False``.

    >>> c = pd.DataFrame({"customer_id": ["a"], "signup_at": [pd.Timestamp("2023-03-01", tz="UTC")],
    ...                   "birth_date": [pd.Timestamp("1960-02-29").date()], "timezone": ["Asia/Tokyo"]})
    >>> print(occasions(c, pd.Timestamp("2025-03-05", tz="UTC"), TriggerRules()).to_string())
      customer_id        stage               eligible_at
    0           a     birthday 2024-02-29 00:00:00+00:00
    1           a  anniversary 2024-03-01 00:00:00+00:00
    2           a     birthday 2025-02-28 00:00:00+00:00
    3           a  anniversary 2025-03-01 00:00:00+00:00

    (09:00 in Tokyo is midnight UTC; the 2023 birthday predates the signup,
    and the first anniversary is a year after it.)
    """
    as_of = utc_timestamp(as_of)
    c = customers[customers["signup_at"] < as_of]
    signup = c["signup_at"].dt.tz_convert("UTC")
    tz = c["timezone"].fillna("UTC").astype(str) if "timezone" in c.columns else pd.Series("UTC", index=c.index)
    frames = []
    if "birth_date" in c.columns:
        bd = pd.to_datetime(c["birth_date"], errors="coerce")
        has = bd.notna()
        frames.append(_yearly(c.loc[has, "customer_id"], bd[has].dt.month, bd[has].dt.day, tz[has],
                              since=signup[has], as_of=as_of, hour=rules.occasion_local_hour, stage="birthday"))
    frames.append(_yearly(c["customer_id"], signup.dt.month, signup.dt.day, tz,
                          since=signup + pd.Timedelta(days=300), as_of=as_of, hour=rules.occasion_local_hour,
                          stage="anniversary"))
    out = pd.concat(frames, ignore_index=True)
    if since is not None:
        out = out[out["eligible_at"] >= pd.Timestamp(since)]
    if not sort:  # the engine sorts the union of all stages anyway
        return out
    return out.sort_values(["eligible_at", "stage", "customer_id"], kind="stable").reset_index(drop=True)


def _yearly(cust: pd.Series, month: pd.Series, day: pd.Series, tz: pd.Series, *, since: pd.Series,
            as_of: pd.Timestamp, hour: int, stage: str) -> pd.DataFrame:
    """Each customer's yearly date at local ``hour`` in [since, as_of), all years of one zone at once."""
    years = np.arange(int(since.min().year) if len(since) else as_of.year, as_of.year + 1)
    m_arr, d_arr = month.to_numpy(dtype="int64"), day.to_numpy(dtype="int64")
    since_utc, zones = pd.DatetimeIndex(since).tz_convert("UTC"), tz.to_numpy()
    frames = []
    for zone in pd.unique(zones):
        rows = np.flatnonzero(zones == zone)
        r = np.repeat(rows, len(years))
        y = np.tile(years, len(rows))
        leap = (y % 4 == 0) & ((y % 100 != 0) | (y % 400 == 0))
        d = np.where((m_arr[r] == 2) & (d_arr[r] == 29) & ~leap, 28, d_arr[r])
        # Calendar arithmetic in numpy: year -> month -> day -> the local wall-clock hour.
        local = ((y - 1970).astype("datetime64[Y]").astype("datetime64[M]") + (m_arr[r] - 1)).astype("datetime64[D]")
        local = (local + (d - 1)).astype("datetime64[ns]") + np.timedelta64(hour, "h")
        # A wall-clock hour that a DST change skips moves forward; one it repeats takes its first instance.
        utc = pd.DatetimeIndex(local).tz_localize(zone, nonexistent="shift_forward",
                                                  ambiguous=np.ones(len(local), dtype=bool)).tz_convert("UTC")
        ok = (utc >= since_utc[r]) & (utc < as_of)
        frames.append(pd.DataFrame({"customer_id": cust.to_numpy()[r[ok]], "stage": stage, "eligible_at": utc[ok]}))
    if not frames:
        return pd.DataFrame({"customer_id": pd.Series([], dtype=object), "stage": pd.Series([], dtype=object),
                             "eligible_at": pd.Series([], dtype="datetime64[ns, UTC]")})
    return pd.concat(frames, ignore_index=True)


# ---------------------------------------------------------------- all stages
def trigger_candidates(con: object, tables: Mapping[str, ibis.Table], as_of: pd.Timestamp | str, *,
                       rules: TriggerRules | None = None, since: pd.Timestamp | str | None = None,
                       repurchase_days: pd.DataFrame | None = None,
                       typical_days: pd.DataFrame | None = None) -> ibis.Table:
    """Every stage's candidates that became eligible in ``[since, as_of)``.

    Parameters
    ----------
    con
        The backend the tables live on (occasions are uploaded to it).
    tables
        Contract tables as Ibis tables; ``customers`` is required, the rest
        optional (a stage whose inputs are absent has no candidates).
    as_of
        The cutoff: nothing at or after it is read.
    rules
        Stage parameters; :class:`TriggerRules` defaults.
    since
        Only candidates eligible at or after this (all history when None).
    repurchase_days
        Intervals from a fitted repurchase model
        (:meth:`cadence.models.repurchase.RepurchaseInterval.repurchase_days`):
        per product (``product_id, interval_days``), or personal (with
        ``customer_id``), in which case a customer without a personal
        interval for a product gets the product's typical interval in the
        data. Without it, the product's typical interval in the data.
    typical_days
        The products' typical intervals (``product_id, interval_days``) to
        use instead of computing them from ``tables``: what
        :func:`typical_repurchase_days` gives over the whole shop, for a
        caller whose ``tables`` hold one bucket of customers.

    Returns
    -------
    Ibis table with :data:`CANDIDATE_COLUMNS`.
    """
    rules = rules or TriggerRules()
    as_of = utc_timestamp(as_of)
    cutoff = as_of_literal(as_of)
    cutoff_s = secs(cutoff)
    cust = tables["customers"]
    parts: list[ibis.Table] = []
    orders = tables.get("orders")
    if "events" in tables:
        # Every session and catalogue stage reads these: compute them once.
        ev = cache(con, sessionise(tables["events"], cutoff, rules))
        sessions = cache(con, session_summary(ev))
        parts += _session_stages(sessions, ev, orders, cutoff_s, rules)
        if "products" in tables:
            parts += _catalogue_stages(ev, tables["products"], tables.get("product_changes"), cutoff, cutoff_s, rules)
    if orders is not None:
        uploads = register(con, {name: df for name, df in (("_repurchase_days", repurchase_days),
                                                          ("_typical_days", typical_days)) if df is not None})
        items = tables.get("order_items")
        # follow_up, order_status and buy_again all read the order lines: join them once
        # (a bucket otherwise scans the whole order_items table for each).
        oi = cache(con, _order_lines(_orders_before(orders, cutoff), items)) if items is not None else None
        parts += _order_stages(orders, oi, tables.get("order_status"), cutoff, cutoff_s, rules,
                               uploads.get("_repurchase_days"), uploads.get("_typical_days"))
    occ_cols = [c for c in ("customer_id", "signup_at", "birth_date", "timezone") if c in cust.columns]
    # Through Arrow: at a million customers pandas' normalisation costs more than the occasions.
    occ = occasions(to_arrow(con, cust.select(*occ_cols)).to_pandas(date_as_object=False), as_of, rules, sort=False)
    occ = occ.assign(eligible_s=(occ["eligible_at"].astype("int64") // 10**9) if len(occ) else pd.Series([], dtype="int64"))
    occ_t = register(con, {"_occasions": occ[["customer_id", "stage", "eligible_s"]]})["_occasions"]
    for stage in ("birthday", "anniversary"):
        parts.append(_shape(occ_t.filter(occ_t.stage == stage), stage))
    allc = ibis.union(*parts, distinct=False)
    if since is not None:
        allc = allc.filter(allc.eligible_s >= secs(as_of_literal(since)))
    # One row per (customer, stage, eligible_at): the first context wins.
    rk = ibis.row_number().over(group_by=[allc.customer_id, allc.stage, allc.eligible_s],
                                order_by=[allc.products, allc.query, allc.order_id])
    allc = allc.mutate(_rk=rk).filter(_._rk == 0)
    return allc.select("customer_id", "stage", eligible_at=_ts(allc.eligible_s), products=allc.products,
                       query=allc.query, order_id=allc.order_id)
