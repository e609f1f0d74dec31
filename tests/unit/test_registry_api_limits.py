"""The registry API refuses strangers, huge bodies and out-of-range numbers before any work."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from modelbus.events import types as t
from modelbus_registry.bootstrap import Registry, bootstrap
from modelbus_registry.config import Settings
from modelbus_registry.domain import AnnouncedVersions
from modelbus_registry.handlers import register_trained_model
from modelbus_registry.mirror import NoMirror
from tests.support.events import model_trained
from tests.support.packages import make_package
from tests.support.processes import TOKEN

LIMIT = 4096
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class RecordingPublisher:
    def __init__(self) -> None:
        self.events: list[Any] = []

    def publish(self, event: Any) -> None:
        self.events.append(event)


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    settings = Settings(
        db_url=f"sqlite:///{tmp_path / 'registry.db'}",
        packages_dir=tmp_path / "packages",
        artifact_roots=[str(tmp_path)],
        api_token=TOKEN,
        max_body_bytes=LIMIT,
    )
    registry = bootstrap(settings, mirror=NoMirror(), announced=AnnouncedVersions())
    directory = tmp_path / "trained"
    event = model_trained("credit", str(directory), make_package(directory, "credit"))
    args = (registry.store, registry.vault, registry.mirror, registry.producer)
    [registered] = register_trained_model(event, *args, registry.announced)
    assert isinstance(registered, t.ModelRegistered)
    return registry


@pytest.fixture
def api(registry: Registry) -> Iterator[tuple[TestClient, RecordingPublisher]]:
    publisher = RecordingPublisher()
    with TestClient(registry.app(publisher)) as client:
        yield client, publisher


def test_an_unauthenticated_caller_with_a_bad_body_gets_401_not_422(api: Any) -> None:
    client, publisher = api

    response = client.post("/v1/models/credit/training", content=b"{not json", headers={})

    assert response.status_code == 401
    assert response.json() == {"detail": "this endpoint needs 'Authorization: Bearer <token>'"}
    assert response.headers["www-authenticate"] == "Bearer"
    assert publisher.events == []


def test_a_wrong_token_with_an_out_of_range_seed_gets_401(api: Any) -> None:
    client, _ = api
    body = {"reason": "r", "seed": 1e23}

    response = client.post(
        "/v1/models/credit/training", json=body, headers={"Authorization": "Bearer " + "x" * 20}
    )

    assert (response.status_code, response.json()) == (401, {"detail": "the bearer token is wrong"})


def test_a_body_over_the_limit_is_413_with_the_limit_named(api: Any) -> None:
    client, publisher = api
    body = b'{"reason": "' + b"x" * (LIMIT + 1) + b'"}'

    response = client.post(
        "/v1/models/credit/training",
        content=body,
        headers={**AUTH, "Content-Type": "application/json"},
    )

    assert (response.status_code, response.json()) == (
        413,
        {"detail": f"request body over {LIMIT} bytes"},
    )
    assert publisher.events == []


def test_a_streamed_body_without_a_length_is_cut_off_at_the_limit(api: Any) -> None:
    client, publisher = api
    chunks = [b'{"reason": "', *([b"x" * 1024] * 8), b'"}']

    response = client.post(
        "/v1/models/credit/training",
        content=iter(chunks),
        headers={**AUTH, "Content-Type": "application/json"},
    )

    assert response.status_code == 413
    assert publisher.events == []


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/models/credit/training", {"reason": "r", "seed": 1e23}, "seed"),
        ("/v1/models/credit/training", {"reason": "r", "seed": -1}, "seed"),
        ("/v1/models/credit/training", {"reason": "r", "seed": 2**32}, "seed"),
        ("/v1/models/credit/training", {"reason": "r", "max_rows": 10**12}, "max_rows"),
        ("/v1/models/credit/promotion", {"reason": "r", "version": 2**31}, "version"),
        ("/v1/models/credit/rollback", {"reason": "r", "to_version": 2**40}, "to_version"),
    ],
)
def test_numbers_out_of_range_are_422_naming_the_field(
    api: Any, path: str, body: dict[str, Any], field: str
) -> None:
    client, publisher = api

    response = client.post(path, json=body, headers=AUTH)

    assert response.status_code == 422
    assert [error["loc"][-1] for error in response.json()["detail"]] == [field]
    assert publisher.events == []


def test_the_largest_seed_in_range_is_published(api: Any) -> None:
    client, publisher = api

    response = client.post(
        "/v1/models/credit/training", json={"reason": "r", "seed": 2**32 - 1}, headers=AUTH
    )

    assert response.status_code == 202
    [event] = publisher.events
    assert isinstance(event, t.TrainingRequested)
    assert event.seed == 2**32 - 1
