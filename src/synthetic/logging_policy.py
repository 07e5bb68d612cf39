"""The synthetic shop's logging policy: a randomised experiment over every stage.

Marketing triggers are held out with probability ``hold``; otherwise the
channel is drawn among the customer's current opt-ins (weighted), the delay
uniformly among the stage's delay choices, and the incentive among the four
(only on stages that carry incentives). Transactional ``order_status``
messages always go out on the first available channel. Every decision's
probability is recorded: it is what makes offline evaluation possible.

Examples
--------
>>> import numpy as np, pandas as pd
>>> pol = RandomizedLoggingPolicy()
>>> cands = pd.DataFrame({"stage": ["cart_abandon", "birthday", "order_status"],
...     "opt_in_email": [True, True, False], "opt_in_push": [False, True, True],
...     "opt_in_sms": [False] * 3, "opt_in_whatsapp": [False] * 3})
>>> print(pol.decide(cands, np.random.default_rng(0)).round(4).to_string())
  action channel  delay_minutes     incentive  propensity
0   send   email             20          none      0.2667
1   send    push            240  fixed_amount      0.0167
2   send    push              0          none      1.0000

Cart abandonment carries no incentive: 0.8 (send) x 1 (email, the only
channel) x 1/3 (delay) = 0.2667. The birthday: 0.8 x 0.25/0.8 (push among
email and push) x 1/3 x 0.2 (fixed amount) = 0.0167.

With ``items_per_message > 0`` (a shop with
:class:`~cadence.synthetic.config.Tastes`) every send on a
:data:`~cadence.contract.triggers.RECOMMENDATION_STAGES` stage shows that many
items drawn uniformly, without replacement, among the trigger's candidate set
(the ``item_candidates`` column the world passes, ``|``-joined): the
``items`` decision column holds them in candidate order and
``items_propensity`` the probability of that set, ``1 / binom(m, k)`` for
``m`` candidates (1 when ``m <= k``). It is logged beside ``propensity``
(the action's): the shown set's joint probability is their product.

With ``followup > 0`` every sent abandonment message also plans a follow-up
(:data:`~cadence.contract.actions.FOLLOWUP_COLUMNS`): sent with
probability ``followup`` on a channel drawn like the first, no incentive,
12 hours after the trigger (24 when the first message went at 12 hours),
else a logged hold. The world sends it only if the customer has not ordered
by then, so sequences can be judged offline.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from cadence.contract.actions import ABANDON_DELAYS, OTHER_DELAYS
from cadence.contract.tables import CHANNELS, INCENTIVES, ITEMS_SEP
from cadence.contract.triggers import (
    ABANDON_STAGES,
    INCENTIVE_STAGES,
    RECOMMENDATION_STAGES,
    TRANSACTIONAL_STAGES,
)
from cadence.synthetic.config import ShopConfig

_NULL = np.array(None, dtype=object)


@dataclass(frozen=True)
class RandomizedLoggingPolicy:
    """Uniform-ish randomisation over (send/hold, channel, delay, incentive)."""

    hold: float = 0.2
    channel_weights: tuple[float, ...] = (0.55, 0.25, 0.12, 0.08)
    incentive_weights: tuple[float, ...] = (0.4, 0.2, 0.2, 0.2)
    followup: float = 0.0
    #: Items shown per send on recommendation stages, drawn among ``item_candidates``; 0 chooses none.
    items_per_message: int = 0
    policy_id: str = field(default="logging-randomized-v1")

    @classmethod
    def for_shop(cls, cfg: ShopConfig) -> RandomizedLoggingPolicy:
        """The logging policy a shop of ``cfg`` is generated with (its hold and follow-up shares)."""
        k = 0 if cfg.tastes is None else cfg.tastes.items_per_message
        return cls(hold=cfg.logging_hold, followup=cfg.logging_followup, items_per_message=k)

    def __post_init__(self) -> None:
        for name in ("hold", "followup"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"RandomizedLoggingPolicy.{name}: expected [0, 1), got {getattr(self, name)}")

    def decide(self, candidates: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
        n = len(candidates)
        stage = candidates["stage"].astype(str).to_numpy()
        opt = np.stack([candidates[f"opt_in_{c}"].fillna(False).to_numpy(bool) for c in CHANNELS], axis=1)
        u = rng.random((n, 4))
        w = opt * np.asarray(self.channel_weights)
        wsum = w.sum(axis=1)
        reachable = wsum > 0
        transactional = np.isin(stage, list(TRANSACTIONAL_STAGES))
        send = reachable & (transactional | (u[:, 0] >= self.hold))
        cum = np.cumsum(w, axis=1) / np.where(reachable, wsum, 1)[:, None]
        ch = (cum < u[:, 1:2]).sum(axis=1).clip(0, 3)
        # Transactional messages use the first reachable channel, deterministically.
        ch = np.where(transactional, np.argmax(opt, axis=1), ch)
        p_ch = np.where(transactional, 1.0, w[np.arange(n), ch] / np.where(reachable, wsum, 1))
        abandon = np.isin(stage, list(ABANDON_STAGES))
        k = (u[:, 2] * 3).astype(int).clip(0, 2)
        delay = np.where(abandon, np.asarray(ABANDON_DELAYS)[k], np.asarray(OTHER_DELAYS)[k])
        delay = np.where(transactional, 0, delay)
        p_delay = np.where(transactional, 1.0, 1 / 3)
        has_inc = np.isin(stage, list(INCENTIVE_STAGES))
        icum = np.cumsum(self.incentive_weights)
        inc = np.where(has_inc, np.searchsorted(icum, u[:, 3] * icum[-1], side="right").clip(0, 3), 0)
        p_inc = np.where(has_inc, np.asarray(self.incentive_weights)[inc] / icum[-1], 1.0)
        p_send = np.where(transactional, 1.0, 1 - self.hold)
        prop = np.where(send, p_send * p_ch * p_delay * p_inc, np.where(reachable, self.hold, 1.0))
        out = pd.DataFrame(
            {
                "action": np.where(send, "send", "hold"),
                "channel": np.where(send, np.asarray(CHANNELS, dtype=object)[ch], _NULL),
                "delay_minutes": np.where(send, delay, 0).astype(np.int64),
                "incentive": np.where(send, np.asarray(INCENTIVES, dtype=object)[inc], _NULL),
                "propensity": prop,
            },
            index=candidates.index,
        )
        if self.followup > 0:
            # Draws only when follow-ups are on, so single-message logs keep their bytes.
            u2 = rng.random((n, 2))
            planned = send & abandon
            go = planned & (u2[:, 0] < self.followup)
            ch2 = (cum < u2[:, 1:2]).sum(axis=1).clip(0, 3)
            p_ch2 = w[np.arange(n), ch2] / np.where(reachable, wsum, 1)
            out["followup_action"] = np.where(go, "send", np.where(planned, "hold", _NULL))
            out["followup_channel"] = np.where(go, np.asarray(CHANNELS, dtype=object)[ch2], _NULL)
            out["followup_delay_minutes"] = np.where(planned, np.where(delay < 720, 720, 1440), 0).astype(np.int64)
            out["followup_incentive"] = np.where(go, "none", _NULL)
            out["followup_propensity"] = np.where(go, self.followup * p_ch2, np.where(planned, 1 - self.followup, 1.0))
        if self.items_per_message > 0 and "item_candidates" in candidates:
            # Draws only when items are chosen, so shops without tastes keep their bytes.
            shows = send & np.isin(stage, list(RECOMMENDATION_STAGES))
            items, prop_items = choose_items(candidates["item_candidates"], self.items_per_message, rng, shows)
            out["items"] = items
            out["items_propensity"] = prop_items
        return out


def subset_positions(valid: np.ndarray, k: int, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of a uniform ``k``-subset of each row's valid entries (ascending, -1 padded) and its probability.

    ``valid`` (n, C) marks each row's candidates, left-aligned; ``u`` (n, >= C)
    uniforms. Rows with ``m <= k`` candidates keep all of them (probability
    1); otherwise every subset has probability ``1 / binom(m, k)``.

    >>> pos, p = subset_positions(np.array([[1, 1, 1, 0], [1, 0, 0, 0]], bool), 2, np.full((2, 4), 0.5))
    >>> pos.tolist(), p.round(4).tolist()
    ([[0, 1], [0, -1]], [0.3333, 1.0])
    """
    from scipy.special import comb

    n, c = valid.shape
    m = valid.sum(axis=1)
    if c == 0:
        return np.full((n, k), -1, np.int64), np.ones(n)
    keys = np.where(valid, u[:, :c], np.inf)
    pos = np.sort(np.argsort(keys, axis=1, kind="stable")[:, :k], axis=1)
    if pos.shape[1] < k:
        pos = np.c_[pos, np.full((n, k - pos.shape[1]), c)]
    pos = np.where(np.arange(k)[None, :] < m[:, None], pos, -1)
    return pos.astype(np.int64), np.where(m > k, 1.0 / comb(np.maximum(m, k), k), 1.0)


def choose_items(item_candidates: pd.Series, k: int, rng: np.random.Generator,
                 rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The logging item rule: ``k`` of each row's ``|``-joined candidates, uniformly, where ``rows`` is True.

    Returns the shown items (``|``-joined, candidate order; None where not
    chosen or no candidates) and their set's probability (NaN there).

    >>> it, p = choose_items(pd.Series(["P1|P2|P3", None]), 2, np.random.default_rng(0), np.array([True, True]))
    >>> len(it[0].split("|")), it[1], p.round(4).tolist()[0]
    (2, None, 0.3333)
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    n = len(item_candidates)
    cand = split_items(item_candidates)
    valid = pd.notna(cand)
    pos, prob = subset_positions(valid, k, rng.random((n, max(cand.shape[1], 1))))
    joined = np.full(n, None, dtype=object)
    width = (pos >= 0).sum(axis=1)  # the shown positions are left-aligned
    for w in range(1, k + 1):
        at = np.flatnonzero(width == w)
        if len(at):
            cols = [pa.array(cand[at, pos[at, j]], pa.string()) for j in range(w)]
            joined[at] = (cols[0] if w == 1 else pc.binary_join_element_wise(*cols, ITEMS_SEP)).to_numpy(
                zero_copy_only=False)
    has = rows & valid.any(axis=1)
    items = np.where(has, joined, _NULL)
    return items, np.where(has, prob, np.nan)


def split_items(items: pd.Series | np.ndarray) -> np.ndarray:
    """``|``-joined product ids → (n, width) object array, left-aligned, None padded (empty ids dropped).

    >>> split_items(pd.Series(["P1|P2", None, ""])).tolist()
    [['P1', 'P2'], [None, None], [None, None]]
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = pa.array(np.asarray(items, dtype=object), pa.string(), from_pandas=True)
    lists = pc.split_pattern(arr, ITEMS_SEP)
    flat = pc.list_flatten(lists)
    length = pc.list_value_length(lists).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    keep = pc.not_equal(flat, "")
    row = np.repeat(np.arange(len(arr)), length)[keep.to_numpy(zero_copy_only=False)]
    values = flat.filter(keep).to_numpy(zero_copy_only=False)
    starts = np.searchsorted(row, np.arange(len(arr)))
    col = np.arange(len(row)) - starts[row] if len(row) else np.zeros(0, np.int64)
    width = int(col.max()) + 1 if len(col) else 0
    out = np.full((len(arr), width), None, dtype=object)
    out[row, col] = values
    return out
