"""Replay throughput (issue 6): triggers and shop events replayed per second, wall time and peak memory.

Generates a synthetic shop (or reuses ``--shop``), fits the learned policy on
a sample of customers (``--fit-customers``), and replays the whole log under
the capped rules and the capped learned policy with ``--workers`` processes,
straight from the data directory: the log is read and walked partition by
partition (customer hash buckets), so each figure is end to end, reading
included. Prints triggers per second, shop events per second (the
``events`` table's rows over the same wall time), wall time and peak memory:
the sampled sum of the RSS of this process and its workers (``/proc``), and
``getrusage``'s parent + largest worker. The issue's target is the
1,000,000-customer one-year shop in <= 10 minutes and <= 8 GB on 2 cores.

``--in-memory`` replays a log loaded whole with ``load_log`` instead (the
earlier way, for comparison on small shops).

Usage: ``python benchmarks/bench_replay.py [--customers 100000] [--shop DIR] [--workers 2] [--fit-customers 100000]``
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.dataset as ds

from cadence.data.bandit import LoggedBandit
from cadence.data.io import table_path
from cadence.features.logged import log_from_tables
from cadence.policies.learned import UpliftPolicy
from cadence.policies.orchestrator import OrchestratedPolicy, OrchestratorConfig
from cadence.policies.rules import RulesPolicy
from cadence.simulation.replay import replay_decisions
from cadence.synthetic import ShopConfig, generate_shop
from cadence.workflows.logs import LOG_SKIP_COLUMNS, load_log, replay_log


def rusage_gb() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return (own + children) / 2**20  # KiB -> GiB (children: the largest worker)


def _tree_rss(pid: int) -> int:
    """RSS in bytes of ``pid`` and all its descendants (Linux ``/proc``)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/statm") as f:
                total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except (FileNotFoundError, ProcessLookupError, ValueError):
            continue
    return total


class PeakRSS:
    """Samples the summed RSS of this process tree every 0.2 s while in a ``with`` block."""

    def __enter__(self) -> PeakRSS:
        self.peak, self._stop = 0, threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _tree_rss(os.getpid()))
            self._stop.wait(0.2)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()

    @property
    def gb(self) -> float:
        return self.peak / 2**30


def sample_log(shop: Path, customers: int, seed: int = 0) -> LoggedBandit:
    """The log of ``customers`` customers drawn at random (all of them when the shop is smaller)."""
    ids = ds.dataset(table_path(shop, "customers"), format="parquet").to_table(columns=["customer_id"])["customer_id"]
    if customers >= len(ids):
        return load_log(shop)
    pick = ids.take(np.sort(np.random.default_rng(seed).choice(len(ids), customers, replace=False)))
    tables = {}
    for name in ("messages", "customers", "orders"):
        data = ds.dataset(table_path(shop, name), format="parquet")
        cols = [c for c in data.schema.names if c not in LOG_SKIP_COLUMNS[name]]
        tables[name] = data.to_table(columns=cols, filter=pc.field("customer_id").isin(pick)).to_pandas()
    return log_from_tables(tables["messages"], tables["customers"], tables["orders"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--customers", type=int, default=100_000)
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--shop", type=Path, default=None)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--fit-customers", type=int, default=100_000)
    ap.add_argument("--only", choices=("rules", "learned"), default=None)
    ap.add_argument("--in-memory", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # inherited by the workers
    with tempfile.TemporaryDirectory() as tmp:
        shop = args.shop or generate_shop(ShopConfig(customers=args.customers, days=args.days, seed=0),
                                          Path(tmp) / "shop", progress=True)
        n = ds.dataset(table_path(shop, "messages"), format="parquet").count_rows()
        events_path = table_path(shop, "events")
        events = ds.dataset(events_path, format="parquet").count_rows() if events_path else 0
        print(f"shop {shop}: {n:,} triggers (messages), {events:,} events")
        cap = OrchestratorConfig(max_per_7d=3)
        runs = {"rules": lambda: OrchestratedPolicy(RulesPolicy(), cap)}
        if args.only != "rules":
            t0 = time.perf_counter()
            fit_log = sample_log(shop, args.fit_customers)
            t1 = time.perf_counter()
            learned = UpliftPolicy().fit(fit_log)
            print(f"fitted the learned policy on {fit_log.n:,} triggers of {args.fit_customers:,} customers: "
                  f"read {t1 - t0:.1f} s, fit {time.perf_counter() - t1:.1f} s")
            del fit_log
            runs["learned"] = lambda: OrchestratedPolicy(learned, cap)
        if args.only == "learned":
            del runs["rules"]
        log = None
        if args.in_memory:
            t0 = time.perf_counter()
            log = load_log(shop)
            print(f"read the log whole: {log.n:,} triggers in {time.perf_counter() - t0:.1f} s")
        for name, make in runs.items():
            with PeakRSS() as peak:
                t0 = time.perf_counter()
                d = (replay_decisions(log, make(), workers=args.workers, progress=True) if log is not None
                     else replay_log(shop, make(), workers=args.workers, progress=True))
                dt = time.perf_counter() - t0
            sent = float((d["action"] == "send").mean())
            del d
            print(f"{name}, capped 3/7 days: {n:,} triggers in {dt:.1f} s ({dt / 60:.1f} min) = "
                  f"{n / dt:,.0f} triggers/s = {events / dt:,.0f} shop events/s ({args.workers} workers, "
                  f"{'log in memory' if log is not None else 'read partition by partition'}); "
                  f"sends {sent:.1%}; peak RSS {peak.gb:.2f} GB summed over processes "
                  f"(getrusage parent + largest worker {rusage_gb():.2f} GB)", flush=True)


if __name__ == "__main__":
    main()
