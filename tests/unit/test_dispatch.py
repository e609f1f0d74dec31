"""The shared consumer logic: decoded events to handlers, everything else to a DeadLetter."""

from __future__ import annotations

from typing import Any

from modelbus.bus import Dispatcher, Envelope, dlq_topic_for, route, topic_specs
from modelbus.bus.topics import LIFECYCLE_TOPIC, SHARED_DLQ_TOPIC
from modelbus.events import build_codec, example_event
from modelbus.events import types as t

CODEC = build_codec()


def _envelope(value: bytes | None, offset: int = 5) -> Envelope:
    return Envelope(
        topic="modelbus.credit.requests", value=value, key=b"k", partition=1, offset=offset
    )


def test_a_decoded_event_reaches_its_handler_and_what_it_returns_is_kept() -> None:
    seen: list[Any] = []
    reply = example_event(t.TrainingStarted)
    dispatcher = Dispatcher(
        CODEC, {t.TrainingRequested: [lambda e: seen.append(e) or [reply]]}, producer="test"
    )
    event = example_event(t.TrainingRequested)
    outcome = dispatcher.dispatch(_envelope(CODEC.encode(event)))
    assert seen == [event]
    assert outcome.events == [reply]
    assert outcome.dead_letter is None
    assert outcome.handled


def test_events_without_a_handler_are_skipped_not_dead_lettered() -> None:
    outcome = Dispatcher(CODEC, {}, producer="test").dispatch(
        _envelope(CODEC.encode(example_event(t.ModelPromoted)))
    )
    assert (outcome.events, outcome.dead_letter, outcome.handled) == ([], None, False)


def test_undecodable_bytes_become_one_dead_letter_with_the_original_bytes_and_reason() -> None:
    outcome = Dispatcher(CODEC, {}, producer="test").dispatch(_envelope(b"\x00garbage!!", 9))
    dead = outcome.dead_letter
    assert dead is not None
    assert (dead.model, dead.source_topic, dead.source_partition, dead.source_offset) == (
        "credit",
        "modelbus.credit.requests",
        1,
        9,
    )
    assert dead.value == b"\x00garbage!!"
    assert dead.key == b"k"
    assert dead.error_type == "BadMagic"
    assert dead.reason == (
        "modelbus.credit.requests[1]@9: starts with 0067 instead of c301 "
        "(Avro single-object encoding)"
    )


def test_a_failing_handler_dead_letters_the_message_with_the_handler_and_error() -> None:
    def explode(event: Any) -> None:
        raise RuntimeError("disk full")

    outcome = Dispatcher(CODEC, {t.TrainingRequested: [explode]}, producer="test").dispatch(
        _envelope(CODEC.encode(example_event(t.TrainingRequested)))
    )
    assert outcome.dead_letter is not None
    assert outcome.dead_letter.error_type == "HandlerError"
    assert "explode raised RuntimeError: disk full" in outcome.dead_letter.reason


def test_oversized_and_empty_messages_are_dead_lettered() -> None:
    dispatcher = Dispatcher(CODEC, {}, producer="test", max_message_bytes=100)
    oversized = dispatcher.dispatch(_envelope(b"\xc3\x01" + bytes(200)))
    empty = dispatcher.dispatch(_envelope(None))
    assert oversized.dead_letter is not None
    assert oversized.dead_letter.error_type == "OversizedMessage"
    assert "202 bytes exceeds the 100-byte limit" in oversized.dead_letter.reason
    assert empty.dead_letter is not None
    assert empty.dead_letter.error_type == "EmptyMessage"


def test_lifecycle_events_are_keyed_by_model_and_data_events_by_request() -> None:
    assert route(example_event(t.ModelRegistered)) == (LIFECYCLE_TOPIC, "example")
    result = example_event(t.PredictionResult)
    assert route(result) == ("modelbus.example.predictions", "example")
    assert dlq_topic_for("modelbus.credit.requests") == "modelbus.credit.dlq"
    assert dlq_topic_for(LIFECYCLE_TOPIC) == SHARED_DLQ_TOPIC


def test_topic_configs_follow_the_design() -> None:
    specs = {spec.name: spec for spec in topic_specs(["credit"], data_partitions=6, retention_ms=9)}
    assert specs["modelbus.lifecycle"].config == {"retention.ms": "-1", "cleanup.policy": "delete"}
    assert specs["modelbus.schemas"].config["cleanup.policy"] == "compact"
    assert specs["modelbus.credit.requests"].partitions == 6
    assert specs["modelbus.credit.dlq"].config == {"retention.ms": "9"}
    assert set(specs) == {
        "modelbus.lifecycle", "modelbus.schemas", "modelbus.health", "modelbus.dlq",
        "modelbus.credit.requests", "modelbus.credit.predictions", "modelbus.credit.feedback",
        "modelbus.credit.dlq", "modelbus.credit.shadow",
    }  # fmt: skip
