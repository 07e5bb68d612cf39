"""Check learned send times against the synthetic world's truth.

Every synthetic customer has a true preferred local hour (``_truth/customers``);
a send within 1.5 hours of it (their best 3-hour window) gets the largest
open and conversion boost. :func:`best_hour_accuracy` reports the share of
customers whose learned best hour lands in that window, by history length,
beside the shop curve's share (everyone sent at the shop's best hour) and
chance (3/24). :func:`oracle_best_hour_accuracy` is the ceiling any model
could reach on the same sends: the Bayes decision of an oracle that knows
every true parameter except the customer's hour. :func:`send_time_truth` re-runs the world under the fixed-delay
rules and under the same rules with learned send times, over seeds. This is a
test harness: it reads the truth, the model does not.

Examples
--------
>>> runs = send_time_truth([1], customers=300, days=60)
>>> sorted(runs["policy"].unique())[:2]
['rules (fixed delay)', 'rules + send time (hourly)']
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from scipy.special import expit, logit
from tqdm.auto import tqdm

from cadence.contract.actions import Policy
from cadence.contract.clock import circular_hours
from cadence.data.io import PathLike
from cadence.evaluation.intervals import t_interval
from cadence.models.send_time import SendTimeModel
from cadence.policies.rules import RulesPolicy
from cadence.policies.send_time import SEND_TIME_STAGES, SendTimePolicy
from cadence.synthetic.backbone import PREFERRED_HOUR_PEAKS, PREFERRED_HOUR_SD
from cadence.synthetic.config import ShopConfig
from cadence.synthetic.messages import OPEN_SEND_TIME_EFFECT, send_time_match
from cadence.synthetic.world import TRUTH_DIR, generate_shop, load_config, simulate_truth
from cadence.workflows.send_time import fit_send_time

#: Half-width (hours) of a customer's true best window.
WINDOW_HALF_WIDTH = 1.5
#: History-length bins (sends before the cutoff) of :func:`best_hour_accuracy`.
HISTORY_BINS: tuple[int, ...] = (0, 1, 5, 10, 20, 50)


def _local_hour(ts: pd.Series, utc_offset_hours: pd.Series) -> np.ndarray:
    """Local hour of day at the world's standard offsets (the truth's clock, no daylight saving)."""
    seconds = (pd.to_datetime(ts, utc=True) - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)
    return ((seconds.to_numpy() % 86400) / 3600 + utc_offset_hours.to_numpy(float)) % 24


def _wilson(k: np.ndarray, n: np.ndarray, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    z = stats.norm.ppf(1 - alpha / 2)
    p = np.where(n > 0, k / np.maximum(n, 1), 0.0)
    centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / (1 + z**2 / n)
    return centre - half, centre + half


def best_hour_accuracy(model: SendTimeModel, shop_dir: PathLike,
                       bins: Sequence[int] = HISTORY_BINS) -> pd.DataFrame:
    """Share of customers whose learned best hour is in their true best 3-hour window, by history length.

    Columns: ``history`` (sends seen), ``customers``, ``share`` with a 95%
    Wilson interval (``lower``, ``upper``), ``shop_curve_share`` (the share
    had everyone been given the shop's best hour) and ``chance`` (3/24).
    """
    truth = pd.read_parquet(Path(shop_dir) / TRUTH_DIR / "customers.parquet",
                            columns=["customer_id", "preferred_hour_local"])
    ids = truth["customer_id"].astype(str).to_numpy()
    pref = truth["preferred_hour_local"].to_numpy(float)
    hit = circular_hours(model.best_hour(ids), pref) <= WINDOW_HALF_WIDTH
    shop_hit = circular_hours(model.shop_best_hour(), pref) <= WINDOW_HALF_WIDTH
    n_sends = pd.Series(model.n_sends_, index=model.customers_).reindex(ids).fillna(0).to_numpy()
    return _by_history(hit, n_sends, shop_hit, bins)


def _by_history(hit: np.ndarray, n_sends: np.ndarray, shop_hit: np.ndarray, bins: Sequence[int],
                **per_customer: np.ndarray) -> pd.DataFrame:
    """Hit share with a Wilson interval per history bin and overall; ``per_customer`` columns averaged."""
    edges = [*bins, np.inf]
    labels = [f"{lo}" if hi == lo + 1 else (f"{lo}+" if hi == np.inf else f"{lo}-{int(hi) - 1}")
              for lo, hi in zip(edges[:-1], edges[1:], strict=True)]
    group = pd.cut(n_sends, [b - 0.5 for b in edges], labels=labels)
    shop_hit = np.broadcast_to(shop_hit, hit.shape)
    rows = []
    for label in [*labels, "all"]:
        sel = np.ones(len(hit), bool) if label == "all" else np.asarray(group == label)
        k, n = int(hit[sel].sum()), int(sel.sum())
        lo, hi = _wilson(np.array(k), np.array(max(n, 1)))
        rows.append({"history": label, "customers": n, "share": k / n if n else np.nan,
                     "lower": float(lo) if n else np.nan, "upper": float(hi) if n else np.nan,
                     "shop_curve_share": float(shop_hit[sel].mean()) if n else np.nan,
                     "chance": 2 * WINDOW_HALF_WIDTH / 24,
                     **{k2: float(v[sel].mean()) if n else np.nan for k2, v in per_customer.items()}})
    return pd.DataFrame(rows)


def oracle_best_hour_accuracy(shop_dir: PathLike, as_of: Any = None, *, grid_step: float = 0.1,
                              bins: Sequence[int] = HISTORY_BINS) -> pd.DataFrame:
    """The best share any send-time model could reach on this shop's sends, by history length.

    An oracle that knows the world's prior over preferred hours and, for every
    send before ``as_of``, its true open and conversion probabilities except
    for the send-time term, computes each customer's posterior over the hour
    from the opens and conversions seen (independent Bernoullis, as the world
    draws them) and picks the hour whose +-1.5-hour window holds the most
    posterior mass: the Bayes decision for the in-window hit. In worlds whose
    browsing follows the preferred hour (``ShopConfig.browse_at_preferred_hour``)
    it also reads the browsing sessions' start hours. Its realised hit share
    is the ceiling for :func:`best_hour_accuracy` (same columns;
    ``expected`` is the oracle's own posterior hit probability). A test
    harness: it reads the truth.

    >>> shop = generate_shop(ShopConfig(customers=200, days=60, seed=3), tempfile.mkdtemp())
    >>> int(oracle_best_hour_accuracy(shop).set_index("history").loc["all", "customers"])
    200
    """
    shop_dir = Path(shop_dir)
    people = pd.read_parquet(shop_dir / TRUTH_DIR / "customers.parquet",
                             columns=["customer_id", "preferred_hour_local", "utc_offset_hours"])
    log = pd.read_parquet(shop_dir / "messages.parquet",
                          columns=["message_id", "customer_id", "sent_at", "opened_at", "converted_order_id"])
    log = log[log["sent_at"].notna()]
    if as_of is not None:
        log = log[log["sent_at"] < pd.Timestamp(as_of)]
    p_true = pd.read_parquet(shop_dir / TRUTH_DIR / "messages.parquet", columns=["message_id", "p_open", "p_convert"])
    log = log.merge(p_true, on="message_id").merge(people, on="customer_id")
    code = pd.Categorical(log["customer_id"], categories=people["customer_id"]).codes
    local = _local_hour(log["sent_at"], log["utc_offset_hours"])
    true_match = send_time_match(local, log["preferred_hour_local"].to_numpy(float))
    eps = 1e-9
    grid = np.arange(0, 24, grid_step)
    # The world's prior: an equal mixture of wrapped normals around its peaks.
    d_peak = circular_hours(grid[:, None], np.asarray(PREFERRED_HOUR_PEAKS)[None, :])
    prior = np.exp(-0.5 * (d_peak / PREFERRED_HOUR_SD) ** 2).mean(axis=1)
    log_post = np.tile(np.log(prior), (len(people), 1))
    cfg = load_config(shop_dir)
    for col, outcome, effect in (("p_open", log["opened_at"].notna(), OPEN_SEND_TIME_EFFECT),
                                 ("p_convert", log["converted_order_id"].notna(), cfg.response.send_time_effect)):
        base = logit(np.clip(log[col].to_numpy(float), eps, 1 - eps)) - effect * true_match
        y = outcome.to_numpy()
        for k, h in enumerate(grid):
            p = expit(base + effect * send_time_match(local, np.asarray(h)))
            ll = np.where(y, np.log(np.clip(p, eps, 1)), np.log(np.clip(1 - p, eps, 1)))
            log_post[:, k] += np.bincount(code, ll, minlength=len(people))
    log_post += _browsing_log_likelihood(shop_dir, people, grid, as_of, cfg.browse_at_preferred_hour)
    post = np.exp(log_post - log_post.max(axis=1, keepdims=True))
    post /= post.sum(axis=1, keepdims=True)
    in_window = (circular_hours(grid[:, None], grid[None, :]) <= WINDOW_HALF_WIDTH).astype(float)
    mass = post @ in_window  # posterior hit probability of sending at each grid hour
    best = mass.argmax(axis=1)
    pref = people["preferred_hour_local"].to_numpy(float)
    hit = circular_hours(grid[best], pref) <= WINDOW_HALF_WIDTH
    expected = mass[np.arange(len(people)), best]
    n_sends = np.bincount(code, minlength=len(people))
    prior_best = grid[int(np.argmax(in_window @ prior))]  # the hour an oracle without sends would pick
    return _by_history(hit, n_sends, circular_hours(prior_best, pref) <= WINDOW_HALF_WIDTH, bins, expected=expected)


def _browsing_log_likelihood(shop_dir: Path, people: pd.DataFrame, grid: np.ndarray, as_of: Any,
                             share: float) -> np.ndarray:
    """Log-likelihood of each customer's browsing-session start hours at each grid hour (0 if uninformative).

    Only worlds generated with ``ShopConfig.browse_at_preferred_hour`` (``share``)
    ``> 0`` time browsing by the preferred hour; purchase sessions (which end at
    order times) are left out, as the world draws them at uniform times.
    """
    out = np.zeros((len(people), len(grid)))
    if share <= 0:
        return out
    ev = pd.read_parquet(shop_dir / "events.parquet", columns=["customer_id", "session_id", "ts", "event_type"])
    if as_of is not None:
        ev = ev[ev["ts"] < pd.Timestamp(as_of)]
    sess = ev.groupby(["customer_id", "session_id"], observed=True).agg(
        start=("ts", "min"), purchase=("event_type", lambda e: (e == "purchase").any())).reset_index()
    sess = sess[~sess["purchase"]].merge(people, on="customer_id")
    local = _local_hour(sess["start"], sess["utc_offset_hours"])
    code = pd.Categorical(sess["customer_id"], categories=people["customer_id"]).codes
    for k, h in enumerate(grid):
        density = (1 - share) / 24 + share * stats.norm.pdf(circular_hours(local, h), scale=1.5)
        out[:, k] = np.bincount(code, np.log(density), minlength=len(people))
    return out


def send_time_truth(seeds: Iterable[int], *, customers: int = 2000, days: int = 180, as_of_share: float = 0.5,
                    progress: bool = False, world: Mapping[str, Any] | None = None,
                    **model_params: Any) -> pd.DataFrame:
    """True conversions per trigger of the rules with and without learned send times, per seed.

    For each seed: generate the shop under the randomised logging policy, fit
    the send-time model on its first ``as_of_share`` of days, then re-run the
    world under the fixed-delay rules and the rules with learned send times
    (``grid="slots"`` and ``"hourly"``, no exploration). One row per (seed,
    policy, scope) with ``scope`` ``"timed stages"`` (:data:`SEND_TIME_STAGES`)
    or ``"all"``; ``conversion`` and ``net_revenue`` per trigger, plus the
    in-window ``accuracy`` of the model for the seed. ``world`` holds further
    :class:`ShopConfig` fields (e.g. ``{"browse_at_preferred_hour": 0.5}``).
    """
    rows = []
    for seed in tqdm(list(seeds), desc="seeds", disable=not progress):
        cfg = ShopConfig(customers=customers, days=days, seed=seed, **(world or {}))
        with tempfile.TemporaryDirectory() as tmp:
            shop = generate_shop(cfg, Path(tmp) / "shop")
            start = pd.Timestamp(cfg.start)
            as_of = start + pd.Timedelta(days=days * as_of_share)
            model = fit_send_time(shop, as_of, **model_params)
            accuracy = float(best_hour_accuracy(model, shop).set_index("history")["share"].loc["all"])
        policies: dict[str, Policy] = {
            "rules (fixed delay)": RulesPolicy(),
            "rules + send time (slots)": SendTimePolicy(RulesPolicy(), model, exploration=0.0),
            "rules + send time (hourly)": SendTimePolicy(RulesPolicy(), model, grid="hourly", exploration=0.0),
        }
        for name, policy in policies.items():
            v = simulate_truth(policy, cfg)
            timed = v[v["stage"].isin(SEND_TIME_STAGES)]
            for scope, part in (("timed stages", timed), ("all", v[v["stage"] == "all"])):
                t = float(part["triggers"].sum())
                rows.append({"seed": seed, "policy": name, "scope": scope, "triggers": t,
                             "conversion": float(part["conversion"].sum()) / t,
                             "net_revenue": float(part["net_revenue"].sum()) / t, "accuracy": accuracy})
    return pd.DataFrame(rows)


def send_time_gain(runs: pd.DataFrame, baseline: str = "rules (fixed delay)", alpha: float = 0.05) -> pd.DataFrame:
    """Mean paired difference over seeds of each policy against ``baseline``, with a t interval.

    >>> runs = pd.DataFrame({"seed": [0, 0, 1, 1], "policy": ["a", "b"] * 2, "scope": "all",
    ...                      "conversion": [0.10, 0.12, 0.11, 0.12], "net_revenue": 0.0})
    >>> g = send_time_gain(runs, "a")
    >>> print(g.loc[0, "policy"], g.loc[0, "metric"], g.loc[0, "gain"], g.loc[0, "seeds_better"])
    b conversion 0.015 2
    """
    out = []
    wide = runs.pivot_table(index=["scope", "seed"], columns="policy", values=["conversion", "net_revenue"])
    for metric in ("conversion", "net_revenue"):
        for scope in runs["scope"].unique():
            w = wide[metric].loc[scope]
            for policy in [p for p in w.columns if p != baseline]:
                d = (w[policy] - w[baseline]).to_numpy()
                n = len(d)
                lower, upper, _ = t_interval(d, alpha)
                out.append({"scope": scope, "policy": policy, "metric": metric,
                            "baseline": float(w[baseline].mean()), "value": float(w[policy].mean()),
                            "gain": round(float(d.mean()), 12), "lower": lower,
                            "upper": upper, "relative": float(d.mean() / base) if (base := w[baseline].mean()) else np.nan,
                            "seeds_better": int((d > 0).sum()), "seeds": n})
    return pd.DataFrame(out)
