"""The trainer after a drift, on the real broker: it retrains on the new regime's rows only.

The test plays the monitor: it sends labelled traffic of Agrawal rule 0, then of rule 4, works
out from the requests topic where rule 4 starts in each partition, and publishes the
``DriftDetected`` a monitor would (onset time and per-partition onset offsets). The trainer runs
in this process (inline worker), for a model of the test's own that uses the credit contract.
"""

from __future__ import annotations

import re
import shutil
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelbus.bus import Publisher, data_topic
from modelbus.bus.reading import read_topic
from modelbus.config import KafkaSettings
from modelbus.data import ensure_reference, generate_credit
from modelbus.events import Codec, find_schema_dir, load_contract, new_meta
from modelbus.events import types as t
from modelbus.events.meta import now_utc
from modelbus.packaging import load_package
from modelbus_trainer.bootstrap import bootstrap, train_params
from modelbus_trainer.config import Settings
from modelbus_trainer.snapshot import load_snapshot
from modelbus_trainer.training import fit_model
from tests.support.broker import (
    Bus,
    RequestProducer,
    create_model_topics,
    request_codec,
    start_at_log_end,
)
from tests.support.waiting import NotYet, eventually

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
ROWS_PER_RULE = 3_000
HELD_BACK_ROWS = 2_000
EPOCHS = 20
WAIT_S = 300.0  # a loaded 2-core machine trains slowly; the events decide, not the clock


@dataclass
class Rig:
    """A running trainer for ``model`` and the test's side of the broker."""

    model: str
    settings: Settings
    bus: Bus
    requests: RequestProducer
    feedback: Publisher
    request_codec: Codec


@pytest.fixture(scope="module")
def rig(kafka_settings: KafkaSettings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    """A trainer of this module's own model (the credit contract under another name)."""
    model = f"drift{uuid.uuid4().hex[:8]}"
    root = tmp_path_factory.mktemp("trainer-drift")
    schema_dir = root / "schemas"
    shutil.copytree(find_schema_dir(), schema_dir)
    shutil.copy(schema_dir / "models" / "credit.avsc", schema_dir / "models" / f"{model}.avsc")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MODELBUS_SCHEMA_DIR", str(schema_dir))
        create_model_topics(kafka_settings, model, partitions=4)
        kafka = kafka_settings.model_copy(update={"models": [model]})
        group_id = f"trainer-drift-{model}"
        start_at_log_end(kafka.bootstrap_servers, group_id)  # earlier triggers are not ours
        settings = Settings(
            kafka=kafka,
            group_id=group_id,
            models_pattern=re.escape(model),  # leave other tests' models to their trainers
            run_dir=root / "trainer",
            mlflow_tracking_uri=f"sqlite:///{root}/mlflow.db",
            mlflow_artifact_root=root / "mlartifacts",
            reference_rows=2_000,
            production_rows=ROWS_PER_RULE * 2,
            min_post_drift_rows=ROWS_PER_RULE,
            drift_data_wait_s=WAIT_S / 2,
            epochs=EPOCHS,
            batch_size=64,
            kafka_read_timeout_s=60,
            worker="inline",
            repo_dir=REPO,
        )
        codec = request_codec()
        app = bootstrap(settings)
        app.catch_up()
        stop = threading.Event()
        thread = threading.Thread(target=app.run, args=(stop,), daemon=True)
        thread.start()
        try:
            yield Rig(
                model=model,
                settings=settings,
                bus=Bus(kafka, client_id=f"test-drift-{model}"),
                requests=RequestProducer(kafka, codec),
                feedback=Publisher(kafka, codec, client_id=f"test-labels-{model}"),
                request_codec=codec,
            )
        finally:
            stop.set()
            thread.join(timeout=120)


def _send_requests(rig: Rig, prefix: str, rows: list[dict]) -> list[str]:
    ids = [f"{prefix}-{number}" for number in range(len(rows))]
    for request_id, row in zip(ids, rows, strict=True):
        rig.requests.send(rig.model, request_id, row)
    rig.requests.flush()
    return ids


def _send_labels(rig: Rig, ids: list[str], labels: list[int]) -> None:
    for request_id, label in zip(ids, labels, strict=True):
        rig.feedback.publish(
            t.Feedback(meta=new_meta("test-labeller"), request_id=request_id, model=rig.model,
                       label=label, observed_at=now_utc())
        )  # fmt: skip
    rig.feedback.flush()


def _request_positions(rig: Rig) -> dict[int, list[tuple[int, str]]]:
    """partition -> [(offset, request id)] of every request on the model's topic, in order."""
    positions: dict[int, list[tuple[int, str]]] = {}
    topic = data_topic(rig.model, "requests")
    for envelope in read_topic(rig.settings.kafka.bootstrap_servers, topic, purpose="test-onset"):
        request = rig.request_codec.decode(envelope.value or b"", where=envelope.where)
        positions.setdefault(envelope.partition, []).append((envelope.offset, request.request_id))
    return positions


def _outcome(rig: Rig, cause: Any) -> Any:
    """The ModelTrained or TrainingFailed caused by ``cause``."""

    def check() -> Any:
        found = [
            e for e in rig.bus.lifecycle(rig.model)
            if isinstance(e, t.ModelTrained | t.TrainingFailed)
            and e.meta.causation_id == cause.meta.event_id
        ]  # fmt: skip
        if not found:
            raise NotYet(f"no outcome of {type(cause).__name__} {cause.meta.event_id} yet")
        (outcome,) = found
        return outcome

    return eventually(check, WAIT_S)


def _accuracy(probabilities: np.ndarray, labels: list[int]) -> float:
    return float((probabilities.argmax(axis=1) == np.asarray(labels)).mean())


def _key(row: dict) -> tuple:
    return tuple(sorted(row.items()))


def test_a_drift_retrains_on_the_rows_after_its_onset_as_well_as_offline_training_would(
    rig: Rig,
) -> None:
    old_rows, old_labels = generate_credit(ROWS_PER_RULE, seed=11, classification_function=0)
    new_rows, new_labels = generate_credit(ROWS_PER_RULE, seed=12, classification_function=4)
    held_rows, held_labels = generate_credit(HELD_BACK_ROWS, seed=13, classification_function=4)
    old_ids = _send_requests(rig, "rule0", old_rows)
    _send_labels(rig, old_ids, old_labels)
    switched_at: datetime = now_utc()
    new_ids = _send_requests(rig, "rule4", new_rows)
    half = ROWS_PER_RULE // 2
    _send_labels(rig, new_ids[:half], new_labels[:half])

    positions = _request_positions(rig)
    onset = {
        partition: next(offset for offset, rid in placed if rid.startswith("rule4-"))
        for partition, placed in positions.items()
    }
    ends = {partition: placed[-1][0] + 1 for partition, placed in positions.items()}
    assert sum(len(placed) for placed in positions.values()) == 2 * ROWS_PER_RULE
    for partition, placed in positions.items():  # after the onset, rule 4 only
        assert all(rid.startswith("rule4-") for o, rid in placed if o >= onset[partition])

    drift = t.DriftDetected(
        meta=new_meta("monitor@test"), model=rig.model, version=None, kind="concept",
        evidence=[], onset_at=switched_at, episode_id=f"episode-{rig.model}",
        onset_offsets=[t.PartitionOffset(partition=p, offset=o) for p, o in sorted(onset.items())],
    )  # fmt: skip
    rig.bus.publish(drift)
    rig.bus.publish(drift)  # a redelivery starts no second job
    # The rest of the new rule's labels come later: the job waits for min_post_drift_rows.
    _send_labels(rig, new_ids[half:], new_labels[half:])

    trained = _outcome(rig, drift)
    assert isinstance(trained, t.ModelTrained), getattr(trained, "reason", "")
    ours = rig.bus.lifecycle(rig.model)
    started = [
        e for e in ours
        if isinstance(e, t.TrainingStarted) and e.meta.correlation_id == drift.meta.correlation_id
    ]  # fmt: skip
    assert len(started) == 1, [e.meta.producer for e in started]  # another trainer answered?
    assert started[0].meta.causation_id == drift.meta.event_id
    assert (started[0].trigger, started[0].job_id) == ("DriftDetected", trained.job_id)
    assert trained.meta.correlation_id == drift.meta.correlation_id

    # Lineage: each requests partition from exactly its onset to its end; no reference file.
    requests_topic = data_topic(rig.model, "requests")
    request_sources = [s for s in trained.data.sources if s.uri == requests_topic]
    assert {s.partition: (s.start_offset, s.end_offset) for s in request_sources} == {
        p: (onset[p], ends[p]) for p in onset
    }
    assert {s.uri for s in trained.data.sources} == {
        requests_topic,
        data_topic(rig.model, "feedback"),
    }
    assert sum(s.rows for s in request_sources) == trained.data.rows == ROWS_PER_RULE

    # The snapshot holds exactly the new rule's rows, with their labels.
    snapshot_rows, snapshot_labels, _ = load_snapshot(
        rig.settings.run_dir / "snapshots" / f"{trained.data.snapshot_sha256}.jsonl"
    )
    new_by_key = {_key(row): label for row, label in zip(new_rows, new_labels, strict=True)}
    assert len(snapshot_rows) == ROWS_PER_RULE
    assert {_key(row): y for row, y in zip(snapshot_rows, snapshot_labels, strict=True)} == (
        new_by_key
    )

    # As good on held-back rule-4 rows as a model fitted offline on the same post-onset rows.
    served = _accuracy(load_package(trained.artifact_uri).predict_rows(held_rows), held_labels)
    offline = fit_model(
        new_rows, new_labels, load_contract(rig.model), train_params(rig.settings),
        seed=rig.settings.seed,
    )  # fmt: skip
    reference = _accuracy(
        offline.trained.predict(offline.preprocessor.transform(held_rows)), held_labels
    )
    assert abs(served - reference) <= 0.03, (
        f"retrained after drift: {served:.4f}, offline on the post-onset rows: {reference:.4f} "
        f"on {HELD_BACK_ROWS} held-back rule-4 rows"
    )
    print(f"held-back rule-4 accuracy: retrained {served:.4f}, offline {reference:.4f}")


def test_a_request_to_corrupt_a_slice_flips_exactly_its_labels_and_is_recorded(
    rig: Rig,
) -> None:
    request = t.TrainingRequested(
        meta=new_meta("test"), model=rig.model, reason="corrupted slice", requested_by="test",
        seed=7, max_rows=ROWS_PER_RULE, corrupt_labels_where="elevel=0",
    )  # fmt: skip
    rig.bus.publish(request)
    trained = _outcome(rig, request)
    assert isinstance(trained, t.ModelTrained), getattr(trained, "reason", "")
    assert trained.params["corrupt_labels_where"] == "elevel=0"
    assert trained.meta.correlation_id == request.meta.correlation_id

    reference = ensure_reference(
        rig.settings.reference_path(rig.model),
        n_rows=rig.settings.reference_rows,
        seed=rig.settings.reference_seed,
    )
    truth = {_key(row): y for row, y in zip(reference.rows, reference.labels, strict=True)}
    for seed, rule in ((11, 0), (12, 4)):  # what the drift test sent, if it ran first
        rows, labels = generate_credit(ROWS_PER_RULE, seed=seed, classification_function=rule)
        truth |= {_key(row): y for row, y in zip(rows, labels, strict=True)}
    rows, labels, _ = load_snapshot(
        rig.settings.run_dir / "snapshots" / f"{trained.data.snapshot_sha256}.jsonl"
    )
    flipped = [y != truth[_key(row)] for row, y in zip(rows, labels, strict=True)]
    in_slice = [row["elevel"] == 0 for row in rows]
    assert len(rows) == ROWS_PER_RULE
    assert flipped == in_slice
    assert 0 < sum(in_slice) < len(rows)


def test_a_request_to_corrupt_a_feature_the_contract_lacks_fails_validation(rig: Rig) -> None:
    request = t.TrainingRequested(
        meta=new_meta("test"), model=rig.model, reason="bad slice", requested_by="test",
        seed=7, max_rows=None, corrupt_labels_where="colour=1",
    )  # fmt: skip
    rig.bus.publish(request)
    failed = _outcome(rig, request)
    assert isinstance(failed, t.TrainingFailed)
    assert (failed.stage, failed.reason) == (
        "validate", "corrupt_labels_where names 'colour', not a feature of the contract",
    )  # fmt: skip
    assert failed.meta.correlation_id == request.meta.correlation_id
