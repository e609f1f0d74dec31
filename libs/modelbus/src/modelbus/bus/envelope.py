"""The one message shape handlers and adapters share, so no handler imports a Kafka client."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

TYPE_HEADER = "modelbus-type"
FINGERPRINT_HEADER = "modelbus-fingerprint"


@dataclass(frozen=True, slots=True)
class Envelope:
    """A message read from (or bound for) a topic."""

    topic: str
    value: bytes | None
    key: bytes | None = None
    headers: dict[str, bytes] = field(default_factory=dict)
    partition: int = -1
    offset: int = -1
    timestamp_ms: int | None = None

    @property
    def where(self) -> str:
        """'topic[partition]@offset', for error messages a person can follow."""
        return f"{self.topic}[{self.partition}]@{self.offset}"


def headers_to_dict(headers: Any) -> dict[str, bytes]:
    """Kafka's header list (or dict) as a dict of bytes (last value wins)."""
    pairs = headers.items() if isinstance(headers, dict) else headers or []
    return {
        name: value.encode() if isinstance(value, str) else value or b"" for name, value in pairs
    }


def from_confluent(message: Any) -> Envelope:
    """A confluent-kafka Message as an Envelope (the only place that knows its shape)."""
    return Envelope(
        topic=message.topic() or "",
        value=message.value(),
        key=message.key(),
        headers=headers_to_dict(message.headers()),
        partition=message.partition() or 0,
        offset=message.offset() or 0,
        timestamp_ms=message.timestamp()[1],
    )
