"""Partitions merged by message time while a replay catches up.

A consumer hands out one partition's batch after another, so a replay would otherwise see
partition 0's whole tail before partition 1's: a drift would show up once per partition and
windows would close before the slower partitions reached them. Until every partition has
reached the end it had when assigned, a message is released only when no partition that
still has older messages to read could hold an earlier one (a k-way merge on timestamps).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import Any

Partition = tuple[str, int]


class TimeOrderedMerge:
    """Buffers messages per partition; ``drain`` yields them in timestamp order.

    >>> merge = TimeOrderedMerge()
    >>> merge.track({("a", 0): (0, 2), ("b", 0): (0, 1)})
    >>> merge.add(("a", 0), 0, 10, "a0"); merge.add(("a", 0), 1, 30, "a1")
    >>> list(merge.drain())
    []
    >>> merge.add(("b", 0), 0, 20, "b0")
    >>> list(merge.drain()), merge.caught_up
    (['a0', 'b0', 'a1'], True)
    """

    def __init__(self) -> None:
        self._buffers: dict[Partition, deque[tuple[int, Any]]] = {}
        self._next: dict[Partition, int] = {}
        self._ends: dict[Partition, int] = {}

    def track(self, ranges: dict[Partition, tuple[int, int]]) -> None:
        """Partitions to merge, each with (first offset to read, end to catch up to)."""
        for partition, (start, end) in ranges.items():
            self._buffers[partition] = deque()
            self._next[partition] = start
            self._ends[partition] = end

    def add(self, partition: Partition, offset: int, timestamp_ms: int, item: Any) -> None:
        """A message read from ``partition``."""
        self._buffers[partition].append((timestamp_ms, item))
        self._next[partition] = offset + 1

    def _behind(self, partition: Partition) -> bool:
        return self._next[partition] < self._ends[partition]

    @property
    def caught_up(self) -> bool:
        """Every partition has reached the end it had when tracked."""
        return bool(self._ends) and not any(self._behind(p) for p in self._ends)

    def backlog(self, partition: Partition) -> int:
        """Messages of ``partition`` waiting in the buffer."""
        return len(self._buffers[partition])

    def drain(self) -> Iterator[Any]:
        """Release messages while no partition still behind has an empty buffer."""
        buffers = self._buffers
        while True:
            if any(not buffer and self._behind(p) for p, buffer in buffers.items()):
                return
            heads = [(buffer[0][0], p) for p, buffer in buffers.items() if buffer]
            if not heads:
                return
            _, partition = min(heads)
            yield buffers[partition].popleft()[1]
