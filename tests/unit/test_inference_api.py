"""The inference HTTP API with fake models: every error path, the size limits, /healthz."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from modelbus.events import load_contract
from modelbus_inference.api import create_app
from modelbus_inference.domain import Registration
from modelbus_inference.metrics import Metrics, Progress
from modelbus_inference.serving import ModelManager
from modelbus_inference.validation import ContractFields
from tests.support.fakes import CREDIT_ROW, FakeModel

MODEL = "credit"
ROW = CREDIT_ROW
URL = f"/v1/models/{MODEL}/predict"


def client_serving(model: FakeModel | None) -> TestClient:
    """A TestClient on the worker's app; ``model`` is served as version 1 unless None."""
    manager = ModelManager(
        MODEL,
        lambda registration: model,
        worker="inference@test",
        serve_latest_without_routes=True,
    )
    if model is not None:
        manager.register(Registration(1, "file:///packages/1", "ab" * 32))
        assert manager.serving is not None
    app = create_app(MODEL, manager, ContractFields(load_contract(MODEL)), Metrics())
    return TestClient(app)


def body(count: int) -> dict[str, Any]:
    return {"instances": [{"key": f"k{n}", "features": ROW} for n in range(count)]}


def test_a_served_model_answers_every_instance_in_order_with_its_version_and_scores() -> None:
    response = client_serving(FakeModel(1)).post(URL, json=body(3))
    assert response.status_code == 200
    answer = response.json()
    assert answer["model"] == MODEL
    assert [p["key"] for p in answer["predictions"]] == ["k0", "k1", "k2"]
    assert {(p["version"], p["variant"], p["label"]) for p in answer["predictions"]} == {
        (1, "champion", 1)
    }
    assert [p["scores"] for p in answer["predictions"]] == [[0.25, 0.75]] * 3


def test_an_unknown_model_is_404_naming_the_model_this_worker_serves() -> None:
    response = client_serving(FakeModel(1)).post("/v1/models/fraud/predict", json=body(1))
    assert response.status_code == 404
    assert response.json()["detail"] == "this worker serves 'credit', not 'fraud'"


def test_before_any_version_is_loaded_predict_is_503() -> None:
    response = client_serving(None).post(URL, json=body(1))
    assert response.status_code == 503
    assert response.json()["detail"] == "no version of 'credit' is loaded yet"


def test_a_model_that_raises_is_500_with_the_models_error() -> None:
    client = client_serving(FakeModel(1, raises=True))
    response = client.post(URL, json=body(2))
    assert response.status_code == 500
    assert response.json()["detail"] == "model version 1 raised RuntimeError: boom"
    metrics = client.get("/metrics").text
    assert 'modelbus_inference_model_errors_total{model="credit",version="1"} 1.0' in metrics


def test_empty_instances_are_refused_with_422() -> None:
    response = client_serving(FakeModel(1)).post(URL, json={"instances": []})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "instances"]
    assert response.json()["detail"][0]["type"] == "too_short"


def test_more_than_ten_thousand_instances_are_refused_with_422_and_ten_thousand_are_served() -> (
    None
):
    client = client_serving(FakeModel(1))
    refused = client.post(URL, json=body(10_001))
    assert refused.status_code == 422
    assert refused.json()["detail"][0]["type"] == "too_long"
    served = client.post(URL, json=body(10_000))
    assert served.status_code == 200
    assert len(served.json()["predictions"]) == 10_000


@pytest.mark.parametrize(
    ("features", "reason"),
    [
        ({**ROW, "salary": "NaN"}, "salary"),
        ({k: v for k, v in ROW.items() if k != "age"}, "age"),
    ],
)
def test_a_row_breaking_the_contract_is_422_naming_the_field(
    features: dict[str, Any], reason: str
) -> None:
    response = client_serving(FakeModel(1)).post(URL, json={"instances": [{"features": features}]})
    assert response.status_code == 422
    assert reason in response.json()["detail"]


def test_healthz_says_whether_a_version_is_served_and_its_routes() -> None:
    before = client_serving(None).get("/healthz")
    assert before.status_code == 200
    assert before.json() == {
        "model": MODEL,
        "serving": False,
        "routes": [],
        "progressing": True,
        "state": "starting",
        "last_commit_age_s": None,
    }
    served = client_serving(FakeModel(1)).get("/healthz")
    assert served.status_code == 200
    assert served.json()["serving"] is True
    assert served.json()["routes"] == [{"variant": "champion", "version": 1, "weight_pct": 100.0}]


def test_healthz_is_503_when_the_stream_makes_no_progress_for_longer_than_the_stall_setting() -> (
    None
):
    now = [100.0]
    metrics = Metrics()
    metrics.progress = Progress(stall_after_s=5.0, clock=lambda: now[0])
    manager = ModelManager(
        MODEL, lambda r: FakeModel(1), worker="w", serve_latest_without_routes=True
    )
    app = create_app(MODEL, manager, ContractFields(load_contract(MODEL)), metrics)
    client = TestClient(app)
    metrics.progress.streaming()
    now[0] += 4.0
    assert client.get("/healthz").status_code == 200
    now[0] += 2.0
    stalled = client.get("/healthz")
    assert stalled.status_code == 503
    assert stalled.json()["progressing"] is False
