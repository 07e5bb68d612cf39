"""The true churn risk of every customer of a synthetic shop, from the world's state at a cutoff.

:func:`true_churn_risk` answers, for each customer and horizon ``h``, the
question churn models estimate: the probability of *no order at all* in
``[as_of, as_of + h)``. It reads nothing that happened after ``as_of``; it
regenerates the world from the shop's config (the same random streams) to
recover the state at ``as_of`` and works forward from there.

Only the first order after ``as_of`` matters, which splits the answer into
three independent factors:

.. math::

    P(\\text{no order}) = P_{\\text{organic}} \\cdot P_{\\text{pending}} \\cdot P_{\\text{messages}} .

``P_organic`` -- no organic purchase and no replenishment (exact). A customer
who dropped out before ``as_of`` (at their last purchase, or dormant from the
start) never buys on their own again. The living buy at Poisson rate
``lambda`` and keep buying until a purchase turns out to be their last, so
their first purchase after ``as_of`` comes at rate ``lambda`` whatever their
dropout probability. Every consumable bought before ``as_of`` that the
customer keeps buying has a due date (drawn at its purchase: the
replenishment schedule); it becomes an order if the customer is alive then,
and they are while no organic purchase has come first. Hence ``P_organic`` is
1 for the lapsed, 0 when a replenishment falls due in the window and
``exp(-lambda * exposure)`` otherwise.

``P_pending`` -- no conversion, in the window, of a message triggered before
``as_of`` that has not converted yet (exact): the product of
``1 - p (G(a + h - b) - G(a - b)) / (1 - p G(a - b))`` over those triggers,
with ``p`` the true conversion probability under the action taken, ``b`` the
send (or, under hold, trigger) time and ``G`` the distribution of the
conversion delay (:func:`cadence.synthetic.messages.p_within`).

``P_messages`` -- no conversion of a trigger that fires in the window
(Monte Carlo). Given no order in the window the world's future holds no
order either, so ``draws`` copies of every customer continue the world from
``as_of`` without orders: new browsing sessions while alive, the triggers
that follow from them and from the history (follow-ups, win-back, buy-again,
price drops on viewed products, occasions, ...), and the logging policy's
decisions on them with the true response model, fatigue and unsubscribes
carried over from the realised messages of the last days. Each copy
contributes ``prod (1 - p G(a + h - b))`` over its triggers (conversions
drawn out analytically), and ``P_messages`` is the mean over copies. Its
Monte Carlo error is reported in ``mc_se_<h>d``.

Conversions open no triggers and no organic orders in this world, and the
logging policy does not read the order history, which is what makes the
conversions of different triggers independent given the decisions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from cadence.contract.actions import Policy
from cadence.synthetic.backbone import (
    Backbone,
    People,
    ProductSampler,
    build_backbone,
    draw_orders,
    draw_people,
    draw_sessions,
)
from cadence.synthetic.catalog import DAY, Catalog, make_catalog
from cadence.synthetic.config import ShopConfig
from cadence.synthetic.logging_policy import RandomizedLoggingPolicy
from cadence.synthetic.messages import Outcomes, p_within, run_messages
from cadence.synthetic.world import customer_ids
from cadence.synthetic.world_triggers import world_triggers

_MAX = np.iinfo(np.int64).max
#: Realised messages replayed before the cutoff: fatigue counts 7 days, a send may lag its trigger by 12 hours.
_REPLAY_S = 8 * DAY


def _cutoff_s(as_of: Any) -> tuple[pd.Timestamp, float]:
    ts = pd.Timestamp(as_of)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return ts, ts.value / 1e9


def _organic(cfg: ShopConfig, cat: Catalog, chunk: int, a: float, hs: list[float]) -> tuple[People, np.ndarray, np.ndarray, np.ndarray]:
    """Alive flag, first scheduled replenishment at or after ``a`` and P_organic (n, len(hs))."""
    rng = np.random.default_rng([cfg.seed, 1, chunk])  # the stream of build_backbone
    pp = draw_people(cfg, chunk, rng)
    draws = draw_orders(cfg, cat, pp, rng)
    n = len(pp.idx)
    dead = (pp.death_s < a) | (pp.death_s <= cfg.start_s)
    due = np.full(n, np.inf)
    pending = (draws.sched_from_s < a) & (draws.sched_due_s >= a)
    np.minimum.at(due, draws.sched_cust[pending], draws.sched_due_s[pending].astype(float))
    out = np.empty((n, len(hs)))
    for j, h in enumerate(hs):
        exposure = np.clip(np.minimum(a + h * DAY, cfg.end_s) - np.maximum(a, pp.alive_from_s), 0, None) / DAY
        quiet = np.where(due < a + h * DAY, 0.0, np.exp(-pp.rate * exposure))
        out[:, j] = np.where(dead, 1.0, quiet)
    return pp, ~dead, due, out


def _delay_cdf(x: np.ndarray, attrib: int) -> np.ndarray:
    """P(conversion delay < x) (0 for x <= 0)."""
    return np.where(x > 0, p_within(np.maximum(x, 0), attrib, 0.5 * DAY), 0.0)


def _pending(bb: Backbone, out: Outcomes, a: float, hs: list[float], attrib: int) -> np.ndarray:
    """P_pending (n, len(hs)): messages triggered before ``a`` that have not converted by then."""
    n = len(bb.people.idx)
    base = np.where(out.send, out.sent_s, bb.trig_s).astype(float)
    open_ = (bb.trig_s < a) & (base >= a - attrib) & ~((out.converted_s >= 0) & (out.converted_s < a))
    rows = np.flatnonzero(open_)
    p = out.p_convert[rows]
    before = p * _delay_cdf(a - base[rows], attrib)
    res = np.empty((n, len(hs)))
    for j, h in enumerate(hs):
        inside = p * (_delay_cdf(a + h * DAY - base[rows], attrib) - _delay_cdf(a - base[rows], attrib))
        q = np.clip(inside / np.maximum(1.0 - before, 1e-12), 0.0, 1.0)
        res[:, j] = np.exp(np.bincount(bb.trig_cust[rows], weights=np.log1p(-np.minimum(q, 1 - 1e-15)), minlength=n))
    return res


@dataclass
class _Replay:
    """The logging policy on new triggers; the realised decision on replayed ones (same rounds as run_messages)."""

    inner: Policy
    trig_cust: np.ndarray
    fixed: pd.DataFrame  # decisions per trigger row; NaN propensity where free
    policy_id: str = "churn-truth-replay"
    _rounds: list[np.ndarray] = field(default_factory=list)

    def __post_init__(self) -> None:
        from cadence.synthetic.backbone import rank_within

        rank = rank_within(self.trig_cust)
        order = np.argsort(rank, kind="stable")
        bounds = np.searchsorted(rank[order], np.arange(int(rank.max()) + 2 if len(rank) else 1))
        self._rounds = [order[bounds[k]:bounds[k + 1]] for k in range(len(bounds) - 1)
                        if bounds[k + 1] > bounds[k]][::-1]

    def decide(self, candidates: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
        rows = self._rounds.pop()
        codes = np.asarray(candidates["customer_id"].cat.codes)
        if len(rows) != len(candidates) or not np.array_equal(codes, self.trig_cust[rows]):
            raise RuntimeError("churn truth: replayed triggers are out of step with run_messages")
        dec = self.inner.decide(candidates, rng).reset_index(drop=True)
        fixed = self.fixed.iloc[rows].reset_index(drop=True)
        keep = fixed["propensity"].notna().to_numpy()
        if keep.any():
            dec = dec.astype({"channel": object, "incentive": object})
            dec.loc[keep] = fixed.loc[keep, list(dec.columns)].to_numpy()
            dec = dec.astype({"delay_minutes": np.int64, "propensity": float})
        dec.index = candidates.index
        return dec


def _tile_people(pp: People, reps: int) -> People:
    def t(x: np.ndarray) -> np.ndarray:
        return np.tile(x, (reps,) + (1,) * (x.ndim - 1))

    n = len(pp.idx)
    return People(**{k: (np.arange(reps * n) if k == "idx" else t(v)) for k, v in vars(pp).items()})


def _future_messages(cfg: ShopConfig, cat: Catalog, bb: Backbone, out: Outcomes, alive: np.ndarray,
                     policy: Policy, a: float, hs: list[float], draws: int, seed: int, chunk: int,
                     attrib: int) -> tuple[np.ndarray, np.ndarray]:
    """P_messages (n, len(hs)) and its Monte Carlo standard error."""
    pp = bb.people
    n = len(pp.idx)
    R = draws
    rng = np.random.default_rng([cfg.seed, 7, seed, chunk])
    horizon_end = min(a + max(hs) * DAY, cfg.end_s)
    replay_from = a - _REPLAY_S
    rules = cfg.rules
    # History the triggers from replay_from on can depend on.
    max_interval = float(np.nanmax(cat.interval_days)) if np.isfinite(cat.interval_days).any() else 0.0
    order_cut = replay_from - (max(rules.win_back_days, max_interval) + 2) * DAY
    event_cut = replay_from - (max(rules.price_drop_lookback_days, rules.new_arrivals_lookback_days) + 2) * DAY

    # Opt-ins as of the replay: unsubscribes of earlier triggers applied.
    opt_in = pp.opt_in.copy()
    gone = (out.unsub_s >= 0) & (bb.trig_s < replay_from)
    opt_in[bb.trig_cust[gone], out.channel[gone]] = False

    people = _tile_people(pp, R)
    people.opt_in = np.tile(opt_in, (R, 1))
    alive_r = np.tile(alive, R)
    people.death_s = np.where(alive_r, _MAX, people.death_s)

    # Past orders (kept whole: items and every status, drawn when the order was placed).
    o_keep = np.flatnonzero((bb.ord_s < a) & (bb.ord_s >= order_cut))
    new_o = np.full(len(bb.ord_s), -1)
    new_o[o_keep] = np.arange(len(o_keep))
    it_keep = np.flatnonzero(new_o[bb.item_order] >= 0)
    st_keep = np.flatnonzero(new_o[bb.status_order] >= 0)
    k_o = len(o_keep)

    def rep(x: np.ndarray, add: np.ndarray | int = 0) -> np.ndarray:
        return (np.tile(x, R) + np.repeat(np.arange(R, dtype=np.int64), len(x)) * add).astype(x.dtype)

    # Past sessions that ended before the cutoff and may still matter.
    sess = bb.ev_session
    s_n = int(sess.max()) + 1 if len(sess) else 0
    first = np.full(s_n, _MAX)
    last = np.full(s_n, np.iinfo(np.int64).min)
    np.minimum.at(first, sess, bb.ev_s)
    np.maximum.at(last, sess, bb.ev_s)
    e_keep = np.flatnonzero((last[sess] < a) & (last[sess] >= event_cut))
    # New sessions of the living, from the cutoff (or signup) to the end of the horizon.
    lo = np.maximum(a, people.alive_from_s).astype(np.int64)
    hi = np.where(alive_r, np.maximum(lo, int(np.ceil(horizon_end))), lo).astype(np.int64)
    browse = np.tile(bb.browse_rate if bb.browse_rate is not None else np.zeros(n), R)
    empty = np.zeros(0, np.int64)
    if (hi > lo).any():
        fut = draw_sessions(cfg, cat, people, rng, ProductSampler(cat), browse, lo, hi, empty, empty, empty, empty)
    else:
        fut = (empty, empty, empty, empty, np.zeros(0, object), empty, empty)
    f_cust, f_s, f_type, f_prod, f_query, f_res, f_sess = fut
    ev = {
        "cust": np.r_[rep(bb.ev_cust[e_keep], n), f_cust],
        "s": np.r_[rep(bb.ev_s[e_keep]), f_s],
        "type": np.r_[rep(bb.ev_type[e_keep]), f_type.astype(bb.ev_type.dtype)],
        "product": np.r_[rep(bb.ev_product[e_keep]), f_prod],
        "query": np.concatenate([np.tile(bb.ev_query[e_keep], R), f_query]),
        "results": np.r_[rep(bb.ev_results[e_keep]), f_res],
        "session": np.r_[rep(sess[e_keep], s_n), f_sess + R * s_n],
    }
    perm = np.lexsort((ev["s"], ev["cust"]))
    ev = {k: v[perm] for k, v in ev.items()}
    ev["session"] = np.unique(ev["session"], return_inverse=True)[1].astype(np.int64)
    o_cust, o_s = rep(bb.ord_cust[o_keep], n), rep(bb.ord_s[o_keep])
    o_perm = np.lexsort((o_s, o_cust))
    o_inv = np.empty_like(o_perm)
    o_inv[o_perm] = np.arange(len(o_perm))
    mc = Backbone(
        people=people, ev_cust=ev["cust"], ev_s=ev["s"], ev_type=ev["type"], ev_product=ev["product"],
        ev_query=ev["query"], ev_results=ev["results"], ev_session=ev["session"],
        ord_cust=o_cust[o_perm], ord_s=o_s[o_perm], ord_kind=rep(bb.ord_kind[o_keep])[o_perm],
        item_order=o_inv[rep(new_o[bb.item_order[it_keep]], k_o)],
        item_product=rep(bb.item_product[it_keep]), item_qty=rep(bb.item_qty[it_keep]),
        item_price=np.tile(bb.item_price[it_keep], R),
        status_order=o_inv[rep(new_o[bb.status_order[st_keep]], k_o)], status_s=rep(bb.status_s[st_keep]),
        status_code=rep(bb.status_code[st_keep]),
        trig_cust=empty, trig_stage=np.zeros(0, np.int8), trig_s=empty, trig_products=np.zeros((0, 3), np.int64),
        trig_query=np.zeros(0, object), trig_order=empty, uniforms=np.zeros((0, 8)),
    )
    it_sort = np.argsort(mc.item_order, kind="stable")
    mc.item_order, mc.item_product = mc.item_order[it_sort], mc.item_product[it_sort]
    mc.item_qty, mc.item_price = mc.item_qty[it_sort], mc.item_price[it_sort]
    world_triggers(cfg, cat, mc)
    keep = mc.trig_s >= replay_from
    for name in ("trig_cust", "trig_stage", "trig_s", "trig_products", "trig_query", "trig_order"):
        setattr(mc, name, getattr(mc, name)[keep])
    mc.trig_order = np.full(len(mc.trig_s), -1, np.int64)  # the order context is only used for ids
    n_t = len(mc.trig_s)
    mc.uniforms = rng.random((n_t, 8))

    # Replayed triggers take the realised decision and outcome draws.
    fixed_action = np.full(n_t, None, dtype=object)
    fixed_channel = np.full(n_t, None, dtype=object)
    fixed_incentive = np.full(n_t, None, dtype=object)
    fixed_delay = np.zeros(n_t, np.int64)
    fixed_propensity = np.full(n_t, np.nan)
    past_real = np.flatnonzero((bb.trig_s >= replay_from) & (bb.trig_s < a))
    past_mc = np.flatnonzero(mc.trig_s < a)
    if len(past_real) and len(past_mc):
        def keys(cust: np.ndarray, stage: np.ndarray, ts: np.ndarray, prod: np.ndarray) -> pd.DataFrame:
            k = pd.DataFrame({"c": cust, "g": stage.astype(np.int64), "t": ts,
                              "p0": prod[:, 0], "p1": prod[:, 1], "p2": prod[:, 2]})
            k["dup"] = k.groupby(list(k.columns)).cumcount()
            return k

        real = keys(bb.trig_cust[past_real], bb.trig_stage[past_real], bb.trig_s[past_real],
                    bb.trig_products[past_real]).assign(row=past_real)
        sim = keys(mc.trig_cust[past_mc], mc.trig_stage[past_mc], mc.trig_s[past_mc],
                   mc.trig_products[past_mc]).assign(mrow=past_mc)
        sim["c"] %= n  # the copy's customer
        m = sim.merge(real, on=["c", "g", "t", "p0", "p1", "p2", "dup"], how="inner")
        src, dst = m["row"].to_numpy(), m["mrow"].to_numpy()
        u = bb.uniforms[src].copy()
        u[:, 4] = np.where(out.unsub_s[src] >= 0, 0.0, 1.0)  # _U_UNSUB: as it happened
        u[:, 3] = np.where(out.converted_s[src] >= 0, 0.0, 1.0)  # _U_CONV
        mc.uniforms[dst] = u
        from cadence.contract.tables import CHANNELS, INCENTIVES

        send = out.send[src]
        fixed_action[dst] = np.where(send, "send", "hold")
        fixed_channel[dst[send]] = np.asarray(CHANNELS, dtype=object)[out.channel[src[send]]]
        fixed_incentive[dst[send]] = np.asarray(INCENTIVES, dtype=object)[np.maximum(out.incentive[src[send]], 0)]
        fixed_delay[dst] = out.delay_min[src]
        fixed_propensity[dst] = out.propensity[src]
    fixed = pd.DataFrame({"action": fixed_action, "channel": fixed_channel, "delay_minutes": fixed_delay,
                          "incentive": fixed_incentive, "propensity": fixed_propensity})
    ids = np.asarray([f"R{i}" for i in range(R * n)], dtype=object)
    sim_out = run_messages(cfg, cat, mc, _Replay(policy, mc.trig_cust, fixed), 10**6 + 1000 * seed + chunk, ids)

    fut_rows = np.flatnonzero(mc.trig_s >= a)
    base = np.where(sim_out.send[fut_rows], sim_out.sent_s[fut_rows], mc.trig_s[fut_rows]).astype(float)
    p = sim_out.p_convert[fut_rows]
    quiet = np.empty((n, len(hs)))
    se = np.empty((n, len(hs)))
    for j, h in enumerate(hs):
        q = np.minimum(p * _delay_cdf(a + h * DAY - base, attrib), 1 - 1e-15)
        per_copy = np.exp(np.bincount(mc.trig_cust[fut_rows], weights=np.log1p(-q), minlength=R * n)).reshape(R, n)
        quiet[:, j] = per_copy.mean(axis=0)
        se[:, j] = per_copy.std(axis=0, ddof=1) / np.sqrt(R) if R > 1 else np.nan
    return quiet, se


def _due_at(due: np.ndarray) -> pd.Index:
    """Due times (whole epoch seconds; inf = none) as UTC timestamps, NaT where none.

    Converted from integers: pandas' float path rounds under ``errstate(over="raise")``
    and was seen to fail intermittently in the full test run.
    """
    finite = np.isfinite(due)
    return pd.to_datetime(np.where(finite, due, 0).astype(np.int64), unit="s", utc=True).where(finite)


def true_churn_risk(cfg: ShopConfig, as_of: Any, horizons: Sequence[float] = (30, 60, 90), *,
                    messages: bool = True, draws: int = 32, seed: int = 0,
                    policy: Policy | None = None) -> pd.DataFrame:
    """Each customer's true probability of no order in ``[as_of, as_of + h)``, per horizon ``h``.

    The probability given the state of the world at ``as_of`` (see the
    module docstring for the derivation): alive or not, purchase rate,
    replenishment schedule, browsing rate and the rest of the latent traits,
    the history before ``as_of`` and the messages already sent. The window
    follows :func:`cadence.features.purchases.purchase_snapshots`: orders before
    ``as_of`` are history, an order exactly at ``as_of`` is the first of the
    follow-up.

    Parameters
    ----------
    cfg : ShopConfig
        The shop's config (:func:`cadence.synthetic.load_config`).
    as_of : timestamp-like
        Cutoff; naive values are UTC. ``as_of + max(horizons)`` must not pass
        the end of the data.
    horizons : sequence of float
        Horizons in days (> 0).
    messages : bool
        Count orders caused by messages (default). ``False`` gives the exact
        probability of no organic order and no replenishment (no Monte
        Carlo), to check against the orders whose ``_truth/orders`` source
        is ``regular`` or ``replenishment``.
    draws : int
        Monte Carlo copies of every customer's future (messages only).
    seed : int
        Seed of the Monte Carlo futures; the same seed gives the same numbers.
    policy : Policy, optional
        The policy that sends messages; by default the shop's logging policy
        ``RandomizedLoggingPolicy.for_shop(cfg)``, the one
        :func:`cadence.synthetic.generate_shop` logs with.

    Returns
    -------
    DataFrame
        Indexed by ``customer_id`` (every customer, in id order): ``alive``,
        ``purchase_rate_per_day``, ``replenishment_due_at`` (first scheduled
        replenishment at or after ``as_of``, NaT if none), ``churn_<h>d`` per
        horizon and, with messages, its Monte Carlo standard error
        ``mc_se_<h>d``.

    Examples
    --------
    >>> cfg = ShopConfig(customers=300, days=60, seed=1)
    >>> t = true_churn_risk(cfg, "2025-01-31", horizons=[7, 28], draws=4)
    >>> list(t.columns)[:5]
    ['alive', 'purchase_rate_per_day', 'replenishment_due_at', 'churn_7d', 'churn_28d']
    >>> bool((t["churn_28d"] <= t["churn_7d"]).all()), bool((t["churn_28d"] <= 1).all())
    (True, True)
    >>> organic = true_churn_risk(cfg, "2025-01-31", horizons=[28], messages=False)
    >>> bool((t["churn_28d"] <= organic["churn_28d"] + 1e-12).all())
    True
    """
    cutoff, a = _cutoff_s(as_of)
    hs = [float(h) for h in horizons]
    if not hs or any(not h > 0 for h in hs):
        raise ValueError(f"horizons must be > 0 days, got {list(horizons)}")
    if draws < 1:
        raise ValueError(f"draws must be >= 1, got {draws}")
    start, end = (pd.Timestamp(s, unit="s", tz="UTC") for s in (cfg.start_s, cfg.end_s))
    if not cfg.start_s <= a or a + max(hs) * DAY > cfg.end_s:
        raise ValueError(f"as_of and as_of + horizon must lie in the shop's window [{start}, {end}], "
                         f"got as_of {cutoff} and {max(hs):g} days")
    chosen: Policy = policy if policy is not None else RandomizedLoggingPolicy.for_shop(cfg)
    attrib = int(cfg.rules.attribution_days * DAY)
    cat = make_catalog(cfg)
    parts = []
    for chunk in range(cfg.n_chunks):
        pp, alive, due, organic = _organic(cfg, cat, chunk, a, hs)
        cols: dict[str, Any] = {
            "customer_id": np.asarray(customer_ids(pp.idx).to_numpy(zero_copy_only=False), dtype=object),
            "alive": alive,
            "purchase_rate_per_day": pp.rate,
            "replenishment_due_at": _due_at(due),
        }
        quiet, se = organic, np.full(organic.shape, np.nan)
        if messages:
            bb = build_backbone(cfg, cat, chunk)
            out = run_messages(cfg, cat, bb, chosen, chunk, cols["customer_id"])
            pending = _pending(bb, out, a, hs, attrib)
            future, future_se = _future_messages(cfg, cat, bb, out, alive, chosen, a, hs, draws, seed, chunk, attrib)
            quiet = organic * pending * future
            se = organic * pending * future_se
        for j, h in enumerate(hs):
            cols[f"churn_{h:g}d"] = quiet[:, j]
        if messages:
            for j, h in enumerate(hs):
                cols[f"mc_se_{h:g}d"] = se[:, j]
        parts.append(pd.DataFrame(cols))
    return pd.concat(parts, ignore_index=True).set_index("customer_id")


__all__ = ["true_churn_risk"]
