"""Benchmark: synthetic shop generation.

Targets (issue 2): 1,000,000 customers x 365 days in <= 10 minutes with peak
memory <= 8 GB on 2 cores; the default demo shop (20,000 customers, one year)
in <= 30 s. Prints wall time, events/s and peak RSS for each size.

Run: ``uv run python benchmarks/bench_generate.py [--customers 1000000]``
"""

from __future__ import annotations

import argparse
import platform
import resource
import shutil
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

from cadence.synthetic import ShopConfig, generate_shop


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def run(customers: int, days: int, seed: int) -> dict[str, float]:
    out = Path(tempfile.mkdtemp(prefix="cadence-bench-")) / "shop"
    t0 = time.perf_counter()
    generate_shop(ShopConfig(customers=customers, days=days, seed=seed), out, progress=True)
    wall = time.perf_counter() - t0
    events = pq.ParquetFile(out / "events.parquet").metadata.num_rows
    messages = pq.ParquetFile(out / "messages.parquet").metadata.num_rows
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 1024**2
    shutil.rmtree(out.parent)
    return {"customers": customers, "days": days, "seconds": wall, "events": events,
            "messages": messages, "events_per_s": events / wall, "disk_mb": size}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--customers", type=int, default=1_000_000)
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print(f"machine: {platform.machine()}, python {platform.python_version()}")
    demo = run(20_000, 365, args.seed)
    print(f"demo shop 20,000 x 365: {demo['seconds']:.1f} s (target <= 30 s), "
          f"{demo['events']:,} events, {demo['events_per_s']:,.0f} events/s")
    big = run(args.customers, args.days, args.seed)
    print(f"{args.customers:,} x {args.days}: {big['seconds']:.1f} s (target <= 600 s), "
          f"{big['events']:,} events, {big['messages']:,} messages, {big['events_per_s']:,.0f} events/s, "
          f"{big['disk_mb']:.0f} MB on disk")
    print(f"peak RSS: {peak_rss_gb():.2f} GB (target <= 8 GB)")


if __name__ == "__main__":
    main()
