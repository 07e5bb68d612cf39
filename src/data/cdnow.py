"""The CDNOW purchase data as contract tables.

CDNOW is the standard public data set of customer-base analysis: every
purchase, through June 1998, of the 23,570 customers who first bought at the
online music shop CDNOW in the first quarter of 1997, and the 1/10 systematic
sample of 2,357 of them that Fader, Hardie & Lee (2005) use to fit BG/NBD.
The raw files are vendored unchanged in ``data/external/cdnow/raw/`` (see the
``PROVENANCE.md`` next to them).

Each raw line is one transaction: a customer, a day, a number of CDs and a
dollar value. :func:`cdnow_tables` maps the lines to the contract
(:mod:`cadence.contract.tables`):

* ``customers``: one row per customer; ``customer_id`` is the five-digit
  master id as text (``'00001'``), ``signup_at`` the first purchase day
  (CDNOW has no separate sign-up date, and the cohort is defined by the first
  purchase). The optional columns are absent.
* ``orders``: one row per raw line. ``order_id`` is
  ``'<customer_id>-<n>'`` with ``n`` the 1-based, zero-padded position of the
  line among that customer's lines in the file, so the sample's orders carry
  the same ids as the same lines in the master file. ``ts`` is the day at
  midnight UTC; ``revenue`` the dollar value. Lines are kept as they are:
  the master file holds 255 lines identical to another line of the same
  customer and 80 lines of value 0.00 (the sample 21 and 8); whether to merge same-day purchases is
  the feature code's decision (:func:`cadence.features.purchases.rfm_summary`).
* ``order_items``: one row per order, product ``'cd'``, ``quantity`` the
  number of CDs and ``price = revenue / quantity``. Neither raw file has a
  line with fewer than one CD (the minimum is 1), so nothing is clipped; the
  adapter refuses such a line rather than invent a quantity.
* ``products``: the single product ``'cd'`` ("Compact disc", category
  ``music``), priced at the median unit price of the cohort's lines ($13.99
  in the master, $13.97 in the sample) and created 1997-01-01 UTC.

Rebuild the committed data directories from the raw files with::

    python -m cadence.data.cdnow

run from the repository root (paths default to ``data/external/cdnow/``).

References
----------
Fader, P. S., Hardie, B. G. S. & Lee, K. L. (2005). "Counting your customers"
the easy way: an alternative to the Pareto/NBD model. *Marketing Science*
24(2), 275-284.

Examples
--------
From the repository root:

>>> tables = cdnow_tables("data/external/cdnow/raw", "sample")
>>> {name: len(df) for name, df in tables.items()}
{'customers': 2357, 'products': 1, 'orders': 6919, 'order_items': 6919}
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from cadence.data.io import PathLike, write_tables

Cohort = Literal["master", "sample"]

#: Raw file of each cohort and the names of its whitespace-separated columns.
RAW_FILES: dict[str, tuple[str, tuple[str, ...]]] = {
    "master": ("CDNOW_master.txt", ("customer_id", "date", "cds", "value")),
    "sample": ("CDNOW_sample.txt", ("customer_id", "sample_id", "date", "cds", "value")),
}

PRODUCT_ID = "cd"
PRODUCT_CREATED_AT = pd.Timestamp("1997-01-01", tz="UTC")


def read_raw(raw_path: PathLike, cohort: Cohort) -> pd.DataFrame:
    """Read one raw CDNOW file as text columns ``customer_id, date, cds, value``.

    The master file starts with a header line, the sample file does not; both
    are read by position so that the header is skipped by content, not count.
    """
    if cohort not in RAW_FILES:
        raise ValueError(f"cohort must be one of {sorted(RAW_FILES)}, got {cohort!r}")
    name, columns = RAW_FILES[cohort]
    df = pd.read_csv(Path(raw_path) / name, sep=r"\s+", header=None, names=list(columns), dtype=str)
    # Drop the master file's header line (its "date" field is not a date).
    df = df[df["date"].str.fullmatch(r"\d{8}")]
    return df[["customer_id", "date", "cds", "value"]].reset_index(drop=True)


def transactions_to_tables(raw: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Map raw CDNOW lines (text columns ``customer_id, date, cds, value``) to contract tables.

    Pure: the order of ``raw`` decides the order ids and nothing else.

    Parameters
    ----------
    raw : DataFrame
        One row per transaction line, as :func:`read_raw` returns it.

    Returns
    -------
    dict of str to DataFrame
        ``customers``, ``orders``, ``order_items``, ``products``.
    """
    customer_id = raw["customer_id"].astype(str).str.zfill(5)
    ts = pd.to_datetime(raw["date"], format="%Y%m%d", utc=True).astype("datetime64[ns, UTC]")
    quantity = pd.to_numeric(raw["cds"]).astype("int64")
    revenue = pd.to_numeric(raw["value"]).astype("float64")
    if (quantity < 1).any():
        raise ValueError(
            f"{int((quantity < 1).sum())} CDNOW line(s) have fewer than one CD; "
            "the contract needs order_items.quantity >= 1"
        )
    if (revenue < 0).any():
        raise ValueError(f"{int((revenue < 0).sum())} CDNOW line(s) have a negative value")

    position = customer_id.groupby(customer_id).cumcount() + 1
    lines = pd.DataFrame(
        {
            "order_id": (customer_id + "-" + position.astype(str).str.zfill(3)).astype(object),
            "customer_id": customer_id.astype(object),
            "ts": ts,
            "revenue": revenue,
            "quantity": quantity,
        }
    )
    # Order ids already sort within a customer, so this order is the file's.
    lines = lines.sort_values(["customer_id", "order_id"], kind="stable").reset_index(drop=True)

    orders = lines[["order_id", "customer_id", "ts", "revenue"]].copy()
    order_items = pd.DataFrame(
        {
            "order_id": lines["order_id"],
            "product_id": pd.Series(PRODUCT_ID, index=lines.index, dtype=object),
            "quantity": lines["quantity"],
            "price": lines["revenue"] / lines["quantity"],
        }
    )

    customers = (
        orders.groupby("customer_id", sort=True)["ts"]
        .min()
        .rename("signup_at")
        .reset_index()
        .astype({"customer_id": object})
    )

    products = pd.DataFrame(
        {
            "product_id": pd.Series([PRODUCT_ID], dtype=object),
            "title": pd.Series(["Compact disc"], dtype=object),
            "category": pd.Series(["music"], dtype=object),
            "price": np.array([float(np.median(order_items["price"]))], dtype="float64"),
            "created_at": pd.Series([PRODUCT_CREATED_AT], dtype="datetime64[ns, UTC]"),
        }
    )
    return {
        "customers": customers,
        "products": products,
        "orders": orders,
        "order_items": order_items,
    }


def cdnow_tables(raw_path: PathLike, cohort: Cohort) -> dict[str, pd.DataFrame]:
    """Read a CDNOW cohort from the raw folder and return it as contract tables.

    Parameters
    ----------
    raw_path : path
        The folder holding ``CDNOW_master.txt`` and ``CDNOW_sample.txt``.
    cohort : {'master', 'sample'}
        All 23,570 customers (69,659 lines) or the 1/10 sample of 2,357
        customers (6,919 lines) used by Fader, Hardie & Lee (2005).

    Returns
    -------
    dict of str to DataFrame
        ``customers``, ``products``, ``orders``, ``order_items`` with the
        contract's dtypes: ids ``object`` (str), timestamps
        ``datetime64[ns, UTC]``, ``quantity`` int64, money float64.

    Examples
    --------
    >>> t = cdnow_tables("data/external/cdnow/raw", "master")
    >>> t["orders"].head(3).to_dict("list")["order_id"]
    ['00001-001', '00002-001', '00002-002']
    >>> str(t["orders"]["ts"].dtype), int(t["order_items"]["quantity"].min())
    ('datetime64[ns, UTC]', 1)
    """
    return transactions_to_tables(read_raw(raw_path, cohort))


def build(raw_dir: PathLike, out_dir: PathLike) -> dict[str, Path]:
    """Write ``<out_dir>/master/`` and ``<out_dir>/sample/`` as Parquet data directories.

    Each folder is written atomically by :func:`cadence.data.io.write_tables`,
    without the output marker: these folders are reference data kept in git
    (inputs), not outputs a later run may replace. Returns the folder of each
    cohort.
    """
    written: dict[str, Path] = {}
    for cohort in ("master", "sample"):
        target = Path(out_dir) / cohort
        write_tables(cdnow_tables(raw_dir, cohort), target, mark=False)
        written[cohort] = target
    return written


def main(argv: list[str] | None = None) -> None:
    """Command line: ``python -m cadence.data.cdnow [--raw-dir DIR] [--out-dir DIR]``."""
    parser = argparse.ArgumentParser(
        prog="python -m cadence.data.cdnow",
        description="Rebuild the CDNOW contract data directories from the vendored raw files.",
    )
    parser.add_argument("--raw-dir", default="data/external/cdnow/raw")
    parser.add_argument("--out-dir", default="data/external/cdnow")
    args = parser.parse_args(argv)
    for cohort, path in build(args.raw_dir, args.out_dir).items():
        print(f"{cohort}: {path}")


if __name__ == "__main__":
    main()
