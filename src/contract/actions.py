"""The action space and the Policy protocol: what every send policy answers for a batch of trigger candidates.

A policy receives one row per trigger candidate (``customer_id``, ``stage``,
``triggered_at``, context columns ``products``/``query``/``order_id``, the
customer's current channel opt-ins ``opt_in_<channel>`` and ``timezone``,
plus any customer features the caller joins in) and returns one decision per
row: ``action`` (send or hold), ``channel``, ``delay_minutes``,
``incentive``, and the ``propensity`` with which it chose that decision.
Stochastic policies draw with the generator they are given, so the caller
controls reproducibility.

Each decision has one integer code in the fixed vocabulary
:data:`ACTION_NAMES` (hold, or channel x delay slot x incentive, the delay
slot indexing the stage's :func:`delay_choices`): what logged bandits,
reward models and off-policy estimators index by.

Examples
--------
>>> import numpy as np, pandas as pd
>>> class AlwaysEmail:
...     policy_id = "always-email"
...     def decide(self, candidates, rng):
...         n = len(candidates)
...         return pd.DataFrame({"action": ["send"] * n, "channel": ["email"] * n,
...                              "delay_minutes": [0] * n, "incentive": ["none"] * n,
...                              "propensity": [1.0] * n})
>>> isinstance(AlwaysEmail(), Policy)
True
>>> ACTION_NAMES[:2], len(ACTION_NAMES)
(('hold', 'email/0/none'), 49)
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd

from cadence.contract.tables import CHANNELS, INCENTIVES
from cadence.contract.triggers import ABANDON_STAGES, INCENTIVE_STAGES

DECISION_COLUMNS: tuple[str, ...] = ("action", "channel", "delay_minutes", "incentive", "propensity")
#: Optional decision columns planning one follow-up message after a send (a two-step
#: sequence, :mod:`cadence.policies.sequences`): ``followup_action`` is ``"send"``,
#: ``"hold"`` (a decided no, logged) or None (nothing planned); its delay counts from the
#: trigger; its propensity is the follow-up decision's, given the first message.
FOLLOWUP_COLUMNS: tuple[str, ...] = (
    "followup_action", "followup_channel", "followup_delay_minutes", "followup_incentive", "followup_propensity",
)
#: Optional decision columns choosing the products a send shows: ``items`` (``|``-joined
#: product ids, None for none) and ``items_propensity`` (the probability of that set given
#: the send). A policy without them shows whatever its caller's item rule picks.
ITEM_COLUMNS: tuple[str, ...] = ("items", "items_propensity")

#: Delay choices (minutes after the trigger) that policies pick from.
ABANDON_DELAYS: tuple[int, ...] = (20, 60, 720)
OTHER_DELAYS: tuple[int, ...] = (0, 240, 600)


def delay_choices(stage: str) -> tuple[int, ...]:
    """The delays (minutes) a policy may choose for ``stage``.

    >>> delay_choices("cart_abandon")
    (20, 60, 720)
    """
    return ABANDON_DELAYS if stage in ABANDON_STAGES else OTHER_DELAYS


@runtime_checkable
class Policy(Protocol):
    """A send policy: decisions and their probabilities for trigger candidates."""

    @property
    def policy_id(self) -> str:
        """A stable name, recorded in the messages log."""
        ...

    def decide(self, candidates: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
        """Return one decision row per candidate, columns :data:`DECISION_COLUMNS`."""
        ...


def check_decisions(decisions: pd.DataFrame, n: int, policy_id: str) -> None:
    """Raise a clear ``ValueError`` when a policy's output breaks the protocol."""
    missing = [c for c in DECISION_COLUMNS if c not in decisions.columns]
    if missing:
        raise ValueError(f"policy {policy_id!r}: decisions lack column(s) {', '.join(missing)}")
    if len(decisions) != n:
        raise ValueError(f"policy {policy_id!r}: {len(decisions)} decisions for {n} candidates")
    p = decisions["propensity"].to_numpy(dtype=float)
    bad = int(((p <= 0) | (p > 1) | np.isnan(p)).sum())
    if bad:
        raise ValueError(f"policy {policy_id!r}: propensity outside (0, 1] in {bad} rows")
    bad = int((~decisions["action"].isin(["send", "hold"])).sum())
    if bad:
        raise ValueError(f"policy {policy_id!r}: action not 'send' or 'hold' in {bad} rows")


#: Action vocabulary shared by every policy on a shop's log.
ACTION_NAMES: tuple[str, ...] = ("hold",) + tuple(
    f"{ch}/{slot}/{inc}" for ch in CHANNELS for slot in range(3) for inc in INCENTIVES
)


N_ACTIONS = len(ACTION_NAMES)


def action_code(channel: np.ndarray, slot: np.ndarray, incentive: np.ndarray, send: np.ndarray) -> np.ndarray:
    """Integer action codes from channel/slot/incentive codes (ignored where not ``send``).

    >>> action_code(np.array([0, 1]), np.array([0, 2]), np.array([0, 3]), np.array([True, False])).tolist()
    [1, 0]
    """
    code = 1 + (np.asarray(channel) * 3 + np.asarray(slot)) * len(INCENTIVES) + np.asarray(incentive)
    return np.where(send, code, 0).astype(np.int64)


def decode_action(code: int) -> tuple[str, int, str] | None:
    """``(channel, delay slot, incentive)`` of a code, ``None`` for hold.

    >>> decode_action(ACTION_NAMES.index("sms/1/percent_code"))
    ('sms', 1, 'percent_code')
    """
    if code == 0:
        return None
    ch, rest = divmod(code - 1, 3 * len(INCENTIVES))
    slot, inc = divmod(rest, len(INCENTIVES))
    return CHANNELS[ch], slot, INCENTIVES[inc]


def _code_parts() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(channel, delay slot, incentive) index of every action code (-1 for hold)."""
    parts = np.full((3, N_ACTIONS), -1, np.int64)
    for code in range(1, N_ACTIONS):
        ch, slot, inc = decode_action(code)  # type: ignore[misc]
        parts[:, code] = CHANNELS.index(ch), slot, INCENTIVES.index(inc)
    return parts[0], parts[1], parts[2]


#: Channel, delay slot and incentive index of every action code (-1 for hold).
CODE_CHANNEL, CODE_SLOT, CODE_INCENTIVE = _code_parts()


def code_delays(stage: np.ndarray, code: np.ndarray) -> np.ndarray:
    """Each action code's delay in minutes among its stage's :func:`delay_choices` (hold: the first delay).

    >>> code_delays(np.array(["cart_abandon", "birthday"]), np.array([ACTION_NAMES.index("sms/2/none"), 0])).tolist()
    [720, 0]
    """
    slot = np.maximum(CODE_SLOT[np.asarray(code)], 0)
    abandon = np.isin(np.asarray(stage), list(ABANDON_STAGES))
    return np.where(abandon, np.asarray(ABANDON_DELAYS)[slot], np.asarray(OTHER_DELAYS)[slot])


def allowed_actions(stage: np.ndarray, opt_in: np.ndarray, incentives: bool = True) -> np.ndarray:
    """``(n, N_ACTIONS)`` bool: hold, or an opted-in channel x the stage's delays x its incentives.

    Incentives other than none only on :data:`~cadence.contract.triggers.INCENTIVE_STAGES`
    (and not at all with ``incentives=False``): what the logging policy randomises over,
    what the learned policy chooses among and what the served model may answer.

    >>> a = allowed_actions(np.array(["birthday", "cart_abandon"]), np.array([[1, 0, 0, 0], [1, 1, 0, 0]], bool))
    >>> a.sum(axis=1).tolist()  # 1 + 1 channel x 3 delays x 4 incentives; 1 + 2 x 3 x 1
    [13, 7]
    """
    stage = np.asarray(stage).astype(str)
    carries = np.isin(stage, list(INCENTIVE_STAGES)) & incentives
    allowed = np.zeros((len(stage), N_ACTIONS), bool)
    allowed[:, 0] = True
    allowed[:, 1:] = np.asarray(opt_in, bool)[:, CODE_CHANNEL[1:]] & (
        (CODE_INCENTIVE[1:] == 0)[None, :] | carries[:, None])
    return allowed


def _codes(values: pd.Series, vocab: tuple[str, ...], what: str) -> np.ndarray:
    codes = pd.Categorical(values, categories=list(vocab)).codes.astype(np.int64)
    bad = values.notna().to_numpy() & (codes < 0)
    if bad.any():
        raise ValueError(f"{what}: {int(bad.sum())} rows outside {vocab}, e.g. {values[bad].iloc[0]!r}")
    return codes


def delay_slots(stage: pd.Series, delay_minutes: pd.Series | np.ndarray, *, what: str = "delay_minutes") -> np.ndarray:
    """Index of each delay among its stage's :func:`~cadence.contract.actions.delay_choices`.

    >>> delay_slots(pd.Series(["cart_abandon", "birthday"]), np.array([720, 0])).tolist()
    [2, 0]
    """
    delay = np.asarray(delay_minutes, dtype=np.int64)
    abandon = stage.astype(str).isin(ABANDON_STAGES).to_numpy()
    slot = np.full(len(delay), -1, np.int64)
    for choices, rows in ((ABANDON_DELAYS, abandon), (OTHER_DELAYS, ~abandon)):
        for k, d in enumerate(choices):
            slot[rows & (delay == d)] = k
    return slot


def encode_actions(stage: pd.Series, decisions: pd.DataFrame) -> np.ndarray:
    """Codes in :data:`ACTION_NAMES` of decisions (``action, channel, delay_minutes, incentive``).

    Raises a ``ValueError`` naming the column when a send has an unknown
    channel, incentive or a delay its stage does not offer.

    >>> d = pd.DataFrame({"action": ["send", "hold"], "channel": ["email", None],
    ...                   "delay_minutes": [20, 0], "incentive": ["none", None]})
    >>> encode_actions(pd.Series(["cart_abandon", "birthday"]), d).tolist()
    [1, 0]
    """
    send = (decisions["action"] == "send").to_numpy()
    ch = _codes(decisions["channel"], CHANNELS, "channel")
    inc = _codes(decisions["incentive"].fillna("none"), INCENTIVES, "incentive")
    slot = delay_slots(stage.reset_index(drop=True), decisions["delay_minutes"].to_numpy())
    for name, codes in (("channel", ch), ("delay_minutes", slot)):
        bad = send & (codes < 0)
        if bad.any():
            raise ValueError(f"{name}: {int(bad.sum())} sends with a value their stage does not offer")
    return action_code(ch, slot, inc, send)


LOGGING = "logging"
