"""The inference pipeline with fakes: validation, model manager, batch predictor, handlers."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelbus.events import build_codec, event_schemas, load_contract, new_meta
from modelbus.events import types as t
from modelbus.events.meta import now_utc
from modelbus.events.schemas import request_schema_for
from modelbus_inference.config import Settings
from modelbus_inference.domain import Registration, Route, RoutingTable
from modelbus_inference.handlers import model_registered, traffic_shifted
from modelbus_inference.loading import LoadFailed
from modelbus_inference.metrics import Metrics
from modelbus_inference.predict import BatchPredictor, Incoming
from modelbus_inference.serving import ModelManager
from modelbus_inference.validation import ContractFields, Rejected, RequestDecoder
from tests.support.fakes import CREDIT_ROW, NAN_SALARY, FakeModel

MODEL = "credit"
TOPIC = "modelbus.credit.requests"
OLD_REQUEST = (
    Path(__file__).parents[2] / "schemas/history/modelbus.events.PredictionRequest.v1.avsc"
)
ROW = CREDIT_ROW


def manager_with(models: dict[int, Any]) -> ModelManager:
    def load(registration: Registration) -> Any:
        found = models[registration.version]
        if isinstance(found, str):
            raise LoadFailed(found)
        return found

    return ModelManager(MODEL, load, worker="inference@test", serve_latest_without_routes=True)


def registered_event(version: int, model: str = MODEL) -> t.ModelRegistered:
    return t.ModelRegistered(
        meta=new_meta("registry"),
        model=model,
        version=version,
        run_id="r",
        artifact_uri=f"file:///packages/{version}",
        artifact_sha256="ab" * 32,
        metrics={},
    )


def shifted_event(routes: list[tuple[str, int, float]], model: str = MODEL) -> t.TrafficShifted:
    return t.TrafficShifted(
        meta=new_meta("deployer"),
        model=model,
        routes=[t.Route(variant=v, version=n, weight_pct=w) for v, n, w in routes],
        reason="canary step",
    )


@pytest.fixture
def codec():  # type: ignore[no-untyped-def]
    return build_codec(models=("credit",))


@pytest.fixture
def contract() -> dict[str, Any]:
    return load_contract("credit")


def request_bytes(  # type: ignore[no-untyped-def]
    codec, request_id: str, features: dict, model: str = MODEL, pinned: int | None = None
) -> bytes:
    record = {
        "meta": new_meta("producer").to_avro(),
        "request_id": request_id,
        "model": model,
        "sent_at": now_utc(),
        "features": features,
        "pinned_version": pinned,
    }
    return codec.encode_record(
        record, codec.store.reader("modelbus.models.credit.PredictionRequest")
    )


def predictor(codec, contract, metrics: Metrics) -> BatchPredictor:  # type: ignore[no-untyped-def]
    decoder = RequestDecoder(
        codec,
        codec.store.reader("modelbus.models.credit.PredictionRequest"),
        contract,
        model=MODEL,
        max_request_bytes=4096,
    )
    return BatchPredictor(
        model=MODEL, decoder=decoder, codec=codec, producer="inference@test", metrics=metrics
    )


def test_a_registered_version_is_loaded_served_and_announced() -> None:
    models = manager_with({1: FakeModel(1)})
    events = model_registered(registered_event(1), models)
    assert [type(e) for e in events] == [t.ModelLoaded]
    assert events[0].version == 1
    assert events[0].meta.causation_id is not None
    assert models.serving is not None
    assert models.serving.table.versions == {1}


def test_a_version_that_fails_to_load_is_reported_and_the_previous_one_keeps_serving() -> None:
    models = manager_with({1: FakeModel(1), 2: "sha256 mismatch in weights.safetensors"})
    model_registered(registered_event(1), models)
    events = model_registered(registered_event(2), models)
    events += traffic_shifted(shifted_event([("champion", 2, 100.0)]), models)
    failures = [e for e in events if isinstance(e, t.ModelLoadFailed)]
    assert failures
    assert failures[0].reason == "sha256 mismatch in weights.safetensors"
    assert models.serving is not None
    assert models.serving.table.versions == {1}


def test_traffic_shift_to_a_loaded_canary_swaps_the_whole_table_at_once() -> None:
    models = manager_with({1: FakeModel(1), 2: FakeModel(2)})
    model_registered(registered_event(1), models)
    model_registered(registered_event(2), models)
    before = models.serving
    traffic_shifted(shifted_event([("champion", 1, 90.0), ("canary", 2, 10.0)]), models)
    assert models.serving is not before
    assert models.serving is not None
    assert models.serving.table.versions == {1, 2}


def test_events_about_other_models_are_ignored() -> None:
    models = manager_with({1: FakeModel(1)})
    assert model_registered(registered_event(1, model="fraud"), models) == []
    assert traffic_shifted(shifted_event([("champion", 1, 100.0)], model="fraud"), models) == []
    assert models.serving is None


def test_batch_gives_one_result_per_good_request_and_one_dead_letter_per_bad(
    codec, contract
) -> None:  # type: ignore[no-untyped-def]
    metrics = Metrics()
    models = manager_with({1: FakeModel(1)})
    model_registered(registered_event(1), models)
    batch = [
        Incoming(TOPIC, 0, 0, b"a", request_bytes(codec, "a", ROW)),
        Incoming(TOPIC, 0, 1, b"b", request_bytes(codec, "b", {**ROW, "hvalue": math.inf})),
        Incoming(TOPIC, 0, 2, b"c", b"\x00garbage, not avro"),
        Incoming(TOPIC, 0, 3, b"d", request_bytes(codec, "d", {**ROW, "salary": NAN_SALARY})),
        Incoming(TOPIC, 0, 4, b"e", request_bytes(codec, "e", ROW, model="fraud")),
    ]
    assert models.serving is not None
    outputs = predictor(codec, contract, metrics).predict(batch, models.serving)
    assert [o.key for o in outputs] == [b"b", b"c", b"e", b"a", b"d"]
    decoded = {o.key: codec.decode(o.value) for o in outputs}
    result = decoded[b"a"]
    assert isinstance(result, t.PredictionResult)
    assert (result.request_id, result.version, result.variant) == ("a", 1, "champion")
    assert result.scores == [0.25, 0.75]
    assert result.label == 1
    assert result.timings.batch_size == 2
    assert result.timings.total_ms >= result.timings.queue_ms >= 0
    assert decoded[b"b"].error_type == "ContractViolation"
    assert decoded[b"c"].error_type == "BadMagic"
    assert decoded[b"e"].error_type == "UnknownModel"
    nan_letter = decoded[b"d"]
    assert (nan_letter.error_type, nan_letter.model_version) == ("ModelError", 1)
    assert "non-finite" in nan_letter.reason
    assert nan_letter.source_offset == 3
    assert (
        metrics.registry.get_sample_value(
            "modelbus_inference_model_errors_total", {"model": MODEL, "version": "1"}
        )
        == 1.0
    )
    assert (
        metrics.registry.get_sample_value(
            "modelbus_inference_dead_letters_total",
            {"model": MODEL, "version": "", "reason": "ContractViolation"},
        )
        == 1.0
    )


def test_a_model_that_raises_dead_letters_its_requests_with_its_version(codec, contract) -> None:  # type: ignore[no-untyped-def]
    metrics = Metrics()
    models = manager_with({4: FakeModel(4, raises=True)})
    model_registered(registered_event(4), models)
    batch = [
        Incoming(TOPIC, 1, n, f"k{n}".encode(), request_bytes(codec, f"k{n}", ROW))
        for n in range(3)
    ]
    assert models.serving is not None
    outputs = predictor(codec, contract, metrics).predict(batch, models.serving)
    letters = [codec.decode(o.value) for o in outputs]
    assert all(isinstance(letter, t.DeadLetter) for letter in letters)
    assert {(letter.model_version, letter.error_type) for letter in letters} == {(4, "ModelError")}
    assert "raised RuntimeError: boom" in letters[0].reason


def test_oversized_and_empty_requests_are_rejected_before_decoding(codec, contract) -> None:  # type: ignore[no-untyped-def]
    decoder = RequestDecoder(
        codec,
        codec.store.reader("modelbus.models.credit.PredictionRequest"),
        contract,
        model=MODEL,
        max_request_bytes=100,
    )
    with pytest.raises(Rejected, match="exceeds the 100-byte"):
        decoder.decode(bytes(101))
    with pytest.raises(Rejected, match="no value"):
        decoder.decode(None)


def test_generic_feature_maps_are_checked_field_by_field(contract) -> None:  # type: ignore[no-untyped-def]
    fields = ContractFields(contract)
    assert fields.coerce({**ROW, "salary": 50_000})["salary"] == 50_000.0
    with pytest.raises(Rejected, match="missing field\\(s\\) 'age'"):
        fields.coerce({k: v for k, v in ROW.items() if k != "age"})
    with pytest.raises(Rejected, match="'car' is bool True; the contract says int"):
        fields.coerce({**ROW, "car": True})
    with pytest.raises(Rejected, match="unknown field\\(s\\) 'x'"):
        fields.coerce({**ROW, "x": 1})
    with pytest.raises(Rejected, match="'commission' is nan"):
        fields.check_values({**ROW, "commission": math.nan})


def test_settings_default_the_contract_to_the_model_and_refuse_a_limit_above_the_broker() -> None:
    settings = Settings(model="credit7")
    assert settings.contract_name == "credit7"
    assert Settings(model="credit7", contract="credit").contract_name == "credit"
    assert settings.worker_name == "modelbus-inference-credit7-0"
    with pytest.raises(ValueError, match="exceeds the broker message limit"):
        Settings(max_request_bytes=10_000_000)


def test_a_pinned_request_is_answered_by_its_loaded_version_as_variant_pinned(
    codec, contract
) -> None:  # type: ignore[no-untyped-def]
    models = manager_with({1: FakeModel(1), 2: FakeModel(2)})
    model_registered(registered_event(1), models)
    traffic_shifted(shifted_event([("champion", 1, 100.0)]), models)
    model_registered(registered_event(2), models)  # pre-loaded, no traffic
    batch = [
        Incoming(TOPIC, 0, 0, b"a", request_bytes(codec, "a", ROW, pinned=2)),
        Incoming(TOPIC, 0, 1, b"b", request_bytes(codec, "b", ROW, pinned=7)),
        Incoming(TOPIC, 0, 2, b"c", request_bytes(codec, "c", ROW)),
    ]
    assert models.serving is not None
    outputs = predictor(codec, contract, Metrics()).predict(batch, models.serving)
    answered = {o.key: codec.decode(o.value) for o in outputs}
    assert {k: (r.version, r.variant) for k, r in answered.items()} == {
        b"a": (2, "pinned"),
        b"b": (1, "champion"),
        b"c": (1, "champion"),
    }


def test_a_request_from_a_writer_before_pinning_existed_is_routed_normally(codec, contract) -> None:  # type: ignore[no-untyped-def]
    today = event_schemas()["modelbus.events.PredictionRequest"]
    released = [f["name"] for f in json.loads(OLD_REQUEST.read_text())["fields"]]
    template = {**today, "fields": [f for f in today["fields"] if f["name"] in released]}
    assert (
        [f["name"] for f in template["fields"]]
        == released
        == [f["name"] for f in today["fields"] if f["name"] != "pinned_version"]
    )
    old = codec.store.add(request_schema_for(contract, template), reader=False)
    record = {
        "meta": new_meta("producer").to_avro(),
        "request_id": "old",
        "model": MODEL,
        "sent_at": now_utc(),
        "features": ROW,
    }
    models = manager_with({1: FakeModel(1)})
    model_registered(registered_event(1), models)
    traffic_shifted(shifted_event([("champion", 1, 100.0)]), models)
    assert models.serving is not None
    message = Incoming(TOPIC, 0, 0, b"o", codec.encode_record(record, old))
    [output] = predictor(codec, contract, Metrics()).predict([message], models.serving)
    result = codec.decode(output.value)
    assert isinstance(result, t.PredictionResult)
    assert (result.request_id, result.version, result.variant) == ("old", 1, "champion")


# -- shadow routes: the candidate mirrors the champion's traffic, answering nobody --------


class Opposite(FakeModel):
    """Scores the other way round from FakeModel: its answers are told apart at a glance."""

    def predict_rows(self, rows: list[dict[str, Any]]) -> np.ndarray:
        if self.raises:
            raise RuntimeError("shadow boom")
        return np.array([[0.9, 0.1] for _ in rows])


def test_a_shadow_route_takes_no_bucket_but_its_version_is_loaded() -> None:
    table = RoutingTable.of([Route("champion", 1, 100.0), Route("shadow", 2, 0.0)])
    keys = [f"k{n}".encode() for n in range(1_000)]
    assert {table.route(key) for key in keys} == {Route("champion", 1, 100.0)}
    assert table.shadow == Route("shadow", 2, 0.0)
    assert table.versions == {1, 2}
    assert RoutingTable.of([Route("champion", 1, 100.0)]).shadow is None


def serving_with_shadow(shadow: FakeModel) -> Any:
    models = manager_with({1: FakeModel(1), 2: shadow})
    model_registered(registered_event(1), models)
    model_registered(registered_event(2), models)
    traffic_shifted(shifted_event([("champion", 1, 100.0), ("shadow", 2, 0.0)]), models)
    assert models.serving is not None
    return models.serving


def test_every_champion_answer_is_mirrored_by_the_shadow_to_the_shadow_topic_only(
    codec, contract
) -> None:  # type: ignore[no-untyped-def]
    metrics = Metrics()
    serving = serving_with_shadow(Opposite(2))
    batch = [
        Incoming(TOPIC, 0, n, f"k{n}".encode(), request_bytes(codec, f"k{n}", ROW))
        for n in range(4)
    ]
    outputs = predictor(codec, contract, metrics).predict(batch, serving)
    by_topic: dict[str, list[Any]] = {}
    for output in outputs:
        by_topic.setdefault(output.topic, []).append(codec.decode(output.value))
    assert sorted(by_topic) == ["modelbus.credit.predictions", "modelbus.credit.shadow"]
    answered, mirrored = by_topic["modelbus.credit.predictions"], by_topic["modelbus.credit.shadow"]
    assert [(r.request_id, r.version, r.variant, r.label) for r in answered] == [
        (f"k{n}", 1, "champion", 1) for n in range(4)
    ]
    assert [(r.request_id, r.version, r.variant, r.label) for r in mirrored] == [
        (f"k{n}", 2, "shadow", 0) for n in range(4)
    ]
    assert {r.meta.event_id for r in answered}.isdisjoint(r.meta.event_id for r in mirrored)
    assert [r.meta.causation_id for r in mirrored] == [r.meta.causation_id for r in answered]
    labels = {"model": "credit", "version": "2", "variant": "shadow"}
    assert metrics.registry.get_sample_value("modelbus_inference_results_total", labels) == 4.0


def test_only_requests_routed_to_the_champion_are_mirrored(codec, contract) -> None:  # type: ignore[no-untyped-def]
    models = manager_with({1: FakeModel(1), 2: Opposite(2), 3: FakeModel(3)})
    for version in (1, 2, 3):
        model_registered(registered_event(version), models)
    table = [("champion", 1, 50.0), ("canary", 3, 50.0), ("shadow", 2, 0.0)]
    traffic_shifted(shifted_event(table), models)
    assert models.serving is not None
    batch = [
        Incoming(TOPIC, 0, n, f"k{n}".encode(), request_bytes(codec, f"k{n}", ROW))
        for n in range(40)
    ]
    outputs = predictor(codec, contract, Metrics()).predict(batch, models.serving)
    results = [(o.topic, codec.decode(o.value)) for o in outputs]
    champion = {r.request_id for topic, r in results if r.variant == "champion"}
    shadow = {r.request_id for topic, r in results if topic.endswith(".shadow")}
    assert 0 < len(champion) < 40
    assert shadow == champion
    assert all(r.variant == "shadow" for topic, r in results if topic.endswith(".shadow"))


def test_a_failing_shadow_dead_letters_its_mirror_and_the_caller_keeps_the_champion_answer(
    codec, contract
) -> None:  # type: ignore[no-untyped-def]
    serving = serving_with_shadow(Opposite(2, raises=True))
    batch = [Incoming(TOPIC, 0, 0, b"a", request_bytes(codec, "a", ROW))]
    outputs = predictor(codec, contract, Metrics()).predict(batch, serving)
    assert [o.topic for o in outputs] == ["modelbus.credit.predictions", "modelbus.credit.dlq"]
    answer, letter = (codec.decode(o.value) for o in outputs)
    assert (answer.version, answer.variant) == (1, "champion")
    assert isinstance(letter, t.DeadLetter)
    assert (letter.error_type, letter.model_version) == ("ShadowModelError", 2)
    assert "raised RuntimeError: shadow boom" in letter.reason


def test_without_a_shadow_route_nothing_goes_to_the_shadow_topic(codec, contract) -> None:  # type: ignore[no-untyped-def]
    models = manager_with({1: FakeModel(1)})
    model_registered(registered_event(1), models)
    traffic_shifted(shifted_event([("champion", 1, 100.0)]), models)
    assert models.serving is not None
    batch = [Incoming(TOPIC, 0, 0, b"a", request_bytes(codec, "a", ROW))]
    outputs = predictor(codec, contract, Metrics()).predict(batch, models.serving)
    assert [o.topic for o in outputs] == ["modelbus.credit.predictions"]
