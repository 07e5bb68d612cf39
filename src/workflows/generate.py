"""Write a synthetic shop to a data directory: what ``cadence generate`` and the demo run.

The synthetic world only simulates; replacing an earlier output safely is the
data layer's job (:func:`cadence.data.io.atomic_path`), so it happens here.

Examples
--------
>>> import tempfile
>>> from cadence.synthetic import ShopConfig
>>> d = write_shop(ShopConfig(customers=100, days=20), tempfile.mkdtemp() + "/shop")
>>> (d / "orders.parquet").is_file()
True
"""

from __future__ import annotations

from pathlib import Path

from cadence.contract.actions import Policy
from cadence.data.io import PathLike, atomic_path
from cadence.synthetic import ShopConfig, generate_shop


def write_shop(cfg: ShopConfig, out: PathLike, *, policy: Policy | None = None, progress: bool = False) -> Path:
    """Generate the shop of ``cfg`` and put it at ``out`` atomically, replacing what was there."""
    with atomic_path(out) as tmp:
        generate_shop(cfg, tmp, policy=policy, progress=progress)
    return Path(out)
