"""Tamper evidence for the lifecycle log: each writer chains the events it writes per model.

Every lifecycle message carries three headers: the writer (one per publisher instance), its
sequence number for that key, and the sha256 of the value it wrote before for that key. An
audit that replays the log can then tell an event removed (a gap in a writer's sequence) from
one altered (its successor recorded another digest). Headers, not an Avro field: the chain
covers the exact bytes on the log, and an unchanged redelivery stays byte-for-byte the event
it repeats.

A chain proves the log is whole against accidents and naive edits; against an attacker who
rewrites the headers too, only signatures help.
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

WRITER_HEADER = "modelbus-writer"
SEQUENCE_HEADER = "modelbus-seq"
PREVIOUS_HEADER = "modelbus-prev"


def digest(value: bytes) -> str:
    """sha256 of a message value, hex."""
    return hashlib.sha256(value).hexdigest()


class Chain:
    """One writer's chains, per key; ``link`` must be called in the order messages are produced."""

    def __init__(self, client_id: str) -> None:
        self.writer = f"{client_id}@{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._last: dict[bytes, tuple[int, str]] = {}
        self.lock = threading.Lock()

    def link(self, key: bytes, value: bytes) -> list[tuple[str, bytes]]:
        """The chain headers of the next message for ``key`` (call under ``lock``)."""
        sequence, previous = self._last.get(key, (0, ""))
        self._last[key] = (sequence + 1, digest(value))
        return [
            (WRITER_HEADER, self.writer.encode()),
            (SEQUENCE_HEADER, str(sequence + 1).encode()),
            (PREVIOUS_HEADER, previous.encode()),
        ]


@dataclass(frozen=True, slots=True)
class Link:
    """A lifecycle message as the chain check sees it."""

    where: str
    key: bytes
    value: bytes
    headers: dict[str, bytes]


def broken_links(messages: Iterable[Link]) -> list[str]:
    """Each removed or altered message, named; messages in log order, one partition.

    >>> a = Link("lc[0]@0", b"m", b"A", {WRITER_HEADER: b"w", SEQUENCE_HEADER: b"1",
    ...                                  PREVIOUS_HEADER: b""})
    >>> b = Link("lc[0]@1", b"m", b"B", {WRITER_HEADER: b"w", SEQUENCE_HEADER: b"2",
    ...                                  PREVIOUS_HEADER: digest(b"A").encode()})
    >>> c = Link("lc[0]@2", b"m", b"C", {WRITER_HEADER: b"w", SEQUENCE_HEADER: b"3",
    ...                                  PREVIOUS_HEADER: digest(b"B").encode()})
    >>> broken_links([a, b, c])
    []
    >>> broken_links([a, c])
    ["removed: event #2 of writer w for key 'm' is missing between lc[0]@0 and lc[0]@2"]
    >>> broken_links([a, Link(b.where, b.key, b"B'", b.headers), c])
    ["altered: lc[0]@1 (event #2 of writer w for key 'm') no longer hashes to the digest ..."]
    """
    problems: list[str] = []
    last: dict[tuple[str, bytes], tuple[int, Link]] = {}
    for message in messages:
        writer = message.headers.get(WRITER_HEADER)
        if writer is None:
            continue
        name = writer.decode()
        sequence = int(message.headers.get(SEQUENCE_HEADER, b"0"))
        previous = message.headers.get(PREVIOUS_HEADER, b"").decode()
        chain = (name, message.key)
        before = last.get(chain)
        expected = before[0] + 1 if before else 1
        label = f"writer {name} for key {message.key.decode(errors='replace')!r}"
        if sequence == expected - 1 and before and before[1].value == message.value:
            continue  # the same message written again (a retried produce): not a new link
        if sequence > expected:
            gap = f"#{expected}" if sequence == expected + 1 else f"#{expected}-#{sequence - 1}"
            after = before[1].where if before else "the start of the log"
            problems.append(
                f"removed: event {gap} of {label} is missing between {after} and {message.where}"
            )
        elif sequence < expected:
            problems.append(f"reordered: {message.where} repeats event #{sequence} of {label}")
        elif before and digest(before[1].value) != previous:
            problems.append(
                f"altered: {before[1].where} (event #{before[0]} of {label}) no longer hashes "
                f"to the digest its successor {message.where} recorded"
            )
        last[chain] = (sequence, message)
    return problems
