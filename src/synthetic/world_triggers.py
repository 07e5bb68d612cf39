"""The world's own trigger moments, from its simulated history and :class:`TriggerRules`.

The world knows when a cart was abandoned because it simulated the session;
these moments are what the feature pipeline's detection must recover.
Conversions caused by messages open no new triggers here (they depend on the
policy, and the trigger set must not), which the cross-check allows for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from cadence.synthetic.catalog import DAY, Catalog

if TYPE_CHECKING:
    from cadence.synthetic.backbone import Backbone
from cadence.synthetic.config import ShopConfig

_SHIFT = np.int64(1) << np.int64(34)


def _stage(name: str) -> int:
    from cadence.synthetic.backbone import STAGE_INDEX

    return STAGE_INDEX[name]


def _pad3(groups: np.ndarray, values: np.ndarray, n_groups: int) -> np.ndarray:
    """Up to the last three ``values`` per group (groups sorted), -1 padded."""
    out = np.full((n_groups, 3), -1, np.int64)
    if len(groups) == 0:
        return out
    idx = np.arange(len(groups))
    end = np.r_[groups[1:] != groups[:-1], True]
    last = np.minimum.accumulate(np.where(end, idx, len(groups))[::-1])[::-1]
    rank_from_end = last - idx
    ok = rank_from_end < 3
    out[groups[ok], rank_from_end[ok]] = values[ok]
    return out


def _next_after(keys_sorted: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Index of the first key strictly greater than each query (len if none)."""
    return np.searchsorted(keys_sorted, query, side="right")


def _occasions(cfg: ShopConfig, bb: Backbone, month: np.ndarray, day: np.ndarray, since: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Yearly occasions at the local occasion hour, in [max(start, since), end)."""
    from cadence.synthetic.backbone import TZ_NAMES

    pp = bb.people
    start, end = pd.Timestamp(cfg.start_s, unit="s"), pd.Timestamp(cfg.end_s, unit="s")
    custs, times = [], []
    has = np.flatnonzero(month > 0)
    for year in range(start.year, end.year + 1):
        leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
        d = np.where((month[has] == 2) & (day[has] == 29) & (not leap), 28, day[has])
        local = pd.to_datetime(
            pd.DataFrame({"year": year, "month": month[has], "day": d, "hour": cfg.rules.occasion_local_hour})
        )
        tz = pp.tz[has]
        utc = np.empty(len(has), np.int64)
        for z in np.unique(tz):
            rows = tz == z
            stamped = pd.DatetimeIndex(local[rows]).tz_localize(TZ_NAMES[z], nonexistent="shift_forward")
            utc[rows] = ((stamped - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)).to_numpy()
        ok = (utc >= np.maximum(cfg.start_s, since[has])) & (utc < cfg.end_s)
        custs.append(has[ok])
        times.append(utc[ok])
    return np.concatenate(custs), np.concatenate(times)


def world_triggers(cfg: ShopConfig, cat: Catalog, bb: Backbone) -> None:
    """Fill ``bb.trig_*`` with every stage's trigger moments, sorted by (customer, time)."""
    from cadence.synthetic.backbone import EV

    r = cfg.rules
    pp = bb.people
    parts: list[tuple[np.ndarray, int, np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]] = []

    def add(cust: np.ndarray, stage: str, t: np.ndarray, products: np.ndarray | None = None,
            query: np.ndarray | None = None, order: np.ndarray | None = None) -> None:
        ok = (t >= cfg.start_s) & (t < cfg.end_s)
        prod = np.full((len(cust), 3), -1, np.int64) if products is None else products
        parts.append((cust[ok], _stage(stage), t[ok], prod[ok],
                      None if query is None else query[ok],
                      None if order is None else order[ok]))

    # ---- session-based stages -----------------------------------------
    sess = bb.ev_session
    s_n = int(sess.max()) + 1 if len(sess) else 0
    last = np.full(s_n, np.iinfo(np.int64).min)
    np.maximum.at(last, sess, bb.ev_s)
    cust_of = np.zeros(s_n, np.int64)
    cust_of[sess] = bb.ev_cust

    def count(t: int) -> np.ndarray:
        return np.bincount(sess[bb.ev_type == t], minlength=s_n)

    views, adds, checkouts = count(EV["product_view"]), count(EV["add_to_cart"]), count(EV["checkout_start"])
    purchases, searches = count(EV["purchase"]), count(EV["search"])
    present = np.bincount(sess, minlength=s_n) > 0
    # Next order after the session's last event (any order of the customer).
    okeys = bb.ord_cust.astype(np.int64) * _SHIFT + (bb.ord_s - cfg.start_s + 1200 * DAY)
    nxt = _next_after(okeys, cust_of * _SHIFT + (last - cfg.start_s + 1200 * DAY))
    nxt_ok = nxt < len(okeys)
    next_order_s = np.full(s_n, np.iinfo(np.int64).max)
    same = np.zeros(s_n, bool)
    same[nxt_ok] = bb.ord_cust[nxt[nxt_ok]] == cust_of[nxt_ok]
    next_order_s[same] = bb.ord_s[nxt[same]]

    # Session context: last three carted / viewed products, in time order.
    order_ev = np.lexsort((bb.ev_s, sess))
    def ctx(t: int) -> np.ndarray:
        e = order_ev[bb.ev_type[order_ev] == t]
        return _pad3(sess[e], bb.ev_product[e], s_n)

    cart_ctx, view_ctx = ctx(EV["add_to_cart"]), ctx(EV["product_view"])
    no_purchase = present & (purchases == 0)
    wait_cart = int(r.cart_abandon_wait_hours * 3600)
    wait_co = int(r.checkout_abandon_wait_hours * 3600)
    timeout = int(r.session_timeout_minutes * 60)
    cart = no_purchase & (adds > 0) & (checkouts == 0) & (next_order_s > last + wait_cart)
    add(cust_of[cart], "cart_abandon", last[cart] + wait_cart, cart_ctx[cart])
    co = no_purchase & (checkouts > 0) & (next_order_s > last + wait_co)
    add(cust_of[co], "checkout_abandon", last[co] + wait_co, cart_ctx[co])
    browse = no_purchase & (views >= r.browse_min_views) & (adds == 0)
    add(cust_of[browse], "browse_abandon", last[browse] + timeout, view_ctx[browse])
    # Search abandon: a zero-result search, or no product view after the search.
    s_ev = np.flatnonzero(bb.ev_type == EV["search"])
    first_search = np.full(s_n, np.iinfo(np.int64).max)
    np.minimum.at(first_search, sess[s_ev], bb.ev_s[s_ev])
    zero = np.zeros(s_n, bool)
    zero[sess[s_ev[bb.ev_results[s_ev] == 0]]] = True
    v_ev = np.flatnonzero(bb.ev_type == EV["product_view"])
    clicked = np.zeros(s_n, bool)
    after = bb.ev_s[v_ev] > first_search[sess[v_ev]]
    clicked[sess[v_ev[after]]] = True
    srch = no_purchase & (searches > 0) & (zero | ~clicked)
    # The last query of the session is the context.
    q_of = np.full(s_n, None, dtype=object)
    q_of[sess[s_ev]] = bb.ev_query[s_ev]
    add(cust_of[srch], "search_abandon", last[srch] + timeout, None, q_of[srch])

    # ---- order-based stages -------------------------------------------
    n_o = len(bb.ord_s)
    items_ctx = _pad3(bb.item_order, bb.item_product, n_o)
    oid = np.arange(n_o)
    add(bb.ord_cust, "follow_up", bb.ord_s + int(r.follow_up_days * DAY), items_ctx, order=oid)
    st = bb.status_code
    tx = np.isin(st, (1, 2, 3))  # shipped, delivered, delayed
    so = bb.status_order[tx]
    add(bb.ord_cust[so], "order_status", bb.status_s[tx], items_ctx[so], order=so)
    # Win-back: no purchase for win_back_days after an order.
    same_next = np.r_[bb.ord_cust[1:] == bb.ord_cust[:-1], False]
    gap_end = np.where(same_next, np.r_[bb.ord_s[1:], 0], np.iinfo(np.int64).max)
    wb = bb.ord_s + int(r.win_back_days * DAY)
    lapsed = gap_end > wb
    add(bb.ord_cust[lapsed], "win_back", wb[lapsed])
    # Buy again: a consumable is due at its typical interval and not yet re-bought.
    cons = cat.consumable[bb.item_product]
    ic = bb.ord_cust[bb.item_order[cons]]
    ip = bb.item_product[cons]
    its = bb.ord_s[bb.item_order[cons]]
    o = np.lexsort((its, ip, ic))
    ic, ip, its = ic[o], ip[o], its[o]
    same = np.r_[(ic[1:] == ic[:-1]) & (ip[1:] == ip[:-1]), False]
    nxt_t = np.where(same, np.r_[its[1:], 0], np.iinfo(np.int64).max)
    due = its + (cat.interval_days[ip] * DAY).astype(np.int64)
    ba = nxt_t > due
    prod = np.full((len(ic), 3), -1, np.int64)
    prod[:, 0] = ip
    add(ic[ba], "buy_again", due[ba], prod[ba])

    # ---- catalogue-based stages ---------------------------------------
    look = int(r.price_drop_lookback_days * DAY)
    vi = np.flatnonzero(np.isin(bb.ev_type, (EV["product_view"], EV["add_to_cart"])))
    vc, vp, vt = bb.ev_cust[vi], bb.ev_product[vi], bb.ev_s[vi]
    for stage, kind, mask in (
        ("price_drop", 1, np.ones(len(vi), bool)),
        ("back_in_stock", 4, ~cat.in_stock_at(vp, vt)),
    ):
        nt = cat.next_change(vp[mask], vt[mask], kind)
        ok = (nt > 0) & (nt - vt[mask] <= look)
        c, p_, t = vc[mask][ok], vp[mask][ok], nt[ok]
        key = np.unique(np.stack([c, p_, t], axis=1), axis=0) if len(c) else np.zeros((0, 3), np.int64)
        prod = np.full((len(key), 3), -1, np.int64)
        prod[:, 0] = key[:, 1]
        add(key[:, 0], stage, key[:, 2], prod)

    # New arrivals: weekly digest for viewers of categories with new products.
    first_monday = pd.Timestamp(cfg.start_s, unit="s").normalize()
    first_monday += pd.Timedelta(days=(7 - first_monday.weekday()) % 7, hours=r.digest_hour_utc)
    digest0 = int(first_monday.timestamp())
    n_weeks = max(0, (cfg.end_s - digest0) // (7 * DAY) + 1)
    if n_weeks and len(vi):
        digests = digest0 + 7 * DAY * np.arange(n_weeks)
        n_cat = int(cat.category.max()) + 1
        arrivals = np.zeros((n_weeks, n_cat), bool)
        new_idx = np.flatnonzero(cat.created_s >= cfg.start_s)
        wk = np.searchsorted(digests, cat.created_s[new_idx], side="right")  # digest after creation
        valid = wk < n_weeks
        arrivals[wk[valid], cat.category[new_idx][valid]] = True
        vcat = cat.category[vp]
        base = np.searchsorted(digests, vt, side="right")
        lb = int(r.new_arrivals_lookback_days * DAY)
        pairs_c, pairs_w, pairs_k = [], [], []
        for k in range(int(np.ceil(lb / (7 * DAY))) + 1):
            w = base + k
            ok = w < n_weeks
            ok[ok] &= (digests[w[ok]] - vt[ok] <= lb) & arrivals[w[ok], vcat[ok]]
            pairs_c.append(vc[ok])
            pairs_w.append(w[ok])
            pairs_k.append(vcat[ok])
        pc, pw, pk = np.concatenate(pairs_c), np.concatenate(pairs_w), np.concatenate(pairs_k)
        key = np.unique(np.stack([pc, pw, pk], axis=1), axis=0)
        firsts = np.r_[True, (key[1:, 0] != key[:-1, 0]) | (key[1:, 1] != key[:-1, 1])] if len(key) else np.zeros(0, bool)
        key = key[firsts]
        # Context: the newest arrivals of that category before the digest.
        prod = np.full((len(key), 3), -1, np.int64)
        by_cat_new = {c: new_idx[cat.category[new_idx] == c] for c in range(n_cat)}
        for c in np.unique(key[:, 2]) if len(key) else []:
            rows = np.flatnonzero(key[:, 2] == c)
            members = by_cat_new[c][np.argsort(cat.created_s[by_cat_new[c]])]
            pos = np.searchsorted(cat.created_s[members], digests[key[rows, 1]], side="left")
            for j in range(3):
                ok = pos - 1 - j >= 0
                prod[rows[ok], j] = members[pos[ok] - 1 - j]
        add(key[:, 0], "new_arrivals", digests[key[:, 1]], prod)

    # ---- occasions --------------------------------------------------------
    occ_c, occ_t = _occasions(cfg, bb, pp.birth_month, pp.birth_day, pp.signup_s)
    add(occ_c, "birthday", occ_t)
    su = pd.to_datetime(pp.signup_s, unit="s")
    occ_c, occ_t = _occasions(cfg, bb, su.month.to_numpy(), su.day.to_numpy(), pp.signup_s + 300 * DAY)
    add(occ_c, "anniversary", occ_t)

    cust = np.concatenate([p[0] for p in parts]).astype(np.int64)
    stage_code = np.concatenate([np.full(len(p[0]), p[1], np.int8) for p in parts])
    ts = np.concatenate([p[2] for p in parts]).astype(np.int64)
    prods = np.concatenate([p[3] for p in parts])
    query = np.concatenate([p[4] if p[4] is not None else np.full(len(p[0]), None, object) for p in parts])
    order = np.concatenate([p[5] if p[5] is not None else np.full(len(p[0]), -1, np.int64) for p in parts])
    perm = np.lexsort((stage_code, ts, cust))
    bb.trig_cust, bb.trig_stage, bb.trig_s = cust[perm], stage_code[perm], ts[perm]
    bb.trig_products, bb.trig_query, bb.trig_order = prods[perm], query[perm], order[perm]
