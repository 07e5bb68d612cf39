"""Run the slowest test files first, so that `pytest -n 2` does not end on one long test.

pytest-xdist hands tests out in collection order, and the slowest files
(each a few minutes: fresh-process exports, the demo, the truth studies)
would otherwise be collected last and run while the other worker sits idle.
Whole files move, in their own order, so module-scoped fixtures are built once
per worker as before. The list comes from ``pytest --durations``; a file
missing from it only loses its head start.
"""

from __future__ import annotations

import pytest

SLOW_FIRST = (
    "tests/export/test_fresh_process.py",
    "tests/policies/test_coverage_vs_truth.py",
    "tests/features/test_engines_demo_shop.py",
    "tests/export/test_tracking_server.py",
    "tests/simulation/test_replay.py",
    "tests/test_demo.py",
    "tests/export/test_promotion.py",
    "tests/notebooks/test_notebooks.py",
    "tests/evaluation/test_ope.py",
    "tests/features/test_triggers.py",
    "tests/models/test_fitting.py",
    "tests/policies/test_cli_policies.py",
    "tests/reporting/test_report.py",
    "src/workflows/export.py",
    "tests/policies/test_policy_context.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    rank = {path: i for i, path in enumerate(SLOW_FIRST)}
    root = config.rootpath

    def key(item: pytest.Item) -> int:
        try:
            path = item.path.relative_to(root).as_posix()
        except ValueError:
            return len(rank)
        return rank.get(path, len(rank))

    items.sort(key=key)  # stable: the rest keep their collection order
