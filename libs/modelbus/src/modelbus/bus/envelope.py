"""The one message shape handlers and adapters share, so no handler imports a Kafka client."""

from __future__ import annotations

from dataclasses import dataclass, field

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


def headers_to_dict(headers: list[tuple[str, bytes | None]] | None) -> dict[str, bytes]:
    """Kafka's header list as a dict (last value wins)."""
    return {name: value or b"" for name, value in headers or []}
