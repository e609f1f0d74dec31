"""Which events ``modelbus events tail`` shows, and their JSON-lines form; no I/O."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from modelbus.events import CLASSES, GenericRecord

_AGE = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(text: str, *, now: datetime) -> datetime:
    """An ISO 8601 time, or an age before ``now`` such as ``15m``, ``2h``, ``1d``.

    >>> now = datetime(2026, 1, 2, 12, 0, tzinfo=UTC)
    >>> parse_since("90m", now=now).isoformat()
    '2026-01-02T10:30:00+00:00'
    >>> parse_since("2026-01-02T11:00:00", now=now).isoformat()
    '2026-01-02T11:00:00+00:00'
    """
    if match := _AGE.match(text.strip()):
        return now - timedelta(seconds=float(match[1]) * _UNIT_S[match[2]])
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as error:
        raise ValueError(
            f"--since {text!r} is neither an ISO 8601 time nor an age like 15m, 2h, 1d"
        ) from error
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dataclass(frozen=True)
class EventFilter:
    """Model, event types and a start time; None/empty means any."""

    model: str | None = None
    types: frozenset[str] = frozenset()
    since: datetime | None = None

    @classmethod
    def of(
        cls, *, model: str | None, types: list[str], since: str | None, now: datetime | None = None
    ) -> EventFilter:
        """Build from command-line values; ValueError names an unknown type or a bad time."""
        known = {name.rsplit(".", 1)[-1] for name in CLASSES}
        unknown = sorted(set(types) - known)
        if unknown:
            raise ValueError(f"unknown event type(s) {unknown}; known: {', '.join(sorted(known))}")
        start = parse_since(since, now=now or datetime.now(UTC)) if since else None
        return cls(model, frozenset(types), start)

    def accepts(self, event: Any) -> bool:
        """Whether ``event`` passes every criterion."""
        name = (
            event.schema_name.rsplit(".", 1)[-1]
            if isinstance(event, GenericRecord)
            else type(event).__name__
        )
        if self.types and name not in self.types:
            return False
        if self.model is not None and _field(event, "model") != self.model:
            return False
        if self.since is not None:
            meta = _field(event, "meta")
            occurred = getattr(meta, "occurred_at", None)
            if isinstance(meta, dict):
                occurred = meta.get("occurred_at")
            if occurred is None or occurred < self.since:
                return False
        return True


def _field(event: Any, name: str) -> Any:
    if isinstance(event, GenericRecord):
        return event.fields.get(name)
    return getattr(event, name, None)


def as_json_line(where: str, event: Any) -> str:
    """``{"where", "type", "event"}`` as one line (bytes as hex, times as ISO 8601)."""
    if isinstance(event, GenericRecord):
        name, body = event.schema_name, event.fields
    else:
        name, body = type(event).SCHEMA_NAME, event.to_avro()
    return json.dumps({"where": where, "type": name, "event": body}, default=_plain)


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)
