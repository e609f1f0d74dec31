"""What `modelbus events tail` shows: filters, one-line rendering and JSON lines."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime

import pytest

from modelbus.cli.render import one_line
from modelbus.cli.tail import EventFilter, as_json_line, parse_since
from modelbus.events import GenericRecord, example_event
from modelbus.events import types as t

NOW = datetime(2026, 1, 2, 12, 0, tzinfo=UTC)


def at(event, when: datetime):  # type: ignore[no-untyped-def]
    return dataclasses.replace(event, meta=dataclasses.replace(event.meta, occurred_at=when))


def test_the_filter_keeps_only_the_asked_model_types_and_times() -> None:
    wanted = EventFilter.of(model="credit", types=["DriftDetected"], since="1h", now=NOW)
    drift = dataclasses.replace(example_event(t.DriftDetected), model="credit")
    assert wanted.accepts(at(drift, NOW))
    assert not wanted.accepts(at(drift, datetime(2026, 1, 2, 10, 59, tzinfo=UTC)))
    assert not wanted.accepts(at(dataclasses.replace(drift, model="other"), NOW))
    promoted = dataclasses.replace(example_event(t.ModelPromoted), model="credit")
    assert not wanted.accepts(at(promoted, NOW))


def test_generic_records_are_filtered_by_their_fields() -> None:
    record = GenericRecord("modelbus.events.Future", {"model": "credit"})
    assert EventFilter.of(model="credit", types=[], since=None).accepts(record)
    assert not EventFilter.of(model="other", types=[], since=None).accepts(record)


def test_unknown_types_and_bad_times_are_refused_with_the_fix() -> None:
    with pytest.raises(ValueError, match="unknown event type"):
        EventFilter.of(model=None, types=["DriftDetectd"], since=None)
    with pytest.raises(ValueError, match="ISO 8601"):
        parse_since("yesterday", now=NOW)


def test_drift_and_health_render_their_evidence_and_figures() -> None:
    drift = example_event(t.DriftDetected)
    evidence = dataclasses.replace(
        example_event(t.DriftEvidence), feature="salary", detector="ADWIN", statistic=0.25,
        p_value=0.001, sample_size=900,
    )  # fmt: skip
    line = one_line(dataclasses.replace(drift, kind="covariate", evidence=[evidence], version=3))
    assert "covariate drift on v3" in line
    assert "salary ADWIN stat=0.25 p=0.001 n=900" in line
    health = dataclasses.replace(
        example_event(t.ModelHealth), version=2, variant="canary", requests=120, errors=1,
        accuracy=0.9, labelled=100, latency_p99_ms=12.5,
    )  # fmt: skip
    line = one_line(health)
    assert "v2 canary" in line
    assert "120 results, 1 errors" in line
    assert "p99 12.5 ms" in line
    assert "accuracy 90.0% of 100" in line


def test_alarms_are_red_and_event_text_cannot_inject_markup() -> None:
    rolled = dataclasses.replace(example_event(t.ModelRolledBack), reason="[bold]x")
    line = one_line(rolled)
    assert line.startswith("[red]")
    assert "\\[bold]x" in line


def test_json_lines_carry_type_and_plain_values() -> None:
    event = example_event(t.ModelPromoted)
    parsed = json.loads(as_json_line("modelbus.lifecycle[0]@7", event))
    assert parsed["type"] == "modelbus.events.ModelPromoted"
    assert parsed["where"] == "modelbus.lifecycle[0]@7"
    assert parsed["event"]["version"] == event.version
    assert parsed["event"]["meta"]["occurred_at"] == event.meta.occurred_at.isoformat()
