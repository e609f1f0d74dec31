"""MLflow: one run per job with params, metrics, the snapshot as a dataset, and the package."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from modelbus.packaging.mlflow_model import LoggedPackage, log_package


@dataclass(frozen=True, slots=True)
class LoggedRun:
    """The MLflow run and where its package lies."""

    run_id: str
    package: LoggedPackage


def experiment_id(tracking_uri: str, name: str, artifact_root: Path) -> str:
    """The experiment's id, created with local artifacts under ``artifact_root`` if new."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    found = mlflow.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    location = (artifact_root.resolve() / name).as_uri()
    try:
        return str(mlflow.create_experiment(name, artifact_location=location))
    except Exception:
        # Another trainer may have created it between the lookup and here.
        found = mlflow.get_experiment_by_name(name)
        if found is None:
            raise
        return str(found.experiment_id)


def log_run(
    *,
    tracking_uri: str,
    experiment: str,
    artifact_root: Path,
    run_name: str,
    params: dict[str, str],
    metrics: dict[str, float],
    tags: dict[str, str],
    snapshot_rows: list[dict],
    snapshot_labels: list[int],
    snapshot_path: Path,
    snapshot_sha256: str,
    package_dir: Path,
    contract: dict,
) -> LoggedRun:
    """Log one training job; returns the run id and the logged package's URIs."""
    import mlflow
    import pandas as pd

    experiment_id_ = experiment_id(tracking_uri, experiment, artifact_root)
    with mlflow.start_run(experiment_id=experiment_id_, run_name=run_name, tags=tags) as run:
        mlflow.log_params(params)
        mlflow.log_metrics(metrics)
        frame = pd.DataFrame(snapshot_rows)
        frame["label"] = snapshot_labels
        dataset = mlflow.data.from_pandas(  # type: ignore[attr-defined]
            frame,
            source=str(snapshot_path.resolve()),
            targets="label",
            name=f"snapshot-{snapshot_sha256[:12]}",
            digest=snapshot_sha256[:32],  # MLflow's digest column is short; tags keep it whole
        )
        mlflow.log_input(dataset, context="training")
        package = log_package(package_dir, contract, name="model")
        mlflow.set_tag("modelbus.model_uri", package.model_uri)
        return LoggedRun(run_id=run.info.run_id, package=package)
