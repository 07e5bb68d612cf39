"""The one-way rule is checked, and the check can fail.

``make test`` runs ``lint-imports`` on the installed package; these tests
run it on a copy of the package, once as it is and once with a deliberate
back-edge, so a contract that stopped matching anything would be noticed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")


def _lint(tmp_path: Path, back_edge: tuple[str, str] | None) -> subprocess.CompletedProcess[str]:
    """Run lint-imports on a copy of ``src/`` importable as ``cadence``, optionally with one added import."""
    pkg = tmp_path / "pkg" / "cadence"
    shutil.copytree(ROOT / "src", pkg, ignore=shutil.ignore_patterns("__pycache__"))
    if back_edge is not None:
        module, target = back_edge
        path = pkg.joinpath(*module.split(".")[1:]).with_suffix(".py")
        path.write_text(path.read_text() + f"\nimport {target}  # deliberate back-edge\n")
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    ini = tmp_path / ".importlinter"
    lines = ["[importlinter]", f"root_package = {config['root_package']}"]
    for i, c in enumerate(config["contracts"]):
        lines += ["", f"[importlinter:contract:{i}]", f"name = {c['name']}", f"type = {c['type']}"]
        for key in ("layers", "source_modules", "forbidden_modules"):
            if key in c:
                lines.append(f"{key} =\n" + "\n".join(f"    {v}" for v in c[key]))
    ini.write_text("\n".join(lines) + "\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "pkg")}
    return subprocess.run([str(LINT), "--config", str(ini), "--no-cache"], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=300)


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> subprocess.CompletedProcess[str]:
    return _lint(tmp_path_factory.mktemp("clean"), None)


def test_the_package_keeps_every_contract(clean: subprocess.CompletedProcess[str]) -> None:
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "3 kept, 0 broken" in clean.stdout


@pytest.mark.parametrize(("module", "target", "contract"), [
    ("cadence.features.customer", "cadence.policies.rules", "Data flows one way"),
    ("cadence.contract.clock", "cadence.data.io", "Data flows one way"),
    ("cadence.synthetic.world", "cadence.features.logged", "The synthetic world imports only the contract"),
    ("cadence.evaluation.estimators", "cadence.synthetic.world", "Estimators never read the truth"),
])
def test_a_deliberate_back_edge_fails(tmp_path: Path, module: str, target: str, contract: str) -> None:
    out = _lint(tmp_path, (module, target))
    assert out.returncode != 0
    broken = out.stdout.split("Broken contracts", 1)[-1]
    assert contract in broken and module in broken and target in broken, out.stdout
