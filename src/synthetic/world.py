"""Generate the synthetic shop and re-run it under any policy for its true value.

``generate_shop`` writes every contract table plus the ground truth under
``_truth/`` (never read by estimators). Customers are generated in chunks
with random streams keyed by (seed, chunk), written as row groups of one
Parquet file per table, so memory stays flat at any size and the same
config gives the same bytes.

``simulate_truth`` regenerates the policy-independent world (same streams)
and runs a different policy through the same response model: its result is
that policy's true value, to compare offline estimates with.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from cadence.contract.actions import Policy
from cadence.contract.tables import CHANNELS, INCENTIVES, ORDER_STATUSES, STAGES
from cadence.contract.triggers import RECOMMENDATION_STAGES
from cadence.synthetic.backbone import (
    EV,
    SEGMENT_NAMES,
    TZ_NAMES,
    Backbone,
    build_backbone,
    rank_within,
)
from cadence.synthetic.catalog import CATEGORY_NAMES, Catalog, make_catalog
from cadence.synthetic.config import ShopConfig
from cadence.synthetic.logging_policy import RandomizedLoggingPolicy
from cadence.synthetic.messages import Outcomes, run_messages

TRUTH_DIR = "_truth"
#: Parquet options that make the same seed give the same bytes (the world's own copy of the data layer's).
PARQUET_OPTIONS: dict[str, object] = {"compression": "zstd", "write_statistics": True}
PathLike = str | os.PathLike[str]
ArrayLike = np.ndarray | pd.Series | list[str] | tuple[str, ...]
_FIRST = ("Ada", "Ben", "Chloe", "Dev", "Elif", "Femi", "Gus", "Hana", "Ivan", "Jun", "Kemi", "Lea")
_LAST = ("Smith", "Okafor", "Garcia", "Müller", "Rossi", "Tanaka", "Nguyen", "Kowalski", "Silva", "Dubois")
_EVENT_CODE_TO_NAME = {v: k for k, v in EV.items()}


# ---------------------------------------------------------------- ids and times
def _ts(seconds: np.ndarray) -> pa.Array:
    """int64 seconds (negative = null) → timestamp[us, UTC]."""
    s = np.asarray(seconds, dtype=np.int64)
    return pa.array(s * 1_000_000, type=pa.timestamp("us", tz="UTC"), mask=s < 0)


def _ids(prefix: str, *parts: np.ndarray, width: int = 0) -> pa.Array:
    """Vectorised string ids: prefix + part1 (zero-padded) + '-' + part2 ..."""
    strs = [pc.cast(pa.array(np.asarray(p, dtype=np.int64)), pa.string()) for p in parts]
    if width:
        strs[0] = pc.utf8_lpad(strs[0], width=width, padding="0")
    pieces: list[pa.Array | str] = [pa.array([prefix] * len(strs[0]), pa.string()), strs[0]]
    for s in strs[1:]:
        pieces += [pa.array(["-"] * len(s), pa.string()), s]
    return pc.binary_join_element_wise(*pieces, "")


def customer_ids(idx: np.ndarray) -> pa.Array:
    return _ids("C", idx, width=7)


def _opt(values: np.ndarray, vocab: tuple[str, ...] | np.ndarray) -> pa.Array:
    """Integer codes (-1 = null) → strings."""
    codes = np.asarray(values, dtype=np.int64)
    names = np.asarray(vocab, dtype=object)[np.maximum(codes, 0)]
    return pa.array(names, type=pa.string(), mask=codes < 0)


# ---------------------------------------------------------------- tables of a chunk
@dataclass
class ChunkTables:
    tables: dict[str, pa.Table]
    truth: dict[str, pa.Table]


def _chunk_tables(cfg: ShopConfig, cat: Catalog, bb: Backbone, out: Outcomes, policy_id: str) -> ChunkTables:
    pp = bb.people
    n = len(pp.idx)
    gid = pp.idx
    cids = customer_ids(gid)
    rng = np.random.default_rng([cfg.seed, 3, int(gid[0]) if n else 0])
    first = np.asarray(_FIRST)[rng.integers(0, len(_FIRST), n)]
    last = np.asarray(_LAST)[rng.integers(0, len(_LAST), n)]
    birth = pd.to_datetime(
        pd.DataFrame({"year": pp.birth_year, "month": np.maximum(pp.birth_month, 1), "day": np.where(pp.birth_month > 0, pp.birth_day, 1)})
    ).dt.date.to_numpy()
    customers = pa.table({
        "customer_id": cids,
        "signup_at": _ts(pp.signup_s),
        "email": pa.array([f"{fn.lower()}.{ln.lower()}{i}@example.com" for fn, ln, i in zip(first, last, gid, strict=True)]),
        "name": pa.array(np.char.add(np.char.add(first.astype(str), " "), last.astype(str))),
        "birth_date": pa.array(birth, type=pa.date32(), mask=pp.birth_month == 0),
        "timezone": pa.array(np.asarray(TZ_NAMES)[pp.tz]),
        **{f"opt_in_{c}": pa.array(pp.opt_in[:, j]) for j, c in enumerate(CHANNELS)},
    })
    # Events.
    ev_rank = rank_within(bb.ev_cust)
    ev_names = np.asarray([_EVENT_CODE_TO_NAME[i] for i in range(len(EV))], dtype=object)
    events = pa.table({
        "event_id": _ids("E", gid[bb.ev_cust], ev_rank),
        "customer_id": pc.take(cids, pa.array(bb.ev_cust)),
        "ts": _ts(bb.ev_s),
        "event_type": pa.array(ev_names[bb.ev_type], pa.string()),
        "product_id": _opt(bb.ev_product, cat.product_id),
        "query": pa.array(bb.ev_query, pa.string()),
        "results_count": pa.array(bb.ev_results, pa.int64(), mask=bb.ev_results < 0),
        "session_id": _ids("S", gid[bb.ev_cust], bb.ev_session),
    })
    # Organic orders, then orders caused (or followed, under hold) by triggers.
    o_rank = rank_within(bb.ord_cust)
    org_ids = _ids("O", gid[bb.ord_cust], o_rank)
    item_rev = bb.item_qty * bb.item_price
    org_rev = np.round(np.bincount(bb.item_order, weights=item_rev, minlength=len(bb.ord_s)), 2)
    t_rank = rank_within(bb.trig_cust)
    conv = np.flatnonzero(out.converted_s >= 0)
    conv_ids = _ids("O", gid[bb.trig_cust[conv]], t_rank[conv])
    conv_ids = pc.binary_join_element_wise(conv_ids, pa.array(["m"] * len(conv), pa.string()), "")
    orders = pa.table({
        "order_id": pa.concat_arrays([org_ids, conv_ids]),
        "customer_id": pa.concat_arrays([pc.take(cids, pa.array(bb.ord_cust)), pc.take(cids, pa.array(bb.trig_cust[conv]))]),
        "ts": pa.concat_arrays([_ts(bb.ord_s), _ts(out.converted_s[conv])]),
        "revenue": pa.array(np.r_[org_rev, out.revenue[conv]]),
    })
    # Items of conversion orders: the trigger's products, else one usual-basket line.
    cp = bb.trig_products[conv]
    if out.conv_product is not None:  # shops with tastes: a send with items bought one of them
        bought = out.conv_product[conv] >= 0
        cp = cp.copy()
        cp[bought] = -1
        cp[bought, 0] = out.conv_product[conv][bought]
    has = cp >= 0
    ci_row, ci_col = np.nonzero(has)
    usual = ~has.any(axis=1)
    ci_order = np.r_[ci_row, np.flatnonzero(usual)]
    ci_prod = np.r_[cp[ci_row, ci_col], _usual_product(cat, bb, conv[usual])]
    ci_price = np.where(
        np.r_[np.ones(len(ci_row), bool), np.zeros(usual.sum(), bool)],
        cat.price_at(ci_prod, out.converted_s[conv][ci_order]),
        out.revenue[conv][ci_order],
    )
    # Same product twice in one trigger's context collapses into a quantity.
    key = ci_order.astype(np.int64) * cat.n + ci_prod
    uk, first_idx, qty = np.unique(key, return_index=True, return_counts=True)
    ci_order, ci_prod, ci_price = uk // cat.n, uk % cat.n, ci_price[first_idx]
    order_items = pa.table({
        "order_id": pa.concat_arrays([pc.take(org_ids, pa.array(bb.item_order)), pc.take(conv_ids, pa.array(ci_order))]),
        "product_id": pa.array(np.r_[cat.product_id[bb.item_product], cat.product_id[ci_prod]], pa.string()),
        "quantity": pa.array(np.r_[bb.item_qty, qty].astype(np.int64)),
        "price": pa.array(np.r_[bb.item_price, ci_price]),
    })
    # Fix conversion revenue to the sum of its lines.
    conv_rev = np.round(np.bincount(ci_order, weights=ci_price * qty, minlength=len(conv)), 2)
    out.revenue[conv] = conv_rev
    orders = orders.set_column(3, "revenue", pa.array(np.r_[org_rev, conv_rev]))
    cst = out.converted_s[conv]
    c_status_o = np.r_[np.arange(len(conv)), np.arange(len(conv)), np.arange(len(conv))]
    c_status_s = np.r_[cst, cst + 86_400, cst + 3 * 86_400]
    c_status_c = np.r_[np.zeros(len(conv)), np.ones(len(conv)), np.full(len(conv), 2)].astype(np.int64)
    ok = c_status_s < cfg.end_s
    order_status = pa.table({
        "order_id": pa.concat_arrays([pc.take(org_ids, pa.array(bb.status_order)), pc.take(conv_ids, pa.array(c_status_o[ok]))]),
        "ts": pa.concat_arrays([_ts(bb.status_s), _ts(c_status_s[ok])]),
        "status": pa.array(np.asarray(ORDER_STATUSES, dtype=object)[np.r_[bb.status_code, c_status_c[ok]]], pa.string()),
    })
    # Messages: one row per trigger decision.
    msg_ids = _ids("M", gid[bb.trig_cust], t_rank)
    conv_of_trigger = np.full(len(bb.trig_s), -1)
    conv_of_trigger[conv] = np.arange(len(conv))
    stage_names = np.asarray(STAGES, dtype=object)[bb.trig_stage]
    rec = np.isin(stage_names, list(RECOMMENDATION_STAGES)) & out.send
    items = np.where(rec, out.products, np.array(None, dtype=object)) if out.items is None else out.items
    messages = pa.table({
        "message_id": msg_ids,
        "customer_id": pc.take(cids, pa.array(bb.trig_cust)),
        "stage": pa.array(stage_names, pa.string()),
        "triggered_at": _ts(bb.trig_s),
        "action": pa.array(np.where(out.send, "send", "hold"), pa.string()),
        "sent_at": _ts(out.sent_s),
        "channel": _opt(out.channel, CHANNELS),
        "incentive": _opt(out.incentive, INCENTIVES),
        "items": pa.array(items, pa.string()),
        "policy_id": pa.array([policy_id] * len(bb.trig_s), pa.string()),
        "propensity": pa.array(out.propensity),
        "opened_at": _ts(out.opened_s),
        "clicked_at": _ts(out.clicked_s),
        "converted_order_id": pc.take(conv_ids, pa.array(conv_of_trigger, mask=(conv_of_trigger < 0) | (out.conv_step == 2))),
        "revenue": pa.array(np.where(out.conv_step == 1, out.revenue, np.nan), mask=out.conv_step != 1),
        "unsubscribed_at": _ts(out.unsub_s),
        "step": pa.array(np.ones(len(bb.trig_s), np.int64)),
    })
    fu = out.fu
    f = np.flatnonzero(fu.decided)
    if len(f):
        # Follow-ups: one more row per trigger where one was due, the conversion it caused on it.
        f_conv = out.conv_step[f] == 2
        f_conv_of = np.where(f_conv, conv_of_trigger[f], -1)
        follow = pa.table({
            "message_id": pc.binary_join_element_wise(pc.take(msg_ids, pa.array(f)), pa.array(["f2"] * len(f), pa.string()), ""),
            "customer_id": pc.take(cids, pa.array(bb.trig_cust[f])),
            "stage": pa.array(stage_names[f], pa.string()),
            "triggered_at": _ts(bb.trig_s[f]),
            "action": pa.array(np.where(fu.send[f], "send", "hold"), pa.string()),
            "sent_at": _ts(fu.sent_s[f]),
            "channel": _opt(np.where(fu.send[f], fu.channel[f], -1), CHANNELS),
            "incentive": _opt(np.where(fu.send[f], fu.incentive[f], -1), INCENTIVES),
            "items": pa.array(np.where(fu.send[f] & np.isin(stage_names[f], list(RECOMMENDATION_STAGES)), out.products[f],
                                       np.array(None, dtype=object)), pa.string()),
            "policy_id": pa.array([policy_id] * len(f), pa.string()),
            "propensity": pa.array(fu.propensity[f]),
            "opened_at": _ts(fu.opened_s[f]),
            "clicked_at": _ts(fu.clicked_s[f]),
            "converted_order_id": pc.take(conv_ids, pa.array(f_conv_of, mask=f_conv_of < 0)),
            "revenue": pa.array(np.where(f_conv, out.revenue[f], np.nan), mask=~f_conv),
            "unsubscribed_at": _ts(fu.unsub_s[f]),
            "step": pa.array(np.full(len(f), 2, np.int64)),
        })
        if out.items is not None:  # a follow-up shows its first message's items
            follow = follow.set_column(follow.schema.get_field_index("items"), "items",
                                       pa.array(np.where(fu.send[f], out.items[f], np.array(None, dtype=object)), pa.string()))
            follow = follow.append_column("items_propensity", pa.array(
                np.where(fu.send[f], out.items_propensity[f], np.nan), mask=~fu.send[f] | np.isnan(out.items_propensity[f])))  # type: ignore[index]
            follow = follow.append_column("item_candidates", pa.array(out.item_candidates[f], pa.string()))  # type: ignore[index]
    if out.items_propensity is not None:
        messages = messages.append_column("items_propensity", pa.array(
            out.items_propensity, mask=np.isnan(out.items_propensity)))
        # Context, not decision: logged for sends and holds alike, so it does not reveal the action.
        messages = messages.append_column("item_candidates", pa.array(out.item_candidates, pa.string()))
    if len(f):
        messages = pa.concat_tables([messages, follow.cast(messages.schema)])
    truth_customers = pa.table({
        "customer_id": cids,
        "purchase_rate_per_day": pa.array(pp.rate),
        "dropout_probability": pa.array(pp.dropout),
        "dropout_at": _ts(np.where(pp.death_s >= cfg.end_s, -1, pp.death_s)),
        "segment": pa.array(np.asarray(SEGMENT_NAMES)[pp.segment], mask=pp.segment < 0),  # null: per message
        "intent": pa.array(pp.intent, mask=pp.segment < 0),
        "open_affinity": pa.array(pp.open_affinity),
        "deal_sensitivity": pa.array(pp.deal_sensitivity, mask=pp.segment < 0),
        "preferred_hour_local": pa.array(pp.preferred_hour),
        "utc_offset_hours": pa.array(pp.tz_offset_h),
        "top_category": pa.array(np.asarray(CATEGORY_NAMES)[np.argmax(np.diff(pp.affinity_cum, axis=1, prepend=0), axis=1)]),
    })
    truth_messages = pa.table({
        "message_id": msg_ids,
        "p_open": pa.array(out.p_open),
        "p_click": pa.array(out.p_click),
        "p_convert": pa.array(out.p_convert),
        "p_convert_hold": pa.array(out.p_convert_hold),
        "send_effect": pa.array(out.send_effect),
        "value_if_converted": pa.array(out.value_if_converted),
        "incentive_cost_if_converted": pa.array(out.incentive_cost),
        "fatigue_7d": pa.array(out.fatigue),
    })
    if out.items_relevance is not None:
        truth_messages = truth_messages.append_column("items_relevance", pa.array(out.items_relevance))
    if bb.trig_response is not None:  # a realised-response world: each message's own (follow-ups: their trigger's)
        seg, intent, deal = (np.r_[a, a[f]] for a in bb.trig_response)
        per_message = {"segment": pa.array(np.asarray(SEGMENT_NAMES)[seg]), "intent": pa.array(intent),
                       "deal_sensitivity": pa.array(deal)}
    if len(f):
        truth_messages = pa.concat_tables([truth_messages, pa.table({
            "message_id": messages["message_id"].slice(len(bb.trig_s)),
            "p_open": pa.array(fu.p_open[f]),
            "p_click": pa.array(fu.p_click[f]),
            "p_convert": pa.array(fu.p_convert_if_sent[f] * fu.send[f]),  # for a customer the first did not convert
            "p_convert_hold": pa.array(np.zeros(len(f))),
            "send_effect": pa.array(np.full(len(f), np.nan)),
            "value_if_converted": pa.array(out.value_if_converted[f]),
            "incentive_cost_if_converted": pa.array(fu.incentive_cost[f]),
            "fatigue_7d": pa.array(fu.fatigue[f]),
            **({} if out.items_relevance is None else
               {"items_relevance": pa.array(np.where(fu.send[f], out.items_relevance[f], np.nan))}),
        })])
    if bb.trig_response is not None:
        for name, col in per_message.items():
            truth_messages = truth_messages.append_column(name, col)
    kinds = np.r_[np.where(bb.ord_kind == 1, "replenishment", "regular"),
                  np.where(out.send[conv], "message_send", "message_hold")]
    truth_orders = pa.table({"order_id": orders["order_id"], "source": pa.array(kinds.astype(object), pa.string())})
    return ChunkTables(
        tables={"customers": customers, "events": events, "orders": orders, "order_items": order_items,
                "order_status": order_status, "messages": messages},
        truth={"customers": truth_customers, "messages": truth_messages, "orders": truth_orders},
    )


def _usual_product(cat: Catalog, bb: Backbone, rows: np.ndarray) -> np.ndarray:
    """A product the customer would usually buy (their top category's most popular)."""
    aff = np.diff(bb.people.affinity_cum, axis=1, prepend=0)
    top = np.argmax(aff[bb.trig_cust[rows]], axis=1)
    best = np.array([np.flatnonzero(cat.category == c)[np.argmax(cat.popularity[cat.category == c])] for c in range(len(CATEGORY_NAMES))])
    return best[top]


def catalog_tables(cfg: ShopConfig, cat: Catalog) -> dict[str, pa.Table]:
    products = pa.table({
        "product_id": pa.array(cat.product_id, pa.string()),
        "title": pa.array(cat.title, pa.string()),
        "category": pa.array(np.asarray(CATEGORY_NAMES)[cat.category], pa.string()),
        "price": pa.array(cat.base_price),
        "created_at": _ts(cat.created_s),
    })
    ch = (cat.change_kind > 0) & (cat.change_s < cfg.end_s)
    product_changes = pa.table({
        "product_id": pa.array(cat.product_id[cat.change_product[ch]], pa.string()),
        "ts": _ts(cat.change_s[ch]),
        "price": pa.array(cat.change_price[ch]),
        "in_stock": pa.array(cat.change_in_stock[ch]),
    })
    truth = pa.table({
        "product_id": pa.array(cat.product_id, pa.string()),
        "consumable": pa.array(cat.consumable),
        "repurchase_interval_days": pa.array(cat.interval_days),
    })
    if cfg.tastes is not None:  # the products each product raises the relevance of once bought
        from cadence.synthetic.messages import product_strings
        from cadence.synthetic.tastes import item_tastes

        truth = truth.append_column("complements", pa.array(
            product_strings(item_tastes(cfg, cat).complements, cat.product_id), pa.string()))
    return {"products": products, "product_changes": product_changes, "_truth_products": truth}


# ---------------------------------------------------------------- the world, chunk by chunk
def iter_world(cfg: ShopConfig, policy: Policy, cat: Catalog | None = None,
               progress: bool = False, desc: str = "shop") -> Iterator[tuple[Backbone, Outcomes]]:
    """Yield (backbone, outcomes) for every chunk of customers under ``policy``."""
    cat = cat if cat is not None else make_catalog(cfg)
    for chunk in tqdm(range(cfg.n_chunks), desc=desc, unit="chunk", disable=not progress):
        bb = build_backbone(cfg, cat, chunk)
        cids = np.asarray(customer_ids(bb.people.idx).to_numpy(zero_copy_only=False), dtype=object)
        yield bb, run_messages(cfg, cat, bb, policy, chunk, cids)


_VALUE_COLUMNS = ["triggers", "sent", "open", "click", "conversion", "revenue", "net_revenue", "realized_conversion"]


def _chunk_value(bb: Backbone, out: Outcomes) -> pd.DataFrame:
    """Per-stage sums of one chunk's expected outcomes (small: one row per stage)."""
    df = pd.DataFrame({
        "stage": np.asarray(STAGES)[bb.trig_stage],
        "triggers": 1.0,
        "sent": out.send.astype(float),
        "open": out.p_open,
        "click": out.p_click,
        # Expected conversions that land before the data ends (what the log can show).
        "conversion": out.p_convert * out.p_in_window,
        "revenue": out.p_convert * out.p_in_window * out.value_if_converted,
        "net_revenue": out.p_convert * out.p_in_window * (out.value_if_converted - out.incentive_cost),
        "realized_conversion": (out.converted_s >= 0).astype(float),
    })
    fu = out.fu
    if fu.decided.any():  # follow-ups add their sends, opens, clicks and the conversions they cause
        add = fu.p_convert * fu.p_in_window
        df["sent"] += fu.send
        df["open"] += fu.p_open
        df["click"] += fu.p_click
        df["conversion"] += add
        df["revenue"] += add * out.value_if_converted
        df["net_revenue"] += add * (out.value_if_converted - fu.incentive_cost)
    return df.groupby("stage")[_VALUE_COLUMNS].sum()


def _aggregate(parts: list[pd.DataFrame], n_customers: int) -> pd.DataFrame:
    by_stage = pd.concat(parts).groupby(level=0).sum().reindex([s for s in STAGES if any(s in p.index for p in parts)])
    by_stage.loc["all"] = by_stage.sum()
    by_stage["customers"] = n_customers
    return by_stage.rename_axis("stage").reset_index()


def simulate_truth(policy: Policy, cfg: ShopConfig, progress: bool = False) -> pd.DataFrame:
    """The true value of ``policy`` in the world of ``cfg``.

    Re-runs the same customers, sessions, orders and trigger moments (same
    random streams) under ``policy``; only what depends on messages changes.
    Returns one row per stage plus ``all``: triggers, customers and the
    *expected* number of sends, opens, clicks, conversions, revenue and net
    revenue (revenue less incentive cost) under the decisions taken, and the
    realised conversions of this run. Divide by ``triggers`` for per-trigger
    rates, by ``customers`` for per-customer values.

    Examples
    --------
    >>> from cadence.synthetic import ShopConfig, RandomizedLoggingPolicy
    >>> v = simulate_truth(RandomizedLoggingPolicy(), ShopConfig(customers=300, days=60, seed=1))
    >>> "all" in set(v["stage"])
    True
    """
    parts = [_chunk_value(bb, out) for bb, out in iter_world(cfg, policy, progress=progress, desc="truth")]
    return _aggregate(parts, cfg.customers)



def true_relevance(cfg: ShopConfig, customer_ids: ArrayLike, product_ids: ArrayLike | None,
                   at: object) -> np.ndarray | pd.DataFrame:
    """Each customer's true relevance of products at given times (shops with :class:`~cadence.synthetic.config.Tastes`).

    The relevance ``r_ci(t)`` is the lift of product ``i`` in the customer's
    choice probability at ``t`` over an average existing product (formula
    in ``Tastes``): 1 is average, 0 for a product that does not exist yet.
    It reads the customer's regular purchases strictly before ``t``. For
    tests and studies only; estimators never call it.

    ``customer_ids`` (n) and ``at`` (a timestamp, or n of them) with
    ``product_ids`` (n, aligned) return an array (n,); with
    ``product_ids=None`` every product, as a frame (n rows indexed by
    customer id, one column per product id). Each call regenerates the
    policy-independent world of the chunks involved (about a second per
    20,000 customers), so ask for many triples at once.

    Examples
    --------
    >>> from cadence.synthetic import ShopConfig, Tastes
    >>> cfg = ShopConfig(customers=100, days=30, seed=1, tastes=Tastes())
    >>> third = customer_ids(np.array([3])).to_pylist()   # the shop's ids, never a literal one
    >>> r = true_relevance(cfg, third, None, "2025-01-20")
    >>> r.shape[0], round(float(r.to_numpy().mean()), 6) <= 1.0
    (1, True)
    """
    from cadence.synthetic.tastes import relevance

    if cfg.tastes is None:
        raise ValueError("true_relevance: this shop has no latent tastes; generate it with ShopConfig(tastes=Tastes())")
    cids = np.asarray(customer_ids, dtype=object).ravel()
    n = len(cids)
    text = pd.Series(cids, dtype=object).astype(str)
    ok = text.str.fullmatch(r"C\d+").to_numpy()
    idx = np.where(ok, pd.to_numeric(text.str[1:], errors="coerce").fillna(-1), -1).astype(np.int64)
    bad = (idx < 0) | (idx >= cfg.customers)
    if bad.any():
        raise ValueError(f"true_relevance: customer_ids: {int(bad.sum())} id(s) not in this shop, e.g. {cids[bad][0]!r}")
    t = pd.to_datetime(pd.Series(np.broadcast_to(np.asarray(at, dtype=object), (n,))), utc=True)
    if t.isna().any():
        raise ValueError("true_relevance: at: missing or unparseable times")
    t_s = ((t - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)).to_numpy(dtype=np.int64)
    cat = make_catalog(cfg)
    if product_ids is None:
        prod = np.tile(np.arange(cat.n), n)
        row = np.repeat(np.arange(n), cat.n)
    else:
        pids = np.asarray(product_ids, dtype=object).ravel()
        if len(pids) != n:
            raise ValueError(f"true_relevance: product_ids: {len(pids)} values for {n} customer ids")
        prod = pd.Index(cat.product_id).get_indexer(pd.Index(pids.astype(str)))
        if (prod < 0).any():
            raise ValueError(f"true_relevance: product_ids: {int((prod < 0).sum())} id(s) not in the catalogue, "
                             f"e.g. {pids[prod < 0][0]!r}")
        row = np.arange(n)
    out = np.zeros(len(row))
    chunk_of = idx // cfg.chunk_size
    for chunk in np.unique(chunk_of):
        bb = build_backbone(cfg, cat, int(chunk))
        sel = np.flatnonzero(chunk_of[row] == chunk)
        local = idx[row[sel]] - int(chunk) * cfg.chunk_size
        out[sel] = relevance(cfg, bb.item_tastes, bb.customer_tastes, local, prod[sel], t_s[row[sel]])  # type: ignore[arg-type]
    if product_ids is not None:
        return out
    return pd.DataFrame(out.reshape(n, cat.n), index=pd.Index(cids, name="customer_id"),
                        columns=pd.Index(cat.product_id, name="product_id"))


@contextlib.contextmanager
def _fresh_folder(out_dir: Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``out_dir``; rename it to ``out_dir`` on success, remove it on failure."""
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise FileExistsError(f"{str(out_dir)!r} is not a new or empty folder: generate_shop writes only into one")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        yield tmp
        os.replace(tmp, out_dir)  # onto a missing or empty folder: one atomic rename
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

def generate_shop(cfg: ShopConfig, out_dir: PathLike, *, policy: Policy | None = None,
                  progress: bool = False) -> Path:
    """Generate the shop of ``cfg`` into the new or empty folder ``out_dir`` and return the path.

    The shop is assembled in a temporary sibling and renamed into place, so
    ``out_dir`` holds a whole shop or nothing; a folder with files in it is
    refused (``cadence generate`` replaces an earlier output of its own).

    Writes ``<table>.parquet`` for every contract table and ``_truth/``
    (latent customer traits, true response probabilities per message, the
    source of every order, consumables (and, with tastes, each product's
    complements) and the logging policy's true value).

    Examples
    --------
    >>> import tempfile
    >>> from cadence.synthetic import ShopConfig
    >>> d = generate_shop(ShopConfig(customers=200, days=30), tempfile.mkdtemp() + "/shop")
    >>> sorted(p.name for p in d.glob("*.parquet"))[:3]
    ['customers.parquet', 'events.parquet', 'messages.parquet']
    """
    chosen: Policy = policy if policy is not None else RandomizedLoggingPolicy.for_shop(cfg)
    out_dir = Path(out_dir)
    cat = make_catalog(cfg)
    with _fresh_folder(out_dir) as tmp:
        (tmp / TRUTH_DIR).mkdir(parents=True)
        static = catalog_tables(cfg, cat)
        pq.write_table(static["products"], tmp / "products.parquet", **PARQUET_OPTIONS)  # type: ignore[arg-type]
        pq.write_table(static["product_changes"], tmp / "product_changes.parquet", **PARQUET_OPTIONS)  # type: ignore[arg-type]
        pq.write_table(static["_truth_products"], tmp / TRUTH_DIR / "products.parquet", **PARQUET_OPTIONS)  # type: ignore[arg-type]
        writers: dict[Path, pq.ParquetWriter] = {}
        summaries = []
        try:
            for bb, out in iter_world(cfg, chosen, cat=cat, progress=progress):
                chunk = _chunk_tables(cfg, cat, bb, out, chosen.policy_id)
                summaries.append(_chunk_value(bb, out))
                for name, table in [*chunk.tables.items(), *((f"{TRUTH_DIR}/{k}", v) for k, v in chunk.truth.items())]:
                    path = tmp / f"{name}.parquet"
                    if path not in writers:
                        writers[path] = pq.ParquetWriter(path, table.schema, **PARQUET_OPTIONS)  # type: ignore[arg-type]
                    writers[path].write_table(table)
        finally:
            for w in writers.values():
                w.close()
        value = _aggregate(summaries, cfg.customers)
        pq.write_table(pa.Table.from_pandas(value, preserve_index=False), tmp / TRUTH_DIR / "policy_value.parquet")
        meta = {"generator": "cadence.synthetic", "config": cfg.to_dict(), "logging_policy": chosen.policy_id}
        (tmp / TRUTH_DIR / "shop.json").write_text(json.dumps(meta, indent=2, sort_keys=True, default=str))
    return out_dir


def load_truth(data_dir: PathLike) -> dict[str, pd.DataFrame]:
    """Read a generated shop's ground truth (for tests and reports, never estimators)."""
    base = Path(data_dir) / TRUTH_DIR
    if not base.is_dir():
        raise FileNotFoundError(f"{str(base)!r} not found: {data_dir} is not a generated synthetic shop")
    return {p.stem: pq.read_table(p).to_pandas() for p in sorted(base.glob("*.parquet"))}


def load_config(data_dir: PathLike) -> ShopConfig:
    """The :class:`ShopConfig` a generated shop was made with."""
    from cadence.contract.triggers import TriggerRules
    from cadence.synthetic.config import ObservableResponse, ResponseParams, Tastes

    meta = json.loads((Path(data_dir) / TRUTH_DIR / "shop.json").read_text())["config"]
    meta["rules"] = TriggerRules(**meta["rules"])
    meta["response"] = ResponseParams(**meta["response"])
    if meta.get("observable_response") is not None:
        meta["observable_response"] = ObservableResponse(**meta["observable_response"])
    if meta.get("tastes") is not None:
        meta["tastes"] = Tastes(**meta["tastes"])
    return ShopConfig(**meta)


__all__ = ["generate_shop", "simulate_truth", "load_truth", "load_config", "iter_world", "true_relevance"]
