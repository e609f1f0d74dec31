"""Following topics from "now": wait for lifecycle events and collect prediction results."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

from modelbus.bus.envelope import from_confluent
from modelbus.bus.reading import follow_from_now
from modelbus.events import Codec, CodecError


class TopicFollower:
    """Reads a topic from its end at construction time onwards, decoding as it goes."""

    def __init__(self, bootstrap_servers: str, topic: str, codec: Codec) -> None:
        self.codec = codec
        self._unseen: deque[Any] = deque()
        self.consumer = follow_from_now(bootstrap_servers, topic, purpose="follower")

    def poll(self, timeout_s: float = 0.5) -> list[Any]:
        """Decoded events that arrived since the last poll (undecodable ones are skipped)."""
        events = []
        for message in self.consumer.consume(1000, timeout_s):
            if message.error():
                continue
            envelope = from_confluent(message)
            try:
                events.append(self.codec.decode(envelope.value or b"", where=envelope.where))
            except CodecError:
                continue
        return events

    def wait_for(
        self,
        predicate: Callable[[Any], bool],
        *,
        timeout_s: float,
        on_event: Callable[[Any], None] | None = None,
        what: str = "an event",
    ) -> Any:
        """The first event matching ``predicate``; TimeoutError naming ``what`` otherwise."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            # Events after a match stay queued for the next wait: nothing read is lost.
            if not self._unseen:
                self._unseen.extend(self.poll())
            while self._unseen:
                event = self._unseen.popleft()
                if on_event is not None:
                    on_event(event)
                if predicate(event):
                    return event
        raise TimeoutError(f"no {what} within {timeout_s:.0f}s")

    def close(self) -> None:
        """Stop reading."""
        self.consumer.close()
