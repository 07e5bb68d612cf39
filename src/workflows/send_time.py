"""The send-time model fitted on a data directory: the path-reading edge of :mod:`cadence.models.send_time`.

Examples
--------
>>> import tempfile
>>> from pathlib import Path
>>> from cadence.synthetic import ShopConfig, generate_shop
>>> shop = generate_shop(ShopConfig(customers=100, days=30, seed=1), Path(tempfile.mkdtemp()) / "s")
>>> fit_send_time(shop, "2025-01-20", bandwidth=2.0).bandwidth_
2.0
"""

from __future__ import annotations

from typing import Any

from cadence.data.io import PathLike
from cadence.features.engagement import send_time_frames
from cadence.features.engine import Engine, connect
from cadence.models.send_time import SendTimeModel
from cadence.workflows.features import load_tables


def fit_send_time(data_dir: PathLike, as_of: Any, *, engine: Engine = "duckdb", **params: Any) -> SendTimeModel:
    """A :class:`SendTimeModel` fitted on a data directory's messages (and events) before ``as_of``.

    Parameters
    ----------
    data_dir : path
        A contract data directory with ``messages``, ``customers`` and ``events``.
    as_of : timestamp-like
        Exclusive cutoff, required: nothing at or after it is read.
    engine : {'duckdb', 'spark'}
        Runs the feature layer's :func:`cadence.features.engagement.send_time_frames`.
    **params
        :class:`SendTimeModel`'s parameters.
    """
    con = connect(engine)
    tables = load_tables(con, data_dir, ["messages", "customers", "events"])  # a missing table raises, naming it
    sends, sessions = send_time_frames(con, tables, as_of)
    return SendTimeModel(**params).fit(sends, sessions)


__all__ = ["fit_send_time"]
