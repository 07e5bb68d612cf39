"""Benchmark: summary, BG/NBD and Pareto/NBD on 1,000,000 customers, Cadence against ``lifetimes`` 0.11.3.

Target (issue 23): on the same 1,000,000-customer summary, Cadence's BG/NBD
and Pareto/NBD fits at least as fast as ``lifetimes`` 0.11.3's, with the same
parameters to 4 decimals, measured side by side in one run; the summary
times are printed too.

The order history is drawn from the BG/NBD story with known parameters and
a fixed seed (Poisson purchases at a Gamma rate, dropout after each repeat
purchase with a Beta probability; first purchases spread over the first 12
weeks, as in the CDNOW cohort), one order per purchase at a whole-day time
stamp, observed for 52 weeks. The timed steps, in this order (one at a time):

1. Cadence's summary from the feature layer:
   :func:`cadence.features.purchases.rfm_summary` on an embedded DuckDB
   (:func:`~cadence.features.purchases.duckdb_tables` to upload the orders,
   :func:`~cadence.features.purchases.fetch_frame` to bring the summary back
   to pandas; both inside the timing), in weeks.
2. ``lifetimes.utils.summary_data_from_transaction_data`` on the same orders
   (``freq="D", freq_multiplier=7``: days / 7, Cadence's week; the last
   observed day as ``observation_period_end``), read from a CSV outside its
   timing. Both summaries are compared customer by customer.
3. Cadence's fits, :class:`cadence.models.btyd.BetaGeoModel` and
   :class:`cadence.models.btyd.ParetoNBDModel`, on Cadence's per-customer
   summary (grouping it into distinct triples with counts is inside the fit
   and inside its timing; analytic gradients).
4. ``lifetimes.BetaGeoFitter().fit`` and ``lifetimes.ParetoNBDFitter().fit``
   on the *same* summary given as its distinct ``(frequency, recency, T)``
   triples with their counts as ``weights=`` (both fitters accept weights;
   the grouping is done here, outside the peer's timing -- its fastest
   input). ``ParetoNBDFitter`` starts from a random point: the peer script
   seeds NumPy's global generator (0). It runs twice: with its defaults
   (Nelder-Mead, ``tol=1e-4``, 2,000 iterations), as a user gets them, and
   with ``tol=1e-8``, to see whether its answer moves to Cadence's when it
   is made to converge further.

The peer runs in a separate virtual environment as a subprocess
(``lifetimes`` pins an old pandas and is never a dependency of Cadence),
with a timeout per step (``--peer-timeout``, default 20 minutes): a step
that runs out is reported as a floor (``> timeout``). Create the venv once,
outside the repository::

    python3.11 -m venv /work/peer-lifetimes
    /work/peer-lifetimes/bin/pip install 'lifetimes==0.11.3' 'pandas<2.2'

Both sides' fits include the Hessian they compute for standard errors
(``lifetimes``' Pareto/NBD computes none). The log-likelihoods printed are
Cadence's likelihood evaluated at each side's estimate, on the same triples.

Run::

    .venv/bin/python benchmarks/bench_btyd.py
    .venv/bin/python benchmarks/bench_btyd.py --customers 100000 --peer-python /path/to/python
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cadence.features.purchases import duckdb_tables, fetch_frame, rfm_summary
from cadence.models.btyd import BetaGeoModel, ParetoNBDModel, compress_rows

DEFAULT_PEER = "/work/peer-lifetimes/bin/python"
#: The simulated world (per week; of the order of the CDNOW fit).
TRUTH = {"r": 0.25, "alpha": 4.0, "a": 0.8, "b": 2.5}
RFM = ["frequency", "recency", "T"]

PEER_SUMMARY = r"""
import json, sys, time
import pandas as pd
from lifetimes.utils import summary_data_from_transaction_data
orders = pd.read_csv(sys.argv[1], parse_dates=["date"])
t0 = time.perf_counter()
s = summary_data_from_transaction_data(orders, "customer_id", "date", monetary_value_col="revenue",
                                       observation_period_end=sys.argv[2], freq="D", freq_multiplier=7)
summary_s = time.perf_counter() - t0
s.sort_index().to_csv(sys.argv[3], float_format="%.17g")
print(json.dumps({"summary_s": summary_s, "rows": len(s)}))
"""

PEER_FIT = r"""
import json, sys, time
import numpy as np
import pandas as pd
from lifetimes import BetaGeoFitter, ParetoNBDFitter
d = pd.read_csv(sys.argv[1])
np.random.seed(0)  # ParetoNBDFitter draws its starting point from NumPy's global generator
model = {"bgnbd": BetaGeoFitter, "pareto": ParetoNBDFitter}[sys.argv[2]]()
options = {"tol": float(sys.argv[3])} if len(sys.argv) > 3 else {}
t0 = time.perf_counter()
model.fit(d["frequency"], d["recency"], d["T"], weights=d["weights"], **options)
fit_s = time.perf_counter() - t0
print(json.dumps({"fit_s": fit_s, "params": {k: float(v) for k, v in model.params_.items()}}))
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


def run_peer(python: Path, script: str, args: list[str], timeout: float) -> dict[str, Any] | None:
    """Run a peer script; its JSON line, or None if it ran out of time (failures stop the benchmark)."""
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(script)
    try:
        done = subprocess.run([str(python), f.name, *args], capture_output=True, text=True, check=False,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return None
    finally:
        Path(f.name).unlink()
    if done.returncode != 0:
        print(f"peer side failed (exit {done.returncode}):\n{done.stderr[-2000:]}", file=sys.stderr)
        sys.exit(1)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.1f} / {five:.1f} / {fifteen:.1f} (1 / 5 / 15 min)"


def params_line(who: str, params: dict[str, float], names: list[str], ll: float) -> str:
    return f"{who:<17}" + "  ".join(f"{k} {params[k]:.4f}" for k in names) + f"   LL {ll:.3f}"


def compare_fits(
    label: str, ours: BetaGeoModel | ParetoNBDModel, ours_s: float, theirs: dict[str, Any] | None,
    timeout: float, data: tuple[np.ndarray, ...], weights: np.ndarray, *, show_ours: bool = True,
) -> None:
    names = list(ours.params_)
    if show_ours:
        print(f"cadence  {label} fit {ours_s:8.2f} s")
        print(params_line("cadence", ours.params_, names, ours.log_likelihood_))
    if theirs is None:
        print(f"lifetimes {label} fit  > {timeout:.0f} s (timed out; the measured floor)")
        print(f"ratio (lifetimes / cadence, {label} fit): > {timeout / ours_s:.1f}x")
        return
    print(f"lifetimes {label} fit {theirs['fit_s']:8.2f} s")
    # Their log-likelihood is reported on rescaled times; evaluate ours at their estimate instead.
    at_theirs = np.array([theirs["params"][k] for k in names])
    ll_theirs = float(weights @ type(ours)._log_likelihood(at_theirs, data))
    print(params_line("lifetimes", theirs["params"], names, ll_theirs))
    agree = all(f"{ours.params_[k]:.4f}" == f"{theirs['params'][k]:.4f}" for k in names)
    print(f"ratio (lifetimes / cadence, {label} fit): {theirs['fit_s'] / ours_s:.2f}x   "
          f"parameters agree to 4 decimals: {'yes' if agree else 'NO'}   "
          f"LL cadence - lifetimes: {ours.log_likelihood_ - ll_theirs:+.2g}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=20050401)
    parser.add_argument("--peer-python", default=DEFAULT_PEER,
                        help=f"python of a venv with lifetimes 0.11.3 (default {DEFAULT_PEER})")
    parser.add_argument("--peer-timeout", type=float, default=1200.0,
                        help="seconds a peer step may take before it is reported as a floor (default 1200)")
    args = parser.parse_args()
    peer = Path(args.peer_python)
    print(f"start: {load()}")

    t0 = time.perf_counter()
    orders, as_of = synthetic_orders(args.customers, args.seed)
    print(f"simulated {args.customers:,} customers, {len(orders):,} orders in {time.perf_counter() - t0:.1f} s")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        t0 = time.perf_counter()
        con, tables = duckdb_tables({"orders": orders})
        rfm = fetch_frame(con, rfm_summary(tables, as_of, time_unit="W"), ["customer_id"]).set_index("customer_id")
        summary_s = time.perf_counter() - t0
    print(f"cadence   summary {summary_s:8.2f} s  (features.purchases.rfm_summary on DuckDB, {len(rfm):,} customers)")

    (x, t_x, T), counts = compress_rows(tuple(rfm[c].to_numpy(float) for c in RFM))
    data, weights = (x, t_x, T), counts
    print(f"          {x.size:,} distinct (frequency, recency, T) triples")

    with tempfile.TemporaryDirectory() as tmp:
        have_peer = peer.exists()
        if have_peer:
            orders_csv, peer_rfm_csv = Path(tmp) / "orders.csv", Path(tmp) / "peer_rfm.csv"
            pd.DataFrame({"customer_id": orders["customer_id"], "date": orders["ts"].dt.strftime("%Y-%m-%d"),
                          "revenue": orders["revenue"]}).to_csv(orders_csv, index=False, float_format="%.17g")
            last_day = (as_of - pd.Timedelta(1, "D")).strftime("%Y-%m-%d")
            peer_summary = run_peer(peer, PEER_SUMMARY, [str(orders_csv), last_day, str(peer_rfm_csv)],
                                    args.peer_timeout)
            if peer_summary is None:
                print(f"lifetimes summary  > {args.peer_timeout:.0f} s (timed out)")
            else:
                theirs = pd.read_csv(peer_rfm_csv, index_col="customer_id")
                theirs = theirs.reindex(rfm.index.astype(str))
                diff = {c: float(np.nanmax(np.abs(theirs[c].to_numpy() - rfm[c].to_numpy())))
                        for c in [*RFM, "monetary_value"]}
                print(f"lifetimes summary {peer_summary['summary_s']:8.2f} s  "
                      f"(summary_data_from_transaction_data, {peer_summary['rows']:,} customers)")
                print("          largest difference per column: "
                      + ", ".join(f"{c} {v:.2g}" for c, v in diff.items())
                      + f"; customers missing on their side: {int(theirs['T'].isna().sum())}")
                print(f"ratio (lifetimes / cadence, summary): {peer_summary['summary_s'] / summary_s:.2f}x")
            orders_csv.unlink()
            triples_csv = Path(tmp) / "triples.csv"
            pd.DataFrame({"frequency": x, "recency": t_x, "T": T, "weights": counts}).to_csv(
                triples_csv, index=False, float_format="%.17g")
        else:
            print(f"peer side skipped: {peer} does not exist (create the lifetimes venv as in the docstring)")

        for label, cls, key in (("BG/NBD", BetaGeoModel, "bgnbd"), ("Pareto/NBD", ParetoNBDModel, "pareto")):
            t0 = time.perf_counter()
            ours = cls().fit(rfm)
            ours_s = time.perf_counter() - t0
            print(f"--- {label} ({ours.n_distinct_rows_:,} distinct triples of {ours.n_customers_:,} customers); "
                  f"{load()}")
            if have_peer:
                theirs = run_peer(peer, PEER_FIT, [str(triples_csv), key], args.peer_timeout)
                compare_fits(label, ours, ours_s, theirs, args.peer_timeout, data, weights)
                if key == "pareto":
                    theirs = run_peer(peer, PEER_FIT, [str(triples_csv), key, "1e-8"], args.peer_timeout)
                    compare_fits(f"{label} (tol=1e-8)", ours, ours_s, theirs, args.peer_timeout, data, weights,
                                 show_ours=False)
            else:
                print(f"cadence  {label} fit {ours_s:8.2f} s")
                print(params_line("cadence", ours.params_, list(ours.params_), ours.log_likelihood_))
    print("truth (BG/NBD)   " + "  ".join(f"{k} {v:.4f}" for k, v in TRUTH.items()))
    print(f"end: {load()}")


if __name__ == "__main__":
    main()
