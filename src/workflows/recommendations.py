"""Recommenders on a data directory: the items the exported policy shows, and the comparison ``cadence evaluate`` runs.

* :data:`DEFAULT_RECOMMENDER` is the one place that names the recommender
  the exported policy fills ``items`` with, the demo shows and the report
  compares against the baselines (:func:`make_recommender` builds any of
  :data:`RECOMMENDERS`).
* :func:`fit_served_items` fits an :class:`~cadence.policies.items.ItemSelector`
  on a shop's views, carts, purchases and searches (and its catalogue and
  product changes) strictly before ``as_of``, on pseudonymised customer ids
  (:mod:`cadence.deployment.items`): what an export ships.
* :func:`compare_recommenders_named` judges recommenders on a time split of
  the shop: per stage, the item selection each recommender makes for the
  trigger candidates after the cutoff, against what those customers bought
  in the following days (hit rate@k, recall@k, NDCG@k, customer-clustered
  95% intervals, paired differences from "recently viewed"); and, where the
  messages log carries the randomised item sets with their propensities (a
  shop with latent tastes), the off-policy value per message of the rule
  "show the k candidates the recommender scores highest"
  (:func:`cadence.evaluation.items.evaluate_item_rules`).

Examples
--------
>>> sorted(RECOMMENDERS)[:2], DEFAULT_RECOMMENDER in RECOMMENDERS
(['als', 'cooccurrence'], True)
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from cadence.contract.clock import utc
from cadence.data.io import PathLike, table_path
from cadence.deployment.items import KEY_CHARS, ServedItems, pseudonymise
from cadence.features.interactions import (
    InteractionData,
    interaction_events,
    load_interactions,
    purchases_between,
)
from cadence.features.purchases import fetch_frame
from cadence.models.recommenders import (
    CooccurrenceRecommender,
    ImplicitRecommender,
    LearnedBlendRecommender,
    LiveBlendRecommender,
    PopularityRecommender,
    RecentlyViewedRecommender,
    Recommender,
)
from cadence.policies.items import ItemSelector

#: The recommenders by name.
RECOMMENDERS: tuple[str, ...] = ("popularity", "recently_viewed", "cooccurrence", "als", "learned_blend", "live_blend")
#: The recommender the exported policy, the demo and the report use: switch it here.
DEFAULT_RECOMMENDER = "live_blend"
#: The baselines every comparison shows beside the model (the first is the one differences are taken from).
BASELINES: tuple[str, ...] = ("recently_viewed", "popularity")
#: Tables a recommender is fitted on (``products`` and ``product_changes`` are read when present).
INTERACTION_TABLES: tuple[str, ...] = ("events", "orders", "order_items")
#: Days before the cutoff whose purchases the learned blend learns from (its time split inside the history).
LABEL_DAYS = 28.0
#: Days of interactions before a decision that the live blend's point-in-time features read.
LOOKBACK_DAYS = 90.0


def make_recommender(name: str, seed: int = 0) -> Recommender:
    """The unfitted recommender called ``name`` (:data:`RECOMMENDERS`).

    >>> type(make_recommender("popularity")).__name__
    'PopularityRecommender'
    """
    if name == "popularity":
        return PopularityRecommender()
    if name == "recently_viewed":
        return RecentlyViewedRecommender()
    if name == "cooccurrence":
        return CooccurrenceRecommender()
    if name == "als":
        return ImplicitRecommender("als", factors=16, random_state=seed)
    if name in ("learned_blend", "live_blend"):
        components: list[tuple[str, Recommender]] = [
            ("pop", PopularityRecommender()), ("co", CooccurrenceRecommender()),
            ("als", ImplicitRecommender("als", factors=16, random_state=seed))]
        if name == "live_blend":
            return LiveBlendRecommender(components, random_state=seed, lookback_days=LOOKBACK_DAYS)
        return LearnedBlendRecommender(components, random_state=seed)
    raise ValueError(f"recommender: expected one of {', '.join(RECOMMENDERS)}, got {name!r}")


def _needs_labels(rec: Recommender) -> bool:
    # The learned blend learns from what followed a cutoff inside the history.
    return isinstance(rec, LearnedBlendRecommender)


@dataclass(frozen=True)
class ShopTables:
    """A data directory's tables on an embedded DuckDB, and its catalogue frames."""

    con: Any
    tables: dict[str, Any]
    products: pd.DataFrame | None
    product_changes: pd.DataFrame | None

    def interactions(self, as_of: pd.Timestamp, label_days: float | None) -> InteractionData:
        """:func:`~cadence.features.interactions.load_interactions` before ``as_of``.

        With ``label_days`` (a learned blend's time split), the time-stamped interactions of the
        ``label_days + LOOKBACK_DAYS`` before ``as_of`` too, which the live blend learns from.
        """
        events_days = None if label_days is None else label_days + LOOKBACK_DAYS
        return load_interactions(self.con, self.tables, as_of, label_days=label_days, events_days=events_days)


def missing_tables(data_dir: PathLike) -> list[str]:
    """The tables a recommender needs that ``data_dir`` lacks (empty when it can be fitted).

    Orders with their lines are enough; events add views, carts and searches.
    """
    return [t for t in ("orders", "order_items") if table_path(data_dir, t) is None]


def shop_tables(data_dir: PathLike) -> ShopTables:
    """The interaction tables of ``data_dir`` (those present) on a new DuckDB, with the catalogue read into pandas."""
    from cadence.data.io import read_table
    from cadence.features.engine import connect
    from cadence.workflows.features import load_tables

    missing = missing_tables(data_dir)
    if missing:
        raise ValueError(f"{data_dir}: no table {', '.join(missing)} (recommenders are fitted on the orders and "
                         "their lines, and the events when present)")
    con = connect("duckdb")
    present = [t for t in INTERACTION_TABLES if table_path(data_dir, t) is not None]
    tables = load_tables(con, data_dir, present)
    frames = {}
    for name in ("products", "product_changes"):
        p = table_path(data_dir, name)
        frames[name] = None if p is None else read_table(p, name)
    return ShopTables(con, tables, frames["products"], frames["product_changes"])


def fit_selector(shop: ShopTables, as_of: Any, recommender: str | Recommender, *, n_items: int = 3,
                 seed: int = 0, key: str | None = None, data: InteractionData | None = None) -> ItemSelector:
    """An :class:`ItemSelector` on ``recommender`` fitted on ``shop`` strictly before ``as_of``.

    With ``key``, on pseudonymised customer ids (see :mod:`cadence.deployment.items`). ``data``: the
    interactions before ``as_of`` already loaded (with the learned blend's time split when it needs one).
    """
    cutoff = utc(as_of, "as_of")
    rec = make_recommender(recommender, seed) if isinstance(recommender, str) else recommender
    if data is None or (_needs_labels(rec) and data.labels is None):
        data = shop.interactions(cutoff, LABEL_DAYS if _needs_labels(rec) else None)
    elif data.as_of != cutoff:
        raise ValueError(f"data: loaded as of {data.as_of}, not {cutoff}")
    if key is not None:
        data = pseudonymise(data, key)
    return ItemSelector(rec, n_items=n_items).fit(data, shop.products, shop.product_changes)


def fit_served_items(data_dir: PathLike, as_of: Any, *, recommender: str = DEFAULT_RECOMMENDER, n_items: int = 3,
                     seed: int = 0, key: str | None = None) -> ServedItems:
    """What an export ships to fill ``items``: ``recommender``'s item selector, fitted before ``as_of``.

    Parameters
    ----------
    data_dir
        A shop's data directory with ``orders`` and ``order_items`` (and
        ``events``, ``products``, ``product_changes`` when present).
    as_of
        Nothing at or after it is read (the export's: its latest trigger).
    recommender
        One of :data:`RECOMMENDERS`.
    n_items
        Products per message at most.
    seed
        The recommender's seed.
    key
        Pseudonymisation key (:data:`~cadence.deployment.items.KEY_CHARS`
        characters); None draws one at random, so two exports' pseudonyms
        do not link.
    """
    key = secrets.token_hex(KEY_CHARS // 2) if key is None else key
    if recommender not in RECOMMENDERS:
        raise ValueError(f"recommender: expected one of {', '.join(RECOMMENDERS)}, got {recommender!r}")
    if not isinstance(n_items, int) or isinstance(n_items, bool) or n_items < 1:
        raise ValueError(f"n_items: expected a positive whole number, got {n_items!r}")
    selector = fit_selector(shop_tables(data_dir), as_of, recommender, n_items=n_items, seed=seed, key=key)
    return ServedItems(selector, key, recommender)


def export_items(data_dir: PathLike, as_of: Any, recommender: str | None, *, n_items: int = 3,
                 seed: int = 0) -> tuple[ServedItems | None, str]:
    """What an export fills ``items`` with: ``(served items or None, what the items are)``.

    None (the trigger's products) when ``recommender`` is None or the data
    directory lacks the tables a recommender is fitted on; the text says so.
    """
    if recommender is None:
        return None, "the trigger's products (no recommender asked for)"
    missing = missing_tables(data_dir)
    if missing:
        return None, (f"the trigger's products: no table {', '.join(missing)} to fit the {recommender} "
                      "recommender on")
    served = fit_served_items(data_dir, as_of, recommender=recommender, n_items=n_items, seed=seed)
    return served, f"chosen per stage by the {recommender} recommender, fitted before {served.selector.as_of_}"


# --------------------------------------------------------------------------- #
# Comparison on a time split
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class RecommenderComparison:
    """What :func:`compare_recommenders_named` found.

    Attributes
    ----------
    as_of : Timestamp
        The cutoff: recommenders learn before it; triggers from it on are judged.
    until : Timestamp
        Triggers eligible before this are judged (``end - horizon_days``).
    ranking : DataFrame
        :func:`~cadence.evaluation.recommendations.stage_ranking_metrics`: per
        stage, recommender and metric, the value, its interval and the paired
        difference from the first baseline.
    offline : DataFrame or None
        :func:`~cadence.evaluation.items.evaluate_item_rules` (conversion and
        click per message, pseudo-inverse estimator, differences from the
        first baseline), or None when the log has no randomised item sets.
    offline_note : str
        Why ``offline`` is None ('' when it is not).
    """

    as_of: pd.Timestamp
    until: pd.Timestamp
    k: int
    horizon_days: float
    ranking: pd.DataFrame
    offline: pd.DataFrame | None
    offline_note: str


def _judged_candidates(shop: ShopTables, data_dir: PathLike, start: pd.Timestamp, until: pd.Timestamp) -> pd.DataFrame:
    """Trigger candidates eligible in ``[start, until)`` of the stages that show items."""
    from cadence.features.triggers import trigger_candidates
    from cadence.policies.items import STAGE_RULES
    from cadence.workflows.features import load_tables

    tables = dict(shop.tables)
    extra = [t for t in ("customers", "products", "product_changes", "order_status")
             if t not in tables and table_path(data_dir, t) is not None]
    tables.update(load_tables(shop.con, data_dir, extra))
    if "customers" not in tables:
        raise ValueError(f"{data_dir}: no table customers (trigger candidates need it)")
    cand = trigger_candidates(shop.con, tables, until, since=start).to_pandas()
    shows = [s for s, r in STAGE_RULES.items() if r != "none"]
    cand = cand[cand["stage"].isin(shows)].reset_index(drop=True)
    cand["eligible_at"] = pd.to_datetime(cand["eligible_at"], utc=True)
    return cand


def _offline(shop: ShopTables, data_dir: PathLike, start: pd.Timestamp, fitted: dict[str, Recommender],
             n_bootstrap: int, seed: int) -> tuple[pd.DataFrame | None, str]:
    from cadence.data.io import read_table
    from cadence.evaluation.items import (
        ITEM_LOG_COLUMNS,
        candidate_pairs,
        evaluate_item_rules,
        item_rows,
        top_within_candidates,
    )

    path = table_path(data_dir, "messages")
    if path is None:
        return None, "no messages log"
    messages = read_table(path, "messages")
    if not set(ITEM_LOG_COLUMNS) <= set(messages.columns):
        return None, ("the messages log carries no randomised item sets with their propensities "
                      "(item_candidates, items_propensity): item rules cannot be judged off-policy")
    try:
        rows = item_rows(messages)
    except ValueError as e:
        return None, str(e)
    rows = rows[pd.to_datetime(rows["triggered_at"], utc=True) >= start].reset_index(drop=True)
    if not len(rows):
        return None, f"no logged message with items from {start:%Y-%m-%d} on"
    k = np.fromiter((len(str(s).split("|")) for s in rows["items"]), np.int64, len(rows))
    row, pos, pid = candidate_pairs(rows["item_candidates"])
    cust = rows["customer_id"].astype(str).to_numpy(dtype=object)[row]
    at = pd.DatetimeIndex(pd.to_datetime(rows["triggered_at"], utc=True))[row]
    recent = None
    if any(hasattr(rec, "score_pairs_at") for rec in fitted.values()):
        # A live recommender reads what each customer did between the cutoff and the trigger, as when serving.
        end = at.max() + pd.Timedelta(seconds=1)
        recent = fetch_frame(shop.con, interaction_events(shop.tables, end, since=start), ["ts"])

    def scores(rec: Recommender) -> np.ndarray:
        if hasattr(rec, "score_pairs_at"):
            return np.asarray(rec.score_pairs_at(cust, pid, at, recent=recent))
        return np.asarray(rec.score_pairs(list(cust), list(pid)))

    targets = {name: top_within_candidates(row, pos, pid, scores(rec), len(rows), k) for name, rec in fitted.items()}
    table = evaluate_item_rules(rows, targets, metrics=("conversion", "click"), estimators=("pi",),
                                baseline=next(iter(fitted)), n_bootstrap=n_bootstrap, random_state=seed)
    return table, ""


def compare_recommenders_named(data_dir: PathLike, *, names: Sequence[str] | None = None,
                               holdout_days: float = 60.0, horizon_days: float = 7.0, k: int = 10, seed: int = 0,
                               n_bootstrap: int = 500) -> RecommenderComparison:
    """Judge recommenders on a time split of ``data_dir`` (see the module docstring).

    Parameters
    ----------
    data_dir
        A shop's data directory (``customers``, ``orders``, ``order_items``;
        ``events``, ``products``, ``product_changes`` and ``messages`` when present).
    names
        Recommenders of :data:`RECOMMENDERS` (default: :data:`BASELINES`
        and :data:`DEFAULT_RECOMMENDER`); differences are from the first.
    holdout_days
        The cutoff leaves this many days at the end (at most a third of the
        history, :func:`~cadence.workflows.splits.holdout_cutoff`).
    horizon_days
        A trigger's purchases in ``[eligible_at, eligible_at + horizon_days)``
        are what its items are judged against; only triggers whose horizon
        ends within the history are judged.
    k
        Items per list judged (hit rate@k, recall@k, NDCG@k).
    seed
        The recommenders' seed and the bootstrap's.
    n_bootstrap
        Customer-clustered resamples behind each 95% interval.
    """
    from cadence.evaluation.recommendations import stage_ranking_metrics
    from cadence.workflows.splits import holdout_cutoff

    names = list(dict.fromkeys(names or (*BASELINES, DEFAULT_RECOMMENDER)))
    bad = [n for n in names if n not in RECOMMENDERS]
    if bad:
        raise ValueError(f"recommenders: expected names of {', '.join(RECOMMENDERS)}, got {bad}")
    shop = shop_tables(data_dir)
    orders = shop.tables["orders"]
    span = fetch_frame(shop.con, orders.aggregate(lo=orders.ts.min(), hi=orders.ts.max()), ["lo"])
    first, last = (utc(span[c].iloc[0], f"orders.ts ({c})") for c in ("lo", "hi"))
    end = last.ceil("D")
    as_of = holdout_cutoff(first.floor("D"), end, holdout_days, whole_days=True)
    until = end - pd.Timedelta(days=float(horizon_days))
    if not until > as_of:
        raise ValueError(f"{data_dir}: the holdout ({as_of:%Y-%m-%d} to {end:%Y-%m-%d}) is shorter than the "
                         f"{horizon_days:g}-day horizon")
    # The interactions once for every recommender (with the time split if one of them learns from it).
    labels = any(_needs_labels(make_recommender(n, seed)) for n in names)
    data = shop.interactions(as_of, LABEL_DAYS if labels else None)
    selectors = {n: fit_selector(shop, as_of, n, n_items=k, seed=seed, data=data) for n in names}
    cand = _judged_candidates(shop, data_dir, as_of, until)
    if not len(cand):
        raise ValueError(f"{data_dir}: no trigger candidate of a stage that shows items from {as_of:%Y-%m-%d} "
                         f"to {until:%Y-%m-%d}")
    bought = fetch_frame(shop.con, purchases_between(shop.tables, as_of, end), ["customer_id", "ts", "order_id",
                                                                                  "product_id"])
    selections = {n: s.select(cand) for n, s in selectors.items()}
    ranking = stage_ranking_metrics(selections, cand, bought, k=k, horizon_days=horizon_days,
                                    n_bootstrap=n_bootstrap, random_state=seed)
    offline, note = _offline(shop, data_dir, as_of, {n: s.recommender_ for n, s in selectors.items()}, n_bootstrap, seed)
    return RecommenderComparison(as_of, until, k, float(horizon_days), ranking, offline, note)


__all__ = ["BASELINES", "DEFAULT_RECOMMENDER", "RECOMMENDERS", "RecommenderComparison", "ShopTables",
           "compare_recommenders_named", "export_items", "fit_selector", "fit_served_items", "make_recommender", "missing_tables",
           "shop_tables"]
