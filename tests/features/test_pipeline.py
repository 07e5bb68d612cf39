"""``feature_tables`` computes both feature tables from tables; the workflow reads the folder and writes them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from cadence.data.io import read_tables
from cadence.features.engine import execute, normalise, register
from cadence.features.pipeline import OUTPUTS, feature_tables
from cadence.workflows.features import build_features

AS_OF = "2025-04-01"


def test_feature_tables_from_frames_are_what_cadence_features_writes(small_shop: Path, tmp_path: Path,
                                                                        duck: Any) -> None:
    run = build_features(small_shop, AS_OF, tmp_path / "f")
    # The same shop as in-memory frames, in two customer buckets: no path reaches the feature layer.
    ft = feature_tables(duck, register(duck, read_tables(small_shop)), AS_OF, buckets=2)
    assert len(ft.ranges) == 2 and run.buckets == 1
    for name in OUTPUTS:
        keys = list(ft.sort_by[name])
        got = normalise(pd.concat([execute(duck, part) for part in ft.parts(name)], ignore_index=True), keys)
        want = normalise(pd.read_parquet(tmp_path / "f" / f"{name}.parquet"), keys)
        assert len(got) == run.rows[name] > 0
        pd.testing.assert_frame_equal(got[list(want.columns)], want, check_dtype=False)


def test_an_unknown_output_is_named(small_shop: Path, duck: Any) -> None:
    ft = feature_tables(duck, register(duck, read_tables(small_shop, ["customers"])), AS_OF)
    with pytest.raises(ValueError, match="output: 'features' is not one of"):
        next(ft.parts("features"))
