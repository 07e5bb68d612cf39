"""The opt-in world with latent item tastes: choices follow relevance, items move the response, item sets are logged."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from scipy import stats
from scipy.special import comb, logit

from cadence.contract.actions import delay_choices
from cadence.contract.tables import CHANNELS
from cadence.contract.triggers import RECOMMENDATION_STAGES
from cadence.data.io import OUTPUT_MARKER, read_tables
from cadence.data.validate import validate_dir
from cadence.synthetic import (
    RandomizedLoggingPolicy,
    ShopConfig,
    Tastes,
    generate_shop,
    load_config,
    load_truth,
    simulate_truth,
    true_relevance,
)
from cadence.synthetic.backbone import EV, build_backbone
from cadence.synthetic.catalog import make_catalog
from cadence.synthetic.logging_policy import choose_items, split_items
from cadence.synthetic.tastes import candidate_sets, mass_table, relevance
from cadence.synthetic.world import iter_world

CFG = ShopConfig(customers=3_000, days=180, seed=13, chunk_size=1_000, tastes=Tastes())
#: One chunk, for tests that reach into the world's own objects.
ONE = ShopConfig(customers=2_000, days=150, seed=21, chunk_size=2_000, tastes=Tastes())

#: Content digests of a small default shop, computed with the code before tastes existed
#: (the commit this branch started from). If a change to the default world is intended,
#: recompute them with ``_content_digests``.
DEFAULT_DIGESTS = {
    "_truth/customers.parquet": "f120a5d902d26909", "_truth/messages.parquet": "00d57133eb85033b",
    "_truth/orders.parquet": "8d69e3a68504d815", "_truth/policy_value.parquet": "c372c61d598a230e",
    "_truth/products.parquet": "873c5df225912e6c", "customers.parquet": "f10bb51e58d68841",
    "events.parquet": "baba44723eb7e96c", "messages.parquet": "ecdb0261dd6ece59",
    "order_items.parquet": "4c6fca41f0e3ce24", "order_status.parquet": "003b1946425ca823",
    "orders.parquet": "ea89ec75d6732fbf", "product_changes.parquet": "d0e06ffc75677739",
    "products.parquet": "bcf08898ca52bff8", "_truth/shop.json": "7a95eebbab1186ba",
}


def _content_digests(folder: Path) -> dict[str, str]:
    # Contents, not file bytes: the Parquet writer records its own version in every file.
    out = {}
    for p in sorted(folder.rglob("*.parquet")):
        df = pq.read_table(p).to_pandas()
        h = hashlib.sha256(json.dumps([[c, str(t)] for c, t in df.dtypes.items()]).encode())
        h.update(pd.util.hash_pandas_object(df, index=False).to_numpy().tobytes())
        out[str(p.relative_to(folder))] = h.hexdigest()[:16]
    out["_truth/shop.json"] = hashlib.sha256((folder / "_truth" / "shop.json").read_bytes()).hexdigest()[:16]
    return out


def _bytes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != OUTPUT_MARKER}


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_shop(CFG, tmp_path_factory.mktemp("tastes") / "shop")


@pytest.fixture(scope="module")
def world() -> dict[str, object]:
    cat = make_catalog(ONE)
    bb = build_backbone(ONE, cat, 0)
    assert bb.item_tastes is not None and bb.customer_tastes is not None
    return {"cat": cat, "bb": bb, "table": mass_table(ONE, bb.item_tastes, bb.customer_tastes, ONE.start_s)}


# ---------------------------------------------------------------- the default world and reproducibility
def test_default_world_is_unchanged(tmp_path: Path) -> None:
    d = generate_shop(ShopConfig(customers=400, days=60, seed=11, chunk_size=150), tmp_path / "default")
    assert _content_digests(d) == DEFAULT_DIGESTS
    assert "tastes" not in ShopConfig().to_dict()
    assert "items_propensity" not in read_tables(d, ["messages"])["messages"].columns


def test_same_seed_same_bytes_valid_contract_and_config_round_trip(shop: Path, tmp_path: Path) -> None:
    again = generate_shop(CFG, tmp_path / "again")
    assert _bytes(again) == _bytes(shop)
    assert validate_dir(shop) == []
    assert load_config(shop) == CFG
    complements = load_truth(shop)["products"]["complements"].str.split("|")
    assert (complements.str.len() == CFG.tastes.complements).all()  # type: ignore[union-attr]
    other = generate_shop(replace(CFG, tastes=Tastes(taste_scale=0.5)), tmp_path / "other")
    assert _bytes(other)["events.parquet"] != _bytes(shop)["events.parquet"]


# ---------------------------------------------------------------- choices follow the true relevance
def _free_views(bb: object) -> np.ndarray:
    """Product views drawn from p_ci(t) unrestricted: sessions with no search and no purchase."""
    sess = bb.ev_session  # type: ignore[attr-defined]
    typ = bb.ev_type  # type: ignore[attr-defined]
    n_s = int(sess.max()) + 1
    other = np.zeros(n_s, bool)
    other[sess[(typ == EV["search"]) | (typ == EV["purchase"])]] = True
    return np.flatnonzero((typ == EV["product_view"]) & ~other[sess])


def _pit(world: dict[str, object], cfg: ShopConfig, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Probability integral transform of each viewed product under the relevance of ``cfg`` (uniform
    when the views are draws from it) and the log probability of each view."""
    bb, table = world["bb"], world["table"]
    n_p = bb.item_tastes.n  # type: ignore[attr-defined]
    c, t, x = bb.ev_cust[rows], bb.ev_s[rows], bb.ev_product[rows]  # type: ignore[attr-defined]
    r = relevance(cfg, bb.item_tastes, bb.customer_tastes, np.repeat(c, n_p), np.tile(np.arange(n_p), len(rows)),  # type: ignore[attr-defined]
                  np.repeat(t, n_p), table).reshape(len(rows), n_p)  # type: ignore[arg-type]
    p = r / r.sum(axis=1, keepdims=True)
    # Products from the most to the least likely under the model.
    order = np.argsort(-p, axis=1, kind="stable")
    sorted_p = np.take_along_axis(p, order, axis=1)
    before = np.empty_like(p)
    np.put_along_axis(before, order, np.cumsum(sorted_p, axis=1) - sorted_p, axis=1)
    v = np.random.default_rng(0).random(len(rows))
    at = np.arange(len(rows))
    return before[at, x] + v * p[at, x], np.log(p[at, x])


def test_views_are_draws_from_the_true_choice_probabilities(world: dict[str, object]) -> None:
    rows = _free_views(world["bb"])
    rows = rows[np.random.default_rng(1).choice(len(rows), 3_000, replace=False)]
    pit, loglik = _pit(world, ONE, rows)
    assert ONE.tastes is not None
    _, loglik_flat = _pit(world, replace(ONE, tastes=replace(ONE.tastes, taste_scale=0.0)), rows)
    _, loglik_steep = _pit(world, replace(ONE, tastes=replace(ONE.tastes, taste_scale=3.0)), rows)
    ks = stats.kstest(pit, "uniform").pvalue
    gain = loglik - loglik_flat
    z = gain.mean() / gain.std() * np.sqrt(len(gain))
    print(f"\nKS p-value under the true relevance {ks:.3f}; log-likelihood per view: true {loglik.mean():.3f}, "
          f"without item-level taste {loglik_flat.mean():.3f} (z = {z:.1f}), twice as steep {loglik_steep.mean():.3f}")
    assert ks > 1e-3
    # The views carry the item-level taste: the true relevance explains them better than either misstatement.
    assert z > 5
    assert loglik.mean() > loglik_steep.mean()


def test_purchases_concentrate_on_relevant_items_and_complements(world: dict[str, object]) -> None:
    bb = world["bb"]
    ct, it = bb.customer_tastes, bb.item_tastes  # type: ignore[attr-defined]
    cust, t = ct.hist_key // (1 << 34), ct.hist_key % (1 << 34)
    r = relevance(ONE, it, ct, cust, ct.hist_prod, t, world["table"])  # type: ignore[arg-type]
    # Each relevance is the lift over an average product (mean 1 over the catalogue).
    print(f"\nmean relevance of bought products {r.mean():.2f}, median {np.median(r):.2f}")
    assert r.mean() > 3.0 and np.median(r) > 1.5

    def complement_share(tastes: Tastes) -> float:
        cfg = replace(ONE, tastes=tastes)
        b = build_backbone(cfg, make_catalog(cfg), 0)
        h = b.customer_tastes
        cu, ts = h.hist_key // (1 << 34), h.hist_key % (1 << 34)
        hit = np.zeros(len(cu), bool)
        for lag in range(1, 9):
            prev = np.r_[np.full(lag, -1), np.arange(len(cu) - lag)]
            ok = (prev >= 0) & (cu[np.maximum(prev, 0)] == cu) & (ts - ts[np.maximum(prev, 0)] <= 30 * 86_400) \
                & (ts > ts[np.maximum(prev, 0)])
            comp = b.item_tastes.complements[h.hist_prod[np.maximum(prev, 0)]]
            hit |= ok & (comp == h.hist_prod[:, None]).any(axis=1)
        return float(hit.mean())

    with_pairs, without = complement_share(ONE.tastes), complement_share(replace(ONE.tastes, complement_share=0.0))  # type: ignore[arg-type]
    print(f"share of purchases that complement one bought in the 30 days before: {with_pairs:.3f} vs {without:.3f}")
    assert with_pairs > without + 0.02


def test_true_relevance_api_agrees_with_the_world(world: dict[str, object]) -> None:
    bb = world["bb"]
    rows = _free_views(bb)[:50]
    ids = np.char.add("C", np.char.zfill(bb.ev_cust[rows].astype(str), 7))  # type: ignore[attr-defined]
    pids = world["cat"].product_id[bb.ev_product[rows]]  # type: ignore[attr-defined,index]
    at = pd.to_datetime(bb.ev_s[rows], unit="s", utc=True)  # type: ignore[attr-defined]
    api = true_relevance(ONE, ids, pids, at)
    own = relevance(ONE, bb.item_tastes, bb.customer_tastes, bb.ev_cust[rows], bb.ev_product[rows],  # type: ignore[attr-defined]
                    bb.ev_s[rows], world["table"])  # type: ignore[arg-type]
    np.testing.assert_allclose(api, own, rtol=1e-9)
    full = true_relevance(ONE, ids[:3], None, at[:3])
    assert full.shape == (3, world["cat"].n)  # type: ignore[attr-defined]
    # Relevance is a lift: it averages 1 over the products that exist at the time.
    exists = world["cat"].created_s <= bb.ev_s[rows][:3, None]  # type: ignore[attr-defined]
    np.testing.assert_allclose((full.to_numpy() * exists).sum(axis=1) / exists.sum(axis=1), 1.0, rtol=1e-9)
    assert (full.to_numpy()[~exists] == 0).all()
    with pytest.raises(ValueError, match="customer_ids: 1 id"):
        true_relevance(ONE, ["C9999999"], ["P000001"], "2025-02-01")
    with pytest.raises(ValueError, match="no latent tastes"):
        true_relevance(ShopConfig(customers=10, days=10), ["C0000001"], ["P000001"], "2025-01-05")


# ---------------------------------------------------------------- items move the response
class _FixedActions:
    """Email (or the first opted-in channel), the stage's first delay, no incentive; items by ``rank``."""

    def __init__(self, world: dict[str, object], rank: str):
        self.world, self.rank = world, rank
        self.policy_id = f"fixed-{rank}"

    def decide(self, candidates: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
        n = len(candidates)
        opt = np.stack([candidates[f"opt_in_{c}"].to_numpy(bool) for c in CHANNELS], axis=1)
        stage = candidates["stage"].astype(str).to_numpy()
        delay = np.array([delay_choices(s)[0] for s in stage], np.int64)
        send = opt.any(axis=1)
        out = pd.DataFrame({
            "action": np.where(send, "send", "hold"),
            "channel": np.where(send, np.asarray(CHANNELS, dtype=object)[np.argmax(opt, axis=1)], None),
            "delay_minutes": delay, "incentive": np.where(send, "none", None), "propensity": 1.0,
        }, index=candidates.index)
        items = np.full(n, None, dtype=object)
        if self.rank != "none":
            bb, cat = self.world["bb"], self.world["cat"]
            cand = split_items(candidates["item_candidates"])
            rows, cols = np.nonzero(pd.notna(cand))
            prod = pd.Index(cat.product_id).get_indexer(cand[rows, cols].astype(str))  # type: ignore[attr-defined]
            cust = candidates["customer_id"].astype(str).str[1:].astype(int).to_numpy()[rows]
            tau = (candidates["triggered_at"].astype("int64").to_numpy() // 10**9)[rows] + delay[rows] * 60
            r = np.full(cand.shape, np.nan)
            r[rows, cols] = relevance(ONE, bb.item_tastes, bb.customer_tastes, cust, prod, tau, self.world["table"])  # type: ignore[arg-type,attr-defined]
            order = np.argsort(np.where(np.isnan(r), np.inf, -r if self.rank == "top" else r), axis=1)[:, :3]
            rec = np.isin(stage, list(RECOMMENDATION_STAGES)) & send
            for i in np.flatnonzero(rec & pd.notna(cand).any(axis=1)):
                items[i] = "|".join(cand[i, j] for j in order[i] if pd.notna(cand[i, j]))
        out["items"] = items
        return out


def test_relevant_items_raise_clicks_and_conversions_by_the_documented_link(world: dict[str, object]) -> None:
    assert ONE.tastes is not None
    runs = {rank: next(iter_world(ONE, _FixedActions(world, rank), cat=world["cat"]))[1]  # type: ignore[arg-type]
            for rank in ("top", "bottom", "none")}
    top, none = runs["top"], runs["none"]
    assert top.items is not None and top.items_relevance is not None
    shown = np.flatnonzero(pd.notna(top.items))
    assert len(shown) > 1_000 and (np.asarray(none.items[pd.notna(none.items)]).size == 0)  # type: ignore[index]
    # Same decisions but the items: the log-odds move by item_effect * (log(1 + mean r) - log 2).
    shift = np.log1p(top.items_relevance[shown]) - np.log(2)
    np.testing.assert_allclose(logit(top.p_convert[shown]) - logit(none.p_convert[shown]),
                               ONE.tastes.item_effect * shift, atol=1e-9)
    click = lambda o: logit(o.p_click[shown] / o.p_open[shown])  # noqa: E731
    np.testing.assert_allclose(click(top) - click(none), ONE.tastes.click_item_effect * shift, atol=1e-9)
    np.testing.assert_array_equal(top.p_convert_hold, none.p_convert_hold)
    # In truth, the best candidates convert more than none, and the worst less.
    conv = {k: float(v.p_convert[shown].sum()) for k, v in runs.items()}
    print(f"\nexpected conversions on {len(shown)} sends with items: {conv}")
    assert conv["top"] > conv["none"] * 1.2 and conv["bottom"] < conv["none"] * 0.95
    # What a converted send buys is one of its items.
    bought = top.conv_product[shown]  # type: ignore[index]
    assert all(world["cat"].product_id[b] in top.items[i].split("|")  # type: ignore[attr-defined,index]
               for b, i in zip(bought[:200], shown[:200], strict=True))


def test_logged_conversions_rise_with_item_relevance(shop: Path) -> None:
    m = read_tables(shop, ["messages"])["messages"].merge(load_truth(shop)["messages"], on="message_id")
    with_items = m[m["items"].notna() & (m["step"] == 1)]
    by = with_items.groupby(pd.qcut(with_items["items_relevance"], 4), observed=True)["p_convert"].mean()
    print("\nmean true conversion probability by quartile of the shown items' relevance:\n" + by.round(4).to_string())
    assert (np.diff(by.to_numpy()) > 0).all()


def test_simulate_truth_values_an_item_rule(world: dict[str, object]) -> None:
    top = simulate_truth(_FixedActions(world, "top"), ONE).set_index("stage")
    bottom = simulate_truth(_FixedActions(world, "bottom"), ONE).set_index("stage")
    stages = [s for s in top.index if s in RECOMMENDATION_STAGES]
    assert (top.loc[stages, "conversion"] >= bottom.loc[stages, "conversion"]).all()
    assert top.loc["all", "conversion"] > bottom.loc["all", "conversion"]
    np.testing.assert_array_equal(top["sent"], bottom["sent"])


def test_policy_items_must_name_catalogue_products(world: dict[str, object]) -> None:
    class Bad(_FixedActions):
        def decide(self, candidates: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
            out = super().decide(candidates, rng)
            out["items"] = "P999999|P000001"
            return out

    with pytest.raises(ValueError, match=r"'items' names .* not in the catalogue, e.g. 'P999999'"):
        next(iter_world(ONE, Bad(world, "none"), cat=world["cat"]))  # type: ignore[arg-type]


# ---------------------------------------------------------------- the logged item sets
def test_item_rule_draws_uniform_subsets_with_their_probability() -> None:
    cands = pd.Series(["A|B|C|D|E"] * 20_000 + ["A|B"] * 10 + [None] * 10)
    rows = np.ones(len(cands), bool)
    items, prop = choose_items(cands, 2, np.random.default_rng(3), rows)
    main = pd.Series(items[:20_000])
    freq = main.value_counts()
    # The ten 2-subsets of five candidates are equally likely, each logged with probability 1/10.
    assert len(freq) == 10 and set(prop[:20_000]) == {0.1}
    assert stats.chisquare(freq.to_numpy()).pvalue > 1e-3
    assert (items[20_000:20_010] == "A|B").all() and (prop[20_000:20_010] == 1.0).all()
    assert all(x is None for x in items[-10:]) and np.isnan(prop[-10:]).all()


def test_logged_item_sets_lie_in_the_candidate_sets_with_exact_propensities(shop: Path) -> None:
    cat = make_catalog(CFG)
    msgs = read_tables(shop, ["messages"])["messages"]
    logged = []
    # The world's own candidate sets, trigger by trigger (messages are written in trigger order per chunk).
    for chunk in range(CFG.n_chunks):
        bb = build_backbone(CFG, cat, chunk)
        cands = candidate_sets(CFG.tastes, bb.item_tastes, bb.trig_products, bb.trig_query, bb.trig_s)  # type: ignore[arg-type]
        logged.append(pd.DataFrame({"m": (cands >= 0).sum(axis=1), "cand": list(cands)}))
    first = msgs[msgs["step"] == 1].reset_index(drop=True)
    both = pd.concat([first, pd.concat(logged, ignore_index=True)], axis=1)
    shown = both[both["items"].notna()]
    assert set(shown["stage"]) <= RECOMMENDATION_STAGES and len(shown) > 2_000
    assert (both.loc[both["action"] == "hold", "items"].isna()).all()
    k = CFG.tastes.items_per_message  # type: ignore[union-attr]
    expected = np.where(shown["m"] > k, 1 / comb(np.maximum(shown["m"], k), k), 1.0)
    np.testing.assert_allclose(shown["items_propensity"], expected)
    # The logged candidate set is the world's, and it holds every shown product in order.
    assert both["item_candidates"].tolist() == ["|".join(cat.product_id[c[c >= 0]]) or None for c in both["cand"]]
    positions = [_positions(i, c, cat) for i, c in zip(shown["items"], shown["cand"], strict=True)]
    assert all(p == sorted(p) and len(p) == min(k, m) for p, m in zip(positions, shown["m"], strict=True))
    # Each of the 12 candidate positions is shown k/12 of the time among full candidate sets.
    full = np.flatnonzero(shown["m"].to_numpy() == CFG.tastes.candidates)  # type: ignore[union-attr]
    counts = np.bincount(np.concatenate([positions[i] for i in full]), minlength=12)
    print(f"\n{len(full)} full candidate sets; times each position was shown: {counts.tolist()}")
    assert stats.chisquare(counts).pvalue > 1e-3


def _positions(items: str, cand: np.ndarray, cat: object) -> list[int]:
    """Where each shown product sits in the candidate set (raises if it is not in it)."""
    ids = cat.product_id[cand[cand >= 0]].tolist()  # type: ignore[attr-defined]
    return [ids.index(i) for i in items.split("|")]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"factors": 0}, "factors must be >= 1"),
        ({"item_effect": -1.0}, "item_effect must be a finite number >= 0"),
        ({"items_per_message": 13}, "items_per_message <= candidates"),
        ({"complement_days": 0.0}, "complement_days must be > 0"),
    ],
)
def test_bad_tastes(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Tastes(**kwargs)  # type: ignore[arg-type]


def test_logging_policy_for_a_shop_with_tastes_shows_items() -> None:
    assert RandomizedLoggingPolicy.for_shop(CFG).items_per_message == 3
    assert RandomizedLoggingPolicy.for_shop(ShopConfig()).items_per_message == 0
