"""The items a served message shows: a fitted item selector inside the exported model, keyed by pseudonyms.

:class:`ServedItems` carries a fitted :class:`~cadence.policies.items.ItemSelector`
into the MLflow pyfunc (:class:`~cadence.deployment.serving.PolicyModel`)
and fills ``items`` for each send by the stage's rule. The selector was
fitted on **pseudonymised** customer ids (:func:`pseudonymise`: a keyed
64-bit SipHash of the id, :func:`pseudonyms`), so the registry holds no raw
customer id; at serving the request's ``customer_id`` is hashed with the
same key. The key travels inside the pickled model (a serving process must
hash with it); it is drawn at random per export, so the pseudonyms of two
exports do not link.

A send the selector cannot serve keeps the trigger's own ``products`` (as
the model without a recommender does) and says why in ``reason``
(:data:`~cadence.deployment.serving.ITEMS_FALLBACK` and the cause):
``missing query`` (a search abandonment without its query, or with one that
is not text of at most :data:`~cadence.deployment.serving.MAX_TEXT_CHARS`
characters) or ``no recommendation`` (a stage that shows items, for which
the selector found none: e.g. a customer it never saw on a stage whose
items are the customer's top products under a recommender that needs
history, like "recently viewed"). A transactional message (order
status) recommends nothing: its items stay the trigger's (the order's own).

Examples
--------
>>> import pandas as pd
>>> p = pseudonyms(pd.Series(["a", "b", "a"]), "k" * 16)
>>> len(set(p)), len(p[0])
(2, 16)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from cadence.deployment.serving import MAX_TEXT_CHARS
from cadence.features.interactions import InteractionData
from cadence.policies.items import STAGE_RULES, ItemSelector

#: Length of a pseudonymisation key (what :func:`pandas.util.hash_pandas_object` takes).
KEY_CHARS = 16


def pseudonyms(ids: pd.Series | np.ndarray, key: str) -> np.ndarray:
    """Keyed 64-bit hashes of ids as 16-character hex strings (None and NaN hash as the empty id).

    >>> pseudonyms(pd.Series(["C1"]), "0123456789abcdef")[0] == pseudonyms(pd.Series(["C1"]), "0123456789abcdef")[0]
    True
    """
    if len(key) != KEY_CHARS:
        raise ValueError(f"key: expected {KEY_CHARS} characters, got {len(key)}")
    s = pd.Series(np.asarray(ids, dtype=object))
    s = s.where(s.notna(), "").astype(str)
    h = pd.util.hash_pandas_object(s, index=False, hash_key=key).to_numpy(np.uint64)
    return np.char.mod("%016x", h).astype(object)


def pseudonymise(data: InteractionData, key: str) -> InteractionData:
    """``data`` with every ``customer_id`` (interactions, labels, time-stamped events, the earlier split) replaced by its pseudonym.

    What a recommender fitted on it stores (its customer index) then holds
    no raw id.
    """
    def swap(frame: pd.DataFrame) -> pd.DataFrame:
        return frame.assign(customer_id=pseudonyms(frame["customer_id"], key))

    earlier = None if data.earlier is None else pseudonymise(data.earlier, key)
    labels = None if data.labels is None else swap(data.labels)
    # The live blend keeps the latest events as per-customer state: they are pickled with the model too.
    events = None if data.events is None else swap(data.events)
    return dataclasses.replace(data, interactions=swap(data.interactions), labels=labels, events=events,
                               earlier=earlier)


@dataclass
class ServedItems:
    """A fitted item selector keyed by pseudonyms, and how the served model calls it.

    Attributes
    ----------
    selector : ItemSelector
        Fitted on :func:`pseudonymise`'d interactions with ``key``.
    key : str
        The pseudonymisation key (:data:`KEY_CHARS` characters).
    recommender : str
        The recommender's name, for the export's metadata.
    """

    selector: ItemSelector
    key: str
    recommender: str

    def fill(self, frame: pd.DataFrame, triggered: pd.Series, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(items, why)`` for the rows of a checked frame (``rows``: a boolean mask of the sends).

        ``items`` holds ``|``-joined product ids or None per row of
        ``frame``; ``why`` the fallback cause ('' where the selector served
        the row). Rows outside ``rows`` get None and ''.
        """
        n = len(frame)
        items = np.full(n, None, dtype=object)
        why = np.full(n, "", dtype=object)
        at = np.flatnonzero(rows)
        if not len(at):
            return items, why
        stage = frame["stage"].to_numpy(object)[at]
        products = (frame["products"].to_numpy(object)[at] if "products" in frame
                    else np.full(len(at), None, dtype=object))
        query = frame["query"].to_numpy(object)[at] if "query" in frame else np.full(len(at), None, dtype=object)
        # The query is only read here (check_rows passes it through): text of a bounded length, else absent.
        query = np.asarray([q if isinstance(q, str) and 0 < len(q) <= MAX_TEXT_CHARS else None for q in query],
                           dtype=object)
        ids = frame["customer_id"].to_numpy(object)[at] if "customer_id" in frame else np.full(len(at), None, object)
        rule = pd.Series(stage).map(STAGE_RULES).to_numpy(object)
        no_query = (rule == "search") & pd.isna(query)
        shows = rule != "none"
        ask = ~no_query & shows
        got = np.full(len(at), "", dtype=object)
        if ask.any():
            who = pseudonyms(ids[ask], self.key)
            # Every customer the recommender never saw gets the same items: one stand-in (never a
            # pseudonym, which has 16 characters) lets the selector rank once for all of them.
            who[~pd.Index(who).isin(self._known())] = ""
            # The times as an array, not to_numpy(): that boxes every tz-aware time (a fifth of the call).
            cand = pd.DataFrame({"customer_id": who, "stage": stage[ask],
                                 "eligible_at": triggered.array[at[ask]], "products": products[ask],
                                 "query": query[ask]})
            got[ask] = self.selector.select(cand).to_numpy(object)
        cause = np.where(no_query, "missing query", np.where(shows & (got == ""), "no recommendation", ""))
        fell = cause != ""
        # A transactional message (order status) recommends nothing: its items are the order's own.
        chosen = np.where(fell | ~shows, products, got)
        empty = pd.isna(chosen) | (chosen == "")
        items[at] = chosen
        items[at[empty]] = None
        why[at] = cause
        return items, why

    def _known(self) -> pd.Index:
        """The pseudonyms the recommender was fitted on (an index, built once per process)."""
        known = self.__dict__.get("_known_index")
        if known is None:
            known = pd.Index(np.asarray(self.selector.recommender_.customer_ids_, dtype=object))
            self.__dict__["_known_index"] = known
        return known

    def __getstate__(self) -> dict[str, Any]:
        # The index of known pseudonyms is rebuilt where the model is loaded, not shipped twice.
        return {k: v for k, v in self.__dict__.items() if k != "_known_index"}

    def describe(self) -> dict[str, Any]:
        """What the export records about the items (no customer, no key)."""
        sel = self.selector
        n = sel.n_items
        return {"recommender": self.recommender, "n_items": dict(n) if isinstance(n, Mapping) else int(n),
                "as_of": sel.as_of_.isoformat(), "products": int(len(sel.product_ids_)),
                "customers": int(len(getattr(sel.recommender_, "customer_ids_", ()))),
                "stage_rules": dict(STAGE_RULES), "customer_ids": "pseudonymised (keyed 64-bit hash)"}




def item_packages(served: ServedItems) -> set[str]:
    """Top-level packages loading and running ``served`` needs beyond the served model's own.

    Those named by the code *and* imported when it loads, beyond what the
    serving code itself loads.

    :func:`~cadence.deployment.export.imported_packages` reads every import in
    the source of the modules involved, lazy ones included (the feature
    engine's Spark backend among them); a fresh interpreter that imports
    :mod:`cadence.deployment.items` shows which of those loading really
    imports. The pickled selector's own (``implicit`` for a matrix
    factorisation) are added from the pickle.
    """
    import subprocess
    import sys

    from cadence.deployment.export import imported_packages, pickled_packages

    def loaded(module: str) -> set[str]:
        probe = f"import sys, {module}; print(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
        done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300, check=True)
        return set(done.stdout.split())

    # What the served model loads anyway (mlflow pulls in optional packages such as pyspark when installed)
    # is the serving code's requirement, not the items'.
    extra = loaded(__name__) - loaded("cadence.deployment.serving")
    return (imported_packages([__name__]) & extra) | (pickled_packages(served) - {"cadence"})


__all__ = ["KEY_CHARS", "ServedItems", "item_packages", "pseudonymise", "pseudonyms"]
