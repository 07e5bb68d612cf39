"""Schemas of the contract tables, built from :data:`cadence.contract.tables.TABLES`.

Column names, kinds, vocabularies and bounds are read from the contract, never
re-spelled here. Checking a table has three layers:

1. :func:`conform_table` (hand-written pandas) brings every column to the
   dtype of its contract kind and reports the rows that cannot be brought
   there: text in a number column, a number in a timestamp column, a naive
   timestamp. It is hand-written because pandera's coercion hides exactly
   these problems: it silently turns integers into epoch timestamps and
   naive timestamps into UTC ones (checked with pandera 0.35).
2. :data:`SCHEMAS` (pandera, run lazily so every failure is collected) checks
   the conformed frame: required columns present, dtypes, nulls, vocabularies
   and numeric bounds. Pandera's failure cases carry the row index, so the
   validator can count rows per problem.
3. Hand-written pandas for rules that span columns or tables, where pandera is
   awkward: :func:`duplicate_key_rows` (pandera's ``unique`` silently checks a
   partial key when a key column is missing and counts null keys as
   duplicates), :func:`rule_violations` (a message sent without ``sent_at`` or
   ``channel``) and :func:`orphan_rows` (foreign keys).

Time zones: a tz-aware timestamp in any zone names one instant, so it is
converted to UTC and accepted; only naive timestamps (and strings without an
offset) are a problem, because their zone is a guess.

Examples
--------
>>> import pandas as pd
>>> df = pd.DataFrame({"order_id": ["o1"], "customer_id": ["c1"],
...                    "ts": ["2024-01-01T10:00:00+01:00"], "revenue": ["12.5"]})
>>> conformed = conform_table("orders", df)
>>> conformed.issues
()
>>> str(conformed.frame["ts"].dtype)
'datetime64[ns, UTC]'
>>> SCHEMAS["orders"].validate(conformed.frame, lazy=True).shape
(1, 4)
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pandera.pandas as pa

from cadence.contract.tables import TABLES, Column, ColumnKind, Table

#: The dtype each contract kind has after :func:`conform_table`. Nullable
#: pandas dtypes keep integers and booleans exact when a column has nulls.
#: Text is declared ``object``, not ``pa.String``: pandera's String check
#: tests every value in Python (three quarters of the time to validate a
#: million events), and :func:`conform_table` already guarantees ``str``.
KIND_DTYPES: dict[ColumnKind, object] = {
    "str": object,
    "int": pd.Int64Dtype(),
    "float": "float64",
    "bool": pd.BooleanDtype(),
    "timestamp": pd.DatetimeTZDtype(unit="ns", tz="UTC"),
    "date": pa.Date,
}

#: Problem text shared by the schema checks and the validator.
UNKNOWN_VALUE = "unknown value"
NAIVE_TIMESTAMP = "timestamp without time zone"

# An ISO time followed by an offset: "…10:00Z", "…10:00:00.5+01:00", "…10:00 +0100".
_OFFSET = re.compile(r"\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?\s*(?:Z|UTC|[+-]\d{2}(?::?\d{2})?)$", re.I)


# --------------------------------------------------------------------------- schemas


def bound_text(col: Column) -> str:
    """Describe a column's numeric bounds, e.g. ``>= 0`` or ``in (0, 1]``.

    Examples
    --------
    >>> bound_text(TABLES["messages"].column("propensity"))
    'in (0, 1]'
    """
    lo, hi = col.min_value, col.max_value
    if lo is not None and hi is not None:
        return f"in {'(' if col.min_exclusive else '['}{lo:g}, {hi:g}]"
    if lo is not None:
        return f"{'>' if col.min_exclusive else '>='} {lo:g}"
    return f"<= {hi:g}"


def _column_checks(col: Column) -> list[pa.Check]:
    checks = []
    if col.allowed is not None:
        checks.append(pa.Check.isin(list(col.allowed), error=UNKNOWN_VALUE))
    lo, hi = col.min_value, col.max_value
    if lo is not None or hi is not None:
        error = f"value out of range, must be {bound_text(col)}"
        if lo is not None and hi is not None:
            checks.append(
                pa.Check.in_range(lo, hi, include_min=not col.min_exclusive, error=error)
            )
        elif lo is not None:
            checks.append(pa.Check.gt(lo, error=error) if col.min_exclusive else pa.Check.ge(lo, error=error))
        else:
            checks.append(pa.Check.le(hi, error=error))
    return checks


def table_schema(table: Table) -> pa.DataFrameSchema:
    """Build the pandera schema of one contract table (for conformed frames).

    Extra columns are allowed: adapters may carry fields the contract does
    not name yet. Primary keys are checked by :func:`duplicate_key_rows`.

    Examples
    --------
    >>> schema = table_schema(TABLES["order_items"])
    >>> sorted(schema.columns)
    ['order_id', 'price', 'product_id', 'quantity']
    """
    return pa.DataFrameSchema(
        {
            c.name: pa.Column(
                KIND_DTYPES[c.kind],
                checks=_column_checks(c),
                nullable=c.nullable,
                required=c.required,
            )
            for c in table.columns
        },
        name=table.name,
        strict=False,
        coerce=False,
    )


#: One pandera schema per contract table, keyed by table name.
SCHEMAS: dict[str, pa.DataFrameSchema] = {name: table_schema(t) for name, t in TABLES.items()}


# --------------------------------------------------------------------------- conforming


@dataclass(frozen=True)
class ColumnIssue:
    """Rows of one column that do not fit its contract kind.

    ``rows`` is a boolean mask over the table's rows.
    """

    column: str
    problem: str
    rows: np.ndarray


@dataclass(frozen=True)
class Conformed:
    """A table brought to contract dtypes, and the rows that resisted.

    ``frame`` has a fresh ``RangeIndex``; offending values are null in it so
    that later checks do not report them twice.
    """

    frame: pd.DataFrame
    issues: tuple[ColumnIssue, ...]


_Issues = list[tuple[str, pd.Series]]


def _example(values: pd.Series) -> str:
    text = repr(values.iloc[0])
    return text if len(text) <= 40 else text[:37] + "..."


def _wrong_type(kind: str, s: pd.Series, bad: pd.Series) -> tuple[str, pd.Series]:
    got = _example(s[bad]) if s.dtype == object else f"{s.dtype} values"
    return f"wrong type, expected {kind}, got {got}", bad


def _objects(s: pd.Series, keep: pd.Series) -> pd.Series:
    """``s`` as objects, with None (not NaN) where ``keep`` is False."""
    values = s.to_numpy(dtype=object, copy=True)
    values[~keep.to_numpy(dtype=bool)] = None
    return pd.Series(values, index=s.index, dtype=object)


def _plain(s: pd.Series) -> pd.Series:
    # Categoricals and pandas/arrow string dtypes become plain objects so each
    # kind below handles three cases only: its own dtype, object, other.
    if isinstance(s.dtype, pd.CategoricalDtype | pd.StringDtype | pd.ArrowDtype):
        return _objects(s, s.notna())
    return s


def _is_numeric(s: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)


def _where_true(s: pd.Series, predicate: Callable[[object], bool]) -> pd.Series:
    return s.map(predicate, na_action="ignore").eq(True)


def _conform_str(s: pd.Series) -> tuple[pd.Series, _Issues]:
    if s.dtype == object and pd.api.types.infer_dtype(s, skipna=True) in ("string", "empty"):
        return s, []
    if s.dtype != object:
        return pd.Series(None, index=s.index, dtype=object), [_wrong_type("text", s, s.notna())]
    is_str = _where_true(s, lambda v: isinstance(v, str))
    return _objects(s, is_str), [_wrong_type("text", s, s.notna() & ~is_str)]


def _to_number(s: pd.Series, kind: str) -> tuple[pd.Series, _Issues]:
    """Numbers as float64; text that parses as a number is accepted."""
    if _is_numeric(s):
        return s.astype("float64"), []
    if s.dtype != object:
        return pd.Series(np.nan, index=s.index), [_wrong_type(kind, s, s.notna())]
    # to_numeric would read True as 1; a boolean is not a number here.
    is_bool = _where_true(s, lambda v: isinstance(v, bool | np.bool_))
    num = pd.to_numeric(s.where(~is_bool), errors="coerce").astype("float64")
    bad = s.notna() & num.isna()
    return num, [_wrong_type(kind, s, bad)] if bad.any() else []


def _conform_float(s: pd.Series) -> tuple[pd.Series, _Issues]:
    return _to_number(s, "float")


def _conform_int(s: pd.Series) -> tuple[pd.Series, _Issues]:
    if pd.api.types.is_integer_dtype(s):
        return s.astype("Int64"), []
    num, issues = _to_number(s, "int")
    fractional = num.notna() & ((num % 1 != 0) | np.isinf(num))
    if fractional.any():
        issues.append(_wrong_type("int", s, fractional))
        num = num.where(~fractional)
    return num.astype("Int64"), issues


_BOOL_TEXT = {"true": True, "false": False, "1": True, "0": False}


def _to_bool(v: object) -> bool | None:
    if isinstance(v, bool | np.bool_):
        return bool(v)
    if isinstance(v, str):
        return _BOOL_TEXT.get(v.strip().lower())
    if isinstance(v, int | float) and v in (0, 1):
        return bool(v)
    return None


def _conform_bool(s: pd.Series) -> tuple[pd.Series, _Issues]:
    if pd.api.types.is_bool_dtype(s):
        return s.astype("boolean"), []
    if s.dtype == object:
        out = s.map(_to_bool, na_action="ignore").astype("boolean")
    elif _is_numeric(s):
        # 0/1 integers are how some exports spell booleans.
        out = s.where(s.isin([0, 1])).astype("boolean")
    else:
        out = pd.Series(pd.NA, index=s.index, dtype="boolean")
    bad = s.notna() & out.isna()
    return out, [_wrong_type("bool", s, bad)] if bad.any() else []


_TS_RANGE = (pd.Timestamp.min.tz_localize("UTC"), pd.Timestamp.max.tz_localize("UTC"))


def _utc(s: pd.Series) -> tuple[pd.Series, _Issues]:
    s = s.dt.tz_convert("UTC")
    # Parquet often stores microseconds; beyond 1677..2262 they have no ns form.
    outside = (s < _TS_RANGE[0]) | (s > _TS_RANGE[1])
    issues: _Issues = [("timestamp out of range (years 1677 to 2262)", outside)] if outside.any() else []
    return s.where(~outside).dt.as_unit("ns"), issues


def _conform_timestamp(s: pd.Series) -> tuple[pd.Series, _Issues]:
    if isinstance(s.dtype, pd.DatetimeTZDtype):
        return _utc(s)
    if pd.api.types.is_datetime64_dtype(s):
        # Read naive values as UTC so later checks see them, but report them:
        # which zone they were written in is unknown.
        out, issues = _utc(s.dt.tz_localize("UTC"))
        return out, [(NAIVE_TIMESTAMP, s.notna()), *issues]
    if s.dtype != object:
        empty = pd.Series(pd.NaT, index=s.index, dtype="datetime64[ns, UTC]")
        return empty, [_wrong_type("timestamp", s, s.notna())]
    return _conform_timestamp_objects(s)


def _timestamp_form(v: object) -> str:
    if isinstance(v, str):
        return "str"
    if isinstance(v, dt.datetime):
        return "naive" if v.tzinfo is None else "aware"
    return "other"


def _conform_timestamp_objects(s: pd.Series) -> tuple[pd.Series, _Issues]:
    # Object columns come from CSVs with mixed offsets or unparseable cells and
    # from hand-built frames; classify each value once, then parse per class.
    form = s.map(_timestamp_form, na_action="ignore")
    out = pd.Series(pd.NaT, index=s.index, dtype="datetime64[ns, UTC]")
    text = form.eq("str")
    has_offset = pd.Series(False, index=s.index)
    if text.any():
        out[text] = pd.to_datetime(s[text], utc=True, format="ISO8601", errors="coerce")
        has_offset[text] = s[text].str.strip().str.contains(_OFFSET).to_numpy(dtype=bool)
    moment = form.isin(["naive", "aware"])
    if moment.any():
        out[moment] = pd.to_datetime(s[moment].map(pd.Timestamp), utc=True, errors="coerce")
    bad = s.notna() & out.isna()
    naive = (form.eq("naive") | (text & ~has_offset)) & ~bad
    issues = [_wrong_type("timestamp", s, bad)] if bad.any() else []
    if naive.any():
        issues.append((NAIVE_TIMESTAMP, naive))
    return out, issues


def _conform_date(s: pd.Series) -> tuple[pd.Series, _Issues]:
    if pd.api.types.is_datetime64_any_dtype(s):
        # A date stored as a midnight timestamp is still a date.
        return _objects(s.dt.date, s.notna()), []
    if s.dtype != object:
        return pd.Series(None, index=s.index, dtype=object), [_wrong_type("date", s, s.notna())]
    out = s.map(_to_date, na_action="ignore")
    out = _objects(out, out.notna())
    bad = s.notna() & out.isna()
    return out, [_wrong_type("date", s, bad)] if bad.any() else []


def _to_date(v: object) -> dt.date | None:
    if isinstance(v, dt.datetime):
        return v.date()
    if isinstance(v, dt.date):
        return v
    if isinstance(v, str):
        try:
            return dt.date.fromisoformat(v.strip())
        except ValueError:
            return None
    return None


_CONFORMERS: dict[ColumnKind, Callable[[pd.Series], tuple[pd.Series, _Issues]]] = {
    "str": _conform_str,
    "int": _conform_int,
    "float": _conform_float,
    "bool": _conform_bool,
    "timestamp": _conform_timestamp,
    "date": _conform_date,
}


def conform_table(name: str, df: pd.DataFrame) -> Conformed:
    """Bring ``df``'s contract columns to their kinds' dtypes; never mutates ``df``.

    Timestamps become ``datetime64[ns, UTC]`` (tz-aware values in other zones
    are converted); values that do not fit a column's kind become null in the
    result and are reported as :class:`ColumnIssue`. Columns the contract does
    not name are passed through unchanged.

    Examples
    --------
    >>> import pandas as pd
    >>> c = conform_table("order_items", pd.DataFrame(
    ...     {"order_id": ["o1", "o2"], "product_id": ["p1", "p1"],
    ...      "quantity": ["2", "two"], "price": [9.5, 3.0]}))
    >>> [(i.column, i.problem, int(i.rows.sum())) for i in c.issues]
    [('quantity', "wrong type, expected int, got 'two'", 1)]
    >>> c.frame["quantity"].tolist()
    [2, <NA>]
    """
    table = TABLES[name]
    frame = df.reset_index(drop=True)  # a new frame; columns are replaced, never edited
    issues: list[ColumnIssue] = []
    for col in table.columns:
        if col.name not in frame.columns:
            continue
        converted, found = _CONFORMERS[col.kind](_plain(frame[col.name]))
        frame[col.name] = converted
        issues.extend(ColumnIssue(col.name, p, rows.to_numpy(dtype=bool)) for p, rows in found)
    return Conformed(frame, tuple(i for i in issues if i.rows.any()))


# --------------------------------------------------------------------------- rules across columns


def duplicate_key_rows(name: str, frame: pd.DataFrame) -> np.ndarray | None:
    """Mask of rows whose primary key occurs more than once, or None if unknowable.

    Every row of a repeated key counts (two rows sharing ``o1`` count 2).
    Rows with a null key part are left to the null check. Returns None when a
    key column is missing, because a partial key would report false repeats.

    Examples
    --------
    >>> import pandas as pd
    >>> duplicate_key_rows("orders", pd.DataFrame({"order_id": ["o1", "o1", "o2"]})).tolist()
    [True, True, False]
    """
    key = list(TABLES[name].key)
    if not set(key) <= set(frame.columns):
        return None
    complete = frame[key].notna().all(axis=1)
    return (frame.duplicated(subset=key, keep=False) & complete).to_numpy()


#: Columns a message needs when its action is ``send``.
SEND_REQUIRES: tuple[str, ...] = ("sent_at", "channel")


def rule_violations(name: str, frame: pd.DataFrame) -> list[tuple[str, str, np.ndarray]]:
    """Rows of a conformed table that break a rule spanning columns.

    Today one rule: a message whose action is ``send`` needs ``sent_at`` and
    ``channel``. Returns (column, problem, row mask) per broken rule. Without
    ``action`` nothing is checked (its absence is reported by the schema); an
    absent optional column reads as all null.

    Examples
    --------
    >>> import pandas as pd
    >>> f = pd.DataFrame({"action": ["send", "hold"], "sent_at": [None, None],
    ...                   "channel": ["email", None]})
    >>> [(c, int(m.sum())) for c, _, m in rule_violations("messages", f)]
    [('sent_at', 1)]
    """
    if name != "messages" or "action" not in frame.columns:
        return []
    sent = frame["action"].eq("send").to_numpy(dtype=bool)
    found = []
    for column in SEND_REQUIRES:
        missing = frame[column].isna().to_numpy() if column in frame.columns else True
        mask = sent & missing
        if mask.any():
            found.append((column, "null although action is 'send'", mask))
    return found


def orphan_rows(
    name: str,
    frame: pd.DataFrame,
    tables: Mapping[str, pd.DataFrame],
    untrusted: Collection[tuple[str, str]] = (),
) -> list[tuple[str, str, pd.Series]]:
    """Rows whose foreign key names no row of the referenced table.

    ``tables`` maps names to conformed frames. A reference is checked only
    when the referenced table and both columns are present and the
    referenced (table, column) is not ``untrusted`` (say, its ids had the
    wrong type: every reference would look broken). Null references are fine
    (optional links such as ``events.product_id``). Returns (column,
    referenced ``table.column``, offending values) per foreign key.

    Examples
    --------
    >>> import pandas as pd
    >>> tables = {"customers": pd.DataFrame({"customer_id": ["c1"]})}
    >>> orders = pd.DataFrame({"customer_id": ["c1", "c9", None]})
    >>> [(c, ref, v.tolist()) for c, ref, v in orphan_rows("orders", orders, tables)]
    [('customer_id', 'customers.customer_id', ['c9'])]
    """
    found = []
    for fk in TABLES[name].foreign_keys:
        ref = tables.get(fk.table)
        if (
            ref is None
            or fk.ref_column not in ref.columns
            or fk.column not in frame.columns
            or (fk.table, fk.ref_column) in untrusted
        ):
            continue
        values = frame[fk.column]
        orphan = values.notna() & ~values.isin(ref[fk.ref_column].dropna())
        if orphan.any():
            found.append((fk.column, f"{fk.table}.{fk.ref_column}", values[orphan]))
    return found
