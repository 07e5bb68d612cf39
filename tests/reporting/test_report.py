"""The summary report: executes on a small shop, self-contained, numbers equal to the API's."""

from __future__ import annotations

import os
import re
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from cadence.cli import app
from cadence.data.io import read_table
from cadence.evaluation.holdout import holdout_lift
from cadence.reporting import REMOTE_ASSET, ReportError, render_report
from cadence.reporting.summary import holdout_table
from cadence.simulation.replay import format_table
from cadence.synthetic import ShopConfig, generate_shop
from cadence.workflows.policies import simulate_named

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    # Rendered through the CLI from a folder outside the repository: the notebook ships with the package.
    base = tmp_path_factory.mktemp("report")
    shop = generate_shop(ShopConfig(customers=1_500, days=120, seed=4), base / "shop")
    before = Path.cwd()
    os.chdir(base)
    try:
        result = CliRunner().invoke(app, ["report", "summary", "-p", "data_dir", str(shop)])
    finally:
        os.chdir(before)
    assert result.exit_code == 0, result.output
    # The path is printed relative to the current folder (papermill's progress bar shares the output).
    found = re.search(r"(?<![\w/])reports/summary-\d{8}T\d{6}Z\.html", result.output)
    assert found is not None, result.output
    html = Path(found.group(0))
    assert (base / html).is_file()  # written under the current folder's reports/
    assert ROOT not in base.parents
    return shop, base / html


def test_report_is_self_contained_with_figures(rendered: tuple[Path, Path]) -> None:
    _, html = rendered
    text = html.read_text(encoding="utf-8")
    assert re.fullmatch(r"summary-\d{8}T\d{6}Z\.html", html.name)
    assert REMOTE_ASSET.search(text) is None
    assert text.count("plotly.js v") == 1  # embedded once
    # trigger volume, holdout lift, survival curves, calibration, churn-risk distribution, Qini,
    # off-policy estimates, the decision drivers, replay lift, cap pressure, the sequence diagram, the
    # send-time heatmap, the BTYD tracking plot, conditional expectations and the recommenders per stage
    assert text.count("Plotly.newPlot") == 15
    for title in ("Trigger volume by stage and day", "Survival by purchase count", "Churn-risk calibration", "Qini curves", "Net revenue per trigger",
                  "What drives the learned policy's decisions", "Items each recommender chooses",
                  "Replay: candidate against baseline", "Frequency-cap pressure", "Sequence cart_abandon_reminders",
                  "Shop curve: email engagement by local hour of week", "Repeat purchases",
                  "Holdout purchases by calibration frequency"):
        assert title in text, title
    assert "s.summarise(data_dir)" not in text and "setup_notebook()" not in text  # code hidden
    assert "@example.com" not in text and "C0000" not in text  # no PII, no customer ids


def test_lift_table_numbers_equal_the_api(rendered: tuple[Path, Path]) -> None:
    shop, html = rendered
    expected = holdout_table(holdout_lift(read_table(shop / "messages.parquet", "messages")))
    shown = _table_with(html.read_text(encoding="utf-8"), "95% interval")
    assert list(shown["stage"]) == list(expected["stage"])
    for col in ("sent", "held out", "conversion (sent)", "conversion (held)", "lift"):
        pd.testing.assert_series_equal(shown[col].astype(float), expected[col].astype(float), check_names=False)
    assert list(shown["95% interval"]) == list(expected["95% interval"])


def test_replay_lift_table_equals_the_api(rendered: tuple[Path, Path]) -> None:
    shop, html = rendered
    # The report's default policy is the learned one, replayed against the logged one.
    expected = format_table(simulate_named(shop, "learned", "logging")["table"])
    shown = _table_with(html.read_text(encoding="utf-8"), "candidate", index="metric")
    assert list(shown["metric"]) == list(expected["metric"])
    for col in ("baseline", "candidate", "lift", "95% interval"):
        assert list(shown[col]) == list(expected[col]), col


class _Tables(HTMLParser):
    """Collects every <table> as rows of cell texts (stdlib only)."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "table":
            self.tables.append([])
        elif tag == "tr" and self.tables:
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self.tables and self.tables[-1]:
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def _table_with(text: str, header: str, index: str = "stage") -> pd.DataFrame:
    parser = _Tables()
    parser.feed(text)
    for rows in parser.tables:
        if rows and header in rows[0]:
            # pandas' to_html puts the index name on a second header row.
            head = [h or index for h in rows[0]]
            body = [r for r in rows[1:] if len(r) == len(head) and r[0] != index]
            return pd.DataFrame(body, columns=head)
    raise AssertionError(f"no table with {header!r}")


def test_unknown_report_is_named(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match="no report 'nope'.*known: summary"):
        render_report("nope", out_dir=tmp_path)
