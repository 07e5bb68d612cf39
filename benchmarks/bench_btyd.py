"""Benchmark: BG/NBD on 1,000,000 customers, Cadence against ``lifetimes`` 0.11.3 on the same summary.

Target (issue 23): Cadence's BG/NBD fit on a 1,000,000-customer summary at
least as fast as ``lifetimes`` 0.11.3's, with the same parameters to 4
decimals.

The order history is drawn from the BG/NBD story with known parameters and
a fixed seed (Poisson purchases at a Gamma rate, dropout after each repeat
purchase with a Beta probability; first purchases spread over the first 12
weeks, as in the CDNOW cohort), one order per purchase at a whole-day time
stamp, observed for 52 weeks. The timed steps are

1. Cadence's summary, :func:`cadence.models.btyd.rfm_summary` in weeks;
2. Cadence's fit, :class:`cadence.models.btyd.BetaGeoModel` (distinct
   triples with counts, analytic gradient);
3. ``lifetimes.BetaGeoFitter().fit`` on the *same* summary (frequency,
   recency, T as written by step 1), in a separate virtual environment run
   as a subprocess (``lifetimes`` pins an old pandas and is never a
   dependency of Cadence). Create it once, outside the repository::

       python3.11 -m venv /work/peer-lifetimes
       /work/peer-lifetimes/bin/pip install 'lifetimes==0.11.3' 'pandas<2.2'

   Reading the CSV is outside the peer's timing; its fit includes the
   Hessian it computes for standard errors, as Cadence's does.

Optionally (``--pareto``) Cadence's Pareto/NBD fit on the same summary is
timed too (numerical gradients on the distinct triples).

Run::

    .venv/bin/python benchmarks/bench_btyd.py
    .venv/bin/python benchmarks/bench_btyd.py --customers 100000 --peer-python /path/to/python
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from cadence.models.btyd import BetaGeoModel, DataQualityWarning, ParetoNBDModel, rfm_summary

DEFAULT_PEER = "/work/peer-lifetimes/bin/python"
#: The simulated world (per week; of the order of the CDNOW fit).
TRUTH = {"r": 0.25, "alpha": 4.0, "a": 0.8, "b": 2.5}

PEER_SCRIPT = r"""
import json, sys, time
import pandas as pd
from lifetimes import BetaGeoFitter
d = pd.read_csv(sys.argv[1])
t0 = time.perf_counter()
m = BetaGeoFitter().fit(d["frequency"], d["recency"], d["T"])
fit_s = time.perf_counter() - t0
print(json.dumps({"fit_s": fit_s, "params": {k: float(v) for k, v in m.params_.items()}}))
"""


def synthetic_orders(n: int, seed: int, weeks: float = 52.0) -> tuple[pd.DataFrame, pd.Timestamp]:
    """Orders of ``n`` customers drawn from BG/NBD with :data:`TRUTH`; returns (orders, as_of)."""
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2025-01-01", tz="UTC")
    first_day = rng.integers(0, 84, n)  # first purchases over 12 weeks
    horizon = weeks * 7.0 - first_day  # days observed after the first purchase
    lam = rng.gamma(TRUTH["r"], 1 / TRUTH["alpha"], n) / 7.0  # per day
    p = rng.beta(TRUTH["a"], TRUTH["b"], n)
    who = [np.arange(n)]
    when = [first_day.astype(float)]
    now = np.zeros(n)
    active = np.ones(n, dtype=bool)
    while active.any():
        idx = np.flatnonzero(active)
        now[idx] += rng.exponential(1 / lam[idx])
        bought = idx[now[idx] <= horizon[idx]]
        who.append(bought)
        when.append(first_day[bought] + now[bought])
        stay = rng.random(bought.size) >= p[bought]
        active[:] = False
        active[bought[stay]] = True
    customer = np.concatenate(who)
    day = np.floor(np.concatenate(when)).astype("int64")
    orders = pd.DataFrame(
        {
            "customer_id": pd.Index(np.char.add("c", customer.astype(str))).astype("string"),
            "ts": start + pd.to_timedelta(day, unit="D"),
            "revenue": rng.gamma(6.0, 5.0, customer.size),
        }
    )
    return orders, start + pd.Timedelta(weeks * 7, "D")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=20050401)
    parser.add_argument("--peer-python", default=DEFAULT_PEER,
                        help=f"python of a venv with lifetimes 0.11.3 (default {DEFAULT_PEER})")
    parser.add_argument("--pareto", action="store_true", help="also time Cadence's Pareto/NBD fit")
    args = parser.parse_args()

    t0 = time.perf_counter()
    orders, as_of = synthetic_orders(args.customers, args.seed)
    print(f"simulated {args.customers:,} customers, {len(orders):,} orders in {time.perf_counter() - t0:.1f} s")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataQualityWarning)  # same-day orders are merged, as intended
        t0 = time.perf_counter()
        rfm = rfm_summary(orders, as_of, time_unit="W")
        summary_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ours = BetaGeoModel().fit(rfm)
    fit_s = time.perf_counter() - t0
    print(f"cadence  summary {summary_s:6.2f} s   BG/NBD fit {fit_s:6.2f} s "
          f"({ours.n_distinct_rows_:,} distinct triples of {ours.n_customers_:,} customers)")
    print("cadence  params  " + "  ".join(f"{k} {v:.4f}" for k, v in ours.params_.items())
          + f"   LL {ours.log_likelihood_:.2f}")
    print("truth    params  " + "  ".join(f"{k} {v:.4f}" for k, v in TRUTH.items()))

    if args.pareto:
        t0 = time.perf_counter()
        pnbd = ParetoNBDModel().fit(rfm)
        print(f"cadence  Pareto/NBD fit {time.perf_counter() - t0:6.2f} s   "
              + "  ".join(f"{k} {v:.4f}" for k, v in pnbd.params_.items()) + f"   LL {pnbd.log_likelihood_:.2f}")

    peer = Path(args.peer_python)
    if not peer.exists():
        print(f"peer side skipped: {peer} does not exist (create the lifetimes venv as in the docstring)")
        return
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "summary.csv"
        rfm[["frequency", "recency", "T"]].to_csv(csv, index=False, float_format="%.17g")
        script = Path(tmp) / "peer.py"
        script.write_text(PEER_SCRIPT)
        done = subprocess.run([str(peer), str(script), str(csv)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        print(f"peer side failed (exit {done.returncode}):\n{done.stderr[-2000:]}", file=sys.stderr)
        sys.exit(1)
    theirs = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"lifetimes 0.11.3  BG/NBD fit {theirs['fit_s']:6.2f} s")
    # Their log-likelihood is reported on rescaled times; evaluate ours at their estimate instead.
    at_theirs = np.array([theirs["params"][k] for k in ours.params_])
    data = tuple(rfm[c].to_numpy(float) for c in ("frequency", "recency", "T"))
    ll_theirs = float(BetaGeoModel._log_likelihood(at_theirs, data).sum())
    print("lifetimes params  " + "  ".join(f"{k} {theirs['params'][k]:.4f}" for k in ours.params_)
          + f"   LL {ll_theirs:.2f}")
    agree = all(f"{ours.params_[k]:.4f}" == f"{theirs['params'][k]:.4f}" for k in ours.params_)
    print(f"ratio (lifetimes fit / cadence fit): {theirs['fit_s'] / fit_s:.2f}x   "
          f"parameters agree to 4 decimals: {'yes' if agree else 'NO'}")


if __name__ == "__main__":
    main()
