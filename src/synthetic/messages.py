"""The message-dependent part of the world: decisions, the true response model, outcomes.

Triggers are processed in rounds (the k-th trigger of every customer in round
k), vectorised across customers, because each customer's state — messages
in the last 7 days (fatigue) and channels unsubscribed — depends on what was
sent before. Every trigger carries its own uniforms drawn with the backbone,
so re-running the world under another policy changes only what depends on
messages (common random numbers).

The expected outcome of every trigger under the action taken (open, click,
conversion probabilities and expected net revenue) is kept as ground truth;
the mean of those is a policy's true value.

**Follow-ups** (a two-step sequence): a policy may plan, with the optional
decision columns :data:`~cadence.contract.actions.FOLLOWUP_COLUMNS`, one more message after a sent
one, sent ``followup_delay_minutes`` after the trigger unless the goal
happened first (any order of the customer since the trigger that the world
knows when it processes the first message: organic orders and the
conversions of this and earlier triggers — a later trigger's conversion is
drawn in a later round, so it does not stop a follow-up due after it). A follow-up converts a customer the
first message did not with probability ``max(0, (p2 - p0) / (1 - p0))``,
where ``p2`` is the conversion probability the response model gives the
follow-up's action at its time (fatigue counting the first message) and
``p0`` that of holding: it adds its own persuasion on top and never
un-converts. A trigger converts at most once. Follow-ups draw from their own
uniforms, per trigger, so policies with follow-ups share random numbers too.

**Items** (shops with :class:`~cadence.synthetic.config.Tastes`): the policy
sees each trigger's candidate set in ``item_candidates`` (``|``-joined
product ids, see :func:`cadence.synthetic.tastes.candidate_sets`). If its
decisions carry an ``items`` column, a send shows those products (any
catalogue products, ``|``-joined; None shows none) and ``items_propensity``
(if given) is logged; without the column the world applies the logging
item rule (:func:`~cadence.synthetic.logging_policy.subset_positions`, its
own per-trigger uniforms, so policies share them) to sends on
recommendation stages. The items' true relevance at the send time moves
click and conversion log-odds (the formula is in ``Tastes``); a follow-up
shows the first message's items with the same effect. A converted send
with items buys one of them, drawn in proportion to relevance, and its
value if converted is the relevance-weighted mean price. In a shop without
tastes the world ignores ``items`` (messages show the trigger's products).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from scipy.special import expit, ndtri

from cadence.contract.actions import Policy, check_decisions
from cadence.contract.clock import circular_hours
from cadence.contract.tables import CHANNELS, INCENTIVES, STAGES
from cadence.contract.triggers import (
    ABANDON_STAGES,
    INCENTIVE_COST_FIXED,
    INCENTIVE_PERCENT,
    RECOMMENDATION_STAGES,
)
from cadence.synthetic.backbone import (
    ORDER_KEY,
    SEGMENT_NAMES,
    Backbone,
    orders_before,
    trigger_response,
)
from cadence.synthetic.catalog import DAY, Catalog
from cadence.synthetic.config import ShopConfig

_RING = 32  # send times remembered per customer (fatigue counts cap here)
#: Open log-odds gained by a send at the customer's preferred hour (conversions gain ``send_time_effect``).
OPEN_SEND_TIME_EFFECT = 0.5
def send_time_match(local_hour: np.ndarray, preferred_hour: np.ndarray) -> np.ndarray:
    """How close a local send hour is to the preferred one: 1 at the hour, a 1.5-hour-sd Gaussian bump."""
    return np.exp(-0.5 * (circular_hours(local_hour, preferred_hour) / 1.5) ** 2)
_U_POLICY, _U_OPEN, _U_CLICK, _U_CONV, _U_UNSUB, _U_TIME, _U_OPEN_T, _U_REV = range(8)


@dataclass
class Outcomes:
    """Per-trigger decisions and outcomes for one chunk (trigger order of the backbone)."""

    send: np.ndarray
    channel: np.ndarray  # int, -1 for hold
    delay_min: np.ndarray
    incentive: np.ndarray  # int, -1 for hold
    propensity: np.ndarray
    sent_s: np.ndarray  # -1 for hold
    opened_s: np.ndarray  # -1 when not opened
    clicked_s: np.ndarray
    converted_s: np.ndarray  # -1 when no conversion
    unsub_s: np.ndarray
    revenue: np.ndarray  # order value if converted else 0
    # ground truth: expectations under the action taken
    p_open: np.ndarray
    p_click: np.ndarray
    p_convert: np.ndarray
    p_convert_hold: np.ndarray
    send_effect: np.ndarray  # true effect of a plain send (email, no delay, no incentive) on conversion
    value_if_converted: np.ndarray
    incentive_cost: np.ndarray
    fatigue: np.ndarray  # messages in the 7 days before the send
    p_in_window: np.ndarray  # probability a conversion would land before the data ends
    products: np.ndarray  # '|'-joined product ids of each trigger's context
    conv_step: np.ndarray  # 1 or 2: which message converted (0 when none)
    fu: FollowUps
    # shops with tastes: what each send showed, its logged probability, its items' mean true relevance
    items: np.ndarray | None = None  # '|'-joined product ids, None when none
    items_propensity: np.ndarray | None = None
    items_relevance: np.ndarray | None = None
    conv_product: np.ndarray | None = None  # product a converted send with items buys (-1 otherwise)
    item_candidates: np.ndarray | None = None  # '|'-joined candidate set of each trigger


@dataclass
class FollowUps:
    """The follow-up message of each trigger (all arrays over the chunk's triggers)."""

    decided: np.ndarray  # a follow-up decision was due (first message sent, planned, goal not yet reached)
    send: np.ndarray
    channel: np.ndarray
    delay_min: np.ndarray
    incentive: np.ndarray
    propensity: np.ndarray
    sent_s: np.ndarray
    opened_s: np.ndarray
    clicked_s: np.ndarray
    unsub_s: np.ndarray
    # ground truth
    p_open: np.ndarray
    p_click: np.ndarray
    p_convert: np.ndarray  # expected conversions it adds (0 unless sent), unconditional
    p_convert_if_sent: np.ndarray  # its conversion probability for a customer the first did not convert
    p_in_window: np.ndarray
    incentive_cost: np.ndarray
    fatigue: np.ndarray

    @classmethod
    def empty(cls, n: int) -> FollowUps:
        z, neg = np.zeros(n), np.full(n, -1, np.int64)
        return cls(decided=np.zeros(n, bool), send=np.zeros(n, bool), channel=neg.copy(), delay_min=np.zeros(n, np.int64),
                   incentive=neg.copy(), propensity=np.ones(n), sent_s=neg.copy(), opened_s=neg.copy(),
                   clicked_s=neg.copy(), unsub_s=neg.copy(), p_open=z.copy(), p_click=z.copy(), p_convert=z.copy(),
                   p_convert_if_sent=z.copy(), p_in_window=np.ones(n), incentive_cost=z.copy(),
                   fatigue=np.zeros(n, np.int64))


def p_within(room_s: np.ndarray, attrib_s: int, mean_s: float) -> np.ndarray:
    """P(conversion delay < room): the delay is Exponential(mean) wrapped modulo the attribution window.

    Conversions after the end of the data are never observed, so a policy's
    true value counts each trigger's conversion with this probability.

    >>> p_within(np.array([0, 10**9]), 7 * 86_400, 43_200.0).tolist()
    [0.0, 1.0]
    """
    x = np.clip(np.asarray(room_s, dtype=float), 0, attrib_s)
    return -np.expm1(-x / mean_s) / -np.expm1(-attrib_s / mean_s)


def basket_values(cat: Catalog, bb: Backbone) -> np.ndarray:
    """Order value if the trigger converts: its products, or the customer's usual basket."""
    prods = bb.trig_products
    has = prods >= 0
    t = np.repeat(bb.trig_s, 3).reshape(-1, 3)
    price = np.zeros(prods.shape)
    price[has] = cat.price_at(prods[has], t[has])
    ctx_value = price.sum(axis=1)
    z = ndtri(np.clip(bb.uniforms[:, _U_REV], 1e-9, 1 - 1e-9))
    usual = 38.0 * bb.people.basket[bb.trig_cust] * np.exp(0.3 * z)
    return np.round(np.where(has.any(axis=1), ctx_value, usual), 2)


def product_strings(products: np.ndarray, product_ids: np.ndarray) -> np.ndarray:
    """(n, 3) product indices (-1 padded on the right) → '|'-joined ids (None when empty)."""
    out = np.full(len(products), None, dtype=object)
    k = (products >= 0).sum(axis=1)
    for width in range(1, products.shape[1] + 1):
        rows = np.flatnonzero(k == width)
        if len(rows) == 0:
            continue
        cols = [pa.array(np.asarray(product_ids, dtype=object)[products[rows, j]], pa.string()) for j in range(width)]
        joined = cols[0] if width == 1 else pc.binary_join_element_wise(*cols, "|")
        out[rows] = joined.to_numpy(zero_copy_only=False)
    return out


def candidates_frame(bb: Backbone, rows: np.ndarray, opt_in: np.ndarray, dtypes: dict[str, pd.CategoricalDtype],
                     products: np.ndarray, sends_7d: np.ndarray, orders_90d: np.ndarray,
                     last_order_s: np.ndarray, item_candidates: np.ndarray | None = None) -> pd.DataFrame:
    """The policy's view of some triggers: observable context only, never latent truth.

    ``opt_in`` is (len(rows), 4): each customer's channel opt-ins at the trigger;
    ``sends_7d`` the messages sent to them in the 7 days before it,
    ``orders_90d`` their orders in the 90 days before it and
    ``days_since_order`` the days since their last order (NaN for none): what
    :func:`cadence.features.logged.logged_candidates` reads back from the tables.
    ``item_candidates`` (shops with tastes) the products a message may show.
    """
    c = bb.trig_cust[rows]
    frame = {
        "customer_id": pd.Categorical.from_codes(c, dtype=dtypes["customer_id"], validate=False),  # type: ignore[call-arg]
        "stage": pd.Categorical.from_codes(bb.trig_stage[rows], dtype=dtypes["stage"], validate=False),  # type: ignore[call-arg]
        "triggered_at": pd.to_datetime(bb.trig_s[rows], unit="s", utc=True),
        "products": products[rows],
        "query": bb.trig_query[rows],
        "timezone": pd.Categorical.from_codes(bb.people.tz[c], dtype=dtypes["timezone"], validate=False),  # type: ignore[call-arg]
    }
    for j, ch in enumerate(CHANNELS):
        frame[f"opt_in_{ch}"] = opt_in[:, j]
    frame["sends_7d"] = sends_7d
    frame["orders_90d"] = orders_90d
    t = bb.trig_s[rows]
    # Ring slots never written hold min // 2; anything at or below it means "no order".
    frame["days_since_order"] = np.where(last_order_s > np.iinfo(np.int64).min // 2, (t - last_order_s) / DAY, np.nan)
    if item_candidates is not None:
        frame["item_candidates"] = item_candidates[rows]
    return pd.DataFrame(frame)


def _codes(values: pd.Series, vocab: tuple[str, ...]) -> np.ndarray:
    return np.asarray(pd.Categorical(values, categories=list(vocab)).codes, dtype=np.int64)


def run_messages(cfg: ShopConfig, cat: Catalog, bb: Backbone, policy: Policy, chunk: int,
                 customer_ids: np.ndarray) -> Outcomes:
    """Run ``policy`` over the chunk's triggers and draw outcomes from the true response model."""
    from cadence.synthetic.backbone import rank_within

    rp = cfg.response
    pp = bb.people
    n_t = len(bb.trig_s)
    n_c = len(pp.idx)
    rng_policy = np.random.default_rng([cfg.seed, 2, chunk])
    u = bb.uniforms
    stage_names = np.asarray(STAGES)
    stage_base = np.array([rp.stage_base[s] for s in STAGES])
    stage_scale = np.array([rp.stage_effect_scale[s] for s in STAGES])
    seg_eff = np.array([rp.segment_effect[s] for s in SEGMENT_NAMES])
    ch_eff = np.array([rp.channel_effect[c] for c in CHANNELS])
    open_base = np.array([rp.open_base[c] for c in CHANNELS])
    inc_eff = np.array([rp.incentive_effect[i] for i in INCENTIVES])
    is_abandon = np.isin(stage_names, list(ABANDON_STAGES))
    # Each trigger's response type, intent and deal sensitivity (its customer's, or its own in a realised world).
    t_seg, t_intent, t_deal = trigger_response(bb)
    annoyed = np.asarray(SEGMENT_NAMES)[t_seg] == "annoyed"
    from cadence.synthetic.backbone import TZ_NAMES

    value = basket_values(cat, bb)
    tastes = _TasteState(cfg, cat, bb, chunk) if cfg.tastes is not None else None
    products = product_strings(bb.trig_products, cat.product_id)
    dtypes = {
        "customer_id": pd.CategoricalDtype(pd.Index(customer_ids)),
        "stage": pd.CategoricalDtype(list(STAGES)),
        "timezone": pd.CategoricalDtype(list(TZ_NAMES)),
    }

    out = Outcomes(
        send=np.zeros(n_t, bool), channel=np.full(n_t, -1), delay_min=np.zeros(n_t, np.int64),
        incentive=np.full(n_t, -1), propensity=np.ones(n_t), sent_s=np.full(n_t, -1, np.int64),
        opened_s=np.full(n_t, -1, np.int64), clicked_s=np.full(n_t, -1, np.int64),
        converted_s=np.full(n_t, -1, np.int64), unsub_s=np.full(n_t, -1, np.int64),
        revenue=np.zeros(n_t), p_open=np.zeros(n_t), p_click=np.zeros(n_t), p_convert=np.zeros(n_t),
        p_convert_hold=np.zeros(n_t), send_effect=np.zeros(n_t), value_if_converted=value, incentive_cost=np.zeros(n_t),
        fatigue=np.zeros(n_t, np.int64), p_in_window=np.ones(n_t), products=products,
        conv_step=np.zeros(n_t, np.int8), fu=FollowUps.empty(n_t),
    )
    item_shift = np.zeros(n_t)  # the shown items' relevance term of each trigger's send
    if tastes is not None:
        out.items = np.full(n_t, None, dtype=object)
        out.items_propensity = np.full(n_t, np.nan)
        out.items_relevance = np.full(n_t, np.nan)
        out.conv_product = np.full(n_t, -1, np.int64)
        out.item_candidates = tastes.cand_str
    u_fu: np.ndarray | None = None  # follow-up uniforms, drawn once per chunk when first needed
    ring = np.full((n_c, _RING), np.iinfo(np.int64).min // 2)
    ring_pos = np.zeros(n_c, np.int64)
    # Orders the shop has seen: organic ones (fixed) and conversions of earlier triggers.
    org_key = np.sort(bb.ord_cust.astype(np.int64) * ORDER_KEY + bb.ord_s)
    conv_ring = np.full((n_c, _RING), np.iinfo(np.int64).min // 2)
    conv_pos = np.zeros(n_c, np.int64)
    unsub_at = np.where(pp.opt_in, np.iinfo(np.int64).max, np.iinfo(np.int64).min)

    rank = rank_within(bb.trig_cust)
    order = np.argsort(rank, kind="stable")
    bounds = np.searchsorted(rank[order], np.arange(int(rank.max()) + 2 if n_t else 1))
    attrib = int(cfg.rules.attribution_days * DAY)

    def respond(r: np.ndarray, c: np.ndarray, s: np.ndarray, ch: np.ndarray, inc: np.ndarray, delay: np.ndarray,
                tau: np.ndarray, n7: np.ndarray) -> tuple[np.ndarray, ...]:
        """Conversion logits (hold, send) and open/unsubscribe probabilities of trigger rows ``r`` sent at ``tau``."""
        # Send-time match: how close the local send hour is to the preferred hour.
        match = send_time_match(((tau % DAY) / 3600 + pp.tz_offset_h[c]) % 24, pp.preferred_hour[c])
        logit0 = stage_base[s] + t_intent[r]
        delay_pen = np.where(is_abandon[s], rp.delay_decay * np.log2(np.maximum(delay, 20) / 20), 0.0)
        logit1 = (
            logit0
            + stage_scale[s] * seg_eff[t_seg[r]]
            + ch_eff[np.maximum(ch, 0)]
            + t_deal[r] * inc_eff[np.maximum(inc, 0)]
            - delay_pen
            + rp.send_time_effect * match
            - rp.fatigue_conversion * n7
        )
        p_open = expit(open_base[np.maximum(ch, 0)] + pp.open_affinity[c] + OPEN_SEND_TIME_EFFECT * match - rp.fatigue_open * n7)
        p_unsub = expit(rp.unsubscribe_base + rp.unsubscribe_annoyed * annoyed[r] + rp.unsubscribe_fatigue * n7)
        return logit0, logit1, p_open, p_unsub

    def incentive_cost(inc: np.ndarray, send: np.ndarray, rows: np.ndarray) -> np.ndarray:
        inc_names = np.asarray(INCENTIVES)[np.maximum(inc, 0)]
        fixed = np.array([INCENTIVE_COST_FIXED.get(x, 0.0) for x in INCENTIVES])[np.maximum(inc, 0)]
        return np.where(send, np.where(inc_names == "percent_code", INCENTIVE_PERCENT * value[rows], fixed), 0.0)

    def click_probability(c: np.ndarray, r: np.ndarray) -> np.ndarray:
        items = 0.0 if tastes is None else tastes.spec.click_item_effect * item_shift[r]
        return expit(rp.click_base + 0.5 * pp.open_affinity[c] + 0.4 * (bb.trig_products[r, 0] >= 0) + items)

    def sends_in_week(c: np.ndarray, at: np.ndarray) -> np.ndarray:
        """Sends remembered in ``(at - 7 days, at]`` (fatigue)."""
        return ((ring[c] > (at - 7 * DAY)[:, None]) & (ring[c] <= at[:, None])).sum(axis=1)

    def remember(buf: np.ndarray, pos: np.ndarray, cust: np.ndarray, times: np.ndarray) -> None:
        buf[cust, pos[cust] % _RING] = times
        pos[cust] += 1

    def open_delay(u: np.ndarray) -> np.ndarray:
        return (-np.log1p(-u) * 7200).astype(np.int64)

    def conversion_delay(u: np.ndarray) -> np.ndarray:
        return (-np.log1p(-u) * 0.5 * DAY).astype(np.int64) % attrib

    def _follow_up(dec: pd.DataFrame, rows: np.ndarray, send: np.ndarray, t: np.ndarray, tau: np.ndarray,
                   converted: np.ndarray, conv_t: np.ndarray, would_convert: np.ndarray, p_conv: np.ndarray,
                   p0: np.ndarray, current: np.ndarray) -> dict[str, np.ndarray] | None:
        """Follow-ups of this round's sent triggers (see the module docstring); state is updated by the caller."""
        planned = send & dec["followup_action"].isin(["send", "hold"]).to_numpy()
        j = np.flatnonzero(planned)
        if len(j) == 0:
            return None
        r, c, st, t0 = rows[j], bb.trig_cust[rows[j]], bb.trig_stage[rows[j]], t[j]
        delay = dec["followup_delay_minutes"].to_numpy()[j].astype(np.int64)
        tau2 = t0 + delay * 60
        # The goal: any order in (t, tau2] other than this trigger's own conversion (organic ones and
        # earlier triggers' conversions); the first message's conversion is checked separately.
        n_org, _ = orders_before(org_key, c, tau2 + 1, window_s=tau2 - t0)
        other = (n_org > 0) | ((conv_ring[c] > t0[:, None]) & (conv_ring[c] <= tau2[:, None])).any(axis=1)
        due = (tau2 > tau[j]) & ~other & (tau2 < cfg.end_s)
        decided = due & ~(converted[j] & (conv_t[j] <= tau2))
        want = (dec["followup_action"].to_numpy()[j] == "send")
        ch2 = _codes(dec["followup_channel"].iloc[j], CHANNELS)
        inc2 = np.maximum(_codes(dec["followup_incentive"].iloc[j], INCENTIVES), 0)
        reach = (ch2 >= 0) & current[j, np.maximum(ch2, 0)] & (unsub_at[c, np.maximum(ch2, 0)] > tau2)
        sendable = due & want & reach  # would be sent were the first message not to convert before it
        sent = decided & sendable
        n7 = sends_in_week(c, tau2) + (tau[j] > tau2 - 7 * DAY)  # the first message, not yet in the ring
        _l0, l2, po, pu = respond(r, c, st, ch2, inc2, delay, tau2, n7)
        if tastes is not None:
            l2 = l2 + tastes.spec.item_effect * item_shift[r]
        p2 = expit(l2)
        c_if = np.clip((p2 - p0[j]) / (1 - p0[j]), 0.0, 1.0)
        uf = u_fu[r]  # type: ignore[index]
        opened = sent & (uf[:, 0] < po)
        p_click = click_probability(c, r)
        clicked = opened & (uf[:, 1] < p_click)
        open_t = tau2 + open_delay(uf[:, 2])
        conv_t2 = tau2 + conversion_delay(uf[:, 3])
        conv2 = sent & ~would_convert[j] & (uf[:, 4] < c_if) & (conv_t2 < cfg.end_s)
        unsub = sent & (uf[:, 5] < pu)
        return {
            "j": j, "r": r, "c": c, "decided": decided, "sent": sent, "ch": np.where(decided & want, ch2, -1),
            "inc": np.where(decided & want, inc2, -1), "delay": np.where(decided, delay, 0), "tau2": tau2,
            "propensity": dec["followup_propensity"].to_numpy(dtype=float)[j], "opened": opened, "clicked": clicked,
            "open_t": open_t, "conv": conv2, "conv_t": conv_t2, "unsub": unsub, "n7": n7,
            "p_open": np.where(sent, po, 0.0), "p_click": np.where(sent, po * p_click, 0.0),
            # Expected over the first message's conversion: it adds c_if where the first did not convert.
            "p_convert": (1 - p_conv[j]) * sendable * c_if, "c_if": c_if,
            "cost": incentive_cost(inc2, sendable, r),
        }

    def _apply_follow_up(f: dict[str, np.ndarray]) -> None:
        """Record the follow-ups and update the world's memory (sends, conversions, unsubscribes)."""
        r, c, sent, conv = f["r"], f["c"], f["sent"], f["conv"]
        remember(ring, ring_pos, c[sent], f["tau2"][sent])
        remember(conv_ring, conv_pos, c[conv], f["conv_t"][conv])
        if f["unsub"].any():
            unsub_at[c[f["unsub"]], f["ch"][f["unsub"]]] = f["tau2"][f["unsub"]] + 3600
        rc = r[conv]
        out.converted_s[rc] = f["conv_t"][conv]
        out.revenue[rc] = value[rc]
        out.conv_step[rc] = 2
        g = out.fu
        g.decided[r], g.send[r], g.channel[r], g.incentive[r] = f["decided"], sent, f["ch"], f["inc"]
        g.delay_min[r], g.propensity[r] = f["delay"], f["propensity"]
        g.sent_s[r] = np.where(sent, f["tau2"], -1)
        g.opened_s[r] = np.where(f["opened"], f["open_t"], -1)
        g.clicked_s[r] = np.where(f["clicked"], f["open_t"] + 30, -1)
        g.unsub_s[r] = np.where(f["unsub"], f["tau2"] + 3600, -1)
        g.p_open[r], g.p_click[r], g.p_convert[r], g.p_convert_if_sent[r] = f["p_open"], f["p_click"], f["p_convert"], f["c_if"]
        g.p_in_window[r] = p_within(cfg.end_s - f["tau2"], attrib, 0.5 * DAY)
        g.incentive_cost[r], g.fatigue[r] = f["cost"], f["n7"]

    for k in range(len(bounds) - 1):
        rows = order[bounds[k]:bounds[k + 1]]
        if len(rows) == 0:
            continue
        c = bb.trig_cust[rows]
        t = bb.trig_s[rows]
        s = bb.trig_stage[rows]
        current = unsub_at[c] > t[:, None]
        recent = ((ring[c] >= (t - 7 * DAY)[:, None]) & (ring[c] < t[:, None])).sum(axis=1)
        n90, last = orders_before(org_key, c, t)
        conv_before = conv_ring[c] < t[:, None]
        n90 = n90 + (conv_before & (conv_ring[c] >= (t - 90 * DAY)[:, None])).sum(axis=1)
        last = np.maximum(last, np.where(conv_before, conv_ring[c], np.iinfo(np.int64).min).max(axis=1))
        cands = candidates_frame(bb, rows, current, dtypes, products, recent, n90, last,
                                 None if tastes is None else tastes.cand_str)
        dec = policy.decide(cands, rng_policy)
        check_decisions(dec, len(rows), policy.policy_id)
        send = (dec["action"] == "send").to_numpy()
        ch = _codes(dec["channel"], CHANNELS)
        inc = _codes(dec["incentive"], INCENTIVES)
        # A send without a reachable channel cannot go out: the world holds it.
        reach = np.zeros(len(rows), bool)
        reach[send] = (ch[send] >= 0) & current[np.flatnonzero(send), np.maximum(ch[send], 0)]
        send &= reach
        inc = np.where(send, np.maximum(inc, 0), -1)
        ch = np.where(send, ch, -1)
        delay = np.where(send, dec["delay_minutes"].to_numpy(dtype=np.int64), 0)
        tau = t + delay * 60
        n7 = sends_in_week(c, tau)
        logit0, logit1, po, pu = respond(rows, c, s, ch, inc, delay, tau, n7)
        if tastes is not None:
            tastes.show(dec, rows, send, tau, out, value, item_shift, policy.policy_id)
            logit1 = logit1 + tastes.spec.item_effect * item_shift[rows]
        p0 = expit(logit0)
        p_conv = np.where(send, expit(logit1), p0)
        p_open = np.where(send, po, 0.0)
        p_click = np.where(send, click_probability(c, rows), 0.0)
        p_unsub = np.where(send, pu, 0.0)
        ur = u[rows]
        opened = send & (ur[:, _U_OPEN] < p_open)
        clicked = opened & (ur[:, _U_CLICK] < p_click)
        conv_t = np.where(send, tau, t) + conversion_delay(ur[:, _U_TIME])
        converted = (ur[:, _U_CONV] < p_conv) & (conv_t < cfg.end_s)
        unsub = send & (ur[:, _U_UNSUB] < p_unsub)
        open_t = tau + open_delay(ur[:, _U_OPEN_T])
        # Unsubscribing takes effect for later triggers.
        if unsub.any():
            unsub_at[c[unsub], ch[unsub]] = tau[unsub] + 3600
        fu = None
        if "followup_action" in dec and send.any():
            if u_fu is None:
                u_fu = np.random.default_rng([cfg.seed, 7, chunk]).random((n_t, 6))
            fu = _follow_up(dec, rows, send, t, tau, converted, conv_t, ur[:, _U_CONV] < p_conv, p_conv, p0, current)
        # Remember conversions (goal checks) and sends (fatigue).
        remember(conv_ring, conv_pos, c[converted], conv_t[converted])
        remember(ring, ring_pos, c[send], tau[send])

        cost = incentive_cost(inc, send, rows)

        out.send[rows] = send
        out.channel[rows] = ch
        out.delay_min[rows] = delay
        out.incentive[rows] = inc
        out.propensity[rows] = dec["propensity"].to_numpy(dtype=float)
        out.sent_s[rows] = np.where(send, tau, -1)
        out.opened_s[rows] = np.where(opened, open_t, -1)
        out.clicked_s[rows] = np.where(clicked, open_t + 30 + (ur[:, _U_CLICK] * 600).astype(np.int64), -1)
        out.converted_s[rows] = np.where(converted, conv_t, -1)
        out.unsub_s[rows] = np.where(unsub, tau + 3600, -1)
        out.revenue[rows] = np.where(converted, value[rows], 0.0)
        out.p_open[rows] = p_open
        out.p_click[rows] = p_open * p_click
        out.p_convert[rows] = p_conv
        out.p_convert_hold[rows] = p0
        plain = logit0 + stage_scale[s] * seg_eff[t_seg[rows]] + ch_eff[0] - rp.fatigue_conversion * n7
        out.send_effect[rows] = expit(plain) - p0
        out.incentive_cost[rows] = cost
        out.fatigue[rows] = n7
        out.p_in_window[rows] = p_within(cfg.end_s - np.where(send, tau, t), attrib, 0.5 * DAY)
        out.conv_step[rows] = converted
        if fu is not None:
            _apply_follow_up(fu)
    return out


class _TasteState:
    """What run_messages needs in a shop with tastes: candidate sets, item uniforms, relevance."""

    def __init__(self, cfg: ShopConfig, cat: Catalog, bb: Backbone, chunk: int):
        from cadence.synthetic.tastes import candidate_sets, mass_table

        assert cfg.tastes is not None and bb.item_tastes is not None and bb.customer_tastes is not None
        self.cfg, self.cat, self.bb, self.spec = cfg, cat, bb, cfg.tastes
        self.cand = candidate_sets(self.spec, bb.item_tastes, bb.trig_products, bb.trig_query, bb.trig_s)
        self.cand_str = product_strings(self.cand, cat.product_id)
        rng = np.random.default_rng([cfg.seed, 11, chunk])
        # Per-trigger uniforms (common to every policy): the fallback item rule, and which shown item is bought.
        self.u_items = rng.random((len(bb.trig_s), self.cand.shape[1]))
        self.u_buy = rng.random(len(bb.trig_s))
        self.index = pd.Index(cat.product_id)
        self.table = mass_table(cfg, bb.item_tastes, bb.customer_tastes, cfg.start_s)

    def _parse(self, items: pd.Series, policy_id: str) -> np.ndarray:
        from cadence.synthetic.logging_policy import split_items

        ids = split_items(items)
        if ids.shape[1] == 0:
            return np.full((len(items), 1), -1, np.int64)
        given = pd.notna(ids)
        codes = np.full(ids.shape, -1, np.int64)
        codes[given] = self.index.get_indexer(pd.Index(ids[given].astype(str)))
        bad = given & (codes < 0)
        if bad.any():
            raise ValueError(f"policy {policy_id!r}: decisions column 'items' names {int(bad.sum())} product id(s) "
                             f"not in the catalogue, e.g. {ids[bad][0]!r}")
        # Left-align each row's products.
        pos = np.argsort(codes < 0, axis=1, kind="stable")
        return np.take_along_axis(codes, pos, axis=1)

    def show(self, dec: pd.DataFrame, rows: np.ndarray, send: np.ndarray, tau: np.ndarray, out: Outcomes,
             value: np.ndarray, item_shift: np.ndarray, policy_id: str) -> None:
        """Record the items each send shows, their relevance term, what a conversion buys and its value."""
        from cadence.synthetic.logging_policy import subset_positions
        from cadence.synthetic.tastes import relevance

        assert out.items is not None and out.items_propensity is not None and out.items_relevance is not None
        assert out.conv_product is not None
        bb, cat = self.bb, self.cat
        if "items" in dec.columns:
            shown = self._parse(dec["items"], policy_id)
            prop = (dec["items_propensity"].to_numpy(dtype=float) if "items_propensity" in dec.columns
                    else np.full(len(rows), np.nan))
        else:
            rec = np.isin(bb.trig_stage[rows], [i for i, st in enumerate(STAGES) if st in RECOMMENDATION_STAGES])
            pos, prop = subset_positions(self.cand[rows] >= 0, self.spec.items_per_message, self.u_items[rows])
            shown = np.where(pos >= 0, np.take_along_axis(self.cand[rows], np.maximum(pos, 0), axis=1), -1)
            shown[~rec] = -1
        shown[~send] = -1
        has = (shown >= 0).any(axis=1)
        r_i, c_i = np.nonzero(shown >= 0)
        rel = np.zeros(shown.shape)
        rel[r_i, c_i] = relevance(self.cfg, bb.item_tastes, bb.customer_tastes, bb.trig_cust[rows][r_i],  # type: ignore[arg-type]
                                  shown[r_i, c_i], tau[r_i], self.table)
        k = np.maximum((shown >= 0).sum(axis=1), 1)
        mean_rel = rel.sum(axis=1) / k
        item_shift[rows] = np.where(has, np.log1p(mean_rel) - np.log(2.0), 0.0)
        out.items[rows] = np.where(has, product_strings(shown, cat.product_id), np.array(None, dtype=object))
        out.items_propensity[rows] = np.where(has, prop, np.nan)
        out.items_relevance[rows] = np.where(has, mean_rel, np.nan)
        # A conversion buys one shown item, in proportion to relevance (uniformly if all are 0).
        weight = np.where(shown >= 0, rel + 1e-12, 0.0)
        cum = np.cumsum(weight, axis=1)
        total = cum[:, -1]
        j = np.minimum((cum < (self.u_buy[rows] * total)[:, None]).sum(axis=1), shown.shape[1] - 1)
        out.conv_product[rows] = np.where(has, shown[np.arange(len(rows)), j], -1)
        t_price = np.repeat(bb.trig_s[rows], shown.shape[1]).reshape(shown.shape)
        price = np.zeros(shown.shape)
        price[r_i, c_i] = cat.price_at(shown[r_i, c_i], t_price[r_i, c_i])
        expected = (weight * price).sum(axis=1) / np.where(total > 0, total, 1.0)
        value[rows] = np.where(has, np.round(expected, 2), value[rows])
