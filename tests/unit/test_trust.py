"""Signed decisions: who may sign what, and what a signature covers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from modelbus.bus import Dispatcher, Envelope
from modelbus.bus.topics import LIFECYCLE_TOPIC
from modelbus.config import KafkaSettings
from modelbus.data import generate_credit
from modelbus.events import build_codec, example_event, new_meta
from modelbus.events import types as t
from modelbus.packaging import PackageSignatureError, load_package
from modelbus.trust import (
    MANIFEST_SIGNATURE,
    ROLES,
    SIGNATURE_HEADER,
    SIGNED_BY,
    SIGNER_HEADER,
    TRUST_FILE,
    KeysMissing,
    Signer,
    SignerPerRole,
    TrustedKeys,
    TrustSettings,
    check_event,
    generate_keys,
    load_signer,
    load_signers,
    load_trusted,
    sign_manifest,
)
from tests.support.fakes import FakeModel
from tests.support.packages import untrained_package

SHIFTED = "modelbus.events.TrafficShifted"
VALUE = b"\xc3\x01 an encoded TrafficShifted"


def _signer(role: str) -> Signer:
    return Signer(role, Ed25519PrivateKey.generate())


def _trust(*signers: Signer) -> TrustedKeys:
    keys: dict = {}
    for signer in signers:
        keys.setdefault(signer.role, []).append(signer._key.public_key())
    return TrustedKeys(keys)


def _headers(signer: Signer, topic: str = LIFECYCLE_TOPIC, value: bytes = VALUE) -> dict:
    return dict(signer.headers(topic, value, SHIFTED))


def test_a_decision_signed_by_its_role_is_accepted() -> None:
    deployer = _signer("deployer")
    headers = _headers(deployer)
    assert headers[SIGNER_HEADER] == f"deployer:{deployer.key_id}".encode()
    assert len(headers[SIGNATURE_HEADER]) == 64
    assert check_event(SHIFTED, LIFECYCLE_TOPIC, VALUE, headers, _trust(deployer)) is None


def test_an_unsigned_decision_is_refused_with_the_roles_that_may_sign_it() -> None:
    rejection = check_event(SHIFTED, LIFECYCLE_TOPIC, VALUE, {}, _trust(_signer("deployer")))
    assert rejection is not None
    assert rejection.error_type == "UnsignedEvent"
    assert rejection.reason == (
        "TrafficShifted carries no signature; it must come from deployer or operator"
    )


def test_a_decision_signed_by_another_role_is_refused_even_with_a_trusted_key() -> None:
    monitor = _signer("monitor")
    rejection = check_event(SHIFTED, LIFECYCLE_TOPIC, VALUE, _headers(monitor), _trust(monitor))
    assert rejection is not None
    assert rejection.error_type == "WrongSigner"
    assert rejection.reason == (
        "TrafficShifted signed by 'monitor'; only deployer or operator may sign it"
    )


def test_a_role_claimed_with_an_untrusted_key_is_refused() -> None:
    forger = _signer("deployer")
    rejection = check_event(
        SHIFTED, LIFECYCLE_TOPIC, VALUE, _headers(forger), _trust(_signer("deployer"))
    )
    assert rejection is not None
    assert rejection.error_type == "UntrustedKey"
    assert forger.key_id in rejection.reason


def test_one_altered_byte_breaks_the_signature() -> None:
    deployer = _signer("deployer")
    altered = VALUE[:-1] + bytes([VALUE[-1] ^ 1])
    rejection = check_event(SHIFTED, LIFECYCLE_TOPIC, altered, _headers(deployer), _trust(deployer))
    assert rejection is not None
    assert rejection.error_type == "BadSignature"


def test_a_signed_event_moved_to_another_topic_is_refused() -> None:
    deployer = _signer("deployer")
    headers = _headers(deployer, topic="modelbus.credit.feedback")
    rejection = check_event(SHIFTED, LIFECYCLE_TOPIC, VALUE, headers, _trust(deployer))
    assert rejection is not None
    assert rejection.error_type == "BadSignature"


def test_while_rotating_both_keys_of_a_role_are_accepted_and_a_removed_one_is_not() -> None:
    old, new = _signer("deployer"), _signer("deployer")
    both = _trust(old, new)
    for signer in (old, new):
        assert check_event(SHIFTED, LIFECYCLE_TOPIC, VALUE, _headers(signer), both) is None
    after = _trust(new)
    rejection = check_event(SHIFTED, LIFECYCLE_TOPIC, VALUE, _headers(old), after)
    assert rejection is not None
    assert rejection.error_type == "UntrustedKey"


def test_events_that_are_no_decisions_need_no_signature() -> None:
    assert check_event("modelbus.events.Feedback", "t", b"v", {}, TrustedKeys({})) is None


def test_generated_keys_cover_every_role_and_are_trusted(tmp_path: Path) -> None:
    generate_keys(tmp_path)
    trust = json.loads((tmp_path / TRUST_FILE).read_text())
    assert sorted(trust) == sorted(ROLES)
    assert (tmp_path / "trainer.key.pem").stat().st_mode & 0o777 == 0o600
    settings = TrustSettings(signing_key=tmp_path, trusted_keys=tmp_path / TRUST_FILE)
    trainer = load_signer("trainer", settings)
    headers = dict(trainer.headers(LIFECYCLE_TOPIC, VALUE, "modelbus.events.ModelTrained"))
    assert (
        check_event(
            "modelbus.events.ModelTrained", LIFECYCLE_TOPIC, VALUE, headers, load_trusted(settings)
        )
        is None
    )


def test_generating_again_keeps_the_keys_and_adds_a_rotated_one_to_the_trust_file(
    tmp_path: Path,
) -> None:
    generate_keys(tmp_path)
    first = load_signers(tmp_path).signers["deployer"].key_id
    (tmp_path / "deployer.key.pem").rename(tmp_path / "deployer.old.pem")
    generate_keys(tmp_path)
    second = load_signers(tmp_path).signers["deployer"].key_id
    assert first != second
    settings = TrustSettings(signing_key=tmp_path, trusted_keys=tmp_path)
    trusted = load_trusted(settings)
    assert sorted(trusted.keys["deployer"]) == sorted([first, second])
    assert len(trusted.keys["registry"]) == 1


def test_missing_keys_say_how_to_make_them(tmp_path: Path) -> None:
    with pytest.raises(KeysMissing, match="run `modelbus keys generate --dir DIR`"):
        load_signer("registry", TrustSettings(signing_key=None, trusted_keys=None))
    with pytest.raises(KeysMissing, match="MODELBUS_TRUSTED_KEYS"):
        load_trusted(TrustSettings(signing_key=None, trusted_keys=None))
    with pytest.raises(KeysMissing, match=r"registry\.key\.pem for registry does not exist"):
        load_signer("registry", TrustSettings(signing_key=tmp_path, trusted_keys=tmp_path))


def test_a_private_key_other_users_can_read_is_refused(tmp_path: Path) -> None:
    generate_keys(tmp_path, roles=("deployer",))
    (tmp_path / "deployer.key.pem").chmod(0o644)
    with pytest.raises(KeysMissing, match="can be read by other users: `chmod 600"):
        load_signer("deployer", TrustSettings(signing_key=tmp_path, trusted_keys=tmp_path))


def test_the_dispatcher_dead_letters_an_unsigned_decision_and_never_calls_its_handler() -> None:
    codec = build_codec()
    seen: list = []
    deployer = _signer("deployer")
    dispatcher = Dispatcher(
        codec, {t.TrafficShifted: [seen.append]}, producer="test", trusted=_trust(deployer)
    )
    value = codec.encode(example_event(t.TrafficShifted))
    forged = Envelope(topic=LIFECYCLE_TOPIC, value=value, key=b"credit", partition=0, offset=9)
    outcome = dispatcher.dispatch(forged)
    assert seen == []
    assert outcome.dead_letter is not None
    assert outcome.dead_letter.error_type == "UnsignedEvent"
    assert outcome.dead_letter.reason == (
        "modelbus.lifecycle[0]@9: TrafficShifted carries no signature; "
        "it must come from deployer or operator"
    )
    signed = Envelope(
        topic=LIFECYCLE_TOPIC,
        value=value,
        key=b"credit",
        headers=dict(deployer.headers(LIFECYCLE_TOPIC, value, SHIFTED)),
    )
    assert dispatcher.dispatch(signed).dead_letter is None
    assert len(seen) == 1


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rows, labels = generate_credit(80, seed=3)
    directory, _ = untrained_package(tmp_path_factory.mktemp("pkg") / "credit-1", rows, labels)
    return directory


def test_a_package_signed_by_the_trainer_loads(package: Path) -> None:
    assert load_package(package, threads=1).manifest.name == "credit"


def test_a_package_without_a_manifest_signature_is_refused(package: Path, tmp_path: Path) -> None:
    copy = _copy(package, tmp_path)
    (copy / MANIFEST_SIGNATURE).unlink()
    with pytest.raises(PackageSignatureError, match=r"manifest\.sig missing"):
        load_package(copy)


def test_a_manifest_altered_after_signing_is_refused(package: Path, tmp_path: Path) -> None:
    copy = _copy(package, tmp_path)
    manifest = copy / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"accuracy": 0.5', '"accuracy": 0.99'))
    with pytest.raises(PackageSignatureError, match="does not match"):
        load_package(copy)


def test_a_manifest_signed_by_another_role_is_refused(package: Path, tmp_path: Path) -> None:
    copy = _copy(package, tmp_path)
    sign_manifest(copy, load_signers(Path(TrustSettings().signing_key or ".")).signers["registry"])
    with pytest.raises(PackageSignatureError, match="only the trainer signs packages"):
        load_package(copy)


def _copy(package: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(package, tmp_path / "copy"))


# -- who signs each input the deployer, the trainer and the monitor act on ------------------

OWNERS = {
    "TrainingStarted": ("trainer",),
    "ModelTrained": ("trainer",),
    "TrainingFailed": ("trainer",),
    "ModelRegistered": ("registry",),
    "RolloutStarted": ("deployer",),
    "TrafficShifted": ("deployer", "operator"),
    "CanaryEvaluated": ("deployer",),
    "ModelPromoted": ("deployer",),
    "ModelRolledBack": ("deployer",),
    "ModelHealth": ("monitor",),
    "DriftDetected": ("monitor",),
    "TrainingRequested": ("operator", "registry"),
    "PromotionRequested": ("operator", "registry"),
    "RollbackRequested": ("operator", "registry"),
    "ModelLoaded": ("inference",),
    "ModelLoadFailed": ("inference",),
}


def test_the_role_table_names_the_owner_of_every_decision() -> None:
    assert {name.rsplit(".", 1)[1]: roles for name, roles in SIGNED_BY.items()} == OWNERS


@pytest.mark.parametrize("kind", sorted(OWNERS))
def test_each_decision_is_accepted_from_its_owners_and_refused_from_any_other_role(
    kind: str,
) -> None:
    name = f"modelbus.events.{kind}"
    signers = {role: _signer(role) for role in ROLES}
    trusted = _trust(*signers.values())
    for role, signer in signers.items():
        headers = dict(signer.headers(LIFECYCLE_TOPIC, VALUE, name))
        rejection = check_event(name, LIFECYCLE_TOPIC, VALUE, headers, trusted)
        if role in OWNERS[kind]:
            assert rejection is None, role
        else:
            assert rejection is not None
            assert rejection.error_type == "WrongSigner"
            assert rejection.reason == (
                f"{kind} signed by {role!r}; only {' or '.join(OWNERS[kind])} may sign it"
            )
    unsigned = check_event(name, LIFECYCLE_TOPIC, VALUE, {}, trusted)
    assert unsigned is not None
    assert unsigned.error_type == "UnsignedEvent"


def test_every_input_of_the_deployer_the_trainer_the_monitor_and_inference_needs_a_signature() -> (
    None
):
    from modelbus_deployer.handlers import EVENT_HANDLERS as DEPLOYER
    from modelbus_inference.handlers import EVENT_HANDLERS as INFERENCE
    from modelbus_monitor.handlers import EVENT_HANDLERS as MONITOR
    from modelbus_trainer.handlers import EVENT_HANDLERS as TRAINER

    unsigned = {
        kind.__name__
        for kind in [*DEPLOYER, *TRAINER, *MONITOR, *INFERENCE]
        if kind.SCHEMA_NAME not in SIGNED_BY
    }
    assert unsigned == set()


def test_tools_acting_as_each_role_sign_requests_as_the_operator_and_alerts_as_the_monitor() -> (
    None
):
    signers = SignerPerRole({role: _signer(role) for role in ROLES})
    for kind, role in [
        ("TrainingRequested", "operator"),
        ("PromotionRequested", "operator"),
        ("DriftDetected", "monitor"),
        ("ModelHealth", "monitor"),
        ("ModelRegistered", "registry"),
        ("ModelPromoted", "deployer"),
    ]:
        headers = dict(signers.headers(LIFECYCLE_TOPIC, VALUE, f"modelbus.events.{kind}"))
        assert headers[SIGNER_HEADER].decode().split(":")[0] == role, kind


def test_the_trainer_dead_letters_an_unsigned_drift_alert_and_starts_no_training() -> None:
    codec = build_codec()
    started: list = []
    monitor, deployer = _signer("monitor"), _signer("deployer")
    dispatcher = Dispatcher(
        codec,
        {t.DriftDetected: [started.append]},
        producer="trainer",
        trusted=_trust(monitor, deployer),
    )
    value = codec.encode(example_event(t.DriftDetected))
    name = "modelbus.events.DriftDetected"
    forged = Envelope(topic=LIFECYCLE_TOPIC, value=value, key=b"credit", partition=0, offset=4)
    outcome = dispatcher.dispatch(forged)
    assert outcome.dead_letter is not None
    assert outcome.dead_letter.reason == (
        "modelbus.lifecycle[0]@4: DriftDetected carries no signature; it must come from monitor"
    )
    wrong = Envelope(
        topic=LIFECYCLE_TOPIC,
        value=value,
        key=b"credit",
        headers=dict(deployer.headers(LIFECYCLE_TOPIC, value, name)),
    )
    assert dispatcher.dispatch(wrong).dead_letter.error_type == "WrongSigner"  # type: ignore[union-attr]
    assert started == []
    signed = Envelope(
        topic=LIFECYCLE_TOPIC,
        value=value,
        key=b"credit",
        headers=dict(monitor.headers(LIFECYCLE_TOPIC, value, name)),
    )
    assert dispatcher.dispatch(signed).dead_letter is None
    assert len(started) == 1


def test_the_monitor_learns_what_is_served_only_from_a_registration_the_registry_signed() -> None:
    from datetime import UTC, datetime

    from modelbus.service import inject
    from modelbus_monitor.evidence import Gates
    from modelbus_monitor.handlers import EVENT_HANDLERS
    from modelbus_monitor.ingest import Ingest
    from modelbus_monitor.monitors import Monitors

    loaded: list[str] = []

    def loader(uri: str, sha256: str | None) -> Any:
        loaded.append(uri)
        raise ValueError("no profile in this test: the version is watched for health only")

    monitors = Monitors(Gates(), join_window_s=60, window_s=5, lateness_s=1, cooldown_s=60,
                        rearm_after=10, loader=loader)  # fmt: skip
    registry, monitor = _signer("registry"), _signer("monitor")
    ingest = Ingest(
        monitors,
        inject(EVENT_HANDLERS, {"monitors": monitors}),
        producer="monitor@test",
        now=lambda: datetime.now(UTC),
        trusted=_trust(registry, monitor),
    )
    codec = build_codec()
    event = example_event(t.ModelRegistered)
    value = codec.encode(event)
    name = event.SCHEMA_NAME
    for headers in ({}, dict(monitor.headers(LIFECYCLE_TOPIC, value, name))):
        envelope = Envelope(topic=LIFECYCLE_TOPIC, value=value, key=b"credit", headers=headers)
        assert ingest.event(envelope, event) == []
    assert (ingest.refused, loaded, monitors.models) == (2, [], {})
    signed = dict(registry.headers(LIFECYCLE_TOPIC, value, name))
    ingest.event(Envelope(topic=LIFECYCLE_TOPIC, value=value, key=b"credit", headers=signed), event)
    assert (ingest.refused, loaded, list(monitors.models)) == (
        2,
        [event.artifact_uri],
        [event.model],
    )


# -- inference signs what it writes to the lifecycle log; the deployer trusts only that ------


def test_a_key_directory_made_before_inference_signed_gets_its_key_and_trust_by_generating_again(
    tmp_path: Path,
) -> None:
    earlier = tuple(role for role in ROLES if role != "inference")
    generate_keys(tmp_path, roles=earlier)
    before = {role: load_signers(tmp_path, earlier).signers[role].key_id for role in earlier}
    settings = TrustSettings(signing_key=tmp_path, trusted_keys=tmp_path)
    with pytest.raises(KeysMissing) as missing_key:
        load_signer("inference", settings)
    assert str(missing_key.value) == (
        f"signing key {tmp_path}/inference.key.pem for inference does not exist: the key "
        f"directory was made before the inference role signed; run `modelbus keys generate "
        f"--dir {tmp_path}` to add its key (existing keys are kept; the trust file gains its "
        "public key)"
    )
    with pytest.raises(KeysMissing, match=rf"trusts no key of inference .*--dir {tmp_path}`"):
        load_trusted(TrustSettings(signing_key=tmp_path, trusted_keys=tmp_path / TRUST_FILE),
                     required=("deployer", "inference"))  # fmt: skip

    written = generate_keys(tmp_path)

    assert written == [tmp_path / "inference.key.pem", tmp_path / TRUST_FILE]
    after = load_signers(tmp_path)
    assert {role: after.signers[role].key_id for role in earlier} == before
    trust = json.loads((tmp_path / TRUST_FILE).read_text())
    assert sorted(trust) == sorted(ROLES)
    assert all(len(pems) == 1 for pems in trust.values())
    inference = load_signer("inference", settings)
    trusted = load_trusted(
        TrustSettings(signing_key=tmp_path, trusted_keys=tmp_path / TRUST_FILE),
        required=("deployer", "inference"),
    )
    assert list(trusted.keys["inference"]) == [inference.key_id]


class _RecordingProducer:
    """A confluent Producer's surface as the Publisher uses it; records what is produced."""

    def __init__(self) -> None:
        self.produced: list[tuple[str, bytes, dict[str, bytes]]] = []

    def produce(self, topic, value, key=None, headers=None, on_delivery=None) -> None:  # type: ignore[no-untyped-def]
        self.produced.append((topic, value, dict(headers or [])))

    def poll(self, timeout: float) -> int:
        return 0

    def flush(self, timeout: float) -> int:
        return 0


@pytest.mark.parametrize("delivery", ["exactly_once", "at_least_once"])
def test_inference_signs_its_load_reports_and_refusals_as_inference(delivery: str) -> None:
    from modelbus.bus.topics import dlq_topic_for
    from modelbus_inference.bootstrap import lifecycle_publisher
    from modelbus_inference.config import Settings as InferenceSettings
    from modelbus_inference.domain import Registration
    from modelbus_inference.loading import LoadFailed
    from modelbus_inference.serving import ModelManager

    def load(registration: Registration) -> Any:
        if registration.version == 1:
            return FakeModel(1)
        raise LoadFailed(f"v{registration.version}: sha256 mismatch in weights.safetensors")

    codec = build_codec(models=("credit",))
    nowhere = KafkaSettings(bootstrap_servers="127.0.0.1:9")  # the fake producer replaces it
    settings = InferenceSettings(kafka=nowhere, delivery=delivery)  # type: ignore[arg-type]
    publisher = lifecycle_publisher(settings, codec)
    producer = _RecordingProducer()
    publisher.producer = producer  # type: ignore[assignment]
    models = ModelManager("credit", load, worker="inference@test", serve_latest_without_routes=True)
    cause = example_event(t.ModelRegistered)
    reports = models.register(Registration(1, "file:///packages/1", "ab" * 32), cause=cause)
    reports += models.register(Registration(2, "file:///packages/2", "cd" * 32), cause=cause)
    for event in reports:
        publisher.publish(event)
    publisher.publish(example_event(t.DeadLetter), topic=dlq_topic_for(LIFECYCLE_TOPIC), key=b"c")
    publisher.flush()

    trusted = load_trusted()
    inference_key = load_signer("inference").key_id
    lifecycle = [value for topic, value, _ in producer.produced if topic == LIFECYCLE_TOPIC]
    assert [codec.decode(value) for value in lifecycle] == reports
    assert {type(event) for event in reports} == {t.ModelLoaded, t.ModelLoadFailed}
    for topic, value, headers in producer.produced:
        if topic == "modelbus.schemas":
            continue
        assert headers[SIGNER_HEADER] == f"inference:{inference_key}".encode(), topic
        name = headers["modelbus-type"].decode()
        assert check_event(name, topic, value, headers, trusted) is None, topic
    assert [topic for topic, _, _ in producer.produced if topic != "modelbus.schemas"] == [
        *[LIFECYCLE_TOPIC] * len(reports),
        "modelbus.dlq",
    ]


class _Message:
    """A consumed lifecycle message, shaped as confluent-kafka's Message."""

    def __init__(self, value: bytes, headers: dict[str, bytes], offset: int) -> None:
        self._value, self._headers, self._offset = value, headers, offset

    def topic(self) -> str:
        return LIFECYCLE_TOPIC

    def value(self) -> bytes:
        return self._value

    def key(self) -> bytes:
        return b"credit"

    def headers(self) -> list[tuple[str, bytes]]:
        return list(self._headers.items())

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset

    def timestamp(self) -> tuple[int, int]:
        return (1, 0)

    def error(self) -> None:
        return None


class _TransactionalPublisher:
    """Records what the deployer writes in its transactions."""

    def __init__(self) -> None:
        self.producer = self
        self.written: list[tuple[Any, str | None]] = []

    def begin_transaction(self) -> None: ...

    def commit_transaction(self, timeout: float) -> None: ...

    def publish(self, event: Any, *, topic: str | None = None, key: Any = None) -> None:
        self.written.append((event, topic))


def _deployer_loop(signers: dict[str, Signer], *, live: bool) -> Any:
    """A deployer loop holding the log (live, or replaying it), with fake Kafka around it."""
    from modelbus_deployer.config import Settings as DeployerSettings
    from modelbus_deployer.domain import Deployer
    from modelbus_deployer.stream import DeployerLoop

    loop = DeployerLoop(
        None,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        build_codec(),
        lambda: Deployer(producer="deployer@test", policy=DeployerSettings().policy()),
        lambda: None,  # type: ignore[arg-type,return-value]
        tick_s=1,
        trusted=_trust(*signers.values()),
        producer="deployer@test",
    )
    loop.deployer, loop.replay_end = loop.new_deployer(), None if live else 1_000_000
    loop.publisher = _TransactionalPublisher() if live else None
    return loop


def _deliver(loop: Any, signers: dict[str, Signer], event: Any, role: str | None) -> None:
    value = loop.codec.encode(event)
    signer = signers.get(role or "")
    headers = {} if signer is None else dict(
        signer.headers(LIFECYCLE_TOPIC, value, event.SCHEMA_NAME)
    )  # fmt: skip
    loop._lifecycle_message(_Message(value, headers, len(loop.on_log) + loop.decisions))


def _load_failed() -> t.ModelLoadFailed:
    return t.ModelLoadFailed(meta=new_meta("inference@test"), model="credit", version=2,
                             worker="inference@test", reason="sha256 mismatch")  # fmt: skip


def _canary_of_v2(loop: Any, signers: dict[str, Signer]) -> None:
    from tests.support.events import registered

    _deliver(loop, signers, registered("credit", 1, Path("/p/1"), "0" * 64), "registry")
    _deliver(loop, signers, registered("credit", 2, Path("/p/2"), "0" * 64), "registry")
    assert loop.deployer.state("credit").rollout.candidate == 2


def test_the_deployer_rolls_a_canary_back_only_on_a_load_failure_inference_signed() -> None:
    from modelbus_deployer.handlers import SIGNERS

    assert SIGNERS == ("deployer", "inference", "monitor", "operator", "registry")
    signers = {role: _signer(role) for role in ("registry", "monitor", "inference")}
    loop = _deployer_loop(signers, live=True)
    publisher = loop.publisher
    _canary_of_v2(loop, signers)
    publisher.written.clear()
    unsigned, by_monitor, genuine = _load_failed(), _load_failed(), _load_failed()
    _deliver(loop, signers, unsigned, None)
    _deliver(loop, signers, by_monitor, "monitor")
    letters = [event for event, _ in publisher.written]
    _deliver(loop, signers, genuine, "inference")

    assert [(type(e).__name__, topic) for e, topic in publisher.written[:2]] == [
        ("DeadLetter", "modelbus.dlq"),
        ("DeadLetter", "modelbus.dlq"),
    ]
    assert [letter.error_type for letter in letters] == ["UnsignedEvent", "WrongSigner"]
    assert [letter.reason.split(": ", 1)[1] for letter in letters] == [
        "ModelLoadFailed carries no signature; it must come from inference",
        "ModelLoadFailed signed by 'monitor'; only inference may sign it",
    ]
    assert loop.refused == 2
    rolled = [e for e, _ in publisher.written if isinstance(e, t.ModelRolledBack)]
    assert [(r.version, r.restored_version, r.meta.causation_id) for r in rolled] == [
        (2, 1, genuine.meta.event_id)
    ]
    assert rolled[0].reason == "candidate failed to load: sha256 mismatch"


def test_replaying_the_log_the_deployer_skips_load_failures_inference_did_not_sign() -> None:
    signers = {role: _signer(role) for role in ("registry", "monitor", "inference")}
    loop = _deployer_loop(signers, live=False)
    _canary_of_v2(loop, signers)
    _deliver(loop, signers, _load_failed(), None)
    _deliver(loop, signers, _load_failed(), "monitor")
    assert not any(isinstance(e, t.ModelRolledBack) for e in loop.replayed)
    genuine = _load_failed()
    _deliver(loop, signers, genuine, "inference")

    rolled = [e for e in loop.replayed if isinstance(e, t.ModelRolledBack)]
    assert [(r.version, r.meta.causation_id) for r in rolled] == [(2, genuine.meta.event_id)]
    assert loop.refused == 0  # nothing is dead-lettered at replay: it was, live
