"""Replaying the lifecycle log catches duplicates, orphans and version gaps."""

from __future__ import annotations

import dataclasses

from modelbus.audit import audit
from modelbus.events import example_event, new_meta
from modelbus.events import types as t


def _registered(version: int, cause: object | None = None) -> t.ModelRegistered:
    event = example_event(t.ModelRegistered)
    return dataclasses.replace(event, meta=new_meta("registry", cause=cause), version=version)  # type: ignore[type-var]


def test_a_consistent_log_audits_clean_and_groups_one_loop_by_correlation() -> None:
    requested = dataclasses.replace(example_event(t.TrainingRequested), meta=new_meta("ops"))  # type: ignore[type-var]
    first = _registered(1, cause=requested)
    second = _registered(2)
    report = audit([requested, first, second])
    assert report.ok
    assert report.versions == {"example": [1, 2]}
    assert report.chains[requested.meta.correlation_id] == [requested, first]


def test_a_redelivered_event_is_counted_not_reported() -> None:
    first = _registered(1)
    report = audit([first, first, _registered(2)])
    assert report.ok
    assert report.redeliveries == 1
    assert report.versions == {"example": [1, 2]}


def test_reused_ids_orphans_and_version_gaps_are_reported() -> None:
    first = _registered(1)
    impostor = dataclasses.replace(first, version=1, description="other content")
    orphan = dataclasses.replace(
        _registered(3), meta=dataclasses.replace(new_meta("x"), causation_id="nowhere")
    )
    report = audit([first, impostor, orphan])
    assert not report.ok
    assert report.problems == [
        f"event_id {first.meta.event_id} reused by a different ModelRegistered",
        f"ModelRegistered {orphan.meta.event_id} names cause nowhere, "
        "which is not earlier in the log",
        "example: versions registered out of order [1, 1, 3]",
        "example: version(s) [1] registered more than once",
    ]
