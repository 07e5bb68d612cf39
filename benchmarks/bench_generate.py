"""Benchmark: synthetic shop generation.

Targets (issue 2): 1,000,000 customers x 365 days in <= 10 minutes with peak
memory <= 8 GB on 2 cores; the default demo shop (20,000 customers, one year)
in <= 30 s. Prints wall time, events/s and peak RSS for each size.

With ``--tastes`` the demo shop is generated with and without latent item
tastes (``ShopConfig(tastes=Tastes())``) and the ratio printed; the large run
then has tastes too (``--customers 0`` skips it).

Run: ``uv run python benchmarks/bench_generate.py [--customers 1000000] [--tastes]``
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

from cadence.synthetic import ShopConfig, Tastes, generate_shop


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def run(customers: int, days: int, seed: int, tastes: bool = False, products: int | None = None) -> dict[str, float]:
    out = Path(tempfile.mkdtemp(prefix="cadence-bench-")) / "shop"
    t0 = time.perf_counter()
    cfg = ShopConfig(customers=customers, days=days, seed=seed, products=products, tastes=Tastes() if tastes else None)
    generate_shop(cfg, out, progress=True)
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
    ap.add_argument("--products", type=int, default=None, help="catalogue size of the large run (default: customers / 10, at most 20,000)")
    ap.add_argument("--tastes", action="store_true", help="also time the demo shop with latent item tastes")
    args = ap.parse_args()
    print(f"machine: {platform.machine()}, python {platform.python_version()}")
    demo = run(20_000, 365, args.seed)
    print(f"demo shop 20,000 x 365: {demo['seconds']:.1f} s (target <= 30 s), "
          f"{demo['events']:,} events, {demo['events_per_s']:,.0f} events/s")
    if args.tastes:
        with_tastes = run(20_000, 365, args.seed, tastes=True)
        print(f"demo shop 20,000 x 365 with tastes: {with_tastes['seconds']:.1f} s, "
              f"{with_tastes['seconds'] / demo['seconds']:.2f}x the default shop's time")
    if args.customers <= 0:
        print(f"peak RSS: {peak_rss_gb():.2f} GB")
        return
    big = run(args.customers, args.days, args.seed, tastes=args.tastes, products=args.products)
    print(f"{args.customers:,} x {args.days}{' with tastes' if args.tastes else ''}: {big['seconds']:.1f} s (target <= 600 s), "
          f"{big['events']:,} events, {big['messages']:,} messages, {big['events_per_s']:,.0f} events/s, "
          f"{big['disk_mb']:.0f} MB on disk")
    print(f"peak RSS: {peak_rss_gb():.2f} GB (target <= 8 GB)")


if __name__ == "__main__":
    main()
