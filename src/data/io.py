"""Reading and writing data directories; the only module that touches paths.

A *data directory* holds one file per contract table, named after the table:
``customers.parquet`` or ``customers.csv`` (or a folder ``customers/`` of
Parquet parts, as large exports come). Outputs are written atomically: into a
temporary sibling first, then moved into place (:func:`atomic_path`), so a
crash never leaves a half-written table. A file replaces a file with one
:func:`os.replace`; a folder replaces a folder by rename-aside, rename-in,
delete, and carries the :data:`OUTPUT_MARKER` that lets a later run replace it
(:func:`check_output_dir` is the preflight every command that writes a folder
runs first; :func:`sweep_temporaries` cleans up after killed runs).

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
import datetime as dt
import hashlib
import importlib.metadata
import json
import os
import re
import secrets
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

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


def _check_separator(path: Path, table: Table) -> None:
    """Refuse a CSV whose header is split by another separator than a comma, with a hint.

    Without this, a semicolon CSV (what spreadsheets write where the decimal
    mark is a comma) reads as one column and is reported as "missing columns".
    It is refused rather than read, because such files often write 12,5 for
    12.5 too.
    """
    with path.open(encoding="utf-8", errors="replace") as f:
        header = f.readline()
    names = {c.name for c in table.columns}
    if any(n in header.split(",") for n in names):
        return
    for sep, called in ((";", "semicolon"), ("\t", "tab"), ("|", "pipe")):
        if sum(n.strip().strip('"') in names for n in header.split(sep)) >= 2:
            raise DataDirError(
                f"{path.name} is {called}-separated; cadence reads comma-separated CSV "
                f"(decimal point '.'): re-save it with ',' as the separator, or as Parquet"
            )


def _read_csv(path: Path, table: Table) -> pd.DataFrame:
    # Read everything as text first; schemas coerce and report type problems
    # per column instead of pandas guessing (and silently dropping zeros).
    _check_separator(path, table)
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


# --------------------------------------------------------------------------- outputs

#: The file that marks a folder as written by Cadence (see :func:`output_marker`).
OUTPUT_MARKER = ".cadence-output"
#: Temporaries of a host we cannot check for live processes are swept only after this long.
FOREIGN_STALE_SECONDS = 7 * 24 * 3600
#: Temporaries named by earlier versions (no owner recorded) are swept only after this long.
LEGACY_STALE_SECONDS = 24 * 3600
# .<name>.cadence-<tmp|old>-<host>-<pid>-<random>: the owner is in the name so a sweep can ask if it lives.
_TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.cadence-(?P<kind>tmp|old)-(?P<host>[0-9a-f]{8})-(?P<pid>\d+)-[a-z0-9_]+$")
# What tempfile.mkdtemp(prefix=".<name>.") named the temporaries before owners were recorded.
_LEGACY_TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.[a-z0-9_]{8}$")


class OutputError(ValueError):
    """An output path that Cadence refuses to write to (the message names the path and why)."""


def host_token() -> str:
    """Eight hex digits of a hash of this machine's name: which host owns a temporary.

    The name itself is not written anywhere.

    >>> len(host_token())
    8
    """
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (True when unsure, so nothing live is swept).

    >>> pid_alive(os.getpid())
    True
    """
    if pid == os.getpid():
        return True
    if os.name != "posix":  # os.kill(pid, 0) is not a probe on Windows
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, under another user
        return True
    return True


def output_marker(folder: PathLike) -> dict[str, Any] | None:
    """The marker of a folder Cadence wrote, or None when the folder carries none.

    The marker is ``<folder>/.cadence-output``, a small JSON object written
    with the folder and moved into place with it::

        {"cadence_output": 1, "command": "cadence generate",
         "written_at": "2026-01-02T03:04:05Z", "cadence_version": "0.1.0"}

    ``command`` is the program and its sub-command (never paths or other
    arguments); ``written_at`` is UTC. Nothing about the data is recorded.

    Examples
    --------
    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> output_marker(d) is None
    True
    >>> with atomic_path(f"{d}/out") as tmp:
    ...     tmp.mkdir()
    >>> output_marker(f"{d}/out")["cadence_output"]
    1
    """
    path = Path(folder) / OUTPUT_MARKER
    if not path.is_file() or path.is_symlink():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("cadence_output") == 1 else None


def is_own_output(folder: PathLike) -> bool:
    """Whether ``folder`` is an earlier Cadence output that a new run may replace.

    True when it carries the :data:`OUTPUT_MARKER`, or is a synthetic shop
    generated before markers existed (its ``_truth/shop.json`` names the
    generator).

    >>> import tempfile
    >>> is_own_output(tempfile.mkdtemp())
    False
    """
    base = Path(folder)
    if output_marker(base) is not None:
        return True
    legacy = base / "_truth" / "shop.json"
    try:
        return json.loads(legacy.read_text()).get("generator") in ("cadence.synthetic", "cadence.data.synthetic")
    except (OSError, ValueError, AttributeError):
        return False


def _marker_text() -> str:
    argv = sys.argv or [""]
    command = Path(argv[0]).name or "python"
    if len(argv) > 1 and argv[1].isidentifier():  # a sub-command, never a path or a value
        command += f" {argv[1]}"
    try:
        version = importlib.metadata.version("cadence")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    written_at = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return json.dumps({"cadence_output": 1, "command": command, "written_at": written_at,
                       "cadence_version": version}, indent=2) + "\n"


def _never_written(path: Path) -> str | None:
    """Why ``path`` (resolved) may never be replaced by a folder, whatever the options; else None."""
    cwd = Path.cwd().resolve()
    home = Path.home().resolve()
    if path == cwd:
        return "is the current folder"
    if cwd.is_relative_to(path):
        return "contains the current folder"
    if path.parent == path:
        return "is the filesystem root"
    if path == home:
        return "is your home folder"
    if home.is_relative_to(path):
        return "contains your home folder"
    return None


def check_output_dir(out: PathLike, inputs: Iterable[PathLike] = (), *, overwrite: bool = False) -> Path:
    """Refuse an output folder whose replacement could lose data; return it as a Path.

    A command that writes a folder calls this before any work. Refused always
    (``overwrite`` or not): the current folder or one containing it, the
    filesystem root, the home folder or one containing it, a symbolic link, a
    path that is a file, an input folder, a folder containing an input, and
    a folder inside an input (inputs are never written to). Refused unless
    ``overwrite``: an existing non-empty folder that is not Cadence's own
    output (:func:`is_own_output`). Accepted: a new path, an empty folder,
    an earlier Cadence output.

    Raises
    ------
    OutputError
        One line naming the path and the reason.

    Examples
    --------
    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> check_output_dir(d / "new").name
    'new'
    >>> (d / "notes.txt").write_text("mine")
    4
    >>> try:
    ...     check_output_dir(d)
    ... except OutputError as e:
    ...     print(str(e).split("; ")[0].split(" is ")[1])
    not empty and not a cadence output (no .cadence-output marker)
    >>> check_output_dir(d, overwrite=True) == d
    True
    """
    out = Path(out)
    label = f"output folder {str(out)!r}"
    if out.is_symlink():
        raise OutputError(f"{label} is a symbolic link; give the folder it points to, or a new one")
    real = out.expanduser().resolve()
    reason = _never_written(real)
    if reason is not None:
        raise OutputError(f"{label} {reason}; writing it would delete what is there: choose a new or empty folder")
    for source in inputs:
        src = Path(source).expanduser().resolve()
        where = ("is the input folder" if real == src else "contains the input folder" if src.is_relative_to(real)
                 else "is inside the input folder" if real.is_relative_to(src) else None)
        if where is not None:
            raise OutputError(f"{label} {where} {str(source)!r}; inputs are never written to: "
                              f"choose a folder outside it")
    if real.exists() and not real.is_dir():
        raise OutputError(f"{label} exists and is a file, not a folder; choose another path")
    if real.is_dir() and any(real.iterdir()) and not is_own_output(real) and not overwrite:
        raise OutputError(f"{label} is not empty and not a cadence output (no {OUTPUT_MARKER} marker); "
                          f"pass --overwrite to replace it, or choose a new or empty folder")
    return out


def _temporary_owner_dead(entry: Path, match: re.Match[str], now: float) -> bool:
    age = now - entry.lstat().st_mtime
    if match.re is _LEGACY_TEMP_NAME:
        # Earlier versions' temporaries: a folder holding only the output's name, a day old.
        return entry.is_dir() and {p.name for p in entry.iterdir()} <= {match["name"]} and age > LEGACY_STALE_SECONDS
    if match["host"] != host_token():
        return age > FOREIGN_STALE_SECONDS  # another machine's run: we cannot ask whether it lives
    return not pid_alive(int(match["pid"]))


def sweep_temporaries(parent: PathLike) -> list[Path]:
    """Clean up after killed writes into ``parent``; return the paths removed or restored.

    A temporary sibling ``.<name>.cadence-tmp-<host>-<pid>-<random>`` (a new
    output being written) or ``.<name>.cadence-old-<host>-<pid>-<random>``
    (an old output set aside) belongs to the run with that pid on the host
    of that hash. It is swept only when its owner cannot be running: same
    host and the pid is gone; another host's after
    :data:`FOREIGN_STALE_SECONDS`; an earlier version's ``.<name>.XXXXXXXX``
    after :data:`LEGACY_STALE_SECONDS`. A live run's temporaries are never
    touched (a recycled pid only delays the sweep). A set-aside old output
    whose ``<name>`` is missing (the run died between its two renames) is
    renamed back to ``<name>``, whole; every other stale one is deleted.

    Examples
    --------
    >>> import tempfile
    >>> sweep_temporaries(tempfile.mkdtemp())
    []
    """
    base = Path(parent)
    if not base.is_dir():
        return []
    now = time.time()
    stale = []
    for entry in sorted(base.iterdir()):
        match = _TEMP_NAME.match(entry.name) or _LEGACY_TEMP_NAME.match(entry.name)
        try:
            if match is not None and not entry.is_symlink() and _temporary_owner_dead(entry, match, now):
                stale.append((entry, match))
        except FileNotFoundError:  # another run swept it meanwhile
            continue
    # Restore set-aside outputs first, so that deleting a dead run's new copy never leaves no output.
    stale.sort(key=lambda em: em[1].re is not _TEMP_NAME or em[1]["kind"] != "old")
    swept = []
    for entry, match in stale:
        target = base / match["name"]
        try:
            if match.re is _TEMP_NAME and match["kind"] == "old" and not target.exists() and not target.is_symlink():
                os.rename(entry, target)
            elif entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        except OSError:  # a concurrent sweep or write got there first; the write goes on
            continue
        swept.append(entry)
    return swept


def _aside_name(target: Path) -> Path:
    while True:
        aside = target.with_name(f".{target.name}.cadence-old-{host_token()}-{os.getpid()}-{secrets.token_hex(4)}")
        if not aside.exists():
            return aside


def _move_into_place(new: Path, target: Path) -> None:
    """Put ``new`` at ``target`` so that the path holds the old or the new output, whole, until it holds the new.

    A file replaces a file with one :func:`os.replace` (atomic). A folder
    cannot replace a non-empty folder in one step, so: (1) rename the old
    folder aside, (2) rename the new one in, (3) delete the old one. Between
    (1) and (2) the path is missing and the old output is whole at its
    ``.cadence-old-`` sibling, which :func:`sweep_temporaries` renames back.
    """
    if new.is_dir():
        if target.is_symlink() or (target.exists() and not target.is_dir()):
            raise OutputError(f"output folder {str(target)!r} exists and is not a folder; not replacing it")
    elif target.is_dir() and not target.is_symlink():
        raise OutputError(f"output file {str(target)!r} is a folder; not replacing it")
    if not new.is_dir() or not target.exists():
        os.replace(new, target)  # atomic for files; a folder onto a missing (or empty) one
        return
    aside = _aside_name(target)
    os.rename(target, aside)  # step 1: the old output, whole, at its aside name
    try:
        os.rename(new, target)  # step 2: the new output, whole, at the path
    except OSError:
        if not target.exists():
            os.rename(aside, target)  # put the old one back; the caller sees the error
        raise
    shutil.rmtree(aside)  # step 3: only now is the old output deleted


@contextlib.contextmanager
def atomic_path(target: PathLike, *, mark: bool = True) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; move it into place on success.

    Works for files and folders alike. First sweeps what killed writes left
    in the parent (:func:`sweep_temporaries`). A folder gets the
    :data:`OUTPUT_MARKER` (unless ``mark`` is False) and replaces an existing
    folder by rename-aside, rename-in, delete (see :func:`check_output_dir`
    for which folders a command may replace; this function refuses only the
    current folder, the root and home, and a change between file and folder).
    On an exception the temporary is removed and ``target`` is left as it was.

    Examples
    --------
    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> with atomic_path(f"{d}/out") as tmp:
    ...     tmp.mkdir()
    ...     _ = (tmp / "a.txt").write_text("new")
    >>> sorted(p.name for p in Path(d, "out").iterdir())
    ['.cadence-output', 'a.txt']
    """
    target = Path(os.path.abspath(target))  # "." and ".." get a name; symlinks are not followed
    if target.is_dir() and not target.is_symlink() and (reason := _never_written(target.resolve())) is not None:
        raise OutputError(f"output {str(target)!r} {reason}; not replacing it")
    target.parent.mkdir(parents=True, exist_ok=True)
    sweep_temporaries(target.parent)
    prefix = f".{target.name}.cadence-tmp-{host_token()}-{os.getpid()}-"
    tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=target.parent)) / target.name
    try:
        yield tmp
        if mark and tmp.is_dir():
            (tmp / OUTPUT_MARKER).write_text(_marker_text(), encoding="utf-8")
        _move_into_place(tmp, target)
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


def write_tables(tables: Mapping[str, pd.DataFrame | pa.Table], out_dir: PathLike, *, mark: bool = True) -> None:
    """Write several tables into ``out_dir`` as ``<name>.parquet``, all or nothing.

    The whole folder is assembled in a temporary sibling and swapped in at
    the end (:func:`atomic_path`), so readers never see a mix of old and new
    tables. ``mark=False`` leaves out the :data:`OUTPUT_MARKER` (for
    reference data kept in git, which is an input rather than an output).
    """
    with atomic_path(out_dir, mark=mark) as tmp:
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
