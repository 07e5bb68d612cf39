"""Where MLflow runs go: one small resolution rule, shared by every command.

``MLFLOW_TRACKING_URI`` wins when set; otherwise runs go to a SQLite store
``mlflow.db`` in the current directory, with artifacts under ``./mlruns``.
Environment and paths are read here (and by the CLI), never by model code.

Examples
--------
>>> import os
>>> uri = tracking_uri(environ={})
>>> uri.startswith("sqlite:///") and uri.endswith("mlflow.db")
True
>>> tracking_uri(environ={"MLFLOW_TRACKING_URI": "http://mlflow:5000"})
'http://mlflow:5000'
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

DEFAULT_DB = "mlflow.db"
DEFAULT_ARTIFACTS = "mlruns"


def tracking_uri(explicit: str | None = None, *, environ: Mapping[str, str] | None = None) -> str:
    """The tracking URI: ``explicit``, else ``$MLFLOW_TRACKING_URI``, else ``sqlite:///<cwd>/mlflow.db``."""
    if explicit:
        return explicit
    env = os.environ if environ is None else environ
    if env.get("MLFLOW_TRACKING_URI"):
        return env["MLFLOW_TRACKING_URI"]
    return f"sqlite:///{(Path.cwd() / DEFAULT_DB).as_posix()}"


def artifact_location(uri: str) -> str | None:
    """Artifact root for new experiments: ``<dir of the SQLite file>/mlruns`` for SQLite stores.

    None for other stores (the server decides).
    """
    if uri.startswith("sqlite:///"):
        db = Path(uri.removeprefix("sqlite:///"))
        return (db.parent.resolve() / DEFAULT_ARTIFACTS).as_uri()
    return None


def experiment_id(name: str, uri: str) -> str:
    """Get or create experiment ``name`` on ``uri`` (artifacts per :func:`artifact_location`)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    return str(client.create_experiment(name, artifact_location=artifact_location(uri)))


@contextlib.contextmanager
def using_tracking(uri: str) -> Iterator[None]:
    """Point MLflow's fluent API (tracking and registry) at ``uri`` for the block."""
    import mlflow

    before = (mlflow.get_tracking_uri(), mlflow.get_registry_uri())
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(before[0])
        mlflow.set_registry_uri(before[1])
