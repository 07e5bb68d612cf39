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
* **fails closed**: a row with a value that cannot be true is answered
  ``hold`` with propensity 1 and a ``reason`` starting ``hold (invalid
  input):`` that names each column and problem, never the value (a caller
  may put a customer id in any column): ``stage`` missing, not text or not
  a contract stage (misspellings included); ``triggered_at`` missing, not
  an ISO-8601 timestamp, without a time zone, before 1970-01-02 or more than
  7 days after the server's clock; ``sends_7d`` / ``orders_90d`` not whole
  numbers, negative or above :data:`MAX_COUNTS`; ``days_since_order`` not a
  number, negative or reaching back before 1970-01-02; an opt-in that is not
  true, false or null (the text ``"false"`` is not consent, nor a refusal);
  an unknown IANA ``timezone``; text longer than :data:`MAX_TEXT_CHARS`
  (:func:`check_rows`). Such a row never explores and never sends;
* **rules fallback where information is absent**: a column the policy
  reads missing from the request, a null where the policy has no default,
  or an opt-in to a channel the model does not know gets
  :class:`~cadence.policies.rules.RulesPolicy`'s decision for that row, no
  exploration, and a ``reason`` starting ``rules fallback:``;
* **bounded requests**: more than :data:`MAX_ROWS` rows or
  :data:`MAX_COLUMNS` columns, or an input that is not a table, raise
  :class:`ServingInputError`: HTTP 400 from the scoring server, with the
  limit (never a value) in the response's ``stack_trace``. It is not an
  ``MlflowException`` on purpose: the scoring server prefixes those
  messages with the whole request.

The signature lists every input column but types them ``Any`` and marks
none required, so MLflow's own schema enforcement never fails a request:
its errors are ``MlflowException`` messages the scoring server prefixes with
the whole request (customer ids included). The model checks every column
itself, as above; MLflow's casts would also turn the JSON text ``"false"``
into an opt-in (``bool("false")``).

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
>>> model.predict(None, input_example().assign(stage="unknown"))[["action", "reason"]].iloc[0].tolist()
['hold', 'hold (invalid input): stage: unknown value']
"""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.pyfunc import PythonModel
from mlflow.types.schema import AnyType, ColSpec, DataType, Schema

from cadence.contract.actions import (
    Policy,
    allowed_actions,
    check_decisions,
    decode_action,
    delay_choices,
    encode_actions,
)
from cadence.contract.tables import CHANNELS, INCENTIVES, STAGES
from cadence.contract.triggers import TRANSACTIONAL_STAGES
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
    Column("customer_id", "any", False, "the customer's id (text or a whole number); only hashed for "
                                        "reproducible exploration"),
    Column("stage", "any", True, f"one of {', '.join(STAGES)}"),
    Column("triggered_at", "any", True,
           "when the trigger fired: an ISO-8601 timestamp with its zone (e.g. 2025-03-01T09:30:00Z); "
           "from 1970-01-02 to 7 days after the server's clock"),
    Column("timezone", "any", False, "the customer's IANA time zone, e.g. Europe/Berlin"),
    *(Column(c, "any", False, f"true/false: the customer takes {c.removeprefix('opt_in_')} now (null = no)")
      for c in OPT_IN_COLUMNS),
    Column("sends_7d", "any", False, "a whole number, 0 to 1,000: messages sent to the customer in the "
                                     "7 days before the trigger"),
    Column("orders_90d", "any", False, "a whole number, 0 to 10,000: the customer's orders in the 90 days "
                                       "before the trigger"),
    Column("days_since_order", "any", False, "a number >= 0: days since the customer's last order before the "
                                             "trigger, not before 1970-01-02 (null = never ordered)"),
    Column("products", "any", False, "the trigger's product ids, '|'-separated (null = none)"),
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
    Column("reason", "string", True, "why the decision is not the policy's ('' when it is): 'hold (invalid "
                                     "input): COLUMN: PROBLEM', 'rules fallback: ...' or 'exploration ...'"),
)


def _colspec(c: Column, *, enforce: bool = True) -> ColSpec:
    kind: Any = AnyType() if c.type == "any" else DataType[c.type]
    return ColSpec(kind, c.name, required=c.required and enforce)


def model_signature() -> ModelSignature:
    """The MLflow signature: :data:`INPUT_COLUMNS` in (all ``Any``, none required), :data:`OUTPUT_COLUMNS` out.

    The inputs are checked by the model (rows with invalid values are held),
    not by MLflow, whose errors would echo the request; ``required`` in
    :data:`INPUT_COLUMNS` documents what a row needs to be decided.

    >>> sig = model_signature()
    >>> sig.inputs.required_input_names(), sig.inputs.input_names()[:3]
    ([], ['customer_id', 'stage', 'triggered_at'])
    """
    return ModelSignature(inputs=Schema([_colspec(c, enforce=False) for c in INPUT_COLUMNS]),
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



def exploration_distribution(greedy: np.ndarray, valid: np.ndarray, epsilon: float,
                             explores: np.ndarray | None = None) -> np.ndarray:
    """``(n, N_ACTIONS)`` action probabilities of the epsilon-greedy policy.

    ``(1 - epsilon)`` on each row's ``greedy`` code plus ``epsilon``
    spread evenly over its ``valid`` actions; rows where ``explores`` is
    False keep all mass on the greedy action.

    >>> d = exploration_distribution(np.array([1]), allowed_actions(np.array(["cart_abandon"]),
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
# Input checks: holds, fallbacks and request bounds
# --------------------------------------------------------------------------- #

#: Most rows one request may carry: a bigger request is refused (HTTP 400) before any work, so a
#: request cannot hold a worker past the scoring server's timeout (60 s by default).
MAX_ROWS = 10_000
#: Most columns one request may carry (the model reads 11).
MAX_COLUMNS = 100
#: Longest text value of any input column; a longer one holds its row.
MAX_TEXT_CHARS = 4_096
#: Plausible counts; a larger value holds its row (the data gate's idea of plausible, for one customer).
#: 1,000 messages in 7 days is one every 10 minutes; 10,000 orders in 90 days over 100 a day.
MAX_COUNTS: dict[str, int] = {"sends_7d": 1_000, "orders_90d": 10_000}
#: Earliest plausible trigger (and last order): 1970-01-01 is what a zero epoch becomes.
EARLIEST = pd.Timestamp("1970-01-02", tz="UTC")
#: A trigger later than the server's clock by more than this is in the future (scheduled triggers and
#: clock skew allowed).
FUTURE_SLACK = pd.Timedelta(days=7)
#: A zone designator after a time of day: ``Z``, ``+01``, ``+0100`` or ``+01:00`` (a date alone has none).
_OFFSET = r"[T ]\d{2}(?::?\d{2}(?::?\d{2}(?:[.,]\d+)?)?)?\s*(?:[Zz]|[+-]\d{2}(?::?\d{2})?)$"


class ServingInputError(ValueError):
    """A request the model refuses as a whole (too many rows or columns, not a table).

    Deliberately not an ``MlflowException``: the scoring server answers HTTP
    400 either way, but it prefixes an ``MlflowException``'s message with the
    whole request (``Failed to predict data '...'``), customer ids included.
    The message names the limit, never a value.
    """


def _frame_of(model_input: Any) -> pd.DataFrame:
    """The request as a frame, within :data:`MAX_COLUMNS`; raises :class:`ServingInputError` otherwise."""
    if isinstance(model_input, pd.DataFrame):
        frame = model_input
    else:
        try:
            frame = pd.DataFrame(model_input)
        except (ValueError, TypeError):
            raise ServingInputError("input: expected a table of trigger candidates (one row each)") from None
    if frame.shape[1] > MAX_COLUMNS:
        raise ServingInputError(f"input: {frame.shape[1]} columns, at most {MAX_COLUMNS}")
    if not frame.columns.is_unique:
        raise ServingInputError("input: duplicate column names")
    return frame.reset_index(drop=True)


class _Problems:
    """Per-row problems, in the order found: ``column: problem``, never a value."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.parts: dict[int, list[str]] = {}  # only the rows with problems: most have none

    def add(self, mask: Any, column: str, problem: str) -> None:
        self.add_text(mask, f"{column}: {problem}")

    def add_text(self, mask: Any, text: str) -> None:
        for i in np.flatnonzero(np.asarray(mask, bool)):
            self.parts.setdefault(int(i), []).append(text)

    def reasons(self) -> np.ndarray:
        out = np.full(self.n, "", dtype=object)
        for i, p in self.parts.items():
            out[i] = "; ".join(p)
        return out


def _is(values: pd.Series, kinds: tuple[type, ...]) -> np.ndarray:
    """Per value: an instance of ``kinds`` (nulls count as True: they are checked separately)."""
    return values.map(lambda v: v is None or v is pd.NaT or isinstance(v, kinds)
                      or (isinstance(v, float) and np.isnan(v))).to_numpy(bool)


def _text(frame: pd.DataFrame, col: str, found: _Problems, *, ids: bool = False) -> pd.Series | None:
    """Column ``col`` as text or None per row; wrong types and over-long values are problems."""
    if col not in frame:
        return None
    s = frame[col]
    if pd.api.types.infer_dtype(s, skipna=True) in ("string", "empty"):  # the usual case: no per-value work
        text = s.astype(object).where(s.notna(), None)
    else:  # numeric ids are fine: they are only hashed
        ok = _is(s, (str, int, np.integer) if ids else (str,)) & ~_is(s, (bool, np.bool_)) | s.isna().to_numpy()
        found.add(~ok, col, "not text")
        text = s.where(ok & s.notna().to_numpy(), None).astype(object).map(lambda v: v if v is None else str(v))
    long = (text.str.len() > MAX_TEXT_CHARS).to_numpy(bool)
    found.add(long, col, f"longer than {MAX_TEXT_CHARS:,} characters")
    return text.where(~long, None)


def _stamp(v: Any) -> pd.Timestamp | None:
    """A timestamp-like object as a Timestamp, or None when pandas cannot hold it (e.g. the year 3000)."""
    try:
        return pd.Timestamp(v)
    except (ValueError, TypeError, OverflowError):
        return None


def _timestamps(values: pd.Series, found: _Problems, now: pd.Timestamp) -> pd.Series:
    """UTC timestamps of ``triggered_at`` (NaT where missing or wrong); problems for the impossible ones."""
    col = "triggered_at"
    n = len(values)
    out = pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns, UTC]")
    if pd.api.types.is_datetime64_any_dtype(values):
        ts = pd.to_datetime(values)
        if ts.dt.tz is None:
            found.add(ts.notna().to_numpy(), col, "no time zone")
            return out
        out = ts.dt.tz_convert("UTC").dt.as_unit("ns")
    else:
        present = values.notna().to_numpy()
        is_text = _is(values, (str,)) & present
        is_time = present & ~is_text & values.map(
            lambda v: isinstance(v, np.datetime64) or (hasattr(v, "isoformat") and hasattr(v, "tzinfo"))
        ).to_numpy(bool)
        found.add(present & ~is_text & ~is_time, col, "not a timestamp")
        naive = np.zeros(n, bool)
        if is_text.any():
            text = values[is_text].astype(str).str.strip()
            # Parsed to UTC in one pass; whether a zone was given is read from the text.
            got = pd.to_datetime(text.where(text.str.len() <= 64), utc=True, errors="coerce", format="ISO8601")
            bad = got.isna().to_numpy()
            # pandas holds the years 1678-2261 only: say why a well-formed year outside them is wrong.
            year = pd.to_numeric(text.str.extract(r"^(\d{4})-\d{2}", expand=False), errors="coerce").to_numpy()
            found.add(_at(is_text, bad & (year < EARLIEST.year)), col, f"before {EARLIEST:%Y-%m-%d}")
            found.add(_at(is_text, bad & (year > now.year)), col, f"more than {FUTURE_SLACK.days} days in the future")
            found.add(_at(is_text, bad & ~(year < EARLIEST.year) & ~(year > now.year)), col,
                      "not an ISO-8601 timestamp")
            naive[is_text] = ~bad & ~text.str.contains(_OFFSET, regex=True).to_numpy(bool)
            out[is_text] = got.dt.as_unit("ns")
        if is_time.any():
            stamps = values[is_time].map(_stamp)
            bad = stamps.isna().to_numpy()
            found.add(_at(is_time, bad), col, "not a timestamp pandas can hold")
            naive[is_time] = ~bad & stamps.map(lambda t: t is not None and t.tzinfo is None).to_numpy(bool)
            aware = stamps.map(lambda t: pd.NaT if t is None or t.tzinfo is None else t.tz_convert("UTC"))
            out[is_time] = pd.to_datetime(aware.astype(object), utc=True).dt.as_unit("ns")
        found.add(naive, col, "no time zone")
        out[naive] = pd.NaT
    found.add((out < EARLIEST).to_numpy(bool), col, f"before {EARLIEST:%Y-%m-%d}")
    found.add((out > now + FUTURE_SLACK).to_numpy(bool), col, f"more than {FUTURE_SLACK.days} days in the future")
    return out.where((out >= EARLIEST) & (out <= now + FUTURE_SLACK))


def _at(mask: np.ndarray, sub: np.ndarray) -> np.ndarray:
    """``sub`` (one value per True of ``mask``) spread back to the length of ``mask``."""
    full = np.zeros(len(mask), bool)
    full[np.flatnonzero(mask)] = sub
    return full


def _number(frame: pd.DataFrame, col: str, found: _Problems, *, whole: bool, upper: float | None) -> pd.Series | None:
    """Column ``col`` as floats (NaN where missing or wrong); problems for wrong types and implausible values."""
    if col not in frame:
        return None
    s = frame[col]
    if pd.api.types.is_bool_dtype(s):
        ok = s.isna().to_numpy()
    elif pd.api.types.is_numeric_dtype(s):
        ok = np.ones(len(s), bool)
    else:
        ok = _is(s, (int, float, np.integer, np.floating)) & ~_is(s, (bool, np.bool_)) | s.isna().to_numpy()
    found.add(~ok, col, "not a number")
    v = pd.to_numeric(s.where(ok, None).astype(object), errors="coerce").astype(float).to_numpy()
    present = ~np.isnan(v)
    finite = np.isfinite(np.where(present, v, 0.0))
    found.add(present & ~finite, col, "not finite")
    v = np.where(finite, v, np.nan)
    if whole:
        found.add(np.isfinite(v) & (v != np.round(np.where(np.isfinite(v), v, 0))), col, "not a whole number")
    found.add(v < 0, col, "negative")
    if upper is not None:
        found.add(v > upper, col, f"above {upper:,g}, implausible")
    return pd.Series(v, index=frame.index)


def check_rows(frame: pd.DataFrame, now: pd.Timestamp | None = None) -> tuple[np.ndarray, pd.Series, pd.DataFrame]:
    """Per row, why it must be held ('' when it need not), its UTC trigger time, and the cleaned input.

    A row is held when a value cannot be true: ``stage`` missing, not text
    or not one of the contract's stages (a misspelling included);
    ``triggered_at`` missing, not a timestamp, without a time zone, before
    :data:`EARLIEST` or more than :data:`FUTURE_SLACK` after ``now``;
    ``sends_7d``/``orders_90d`` not whole numbers, negative or above
    :data:`MAX_COUNTS`; ``days_since_order`` not a number, negative or
    reaching back before :data:`EARLIEST`; an opt-in not true, false or null;
    a ``timezone`` that is not a known IANA zone; any text longer than
    :data:`MAX_TEXT_CHARS`. Reasons name the column and the problem, never
    the value (a caller may put a customer id anywhere). The cleaned frame
    has every wrong value replaced by null and the counts as floats.

    >>> c = pd.DataFrame({"stage": ["birthday", "birthdya", None], "sends_7d": [1, -2, 10**9],
    ...                   "triggered_at": ["2025-01-01T00:00:00Z", "2025-01-01", "1900-01-01T00:00:00Z"]})
    >>> check_rows(c)[0].tolist()
    ['', 'stage: unknown value; triggered_at: no time zone; sends_7d: negative', 'stage: missing; triggered_at: before 1970-01-02; sends_7d: above 1,000, implausible']
    """
    now = pd.Timestamp.now(tz="UTC") if now is None else now
    n = len(frame)
    found = _Problems(n)
    clean = pd.DataFrame(index=frame.index)
    stage = _text(frame, "stage", found)
    if stage is None:
        stage = pd.Series([None] * n, index=frame.index, dtype=object)
    found.add(stage.isna().to_numpy() & (frame["stage"].isna().to_numpy() if "stage" in frame else True),
              "stage", "missing")
    found.add(stage.notna().to_numpy() & ~stage.isin(STAGES).to_numpy(), "stage", "unknown value")
    clean["stage"] = stage.where(stage.isin(STAGES), None)
    if "triggered_at" in frame:
        triggered = _timestamps(frame["triggered_at"], found, now)
        found.add(frame["triggered_at"].isna().to_numpy(), "triggered_at", "missing")
    else:
        triggered = pd.Series(pd.NaT, index=frame.index, dtype="datetime64[ns, UTC]")
        found.add(np.ones(n, bool), "triggered_at", "missing")
    clean["triggered_at"] = triggered
    for col in ("customer_id", "timezone", "products"):
        text = _text(frame, col, found, ids=col == "customer_id")
        if text is not None:
            clean[col] = text
    if "timezone" in clean:
        zones = clean["timezone"]
        unknown = {z for z in zones.dropna().unique() if not _known_zone(z)}
        found.add(zones.isin(unknown).to_numpy(), "timezone", "unknown IANA time zone")
        clean["timezone"] = zones.where(~zones.isin(unknown), None)
    for col in frame.columns:
        name = str(col)
        if not name.startswith("opt_in_"):
            continue
        s = frame[col]
        ok = (np.ones(len(s), bool) if pd.api.types.is_bool_dtype(s)
              else _is(s, (bool, np.bool_)) | s.isna().to_numpy())
        if name in OPT_IN_COLUMNS:
            found.add(~ok, name, "not true, false or null")
        clean[name] = s if pd.api.types.is_bool_dtype(s) else pd.array(
            s.where(ok & s.notna().to_numpy(), None).astype(object), dtype="boolean")
    for col in WHOLE_COLUMNS:
        v = _number(frame, col, found, whole=True, upper=MAX_COUNTS[col])
        if v is not None:
            clean[col] = v
    v = _number(frame, "days_since_order", found, whole=False, upper=None)
    if v is not None:
        # The last order cannot predate the earliest plausible timestamp.
        span = (triggered - EARLIEST).dt.total_seconds().to_numpy(float) / 86_400.0
        found.add(v > np.where(np.isnan(span), np.inf, span), "days_since_order", f"before {EARLIEST:%Y-%m-%d}")
        clean["days_since_order"] = v
    for col in frame.columns:  # columns the model does not read pass through unchecked
        if col not in clean:
            clean[col] = frame[col]
    reasons = found.reasons()
    return reasons, triggered, clean


_ZONES: dict[str, bool] = {}


def _known_zone(name: str) -> bool:
    if name not in _ZONES:
        try:
            zoneinfo.ZoneInfo(name)
            _ZONES[name] = True
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError, OSError):
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


def fallback_reasons(frame: pd.DataFrame, policy: Policy) -> np.ndarray:
    """Per row of a checked frame (:func:`check_rows`), why it falls back to the rules ('' when it does not).

    Information the policy reads is absent (a column, or a null where the
    policy has no default), or a channel the model does not know is opted
    in: the rules decide such a row from what there is.

    >>> c = pd.DataFrame({"stage": ["birthday", "birthday"], "opt_in_email": [True, True], "opt_in_fax": [False, True]})
    >>> fallback_reasons(c, RulesPolicy()).tolist()
    ['missing column(s) opt_in_push, opt_in_sms, opt_in_whatsapp', "unknown channel 'fax'; missing column(s) opt_in_push, opt_in_sms, opt_in_whatsapp"]
    """
    n = len(frame)
    found = _Problems(n)
    add = found.add_text
    reads, no_default = needed_columns(policy)
    for col in no_default:
        if col in frame:
            add(frame[col].isna().to_numpy(), f"missing {col}")
    for col in frame.columns:
        name = str(col)
        if name.startswith("opt_in_") and name not in OPT_IN_COLUMNS:
            # The column's name is the caller's schema, not a row's value.
            add(frame[col].eq(True).to_numpy(bool), f"unknown channel {name.removeprefix('opt_in_')[:40]!r}")
    absent = [c for c in reads if c not in frame]
    if absent:
        add(np.ones(n, bool), f"missing column(s) {', '.join(absent)}")
    return found.reasons()


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

#: How the ``reason`` of a row held for an invalid value starts.
HOLD_REASON = "hold (invalid input): "


@dataclass
class _Greedy:
    frame: pd.DataFrame  # the checked input (wrong values nulled), index 0..n-1
    triggered: pd.Series  # UTC timestamps (NaT where missing or invalid)
    decisions: pd.DataFrame  # the greedy (or rules fallback, or hold) decision per row, index 0..n-1
    codes: np.ndarray  # their action codes
    held: np.ndarray  # why a row is held for an invalid value ('' when it is not)
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

    def _greedy(self, frame: pd.DataFrame) -> _Greedy:
        if not 0.0 <= self.epsilon < 1.0:
            raise ValueError(f"epsilon: expected a probability in [0, 1), got {self.epsilon}")
        n = len(frame)
        held, triggered, work = check_rows(frame)
        hold = held != ""
        reason = np.where(hold, "", fallback_reasons(work, self.policy)).astype(object)
        ok = ~hold & (reason == "")
        for col in WHOLE_COLUMNS:
            if col in work:
                work[col] = work[col].fillna(0).astype(np.int64)
        decisions = pd.DataFrame({"action": ["hold"] * n, "channel": [None] * n, "delay_minutes": [0] * n,
                                  "incentive": [None] * n, "propensity": [1.0] * n,
                                  "priority": [np.nan] * n}, dtype=object)
        rng = np.random.default_rng(self.seed)
        for rows, policy in ((ok, self.policy), (~hold & ~ok, self._fallback())):
            if rows.any():
                part = work[rows].reset_index(drop=True)
                d = policy.decide(part, rng).reset_index(drop=True)
                check_decisions(d, len(part), policy.policy_id)
                if (d["propensity"].to_numpy(float) < 1).any():
                    raise ValueError(f"policy {policy.policy_id!r} is stochastic; PolicyModel explores itself "
                                     "and needs a deterministic policy")
                idx = np.flatnonzero(rows)
                for col in ("action", "channel", "delay_minutes", "incentive", "propensity"):
                    decisions.loc[idx, col] = d[col].to_numpy(object)
                if "priority" in d:
                    decisions.loc[idx, "priority"] = d["priority"].to_numpy(float)
        decisions["delay_minutes"] = decisions["delay_minutes"].astype(np.int64)
        decisions["priority"] = decisions["priority"].astype(float)
        stage = work["stage"].astype(object).where(work["stage"].notna(), "").astype(str)
        codes = encode_actions(stage, decisions)
        opt = opt_in_matrix(work)
        explores = ok & ~np.isin(stage.to_numpy(), list(TRANSACTIONAL_STAGES))
        return _Greedy(work, triggered, decisions, codes, held, reason, explores,
                       allowed_actions(stage.to_numpy(), opt))

    def action_distribution(self, candidates: pd.DataFrame) -> np.ndarray:
        """``(n, N_ACTIONS)`` probability of each action of :data:`~cadence.features.logged.ACTION_NAMES` per row.

        What the served model draws from (a held row: all mass on hold):
        ready for :func:`cadence.evaluation.compare.compare`. No row limit.
        """
        g = self._greedy(_frame_of(candidates))
        return exploration_distribution(g.codes, g.valid, self.epsilon, g.explores)

    def predict(self, context: Any, model_input: pd.DataFrame,
                params: dict[str, Any] | None = None) -> pd.DataFrame:
        """One decision per input row (:data:`OUTPUT_COLUMNS`), in input order.

        ``context`` and ``params`` are unused (MLflow's calling convention).
        More than :data:`MAX_ROWS` rows, more than :data:`MAX_COLUMNS`
        columns or an input that is not a table raise
        :class:`ServingInputError` (HTTP 400 from the scoring server).
        """
        index = model_input.index if isinstance(model_input, pd.DataFrame) else None
        frame = _frame_of(model_input)
        if len(frame) > MAX_ROWS:
            raise ServingInputError(f"input: {len(frame):,} rows, at most {MAX_ROWS:,} per request")
        g = self._greedy(frame)
        n = len(g.frame)
        code = g.codes.copy()
        propensity = np.ones(n)
        reason = np.array([HOLD_REASON + h if h else (f"rules fallback: {r}" if r else "")
                           for h, r in zip(g.held, g.reason, strict=True)], dtype=object)
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
        # The policy's own priority where it gives one, else the stage's: per row, so a row's
        # priority does not depend on the rest of the batch.
        own = g.decisions["priority"].to_numpy(float)
        priority = np.where(np.isnan(own), stage_priority(stage), own)
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
            "send_at": pd.Series(send_at, dtype=object),  # object: the constructor would infer NaT for None
            "delay_minutes": delay,
            "incentive": incentive,
            "items": items,
            "priority": np.where(send, priority, 0.0),
            "propensity": propensity.astype(float),
            "reason": reason.astype(str),
        })
