"""Registry handlers, store and API without a broker: SQLite in tmp_path, fakes for the rest."""

from __future__ import annotations

import dataclasses
import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlmodel import Session, select

from modelbus.events import types as t
from modelbus_registry.bootstrap import Registry, bootstrap
from modelbus_registry.config import Settings
from modelbus_registry.db import AliasChange, ModelVersion, RegistrationFailure
from modelbus_registry.domain import AnnouncedVersions
from modelbus_registry.handlers import follow_aliases, register_trained_model
from modelbus_registry.mirror import NoMirror
from tests.support.events import meta_at, model_trained
from tests.support.packages import make_package
from tests.support.processes import TOKEN

T0 = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)


class FakePublisher:
    """Records what the API publishes."""

    def __init__(self) -> None:
        self.events: list[Any] = []

    def publish(self, event: Any) -> None:
        self.events.append(event)


class FakeMirror(NoMirror):
    """Records what would reach MLflow; MLflow versions are 100 + ours, to tell them apart."""

    def __init__(self) -> None:
        self.versions: list[tuple[str, int]] = []
        self.aliases: dict[tuple[str, str], int | None] = {}

    def mirror_version(self, row: ModelVersion) -> int | None:
        self.versions.append((row.model, row.version))
        return 100 + row.version

    def move_alias(self, model: str, alias: str, mirrored_version: int | None) -> None:
        self.aliases[(model, alias)] = mirrored_version


@pytest.fixture
def mirror() -> FakeMirror:
    return FakeMirror()


@pytest.fixture
def registry(tmp_path: Path, mirror: FakeMirror) -> Registry:
    settings = Settings(
        db_url=f"sqlite:///{tmp_path / 'registry.db'}",
        packages_dir=tmp_path / "packages",
        artifact_roots=[str(tmp_path)],
        api_token=TOKEN,
    )
    return bootstrap(settings, mirror=mirror, announced=AnnouncedVersions())


def register(registry: Registry, event: t.ModelTrained) -> list[Any]:
    return register_trained_model(
        event,
        registry.store,
        registry.vault,
        registry.mirror,
        registry.producer,
        registry.announced,
    )


def rows(registry: Registry, table: type) -> list[Any]:
    with Session(registry.store.engine) as session:
        return list(session.exec(select(table)))


@pytest.fixture
def credit_package(tmp_path: Path) -> tuple[Path, str]:
    directory = tmp_path / "trained" / "credit-1"
    return directory, make_package(directory, "credit")


def test_two_trainings_become_versions_1_and_2_with_lineage_and_causality(
    registry: Registry, mirror: FakeMirror, tmp_path: Path
) -> None:
    first_dir, second_dir = tmp_path / "a", tmp_path / "b"
    first = model_trained("credit", str(first_dir), make_package(first_dir, "credit", seed=1))
    second = model_trained(
        "credit",
        first_dir.parent.joinpath("b").as_uri(),
        make_package(second_dir, "credit", seed=2),
    )

    [one] = register(registry, first)
    [two] = register(registry, second)

    assert isinstance(one, t.ModelRegistered)
    assert isinstance(two, t.ModelRegistered)
    assert (one.model, one.version, one.parent_version) == ("credit", 1, None)
    assert (two.model, two.version, two.parent_version) == ("credit", 2, 1)
    assert one.meta.causation_id == first.meta.event_id
    assert one.meta.correlation_id == first.meta.correlation_id
    assert two.meta.causation_id == second.meta.event_id
    assert (one.run_id, one.artifact_uri, one.artifact_sha256) == (
        first.run_id,
        first.artifact_uri,
        first.artifact_sha256,
    )
    assert one.metrics == {"accuracy": 0.75, "roc_auc": 0.8125}
    assert mirror.versions == [("credit", 1), ("credit", 2)]

    stored = registry.store.version("credit", 2)
    assert stored is not None
    assert stored.trained_event_id == second.meta.event_id
    assert stored.data_lineage == second.data.to_avro()
    assert stored.code == {"git_sha": second.code.git_sha, "dirty": False}
    assert stored.environment == second.environment.to_avro()
    assert stored.params == {"hidden": "4", "seed": "7"}
    assert stored.manifest["name"] == "credit"
    assert stored.mlflow_version == 102
    kept = Path(stored.package_path)
    assert kept == tmp_path / "packages" / "credit" / second.artifact_sha256
    assert hashlib.sha256((kept / "manifest.json").read_bytes()).hexdigest() == (
        second.artifact_sha256
    )


def test_a_database_rebuilt_from_the_log_adopts_the_versions_the_log_announced(
    tmp_path: Path, mirror: FakeMirror
) -> None:
    first_dir, second_dir = tmp_path / "a", tmp_path / "b"
    first = model_trained("credit", str(first_dir), make_package(first_dir, "credit", seed=1))
    second = model_trained("credit", str(second_dir), make_package(second_dir, "credit", seed=2))
    original = bootstrap(
        Settings(
            db_url=f"sqlite:///{tmp_path / 'lost.db'}",
            packages_dir=tmp_path / "packages-lost",
            artifact_roots=[str(tmp_path)],
            api_token=TOKEN,
        ),
        mirror=FakeMirror(),
        announced=AnnouncedVersions(),
    )
    [one], [two] = register(original, first), register(original, second)
    # As written by the registry that lost its database, on another host.
    one, two = (
        dataclasses.replace(e, meta=dataclasses.replace(e.meta, producer="registry@old-host:7"))
        for e in (one, two)
    )

    rebuilt = bootstrap(
        Settings(
            db_url=f"sqlite:///{tmp_path / 'rebuilt.db'}",
            packages_dir=tmp_path / "packages",
            artifact_roots=[str(tmp_path)],
            api_token=TOKEN,
        ),
        mirror=mirror,
        announced=AnnouncedVersions(),
    )
    rebuilt.announced.record(one)
    rebuilt.announced.record(two)

    assert register(rebuilt, first) == []  # already announced on the log: nothing new
    assert register(rebuilt, second) == []
    assert register(rebuilt, second) == [two]  # a redelivery repeats the log's answer exactly
    versions = rebuilt.store.versions("credit")
    assert [(v.version, v.parent_version, v.registered_event_id) for v in versions] == [
        (1, None, one.meta.event_id),
        (2, 1, two.meta.event_id),
    ]


def test_the_trainers_parent_claim_wins_when_that_version_exists(
    registry: Registry, tmp_path: Path
) -> None:
    for seed in (1, 2):
        directory = tmp_path / f"p{seed}"
        register(
            registry,
            model_trained("credit", str(directory), make_package(directory, "credit", seed=seed)),
        )
    third = tmp_path / "p3"
    claimed = model_trained(
        "credit", str(third), make_package(third, "credit", seed=3), parent_version=1
    )
    unknown = tmp_path / "p4"
    bogus = model_trained(
        "credit", str(unknown), make_package(unknown, "credit", seed=4), parent_version=9
    )

    [v3] = register(registry, claimed)
    [v4] = register(registry, bogus)

    assert (v3.version, v3.parent_version) == (3, 1)
    assert (v4.version, v4.parent_version) == (4, 3)


def test_a_redelivered_model_trained_adds_no_version_and_repeats_its_answer(
    registry: Registry, mirror: FakeMirror, credit_package: tuple[Path, str]
) -> None:
    directory, sha = credit_package
    event = model_trained("credit", str(directory), sha)

    first = register(registry, event)
    again = register(registry, event)

    assert again == first
    assert [(row.model, row.version) for row in rows(registry, ModelVersion)] == [("credit", 1)]
    assert mirror.versions == [("credit", 1)]


def test_a_tampered_artifact_is_refused_with_the_reason_and_leaves_no_version(
    registry: Registry, credit_package: tuple[Path, str]
) -> None:
    directory, sha = credit_package
    weights = directory / "weights.safetensors"
    listed = hashlib.sha256(weights.read_bytes()).hexdigest()
    weights.write_bytes(weights.read_bytes()[:-1] + b"\x00")
    found = hashlib.sha256(weights.read_bytes()).hexdigest()
    event = model_trained("credit", str(directory), sha)

    [failed] = register(registry, event)

    assert isinstance(failed, t.RegistrationFailed)
    assert (failed.model, failed.run_id, failed.artifact_uri) == (
        "credit",
        event.run_id,
        str(directory),
    )
    assert failed.reason == (
        f"package at {directory} failed verification: sha256 mismatch in weights.safetensors: "
        f"manifest says {listed}, file has {found}"
    )
    assert failed.meta.causation_id == event.meta.event_id
    assert failed.meta.correlation_id == event.meta.correlation_id
    assert rows(registry, ModelVersion) == []
    assert [f.reason for f in rows(registry, RegistrationFailure)] == [failed.reason]
    assert register(registry, event) == [failed]
    assert list((registry.settings.packages_dir).glob("credit/*")) == []


def test_a_manifest_that_is_not_the_announced_one_is_refused(
    registry: Registry, credit_package: tuple[Path, str]
) -> None:
    directory, sha = credit_package
    event = model_trained("credit", str(directory), "0" * 64)

    [failed] = register(registry, event)

    assert isinstance(failed, t.RegistrationFailed)
    assert failed.reason == (
        f"package at {directory} failed verification: sha256 mismatch in manifest.json: "
        f"expected {'0' * 64}, found {sha}"
    )
    assert rows(registry, ModelVersion) == []


def test_a_missing_artifact_is_refused(registry: Registry, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    [failed] = register(registry, model_trained("credit", missing.as_uri(), "1" * 64))

    assert isinstance(failed, t.RegistrationFailed)
    assert failed.reason == f"artifact {missing.as_uri()} does not exist (no directory)"


def test_a_package_of_another_model_is_refused(registry: Registry, tmp_path: Path) -> None:
    directory = tmp_path / "other"
    sha = make_package(directory, "fraud")
    [failed] = register(registry, model_trained("credit", str(directory), sha))

    assert isinstance(failed, t.RegistrationFailed)
    assert failed.reason == f"package at {directory} is model 'fraud', not 'credit'"


def _shift(model: str, when: datetime, canary: int | None, champion: int) -> t.TrafficShifted:
    routes = [t.Route(variant="champion", version=champion, weight_pct=75.0 if canary else 100.0)]
    if canary is not None:
        routes.append(t.Route(variant="canary", version=canary, weight_pct=25.0))
    return t.TrafficShifted(meta=meta_at(when), model=model, routes=routes, reason="canary step")


def test_aliases_follow_rollouts_and_answer_what_was_champion_at_any_time(
    registry: Registry, mirror: FakeMirror, tmp_path: Path
) -> None:
    for seed in (1, 2, 3):
        directory = tmp_path / f"v{seed}"
        register(
            registry,
            model_trained("credit", str(directory), make_package(directory, "credit", seed=seed)),
        )
    store = registry.store
    minute = timedelta(minutes=1)
    timeline: list[Any] = [
        t.ModelPromoted(meta=meta_at(T0), model="credit", version=1, reason="first model"),
        _shift("credit", T0 + 10 * minute, canary=2, champion=1),
        t.ModelPromoted(
            meta=meta_at(T0 + 20 * minute),
            model="credit",
            version=2,
            previous_version=1,
            reason="won",
        ),
        _shift("credit", T0 + 30 * minute, canary=3, champion=2),
        t.ModelRolledBack(
            meta=meta_at(T0 + 40 * minute),
            model="credit",
            version=3,
            restored_version=1,
            reason="error rate 4% > 1%",
        ),
    ]
    for event in timeline:
        assert follow_aliases(event, store, registry.mirror) == []

    def at(alias: str, when: datetime) -> int | None:
        return store.alias_at("credit", alias, when)

    assert at("champion", T0 - minute) is None
    assert at("champion", T0) == 1
    assert at("champion", T0 + 15 * minute) == 1
    assert at("canary", T0 + 15 * minute) == 2
    assert at("champion", T0 + 25 * minute) == 2
    assert at("canary", T0 + 25 * minute) is None
    assert at("canary", T0 + 35 * minute) == 3
    assert at("champion", T0 + 45 * minute) == 1
    assert at("canary", T0 + 45 * minute) is None
    assert store.aliases("credit") == {"champion": 1, "canary": None}
    assert [(c.alias, c.version, c.event_type) for c in store.alias_history("credit")] == [
        ("champion", 1, "ModelPromoted"),
        ("canary", 2, "TrafficShifted"),
        ("champion", 2, "ModelPromoted"),
        ("canary", None, "ModelPromoted"),
        ("canary", 3, "TrafficShifted"),
        ("canary", None, "ModelRolledBack"),
        ("champion", 1, "ModelRolledBack"),
    ]
    assert mirror.aliases == {("credit", "champion"): 101, ("credit", "canary"): None}

    # A redelivered suffix of the log changes nothing.
    for event in timeline[1:]:
        follow_aliases(event, store, registry.mirror)
    assert len(rows(registry, AliasChange)) == 7
    assert store.aliases("credit") == {"champion": 1, "canary": None}


def test_repeated_canary_steps_record_one_move(registry: Registry, credit_package) -> None:
    directory, sha = credit_package
    register(registry, model_trained("credit", str(directory), sha))
    for minutes, pct in ((1, 5.0), (2, 25.0), (3, 50.0)):
        event = t.TrafficShifted(
            meta=meta_at(T0 + timedelta(minutes=minutes)),
            model="credit",
            routes=[t.Route(variant="canary", version=1, weight_pct=pct)],
            reason=f"{pct}%",
        )
        follow_aliases(event, registry.store, registry.mirror)

    assert [(c.alias, c.version) for c in registry.store.alias_history("credit")] == [("canary", 1)]


# --- the REST API --------------------------------------------------------------------


@pytest.fixture
def api(registry: Registry) -> tuple[TestClient, FakePublisher]:
    publisher = FakePublisher()
    return TestClient(registry.app(publisher)), publisher


def _auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_write_endpoints_need_the_bearer_token(
    registry: Registry, api: tuple[TestClient, FakePublisher], credit_package
) -> None:
    client, publisher = api
    directory, sha = credit_package
    register(registry, model_trained("credit", str(directory), sha))
    body = {"version": 1, "reason": "looks good", "requested_by": "ana"}

    missing = client.post("/v1/models/credit/promotion", json=body)
    wrong = client.post("/v1/models/credit/promotion", json=body, headers=_auth("nope" * 5))
    right = client.post("/v1/models/credit/promotion", json=body, headers=_auth())

    assert (missing.status_code, missing.json()) == (
        401,
        {"detail": "this endpoint needs 'Authorization: Bearer <token>'"},
    )
    assert (wrong.status_code, wrong.json()) == (401, {"detail": "the bearer token is wrong"})
    assert right.status_code == 202
    [event] = publisher.events
    assert isinstance(event, t.PromotionRequested)
    assert (event.model, event.version, event.requested_by, event.reason) == (
        "credit",
        1,
        "ana",
        "looks good",
    )
    assert right.json() == {
        "event_type": "PromotionRequested",
        "event_id": event.meta.event_id,
        "correlation_id": event.meta.correlation_id,
    }


def test_rollback_and_training_requests_publish_their_events(
    registry: Registry, api: tuple[TestClient, FakePublisher], credit_package
) -> None:
    client, publisher = api
    directory, sha = credit_package
    register(registry, model_trained("credit", str(directory), sha))

    rollback = client.post(
        "/v1/models/credit/rollback", json={"reason": "p99 too high"}, headers=_auth()
    )
    training = client.post(
        "/v1/models/credit/training", json={"reason": "new data", "seed": 3}, headers=_auth()
    )

    assert (rollback.status_code, training.status_code) == (202, 202)
    rolled, trained = publisher.events
    assert isinstance(rolled, t.RollbackRequested)
    assert (rolled.model, rolled.to_version, rolled.requested_by) == ("credit", None, "api")
    assert isinstance(trained, t.TrainingRequested)
    assert (trained.model, trained.seed, trained.max_rows, trained.reason) == (
        "credit",
        3,
        None,
        "new data",
    )


def test_unknown_models_and_versions_are_404_naming_what_exists(
    registry: Registry, api: tuple[TestClient, FakePublisher], credit_package
) -> None:
    client, publisher = api
    directory, sha = credit_package
    register(registry, model_trained("credit", str(directory), sha))

    assert client.get("/v1/models/fraud/versions").json() == {
        "detail": "no model 'fraud'; models: credit"
    }
    assert client.get("/v1/models/fraud").status_code == 404
    assert client.get("/v1/models/credit/versions/7").json() == {
        "detail": "model 'credit' has no version 7; versions: 1"
    }
    promote = client.post(
        "/v1/models/credit/promotion", json={"version": 7, "reason": "x"}, headers=_auth()
    )
    train = client.post("/v1/models/fraud/training", json={"reason": "x"}, headers=_auth())
    assert (promote.status_code, promote.json()) == (
        404,
        {"detail": "model 'credit' has no version 7; versions: 1"},
    )
    assert (train.status_code, train.json()) == (
        404,
        {"detail": "no model 'fraud'; models: credit"},
    )
    assert client.get("/v1/models/credit/aliases/stable").json() == {
        "detail": "no alias 'stable'; aliases: champion, canary"
    }
    assert publisher.events == []


def test_the_api_lists_versions_lineage_manifest_and_alias_history(
    registry: Registry, api: tuple[TestClient, FakePublisher], credit_package
) -> None:
    client, _ = api
    directory, sha = credit_package
    trained = model_trained("credit", str(directory), sha)
    [registered] = register(registry, trained)
    follow_aliases(
        t.ModelPromoted(meta=meta_at(T0), model="credit", version=1, reason="first"),
        registry.store,
        registry.mirror,
    )

    assert client.get("/v1/models").json() == [
        {"name": "credit", "versions": [1], "latest_version": 1, "champion": 1, "canary": None}
    ]
    [version] = client.get("/v1/models/credit/versions").json()
    assert (version["version"], version["artifact_sha256"], version["mlflow_version"]) == (
        1,
        sha,
        101,
    )
    lineage = client.get("/v1/models/credit/versions/1/lineage").json()
    assert lineage["causation_event_id"] == trained.meta.event_id
    assert lineage["correlation_id"] == trained.meta.correlation_id
    assert lineage["registered_event_id"] == registered.meta.event_id
    assert lineage["data"] == trained.data.to_avro()
    assert lineage["code"] == trained.code.to_avro()
    assert lineage["environment"]["lock_sha256"] == trained.environment.lock_sha256
    assert lineage["parent_version"] is None
    assert client.get("/v1/models/credit/versions/1/manifest").json()["name"] == "credit"
    before = client.get("/v1/models/credit/aliases/champion", params={"at": "2026-11-26T07:59:00Z"})
    after = client.get("/v1/models/credit/aliases/champion", params={"at": "2026-11-26T08:00:00Z"})
    assert before.json()["version"] is None
    assert after.json()["version"] == 1
    naive = client.get("/v1/models/credit/aliases/champion", params={"at": "2026-11-26T08:00:00"})
    assert naive.status_code == 422
    [change] = client.get("/v1/models/credit/aliases/champion/history").json()
    assert (change["version"], change["event_type"], change["reason"]) == (
        1,
        "ModelPromoted",
        "first",
    )
    assert client.get("/openapi.json").json()["info"]["title"] == "modelbus registry"


def test_artifact_downloads_are_sha256_checked(
    registry: Registry, api: tuple[TestClient, FakePublisher], credit_package
) -> None:
    client, _ = api
    directory, sha = credit_package
    register(registry, model_trained("credit", str(directory), sha))
    kept = registry.settings.packages_dir / "credit" / sha

    weights = client.get("/v1/models/credit/versions/1/files/weights.safetensors")
    manifest = client.get("/v1/models/credit/versions/1/files/manifest.json")
    unknown = client.get("/v1/models/credit/versions/1/files/secrets.txt")
    assert weights.status_code == 200
    assert weights.content == (directory / "weights.safetensors").read_bytes()
    assert hashlib.sha256(manifest.content).hexdigest() == sha
    assert unknown.status_code == 404
    assert unknown.json()["detail"].startswith("'secrets.txt' is not in the package; files: [")

    (kept / "weights.safetensors").write_bytes(b"tampered")
    refused = client.get("/v1/models/credit/versions/1/files/weights.safetensors")
    assert refused.status_code == 409
    assert "sha256 mismatch in weights.safetensors" in refused.json()["detail"]


# --- settings ------------------------------------------------------------------------


def test_settings_refuse_auth_without_a_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MODELBUS_REGISTRY_API_TOKEN", raising=False)
    monkeypatch.delenv("MODELBUS_REGISTRY_AUTH_ENABLED", raising=False)
    with pytest.raises(ValidationError, match="auth is on but no API token is set"):
        Settings()
    with pytest.raises(ValidationError, match="has 5 characters; use at least 16"):
        Settings(api_token="short")
    assert Settings(auth_enabled=False).api_token is None
    monkeypatch.setenv("MODELBUS_REGISTRY_API_TOKEN", TOKEN)
    assert Settings().api_token.get_secret_value() == TOKEN  # type: ignore[union-attr]


def test_the_database_url_comes_from_modelbus_db_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELBUS_DB_URL", "postgresql://registry:pw@db:5432/registry")
    assert Settings(api_token=TOKEN).db_url == "postgresql://registry:pw@db:5432/registry"
