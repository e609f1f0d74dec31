"""Signed decisions: who may sign what, and what a signature covers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from modelbus.bus import Dispatcher, Envelope
from modelbus.bus.topics import LIFECYCLE_TOPIC
from modelbus.data import generate_credit
from modelbus.events import build_codec, example_event
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


def test_every_input_of_the_deployer_and_the_trainer_needs_a_signature_but_load_failures() -> None:
    from modelbus_deployer.handlers import EVENT_HANDLERS as DEPLOYER
    from modelbus_monitor.handlers import EVENT_HANDLERS as MONITOR
    from modelbus_trainer.handlers import EVENT_HANDLERS as TRAINER

    unsigned = {
        kind.__name__
        for kind in [*DEPLOYER, *TRAINER, *MONITOR]
        if kind.SCHEMA_NAME not in SIGNED_BY
    }
    assert unsigned == {"ModelLoadFailed"}  # inference holds no signing key


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
