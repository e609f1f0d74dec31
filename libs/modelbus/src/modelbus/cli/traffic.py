"""Live labelled traffic for the demo: requests at a steady rate, Feedback once each is answered.

The rows come from River's Agrawal generator; the demo changes the bank's approval rule by
switching the classification function, which is all a concept drift is. Every answer is counted
per phase and per answering version, so the summary can say what each version got right.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaException
from tenacity import retry, retry_if_exception_type, stop_after_delay, wait_fixed

from modelbus.bus import Publisher, data_topic
from modelbus.bus.envelope import from_confluent
from modelbus.bus.reading import follow_from_now
from modelbus.config import KafkaSettings
from modelbus.events import Codec, CodecError, new_meta
from modelbus.events import types as t
from modelbus.events.meta import now_utc

CHUNK_ROWS = 2_000


@dataclass
class Tally:
    """Answers and correct answers, by (phase, version)."""

    answered: Counter[tuple[str, int]] = field(default_factory=Counter)
    correct: Counter[tuple[str, int]] = field(default_factory=Counter)

    def accuracy(self, phase: str, version: int | None = None) -> float | None:
        """Accuracy of ``version``'s answers in ``phase`` (every version's when None)."""
        keys = [k for k in self.answered if k[0] == phase and version in (None, k[1])]
        answered = sum(self.answered[k] for k in keys)
        return sum(self.correct[k] for k in keys) / answered if answered else None

    def count(self, phase: str | None = None, version: int | None = None) -> int:
        """Answers in ``phase`` by ``version`` (None: any)."""
        return sum(
            n for (p, v), n in self.answered.items() if phase in (None, p) and version in (None, v)
        )


def _rows(seed: int, classification_function: int) -> Iterator[tuple[dict, int]]:
    from modelbus.data import generate_credit

    chunk = 0
    while True:
        rows, labels = generate_credit(
            CHUNK_ROWS, seed=seed + chunk, classification_function=classification_function
        )
        yield from zip(rows, labels, strict=True)
        chunk += 1


class LiveTraffic:
    """Sends requests for ``model`` at ``rate_per_s`` and labels each answer as it arrives."""

    def __init__(
        self,
        settings: KafkaSettings,
        codec: Codec,
        *,
        model: str,
        rate_per_s: float,
        seed: int,
        classification_function: int = 0,
        contract: str | None = None,
    ) -> None:
        self.model = model
        self.rate_per_s = rate_per_s
        self.seed = seed
        self.publisher = Publisher(settings, codec, client_id=f"modelbus-demo-traffic-{seed}")
        self.codec = codec
        self.schema_name = f"modelbus.models.{contract or model}.PredictionRequest"
        self.tally = Tally()
        self.duplicates = 0
        self.sent = 0
        self.phase = "start"
        self._rows = _rows(seed, classification_function)
        self._truth: dict[str, tuple[str, int]] = {}
        self._answered: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sending = threading.Event()
        self._sending.set()
        # A topic created a moment ago may not have its leaders elected yet: retry briefly.
        self._results = retry(
            retry=retry_if_exception_type(KafkaException),
            stop=stop_after_delay(15),
            wait=wait_fixed(0.5),
            reraise=True,
        )(follow_from_now)(
            settings.bootstrap_servers, data_topic(model, "predictions"), purpose="demo-results"
        )
        self._threads = [
            threading.Thread(target=self._send_loop, name="demo-requests", daemon=True),
            threading.Thread(target=self._answer_loop, name="demo-results", daemon=True),
        ]

    def start(self) -> None:
        """Start sending and labelling."""
        for thread in self._threads:
            thread.start()

    def stop(self, *, drain_s: float = 30.0) -> None:
        """Stop sending, wait up to ``drain_s`` for the answers still due, then stop reading."""
        self._sending.clear()
        deadline = time.monotonic() + drain_s
        while self._threads[1].is_alive() and self.pending and time.monotonic() < deadline:
            time.sleep(0.1)
        self._stop.set()
        for thread in self._threads:
            if thread.is_alive():
                thread.join(timeout=10)
        self._results.close()
        self.publisher.flush()

    def switch(self, *, classification_function: int, phase: str) -> float:
        """Change the approval rule from the next request on; returns the wall time it did."""
        rows = _rows(self.seed + 1_000 * (classification_function + 1), classification_function)
        with self._lock:
            self._rows = rows
            self.phase = phase
        return time.time()

    def enter(self, phase: str) -> None:
        """Count answers to requests sent from now on under ``phase``."""
        with self._lock:
            self.phase = phase

    @property
    def pending(self) -> int:
        """Requests sent and not answered yet."""
        with self._lock:
            return len(self._truth)

    def _send_loop(self) -> None:
        started, sent = time.monotonic(), 0
        while self._sending.is_set():
            due = int((time.monotonic() - started) * self.rate_per_s) - sent
            for _ in range(max(due, 0)):
                self._send_one()
                sent += 1
            time.sleep(0.01)

    def _send_one(self) -> None:
        with self._lock:
            row, label = next(self._rows)
            request_id = f"demo-{uuid.uuid4().hex}"
            self._truth[request_id] = (self.phase, label)
            self.sent += 1
        self.publisher.publish(
            t.PredictionRequest(
                meta=new_meta("demo-producer"),
                request_id=request_id,
                model=self.model,
                sent_at=now_utc(),
                features=row,
            ),
            schema_name=self.schema_name,
        )

    def _answer_loop(self) -> None:
        while not self._stop.is_set():
            for message in self._results.consume(500, 0.2):
                if message.error():
                    continue
                envelope = from_confluent(message)
                try:
                    result = self.codec.decode(envelope.value or b"", where=envelope.where)
                except CodecError:
                    continue
                if isinstance(result, t.PredictionResult):
                    self._answered_one(result)

    def _answered_one(self, result: t.PredictionResult) -> None:
        with self._lock:
            if result.request_id in self._answered:
                self.duplicates += 1
                return
            truth = self._truth.pop(result.request_id, None)
            if truth is None:
                return  # someone else's request
            self._answered.add(result.request_id)
            phase, label = truth
            self.tally.answered[(phase, result.version)] += 1
            self.tally.correct[(phase, result.version)] += int(result.label == label)
        # The label arrives once the answer is out, as a bank learns whether a loan is repaid.
        self.publisher.publish(
            t.Feedback(
                meta=new_meta("demo-labeller"),
                request_id=result.request_id,
                model=self.model,
                label=label,
                observed_at=now_utc(),
            )
        )


def wait_until(condition: Any, *, timeout_s: float, what: str, poll_s: float = 0.2) -> None:
    """Poll ``condition()`` until true; TimeoutError naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout_s:.0f}s")
        time.sleep(poll_s)
