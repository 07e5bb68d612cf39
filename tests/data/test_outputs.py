"""Outputs that are safe: the preflight, the marker, the rename-aside replace, the sweep of killed runs."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

from cadence.data.io import (
    FOREIGN_STALE_SECONDS,
    LEGACY_STALE_SECONDS,
    OUTPUT_MARKER,
    OutputError,
    atomic_path,
    check_output_dir,
    host_token,
    is_own_output,
    output_marker,
    read_table,
    sweep_temporaries,
    write_table,
    write_tables,
)


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (hidden ones too) and its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def tables_of(folder: Path) -> dict[str, bytes]:
    """The files of an output without its marker (which records when it was written)."""
    return {k: v for k, v in snapshot(folder).items() if k != OUTPUT_MARKER}


def dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture
def layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """tmp/home (the home folder), tmp/work (the current folder) holding an input shop and a foreign folder."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    work = tmp_path / "work"
    (work / "data" / "shop").mkdir(parents=True)
    (work / "data" / "shop" / "orders.csv").write_text("order_id\no1\n")
    (work / "notes").mkdir()
    (work / "notes" / "thesis.txt").write_text("three years of work")
    (work / "empty").mkdir()
    (work / "a-file").write_text("x")
    monkeypatch.chdir(work)
    return tmp_path


# Each row: output, inputs, overwrite, the reason in the message. Paths are relative to tmp/work.
REFUSED = [
    (".", [], False, "is the current folder"),
    (".", [], True, "is the current folder"),
    ("..", [], True, "contains the current folder"),
    ("../home", [], True, "is your home folder"),
    ("/", [], True, "contains the current folder"),
    ("data/shop", ["data/shop"], False, "is the input folder 'data/shop'"),
    ("data/shop", ["data/shop"], True, "is the input folder 'data/shop'"),
    ("data", ["data/shop"], True, "contains the input folder 'data/shop'"),
    ("data/shop/_truth", ["data/shop"], True, "is inside the input folder 'data/shop'"),
    ("a-file", [], True, "exists and is a file, not a folder"),
    ("notes", [], False, "is not empty and not a cadence output (no .cadence-output marker); pass --overwrite"),
]


@pytest.mark.parametrize(("out", "inputs", "overwrite", "reason"), REFUSED)
def test_preflight_refuses(layout: Path, out: str, inputs: list[str], overwrite: bool, reason: str) -> None:
    before = snapshot(layout)
    with pytest.raises(OutputError) as err:
        check_output_dir(out, inputs=inputs, overwrite=overwrite)
    message = str(err.value)
    assert message.startswith(f"output folder {out!r} {reason}")
    assert "\n" not in message
    assert snapshot(layout) == before


def test_preflight_refuses_a_symbolic_link(layout: Path) -> None:
    (layout / "work" / "link").symlink_to(layout / "work" / "empty")
    with pytest.raises(OutputError, match="is a symbolic link"):
        check_output_dir("link", overwrite=True)


def test_preflight_accepts_new_empty_own_and_overwritten_folders(layout: Path) -> None:
    assert check_output_dir("new/deeper") == Path("new/deeper")
    assert check_output_dir("empty", inputs=["data/shop"]) == Path("empty")
    assert check_output_dir("notes", overwrite=True) == Path("notes")
    write_tables({"t": pd.DataFrame({"a": [1]})}, "ours")
    assert check_output_dir("ours", inputs=["data/shop"]) == Path("ours")


def test_a_shop_generated_before_markers_counts_as_ours(tmp_path: Path) -> None:
    (tmp_path / "old-shop" / "_truth").mkdir(parents=True)
    (tmp_path / "old-shop" / "orders.parquet").write_bytes(b"x")
    (tmp_path / "old-shop" / "_truth" / "shop.json").write_text(json.dumps({"generator": "cadence.data.synthetic"}))
    assert is_own_output(tmp_path / "old-shop")
    (tmp_path / "old-shop" / "_truth" / "shop.json").write_text(json.dumps({"generator": "someone else"}))
    assert not is_own_output(tmp_path / "old-shop")


def test_the_marker_says_which_command_and_when_and_nothing_else(tmp_path: Path) -> None:
    t0 = dt.datetime.now(dt.UTC).replace(microsecond=0)
    write_tables({"customers": pd.DataFrame({"customer_id": ["c1"], "email": ["a@example.com"]})}, tmp_path / "out")
    marker = output_marker(tmp_path / "out")
    assert marker is not None
    assert set(marker) == {"cadence_output", "command", "written_at", "cadence_version"}
    written = dt.datetime.fromisoformat(marker["written_at"])
    assert written.utcoffset() == dt.timedelta(0) and t0 <= written <= dt.datetime.now(dt.UTC)
    text = (tmp_path / "out" / OUTPUT_MARKER).read_text()
    assert str(tmp_path) not in text and "example.com" not in text
    assert all(os.sep not in part for part in marker["command"].split(" "))


def test_unmarked_writes_and_a_foreign_marker_are_not_ours(tmp_path: Path) -> None:
    write_tables({"t": pd.DataFrame({"a": [1]})}, tmp_path / "ref", mark=False)
    assert sorted(p.name for p in (tmp_path / "ref").iterdir()) == ["t.parquet"]
    (tmp_path / "ref" / OUTPUT_MARKER).write_text('{"something": "else"}')
    assert output_marker(tmp_path / "ref") is None and not is_own_output(tmp_path / "ref")


def test_own_output_is_replaced_whole_and_again(tmp_path: Path) -> None:
    out = tmp_path / "out"
    write_tables({"a": pd.DataFrame({"x": [1]}), "b": pd.DataFrame({"x": [2]})}, out)
    for value in (3, 4):
        write_tables({"a": pd.DataFrame({"x": [value]})}, out)
        assert sorted(p.name for p in out.iterdir()) == [OUTPUT_MARKER, "a.parquet"]
        assert read_table(out / "a.parquet")["x"].tolist() == [value]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporaries left


def test_files_replace_files_and_kinds_never_swap(tmp_path: Path) -> None:
    write_table(pd.DataFrame({"x": [1]}), tmp_path / "t.parquet")
    write_table(pd.DataFrame({"x": [2]}), tmp_path / "t.parquet")
    assert read_table(tmp_path / "t.parquet")["x"].tolist() == [2]
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "keep.txt").write_text("keep")
    with pytest.raises(OutputError, match="is a folder; not replacing it"):
        write_table(pd.DataFrame({"x": [1]}), tmp_path / "folder")
    with pytest.raises(OutputError, match="is not a folder; not replacing it"):
        write_tables({"a": pd.DataFrame({"x": [1]})}, tmp_path / "t.parquet")
    assert (tmp_path / "folder" / "keep.txt").read_text() == "keep"
    assert read_table(tmp_path / "t.parquet")["x"].tolist() == [2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder", "t.parquet"]


def test_the_writer_itself_refuses_the_current_folder(layout: Path) -> None:
    before = snapshot(layout)
    for target in (".", str(layout / "work"), ".."):
        with pytest.raises(OutputError, match="current folder"), atomic_path(target) as tmp:
            tmp.mkdir()
    assert snapshot(layout) == before


def test_an_error_while_writing_leaves_the_old_output_and_no_temporaries(tmp_path: Path) -> None:
    write_tables({"a": pd.DataFrame({"x": [1]})}, tmp_path / "out")
    before = snapshot(tmp_path / "out")
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "out") as tmp:
        tmp.mkdir()
        (tmp / "a.parquet").write_bytes(b"half")
        raise RuntimeError("killed")
    assert snapshot(tmp_path / "out") == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


# --------------------------------------------------------------------------- the sweep

def _temp(parent: Path, name: str, kind: str, pid: int, host: str | None = None, age: float = 0.0) -> Path:
    path = parent / f".{name}.cadence-{kind}-{host or host_token()}-{pid}-abcd1234"
    # A new output is written at <temporary>/<name>; an old one set aside is the output folder itself.
    folder = path / name if kind == "tmp" else path
    folder.mkdir(parents=True)
    (folder / "t.parquet").write_bytes(b"data")
    if age:
        stamp = time.time() - age
        os.utime(path, (stamp, stamp))
    return path


def test_sweep_removes_dead_runs_temporaries_and_never_a_live_runs(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        kept = [
            _temp(tmp_path, "out", "tmp", os.getpid()),  # this process
            _temp(tmp_path, "out", "tmp", live.pid, age=10 * FOREIGN_STALE_SECONDS),  # a live run, however old
            _temp(tmp_path, "out", "old", live.pid),
            _temp(tmp_path, "out", "tmp", dead_pid(), host="0badf00d", age=60),  # another host's, recent
        ]
        legacy_recent = tmp_path / ".out.k2j4h5g6"
        (legacy_recent / "out").mkdir(parents=True)
        kept.append(legacy_recent)
        stale = [
            _temp(tmp_path, "out", "tmp", dead_pid()),
            _temp(tmp_path, "other", "tmp", dead_pid()),
            _temp(tmp_path, "out", "old", dead_pid()),  # out exists: the set-aside copy is deleted
            _temp(tmp_path, "out", "tmp", dead_pid(), host="0badf00d", age=FOREIGN_STALE_SECONDS + 60),
        ]
        legacy_old = tmp_path / ".out.a1b2c3d4"
        (legacy_old / "out").mkdir(parents=True)
        stamp = time.time() - LEGACY_STALE_SECONDS - 60
        os.utime(legacy_old, (stamp, stamp))
        stale.append(legacy_old)
        (tmp_path / ".not-ours.a1b2c3d4").mkdir()  # hidden folder holding something else: not a temporary
        (tmp_path / ".not-ours.a1b2c3d4" / "thing").write_text("x")
        os.utime(tmp_path / ".not-ours.a1b2c3d4", (stamp, stamp))
        assert sorted(sweep_temporaries(tmp_path)) == sorted(stale)
        assert all(p.exists() for p in kept) and not any(p.exists() for p in stale)
        assert (tmp_path / ".not-ours.a1b2c3d4" / "thing").exists()
    finally:
        live.kill()
        live.wait()
    assert sorted(sweep_temporaries(tmp_path)) == sorted(kept[1:3])  # the run has ended


def test_sweep_restores_a_set_aside_output_whose_path_is_missing(tmp_path: Path) -> None:
    pid = dead_pid()
    aside = _temp(tmp_path, "out", "old", pid)
    new = _temp(tmp_path, "out", "tmp", pid)
    (new / "out" / "t.parquet").write_bytes(b"new data")
    assert sorted(sweep_temporaries(tmp_path)) == sorted([aside, new])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert (tmp_path / "out" / "t.parquet").read_bytes() == b"data"
    assert not aside.exists()


# --------------------------------------------------------------------------- killed at every step

# The child replaces OLD's output at the path and dies (os._exit, no cleanup) at one point:
#   write      while writing the new folder
#   op N       just before the N-th file-system operation of the replace: 1 rename aside, 2 rename in,
#              3 delete the old folder, 4 delete the temporary folder
#   partial 3  half-way through deleting the old folder
#   none       not at all
CHILD = textwrap.dedent("""
    import os, shutil, sys
    import pandas as pd
    from cadence.data.io import atomic_path

    target, point = sys.argv[1], sys.argv[2]
    ops = {"n": 0}
    real_rename, real_rmtree = os.rename, shutil.rmtree

    def op(partial=None):
        ops["n"] += 1
        if point == f"op {ops['n']}":
            os._exit(9)
        if partial is not None and point == f"partial {ops['n']}":
            victim = sorted(p for p in __import__("pathlib").Path(partial).rglob("*") if p.is_file())[0]
            victim.unlink()
            os._exit(9)

    def rename(a, b):
        op()
        real_rename(a, b)

    def rmtree(path, *args, **kwargs):
        op(partial=path)
        real_rmtree(path, *args, **kwargs)

    os.rename, shutil.rmtree = rename, rmtree
    with atomic_path(target) as tmp:
        tmp.mkdir()
        pd.DataFrame({"x": [2, 2]}).to_parquet(tmp / "a.parquet")
        if point == "write":
            os._exit(9)
        pd.DataFrame({"y": [3]}).to_parquet(tmp / "c.parquet")
""")

POINTS = ["write", "op 1", "op 2", "op 3", "partial 3", "op 4", "none"]


@pytest.mark.parametrize("point", POINTS)
def test_a_run_killed_at_any_step_leaves_the_old_or_the_new_output_whole(tmp_path: Path, point: str) -> None:
    target = tmp_path / "out"
    write_tables({"a": pd.DataFrame({"x": [1]}), "b": pd.DataFrame({"x": [1]})}, target)
    old = tables_of(target)
    result = subprocess.run([sys.executable, "-c", CHILD, str(target), point], capture_output=True, text=True)
    assert result.returncode == (0 if point == "none" else 9), result.stderr
    assert result.stderr == ""

    if point == "op 2":
        # Killed between the two renames: the path is missing and the old output is whole at its aside name.
        assert not target.exists()
        (aside,) = tmp_path.glob(".out.cadence-old-*")
        assert tables_of(aside) == old
    else:
        assert output_marker(target) is not None
        found = tables_of(target)
        assert found == old or (sorted(found) == ["a.parquet", "c.parquet"]
                                and pd.read_parquet(target / "a.parquet")["x"].tolist() == [2, 2]
                                and pd.read_parquet(target / "c.parquet")["y"].tolist() == [3])
        assert (found == old) == (point in ("write", "op 1"))

    # The next write to the parent sweeps (and restores) what the killed run left, then replaces as usual.
    sweep_temporaries(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert tables_of(target) == old or sorted(tables_of(target)) == ["a.parquet", "c.parquet"]
    write_tables({"d": pd.DataFrame({"x": [4]})}, target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert sorted(tables_of(target)) == ["d.parquet"]
