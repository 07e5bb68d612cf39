"""The part of the world that messages do not change: people, sessions, orders, triggers.

For one chunk of customers this draws their latent traits, a BG/NBD-like
purchase process (Poisson purchases while alive, dropout after each purchase
with a per-customer probability), replenishment purchases of consumables on
their own cycle, browsing/search/cart/checkout sessions with events, and
finally the trigger moments that follow from them under :class:`TriggerRules`.

Everything here is vectorised numpy over the chunk (no per-customer Python)
so that a million customers fit in minutes. Written by hand because no
maintained library simulates a shop with latent purchase processes and known
trigger moments.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from cadence.contract.tables import STAGES
from cadence.synthetic.catalog import CATEGORY_NAMES, DAY, Catalog
from cadence.synthetic.config import (
    ADJECTIVES,
    CATEGORIES,
    OPT_IN_RATES,
    SEGMENTS,
    TIMEZONES,
    UNKNOWN_QUERIES,
    ShopConfig,
)

if TYPE_CHECKING:
    from cadence.synthetic.tastes import CustomerTastes, ItemTastes

#: A chunk's latent tastes for drawing: product side, customer side and the choice stream.
Taste = tuple["ItemTastes", "CustomerTastes", np.random.Generator]

EV = {name: i for i, name in enumerate(
    ("page_view", "search", "product_view", "add_to_cart", "remove_from_cart", "checkout_start", "purchase")
)}
STAGE_INDEX = {s: i for i, s in enumerate(STAGES)}
SEGMENT_NAMES = tuple(SEGMENTS)
TZ_NAMES = tuple(TIMEZONES)
CHANNEL_NAMES = tuple(OPT_IN_RATES)
_SHIFT = np.int64(1) << np.int64(34)
#: Customers' true preferred local hours: an equal mixture of these peaks, each with a 1-hour sd.
PREFERRED_HOUR_PEAKS = (8.0, 12.5, 19.0, 21.0)
PREFERRED_HOUR_SD = 1.0


@dataclass
class People:
    idx: np.ndarray  # global customer index
    signup_s: np.ndarray
    alive_from_s: np.ndarray
    death_s: np.ndarray  # dropout time (int64 max if alive at the end)
    rate: np.ndarray  # purchases per day while alive
    dropout: np.ndarray
    segment: np.ndarray
    intent: np.ndarray
    open_affinity: np.ndarray
    deal_sensitivity: np.ndarray
    preferred_hour: np.ndarray  # local hour of day, float
    tz: np.ndarray
    tz_offset_h: np.ndarray  # standard offset used for send-time truth
    opt_in: np.ndarray  # (n, 4) bool, at signup
    birth_month: np.ndarray  # 0 if missing
    birth_day: np.ndarray
    birth_year: np.ndarray
    affinity_cum: np.ndarray  # (n, n_categories) cumulative
    basket: np.ndarray


@dataclass
class Backbone:
    """One chunk of the policy-independent world."""

    people: People
    # events (sorted by customer, ts)
    ev_cust: np.ndarray
    ev_s: np.ndarray
    ev_type: np.ndarray
    ev_product: np.ndarray  # -1 when none
    ev_query: np.ndarray  # object array, None when none
    ev_results: np.ndarray  # -1 when none
    ev_session: np.ndarray  # global session number within chunk
    # organic orders
    ord_cust: np.ndarray
    ord_s: np.ndarray
    ord_kind: np.ndarray  # 0 regular, 1 replenishment
    item_order: np.ndarray
    item_product: np.ndarray
    item_qty: np.ndarray
    item_price: np.ndarray
    status_order: np.ndarray
    status_s: np.ndarray
    status_code: np.ndarray
    # trigger moments (sorted by customer, time)
    trig_cust: np.ndarray
    trig_stage: np.ndarray
    trig_s: np.ndarray
    trig_products: np.ndarray  # (n, 3) product indices, -1 padded
    trig_query: np.ndarray  # object
    trig_order: np.ndarray  # local order index or -1
    # per-trigger uniforms for the response model (common random numbers)
    uniforms: np.ndarray  # (n_triggers, 8)
    # browsing sessions per day while alive (latent; for the churn truth)
    browse_rate: np.ndarray | None = None
    # latent tastes (ShopConfig.tastes), None in the default world
    item_tastes: ItemTastes | None = None
    customer_tastes: CustomerTastes | None = None
    # per-trigger (segment, intent, deal sensitivity) in a realised-response world, else None
    trig_response: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None


@dataclass
class OrderDraws:
    """Organic orders of one chunk (unsorted) and every replenishment the world scheduled.

    A consumable bought in an order schedules its next purchase at
    ``order time + interval x Gamma(8, 1/8)`` when the customer keeps buying
    it (probability 0.6) and it is in stock then. The order happens if the
    customer has not dropped out by then and the data has not ended; the
    ``sched_*`` arrays keep every scheduled one, happened or not, so that
    the state of the world at any cutoff can be read back (``sched_from_s``
    is the time of the order that scheduled it, ``sched_due_s`` its due
    time).
    """

    cust: np.ndarray
    s: np.ndarray
    kind: np.ndarray  # 0 regular, 1 replenishment
    item_order: np.ndarray
    item_product: np.ndarray
    sched_cust: np.ndarray
    sched_from_s: np.ndarray
    sched_due_s: np.ndarray


def _group_starts(sorted_keys: np.ndarray, n_groups: int) -> np.ndarray:
    return np.searchsorted(sorted_keys, np.arange(n_groups + 1))


def rank_within(group: np.ndarray) -> np.ndarray:
    """Position of each row within its run of equal (sorted) group values."""
    n = len(group)
    if n == 0:
        return np.zeros(0, np.int64)
    start = np.r_[True, group[1:] != group[:-1]]
    idx = np.arange(n)
    first = np.maximum.accumulate(np.where(start, idx, 0))
    return idx - first


def draw_people(cfg: ShopConfig, chunk: int, rng: np.random.Generator) -> People:
    lo = chunk * cfg.chunk_size
    hi = min(cfg.customers, lo + cfg.chunk_size)
    n = hi - lo
    existing = rng.random(n) < cfg.existing_share
    signup = np.where(
        existing,
        cfg.start_s - rng.integers(30 * DAY, 1095 * DAY, n),
        cfg.start_s + ((rng.random(n) ** 1.3) * (cfg.days * DAY - DAY)).astype(np.int64),
    ).astype(np.int64)
    alive_from = np.maximum(signup, cfg.start_s)
    rate = rng.gamma(cfg.rate_shape, cfg.rate_scale, n)
    dropout = rng.beta(cfg.dropout_a, cfg.dropout_b, n)
    dormant = existing & (rng.random(n) < cfg.existing_dormant)
    death = np.where(dormant, cfg.start_s, np.iinfo(np.int64).max).astype(np.int64)
    seg = rng.choice(len(SEGMENTS), n, p=np.array(list(SEGMENTS.values())))
    intent_by_seg = np.array([cfg.response.segment_intent[s] for s in SEGMENT_NAMES])
    intent = intent_by_seg[seg] + rng.normal(0, 0.5, n)
    tz = rng.choice(len(TIMEZONES), n, p=np.array(list(TIMEZONES.values())))
    offsets = np.array([0, 1, 1, 1, -5, -6, -8, 9, 10, 5.5])
    pref = (rng.choice(np.array(PREFERRED_HOUR_PEAKS), n) + rng.normal(0, PREFERRED_HOUR_SD, n)) % 24
    opt_in = rng.random((n, 4)) < np.array(list(OPT_IN_RATES.values()))
    # Birthdays: some missing, a few on Feb 29 of a leap year.
    year = rng.integers(1950, 2006, n)
    doy = rng.integers(0, 365, n)
    month_days = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])
    cum = np.cumsum(month_days)
    month = np.searchsorted(cum, doy, side="right") + 1
    day = doy - np.r_[0, cum][month - 1] + 1
    feb29 = rng.random(n) < cfg.feb29_share
    year = np.where(feb29, 1952 + 4 * rng.integers(0, 13, n), year)
    month = np.where(feb29, 2, month)
    day = np.where(feb29, 29, day)
    missing = rng.random(n) < cfg.birth_date_missing
    month = np.where(missing, 0, month)
    aff = rng.dirichlet(np.full(len(CATEGORY_NAMES), 0.35), n)
    return People(
        idx=np.arange(lo, hi),
        signup_s=signup,
        alive_from_s=alive_from,
        death_s=death,
        rate=rate,
        dropout=dropout,
        segment=seg,
        intent=intent,
        open_affinity=rng.normal(0, 0.7, n),
        deal_sensitivity=rng.beta(2, 3, n),
        preferred_hour=pref,
        tz=tz,
        tz_offset_h=offsets[tz],
        opt_in=opt_in,
        birth_month=month,
        birth_day=day,
        birth_year=year,
        affinity_cum=np.cumsum(aff, axis=1),
        basket=rng.gamma(3.0, 1 / 3.0, n),
    )


class ProductSampler:
    """Samples products by customer category affinity and popularity."""

    def __init__(self, cat: Catalog):
        self.cat = cat
        self.by_cat = []
        self.cum = []
        for c in range(len(CATEGORY_NAMES)):
            members = np.flatnonzero(cat.category == c)
            self.by_cat.append(members)
            w = np.cumsum(cat.popularity[members])
            self.cum.append(w / w[-1])

    def sample(self, rng: np.random.Generator, aff_cum: np.ndarray, t: np.ndarray, in_stock: bool) -> np.ndarray:
        m = len(t)
        cats = (aff_cum < rng.random(m)[:, None]).sum(axis=1).clip(0, len(CATEGORY_NAMES) - 1)
        return self.sample_in(rng, cats, t, in_stock)

    def sample_in(self, rng: np.random.Generator, cats: np.ndarray, t: np.ndarray, in_stock: bool) -> np.ndarray:
        out = np.empty(len(t), np.int64)
        for c in np.unique(cats):
            rows = np.flatnonzero(cats == c)
            members, cum = self.by_cat[c], self.cum[c]
            best = members[np.searchsorted(cum, rng.random(len(rows)))]
            # Up to three tries for a product that exists (and is in stock) at t.
            for _ in range(3):
                ok = self.cat.created_s[best] <= t[rows]
                if in_stock:
                    ok &= self.cat.in_stock_at(best, t[rows])
                if ok.all():
                    break
                redo = ~ok
                best[redo] = members[np.searchsorted(cum, rng.random(redo.sum()))]
            out[rows] = best
        return out


def _purchases(cfg: ShopConfig, pp: People, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Organic purchase times per customer (BG/NBD-like), updating death times."""
    n = len(pp.idx)
    alive_days = np.where(pp.death_s <= cfg.start_s, 0.0, (cfg.end_s - pp.alive_from_s) / DAY)
    k = rng.poisson(pp.rate * alive_days)
    cust = np.repeat(np.arange(n), k)
    t = pp.alive_from_s[cust] + (rng.random(len(cust)) * (cfg.end_s - pp.alive_from_s[cust])).astype(np.int64)
    order = np.argsort(cust.astype(np.int64) * _SHIFT + (t - cfg.start_s + 1200 * DAY), kind="stable")
    cust, t = cust[order], t[order]
    rank = rank_within(cust)
    j = rng.geometric(pp.dropout)  # purchase after which the customer drops out
    keep = rank < j[cust]
    dies = keep & (rank == j[cust] - 1)
    pp.death_s[cust[dies]] = t[dies]
    return cust[keep], t[keep]


def draw_orders(cfg: ShopConfig, cat: Catalog, pp: People, rng: np.random.Generator,
                sampler: ProductSampler | None = None, taste: Taste | None = None) -> OrderDraws:
    """Organic purchases, their items and the replenishment chains (updates ``pp.death_s``).

    With ``taste`` (:class:`~cadence.synthetic.config.Tastes`) the items of
    regular orders follow the customers' tastes and complements instead of
    category affinity and popularity.

    Examples
    --------
    >>> from cadence.synthetic.catalog import make_catalog
    >>> cfg = ShopConfig(customers=200, days=120, seed=1)
    >>> rng = np.random.default_rng([cfg.seed, 1, 0])  # the stream of build_backbone
    >>> d = draw_orders(cfg, make_catalog(cfg), draw_people(cfg, 0, rng), rng)
    >>> bool((d.sched_due_s > d.sched_from_s).all()), set(d.kind.tolist()) <= {0, 1}
    (True, True)
    """
    sampler = sampler if sampler is not None else ProductSampler(cat)
    o_cust, o_s = _purchases(cfg, pp, rng)

    # Items of regular orders: 1 + Poisson(0.5) products, in stock when bought.
    n_items = 1 + rng.poisson(0.5, len(o_cust))
    it_order = np.repeat(np.arange(len(o_cust)), n_items)
    if taste is None:
        it_prod = sampler.sample(rng, pp.affinity_cum[o_cust[it_order]], o_s[it_order], in_stock=True)
    else:
        from cadence.synthetic.tastes import order_items

        it_prod = order_items(cfg, taste[0], taste[1], cat, o_cust, o_s, it_order, taste[2])
    o_kind = np.zeros(len(o_cust), np.int8)

    # Replenishment: a consumable is bought again after ~its interval, while alive.
    sched: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    frontier_order, frontier_prod = it_order, it_prod
    for _ in range(int(cfg.days / 20) + 1):
        cons = cat.consumable[frontier_prod]
        if not cons.any():
            break
        fo, fp = frontier_order[cons], frontier_prod[cons]
        gap = cat.interval_days[fp] * rng.gamma(8.0, 1 / 8.0, len(fp)) * DAY
        # Loyal repeat buyers replenish; others drift away from the product.
        again = rng.random(len(fp)) < 0.6
        nt = (o_s[fo] + gap).astype(np.int64)
        c = o_cust[fo]
        planned = again & cat.in_stock_at(fp, nt)
        sched.append((c[planned], o_s[fo][planned], nt[planned]))
        ok = planned & (nt < cfg.end_s) & (nt < pp.death_s[c])
        if not ok.any():
            break
        new_ids = len(o_cust) + np.arange(ok.sum())
        o_cust = np.r_[o_cust, c[ok]]
        o_s = np.r_[o_s, nt[ok]]
        o_kind = np.r_[o_kind, np.ones(ok.sum(), np.int8)]
        it_order = np.r_[it_order, new_ids]
        it_prod = np.r_[it_prod, fp[ok]]
        frontier_order, frontier_prod = new_ids, fp[ok]
    empty = np.zeros(0, np.int64)
    return OrderDraws(
        cust=o_cust, s=o_s, kind=o_kind, item_order=it_order, item_product=it_prod,
        sched_cust=np.concatenate([empty, *(a for a, _, _ in sched)]).astype(np.int64),
        sched_from_s=np.concatenate([empty, *(b for _, b, _ in sched)]).astype(np.int64),
        sched_due_s=np.concatenate([empty, *(d for _, _, d in sched)]).astype(np.int64),
    )


def _near_preferred_hour(t_s: np.ndarray, cust: np.ndarray, pp: People, rng: np.random.Generator, share: float,
                         lo_s: np.ndarray, hi_s: np.ndarray) -> np.ndarray:
    """Move a ``share`` of the times to the same local day at the preferred hour (1.5-hour sd)."""
    moved = rng.random(len(t_s)) < share
    hour = (pp.preferred_hour[cust] + rng.normal(0, 1.5, len(t_s))) % 24
    offset = (pp.tz_offset_h[cust] * 3600).astype(np.int64)
    day = (t_s + offset) // DAY * DAY
    at_hour = np.clip(day + (hour * 3600).astype(np.int64) - offset, lo_s[cust], hi_s[cust] - 1)
    return np.where(moved, at_hour, t_s)


def draw_sessions(cfg: ShopConfig, cat: Catalog, pp: People, rng: np.random.Generator, sampler: ProductSampler,
                  browse_rate: np.ndarray, lo_s: np.ndarray, hi_s: np.ndarray, o_cust: np.ndarray,
                  o_s: np.ndarray, it_order: np.ndarray, it_prod: np.ndarray,
                  taste: Taste | None = None) -> tuple[np.ndarray, ...]:
    """Browsing sessions in ``[lo_s, hi_s)`` per customer plus one purchase session per order, as events.

    Orders ``(o_cust, o_s)`` are sorted by (customer, time) with their items
    ``(it_order, it_prod)``. Returns ``ev_cust, ev_s, ev_type, ev_product,
    ev_query, ev_results, ev_session`` sorted by (customer, time). With
    ``taste`` free product views and fallback cart adds follow the customers'
    tastes (a clicked search's views stay in the query's category).

    Examples
    --------
    >>> from cadence.synthetic.catalog import make_catalog
    >>> cfg = ShopConfig(customers=100, days=30, seed=1)
    >>> cat, rng = make_catalog(cfg), np.random.default_rng(0)
    >>> pp = draw_people(cfg, 0, rng)
    >>> none = np.zeros(0, np.int64)
    >>> ev = draw_sessions(cfg, cat, pp, rng, ProductSampler(cat), np.full(100, 0.5), pp.alive_from_s,
    ...                    pp.alive_from_s + 10 * DAY, none, none, none, none)
    >>> bool(len(ev[0]) > 0 and (ev[1] >= pp.alive_from_s[ev[0]]).all() and EV["purchase"] not in ev[2])
    True
    """
    n = len(pp.idx)
    n_o = len(o_s)
    active_days = np.clip((hi_s - lo_s) / DAY, 0, None)
    m = rng.poisson(browse_rate * active_days)
    b_cust = np.repeat(np.arange(n), m)
    b_s = lo_s[b_cust] + (rng.random(len(b_cust)) * (hi_s - lo_s)[b_cust]).astype(np.int64)
    if cfg.browse_at_preferred_hour > 0 and len(b_cust):
        b_s = _near_preferred_hour(b_s, b_cust, pp, rng, cfg.browse_at_preferred_hour, lo_s, hi_s)
    # kinds: 0 bounce, 1 browse, 2 search, 3 cart, 4 checkout, 5 purchase
    b_kind = rng.choice(5, len(b_cust), p=[0.08, 0.42, 0.22, 0.20, 0.08])
    # Purchase sessions end in each order; they start a few minutes before it.
    p_cust, p_kind = o_cust, np.full(n_o, 5)
    n_ord_items = np.r_[np.zeros(len(b_cust), np.int64), np.bincount(it_order, minlength=n_o)]
    s_cust = np.r_[b_cust, p_cust]
    s_kind = np.r_[b_kind, p_kind]
    s_n = len(s_cust)
    # Event counts per block, in the order events happen inside a session.
    views = np.where(s_kind == 5, n_ord_items, 1 + rng.poisson(1.6, s_n))
    views = np.where(s_kind == 0, 0, views)
    has_search = (s_kind == 2) | ((s_kind != 0) & (rng.random(s_n) < 0.12))
    zero = has_search & (rng.random(s_n) < 0.15)
    clicked = has_search & ~zero & (rng.random(s_n) < 0.55)
    # A search session that is not clicked has no product views.
    views = np.where((s_kind == 2) & ~clicked, 0, views)
    adds = np.where(s_kind == 5, n_ord_items, np.where(np.isin(s_kind, (3, 4)), 1 + (rng.random(s_n) < 0.3), 0))
    removes = (adds > 0) & (s_kind != 5) & (rng.random(s_n) < 0.15)
    checkout = np.isin(s_kind, (4, 5))
    purchase = s_kind == 5
    blocks = np.stack([np.ones(s_n, np.int64) * (s_kind >= 0), has_search, views, adds, removes, checkout, purchase], axis=1).astype(np.int64)
    s_order = np.r_[np.full(len(b_cust), -1), np.arange(n_o)]
    n_ev = blocks.sum(axis=1)
    total = int(n_ev.sum())
    ev_session = np.repeat(np.arange(s_n), n_ev)
    pos = rank_within(ev_session)
    block_of = np.repeat(np.tile(np.arange(7), s_n), blocks.ravel())
    ev_type = np.array([EV["page_view"], EV["search"], EV["product_view"], EV["add_to_cart"],
                        EV["remove_from_cart"], EV["checkout_start"], EV["purchase"]])[block_of]
    ev_cust = s_cust[ev_session]
    # Seconds between events of a session; the first event starts it.
    gaps = rng.exponential(50.0, total).astype(np.int64) + 5
    gaps[pos == 0] = 0
    cs = np.cumsum(gaps)
    first = np.searchsorted(ev_session, np.arange(s_n))
    offset = cs - cs[first[ev_session]]
    # Purchase sessions end exactly at their order's time.
    last_offset = offset[np.r_[first[1:], total] - 1]
    s_start = np.r_[b_s, o_s - last_offset[len(b_cust):]]
    ev_s = s_start[ev_session] + offset

    # Products: purchase sessions view/add the order's items; others sample.
    ev_product = np.full(total, -1, np.int64)
    ev_query = np.full(total, None, dtype=object)
    ev_results = np.full(total, -1, np.int64)
    is_view = ev_type == EV["product_view"]
    is_add = ev_type == EV["add_to_cart"]
    is_rm = ev_type == EV["remove_from_cart"]
    sess_order = s_order[ev_session]
    in_order = sess_order >= 0
    # Items of an order, in order: start index per order.
    item_start = np.searchsorted(it_order, np.arange(n_o))
    rank_in_block = rank_within(ev_session * 8 + block_of)
    po = (is_view | is_add) & in_order
    ev_product[po] = it_prod[item_start[sess_order[po]] + rank_in_block[po]]
    # Search sessions: the query is a catalogue noun (or an unknown term).
    srch = np.flatnonzero(has_search)
    q_cat = (pp.affinity_cum[s_cust[srch]] < rng.random(len(srch))[:, None]).sum(axis=1).clip(0, len(CATEGORY_NAMES) - 1)
    q_word = rng.integers(0, 5, len(srch))
    q_adj = np.where(rng.random(len(srch)) < 0.3, rng.integers(0, len(ADJECTIVES), len(srch)), -1)
    nouns = np.array([[CATEGORIES[c][w] for w in range(5)] for c in CATEGORY_NAMES])
    q_text = nouns[q_cat, q_word].astype(object)
    with_adj = q_adj >= 0
    q_text[with_adj] = np.char.add(np.char.add(np.array(ADJECTIVES)[q_adj[with_adj]], " "), nouns[q_cat[with_adj], q_word[with_adj]].astype(str))
    # Results: products whose title holds the noun (and the adjective, if any).
    title_adj = np.array([ADJECTIVES.index(t.split(" ")[0]) for t in cat.title])
    word_key = cat.category * 5 + cat.title_word
    counts_word = np.bincount(word_key, minlength=len(CATEGORY_NAMES) * 5)
    counts_adj = np.bincount(word_key * len(ADJECTIVES) + title_adj, minlength=len(CATEGORY_NAMES) * 5 * len(ADJECTIVES))
    qk = q_cat * 5 + q_word
    match_count = np.where(with_adj, counts_adj[qk * len(ADJECTIVES) + np.maximum(q_adj, 0)], counts_word[qk])
    is_zero = zero[srch] | (match_count == 0)
    unknown = rng.integers(0, len(UNKNOWN_QUERIES), len(srch))
    q_text[zero[srch]] = np.array(UNKNOWN_QUERIES, dtype=object)[unknown[zero[srch]]]
    match_count = np.where(zero[srch], 0, match_count)
    s_event = np.flatnonzero(ev_type == EV["search"])
    ev_query[s_event] = q_text
    ev_results[s_event] = match_count
    # Non-order views: clicked searches view matching products; others by affinity.
    free = np.flatnonzero(is_view & ~in_order)
    cats = (pp.affinity_cum[ev_cust[free]] < rng.random(len(free))[:, None]).sum(axis=1).clip(0, len(CATEGORY_NAMES) - 1)
    sess_search_cat = np.full(s_n, -1)
    sess_search_cat[srch] = np.where(is_zero, -1, q_cat)
    sc = sess_search_cat[ev_session[free]]
    cats = np.where(sc >= 0, sc, cats)
    if taste is None:
        ev_product[free] = sampler.sample_in(rng, cats, ev_s[free], in_stock=False)
    # Cart adds in non-purchase sessions: the first viewed products, if in stock.
    view_idx = np.flatnonzero(is_view)
    first_view = np.searchsorted(view_idx, first)
    fa = np.flatnonzero((is_add | is_rm) & ~in_order)
    src = first_view[ev_session[fa]] + np.where(is_rm[fa], 0, rank_in_block[fa])
    src = np.minimum(src, len(view_idx) - 1)
    same = ev_session[view_idx[src]] == ev_session[fa]
    if taste is None:
        fallback = sampler.sample(rng, pp.affinity_cum[ev_cust[fa]], ev_s[fa], True)
    else:
        fallback = np.full(len(fa), -1, np.int64)
        _taste_views_and_carts(cfg, cat, taste, ev_cust, ev_s, ev_product, free, sc, fa[~same], fallback, ~same)
    ev_product[fa] = np.where(same, ev_product[view_idx[src]], fallback)
    drop_add = is_add & ~in_order
    drop_add[drop_add] = ~cat.in_stock_at(ev_product[drop_add], ev_s[drop_add])
    keep = ~drop_add & (ev_s < cfg.end_s) & (ev_s >= pp.alive_from_s[ev_cust])
    # A removal without an add in its session goes too.
    ev_cust, ev_s, ev_type, ev_product, ev_query, ev_results, ev_session = (
        a[keep] for a in (ev_cust, ev_s, ev_type, ev_product, ev_query, ev_results, ev_session)
    )
    has_add = np.zeros(s_n, bool)
    has_add[ev_session[ev_type == EV["add_to_cart"]]] = True
    keep = ~((ev_type == EV["remove_from_cart"]) & ~has_add[ev_session])
    ev_cust, ev_s, ev_type, ev_product, ev_query, ev_results, ev_session = (
        a[keep] for a in (ev_cust, ev_s, ev_type, ev_product, ev_query, ev_results, ev_session)
    )
    perm = np.lexsort((ev_s, ev_cust))
    ev_cust, ev_s, ev_type, ev_product, ev_query, ev_results, ev_session = (
        a[perm] for a in (ev_cust, ev_s, ev_type, ev_product, ev_query, ev_results, ev_session)
    )
    return ev_cust, ev_s, ev_type, ev_product, ev_query, ev_results, ev_session

def _taste_views_and_carts(cfg: ShopConfig, cat: Catalog, taste: Taste, ev_cust: np.ndarray, ev_s: np.ndarray,
                           ev_product: np.ndarray, free: np.ndarray, search_cat: np.ndarray, carts: np.ndarray,
                           fallback: np.ndarray, fill: np.ndarray) -> None:
    """Free product views and fallback cart adds by taste, from one pass over the catalogue (in place)."""
    from cadence.synthetic.tastes import mix, static_draws

    it, ct, trng = taste
    q = np.r_[free, carts]
    nv = len(free)
    category = np.r_[search_cat, np.full(len(carts), -1)]
    static, u = static_draws(cfg, it, ct, ev_cust[q], ev_s[q], trng, np.arange(len(q)) >= nv, category)
    ev_product[free] = mix(cfg, it, ct, cat, ev_cust[free], ev_s[free], static[:nv, :1], u[:nv, :1], False,
                           search_cat)
    fallback[fill] = mix(cfg, it, ct, cat, ev_cust[carts], ev_s[carts], static[nv:], u[nv:], True)


#: customer code * ORDER_KEY + epoch seconds: one sortable key per (customer, time).
ORDER_KEY = 1 << 40


def orders_before(order_keys: np.ndarray, customer: np.ndarray, t: np.ndarray,
                  window_s: int = 90 * 86_400) -> tuple[np.ndarray, np.ndarray]:
    """The world's own count of each customer's orders in ``[t - window, t)`` and their last order time before ``t``.

    Any keyed event times work the same (:func:`realised_traits` counts session starts with it).
    The world keeps its own copy so that the truth shares no code with the
    estimators it judges (their copy is the feature layer's). ``order_keys``
    are sorted ``customer * ORDER_KEY + seconds``; the last time is a very
    negative number when there is none.

    >>> k = np.sort(np.array([0 * ORDER_KEY + 5, 0 * ORDER_KEY + 50, 1 * ORDER_KEY + 7]))
    >>> n, last = orders_before(k, np.array([0, 1]), np.array([60, 7]), window_s=20)
    >>> n.tolist(), last.tolist()[0]
    ([1, 0], 50)
    """
    base = customer.astype(np.int64) * ORDER_KEY
    hi = np.searchsorted(order_keys, base + t, side="left")
    lo = np.searchsorted(order_keys, base + t - window_s, side="left")
    prev = order_keys[np.maximum(hi - 1, 0)] if len(order_keys) else np.zeros(len(t), np.int64)
    own = (hi > 0) & (prev >= base) & (prev < base + ORDER_KEY)
    return (hi - lo).astype(np.int64), np.where(own, prev - base, np.iinfo(np.int64).min)


def observable_traits(cfg: ShopConfig, pp: People, browse_rate: np.ndarray) -> dict[str, np.ndarray]:
    """The standardised traits of :data:`~cadence.synthetic.config.OBSERVABLE_TRAITS` (fixed transforms,
    so a customer's traits never depend on who else is in the chunk)."""
    from scipy.special import digamma, logit, polygamma

    log_rate_mean = digamma(cfg.rate_shape) + np.log(cfg.rate_scale)
    log_rate_sd = float(np.sqrt(polygamma(1, cfg.rate_shape)))
    dormant = pp.death_s <= cfg.start_s
    tenure_years = (cfg.start_s - pp.signup_s) / (365.0 * DAY)
    return {
        "frequency": (np.log(pp.rate) - log_rate_mean) / log_rate_sd,
        "recency": logit(np.clip(pp.dropout, 1e-6, 1 - 1e-6)) / 1.8 + 1.5 * dormant,
        "engagement": pp.open_affinity / 0.7,
        "tenure": tenure_years - 0.5,
        "browsing": (np.log(browse_rate) - np.log(cfg.browse_per_purchase * cfg.rate_shape * cfg.rate_scale)) / 1.2,
    }


def observable_response_types(cfg: ShopConfig, pp: People, browse_rate: np.ndarray, chunk: int) -> None:
    """Redraw segment, intent and deal sensitivity from observable traits (:class:`ObservableResponse`), in place.

    Uses its own random stream keyed by (seed, chunk), so no other draw of the shop moves.
    """
    hidden = _hidden_response_draws(cfg, len(pp.idx), chunk)
    pp.segment, pp.intent, pp.deal_sensitivity = _response(cfg, observable_traits(cfg, pp, browse_rate), *hidden)


def _hidden_response_draws(cfg: ShopConfig, n: int, chunk: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per customer, the part of the response no feature sees: Gumbel draws per segment, intent noise, base deal logit."""
    from scipy.special import logit

    rng = np.random.default_rng([cfg.seed, 7, chunk])
    gumbel = rng.gumbel(size=(n, len(SEGMENTS)))
    noise = rng.normal(0, 0.5, n)
    return gumbel, noise, logit(rng.beta(2, 3, n))


def _response(cfg: ShopConfig, z: dict[str, np.ndarray], gumbel: np.ndarray, noise: np.ndarray,
              deal0: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Segment, intent and deal sensitivity of :class:`ObservableResponse`'s multinomial logit, row by row."""
    from scipy.special import expit

    spec = cfg.observable_response
    assert spec is not None
    score = np.log(np.array(list(SEGMENTS.values()))) + gumbel
    for k, seg in enumerate(SEGMENT_NAMES):
        for trait, w in spec.segment_weights.get(seg, {}).items():
            score[:, k] += w * z[trait]
    segment = np.argmax(score, axis=1)
    intent_by_seg = np.array([cfg.response.segment_intent[s] for s in SEGMENT_NAMES])
    deal = deal0.copy()
    for trait, w in spec.deal_weights.items():
        deal += w * z[trait]
    return segment, intent_by_seg[segment] + noise, expit(deal)


#: Fixed centring and scale of the realised traits (:func:`realised_traits`): roughly the mean
#: and standard deviation over the triggers of default-sized worlds, so a weight of 1 means
#: about one standard deviation per unit of log-odds as for the hidden traits.
REALISED_SCALE: dict[str, tuple[float, float]] = {
    "frequency": (0.65, 0.6), "recency": (2.85, 1.25), "tenure": (0.8, 0.95), "browsing": (1.65, 0.75),
}


def realised_traits(cfg: ShopConfig, bb: Backbone) -> dict[str, np.ndarray]:
    """Per trigger, the standardised traits as the customer's own history shows them just before the trigger.

    ``frequency``: log(1 + organic orders in the 90 days before); ``recency``:
    log(1 + days since the last organic order, or since the customer became
    active when there is none); ``tenure``: years since signup; ``browsing``:
    log(1 + sessions started in the 90 days before); each centred and scaled
    by :data:`REALISED_SCALE`. ``engagement`` is the hidden open affinity:
    opens depend on what the policy sends, so a realised count would make
    the response depend on the policy being judged. The world counts its
    own organic orders and sessions (the policy-independent backbone), so
    the truth shares no code with the feature layer that measures the same.
    """
    c, t = bb.trig_cust, bb.trig_s
    pp = bb.people
    n90, last = orders_before(np.sort(bb.ord_cust.astype(np.int64) * ORDER_KEY + bb.ord_s), c, t)
    last = np.where(last < 0, pp.alive_from_s[c], last)
    _, first = np.unique(bb.ev_session, return_index=True)  # events sort by (customer, time): a session's first
    n_sessions, _ = orders_before(np.sort(bb.ev_cust[first].astype(np.int64) * ORDER_KEY + bb.ev_s[first]), c, t)
    raw = {
        "frequency": np.log1p(n90),
        "recency": np.log1p(np.maximum(t - last, 0) / DAY),
        "tenure": (t - pp.signup_s[c]) / (365.0 * DAY),
        "browsing": np.log1p(n_sessions),
    }
    z = {k: (v - REALISED_SCALE[k][0]) / REALISED_SCALE[k][1] for k, v in raw.items()}
    z["engagement"] = pp.open_affinity[c] / 0.7
    return z


def realised_response_types(cfg: ShopConfig, bb: Backbone, chunk: int) -> None:
    """Per trigger, segment, intent and deal sensitivity from the realised traits (``basis="realised"``), in place.

    The customer keeps their hidden draws (:func:`_hidden_response_draws`);
    what moves from trigger to trigger is what their history shows then.
    The per-customer ``segment``, ``intent`` and ``deal_sensitivity`` become
    undefined (-1 and NaN): the response reads ``bb.trig_response``.
    """
    gumbel, noise, deal0 = _hidden_response_draws(cfg, len(bb.people.idx), chunk)
    c = bb.trig_cust
    bb.trig_response = _response(cfg, realised_traits(cfg, bb), gumbel[c], noise[c], deal0[c])
    pp = bb.people
    pp.segment = np.full(len(pp.idx), -1)
    pp.intent = np.full(len(pp.idx), np.nan)
    pp.deal_sensitivity = np.full(len(pp.idx), np.nan)


def trigger_response(bb: Backbone) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each trigger's (segment, intent, deal sensitivity): its own in a realised world, else its customer's."""
    if bb.trig_response is not None:
        return bb.trig_response
    pp, c = bb.people, bb.trig_cust
    return pp.segment[c], pp.intent[c], pp.deal_sensitivity[c]


def build_backbone(cfg: ShopConfig, cat: Catalog, chunk: int) -> Backbone:
    """Draw chunk ``chunk`` of the world; deterministic in (cfg, chunk)."""
    rng = np.random.default_rng([cfg.seed, 1, chunk])
    pp = draw_people(cfg, chunk, rng)
    n = len(pp.idx)
    sampler = ProductSampler(cat)
    taste: Taste | None = None
    if cfg.tastes is not None:
        from cadence.synthetic.tastes import customer_tastes, item_tastes

        taste = (item_tastes(cfg, cat), customer_tastes(cfg, pp.affinity_cum, chunk),
                 np.random.default_rng([cfg.seed, 10, chunk]))
    draws = draw_orders(cfg, cat, pp, rng, sampler, taste)
    o_cust, o_s, o_kind = draws.cust, draws.s, draws.kind
    it_order, it_prod = draws.item_order, draws.item_product

    # Orders sorted by (customer, time); remap item order indices.
    perm = np.lexsort((o_s, o_cust))
    inv = np.empty_like(perm)
    inv[perm] = np.arange(len(perm))
    o_cust, o_s, o_kind = o_cust[perm], o_s[perm], o_kind[perm]
    it_order = inv[it_order]
    # Collapse duplicate products within an order into a quantity.
    key = it_order.astype(np.int64) * cat.n + it_prod
    uk, qty = np.unique(key, return_counts=True)
    it_order, it_prod = uk // cat.n, uk % cat.n
    qty = qty + rng.poisson(0.15, len(qty))
    it_price = cat.price_at(it_prod, o_s[it_order])

    # Order status: placed, shipped 1-3 days later, delivered 2-5 days after;
    # 6% delayed in between; 2% cancelled instead of shipping.
    n_o = len(o_s)
    cancelled = rng.random(n_o) < 0.02
    delayed = ~cancelled & (rng.random(n_o) < 0.06)
    ship = o_s + rng.integers(DAY // 2, 3 * DAY, n_o)
    delay_t = ship + rng.integers(DAY // 2, 2 * DAY, n_o)
    deliver = ship + rng.integers(2 * DAY, 5 * DAY, n_o) + np.where(delayed, 3 * DAY, 0)
    st_o = [np.arange(n_o), np.flatnonzero(cancelled), np.flatnonzero(~cancelled),
            np.flatnonzero(delayed), np.flatnonzero(~cancelled)]
    st_s = [o_s, o_s[cancelled] + rng.integers(3600, DAY, cancelled.sum()), ship[~cancelled],
            delay_t[delayed], deliver[~cancelled]]
    st_c = [np.full(len(a), code) for a, code in zip(st_o, (0, 4, 1, 3, 2), strict=True)]
    status_order = np.concatenate(st_o)
    status_s = np.concatenate(st_s)
    status_code = np.concatenate(st_c).astype(np.int8)
    ok = status_s < cfg.end_s
    status_order, status_s, status_code = status_order[ok], status_s[ok], status_code[ok]

    # ---- sessions -------------------------------------------------------
    active_end = np.minimum(pp.death_s, cfg.end_s)
    browse_rate = cfg.browse_per_purchase * pp.rate * rng.lognormal(0, 0.5, n) + cfg.browse_floor
    ev_cust, ev_s, ev_type, ev_product, ev_query, ev_results, ev_session = draw_sessions(
        cfg, cat, pp, rng, sampler, browse_rate, pp.alive_from_s, active_end, o_cust, o_s, it_order, it_prod, taste)

    bb = Backbone(
        people=pp, ev_cust=ev_cust, ev_s=ev_s, ev_type=ev_type.astype(np.int8), ev_product=ev_product,
        ev_query=ev_query, ev_results=ev_results, ev_session=ev_session,
        ord_cust=o_cust, ord_s=o_s, ord_kind=o_kind, item_order=it_order, item_product=it_prod,
        item_qty=qty, item_price=it_price, status_order=status_order, status_s=status_s,
        status_code=status_code,
        trig_cust=np.zeros(0, np.int64), trig_stage=np.zeros(0, np.int8), trig_s=np.zeros(0, np.int64),
        trig_products=np.zeros((0, 3), np.int64), trig_query=np.zeros(0, object), trig_order=np.zeros(0, np.int64),
        uniforms=np.zeros((0, 8)), browse_rate=browse_rate,
        item_tastes=None if taste is None else taste[0], customer_tastes=None if taste is None else taste[1],
    )
    realised = cfg.observable_response is not None and cfg.observable_response.basis == "realised"
    if cfg.observable_response is not None and not realised:
        observable_response_types(cfg, bb.people, browse_rate, chunk)
    from cadence.synthetic.world_triggers import world_triggers

    world_triggers(cfg, cat, bb)
    if realised:
        realised_response_types(cfg, bb, chunk)
    bb.uniforms = rng.random((len(bb.trig_s), 8))
    return bb
