"""Benchmark: all features and trigger candidates of the 1,000,000-customer shop on DuckDB.

Target (issue 3): >= 2,000,000 events/s end to end on 2 cores and <= 8 GB.
In the same run, ``bench_features.py`` compares the customer features with
plain pandas on the shop's first 5,000,000 events (target >= 10x faster).
The shop (``ShopConfig(customers=1_000_000, days=365)``, ~34M events) is
generated once and cached. Contract validation is skipped (``validate=False``)
because the shop comes from the generator, whose output the test suite
validates; the figure printed is features + trigger candidates only.
``bench_features_floor.py`` times the steps any design must take at this
scale, against the target's budget.

Run: ``uv run python benchmarks/bench_features_scale.py [--customers 1000000] [--cache /tmp/cadence-bench-1m]
[--buckets N]``
"""

from __future__ import annotations

import argparse
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

from cadence.synthetic import ShopConfig, generate_shop
from cadence.workflows.features import build_features


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--customers", type=int, default=1_000_000)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/cadence-bench-1m"))
    ap.add_argument("--buckets", type=int, default=None, help="customer buckets (default: by event count)")
    ap.add_argument("--slice-events", type=int, default=5_000_000, help="events in the pandas comparison (0: skip)")
    args = ap.parse_args()
    shop = args.cache / f"shop-{args.customers}"
    if not (shop / "events.parquet").exists():
        print(f"generating {args.customers:,} customers (cached in {shop}) ...")
        generate_shop(ShopConfig(customers=args.customers, days=365), shop, progress=True)
    events = pq.ParquetFile(shop / "events.parquet").metadata.num_rows
    out = Path(tempfile.mkdtemp(prefix="cadence-features-"))
    t0 = time.perf_counter()
    run = build_features(shop, "2026-01-01", out / "features", validate=False, buckets=args.buckets)
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    print(f"{events:,} events -> {run.rows['customer_features']:,} customer rows, "
          f"{run.rows['trigger_candidates']:,} trigger candidates")
    print(f"customer features {run.seconds['customer_features']:.1f} s, trigger candidates "
          f"{run.seconds['trigger_candidates']:.1f} s, total {wall:.1f} s ({run.buckets} customer buckets)")
    print(f"{events / wall:,.0f} events/s end to end (target >= 2,000,000); peak RSS {peak:.2f} GB (target <= 8 GB)")
    shutil.rmtree(out)
    if args.slice_events:
        print(f"\ncustomer features against plain pandas on the first {args.slice_events:,} events of the same shop:")
        subprocess.run([sys.executable, str(Path(__file__).with_name("bench_features.py")), "--events",
                        str(args.slice_events), "--cache", str(args.cache), "--shop", str(shop)], check=True)


if __name__ == "__main__":
    main()
