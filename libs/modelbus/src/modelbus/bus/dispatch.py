"""Decode -> handle -> what to publish, or a DeadLetter: the part every consumer loop shares."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from modelbus.bus.envelope import Envelope
from modelbus.bus.topics import model_of_topic
from modelbus.events import Codec, CodecError, GenericRecord
from modelbus.events import types as t
from modelbus.events.meta import new_meta
from modelbus.trust.signing import TrustedKeys, check_event

Handler = Callable[[Any], Iterable[Any] | None]
log = structlog.get_logger(__name__)


@dataclass(slots=True)
class Outcome:
    """What handling one message produced."""

    events: list[Any] = field(default_factory=list)
    dead_letter: t.DeadLetter | None = None
    handled: bool = False


class Dispatcher:
    """Hands each decoded event to its handlers; anything that fails becomes one DeadLetter.

    With ``trusted`` keys, a decision (``SIGNED_BY``) reaches its handlers only when signed by a
    role allowed to take it; otherwise it is dead-lettered with the reason.
    """

    def __init__(
        self,
        codec: Codec,
        handlers: Mapping[type, Sequence[Handler]],
        *,
        producer: str,
        max_message_bytes: int = 1_048_576,
        trusted: TrustedKeys | None = None,
    ) -> None:
        self.trusted = trusted
        self.codec = codec
        self.handlers = handlers
        self.producer = producer
        self.max_message_bytes = max_message_bytes

    def dispatch(self, envelope: Envelope) -> Outcome:
        """Decode and handle one message; never raises for bad input or a failing handler."""
        if not envelope.value:
            return self._dead(envelope, "EmptyMessage", "message has no value (null or empty)")
        if len(envelope.value) > self.max_message_bytes:
            return self._dead(
                envelope,
                "OversizedMessage",
                f"{len(envelope.value)} bytes exceeds the {self.max_message_bytes}-byte limit",
            )
        try:
            event = self.codec.decode(envelope.value, where=envelope.where)
        except CodecError as error:
            return self._dead(envelope, type(error).__name__, error.cause)
        if isinstance(event, GenericRecord):
            return Outcome()
        handlers = self.handlers.get(type(event), ())
        if handlers and self.trusted is not None:
            rejection = check_event(
                event.SCHEMA_NAME, envelope.topic, envelope.value, envelope.headers, self.trusted
            )
            if rejection is not None:
                log.warning("refused a decision", where=envelope.where, reason=rejection.reason)
                return self._dead(envelope, rejection.error_type, rejection.reason)
        outcome = Outcome()
        for handler in handlers:
            try:
                produced = handler(event)
            except Exception as error:
                name = getattr(handler, "__qualname__", repr(handler))
                log.warning("handler failed", handler=name, where=envelope.where, error=str(error))
                dead = self._dead(
                    envelope,
                    "HandlerError",
                    f"{name} raised {type(error).__name__}: {error}",
                )
                outcome.dead_letter = dead.dead_letter
                return outcome
            outcome.events.extend(produced or ())
            outcome.handled = True
        return outcome

    def _dead(self, envelope: Envelope, error_type: str, reason: str) -> Outcome:
        return Outcome(
            dead_letter=dead_letter(envelope, error_type, reason, producer=self.producer)
        )


def dead_letter(
    envelope: Envelope,
    error_type: str,
    cause: str,
    *,
    producer: str,
    model_version: int | None = None,
) -> t.DeadLetter:
    """The DeadLetter that keeps ``envelope`` whole; its reason says where it was and why."""
    return t.DeadLetter(
        meta=new_meta(producer),
        model=model_of_topic(envelope.topic) or "",
        source_topic=envelope.topic,
        source_partition=envelope.partition,
        source_offset=envelope.offset,
        key=envelope.key,
        value=envelope.value,
        error_type=error_type,
        reason=f"{envelope.where}: {cause}",
        model_version=model_version,
    )
