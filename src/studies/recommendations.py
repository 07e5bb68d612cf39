"""Do model-based recommendations beat "recently viewed" and popularity, in truth and in the offline estimate?

For each seed of a shop with latent tastes (:class:`~cadence.synthetic.config.Tastes`):

1. generate the shop under the randomised logging policy (uniform ``k``-of-``m``
   item sets on the recommendation stages);
2. fit recommenders point in time on the history before ``split`` (a share
   of the window): popularity and the model (:func:`model_recommender`; by
   default the live blend,
   :class:`~cadence.models.recommenders.LiveBlendRecommender`, of
   popularity, co-occurrence and ALS);
3. define item rules that choose ``k`` items **within each trigger's
   item_candidates** by a score: ``recently_viewed`` (the customer's last
   view of the product strictly before the trigger, read from the logged
   events at the trigger: the straw man, fully up to date), ``popularity``
   (fitted before ``split``), ``model`` (the live blend fitted once before
   ``split``, scoring each trigger at its time with the interactions logged
   since the fit and strictly before the trigger, :func:`live_scorer`: what
   a scoring service fed the event stream knows), and ``model_views``
   (:func:`viewed_first_scorer`: the candidates viewed before the trigger
   first, each group ranked by the model). With the live blend also
   ``blend`` (the learned blend, frozen at ``split``) and ``blend_views``
   (the same behind the viewed-first rule: the best rule before the live
   blend);
4. the offline estimate (:func:`cadence.evaluation.items.evaluate_item_rules`,
   pseudo-inverse and exact-set) of each rule and of ``model`` minus each
   baseline, on the logged messages with items sent at or after ``split``;
5. the truth: the world re-run under :class:`ItemRulePolicy`, which takes
   the logging policy's decisions (same draws, so the same sends, channels,
   delays and incentives) and replaces only the items of sends at or after
   ``split``; true conversions (and clicks) per message are the expected
   outcomes of those same messages (``p_convert * p_in_window``);
6. NDCG@10 of each rule's ranking of the candidates against the true
   relevance at the trigger (:func:`cadence.synthetic.true_relevance`),
   on a sample of the later messages; the oracle's is 1.

This is a study: it reads the truth; the estimators it checks do not.

Examples
--------
The whole study takes a minute per seed (``benchmarks/recommendations_truth.py``);
its pieces are small, e.g. NDCG@10 of a ranking against graded gains:

>>> import numpy as np
>>> row, pos = np.array([0, 0, 0]), np.array([0, 1, 2])
>>> ndcg_at(np.array([3.0, 2.0, 1.0]), np.array([0.0, 1.0, 2.0]), row, pos, 1).round(3).tolist()
[0.62]
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from cadence.evaluation.items import (
    candidate_pairs,
    evaluate_item_rules,
    item_rows,
    top_within_candidates,
)
from cadence.features.interactions import interaction_events, load_interactions
from cadence.features.purchases import duckdb_tables, fetch_frame
from cadence.models.recommenders import (
    LiveBlendRecommender,
    PopularityRecommender,
    Recommender,
)
from cadence.synthetic import RandomizedLoggingPolicy, ShopConfig, generate_shop, true_relevance
from cadence.synthetic.world import iter_world
from cadence.workflows.recommendations import LOOKBACK_DAYS, make_recommender

#: A scorer: (customer ids, product ids, times) of candidate pairs -> scores (higher is better).
PairScorer = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
RULES: tuple[str, ...] = ("recently_viewed", "popularity", "model", "model_views", "blend", "blend_views")
MODELS: tuple[str, ...] = ("live_blend", "learned_blend", "als", "cooccurrence", "popularity")
#: Baselines every difference is taken against (``blend_views`` only when the model is the live blend).
BASELINES: tuple[str, ...] = ("recently_viewed", "popularity", "blend_views")
_TABLES = ("events", "orders", "order_items")


def model_recommender(name: str, seed: int = 0) -> Recommender:
    """The model-based recommender of the study by name (:data:`MODELS`): the one the workflows build."""
    if name not in MODELS:
        raise ValueError(f"model: expected one of {MODELS}, got {name!r}")
    return make_recommender(name, seed)


def recommender_scorer(rec: Recommender) -> PairScorer:
    """Scores of a fitted recommender (time-independent: it knows only what came before its ``as_of``)."""
    def score(c: np.ndarray, p: np.ndarray, t: np.ndarray) -> np.ndarray:
        return rec.score_pairs(c.astype(str).tolist(), p.astype(str).tolist())
    return score


def live_scorer(rec: LiveBlendRecommender, recent: pd.DataFrame) -> PairScorer:
    """Scores of a live blend at each pair's time, with the interactions logged since its fit (``recent``).

    What a shop's scoring service has: the model fitted at ``as_of`` and the
    event stream since; :meth:`~cadence.models.recommenders.LiveBlendRecommender.score_pairs_at`
    reads only the rows strictly before each decision time.
    """
    prepared = rec.prepare_recent(recent)

    def score(c: np.ndarray, p: np.ndarray, t: np.ndarray) -> np.ndarray:
        return rec.score_pairs_at(c.astype(str), p.astype(str), pd.to_datetime(t, unit="s", utc=True), prepared)
    return score


def recently_viewed_scorer(events: pd.DataFrame) -> PairScorer:
    """Seconds of the customer's last view of the product strictly before ``t`` (-inf: never viewed)."""
    views = events.loc[events["event_type"] == "product_view", ["customer_id", "product_id", "ts"]].dropna()
    key = (views["customer_id"].astype(str) + "\x1f" + views["product_id"].astype(str)).to_numpy(dtype=object)
    sec = (views["ts"] - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)
    frame = pd.DataFrame({"key": key, "s": sec.to_numpy(np.int64)}).sort_values(["key", "s"], kind="stable")
    keys = frame["key"].to_numpy(dtype=object)
    secs = frame["s"].to_numpy(np.int64)
    index = pd.Index(pd.unique(keys))
    code = index.get_indexer(pd.Index(keys))
    starts = np.searchsorted(code, np.arange(len(index) + 1))

    def score(c: np.ndarray, p: np.ndarray, t: np.ndarray) -> np.ndarray:
        q = index.get_indexer(pd.Index(np.char.add(np.char.add(c.astype(str), "\x1f"), p.astype(str)).astype(object)))
        out = np.full(len(q), -np.inf)
        for i in np.flatnonzero(q >= 0):  # few pairs were ever viewed
            lo, hi = starts[q[i]], starts[q[i] + 1]
            j = lo + np.searchsorted(secs[lo:hi], t[i], side="left") - 1
            if j >= lo:
                out[i] = float(secs[j])
        return out
    return score


def viewed_first_scorer(viewed: PairScorer, model: PairScorer) -> PairScorer:
    """The candidates viewed before ``t`` first, each group ranked by the model's score.

    The model is fitted once, before the split; this lets it use the one
    live signal the straw man has (what was viewed up to the trigger), the
    way :class:`~cadence.policies.items.ItemSelector` pins a trigger's own
    products before ranking by predicted interest.
    """
    def score(c: np.ndarray, p: np.ndarray, t: np.ndarray) -> np.ndarray:
        m = np.nan_to_num(np.asarray(model(c, p, t), dtype=float), nan=-1e11, neginf=-1e11, posinf=1e11)
        return np.where(np.isfinite(viewed(c, p, t)), 1e12, 0.0) + m
    return score


def _seconds(ts: pd.Series) -> np.ndarray:
    return ((pd.to_datetime(ts, utc=True) - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)).to_numpy(np.int64)


def choose_items(scorer: PairScorer, customer_ids: pd.Series, times: pd.Series, item_candidates: pd.Series,
                 k: np.ndarray | int) -> np.ndarray:
    """Each row's ``k`` best candidates under ``scorer`` (``|``-joined, candidate order)."""
    row, pos, pid = candidate_pairs(item_candidates)
    cust = np.asarray(customer_ids.astype(str).to_numpy(dtype=object))[row]
    t = _seconds(times)[row]
    return top_within_candidates(row, pos, pid, scorer(cust, pid, t), len(item_candidates), k)


@dataclass(frozen=True)
class ItemRulePolicy:
    """The logging policy's decisions with the items of sends at or after ``start`` chosen by ``scorer``.

    The inner policy draws exactly as when it logged (same random stream), so
    every send, channel, delay and incentive is the logged one; only which
    ``k`` candidates a message shows changes (``k`` = the logged set's size).
    """

    scorer: PairScorer
    start: pd.Timestamp
    base: RandomizedLoggingPolicy = field(default_factory=RandomizedLoggingPolicy)
    policy_id: str = "item-rule"

    def decide(self, candidates: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
        dec = self.base.decide(candidates, rng)
        if "items" not in dec.columns:
            return dec
        at = pd.to_datetime(candidates["triggered_at"], utc=True)
        rows = np.flatnonzero(dec["items"].notna().to_numpy() & (at >= self.start).to_numpy())
        if len(rows):
            sub = candidates.iloc[rows]
            k = np.fromiter((len(s.split("|")) for s in dec["items"].iloc[rows]), np.int64, len(rows))
            items = choose_items(self.scorer, sub["customer_id"], sub["triggered_at"], sub["item_candidates"], k)
            col = dec["items"].to_numpy(dtype=object).copy()
            col[rows] = items
            dec["items"] = col
            prop = dec["items_propensity"].to_numpy(dtype=float).copy()
            prop[rows] = 1.0  # deterministic
            dec["items_propensity"] = prop
        return dec


def true_per_message(policy: Any, cfg: ShopConfig, start_s: int) -> dict[str, float]:
    """Expected conversions and clicks per sent message with items, triggered at or after ``start_s``."""
    conv = click = rel = 0.0
    n = 0
    for bb, out in iter_world(cfg, policy):
        assert out.items is not None and out.items_relevance is not None
        m = out.send & pd.notna(out.items) & (bb.trig_s >= start_s)
        conv += float((out.p_convert * out.p_in_window)[m].sum())
        click += float(out.p_click[m].sum())
        rel += float(out.items_relevance[m].sum())
        n += int(m.sum())
    return {"conversion": conv / max(n, 1), "click": click / max(n, 1), "relevance": rel / max(n, 1),
            "messages": n}


def ndcg_at(scores: np.ndarray, gains: np.ndarray, row: np.ndarray, pos: np.ndarray, n_rows: int,
            k: int = 10) -> np.ndarray:
    """NDCG@k per row of a ranking by ``scores`` (ties: candidate order) with graded ``gains``."""
    def dcg(key: np.ndarray) -> np.ndarray:
        order = np.lexsort((pos, -np.where(np.isfinite(key), key, -np.inf), row))
        r, g = row[order], gains[order]
        rank = np.arange(len(r)) - np.searchsorted(r, np.arange(n_rows))[r]
        ok = rank < k
        return np.bincount(r[ok], weights=g[ok] / np.log2(rank[ok] + 2), minlength=n_rows)
    ideal = dcg(gains)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(ideal > 0, dcg(scores) / ideal, np.nan)


def run_seed(cfg: ShopConfig, *, split: float = 0.5, model: str = "live_blend", ndcg_rows: int = 2000,
             n_bootstrap: int = 300, alpha: float = 0.05) -> dict[str, pd.DataFrame]:
    """One seed: truth, offline estimates and NDCG of every rule (see the module docstring)."""
    if cfg.tastes is None:
        raise ValueError("run_seed: the shop needs latent tastes (ShopConfig(tastes=Tastes()))")
    t0 = time.perf_counter()
    start = pd.Timestamp(cfg.start, tz="UTC") + pd.Timedelta(days=round(cfg.days * split))
    start_s = int(start.timestamp())
    with tempfile.TemporaryDirectory() as tmp:
        d = generate_shop(cfg, f"{tmp}/shop")
        frames = {t: pd.read_parquet(d / f"{t}.parquet") for t in _TABLES}
        messages = pd.read_parquet(d / "messages.parquet")
    con, tables = duckdb_tables(frames)
    label_days = max(14.0, cfg.days * split / 4)
    data = load_interactions(con, tables, start, label_days=label_days, events_days=label_days + LOOKBACK_DAYS)
    pop = PopularityRecommender().fit(data)
    rec = pop if model == "popularity" else model_recommender(model, cfg.seed).fit(data)
    viewed = recently_viewed_scorer(frames["events"])
    scorers = {"recently_viewed": viewed, "popularity": recommender_scorer(pop)}
    if isinstance(rec, LiveBlendRecommender):
        # The interactions logged since the fit, as a scoring service would stream them; each score reads
        # only those strictly before its trigger.
        end = pd.Timestamp(cfg.start, tz="UTC") + pd.Timedelta(days=cfg.days + 1)
        recent = fetch_frame(con, interaction_events(tables, end, start), ["customer_id", "ts", "product_id", "kind"])
        scorers["model"] = live_scorer(rec, recent)
        # The frozen learned blend, alone and behind the live "viewed" signal (the previous best hybrid).
        blend = model_recommender("learned_blend", cfg.seed).fit(data)
        scorers["blend"] = recommender_scorer(blend)
        scorers["blend_views"] = viewed_first_scorer(viewed, scorers["blend"])
    else:
        scorers["model"] = recommender_scorer(rec)
    scorers["model_views"] = viewed_first_scorer(viewed, scorers["model"])
    t_fit = time.perf_counter()

    # Offline: the logged messages with items sent at or after the split (never the truth).
    rows = item_rows(messages)
    rows = rows.loc[pd.to_datetime(rows["triggered_at"], utc=True) >= start].reset_index(drop=True)
    k = np.fromiter((len(s.split("|")) for s in rows["items"]), np.int64, len(rows))
    targets = {name: choose_items(s, rows["customer_id"], rows["triggered_at"], rows["item_candidates"], k)
               for name, s in scorers.items()}
    est = pd.concat([evaluate_item_rules(rows, targets, metrics=("conversion", "click"), estimators=("pi", "exact"),
                                         baseline=b, alpha=alpha, n_bootstrap=n_bootstrap, random_state=cfg.seed)
                     for b in BASELINES if b in targets]).drop_duplicates(["metric", "estimator", "rule"])
    t_est = time.perf_counter()

    # Truth: the world re-run with each rule's items on the same sends.
    truth = [{"rule": "logging", **true_per_message(RandomizedLoggingPolicy.for_shop(cfg), cfg, start_s)}]
    for name, s in scorers.items():
        truth.append({"rule": name, **true_per_message(ItemRulePolicy(s, start, RandomizedLoggingPolicy.for_shop(cfg),
                                                                      f"item-{name}"), cfg, start_s)})
    truth_df = pd.DataFrame(truth)
    t_truth = time.perf_counter()

    # NDCG@10 against the true relevance at the trigger, on a seeded sample of the later messages.
    rng = np.random.default_rng([cfg.seed, 24])
    sample = rows.iloc[np.sort(rng.choice(len(rows), min(ndcg_rows, len(rows)), replace=False))].reset_index(drop=True)
    row, pos, pid = candidate_pairs(sample["item_candidates"])
    cust = sample["customer_id"].astype(str).to_numpy(dtype=object)[row]
    at = pd.to_datetime(sample["triggered_at"], utc=True).to_numpy()[row]
    gains = np.asarray(true_relevance(cfg, cust, pid, at), dtype=float)
    t_s = _seconds(sample["triggered_at"])[row]
    ndcg = {"oracle": ndcg_at(gains, gains, row, pos, len(sample)),
            "candidate_order": ndcg_at(-pos.astype(float), gains, row, pos, len(sample))}
    for name, s in scorers.items():
        ndcg[name] = ndcg_at(s(cust, pid, t_s), gains, row, pos, len(sample))
    ndcg_df = pd.DataFrame([{"rule": n, "ndcg10": float(np.nanmean(v))} for n, v in ndcg.items()])
    timing = pd.DataFrame([{"fit_s": t_fit - t0, "estimate_s": t_est - t_fit, "truth_s": t_truth - t_est,
                            "ndcg_s": time.perf_counter() - t_truth}])
    for df in (est, truth_df, ndcg_df, timing):
        df.insert(0, "seed", cfg.seed)
    return {"estimates": est.reset_index(drop=True), "truth": truth_df, "ndcg": ndcg_df, "timing": timing}


def recommendation_study(seeds: Iterable[int], make_config: Callable[[int], ShopConfig], **kwargs: Any,
                         ) -> dict[str, pd.DataFrame]:
    """:func:`run_seed` over ``seeds``, concatenated."""
    parts = [run_seed(make_config(s), **kwargs) for s in seeds]
    return {key: pd.concat([p[key] for p in parts], ignore_index=True) for key in parts[0]}


def differences(study: dict[str, pd.DataFrame], metric: str = "conversion", estimator: str = "pi",
                alpha: float = 0.05, model: str = "model") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per seed and difference (``<model> - recently_viewed``, ``<model> - popularity``): truth, estimate, covered.

    Returns ``(per_seed, summary)``; the summary's ``true_lower``/``true_upper``
    are a t-interval of the mean true difference over seeds.
    """
    from scipy import stats

    truth = study["truth"].pivot(index="seed", columns="rule", values=metric)
    est = study["estimates"]
    rows = []
    for base in (b for b in BASELINES if b in truth.columns and b != model):
        name = f"{model} - {base}"
        e = est[(est["metric"] == metric) & (est["estimator"] == estimator) & (est["rule"] == name)].set_index("seed")
        for seed in truth.index:
            true = float(truth.loc[seed, model] - truth.loc[seed, base])
            rows.append({"seed": seed, "difference": name, "true": true, "estimate": e.loc[seed, "estimate"],
                         "lower": e.loc[seed, "lower"], "upper": e.loc[seed, "upper"],
                         "covered": bool(e.loc[seed, "lower"] <= true <= e.loc[seed, "upper"])})
    per_seed = pd.DataFrame(rows)
    z = stats.t.ppf(1 - alpha / 2, max(per_seed["seed"].nunique() - 1, 1))
    summary = per_seed.groupby("difference").agg(true_mean=("true", "mean"), true_sd=("true", "std"),
                                                 seeds=("true", "size"), coverage=("covered", "mean"),
                                                 estimate_mean=("estimate", "mean")).reset_index()
    half = z * summary["true_sd"] / np.sqrt(summary["seeds"])
    summary.insert(3, "true_lower", summary["true_mean"] - half)
    summary.insert(4, "true_upper", summary["true_mean"] + half)
    return per_seed, summary


__all__ = ["BASELINES", "ItemRulePolicy", "LOOKBACK_DAYS", "MODELS", "RULES", "choose_items", "differences",
           "live_scorer", "model_recommender", "ndcg_at",
           "recently_viewed_scorer", "recommendation_study", "recommender_scorer", "run_seed", "true_per_message",
           "viewed_first_scorer"]
