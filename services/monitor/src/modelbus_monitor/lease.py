"""One active monitor per group: the member holding the lifecycle partition in a lease group.

A second monitor with the same ``group_id`` stands by: it joins the lease group
``<group_id>-lease`` and waits. When the active one dies (or stops), its session expires, the
partition moves, and the standby starts a term: it replays the topics' tail like any restart
(detectors, joins and windows rebuilt; alerts and windows already on the logs are not written
again, their ids being deterministic) and goes live. A monitor that loses the lease ends its
term at once and stands by again.

The lease consumer reads the lifecycle partition it holds and drops what it reads; the log is
small, and reading keeps the membership alive the way librdkafka expects.
"""

from __future__ import annotations

import threading

import structlog
from confluent_kafka import Consumer, TopicPartition

from modelbus.bus import LIFECYCLE_TOPIC
from modelbus.bus.security import client_config

log = structlog.get_logger(__name__)


class Lease:
    """Membership of the lease group, kept on a thread of its own."""

    def __init__(self, bootstrap_servers: str, group_id: str, session_timeout_ms: int) -> None:
        self.group = f"{group_id}-lease"
        self.consumer = Consumer(
            {
                **client_config(bootstrap_servers),
                "group.id": self.group,
                "enable.auto.commit": False,
                "auto.offset.reset": "latest",
                "session.timeout.ms": session_timeout_ms,
                "heartbeat.interval.ms": max(session_timeout_ms // 6, 500),
            }
        )
        self.held = threading.Event()
        self._term: threading.Event | None = None
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self, stop: threading.Event) -> None:
        """Join the lease group and keep the membership until ``stop``."""
        self.consumer.subscribe(
            [LIFECYCLE_TOPIC], on_assign=self._assigned, on_revoke=self._revoked
        )
        self._thread = threading.Thread(target=self._keep, args=(stop,), name="lease", daemon=True)
        self._thread.start()

    def term(self, stop: threading.Event) -> threading.Event | None:
        """Wait for the lease; an event set when this term ends (lease lost or ``stop``).

        None if ``stop`` came first.
        """
        while not self.held.wait(0.5):
            if stop.is_set():
                return None
        with self._lock:
            self._term = threading.Event()
            if not self.held.is_set():
                self._term.set()
            return self._term

    def join(self, timeout_s: float = 10.0) -> None:
        """Wait until the membership is given up (after ``stop``)."""
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _keep(self, stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                self.consumer.poll(0.2)
        finally:
            self._end_term()
            self.consumer.close()  # leaves the group at once: a standby takes over now

    def _assigned(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if partitions:
            log.info("holding the monitor lease", group=self.group)
            self.held.set()

    def _revoked(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if partitions:
            log.warning("lost the monitor lease: standing by", group=self.group)
            self._end_term()

    def _end_term(self) -> None:
        with self._lock:
            self.held.clear()
            if self._term is not None:
                self._term.set()
