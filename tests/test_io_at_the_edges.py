"""Library functions take tables: only the workflow layer, the CLI and the data I/O layer read paths.

The rule of ``ARCHITECTURE.md`` ("I/O at the edges"), checked on the source:
every module of a layer below ``cadence.workflows`` (taken from the layers
contract in ``pyproject.toml``, so a new layer is covered) and of the
synthetic world is parsed, and a call that reads a file, the current
directory, the environment or MLflow, or a parameter named ``data_dir``,
fails the test, unless :data:`ALLOWED` lists it with the reason.
``cadence.data`` is the I/O layer and is not scanned. The last tests plant
each kind of violation in a real module and check the scan reports it, and
that every allow-list entry is still needed.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"

#: Calls that read a file or a data directory (by the called name: ``pd.read_parquet``, ``con.read_parquet``, ...).
READ_CALLS = frozenset({
    "open", "read_text", "read_bytes", "read_parquet", "read_csv", "read_json", "read_excel", "read_feather",
    "read_orc", "read_pickle", "read_table", "read_tables", "ParquetFile", "ParquetDataset", "dataset",
    "memory_map", "table_path", "table_paths", "list_tables", "load_tables", "load_log", "log_tables",
})
#: Calls that read the current directory, the home directory or the environment.
PLACE_CALLS = frozenset({"cwd", "getcwd", "home", "expanduser", "getenv", "putenv", "getenvb"})
#: MLflow's tracking and registry API (the model classes ``mlflow.pyfunc.PythonModel`` etc. are not tracking).
MLFLOW_TRACKING = frozenset({
    "MlflowClient", "start_run", "end_run", "active_run", "log_param", "log_params", "log_metric", "log_metrics",
    "log_artifact", "log_artifacts", "log_dict", "log_figure", "log_text", "log_table", "log_model", "set_tag",
    "set_tags", "set_tracking_uri", "get_tracking_uri", "set_registry_uri", "get_registry_uri", "set_experiment",
    "get_experiment", "get_experiment_by_name", "create_experiment", "search_runs", "search_experiments",
    "search_model_versions", "register_model", "load_model", "get_run", "autolog", "tracking", "client",
})

#: (module, enclosing function, what) -> why it is allowed. Keep it short; each entry must still be needed.
ALLOWED: dict[tuple[str, str, str], str] = {
    ("cadence.features.engine", "spark_session", "os.environ"):
        "sets (when unset) the interpreter PySpark's local workers start: written for Spark, never read for a "
        "setting of Cadence's",
    ("cadence.deployment.export", "_module_imports", "read_text"):
        "reads the installed cadence modules' own source to list what an export must ship: code, not data, "
        "and no path from the caller",
    ("cadence.deployment.registry", "load_policy_spec", "read_text"):
        "reads a saved policy from the folder its caller names (there is no default folder; the workflows "
        "pass theirs)",
    ("cadence.synthetic.world", "load_truth", "parameter data_dir"):
        "the ground truth a generated shop carries, for tests, studies and reports; import-linter keeps the "
        "synthetic world away from every layer below the workflows",
    ("cadence.synthetic.world", "load_truth", "read_table"): "as above: the truth of a generated shop",
    ("cadence.synthetic.world", "load_config", "parameter data_dir"): "as above: the config a shop was made with",
    ("cadence.synthetic.world", "load_config", "read_text"): "as above: the config a shop was made with",
}


def library_packages() -> list[str]:
    """The packages below ``cadence.workflows`` in the layers contract (except ``cadence.data``), and the world."""
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    layers = next(c for c in contracts if c["type"] == "layers")["layers"]
    below = layers[layers.index("cadence.workflows") + 1:]
    names = [name.strip() for layer in below for name in layer.split("|")]
    return [n for n in names if n != "cadence.data"] + ["cadence.synthetic"]


def library_modules() -> dict[str, Path]:
    """Every module of :func:`library_packages`, by dotted name."""
    out = {}
    for package in library_packages():
        folder = SRC.joinpath(*package.split(".")[1:])
        for path in sorted(folder.rglob("*.py")):
            parts = path.relative_to(SRC).with_suffix("").parts
            out[".".join(("cadence", *parts)).removesuffix(".__init__")] = path
    return out


def _dotted(node: ast.expr) -> str:
    """``a.b.c`` for a chain of attributes on a name (``""`` otherwise)."""
    if isinstance(node, ast.Attribute):
        inner = _dotted(node.value)
        return f"{inner}.{node.attr}" if inner else ""
    return node.id if isinstance(node, ast.Name) else ""


class _Scan(ast.NodeVisitor):
    """Collects ``(enclosing function, what, line)`` for every I/O at the wrong layer."""

    def __init__(self) -> None:
        self.found: list[tuple[str, str, int]] = []
        self.scope: list[str] = []

    def add(self, what: str, node: ast.AST) -> None:
        self.found.append((".".join(self.scope) or "<module>", what, getattr(node, "lineno", 0)))

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.scope.append(node.name)
        args = node.args
        for a in [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]:
            if a is not None and a.arg == "data_dir":
                self.add("parameter data_dir", a)
        self.generic_visit(node)
        self.scope.pop()

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self.scope.append(node.name)
        self.generic_visit(node)
        self.scope.pop()

    def visit_Call(self, node: ast.Call) -> None:
        fn = node.func
        name = fn.attr if isinstance(fn, ast.Attribute) else fn.id if isinstance(fn, ast.Name) else ""
        if name in READ_CALLS or name in PLACE_CALLS:
            self.add(name, node)
        elif (name in ("Path", "PurePath", "PosixPath") and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str) and not node.args[0].value.startswith("/")):
            self.add("relative path literal", node)  # a folder relative to wherever the process started
        self.generic_visit(node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        dotted = _dotted(node)
        if node.attr == "environ" or dotted.endswith("os.environ"):
            self.add("os.environ", node)
        elif dotted.startswith("mlflow.") and node.attr in MLFLOW_TRACKING:
            self.add(dotted, node)
        self.generic_visit(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        for alias in node.names:
            if module == "os" and alias.name in ("environ", "getenv", "getcwd"):
                self.add(f"os.{alias.name}", node)
            if module.split(".")[0] == "mlflow" and (alias.name in MLFLOW_TRACKING
                                                      or module.split(".")[1:2] in (["tracking"], ["client"])):
                self.add(f"from {module} import {alias.name}", node)


def scan(source: str) -> list[tuple[str, str, int]]:
    """``(enclosing function, what, line)`` of every read of a path, place, the environment or MLflow in ``source``."""
    v = _Scan()
    v.visit(ast.parse(source))
    return v.found


def violations(modules: dict[str, str]) -> tuple[list[str], set[tuple[str, str, str]]]:
    """The findings not allowed (``module:line: function: what``) and the allow-list entries that were used."""
    bad, used = [], set()
    for module, source in modules.items():
        for func, what, line in scan(source):
            key = (module, func, what)
            if key in ALLOWED:
                used.add(key)
            else:
                bad.append(f"{module}:{line}: {func}: {what}")
    return bad, used


@pytest.fixture(scope="module")
def sources() -> dict[str, str]:
    return {name: path.read_text() for name, path in library_modules().items()}


def test_the_scan_covers_every_layer_below_the_workflows(sources: dict[str, str]) -> None:
    packages = {m.split(".")[1] for m in sources}
    assert packages == {"contract", "features", "models", "policies", "evaluation", "simulation", "deployment",
                        "synthetic"}
    assert "cadence.features.logged" in sources and "cadence.simulation.replay" in sources


def test_library_functions_read_no_paths_places_environment_or_mlflow(sources: dict[str, str]) -> None:
    bad, _ = violations(sources)
    assert not bad, ("I/O below cadence.workflows (move it to a workflow, or add a justified entry to "
                     "ALLOWED):\n" + "\n".join(bad))


def test_every_allow_list_entry_is_still_needed(sources: dict[str, str]) -> None:
    _, used = violations(sources)
    assert set(ALLOWED) == used, f"stale entries: {sorted(set(ALLOWED) - used)}"


@pytest.mark.parametrize(("planted", "what"), [
    ("def load(data_dir):\n    return 1\n", "parameter data_dir"),
    ("def load(p):\n    import pandas as pd\n    return pd.read_parquet(p)\n", "read_parquet"),
    ("def load(p):\n    return pd.read_csv(p)\n", "read_csv"),
    ("def load(p):\n    with open(p) as f:\n        return f.read()\n", "open"),
    ("def where():\n    return Path.cwd()\n", "cwd"),
    ("def where():\n    return os.getcwd()\n", "getcwd"),
    ("def setting():\n    return os.environ.get('X')\n", "os.environ"),
    ("def setting():\n    return os.getenv('X')\n", "getenv"),
    ("from os import environ\n", "os.environ"),
    ("def track():\n    import mlflow\n    mlflow.start_run()\n", "mlflow.start_run"),
    ("def track():\n    import mlflow\n    mlflow.log_metric('m', 1.0)\n", "mlflow.log_metric"),
    ("from mlflow import MlflowClient\n", "from mlflow import MlflowClient"),
    ("FOLDER = Path('data/processed/x')\n", "relative path literal"),
    ("def log(d):\n    return load_log(d)\n", "load_log"),
])
def test_a_deliberate_violation_fails(sources: dict[str, str], planted: str, what: str) -> None:
    module = "cadence.features.customer"
    bad, _ = violations({**sources, module: sources[module] + "\n\n" + planted})
    assert any(b.startswith(f"{module}:") and b.endswith(f": {what}") for b in bad), bad
