"""One micro-batch: validate -> route -> preprocess + forward per version -> encoded outputs."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from modelbus.bus.envelope import FINGERPRINT_HEADER, TYPE_HEADER
from modelbus.bus.topics import data_topic, shadow_topic
from modelbus.events import Codec
from modelbus.events import types as t
from modelbus.events.meta import now_utc
from modelbus_inference.domain import CHAMPION, SHADOW
from modelbus_inference.encoding import DeadLetterEncoder, ResultEncoder, uuid4_strings
from modelbus_inference.loading import ServedModel
from modelbus_inference.metrics import Metrics, observe_many
from modelbus_inference.serving import Serving
from modelbus_inference.validation import Rejected, RequestDecoder

# Requests are decoded by the compiled reader and results written by the hand-rolled encoder, so
# neither event class is named in a call; the event catalogue reads these instead.
CONSUMES = (t.PredictionRequest,)
PRODUCES = (t.PredictionResult,)


class Incoming(NamedTuple):
    """A request message as read from Kafka."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


class Outgoing(NamedTuple):
    """A message to produce in the batch's transaction."""

    topic: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, str | bytes | None]]


@dataclass(slots=True)
class Scored:
    """One row's answer from one version."""

    version: int
    variant: str
    scores: list[float] | None
    label: int
    model_ms: float
    error: str | None = None


def score_rows(
    serving: Serving,
    keys: list[bytes],
    rows: list[dict[str, Any]],
    pins: list[int | None] | None = None,
) -> list[Scored]:
    """Route each row by its key (or its pinned version) and run each version as one pass."""
    pinned = pins if pins is not None else [None] * len(keys)
    routes = [serving.route(key, pin) for key, pin in zip(keys, pinned, strict=True)]
    by_version: dict[int, list[int]] = {}
    for index, (route, _) in enumerate(routes):
        by_version.setdefault(route.version, []).append(index)
    answers: list[Scored | None] = [None] * len(rows)
    for version, indices in by_version.items():
        variants = [routes[index][0].variant for index in indices]
        scored = score_version(routes[indices[0]][1], version, variants, [rows[i] for i in indices])
        for index, answer in zip(indices, scored, strict=True):
            answers[index] = answer
    return [answer for answer in answers if answer is not None]


def score_version(
    model: ServedModel, version: int, variants: list[str], rows: list[dict[str, Any]]
) -> list[Scored]:
    """One forward pass of one version over ``rows``; a failure or non-finite score is an
    error answer of its row, never an exception."""
    started = time.perf_counter()
    try:
        scores = np.asarray(model.predict_rows(rows), dtype=np.float64)
        if scores.shape[0] != len(rows):
            raise ValueError(f"{scores.shape[0]} score rows for {len(rows)} requests")
        error = None
    except Exception as failure:
        scores, error = None, f"model version {version} raised {type(failure).__name__}: {failure}"
    model_ms = (time.perf_counter() - started) * 1000
    if scores is None:
        return [Scored(version, variant, None, -1, model_ms, error) for variant in variants]
    finite = np.asarray(np.isfinite(scores).all(axis=1)).tolist()
    labels = scores.argmax(axis=1).tolist()
    listed = scores.tolist()
    answers = []
    for variant, row, label, ok in zip(variants, listed, labels, finite, strict=True):
        if ok:
            answers.append(Scored(version, variant, row, label, model_ms))
        else:
            reason = f"model version {version} returned non-finite scores {row}"
            answers.append(Scored(version, variant, None, -1, model_ms, reason))
    return answers


class BatchPredictor:
    """Turns a batch of request messages into PredictionResults and DeadLetters (no I/O)."""

    def __init__(
        self,
        *,
        model: str,
        decoder: RequestDecoder,
        codec: Codec,
        producer: str,
        metrics: Metrics,
    ) -> None:
        self.model = model
        self.decoder = decoder
        self.codec = codec
        self.producer = producer
        self.metrics = metrics
        self.predictions_topic = data_topic(model, "predictions")
        self.shadow_topic = shadow_topic(model)
        self.dlq_topic = data_topic(model, "dlq")
        result = codec.store.reader("modelbus.events.PredictionResult")
        letter = codec.store.reader("modelbus.events.DeadLetter")
        if result is None or letter is None:
            raise RuntimeError("PredictionResult/DeadLetter schemas are not in the codec's store")
        self.letters = DeadLetterEncoder(codec, letter, producer=producer, model=model)
        self.results = ResultEncoder(codec, result, producer=producer, model=model)
        self.result_headers = _headers(result.name, result.fingerprint)
        self.letter_headers = _headers(letter.name, letter.fingerprint)
        self._requests = metrics.requests.labels(model)
        self._batch_size = metrics.batch_size.labels(model)

    def predict(self, batch: list[Incoming], serving: Serving) -> list[Outgoing]:
        """Outputs for every message of the batch: one result or one dead letter each."""
        picked_up = time.time()
        self._requests.inc(len(batch))
        good: list[tuple[Incoming, dict[str, Any]]] = []
        refused: list[tuple[Incoming, str, str, int | None]] = []
        decode = self.decoder.decode
        for message in batch:
            try:
                good.append((message, decode(message.value, where=_where(message))))
            except Rejected as rejected:
                refused.append((message, rejected.error_type, rejected.reason, None))
        out = self._dead_letters(refused) if refused else []
        if not good:
            return out
        self._batch_size.observe(len(good))
        keys = [m.key if m.key is not None else r["request_id"].encode() for m, r in good]
        pins = [r.get("pinned_version") for _, r in good]
        answers = score_rows(serving, keys, [r["features"] for _, r in good], pins)
        occurred_at = now_utc()
        event_ids = uuid4_strings(len(good))
        encode = self.results.encode
        topic, headers, size = self.predictions_topic, self.result_headers, len(good)
        latencies: dict[int, list[float]] = {}
        served: dict[tuple[int, str], int] = {}
        for (message, request), answer, event_id in zip(good, answers, event_ids, strict=True):
            if answer.scores is None:
                self.metrics.model_errors.labels(self.model, str(answer.version)).inc()
                out.append(self._dead(message, "ModelError", answer.error or "", answer.version))
                continue
            sent_at = request["sent_at_s"]
            total_ms = (time.time() - sent_at) * 1000
            request_meta = request["meta"]
            value = encode(
                event_id=event_id,
                occurred_at=occurred_at,
                correlation_id=request_meta["correlation_id"],
                causation_id=request_meta["event_id"],
                request_id=request["request_id"],
                version=answer.version,
                variant=answer.variant,
                scores=answer.scores,
                label=answer.label,
                timings=((picked_up - sent_at) * 1000, answer.model_ms, total_ms, size),
            )
            out.append(Outgoing(topic, message.key, value, headers))
            latencies.setdefault(answer.version, []).append(total_ms)
            route = (answer.version, answer.variant)
            served[route] = served.get(route, 0) + 1
        self._record(answers, latencies, served)
        if serving.table.shadow is not None:
            out += self._mirror(good, answers, serving, picked_up)
        return out

    def _mirror(
        self,
        good: list[tuple[Incoming, dict[str, Any]]],
        answers: list[Scored],
        serving: Serving,
        picked_up: float,
    ) -> list[Outgoing]:
        """The shadow version's answers to every champion-routed request, for the shadow topic
        only (same request id, own result id, variant ``shadow``); its failures are dead-lettered
        as ``ShadowModelError`` (the caller had the champion's answer)."""
        shadow = serving.table.shadow
        assert shadow is not None
        mirrored = [pair for pair, a in zip(good, answers, strict=True) if a.variant == CHAMPION]
        if not mirrored:
            return []
        rows = [request["features"] for _, request in mirrored]
        scored = score_version(
            serving.models[shadow.version], shadow.version, [SHADOW] * len(rows), rows
        )
        occurred_at, event_ids, out = now_utc(), uuid4_strings(len(rows)), []
        for (message, request), answer, event_id in zip(mirrored, scored, event_ids, strict=True):
            if answer.scores is None:
                reason = answer.error or ""
                out.append(self._dead(message, "ShadowModelError", reason, answer.version))
                continue
            sent_at, request_meta = request["sent_at_s"], request["meta"]
            value = self.results.encode(
                event_id=event_id, occurred_at=occurred_at,
                correlation_id=request_meta["correlation_id"],
                causation_id=request_meta["event_id"], request_id=request["request_id"],
                version=answer.version, variant=SHADOW, scores=answer.scores,
                label=answer.label,
                timings=(
                    (picked_up - sent_at) * 1000, answer.model_ms,
                    (time.time() - sent_at) * 1000, len(rows),
                ),
            )  # fmt: skip
            out.append(Outgoing(self.shadow_topic, message.key, value, self.result_headers))
        results = sum(1 for o in out if o.topic == self.shadow_topic)
        self.metrics.results.labels(self.model, str(shadow.version), SHADOW).inc(results)
        return out

    def _record(
        self,
        answers: list[Scored],
        latencies: dict[int, list[float]],
        served: dict[tuple[int, str], int],
    ) -> None:
        for (version, variant), count in served.items():
            self.metrics.results.labels(self.model, str(version), variant).inc(count)
        for version, values in latencies.items():
            observe_many(self.metrics.end_to_end_ms.labels(self.model, str(version)), values)
        model_ms = {a.version: a.model_ms for a in answers}
        for version, elapsed_ms in model_ms.items():
            self.metrics.model_ms.labels(self.model, str(version)).observe(elapsed_ms)

    def _dead(
        self, message: Incoming, error_type: str, reason: str, version: int | None
    ) -> Outgoing:
        """The DeadLetter that keeps ``message`` whole; its reason says where it was and why."""
        return self._dead_letters([(message, error_type, reason, version)])[0]

    def _dead_letters(self, refused: list[tuple[Incoming, str, str, int | None]]) -> list[Outgoing]:
        """One DeadLetter per (message, error type, reason, version); ids drawn at once."""
        occurred_at = now_utc()
        out = []
        for (message, error_type, reason, version), event_id in zip(
            refused, uuid4_strings(len(refused)), strict=True
        ):
            self.metrics.dead_letters.labels(
                self.model, "" if version is None else str(version), error_type
            ).inc()
            value = self.letters.encode(
                event_id=event_id, occurred_at=occurred_at, topic=message.topic,
                partition=message.partition, offset=message.offset, key=message.key,
                value=message.value, error_type=error_type,
                reason=f"{_where(message)}: {reason}", model_version=version,
            )  # fmt: skip
            out.append(Outgoing(self.dlq_topic, message.key, value, self.letter_headers))
        return out


def _headers(name: str, fingerprint: bytes) -> list[tuple[str, str | bytes | None]]:
    return [(TYPE_HEADER, name.encode()), (FINGERPRINT_HEADER, fingerprint.hex().encode())]


def _where(message: Incoming) -> str:
    return f"{message.topic}[{message.partition}]@{message.offset}"
