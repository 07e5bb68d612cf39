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

The input is a *decision row*: a trigger candidate, optionally joined with
its customer's features and model scores
(:func:`cadence.features.decision_rows.decision_rows`); ``eligible_at``, the
candidates' name for the trigger time, is read when ``triggered_at`` is
absent. A policy that decides with the customer features or the scores (its
``context`` names ``customer`` or ``scores``) routes a row lacking that
family (every column of it null or absent: a customer the join found no
row for) as the policy itself does (:func:`policy_routes`, asking the
policy's ``family_routes``): the built-in learned policy (the linear
design) decides it with the family's columns at the fit's medians,
``reason`` ``fallback: learned policy with median customer features
(missing customer features)``; the policy learner (``learner="dr"``) with
a model fitted on the families the row has, ``fallback: trigger-only
learned policy (missing customer features)``. Either may explore like any
row the policy decides; without such a model (another policy, or none
fitted) the rules decide it, ``rules fallback: missing customer features``
(or ``missing scores``).

The MLflow signature has outputs only (:func:`model_signature`): MLflow's
enforcement of an input schema fails requests with ``MlflowException``
messages the scoring server prefixes with the whole request (customer ids
included), would turn the JSON text ``"false"`` into an opt-in
(``bool("false")``), and costs more than the decision. The model checks
every column itself, as above; :data:`INPUT_COLUMNS` documents them (the
export writes them into the model's metadata).

A null opt-in means no known consent and counts as not opted in; a null
``products`` means the trigger has no items.

``send_at`` is ``triggered_at + delay_minutes`` (UTC); ``items`` repeats
the trigger's ``products`` for sends, or, when the model carries an item
selector (``items``, :class:`cadence.deployment.items.ServedItems`), holds
the products the selector chooses for the stage (a send it cannot serve
keeps the trigger's products, with :data:`ITEMS_FALLBACK` and the cause in
``reason``); ``priority`` ranks competing sends of one customer by stage
(the orchestrator's order when :mod:`cadence.policies.orchestrator` is
present) unless the policy gives its own. The orchestrator's caps and quiet hours need memory across requests
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

import warnings
import zoneinfo
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.pyfunc import PythonModel
from mlflow.types.schema import AnyType, ColSpec, DataType, Schema
from threadpoolctl import ThreadpoolController

from cadence.contract.actions import (
    CODE_CHANNEL,
    CODE_INCENTIVE,
    Policy,
    allowed_actions,
    check_decisions,
    code_delays,
    encode_actions,
)
from cadence.contract.clock import local_clock
from cadence.contract.tables import CHANNELS, INCENTIVES, STAGES
from cadence.contract.triggers import TRANSACTIONAL_STAGES
from cadence.policies.context import CONTEXT_DESIGNS
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
#: The trigger time's name in ``trigger_candidates.parquet`` (``cadence features``); read when a row has
#: no ``triggered_at`` (the messages log's name).
ELIGIBLE_AT = "eligible_at"

#: The windows of the customer features ``cadence features`` writes (:func:`cadence.features.customer.feature_columns`).
FEATURE_WINDOWS: tuple[int, ...] = (30, 90, 365)


def _customer_kinds(ws: tuple[int, ...] = FEATURE_WINDOWS) -> dict[str, str]:
    """Kind of each customer-feature column: ``count`` (a whole number >= 0), ``share`` (0 to 1), ``number``, ``text``.

    The same names as :func:`cadence.features.customer.feature_columns` (a test pins it), written out
    here so the served model does not import the feature engine (and its requirements).
    """
    kinds: dict[str, str] = {}
    def add(names: list[str], kind: str) -> None:
        kinds.update(dict.fromkeys(names, kind))

    add([f"orders_{w}d" for w in ws] + ["orders_all"], "count")
    add([f"{m}_{w}d" for m in ("revenue", "aov") for w in (*ws, "all")], "number")
    kinds = {k.replace("_alld", "_all"): v for k, v in kinds.items()}
    add(["recency_days", "first_order_days_ago", "tenure_days", "gap_mean_days", "gap_std_days", "gap_last_days",
         "recency_gap_ratio"], "number")
    add([f"{m}_{w}d" for m in ("sessions", "product_views", "cart_adds", "checkout_starts", "cart_abandons",
                               "checkout_abandons") for w in ws], "count")
    add(["avg_session_depth", "last_session_days_ago"], "number")
    add([f"searches_{w}d" for w in ws], "count")
    add(["zero_result_rate", "search_click_rate", "search_purchase_rate"], "share")
    add(["last_unresolved_query"], "text")
    add([f"sends_{c}_{w}d" for c in CHANNELS for w in ws] + [f"{m}_{c}" for m in ("opens", "clicks") for c in CHANNELS],
        "count")
    add(["last_open_days_ago"], "number")
    add(["unsubscribed_channels"], "count")
    add(["top_category"], "text")
    add(["top_category_share"], "share")
    return kinds


#: The model scores a scoring step writes per customer (``customer_scores.parquet``), beside ``scored_at``.
SCORE_KINDS: dict[str, str] = {"churn_risk_30d": "share", "churn_risk_60d": "share", "churn_risk_90d": "share",
                               "p_alive": "share", "expected_purchases_90d": "number", "clv_365d": "number",
                               "repurchase_due_days": "number"}
#: Customer-feature columns of a decision row and their kinds; ``orders_90d`` is the trigger's own (as of
#: the trigger, checked with the context), so a joined row has it once.
CUSTOMER_KINDS: dict[str, str] = {k: v for k, v in _customer_kinds().items() if k not in CONTEXT_COLUMNS}
#: The context families beyond the trigger's and the columns each brings: what a policy that reads
#: them needs, and what a row lacking them (every column null) falls back on.
FAMILY_COLUMNS: dict[str, tuple[str, ...]] = {"customer": tuple(CUSTOMER_KINDS), "scores": tuple(SCORE_KINDS)}
#: How a fallback reason names a family.
FAMILY_LABELS: dict[str, str] = {"customer": "customer features", "scores": "scores"}

_KIND_DOC = {"count": "a whole number >= 0", "share": "a number from 0 to 1", "number": "a finite number",
             "text": "text"}

#: The model's input: one row per trigger candidate.
INPUT_COLUMNS: tuple[Column, ...] = (
    Column("customer_id", "any", False, "the customer's id (text or a whole number); only hashed for "
                                        "reproducible exploration"),
    Column("stage", "any", True, f"one of {', '.join(STAGES)}"),
    Column("triggered_at", "any", True,
           "when the trigger fired: an ISO-8601 timestamp with its zone (e.g. 2025-03-01T09:30:00Z); "
           "from 1970-01-02 to 7 days after the server's clock. A row of trigger_candidates has it as "
           "eligible_at, read when triggered_at is absent"),
    Column(ELIGIBLE_AT, "any", False, "the trigger time as trigger_candidates.parquet names it (see triggered_at)"),
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
    Column("query", "any", False, "the search query of a search abandonment (null = none): the items that "
                                  "match it, when the model carries an item selector"),
    *(Column(c, "any", False, f"customer feature ({_KIND_DOC[k]}, null = unknown), as customer_features.parquet "
                              "has it") for c, k in CUSTOMER_KINDS.items()),
    *(Column(c, "any", False, f"model score ({_KIND_DOC[k]}, null = unknown), as customer_scores.parquet has it")
      for c, k in SCORE_KINDS.items()),
)

#: The model's output: one decision per input row, in input order.
OUTPUT_COLUMNS: tuple[Column, ...] = (
    Column("action", "string", True, "send or hold"),
    Column("channel", "string", False, f"one of {', '.join(CHANNELS)} (null when held)"),
    Column("send_at", "any", False, "triggered_at + delay_minutes, a UTC timestamp (null when held; in "
                                    "process a datetime.datetime)"),
    Column("delay_minutes", "long", True, "minutes after the trigger (0 when held)"),
    Column("incentive", "string", False, f"one of {', '.join(INCENTIVES)} (null when held)"),
    Column("items", "string", False, "the items to show, '|'-separated: the item selector's for the stage "
                                     "when the model carries one, else the trigger's products"),
    Column("priority", "double", True, "rank among one customer's competing sends, higher first"),
    Column("propensity", "double", True, "probability with which this decision was chosen"),
    Column("reason", "string", True, "why the decision is not the policy's ('' when it is): 'hold (invalid "
                                     "input): COLUMN: PROBLEM', 'rules fallback: ...', 'fallback: ... learned "
                                     "policy (...)' or 'exploration ...', "
                                     "then '; items fallback: ...' when a send's items are the trigger's products"),
)


def _colspec(c: Column, *, enforce: bool = True) -> ColSpec:
    kind: Any = AnyType() if c.type == "any" else DataType[c.type]
    return ColSpec(kind, c.name, required=c.required and enforce)


def model_signature() -> ModelSignature:
    """The MLflow signature: :data:`OUTPUT_COLUMNS` out, and no input schema.

    The inputs are checked by the model (rows with invalid values are held),
    not by MLflow: its errors echo the request, and its enforcement of an
    input schema costs more than the decision itself -- with every input
    column typed ``Any`` it still passes every value of every column through
    a Python call and turns numeric columns into objects (the loaded model
    scored 12,800 decision rows a second with such a schema, 110,000 without
    it: ``benchmarks/RESULTS.md``), and it drops the columns it does not
    list. The inputs are documented by :data:`INPUT_COLUMNS`, in the
    exported model's metadata (``cadence.inputs``) and by its input example.

    >>> sig = model_signature()
    >>> sig.inputs is None, sig.outputs.input_names()[:2]
    (True, ['action', 'channel'])
    """
    return ModelSignature(inputs=None, outputs=Schema([_colspec(c) for c in OUTPUT_COLUMNS]))


def input_example() -> pd.DataFrame:
    """Synthetic decision rows (no customer ids, no real data) showing every input column.

    Rows of ``trigger_candidates`` joined with ``customer_features`` and the
    model scores (:func:`cadence.features.decision_rows.decision_rows`); the
    third customer has no features or scores (a left join's nulls).

    >>> input_example()["stage"].tolist()
    ['cart_abandon', 'birthday', 'order_status']
    """
    trigger = pd.DataFrame({
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
        "query": [None, None, None],  # a search abandonment's query
    })
    example = {"count": [4, 1, None], "share": [0.25, 0.0, None], "number": [35.5, 120.0, None],
               "text": [None, "category-a", None]}
    extra = pd.DataFrame({c: pd.Series(example[k], dtype=object) for c, k in (CUSTOMER_KINDS | SCORE_KINDS).items()})
    return pd.concat([trigger, extra], axis=1)


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
        values = candidates[col].to_numpy(object)
        out = pd.Series(np.where(pd.notna(values), values, ""), dtype=object)
        # Already text (the checked frame's case): the same hash as after str(), without the copy.
        return out if pd.api.types.infer_dtype(out, skipna=False) == "string" else out.astype(str)

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
#: Most columns one request may carry. A decision row (a trigger candidate joined with its customer's
#: features and scores, :func:`cadence.features.decision_rows.decision_rows`) has about 95 (the model checks
#: the 90 listed in :data:`INPUT_COLUMNS`); 256 leaves room for a shop's own pass-through columns and
#: more feature windows, while one request stays within ``MAX_ROWS x MAX_COLUMNS`` = 2.56 million values,
#: checked well inside the scoring server's timeout.
MAX_COLUMNS = 256
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
    if isinstance(frame.index, pd.RangeIndex) and frame.index.start == 0 and frame.index.step == 1:
        return frame
    out = frame.copy(deep=False)  # a new index on the same columns: no copy of a wide request
    out.index = pd.RangeIndex(len(out))
    return out


class _Problems:
    """Per-row problems, in the order found: ``column: problem``, never a value."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.found: list[tuple[np.ndarray, str]] = []  # (rows, "column: problem"), in the order found

    def add(self, mask: Any, column: str, problem: str) -> None:
        self.add_text(mask, f"{column}: {problem}")

    def add_text(self, mask: Any, text: str) -> None:
        rows = np.flatnonzero(np.asarray(mask, bool))
        if rows.size:
            self.found.append((rows, text))

    def reasons(self) -> np.ndarray:
        out = np.full(self.n, "", dtype=object)
        for rows, text in self.found:
            # Vectorised: a whole batch can share a problem (a missing column, a wrong family).
            first = out[rows] == ""
            out[rows] = np.where(first, text, out[rows] + ("; " + text))
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
    present = s.notna().to_numpy()
    if pd.api.types.infer_dtype(s, skipna=True) in ("string", "empty"):  # the usual case: no per-value work
        text = s if s.dtype == object and present.all() else s.astype(object).where(present, None)
    else:  # numeric ids are fine: they are only hashed
        ok = _is(s, (str, int, np.integer) if ids else (str,)) & ~_is(s, (bool, np.bool_)) | ~present
        found.add(~ok, col, "not text")
        text = s.where(ok & present, None).astype(object).map(lambda v: v if v is None else str(v))
        present = text.notna().to_numpy()
    values = text.to_numpy(object)
    if not present.all():
        values = values[present]
    # len over the values themselves: Series.str.len costs six times as much.
    lengths = np.fromiter(map(len, values), np.int64, len(values))
    if not (lengths > MAX_TEXT_CHARS).any():
        return text
    long = _at(present, lengths > MAX_TEXT_CHARS)
    found.add(long, col, f"longer than {MAX_TEXT_CHARS:,} characters")
    return text.where(~long, None)


def _stamp(v: Any) -> pd.Timestamp | None:
    """A timestamp-like object as a Timestamp, or None when pandas cannot hold it (e.g. the year 3000)."""
    try:
        return pd.Timestamp(v)
    except (ValueError, TypeError, OverflowError):
        return None


def _timestamps(values: pd.Series, found: _Problems, now: pd.Timestamp, col: str = "triggered_at") -> pd.Series:
    """UTC timestamps of the trigger time ``col`` (NaT where missing or wrong); problems for the impossible ones."""
    n = len(values)
    out = pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns, UTC]")
    if pd.api.types.is_datetime64_any_dtype(values):
        # Not pd.to_datetime: on a datetime column it still boxes values to decide on caching.
        if not isinstance(values.dtype, pd.DatetimeTZDtype):
            found.add(values.notna().to_numpy(), col, "no time zone")
            return out
        out = values.dt.tz_convert("UTC").dt.as_unit("ns")
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
            year = np.full(len(text), np.nan)
            if bad.any():
                year[bad] = pd.to_numeric(text[bad].str.extract(r"^(\d{4})-\d{2}", expand=False),
                                          errors="coerce").to_numpy(float)
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


def _number(frame: pd.DataFrame, col: str, found: _Problems, *, whole: bool, upper: float | None,
            lower: float | None = 0.0) -> tuple[np.ndarray, bool]:
    """Column ``col`` as floats (NaN where missing or wrong) and whether any value was wrong or not numeric.

    Problems for wrong types, infinities, fractions (``whole``) and values outside ``[lower, upper]``.
    A numeric column (the usual case, and every column a Parquet file gives) is checked without
    touching the values one by one.
    """
    s = frame[col]
    if pd.api.types.is_bool_dtype(s):
        ok = s.isna().to_numpy()
        v = np.full(len(s), np.nan)
    elif pd.api.types.is_numeric_dtype(s):
        ok = None
        v = s.to_numpy(dtype=float, na_value=np.nan)
    else:
        ok = _is(s, (int, float, np.integer, np.floating)) & ~_is(s, (bool, np.bool_)) | s.isna().to_numpy()
        v = pd.to_numeric(s.where(ok, None).astype(object), errors="coerce").astype(float).to_numpy()
    nulled = ok is not None
    if ok is not None:
        found.add(~ok, col, "not a number")
    wrong = np.isinf(v)
    if wrong.any():
        found.add(wrong, col, "not finite")
        v = np.where(wrong, np.nan, v)
    if whole:
        frac = np.isfinite(v) & (v != np.round(np.where(np.isfinite(v), v, 0)))
        found.add(frac, col, "not a whole number")
        wrong |= frac
    if lower is not None:
        low = v < lower
        found.add(low, col, "negative" if lower == 0 else f"below {lower:,g}")
        wrong |= low
    if upper is not None:
        high = v > upper
        found.add(high, col, f"above {upper:,g}, implausible" if upper != 1 else "above 1")
        wrong |= high
    return v, nulled or bool(wrong.any())


def check_rows(frame: pd.DataFrame, now: pd.Timestamp | None = None) -> tuple[np.ndarray, pd.Series, pd.DataFrame]:
    """Per row, why it must be held ('' when it need not), its UTC trigger time, and the cleaned input.

    A row is held when a value cannot be true: ``stage`` missing, not text
    or not one of the contract's stages (a misspelling included);
    ``triggered_at`` (or, when absent, ``eligible_at``) missing, not a
    timestamp, without a time zone, before :data:`EARLIEST` or more than
    :data:`FUTURE_SLACK` after ``now``; ``sends_7d``/``orders_90d`` not
    whole numbers, negative or above :data:`MAX_COUNTS`;
    ``days_since_order`` not a number, negative or reaching back before
    :data:`EARLIEST`; an opt-in not true, false or null; a ``timezone`` that
    is not a known IANA zone; a customer-feature or score column
    (:data:`CUSTOMER_KINDS`, :data:`SCORE_KINDS`) that is not a number (or
    text, for the text features), not finite, a negative or fractional count,
    or a share or probability outside 0 to 1; any text longer than
    :data:`MAX_TEXT_CHARS`. Reasons name the column and the problem, never
    the value (a caller may put a customer id anywhere). The cleaned frame
    has every wrong value replaced by null, the counts as floats, the trigger
    time as ``triggered_at`` and the local clock of the trigger
    (``local_hour``, ``local_weekday``) computed from the checked time and
    zone, whatever the request carried under those names.

    >>> c = pd.DataFrame({"stage": ["birthday", "birthdya", None], "sends_7d": [1, -2, 10**9],
    ...                   "triggered_at": ["2025-01-01T00:00:00Z", "2025-01-01", "1900-01-01T00:00:00Z"],
    ...                   "p_alive": [0.5, 0.5, 1.5]})
    >>> check_rows(c)[0].tolist()
    ['', 'stage: unknown value; triggered_at: no time zone; sends_7d: negative', 'stage: missing; triggered_at: before 1970-01-02; sends_7d: above 1,000, implausible; p_alive: above 1']
    """
    now = pd.Timestamp.now(tz="UTC") if now is None else now
    n = len(frame)
    found = _Problems(n)
    clean: dict[Any, Any] = {}
    stage = _text(frame, "stage", found)
    if stage is None:
        stage = pd.Series([None] * n, index=frame.index, dtype=object)
    found.add(stage.isna().to_numpy() & (frame["stage"].isna().to_numpy() if "stage" in frame else True),
              "stage", "missing")
    known = stage.isin(STAGES).to_numpy()
    found.add(stage.notna().to_numpy() & ~known, "stage", "unknown value")
    clean["stage"] = stage if known.all() else stage.where(known, None)
    when = "triggered_at" if "triggered_at" in frame or ELIGIBLE_AT not in frame else ELIGIBLE_AT
    if when in frame:
        triggered = _timestamps(frame[when], found, now, when)
        found.add(frame[when].isna().to_numpy(), when, "missing")
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
        if unknown:
            found.add(zones.isin(unknown).to_numpy(), "timezone", "unknown IANA time zone")
            clean["timezone"] = zones.where(~zones.isin(unknown), None)
    for col in frame.columns:
        name = str(col)
        if not name.startswith("opt_in_"):
            continue
        s = frame[col]
        if pd.api.types.is_bool_dtype(s):
            clean[name] = s
            continue
        ok = _is(s, (bool, np.bool_)) | s.isna().to_numpy()
        if name in OPT_IN_COLUMNS:
            found.add(~ok, name, "not true, false or null")
        clean[name] = pd.array(s.where(ok & s.notna().to_numpy(), None).astype(object), dtype="boolean")
    for col in WHOLE_COLUMNS:
        if col in frame:
            v, _ = _number(frame, col, found, whole=True, upper=MAX_COUNTS[col])
            clean[col] = pd.Series(v, index=frame.index)
    if "days_since_order" in frame:
        v, _ = _number(frame, "days_since_order", found, whole=False, upper=None)
        # The last order cannot predate the earliest plausible timestamp.
        span = (triggered - EARLIEST).dt.total_seconds().to_numpy(float) / 86_400.0
        found.add(v > np.where(np.isnan(span), np.inf, span), "days_since_order", f"before {EARLIEST:%Y-%m-%d}")
        clean["days_since_order"] = pd.Series(v, index=frame.index)
    clean_extra = _plausible_numbers(frame)
    for col, kind in _EXTRA_KINDS.items():
        if col not in frame or col in clean_extra:
            continue
        if kind == "text":
            text = _text(frame, col, found)
            if text is not None:
                clean[col] = text
            continue
        v, nulled = _number(frame, col, found, whole=kind == "count", upper=1.0 if kind == "share" else None,
                            lower=None if kind == "number" else 0.0)
        # A numeric column without problems is handed on as it came (no copy).
        clean[col] = pd.Series(v, index=frame.index) if nulled else frame[col]
    # The local clock from the checked time and zone; a caller's own local_hour is not trusted.
    hour, weekday = local_clock(triggered, clean.get("timezone"))
    clean["local_hour"] = hour
    clean["local_weekday"] = weekday
    for col in frame.columns:  # columns the model does not read pass through unchecked
        if col not in clean:
            clean[col] = frame[col]
    reasons = found.reasons()
    return reasons, triggered, pd.DataFrame(clean, index=frame.index, copy=False)


#: Kinds of the checked columns beyond the trigger's own.
_EXTRA_KINDS: dict[str, str] = CUSTOMER_KINDS | SCORE_KINDS


def _plausible_numbers(frame: pd.DataFrame) -> set[str]:
    """The feature and score columns of ``frame`` of a plain numeric dtype whose every value passes its check.

    Whole-column reductions on the column's own array (no copy): a decision
    row has about 75 such columns, and checking each value by value cost a
    fifth of the request. A column that fails, or is not of a plain numeric
    dtype (object, nullable, bool), is then checked value by value (naming
    its problems).
    """
    passed = set()
    for col, kind in _EXTRA_KINDS.items():
        if kind == "text" or col not in frame:
            continue
        a = frame[col].to_numpy()
        if a.dtype.kind in "iu":  # whole numbers, no nulls, no infinities
            ok = not len(a) or ((kind == "number" or a.min() >= 0) and (kind != "share" or a.max() <= 1))
        elif a.dtype.kind == "f":
            with np.errstate(invalid="ignore"):
                ok = not (np.isinf(a).any() or (kind != "number" and (a < 0).any())
                          or (kind == "share" and (a > 1).any())
                          or (kind == "count" and (np.isfinite(a) & (np.floor(a) != a)).any()))
        else:
            ok = False
        if ok:
            passed.add(col)
    return passed


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
    """``(trigger columns the policy reads, those of them that have no default for a null value)``.

    The rules read the opt-ins only; any other policy reads every context
    feature (:func:`~cadence.features.context.context_features`).

    >>> needed_columns(RulesPolicy())[1]
    ()
    """
    if isinstance(policy, RulesPolicy):
        return OPT_IN_COLUMNS, ()
    return CONTEXT_COLUMNS, ("timezone", "sends_7d", "orders_90d")


def needed_families(policy: Policy) -> tuple[str, ...]:
    """The context families of :data:`FAMILY_COLUMNS` a policy decides with (its ``context``, if it names them).

    >>> needed_families(RulesPolicy())
    ()
    """
    context = getattr(policy, "context", None)
    # UpliftPolicy reads its context only in CONTEXT_DESIGNS; its uplift learners decide from the
    # trigger's columns whatever ``context`` says.
    if context is None or isinstance(policy, RulesPolicy) or getattr(policy, "learner", "dr") not in CONTEXT_DESIGNS:
        return ()
    names = (context,) if isinstance(context, str) else tuple(context)
    return tuple(f for f in names if f in FAMILY_COLUMNS)


def fallback_reasons(frame: pd.DataFrame, policy: Policy) -> np.ndarray:
    """Per row of a checked frame (:func:`check_rows`), why it falls back to the rules ('' when it does not).

    Information the policy reads is absent (a column, or a null where the
    policy has no default), a context family the policy decides with is
    missing from the row and the policy has no learned model for the
    families the row has (``missing customer features``, ``missing
    scores``: the policy's own routing, :func:`policy_routes`), or a channel
    the model does not know is opted in: the rules decide such a row from
    what there is.

    >>> c = pd.DataFrame({"stage": ["birthday", "birthday"], "opt_in_email": [True, True], "opt_in_fax": [False, True]})
    >>> fallback_reasons(c, RulesPolicy()).tolist()
    ['missing column(s) opt_in_push, opt_in_sms, opt_in_whatsapp', "unknown channel 'fax'; missing column(s) opt_in_push, opt_in_sms, opt_in_whatsapp"]
    """
    return policy_routes(frame, policy)[0]


def policy_routes(frame: pd.DataFrame, policy: Policy) -> tuple[np.ndarray, np.ndarray]:
    """Per row of a checked frame, ``(why the rules decide it, how the policy decides it)`` ('' for neither).

    The first is :func:`fallback_reasons`'; the second is the policy's own
    note where it decides a row lacking a context family with a learned
    model on the families the row has (``fallback: trigger-only learned
    policy (missing customer features)``,
    :meth:`cadence.policies.learned.UpliftPolicy.family_routes`): such a row
    goes to the policy, whose ``decide`` routes it the same way.

    >>> policy_routes(pd.DataFrame({"stage": ["birthday"]}), RulesPolicy())[1].tolist()
    ['']
    """
    n = len(frame)
    found = _Problems(n)
    add = found.add_text
    note = np.full(n, "", dtype=object)
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
    families = needed_families(policy)
    routes = getattr(policy, "family_routes", None)
    if families and routes is not None:
        # The policy's own routing (not re-implemented here, nor its context machinery imported: the rules'
        # model needs none of it), so the served model routes exactly the rows the policy would.
        routed = routes(frame)
        rules = routed["rules"].to_numpy(bool)
        why = routed["reason"].to_numpy(object)
        for text in pd.unique(why[rules]):
            add(rules & (why == text), str(text))
        learned = ~rules & (why != "")
        note[learned] = why[learned]
    elif families:
        own = getattr(policy, "missing_families", None)
        missing = None if own is None else own(frame)
        for family in families:
            if missing is not None:
                lacks = missing[family].to_numpy()
            else:  # any other policy: a family is missing where every one of its columns is absent or null
                cols = [c for c in FAMILY_COLUMNS[family] if c in frame]
                lacks = frame[cols].isna().all(axis=1).to_numpy() if cols else np.ones(len(frame), bool)
            add(lacks, f"missing {FAMILY_LABELS[family]}")
    reason = found.reasons()
    note[reason != ""] = ""  # the rules decide it after all (a column missing too)
    return reason, note


def stage_priority(stage: np.ndarray) -> np.ndarray:
    """Priority of each stage's sends: the orchestrator's stage order, higher first (0 when unknown).

    >>> (stage_priority(np.array(["order_status"])) > stage_priority(np.array(["new_arrivals"]))).tolist()
    [True]
    """
    try:
        from cadence.policies.orchestrator import STAGE_PRIORITY as order
    except ImportError:  # the orchestrator is optional: fall back to the contract's stage order
        order = STAGES
    rank = np.r_[np.arange(len(order), 0, -1, dtype=float), 0.0]  # the last: unknown stages
    codes = pd.Categorical(np.asarray(stage, dtype=object), categories=list(order)).codes
    return rank[codes]


# --------------------------------------------------------------------------- #
# The pyfunc model
# --------------------------------------------------------------------------- #

_CONTROLLER: list[ThreadpoolController] = []


def _blas() -> ThreadpoolController:
    """The process's thread pools, found once (at the first request, when the policy's libraries are loaded)."""
    if not _CONTROLLER:
        _CONTROLLER.append(ThreadpoolController())
    return _CONTROLLER[0]


#: How the ``reason`` of a row held for an invalid value starts.
HOLD_REASON = "hold (invalid input): "
#: How a ``reason`` names a send whose items are the trigger's because the item selector could not serve it.
ITEMS_FALLBACK = "items fallback: "


@dataclass
class _Greedy:
    frame: pd.DataFrame  # the checked input (wrong values nulled), index 0..n-1
    triggered: pd.Series  # UTC timestamps (NaT where missing or invalid)
    decisions: pd.DataFrame  # the greedy (or rules fallback, or hold) decision per row, index 0..n-1
    codes: np.ndarray  # their action codes
    held: np.ndarray  # why a row is held for an invalid value ('' when it is not)
    reason: np.ndarray  # fallback reason per row ('' when the policy decided)
    note: np.ndarray  # the policy's own note where it decided with a learned fallback ('' otherwise)
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
    items
        Fills each send's ``items`` (a fitted
        :class:`~cadence.deployment.items.ServedItems`; anything with its
        ``fill``); None: the trigger's products.
    """

    def __init__(self, policy: Policy, epsilon: float = 0.05, seed: int = 0, items: Any = None) -> None:
        self.policy = policy
        self.epsilon = epsilon
        self.seed = seed
        self.items = items

    def _fallback(self) -> Policy:
        return self.policy if isinstance(self.policy, RulesPolicy) else RulesPolicy()

    def _greedy(self, frame: pd.DataFrame) -> _Greedy:
        if not 0.0 <= self.epsilon < 1.0:
            raise ValueError(f"epsilon: expected a probability in [0, 1), got {self.epsilon}")
        n = len(frame)
        held, triggered, work = check_rows(frame)
        hold = held != ""
        reason, note = policy_routes(work, self.policy)
        reason[hold] = ""
        note[hold] = ""
        ok = ~hold & (reason == "")
        for col in WHOLE_COLUMNS:
            if col in work:
                work[col] = work[col].fillna(0).astype(np.int64)
        action = np.full(n, "hold", dtype=object)
        channel = np.full(n, None, dtype=object)
        delay = np.zeros(n, np.int64)
        incentive = np.full(n, None, dtype=object)
        priority = np.full(n, np.nan)
        rng = np.random.default_rng(self.seed)
        for rows, policy in ((ok, self.policy), (~hold & ~ok, self._fallback())):
            if not rows.any():
                continue
            # The whole checked frame when every row goes to one policy (no copy of ~95 columns).
            part = work if rows.all() else work[rows].reset_index(drop=True)
            # One BLAS thread: a request's matrix products are small, and the scoring server's workers
            # (and other requests) share the cores; threads only contend (on 2 busy cores they halved
            # the learned policy's throughput, benchmarks/RESULTS.md).
            with _blas().limit(limits=1, user_api="blas"):
                d = policy.decide(part, rng)
            check_decisions(d, len(part), policy.policy_id)
            if (d["propensity"].to_numpy(float) < 1).any():
                raise ValueError(f"policy {policy.policy_id!r} is stochastic; PolicyModel explores itself "
                                 "and needs a deterministic policy")
            action[rows] = d["action"].to_numpy(object)
            channel[rows] = d["channel"].to_numpy(object)
            delay[rows] = d["delay_minutes"].to_numpy(np.int64)
            incentive[rows] = d["incentive"].to_numpy(object)
            if "priority" in d:
                priority[rows] = d["priority"].to_numpy(float)
        decisions = pd.DataFrame({"action": action, "channel": channel, "delay_minutes": delay,
                                  "incentive": incentive, "priority": priority}, copy=False)
        stage = work["stage"].to_numpy(object)
        stage = np.where(pd.isna(stage), "", stage).astype(str)
        codes = encode_actions(pd.Series(stage), decisions)
        opt = opt_in_matrix(work)
        explores = ok & ~np.isin(stage, list(TRANSACTIONAL_STAGES))
        return _Greedy(work, triggered, decisions, codes, held, reason, note, explores, allowed_actions(stage, opt))

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
        reason = g.note.copy()
        fell = g.reason != ""
        reason[fell] = "rules fallback: " + g.reason[fell]
        held = g.held != ""
        reason[held] = HOLD_REASON + g.held[held]
        if self.epsilon > 0 and n:
            u_explore, u_pick = row_uniforms(g.frame, g.triggered.astype("int64").to_numpy(), self.seed)
            explored = g.explores & (u_explore < self.epsilon)
            rows = np.flatnonzero(explored)
            valid = g.valid[rows]
            k = valid.sum(axis=1)
            nth = np.minimum((u_pick[rows] * k).astype(np.int64), k - 1)
            code[rows] = np.argmax(valid & (np.cumsum(valid, axis=1) == (nth + 1)[:, None]), axis=1)
            # The chosen action's entry of exploration_distribution, without building the (n, 49) matrix.
            eps = np.where(g.explores, self.epsilon, 0.0)
            propensity = eps / np.maximum(g.valid.sum(axis=1), 1) + (1.0 - eps) * (code == g.codes)
            reason = np.where(explored & (code != g.codes), f"exploration (epsilon={self.epsilon:g})", reason)
        out = self._frame(g, code, propensity, reason)
        if index is not None:
            out.index = index
        return out

    def _items(self, g: _Greedy, send: np.ndarray, reason: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each row's items and its reason, with ``items fallback: ...`` where a send kept the trigger's products."""
        filler = getattr(self, "items", None)  # models pickled before the item selector existed have none
        if filler is None:
            items = (g.frame["products"].astype(object).to_numpy().copy() if "products" in g.frame
                     else np.full(len(send), None, dtype=object))
            items[~send] = None
            return items, reason
        items, why = filler.fill(g.frame, g.triggered, send)
        fell = why != ""
        if fell.any():
            note = ITEMS_FALLBACK + why[fell]
            reason = reason.copy()
            reason[fell] = np.where(reason[fell] == "", note, reason[fell] + "; " + note)
        return items, reason

    def _frame(self, g: _Greedy, code: np.ndarray, propensity: np.ndarray, reason: np.ndarray) -> pd.DataFrame:
        n = len(code)
        stage = g.frame["stage"].astype(object).to_numpy()
        changed = code != g.codes
        action = np.where(code > 0, "send", "hold").astype(object)
        channel = g.decisions["channel"].to_numpy(object).copy()
        delay = g.decisions["delay_minutes"].to_numpy(np.int64).copy()
        incentive = g.decisions["incentive"].to_numpy(object).copy()
        rows = np.flatnonzero(changed & (code > 0))
        if rows.size:  # explored sends: their channel, delay (the stage's slot) and incentive from the code
            picked = code[rows]
            channel[rows] = np.asarray(CHANNELS, dtype=object)[CODE_CHANNEL[picked]]
            incentive[rows] = np.asarray(INCENTIVES, dtype=object)[CODE_INCENTIVE[picked]]
            delay[rows] = code_delays(stage[rows], picked)
        send = code > 0
        channel[~send], incentive[~send], delay[~send] = None, None, 0
        # The policy's own priority where it gives one, else the stage's: per row, so a row's
        # priority does not depend on the rest of the batch.
        own = g.decisions["priority"].to_numpy(float)
        priority = np.where(np.isnan(own), stage_priority(stage), own)
        items, reason = self._items(g, send, reason)
        # UTC datetimes or None (not NaT, which MLflow's JSON writer would print as the text "NaT").
        # Python datetimes, not pandas Timestamps: boxing Timestamps costs more than the decision.
        send_at = np.full(n, None, dtype=object)
        timed = send & g.triggered.notna().to_numpy()
        if timed.any():
            at = pd.DatetimeIndex(g.triggered[timed]) + pd.to_timedelta(delay[timed], unit="min")
            with warnings.catch_warnings():  # a trigger time's nanoseconds are dropped (microseconds kept)
                warnings.simplefilter("ignore", UserWarning)
                send_at[timed] = at.to_pydatetime()
        return pd.DataFrame({
            "action": action,
            "channel": channel,
            "send_at": pd.Series(send_at, dtype=object),  # object: the constructor would infer NaT for None
            "delay_minutes": delay,
            "incentive": incentive,
            "items": items,
            "priority": np.where(send, priority, 0.0),
            "propensity": propensity.astype(float),
            "reason": reason,
        })
