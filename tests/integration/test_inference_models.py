"""Model loading on the real broker: tampered packages refused, hot swap, canary, HTTP path."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import httpx
import pytest
from tenacity import retry, stop_after_delay, wait_fixed

from modelbus.bus.topics import data_topic
from modelbus.events import types as t
from tests.support.broker import (
    RequestProducer,
    TopicReader,
    create_model_topics,
    lifecycle_events,
    publish_lifecycle,
    request_codec,
)
from tests.support.events import registered, shifted
from tests.support.packages import build_credit_package, credit_rows
from tests.support.processes import start_worker, stop_workers
from tests.support.results import results_by_request

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def package_v2(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A second, differently seeded credit package."""
    directory = tmp_path_factory.mktemp("packages") / "v2"
    return directory, build_credit_package(directory, seed=2)


def _tampered_copy(package: tuple[Path, str], target: Path) -> tuple[Path, str]:
    shutil.copytree(package[0], target)
    weights = target / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    return target, package[1]


def _wait_for(bootstrap, codec, model, kinds, count=1, timeout_s=60.0):  # type: ignore[no-untyped-def]
    @retry(stop=stop_after_delay(timeout_s), wait=wait_fixed(0.5), reraise=True)
    def poll() -> list:
        events = lifecycle_events(bootstrap, codec, model, kinds)
        assert len(events) >= count, f"{len(events)} {kinds} so far"
        return events

    return poll()


def test_tampered_artifact_is_refused_and_hot_swap_under_load_loses_nothing(
    kafka_settings,
    unique: str,
    package_v1: tuple[Path, str],
    package_v2: tuple[Path, str],
    tmp_path: Path,
) -> None:
    model = f"credit{unique}"
    bootstrap = kafka_settings.bootstrap_servers
    codec = request_codec()
    create_model_topics(kafka_settings, model)
    publish_lifecycle(kafka_settings, codec, registered(model, 1, *package_v1))
    producer = RequestProducer(kafka_settings, codec)
    rows, _ = credit_rows(6_000, seed=9)
    worker = start_worker(bootstrap, model)
    reader = TopicReader(bootstrap, data_topic(model, "predictions"), codec)
    sending_done = threading.Event()
    swapped = threading.Event()

    def send() -> None:
        for number, row in enumerate(rows):
            if number == 3_000:
                # The second half goes out once v3 is loaded: every one of it must get v3.
                swapped.wait(120)
            producer.send(model, f"r{number}", row)
            if number % 100 == 99:
                producer.flush()
                time.sleep(0.1)
        producer.flush()
        sending_done.set()

    sender = threading.Thread(target=send)
    try:
        _wait_for(bootstrap, codec, model, (t.ModelLoaded,))
        sender.start()
        # v1 serves under load before the tampered version arrives.
        early = {
            r.request_id
            for r in reader.read_until(lambda r: len(r) >= 300, timeout_s=60, settle_s=0)
        }
        tampered = _tampered_copy(package_v2, tmp_path / "tampered")
        publish_lifecycle(
            kafka_settings,
            codec,
            registered(model, 2, *tampered),
            shifted(model, [("champion", 2, 100.0)]),
        )
        failed = _wait_for(bootstrap, codec, model, (t.ModelLoadFailed,))
        # After refusing v2 the worker goes on answering (with v1): more results arrive.
        answered = len(reader.records)
        reader.read_until(lambda r: len(r) >= min(answered + 100, 3_000), timeout_s=60, settle_s=0)
        publish_lifecycle(
            kafka_settings,
            codec,
            registered(model, 3, *package_v2),
            shifted(model, [("champion", 3, 100.0)]),
        )
        loaded = _wait_for(bootstrap, codec, model, (t.ModelLoaded,), count=2)
        swapped.set()
        sender.join()
        results = reader.read_until(
            lambda r: len(results_by_request(r)) >= 6_000, timeout_s=120, settle_s=0
        )
    finally:
        swapped.set()
        sending_done.wait(60)
        stop_workers([worker])
        reader.close()
    assert failed[0].version == 2
    assert "sha256 mismatch in weights.safetensors" in failed[0].reason
    assert [event.version for event in loaded] == [1, 3]
    assert results_by_request(results) == {f"r{n}": 1 for n in range(6_000)}
    versions = [r.version for r in sorted(results, key=lambda r: int(r.request_id[1:]))]
    assert set(versions) == {1, 3}, "v2 must never serve; v1 until the swap, v3 after"
    assert {r.version for r in results if r.request_id in early} == {1}
    assert set(versions[3_000:]) == {3}


def test_canary_routing_is_the_same_on_the_stream_and_over_http(
    kafka_settings,
    unique: str,
    package_v1: tuple[Path, str],
    package_v2: tuple[Path, str],
) -> None:
    model = f"credit{unique}"
    bootstrap = kafka_settings.bootstrap_servers
    codec = request_codec()
    create_model_topics(kafka_settings, model)
    publish_lifecycle(
        kafka_settings,
        codec,
        registered(model, 1, *package_v1),
        registered(model, 2, *package_v2),
        shifted(model, [("champion", 1, 90.0), ("canary", 2, 10.0)]),
    )
    port = 18_000 + int(unique[:4], 16) % 2000
    worker = start_worker(bootstrap, model, http_port=port)
    rows, _ = credit_rows(2_000, seed=4)
    producer = RequestProducer(kafka_settings, codec)
    for number, row in enumerate(rows):
        producer.send(model, f"key{number}", row)
    producer.flush()
    reader = TopicReader(bootstrap, data_topic(model, "predictions"), codec)
    try:
        results = reader.read_until(lambda r: len(r) >= 2_000, timeout_s=120)

        @retry(stop=stop_after_delay(30), wait=wait_fixed(0.5), reraise=True)
        def predict(body: dict) -> httpx.Response:
            return httpx.post(f"http://127.0.0.1:{port}/v1/models/{model}/predict", json=body)

        body = {"instances": [{"key": f"key{n}", "features": rows[n]} for n in range(200)]}
        response = predict(body)
        bad = httpx.post(
            f"http://127.0.0.1:{port}/v1/models/{model}/predict",
            json={"instances": [{"features": {**rows[0], "age": "old"}}]},
        )
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        docs = httpx.get(f"http://127.0.0.1:{port}/openapi.json").json()
    finally:
        stop_workers([worker])
        reader.close()
    variant_of = {r.request_id: (r.variant, r.version) for r in results}
    canary_share = sum(v == "canary" for v, _ in variant_of.values()) / len(variant_of)
    assert 0.07 < canary_share < 0.13
    assert all((v == "canary") == (n == 2) for v, n in variant_of.values())
    assert response.status_code == 200, response.text
    for prediction in response.json()["predictions"]:
        stream_variant = variant_of[prediction["key"]]
        assert (prediction["variant"], prediction["version"]) == stream_variant
    assert bad.status_code == 422
    assert "'age' is str" in bad.text
    assert f'modelbus_inference_results_total{{model="{model}",variant="canary",version="2"}}' in (
        metrics
    )
    assert "modelbus_inference_end_to_end_ms_bucket" in metrics
    assert "/v1/models/{name}/predict" in docs["paths"]
