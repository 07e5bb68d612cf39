"""The contract gate: what every command that takes a data directory runs first.

:func:`open_gate` reads the directory once, checks it with
:func:`cadence.data.validate.inspect_dir` (the contract, then plausibility
across tables), checks what the command itself needs (non-empty tables, an
``--as-of`` inside the data's span) and raises :class:`ContractError` listing
every problem before any expensive work starts.

What it accepts it hands down *conformed*: the frames are brought to the
contract's dtypes (UTC timestamps, real booleans, numbers), so what was
validated is what the engines read. Commands keep taking a path: when the
stored files already are what the conformed frames say (Parquet with contract
dtypes, every timestamp UTC), the path is the original folder, so data
fingerprints and recorded paths stay those of the user's data; otherwise
(CSV, booleans or numbers stored as text, other time zones, null-typed empty
columns) the conformed tables are written as Parquet to a private temporary
folder that is the path handed down and is deleted when the command ends.
Nothing is ever written into the data directory.

Examples
--------
>>> import tempfile, pandas as pd
>>> d = tempfile.mkdtemp()
>>> pd.DataFrame({"customer_id": ["c1"], "signup_at": ["2024-01-01T00:00:00+01:00"],
...               "opt_in_email": ["false"]}).to_parquet(f"{d}/customers.parquet")
>>> with open_gate(d) as gate:
...     print(gate.conformed_copy, gate.tables["customers"]["opt_in_email"].tolist())
...     print(*gate.warnings, sep="\\n")
True [False]
customers.signup_at: timestamps stored as text, read as timestamps (1 row)
customers.opt_in_email: booleans stored as text, read as booleans (1 row)
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from cadence.contract.tables import TABLES
from cadence.data.io import PARQUET_OPTIONS, PathLike, list_tables
from cadence.data.validate import ContractError, Problem, inspect_dir

#: Tables whose timestamps define the data's span (when things happened;
#: ``signup_at`` and product dates may lie long before the history starts).
SPAN_COLUMNS: tuple[tuple[str, str], ...] = (("events", "ts"), ("orders", "ts"), ("messages", "triggered_at"))
#: An ``--as-of`` later than the data's end by more than this is refused (later but within: a warning).
AS_OF_GRACE = pd.Timedelta(days=366)


@dataclass(frozen=True)
class Gate:
    """A data directory that passed the gate.

    Attributes
    ----------
    source
        The directory the user named.
    data_dir
        What the command reads: ``source`` itself, or a temporary folder of
        the conformed tables as Parquet (``conformed_copy``).
    tables
        The conformed frames, table name to frame.
    warnings
        Valid but unusual data, one :class:`Problem` each.
    span
        First and last timestamp of events, orders and messages, or None.
    """

    source: Path
    data_dir: Path
    tables: Mapping[str, pd.DataFrame]
    warnings: tuple[Problem, ...]
    span: tuple[pd.Timestamp, pd.Timestamp] | None
    conformed_copy: bool


def data_span(tables: Mapping[str, pd.DataFrame]) -> tuple[pd.Timestamp, pd.Timestamp] | None:
    """First and last timestamp of events, orders and messages (None when there are none).

    >>> import pandas as pd
    >>> data_span({"orders": pd.DataFrame({"ts": pd.to_datetime(["2024-01-02", "2024-03-01"], utc=True)})})
    (Timestamp('2024-01-02 00:00:00+0000', tz='UTC'), Timestamp('2024-03-01 00:00:00+0000', tz='UTC'))
    """
    found = [tables[t][c].dropna() for t, c in SPAN_COLUMNS if t in tables and c in tables[t].columns]
    found = [s for s in found if len(s)]
    if not found:
        return None
    return min(s.min() for s in found), max(s.max() for s in found)


def check_as_of(as_of: pd.Timestamp, span: tuple[pd.Timestamp, pd.Timestamp] | None) -> tuple[list[Problem], list[Problem]]:
    """Problems and warnings of a cutoff against the data's span.

    Refused: before the data starts (nothing to learn from) or more than
    :data:`AS_OF_GRACE` after it ends (almost surely a typo, e.g. 2205).
    Warned: after the end but within the grace (scoring "today" on a recent
    export is legitimate; a holdout is then empty).

    >>> import pandas as pd
    >>> span = (pd.Timestamp("2025-01-01", tz="UTC"), pd.Timestamp("2025-12-31", tz="UTC"))
    >>> [str(p) for p in check_as_of(pd.Timestamp("2020-01-01", tz="UTC"), span)[0]]
    ['--as-of: 2020-01-01 00:00:00+00:00 is before the data starts (2025-01-01 00:00:00+00:00)']
    """
    if span is None:
        return [], []
    start, end = span
    if as_of <= start:
        return [Problem("--as-of", None, f"{as_of} is before the data starts ({start})", 0)], []
    if as_of > end + AS_OF_GRACE:
        return [Problem("--as-of", None, f"{as_of} is more than a year after the data ends ({end})", 0)], []
    if as_of > end:
        return [], [Problem("--as-of", None, f"{as_of} is after the data ends ({end}); nothing after it to evaluate on", 0)]
    return [], []


def parse_timestamp(text: str, flag: str) -> pd.Timestamp:
    """A command-line timestamp as UTC (naive means UTC); ValueError with one line otherwise.

    >>> parse_timestamp("2025-03-01", "--as-of")
    Timestamp('2025-03-01 00:00:00+0000', tz='UTC')
    >>> parse_timestamp("garbage", "--since")
    Traceback (most recent call last):
    ...
    ValueError: --since 'garbage' is not a timestamp (expected e.g. 2025-03-01 or 2025-03-01T12:00:00+01:00)
    """
    try:
        ts = pd.Timestamp(text)
    except (ValueError, TypeError, OverflowError):
        ts = pd.NaT
    if ts is pd.NaT or pd.isna(ts):
        raise ValueError(f"{flag} {text!r} is not a timestamp (expected e.g. 2025-03-01 or 2025-03-01T12:00:00+01:00)")
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _stored_as_conformed(raw: pa.Schema, frame: pd.DataFrame, name: str) -> bool:
    """Whether engines reading the stored Parquet see what the conformed frame holds."""
    for col in TABLES[name].columns:
        if col.name not in raw.names:
            continue
        t = raw.field(col.name).type
        ok = {
            "str": pa.types.is_string(t) or pa.types.is_large_string(t),
            "int": pa.types.is_integer(t),
            "float": pa.types.is_floating(t) or pa.types.is_integer(t),
            "bool": pa.types.is_boolean(t),
            "timestamp": pa.types.is_timestamp(t) and str(getattr(t, "tz", None)) in ("UTC", "+00:00", "Etc/UTC"),
            "date": pa.types.is_date(t) or pa.types.is_timestamp(t),
        }[col.kind]
        if not ok:
            return False
    return True


def _needs_copy(source: Path, frames: Mapping[str, pd.DataFrame]) -> bool:
    for name, path in list_tables(source).items():
        if name not in frames:
            continue
        if path.suffix == ".csv":
            return True
        schema = pq.read_schema(next(iter(sorted(path.glob("*.parquet")))) if path.is_dir() else path)
        if not _stored_as_conformed(schema, frames[name], name):
            return True
    return False


@contextlib.contextmanager
def open_gate(
    data_dir: PathLike,
    *,
    needs: Collection[str] = (),
    as_of: pd.Timestamp | None = None,
    now: pd.Timestamp | None = None,
) -> Iterator[Gate]:
    """Check a data directory and yield what the command should read; raise before any work.

    Parameters
    ----------
    data_dir
        The user's data directory (never written to).
    needs
        Tables the command cannot run without; each must be present and non-empty.
    as_of
        The command's cutoff, checked against the data's span (:func:`check_as_of`).
    now
        The present, for "in the future" checks (default: the clock).

    Raises
    ------
    ContractError
        Listing every problem, one line each (table, column, problem, rows).

    Examples
    --------
    >>> import tempfile
    >>> try:
    ...     with open_gate(tempfile.mkdtemp()):
    ...         pass
    ... except ContractError as err:
    ...     print(err.problems[0])  # doctest: +ELLIPSIS
    customers: missing required table (...)
    """
    source = Path(data_dir)
    found = inspect_dir(source, now=now)
    problems = list(found.problems)
    warned = list(found.warnings)
    for name in needs:
        frame = found.frames.get(name)
        if frame is None and not any(p.table == name for p in problems):
            problems.append(Problem(name, None, "missing table this command needs", 0))
        elif frame is not None and len(frame) == 0:
            problems.append(Problem(name, None, "empty table, this command needs rows", 0))
            warned = [w for w in warned if not (w.table == name and w.problem == "empty table")]
    span = data_span(found.frames) if not problems else None
    if as_of is not None and not problems:
        refused, unusual = check_as_of(as_of, span)
        problems += refused
        warned += unusual
    if problems:
        raise ContractError(problems)
    if not _needs_copy(source, found.frames):
        yield Gate(source, source, found.frames, tuple(warned), span, False)
        return
    copy = Path(tempfile.mkdtemp(prefix="cadence-conformed-"))
    try:
        for name, frame in found.frames.items():
            pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), copy / f"{name}.parquet",
                           **PARQUET_OPTIONS)  # type: ignore[arg-type]
        yield Gate(source, copy, found.frames, tuple(warned), span, True)
    finally:
        shutil.rmtree(copy, ignore_errors=True)
