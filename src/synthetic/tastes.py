"""Latent item tastes (:class:`~cadence.synthetic.config.Tastes`): who likes which product, when.

The formulas are in the :class:`~cadence.synthetic.config.Tastes` docstring.
This module holds the product side (taste factors, complements, candidate
sets), the customer side (taste factors, the regular purchases whose
complements they remember) and the two operations the world needs: drawing
a product a customer chooses at ``t`` and the true relevance of a product
to a customer at ``t``.

Choice probabilities need every product's weight for the customer; they are
computed densely for blocks of customers (``block x products`` at a time) so
memory stays flat, and drawn by bisection on each customer's cumulative
weights, with products ordered by (category, creation time) so the products
that exist at ``t`` in a category are a prefix of its range.
Written by hand: no library draws from a time-varying mixture of a
low-rank taste model and a purchase-history kernel.

Examples
--------
>>> from cadence.synthetic.catalog import make_catalog
>>> from cadence.synthetic.config import ShopConfig, Tastes
>>> cfg = ShopConfig(customers=50, days=30, seed=1, tastes=Tastes())
>>> cat = make_catalog(cfg)
>>> items = item_tastes(cfg, cat)
>>> items.complements.shape == (cat.n, 2)
True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from cadence.synthetic.catalog import CATEGORY_NAMES, Catalog
from cadence.synthetic.config import CATEGORIES, TASTE_HISTORY, TASTE_TRIES, ShopConfig, Tastes

_SHIFT = np.int64(1) << np.int64(34)  # customer above, seconds below
#: Elements of the dense (customers x products) weight block computed at a time.
_BLOCK_ELEMENTS = 2_000_000
_NOUN_CATEGORY = {noun: k for k, c in enumerate(CATEGORIES) for noun in CATEGORIES[c]}


def _spec(cfg: ShopConfig) -> Tastes:
    if cfg.tastes is None:
        raise ValueError("this shop has no latent tastes: set ShopConfig(tastes=Tastes()) to use them")
    return cfg.tastes


@dataclass(frozen=True)
class ItemTastes:
    """The product side of tastes, drawn once per shop from stream ``(seed, 8)``."""

    factors: np.ndarray  # (n, k) V_i
    log_pop: np.ndarray  # log(pi_i / Pi_cat(i))
    category: np.ndarray
    created_s: np.ndarray
    complements: np.ndarray  # (n, m) partner products of each product
    order: np.ndarray  # products sorted by (category, creation time)
    cat_start: np.ndarray  # (n_cat + 1,) start of each category's range in ``order``
    created_sorted: np.ndarray  # created_s[order]
    top: np.ndarray  # (n_cat + 1, L) most popular products per category (row n_cat: overall), -1 padded

    @property
    def n(self) -> int:
        return len(self.category)

    def n_existing(self, t: np.ndarray) -> np.ndarray:
        """Products created at or before each ``t``."""
        return np.searchsorted(np.sort(self.created_s), t, side="right")


def item_tastes(cfg: ShopConfig, cat: Catalog) -> ItemTastes:
    """Product taste factors, complements and popularity lists (deterministic in the config)."""
    spec = _spec(cfg)
    rng = np.random.default_rng([cfg.seed, 8])
    n, n_cat = cat.n, len(CATEGORY_NAMES)
    factors = rng.normal(0.0, 1.0 / np.sqrt(spec.factors), (n, spec.factors))
    cat_pop = np.bincount(cat.category, weights=cat.popularity, minlength=n_cat)
    log_pop = np.log(cat.popularity / cat_pop[cat.category])
    # Complements: even slots in the product's own category, odd ones in its category's partner.
    partner = rng.permutation(n_cat)
    by_cat = [np.flatnonzero(cat.category == k) for k in range(n_cat)]
    cum = [np.cumsum(cat.popularity[m]) / cat.popularity[m].sum() for m in by_cat]
    comp = np.empty((n, spec.complements), np.int64)
    for j in range(spec.complements):
        target = cat.category if j % 2 == 0 else partner[cat.category]
        u = rng.random(n)
        for k in range(n_cat):
            rows = np.flatnonzero(target == k)
            pick = by_cat[k][np.minimum(np.searchsorted(cum[k], u[rows], side="right"), len(by_cat[k]) - 1)]
            comp[rows, j] = pick
    order = np.lexsort((cat.created_s, cat.category))
    cat_start = np.searchsorted(cat.category[order], np.arange(n_cat + 1))
    length = spec.candidates + 3
    top = np.full((n_cat + 1, length), -1, np.int64)
    for k in range(n_cat):
        best = by_cat[k][np.argsort(-cat.popularity[by_cat[k]], kind="stable")][:length]
        top[k, :len(best)] = best
    overall = np.argsort(-cat.popularity, kind="stable")[:length]
    top[n_cat, :len(overall)] = overall
    return ItemTastes(factors=factors, log_pop=log_pop, category=cat.category, created_s=cat.created_s,
                      complements=comp, order=order, cat_start=cat_start, created_sorted=cat.created_s[order],
                      top=top)


@dataclass
class CustomerTastes:
    """The customer side of one chunk: taste factors and the regular purchases they remember.

    ``hist_key`` (sorted ``customer * 2**34 + seconds``) and ``hist_prod`` are
    every item of the customer's regular (non-replenishment) organic orders,
    one entry per drawn item; ``hist_prod`` is -1 until drawn.
    """

    log_aff: np.ndarray  # (n, n_cat)
    factors: np.ndarray  # (n, k) U_c
    hist_key: np.ndarray
    hist_prod: np.ndarray


def customer_tastes(cfg: ShopConfig, affinity_cum: np.ndarray, chunk: int) -> CustomerTastes:
    """Taste factors of a chunk's customers from stream ``(seed, 9, chunk)``."""
    spec = _spec(cfg)
    rng = np.random.default_rng([cfg.seed, 9, chunk])
    aff = np.diff(affinity_cum, axis=1, prepend=0)
    with np.errstate(divide="ignore"):
        log_aff = np.log(np.maximum(aff, 1e-300))
    empty = np.zeros(0, np.int64)
    return CustomerTastes(log_aff=log_aff, factors=rng.normal(0.0, 1.0, (len(aff), spec.factors)),
                          hist_key=empty, hist_prod=empty.copy())


def _log_weight(spec: Tastes, it: ItemTastes, ct: CustomerTastes, cust: np.ndarray, prod: np.ndarray) -> np.ndarray:
    """``log w_ci`` for aligned (customer, product) pairs."""
    dot = np.einsum("ij,ij->i", ct.factors[cust], it.factors[prod])
    return ct.log_aff[cust, it.category[prod]] + it.log_pop[prod] + spec.taste_scale * dot


def _scan(spec: Tastes, it: ItemTastes, ct: CustomerTastes, cust: np.ndarray, t: np.ndarray,
          u: np.ndarray | None = None, category: np.ndarray | None = None,
          tries: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
    """Mass of the products existing at ``t`` for each query, and draws from them.

    Returns ``(mass, shift, draws)``: ``mass = sum_{j in E(t)} exp(log w_cj - shift_c)``,
    ``shift_c`` the customer's largest log weight, and ``draws`` (n, T)
    products drawn in proportion to ``w`` among existing ones (within
    ``category`` where it is >= 0), one per column of the uniforms ``u``
    (n, T, 2): the first picks the category, the second the product; with
    ``tries`` (n,) a query gets only its first ``tries`` draws (-1 after).
    """
    n_q, n_cat, n_p = len(cust), len(CATEGORY_NAMES), it.n
    mass, shift = np.zeros(n_q), np.zeros(n_q)
    n_try = 0 if u is None else u.shape[1]
    draws = np.full((n_q, n_try), -1, np.int64)
    if n_q == 0:
        return mass, shift, draws
    # Existing products of each category at t: a prefix of its range in ``order``.
    n_exist = np.stack([np.searchsorted(it.created_sorted[it.cat_start[k]:it.cat_start[k + 1]], t, side="right")
                        for k in range(n_cat)], axis=1)
    q_order = np.argsort(cust, kind="stable")
    sorted_cust = cust[q_order]
    block = max(1, _BLOCK_ELEMENTS // n_p)
    customers = np.unique(cust)
    vf = it.factors[it.order].T
    base = it.log_pop[it.order]
    cat_of = it.category[it.order]
    steps = int(np.ceil(np.log2(n_p + 1))) + 1
    for b0 in range(0, len(customers), block):
        cb = customers[b0:b0 + block]
        lo_q = np.searchsorted(sorted_cust, cb[0], side="left")
        hi_q = np.searchsorted(sorted_cust, cb[-1], side="right")
        qs = q_order[lo_q:hi_q]
        logw = ct.log_aff[cb][:, cat_of]
        logw += base
        logw += spec.taste_scale * (ct.factors[cb] @ vf)
        top = logw.max(axis=1)
        logw -= top[:, None]
        np.exp(logw, out=logw)
        cum = np.zeros((len(cb), n_p + 1))
        np.cumsum(logw, axis=1, out=cum[:, 1:])
        del logw
        row = np.searchsorted(cb, cust[qs])
        starts = it.cat_start[:-1]
        m = cum[row[:, None], starts[None, :] + n_exist[qs]] - cum[row[:, None], starts[None, :]]
        mass[qs], shift[qs] = m.sum(axis=1), top[row]
        cm_all = np.cumsum(m, axis=1)
        for j in range(n_try):
            sel = np.flatnonzero(tries[qs] > j) if tries is not None else np.arange(len(qs))
            qj, rj, mj = qs[sel], row[sel], m[sel]
            uj = u[qj, j]  # type: ignore[index]
            k = np.minimum((cm_all[sel] < (uj[:, 0] * mass[qj])[:, None]).sum(axis=1), n_cat - 1)
            k = np.where(mj[np.arange(len(qj)), k] > 0, k, np.argmax(mj, axis=1))  # float edge: an empty category
            if category is not None:
                fixed = category[qj]
                usable = (fixed >= 0) & (mj[np.arange(len(qj)), np.maximum(fixed, 0)] > 0)
                k = np.where(usable, fixed, k)
            lo = it.cat_start[k].astype(np.int64)
            hi = lo + n_exist[qj, k]
            x = cum[rj, lo] + uj[:, 1] * (cum[rj, hi] - cum[rj, lo])
            # Bisection: the largest position p in [lo, hi) with cum[p] <= x has a positive weight.
            for _ in range(steps):
                mid = (lo + hi) // 2
                go = (hi - lo > 1) & (cum[rj, mid] <= x)
                stay = (hi - lo > 1) & ~go
                lo = np.where(go, mid, lo)
                hi = np.where(stay, mid, hi)
            draws[qj, j] = it.order[np.minimum(lo, n_p - 1)]
    return mass, shift, draws


def _kernel(spec: Tastes, it: ItemTastes, ct: CustomerTastes, cust: np.ndarray,
            t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Complement partners of the last :data:`TASTE_HISTORY` purchases before ``t`` and their kernel weights.

    Returns ``(partner, kappa)``, each (n, TASTE_HISTORY x complements); a
    partner that does not exist at ``t`` has weight 0.
    """
    n, m = len(cust), it.complements.shape[1]
    partner = np.full((n, TASTE_HISTORY * m), -1, np.int64)
    kappa = np.zeros((n, TASTE_HISTORY * m))
    if n == 0 or m == 0 or len(ct.hist_key) == 0:
        return partner, kappa
    key = cust.astype(np.int64) * _SHIFT + t
    idx = np.searchsorted(ct.hist_key, key, side="left")
    r = idx[:, None] - np.arange(1, TASTE_HISTORY + 1)[None, :]  # (n, H): latest purchase first
    rr = np.maximum(r, 0)
    hk, hp = ct.hist_key[rr], ct.hist_prod[rr]
    ok = (r >= 0) & (hk // _SHIFT == cust[:, None]) & (hp >= 0)
    age = (t[:, None] - hk % _SHIFT) / 86_400.0
    weight = np.where(ok, np.exp(-age / spec.complement_days), 0.0)
    b = it.complements[np.maximum(hp, 0)]  # (n, H, m)
    partner = np.where(ok[:, :, None], b, -1).reshape(n, -1)
    kappa = (weight[:, :, None] * (it.created_s[b] <= t[:, None, None])).reshape(n, -1)
    return partner, kappa


def _share(spec: Tastes, k_total: np.ndarray) -> np.ndarray:
    return spec.complement_share * k_total / (1.0 + spec.complement_share * k_total)


def static_draws(cfg: ShopConfig, it: ItemTastes, ct: CustomerTastes, cust: np.ndarray, t: np.ndarray,
                 rng: np.random.Generator, in_stock: bool | np.ndarray,
                 category: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The taste part of choices (it does not depend on purchase history): draws and the mixture uniforms.

    Returns ``(static, u)``: (n, T) products drawn from ``w`` among those
    existing at ``t`` and (n, T, 4) uniforms, ``T = TASTE_TRIES`` where
    ``in_stock`` (a flag, or one per query) else 1 (later columns -1).
    """
    need = np.broadcast_to(np.asarray(in_stock, bool), (len(cust),))
    tries = np.where(need, TASTE_TRIES, 1)
    u = rng.random((len(cust), int(tries.max()) if len(cust) else 1, 4))
    _, _, static = _scan(_spec(cfg), it, ct, cust, t, u[:, :, :2], category, tries)
    return static, u


def mix(cfg: ShopConfig, it: ItemTastes, ct: CustomerTastes, cat: Catalog, cust: np.ndarray, t: np.ndarray,
        static: np.ndarray, u: np.ndarray, in_stock: bool, category: np.ndarray | None = None) -> np.ndarray:
    """Choices from ``p_ci(t)``: each try takes a complement with probability ``g`` else its taste draw.

    The first try in stock at ``t`` wins when ``in_stock`` (rejection, so the
    choice follows ``p_ci(t)`` restricted to products in stock); the
    purchase history read is ``ct``'s as it stands.
    """
    spec = _spec(cfg)
    n, tries = static.shape
    partner, kappa = _kernel(spec, it, ct, cust, t)
    k_total = kappa.sum(axis=1)
    g = _share(spec, k_total)
    if category is not None:
        g = np.where(category >= 0, 0.0, g)
    out = static[:, -1].copy()
    done = np.zeros(n, bool)
    cum = np.cumsum(kappa, axis=1)
    for j in range(tries):
        pick = static[:, j].copy()
        comp = (u[:, j, 2] < g) & (k_total > 0)
        if comp.any():
            col = np.minimum((cum[comp] < (u[comp, j, 3] * k_total[comp])[:, None]).sum(axis=1), kappa.shape[1] - 1)
            pick[comp] = partner[np.flatnonzero(comp), col]
        ok = ~done & (cat.in_stock_at(pick, t) if in_stock else True)
        out[ok] = pick[ok]
        done |= ok
    out[~done] = pick[~done]  # rare: every try out of stock; keep the last
    return out


def choose(cfg: ShopConfig, it: ItemTastes, ct: CustomerTastes, cat: Catalog, cust: np.ndarray, t: np.ndarray,
           rng: np.random.Generator, in_stock: bool, category: np.ndarray | None = None) -> np.ndarray:
    """Products the customers choose at ``t``: draws from ``p_ci(t)`` (in stock at ``t`` if asked).

    With ``category`` (>= 0 where it applies) the draw is from the taste
    weights restricted to that category (a clicked search), no complements.
    """
    static, u = static_draws(cfg, it, ct, cust, t, rng, in_stock, category)
    return mix(cfg, it, ct, cat, cust, t, static, u, in_stock, category)


def order_items(cfg: ShopConfig, it: ItemTastes, ct: CustomerTastes, cat: Catalog, o_cust: np.ndarray,
                o_s: np.ndarray, it_order: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Items of regular orders (sorted by customer, time), drawn order by order so complements of
    earlier orders count; fills ``ct``'s purchase history as it goes."""
    from cadence.synthetic.backbone import rank_within

    cust, t = o_cust[it_order], o_s[it_order]
    ct.hist_key = cust.astype(np.int64) * _SHIFT + t
    ct.hist_prod = np.full(len(cust), -1, np.int64)
    static, u = static_draws(cfg, it, ct, cust, t, rng, in_stock=True)
    rank = rank_within(o_cust)[it_order]
    by_rank = np.argsort(rank, kind="stable")
    bounds = np.searchsorted(rank[by_rank], np.arange(int(rank.max()) + 2 if len(rank) else 1))
    for k in range(len(bounds) - 1):
        rows = by_rank[bounds[k]:bounds[k + 1]]
        if len(rows):
            ct.hist_prod[rows] = mix(cfg, it, ct, cat, cust[rows], t[rows], static[rows], u[rows], in_stock=True)
    return ct.hist_prod.copy()


@dataclass(frozen=True)
class MassTable:
    """Every customer's total taste weight of the products existing at any ``t >= since``, precomputed.

    Relevance needs ``sum_{j in E(t)} w_cj``; the messages of a chunk ask
    for it round after round, so one dense pass stores, per customer, the
    weight of the products created by ``since`` and the running weight of
    later ones in creation order (``customers x later products``).
    """

    since: int
    shift: np.ndarray  # (n,) the customer's largest log weight
    base: np.ndarray  # (n,) weight of products created at or before ``since``
    later_s: np.ndarray  # creation times of later products, ascending
    cum: np.ndarray  # (n, n_later + 1) running weight of later products

    def mass(self, cust: np.ndarray, t: np.ndarray) -> np.ndarray:
        return self.base[cust] + self.cum[cust, np.searchsorted(self.later_s, t, side="right")]


def mass_table(cfg: ShopConfig, it: ItemTastes, ct: CustomerTastes, since: int) -> MassTable:
    """The :class:`MassTable` of a chunk's customers for times at or after ``since``."""
    spec = _spec(cfg)
    n, n_p = len(ct.factors), it.n
    later = np.flatnonzero(it.created_s > since)
    later = later[np.argsort(it.created_s[later], kind="stable")]
    cols = np.r_[np.flatnonzero(it.created_s <= since), later]  # old products first, then later ones
    n_old = n_p - len(later)
    shift, base = np.zeros(n), np.zeros(n)
    cum = np.zeros((n, len(later) + 1))
    cat_of, vf, log_pop = it.category[cols], it.factors[cols].T, it.log_pop[cols]
    block = max(1, _BLOCK_ELEMENTS // n_p)
    for b0 in range(0, n, block):
        b1 = min(n, b0 + block)
        logw = ct.log_aff[b0:b1][:, cat_of]
        logw += log_pop
        logw += spec.taste_scale * (ct.factors[b0:b1] @ vf)
        top = logw.max(axis=1)
        logw -= top[:, None]
        np.exp(logw, out=logw)
        shift[b0:b1], base[b0:b1] = top, logw[:, :n_old].sum(axis=1)
        np.cumsum(logw[:, n_old:], axis=1, out=cum[b0:b1, 1:])
    return MassTable(since=since, shift=shift, base=base, later_s=it.created_s[later], cum=cum)


def relevance(cfg: ShopConfig, it: ItemTastes, ct: CustomerTastes, cust: np.ndarray, prod: np.ndarray,
              t: np.ndarray, table: MassTable | None = None) -> np.ndarray:
    """True relevance ``r_ci(t) = |E(t)| p_ci(t)`` for aligned (local customer, product, time) triples.

    ``table`` (optional, all ``t >= table.since``) saves the dense pass over
    the catalogue; the result is the same up to rounding.
    """
    spec = _spec(cfg)
    cust, prod, t = (np.asarray(a, dtype=np.int64) for a in (cust, prod, t))
    if len(cust) == 0:
        return np.zeros(0)
    if table is not None and (t >= table.since).all():
        mass, shift = table.mass(cust, t), table.shift[cust]
    else:
        # One mass per distinct (customer, time).
        pairs, inv = np.unique(np.stack([cust, t], axis=1), axis=0, return_inverse=True)
        inv = inv.ravel()
        mass_u, shift_u, _ = _scan(spec, it, ct, pairs[:, 0], pairs[:, 1])
        mass, shift = mass_u[inv], shift_u[inv]
    exists = it.created_s[prod] <= t
    static = np.where(exists, np.exp(_log_weight(spec, it, ct, cust, prod) - shift) / mass, 0.0)
    partner, kappa = _kernel(spec, it, ct, cust, t)
    k_total = kappa.sum(axis=1)
    k_i = (kappa * (partner == prod[:, None])).sum(axis=1)
    g = _share(spec, k_total)
    p = (1 - g) * static + np.where(k_total > 0, g * k_i / np.where(k_total > 0, k_total, 1.0), 0.0)
    return it.n_existing(t) * p


# ---------------------------------------------------------------- candidate sets and the logging item rule
def candidate_sets(spec: Tastes, it: ItemTastes, products: np.ndarray, query: np.ndarray, t: np.ndarray) -> np.ndarray:
    """(n, candidates) product indices a trigger's message may plausibly show, -1 padded.

    The trigger's products first, then the most popular products (existing
    at ``t``) of the first product's category, else of the search query's
    category, else overall, without repeats.
    """
    n, c_max, n_cat = len(t), spec.candidates, len(CATEGORY_NAMES)
    src = np.full(n, n_cat, np.int64)
    has = products[:, 0] >= 0
    src[has] = it.category[products[has, 0]]
    asked = np.flatnonzero(~has & pd.notna(query))
    if len(asked):
        words = pd.Series(query[asked], dtype=object).str.rsplit(" ", n=1).str[-1].map(_NOUN_CATEGORY).to_numpy()
        known = pd.notna(words)
        src[asked[known]] = words[known].astype(np.int64)
    pool = np.concatenate([products, it.top[src]], axis=1)
    valid = (pool >= 0) & (it.created_s[np.maximum(pool, 0)] <= t[:, None])
    valid[:, :products.shape[1]] = products >= 0  # the trigger's own products always count
    # Drop repeats (keep the first): sort each row, mark equal neighbours, map back.
    key = np.where(valid, pool, -1 - np.arange(pool.shape[1])[None, :])
    srt = np.argsort(key, axis=1, kind="stable")
    sk = np.take_along_axis(key, srt, axis=1)
    dup_sorted = np.c_[np.zeros((n, 1), bool), sk[:, 1:] == sk[:, :-1]]
    dup = np.zeros_like(dup_sorted)
    np.put_along_axis(dup, srt, dup_sorted, axis=1)
    valid &= ~dup
    pos = np.argsort(~valid, axis=1, kind="stable")[:, :c_max]
    out = np.take_along_axis(np.where(valid, pool, -1), pos, axis=1)
    return out
