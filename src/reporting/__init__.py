"""Parameterised report notebooks rendered to self-contained HTML.

``render_report`` executes a notebook with papermill (its ``parameters``
cell overridden), then converts the result to HTML with the code hidden. The
HTML embeds plotly.js once and references no CDN: nbconvert's default
template loads require.js, MathJax and Mermaid from the internet, so a
minimal template derived from it drops those tags, and figures are shown
with plotly's offline notebook renderer (see :func:`setup_notebook`).

Examples
--------
>>> # render_report("summary", {"data_dir": "data/raw/demo-shop"})  # -> reports/summary-<timestamp>.html
"""

from __future__ import annotations

import datetime as dt
import re
import tempfile
from collections.abc import Mapping
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from cadence.data.io import PathLike, atomic_path

#: Where report notebooks live: shipped inside the package (``cadence/reporting/notebooks``), so
#: ``cadence report`` works from any folder.
REPORTS_NOTEBOOKS: Traversable = resources.files("cadence.reporting") / "notebooks"
#: Where reports are written, relative to the current folder (the CLI's and the demo's choice).
REPORTS_DIR = Path("reports")

_TEMPLATE = """{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{% block jupyter_widgets %}{% endblock jupyter_widgets %}
"""

#: A ``<script src=...>`` or ``<link href=...>`` that would load from the network.
REMOTE_ASSET = re.compile(r"<(?:script|link)[^>]+(?:src|href)=[\"']https?://", re.IGNORECASE)


class ReportError(RuntimeError):
    """A report notebook could not be found or executed."""


def setup_notebook() -> None:
    """Show plotly figures with plotly.js embedded once and no CDN, for offline HTML reports.

    plotly's own ``notebook`` renderer adds a MathJax ``<script src>`` from a
    CDN to every figure, so a small renderer of ours is registered instead.
    """
    import plotly.io as pio
    from plotly.io.base_renderers import MimetypeRenderer

    class OfflineRenderer(MimetypeRenderer):  # type: ignore[misc]
        """The first figure carries plotly.js; later ones reuse it."""

        to_mimebundle = _offline_mimebundle

    _JS_SENT.clear()
    pio.renderers["cadence_offline"] = OfflineRenderer()
    pio.renderers.default = "cadence_offline"


#: Non-empty once this kernel has output plotly.js (plotly copies renderer
#: objects, so the flag cannot live on the instance).
_JS_SENT: list[bool] = []


def _offline_mimebundle(self: Any, fig_dict: dict[str, Any]) -> dict[str, str]:
    import plotly.io as pio

    html = pio.to_html(fig_dict, full_html=False, include_plotlyjs=not _JS_SENT,
                       include_mathjax=False, default_width="100%", validate=False)
    _JS_SENT.append(True)
    return {"text/html": html}


def report_notebook(name: str, notebooks_dir: PathLike | Traversable = REPORTS_NOTEBOOKS) -> Path:
    """The notebook behind report ``name`` (``<notebooks_dir>/<name>.ipynb``; by default the package's own).

    >>> report_notebook("summary").name
    'summary.ipynb'
    """
    folder = Path(str(notebooks_dir))
    path = folder / f"{name}.ipynb"
    if not path.is_file():
        known = sorted(p.stem for p in folder.glob("*.ipynb"))
        raise ReportError(f"no report {name!r} in {folder} (known: {', '.join(known) or 'none'})")
    return path


def notebook_to_html(notebook: PathLike | Any, out_html: PathLike) -> Path:  # Any: a NotebookNode
    """Convert an executed notebook (path or nbformat node) to self-contained HTML, code hidden."""
    import nbformat
    from nbconvert import HTMLExporter

    nb = notebook if isinstance(notebook, nbformat.NotebookNode) else nbformat.read(str(notebook), as_version=4)
    with tempfile.TemporaryDirectory() as tpl_dir:
        (Path(tpl_dir) / "cadence.html.j2").write_text(_TEMPLATE)
        exporter = HTMLExporter(template_name="lab", template_file=str(Path(tpl_dir) / "cadence.html.j2"),
                                exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True)
        body, _ = exporter.from_notebook_node(nb)
    if REMOTE_ASSET.search(body):
        raise ReportError("the rendered report would load assets from the network; refusing to write it")
    with atomic_path(out_html) as tmp:
        tmp.write_text(body, encoding="utf-8")
    return Path(out_html)


def render_report(name: str, parameters: Mapping[str, Any] | None = None, *,
                  notebooks_dir: PathLike | Traversable = REPORTS_NOTEBOOKS, out_dir: PathLike = REPORTS_DIR,
                  timestamp: dt.datetime | None = None, progress: bool = True) -> Path:
    """Execute report ``name`` with ``parameters`` and write ``<out_dir>/<name>-<timestamp>.html``.

    The executed notebook is kept next to it (``.ipynb``) for debugging; both
    are written atomically. Raises :class:`ReportError` naming the failing
    cell when execution fails.
    """
    import papermill as pm

    src = report_notebook(name, notebooks_dir)
    stamp = (timestamp or dt.datetime.now(dt.UTC)).strftime("%Y%m%dT%H%M%SZ")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    html = out_dir / f"{name}-{stamp}.html"
    with tempfile.TemporaryDirectory() as work:
        executed = Path(work) / f"{name}.ipynb"
        try:
            pm.execute_notebook(str(src), str(executed), parameters=dict(parameters or {}),
                                progress_bar=progress, kernel_name="python3", cwd=str(Path.cwd()))
        except pm.PapermillExecutionError as e:
            raise ReportError(f"report {name!r} failed in cell {e.exec_count}: {e.ename}: {e.evalue}") from e
        notebook_to_html(executed, html)
    return html
