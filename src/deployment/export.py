"""What exporting a policy is made of: the served model's code, pinned requirements, tracking helpers.

:func:`cadence.workflows.export.export_policy` wires these together for a
data directory; each piece here works on objects, not paths to data.

Examples
--------
>>> "mlflow" in imported_packages(["cadence.deployment.serving"])
True
"""

from __future__ import annotations

import ast
import importlib.util
import pickle
import shutil
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import asdict, is_dataclass
from importlib.metadata import PackageNotFoundError, packages_distributions, version
from pathlib import Path
from typing import Any

import cadence
from cadence.contract.actions import Policy
from cadence.data.io import PathLike
from cadence.deployment.registry import FAMILIES

#: The tables an export reads (:func:`~cadence.workflows.logs.load_log`) and fingerprints.
TABLES: tuple[str, ...] = ("messages", "customers", "orders")
EXPERIMENT = "cadence-export"
CHALLENGER = "challenger"
CHAMPION = "champion"
TAG = "cadence."


# --------------------------------------------------------------------------- #
# What the model ships
# --------------------------------------------------------------------------- #


def package_dir() -> Path:
    """The importable ``cadence`` package folder (its files may be links into ``src/``)."""
    return Path(next(iter(cadence.__path__)))


def copy_package(dest: PathLike) -> Path:
    """Copy the ``cadence`` source into ``dest/cadence`` (links followed, caches and report notebooks skipped) and return it.

    Whatever folder the package lives in (``src/`` here), the copy imports as
    ``cadence`` once its parent is on ``sys.path``: what MLflow does with
    ``code_paths``.
    """
    target = Path(dest) / "cadence"
    shutil.copytree(package_dir(), target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.ipynb"))
    return target


def _module_level(tree: ast.AST) -> list[ast.AST]:
    """The nodes of ``tree`` that run when the module is imported: all but the bodies of functions and of
    ``if TYPE_CHECKING:`` (imports for the type checker only)."""
    out: list[ast.AST] = []
    todo = [tree]
    while todo:
        node = todo.pop()
        out.append(node)
        if isinstance(node, ast.If) and _type_checking(node.test):
            todo.extend(node.orelse)
            continue
        todo.extend(c for c in ast.iter_child_nodes(node)
                    if not isinstance(c, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda))
    return out


def _type_checking(test: ast.expr) -> bool:
    """``TYPE_CHECKING`` or ``typing.TYPE_CHECKING``: false when the module runs."""
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _module_imports(name: str, module_level: bool = False) -> tuple[set[str], set[str]]:
    """(cadence modules, other top-level packages) that module ``name`` imports, anywhere in its source
    (``module_level``: only where importing the module runs them, not in its functions)."""
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        return set(), set()
    tree = ast.parse(Path(spec.origin).read_text(), spec.origin)
    own: set[str] = set()
    other: set[str] = set()

    def add(module: str) -> None:
        if module == "cadence" or module.startswith("cadence."):
            own.add(module)
        else:
            other.add(module.split(".")[0])

    for node in (_module_level(tree) if module_level else ast.walk(tree)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            add(node.module)
            if node.module.startswith("cadence"):
                for alias in node.names:  # `from cadence.models import uplift` imports a module
                    sub = f"{node.module}.{alias.name}"
                    if importlib.util.find_spec(node.module) and _is_module(sub):
                        own.add(sub)
    return own, other


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def imported_packages(modules: Iterable[str], module_level: bool = False) -> set[str]:
    """Top-level third-party packages that ``modules`` and every ``cadence`` module they import use.

    Imports are read from the source (also those inside functions, so
    lazily imported packages count, unless ``module_level``).

    >>> sorted(imported_packages(["cadence.policies.rules"]))
    ['numpy', 'pandas']
    """
    seen: set[str] = set()
    todo = list(modules)
    packages: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        parts = name.split(".")
        todo.extend(".".join(parts[:k]) for k in range(1, len(parts)))  # parent packages run too
        own, other = _module_imports(name, module_level)
        todo.extend(own - seen)
        packages |= other
    return {p for p in packages if p not in sys.stdlib_module_names and p != "__future__"}


def pickled_packages(obj: Any) -> set[str]:
    """Top-level packages whose classes or functions a pickle of ``obj`` refers to.

    >>> import numpy as np
    >>> sorted(pickled_packages(np.arange(2)))
    ['numpy']
    """
    found: set[str] = set()

    class Recorder(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            found.add(module.split(".")[0])
            return super().find_class(module, name)

    import io

    Recorder(io.BytesIO(pickle.dumps(obj))).load()
    return {p for p in found if p not in sys.stdlib_module_names and p not in ("builtins", "copyreg")}


#: Run in a fresh Python by :func:`served_packages`: unpickle the model, decide the input example, list the modules.
_SERVED_CHILD = r"""
import json, sys
import cloudpickle, mlflow.pyfunc
before = sorted(sys.modules)
with open(sys.argv[1], "rb") as f:
    model = cloudpickle.load(f)
from cadence.deployment.serving import input_example
model.predict(None, input_example())
print(json.dumps([before, sorted(sys.modules)]))
"""


def served_packages(model: Any) -> set[str]:
    """Top-level third-party packages a served model needs: measured by loading it in a fresh process.

    A fresh Python unpickles ``model`` (a
    :class:`~cadence.deployment.serving.PolicyModel`) and decides the input
    example; the packages are those the ``cadence`` modules loaded there
    import when they are imported (:func:`imported_packages`, read from their
    source), those they import in functions that the load and the decision
    actually loaded (beyond what MLflow loads itself: it loads ``pyspark``
    when installed), and what the pickle refers to. So a package the
    policy's module imports only to fit (``lifelines`` for the churn model,
    ``pyspark`` for the Spark engine) is not required, while one imported
    when the policy's module is (``ibis`` through the context module's
    imports) is.
    """
    import json
    import tempfile

    import cloudpickle

    with tempfile.TemporaryDirectory(prefix="cadence-served-") as tmp:
        path = Path(tmp) / "model.pkl"
        path.write_bytes(cloudpickle.dumps(model))
        run = subprocess.run([sys.executable, "-c", _SERVED_CHILD, str(path)], capture_output=True, text=True,
                             timeout=600, cwd=tmp)
    if run.returncode:
        raise RuntimeError(f"the served model does not load and decide in a fresh process:\n{run.stderr[-2000:]}")
    before, after = json.loads(run.stdout.strip().splitlines()[-1])
    ours = [m for m in after if m == "cadence" or m.startswith("cadence.")]
    loaded = {m.split(".")[0] for m in after} - {m.split(".")[0] for m in before}
    lazily = {p for p in imported_packages(ours) if p in loaded}
    return (imported_packages(ours, module_level=True) | lazily | pickled_packages(model)) - {"cadence"}


def pinned_requirements(packages: Iterable[str]) -> list[str]:
    """``dist==version`` of the installed distributions providing ``packages`` (``cadence`` excluded).

    ``mlflow`` and ``cloudpickle`` (which loads the pyfunc) are always
    included.

    >>> [r.split("==")[0] for r in pinned_requirements(["sklearn"])]
    ['cloudpickle', 'mlflow', 'scikit-learn']
    """
    provides = packages_distributions()
    dists: set[str] = {"mlflow", "cloudpickle"}
    for p in packages:
        if p in ("cadence", "mlflow"):
            continue
        dists.update(provides.get(p, []))
    pins = []
    for d in sorted(dists, key=str.lower):
        try:
            pins.append(f"{d}=={version(d)}")
        except PackageNotFoundError:
            continue
    return pins


def orchestrator_settings() -> dict[str, Any]:
    """The orchestrator's default settings, exported with the policy for the serving side.

    The pyfunc decides one trigger at a time and applies no caps (they need
    memory across requests); the settings travel with it so the sending
    system applies the same rules the replay assumed.
    """
    from cadence.policies.orchestrator import OrchestratorConfig

    settings: dict[str, Any] = OrchestratorConfig().to_dict()
    return settings


def git_commit() -> tuple[str, bool]:
    """``(commit, dirty)`` of the repository holding the package source; ``("unknown", False)`` outside git."""
    src = Path(next(iter(cadence.__path__))) / "__init__.py"
    where = src.resolve().parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain"], cwd=where, capture_output=True, text=True,
                                timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown", False
    return head or "unknown", bool(status.strip())


def policy_family(policy: Policy) -> str:
    """The registry family name of a policy object (``rules`` or ``learned``)."""
    for name, cls in FAMILIES.items():
        if isinstance(policy, cls):
            return name
    return type(policy).__name__


def policy_params(policy: Policy) -> dict[str, Any]:
    """A policy's constructor parameters (scikit-learn ``get_params`` or dataclass fields)."""
    if hasattr(policy, "get_params"):
        params: dict[str, Any] = policy.get_params()
        return params
    if is_dataclass(policy) and not isinstance(policy, type):
        return asdict(policy)
    return {}




# --------------------------------------------------------------------------- #
# Export
# --------------------------------------------------------------------------- #







