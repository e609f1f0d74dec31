"""Where snapshot rows come from: the reference file, and requests joined with feedback."""

from __future__ import annotations

from pathlib import Path

import structlog
from confluent_kafka import Consumer, TopicPartition

from modelbus.bus import data_topic
from modelbus.bus.envelope import Envelope
from modelbus.bus.reading import (
    newest_ranges,
    read_only_consumer,
    read_ranges,
    watermarks,
)
from modelbus.data import ensure_reference
from modelbus.events import Codec
from modelbus.events import types as t
from modelbus.events.types import DataSource
from modelbus_trainer.snapshot import Slice, TrainingError

log = structlog.get_logger(__name__)


def reference_slice(path: Path, *, n_rows: int, seed: int, keep_last: int | None = None) -> Slice:
    """The model's reference data (generated at ``path`` on first use) as a 'file' slice.

    ``keep_last`` keeps only the file's last rows (the slice's ``rows`` says how many).
    """
    try:
        reference = ensure_reference(path, n_rows=n_rows, seed=seed)
    except ValueError as error:
        raise TrainingError("snapshot", f"reference data unreadable: {error}") from error
    skip = max(len(reference.rows) - keep_last, 0) if keep_last is not None else 0
    source = DataSource(
        kind="file",
        uri=str(path.resolve()),
        rows=len(reference.rows) - skip,
        sha256=reference.sha256,
    )
    return Slice(rows=reference.rows[skip:], labels=reference.labels[skip:], source=source)


def read_offsets(
    consumer: Consumer, topic: str, per_partition: int, timeout_s: float
) -> dict[int, tuple[int, int, list[Envelope]]]:
    """partition -> (start, end, messages) for the newest ``per_partition`` offsets of each."""
    try:
        ranges = newest_ranges(consumer, topic, per_partition, timeout_s=timeout_s)
    except LookupError:
        return {}
    kept: dict[int, list[Envelope]] = {partition: [] for partition in ranges}
    try:
        for envelope in read_ranges(consumer, topic, ranges, timeout_s=timeout_s):
            kept[envelope.partition].append(envelope)
    except TimeoutError as error:
        raise TrainingError(
            "snapshot",
            f"{topic} did not deliver offsets up to its end within {timeout_s}s; is the "
            "broker healthy? (raise MODELBUS_TRAINER_KAFKA_READ_TIMEOUT_S if it is slow)",
        ) from error
    finally:
        consumer.unassign()
    return {partition: (start, end, kept[partition]) for partition, (start, end) in ranges.items()}


def production_slices(
    bootstrap_servers: str,
    codec: Codec,
    model: str,
    *,
    per_partition: int,
    timeout_s: float,
) -> list[Slice]:
    """Recent requests joined with their Feedback labels, one slice per requests partition.

    Feedback is read first (its offset ranges are recorded too), then each requests partition
    is read over its newest ``per_partition`` offsets; a request with no label is left out.
    """
    if per_partition <= 0:
        return []
    consumer = read_only_consumer(bootstrap_servers, purpose="trainer-snapshot")
    try:
        feedback_topic = data_topic(model, "feedback")
        requests_topic = data_topic(model, "requests")
        labels: dict[str, int] = {}
        feedback_partitions: dict[int, tuple[int, int, set[str]]] = {}
        for partition, (start, end, messages) in read_offsets(
            consumer, feedback_topic, per_partition, timeout_s
        ).items():
            ids: set[str] = set()
            for message in messages:
                event = _decode_envelope(codec, message)
                if isinstance(event, t.Feedback) and event.model == model:
                    labels[event.request_id] = event.label
                    ids.add(event.request_id)
            feedback_partitions[partition] = (start, end, ids)
        slices: list[Slice] = []
        joined_ids: set[str] = set()
        for partition, (start, end, messages) in read_offsets(
            consumer, requests_topic, per_partition, timeout_s
        ).items():
            rows: list[dict] = []
            row_labels: list[int] = []
            for message in messages:
                event = _decode_envelope(codec, message)
                if not isinstance(event, t.PredictionRequest) or event.request_id in joined_ids:
                    continue
                label = labels.get(event.request_id)
                if label is None:
                    continue
                joined_ids.add(event.request_id)
                rows.append(dict(event.features))
                row_labels.append(int(label))
            source = DataSource(
                kind="topic", uri=requests_topic, partition=partition,
                start_offset=start, end_offset=end, rows=len(rows),
            )  # fmt: skip
            if end > start:
                slices.append(Slice(rows=rows, labels=row_labels, source=source))
        for partition, (start, end, ids) in sorted(feedback_partitions.items()):
            if end <= start:
                continue
            used = len(ids & joined_ids)
            source = DataSource(
                kind="topic", uri=feedback_topic, partition=partition,
                start_offset=start, end_offset=end, rows=used,
            )  # fmt: skip
            # Labels travel with the request rows; this slice records where they were read.
            slices.append(Slice(rows=[], labels=[], source=source))
        log.info("production data read", model=model, labelled_rows=len(joined_ids))
        return slices
    finally:
        consumer.close()


def labelled_requests(
    bootstrap_servers: str,
    codec: Codec,
    model: str,
    request_ranges: dict[int, tuple[int, int]],
    *,
    labels_since_ms: int,
    timeout_s: float,
) -> tuple[list[Slice], int]:
    """Requests in exactly ``request_ranges`` joined with the Feedback labels written since
    ``labels_since_ms``; one slice per requests partition plus the feedback ranges read.
    Returns the slices and the labelled rows they hold."""
    requests_topic, feedback_topic = data_topic(model, "requests"), data_topic(model, "feedback")
    consumer = read_only_consumer(bootstrap_servers, purpose="trainer-snapshot")
    try:
        marks = watermarks(consumer, feedback_topic, timeout_s=timeout_s)
        found = consumer.offsets_for_times(
            [TopicPartition(feedback_topic, p, labels_since_ms) for p in marks], timeout=timeout_s
        )
        feedback_ranges = {
            tp.partition: (tp.offset if tp.offset >= 0 else marks[tp.partition][1],
                           marks[tp.partition][1])
            for tp in found
        }  # fmt: skip
        labels: dict[str, int] = {}
        for envelope in read_ranges(consumer, feedback_topic, feedback_ranges, timeout_s=timeout_s):
            event = _decode_envelope(codec, envelope)
            if isinstance(event, t.Feedback) and event.model == model:
                labels[event.request_id] = event.label
        by_partition: dict[int, tuple[list[dict], list[int]]] = {
            p: ([], []) for p in request_ranges
        }
        seen: set[str] = set()
        for envelope in read_ranges(consumer, requests_topic, request_ranges, timeout_s=timeout_s):
            event = _decode_envelope(codec, envelope)
            if not isinstance(event, t.PredictionRequest) or event.request_id in seen:
                continue
            label = labels.get(event.request_id)
            if label is None:
                continue
            seen.add(event.request_id)
            rows, row_labels = by_partition[envelope.partition]
            rows.append(dict(event.features))
            row_labels.append(int(label))
    finally:
        consumer.close()
    slices = [
        Slice(rows=rows, labels=row_labels, source=DataSource(
            kind="topic", uri=requests_topic, partition=p, start_offset=start,
            end_offset=end, rows=len(rows)))
        for p, (start, end) in sorted(request_ranges.items())
        for rows, row_labels in [by_partition[p]]
        if end > start
    ]  # fmt: skip
    slices += [
        Slice(rows=[], labels=[], source=DataSource(
            kind="topic", uri=feedback_topic, partition=p, start_offset=start, end_offset=end,
            rows=0))
        for p, (start, end) in sorted(feedback_ranges.items())
        if end > start
    ]  # fmt: skip
    return slices, len(seen)


def _decode_envelope(codec: Codec, envelope: Envelope) -> object | None:
    try:
        return codec.decode(envelope.value or b"", where=envelope.where)
    except Exception as error:
        log.warning("skipping undecodable message", error=str(error))
        return None


def request_marks(
    bootstrap_servers: str, model: str, timeout_s: float
) -> dict[int, tuple[int, int]]:
    """partition -> (low, high) of the model's requests topic now."""
    consumer = read_only_consumer(bootstrap_servers, purpose="trainer-marks")
    try:
        return watermarks(consumer, data_topic(model, "requests"), timeout_s=timeout_s)
    finally:
        consumer.close()
