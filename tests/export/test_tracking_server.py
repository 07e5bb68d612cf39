"""Against a real ``mlflow server`` (SQLite backend, proxied artifacts) on loopback: export, registry, aliases, gate.

The shop's planted outcomes make the seed rules certainly better than the
``slow`` policy (which always waits longest), so the gate's answers are known:
slow as a first version loses to the logging policy (champion only with
``no_gate``), a copy of the champion is refused (difference exactly zero),
the rules pass.
"""

from __future__ import annotations

from pathlib import Path

import mlflow
from typer.testing import CliRunner

from cadence.cli import app
from cadence.deployment.serving import input_example
from cadence.workflows.export import export_policy
from cadence.workflows.promote import promote
from cadence.workflows.tracking import using_tracking

NAME = "shop-policy"


def test_export_registry_aliases_and_gate(tracking_server: str, shop: Path, policies_dir: Path) -> None:
    server = tracking_server
    client = mlflow.MlflowClient(tracking_uri=server, registry_uri=server)

    v1 = export_policy(shop, "slow", NAME, tracking_uri=server, policies_dir=policies_dir)
    assert (v1["version"], v1["alias"]) == ("1", "challenger")
    # A first version is judged against the logging policy: slow is worse, so only --no-gate makes it champion.
    first = promote(NAME, tracking_uri=server)
    assert not first["promoted"] and "vs the logging policy" in first["message"]
    first = promote(NAME, tracking_uri=server, no_gate=True)
    assert first["promoted"] and "WITHOUT a gate" in first["message"]
    assert client.get_model_version(NAME, "1").tags["cadence.gate"] == "skipped"

    # A second export is a new version; the first is untouched.
    v2 = export_policy(shop, "slow", NAME, tracking_uri=server, policies_dir=policies_dir)
    assert v2["version"] == "2"
    assert sorted(int(v.version) for v in client.search_model_versions(f"name = '{NAME}'")) == [1, 2]
    assert client.get_model_version_by_alias(NAME, "challenger").version == "2"
    assert client.get_model_version_by_alias(NAME, "champion").version == "1"

    # No better than the champion: refused, with both estimates, exit code 1.
    result = CliRunner().invoke(app, ["promote", NAME, "--tracking-uri", server])
    assert result.exit_code == 1, result.output
    assert "refused" in result.output and "vs champion version 1" in result.output
    assert client.get_model_version_by_alias(NAME, "champion").version == "1"
    tags = client.get_model_version(NAME, "2").tags
    assert tags["cadence.gate"] == "refused" and float(tags["cadence.gate_diff"]) == 0.0

    # Better: promoted, and the gate's estimates are recorded on the version.
    result = CliRunner().invoke(app, ["export", str(shop), "--policy", "rules", "--model-name", NAME,
                                      "--tracking-uri", server])
    assert result.exit_code == 0, result.output
    assert f"registered {NAME} version 3 (alias challenger)" in result.output
    res = promote(NAME, tracking_uri=server)
    assert res["promoted"], res["message"]
    assert res["diff_lower"] > 0 and res["candidate"] > res["champion"]
    assert client.get_model_version_by_alias(NAME, "champion").version == "3"
    tags = client.get_model_version(NAME, "3").tags
    assert tags["cadence.gate"] == "passed" and tags["cadence.gate_champion_version"] == "1"
    assert float(tags["cadence.gate_diff_lower"]) > 0

    # Served from the server's proxied artifact store by alias.
    with using_tracking(server):
        model = mlflow.pyfunc.load_model(f"models:/{NAME}@champion")
    out = model.predict(input_example())
    assert out["action"].isin(["send", "hold"]).all() and out["propensity"].between(0, 1).all()
