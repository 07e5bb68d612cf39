"""Benchmark: fit and per-stage top-10 item selection at 1,000,000 customers x 10,000 products.

Target (issue 24): fit and per-stage top-10 selection for 1,000,000
customers x 10,000 products (tens of millions of interactions) in <= 5
minutes and <= 8 GB on 2 cores, with the popularity baseline's time beside
it in the same run.

The interactions are generated here with numpy (a 1M-customer shop would take
longer to simulate than to fit): Zipf product popularity, customers in
clusters that prefer their own few hundred products, about
``--per-customer`` events each (views, carts, purchases) over 180 days. The
point-in-time tables a shop would give (:func:`load_interactions`'s output)
are aggregated from those events in numpy: the interactions before
``as_of``, the same as of 30 days earlier and the purchases since (the
learned blend's time split). Item co-occurrence (``load_interactions``
computes it in DuckDB from sessions and orders) is computed from 50,000
customers' product sets in scipy, inside the timed fit. One trigger candidate per customer, stages in a
lifecycle mix (browse, cart, checkout, search, price drop, back in stock,
new arrivals, buy again, follow-up, birthday, anniversary, win-back, order
status), with the products and queries those stages carry; a catalogue with
titles, arrivals and price/stock changes.

Timed, in one process: generating the data (not part of the target), then

* ``popularity``: :class:`ItemSelector` on :class:`PopularityRecommender`,
  fit and ``select`` (10 items per message);
* ``learned blend``: :class:`ItemSelector` on
  :class:`LearnedBlendRecommender` (popularity, recently viewed, ALS from
  `implicit` with 16 factors and 6 iterations, then 2 more from those
  factors on the whole history, ``warm_iterations=2``; 20 candidates per
  component), fit (components twice: before and after the label split;
  the classifier; the co-occurrence) and ``select``;
* ``live blend``: :class:`ItemSelector` on the workflows' default
  recommender, ``make_recommender("live_blend")`` (a
  :class:`LiveBlendRecommender` on popularity, co-occurrence and ALS 16
  factors, 90 days of live features), with what this benchmark already
  varies for scale in the learned blend: ALS 6 iterations then
  ``warm_iterations=2`` on 2 threads (the factory: 15 iterations in each of
  the two fits, one thread) and ``depth=20`` (the factory: 50). It also reads the time-stamped
  interactions (``InteractionData.events``): the same generated events of
  the ``30 + 90`` days before ``as_of`` (the label split plus the live
  look-back, as the workflows load ``label_days + LOOKBACK_DAYS``), sorted
  by customer and time. Fit: the co-occurrence and "bought together" of both
  cutoffs (the co-occurrence component and the live features read them;
  "bought together" here is the co-occurrence of customers' purchased
  products, the generated shop has no baskets), the components twice, the
  decisions' point-in-time features, the classifier, the live state; then
  ``select``, which scores at each trigger's ``eligible_at`` with the
  triggers' own viewed or carted products. This benchmark's triggers are
  eligible in the 14 days *before* ``as_of``, so the live blend reads them
  at ``as_of`` (its live state) and the triggers' own products, stamped
  before ``as_of``, are dropped: the cost of events after the fit is not
  measured here.

Peak RSS: each step's own (the kernel's high-water mark ``VmHWM``, reset before
the step; the generated data the step reads is resident and counted; "fit" is the
part of it up to the end of the fit) and the
process's (the largest of those and data generation's; the reset also resets
``ru_maxrss``). CPU time is the
process's user + system time over the step: under load it shows what the step
costs when the wall time does not.

Run: ``.venv/bin/python benchmarks/bench_recommenders.py [--customers 1000000]``
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import time

import numpy as np
import pandas as pd
import scipy.sparse as sp

from cadence.features.interactions import KINDS, InteractionData
from cadence.models.recommenders import (
    ImplicitRecommender,
    LearnedBlendRecommender,
    PopularityRecommender,
    RecentlyViewedRecommender,
)
from cadence.policies.items import ItemSelector
from cadence.workflows.recommendations import make_recommender

AS_OF = pd.Timestamp("2025-07-01", tz="UTC")
DAY = 86_400
NOUNS = ("espresso", "beans", "grinder", "matcha", "sencha", "serum", "mask", "kibble", "leash", "skillet", "kettle",
         "candle", "lamp", "tent", "backpack", "yoga", "mat", "novel", "atlas", "puzzle", "kite", "seeds", "hose")
ADJ = ("classic", "organic", "deluxe", "compact", "everyday", "premium", "smart", "vintage", "bold", "gentle",
       "travel", "family")
STAGE_MIX = {"browse_abandon": 0.22, "cart_abandon": 0.10, "checkout_abandon": 0.03, "search_abandon": 0.08,
             "price_drop": 0.07, "back_in_stock": 0.03, "new_arrivals": 0.07, "buy_again": 0.08, "follow_up": 0.10,
             "birthday": 0.03, "anniversary": 0.03, "win_back": 0.10, "order_status": 0.06}


def peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def reset_step_peak() -> bool:
    """Reset the kernel's resident high-water mark (VmHWM) so a step's own peak can be read; False if unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def step_peak_gb() -> float:
    """VmHWM: the resident peak since the last :func:`reset_step_peak` (the data it works on included)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024**2
    return float("nan")


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def events(n_c: int, n_p: int, per_customer: float, seed: int) -> dict[str, np.ndarray]:
    """Customer, product, kind (0 view, 1 cart, 2 purchase), seconds before as_of, for every event."""
    rng = np.random.default_rng(seed)
    n_clusters = 50
    pop = 1.0 / np.arange(1, n_p + 1) ** 0.9
    pop = pop[rng.permutation(n_p)]
    cluster = rng.integers(0, n_clusters, n_c).astype(np.int32)
    n = rng.poisson(per_customer, n_c)
    cust = np.repeat(np.arange(n_c, dtype=np.int32), n)
    cl = cluster[cust]
    order = np.argsort(cl, kind="stable")
    cust = cust[order]
    prod = np.empty(len(cust), np.int32)
    counts = np.bincount(cl, minlength=n_clusters)
    at = 0
    for c in range(n_clusters):
        w = pop.copy()
        w[rng.choice(n_p, 300, replace=False)] *= 40.0  # the cluster's own products
        prod[at:at + counts[c]] = rng.choice(n_p, counts[c], p=w / w.sum())
        at += counts[c]
    kind = rng.choice(3, len(cust), p=[0.7, 0.17, 0.13]).astype(np.int8)
    ago = rng.integers(1, 180 * DAY, len(cust)).astype(np.int64)
    return {"customer": cust, "product": prod, "kind": kind, "ago": ago}


def aggregate(ev: dict[str, np.ndarray], keep: np.ndarray, as_of: pd.Timestamp, n_p: int,
              cids: pd.Categorical, pids: pd.Categorical) -> pd.DataFrame:
    """The interactions table (one row per customer and product) of the events in ``keep``."""
    c, p, k, ago = ev["customer"][keep], ev["product"][keep], ev["kind"][keep], ev["ago"][keep]
    key = c.astype(np.int64) * n_p + p
    order = np.argsort(key, kind="stable")
    key, k, ago = key[order], k[order], ago[order]
    start = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    g = np.repeat(np.arange(len(start)), np.diff(np.r_[start, len(key)]))
    counts = {name: np.bincount(g, weights=(k == j), minlength=len(start)).astype(np.int64)
              for j, name in enumerate(("views", "carts", "purchases"))}
    counts["searches"] = np.zeros(len(start), np.int64)
    weight = counts["views"] * 1.0 + counts["carts"] * 3.0 + counts["purchases"] * 5.0
    last = np.minimum.reduceat(ago, start)
    view_ago = np.where(k == 0, ago, np.iinfo(np.int64).max)
    last_view = np.minimum.reduceat(view_ago, start)
    base = as_of.value // 10**9
    ukey = key[start]
    to_ts = lambda s: pd.to_datetime((base - s) * 10**9, utc=True)  # noqa: E731
    lv = to_ts(np.where(last_view == np.iinfo(np.int64).max, 0, last_view))
    lv = lv.where(last_view != np.iinfo(np.int64).max)
    frame = pd.DataFrame({
        "customer_id": pd.Categorical.from_codes((ukey // n_p).astype(np.int32), categories=cids.categories),
        "product_id": pd.Categorical.from_codes((ukey % n_p).astype(np.int32), categories=pids.categories),
        **{name: counts[name] for name in KINDS}, "weight": weight, "last_at": to_ts(last), "last_viewed_at": lv})
    return frame


def live_events(ev: dict[str, np.ndarray], days: float, cids: pd.Categorical,
                pids: pd.Categorical) -> pd.DataFrame:
    """``InteractionData.events`` of the events in the ``days`` before ``AS_OF``, sorted by customer and time.

    Categorical ids (the recommenders look a categorical up once per category) over the same categories as the
    interaction tables.
    """
    keep = np.flatnonzero(ev["ago"] <= days * DAY)
    c, ago = ev["customer"][keep], ev["ago"][keep]
    keep = keep[np.lexsort((-ago, c))]
    return pd.DataFrame({
        "customer_id": pd.Categorical.from_codes(ev["customer"][keep], categories=cids.categories),
        "product_id": pd.Categorical.from_codes(ev["product"][keep], categories=pids.categories),
        "kind": pd.Categorical.from_codes(ev["kind"][keep], categories=["views", "carts", "purchases"]),
        "ts": pd.to_datetime((AS_OF.value // 10**9 - ev["ago"][keep]) * 10**9, utc=True)})


def cooccurrence(inter: pd.DataFrame, n_c: int, n_p: int, top_k: int, sample: int, seed: int) -> pd.DataFrame:
    """Cosine co-occurrence of products over a sample of customers' product sets, ``top_k`` per product."""
    rng = np.random.default_rng(seed)
    c = inter["customer_id"].cat.codes.to_numpy()
    p = inter["product_id"].cat.codes.to_numpy()
    chosen = np.zeros(n_c, bool)
    chosen[rng.choice(n_c, min(sample, n_c), replace=False)] = True
    m = chosen[c]
    x = sp.csr_matrix((np.ones(int(m.sum()), np.float32), (c[m], p[m])), shape=(n_c, n_p))
    x.data[:] = 1.0
    co = (x.T @ x).tocsr()
    diag = co.diagonal()
    co.setdiag(0)
    co.eliminate_zeros()
    coo = co.tocoo()
    score = coo.data / np.sqrt(diag[coo.row] * diag[coo.col])
    order = np.lexsort((-score, coo.row))
    row, col, score = coo.row[order], coo.col[order], score[order]
    rank = np.arange(len(row)) - np.searchsorted(row, row, side="left")
    keep = rank < top_k
    cats = inter["product_id"].cat.categories
    return pd.DataFrame({"product_id": np.asarray(cats)[row[keep]], "other_product_id": np.asarray(cats)[col[keep]],
                         "score": score[keep].astype(np.float64)})


def catalogue(n_p: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed + 1)
    ids = np.array([f"P{i:05d}" for i in range(n_p)], dtype=object)
    titles = np.char.add(np.char.add(np.array(ADJ)[rng.integers(0, len(ADJ), n_p)], " "),
                         np.array(NOUNS)[rng.integers(0, len(NOUNS), n_p)])
    created = AS_OF - pd.to_timedelta(rng.integers(1, 3 * 365, n_p), unit="D")
    products = pd.DataFrame({"product_id": ids, "title": titles, "category": "shop", "price": 10.0,
                             "created_at": created})
    n_ch = 6_000
    who = rng.integers(0, n_p, n_ch)
    ts = AS_OF - pd.to_timedelta(rng.integers(1, 60 * DAY, n_ch), unit="s")
    drop = rng.random(n_ch) < 0.6
    changes = pd.DataFrame({"product_id": ids[who], "ts": ts, "price": np.where(drop, 8.0, 10.0),
                            "in_stock": np.where(drop, True, rng.random(n_ch) < 0.5)})
    return products, changes.drop_duplicates(["product_id", "ts"]), ids


def candidates(n_c: int, ids: np.ndarray, cids: pd.Categorical, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed + 2)
    stage = rng.choice(list(STAGE_MIX), n_c, p=np.array(list(STAGE_MIX.values())) / sum(STAGE_MIX.values()))
    n_p = len(ids)
    one, two, three = (ids[rng.integers(0, n_p, n_c)] for _ in range(3))
    listed = np.where(rng.random(n_c) < 0.5, one, one + "|" + two + "|" + three)
    carries = ~np.isin(stage, ["search_abandon", "birthday", "anniversary", "win_back"])
    queries = np.array([*(f"{a} {n}" for a in ADJ[:3] for n in NOUNS), *NOUNS, "wedding dress", "ps5", "surfboard"])
    eligible = AS_OF - pd.to_timedelta(rng.integers(60, 14 * DAY, n_c), unit="s")
    return pd.DataFrame({"customer_id": np.asarray(cids.categories)[rng.permutation(n_c)], "stage": stage,
                         "eligible_at": eligible, "products": np.where(carries, listed, None),
                         "query": np.where(stage == "search_abandon", queries[rng.integers(0, len(queries), n_c)], None)})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--customers", type=int, default=1_000_000)
    ap.add_argument("--products", type=int, default=10_000)
    ap.add_argument("--per-customer", type=float, default=25.0)
    ap.add_argument("--items", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", default="popularity,learned blend,live blend",
                    help="comma-separated steps to run (all three by default)")
    args = ap.parse_args()
    n_c, n_p = args.customers, args.products
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; load average before: {os.getloadavg()}")
    t0 = time.perf_counter()
    ev = events(n_c, n_p, args.per_customer, args.seed)
    cids = pd.Categorical([f"C{i:07d}" for i in range(n_c)])
    pids = pd.Categorical([f"P{i:05d}" for i in range(n_p)])
    label_s = 30 * DAY
    inter = aggregate(ev, np.ones(len(ev["ago"]), bool), AS_OF, n_p, cids, pids)
    early = ev["ago"] > label_s
    inter_early = aggregate({**ev, "ago": ev["ago"] - label_s}, early, AS_OF - pd.Timedelta(seconds=label_s), n_p,
                            cids, pids)
    bought = (~early) & (ev["kind"] == 2)
    labels = pd.DataFrame({"customer_id": np.asarray(cids.categories)[ev["customer"][bought]],
                           "product_id": np.asarray(pids.categories)[ev["product"][bought]]}).drop_duplicates()
    live = make_recommender("live_blend", args.seed)
    # What the benchmark varies for scale, as in the learned blend step; everything else is the factory's.
    live.set_params(depth=20, als__iterations=6, als__num_threads=2, als__warm_iterations=2)
    events_days = label_s / DAY + live.lookback_days
    live_ev = live_events(ev, events_days, cids, pids)
    products, changes, ids = catalogue(n_p, args.seed)
    cands = candidates(n_c, ids, cids, args.seed)
    n_events = len(ev["ago"])
    del ev
    gen_s = time.perf_counter() - t0
    print(f"data: {n_c:,} customers x {n_p:,} products, {n_events:,} events -> {len(inter):,} interactions "
          f"({len(inter_early):,} before the label split, {len(labels):,} label pairs), {len(live_ev):,} events in "
          f"the live blend's {events_days:.0f} days, {len(cands):,} candidates; "
          f"generated in {gen_s:.1f} s, peak {peak_gb():.2f} GB")

    empty = pd.DataFrame({"product_id": pd.Series(dtype=object), "other_product_id": pd.Series(dtype=object),
                          "score": pd.Series(dtype=np.float64)})
    results = {}
    process_peak = peak_gb()
    steps = [s.strip() for s in args.steps.split(",")]
    bad = sorted(set(steps) - {"popularity", "learned blend", "live blend"})
    if bad:
        ap.error(f"--steps: unknown {bad}")
    for name in steps:
        resettable = reset_step_peak()
        c1 = cpu_s()
        t1 = time.perf_counter()
        if name == "popularity":
            # The baseline needs no co-occurrence: popularity alone, the same selection rules.
            data = InteractionData(AS_OF, inter, empty, empty)
            rec = PopularityRecommender()
        elif name == "live blend":
            # Its co-occurrence component and live features read both cutoffs' co-occurrence and "bought together".
            co = cooccurrence(inter, n_c, n_p, 20, 50_000, args.seed)
            bt = cooccurrence(inter[inter["purchases"] > 0], n_c, n_p, 20, 50_000, args.seed)
            co_early = cooccurrence(inter_early, n_c, n_p, 20, 50_000, args.seed)
            bt_early = cooccurrence(inter_early[inter_early["purchases"] > 0], n_c, n_p, 20, 50_000, args.seed)
            earlier = InteractionData(AS_OF - pd.Timedelta(seconds=label_s), inter_early, co_early, bt_early)
            data = InteractionData(AS_OF, inter, co, bt, earlier, labels, live_ev,
                                   AS_OF - pd.Timedelta(days=events_days))
            rec = live
        else:
            # The neighbours of browse and cart abandonment; no component of this blend reads the earlier one.
            co = cooccurrence(inter, n_c, n_p, 20, 50_000, args.seed)
            earlier = InteractionData(AS_OF - pd.Timedelta(seconds=label_s), inter_early, empty, empty)
            data = InteractionData(AS_OF, inter, co, empty, earlier, labels)
            rec = LearnedBlendRecommender(
                [("pop", PopularityRecommender()), ("recent", RecentlyViewedRecommender()),
                 ("als", ImplicitRecommender("als", factors=16, iterations=6, num_threads=2, random_state=0,
                                              warm_iterations=2))],
                depth=20, max_customers=20_000, random_state=0)
        sel = ItemSelector(rec, n_items=args.items).fit(data, products, changes)
        t2 = time.perf_counter()
        fit_peak = step_peak_gb() if resettable else float("nan")
        items = sel.select(cands)
        t3 = time.perf_counter()
        c3 = cpu_s()
        step_peak = f"{step_peak_gb():.2f} GB (fit {fit_peak:.2f})" if resettable else "n/a"
        process_peak = max(process_peak, peak_gb())
        n_items = items.str.count(r"\|").add(1).where(items != "", 0)
        by_stage = n_items.groupby(cands["stage"]).mean().round(1).to_dict()
        results[name] = (t2 - t1, t3 - t2, step_peak_gb() if resettable else process_peak)
        print(f"{name}: fit {t2 - t1:.1f} s, select {t3 - t2:.1f} s, total {t3 - t1:.1f} s "
              f"(CPU {c3 - c1:.1f} s, {(c3 - c1) / (t3 - t1):.2f} cores); peak RSS of the step {step_peak}, "
              f"of the process so far {process_peak:.2f} GB; items per message by stage {by_stage}")
        del sel, items, data, rec  # the next step's peak is its own
    for name in ("learned blend", "live blend"):
        if name not in results:
            continue
        lf, ls, peak = results[name]
        base = (f" vs popularity {sum(results['popularity'][:2]):.1f} s "
                f"(ratio {(lf + ls) / sum(results['popularity'][:2]):.1f}x)") if "popularity" in results else ""
        print(f"{name} fit+select {lf + ls:.1f} s{base}; target <= 300 s and <= 8 GB: "
              f"{'met' if lf + ls <= 300 and peak <= 8 else 'NOT met'} (the step's peak {peak:.2f} GB, "
              f"the process's {process_peak:.2f} GB)")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
