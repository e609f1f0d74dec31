"""Two registries with databases of their own on one lifecycle log: one writer, no repeats.

Both run in one consumer group. The lifecycle topic has one partition, so the group lease
gives it to exactly one of them: only that one registers. When it stops, the other takes
the partition over, adopts what the log announced into its empty database, and numbers the
next version above it.
"""

from __future__ import annotations

import contextlib
import signal
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelbus.config import KafkaSettings
from modelbus.events import types as t
from tests.support.broker import Bus, start_at_log_end
from tests.support.events import model_trained
from tests.support.packages import make_package
from tests.support.ports import free_port
from tests.support.processes import TOKEN, http_ready, registry_env, service

pytestmark = pytest.mark.integration


def test_two_registries_on_one_log_answer_each_model_trained_once_with_new_versions(
    kafka_settings: KafkaSettings, tmp_path: Path, unique: str
) -> None:
    model, group = f"one{unique}", f"test-one-writer-{unique}"
    start_at_log_end(kafka_settings.bootstrap_servers, group)
    bus = Bus(kafka_settings, f"test-one-writer-{unique}")
    trained = []
    for seed in (1, 2, 3):
        directory = tmp_path / "trained" / str(seed)
        sha = make_package(directory, model, seed=seed)
        trained.append(model_trained(model, str(directory), sha))
    urls, envs = {}, {}
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        port = free_port()
        urls[name] = f"http://127.0.0.1:{port}"
        envs[name] = {
            **registry_env(
                kafka_settings.bootstrap_servers,
                tmp_path / name,
                port=port,
                tracking_uri=f"sqlite:///{tmp_path / name / 'mlflow.db'}",
                group_id=group,
            ),
            "MODELBUS_REGISTRY_MLFLOW_MIRROR": "false",
        }

    def registered(count: int) -> list[t.ModelRegistered]:
        return bus.wait_for(model, t.ModelRegistered, count, timeout_s=90)

    with contextlib.ExitStack() as stack:
        processes = {
            name: stack.enter_context(
                service(
                    "modelbus_registry",
                    envs[name],
                    tmp_path / name,
                    ready=http_ready(f"{urls[name]}/healthz"),
                )
            )
            for name in ("a", "b")
        }
        bus.publish(trained[0])
        registered(1)
        bus.publish(trained[1])
        first_two = registered(2)
        writer = {e.meta.producer.rsplit(":", 1)[1] for e in first_two}
        assert len(writer) == 1  # one registry wrote both
        [owner] = [n for n, p in processes.items() if str(p.pid) in writer]
        [other] = [n for n in processes if n != owner]
        processes[owner].send_signal(signal.SIGTERM)
        processes[owner].wait(timeout=60)  # uvicorn re-raises SIGTERM once it has shut down

        bus.publish(trained[2])
        answers = registered(3)
        held = httpx.get(
            f"{urls[other]}/v1/models/{model}/versions",
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=10,
        ).json()

    assert len(answers) == 3  # exactly one ModelRegistered per ModelTrained
    assert [(e.version, e.meta.causation_id) for e in answers] == [
        (1, trained[0].meta.event_id),
        (2, trained[1].meta.event_id),
        (3, trained[2].meta.event_id),
    ]
    assert answers[2].meta.producer.endswith(f":{processes[other].pid}")
    assert answers[2].parent_version == 2
    # The registry that started with an empty database adopted versions 1 and 2 from the log.
    assert [(v["version"], v["run_id"]) for v in held] == [
        (1, trained[0].run_id),
        (2, trained[1].run_id),
        (3, trained[2].run_id),
    ]
    assert not [e for e in bus.lifecycle(model) if isinstance(e, t.RegistrationFailed)]


def test_a_registry_with_an_empty_database_adopts_the_log_and_resync_fills_mlflow(
    kafka_settings: KafkaSettings, tmp_path: Path, unique: str
) -> None:
    """Versions announced on the real log are adopted by a registry whose database is empty
    (same numbers, parents and event ids; the next one numbered above them), and
    ``resync_mirror`` copies every version and the champion alias MLflow missed, once."""
    from mlflow import MlflowClient

    from modelbus.events import new_meta
    from modelbus_registry.bootstrap import bootstrap
    from modelbus_registry.config import Settings
    from modelbus_registry.handlers import (
        adopt_log,
        follow_aliases,
        register_trained_model,
        resync_mirror,
    )
    from modelbus_registry.lifecycle_log import LoggedVersions
    from modelbus_registry.mirror import VERSION_TAG, MlflowMirror, NoMirror
    from tests.support.broker import publish_lifecycle, request_codec

    model, codec = f"adopt{unique}", request_codec()

    def registry(name: str) -> Any:
        return bootstrap(
            Settings(
                db_url=f"sqlite:///{tmp_path / name}.db",
                packages_dir=tmp_path / name / "packages",
                artifact_roots=[str(tmp_path / "trained")],
                api_token=TOKEN,
            ),
            mirror=NoMirror(),
            announced=LoggedVersions(kafka_settings.bootstrap_servers, codec),
        )

    def register(into: Any, seed: int) -> t.ModelRegistered:
        directory = tmp_path / "trained" / str(seed)
        trained = model_trained(model, str(directory), make_package(directory, model, seed=seed))
        publish_lifecycle(kafka_settings, codec, trained)
        [answer] = register_trained_model(
            trained, into.store, into.vault, into.mirror, into.producer, into.announced
        )
        publish_lifecycle(kafka_settings, codec, answer)
        return answer

    first = registry("first")
    answers = [register(first, 1), register(first, 2)]
    promoted = t.ModelPromoted(meta=new_meta("deployer@test"), model=model, version=2,
                               reason="won")  # fmt: skip
    publish_lifecycle(kafka_settings, codec, promoted)

    second = registry("second")
    assert second.store.versions(model) == []
    adopt_log(second.store, second.vault, second.mirror, second.announced)
    assert [
        (row.version, row.parent_version, row.registered_event_id, row.trained_event_id)
        for row in second.store.versions(model)
    ] == [
        (answer.version, answer.parent_version, answer.meta.event_id, answer.meta.causation_id)
        for answer in answers
    ]
    follow_aliases(promoted, second.store, second.mirror)
    third = register(second, 3)
    assert (third.version, third.parent_version) == (3, 2)
    assert all(row.mlflow_version is None for row in second.store.versions(model))

    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    for _ in range(2):  # a second resync finds nothing missing
        resync_mirror(second.store, MlflowMirror(tracking))
    client = MlflowClient(tracking_uri=tracking, registry_uri=tracking)
    mirrored = {
        int(found.tags[VERSION_TAG]): int(found.version)
        for found in client.search_model_versions(f"name='{model}'")
    }
    assert mirrored == {row.version: row.mlflow_version for row in second.store.versions(model)}
    assert sorted(mirrored) == [1, 2, 3]
    assert int(client.get_registered_model(model).aliases["champion"]) == mirrored[2]
