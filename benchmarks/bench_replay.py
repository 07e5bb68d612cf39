"""Replay throughput (issue 6): triggers replayed per second and peak memory.

Generates a synthetic shop (or reuses ``--shop``), reads its log, and replays
it under the capped rules and the capped learned policy with all cores,
printing triggers per second, wall time and peak RSS. The issue's target is
the 1,000,000-customer one-year shop in <= 10 minutes and <= 8 GB.

Usage: ``python benchmarks/bench_replay.py [--customers 100000] [--shop DIR] [--workers 2]``
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

from cadence.data.synthetic import ShopConfig, generate_shop
from cadence.policies.evaluation import load_log
from cadence.policies.learned import UpliftPolicy
from cadence.policies.orchestrator import OrchestratedPolicy, OrchestratorConfig
from cadence.policies.rules import RulesPolicy
from cadence.simulation.replay import replay_decisions


def peak_gb() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return (own + children) / 2**20  # KiB -> GiB (children: the largest worker)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--customers", type=int, default=100_000)
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--shop", type=Path, default=None)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        shop = args.shop or generate_shop(ShopConfig(customers=args.customers, days=args.days, seed=0),
                                          Path(tmp) / "shop", progress=True)
        t0 = time.perf_counter()
        log = load_log(shop)
        print(f"read the log: {log.n:,} triggers in {time.perf_counter() - t0:.1f} s")
        cap = OrchestratorConfig(max_per_7d=3)
        t0 = time.perf_counter()
        learned = UpliftPolicy().fit(log)
        print(f"fitted the learned policy in {time.perf_counter() - t0:.1f} s")
        for name, policy in (("rules, capped", OrchestratedPolicy(RulesPolicy(), cap)),
                             ("learned, capped", OrchestratedPolicy(learned, cap))):
            t0 = time.perf_counter()
            replay_decisions(log, policy, workers=args.workers, progress=True)
            dt = time.perf_counter() - t0
            print(f"{name}: {log.n:,} triggers in {dt:.1f} s = {log.n / dt:,.0f} triggers/s "
                  f"({args.workers} workers); peak RSS so far {peak_gb():.2f} GB")


if __name__ == "__main__":
    main()
