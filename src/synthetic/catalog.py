"""The synthetic catalogue: products, price drops, stock-outs, restocks, new arrivals.

Times are int64 seconds since the epoch (UTC) throughout the world; they
become timestamps only when tables are written.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cadence.synthetic.config import ADJECTIVES, CATEGORIES, CONSUMABLE_CATEGORIES, ShopConfig

DAY = 86_400
_KEY_SHIFT = np.int64(1) << np.int64(34)  # product index above, seconds below


@dataclass(frozen=True)
class Catalog:
    """Products (index = position) and their change history, sorted by (product, ts).

    ``change_*`` arrays hold the full state after each change, the first
    row of each product being its creation.
    """

    product_id: np.ndarray
    title: np.ndarray
    category: np.ndarray  # int index into CATEGORY_NAMES
    base_price: np.ndarray
    created_s: np.ndarray
    consumable: np.ndarray  # truth: bought again on a cycle
    interval_days: np.ndarray  # truth: typical repurchase interval (nan if not consumable)
    popularity: np.ndarray  # within-category sampling weight
    title_word: np.ndarray  # index of the category noun in the title
    change_product: np.ndarray
    change_s: np.ndarray
    change_price: np.ndarray
    change_in_stock: np.ndarray
    change_kind: np.ndarray  # 0 created, 1 price drop, 2 price up, 3 stock-out, 4 restock, 5 no-op

    @property
    def n(self) -> int:
        return len(self.product_id)

    def _state_index(self, product: np.ndarray, t: np.ndarray) -> np.ndarray:
        keys = self.change_product.astype(np.int64) * _KEY_SHIFT + self.change_s
        q = product.astype(np.int64) * _KEY_SHIFT + t
        idx = np.searchsorted(keys, q, side="right") - 1
        # Before creation a product falls back to its creation state.
        first = np.searchsorted(self.change_product, product, side="left")
        return np.maximum(idx, first)

    def price_at(self, product: np.ndarray, t: np.ndarray) -> np.ndarray:
        return self.change_price[self._state_index(product, t)]

    def in_stock_at(self, product: np.ndarray, t: np.ndarray) -> np.ndarray:
        return self.change_in_stock[self._state_index(product, t)]

    def next_change(self, product: np.ndarray, t: np.ndarray, kind: int) -> np.ndarray:
        """Time of the first change of ``kind`` strictly after ``t`` (or -1)."""
        mask = self.change_kind == kind
        cp, cs = self.change_product[mask], self.change_s[mask]
        keys = cp.astype(np.int64) * _KEY_SHIFT + cs
        idx = np.searchsorted(keys, product.astype(np.int64) * _KEY_SHIFT + t, side="right")
        ok = idx < len(keys)
        out = np.full(len(product), -1, dtype=np.int64)
        same = np.zeros(len(product), dtype=bool)
        same[ok] = cp[idx[ok]] == product[ok]
        out[same] = cs[idx[same]]
        return out


CATEGORY_NAMES: tuple[str, ...] = tuple(CATEGORIES)


def make_catalog(cfg: ShopConfig) -> Catalog:
    """Draw the catalogue for ``cfg`` from its own random stream."""
    rng = np.random.default_rng([cfg.seed, 0])
    n = cfg.n_products
    n_cat = len(CATEGORY_NAMES)
    category = rng.integers(0, n_cat, n)
    word = rng.integers(0, 5, n)
    adj = rng.integers(0, len(ADJECTIVES), n)
    nouns = np.array([CATEGORIES[c][w] for c, w in zip(np.array(CATEGORY_NAMES)[category], word, strict=True)])
    title = np.char.add(np.char.add(np.array(ADJECTIVES)[adj], " "), nouns)
    cat_price = rng.lognormal(3.0, 0.5, n_cat)
    base_price = np.round(cat_price[category] * rng.lognormal(0.0, 0.45, n), 2).clip(1.0)
    is_consumable_cat = np.isin(np.array(CATEGORY_NAMES)[category], CONSUMABLE_CATEGORIES)
    consumable = is_consumable_cat & (rng.random(n) < 0.45)
    interval = np.where(consumable, rng.uniform(20, 75, n).round(1), np.nan)
    popularity = rng.pareto(1.5, n) + 0.1
    # Most products predate the window; ~12% arrive during it, in drops: each
    # category has a handful of launch days a year (not a trickle every week).
    new = rng.random(n) < 0.12
    launches_per_cat = max(1, round(6 * cfg.days / 365))
    launch = cfg.start_s + rng.integers(0, cfg.days * DAY, (len(CATEGORY_NAMES), launches_per_cat))
    which = rng.integers(0, launches_per_cat, n)
    created = np.where(
        new,
        launch[category, which] + rng.integers(0, 6 * 3600, n),
        cfg.start_s - rng.integers(30 * DAY, 900 * DAY, n),
    ).astype(np.int64)

    parts: list[tuple[np.ndarray, ...]] = []

    def add(p: np.ndarray, t: np.ndarray, price: np.ndarray | float, in_stock: bool, kind: int) -> None:
        m = len(p)
        parts.append((p, t, np.broadcast_to(np.asarray(price, float), (m,)),
                      np.full(m, in_stock), np.full(m, kind, np.int8)))

    add(np.arange(n), created, base_price, True, 0)  # creation rows
    horizon = cfg.days * DAY
    # Price drops (10-35% off), about 1.2 a year, most reverting after 1-4 weeks.
    k = rng.poisson(1.2 * cfg.days / 365, n)
    p = np.repeat(np.arange(n), k)
    t = np.maximum(cfg.start_s + rng.integers(0, horizon, len(p)), created[p] + DAY)
    add(p, t, np.round(base_price[p] * (1 - rng.uniform(0.10, 0.35, len(p))), 2), True, 1)
    back = rng.random(len(p)) < 0.7
    add(p[back], t[back] + rng.integers(7 * DAY, 28 * DAY, back.sum()), base_price[p[back]], True, 2)
    # Stock-outs, about 0.8 a year, restocked after 3-30 days.
    k = rng.poisson(0.8 * cfg.days / 365, n)
    p = np.repeat(np.arange(n), k)
    t = np.maximum(cfg.start_s + rng.integers(0, horizon, len(p)), created[p] + DAY)
    add(p, t, np.nan, False, 3)
    add(p, t + rng.integers(3 * DAY, 30 * DAY, len(p)), np.nan, True, 4)

    cp, cs, price, stock, kind = (np.concatenate(col) for col in zip(*parts, strict=True))
    cs = cs.astype(np.int64)
    order = np.lexsort((kind, cs, cp))
    cp, cs, price, stock, kind = cp[order], cs[order], price[order], stock[order], kind[order]
    # Keys (product, ts) must be unique: nudge ties forward by a second.
    for _ in range(8):
        dup = np.r_[False, (cp[1:] == cp[:-1]) & (cs[1:] <= cs[:-1])]
        if not dup.any():
            break
        cs = np.where(dup, np.r_[cs[:1], cs[:-1]] + 1, cs)
    # Carry state forward: a price row keeps the stock flag, a stock row the price.
    price, stock = _carry_state(cp, price, stock, kind)
    kind = _observable_kinds(cp, price, stock, kind)
    return Catalog(
        product_id=np.char.add("P", np.char.zfill(np.arange(n).astype(str), 6)),
        title=title,
        category=category,
        base_price=base_price,
        created_s=created,
        consumable=consumable,
        interval_days=interval,
        popularity=popularity,
        title_word=word,
        change_product=cp,
        change_s=cs,
        change_price=price,
        change_in_stock=stock,
        change_kind=kind,
    )


def _observable_kinds(cp: np.ndarray, price: np.ndarray, stock: np.ndarray, kind: np.ndarray) -> np.ndarray:
    """Relabel changes by what the data shows: a drop is a lower price than just
    before, a restock a move from out of stock to in stock (overlapping events
    otherwise disagree with what a pipeline can detect). 5 marks a no-op row."""
    same = np.r_[False, cp[1:] == cp[:-1]]
    prev_price = np.r_[np.nan, price[:-1]]
    prev_stock = np.r_[True, stock[:-1]]
    out = kind.copy()
    is_price = (kind == 1) | (kind == 2)
    out[is_price] = np.where(price[is_price] < prev_price[is_price], 1, 2)
    is_stock = (kind == 3) | (kind == 4)
    out[is_stock] = np.where(stock[is_stock] & ~prev_stock[is_stock], 4,
                             np.where(~stock[is_stock] & prev_stock[is_stock], 3, 5))
    out[~same] = 0
    return out.astype(np.int8)


def _carry_state(cp: np.ndarray, price: np.ndarray, stock: np.ndarray, kind: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = len(cp)
    idx = np.arange(n)
    # Price: forward-fill NaN within product (stock rows carry no price).
    has_price = ~np.isnan(price)
    last = np.where(has_price, idx, 0)
    np.maximum.accumulate(last, out=last)
    price = price[last]
    # Stock: price rows inherit the latest stock state within the product.
    is_stock_row = (kind == 0) | (kind >= 3)
    last = np.where(is_stock_row, idx, 0)
    np.maximum.accumulate(last, out=last)
    stock = stock[last]
    # Every product starts with a creation row (kind 0), so fills never cross products.
    assert (cp[last] == cp).all()
    return price, stock
