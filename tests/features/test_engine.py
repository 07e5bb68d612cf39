"""The DuckDB SQL the pipeline runs: what duckdb_sql changes in Ibis's SQL keeps every value."""

from __future__ import annotations

import gc

import ibis
import pandas as pd

from cadence.features.customer import secs
from cadence.features.engine import cache, connect, duckdb_sql, execute, normalise, register


def test_epoch_seconds_skip_the_timestamp_cast_and_keep_their_values() -> None:
    con = connect("duckdb")
    ts = pd.to_datetime(["1969-12-31 23:59:59.5", "1970-01-01", "2024-02-29 12:00:00.999",
                         "2026-03-29 01:30", "2026-10-25 01:30"], utc=True, format="ISO8601")
    t = register(con, {"t": pd.DataFrame({"i": range(len(ts)), "ts": ts, "d": ts.date})})["t"]
    expr = t.select("i", s=secs(t.ts), e=t.ts.epoch_seconds(), d=t.d.epoch_seconds()).order_by("i")
    sql = duckdb_sql(expr)
    assert "AS TIMESTAMP)" not in sql
    got = con.raw_sql(sql).df()
    exact = (ts - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)
    assert got["s"].tolist() == [-1, 0, 1709208000, 1774747800, 1792891800]
    assert got["e"].tolist() == exact.tolist()
    days = (ts.normalize() - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)
    assert got["d"].tolist() == days.tolist()
    # Ibis's own SQL (with the cast) gives the same values on this UTC connection.
    ibis_sql = ibis.to_sql(expr, dialect="duckdb")
    assert "AS TIMESTAMP)" in ibis_sql
    pd.testing.assert_frame_equal(con.raw_sql(ibis_sql).df(), got)


def test_an_aggregate_joined_by_two_joins_is_computed_once() -> None:
    con = connect("duckdb")
    frames = {"a": pd.DataFrame({"k": [1, 2, 3], "x": [10, 20, 30]}),
              "b": pd.DataFrame({"k": [1, 1, 2], "v": [1.0, 2.0, 5.0]})}
    t = register(con, frames)
    a, b = t["a"], t["b"]
    per_k = b.group_by("k").aggregate(total=b.v.sum())
    # Ibis prints per_k twice here (one copy per join); duckdb_sql makes it one materialised CTE.
    left = a.filter(a.x < 25).left_join(per_k, "k").select("k", "total")
    right = a.filter(a.x > 15).left_join(per_k, "k").select("k", "total")
    expr = left.union(right, distinct=False).order_by(["k", "total"])
    ibis_sql = ibis.to_sql(expr, dialect="duckdb")
    sql = duckdb_sql(expr)
    assert ibis_sql.count("GROUP BY") == 2
    assert sql.count("GROUP BY") == 1
    assert '"_shared0" AS (' in sql
    pd.testing.assert_frame_equal(con.raw_sql(sql).df(), con.raw_sql(ibis_sql).df())
    assert con.raw_sql(sql).df()["total"].tolist()[:3] == [3.0, 5.0, 5.0]


def test_cache_lives_as_long_as_an_expression_reads_it() -> None:
    con = connect("duckdb")
    t = register(con, {"t": pd.DataFrame({"k": [1, 2, 3]})})["t"]
    cached = cache(con, t.mutate(s=secs(ibis.literal(pd.Timestamp("2025-01-01", tz="UTC")))))
    name = cached.get_name()
    derived = cached.filter(cached.k > 1)
    del cached
    gc.collect()
    assert name in con.list_tables()
    assert con.execute(derived)["s"].tolist() == [1735689600, 1735689600]
    del derived
    gc.collect()
    assert name not in con.list_tables()


def test_execute_gives_the_frame_ibis_gives_for_every_kind_of_column_with_nulls() -> None:
    con = connect("duckdb")
    frame = pd.DataFrame({
        "k": ["a", "b", "c"],
        "f": [1.5, None, 2.25],
        "i": pd.array([1, None, 3], dtype="Int64"),
        "s": ["x", None, "z"],
        "b": pd.array([True, None, False], dtype="boolean"),
        "ts": pd.to_datetime(["2025-01-01 10:00", None, "2025-03-01 00:00"], utc=True),
    })
    t = register(con, {"t": frame})["t"]
    expr = t.mutate(d=t.ts.date(), l=ibis.array([t.k, t.s]), g=t.f.isnull().ifelse(t.i, t.f))
    got = execute(con, expr, sort_by=["k"])
    pd.testing.assert_frame_equal(got, normalise(con.execute(expr), ["k"]))
    assert got["f"].isna().tolist() == [False, True, False]
    assert got["l"].tolist()[1] == ["b", None]
