"""Traffic for the monitor on the real broker: requests, a seeded model's results, labels.

The "model" answers with River's Agrawal rule 0 and errs on a seeded 10% of requests, so a
switch of the rule that labels the traffic is a concept drift with a known start.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import uuid
from collections.abc import Callable
from typing import Any

from modelbus.bus import HEALTH_TOPIC, LIFECYCLE_TOPIC, Publisher
from modelbus.bus.reading import read_events
from modelbus.config import KafkaSettings
from modelbus.events import new_meta
from modelbus.events import types as t
from modelbus.events.meta import now_utc
from tests.support.broker import RequestProducer, request_codec
from tests.support.processes import REPO
from tests.support.waiting import NotYet

RULE_ZERO = 0


def agrawal_rule_zero(row: dict[str, Any]) -> int:
    """River's Agrawal classification function 0 (age only)."""
    return int(row["age"] < 40 or row["age"] >= 60)


class Traffic:
    """Sends request, result and (optionally) label for each row, in that order."""

    def __init__(self, settings: KafkaSettings, model: str, *, seed: int = 1) -> None:
        self.model = model
        self.codec = request_codec()
        self.requests = RequestProducer(settings, self.codec)
        self.events = Publisher(settings, self.codec, client_id=f"test-traffic-{uuid.uuid4()}")
        self.rng = random.Random(seed)

    def send(
        self, rows: list[dict], labels: list[int] | None, *, first: int = 0, version: int = 1
    ) -> None:
        """Rows ``first``.. as requests ``r<n>``; results from rule 0 with 10% errors."""
        for number, row in enumerate(rows, first):
            request_id = f"r{number}"
            self.requests.send(self.model, request_id, row)
            predicted = agrawal_rule_zero(row)
            if self.rng.random() < 0.1:
                predicted = 1 - predicted
            score = self.rng.uniform(0.55, 0.95) if predicted else self.rng.uniform(0.05, 0.45)
            self.events.publish(
                t.PredictionResult(
                    meta=new_meta("test-inference"),
                    request_id=request_id,
                    model=self.model,
                    version=version,
                    variant="champion",
                    scores=[1.0 - score, score],
                    label=predicted,
                    timings=t.Timings(
                        queue_ms=1.0,
                        model_ms=1.0,
                        total_ms=round(self.rng.uniform(2.0, 40.0), 3),
                        batch_size=1,
                    ),
                )
            )
            if labels is not None:
                self.events.publish(
                    t.Feedback(
                        meta=new_meta("test-labeller"),
                        request_id=request_id,
                        model=self.model,
                        label=labels[number - first],
                        observed_at=now_utc(),
                    )
                )
        self.requests.flush()
        self.events.flush()


def start_monitor(bootstrap: str, model: str, **env: str) -> subprocess.Popen[bytes]:
    """``python -m modelbus_monitor run`` watching only ``model``, as a real process."""
    environment = {
        **os.environ,
        "MODELBUS_BOOTSTRAP_SERVERS": bootstrap,
        "MODELBUS_MONITOR_MODELS_PATTERN": model,
        "MODELBUS_MONITOR_GROUP_ID": f"test-monitor-{model}",
        "MODELBUS_MONITOR_WINDOW_S": "2",
        "MODELBUS_MONITOR_LATENESS_S": "3",
        **env,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "modelbus_monitor", "run"], env=environment, cwd=REPO
    )


def drift_events(bootstrap: str, model: str) -> list[t.DriftDetected]:
    """Every DriftDetected about ``model`` on the lifecycle log."""
    events = read_events(
        bootstrap, LIFECYCLE_TOPIC, request_codec(), key=model, on_undecodable=_skip
    )
    return [e for e in events if isinstance(e, t.DriftDetected) and e.model == model]


def health_events(bootstrap: str, model: str) -> list[t.ModelHealth]:
    """Every ModelHealth about ``model`` on modelbus.health."""
    return [
        event
        for event in read_events(
            bootstrap, HEALTH_TOPIC, request_codec(), key=model, on_undecodable=_skip
        )
        if isinstance(event, t.ModelHealth) and event.model == model
    ]


def health_covering(bootstrap: str, model: str, results: int) -> Callable[[], list[t.ModelHealth]]:
    """A check for ``eventually``: the model's health windows, once they count ``results``."""

    def check() -> list[t.ModelHealth]:
        windows = health_events(bootstrap, model)
        if sum(w.requests for w in windows) < results:
            raise NotYet(f"health covers {sum(w.requests for w in windows)} of {results}")
        return windows

    return check


def _skip(_envelope: Any, _error: Any) -> None:
    """Other tests' unreadable events on the shared topics are not ours to judge."""
