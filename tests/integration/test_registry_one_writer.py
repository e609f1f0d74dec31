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
