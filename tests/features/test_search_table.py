"""Search abandonment: a hand-written table of queries and catalogue items, expected match or no match.

The catalogue is named as the synthetic shop names its products (an adjective,
a category noun; the category as a field). Every query lists the products it
must match (``must``) and, for queries that should match nothing, an empty
set; every product outside ``allowed`` must not be returned.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cadence.features.affinity import SearchMatcher

CATALOGUE = pd.DataFrame([
    ("P01", "premium grinder", "coffee"), ("P02", "bold espresso", "coffee"), ("P03", "classic espresso", "coffee"),
    ("P04", "gentle sencha", "tea"), ("P05", "travel matcha", "tea"), ("P06", "vintage mask", "beauty"),
    ("P07", "classic sunscreen", "beauty"), ("P08", "everyday robot", "toys"), ("P09", "classic kite", "toys"),
    ("P10", "deluxe trowel", "garden"), ("P11", "smart backpack", "outdoor"), ("P12", "compact lamp", "home"),
    ("P13", "family cookbook", "books"), ("P14", "organic kibble", "pet"), ("P15", "travel kettle", "kitchen"),
    ("P16", "premium serum", "beauty"), ("P17", "deluxe yoga", "fitness"), ("P18", "vintage cushion", "home"),
], columns=["product_id", "title", "category"])

# query: (products it must match, products it may also match)
TABLE: dict[str, tuple[set[str], set[str]]] = {
    "espresso": ({"P02", "P03"}, set()),
    "espreso": ({"P02", "P03"}, set()),  # a typo
    "espreso machine": ({"P02", "P03"}, set()),
    "grinders": ({"P01"}, set()),  # a plural
    "serums": ({"P16"}, set()),
    "cushions": ({"P18"}, set()),
    "matcha tea": ({"P05"}, {"P04"}),  # the other tea may follow
    "kite": ({"P09"}, set()),
    "robot toy": ({"P08"}, set()),
    "sunscreen": ({"P07"}, set()),
    "kettle": ({"P15"}, set()),
    "dog kibble": ({"P14"}, set()),
    "yoga mat": ({"P17"}, set()),
    "classic": ({"P03", "P07", "P09"}, set()),  # an adjective-only search: the classic range
    # Unrelated queries: nothing. These are the synthetic shop's zero-result searches and two more.
    "wedding dress": (set(), set()),
    "vinyl turntable": (set(), set()),
    "ps5": (set(), set()),
    "surfboard": (set(), set()),
    "lawnmower": (set(), set()),
    "printer ink": (set(), set()),
    "bike helmet": (set(), set()),
    "drone": (set(), set()),
    "kindle": (set(), set()),
    "charger": (set(), set()),
    "quantum physics": (set(), set()),
    "": (set(), set()),
}


@pytest.fixture(scope="module")
def matcher() -> SearchMatcher:
    return SearchMatcher().fit(CATALOGUE)


@pytest.mark.parametrize("query", list(TABLE))
def test_the_table(matcher: SearchMatcher, query: str) -> None:
    must, may = TABLE[query]
    got = set(matcher.match([query], k=10)[0])
    assert must <= got, f"{query!r}: missed {sorted(must - got)}"
    assert got <= must | may, f"{query!r}: false match {sorted(got - must - may)}"


def test_the_floor_sits_in_a_gap(matcher: SearchMatcher) -> None:
    """The weakest expected match scores clearly above the strongest unrelated one (the floor is not a knife edge)."""
    queries = list(TABLE)
    sim = matcher.scores(queries)
    cols = {p: i for i, p in enumerate(CATALOGUE["product_id"])}
    weakest = min(sim[i, cols[p]] for i, q in enumerate(queries) for p in TABLE[q][0])
    strongest_unrelated = max(sim[i].max() for i, q in enumerate(queries) if not TABLE[q][0])
    assert strongest_unrelated + 0.05 < matcher.threshold < weakest - 0.05, (strongest_unrelated, weakest)


def test_relative_floor_keeps_the_best_match_only() -> None:
    strict = SearchMatcher(relative_threshold=0.8).fit(CATALOGUE)
    got = strict.match(["matcha tea", "espresso"], k=10)
    assert got[0] == ["P05"] and set(got[1]) == {"P02", "P03"}


def test_match_frame_is_the_table_for_many_repeated_queries(matcher: SearchMatcher) -> None:
    queries = list(TABLE) * 50 + [None]
    frame = matcher.match_frame(queries, k=3)
    expected = matcher.match(list(TABLE), k=3)
    got = frame.groupby("query_index")["product_id"].apply(list)
    for i, q in enumerate(queries[:-1]):
        assert got.get(i, []) == expected[i % len(TABLE)], q
    assert len(queries) - 1 not in got.index  # a missing query matches nothing
    assert (frame.groupby("query_index")["rank"].apply(lambda r: r.tolist() == list(range(1, len(r) + 1)))).all()


# A local stand-in for an embedding model (no model can be downloaded here): words map to concepts, so
# "dog food" reaches the kibble and "coffee machine" the espresso, which shared letters alone cannot do.
CONCEPTS = {
    "coffee": ["coffee", "espresso", "grinder", "beans", "caffeine"], "tea": ["tea", "matcha", "sencha"],
    "pet": ["pet", "dog", "cat", "kibble", "food"], "beauty": ["beauty", "serum", "sunscreen", "mask", "skin"],
    "toys": ["toys", "toy", "kite", "robot", "kids"], "kitchen": ["kitchen", "kettle"], "home": ["home", "lamp", "cushion"],
    "garden": ["garden", "trowel"], "outdoor": ["outdoor", "backpack", "hiking"], "books": ["books", "cookbook"],
    "fitness": ["fitness", "yoga", "gym"], "machine": ["machine", "espresso"],
}
AXES = list(CONCEPTS)


def concept_embedding(texts: list[str]) -> np.ndarray:
    out = np.zeros((len(texts), len(AXES)))
    for i, t in enumerate(texts):
        for w in t.lower().split():
            for j, axis in enumerate(AXES):
                out[i, j] += w in CONCEPTS[axis]
    return out


@pytest.mark.parametrize(("query", "expected"), [
    ("dog food", {"P14"}), ("coffee machine", {"P01", "P02", "P03"}), ("skin care", {"P06", "P07", "P16"}),
    ("hiking", {"P11"}), ("wedding dress", set()), ("ps5", set()),
])
def test_a_pluggable_embedding(query: str, expected: set[str]) -> None:
    m = SearchMatcher(embed=concept_embedding, threshold=0.6).fit(CATALOGUE)
    assert set(m.match([query], k=10)[0]) == expected
