"""The served policy: an MLflow pyfunc model that serving teams load by alias and call.

:class:`PolicyModel` wraps a fitted, deterministic
:class:`~cadence.contract.actions.Policy` (the *greedy* policy) and answers one
decision per trigger candidate. Its input is the candidate frame of
:mod:`cadence.contract.actions` (:data:`INPUT_COLUMNS`); its output
(:data:`OUTPUT_COLUMNS`) is the decision, when to send it, and the
probability with which it was chosen:

* **exploration**: with probability ``epsilon`` the decision is drawn
  uniformly among the actions valid for the candidate (hold, or a channel the
  customer is opted in to × the stage's delay choices × the incentives the
  stage allows), otherwise it is the greedy policy's. The ``propensity`` of
  the chosen action is ``(1 - epsilon) 1[a = greedy] + epsilon / K`` over the
  ``K`` valid actions, so the send log it produces feeds the next offline
  evaluation; ``reason`` says ``exploration`` where the draw changed the
  decision. Transactional stages never explore. With ``epsilon = 0`` the
  decisions are the greedy policy's exactly;
* **reproducible**: the draws of a row come from a keyed hash of its stable
  fields (``customer_id``, ``stage``, ``triggered_at``, ``products``) and
  the model's ``seed``, so the same row gets the same decision in any batch,
  process or server;
* **fallback, never an exception for a row**: an unknown stage, time zone or
  channel, a row without ``stage``/``triggered_at``, or a column the policy
  reads being absent (or null where no default exists) gets
  :class:`~cadence.policies.rules.RulesPolicy`'s decision for that row, no
  exploration, and a ``reason`` saying why. Values of the wrong *type* are
  a caller's bug and raise an ``MlflowException`` naming the column (HTTP
  400 from the scoring server).

The signature types ``triggered_at``, the opt-ins and the counts
(``sends_7d``, ``orders_90d``, ``days_since_order``) as ``Any`` and the
model checks them itself: MLflow's own casts would reject
timezone-aware timestamps, reject an integer column holding a null, and
turn the JSON text ``"false"`` into an opt-in (``bool("false")``).

A null opt-in means no known consent and counts as not opted in; a null
``products`` means the trigger has no items.

``send_at`` is ``triggered_at + delay_minutes`` (UTC); ``items`` repeats
the trigger's ``products`` for sends; ``priority`` ranks competing sends of
one customer by stage (the orchestrator's order when
:mod:`cadence.policies.orchestrator` is present) unless the policy gives its
own. The orchestrator's caps and quiet hours need memory across requests
and are *not* applied here: the export records their settings for the
serving side.

Examples
--------
>>> from cadence.policies.rules import RulesPolicy
>>> model = PolicyModel(RulesPolicy(), epsilon=0.0)
>>> out = model.predict(None, input_example())
>>> out[["action", "channel", "delay_minutes", "incentive", "propensity"]].values.tolist()[:2]
[['send', 'push', 20, 'none', 1.0], ['send', 'email', 0, 'free_shipping', 1.0]]
>>> model.predict(None, input_example().assign(stage="unknown"))["reason"].iloc[0]
"rules fallback: unknown stage 'unknown'"
"""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.pyfunc import PythonModel
from mlflow.types.schema import AnyType, ColSpec, DataType, Schema

from cadence.contract.actions import (
    N_ACTIONS,
    Policy,
    check_decisions,
    decode_action,
    delay_choices,
    encode_actions,
)
from cadence.contract.tables import CHANNELS, INCENTIVES, STAGES
from cadence.contract.triggers import INCENTIVE_STAGES, TRANSACTIONAL_STAGES
from cadence.policies.rules import RulesPolicy, opt_in_matrix


@dataclass(frozen=True)
class Column:
    """One column of the served model's input or output."""

    name: str
    type: str  # an MLflow DataType name, or "any"
    required: bool
    doc: str


OPT_IN_COLUMNS: tuple[str, ...] = tuple(f"opt_in_{c}" for c in CHANNELS)
#: Optional columns :func:`~cadence.features.context.context_features` reads (besides stage and time).
CONTEXT_COLUMNS: tuple[str, ...] = ("timezone", *OPT_IN_COLUMNS, "sends_7d", "orders_90d", "days_since_order")
#: Columns that must hold whole numbers / numbers when given.
WHOLE_COLUMNS: tuple[str, ...] = ("sends_7d", "orders_90d")
NUMBER_COLUMNS: tuple[str, ...] = ("days_since_order",)

#: The model's input: one row per trigger candidate.
INPUT_COLUMNS: tuple[Column, ...] = (
    Column("customer_id", "string", False, "the customer's id; only hashed for reproducible exploration"),
    Column("stage", "string", True, f"one of {', '.join(STAGES)}"),
    Column("triggered_at", "any", True,
           "when the trigger fired: a timestamp or ISO-8601 text; naive values are UTC"),
    Column("timezone", "string", False, "the customer's IANA time zone, e.g. Europe/Berlin"),
    *(Column(c, "any", False, f"true/false: the customer takes {c.removeprefix('opt_in_')} now (null = no)")
      for c in OPT_IN_COLUMNS),
    Column("sends_7d", "any", False, "a whole number: messages sent to the customer in the 7 days before "
                                     "the trigger"),
    Column("orders_90d", "any", False, "a whole number: the customer's orders in the 90 days before the trigger"),
    Column("days_since_order", "any", False, "a number: days since the customer's last order before the "
                                             "trigger (null = never ordered)"),
    Column("products", "string", False, "the trigger's product ids, '|'-separated (null = none)"),
)

#: The model's output: one decision per input row, in input order.
OUTPUT_COLUMNS: tuple[Column, ...] = (
    Column("action", "string", True, "send or hold"),
    Column("channel", "string", False, f"one of {', '.join(CHANNELS)} (null when held)"),
    Column("send_at", "any", False, "triggered_at + delay_minutes, a UTC timestamp (null when held)"),
    Column("delay_minutes", "long", True, "minutes after the trigger (0 when held)"),
    Column("incentive", "string", False, f"one of {', '.join(INCENTIVES)} (null when held)"),
    Column("items", "string", False, "the items to show, '|'-separated (the trigger's products)"),
    Column("priority", "double", True, "rank among one customer's competing sends, higher first"),
    Column("propensity", "double", True, "probability with which this decision was chosen"),
    Column("reason", "string", True, "why the decision is not the policy's ('' when it is)"),
)


def _colspec(c: Column) -> ColSpec:
    kind: Any = AnyType() if c.type == "any" else DataType[c.type]
    return ColSpec(kind, c.name, required=c.required)


def model_signature() -> ModelSignature:
    """The MLflow signature: :data:`INPUT_COLUMNS` in, :data:`OUTPUT_COLUMNS` out.

    >>> model_signature().inputs.required_input_names()
    ['stage', 'triggered_at']
    """
    return ModelSignature(inputs=Schema([_colspec(c) for c in INPUT_COLUMNS]),
                          outputs=Schema([_colspec(c) for c in OUTPUT_COLUMNS]))


def input_example() -> pd.DataFrame:
    """Synthetic candidates (no customer ids, no real data) showing every input column.

    >>> input_example()["stage"].tolist()
    ['cart_abandon', 'birthday', 'order_status']
    """
    return pd.DataFrame({
        "stage": ["cart_abandon", "birthday", "order_status"],
        "triggered_at": ["2025-03-01T09:30:00Z", "2025-03-02T07:00:00Z", "2025-03-02T12:15:00Z"],
        "timezone": ["Europe/Berlin", "America/New_York", "Asia/Tokyo"],
        "opt_in_email": [True, True, False],
        "opt_in_push": [True, False, False],
        "opt_in_sms": [False, False, True],
        "opt_in_whatsapp": [False, False, False],
        "sends_7d": [1, 0, 2],
        "orders_90d": [0, 2, 1],
        "days_since_order": [None, 12.5, 40.0],
        "products": [None, "P-EXAMPLE-1|P-EXAMPLE-2", None],
    })


# --------------------------------------------------------------------------- #
# Valid actions and exploration
# --------------------------------------------------------------------------- #



def _code_parts() -> tuple[np.ndarray, np.ndarray]:
    """(channel index, incentive index) of every action code (-1 for hold)."""
    channel = np.full(N_ACTIONS, -1, np.int64)
    incentive = np.full(N_ACTIONS, -1, np.int64)
    for code in range(1, N_ACTIONS):
        parts = decode_action(code)
        assert parts is not None
        channel[code], incentive[code] = CHANNELS.index(parts[0]), INCENTIVES.index(parts[2])
    return channel, incentive


_CODE_CHANNEL, _CODE_INCENTIVE = _code_parts()


def valid_actions(stage: np.ndarray, opt_in: np.ndarray) -> np.ndarray:
    """``(n, N_ACTIONS)`` bool: the actions a candidate may receive.

    Hold, or a channel the customer is opted in to × each of the stage's
    delay slots × the incentives its stage allows (none only, outside
    :data:`~cadence.contract.triggers.INCENTIVE_STAGES`).

    >>> v = valid_actions(np.array(["birthday", "cart_abandon"]), np.array([[1, 0, 0, 0], [1, 1, 0, 0]], bool))
    >>> v.sum(axis=1).tolist()  # 1 + 1 channel x 3 delays x 4 incentives; 1 + 2 x 3 x 1
    [13, 7]
    """
    stage = np.asarray(stage).astype(str)
    opt_in = np.asarray(opt_in, bool)
    incentives = np.isin(stage, list(INCENTIVE_STAGES))
    valid = np.zeros((len(stage), N_ACTIONS), bool)
    valid[:, 0] = True
    valid[:, 1:] = opt_in[:, _CODE_CHANNEL[1:]] & ((_CODE_INCENTIVE[1:] == 0)[None, :] | incentives[:, None])
    return valid


def exploration_distribution(greedy: np.ndarray, valid: np.ndarray, epsilon: float,
                             explores: np.ndarray | None = None) -> np.ndarray:
    """``(n, N_ACTIONS)`` action probabilities of the epsilon-greedy policy.

    ``(1 - epsilon)`` on each row's ``greedy`` code plus ``epsilon``
    spread evenly over its ``valid`` actions; rows where ``explores`` is
    False keep all mass on the greedy action.

    >>> d = exploration_distribution(np.array([1]), valid_actions(np.array(["cart_abandon"]),
    ...                              np.array([[1, 0, 0, 0]], bool)), 0.2)
    >>> [round(float(x), 3) for x in d[0, [0, 1, 5, 9]]], round(float(d.sum()), 12)  # hold, email x 3 delays
    ([0.05, 0.85, 0.05, 0.05], 1.0)
    """
    n = len(greedy)
    explores = np.ones(n, bool) if explores is None else np.asarray(explores, bool)
    k = valid.sum(axis=1, keepdims=True)
    eps = np.where(explores, epsilon, 0.0)[:, None]
    dist = eps * valid / np.maximum(k, 1)
    dist[np.arange(n), greedy] += 1.0 - eps[:, 0]
    return dist


def row_uniforms(candidates: pd.DataFrame, triggered_ns: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two independent uniforms per row from a keyed hash of its stable fields.

    The same (customer_id, stage, triggered_at, products, seed) always gives
    the same pair, whatever else is in the batch.

    >>> c = pd.DataFrame({"stage": ["birthday", "birthday"]})
    >>> u, v = row_uniforms(c, np.array([0, 0]), seed=1)
    >>> bool(u[0] == u[1]), bool(0 <= v[0] < 1)
    (True, True)
    """
    n = len(candidates)

    def text(col: str) -> pd.Series:
        if col not in candidates:
            return pd.Series([""] * n, dtype=object)
        return candidates[col].astype(object).where(candidates[col].notna(), "").astype(str).reset_index(drop=True)

    fields = pd.DataFrame({"customer_id": text("customer_id"), "stage": text("stage"),
                           "triggered_at": np.asarray(triggered_ns, np.int64), "products": text("products")})
    out = []
    for salt in ("explore", "pick"):
        key = f"{salt}{seed:016d}"[-16:]
        h = pd.util.hash_pandas_object(fields, index=False, hash_key=key).to_numpy(np.uint64)
        out.append((h >> np.uint64(11)).astype(np.float64) / float(1 << 53))
    return out[0], out[1]


# --------------------------------------------------------------------------- #
# Input checks and fallback reasons
# --------------------------------------------------------------------------- #


def _bad_type(column: str, problem: str) -> MlflowException:
    return MlflowException.invalid_parameter_value(f"{column}: {problem}")


def _timestamps(values: pd.Series) -> pd.Series:
    """UTC timestamps from datetimes or ISO-8601 text; raises naming ``triggered_at`` otherwise."""
    if pd.api.types.is_datetime64_any_dtype(values):
        ts = pd.to_datetime(values)
        return ts.dt.tz_localize("UTC") if ts.dt.tz is None else ts.dt.tz_convert("UTC")
    present = values.notna()
    wrong = present & ~values.map(lambda v: isinstance(v, (str, pd.Timestamp, np.datetime64))
                                  or hasattr(v, "isoformat"))
    if wrong.any():
        raise _bad_type("triggered_at", f"expected a timestamp or ISO-8601 text, got "
                                        f"{type(values[wrong].iloc[0]).__name__} {values[wrong].iloc[0]!r}")
    parsed = pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns, UTC]")
    if present.any():
        text = values[present].map(lambda v: v if isinstance(v, str) else pd.Timestamp(v).isoformat())
        got = pd.to_datetime(text, utc=True, errors="coerce", format="ISO8601")
        if got.isna().any():
            raise _bad_type("triggered_at", f"{text[got.isna()].iloc[0]!r} is not an ISO-8601 timestamp")
        parsed[present] = got.dt.as_unit("ns")
    return parsed


def _first_wrong(values: pd.Series, ok: Any) -> Any:
    """The first non-null value failing ``ok`` (a per-value predicate), or None; vectorised when the dtype says so."""
    present = values.dropna()
    bad = present[~present.map(ok).astype(bool)]
    return None if bad.empty else bad.iloc[0]


def _check_types(frame: pd.DataFrame) -> None:
    """Raise an ``MlflowException`` naming the first column whose values have the wrong type."""
    for col in ("stage", "timezone", "customer_id", "products"):
        if col in frame and pd.api.types.infer_dtype(frame[col], skipna=True) not in ("string", "empty"):
            ok = (lambda x: isinstance(x, (str, int, np.integer))) if col == "customer_id" \
                else (lambda x: isinstance(x, str))  # numeric ids are fine: they are only hashed
            bad = _first_wrong(frame[col], ok)
            if bad is not None:
                raise _bad_type(col, f"expected text, got {type(bad).__name__} {bad!r}")
    for col in frame.columns:
        if str(col).startswith("opt_in_") and not pd.api.types.is_bool_dtype(frame[col]):
            bad = _first_wrong(frame[col], lambda x: isinstance(x, (bool, np.bool_)))
            if bad is not None:
                raise _bad_type(str(col), f"expected true, false or null, got {bad!r}")
    for col in WHOLE_COLUMNS + NUMBER_COLUMNS:
        if col not in frame:
            continue
        raw = frame[col]
        what = "a whole number" if col in WHOLE_COLUMNS else "a number"
        if not (pd.api.types.is_numeric_dtype(raw) and not pd.api.types.is_bool_dtype(raw)):
            bad = _first_wrong(raw, lambda x: isinstance(x, (int, float, np.integer, np.floating))
                               and not isinstance(x, (bool, np.bool_)))
            if bad is not None:
                raise _bad_type(col, f"expected {what} or null, got {bad!r}")
        v = pd.to_numeric(raw).astype(float)
        wrong = v.notna() & (~np.isfinite(v.fillna(0)) | ((v != v.round()) if col in WHOLE_COLUMNS else False))
        if wrong.any():
            raise _bad_type(col, f"expected {what} or null, got {raw[wrong].iloc[0]!r}")


_ZONES: dict[str, bool] = {}


def _known_zone(name: str) -> bool:
    if name not in _ZONES:
        try:
            zoneinfo.ZoneInfo(name)
            _ZONES[name] = True
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError):
            _ZONES[name] = False
    return _ZONES[name]


def needed_columns(policy: Policy) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(columns the policy reads, those of them that have no default for a null value)``.

    The rules read the opt-ins only; any other policy reads every context
    feature (:func:`~cadence.features.context.context_features`).

    >>> needed_columns(RulesPolicy())[1]
    ()
    """
    if isinstance(policy, RulesPolicy):
        return OPT_IN_COLUMNS, ()
    return CONTEXT_COLUMNS, ("timezone", "sends_7d", "orders_90d")


def fallback_reasons(frame: pd.DataFrame, triggered: pd.Series, policy: Policy) -> np.ndarray:
    """Per row, why it falls back to the rules ('' when it does not).

    >>> c = pd.DataFrame({"stage": ["birthday", "nope"], "opt_in_email": [True, True]})
    >>> t = pd.Series(pd.to_datetime(["2025-01-01", None], utc=True))
    >>> fallback_reasons(c, t, RulesPolicy()).tolist()
    ['missing column(s) opt_in_push, opt_in_sms, opt_in_whatsapp', "unknown stage 'nope'; missing triggered_at; missing column(s) opt_in_push, opt_in_sms, opt_in_whatsapp"]
    """
    n = len(frame)
    parts: list[list[str]] = [[] for _ in range(n)]

    def add(mask: np.ndarray, why: Any) -> None:
        """Append ``why`` (text, or a function of the row number) to the reasons of the rows in ``mask``."""
        for i in np.flatnonzero(mask):
            parts[i].append(why(i) if callable(why) else why)

    stage = frame["stage"] if "stage" in frame else pd.Series([None] * n, dtype=object)
    known = stage.isin(STAGES).to_numpy()
    add(stage.isna().to_numpy(), "missing stage")
    add(~known & stage.notna().to_numpy(), lambda i: f"unknown stage {stage.iloc[i]!r}")
    add(triggered.isna().to_numpy(), "missing triggered_at")
    reads, no_default = needed_columns(policy)
    if "timezone" in frame:
        tz = frame["timezone"]
        zones = tz.dropna().astype(str)
        unknown = {z for z in zones.unique() if not _known_zone(z)}
        if unknown:
            add(tz.isin(unknown).to_numpy(), lambda i: f"unknown timezone {tz.iloc[i]!r}")
    for col in no_default:
        if col in frame:
            add(frame[col].isna().to_numpy(), f"missing {col}")
    for col in frame.columns:
        name = str(col)
        if name.startswith("opt_in_") and name not in OPT_IN_COLUMNS:
            add(frame[col].eq(True).to_numpy(bool), f"unknown channel {name.removeprefix('opt_in_')!r}")
    absent = [c for c in reads if c not in frame]
    if absent:
        add(np.ones(n, bool), f"missing column(s) {', '.join(absent)}")
    return np.array(["; ".join(p) for p in parts], dtype=object)


def stage_priority(stage: np.ndarray) -> np.ndarray:
    """Priority of each stage's sends: the orchestrator's stage order, higher first (0 when unknown).

    >>> (stage_priority(np.array(["order_status"])) > stage_priority(np.array(["new_arrivals"]))).tolist()
    [True]
    """
    try:
        from cadence.policies.orchestrator import STAGE_PRIORITY as order
    except ImportError:  # the orchestrator is optional: fall back to the contract's stage order
        order = STAGES
    rank = {s: float(len(order) - i) for i, s in enumerate(order)}
    return np.array([rank.get(str(s), 0.0) for s in stage], float)


# --------------------------------------------------------------------------- #
# The pyfunc model
# --------------------------------------------------------------------------- #


@dataclass
class _Greedy:
    frame: pd.DataFrame  # the input, index 0..n-1
    triggered: pd.Series  # UTC timestamps (NaT where missing)
    decisions: pd.DataFrame  # the greedy (or rules fallback) decision per row, index 0..n-1
    codes: np.ndarray  # their action codes
    reason: np.ndarray  # fallback reason per row ('' when the policy decided)
    explores: np.ndarray  # rows that may explore
    valid: np.ndarray  # (n, N_ACTIONS)


class PolicyModel(PythonModel):
    """An epsilon-greedy serving wrapper around a deterministic policy; see the module docstring.

    Parameters
    ----------
    policy
        A fitted :class:`~cadence.contract.actions.Policy` whose decisions have
        propensity 1.
    epsilon
        Exploration probability, in ``[0, 1)``.
    seed
        Key of the per-row hash that drives exploration.
    """

    def __init__(self, policy: Policy, epsilon: float = 0.05, seed: int = 0) -> None:
        self.policy = policy
        self.epsilon = epsilon
        self.seed = seed

    def _fallback(self) -> Policy:
        return self.policy if isinstance(self.policy, RulesPolicy) else RulesPolicy()

    def _greedy(self, model_input: Any) -> _Greedy:
        if not 0.0 <= self.epsilon < 1.0:
            raise ValueError(f"epsilon: expected a probability in [0, 1), got {self.epsilon}")
        frame = (model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input))
        frame = frame.reset_index(drop=True)
        n = len(frame)
        _check_types(frame)
        triggered = (_timestamps(frame["triggered_at"]) if "triggered_at" in frame
                     else pd.Series(pd.NaT, index=frame.index, dtype="datetime64[ns, UTC]"))
        reason = fallback_reasons(frame, triggered, self.policy)
        ok = reason == ""
        work = frame.assign(triggered_at=triggered)
        if "stage" not in work:
            work["stage"] = None
        for col in WHOLE_COLUMNS + NUMBER_COLUMNS:
            if col in work:
                values = pd.to_numeric(work[col]).astype(float)
                work[col] = values.fillna(0).astype(np.int64) if col in WHOLE_COLUMNS else values
        decisions = pd.DataFrame({"action": ["hold"] * n, "channel": [None] * n, "delay_minutes": [0] * n,
                                  "incentive": [None] * n, "propensity": [1.0] * n}, dtype=object)
        rng = np.random.default_rng(self.seed)
        for rows, policy in ((ok, self.policy), (~ok, self._fallback())):
            if rows.any():
                part = work[rows].reset_index(drop=True)
                d = policy.decide(part, rng).reset_index(drop=True)
                check_decisions(d, len(part), policy.policy_id)
                if (d["propensity"].to_numpy(float) < 1).any():
                    raise ValueError(f"policy {policy.policy_id!r} is stochastic; PolicyModel explores itself "
                                     "and needs a deterministic policy")
                idx = np.flatnonzero(rows)
                for col in decisions.columns:
                    decisions.loc[idx, col] = d[col].to_numpy(object)
                if "priority" in d:
                    decisions.loc[idx, "priority"] = d["priority"].to_numpy(float)
        decisions["delay_minutes"] = decisions["delay_minutes"].astype(np.int64)
        stage = work["stage"].astype(object).where(work["stage"].notna(), "").astype(str)
        codes = encode_actions(stage, decisions)
        opt = opt_in_matrix(work)
        explores = ok & ~np.isin(stage.to_numpy(), list(TRANSACTIONAL_STAGES))
        return _Greedy(work, triggered, decisions, codes, reason, explores, valid_actions(stage.to_numpy(), opt))

    def action_distribution(self, candidates: pd.DataFrame) -> np.ndarray:
        """``(n, N_ACTIONS)`` probability of each action of :data:`~cadence.features.logged.ACTION_NAMES` per row.

        What the served model draws from: ready for
        :func:`cadence.evaluation.compare.compare`.
        """
        g = self._greedy(candidates)
        return exploration_distribution(g.codes, g.valid, self.epsilon, g.explores)

    def predict(self, context: Any, model_input: pd.DataFrame,
                params: dict[str, Any] | None = None) -> pd.DataFrame:
        """One decision per input row (:data:`OUTPUT_COLUMNS`), in input order.

        ``context`` and ``params`` are unused (MLflow's calling convention).
        """
        index = model_input.index if isinstance(model_input, pd.DataFrame) else None
        g = self._greedy(model_input)
        n = len(g.frame)
        code = g.codes.copy()
        propensity = np.ones(n)
        reason = np.array([f"rules fallback: {r}" if r else "" for r in g.reason], dtype=object)
        if self.epsilon > 0 and n:
            dist = exploration_distribution(g.codes, g.valid, self.epsilon, g.explores)
            u_explore, u_pick = row_uniforms(g.frame, g.triggered.astype("int64").to_numpy(), self.seed)
            explored = g.explores & (u_explore < self.epsilon)
            rows = np.flatnonzero(explored)
            valid = g.valid[rows]
            k = valid.sum(axis=1)
            nth = np.minimum((u_pick[rows] * k).astype(np.int64), k - 1)
            code[rows] = np.argmax(valid & (np.cumsum(valid, axis=1) == (nth + 1)[:, None]), axis=1)
            propensity = dist[np.arange(n), code]
            reason = np.where(explored & (code != g.codes), f"exploration (epsilon={self.epsilon:g})", reason)
        out = self._frame(g, code, propensity, reason)
        if index is not None:
            out.index = index
        return out

    def _frame(self, g: _Greedy, code: np.ndarray, propensity: np.ndarray, reason: np.ndarray) -> pd.DataFrame:
        n = len(code)
        stage = g.frame["stage"].astype(object).to_numpy()
        changed = code != g.codes
        action = np.where(code > 0, "send", "hold").astype(object)
        channel = g.decisions["channel"].to_numpy(object).copy()
        delay = g.decisions["delay_minutes"].to_numpy(np.int64).copy()
        incentive = g.decisions["incentive"].to_numpy(object).copy()
        for i in np.flatnonzero(changed):
            picked = decode_action(int(code[i]))
            if picked is None:
                channel[i], delay[i], incentive[i] = None, 0, None
            else:
                channel[i], incentive[i] = picked[0], picked[2]
                delay[i] = delay_choices(str(stage[i]))[picked[1]]
        send = code > 0
        channel[~send], incentive[~send], delay[~send] = None, None, 0
        if "priority" in g.decisions and g.decisions["priority"].notna().all():
            priority = g.decisions["priority"].to_numpy(float)
        else:
            priority = stage_priority(stage)
        items = (g.frame["products"].astype(object).to_numpy().copy() if "products" in g.frame
                 else np.full(n, None, dtype=object))
        items[~send] = None
        # Timestamps or None (not NaT, which MLflow's JSON writer would print as the text "NaT").
        send_at = np.full(n, None, dtype=object)
        timed = send & g.triggered.notna().to_numpy()
        send_at[timed] = (g.triggered + pd.to_timedelta(delay, unit="min"))[timed].astype(object).to_numpy()
        return pd.DataFrame({
            "action": action,
            "channel": channel,
            "send_at": send_at,
            "delay_minutes": delay,
            "incentive": incentive,
            "items": items,
            "priority": np.where(send, priority, 0.0),
            "propensity": propensity.astype(float),
            "reason": reason.astype(str),
        })
