"""The registry as it runs (`python -m modelbus_registry run`): real broker, SQLite, MLflow."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelbus.bus import Publisher
from modelbus.bus.reading import decoded, read_topic
from modelbus.bus.topics import SHARED_DLQ_TOPIC
from modelbus.config import KafkaSettings
from modelbus.events import types as t
from modelbus.events.meta import now_utc
from tests.support.broker import Bus
from tests.support.events import meta_at, model_trained
from tests.support.packages import make_package
from tests.support.ports import free_port
from tests.support.processes import TOKEN, http_ready, registry_env, service
from tests.support.signing import role_signers
from tests.support.waiting import NotYet, eventually

pytestmark = pytest.mark.integration


@dataclass
class RunningRegistry:
    """A registry process and the handles a test needs around it."""

    url: str
    tracking_uri: str
    artifacts_dir: Path
    bus: Bus

    def wait_for(self, model: str, kind: type, count: int = 1) -> list[Any]:
        """At least ``count`` events of type ``kind`` about ``model``."""
        return self.bus.wait_for(model, kind, count)

    def lifecycle(self, model: str) -> list[Any]:
        """Every lifecycle event about ``model`` so far."""
        return self.bus.lifecycle(model)

    def publish(self, event: Any) -> None:
        """Publish and wait for the broker."""
        self.bus.publish(event)


@pytest.fixture(scope="module")
def registry_process(
    kafka_settings: KafkaSettings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningRegistry]:
    from mlflow import MlflowClient

    root = tmp_path_factory.mktemp("registry")
    tracking_uri = f"sqlite:///{root / 'mlflow.db'}"
    MlflowClient(tracking_uri=tracking_uri).search_experiments()  # create its tables once, here
    port = free_port()
    env = registry_env(
        kafka_settings.bootstrap_servers,
        root,
        port=port,
        tracking_uri=tracking_uri,
        group_id=f"test-registry-{root.name}-{port}",
    )
    # Packages come from this test's MLflow runs (runs:/ URIs) or its folder.
    env["MODELBUS_REGISTRY_ARTIFACT_ROOTS"] = json.dumps([str(root), "runs:/"])
    url = f"http://127.0.0.1:{port}"
    with service("modelbus_registry", env, root, ready=http_ready(f"{url}/healthz")):
        yield RunningRegistry(
            url, tracking_uri, root / "artifacts", Bus(kafka_settings, "test-registry")
        )


def logged_package(registry: RunningRegistry, model: str, seed: int) -> tuple[str, str, str]:
    """A package logged to MLflow as a run's artifact: (run id, runs:/ URI, sha256)."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=registry.tracking_uri)
    experiment = client.get_experiment_by_name(model) or None
    experiment_id = (
        experiment.experiment_id
        if experiment
        else client.create_experiment(model, artifact_location=str(registry.artifacts_dir / model))
    )
    run = client.create_run(experiment_id)
    directory = registry.artifacts_dir.parent / "built" / model / str(seed)
    sha = make_package(directory, model, seed=seed)
    client.log_artifacts(run.info.run_id, str(directory), "package")
    client.set_terminated(run.info.run_id)
    return run.info.run_id, f"runs:/{run.info.run_id}/package", sha


def test_a_trained_model_is_registered_mirrored_to_mlflow_and_follows_promotion(
    registry_process: RunningRegistry, unique: str
) -> None:
    from mlflow import MlflowClient

    model = f"credit-{unique}"
    run_id, uri, sha = logged_package(registry_process, model, seed=1)
    requested = t.TrainingRequested(
        meta=meta_at(now_utc(), producer="test"),
        model=model,
        reason="test",
        requested_by="test",
    )
    trained = model_trained(model, uri, sha, run_id=run_id, cause=requested)
    registry_process.publish(trained)

    [registered] = registry_process.wait_for(model, t.ModelRegistered)
    assert (registered.model, registered.version, registered.parent_version) == (model, 1, None)
    assert (registered.run_id, registered.artifact_uri, registered.artifact_sha256) == (
        run_id,
        uri,
        sha,
    )
    assert registered.meta.causation_id == trained.meta.event_id
    assert registered.meta.correlation_id == requested.meta.correlation_id
    assert registered.metrics == trained.metrics

    client = MlflowClient(tracking_uri=registry_process.tracking_uri)
    [mirrored] = client.search_model_versions(f"name='{model}'")
    assert (int(mirrored.version), mirrored.run_id, mirrored.source) == (1, run_id, uri)
    assert mirrored.tags["modelbus.version"] == "1"
    assert mirrored.tags["modelbus.artifact_sha256"] == sha
    assert client.get_run(run_id).data.tags["modelbus.registered_version"] == "1"

    shift = t.TrafficShifted(
        meta=meta_at(now_utc()),
        model=model,
        routes=[t.Route(variant="canary", version=1, weight_pct=100.0)],
        reason="first rollout",
    )
    registry_process.publish(shift)
    eventually(lambda: _mlflow_alias(client, model, "canary", 1))
    promoted = t.ModelPromoted(meta=meta_at(now_utc()), model=model, version=1, reason="won")
    registry_process.publish(promoted)
    eventually(lambda: _mlflow_alias(client, model, "champion", 1))
    eventually(lambda: _mlflow_alias(client, model, "canary", None))

    api = httpx.Client(base_url=registry_process.url)
    assert api.get(f"/v1/models/{model}/aliases").json() == {
        "model": model,
        "champion": 1,
        "canary": None,
    }
    before = api.get(
        f"/v1/models/{model}/aliases/champion",
        params={"at": shift.meta.occurred_at.isoformat()},
    )
    assert before.json()["version"] is None
    lineage = api.get(f"/v1/models/{model}/versions/1/lineage").json()
    assert lineage["causation_event_id"] == trained.meta.event_id
    assert lineage["data"] == trained.data.to_avro()
    weights = api.get(f"/v1/models/{model}/versions/1/files/weights.safetensors")
    assert weights.status_code == 200
    assert (
        weights.content
        == (
            registry_process.artifacts_dir.parent / "built" / model / "1" / "weights.safetensors"
        ).read_bytes()
    )


def test_a_redelivered_model_trained_gets_the_same_answer_and_no_second_version(
    registry_process: RunningRegistry, unique: str
) -> None:
    model = f"credit-{unique}"
    run_id, uri, sha = logged_package(registry_process, model, seed=2)
    trained = model_trained(model, uri, sha, run_id=run_id)
    registry_process.publish(trained)
    registry_process.wait_for(model, t.ModelRegistered)
    registry_process.publish(trained)

    first, again = registry_process.wait_for(model, t.ModelRegistered, count=2)
    assert again == first
    versions = httpx.get(f"{registry_process.url}/v1/models/{model}/versions").json()
    assert [v["version"] for v in versions] == [1]


def test_a_corrupted_artifact_is_refused_on_the_bus_and_registers_nothing(
    registry_process: RunningRegistry, unique: str
) -> None:
    model = f"credit-{unique}"
    directory = registry_process.artifacts_dir.parent / "corrupt" / model
    sha = make_package(directory, model, seed=3)
    (directory / "profile.json").write_text("{}\n")
    trained = model_trained(model, directory.as_uri(), sha)
    registry_process.publish(trained)

    [failed] = registry_process.wait_for(model, t.RegistrationFailed)
    assert failed.meta.causation_id == trained.meta.event_id
    assert failed.meta.correlation_id == trained.meta.correlation_id
    assert "sha256 mismatch in profile.json" in failed.reason
    assert not [e for e in registry_process.lifecycle(model) if isinstance(e, t.ModelRegistered)]
    missing = httpx.get(f"{registry_process.url}/v1/models/{model}/versions")
    assert missing.status_code == 404
    failures = httpx.get(f"{registry_process.url}/v1/models/{model}/failures").json()
    assert [f["reason"] for f in failures] == [failed.reason]


def test_a_model_trained_not_signed_by_the_trainer_is_dead_lettered_and_registers_nothing(
    registry_process: RunningRegistry, unique: str
) -> None:
    model = f"credit-{unique}"
    directory = registry_process.artifacts_dir.parent / "forged" / model
    sha = make_package(directory, model, seed=4)
    settings = registry_process.bus.settings
    codec = registry_process.bus.codec
    for signer in (None, role_signers().signers["monitor"]):
        forger = Publisher(settings, codec, client_id=f"forger-{unique}", signer=signer)
        forger.publish(model_trained(model, directory.as_uri(), sha))
        forger.flush()

    def dead_letters() -> list[t.DeadLetter]:
        letters = [
            event
            for event in decoded(
                read_topic(settings.bootstrap_servers, SHARED_DLQ_TOPIC),
                codec,
                on_undecodable=lambda *_: None,
            )
            if isinstance(event, t.DeadLetter) and event.key == model.encode()
        ]
        if len(letters) < 2:
            raise NotYet(f"{len(letters)} dead letters so far")
        return letters

    letters = eventually(dead_letters)
    assert sorted(letter.error_type for letter in letters) == ["UnsignedEvent", "WrongSigner"]
    assert sorted(letter.reason.split(": ", 1)[1] for letter in letters) == [
        "ModelTrained carries no signature; it must come from trainer",
        "ModelTrained signed by 'monitor'; only trainer may sign it",
    ]
    genuine = model_trained(model, directory.as_uri(), sha)
    registry_process.publish(genuine)
    [registered] = registry_process.wait_for(model, t.ModelRegistered)
    assert (registered.version, registered.meta.causation_id) == (1, genuine.meta.event_id)


def test_write_endpoints_publish_requests_on_the_bus(
    registry_process: RunningRegistry, unique: str
) -> None:
    model = f"credit-{unique}"
    run_id, uri, sha = logged_package(registry_process, model, seed=4)
    registry_process.publish(model_trained(model, uri, sha, run_id=run_id))
    registry_process.wait_for(model, t.ModelRegistered)
    api = httpx.Client(base_url=registry_process.url)

    refused = api.post(f"/v1/models/{model}/rollback", json={"reason": "x"})
    accepted = api.post(
        f"/v1/models/{model}/rollback",
        json={"to_version": 1, "reason": "p99", "requested_by": "ops"},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )

    assert refused.status_code == 401
    assert accepted.status_code == 202
    [rollback] = registry_process.wait_for(model, t.RollbackRequested)
    assert rollback.meta.event_id == accepted.json()["event_id"]
    assert (rollback.to_version, rollback.requested_by, rollback.reason) == (1, "ops", "p99")


def _mlflow_alias(client: Any, model: str, alias: str, version: int | None) -> None:
    current = {a: int(v) for a, v in client.get_registered_model(model).aliases.items()}
    if current.get(alias) != version:
        raise NotYet(f"{alias} is {current.get(alias)}, not {version}")


@pytest.fixture
def postgres_url(unique: str) -> Iterator[str]:
    """A fresh PostgreSQL database; a skip when no server answers, a failure if one is required
    (``MODELBUS_TEST_REQUIRE_POSTGRES=1``, set by CI)."""
    import psycopg
    from sqlalchemy.engine import make_url

    admin_url = os.environ.get(
        "MODELBUS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
    )
    try:
        admin = psycopg.connect(admin_url, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as error:
        reason = f"no PostgreSQL at {admin_url} (set MODELBUS_TEST_POSTGRES_URL): {error}"
        if os.environ.get("MODELBUS_TEST_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"{reason}; MODELBUS_TEST_REQUIRE_POSTGRES=1 makes it required")
        pytest.skip(reason)
    database = f"registry_{unique}"
    with admin:
        admin.execute(f'CREATE DATABASE "{database}"')
        try:
            yield make_url(admin_url).set(database=database).render_as_string(hide_password=False)
        finally:
            admin.execute(f'DROP DATABASE "{database}" WITH (FORCE)')


def test_the_registry_keeps_versions_and_aliases_in_postgresql(
    postgres_url: str, tmp_path: Path
) -> None:
    from modelbus_registry.bootstrap import bootstrap
    from modelbus_registry.config import Settings
    from modelbus_registry.domain import AnnouncedVersions
    from modelbus_registry.handlers import follow_aliases, register_trained_model
    from modelbus_registry.mirror import NoMirror

    registry = bootstrap(
        Settings(
            db_url=postgres_url,
            packages_dir=tmp_path / "packages",
            artifact_roots=[str(tmp_path)],
            api_token=TOKEN,
        ),
        mirror=NoMirror(),
        announced=AnnouncedVersions(),
    )
    assert registry.store.engine.dialect.name == "postgresql"

    def register(event: t.ModelTrained) -> list[Any]:
        return register_trained_model(
            event,
            registry.store,
            registry.vault,
            registry.mirror,
            registry.producer,
            registry.announced,
        )

    events = []
    for seed in (1, 2):
        directory = tmp_path / f"pkg{seed}"
        events.append(
            model_trained("credit", str(directory), make_package(directory, "credit", seed=seed))
        )
    [one], [two] = register(events[0]), register(events[1])
    assert register(events[1]) == [two]
    tampered = tmp_path / "pkg3"
    sha = make_package(tampered, "credit", seed=3)
    (tampered / "architecture.json").write_text("{}")
    [failed] = register(model_trained("credit", str(tampered), sha))

    assert [(e.version, e.parent_version) for e in (one, two)] == [(1, None), (2, 1)]
    assert isinstance(failed, t.RegistrationFailed)
    assert "sha256 mismatch in architecture.json" in failed.reason
    assert [row.version for row in registry.store.versions("credit")] == [1, 2]

    promoted = t.ModelPromoted(meta=meta_at(now_utc()), model="credit", version=2, reason="won")
    follow_aliases(promoted, registry.store, registry.mirror)
    follow_aliases(promoted, registry.store, registry.mirror)
    before = promoted.meta.occurred_at.replace(year=2000)
    assert registry.store.alias_at("credit", "champion", before) is None
    assert registry.store.alias_at("credit", "champion", promoted.meta.occurred_at) == 2
    assert len(registry.store.alias_history("credit")) == 1


def test_two_registry_writers_on_one_postgresql_database_never_issue_the_same_version(
    postgres_url: str, tmp_path: Path
) -> None:
    """Two registries share one database and register different trainings of one model at once:
    a writer that loses the race for a number gets IntegrityError (the unique constraint),
    never a duplicate, and its redelivery takes the next free number."""
    import threading

    from sqlalchemy.exc import IntegrityError

    from modelbus_registry.bootstrap import bootstrap
    from modelbus_registry.config import Settings
    from modelbus_registry.domain import AnnouncedVersions
    from modelbus_registry.handlers import register_trained_model
    from modelbus_registry.mirror import NoMirror

    def registry() -> Any:
        return bootstrap(
            Settings(
                db_url=postgres_url,
                packages_dir=tmp_path / "packages",
                artifact_roots=[str(tmp_path)],
                api_token=TOKEN,
            ),
            mirror=NoMirror(),
            announced=AnnouncedVersions(),
        )

    writers = [registry(), registry()]
    per_writer = 6
    trained = [[], []]  # type: list[list[t.ModelTrained]]
    for index in range(2):
        for seed in range(per_writer):
            directory = tmp_path / f"w{index}" / str(seed)
            sha = make_package(directory, "credit", seed=seed + 10 * index)
            trained[index].append(model_trained("credit", str(directory), sha))
    start = threading.Barrier(2)
    answers: list[list[t.ModelRegistered]] = [[], []]
    lost_races = [0, 0]
    errors: list[BaseException] = []

    def write(index: int) -> None:
        reg = writers[index]
        try:
            start.wait(timeout=60)
            for event in trained[index]:
                while True:  # a lost race is redelivered, as the consumer would
                    try:
                        [answer] = register_trained_model(
                            event, reg.store, reg.vault, reg.mirror, reg.producer, reg.announced
                        )
                        break
                    except IntegrityError:
                        lost_races[index] += 1
                answers[index].append(answer)
        except BaseException as error:  # surfaced in the main thread
            errors.append(error)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    issued = [answer.version for both in answers for answer in both]
    assert sorted(issued) == list(range(1, 2 * per_writer + 1))
    assert all(isinstance(answer, t.ModelRegistered) for both in answers for answer in both)
    rows = writers[0].store.versions("credit")
    assert sorted(row.version for row in rows) == list(range(1, 2 * per_writer + 1))
    assert {row.trained_event_id for row in rows} == {
        event.meta.event_id for events in trained for event in events
    }
    print(f"lost races retried: {lost_races}")
