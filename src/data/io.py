"""Reading and writing data directories; the only module that touches paths.

A *data directory* holds one file per contract table, named after the table:
``customers.parquet`` or ``customers.csv`` (or a folder ``customers/`` of
Parquet parts, as large exports come). Outputs are written atomically: into a
temporary sibling first, then moved into place with :func:`os.replace`, so a
crash never leaves a half-written table.

Examples
--------
>>> import tempfile, pandas as pd
>>> d = tempfile.mkdtemp()
>>> write_table(pd.DataFrame({"a": [1]}), f"{d}/t.parquet")
>>> read_table(f"{d}/t.parquet")["a"].tolist()
[1]
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from cadence.contract.tables import TABLES, Table

PathLike = str | os.PathLike[str]

#: Parquet options that make the same table give the same bytes.
PARQUET_OPTIONS: dict[str, object] = {"compression": "zstd", "write_statistics": True}


class DataDirError(ValueError):
    """A data directory cannot be read as contract tables."""


def table_path(data_dir: PathLike, table: str) -> Path | None:
    """Return the file or folder that holds ``table`` in ``data_dir``, or None."""
    base = Path(data_dir)
    for candidate in (base / f"{table}.parquet", base / table, base / f"{table}.csv"):
        if candidate.is_file() or (candidate.is_dir() and any(candidate.glob("*.parquet"))):
            return candidate
    return None


def list_tables(data_dir: PathLike) -> dict[str, Path]:
    """Map each contract table present in ``data_dir`` to its path."""
    base = Path(data_dir)
    if not base.is_dir():
        raise DataDirError(f"data directory {str(base)!r} does not exist or is not a folder")
    found = {}
    for name in TABLES:
        p = table_path(base, name)
        if p is not None:
            found[name] = p
    return found


def _read_csv(path: Path, table: Table) -> pd.DataFrame:
    # Read everything as text first; schemas coerce and report type problems
    # per column instead of pandas guessing (and silently dropping zeros).
    df = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    for col in table.columns:
        if col.name not in df.columns:
            continue
        s = df[col.name]
        if col.kind in ("int", "float"):
            parsed = pd.to_numeric(s, errors="coerce")
            # Keep the text when any value fails to parse, so the schema names the rows.
            if not (s.notna() & parsed.isna()).any():
                df[col.name] = parsed
        elif col.kind == "bool":
            lowered = s.str.lower()
            mapping = {"true": True, "false": False, "1": True, "0": False}
            if lowered.dropna().isin(list(mapping)).all():
                df[col.name] = lowered.map(mapping).astype("boolean")
        elif col.kind == "timestamp":
            parsed = pd.to_datetime(s, errors="coerce", utc=False, format="ISO8601")
            if parsed.notna().sum() == s.notna().sum():
                df[col.name] = parsed
        elif col.kind == "date":
            parsed = pd.to_datetime(s, errors="coerce", format="ISO8601")
            if parsed.notna().sum() == s.notna().sum():
                df[col.name] = parsed.dt.date.astype("object").where(parsed.notna(), None)  # type: ignore[call-overload]
    return df


def read_table(path: PathLike, table: str | None = None, columns: list[str] | None = None) -> pd.DataFrame:
    """Read one table from a Parquet file, a folder of Parquet parts, or a CSV.

    CSV values are converted to the contract's column kinds when ``table`` is
    given and every value parses; otherwise they stay text so that validation
    can name the offending column.
    """
    p = Path(path)
    if p.is_dir() or p.suffix == ".parquet":
        return pq.read_table(p, columns=columns).to_pandas()
    if p.suffix == ".csv":
        spec = TABLES.get(table or p.stem)
        if spec is None:
            return pd.read_csv(p, usecols=columns)
        df = _read_csv(p, spec)
        return df[columns] if columns else df
    raise DataDirError(f"{str(p)!r}: unsupported file type (expected .parquet or .csv)")


def table_paths(data_dir: PathLike, tables: list[str] | None = None) -> dict[str, Path]:
    """Where each of ``tables`` (default: every table present) lives; a missing one raises :class:`DataDirError`."""
    found = list_tables(data_dir)
    wanted = tables if tables is not None else list(found)
    missing = [t for t in wanted if t not in found]
    if missing:
        raise DataDirError(
            f"data directory {str(data_dir)!r} has no table {', '.join(missing)} "
            f"(looked for <table>.parquet, <table>/ and <table>.csv)"
        )
    return {name: found[name] for name in wanted}


def read_tables(data_dir: PathLike, tables: list[str] | None = None) -> dict[str, pd.DataFrame]:
    """Read the contract tables present in ``data_dir`` (or just ``tables``)."""
    return {name: read_table(path, name) for name, path in table_paths(data_dir, tables).items()}


@contextlib.contextmanager
def atomic_path(target: PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; move it into place on success.

    Works for files and folders alike. On an exception the temporary is
    removed and ``target`` is left as it was.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent)) / target.name
    try:
        yield tmp
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp.parent, ignore_errors=True)


def write_table(df: pd.DataFrame | pa.Table, path: PathLike) -> None:
    """Write a table atomically as Parquet (or CSV when the path ends in .csv)."""
    with atomic_path(path) as tmp:
        if str(path).endswith(".csv"):
            (df.to_pandas() if isinstance(df, pa.Table) else df).to_csv(tmp, index=False)
            return
        arrow = df if isinstance(df, pa.Table) else pa.Table.from_pandas(df, preserve_index=False)
        pq.write_table(arrow, tmp, **PARQUET_OPTIONS)  # type: ignore[arg-type]


def write_tables(tables: Mapping[str, pd.DataFrame | pa.Table], out_dir: PathLike) -> None:
    """Write several tables into ``out_dir`` as ``<name>.parquet``, all or nothing.

    The whole folder is assembled in a temporary sibling and swapped in at
    the end, so readers never see a mix of old and new tables.
    """
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        for name, df in tables.items():
            arrow = df if isinstance(df, pa.Table) else pa.Table.from_pandas(df, preserve_index=False)
            pq.write_table(arrow, tmp / f"{name}.parquet", **PARQUET_OPTIONS)  # type: ignore[arg-type]


def fingerprint(data_dir: PathLike, tables: list[str]) -> str:
    """SHA-256 over the bytes of the files holding ``tables`` (name-ordered)."""
    h = hashlib.sha256()
    for name in sorted(tables):
        path = table_path(data_dir, name)
        if path is None:
            continue
        files = sorted(path.rglob("*.parquet")) if path.is_dir() else [path]
        for f in files:
            h.update(name.encode())
            with open(f, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
    return h.hexdigest()
