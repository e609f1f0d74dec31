"""Signed decisions on the real broker: forged TrafficShifted refused, tampered manifest refused."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from modelbus.bus import Publisher
from modelbus.bus.topics import LIFECYCLE_TOPIC, data_topic
from modelbus.events import types as t
from modelbus.packaging import package_sha256
from modelbus.trust import TRUST_FILE, Signer, key_id
from modelbus.trust.keys import public_pem
from tests.support.broker import (
    RequestProducer,
    TopicReader,
    create_model_topics,
    lifecycle_dead_letters,
    lifecycle_events,
    publish_lifecycle,
    request_codec,
)
from tests.support.events import registered, shifted
from tests.support.packages import credit_rows, untrained_package
from tests.support.processes import start_worker, stop_workers
from tests.support.signing import ensure_test_keys, signer
from tests.support.waiting import NotYet, eventually

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Path, str]]:
    """Two small, differently seeded credit packages, signed by the test trainer key."""
    built = []
    for seed in (1, 2):
        rows, labels = credit_rows(200, seed=seed)
        directory = tmp_path_factory.mktemp("packages") / f"v{seed}"
        untrained_package(directory, rows, labels)
        built.append((directory, package_sha256(directory)))
    return built


def _manifest_tampered_copy(package: tuple[Path, str], target: Path) -> tuple[Path, str]:
    """The package with its manifest edited after signing; the sha256 announced is the new one."""
    shutil.copytree(package[0], target)
    manifest = json.loads((target / "manifest.json").read_text())
    manifest["metrics"]["accuracy"] = 0.999
    (target / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return target, package_sha256(target)


def _served_versions(producer, reader, model: str, prefix: str, count: int) -> dict[str, int]:  # type: ignore[no-untyped-def]
    rows, _ = credit_rows(count, seed=5)
    for number, row in enumerate(rows):
        producer.send(model, f"{prefix}{number}", row)
    producer.flush()
    wanted = {f"{prefix}{number}" for number in range(count)}
    records = reader.read_until(
        lambda got: wanted <= {r.request_id for r in got}, timeout_s=60, settle_s=0
    )
    return {r.request_id: r.version for r in records if r.request_id in wanted}


def v1_serves_v2_waits(kafka_settings, codec, model: str, packages) -> None:  # type: ignore[no-untyped-def]
    """``model``'s topics; v1 and v2 registered, v1 the champion with all traffic."""
    package_v1, package_v2 = packages
    create_model_topics(kafka_settings, model)
    publish_lifecycle(
        kafka_settings,
        codec,
        registered(model, 1, *package_v1),
        registered(model, 2, *package_v2),
        shifted(model, [("champion", 1, 100.0)]),
    )


def test_forged_traffic_shifts_are_dead_lettered_and_a_tampered_manifest_is_refused(
    kafka_settings,
    unique: str,
    packages: list[tuple[Path, str]],
    tmp_path: Path,
) -> None:
    model = f"credit{unique}"
    bootstrap = kafka_settings.bootstrap_servers
    codec = request_codec()
    v1_serves_v2_waits(kafka_settings, codec, model, packages)
    workers = [
        start_worker(
            bootstrap, model, index=index, MODELBUS_INFERENCE_SERVE_LATEST_WITHOUT_ROUTES="false"
        )
        for index in (0, 1)
    ]
    producer = RequestProducer(kafka_settings, codec)
    reader = TopicReader(bootstrap, data_topic(model, "predictions"), codec)
    forger = f"test-forger-{uuid.uuid4()}"
    try:
        before = _served_versions(producer, reader, model, "before-", 20)
        unsigned = Publisher(kafka_settings, codec, client_id=forger)
        unsigned.publish(shifted(model, [("champion", 2, 100.0)]))
        unsigned.flush()
        wrong_role = Publisher(kafka_settings, codec, client_id=forger, signer=signer("monitor"))
        wrong_role.publish(shifted(model, [("champion", 2, 100.0)]))
        wrong_role.flush()
        letters = lifecycle_dead_letters(bootstrap, codec, model, 2)
        tampered = _manifest_tampered_copy(packages[1], tmp_path / "tampered")
        publish_lifecycle(
            kafka_settings,
            codec,
            registered(model, 3, *tampered),
            shifted(model, [("champion", 3, 100.0)]),
        )

        def load_failed() -> list[t.ModelLoadFailed]:
            failed = lifecycle_events(bootstrap, codec, model, (t.ModelLoadFailed,))
            if len({event.meta.producer for event in failed}) < 2:
                raise NotYet(f"ModelLoadFailed from {len(failed)} of 2 workers")
            return failed

        # Both workers have read past the forgeries: each refused v3 after them on the log.
        failed = eventually(load_failed, timeout_s=60)
        after = _served_versions(producer, reader, model, "after-", 20)
        letters_now = lifecycle_dead_letters(bootstrap, codec, model, 2)
    finally:
        stop_workers(workers)
        reader.close()
    assert len(letters_now) == 2, "two workers refused each forgery; one dead letter each"
    assert set(before.values()) == {1}
    assert len(before) == 20
    assert sorted((letter.error_type, letter.source_topic) for letter in letters) == [
        ("UnsignedEvent", LIFECYCLE_TOPIC),
        ("WrongSigner", LIFECYCLE_TOPIC),
    ]
    reasons = sorted(letter.reason.split(": ", 1)[1] for letter in letters)
    assert reasons == [
        "TrafficShifted carries no signature; it must come from deployer or operator",
        "TrafficShifted signed by 'monitor'; only deployer or operator may sign it",
    ]
    assert {event.version for event in failed} == {3}
    assert "manifest.sig" in failed[0].reason
    assert "does not match" in failed[0].reason
    assert after == {f"after-{n}": 1 for n in range(20)}, "v1 keeps serving throughout"


def test_a_running_worker_trusts_a_rotated_deployer_key_once_its_trust_file_lists_it(
    kafka_settings,
    unique: str,
    packages: list[tuple[Path, str]],
    tmp_path: Path,
) -> None:
    """Rotation step (1) with no restart: the worker re-reads its trust file when it changes."""
    model = f"credit{unique}"
    bootstrap = kafka_settings.bootstrap_servers
    codec = request_codec()
    trust_file = tmp_path / TRUST_FILE
    shutil.copy(ensure_test_keys() / TRUST_FILE, trust_file)
    v1_serves_v2_waits(kafka_settings, codec, model, packages)
    worker = start_worker(
        bootstrap, model, MODELBUS_TRUSTED_KEYS=str(trust_file),
        MODELBUS_INFERENCE_SERVE_LATEST_WITHOUT_ROUTES="false",
    )  # fmt: skip
    producer = RequestProducer(kafka_settings, codec)
    reader = TopicReader(bootstrap, data_topic(model, "predictions"), codec)
    new_key = Ed25519PrivateKey.generate()
    rotated = Publisher(kafka_settings, codec, client_id=f"test-deployer-{uuid.uuid4()}",
                        signer=Signer("deployer", new_key))  # fmt: skip
    try:
        before = _served_versions(producer, reader, model, "before-", 20)
        rotated.publish(shifted(model, [("champion", 2, 100.0)]))
        rotated.flush()
        (refused,) = lifecycle_dead_letters(bootstrap, codec, model, 1)
        document = json.loads(trust_file.read_text())
        document["deployer"].append(public_pem(new_key.public_key()))
        staged = tmp_path / "trust.new"
        staged.write_text(json.dumps(document))
        staged.replace(trust_file)
        rotated.publish(shifted(model, [("champion", 2, 100.0)]))
        rotated.flush()

        def loaded_v2() -> None:
            versions = {
                e.version for e in lifecycle_events(bootstrap, codec, model, (t.ModelLoaded,))
            }
            if 2 not in versions:
                raise NotYet(f"loaded {sorted(versions)}")

        eventually(loaded_v2, timeout_s=60)
        after = _served_versions(producer, reader, model, "after-", 20)
    finally:
        stop_workers([worker])
        reader.close()
    assert set(before.values()) == {1}
    assert refused.error_type == "UntrustedKey"
    assert f"key {key_id(new_key.public_key())} is not a trusted deployer key" in refused.reason
    assert after == {f"after-{n}": 2 for n in range(20)}
    assert worker.returncode == 0, "one process throughout: stopped by the test, not restarted"
