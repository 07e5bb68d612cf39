"""Check tables or a data directory against the data contract.

This is the engine of ``cadence validate DIR``. Every problem is collected,
not just the first: a problem names its table, column, what is wrong and how
many rows are affected, e.g. ``events.event_type: unknown value 'foo' (12 rows)``.
Later stages call :func:`check_tables` or :func:`check_dir`, which raise
:class:`ContractError` listing every problem, so bad input stops with this
message instead of a traceback deep in a feature query.

What is checked (see :mod:`cadence.data.schemas` for how):

* the directory: ``customers`` present, every file readable, no unknown files;
* each table: required columns present; values of the column's kind (text in
  a number column and numbers in a timestamp column are wrong types);
  timestamps carry a time zone (aware timestamps in any zone are converted to
  UTC and accepted); no nulls in non-nullable columns; vocabularies; numeric
  bounds; unique primary keys; a sent message has ``sent_at`` and ``channel``;
* across tables: foreign keys, when the referenced table is present.

Examples
--------
>>> import pandas as pd
>>> customers = pd.DataFrame({"customer_id": ["c1"],
...                           "signup_at": pd.to_datetime(["2024-01-01"], utc=True)})
>>> orders = pd.DataFrame({"order_id": ["o1", "o1"], "customer_id": ["c1", "c2"],
...                        "ts": pd.to_datetime(["2024-02-01", "2024-02-02"], utc=True),
...                        "revenue": [10.0, -1.0]})
>>> print(format_problems(validate_tables({"customers": customers, "orders": orders})))
orders.order_id: duplicate key (2 rows)
orders.customer_id: references an unknown customers.customer_id, e.g. 'c2' (1 row)
orders.revenue: value out of range, must be >= 0 (1 row)
"""

from __future__ import annotations

import datetime as dt
import functools
import warnings
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pandera.pandas as pa

from cadence.contract.tables import REQUIRED_TABLES, TABLES
from cadence.data.io import DataDirError, PathLike, list_tables, read_tables
from cadence.data.schemas import (
    SCHEMAS,
    UNKNOWN_VALUE,
    Conformed,
    conform_table,
    duplicate_key_rows,
    orphan_rows,
    rule_violations,
)

#: Unknown vocabulary values reported one by one; the rest are summed up.
MAX_UNKNOWN_VALUES = 10


@dataclass(frozen=True)
class Problem:
    """One way a table breaks the contract.

    ``column`` is None for problems of a whole table, file or multi-column
    key; ``rows`` is 0 for problems of a file rather than of rows.

    Examples
    --------
    >>> str(Problem("events", "event_type", "unknown value 'foo'", 12))
    "events.event_type: unknown value 'foo' (12 rows)"
    >>> str(Problem("customers", None, "missing required table", 0))
    'customers: missing required table'
    """

    table: str
    column: str | None
    problem: str
    rows: int

    def __str__(self) -> str:
        where = self.table if self.column is None else f"{self.table}.{self.column}"
        if self.rows == 0:
            return f"{where}: {self.problem}"
        return f"{where}: {self.problem} ({self.rows} row{'' if self.rows == 1 else 's'})"


class ContractError(ValueError):
    """Data that breaks the contract; ``problems`` lists every problem found.

    Examples
    --------
    >>> err = ContractError([Problem("orders", "revenue", "value out of range, must be >= 0", 2)])
    >>> print(err)
    data does not meet the contract (1 problem):
      orders.revenue: value out of range, must be >= 0 (2 rows)
    """

    def __init__(self, problems: Iterable[Problem]):
        self.problems: tuple[Problem, ...] = tuple(problems)
        n = len(self.problems)
        lines = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(
            f"data does not meet the contract ({n} problem{'' if n == 1 else 's'}):\n{lines}"
        )


def format_problems(problems: Iterable[Problem]) -> str:
    """One line per problem, in the order given; a short note when there are none.

    Examples
    --------
    >>> format_problems([])
    'no problems found'
    """
    lines = [str(p) for p in problems]
    return "\n".join(lines) if lines else "no problems found"


# --------------------------------------------------------------------------- tables


def validate_tables(tables: Mapping[str, pd.DataFrame]) -> list[Problem]:
    """Return every contract problem of ``tables``; never mutates them.

    Only the tables given are checked: a foreign key into a table that is
    not in ``tables`` is skipped, and a missing ``customers`` table is a
    problem of a data directory (:func:`validate_dir`), not of a subset of
    tables handed over by a pipeline stage. Plausibility across tables
    (:func:`plausibility_problems`) is included.

    Parameters
    ----------
    tables
        Table name to frame, as :func:`cadence.data.io.read_tables` returns.

    Returns
    -------
    list of Problem
        Ordered by table, then by column in contract order; empty when clean.

    Examples
    --------
    >>> import pandas as pd
    >>> validate_tables({"customers": pd.DataFrame({"customer_id": ["c1"]})})
    [Problem(table='customers', column='signup_at', problem='missing required column', rows=1)]
    """
    return inspect_tables(tables).problems


@dataclass(frozen=True)
class Inspection:
    """What checking tables found: problems, warnings, and the conformed frames.

    ``frames`` are the tables brought to contract dtypes (UTC timestamps, real
    booleans, numbers); they are what a command should read once there are
    no ``problems``. ``warnings`` are valid but unusual data.
    """

    problems: list[Problem]
    warnings: list[Problem]
    frames: dict[str, pd.DataFrame]


def inspect_tables(tables: Mapping[str, pd.DataFrame], *, now: pd.Timestamp | None = None) -> Inspection:
    """Check ``tables`` like :func:`validate_tables` and keep the conformed frames and warnings.

    Examples
    --------
    >>> import pandas as pd
    >>> customers = pd.DataFrame({"customer_id": ["c1"], "opt_in_email": ["false"],
    ...                           "signup_at": pd.to_datetime(["2024-01-01"], utc=True)})
    >>> found = inspect_tables({"customers": customers})
    >>> found.problems, [str(w) for w in found.warnings]
    ([], ['customers.opt_in_email: booleans stored as text, read as booleans (1 row)'])
    >>> bool(found.frames["customers"]["opt_in_email"].iloc[0])
    False
    """
    problems: list[Problem] = []
    conformed: dict[str, Conformed] = {}
    for name, df in tables.items():
        if name not in TABLES:
            problems.append(Problem(name, None, "unknown table, not in the contract", 0))
        elif not isinstance(df, pd.DataFrame):
            problems.append(Problem(name, None, f"not a DataFrame but {type(df).__name__}", 0))
        else:
            conformed[name] = conform_table(name, df)
    frames = {name: c.frame for name, c in conformed.items()}
    untrusted = {(name, i.column) for name, c in conformed.items() for i in c.issues}
    for name in TABLES:  # contract order keeps reports stable
        if name in conformed:
            orphans = _orphan_problems(name, frames, untrusted)
            found = _table_problems(name, conformed[name]) + orphans
            problems.extend(_in_column_order(name, found))
    # Plausibility only on columns that conformed cleanly: a value already
    # reported as a wrong type is null in the frame and not reported twice.
    errors, warned = plausibility_problems(frames, untrusted, now=now)
    problems.extend(errors)
    warned = [*_storage_warnings(tables, frames), *warned]
    return Inspection(problems, warned, frames)


def _table_problems(name: str, conformed: Conformed) -> list[Problem]:
    frame = conformed.frame
    problems = [Problem(name, i.column, i.problem, int(i.rows.sum())) for i in conformed.issues]
    problems += _schema_problems(name, frame, conformed)
    duplicated = duplicate_key_rows(name, frame)
    if duplicated is not None and duplicated.any():
        key = TABLES[name].key
        column, what = (key[0], "duplicate key") if len(key) == 1 else (None, f"duplicate key ({', '.join(key)})")
        problems.append(Problem(name, column, what, int(duplicated.sum())))
    problems += [Problem(name, c, p, int(m.sum())) for c, p, m in rule_violations(name, frame)]
    return problems


def _schema_problems(name: str, frame: pd.DataFrame, conformed: Conformed) -> list[Problem]:
    try:
        SCHEMAS[name].validate(frame, lazy=True)
    except pa.errors.SchemaErrors as err:
        cases = err.failure_cases
    else:
        return []
    # Values of the wrong type were nulled by conforming; they are reported
    # once, as wrong types, not again as nulls.
    unfit = {i.column: np.flatnonzero(i.rows) for i in conformed.issues}
    problems = []
    for (column, check), group in cases.groupby(["column", "check"], dropna=False, sort=False):
        column = None if pd.isna(column) else str(column)
        rows = group["index"].dropna()
        if check == "column_in_dataframe":
            problems += [
                Problem(name, str(c), "missing required column", len(frame))
                for c in group["failure_case"]
            ]
        elif check == "not_nullable":
            rows = rows[~rows.isin(unfit.get(column or "", []))]
            if len(rows):
                problems.append(Problem(name, column, "null in a non-nullable column", rows.nunique()))
        elif check == UNKNOWN_VALUE:
            problems += _unknown_values(name, column, group)
        elif str(check).startswith("value out of range"):
            problems.append(Problem(name, column, str(check), rows.nunique()))
        else:
            # Not expected after conforming (e.g. a dtype check); reported
            # verbatim rather than dropped.
            got = ", ".join(sorted({str(v) for v in group["failure_case"]}))
            problems.append(Problem(name, column, f"failed {check} (got {got})", rows.nunique()))
    return problems


def _unknown_values(name: str, column: str | None, group: pd.DataFrame) -> list[Problem]:
    counts = group.groupby(group["failure_case"].astype(str), sort=False)["index"].nunique()
    counts = counts.sort_values(ascending=False, kind="stable")
    shown, rest = counts.iloc[:MAX_UNKNOWN_VALUES], counts.iloc[MAX_UNKNOWN_VALUES:]
    problems = [Problem(name, column, f"{UNKNOWN_VALUE} {v!r}", int(n)) for v, n in shown.items()]
    if len(rest):
        allowed = ", ".join(TABLES[name].column(column or "").allowed or ())
        problems.append(
            Problem(name, column, f"{len(rest)} more unknown values (allowed: {allowed})", int(rest.sum()))
        )
    return problems


def _orphan_problems(
    name: str, frames: Mapping[str, pd.DataFrame], untrusted: set[tuple[str, str]]
) -> list[Problem]:
    return [
        Problem(name, column, f"references an unknown {ref}, e.g. {values.iloc[0]!r}", len(values))
        for column, ref, values in orphan_rows(name, frames[name], frames, untrusted)
    ]


def _in_column_order(name: str, problems: list[Problem]) -> list[Problem]:
    # Stable: within a column, the order found (type, nulls, values, keys, links).
    position = {c: i for i, c in enumerate(TABLES[name].column_names)}
    return sorted(problems, key=lambda p: -1 if p.column is None else position.get(p.column, -1))


# --------------------------------------------------------------------------- plausibility

#: Earliest plausible timestamp: 1970-01-01 is what a zero epoch becomes, and
#: 1900 a spreadsheet's zero; neither is a real send or order.
EARLIEST = pd.Timestamp("1970-01-02", tz="UTC")
#: Timestamps later than now by more than this are in the future (clock skew allowed).
FUTURE_SLACK = pd.Timedelta(days=1)
#: Earliest plausible birth date.
EARLIEST_BIRTH = dt.date(1900, 1, 1)
#: Smallest logged propensity accepted: below it one row's weight 1/p swamps
#: every estimate (1e-12 gave "unsupported" in evaluate but a registered export).
PROPENSITY_FLOOR = 1e-6
# Ordered message timestamps: (later, earlier) — a later one may not precede the earlier.
_MESSAGE_ORDER = (("sent_at", "triggered_at"), ("opened_at", "sent_at"), ("clicked_at", "sent_at"))


def _rows(mask: pd.Series | np.ndarray) -> int:
    return int(np.asarray(mask, dtype=bool).sum())


def plausibility_problems(
    frames: Mapping[str, pd.DataFrame],
    untrusted: Collection[tuple[str, str]] = (),
    *,
    now: pd.Timestamp | None = None,
) -> tuple[list[Problem], list[Problem]]:
    """Values of the right type that cannot be true, and values that are merely unusual.

    ``frames`` are conformed tables (:func:`cadence.data.schemas.conform_table`);
    columns in ``untrusted`` (already reported) are skipped. Problems name the
    table, column and row count, never a value (ids and birth dates are personal).

    Returns
    -------
    (problems, warnings)
        Problems reject the data; warnings accept it (orders or events
        dated before the customer's ``signup_at``, empty tables).

    Examples
    --------
    >>> import pandas as pd
    >>> orders = pd.DataFrame({"order_id": ["o1"], "customer_id": ["c1"],
    ...                        "ts": pd.to_datetime(["2200-01-01"], utc=True), "revenue": [float("inf")]})
    >>> [str(p) for p in plausibility_problems({"orders": orders})[0]]
    ['orders.ts: timestamp in the future (1 row)', 'orders.revenue: value not finite (1 row)']
    """
    now = pd.Timestamp.now(tz="UTC") if now is None else now
    problems: list[Problem] = []
    warned: list[Problem] = []
    for name, frame in frames.items():
        if name not in TABLES:
            continue
        for col in TABLES[name].columns:
            if col.name not in frame.columns or (name, col.name) in untrusted:
                continue
            s = frame[col.name]
            if col.kind == "timestamp":
                problems += _when(name, col.name, s < EARLIEST, f"timestamp before {EARLIEST:%Y-%m-%d}, implausible")
                problems += _when(name, col.name, s > now + FUTURE_SLACK, "timestamp in the future")
            elif col.kind == "date":
                d = pd.to_datetime(s, errors="coerce")
                problems += _when(name, col.name, d > now.tz_localize(None), "date in the future")
                problems += _when(name, col.name, d < pd.Timestamp(EARLIEST_BIRTH), f"date before {EARLIEST_BIRTH}")
            elif col.kind == "float":
                problems += _when(name, col.name, np.isinf(s.astype("float64")), "value not finite")
    problems += _customer_problems(frames.get("customers"), untrusted)
    problems += _message_problems(frames, untrusted)
    warned += _before_signup(frames, untrusted)
    for name, frame in frames.items():
        if name in TABLES and len(frame) == 0:
            warned.append(Problem(name, None, "empty table", 0))
    return problems, warned


def _when(table: str, column: str, mask: pd.Series, problem: str) -> list[Problem]:
    n = _rows(mask.fillna(False) if hasattr(mask, "fillna") else mask)
    return [Problem(table, column, problem, n)] if n else []


def _customer_problems(customers: pd.DataFrame | None, untrusted: Collection[tuple[str, str]]) -> list[Problem]:
    if customers is None or "timezone" not in customers.columns or ("customers", "timezone") in untrusted:
        return []
    zones = customers["timezone"]
    unknown = zones.notna() & ~zones.isin(_known_zones())
    # The zone name is not shown: with few customers per zone it narrows down who.
    return _when("customers", "timezone", unknown, "unknown IANA time zone")


@functools.cache
def _known_zones() -> frozenset[str]:
    # Cached: listing the zone database walks the file system (a third of a check).
    import zoneinfo

    return frozenset(zoneinfo.available_timezones()) | {"UTC"}


def _message_problems(frames: Mapping[str, pd.DataFrame], untrusted: Collection[tuple[str, str]]) -> list[Problem]:
    m = frames.get("messages")
    if m is None:
        return []
    ok = {c for c in m.columns if ("messages", c) not in untrusted}
    problems = []
    if "propensity" in ok:
        # Zero and below are out of range already (reported once, there).
        p = m["propensity"]
        problems += _when("messages", "propensity", (p > 0) & (p < PROPENSITY_FLOOR),
                          f"propensity below {PROPENSITY_FLOOR:g}, too small to weight by")
    for later, earlier in _MESSAGE_ORDER:
        if {later, earlier} <= ok:
            problems += _when("messages", later, m[later] < m[earlier], f"before {earlier}")
    orders = frames.get("orders")
    if (orders is not None and {"converted_order_id", "customer_id"} <= ok
            and {"order_id", "customer_id"} <= set(orders.columns)):
        owner = orders.drop_duplicates("order_id").set_index("order_id")["customer_id"]
        credited = m["converted_order_id"].map(owner)
        other = credited.notna() & m["converted_order_id"].notna() & credited.ne(m["customer_id"])
        customers = frames.get("customers")
        if customers is not None and "customer_id" in customers.columns:
            # A message of an unknown customer is reported as that, not again here.
            other &= m["customer_id"].isin(customers["customer_id"])
        problems += _when("messages", "converted_order_id", other, "an order of another customer")
    return problems


#: Tables whose rows a customer does, timed by ``ts``: checked against the customer's ``signup_at``.
_ACTIVITY = ("orders", "events")


def _before_signup(frames: Mapping[str, pd.DataFrame], untrusted: Collection[tuple[str, str]]) -> list[Problem]:
    """Warnings: orders and events dated before their customer's ``signup_at``.

    A warning, not a problem: it can be true (a guest checkout or anonymous
    browsing linked to the account created later), but it is also what a
    shifted clock or a swapped column looks like, and tenure features then
    start before the customer exists.
    """
    customers = frames.get("customers")
    if (customers is None or not {"customer_id", "signup_at"} <= set(customers.columns)
            or {("customers", "customer_id"), ("customers", "signup_at")} & set(untrusted)):
        return []
    signup = customers.drop_duplicates("customer_id").set_index("customer_id")["signup_at"]
    warned = []
    for name in _ACTIVITY:
        frame = frames.get(name)
        if (frame is None or not {"customer_id", "ts"} <= set(frame.columns)
                or {(name, "customer_id"), (name, "ts")} & set(untrusted)):
            continue
        since = frame["customer_id"].map(signup)
        warned += _when(name, "ts", frame["ts"] < since, "before the customer's signup_at")
    return warned


#: What a text-stored value of each kind is called in a warning.
_STORED_AS_TEXT = {"int": "numbers", "float": "numbers", "bool": "booleans", "timestamp": "timestamps"}


def _storage_warnings(raw: Mapping[str, pd.DataFrame], frames: Mapping[str, pd.DataFrame]) -> list[Problem]:
    """Columns that conformed but were stored unusually: text for numbers, other time zones."""
    warned = []
    for name in frames:
        df = raw[name]
        for col in TABLES[name].columns:
            if col.name not in df.columns or not len(df):
                continue
            s = df[col.name]
            if col.kind in _STORED_AS_TEXT and s.dtype == object and s.map(type, na_action="ignore").eq(str).any():
                what = f"{_STORED_AS_TEXT[col.kind]} stored as text, read as {_STORED_AS_TEXT[col.kind]}"
                warned.append(Problem(name, col.name, what, _rows(s.notna())))
            elif isinstance(s.dtype, pd.DatetimeTZDtype) and str(s.dtype.tz) != "UTC":
                warned.append(Problem(name, col.name, f"time zone {s.dtype.tz}, converted to UTC", _rows(s.notna())))
    return warned


# --------------------------------------------------------------------------- directories


def validate_dir(data_dir: PathLike) -> list[Problem]:
    """Read a data directory and return every contract problem in it.

    Problems of the directory itself come first: a missing ``customers``
    table, a file that cannot be read (its table is then skipped), a file or
    folder that is not a contract table, a table stored twice. Names starting
    with ``.`` or ``_`` (hidden files, Spark's ``_SUCCESS``) are ignored.

    Examples
    --------
    >>> import tempfile, pandas as pd
    >>> d = tempfile.mkdtemp()
    >>> pd.DataFrame({"customer_id": ["c1"], "signup_at": ["2024-01-01"]}).to_csv(
    ...     f"{d}/customers.csv", index=False)
    >>> print(format_problems(validate_dir(d)))
    customers.signup_at: timestamp without time zone (1 row)
    """
    return inspect_dir(data_dir).problems


def inspect_dir(data_dir: PathLike, *, now: pd.Timestamp | None = None) -> Inspection:
    """Read a data directory and check it like :func:`validate_dir`, keeping the conformed frames.

    Examples
    --------
    >>> import tempfile
    >>> [str(p) for p in inspect_dir(tempfile.mkdtemp()).problems]  # doctest: +ELLIPSIS
    ['customers: missing required table (looked for ...)']
    """
    base = Path(data_dir)
    try:
        found = list_tables(base)
    except DataDirError as err:
        return Inspection([Problem(str(base), None, str(err), 0)], [], {})
    problems = [
        Problem(t, None, f"missing required table (looked for {t}.parquet, {t}/ and {t}.csv)", 0)
        for t in REQUIRED_TABLES
        if t not in found
    ]
    problems += _stray_entries(base, found)
    tables = {}
    for name, path in found.items():
        try:
            tables[name] = _read(base, name)
        # Any failure to parse a file (Arrow, CSV, encoding, I/O) is a
        # problem of the data to report, not a crash of the validator.
        except Exception as err:  # noqa: BLE001
            problems.append(Problem(name, None, f"unreadable file {path.name}: {err}", 0))
    inspection = inspect_tables(tables, now=now)
    return Inspection(problems + inspection.problems, inspection.warnings, inspection.frames)


def _read(base: Path, name: str) -> pd.DataFrame:
    with warnings.catch_warnings():
        # io parses CSV timestamps without utc=True; mixed offsets then warn
        # and stay objects, which conforming converts to UTC.
        warnings.filterwarnings("ignore", message=".*mixed time zones", category=FutureWarning)
        return read_tables(base, [name])[name]


def _stray_entries(base: Path, found: Mapping[str, Path]) -> list[Problem]:
    problems = []
    for entry in sorted(base.iterdir()):
        if entry.name.startswith((".", "_")) or entry in found.values():
            continue
        stem = entry.stem if entry.suffix in (".parquet", ".csv") else entry.name
        if stem in found:
            what = f"ignored {entry.name}: the table is read from {found[stem].name}"
            problems.append(Problem(stem, None, what, 0))
        elif stem in TABLES:
            what = f"cannot read {entry.name} (expected {stem}.parquet, a folder of .parquet parts or {stem}.csv)"
            problems.append(Problem(stem, None, what, 0))
        else:
            problems.append(Problem(entry.name, None, "unknown file, not a contract table", 0))
    return problems


# --------------------------------------------------------------------------- guards for stages


def check_tables(tables: Mapping[str, pd.DataFrame]) -> None:
    """Raise :class:`ContractError` if ``tables`` break the contract.

    Examples
    --------
    >>> import pandas as pd
    >>> customers = pd.DataFrame({"customer_id": ["c1", "c1"],
    ...     "signup_at": pd.to_datetime(["2024-01-01"] * 2, utc=True)})
    >>> try:
    ...     check_tables({"customers": customers})
    ... except ContractError as err:
    ...     print(err)
    data does not meet the contract (1 problem):
      customers.customer_id: duplicate key (2 rows)
    """
    problems = validate_tables(tables)
    if problems:
        raise ContractError(problems)


def check_dir(data_dir: PathLike) -> None:
    """Raise :class:`ContractError` if the data directory breaks the contract.

    Examples
    --------
    >>> import tempfile
    >>> try:
    ...     check_dir(tempfile.mkdtemp())
    ... except ContractError as err:
    ...     print(err)
    data does not meet the contract (1 problem):
      customers: missing required table (looked for customers.parquet, customers/ and customers.csv)
    """
    problems = validate_dir(data_dir)
    if problems:
        raise ContractError(problems)
