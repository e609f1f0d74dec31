"""One training job, start to end; runs in the job process, away from the consumer loop."""

from __future__ import annotations

import shutil
import time
import traceback

import structlog

from modelbus.bus import kafka_schema_store
from modelbus.events import build_codec
from modelbus.events import load_contract as events_load_contract
from modelbus.events.schemas import fingerprint_of
from modelbus.events.types import PartitionOffset
from modelbus.packaging import (
    capture_environment,
    package_sha256,
    resolve_package,
    verify_package,
    weights_sha256,
    write_package,
)
from modelbus.trust import load_signer
from modelbus_trainer.regime import (
    BadSlice,
    flip_labels,
    older_rows_wanted,
    parse_slice,
    post_onset_ranges,
)
from modelbus_trainer.snapshot import Slice, Snapshot, TrainingError, assemble
from modelbus_trainer.sources import (
    labelled_requests,
    production_slices,
    reference_slice,
    request_marks,
)
from modelbus_trainer.spec import JobOutcome, JobSpec
from modelbus_trainer.tracking import log_run
from modelbus_trainer.training import RUNTIME, fit_model

log = structlog.get_logger(__name__)


def load_contract(model: str) -> dict:
    """The model's data contract, or a 'validate' TrainingError saying where it should be."""
    try:
        return events_load_contract(model)
    except FileNotFoundError as error:
        raise TrainingError("validate", f"{error}; add it first") from error


def build_snapshot(spec: JobSpec, contract: dict) -> Snapshot:
    """Reference data plus labelled production requests, assembled and stored by sha256.

    After a drift whose onset is known, only the labelled requests after it (and, if they
    are too few, as many of the newest older ones) — the old concept would mislead the model.
    """
    settings = spec.settings
    corrupt = _corruption(spec, contract)
    slices: list[Slice] = []
    if spec.onset_offsets and spec.read_production:
        slices = _after_onset(spec)
    else:
        slices = _reference_and_recent(spec)
    if corrupt is not None:
        feature, value = corrupt
        slices = [
            Slice(rows=s.rows, labels=flip_labels(s.rows, s.labels, feature, value)[0],
                  source=s.source)
            for s in slices
        ]  # fmt: skip
    return assemble(
        slices,
        contract,
        max_rows=spec.max_rows,
        min_rows=settings.min_rows,
        snapshot_dir=settings.run_dir / "snapshots",
        where_to_look=f"reference rows configured: {settings.reference_rows}; "
        f"labelled requests read: {spec.read_production and settings.production_rows > 0}",
    )


def _corruption(spec: JobSpec, contract: dict) -> tuple[str, int] | None:
    if spec.corrupt_labels_where is None:
        return None
    try:
        return parse_slice(spec.corrupt_labels_where, contract)
    except BadSlice as error:
        raise TrainingError("validate", str(error)) from error


def _after_onset(spec: JobSpec) -> list[Slice]:
    """Labelled requests after the onset, waiting a while for enough of them."""
    settings = spec.settings
    bootstrap = settings.kafka.bootstrap_servers
    codec = build_codec(kafka_schema_store(bootstrap), models=(spec.model,))
    onset = [PartitionOffset(partition=p, offset=o) for p, o in spec.onset_offsets]
    since_ms = (spec.onset_at_ms or 0) - 5_000
    deadline = time.monotonic() + settings.drift_data_wait_s
    while True:
        marks = request_marks(bootstrap, spec.model, settings.kafka_read_timeout_s)
        ranges = post_onset_ranges(onset, {p: high for p, (_low, high) in marks.items()})
        slices, labelled = labelled_requests(
            bootstrap, codec, spec.model, ranges, labels_since_ms=since_ms,
            timeout_s=settings.kafka_read_timeout_s,
        )  # fmt: skip
        if labelled >= settings.min_post_drift_rows or time.monotonic() >= deadline:
            break
        log.info("waiting for labelled traffic after the drift's onset", job_id=spec.job_id,
                 labelled=labelled, wanted=settings.min_post_drift_rows)  # fmt: skip
        time.sleep(3.0)
    older = older_rows_wanted(labelled, settings.min_post_drift_rows)
    if older:
        per_partition = -(-older // max(len(ranges), 1))
        before = {
            p: (max(marks[p][0], start - per_partition), start)
            for p, (start, _end) in ranges.items()
        }
        old_slices, _ = labelled_requests(
            bootstrap, codec, spec.model, before,
            labels_since_ms=since_ms - int(settings.drift_data_wait_s * 1000) - 3_600_000,
            timeout_s=settings.kafka_read_timeout_s,
        )  # fmt: skip
        slices = old_slices + slices  # newest last: assemble keeps the most recent
    log.info("post-onset snapshot", job_id=spec.job_id, labelled_after_onset=labelled,
             older_added=older)  # fmt: skip
    return slices


def _reference_and_recent(spec: JobSpec) -> list[Slice]:
    settings = spec.settings
    slices = []
    if settings.reference_rows > 0:
        slices.append(
            reference_slice(
                settings.reference_path(spec.model),
                n_rows=settings.reference_rows,
                seed=settings.reference_seed,
                keep_last=spec.reference_rows_cap,
            )
        )
    if spec.read_production and settings.production_rows > 0:
        codec = build_codec(
            kafka_schema_store(settings.kafka.bootstrap_servers), models=(spec.model,)
        )
        slices += production_slices(
            settings.kafka.bootstrap_servers,
            codec,
            spec.model,
            per_partition=settings.production_rows,
            timeout_s=settings.kafka_read_timeout_s,
        )
    return slices


def run_job(spec: JobSpec) -> JobOutcome:
    """Snapshot -> train -> evaluate -> package -> MLflow. Never raises: failures are outcomes."""
    started = time.perf_counter()
    stage = "validate"
    bound = log.bind(job_id=spec.job_id, model=spec.model)
    try:
        contract = load_contract(spec.model)
        stage = "snapshot"
        snapshot = build_snapshot(spec, contract)
        bound.info("snapshot ready", sha256=snapshot.sha256, rows=snapshot.lineage.rows)
        stage = "train"
        fit = fit_model(
            snapshot.rows,
            snapshot.labels,
            contract,
            spec.params,
            seed=spec.seed,
            progress=lambda epoch, loss, elapsed_s: bound.info(
                "training",
                epoch=epoch,
                epochs=spec.params.epochs,
                loss=round(loss, 5),
                elapsed_s=round(elapsed_s, 2),
            ),
        )
        stage = "package"
        params = spec.params.as_strings() | {"seed": str(spec.seed), "max_rows": str(spec.max_rows)}
        if spec.corrupt_labels_where is not None:
            params["corrupt_labels_where"] = spec.corrupt_labels_where
        environment = capture_environment()
        staging = spec.settings.run_dir / "packages" / spec.model / spec.job_id
        if staging.exists():
            shutil.rmtree(staging)
        manifest = write_package(
            staging,
            name=spec.model,
            contract=contract,
            preprocessor=fit.preprocessor,
            runtime=RUNTIME,
            weights=fit.trained.weights(),
            architecture=fit.trained.architecture,
            profile=fit.profile,
            metrics=fit.metrics,
            params=params,
            lineage=snapshot.lineage,
            code=spec.code,
            environment=environment,
            signer=load_signer("trainer"),
        )
        sha256 = package_sha256(staging)
        stage = "log"
        logged = log_run(
            tracking_uri=spec.settings.mlflow_tracking_uri,
            experiment=spec.settings.experiment(spec.model),
            artifact_root=spec.settings.mlflow_artifact_root,
            run_name=spec.job_id,
            params=params,
            metrics=fit.metrics,
            tags={
                "modelbus.job_id": spec.job_id,
                "modelbus.trigger": spec.trigger,
                "modelbus.trigger_event_id": spec.trigger_event_id,
                "modelbus.correlation_id": spec.correlation_id,
                "modelbus.snapshot_sha256": snapshot.sha256,
                "modelbus.artifact_sha256": sha256,
                "modelbus.contract_fingerprint": manifest.contract_fingerprint,
                "modelbus.parent_version": str(spec.parent_version),
                "mlflow.source.git.commit": spec.code.git_sha,
            },
            snapshot_rows=snapshot.rows,
            snapshot_labels=snapshot.labels,
            snapshot_path=snapshot.path,
            snapshot_sha256=snapshot.sha256,
            package_dir=staging,
            contract=contract,
        )
        # What the registry will fetch is MLflow's copy: check that one, then drop ours.
        logged_dir = resolve_package(logged.package.package_uri)
        verify_package(logged_dir, expected_sha256=sha256)
        weights = weights_sha256(logged_dir)
        shutil.rmtree(staging, ignore_errors=True)
        wall_s = time.perf_counter() - started
        bound.info("model trained", run_id=logged.run_id, sha256=sha256, wall_s=round(wall_s, 2),
                   **{k: round(v, 4) for k, v in fit.metrics.items()})  # fmt: skip
        return JobOutcome(
            job_id=spec.job_id,
            model=spec.model,
            ok=True,
            run_id=logged.run_id,
            model_uri=logged.package.model_uri,
            artifact_uri=str(logged_dir.resolve()),
            artifact_sha256=sha256,
            weights_sha256=weights,
            contract_fingerprint=fingerprint_of(contract).hex(),
            metrics=fit.metrics,
            params=params,
            lineage=snapshot.lineage,
            environment=environment,
            code=spec.code,
            parent_version=spec.parent_version,
            wall_s=wall_s,
        )
    except TrainingError as error:
        bound.warning("training failed", stage=error.stage, reason=error.reason)
        return _failed(spec, error.stage, error.reason, started)
    except Exception as error:
        bound.error("training crashed", stage=stage, error=traceback.format_exc())
        reason = f"{type(error).__name__}: {error} (see the trainer log for the traceback)"
        return _failed(spec, stage, reason, started)


def _failed(spec: JobSpec, stage: str, reason: str, started: float) -> JobOutcome:
    return JobOutcome(
        job_id=spec.job_id,
        model=spec.model,
        ok=False,
        stage=stage,
        reason=reason,
        code=spec.code,
        parent_version=spec.parent_version,
        wall_s=time.perf_counter() - started,
    )
